//! The moq-lite session of one connection, sans IO: lite-01 to lite-05, both roles.
//!
//! A [`Session`] reads the peer's streams ([`Session::on_stream`]) and writes through the
//! stream contract ([`Streams`]); it never sees a socket, a QUIC connection or a clock (the
//! wall time for pre-lite-05 frame timestamps comes in as a value). What the layer above must
//! act on comes out as [`PeerEvent`]s, in the vocabulary of `model`: paths, frames, track info.
//! The layer above answers requests by calling the session back (`announce_start`,
//! `accept_subscribe`, `answer_info`, `answer_fetch`, ...) and asks the peer through it
//! (`subscribe`, `ask_info`, `announce`, `deliver`).
//!
//! Each peer stream is in one [`State`]; the function that runs a state over new bytes returns
//! a [`Step`]: keep the state, done, refuse the stream with a code, or close the session with a
//! code. A decode error refuses the stream, unless the stream holds the session together (the
//! lite-01/02 session stream) or the session is not set up yet: then it closes the session.
//!
//! Files: `setup.rs` (starting the session, the lite-01/02 SETUP exchange, the lite-05 SETUP
//! stream), `serve.rs` (the peer's requests: ANNOUNCE, SUBSCRIBE and its updates, TRACK,
//! FETCH), `ask.rs` (our requests and their responses), `groups.rs` (group streams in, and out
//! with the in-flight bound).

mod ask;
mod groups;
mod serve;
mod setup;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::{
    ControlType, DataType, DecodeError, EncodeError, ErrorCode, GroupReader, Role, Version,
};

use crate::stream::{Dir, End, StreamId, Streams};

pub use crate::model::{Delivery, InfoAsk, PeerEvent, RequestId, SessionLimits as Limits};

/// How a session starts.
#[derive(Clone, Debug, Default)]
pub struct Config {
    pub server: bool,
    /// Our origin id: the hop we add, and the loops we refuse.
    pub origin: u64,
    /// Offered in CLIENT_SETUP when the version is left to the SETUP exchange.
    pub setup_versions: Vec<Version>,
    /// A client's lite-05 SETUP Path (raw QUIC has no URL to carry it).
    pub setup_path: Option<String>,
    /// What lite-05 SETUP says we do: a relay does both, a load generator's sessions one.
    pub role: Role,
    pub limits: Limits,
}

/// A request of the peer is named above the session by its stream.
impl From<StreamId> for RequestId {
    fn from(id: StreamId) -> Self {
        Self(id.into())
    }
}

impl From<RequestId> for StreamId {
    fn from(id: RequestId) -> Self {
        crate::stream::stream_id(id.0)
    }
}

