//! One core of the load generator: a quinn-proto [`Handler`] that dials its share of the run's
//! connections and speaks moq-lite on them, as a publisher that answers ANNOUNCE, TRACK and
//! SUBSCRIBE and writes group streams on a timer, or as subscribers that announce-watch their
//! broadcast, subscribe to its tracks and check every frame that arrives.
//!
//! Everything here is `!Send` and lives on its core; the only shared state is the [`Plan`]
//! (atomics) and the report sent at shutdown.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use crossbeam_channel::{Receiver, Sender};

use super::account::{Account, Received, Tally};
use super::histogram::Histogram;
use super::payload::{STAMP_LEN, Stamp};
use super::plan::{ConnPlan, Pacing, Plan};
use super::procfs;
use moq_relay::lite::{
    self, Announce, AnnounceInit, AnnounceOk, AnnounceRequest, AnnounceStatus, ClientSetup,
    ControlType, DataType, DecodeError, ErrorCode, GroupEvent, GroupHeader, GroupReader,
    GroupWriter, Message, ProbeLevel, Role, ServerSetup, Setup, Subscribe, SubscribeOptions,
    SubscribeResponse, SubscribeUpdate, Track, TrackInfo, Version,
};
use moq_relay::model::path;
use moq_relay::quic::stream_io::{self, ConnStreams, Outs, ReadEnd};
use moq_relay::quic::{
    Connection, ConnectionHandle, Ctx, Dir, Event, Handler, StreamEvent, StreamId, VarInt,
};
use moq_relay::web::{self, WebEvent, WebSession};

/// Largest control message we accept from the relay.
const MAX_MESSAGE: usize = 64 * 1024;
/// A publisher keeps at most this many unflushed groups per subscription; a newer group resets
/// the oldest, as a relay does for a subscriber that falls behind.
const MAX_QUEUED_GROUPS: usize = 4;
/// How often the drain phase checks whether every subscription has all it is owed.
const DRAIN_TICK: Duration = Duration::from_millis(50);
/// Control streams go before group data.
const CONTROL_PRIORITY: i32 = i32::MAX;

/// Commands from the controlling thread.
pub enum Cmd {
    /// Write this many frames on every track now (manual pacing).
    Burst(u64),
    /// Stop publishing: finish the open groups.
    Stop,
}

/// What a core hands back at shutdown.
#[derive(Debug, Default)]
pub struct WorkerReport {
    pub tally: Tally,
    pub latency: Histogram,
    pub cpu: Duration,
    pub subscriptions: u64,
    /// Viewers whose subscriptions were never sent (their session never got that far).
    pub viewers_unsubscribed: u64,
    pub publisher_groups_dropped: u64,
}

fn stream_code(code: ErrorCode) -> VarInt {
    VarInt::from_u64(code.to_stream_code()).unwrap_or(VarInt::from_u32(0))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    Open,
    Fin,
    Reset,
}

/// Everything readable now on `id`; a reset's code does not matter to the load generator.
fn read_chunks(conn: &mut Connection, id: StreamId) -> (Vec<Bytes>, End) {
    let (chunks, end) = stream_io::read_chunks(conn, id);
    (chunks, load_end(end))
}

fn load_end(end: ReadEnd) -> End {
    match end {
        ReadEnd::Open => End::Open,
        ReadEnd::Fin => End::Fin,
        ReadEnd::Reset(_) => End::Reset,
    }
}

fn extend(buf: &mut Vec<u8>, chunks: &[Bytes]) -> Result<(), DecodeError> {
    for c in chunks {
        if buf.len() + c.len() > 4 * MAX_MESSAGE {
            return Err(DecodeError::TooLarge);
        }
        buf.extend_from_slice(c);
    }
    Ok(())
}

/// Read state of one stream.
enum In {
    /// The stream-type varint.
    Type {
        bidi: bool,
        buf: Vec<u8>,
    },
    /// lite-01/02 session stream: SERVER_SETUP, then SESSION_INFO we ignore.
    Session {
        buf: Vec<u8>,
        setup_done: bool,
    },
    Discard,
    /// The relay asks what we publish.
    PeerAnnounce {
        buf: Vec<u8>,
    },
    /// The relay subscribes to one of our tracks; then its updates.
    PeerSubscribe {
        buf: Vec<u8>,
        serving: bool,
    },
    PeerTrack {
        buf: Vec<u8>,
    },
    /// Answers to our announce request for broadcast `broadcast`.
    OurAnnounce {
        buf: Vec<u8>,
        broadcast: usize,
        started: bool,
    },
    /// Answers to our SUBSCRIBE; `sub` indexes the worker's subscriptions.
    OurSubscribe {
        buf: Vec<u8>,
        sub: usize,
    },
    OurTrack {
        buf: Vec<u8>,
    },
    Group(Box<GroupIn>),
}

struct GroupIn {
    reader: GroupReader,
    /// Index into the worker's subscriptions, once the header is read.
    sub: Option<usize>,
    group: u64,
    size: u64,
    head: [u8; STAMP_LEN],
    head_len: usize,
}

/// One subscription of a viewer to one track.
struct SubRecord {
    broadcast: usize,
    track: usize,
    account: Account,
    ended: bool,
}

/// A group stream we write for one subscription.
struct ServedGroup {
    seq: u64,
    stream: StreamId,
    writer: GroupWriter,
    sent: usize,
    done: bool,
}

/// The relay's subscription to one of our tracks, keyed by its subscribe stream.
struct Serving {
    id: u64,
    track: usize,
    started: bool,
    groups: VecDeque<ServedGroup>,
}

struct Session {
    plan_index: usize,
    version: Version,
    ready: bool,
    connected: bool,
    ins: HashMap<StreamId, In>,
    outs: Outs,
    /// Our subscribe id -> index into the worker's subscriptions.
    subs: HashMap<u64, usize>,
    next_sub: u64,
    /// Broadcasts whose viewers on this session have subscribed.
    subscribed: HashSet<usize>,
    serving: HashMap<StreamId, Serving>,
    /// Set on HTTP/3 connections: the WebTransport session the moq session rides on.
    web: Option<WebSession>,
}

impl Session {
    /// The WebTransport header for a new stream of ours, once the session is open.
    fn web_prefix(&self, dir: Dir) -> Option<Bytes> {
        self.web.as_ref()?.stream_prefix(dir)
    }
}

/// A frame of the current group of a track we publish.
struct PubFrame {
    stamp: Bytes,
    timestamp_ms: u64,
}

