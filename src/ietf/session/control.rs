//! Draft 16's control stream: CLIENT_SETUP and SERVER_SETUP, then every request and response
//! on the one bidi stream the client opened, named by request id (SUBSCRIBE_NAMESPACE alone has
//! a bidi stream of its own). Each request gets a virtual stream id, so that the states written
//! for 17+ request streams serve it unchanged: what they write to it goes out on the control
//! stream with the request id filled in, and the messages that end a request there
//! (UNSUBSCRIBE, PUBLISH_NAMESPACE_DONE) end its virtual stream.

use bytes::Bytes;

use super::super::message::Message;
use super::super::params::{self, Kvp, Params};
use super::super::{DecodeError, TerminationCode, Version};
use super::{PeerEnd, Session, State, Step};
use crate::model::PeerEvent;
use crate::stream::{Dir, Side, StreamId, Streams};

/// Virtual stream ids start here, above any stream QUIC can number in a session.
const VIRTUAL: u64 = 1 << 59;

/// The MAX_REQUEST_ID we grant: the reference's value, so the peer never waits on us.
const GRANTED_REQUESTS: u64 = u32::MAX as u64;

/// The virtual stream of request `request`.
pub(super) fn virtual_stream(request: u64) -> StreamId {
    StreamId::new(Side::Client, Dir::Bi, VIRTUAL + (request & (VIRTUAL - 1)))
}

/// The request a virtual stream stands for.
pub(super) fn virtual_request(id: StreamId) -> Option<u64> {
    (id.dir() == Dir::Bi && id.index() >= VIRTUAL).then(|| id.index() - VIRTUAL)
}

impl Session {
    /// Drafts before 17: one control stream, request ids.
    pub(super) fn legacy(&self) -> bool {
        self.version < Version::Draft17
    }

    /// A client opens the control stream with CLIENT_SETUP; a server waits for it.
    pub(super) fn start_control(&mut self, io: &mut dyn Streams, mut options: Vec<(u64, Kvp)>) {
        if self.cfg.server {
            return;
        }
        options.insert(
            0,
            (params::setup::MAX_REQUEST_ID, Kvp::Int(GRANTED_REQUESTS)),
        );
        let Some(id) = io.open(Dir::Bi) else {
            io.close(
                TerminationCode::INTERNAL_ERROR,
                b"no stream for CLIENT_SETUP",
            );
            return;
        };
        io.set_priority(id, super::CONTROL_PRIORITY);
        self.write(io, id, &Message::ClientSetup(options), false);
        self.peer_control = Some(id);
        self.ins.insert(
            id,
            State::Control {
                buf: Vec::new(),
                setup: false,
            },
        );
    }

    /// The control stream's messages: the setup exchange, then requests and responses routed
    /// to their virtual streams.
    pub(super) fn control_legacy(
        &mut self,
        io: &mut dyn Streams,
        id: StreamId,
        buf: Vec<u8>,
        mut setup: bool,
        end: PeerEnd,
        events: &mut Vec<PeerEvent>,
    ) -> Result<Step, DecodeError> {
        let mut at = 0;
        while let Some((msg, used)) =
            Message::decode(&buf[at..], self.version, self.cfg.limits.max_message)?
        {
            let raw = Bytes::copy_from_slice(&buf[at..at + used]);
            at += used;
            if !setup {
                let options = match (msg, self.cfg.server) {
                    (Message::ClientSetup(o), true) | (Message::ServerSetup(o), false) => o,
                    _ => {
                        return Ok(Step::Close(
                            TerminationCode::PROTOCOL_VIOLATION,
                            "expected the setup message",
                        ));
                    }
                };
                if let Err(reason) = self.peer_setup(&options) {
                    return Ok(Step::Close(TerminationCode::MALFORMED_PATH, reason));
                }
                if self.cfg.server {
                    let ours = vec![
                        (params::setup::MAX_REQUEST_ID, Kvp::Int(GRANTED_REQUESTS)),
                        (
                            params::setup::MOQT_IMPLEMENTATION,
                            Kvp::Bytes(b"moq-relay".to_vec()),
                        ),
                    ];
                    self.write(io, id, &Message::ServerSetup(ours), false);
                }
                setup = true;
                self.ready = true;
                events.push(PeerEvent::Ready);
                continue;
            }
            if let Some(step) = self.route(io, msg, raw, events) {
                return Ok(step);
            }
        }
        if end != PeerEnd::Open {
            return Ok(Step::Close(
                TerminationCode::PROTOCOL_VIOLATION,
                "control stream closed",
            ));
        }
        Ok(Step::Keep(State::Control {
            buf: buf[at..].to_vec(),
            setup,
        }))
    }