/// What a state makes of new bytes on its stream.
enum Step {
    /// Go on with this state while the stream is open.
    Keep(State),
    /// Nothing more to read here.
    Done,
    /// Move to `State` and run it over the rest of the bytes (after a stream type).
    Next(State, Vec<Bytes>),
    /// Refuse the stream with this code; the session goes on.
    Refuse(ErrorCode),
    /// Close the whole session with this code.
    Close(ErrorCode, &'static str),
}

/// The state of one peer stream (or of one of ours whose responses we read).
enum State {
    /// The stream type varint, which decides the rest.
    Type {
        bidi: bool,
        buf: Vec<u8>,
    },
    /// lite-01/02 session stream: CLIENT_SETUP or SERVER_SETUP, then SESSION_INFO (ignored).
    SessionStream {
        buf: Vec<u8>,
        setup_done: bool,
    },
    /// lite-05 SETUP uni stream.
    Setup {
        buf: Vec<u8>,
    },
    Group(groups::GroupIn),
    /// A peer's ANNOUNCE request; after it, nothing more is read.
    AnnounceRequest {
        buf: Vec<u8>,
    },
    /// A peer's SUBSCRIBE, then its updates; `id` once the SUBSCRIBE is read.
    Subscribe {
        buf: Vec<u8>,
        id: Option<u64>,
    },
    TrackRequest {
        buf: Vec<u8>,
    },
    FetchRequest {
        buf: Vec<u8>,
    },
    /// Responses to our announce request for `prefix` (absolute), whose suffixes they carry.
    OurAnnounce {
        buf: Vec<u8>,
        started: bool,
        hop: u64,
        prefix: String,
    },
    /// Responses to our SUBSCRIBE `up`.
    OurSubscribe {
        buf: Vec<u8>,
        up: u64,
    },
    /// The publisher's TRACK_INFO for `(path, track)`.
    OurTrack {
        buf: Vec<u8>,
        path: Arc<str>,
        track: Arc<str>,
    },
    /// Read and drop (probe, goaway, requests already answered).
    Discard,
}

/// The peer ended one of our request streams: end our half too, or the stream never closes
/// and its credit is never given back (a publisher would run out of bidi streams).
fn finish_when_done(io: &mut dyn Streams, id: StreamId, step: Step) -> Step {
    if matches!(step, Step::Done) {
        io.write(id, Vec::new(), true);
    }
    step
}

/// Control streams go first.
const CONTROL_PRIORITY: i32 = i32::MAX;

/// A peer's announce request we keep answering.
struct AnnounceOut {
    stream: StreamId,
    prefix: String,
    exclude: u64,
    active: HashSet<Arc<str>>,
}

/// The moq-lite session of one connection. See the module docs.
pub struct Session {
    cfg: Config,
    /// `None` until the SETUP exchange picks one (ALPN `moql`, or WebTransport without a
    /// protocol).
    version: Option<Version>,
    /// The version comes from the SETUP exchange.
    legacy: bool,
    /// The broadcast path the peer's paths are relative to (a server's, from the URL or SETUP).
    root: String,
    /// The root came with the transport (the WebTransport URL): SETUP Path is ignored.
    root_fixed: bool,
    ready: bool,
    /// A lite-05 SETUP stream arrived: a second one is a protocol violation, not a new root.
    setup_seen: bool,
    /// A server's: the `jwt` query parameter of the client's SETUP Path (raw QUIC only).
    token: Option<String>,
    /// A server's: what the client's lite-05 SETUP says it does.
    peer_role: Role,
    session_stream: Option<StreamId>,
    ins: HashMap<StreamId, State>,
    downs: HashMap<u64, groups::Down>,
    /// Our subscriptions to the peer's tracks: their request streams, by our subscribe id.
    ups: HashMap<u64, StreamId>,
    next_up: u64,
    announce_outs: Vec<AnnounceOut>,
    /// Broadcasts the peer announced as active.
    published: HashSet<Arc<str>>,
    /// The peer's announce changes.
    announce_budget: crate::model::AnnounceBudget,
    /// Peer streams that failed to decode; see [`Session::decode_errors`].
    decode_errors: u64,
    /// Bytes of frames not yet whole, over the peer's group streams.
    partial_bytes: u64,
}

impl Session {
    pub fn new(cfg: Config) -> Self {
        Self {
            cfg,
            version: None,
            legacy: true,
            root: String::new(),
            root_fixed: false,
            ready: false,
            setup_seen: false,
            token: None,
            peer_role: Role::Both,
            session_stream: None,
            ins: HashMap::new(),
            downs: HashMap::new(),
            ups: HashMap::new(),
            next_up: 0,
            announce_outs: Vec::new(),
            published: HashSet::new(),
            announce_budget: Default::default(),
            decode_errors: 0,
            partial_bytes: 0,
        }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The negotiated version (lite-02 framing until a SETUP exchange picks one).
    pub fn version(&self) -> Version {
        self.version.unwrap_or(Version::Lite02)
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

    /// The token a raw QUIC client sent in its lite-05 SETUP Path (`path?jwt=...`).
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// What the client's lite-05 SETUP says it does (`Both` before lite-05).
    pub fn peer_role(&self) -> Role {
        self.peer_role
    }

    /// Whether the session can take a new peer stream of `dir` now. Before setup only the
    /// streams that set it up: the lite-05 SETUP stream, the lite-01/02 session stream.
    pub fn accepts(&self, dir: Dir) -> bool {
        self.ready
            || match dir {
                Dir::Uni => self.version == Some(Version::Lite05),
                Dir::Bi => self.legacy && self.cfg.server && self.session_stream.is_none(),
            }
    }

    /// A new peer stream, as the transport hands them out: the session reads it from now on.
    pub fn open_peer(&mut self, id: StreamId) {
        let bidi = id.dir() == Dir::Bi;
        let state = if bidi && self.legacy && self.cfg.server && self.session_stream.is_none() {
            self.session_stream = Some(id);
            State::SessionStream {
                buf: Vec::new(),
                setup_done: false,
            }
        } else {
            State::Type {
                bidi,
                buf: Vec::new(),
            }
        };
        self.ins.insert(id, state);
    }

    /// Whether the session still reads `id` (else its bytes are drained and dropped).
    pub fn reads(&self, id: StreamId) -> bool {
        self.ins.contains_key(&id)
    }

    /// New bytes on `id`, and how the read left it. `now_ms` is the wall time in ms, which
    /// stamps frames of versions without timestamps.
    pub fn on_stream(
        &mut self,
        io: &mut dyn Streams,
        id: StreamId,
        chunks: Vec<Bytes>,
        end: End,
        now_ms: u64,
        events: &mut Vec<PeerEvent>,
    ) {
        let Some(mut state) = self.ins.remove(&id) else {
            return;
        };
        let end = moq_end(end);
        let mut chunks = chunks;
        loop {
            let step = self
                .step(io, id, state, chunks, end, now_ms, events)
                .unwrap_or_else(|e| {
                    tracing::debug!(stream = %id, error = %e, "stream error");
                    self.decode_errors += 1;
                    if self.session_stream == Some(id) || !self.ready {
                        Step::Close(e.code(), "protocol error")
                    } else {
                        Step::Refuse(e.code())
                    }
                });
            match step {
                Step::Next(next, rest) => {
                    state = next;
                    chunks = rest;
                }
                Step::Keep(state) => {
                    if end == PeerEnd::Open {
                        self.ins.insert(id, state);
                    }
                    return;
                }
                Step::Done => return,
                Step::Refuse(code) => {
                    self.drop_down_stream(io, id, events);
                    self.refuse(io, id, code);
                    return;
                }
                Step::Close(code, reason) => {
                    tracing::debug!(code = code.0, reason, "closing session");
                    io.close(code.to_close_code(), reason.as_bytes());
                    return;
                }
            }
        }
    }

    /// Run one stream's state over new bytes.
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
            State::Type { bidi, buf } => self.stream_type(bidi, buf, chunks, end),
            State::Group(g) => {
                // This stream's partial frame counts again if it stays.
                self.partial_bytes = self.partial_bytes.saturating_sub(g.partial);
                let step = self.group_in(id, g, chunks, end, now_ms, events)?;
                if let Step::Keep(State::Group(g)) = &step {
                    self.partial_bytes += g.partial;
                }
                Ok(step)
            }
            State::Discard => Ok(Step::Keep(State::Discard)),
            State::SessionStream {
                mut buf,
                setup_done,
            } => {
                extend(&mut buf, &chunks, max)?;
                self.session_stream(io, id, buf, setup_done, end, events)
            }
            State::Setup { mut buf } => {
                extend(&mut buf, &chunks, max)?;
                self.setup_stream(io, buf, end, events)
            }
            State::AnnounceRequest { mut buf } => {
                extend(&mut buf, &chunks, max)?;
                self.announce_request(id, buf, end, events)
            }
            State::Subscribe { mut buf, id: sub } => {
                extend(&mut buf, &chunks, max)?;
                self.subscribe_stream(io, id, buf, sub, end, events)
            }
            State::TrackRequest { mut buf } => {
                extend(&mut buf, &chunks, max)?;
                self.track_request(id, buf, end, events)
            }
            State::FetchRequest { mut buf } => {
                extend(&mut buf, &chunks, max)?;
                self.fetch_request(id, buf, end, events)
            }
            State::OurAnnounce {
                mut buf,
                started,
                hop,
                prefix,
            } => {
                extend(&mut buf, &chunks, max)?;
                let step = self.our_announce(buf, started, hop, prefix, end, now_ms, events)?;
                Ok(finish_when_done(io, id, step))
            }
            State::OurSubscribe { mut buf, up } => {
                extend(&mut buf, &chunks, max)?;
                let step = self.our_subscribe(buf, up, end, events)?;
                Ok(finish_when_done(io, id, step))
            }
            State::OurTrack {
                mut buf,
                path,
                track,
            } => {
                extend(&mut buf, &chunks, max)?;
                let step = self.our_track(io, id, buf, path, track, end, events)?;
                Ok(finish_when_done(io, id, step))
            }
        }
    }