/// A track this core publishes.
struct PubTrack {
    conn: ConnectionHandle,
    broadcast: usize,
    track: usize,
    live: bool,
    next_seq: u64,
    next_due: Instant,
    group: Option<u64>,
    /// The latest group's frames, for subscriptions that join mid-group.
    frames: Vec<PubFrame>,
    complete: bool,
    /// Subscribe streams (on `conn`) serving this track.
    serving: Vec<StreamId>,
}

pub struct Worker {
    core: usize,
    plan: Arc<Plan>,
    commands: Receiver<Cmd>,
    report: Sender<WorkerReport>,
    cpu_start: Duration,
    dials: VecDeque<(Instant, usize)>,
    sessions: HashMap<ConnectionHandle, Session>,
    subs: Vec<SubRecord>,
    pubs: Vec<PubTrack>,
    latency: Histogram,
    stopped: bool,
    shutting_down: bool,
    next_drain_check: Option<Instant>,
    publisher_groups_dropped: u64,
}

impl Worker {
    pub fn new(
        core: usize,
        plan: Arc<Plan>,
        commands: Receiver<Cmd>,
        report: Sender<WorkerReport>,
    ) -> Self {
        procfs::name_this_thread(&format!("moq-load-{core}"));
        let cpu_start = procfs::this_thread_cpu();
        let mut dials: Vec<(Instant, usize)> = (0..plan.conns.len())
            .filter(|i| i % plan.threads == core)
            .map(|i| (plan.start + plan.dial_after[i], i))
            .collect();
        dials.sort();
        Self {
            core,
            plan,
            commands,
            report,
            cpu_start,
            dials: dials.into(),
            sessions: HashMap::new(),
            subs: Vec::new(),
            pubs: Vec::new(),
            latency: Histogram::default(),
            stopped: false,
            shutting_down: false,
            next_drain_check: None,
            publisher_groups_dropped: 0,
        }
    }

    fn stats(&self) -> &super::plan::WorkerStats {
        &self.plan.stats[self.core]
    }

    fn frames_per_group(&self) -> u64 {
        self.plan.scenario.frames_per_group
    }

    // ----- stream I/O -------------------------------------------------------------------

    fn write(
        &mut self,
        ctx: &mut Ctx<'_>,
        ch: ConnectionHandle,
        id: StreamId,
        chunks: Vec<Bytes>,
        fin: bool,
    ) {
        let Some(s) = self.sessions.get_mut(&ch) else {
            return;
        };
        let Some(conn) = ctx.conn(ch) else { return };
        stream_io::send(conn, &mut s.outs, id, chunks, fin);
    }

    fn write_msg(
        &mut self,
        ctx: &mut Ctx<'_>,
        ch: ConnectionHandle,
        id: StreamId,
        fin: bool,
        encode: impl FnOnce(Version, &mut BytesMut) -> Result<(), lite::EncodeError>,
    ) {
        let Some(version) = self.sessions.get(&ch).map(|s| s.version) else {
            return;
        };
        let mut buf = BytesMut::new();
        match encode(version, &mut buf) {
            Ok(()) => self.write(ctx, ch, id, vec![buf.freeze()], fin),
            Err(e) => {
                tracing::warn!(core = self.core, error = ?e, "encode failed");
                self.reset(ctx, ch, id, ErrorCode::ENCODE);
            }
        }
    }

    fn reset(&mut self, ctx: &mut Ctx<'_>, ch: ConnectionHandle, id: StreamId, code: ErrorCode) {
        if let Some(s) = self.sessions.get_mut(&ch) {
            s.outs.remove(&id);
        }
        if let Some(conn) = ctx.conn(ch) {
            let _ = conn.send_stream(id).reset(stream_code(code));
        }
    }

    /// Stop reading a stream and, where we can send on it, reset our half.
    fn refuse(&mut self, ctx: &mut Ctx<'_>, ch: ConnectionHandle, id: StreamId, code: ErrorCode) {
        if let Some(s) = self.sessions.get_mut(&ch) {
            s.ins.remove(&id);
        }
        if let Some(conn) = ctx.conn(ch) {
            let _ = conn.recv_stream(id).stop(stream_code(code));
        }
        if id.dir() == Dir::Bi || id.initiator() == quinn_proto::Side::Client {
            self.reset(ctx, ch, id, code);
        }
    }

    /// Open a control stream with its type and first message, reading answers as `state`.
    fn request<M: Message>(
        &mut self,
        ctx: &mut Ctx<'_>,
        ch: ConnectionHandle,
        kind: ControlType,
        msg: &M,
        state: In,
    ) -> Option<StreamId> {
        let id = self.open(ctx, ch, Dir::Bi)?;
        if let Some(conn) = ctx.conn(ch) {
            let _ = conn.send_stream(id).set_priority(CONTROL_PRIORITY);
        }
        self.sessions.get_mut(&ch)?.ins.insert(id, state);
        self.write_msg(ctx, ch, id, false, |v, b| {
            kind.encode(v, b)?;
            msg.encode(v, b)
        });
        Some(id)
    }

    // ----- session life -----------------------------------------------------------------

    fn dial(&mut self, ctx: &mut Ctx<'_>, index: usize) {
        let target = &self.plan.target;
        match ctx.connect(target.addr, &target.server_name, None) {
            Ok(ch) => {
                self.sessions.insert(
                    ch,
                    Session {
                        plan_index: index,
                        version: Version::Lite02,
                        ready: false,
                        connected: false,
                        ins: HashMap::new(),
                        outs: HashMap::new(),
                        subs: HashMap::new(),
                        next_sub: 0,
                        subscribed: HashSet::new(),
                        serving: HashMap::new(),
                        web: None,
                    },
                );
            }
            Err(e) => {
                self.stats()
                    .connect_failures
                    .fetch_add(1, Ordering::Relaxed);
                self.plan.note_error(format!("connect: {e}"));
            }
        }
    }

    fn connected(&mut self, ctx: &mut Ctx<'_>, ch: ConnectionHandle) {
        let alpn = ctx
            .handshake(ch)
            .and_then(|(alpn, _)| alpn)
            .map(|a| String::from_utf8_lossy(&a).into_owned())
            .unwrap_or_default();
        let Some(s) = self.sessions.get_mut(&ch) else {
            return;
        };
        s.connected = true;
        if alpn.as_bytes() == web::ALPN {
            let target = &self.plan.target;
            let authority = format!("{}:{}", target.server_name, target.addr.port());
            let protocols = &target.web_protocols;
            let max_buffer = 4 * MAX_MESSAGE;
            let web = WebSession::client(&authority, &target.request_path, protocols, max_buffer);
            s.web = Some(web);
            self.web_start(ctx, ch);
        } else if let Some(version) = Version::from_alpn(&alpn) {
            self.begin(ctx, ch, Some(version));
        } else if alpn == Version::LEGACY_ALPN {
            self.begin(ctx, ch, None);
        } else {
            self.plan.note_error(format!(
                "the relay chose ALPN `{alpn}`, which is not moq-lite"
            ));
            ctx.close(ch, ErrorCode::UNKNOWN_ALPN.0, b"unsupported ALPN");
        }
        self.accept(ctx, ch);
    }

