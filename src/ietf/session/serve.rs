//! The peer's requests: SUBSCRIBE, SUBSCRIBE_NAMESPACE and PUBLISH_NAMESPACE, each on a bidi
//! stream of its own; what a relay does not serve (FETCH, TRACK_STATUS, PUBLISH,
//! SUBSCRIBE_TRACKS) is refused NOT_SUPPORTED.

use std::collections::HashSet;
use std::sync::Arc;

use super::super::data;
use super::super::message::{FetchKind, Message, Namespace};
use super::super::params::{Filter, Location, Params};
use super::super::{DecodeError, DoneCode, RequestCode, ResetCode, TerminationCode, Version};
use super::{PeerEnd, Session, State, Step, groups, short};
use crate::model::{ErrorCode, PeerEvent, TrackInfo, path};
use crate::stream::{Dir, StreamId, Streams};

/// A peer's SUBSCRIBE_NAMESPACE we keep answering.
pub(super) struct Interest {
    pub(super) stream: StreamId,
    prefix: String,
    active: HashSet<Arc<str>>,
}

/// A track the peer offers with PUBLISH.
pub(super) struct Offer {
    pub(super) stream: StreamId,
    pub(super) request_id: u64,
    pub(super) alias: u64,
    /// Our subscription to it, once the layer above asked.
    pub(super) up: Option<u64>,
}

/// A standalone FETCH of one group waiting for the layer above: objects `from` up to `to`
/// (exclusive; `None`: the rest of the group).
pub(super) struct FetchAsk {
    request_id: u64,
    group: u64,
    from: u64,
    to: Option<u64>,
}

/// EXCESSIVE_LOAD (17+), for requests past a session's limits.
const EXCESSIVE_LOAD: u64 = 0x9;

/// `path` relative to `prefix` as a namespace tuple.
fn suffix(path_: &str, prefix: &str) -> Namespace {
    path::strip_prefix(path_, prefix)
        .unwrap_or_default()
        .split('/')
        .filter(|f| !f.is_empty())
        .map(|f| f.as_bytes().to_vec())
        .collect()
}

fn ok() -> Message {
    Message::RequestOk {
        request_id: 0,
        params: Params::default(),
        props: Vec::new(),
    }
}