    /// The stream type varint. Only its bytes are taken; the rest goes on to the next state.
    fn stream_type(
        &mut self,
        bidi: bool,
        mut buf: Vec<u8>,
        chunks: Vec<Bytes>,
        end: PeerEnd,
    ) -> Result<Step, DecodeError> {
        let version = self.version();
        let mut rest = VecDeque::from(chunks);
        let kind = loop {
            let mut cursor = &buf[..];
            let r = if bidi {
                ControlType::decode(&mut cursor, version).map(Ok)
            } else {
                DataType::decode(&mut cursor, version).map(Err)
            };
            match r {
                Ok(kind) => break kind,
                Err(DecodeError::Short) => {}
                Err(DecodeError::UnexpectedStream(_)) if bidi => {
                    return Ok(Step::Refuse(ErrorCode::CANCEL));
                }
                Err(DecodeError::UnexpectedStream(_)) => {
                    return Ok(Step::Refuse(ErrorCode::UNEXPECTED_STREAM));
                }
                Err(e) => return Err(e),
            }
            let Some(front) = rest.front_mut() else {
                return short(end, State::Type { bidi, buf });
            };
            if front.is_empty() {
                rest.pop_front();
                continue;
            }
            buf.push(front[0]);
            bytes::Buf::advance(front, 1);
        };
        let buf = Vec::new();
        let next = match kind {
            Ok(ControlType::Announce) => State::AnnounceRequest { buf },
            Ok(ControlType::Subscribe) => State::Subscribe { buf, id: None },
            Ok(ControlType::Track) => State::TrackRequest { buf },
            Ok(ControlType::Fetch) => State::FetchRequest { buf },
            Ok(ControlType::Probe) | Ok(ControlType::Goaway) => State::Discard,
            Err(DataType::Group) => State::Group(groups::GroupIn {
                reader: GroupReader::new(version, self.cfg.limits.max_frame),
                up: None,
                seq: 0,
                frame: None,
                frames: 0,
                bytes: 0,
                partial: 0,
            }),
            Err(DataType::Setup) => State::Setup { buf },
        };
        Ok(Step::Next(next, rest.into()))
    }