    /// Start the moq-lite session: `version` as fixed by the ALPN or WebTransport subprotocol,
    /// or `None` for the lite-01/02 SETUP exchange.
    fn begin(&mut self, ctx: &mut Ctx<'_>, ch: ConnectionHandle, version: Option<Version>) {
        let Some(s) = self.sessions.get_mut(&ch) else {
            return;
        };
        let index = s.plan_index;
        let over_web = s.web.is_some();
        let publisher = matches!(self.plan.conns[index], ConnPlan::Publisher { .. });
        match version {
            Some(version) => {
                s.version = version;
                if version == Version::Lite05 {
                    // On WebTransport the root is the CONNECT path, never a SETUP parameter.
                    let path = match over_web {
                        true => None,
                        false => self.plan.target.setup_path.clone(),
                    };
                    let setup = Setup {
                        probe: ProbeLevel::None,
                        path,
                        role: if publisher {
                            Role::Publisher
                        } else {
                            Role::Subscriber
                        },
                        cost: None,
                        origin: self.plan.origin_of(index),
                    };
                    if let Some(id) = self.open(ctx, ch, Dir::Uni) {
                        self.write_msg(ctx, ch, id, true, |v, b| {
                            DataType::Setup.encode(v, b)?;
                            setup.encode(v, b)
                        });
                    }
                }
                self.ready(ctx, ch);
            }
            None => {
                let Some(id) = self.open(ctx, ch, Dir::Bi) else {
                    return;
                };
                let setup = ClientSetup {
                    versions: self
                        .plan
                        .target
                        .setup_versions
                        .iter()
                        .map(|v| v.code())
                        .collect(),
                    parameters: Vec::new(),
                };
                if let Some(s) = self.sessions.get_mut(&ch) {
                    s.ins.insert(
                        id,
                        In::Session {
                            buf: Vec::new(),
                            setup_done: false,
                        },
                    );
                }
                self.write_msg(ctx, ch, id, false, |v, b| setup.encode(v, b));
            }
        }
    }

    /// Open a stream of the moq session; on WebTransport it starts with the stream header.
    fn open(&mut self, ctx: &mut Ctx<'_>, ch: ConnectionHandle, dir: Dir) -> Option<StreamId> {
        let id = ctx.conn(ch)?.streams().open(dir)?;
        if let Some(prefix) = self.sessions.get(&ch).and_then(|s| s.web_prefix(dir)) {
            self.write(ctx, ch, id, vec![prefix], false);
        }
        Some(id)
    }

    // ----- WebTransport -----------------------------------------------------------------

    /// HTTP/3 is up: our control stream (SETTINGS), then the extended CONNECT whose stream id
    /// becomes the session id.
    fn web_start(&mut self, ctx: &mut Ctx<'_>, ch: ConnectionHandle) {
        let now = ctx.now;
        let (Some(s), Some(conn)) = (self.sessions.get_mut(&ch), ctx.conn(ch)) else {
            return;
        };
        if let Some(web) = s.web.as_mut() {
            web.start(&mut ConnStreams::new(conn, &mut s.outs, now));
        }
    }

    /// Bytes on a stream the WebTransport session reads.
    fn web_read(&mut self, ctx: &mut Ctx<'_>, ch: ConnectionHandle, id: StreamId) {
        let now = ctx.now;
        let (Some(s), Some(conn)) = (self.sessions.get_mut(&ch), ctx.conn(ch)) else {
            return;
        };
        let Some(web) = s.web.as_mut() else { return };
        let (chunks, end) = stream_io::read_chunks(conn, id);
        let mut io = ConnStreams::new(conn, &mut s.outs, now);
        let events = web.on_stream(&mut io, id, chunks, end);
        self.web_events(ctx, ch, events);
    }

    /// What the WebTransport session reported. A 2xx to the CONNECT fixes the version from
    /// the chosen subprotocol (none means SETUP); the relay's streams are read from then on.
    fn web_events(&mut self, ctx: &mut Ctx<'_>, ch: ConnectionHandle, events: Vec<WebEvent>) {
        for event in events {
            match event {
                WebEvent::Open { protocol, .. } => {
                    let version = protocol.as_deref().and_then(Version::from_alpn);
                    self.begin(ctx, ch, version);
                }
                WebEvent::Stream {
                    id,
                    bidi,
                    chunks,
                    end,
                } => {
                    let state = In::Type {
                        bidi,
                        buf: Vec::new(),
                    };
                    self.feed(ctx, ch, id, state, chunks, load_end(end));
                }
                WebEvent::Closed { code, reason } if !self.shutting_down => {
                    self.plan.note_error(format!(
                        "the relay closed the WebTransport session: {code} {reason}"
                    ));
                }
                WebEvent::Refused { status } => {
                    self.plan
                        .note_error(format!("CONNECT refused with status {status}"));
                }
                WebEvent::Failed(e) if !self.shutting_down => {
                    self.stats().protocol_errors.fetch_add(1, Ordering::Relaxed);
                    self.plan
                        .note_error(format!("HTTP/3 error from the relay: {e}"));
                }
                WebEvent::Closed { .. } | WebEvent::Failed(_) => {}
            }
        }
    }

    /// Setup done: publishers start their tracks, viewers ask for their broadcasts.
    fn ready(&mut self, ctx: &mut Ctx<'_>, ch: ConnectionHandle) {
        let Some(s) = self.sessions.get_mut(&ch) else {
            return;
        };
        if s.ready {
            return;
        }
        s.ready = true;
        let index = s.plan_index;
        self.plan
            .negotiated
            .store(s.version.code(), Ordering::Relaxed);
        self.stats().sessions_ready.fetch_add(1, Ordering::Relaxed);
        match self.plan.conns[index].clone() {
            ConnPlan::Publisher { broadcast } => {
                let interval = self.frame_interval();
                for track in 0..self.plan.scenario.tracks {
                    // Spread tracks over the frame interval so they do not all fire at once.
                    let global = broadcast * self.plan.scenario.tracks + track;
                    let offset = interval.mul_f64((global as f64 * 0.618_034).fract());
                    self.pubs.push(PubTrack {
                        conn: ch,
                        broadcast,
                        track,
                        live: true,
                        next_seq: 0,
                        next_due: self.plan.publish_at.max(ctx.now) + offset,
                        group: None,
                        frames: Vec::new(),
                        complete: false,
                        serving: Vec::new(),
                    });
                }
                self.schedule(ctx);
            }
            ConnPlan::Subscriber { viewers } => {
                let wanted: HashSet<usize> = viewers.into_iter().collect();
                for broadcast in wanted {
                    let req = AnnounceRequest {
                        prefix: self.plan.broadcasts[broadcast].clone(),
                        exclude_hop: self.plan.origin_of(index),
                    };
                    self.request(
                        ctx,
                        ch,
                        ControlType::Announce,
                        &req,
                        In::OurAnnounce {
                            buf: Vec::new(),
                            broadcast,
                            started: false,
                        },
                    );
                }
            }
        }
    }

