//! The moq-transport session of one connection, sans IO, both roles, for drafts 16 to 19: on
//! 17+ a SETUP on a uni control stream each way and every request on a bidi stream of its own;
//! on 16 one control stream for the setup exchange and the requests, named by request id
//! (`control.rs` gives each a virtual stream, so the same states serve both); objects on
//! subgroup streams.
//!
//! Same shape as `lite::session`: each peer stream is in one [`State`], the step that runs it
//! returns a [`Step`], what the layer above must act on comes out as `model::PeerEvent`s, and
//! the layer above answers through the same functions (`accept_subscribe`, `announce_start`,
//! `deliver`, ...). The mapping to the model: a namespace tuple is a broadcast path (fields
//! joined by `/`, under the session's root), a track name a track, a group id a group
//! sequence, an object a frame. Objects go out on subgroup 0 with ids 0, 1, 2...; subgroups
//! come in as groups (the first stream of a group is taken, a second one is refused).
//!
//! Files: `control.rs` (draft 16's control stream), `serve.rs` (the peer's requests),
//! `ask.rs` (ours), `groups.rs` (subgroup streams).

mod ask;
mod control;
mod groups;
mod serve;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;

use super::message::{Message, Namespace};
use super::params::{self, Kvp};
use super::{DecodeError, ResetCode, TerminationCode, Version, data};
use crate::model::{ErrorCode, PeerEvent, SessionLimits as Limits, path};
use crate::stream::{Dir, End, StreamId, Streams};

/// How a session starts.
#[derive(Clone, Debug, Default)]
pub struct Config {
    pub server: bool,
    /// A client's PATH setup option on raw QUIC (`/root?jwt=...`; WebTransport has the URL).
    pub setup_path: Option<String>,
    /// The session rides WebTransport: stream error codes are mapped into its range.
    pub webtransport: bool,
    pub limits: Limits,
}

/// What a state makes of new bytes on its stream.
enum Step {
    Keep(State),
    Done,
    /// Move to `State` and run it over the same bytes.
    Next(State, Vec<Bytes>),
    /// Refuse the stream with this request-level code; the session goes on.
    Refuse(u64),
    /// Close the session with this termination code.
    Close(u64, &'static str),
}

/// The state of one stream we read.
enum State {
    /// A peer uni stream until its type is known (the bytes stay for the next state).
    UniType(Vec<u8>),
    /// The peer's control stream: SETUP, then at most a GOAWAY.
    Control {
        buf: Vec<u8>,
        setup: bool,
    },
    Group(groups::GroupIn),
    /// A peer request stream until its first message.
    Request(Vec<u8>),
    /// A peer's SUBSCRIBE `id`: its updates are answered; a reset cancels it.
    Subscribed {
        buf: Vec<u8>,
        id: u64,
    },
    /// A peer's SUBSCRIBE_NAMESPACE: its updates are answered.
    Interest(Vec<u8>),
    /// A peer's PUBLISH of a track of `path`: its PUBLISH_DONE or end ends it.
    Publishing {
        buf: Vec<u8>,
        path: Arc<str>,
        track: Arc<str>,
    },
    /// A peer's PUBLISH_NAMESPACE of `path`: its end withdraws it.
    Published {
        buf: Vec<u8>,
        path: Arc<str>,
    },
    /// Responses to our SUBSCRIBE_NAMESPACE for the absolute `prefix`.
    OurInterest {
        buf: Vec<u8>,
        prefix: String,
        answered: bool,
        active: HashSet<Arc<str>>,
    },
    /// Responses to our SUBSCRIBE `up`.
    OurSubscribe {
        buf: Vec<u8>,
        up: u64,
    },
    Discard,
}

/// How a read left a peer stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PeerEnd {
    Open,
    Fin,
    Reset,
}

/// Control streams go first.
const CONTROL_PRIORITY: i32 = i32::MAX;