    /// Refuse `id`: stop reading it and reset our half (a peer's uni stream has none).
    pub fn refuse(&mut self, io: &mut dyn Streams, id: StreamId, code: ErrorCode) {
        tracing::debug!(stream = %id, code = code.0, "refusing stream");
        if let Some(State::Group(g)) = self.ins.remove(&id) {
            self.partial_bytes = self.partial_bytes.saturating_sub(g.partial);
        }
        io.stop(id, code.to_stream_code());
        if id.dir() == Dir::Bi || io.is_ours(id) {
            io.reset(id, code.to_stream_code());
        }
    }

    /// Write one message (or a stream type and a message) on `id`; an encode error resets it.
    fn write_msg(
        &self,
        io: &mut dyn Streams,
        id: StreamId,
        encode: impl FnOnce(Version, &mut BytesMut) -> Result<(), EncodeError>,
        fin: bool,
    ) {
        let mut buf = BytesMut::new();
        match encode(self.version(), &mut buf) {
            Ok(()) => io.write(id, vec![buf.freeze()], fin),
            Err(e) => {
                tracing::warn!(error = ?e, "encode failed");
                io.reset(id, ErrorCode::ENCODE.to_stream_code());
            }
        }
    }

    /// Open a request stream toward the peer, write its type and message, and read its
    /// responses as `state`.
    fn request<M: super::Message>(
        &mut self,
        io: &mut dyn Streams,
        kind: ControlType,
        msg: &M,
        state: State,
    ) -> Option<StreamId> {
        let id = io.open(Dir::Bi)?;
        self.ins.insert(id, state);
        io.set_priority(id, CONTROL_PRIORITY);
        self.write_msg(
            io,
            id,
            |v, b| {
                kind.encode(v, b)?;
                msg.encode(v, b)
            },
            false,
        );
        Some(id)
    }