    /// One control message after setup: to the virtual stream of its request, or handled
    /// here. `Some` closes the session.
    fn route(
        &mut self,
        io: &mut dyn Streams,
        msg: Message,
        raw: Bytes,
        events: &mut Vec<PeerEvent>,
    ) -> Option<Step> {
        let now = self.now_ms;
        match msg {
            Message::Subscribe(_)
            | Message::TrackStatus(_)
            | Message::Fetch { .. }
            | Message::Publish { .. }
            | Message::PublishNamespace { .. }
            | Message::SubscribeNamespace { .. } => {
                let request = msg.request_id()?;
                if !self.take_request_id(request) {
                    return Some(Step::Close(
                        TerminationCode::INVALID_REQUEST_ID,
                        "a request id out of sequence",
                    ));
                }
                let v = virtual_stream(request);
                self.run(
                    io,
                    v,
                    State::Request(Vec::new()),
                    vec![raw],
                    PeerEnd::Open,
                    now,
                    events,
                );
            }
            Message::SubscribeOk { request_id, .. }
            | Message::RequestOk { request_id, .. }
            | Message::RequestError { request_id, .. }
            | Message::PublishDone { request_id, .. }
            | Message::FetchOk { request_id, .. }
            | Message::PublishOk { request_id, .. } => {
                let v = virtual_stream(request_id);
                if let Some(state) = self.ins.remove(&v) {
                    self.run(io, v, state, vec![raw], PeerEnd::Open, now, events);
                }
            }
            Message::RequestUpdate { request_id, .. } => {
                if !self.take_request_id(request_id) {
                    return Some(Step::Close(
                        TerminationCode::INVALID_REQUEST_ID,
                        "a request id out of sequence",
                    ));
                }
                let ok = Message::RequestOk {
                    request_id,
                    params: Params::default(),
                    props: Vec::new(),
                };
                if let Some(control) = self.peer_control {
                    self.write(io, control, &ok, false);
                }
            }
            Message::Unsubscribe { request_id }
            | Message::PublishNamespaceDone { request_id, .. } => {
                let end = if matches!(msg, Message::Unsubscribe { .. }) {
                    PeerEnd::Reset
                } else {
                    PeerEnd::Fin
                };
                let v = virtual_stream(request_id);
                if let Some(state) = self.ins.remove(&v) {
                    self.run(io, v, state, Vec::new(), end, now, events);
                }
            }
            Message::MaxRequestId(max) => self.peer_max_request = self.peer_max_request.max(max),
            Message::Goaway { uri, .. } => tracing::debug!(%uri, "peer is going away"),
            Message::PublishNamespaceCancel { .. }
            | Message::FetchCancel { .. }
            | Message::RequestsBlocked(_)
            | Message::UnsubscribeNamespace { .. } => {}
            _ => {
                return Some(Step::Close(
                    TerminationCode::PROTOCOL_VIOLATION,
                    "unexpected message on the control stream",
                ));
            }
        }
        None
    }

    /// A request id the peer may use now: of its parity (a client's even, a server's odd) and
    /// not naming a request still open. Its order is not checked: SUBSCRIBE_NAMESPACE streams
    /// and the control stream may arrive in any order.
    pub(super) fn take_request_id(&self, id: u64) -> bool {
        let parity = u64::from(!self.cfg.server);
        id % 2 == parity && !self.ins.contains_key(&virtual_stream(id))
    }

    /// Where a message for `id` goes, with the request id a response must name: a virtual
    /// stream's on the control stream; a 16 SUBSCRIBE_NAMESPACE stream's its own.
    pub(super) fn target(&self, id: StreamId) -> (StreamId, Option<u64>) {
        if !self.legacy() {
            return (id, None);
        }
        match virtual_request(id) {
            Some(r) => (self.peer_control.unwrap_or(id), Some(r)),
            None => (id, self.request_ids.get(&id).copied()),
        }
    }

    /// Our half of request stream `id` is done (a FIN; nothing for a virtual one).
    pub(super) fn finish(&self, io: &mut dyn Streams, id: StreamId) {
        if virtual_request(id).is_none() {
            io.write(id, Vec::new(), true);
        }
    }

    /// Abandon request stream `id` both ways; a virtual one of our subscription sends
    /// UNSUBSCRIBE.
    pub(super) fn abandon(&self, io: &mut dyn Streams, id: StreamId, unsubscribe: bool) {
        match virtual_request(id) {
            Some(request_id) if unsubscribe => {
                if let Some(control) = self.peer_control {
                    self.write(io, control, &Message::Unsubscribe { request_id }, false);
                }
            }
            Some(_) => {}
            None => {
                let code = self.stream_code(super::super::ResetCode::CANCELLED);
                io.reset(id, code);
                io.stop(id, code);
            }
        }
    }

    /// Ask the peer to stop sending on request stream `id` (nothing for a virtual one).
    pub(super) fn stop_request(&self, io: &mut dyn Streams, id: StreamId) {
        if virtual_request(id).is_none() {
            io.stop(id, self.stream_code(super::super::ResetCode::CANCELLED));
        }
    }
}