/// The moq-transport session of one connection. See the module docs.
pub struct Session {
    cfg: Config,
    version: Version,
    started: bool,
    root: String,
    root_fixed: bool,
    ready: bool,
    token: Option<String>,
    /// The peer's control stream, once its SETUP came (16: the one control stream, ours too).
    peer_control: Option<StreamId>,
    /// 16: the request ids our responses name on streams of the peer's requests.
    request_ids: HashMap<StreamId, u64>,
    /// 16: the peer's MAX_REQUEST_ID (none given: no limit, as the reference reads it).
    peer_max_request: u64,
    ins: HashMap<StreamId, State>,
    /// Group streams waiting for the SUBSCRIBE_OK that names their alias.
    parked: HashMap<StreamId, (groups::GroupIn, PeerEnd)>,
    downs: HashMap<u64, groups::Down>,
    next_down: u64,
    /// Our subscriptions: their request streams, and the aliases the publisher gave them.
    ups: HashMap<u64, groups::Up>,
    aliases: HashMap<u64, u64>,
    next_up: u64,
    /// Our next request id: even from 0 for a client, odd from 1 for a server.
    next_request: u64,
    /// The peer's SUBSCRIBE_NAMESPACE requests we answer, by stream.
    interests: Vec<serve::Interest>,
    /// Tracks the peer offers with PUBLISH: their streams and aliases, and our subscription
    /// once the layer above wants one.
    offers: HashMap<(Arc<str>, Arc<str>), serve::Offer>,
    /// The peer's FETCHes waiting for their group, by stream.
    fetches: HashMap<StreamId, serve::FetchAsk>,
    /// Broadcasts the peer publishes, with how many of its requests say so.
    published: HashMap<Arc<str>, u32>,
    decode_errors: u64,
    partial_bytes: u64,
    /// The peer's announce changes, and the wall time of the read being handled.
    announce_budget: crate::model::AnnounceBudget,
    now_ms: u64,
    /// Group streams open per (up, group): a second subgroup of a group is refused.
    open_groups: HashSet<(u64, u64)>,
}

impl Session {
    pub fn new(cfg: Config) -> Self {
        let next_request = u64::from(cfg.server);
        Self {
            cfg,
            version: Version::Draft18,
            started: false,
            root: String::new(),
            root_fixed: false,
            ready: false,
            token: None,
            peer_control: None,
            request_ids: HashMap::new(),
            peer_max_request: u64::MAX,
            ins: HashMap::new(),
            parked: HashMap::new(),
            downs: HashMap::new(),
            next_down: 0,
            ups: HashMap::new(),
            aliases: HashMap::new(),
            next_up: 0,
            next_request,
            interests: Vec::new(),
            fetches: HashMap::new(),
            offers: HashMap::new(),
            published: HashMap::new(),
            decode_errors: 0,
            partial_bytes: 0,
            announce_budget: Default::default(),
            now_ms: 0,
            open_groups: HashSet::new(),
        }
    }

    pub fn version(&self) -> Version {
        self.version
    }

    pub fn is_server(&self) -> bool {
        self.cfg.server
    }

    pub fn is_ready(&self) -> bool {
        self.ready
    }

    pub fn root(&self) -> &str {
        &self.root
    }

    /// A server's: the token of the client's SETUP (PATH `?jwt=`, or AUTHORIZATION_TOKEN).
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// Before setup only the peer's control stream (a uni stream) is taken; requests wait in
    /// QUIC until the SETUPs are exchanged.
    pub fn accepts(&self, dir: Dir) -> bool {
        self.ready
            || (self.started
                && if self.legacy() {
                    dir == Dir::Bi && self.cfg.server && self.peer_control.is_none()
                } else {
                    dir == Dir::Uni
                })
    }

    pub fn open_peer(&mut self, id: StreamId) {
        let state = match id.dir() {
            Dir::Bi if self.legacy() && self.cfg.server && self.peer_control.is_none() => {
                self.peer_control = Some(id);
                State::Control {
                    buf: Vec::new(),
                    setup: false,
                }
            }
            Dir::Uni => State::UniType(Vec::new()),
            Dir::Bi => State::Request(Vec::new()),
        };
        self.ins.insert(id, state);
    }

    pub fn reads(&self, id: StreamId) -> bool {
        self.ins.contains_key(&id)
    }