    /// The connection is gone: what the layer above must forget of it (the peer's broadcasts
    /// end, its subscriptions are over, our TRACK requests get no answer).
    pub fn lost(&mut self) -> Vec<PeerEvent> {
        let mut events = Vec::new();
        for path in self.published.drain() {
            events.push(PeerEvent::Announced {
                path,
                active: false,
                hops: Vec::new(),
            });
        }
        self.partial_bytes = 0;
        for (_, state) in self.ins.drain() {
            if let State::OurTrack { path, track, .. } = state {
                events.push(PeerEvent::Info {
                    path,
                    track,
                    result: Err(ErrorCode::DROPPED),
                });
            }
        }
        for (id, _) in self.downs.drain() {
            events.push(PeerEvent::Unsubscribe { id });
        }
        self.ups.clear();
        self.announce_outs.clear();
        events
    }

    /// Streams the session reads.
    pub fn streams_read(&self) -> usize {
        self.ins.len()
    }

    /// The peer's subscriptions.
    pub fn subscriptions(&self) -> usize {
        self.downs.len()
    }

    /// Our subscriptions to the peer.
    pub fn upstream_subscriptions(&self) -> usize {
        self.ups.len()
    }

    /// How many of the peer's streams broke the protocol so far (each refused, or the session
    /// closed). A relay shrugs these off; a load generator must report them as the relay's
    /// faults.
    pub fn decode_errors(&self) -> u64 {
        self.decode_errors
    }

    /// The peer's open announce requests.
    pub fn announce_requests(&self) -> usize {
        self.announce_outs.len()
    }
}

/// How a read left a peer stream, with its reset code as a moq code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PeerEnd {
    Open,
    Fin,
    /// Reset with this moq code (CANCEL when it is outside the mapped range).
    Reset(ErrorCode),
}

fn moq_end(end: End) -> PeerEnd {
    match end {
        End::Open => PeerEnd::Open,
        End::Fin => PeerEnd::Fin,
        End::Reset(code) => {
            PeerEnd::Reset(ErrorCode::from_stream_code(code).unwrap_or(ErrorCode::CANCEL))
        }
    }
}

/// An incomplete message: fine while the stream is open, an error at its FIN.
fn short(end: PeerEnd, state: State) -> Result<Step, DecodeError> {
    match end {
        PeerEnd::Open => Ok(Step::Keep(state)),
        PeerEnd::Fin => Err(DecodeError::Short),
        PeerEnd::Reset(_) => Ok(Step::Done),
    }
}

/// Append `chunks` to a control stream's buffer, which holds at most four messages.
fn extend(buf: &mut Vec<u8>, chunks: &[Bytes], max: usize) -> Result<(), DecodeError> {
    for c in chunks {
        if buf.len() + c.len() > max.saturating_mul(4) {
            return Err(DecodeError::TooLarge);
        }
        buf.extend_from_slice(c);
    }
    Ok(())
}