    fn frame_interval(&self) -> Duration {
        Duration::from_secs_f64(self.plan.scenario.burst as f64 / self.plan.scenario.fps)
    }

    /// Take the relay's new streams.
    fn accept(&mut self, ctx: &mut Ctx<'_>, ch: ConnectionHandle) {
        loop {
            let Some(conn) = ctx.conn(ch) else { return };
            let Some(id) = conn
                .streams()
                .accept(Dir::Uni)
                .or_else(|| conn.streams().accept(Dir::Bi))
            else {
                return;
            };
            let Some(s) = self.sessions.get_mut(&ch) else {
                return;
            };
            let bidi = id.dir() == Dir::Bi;
            match s.web.as_mut() {
                Some(web) => web.accept(id),
                None => {
                    let buf = Vec::new();
                    s.ins.insert(id, In::Type { bidi, buf });
                }
            }
            self.read(ctx, ch, id);
        }
    }

    fn lost(&mut self, ch: ConnectionHandle, reason: String) {
        let Some(s) = self.sessions.remove(&ch) else {
            return;
        };
        if !s.connected {
            self.stats()
                .connect_failures
                .fetch_add(1, Ordering::Relaxed);
            self.plan.note_error(format!("connection failed: {reason}"));
        } else if !self.shutting_down {
            self.stats().sessions_lost.fetch_add(1, Ordering::Relaxed);
            self.plan.note_error(format!("session lost: {reason}"));
        }
        for &sub in s.subs.values() {
            self.subs[sub].ended = true;
        }
        for p in &mut self.pubs {
            if p.conn == ch {
                p.live = false;
                p.serving.clear();
                self.plan
                    .track(p.broadcast, p.track)
                    .done
                    .store(true, Ordering::Release);
            }
        }
    }

    // ----- reading ----------------------------------------------------------------------

    fn read(&mut self, ctx: &mut Ctx<'_>, ch: ConnectionHandle, id: StreamId) {
        let web = self.sessions.get(&ch).and_then(|s| s.web.as_ref());
        if web.is_some_and(|w| w.owns(id)) {
            self.web_read(ctx, ch, id);
            return;
        }
        let Some(conn) = ctx.conn(ch) else { return };
        let (chunks, end) = read_chunks(conn, id);
        let Some(state) = self.sessions.get_mut(&ch).and_then(|s| s.ins.remove(&id)) else {
            return;
        };
        self.feed(ctx, ch, id, state, chunks, end);
    }

    /// Run a stream's state machine over new bytes and keep the state while the stream is open.
    fn feed(
        &mut self,
        ctx: &mut Ctx<'_>,
        ch: ConnectionHandle,
        id: StreamId,
        state: In,
        chunks: Vec<Bytes>,
        end: End,
    ) {
        let state = match self.consume(ctx, ch, id, state, chunks, end) {
            Ok(state) => state,
            Err(e) => {
                self.stats().protocol_errors.fetch_add(1, Ordering::Relaxed);
                self.plan
                    .note_error(format!("protocol error from the relay: {e}"));
                self.refuse(ctx, ch, id, e.code());
                None
            }
        };
        if let (Some(state), Some(s)) = (state, self.sessions.get_mut(&ch))
            && end == End::Open
        {
            s.ins.insert(id, state);
        }
    }

    fn short(end: End, state: In) -> Result<Option<In>, DecodeError> {
        match end {
            End::Open => Ok(Some(state)),
            End::Fin => Err(DecodeError::Short),
            End::Reset => Ok(None),
        }
    }