    /// The connection is up: our SETUP goes out on our control stream. A WebTransport
    /// server's root is the URL path.
    pub fn start(
        &mut self,
        io: &mut dyn Streams,
        version: Version,
        root: Option<String>,
        _events: &mut Vec<PeerEvent>,
    ) {
        self.version = version;
        self.started = true;
        if let Some(root) = root {
            self.root = root;
            self.root_fixed = true;
        }
        let mut options = Vec::new();
        if !self.cfg.server
            && !self.cfg.webtransport
            && let Some(p) = self.cfg.setup_path.clone().filter(|p| !p.is_empty())
        {
            let p = if p.starts_with('/') {
                p
            } else {
                format!("/{p}")
            };
            options.push((params::setup::PATH, Kvp::Bytes(p.into_bytes())));
        }
        options.push((
            params::setup::MOQT_IMPLEMENTATION,
            Kvp::Bytes(b"moq-relay".to_vec()),
        ));
        if self.legacy() {
            self.start_control(io, options);
            return;
        }
        let Some(id) = io.open(Dir::Uni) else {
            io.close(TerminationCode::INTERNAL_ERROR, b"no stream for SETUP");
            return;
        };
        io.set_priority(id, CONTROL_PRIORITY);
        self.write(io, id, &Message::Setup(options), false);
    }