impl Session {
    /// A peer request stream's first message decides what it is.
    pub(super) fn request(
        &mut self,
        io: &mut dyn Streams,
        id: StreamId,
        buf: Vec<u8>,
        end: PeerEnd,
        events: &mut Vec<PeerEvent>,
    ) -> Result<Step, DecodeError> {
        let Some((msg, used)) = Message::decode(&buf, self.version, self.cfg.limits.max_message)?
        else {
            return short(end, State::Request(buf));
        };
        let rest = buf[used..].to_vec();
        let limits = self.cfg.limits;
        if self.legacy()
            && super::control::virtual_request(id).is_none()
            && let Some(r) = msg.request_id()
        {
            if !self.take_request_id(r) {
                return Ok(Step::Close(
                    TerminationCode::INVALID_REQUEST_ID,
                    "a request id out of sequence",
                ));
            }
            self.request_ids.insert(id, r);
        }
        match msg {
            Message::Subscribe(s) => {
                if self.downs.len() >= limits.max_subscriptions {
                    return Ok(Step::Refuse(EXCESSIVE_LOAD));
                }
                let path = self.path_of(&s.namespace)?;
                let track = String::from_utf8(s.name).map_err(|_| DecodeError::InvalidUtf8)?;
                let sub = self.next_down;
                self.next_down += 1;
                let priority = 255 - s.params.subscriber_priority.unwrap_or(128);
                self.downs.insert(sub, groups::Down::new(id, priority));
                let start = match s.params.filter {
                    Some(Filter::AbsoluteStart(l) | Filter::AbsoluteRange(l, _)) => Some(l.group),
                    _ => None,
                };
                events.push(PeerEvent::Subscribe {
                    id: sub,
                    path,
                    track,
                    start,
                });
                self.subscribed(io, id, rest, sub, end, events)
            }
            Message::SubscribeNamespace { prefix, .. } => {
                if self.interests.len() >= limits.max_announces {
                    return Ok(Step::Refuse(EXCESSIVE_LOAD));
                }
                let prefix = self.path_of(&prefix)?;
                events.push(PeerEvent::AnnounceInterest {
                    request: id.into(),
                    prefix,
                    exclude_hop: 0,
                });
                self.interest_updates(io, id, rest, end)
            }
            Message::PublishNamespace { namespace, .. } => {
                let path: Arc<str> = self.path_of(&namespace)?.into();
                if let Some(step) = self.change_refused(&path, true) {
                    return Ok(step);
                }
                self.write(io, id, &ok(), false);
                self.source(&path, true, events);
                self.published_updates(io, id, rest, path, end, events)
            }
            // Whether the track can be had: the layer above answers as it does TRACK_INFO.
            Message::TrackStatus(s) => {
                let path = self.path_of(&s.namespace)?;
                let track = String::from_utf8(s.name).map_err(|_| DecodeError::InvalidUtf8)?;
                events.push(PeerEvent::InfoWanted {
                    request: id.into(),
                    path: path.into(),
                    track: track.into(),
                });
                Ok(Step::Keep(State::Discard))
            }
            // A standalone FETCH within one group is served from the group cache.
            Message::Fetch {
                request_id,
                kind:
                    FetchKind::Standalone {
                        namespace,
                        name,
                        start,
                        end,
                    },
                ..
            } if end.group == start.group || (end.group == start.group + 1 && end.object == 0) => {
                let path = self.path_of(&namespace)?;
                let track = String::from_utf8(name).map_err(|_| DecodeError::InvalidUtf8)?;
                let to = (end.group == start.group && end.object > 0).then_some(end.object);
                self.fetches.insert(
                    id,
                    FetchAsk {
                        request_id,
                        group: start.group,
                        from: start.object,
                        to,
                    },
                );
                events.push(PeerEvent::Fetch {
                    request: id.into(),
                    path,
                    track,
                    group: start.group,
                });
                Ok(Step::Keep(State::Discard))
            }
            // A track pushed to us: taken with forward 0, and forwarded once wanted.
            Message::Publish {
                request_id,
                namespace,
                name,
                alias,
                ..
            } => {
                let path: Arc<str> = self.path_of(&namespace)?.into();
                let track: Arc<str> = String::from_utf8(name)
                    .map_err(|_| DecodeError::InvalidUtf8)?
                    .into();
                let key = (path.clone(), track.clone());
                if self.aliases.contains_key(&alias)
                    || self.offers.values().any(|o| o.alias == alias)
                {
                    return Ok(Step::Close(
                        TerminationCode::DUPLICATE_TRACK_ALIAS,
                        "duplicate track alias",
                    ));
                }
                if self.offers.contains_key(&key) {
                    return Ok(Step::Refuse(RequestCode::from_model(ErrorCode::DUPLICATE)));
                }
                if let Some(step) = self.change_refused(&path, true) {
                    return Ok(step);
                }
                let params = Params {
                    forward: Some(false),
                    ..Params::default()
                };
                let answer = if self.version >= Version::Draft18 {
                    Message::RequestOk {
                        request_id: 0,
                        params,
                        props: Vec::new(),
                    }
                } else {
                    Message::PublishOk {
                        request_id: 0,
                        params,
                    }
                };
                self.write(io, id, &answer, false);
                self.offers.insert(
                    key,
                    Offer {
                        stream: id,
                        request_id,
                        alias,
                        up: None,
                    },
                );
                self.source(&path, true, events);
                self.publishing(io, id, rest, path, track, end, events)
            }
            Message::Fetch { .. } | Message::SubscribeTracks { .. } => {
                Ok(Step::Refuse(RequestCode::NOT_SUPPORTED))
            }
            _ => Ok(Step::Close(
                TerminationCode::PROTOCOL_VIOLATION,
                "not a request",
            )),
        }
    }

    /// One announce change from the peer: within its rate (else the session is closed) and,
    /// for a broadcast new to the session, within `max_broadcasts` (else it is refused).
    pub(super) fn change_refused(&mut self, path: &Arc<str>, active: bool) -> Option<Step> {
        let limits = self.cfg.limits;
        if !self.announce_budget.allow(&limits, self.now_ms) {
            tracing::debug!(limit = "max_announce_rate", "closing session");
            return Some(Step::Close(
                TerminationCode::PROTOCOL_VIOLATION,
                "announce changes past the rate",
            ));
        }
        if active
            && !self.published.contains_key(path)
            && self.published.len() >= limits.max_broadcasts
        {
            tracing::debug!(limit = "max_broadcasts", "refusing an announcement");
            return Some(Step::Refuse(EXCESSIVE_LOAD));
        }
        None
    }