    fn consume(
        &mut self,
        ctx: &mut Ctx<'_>,
        ch: ConnectionHandle,
        id: StreamId,
        state: In,
        chunks: Vec<Bytes>,
        end: End,
    ) -> Result<Option<In>, DecodeError> {
        let Some(version) = self.sessions.get(&ch).map(|s| s.version) else {
            return Ok(None);
        };
        match state {
            In::Group(mut g) => {
                for c in chunks {
                    g.reader.push(c);
                }
                if !self.group_events(ctx, ch, id, &mut g)? {
                    return Ok(None);
                }
                match end {
                    End::Open => Ok(Some(In::Group(g))),
                    End::Fin => {
                        g.reader.finish()?;
                        Ok(None)
                    }
                    End::Reset => {
                        if let Some(sub) = g.sub {
                            self.subs[sub].account.group_reset();
                            self.stats().groups_reset.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(None)
                    }
                }
            }
            In::Type { bidi, mut buf } => {
                let mut rest: VecDeque<Bytes> = chunks.into();
                let kind = loop {
                    let mut cursor = &buf[..];
                    let r = match bidi {
                        true => ControlType::decode(&mut cursor, version).map(Ok),
                        false => DataType::decode(&mut cursor, version).map(Err),
                    };
                    match r {
                        Ok(kind) => break kind,
                        Err(DecodeError::Short) => {}
                        Err(DecodeError::UnexpectedStream(_)) => {
                            self.refuse(ctx, ch, id, ErrorCode::UNEXPECTED_STREAM);
                            return Ok(None);
                        }
                        Err(e) => return Err(e),
                    }
                    let Some(front) = rest.front_mut() else {
                        return Self::short(end, In::Type { bidi, buf });
                    };
                    if front.is_empty() {
                        rest.pop_front();
                        continue;
                    }
                    buf.push(front[0]);
                    front.advance(1);
                };
                let next = match kind {
                    Ok(ControlType::Announce) => In::PeerAnnounce { buf: Vec::new() },
                    Ok(ControlType::Subscribe) => In::PeerSubscribe {
                        buf: Vec::new(),
                        serving: false,
                    },
                    Ok(ControlType::Track) => In::PeerTrack { buf: Vec::new() },
                    Ok(ControlType::Fetch) => {
                        // We keep no past groups to fetch from.
                        self.refuse(ctx, ch, id, ErrorCode::NOT_FOUND);
                        return Ok(None);
                    }
                    Ok(ControlType::Probe | ControlType::Goaway) => In::Discard,
                    Err(DataType::Group) => In::Group(Box::new(GroupIn {
                        reader: GroupReader::new(version, lite::MAX_FRAME_SIZE),
                        sub: None,
                        group: 0,
                        size: 0,
                        head: [0; STAMP_LEN],
                        head_len: 0,
                    })),
                    Err(DataType::Setup) => In::Discard,
                };
                self.consume(ctx, ch, id, next, rest.into(), end)
            }
            In::Discard => Ok(Some(In::Discard)),
            In::Session {
                mut buf,
                setup_done,
            } => {
                extend(&mut buf, &chunks)?;
                let mut setup_done = setup_done;
                if !setup_done {
                    let Some((setup, used)) =
                        lite::decode_framed::<ServerSetup>(&buf, Version::Lite02, MAX_MESSAGE)?
                    else {
                        return Self::short(end, In::Session { buf, setup_done });
                    };
                    buf.drain(..used);
                    let offered = &self.plan.target.setup_versions;
                    let Some(v) = Version::from_code(setup.version).filter(|v| offered.contains(v))
                    else {
                        self.plan.note_error(format!(
                            "the relay chose version {:#x}, which we did not offer",
                            setup.version
                        ));
                        ctx.close(ch, ErrorCode::VERSION.0, b"version not offered");
                        return Ok(None);
                    };
                    if let Some(s) = self.sessions.get_mut(&ch) {
                        s.version = v;
                    }
                    setup_done = true;
                    self.ready(ctx, ch);
                }
                let version = self.sessions.get(&ch).map_or(version, |s| s.version);
                while let Some((_, used)) =
                    lite::decode_framed::<lite::SessionInfo>(&buf, version, MAX_MESSAGE)?
                {
                    buf.drain(..used);
                }
                if end != End::Open && !self.shutting_down {
                    self.plan
                        .note_error("the relay ended the session stream".into());
                    ctx.close(ch, ErrorCode::CANCEL.0, b"session stream ended");
                    return Ok(None);
                }
                Ok(Some(In::Session { buf, setup_done }))
            }
            In::PeerAnnounce { mut buf } => {
                extend(&mut buf, &chunks)?;
                let Some((req, _)) =
                    lite::decode_framed::<AnnounceRequest>(&buf, version, MAX_MESSAGE)?
                else {
                    return Self::short(end, In::PeerAnnounce { buf });
                };
                self.answer_announce(ctx, ch, id, version, &req.prefix);
                Ok(Some(In::Discard))
            }
            In::PeerTrack { mut buf } => {
                extend(&mut buf, &chunks)?;
                let Some((_req, _)) = lite::decode_framed::<Track>(&buf, version, MAX_MESSAGE)?
                else {
                    return Self::short(end, In::PeerTrack { buf });
                };
                let info = TrackInfo::default();
                self.write_msg(ctx, ch, id, true, |v, b| info.encode(v, b));
                Ok(Some(In::Discard))
            }
            In::PeerSubscribe { mut buf, serving } => {
                extend(&mut buf, &chunks)?;
                let mut serving = serving;
                loop {
                    if !serving {
                        let Some((req, used)) =
                            lite::decode_framed::<Subscribe>(&buf, version, MAX_MESSAGE)?
                        else {
                            break;
                        };
                        buf.drain(..used);
                        if !self.serve(ctx, ch, id, req) {
                            return Ok(None);
                        }
                        serving = true;
                    } else {
                        let Some((_update, used)) =
                            lite::decode_framed::<SubscribeUpdate>(&buf, version, MAX_MESSAGE)?
                        else {
                            break;
                        };
                        buf.drain(..used);
                    }
                }
                if end != End::Open {
                    self.unserve(ctx, ch, id);
                    if end == End::Fin {
                        self.write(ctx, ch, id, Vec::new(), true);
                    }
                    return Ok(None);
                }
                Ok(Some(In::PeerSubscribe { buf, serving }))
            }
            In::OurAnnounce {
                mut buf,
                broadcast,
                started,
            } => {
                extend(&mut buf, &chunks)?;
                let mut started = started;
                loop {
                    let (active, used) = if !started && version.has_setup_exchange() {
                        let Some((init, used)) =
                            lite::decode_framed::<AnnounceInit>(&buf, version, MAX_MESSAGE)?
                        else {
                            break;
                        };
                        (init.suffixes.iter().any(|s| s.is_empty()), used)
                    } else if !started && version.has_setup_stream() {
                        let Some((_ok, used)) =
                            lite::decode_framed::<AnnounceOk>(&buf, version, MAX_MESSAGE)?
                        else {
                            break;
                        };
                        (false, used)
                    } else {
                        let Some((a, used)) =
                            lite::decode_framed::<Announce>(&buf, version, MAX_MESSAGE)?
                        else {
                            break;
                        };
                        (
                            a.status == AnnounceStatus::Active && a.suffix.is_empty(),
                            used,
                        )
                    };
                    buf.drain(..used);
                    started = true;
                    if active {
                        self.watch(ctx, ch, broadcast);
                    }
                }
                if end != End::Open {
                    return Ok(None);
                }
                Ok(Some(In::OurAnnounce {
                    buf,
                    broadcast,
                    started,
                }))
            }
            In::OurSubscribe { mut buf, sub } => {
                extend(&mut buf, &chunks)?;
                while let Some((_resp, used)) =
                    lite::decode_framed::<SubscribeResponse>(&buf, version, MAX_MESSAGE)?
                {
                    buf.drain(..used);
                }
                if end != End::Open {
                    let record = &mut self.subs[sub];
                    if !record.ended && !self.stopped && !self.shutting_down {
                        self.plan.stats[self.core]
                            .subscribe_failures
                            .fetch_add(1, Ordering::Relaxed);
                        self.plan.note_error(format!(
                            "the relay ended subscription to {}/{} ({})",
                            self.plan.broadcasts[record.broadcast],
                            self.plan.track_names[record.track],
                            if end == End::Fin { "FIN" } else { "reset" }
                        ));
                    }
                    record.ended = true;
                    return Ok(None);
                }
                Ok(Some(In::OurSubscribe { buf, sub }))
            }
            In::OurTrack { mut buf } => {
                extend(&mut buf, &chunks)?;
                if let Some((_info, used)) =
                    lite::decode_framed::<TrackInfo>(&buf, version, MAX_MESSAGE)?
                {
                    buf.drain(..used);
                    self.write(ctx, ch, id, Vec::new(), true);
                    return Ok(Some(In::Discard));
                }
                Self::short(end, In::OurTrack { buf })
            }
        }
    }

    /// Decode what a group stream has; false when the stream was refused.
    fn group_events(
        &mut self,
        ctx: &mut Ctx<'_>,
        ch: ConnectionHandle,
        id: StreamId,
        g: &mut GroupIn,
    ) -> Result<bool, DecodeError> {
        let now_us = self.plan.clock.us(ctx.now);
        while let Some(ev) = g.reader.poll()? {
            match ev {
                GroupEvent::Header(GroupHeader {
                    subscribe_id,
                    sequence,
                }) => {
                    let sub = self
                        .sessions
                        .get(&ch)
                        .and_then(|s| s.subs.get(&subscribe_id))
                        .copied();
                    let Some(sub) = sub else {
                        self.refuse(ctx, ch, id, ErrorCode::CANCEL);
                        return Ok(false);
                    };
                    g.sub = Some(sub);
                    g.group = sequence;
                }
                GroupEvent::Frame { size, .. } => {
                    g.size = size;
                    g.head_len = 0;
                }
                GroupEvent::Payload(b) => {
                    let take = (STAMP_LEN - g.head_len).min(b.len());
                    g.head[g.head_len..g.head_len + take].copy_from_slice(&b[..take]);
                    g.head_len += take;
                }
                GroupEvent::FrameEnd => {
                    let Some(sub) = g.sub else { continue };
                    let stamp = Stamp::decode(&g.head[..g.head_len]);
                    let got = self.subs[sub].account.frame(g.group, g.size, stamp, now_us);
                    let stats = &self.plan.stats[self.core];
                    match got {
                        Received::Live(latency) => {
                            self.latency.record(latency);
                            stats.max_latency_us.fetch_max(latency, Ordering::Relaxed);
                        }
                        Received::CatchUp => {}
                        Received::Duplicate | Received::Corrupt => continue,
                    }
                    stats.frames_received.fetch_add(1, Ordering::Relaxed);
                    stats.bytes_received.fetch_add(g.size, Ordering::Relaxed);
                }
            }
        }
        Ok(true)
    }

    // ----- subscriber -------------------------------------------------------------------

    /// Broadcast `broadcast` is live: every viewer of it on this session subscribes to each
    /// of its tracks.
    fn watch(&mut self, ctx: &mut Ctx<'_>, ch: ConnectionHandle, broadcast: usize) {
        let Some(s) = self.sessions.get_mut(&ch) else {
            return;
        };
        if !s.subscribed.insert(broadcast) {
            return;
        }
        let version = s.version;
        let ConnPlan::Subscriber { viewers } = &self.plan.conns[s.plan_index] else {
            return;
        };
        let viewers = viewers.iter().filter(|&&b| b == broadcast).count();
        let plan = self.plan.clone();
        let path = &plan.broadcasts[broadcast];
        for _ in 0..viewers {
            for track in 0..plan.scenario.tracks {
                let name = &plan.track_names[track];
                if version.has_setup_stream() {
                    let req = Track {
                        broadcast: path.clone(),
                        track: name.clone(),
                    };
                    self.request(
                        ctx,
                        ch,
                        ControlType::Track,
                        &req,
                        In::OurTrack { buf: Vec::new() },
                    );
                }
                let Some(s) = self.sessions.get_mut(&ch) else {
                    return;
                };
                let id = s.next_sub;
                s.next_sub += 1;
                let index = self.subs.len();
                s.subs.insert(id, index);
                let account = Account::new(
                    plan.scenario.frames_per_group,
                    plan.track(broadcast, track).latest_group(),
                    plan.clock.us(ctx.now),
                );
                self.subs.push(SubRecord {
                    broadcast,
                    track,
                    account,
                    ended: false,
                });
                let req = Subscribe {
                    id,
                    broadcast: path.clone(),
                    track: name.clone(),
                    options: SubscribeOptions::default(),
                };
                self.request(
                    ctx,
                    ch,
                    ControlType::Subscribe,
                    &req,
                    In::OurSubscribe {
                        buf: Vec::new(),
                        sub: index,
                    },
                );
                self.stats().subscriptions.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    // ----- publisher --------------------------------------------------------------------

    /// The broadcast this session publishes, if it is a publisher session.
    fn published_by(&self, ch: ConnectionHandle) -> Option<usize> {
        match self.plan.conns[self.sessions.get(&ch)?.plan_index] {
            ConnPlan::Publisher { broadcast } => Some(broadcast),
            ConnPlan::Subscriber { .. } => None,
        }
    }

    /// Answer the relay's announce request: our broadcast if it is under `prefix`, else an empty
    /// set. The stream stays open, as the reference expects.
    fn answer_announce(
        &mut self,
        ctx: &mut Ctx<'_>,
        ch: ConnectionHandle,
        id: StreamId,
        version: Version,
        prefix: &str,
    ) {
        let ours: Vec<String> = self
            .published_by(ch)
            .map(|b| &self.plan.broadcasts[b])
            .and_then(|p| path::strip_prefix(p, prefix))
            .map(|s| vec![s.to_string()])
            .unwrap_or_default();
        let Some(index) = self.sessions.get(&ch).map(|s| s.plan_index) else {
            return;
        };
        let origin = self.plan.origin_of(index);
        if let Some(c) = ctx.conn(ch) {
            let _ = c.send_stream(id).set_priority(CONTROL_PRIORITY);
        }
        self.write_msg(ctx, ch, id, false, |v, b| {
            match version {
                Version::Lite01 | Version::Lite02 => AnnounceInit {
                    suffixes: ours.clone(),
                }
                .encode(v, b)?,
                Version::Lite05 => AnnounceOk {
                    hop: origin,
                    active_count: ours.len() as u64,
                }
                .encode(v, b)?,
                Version::Lite03 | Version::Lite04 => {}
            }
            if version.has_subscribe_options() {
                for suffix in &ours {
                    // Hops as a local publisher sends them (§5.1): lite-03 counts itself,
                    // lite-04 lists itself, lite-05 lists nothing (ANNOUNCE_OK carries it).
                    let hops = match version {
                        Version::Lite03 => vec![0],
                        Version::Lite04 => vec![origin],
                        _ => Vec::new(),
                    };
                    Announce {
                        status: AnnounceStatus::Active,
                        suffix: suffix.clone(),
                        hops,
                    }
                    .encode(v, b)?;
                }
            }
            Ok(())
        });
    }

    /// The relay subscribes to a track of ours. False when refused.
    fn serve(
        &mut self,
        ctx: &mut Ctx<'_>,
        ch: ConnectionHandle,
        id: StreamId,
        req: Subscribe,
    ) -> bool {
        let track = self.pubs.iter().position(|p| {
            p.conn == ch
                && p.live
                && self.plan.broadcasts[p.broadcast] == req.broadcast
                && self.plan.track_names[p.track] == req.track
        });
        let Some(track) = track else {
            self.refuse(ctx, ch, id, ErrorCode::NOT_FOUND);
            return false;
        };
        let Some(s) = self.sessions.get_mut(&ch) else {
            return false;
        };
        let version = s.version;
        s.serving.insert(
            id,
            Serving {
                id: req.id,
                track,
                started: false,
                groups: VecDeque::new(),
            },
        );
        self.pubs[track].serving.push(id);
        if let Some(c) = ctx.conn(ch) {
            let _ = c.send_stream(id).set_priority(CONTROL_PRIORITY);
        }
        if !version.has_setup_stream() {
            let ok = SubscribeResponse::Ok(SubscribeOptions {
                priority: req.options.priority,
                ..Default::default()
            });
            self.write_msg(ctx, ch, id, false, |v, b| ok.encode(v, b));
        }
        // Late join: the latest group from frame 0.
        if let Some(group) = self.pubs[track].group {
            self.sync(ctx, ch, id, group);
        }
        true
    }

    fn unserve(&mut self, ctx: &mut Ctx<'_>, ch: ConnectionHandle, id: StreamId) {
        let Some(serving) = self
            .sessions
            .get_mut(&ch)
            .and_then(|s| s.serving.remove(&id))
        else {
            return;
        };
        self.pubs[serving.track].serving.retain(|s| *s != id);
        for g in serving.groups {
            if !g.done {
                self.reset(ctx, ch, g.stream, ErrorCode::CANCEL);
            }
        }
    }

    /// Bring the subscription on subscribe stream `sub` up to date with group `seq` of its
    /// track: open the group's stream, write the frames it lacks, FIN when the group is done.
    fn sync(&mut self, ctx: &mut Ctx<'_>, ch: ConnectionHandle, sub: StreamId, seq: u64) {
        let Some(s) = self.sessions.get_mut(&ch) else {
            return;
        };
        let version = s.version;
        let prefix = s.web_prefix(Dir::Uni);
        let Some(serving) = s.serving.get_mut(&sub) else {
            return;
        };
        let track = &self.pubs[serving.track];
        if track.group != Some(seq) {
            return;
        }
        let mut writes: Vec<(StreamId, Vec<Bytes>, bool)> = Vec::new();
        let mut resets = Vec::new();
        if !serving.groups.iter().any(|g| g.seq == seq) {
            let outs = &s.outs;
            serving
                .groups
                .retain(|g| !g.done || outs.contains_key(&g.stream));
            while serving.groups.len() >= MAX_QUEUED_GROUPS {
                let old = serving.groups.pop_front().expect("non-empty");
                resets.push(old.stream);
                self.publisher_groups_dropped += 1;
            }
            let Some(conn) = ctx.conn(ch) else { return };
            let Some(stream) = conn.streams().open(Dir::Uni) else {
                self.publisher_groups_dropped += 1;
                return;
            };
            // Newer groups first, as the reference schedules them.
            let _ = conn
                .send_stream(stream)
                .set_priority((seq & 0x3fff_ffff) as i32);
            if version.has_setup_stream() && !serving.started {
                serving.started = true;
                let mut b = BytesMut::new();
                if SubscribeResponse::Start(seq)
                    .encode(version, &mut b)
                    .is_ok()
                {
                    writes.push((sub, vec![b.freeze()], false));
                }
            }
            let writer = GroupWriter::new(version);
            let mut hdr = BytesMut::new();
            if let Some(prefix) = prefix {
                hdr.extend_from_slice(&prefix);
            }
            let _ = writer.header(
                &GroupHeader {
                    subscribe_id: serving.id,
                    sequence: seq,
                },
                &mut hdr,
            );
            writes.push((stream, vec![hdr.freeze()], false));
            serving.groups.push_back(ServedGroup {
                seq,
                stream,
                writer,
                sent: 0,
                done: false,
            });
        }
        let g = serving
            .groups
            .iter_mut()
            .find(|g| g.seq == seq)
            .expect("just ensured");
        if !g.done {
            let filler = &self.plan.filler;
            let size = self.plan.scenario.frame_size as u64;
            let mut chunks =
                Vec::with_capacity(2 * (track.frames.len() - g.sent.min(track.frames.len())));
            for f in &track.frames[g.sent.min(track.frames.len())..] {
                let mut head = BytesMut::with_capacity(32);
                if g.writer.frame(size, f.timestamp_ms, &mut head).is_err() {
                    break;
                }
                head.extend_from_slice(&f.stamp);
                chunks.push(head.freeze());
                chunks.push(filler.clone());
                g.sent += 1;
            }
            g.done = track.complete;
            writes.push((g.stream, chunks, g.done));
        }
        for old in resets {
            self.reset(ctx, ch, old, ErrorCode::CANCEL);
        }
        for (id, chunks, fin) in writes {
            self.write(ctx, ch, id, chunks, fin);
        }
    }

    /// Write the next frame of published track `p`.
    fn emit(&mut self, ctx: &mut Ctx<'_>, p: usize) {
        let fpg = self.frames_per_group();
        let now_us = self.plan.clock.us(ctx.now);
        let t = &mut self.pubs[p];
        if !t.live {
            return;
        }
        let seq = t.next_seq;
        let group = seq / fpg;
        if seq.is_multiple_of(fpg) {
            t.frames.clear();
            t.group = Some(group);
        }
        t.frames.push(PubFrame {
            stamp: Stamp {
                sent_us: now_us,
                seq,
            }
            .encode(),
            timestamp_ms: now_us / 1000,
        });
        t.next_seq += 1;
        t.complete = seq % fpg == fpg - 1;
        let (conn, serving) = (t.conn, t.serving.clone());
        self.plan.track(t.broadcast, t.track).wrote(seq, group);
        let stats = &self.plan.stats[self.core];
        stats.frames_published.fetch_add(1, Ordering::Relaxed);
        stats
            .bytes_published
            .fetch_add(self.plan.scenario.frame_size as u64, Ordering::Relaxed);
        for sub in serving {
            self.sync(ctx, conn, sub, group);
        }
    }

    /// Publishing is over: finish every open group and tell subscribers the totals are final.
    fn stop_publishing(&mut self, ctx: &mut Ctx<'_>) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        for p in 0..self.pubs.len() {
            let t = &mut self.pubs[p];
            if let Some(group) = t.group.filter(|_| t.live && !t.complete) {
                t.complete = true;
                let (conn, serving) = (t.conn, t.serving.clone());
                for sub in serving {
                    self.sync(ctx, conn, sub, group);
                }
            }
        }
        // Every track this core was to publish is final now, even one whose session never
        // came up.
        let plan = &self.plan;
        for index in (0..plan.conns.len()).filter(|i| i % plan.threads == self.core) {
            if let ConnPlan::Publisher { broadcast } = plan.conns[index] {
                for track in 0..plan.scenario.tracks {
                    plan.track(broadcast, track)
                        .done
                        .store(true, Ordering::Release);
                }
            }
        }
        self.next_drain_check = Some(ctx.now);
    }

    fn publish_due(&mut self, ctx: &mut Ctx<'_>) {
        if self.plan.pacing != Pacing::Timed || self.stopped {
            return;
        }
        if ctx.now >= self.plan.stop_at {
            self.stop_publishing(ctx);
            return;
        }
        let interval = self.frame_interval();
        let burst = self.plan.scenario.burst;
        for p in 0..self.pubs.len() {
            while self.pubs[p].live
                && self.pubs[p].next_due <= ctx.now
                && self.pubs[p].next_due < self.plan.stop_at
            {
                for _ in 0..burst {
                    self.emit(ctx, p);
                }
                self.pubs[p].next_due += interval;
            }
        }
    }

    /// After publishing stopped: count the subscriptions still owed frames.
    fn check_drain(&mut self, ctx: &mut Ctx<'_>) {
        let Some(at) = self.next_drain_check else {
            return;
        };
        if ctx.now < at {
            return;
        }
        self.next_drain_check = Some(ctx.now + DRAIN_TICK);
        let plan = &self.plan;
        let all_done = plan.tracks.iter().all(|t| t.done.load(Ordering::Acquire));
        let incomplete = match all_done {
            false => u64::MAX,
            true => self
                .subs
                .iter()
                .filter(|s| {
                    let published = plan
                        .track(s.broadcast, s.track)
                        .published
                        .load(Ordering::Acquire);
                    !s.ended && !s.account.complete(published)
                })
                .count() as u64,
        };
        let stats = &plan.stats[self.core];
        stats.incomplete.store(incomplete, Ordering::Release);
        stats.drain_checked.store(true, Ordering::Release);
    }

    fn schedule(&self, ctx: &mut Ctx<'_>) {
        let mut next: Option<Instant> = self.dials.front().map(|d| d.0);
        let mut earliest = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        if self.plan.pacing == Pacing::Timed && !self.stopped {
            earliest(self.plan.stop_at);
            for p in self.pubs.iter().filter(|p| p.live) {
                earliest(p.next_due);
            }
        }
        if let Some(t) = self.next_drain_check {
            earliest(t);
        }
        if let Some(t) = next {
            ctx.wake_at(t);
        }
    }

    fn tick(&mut self, ctx: &mut Ctx<'_>) {
        while let Some(&(at, index)) = self.dials.front() {
            if at > ctx.now {
                break;
            }
            self.dials.pop_front();
            self.dial(ctx, index);
        }
        self.publish_due(ctx);
        self.check_drain(ctx);
        self.schedule(ctx);
    }
}

impl Handler for Worker {
    fn on_start(&mut self, ctx: &mut Ctx<'_>) {
        self.tick(ctx);
    }

    fn on_event(&mut self, ctx: &mut Ctx<'_>, ch: ConnectionHandle, event: Event) {
        match event {
            Event::Connected => self.connected(ctx, ch),
            Event::ConnectionLost { reason } => self.lost(ch, reason.to_string()),
            Event::Stream(StreamEvent::Opened { .. }) => self.accept(ctx, ch),
            Event::Stream(StreamEvent::Readable { id }) => self.read(ctx, ch, id),
            Event::Stream(StreamEvent::Writable { id }) => {
                if let (Some(s), Some(conn)) = (self.sessions.get_mut(&ch), ctx.conn(ch)) {
                    stream_io::resume(conn, &mut s.outs, id);
                }
            }
            Event::Stream(StreamEvent::Stopped { id, .. }) => {
                if let Some(s) = self.sessions.get_mut(&ch) {
                    s.outs.remove(&id);
                    for serving in s.serving.values_mut() {
                        serving.groups.retain(|g| g.stream != id);
                    }
                }
                self.reset(ctx, ch, id, ErrorCode::CANCEL);
            }
            _ => {}
        }
    }

    fn on_wake(&mut self, ctx: &mut Ctx<'_>) {
        while let Ok(cmd) = self.commands.try_recv() {
            match cmd {
                Cmd::Burst(n) if !self.stopped => {
                    for p in 0..self.pubs.len() {
                        for _ in 0..n {
                            self.emit(ctx, p);
                        }
                    }
                }
                Cmd::Burst(_) => {}
                Cmd::Stop => self.stop_publishing(ctx),
            }
        }
        self.tick(ctx);
    }

    fn on_timer(&mut self, ctx: &mut Ctx<'_>) {
        self.tick(ctx);
    }

    fn on_shutdown(&mut self, ctx: &mut Ctx<'_>) {
        self.shutting_down = true;
        let mut report = WorkerReport {
            latency: std::mem::take(&mut self.latency),
            cpu: procfs::this_thread_cpu().saturating_sub(self.cpu_start),
            subscriptions: self.subs.len() as u64,
            publisher_groups_dropped: self.publisher_groups_dropped,
            ..Default::default()
        };
        for s in &self.subs {
            let published = self
                .plan
                .track(s.broadcast, s.track)
                .published
                .load(Ordering::Acquire);
            report.tally += s.account.finish(published);
        }
        // Viewers that never got to subscribe: on sessions that never got the announcement,
        // and on connections not even dialled.
        for s in self.sessions.values() {
            if let ConnPlan::Subscriber { viewers } = &self.plan.conns[s.plan_index] {
                let unsubscribed =
                    viewers.iter().filter(|b| !s.subscribed.contains(b)).count() as u64;
                report.viewers_unsubscribed += unsubscribed;
            }
        }
        for &(_, index) in &self.dials {
            if let ConnPlan::Subscriber { viewers } = &self.plan.conns[index] {
                report.viewers_unsubscribed += viewers.len() as u64;
            }
        }
        let _ = self.report.send(report);
        for ch in self.sessions.keys().copied().collect::<Vec<_>>() {
            ctx.close(ch, ErrorCode::CANCEL.0, b"load run over");
        }
    }
}