    /// New bytes on `id`, and how the read left it. `now_ms` stamps frames.
    pub fn on_stream(
        &mut self,
        io: &mut dyn Streams,
        id: StreamId,
        chunks: Vec<Bytes>,
        end: End,
        now_ms: u64,
        events: &mut Vec<PeerEvent>,
    ) {
        let Some(state) = self.ins.remove(&id) else {
            return;
        };
        self.now_ms = now_ms;
        let end = match end {
            End::Open => PeerEnd::Open,
            End::Fin => PeerEnd::Fin,
            End::Reset(_) => PeerEnd::Reset,
        };
        self.run(io, id, state, chunks, end, now_ms, events);
        // A SUBSCRIBE_OK (or its refusal) may have settled the aliases parked streams wait on.
        if !self.parked.is_empty() && self.ups.values().all(|u| u.alias.is_some()) {
            for (pid, (g, pend)) in std::mem::take(&mut self.parked) {
                self.run(io, pid, State::Group(g), Vec::new(), pend, now_ms, events);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn run(
        &mut self,
        io: &mut dyn Streams,
        id: StreamId,
        mut state: State,
        mut chunks: Vec<Bytes>,
        end: PeerEnd,
        now_ms: u64,
        events: &mut Vec<PeerEvent>,
    ) {
        loop {
            let step = self
                .step(io, id, state, chunks, end, now_ms, events)
                .unwrap_or_else(|e| {
                    tracing::debug!(stream = %id, error = %e, "stream error");
                    self.decode_errors += 1;
                    if self.peer_control == Some(id) || !self.ready {
                        Step::Close(e.close_code(), "protocol violation")
                    } else {
                        Step::Refuse(ResetCode::INTERNAL_ERROR)
                    }
                });
            match step {
                Step::Next(next, rest) => {
                    state = next;
                    chunks = rest;
                }
                Step::Keep(State::Group(g)) if end != PeerEnd::Open => {
                    // Only a parked group keeps its state past the stream's end.
                    self.parked.insert(id, (g, end));
                    return;
                }
                Step::Keep(state) => {
                    if end == PeerEnd::Open {
                        self.ins.insert(id, state);
                    }
                    return;
                }
                Step::Done => return,
                Step::Refuse(code) => {
                    self.refuse_stream(io, id, code, events);
                    return;
                }
                Step::Close(code, reason) => {
                    tracing::debug!(code, reason, "closing session");
                    io.close(code, reason.as_bytes());
                    return;
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn step(
        &mut self,
        io: &mut dyn Streams,
        id: StreamId,
        state: State,
        chunks: Vec<Bytes>,
        end: PeerEnd,
        now_ms: u64,
        events: &mut Vec<PeerEvent>,
    ) -> Result<Step, DecodeError> {
        let max = self.cfg.limits.max_message;
        match state {
            State::UniType(mut buf) => {
                extend(&mut buf, &chunks, max)?;
                let Some(kind) = Message::peek_code(&buf, self.version)? else {
                    return short(end, State::UniType(buf));
                };
                let rest = vec![Bytes::from(buf)];
                Ok(if kind == super::message::code::SETUP {
                    Step::Next(
                        State::Control {
                            buf: Vec::new(),
                            setup: false,
                        },
                        rest,
                    )
                } else if data::is_subgroup(kind, self.version) {
                    Step::Next(State::Group(self.group_state()), rest)
                } else if kind == data::PADDING && self.version >= Version::Draft18 {
                    Step::Keep(State::Discard)
                } else if kind == data::FETCH_HEADER {
                    // We fetch nothing from a peer.
                    Step::Refuse(ResetCode::CANCELLED)
                } else {
                    Step::Close(TerminationCode::PROTOCOL_VIOLATION, "unknown stream type")
                })
            }
            State::Control { mut buf, setup } if self.legacy() => {
                extend(&mut buf, &chunks, max)?;
                self.control_legacy(io, id, buf, setup, end, events)
            }
            State::Control { mut buf, setup } => {
                extend(&mut buf, &chunks, max)?;
                self.control(id, buf, setup, end, events)
            }
            State::Group(g) => self.group_in(id, g, chunks, end, now_ms, events),
            State::Request(mut buf) => {
                extend(&mut buf, &chunks, max)?;
                self.request(io, id, buf, end, events)
            }
            State::Subscribed { mut buf, id: sub } => {
                extend(&mut buf, &chunks, max)?;
                self.subscribed(io, id, buf, sub, end, events)
            }
            State::Interest(mut buf) => {
                extend(&mut buf, &chunks, max)?;
                self.interest_updates(io, id, buf, end)
            }
            State::Published { mut buf, path } => {
                extend(&mut buf, &chunks, max)?;
                self.published_updates(io, id, buf, path, end, events)
            }
            State::Publishing {
                mut buf,
                path,
                track,
            } => {
                extend(&mut buf, &chunks, max)?;
                self.publishing(io, id, buf, path, track, end, events)
            }
            State::OurInterest {
                mut buf,
                prefix,
                answered,
                active,
            } => {
                extend(&mut buf, &chunks, max)?;
                self.our_interest(io, id, buf, prefix, answered, active, end, events)
            }
            State::OurSubscribe { mut buf, up } => {
                extend(&mut buf, &chunks, max)?;
                self.our_subscribe(io, id, buf, up, end, events)
            }
            State::Discard => Ok(Step::Keep(State::Discard)),
        }
    }

    /// The peer's control stream: its SETUP (once), then GOAWAY, which is honoured by going
    /// on until the peer closes.
    fn control(
        &mut self,
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
            at += used;
            match msg {
                Message::Setup(options) if !setup => {
                    if self.peer_control.is_some() {
                        return Ok(Step::Close(
                            TerminationCode::PROTOCOL_VIOLATION,
                            "a second SETUP",
                        ));
                    }
                    setup = true;
                    self.peer_control = Some(id);
                    if let Err(reason) = self.peer_setup(&options) {
                        return Ok(Step::Close(TerminationCode::MALFORMED_PATH, reason));
                    }
                    self.ready = true;
                    events.push(PeerEvent::Ready);
                }
                Message::Goaway { uri, .. } if setup => {
                    tracing::debug!(%uri, "peer is going away");
                }
                _ => {
                    return Ok(Step::Close(
                        TerminationCode::PROTOCOL_VIOLATION,
                        "unexpected message on the control stream",
                    ));
                }
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

    /// The peer's SETUP options: a server takes its root and token from PATH and
    /// AUTHORIZATION_TOKEN (raw QUIC; WebTransport had the URL).
    fn peer_setup(&mut self, options: &[(u64, Kvp)]) -> Result<(), &'static str> {
        self.peer_limits(options);
        if !self.cfg.server {
            return Ok(());
        }
        for (kind, value) in options {
            match (*kind, value) {
                (params::setup::PATH, Kvp::Bytes(raw)) if !self.root_fixed => {
                    let raw = std::str::from_utf8(raw).map_err(|_| "PATH is not UTF-8")?;
                    let (p, query) = raw.split_once('?').unwrap_or((raw, ""));
                    self.root = path::normalize(p, self.cfg.limits.max_path)
                        .map_err(|_| "PATH too long")?;
                    if let Some(Some(jwt)) = path::query_param(query, "jwt") {
                        self.token = Some(jwt);
                    }
                }
                (params::setup::AUTHORIZATION_TOKEN, Kvp::Bytes(raw)) => {
                    if let Ok(Some(t)) = params::token_of(raw, self.version) {
                        self.token = Some(t);
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Options both roles read: the peer's MAX_REQUEST_ID (16).
    fn peer_limits(&mut self, options: &[(u64, Kvp)]) {
        for (kind, value) in options {
            if let (params::setup::MAX_REQUEST_ID, Kvp::Int(max)) = (*kind, value) {
                self.peer_max_request = *max;
            }
        }
    }

    /// Write `msg` on `id` (on 16 a response names its request; a virtual stream's go on the
    /// control stream, which is never finished); an encode error resets the stream.
    fn write(&self, io: &mut dyn Streams, id: StreamId, msg: &Message, fin: bool) {
        let mut buf = Vec::new();
        let (to, request) = self.target(id);
        let encoded = match request {
            Some(r) => {
                let mut named = msg.clone();
                named.set_response_id(r);
                named.encode(self.version, &mut buf)
            }
            None => msg.encode(self.version, &mut buf),
        };
        let fin = fin && to == id;
        match encoded {
            Ok(()) => io.write(to, vec![Bytes::from(buf)], fin),
            Err(e) => {
                tracing::warn!(error = %e, "encode failed");
                io.reset(id, self.stream_code(ResetCode::INTERNAL_ERROR));
            }
        }
    }

    /// A reset or STOP_SENDING code as the transport carries it: over WebTransport mapped into
    /// its application range.
    fn stream_code(&self, code: u64) -> u64 {
        if self.cfg.webtransport {
            ErrorCode(code as u32).to_stream_code()
        } else {
            code
        }
    }

    /// Our next request id.
    fn request_id(&mut self) -> u64 {
        let id = self.next_request;
        self.next_request += 2;
        id
    }

    /// A namespace tuple under the root as an absolute path.
    fn path_of(&self, ns: &Namespace) -> Result<String, DecodeError> {
        let mut rel = String::new();
        for field in ns {
            let f = std::str::from_utf8(field).map_err(|_| DecodeError::InvalidUtf8)?;
            if f.is_empty() || f.contains('/') {
                return Err(DecodeError::InvalidNamespace);
            }
            if !rel.is_empty() {
                rel.push('/');
            }
            rel.push_str(f);
        }
        path::join(&self.root, &rel, self.cfg.limits.max_path).map_err(|_| DecodeError::TooLong)
    }

    /// Refuse a stream: a group stream is stopped; a request is answered REQUEST_ERROR and
    /// finished; what it stood for is forgotten.
    fn refuse_stream(
        &mut self,
        io: &mut dyn Streams,
        id: StreamId,
        code: u64,
        events: &mut Vec<PeerEvent>,
    ) {
        tracing::debug!(stream = %id, code, "refusing stream");
        self.forget_stream(id, events);
        if id.dir() == Dir::Uni {
            io.stop(id, self.stream_code(code));
        } else {
            self.error(io, id, code);
        }
        self.request_ids.remove(&id);
    }

    /// The connection is gone: what the layer above must forget of it.
    pub fn lost(&mut self) -> Vec<PeerEvent> {
        let mut events = Vec::new();
        for (path, _) in self.published.drain() {
            events.push(PeerEvent::Announced {
                path,
                active: false,
                hops: Vec::new(),
            });
        }
        for (id, _) in self.downs.drain() {
            events.push(PeerEvent::Unsubscribe { id });
        }
        self.ins.clear();
        self.parked.clear();
        self.request_ids.clear();
        self.ups.clear();
        self.aliases.clear();
        self.interests.clear();
        self.fetches.clear();
        self.offers.clear();
        self.open_groups.clear();
        self.partial_bytes = 0;
        events
    }

    pub fn streams_read(&self) -> usize {
        self.ins.len() + self.parked.len()
    }

    pub fn subscriptions(&self) -> usize {
        self.downs.len()
    }

    pub fn upstream_subscriptions(&self) -> usize {
        self.ups.len()
    }

    pub fn decode_errors(&self) -> u64 {
        self.decode_errors
    }

    pub fn announce_requests(&self) -> usize {
        self.interests.len()
    }
}

/// An incomplete message: fine while the stream is open, an error at its FIN.
fn short(end: PeerEnd, state: State) -> Result<Step, DecodeError> {
    match end {
        PeerEnd::Open => Ok(Step::Keep(state)),
        PeerEnd::Fin => Err(DecodeError::Short),
        PeerEnd::Reset => Ok(Step::Done),
    }
}

/// Append `chunks` to a request stream's buffer, which holds at most four messages.
fn extend(buf: &mut Vec<u8>, chunks: &[Bytes], max: usize) -> Result<(), DecodeError> {
    for c in chunks {
        if buf.len() + c.len() > max.saturating_mul(4) {
            return Err(DecodeError::TooLarge);
        }
        buf.extend_from_slice(c);
    }
    Ok(())
}