    /// One more source of `path` from the peer, or one fewer: the layer above hears of the
    /// first and the last.
    pub(super) fn source(&mut self, path: &Arc<str>, active: bool, events: &mut Vec<PeerEvent>) {
        let count = self.published.entry(path.clone()).or_insert(0);
        let announce = if active {
            *count += 1;
            *count == 1
        } else {
            *count = count.saturating_sub(1);
            *count == 0
        };
        if *count == 0 {
            self.published.remove(path);
        }
        if announce {
            events.push(PeerEvent::Announced {
                path: path.clone(),
                active,
                hops: Vec::new(),
            });
        }
    }

    /// A peer's PUBLISH stream after PUBLISH: the answers to our REQUEST_UPDATEs, its
    /// updates, and PUBLISH_DONE or the stream's end, which end the track.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn publishing(
        &mut self,
        io: &mut dyn Streams,
        id: StreamId,
        buf: Vec<u8>,
        path: Arc<str>,
        track: Arc<str>,
        end: PeerEnd,
        events: &mut Vec<PeerEvent>,
    ) -> Result<Step, DecodeError> {
        let mut at = 0;
        let mut done = None;
        while let Some((msg, used)) =
            Message::decode(&buf[at..], self.version, self.cfg.limits.max_message)?
        {
            at += used;
            match msg {
                Message::RequestOk { .. } | Message::RequestError { .. } => {}
                Message::RequestUpdate { .. } => self.write(io, id, &ok(), false),
                Message::PublishDone { status, .. } => {
                    done = Some(match status {
                        DoneCode::TRACK_ENDED | DoneCode::SUBSCRIPTION_ENDED => ErrorCode::CANCEL,
                        _ => ErrorCode::DROPPED,
                    });
                    break;
                }
                other => return Err(DecodeError::UnexpectedMessage(other.code(self.version))),
            }
        }
        let done = done.or(match end {
            PeerEnd::Open => None,
            PeerEnd::Fin => Some(ErrorCode::CANCEL),
            PeerEnd::Reset => Some(ErrorCode::DROPPED),
        });
        let Some(code) = done else {
            return Ok(Step::Keep(State::Publishing {
                buf: buf[at..].to_vec(),
                path,
                track,
            }));
        };
        if let Some(offer) = self.offers.remove(&(path.clone(), track)) {
            self.aliases.remove(&offer.alias);
            if let Some(up) = offer.up {
                self.ups.remove(&up);
                events.push(PeerEvent::UpstreamEnded { up, code });
            }
        }
        self.source(&path, false, events);
        self.finish(io, id);
        Ok(Step::Done)
    }

    /// Answer REQUEST_UPDATEs on a request stream; anything else breaks the protocol.
    fn updates(
        &self,
        io: &mut dyn Streams,
        id: StreamId,
        buf: &[u8],
    ) -> Result<usize, DecodeError> {
        let mut at = 0;
        while let Some((msg, used)) =
            Message::decode(&buf[at..], self.version, self.cfg.limits.max_message)?
        {
            at += used;
            match msg {
                Message::RequestUpdate { .. } => self.write(io, id, &ok(), false),
                other => return Err(DecodeError::UnexpectedMessage(other.code(self.version))),
            }
        }
        Ok(at)
    }

    /// A peer's subscription stream after SUBSCRIBE: updates, and a reset that cancels it (a
    /// FIN only says no more updates come).
    pub(super) fn subscribed(
        &mut self,
        io: &mut dyn Streams,
        id: StreamId,
        buf: Vec<u8>,
        sub: u64,
        end: PeerEnd,
        events: &mut Vec<PeerEvent>,
    ) -> Result<Step, DecodeError> {
        let used = self.updates(io, id, &buf)?;
        match end {
            PeerEnd::Open => Ok(Step::Keep(State::Subscribed {
                buf: buf[used..].to_vec(),
                id: sub,
            })),
            PeerEnd::Fin => Ok(Step::Done),
            PeerEnd::Reset => {
                self.cancel_down(io, sub, events);
                Ok(Step::Done)
            }
        }
    }

    /// The peer gave up subscription `sub`: its groups and stream are reset.
    pub(super) fn cancel_down(
        &mut self,
        io: &mut dyn Streams,
        sub: u64,
        events: &mut Vec<PeerEvent>,
    ) {
        if let Some(down) = self.downs.remove(&sub) {
            for stream in down.flight.streams() {
                io.reset(stream, self.stream_code(ResetCode::CANCELLED));
            }
            self.abandon(io, down.stream, false);
            events.push(PeerEvent::Unsubscribe { id: sub });
        }
    }

    /// A peer's SUBSCRIBE_NAMESPACE stream: updates, and its end (a reset; on 17-18 a FIN too).
    pub(super) fn interest_updates(
        &mut self,
        io: &mut dyn Streams,
        id: StreamId,
        buf: Vec<u8>,
        end: PeerEnd,
    ) -> Result<Step, DecodeError> {
        let used = self.updates(io, id, &buf)?;
        match end {
            PeerEnd::Open => Ok(Step::Keep(State::Interest(buf[used..].to_vec()))),
            PeerEnd::Fin if self.version >= Version::Draft19 => Ok(Step::Done),
            PeerEnd::Fin | PeerEnd::Reset => {
                self.interests.retain(|i| i.stream != id);
                self.request_ids.remove(&id);
                self.finish(io, id);
                Ok(Step::Done)
            }
        }
    }

    /// A peer's PUBLISH_NAMESPACE stream: updates, and its end withdraws the namespace.
    pub(super) fn published_updates(
        &mut self,
        io: &mut dyn Streams,
        id: StreamId,
        buf: Vec<u8>,
        path: Arc<str>,
        end: PeerEnd,
        events: &mut Vec<PeerEvent>,
    ) -> Result<Step, DecodeError> {
        let used = self.updates(io, id, &buf)?;
        if end == PeerEnd::Open {
            return Ok(Step::Keep(State::Published {
                buf: buf[used..].to_vec(),
                path,
            }));
        }
        if let Some(step) = self.change_refused(&path, false) {
            return Ok(step);
        }
        self.source(&path, false, events);
        self.finish(io, id);
        Ok(Step::Done)
    }

    /// Answer SUBSCRIBE_NAMESPACE `request` with the broadcasts active now under `prefix`
    /// (REQUEST_OK, then a NAMESPACE each); later changes go out through [`Self::announce`].
    pub fn announce_start<'a>(
        &mut self,
        io: &mut dyn Streams,
        request: StreamId,
        prefix: &str,
        _exclude_hop: u64,
        active: impl IntoIterator<Item = (&'a Arc<str>, &'a [u64])>,
    ) {
        let mut buf = Vec::new();
        let mut set = HashSet::new();
        let mut answer = ok();
        if let (_, Some(r)) = self.target(request) {
            answer.set_response_id(r);
        }
        let res = (|| {
            answer.encode(self.version, &mut buf)?;
            for (p, _) in active {
                if path::has_prefix(p, prefix) && set.insert(p.clone()) {
                    Message::Namespace(suffix(p, prefix)).encode(self.version, &mut buf)?;
                }
            }
            Ok::<_, super::super::EncodeError>(())
        })();
        if res.is_err() {
            self.refuse(io, request, ErrorCode::ENCODE);
            return;
        }
        self.interests.push(Interest {
            stream: request,
            prefix: prefix.to_owned(),
            active: set,
        });
        io.set_priority(request, super::CONTROL_PRIORITY);
        io.write(request, vec![buf.into()], false);
    }

    /// A broadcast became active or ended: NAMESPACE or NAMESPACE_DONE on each of the peer's
    /// SUBSCRIBE_NAMESPACE streams that covers it, once per change.
    pub fn announce(
        &mut self,
        io: &mut dyn Streams,
        path_: &Arc<str>,
        _hops: &[u64],
        active: bool,
    ) {
        let version = self.version;
        for i in &mut self.interests {
            if !path::has_prefix(path_, &i.prefix) {
                continue;
            }
            let changed = if active {
                i.active.insert(path_.clone())
            } else {
                i.active.remove(path_)
            };
            if !changed {
                continue;
            }
            let ns = suffix(path_, &i.prefix);
            let msg = if active {
                Message::Namespace(ns)
            } else {
                Message::NamespaceDone(ns)
            };
            let mut buf = Vec::new();
            if msg.encode(version, &mut buf).is_ok() {
                io.write(i.stream, vec![buf.into()], false);
            }
        }
    }

    /// The layer above takes subscription `id`: SUBSCRIBE_OK, with the subscription's id as
    /// its track alias.
    pub fn accept_subscribe(&mut self, io: &mut dyn Streams, id: u64) -> bool {
        let Some(down) = self.downs.get_mut(&id) else {
            return false;
        };
        if down.accepted {
            return true;
        }
        down.accepted = true;
        let stream = down.stream;
        let msg = Message::SubscribeOk {
            request_id: 0,
            alias: id,
            params: Params::default(),
            props: Vec::new(),
        };
        self.write(io, stream, &msg, false);
        true
    }

    pub fn refuse_subscribe(&mut self, io: &mut dyn Streams, id: u64, code: ErrorCode) {
        if let Some(down) = self.downs.remove(&id) {
            self.ins.remove(&down.stream);
            self.error(io, down.stream, RequestCode::from_model(code));
        }
    }

    /// REQUEST_ERROR and the end of our half of request stream `id`; its peer half is stopped.
    pub(super) fn error(&self, io: &mut dyn Streams, id: StreamId, code: u64) {
        let msg = Message::RequestError {
            request_id: 0,
            code,
            retry: 0,
            reason: String::new(),
        };
        self.write(io, id, &msg, true);
        self.stop_request(io, id);
    }

    /// Refuse a request of the peer (`request`, a stream): a group stream is stopped, a
    /// request answered REQUEST_ERROR.
    pub fn refuse(&mut self, io: &mut dyn Streams, request: StreamId, code: ErrorCode) {
        let mut gone = Vec::new();
        let code = if request.dir() == Dir::Uni {
            ResetCode::CANCELLED
        } else {
            RequestCode::from_model(code)
        };
        self.refuse_stream(io, request, code, &mut gone);
    }

    /// Forget what stream `id` stood for (refused, or gone).
    pub(super) fn forget_stream(&mut self, id: StreamId, events: &mut Vec<PeerEvent>) {
        match self.ins.remove(&id) {
            Some(State::Group(g)) => self.drop_group(&g),
            Some(State::Published { path, .. }) => self.source(&path, false, events),
            Some(State::Publishing { path, track, .. }) => {
                if let Some(offer) = self.offers.remove(&(path.clone(), track)) {
                    self.aliases.remove(&offer.alias);
                }
                self.source(&path, false, events);
            }
            _ => {}
        }
        if let Some((g, _)) = self.parked.remove(&id) {
            self.drop_group(&g);
        }
        self.fetches.remove(&id);
        let subs: Vec<u64> = self
            .downs
            .iter()
            .filter(|(_, d)| d.stream == id)
            .map(|(s, _)| *s)
            .collect();
        for sub in subs {
            self.downs.remove(&sub);
            events.push(PeerEvent::Unsubscribe { id: sub });
        }
        self.interests.retain(|i| i.stream != id);
    }

    /// The answer to a TRACK_STATUS (asked above as TRACK_INFO): REQUEST_OK when the track
    /// can be had, else REQUEST_ERROR; the request is over.
    pub fn answer_info(
        &mut self,
        io: &mut dyn Streams,
        request: StreamId,
        info: Result<TrackInfo, ErrorCode>,
    ) {
        // Answered even when the peer has finished its half (19 lets a requester FIN at once).
        self.ins.remove(&request);
        match info {
            Ok(_) => self.write(io, request, &ok(), true),
            Err(code) => self.error(io, request, RequestCode::from_model(code)),
        }
        self.request_ids.remove(&request);
    }

    /// The group a FETCH asked for, as the cache has it (`None`: not held): FETCH_OK, then a
    /// uni stream with FETCH_HEADER and the objects asked for; else REQUEST_ERROR
    /// DOES_NOT_EXIST.
    pub fn answer_fetch(
        &mut self,
        io: &mut dyn Streams,
        request: StreamId,
        frames: Option<&[Arc<crate::model::Frame>]>,
    ) {
        self.ins.remove(&request);
        let Some(ask) = self.fetches.remove(&request) else {
            return;
        };
        let frames = frames.unwrap_or_default();
        let from = usize::try_from(ask.from)
            .unwrap_or(usize::MAX)
            .min(frames.len());
        let to = ask
            .to
            .map_or(frames.len(), |t| usize::try_from(t).unwrap_or(usize::MAX))
            .min(frames.len());
        if from >= to {
            self.error(io, request, RequestCode::DOES_NOT_EXIST);
            return;
        }
        let done = Message::FetchOk {
            request_id: 0,
            end_of_track: false,
            end: Location {
                group: ask.group,
                object: to as u64,
            },
            params: Params::default(),
            props: Vec::new(),
        };
        self.write(io, request, &done, true);
        self.request_ids.remove(&request);
        let Some(stream) = io.open(Dir::Uni) else {
            return;
        };
        let v = self.version;
        let mut chunks = Vec::new();
        let mut head = Vec::new();
        let _ = data::encode_fetch_header(v, ask.request_id, &mut head);
        for (i, f) in frames[from..to].iter().enumerate() {
            let first = (i == 0).then_some((ask.group, from as u64, 128));
            if data::encode_fetch_object(v, first, f.size(), &mut head).is_err() {
                break;
            }
            chunks.push(std::mem::take(&mut head).into());
            chunks.extend(f.chunks.iter().cloned());
        }
        io.write(stream, chunks, true);
    }
}
