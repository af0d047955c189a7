//! One core's MoQ node: the moq-lite sessions on its connections, its replicas of tracks, and
//! the fan-out from each track to its subscribers (sessions on this core, other cores, or the
//! local application of a client). A relay and a client are the same node; a client simply
//! also has an application that publishes and subscribes.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use crossbeam_channel::{Receiver, Sender};

use super::registry::{Census, CoreCounters, CoreMsg, Owner, Registry};
use crate::lite::{
    self, Announce, AnnounceInit, AnnounceOk, AnnounceRequest, AnnounceStatus, ClientSetup,
    ControlType, DataType, DecodeError, ErrorCode, Fetch, GroupEvent, GroupHeader, GroupReader,
    GroupWriter, Message, ProbeLevel, Role, ServerSetup, Setup, Subscribe, SubscribeOptions,
    SubscribeResponse, SubscribeUpdate, Track as TrackReq, TrackInfo, Version,
};
use crate::model::{CacheLimits, Frame, Group, GroupCache, PeerId, path};
use crate::quic::stream_io::{self, ConnStreams, Outs, ReadEnd};
use crate::quic::{
    Connection, ConnectionHandle, Ctx, Dir, Event, Handler, StreamEvent, StreamId, VarInt,
};
use crate::web::{self, WebEvent, WebSession};

/// Named, configurable bounds on what one peer can make this node hold.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest control message (SUBSCRIBE, ANNOUNCE, ...), in bytes.
    pub max_message: usize,
    /// Longest absolute broadcast path, in bytes.
    pub max_path: usize,
    /// Largest frame accepted from a publisher.
    pub max_frame: u64,
    /// Subscriptions one session may hold at once.
    pub max_subscriptions: usize,
    /// Announce requests one session may hold open.
    pub max_announces: usize,
    /// Unfinished group streams per subscription; a newer group resets the oldest beyond this.
    pub max_groups_in_flight: usize,
    /// How long a track nobody wants stays subscribed upstream and cached, so that a quick
    /// re-subscribe (or an HTTP fetch) finds it warm.
    pub track_linger: std::time::Duration,
    pub cache: CacheLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message: 16 * 1024,
            max_path: 1024,
            max_frame: lite::MAX_FRAME_SIZE,
            max_subscriptions: 1024,
            max_announces: 64,
            max_groups_in_flight: 4,
            track_linger: std::time::Duration::from_secs(5),
            cache: CacheLimits::default(),
        }
    }
}

/// What a client application asks its node to do.
pub enum AppCmd {
    /// Announce `path` (relative to the connection root) as published here.
    Publish {
        path: String,
    },
    Unpublish {
        path: String,
    },
    /// Append a frame to group `seq` of a track this application publishes.
    Frame {
        path: String,
        track: String,
        seq: u64,
        timestamp: u64,
        payload: Bytes,
    },
    /// Group `seq` has all its frames.
    GroupDone {
        path: String,
        track: String,
        seq: u64,
    },
    /// The track is over.
    TrackDone {
        path: String,
        track: String,
    },
    /// Deliver `track` of `path` as [`AppEvent`]s tagged `id`.
    Subscribe {
        id: u64,
        path: String,
        track: String,
    },
    Unsubscribe {
        id: u64,
    },
    /// Declare the TRACK_INFO of a track this application publishes (else the defaults).
    TrackInfo {
        path: String,
        track: String,
        info: TrackInfo,
    },
    /// Ask for a track's TRACK_INFO; answered with [`AppEvent::TrackInfo`] tagged `id`.
    Info {
        id: u64,
        path: String,
        track: String,
    },
}

/// What a client application hears from its node.
#[derive(Debug)]
pub enum AppEvent {
    /// A session is set up and can carry requests.
    Ready {
        version: Version,
    },
    Announced {
        path: String,
        active: bool,
    },
    Frame {
        id: u64,
        seq: u64,
        index: usize,
        timestamp: u64,
        payload: Vec<Bytes>,
    },
    GroupDone {
        id: u64,
        seq: u64,
    },
    /// The subscription is over; `code` 0 is a clean end.
    Ended {
        id: u64,
        code: u32,
    },
    Closed {
        reason: String,
    },
    /// The answer to [`AppCmd::Info`]: the publisher's TRACK_INFO, or the reset code.
    TrackInfo {
        id: u64,
        result: Result<TrackInfo, u32>,
    },
}

/// A client node's application side.
pub struct App {
    pub commands: Receiver<AppCmd>,
    pub events: Sender<AppEvent>,
}

/// Where a client node dials on start.
#[derive(Clone, Debug)]
pub struct Dial {
    pub addr: std::net::SocketAddr,
    pub server_name: String,
    /// Sent as the lite-05 SETUP Path; older versions have no in-band path.
    pub path: String,
    /// Offered in CLIENT_SETUP when the ALPN is `moql`, in preference order.
    pub setup_versions: Vec<Version>,
    /// Over WebTransport (ALPN `h3`): the WT-Available-Protocols to offer; none leaves the
    /// version to the SETUP exchange.
    pub web_protocols: Vec<String>,
}

const CONTROL_PRIORITY: i32 = i32::MAX;

fn stream_code(code: ErrorCode) -> VarInt {
    VarInt::from_u64(code.to_stream_code()).unwrap_or(VarInt::from_u32(0))
}

fn dir_index(dir: Dir) -> usize {
    match dir {
        Dir::Bi => 0,
        Dir::Uni => 1,
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SubRef {
    Down {
        conn: ConnectionHandle,
        id: u64,
    },
    App {
        id: u64,
    },
    /// An HTTP `/fetch` waiting for the track's next complete group.
    Fetch {
        id: u64,
    },
}

#[derive(Debug)]
enum Source {
    /// Subscribed upstream on a session of this core with our subscribe id.
    Session { conn: ConnectionHandle, up: u64 },
    /// A replica fed by the owning core.
    Core { core: usize },
    /// Written by the local application.
    App,
}

struct TrackState {
    path: Arc<str>,
    name: Arc<str>,
    source: Source,
    cache: GroupCache,
    subs: Vec<SubRef>,
    /// Other cores that hold replicas of this track: (core, their replica id).
    remotes: Vec<Replica>,
    /// Since when nobody wants the track; it stays subscribed (and cached) for the linger.
    idle_since: Option<std::time::Instant>,
}

/// A replica of one of our tracks on another core: the core, and its track id there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Replica {
    core: usize,
    id: u64,
}

/// Our SUBSCRIBE on a peer: its stream, and the track it feeds.
#[derive(Clone, Copy, Debug)]
struct Upstream {
    stream: StreamId,
    track: u64,
}

/// The local application's subscription: the track, and how many frames of each unfinished
/// group it has had.
struct AppSub {
    track: u64,
    sent: HashMap<u64, usize>,
}

enum In {
    /// Reading the stream type varint.
    Type {
        bidi: bool,
        buf: Vec<u8>,
    },
    /// lite-01/02 session stream: CLIENT_SETUP (server) or SERVER_SETUP (client), then
    /// SESSION_INFO messages we ignore.
    SessionStream {
        buf: Vec<u8>,
        setup_done: bool,
    },
    /// lite-05 SETUP uni stream.
    Setup {
        buf: Vec<u8>,
    },
    Group(GroupIn),
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
    /// Responses to our announce request.
    OurAnnounce {
        buf: Vec<u8>,
        started: bool,
        hop: u64,
    },
    /// Responses to our SUBSCRIBE.
    OurSubscribe {
        buf: Vec<u8>,
        up: u64,
    },
    /// The publisher's TRACK_INFO for `(path, name)`, which others wait for.
    OurTrack {
        buf: Vec<u8>,
        path: Arc<str>,
        name: Arc<str>,
    },
    /// Read and drop (probe, goaway, finished requests).
    Discard,
}

struct GroupIn {
    reader: GroupReader,
    track: Option<u64>,
    seq: u64,
    frame: Option<Frame>,
}

struct DownGroup {
    seq: u64,
    stream: StreamId,
    sent: usize,
    /// FIN queued; the group leaves the in-flight set once its queue has drained.
    done: bool,
    writer: GroupWriter,
}

/// A peer's subscription to a track of ours.
struct Down {
    stream: StreamId,
    track: u64,
    priority: u8,
    started: bool,
    groups: VecDeque<DownGroup>,
    /// Groups given up for this subscriber (reset as too far behind, or stopped by it): their
    /// later frames must not reopen them from frame 0.
    skipped: VecDeque<u64>,
}

/// Skipped groups remembered per subscription; groups come in order, so a few suffice.
const MAX_SKIPPED: usize = 16;

impl Down {
    fn skip(&mut self, seq: u64) {
        if self.skipped.len() == MAX_SKIPPED {
            self.skipped.pop_front();
        }
        self.skipped.push_back(seq);
    }
}

/// A peer's announce request we keep answering.
struct AnnounceOut {
    stream: StreamId,
    prefix: String,
    exclude: u64,
    active: HashSet<Arc<str>>,
}

struct Session {
    /// Names this session in the registry and in cross-core messages; never reused.
    peer: PeerId,
    version: Option<Version>,
    legacy: bool,
    server: bool,
    root: String,
    ready: bool,
    session_stream: Option<StreamId>,
    ins: HashMap<StreamId, In>,
    outs: Outs,
    downs: HashMap<u64, Down>,
    /// Our subscriptions to the peer's tracks, by our subscribe id.
    ups: HashMap<u64, Upstream>,
    next_up: u64,
    announce_outs: Vec<AnnounceOut>,
    published: HashSet<Arc<str>>,
    /// Set on HTTP/3 connections: the WebTransport session the moq session rides on.
    web: Option<WebSession>,
    /// The `jwt` query parameter of the CONNECT URL, kept for the auth layer.
    jwt: Option<String>,
    /// Peer streams taken with `accept`, per direction ([`dir_index`]): quinn hands them out
    /// in index order, so a peer stream is accepted when its index is below this.
    peer_accepted: [u64; 2],
}

impl Session {
    fn version(&self) -> Version {
        self.version.unwrap_or(Version::Lite02)
    }

    /// Write what subscription `sub` has not had of `group`: open its stream if the group is
    /// new to it (resetting its oldest backlogged groups past the in-flight bound), then the
    /// frame headers and the same payload `Bytes`, and FIN once the group is done.
    fn sync_down(
        &mut self,
        conn: &mut Connection,
        limits: &Limits,
        counters: &CoreCounters,
        sub: u64,
        group: &Group,
    ) {
        let seq = group.seq;
        let version = self.version();
        let Some(down) = self.downs.get_mut(&sub) else {
            return;
        };
        let outs = &mut self.outs;
        down.groups
            .retain(|g| !g.done || outs.contains_key(&g.stream));
        if down.skipped.contains(&seq) {
            return;
        }
        if !down.groups.iter().any(|g| g.seq == seq) {
            // A new group: if the subscriber is behind (data stuck behind its flow control),
            // reset its oldest backlogged groups. Groups that only wait on upstream cost no
            // payload memory here and are left alone.
            let max = limits.max_groups_in_flight.max(1);
            while down.groups.len() >= max {
                let backlogged = down
                    .groups
                    .iter()
                    .position(|g| outs.get(&g.stream).is_some_and(|o| !o.queue.is_empty()));
                let Some(victim) = backlogged else { break };
                let old = down.groups.remove(victim).expect("in range");
                down.skip(old.seq);
                outs.remove(&old.stream);
                let _ = conn
                    .send_stream(old.stream)
                    .reset(stream_code(ErrorCode::CANCEL));
                counters.group_reset();
            }
            let Some(stream) = conn.streams().open(Dir::Uni) else {
                return;
            };
            let priority = ((down.priority as i32) << 23) | (seq & 0x7f_ffff) as i32;
            let _ = conn.send_stream(stream).set_priority(priority);
            if version == Version::Lite05 && !down.started {
                down.started = true;
                let mut b = BytesMut::new();
                if SubscribeResponse::Start(seq)
                    .encode(version, &mut b)
                    .is_ok()
                {
                    stream_io::send(conn, outs, down.stream, vec![b.freeze()], false);
                }
            }
            let writer = GroupWriter::new(version);
            let mut hdr = BytesMut::new();
            if let Some(prefix) = self.web.as_ref().and_then(|w| w.stream_prefix(Dir::Uni)) {
                hdr.extend_from_slice(&prefix);
            }
            let _ = writer.header(
                &GroupHeader {
                    subscribe_id: sub,
                    sequence: seq,
                },
                &mut hdr,
            );
            stream_io::send(conn, outs, stream, vec![hdr.freeze()], false);
            down.groups.push_back(DownGroup {
                seq,
                stream,
                sent: 0,
                done: false,
                writer,
            });
        }
        let Some(g) = down.groups.iter_mut().find(|g| g.seq == seq) else {
            return;
        };
        if g.done {
            return;
        }
        let mut chunks = Vec::new();
        let mut delivered = 0;
        for f in &group.frames[g.sent.min(group.frames.len())..] {
            let mut hdr = BytesMut::with_capacity(16);
            if g.writer.frame(f.size(), f.timestamp, &mut hdr).is_err() {
                break;
            }
            chunks.push(hdr.freeze());
            chunks.extend(f.chunks.iter().cloned());
            g.sent += 1;
            delivered += 1;
        }
        counters.frames_delivered(delivered);
        g.done |= group.done;
        stream_io::send(conn, outs, g.stream, chunks, group.done);
    }

    /// Whether `id` is ours or a peer stream already taken with `accept`.
    fn accepted(&self, id: StreamId) -> bool {
        let ours = if self.server {
            quinn_proto::Side::Server
        } else {
            quinn_proto::Side::Client
        };
        id.initiator() == ours || id.index() < self.peer_accepted[dir_index(id.dir())]
    }
}

/// Everything a session operation may touch besides the session itself.
pub struct Node {
    core: usize,
    registry: Arc<Registry>,
    inbox: Receiver<CoreMsg>,
    limits: Limits,
    app: Option<App>,
    dial: Option<Dial>,
    upstream: Option<ConnectionHandle>,
    sessions: HashMap<ConnectionHandle, Session>,
    /// The connection of each live session, by its [`PeerId`].
    peers: HashMap<PeerId, ConnectionHandle>,
    next_peer: u64,
    tracks: HashMap<u64, TrackState>,
    /// path -> track name -> track id; nested so lookups by `&str` allocate nothing.
    by_name: HashMap<Arc<str>, HashMap<Arc<str>, u64>>,
    /// Which of our tracks feeds each replica on another core.
    remote_index: HashMap<Replica, u64>,
    app_subs: HashMap<u64, AppSub>,
    next_track: u64,
    /// This core's view of every active broadcast and who publishes it.
    active: BTreeMap<Arc<str>, Owner>,
    /// Publishers' TRACK_INFO by path and track name, kept while the broadcast is active.
    infos: HashMap<Arc<str>, HashMap<Arc<str>, TrackInfo>>,
    /// Who waits for a TRACK_INFO being asked for upstream or on the owning core.
    info_waits: HashMap<(Arc<str>, Arc<str>), Vec<InfoWaiter>>,
    /// HTTP fetches waiting for a complete group, by their [`SubRef::Fetch`] id.
    fetches: HashMap<u64, Sender<Vec<Bytes>>>,
    next_fetch: u64,
}

/// Someone who asked for a track's TRACK_INFO.
#[derive(Clone, Copy, Debug)]
enum InfoWaiter {
    /// A peer's TRACK stream on this core.
    Stream(ConnectionHandle, StreamId),
    /// Another core, on behalf of its own waiters.
    Core(usize),
    /// The local application's [`AppCmd::Info`].
    App(u64),
}

impl Node {
    pub fn new(
        core: usize,
        registry: Arc<Registry>,
        inbox: Receiver<CoreMsg>,
        limits: Limits,
        app: Option<App>,
        dial: Option<Dial>,
    ) -> Self {
        let active = registry.snapshot().into_iter().collect();
        Self {
            core,
            registry,
            inbox,
            limits,
            app,
            dial,
            upstream: None,
            sessions: HashMap::new(),
            peers: HashMap::new(),
            next_peer: 0,
            tracks: HashMap::new(),
            by_name: HashMap::new(),
            remote_index: HashMap::new(),
            app_subs: HashMap::new(),
            next_track: 1,
            active,
            infos: HashMap::new(),
            info_waits: HashMap::new(),
            fetches: HashMap::new(),
            next_fetch: 0,
        }
    }

    fn peer_of(&self, ch: ConnectionHandle) -> Option<PeerId> {
        self.sessions.get(&ch).map(|s| s.peer)
    }

    fn conn_of(&self, peer: PeerId) -> Option<ConnectionHandle> {
        self.peers.get(&peer).copied()
    }

    /// A client routes what nobody here publishes to its one upstream session.
    fn upstream_owner(&self) -> Option<Owner> {
        Some(Owner {
            core: self.core,
            peer: Some(self.peer_of(self.upstream?)?),
            hops: Vec::new(),
        })
    }

    fn emit(&self, event: AppEvent) {
        if let Some(app) = &self.app {
            let _ = app.events.send(event);
        }
    }

    // ----- stream I/O -------------------------------------------------------------------

    /// Queue `chunks` (and FIN) on a stream and hand quinn what flow control allows.
    fn write(
        &mut self,
        ctx: &mut Ctx<'_>,
        ch: ConnectionHandle,
        id: StreamId,
        chunks: Vec<Bytes>,
        fin: bool,
    ) {
        let Some(session) = self.sessions.get_mut(&ch) else {
            return;
        };
        let Some(conn) = ctx.conn(ch) else { return };
        stream_io::send(conn, &mut session.outs, id, chunks, fin);
    }

    fn write_msg(
        &mut self,
        ctx: &mut Ctx<'_>,
        ch: ConnectionHandle,
        id: StreamId,
        encode: impl FnOnce(Version, &mut BytesMut) -> Result<(), lite::EncodeError>,
        fin: bool,
    ) {
        let Some(version) = self.sessions.get(&ch).map(Session::version) else {
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

    /// Stop reading and reset our half: the stream is refused.
    fn refuse(&mut self, ctx: &mut Ctx<'_>, ch: ConnectionHandle, id: StreamId, code: ErrorCode) {
        tracing::debug!(core = self.core, stream = %id, code = code.0, "refusing stream");
        if let Some(s) = self.sessions.get_mut(&ch) {
            s.ins.remove(&id);
        }
        if let Some(conn) = ctx.conn(ch) {
            let _ = conn.recv_stream(id).stop(stream_code(code));
        }
        if id.dir() == Dir::Bi
            || id.initiator() == ctx.peek(ch).map_or(quinn_proto::Side::Server, |c| c.side())
        {
            self.reset(ctx, ch, id, code);
        }
    }

    fn close(&mut self, ctx: &mut Ctx<'_>, ch: ConnectionHandle, code: ErrorCode, reason: &str) {
        tracing::debug!(core = self.core, code = code.0, reason, "closing session");
        ctx.close(ch, code.0, reason.as_bytes());
    }

    /// Open a stream for the moq session; on WebTransport it starts with the stream header.
    fn open(&mut self, ctx: &mut Ctx<'_>, ch: ConnectionHandle, dir: Dir) -> Option<StreamId> {
        let id = ctx.conn(ch)?.streams().open(dir)?;
        let prefix = self
            .sessions
            .get(&ch)
            .and_then(|s| s.web.as_ref()?.stream_prefix(dir));
        if let Some(prefix) = prefix {
            self.write(ctx, ch, id, vec![prefix], false);
        }
        Some(id)
    }

    /// Open a control stream toward the peer, send its type and request, and read its
    /// responses as `state`.
    fn request<M: Message>(
        &mut self,
        ctx: &mut Ctx<'_>,
        ch: ConnectionHandle,
        kind: ControlType,
        msg: &M,
        state: In,
    ) -> Option<StreamId> {
        let id = self.open(ctx, ch, Dir::Bi)?;
        self.sessions.get_mut(&ch)?.ins.insert(id, state);
        if let Some(c) = ctx.conn(ch) {
            let _ = c.send_stream(id).set_priority(CONTROL_PRIORITY);
        }
        self.write_msg(
            ctx,
            ch,
            id,
            |v, b| {
                kind.encode(v, b)?;
                msg.encode(v, b)
            },
            false,
        );
        Some(id)
    }

    // ----- session life -----------------------------------------------------------------

    fn connected(&mut self, ctx: &mut Ctx<'_>, ch: ConnectionHandle) {
        let (alpn, _) = ctx.handshake(ch).unwrap_or_default();
        let alpn = alpn
            .map(|a| String::from_utf8_lossy(&a).into_owned())
            .unwrap_or_default();
        let server = ctx.peek(ch).is_some_and(|c| c.side().is_server());
        let version = Version::from_alpn(&alpn);
        let legacy = alpn == Version::LEGACY_ALPN;
        let h3 = alpn.as_bytes() == web::ALPN;
        if version.is_none() && !legacy && !h3 {
            self.close(ctx, ch, ErrorCode::UNKNOWN_ALPN, "unsupported ALPN");
            return;
        }
        tracing::debug!(core = self.core, conn = ?ch, alpn = %alpn, server, "session connected");
        let peer = PeerId(self.next_peer);
        self.next_peer += 1;
        self.peers.insert(peer, ch);
        let session = Session {
            peer,
            version,
            legacy,
            server,
            root: String::new(),
            ready: false,
            session_stream: None,
            ins: HashMap::new(),
            outs: HashMap::new(),
            downs: HashMap::new(),
            ups: HashMap::new(),
            next_up: 0,
            announce_outs: Vec::new(),
            published: HashSet::new(),
            web: h3.then(|| self.web_session(server)),
            jwt: None,
            peer_accepted: [0; 2],
        };
        self.sessions.insert(ch, session);
        if h3 {
            self.web_start(ctx, ch);
        } else {
            self.begin(ctx, ch);
        }
        self.accept(ctx, ch);
    }

    /// The version is known: start the moq session (SETUP per version).
    fn begin(&mut self, ctx: &mut Ctx<'_>, ch: ConnectionHandle) {
        let Some(s) = self.sessions.get(&ch) else {
            return;
        };
        let (version, server, web) = (s.version, s.server, s.web.is_some());
        // A client's root travels in SETUP (in the URL on WebTransport); inside the node its
        // paths are relative to it.
        let root = match &self.dial {
            Some(d) if !server && !web => d.path.clone(),
            _ => String::new(),
        };
        match version {
            Some(Version::Lite05) => {
                let setup = Setup {
                    probe: ProbeLevel::None,
                    path: (!server && !root.is_empty()).then_some(root),
                    role: Role::Both,
                    cost: None,
                    origin: self.registry.origin,
                };
                if let Some(id) = self.open(ctx, ch, Dir::Uni) {
                    self.write_msg(
                        ctx,
                        ch,
                        id,
                        |v, b| {
                            DataType::Setup.encode(v, b)?;
                            setup.encode(v, b)
                        },
                        true,
                    );
                }
                // A client need not wait for the server's SETUP; a server waits for the
                // client's, which carries the root.
                if !server {
                    self.ready(ctx, ch);
                }
            }
            Some(_) => self.ready(ctx, ch),
            None if !server => {
                let Some(id) = self.open(ctx, ch, Dir::Bi) else {
                    return;
                };
                let versions = self.dial.as_ref().map_or_else(
                    || vec![Version::Lite02, Version::Lite01],
                    |d| d.setup_versions.clone(),
                );
                let setup = ClientSetup {
                    versions: versions.iter().map(|v| v.code()).collect(),
                    parameters: Vec::new(),
                };
                if let Some(s) = self.sessions.get_mut(&ch) {
                    s.session_stream = Some(id);
                    s.ins.insert(
                        id,
                        In::SessionStream {
                            buf: Vec::new(),
                            setup_done: false,
                        },
                    );
                }
                self.write_msg(ctx, ch, id, |v, b| setup.encode(v, b), false);
            }
            None => {}
        }
    }

    // ----- WebTransport -----------------------------------------------------------------

    /// The HTTP/3 + WebTransport session of a new connection. A server checks the CONNECT's
    /// root as a broadcast path and offers the moq-lite ALPNs as WT-Protocols; a client asks
    /// for its dial path, offering the dial's protocols.
    fn web_session(&self, server: bool) -> WebSession {
        let max_buffer = self.limits.max_message.saturating_mul(4);
        if server {
            let max_path = self.limits.max_path;
            let root = move |raw: &str| path::normalize(raw, max_path).ok();
            return WebSession::server(Version::ALPNS, root, max_buffer);
        }
        let (authority, url, protocols) = match &self.dial {
            Some(d) => (
                format!("{}:{}", d.server_name, d.addr.port()),
                format!("/{}", d.path.trim_start_matches('/')),
                d.web_protocols.clone(),
            ),
            None => (String::new(), "/".to_owned(), Vec::new()),
        };
        WebSession::client(&authority, &url, protocols, max_buffer)
    }

    /// An HTTP/3 connection: our SETTINGS at once (Chromium waits for them), and a client
    /// sends its CONNECT.
    fn web_start(&mut self, ctx: &mut Ctx<'_>, ch: ConnectionHandle) {
        let now = ctx.now;
        let (Some(s), Some(conn)) = (self.sessions.get_mut(&ch), ctx.conn(ch)) else {
            return;
        };
        if let Some(web) = s.web.as_mut() {
            web.start(&mut ConnStreams::new(conn, &mut s.outs, now));
        }
    }

    /// Bytes on a stream the WebTransport session reads (HTTP/3 streams, and WebTransport
    /// streams until their header is read or while they wait for the session to open).
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

    /// What the WebTransport session reported. Once it is open the version comes from the
    /// negotiated subprotocol, or from the SETUP exchange when there is none; its streams
    /// start in the moq state [`Self::web_inner`] picks.
    fn web_events(&mut self, ctx: &mut Ctx<'_>, ch: ConnectionHandle, events: Vec<WebEvent>) {
        let mut opened = false;
        for event in events {
            match event {
                WebEvent::Open {
                    root,
                    protocol,
                    jwt,
                } => {
                    let Some(s) = self.sessions.get_mut(&ch) else {
                        return;
                    };
                    if s.server {
                        s.root = root;
                        s.jwt = jwt;
                    }
                    s.version = protocol.as_deref().and_then(Version::from_alpn);
                    s.legacy = s.version.is_none();
                    self.begin(ctx, ch);
                    opened = true;
                }
                WebEvent::Stream {
                    id,
                    bidi,
                    chunks,
                    end,
                } => {
                    let state = self.web_inner(ch, id, bidi);
                    self.feed(ctx, ch, id, state, chunks, moq_end(end));
                }
                WebEvent::Closed { code, reason } => {
                    tracing::debug!(
                        core = self.core,
                        code,
                        reason,
                        "webtransport session closed by peer"
                    );
                }
                WebEvent::Refused { status } => {
                    tracing::debug!(core = self.core, status, "CONNECT refused");
                }
                WebEvent::Failed(e) => {
                    tracing::debug!(core = self.core, error = %e, "http/3 error");
                }
            }
        }
        if opened {
            self.accept(ctx, ch);
        }
    }

    /// The moq state a WebTransport stream of our session starts in.
    fn web_inner(&mut self, ch: ConnectionHandle, id: StreamId, bidi: bool) -> In {
        if let Some(s) = self.sessions.get_mut(&ch)
            && bidi
            && s.server
            && s.legacy
            && s.session_stream.is_none()
        {
            s.session_stream = Some(id);
            return In::SessionStream {
                buf: Vec::new(),
                setup_done: false,
            };
        }
        In::Type {
            bidi,
            buf: Vec::new(),
        }
    }

    /// Setup is complete: requests may flow. Ask the peer what it publishes.
    fn ready(&mut self, ctx: &mut Ctx<'_>, ch: ConnectionHandle) {
        let Some(s) = self.sessions.get_mut(&ch) else {
            return;
        };
        if s.ready {
            return;
        }
        s.ready = true;
        let version = s.version();
        let server = s.server;
        if !server && self.upstream.is_none() {
            self.upstream = Some(ch);
        }
        let req = AnnounceRequest {
            prefix: String::new(),
            exclude_hop: self.registry.origin,
        };
        self.request(
            ctx,
            ch,
            ControlType::Announce,
            &req,
            In::OurAnnounce {
                buf: Vec::new(),
                started: false,
                hop: 0,
            },
        );
        if !server {
            self.emit(AppEvent::Ready { version });
        }
        self.accept(ctx, ch);
    }

    /// Take the peer's new streams that the session is ready for.
    fn accept(&mut self, ctx: &mut Ctx<'_>, ch: ConnectionHandle) {
        loop {
            let Some(s) = self.sessions.get(&ch) else {
                return;
            };
            let web = s.web.is_some();
            let uni_ok = web || s.ready || s.version == Some(Version::Lite05);
            let bi_ok = web || s.ready || (s.legacy && s.server && s.session_stream.is_none());
            let legacy_first = !s.ready && s.legacy && s.server;
            let Some(conn) = ctx.conn(ch) else { return };
            let id = if uni_ok {
                conn.streams().accept(Dir::Uni)
            } else {
                None
            };
            let id = id.or_else(|| {
                if bi_ok {
                    conn.streams().accept(Dir::Bi)
                } else {
                    None
                }
            });
            let Some(id) = id else { return };
            let s = self.sessions.get_mut(&ch).expect("checked");
            s.peer_accepted[dir_index(id.dir())] = id.index() + 1;
            if let Some(web) = s.web.as_mut() {
                web.accept(id);
                self.read(ctx, ch, id);
                continue;
            }
            let state = if id.dir() == Dir::Bi && legacy_first {
                s.session_stream = Some(id);
                In::SessionStream {
                    buf: Vec::new(),
                    setup_done: false,
                }
            } else {
                In::Type {
                    bidi: id.dir() == Dir::Bi,
                    buf: Vec::new(),
                }
            };
            s.ins.insert(id, state);
            self.read(ctx, ch, id);
        }
    }

    fn lost(&mut self, ctx: &mut Ctx<'_>, ch: ConnectionHandle, reason: String) {
        let Some(s) = self.sessions.remove(&ch) else {
            return;
        };
        self.peers.remove(&s.peer);
        tracing::debug!(core = self.core, conn = ?ch, reason = %reason, "session lost");
        if self.upstream == Some(ch) {
            self.upstream = None;
            self.emit(AppEvent::Closed { reason });
        }
        for path in &s.published {
            self.registry.unpublish(path, self.core, Some(s.peer));
        }
        // Its TRACK streams wait for nothing any more; a later session may reuse the handle.
        self.info_waits.retain(|_, waiters| {
            waiters.retain(|w| !matches!(w, InfoWaiter::Stream(c, _) if *c == ch));
            !waiters.is_empty()
        });
        for state in s.ins.values() {
            if let In::OurTrack { path: p, name, .. } = state {
                self.info_known(ctx, p.clone(), name.clone(), Err(ErrorCode::DROPPED));
            }
        }
        for (id, down) in s.downs {
            self.detach(ctx, down.track, SubRef::Down { conn: ch, id });
        }
        let sourced: Vec<u64> = self
            .tracks
            .iter()
            .filter(|(_, t)| matches!(t.source, Source::Session { conn, .. } if conn == ch))
            .map(|(id, _)| *id)
            .collect();
        for id in sourced {
            // A publisher that took the broadcast over keeps its subscribers; else it ends.
            let taken = self
                .tracks
                .get(&id)
                .and_then(|t| self.registry.lookup(&t.path));
            if taken.is_some() {
                self.resplice(ctx, id);
            } else {
                self.end_track(ctx, id, ErrorCode::DROPPED);
            }
        }
    }

    /// Feed `track` from whoever publishes its broadcast now. Its subscribers stay; the groups
    /// in flight from the old source can never finish, so their streams are reset, and the
    /// cache starts over with the new publisher's sequence.
    fn resplice(&mut self, ctx: &mut Ctx<'_>, track: u64) {
        let Some(t) = self.tracks.get(&track) else {
            return;
        };
        let Some(owner) = self.registry.lookup(&t.path) else {
            return;
        };
        let current = match t.source {
            Source::Session { conn, .. } => {
                owner.core == self.core && owner.peer.is_some() && owner.peer == self.peer_of(conn)
            }
            // The owning core resplices its own track.
            Source::Core { core } => owner.core == core,
            Source::App => true,
        };
        let live = match t.source {
            Source::Session { conn, .. } => self.sessions.contains_key(&conn),
            _ => true,
        };
        if current && live {
            return;
        }
        let (p, name) = (t.path.clone(), t.name.clone());
        tracing::debug!(core = self.core, broadcast = %p, track = %name, "resplicing to the new publisher");
        let unfinished: Vec<u64> = t
            .cache
            .groups
            .iter()
            .filter(|g| !g.done)
            .map(|g| g.seq)
            .collect();
        for seq in unfinished {
            self.group_abort(ctx, track, seq, ErrorCode::DROPPED);
        }
        let Some(t) = self.tracks.get_mut(&track) else {
            return;
        };
        t.cache = GroupCache::default();
        // The new publisher's sequence may reuse numbers the old one's skipped groups had.
        for sub in &t.subs {
            if let SubRef::Down { conn, id } = sub
                && let Some(d) = self
                    .sessions
                    .get_mut(conn)
                    .and_then(|s| s.downs.get_mut(id))
            {
                d.skipped.clear();
            }
        }
        let old = std::mem::replace(&mut t.source, Source::App);
        self.drop_source(ctx, track, old);
        let source = if owner.core != self.core {
            self.registry.send(
                owner.core,
                CoreMsg::Subscribe {
                    path: p,
                    track: name,
                    from: self.core,
                    replica: track,
                },
            );
            Some(Source::Core { core: owner.core })
        } else if let Some(peer) = owner.peer {
            self.conn_of(peer).and_then(|conn| {
                self.subscribe_upstream(ctx, conn, &p, &name, track)
                    .map(|up| Source::Session { conn, up })
            })
        } else {
            Some(Source::App)
        };
        match source {
            Some(source) => {
                if let Some(t) = self.tracks.get_mut(&track) {
                    t.source = source;
                }
            }
            None => self.end_track(ctx, track, ErrorCode::DROPPED),
        }
    }

    // ----- reading ----------------------------------------------------------------------

    fn read(&mut self, ctx: &mut Ctx<'_>, ch: ConnectionHandle, id: StreamId) {
        let Some(s) = self.sessions.get_mut(&ch) else {
            return;
        };
        if s.web.as_ref().is_some_and(|w| w.owns(id)) {
            self.web_read(ctx, ch, id);
            return;
        }
        let Some(state) = s.ins.remove(&id) else {
            // quinn reports bytes on a peer stream that is not accepted yet (its first frame
            // only said Opened): they must stay in quinn until `accept` takes the stream, or
            // a request sent in two packets before SETUP loses its body. A stream we are done
            // with is drained, so its bytes keep no flow-control credit.
            if s.accepted(id)
                && let Some(conn) = ctx.conn(ch)
            {
                let _ = read_chunks(conn, id);
            }
            return;
        };
        let Some(conn) = ctx.conn(ch) else { return };
        let (chunks, end) = read_chunks(conn, id);
        self.feed(ctx, ch, id, state, chunks, end);
    }

    /// Run a stream's state over new bytes and keep the state while the stream is open.
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
                tracing::debug!(core = self.core, stream = %id, error = %e, "stream error");
                self.stream_failed(ctx, ch, id, e.code());
                None
            }
        };
        if let (Some(state), Some(s)) = (state, self.sessions.get_mut(&ch))
            && end == End::Open
        {
            s.ins.insert(id, state);
        }
    }

    /// A stream failed to decode: stream-scoped unless it is what holds the session together.
    fn stream_failed(
        &mut self,
        ctx: &mut Ctx<'_>,
        ch: ConnectionHandle,
        id: StreamId,
        code: ErrorCode,
    ) {
        let fatal = self
            .sessions
            .get(&ch)
            .is_some_and(|s| s.session_stream == Some(id) || !s.ready);
        if fatal {
            self.close(ctx, ch, code, "protocol error");
        } else {
            self.drop_down_stream(ctx, ch, id);
            self.refuse(ctx, ch, id, code);
        }
    }

    /// Run one stream's state machine over newly read bytes. `None`: the stream is done.
    fn consume(
        &mut self,
        ctx: &mut Ctx<'_>,
        ch: ConnectionHandle,
        id: StreamId,
        state: In,
        chunks: Vec<Bytes>,
        end: End,
    ) -> Result<Option<In>, DecodeError> {
        let version = self
            .sessions
            .get(&ch)
            .map(Session::version)
            .unwrap_or(Version::Lite02);
        let max = self.limits.max_message;
        match state {
            In::Type { bidi, mut buf } => {
                // Take only the type varint's bytes; the rest stays in the received chunks.
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
                        Err(DecodeError::UnexpectedStream(_)) => {
                            let code = if bidi {
                                ErrorCode::CANCEL
                            } else {
                                ErrorCode::UNEXPECTED_STREAM
                            };
                            self.refuse(ctx, ch, id, code);
                            return Ok(None);
                        }
                        Err(e) => return Err(e),
                    }
                    let Some(front) = rest.front_mut() else {
                        return self.short(end, In::Type { bidi, buf });
                    };
                    if front.is_empty() {
                        rest.pop_front();
                        continue;
                    }
                    buf.push(front[0]);
                    bytes::Buf::advance(front, 1);
                };
                let next = match kind {
                    Ok(ControlType::Announce) => In::AnnounceRequest { buf: Vec::new() },
                    Ok(ControlType::Subscribe) => In::Subscribe {
                        buf: Vec::new(),
                        id: None,
                    },
                    Ok(ControlType::Track) => In::TrackRequest { buf: Vec::new() },
                    Ok(ControlType::Fetch) => In::FetchRequest { buf: Vec::new() },
                    Ok(ControlType::Probe) | Ok(ControlType::Goaway) => In::Discard,
                    Err(DataType::Group) => In::Group(GroupIn {
                        reader: GroupReader::new(version, self.limits.max_frame),
                        track: None,
                        seq: 0,
                        frame: None,
                    }),
                    Err(DataType::Setup) => In::Setup { buf: Vec::new() },
                };
                self.consume(ctx, ch, id, next, rest.into(), end)
            }
            In::Group(mut g) => {
                for c in chunks {
                    g.reader.push(c);
                }
                self.group_events(ctx, ch, id, &mut g)?;
                match end {
                    End::Open => Ok(Some(In::Group(g))),
                    End::Fin => {
                        g.reader.finish()?;
                        if let Some(track) = g.track {
                            self.group_done(ctx, track, g.seq);
                        }
                        Ok(None)
                    }
                    End::Reset(code) => {
                        // The publisher gave up on the group: so do its subscribers.
                        if let Some(track) = g.track {
                            self.group_abort(ctx, track, g.seq, code);
                        }
                        Ok(None)
                    }
                }
            }
            In::Discard => Ok(Some(In::Discard)),
            In::SessionStream {
                mut buf,
                setup_done,
            } => {
                extend(&mut buf, &chunks, max)?;
                let mut setup_done = setup_done;
                let server = self.sessions.get(&ch).is_some_and(|s| s.server);
                if !setup_done {
                    if server {
                        let Some((setup, used)) =
                            lite::decode_framed::<ClientSetup>(&buf, Version::Lite02, max)?
                        else {
                            return self.short(end, In::SessionStream { buf, setup_done });
                        };
                        buf.drain(..used);
                        let Some(v) =
                            Version::select(&setup.versions, &[Version::Lite02, Version::Lite01])
                        else {
                            self.close(ctx, ch, ErrorCode::VERSION, "no common version");
                            return Ok(None);
                        };
                        if let Some(s) = self.sessions.get_mut(&ch) {
                            s.version = Some(v);
                        }
                        let reply = ServerSetup {
                            version: v.code(),
                            parameters: Vec::new(),
                        };
                        self.write_msg(ctx, ch, id, |v, b| reply.encode(v, b), false);
                    } else {
                        let Some((setup, used)) =
                            lite::decode_framed::<ServerSetup>(&buf, Version::Lite02, max)?
                        else {
                            return self.short(end, In::SessionStream { buf, setup_done });
                        };
                        buf.drain(..used);
                        let Some(v) =
                            Version::from_code(setup.version).filter(|v| *v <= Version::Lite02)
                        else {
                            self.close(
                                ctx,
                                ch,
                                ErrorCode::VERSION,
                                "server chose an unknown version",
                            );
                            return Ok(None);
                        };
                        if let Some(s) = self.sessions.get_mut(&ch) {
                            s.version = Some(v);
                        }
                    }
                    setup_done = true;
                    self.ready(ctx, ch);
                }
                // SESSION_INFO messages: read and ignore.
                while let Some((_, used)) = lite::decode_framed::<lite::SessionInfo>(
                    &buf,
                    self.sessions
                        .get(&ch)
                        .map_or(Version::Lite02, Session::version),
                    max,
                )? {
                    buf.drain(..used);
                }
                if end != End::Open {
                    self.close(ctx, ch, ErrorCode::CANCEL, "cancelled");
                    return Ok(None);
                }
                Ok(Some(In::SessionStream { buf, setup_done }))
            }
            In::Setup { mut buf } => {
                extend(&mut buf, &chunks, max)?;
                let Some((setup, used)) = lite::decode_framed::<Setup>(&buf, version, max)? else {
                    return self.short(end, In::Setup { buf });
                };
                buf.drain(..used);
                let server = self.sessions.get(&ch).is_some_and(|s| s.server);
                if server {
                    // On WebTransport the URL path is the root; SETUP Path is raw QUIC's.
                    let web = self.sessions.get(&ch).is_some_and(|s| s.web.is_some());
                    if !web {
                        let raw = setup.path.unwrap_or_default();
                        let raw = raw.split('?').next().unwrap_or_default();
                        let root = path::normalize(raw, self.limits.max_path)?;
                        if let Some(s) = self.sessions.get_mut(&ch) {
                            s.root = root;
                        }
                    }
                    self.ready(ctx, ch);
                }
                Ok(Some(In::Discard))
            }
            In::AnnounceRequest { mut buf } => {
                extend(&mut buf, &chunks, max)?;
                let Some((req, _)) = lite::decode_framed::<AnnounceRequest>(&buf, version, max)?
                else {
                    return self.short(end, In::AnnounceRequest { buf });
                };
                self.serve_announce(ctx, ch, id, req)?;
                Ok(Some(In::Discard))
            }
            In::Subscribe { mut buf, id: sub } => {
                extend(&mut buf, &chunks, max)?;
                let mut sub = sub;
                loop {
                    if sub.is_none() {
                        let Some((req, used)) =
                            lite::decode_framed::<Subscribe>(&buf, version, max)?
                        else {
                            break;
                        };
                        buf.drain(..used);
                        sub = Some(req.id);
                        if !self.serve_subscribe(ctx, ch, id, req)? {
                            return Ok(None);
                        }
                    } else {
                        let Some((update, used)) =
                            lite::decode_framed::<SubscribeUpdate>(&buf, version, max)?
                        else {
                            break;
                        };
                        buf.drain(..used);
                        if let (Some(sid), Some(s)) = (sub, self.sessions.get_mut(&ch))
                            && let Some(d) = s.downs.get_mut(&sid)
                        {
                            d.priority = update.options.priority;
                        }
                    }
                }
                if end == End::Fin && !buf.is_empty() {
                    return Err(DecodeError::Short);
                }
                if end != End::Open {
                    // The subscriber left: FIN our half, cancel its groups.
                    self.drop_down_stream(ctx, ch, id);
                    self.write(ctx, ch, id, Vec::new(), true);
                    return Ok(None);
                }
                Ok(Some(In::Subscribe { buf, id: sub }))
            }
            In::TrackRequest { mut buf } => {
                extend(&mut buf, &chunks, max)?;
                let Some((req, _)) = lite::decode_framed::<TrackReq>(&buf, version, max)? else {
                    return self.short(end, In::TrackRequest { buf });
                };
                let root = self
                    .sessions
                    .get(&ch)
                    .map(|s| s.root.clone())
                    .unwrap_or_default();
                let abs = path::join(&root, &req.broadcast, self.limits.max_path)?;
                self.want_info(
                    ctx,
                    abs.into(),
                    req.track.into(),
                    InfoWaiter::Stream(ch, id),
                );
                Ok(Some(In::Discard))
            }
            In::FetchRequest { mut buf } => {
                extend(&mut buf, &chunks, max)?;
                let Some((req, _)) = lite::decode_framed::<Fetch>(&buf, version, max)? else {
                    return self.short(end, In::FetchRequest { buf });
                };
                self.serve_fetch(ctx, ch, id, req)?;
                Ok(Some(In::Discard))
            }
            In::OurAnnounce {
                mut buf,
                started,
                hop,
            } => {
                extend(&mut buf, &chunks, max)?;
                let (mut started, mut hop) = (started, hop);
                loop {
                    if !started && version < Version::Lite03 {
                        let Some((init, used)) =
                            lite::decode_framed::<AnnounceInit>(&buf, version, max)?
                        else {
                            break;
                        };
                        buf.drain(..used);
                        started = true;
                        for suffix in init.suffixes {
                            self.learned(ctx, ch, &suffix, true, Vec::new())?;
                        }
                    } else if !started && version == Version::Lite05 {
                        let Some((ok, used)) =
                            lite::decode_framed::<AnnounceOk>(&buf, version, max)?
                        else {
                            break;
                        };
                        buf.drain(..used);
                        started = true;
                        hop = ok.hop;
                    } else {
                        let Some((a, used)) = lite::decode_framed::<Announce>(&buf, version, max)?
                        else {
                            break;
                        };
                        buf.drain(..used);
                        started = true;
                        let mut hops = a.hops;
                        if version == Version::Lite05 && hop != 0 {
                            hops.push(hop);
                        }
                        self.learned(ctx, ch, &a.suffix, a.status == AnnounceStatus::Active, hops)?;
                    }
                }
                if end != End::Open {
                    return Ok(None);
                }
                Ok(Some(In::OurAnnounce { buf, started, hop }))
            }
            In::OurSubscribe { mut buf, up } => {
                extend(&mut buf, &chunks, max)?;
                while let Some((_resp, used)) =
                    lite::decode_framed::<SubscribeResponse>(&buf, version, max)?
                {
                    buf.drain(..used);
                }
                if end != End::Open {
                    let track = self
                        .sessions
                        .get_mut(&ch)
                        .and_then(|s| s.ups.remove(&up))
                        .map(|u| u.track);
                    if let Some(track) = track {
                        let code = if end == End::Fin {
                            ErrorCode::CANCEL
                        } else {
                            ErrorCode::DROPPED
                        };
                        self.end_track(ctx, track, code);
                    }
                    return Ok(None);
                }
                Ok(Some(In::OurSubscribe { buf, up }))
            }
            In::OurTrack {
                mut buf,
                path: p,
                name,
            } => {
                extend(&mut buf, &chunks, max)?;
                if let Some((info, _)) = lite::decode_framed::<TrackInfo>(&buf, version, max)? {
                    self.write(ctx, ch, id, Vec::new(), true);
                    self.info_known(ctx, p, name, Ok(info));
                    return Ok(Some(In::Discard));
                }
                if end != End::Open {
                    let code = match end {
                        End::Reset(code) => code,
                        _ => ErrorCode::NOT_FOUND,
                    };
                    self.info_known(ctx, p, name, Err(code));
                    return Ok(None);
                }
                Ok(Some(In::OurTrack { buf, path: p, name }))
            }
        }
    }

    /// Incomplete message: fine while the stream is open, an error at its end.
    fn short(&self, end: End, state: In) -> Result<Option<In>, DecodeError> {
        match end {
            End::Open => Ok(Some(state)),
            End::Fin => Err(DecodeError::Short),
            End::Reset(_) => Ok(None),
        }
    }

    fn group_events(
        &mut self,
        ctx: &mut Ctx<'_>,
        ch: ConnectionHandle,
        id: StreamId,
        g: &mut GroupIn,
    ) -> Result<(), DecodeError> {
        while let Some(ev) = g.reader.poll()? {
            match ev {
                GroupEvent::Header(GroupHeader {
                    subscribe_id,
                    sequence,
                }) => {
                    let track = self
                        .sessions
                        .get(&ch)
                        .and_then(|s| s.ups.get(&subscribe_id))
                        .map(|u| u.track);
                    let Some(track) = track else {
                        self.refuse(ctx, ch, id, ErrorCode::CANCEL);
                        return Ok(());
                    };
                    let Some(t) = self.tracks.get_mut(&track) else {
                        return Ok(());
                    };
                    if !t.cache.open(sequence, ctx.now, self.limits.cache) {
                        self.refuse(ctx, ch, id, ErrorCode::OLD);
                        return Ok(());
                    }
                    g.track = Some(track);
                    g.seq = sequence;
                }
                GroupEvent::Frame { timestamp, .. } => {
                    let ts = if self
                        .sessions
                        .get(&ch)
                        .is_some_and(|s| s.version() == Version::Lite05)
                    {
                        timestamp
                    } else {
                        now_ms()
                    };
                    g.frame = Some(Frame {
                        timestamp: ts,
                        chunks: Vec::new(),
                    });
                }
                GroupEvent::Payload(b) => {
                    if let Some(f) = &mut g.frame {
                        f.chunks.push(b);
                    }
                }
                GroupEvent::FrameEnd => {
                    if let (Some(track), Some(f)) = (g.track, g.frame.take()) {
                        self.append(ctx, track, g.seq, Arc::new(f));
                    }
                }
            }
        }
        Ok(())
    }

    // ----- announcements ----------------------------------------------------------------

    /// The peer announced (or ended) `suffix` under our request.
    fn learned(
        &mut self,
        _ctx: &mut Ctx<'_>,
        ch: ConnectionHandle,
        suffix: &str,
        active: bool,
        hops: Vec<u64>,
    ) -> Result<(), DecodeError> {
        let Some(s) = self.sessions.get_mut(&ch) else {
            return Ok(());
        };
        let abs: Arc<str> = path::join(&s.root, suffix, self.limits.max_path)?.into();
        if active {
            if hops.contains(&self.registry.origin) || hops.len() >= lite::MAX_HOPS {
                return Ok(());
            }
            if s.published.len() >= self.limits.max_announces.max(1) * 16
                && !s.published.contains(&abs)
            {
                return Err(DecodeError::TooLarge);
            }
            s.published.insert(abs.clone());
            self.registry.publish(
                &abs,
                Owner {
                    core: self.core,
                    peer: Some(s.peer),
                    hops,
                },
            );
        } else if s.published.remove(&abs) {
            self.registry.unpublish(&abs, self.core, Some(s.peer));
        }
        Ok(())
    }

    fn serve_announce(
        &mut self,
        ctx: &mut Ctx<'_>,
        ch: ConnectionHandle,
        id: StreamId,
        req: AnnounceRequest,
    ) -> Result<(), DecodeError> {
        let Some(s) = self.sessions.get_mut(&ch) else {
            return Ok(());
        };
        if s.announce_outs.len() >= self.limits.max_announces {
            return Err(DecodeError::TooLarge);
        }
        let prefix = path::join(&s.root, &req.prefix, self.limits.max_path)?;
        let version = s.version();
        let client = self.app.is_some();
        let matches: Vec<(Arc<str>, Vec<u64>)> = self
            .active
            .iter()
            .filter(|(p, o)| {
                path::has_prefix(p, &prefix)
                    && !(req.exclude_hop != 0 && o.hops.contains(&req.exclude_hop))
                    && advertise(self.core, client, s.peer, o)
            })
            .map(|(p, o)| (p.clone(), o.hops.clone()))
            .collect();
        let mut buf = BytesMut::new();
        let origin = self.registry.origin;
        let mut out = AnnounceOut {
            stream: id,
            prefix: prefix.clone(),
            exclude: req.exclude_hop,
            active: HashSet::new(),
        };
        let res = (|| {
            match version {
                Version::Lite01 | Version::Lite02 => AnnounceInit {
                    suffixes: matches.iter().map(|(p, _)| suffix_of(p, &prefix)).collect(),
                }
                .encode(version, &mut buf)?,
                Version::Lite05 => AnnounceOk {
                    hop: origin,
                    active_count: matches.len() as u64,
                }
                .encode(version, &mut buf)?,
                _ => {}
            }
            if version >= Version::Lite03 {
                for (p, hops) in &matches {
                    announce_msg(version, origin, &prefix, p, hops, true)
                        .encode(version, &mut buf)?;
                }
            }
            Ok::<_, lite::EncodeError>(())
        })();
        if res.is_err() {
            return Err(DecodeError::InvalidValue);
        }
        out.active.extend(matches.into_iter().map(|(p, _)| p));
        s.announce_outs.push(out);
        if let Some(c) = ctx.conn(ch) {
            let _ = c.send_stream(id).set_priority(CONTROL_PRIORITY);
        }
        self.write(ctx, ch, id, vec![buf.freeze()], false);
        Ok(())
    }

    /// A broadcast became active or ended somewhere: tell every announce request that covers it.
    fn announced(
        &mut self,
        ctx: &mut Ctx<'_>,
        path_: Arc<str>,
        owner: Option<Owner>,
        active: bool,
    ) {
        let owner = match owner {
            Some(o) if active => {
                let previous = self.active.insert(path_.clone(), o.clone());
                if previous.is_some_and(|old| old.core != o.core || old.peer != o.peer) {
                    // A new publisher took the broadcast over: move this core's tracks to it.
                    let ids: Vec<u64> = self
                        .by_name
                        .get(&path_)
                        .map(|m| m.values().copied().collect())
                        .unwrap_or_default();
                    for id in ids {
                        self.resplice(ctx, id);
                    }
                }
                o
            }
            _ => match self.active.remove(&path_) {
                Some(o) => {
                    self.infos.remove(&path_);
                    o
                }
                None => return,
            },
        };
        let hops = owner.hops.clone();
        if self.app.is_some() {
            self.emit(AppEvent::Announced {
                path: path_.to_string(),
                active,
            });
        }
        let origin = self.registry.origin;
        let mut writes = Vec::new();
        let client = self.app.is_some();
        for (ch, s) in &mut self.sessions {
            if !advertise(self.core, client, s.peer, &owner) {
                continue;
            }
            let version = s.version();
            for out in &mut s.announce_outs {
                if !path::has_prefix(&path_, &out.prefix) {
                    continue;
                }
                if active {
                    if (out.exclude != 0 && hops.contains(&out.exclude))
                        || !out.active.insert(path_.clone())
                    {
                        continue;
                    }
                } else if !out.active.remove(&path_) {
                    continue;
                }
                let mut buf = BytesMut::new();
                if announce_msg(version, origin, &out.prefix, &path_, &hops, active)
                    .encode(version, &mut buf)
                    .is_ok()
                {
                    writes.push((*ch, out.stream, buf.freeze()));
                }
            }
        }
        for (ch, id, bytes) in writes {
            self.write(ctx, ch, id, vec![bytes], false);
        }
    }

    // ----- track info -------------------------------------------------------------------

    /// Answer `waiter` with the TRACK_INFO of `(path, name)`: from this core's cache, from a
    /// lite-05 publisher (asked once however many wait), from the owning core, or the reference
    /// defaults when the publisher's version has no TRACK_INFO.
    fn want_info(&mut self, ctx: &mut Ctx<'_>, p: Arc<str>, name: Arc<str>, waiter: InfoWaiter) {
        if let Some(info) = self.infos.get(&p).and_then(|m| m.get(&name)).copied() {
            self.give_info(ctx, &p, &name, waiter, Ok(info));
            return;
        }
        let key = (p.clone(), name.clone());
        if let Some(waiters) = self.info_waits.get_mut(&key) {
            waiters.push(waiter);
            return;
        }
        let owner = self.registry.lookup(&p).or_else(|| self.upstream_owner());
        let Some(owner) = owner else {
            self.give_info(ctx, &p, &name, waiter, Err(ErrorCode::UNROUTABLE));
            return;
        };
        if owner.core != self.core {
            self.info_waits.insert(key, vec![waiter]);
            self.registry.send(
                owner.core,
                CoreMsg::TrackInfo {
                    path: p,
                    track: name,
                    from: self.core,
                },
            );
            return;
        }
        let upstream = owner.peer.and_then(|peer| {
            let conn = self.conn_of(peer)?;
            let s = self.sessions.get(&conn)?;
            (s.version() >= Version::Lite05).then_some(())?;
            let rel = path::strip_prefix(&p, &s.root)?.to_string();
            Some((conn, rel))
        });
        self.info_waits.insert(key, vec![waiter]);
        let Some((conn, rel)) = upstream else {
            self.info_known(ctx, p, name, Ok(TrackInfo::default()));
            return;
        };
        let req = TrackReq {
            broadcast: rel,
            track: name.to_string(),
        };
        let state = In::OurTrack {
            buf: Vec::new(),
            path: p.clone(),
            name: name.clone(),
        };
        if self
            .request(ctx, conn, ControlType::Track, &req, state)
            .is_none()
        {
            self.info_known(ctx, p, name, Err(ErrorCode::DROPPED));
        }
    }

    /// The TRACK_INFO of `(path, name)` is known (or cannot be): cache it and answer everyone.
    fn info_known(
        &mut self,
        ctx: &mut Ctx<'_>,
        p: Arc<str>,
        name: Arc<str>,
        result: Result<TrackInfo, ErrorCode>,
    ) {
        if let Ok(info) = result
            && self.active.contains_key(&p)
        {
            self.infos
                .entry(p.clone())
                .or_default()
                .insert(name.clone(), info);
        }
        let waiters = self
            .info_waits
            .remove(&(p.clone(), name.clone()))
            .unwrap_or_default();
        for w in waiters {
            self.give_info(ctx, &p, &name, w, result);
        }
    }

    fn give_info(
        &mut self,
        ctx: &mut Ctx<'_>,
        p: &Arc<str>,
        name: &Arc<str>,
        waiter: InfoWaiter,
        result: Result<TrackInfo, ErrorCode>,
    ) {
        match (waiter, result) {
            (InfoWaiter::Stream(ch, id), Ok(info)) => {
                self.write_msg(ctx, ch, id, |v, b| info.encode(v, b), true)
            }
            (InfoWaiter::Stream(ch, id), Err(code)) => self.refuse(ctx, ch, id, code),
            (InfoWaiter::App(id), result) => self.emit(AppEvent::TrackInfo {
                id,
                result: result.map_err(|c| c.0),
            }),
            (InfoWaiter::Core(core), result) => self.registry.send(
                core,
                CoreMsg::TrackInfoReply {
                    path: p.clone(),
                    track: name.clone(),
                    result: result.map_err(|c| c.0),
                },
            ),
        }
    }

    // ----- subscriptions ----------------------------------------------------------------

    /// Find or create this core's track for `(path, name)`, wiring its source. `None` when
    /// nobody publishes the broadcast.
    fn resolve(&mut self, ctx: &mut Ctx<'_>, path_: &str, name: &str) -> Option<u64> {
        if let Some(id) = self.track_id(path_, name) {
            return Some(id);
        }
        let owner = self
            .registry
            .lookup(path_)
            .or_else(|| self.upstream_owner())?;
        let id = self.next_track;
        self.next_track += 1;
        let source = if owner.core != self.core {
            self.registry.send(
                owner.core,
                CoreMsg::Subscribe {
                    path: path_.into(),
                    track: name.into(),
                    from: self.core,
                    replica: id,
                },
            );
            Source::Core { core: owner.core }
        } else if let Some(peer) = owner.peer {
            let conn = self.conn_of(peer)?;
            let up = self.subscribe_upstream(ctx, conn, path_, name, id)?;
            Source::Session { conn, up }
        } else {
            Source::App
        };
        self.insert_track(id, path_, name, source);
        Some(id)
    }

    fn track_id(&self, path_: &str, name: &str) -> Option<u64> {
        self.by_name.get(path_)?.get(name).copied()
    }

    /// Forget the name of a track that is going away.
    fn unindex(&mut self, t: &TrackState) {
        if let Some(names) = self.by_name.get_mut(&t.path) {
            names.remove(&t.name);
            if names.is_empty() {
                self.by_name.remove(&t.path);
            }
        }
    }

    fn insert_track(&mut self, id: u64, path_: &str, name: &str, source: Source) {
        let (p, n): (Arc<str>, Arc<str>) = (path_.into(), name.into());
        self.by_name
            .entry(p.clone())
            .or_default()
            .insert(n.clone(), id);
        self.tracks.insert(
            id,
            TrackState {
                path: p,
                name: n,
                source,
                cache: GroupCache::default(),
                subs: Vec::new(),
                remotes: Vec::new(),
                idle_since: None,
            },
        );
    }

    fn subscribe_upstream(
        &mut self,
        ctx: &mut Ctx<'_>,
        conn: ConnectionHandle,
        path_: &str,
        name: &str,
        track: u64,
    ) -> Option<u64> {
        let s = self.sessions.get(&conn)?;
        let rel = path::strip_prefix(path_, &s.root)?.to_string();
        let s = self.sessions.get_mut(&conn)?;
        let up = s.next_up;
        s.next_up += 1;
        let req = Subscribe {
            id: up,
            broadcast: rel,
            track: name.to_string(),
            options: SubscribeOptions::default(),
        };
        let id = self.request(
            ctx,
            conn,
            ControlType::Subscribe,
            &req,
            In::OurSubscribe {
                buf: Vec::new(),
                up,
            },
        )?;
        self.sessions
            .get_mut(&conn)?
            .ups
            .insert(up, Upstream { stream: id, track });
        Some(up)
    }

    /// A peer's SUBSCRIBE. False when the stream was refused.
    fn serve_subscribe(
        &mut self,
        ctx: &mut Ctx<'_>,
        ch: ConnectionHandle,
        id: StreamId,
        req: Subscribe,
    ) -> Result<bool, DecodeError> {
        let Some(s) = self.sessions.get(&ch) else {
            return Ok(false);
        };
        if s.downs.contains_key(&req.id) {
            self.refuse(ctx, ch, id, ErrorCode::DUPLICATE);
            return Ok(false);
        }
        if s.downs.len() >= self.limits.max_subscriptions {
            self.refuse(ctx, ch, id, ErrorCode::BOUNDS_EXCEEDED);
            return Ok(false);
        }
        let version = s.version();
        let abs = path::join(&s.root, &req.broadcast, self.limits.max_path)?;
        tracing::debug!(core = self.core, broadcast = %abs, track = %req.track, id = req.id, "subscribe");
        let Some(track) = self.resolve(ctx, &abs, &req.track) else {
            self.refuse(ctx, ch, id, ErrorCode::UNROUTABLE);
            return Ok(false);
        };
        let s = self.sessions.get_mut(&ch).expect("checked");
        s.downs.insert(
            req.id,
            Down {
                stream: id,
                track,
                priority: req.options.priority,
                started: false,
                groups: VecDeque::new(),
                skipped: VecDeque::new(),
            },
        );
        if let Some(c) = ctx.conn(ch) {
            let _ = c.send_stream(id).set_priority(CONTROL_PRIORITY);
        }
        if version < Version::Lite05 {
            let ok = SubscribeResponse::Ok(SubscribeOptions {
                priority: req.options.priority,
                ..Default::default()
            });
            self.write_msg(ctx, ch, id, |v, b| ok.encode(v, b), false);
        }
        let sub = SubRef::Down {
            conn: ch,
            id: req.id,
        };
        self.attach(ctx, track, sub, req.options.start_group);
        Ok(true)
    }

    /// Add a subscriber to a track and give it the cache: the latest group from frame 0, or
    /// every cached group from `start`.
    fn attach(&mut self, ctx: &mut Ctx<'_>, track: u64, sub: SubRef, start: Option<u64>) {
        let Some(t) = self.tracks.get_mut(&track) else {
            return;
        };
        t.subs.push(sub);
        t.idle_since = None;
        let seqs: Vec<u64> = match start {
            Some(s) => t
                .cache
                .groups
                .iter()
                .filter(|g| g.seq >= s)
                .map(|g| g.seq)
                .collect(),
            None => t.cache.latest.into_iter().collect(),
        };
        for seq in seqs {
            self.sync(ctx, track, seq, Some(sub));
        }
    }

    /// Remove a subscriber; a track nobody wants any more is released upstream.
    fn detach(&mut self, ctx: &mut Ctx<'_>, track: u64, sub: SubRef) {
        let Some(t) = self.tracks.get_mut(&track) else {
            return;
        };
        t.subs.retain(|s| *s != sub);
        self.maybe_release(ctx, track);
    }

    /// A track nobody wants: keep it for the linger, then release it.
    fn maybe_release(&mut self, ctx: &mut Ctx<'_>, track: u64) {
        let linger = self.limits.track_linger;
        let Some(t) = self.tracks.get_mut(&track) else {
            return;
        };
        if !t.subs.is_empty() || !t.remotes.is_empty() || matches!(t.source, Source::App) {
            t.idle_since = None;
            return;
        }
        let since = *t.idle_since.get_or_insert(ctx.now);
        if ctx.now < since + linger {
            ctx.wake_at(since + linger);
            return;
        }
        self.release(ctx, track);
    }

    /// Release the tracks whose linger is over, and wake again for the next one.
    fn release_idle(&mut self, ctx: &mut Ctx<'_>) {
        let idle: Vec<u64> = self
            .tracks
            .iter()
            .filter(|(_, t)| t.idle_since.is_some())
            .map(|(id, _)| *id)
            .collect();
        for id in idle {
            self.maybe_release(ctx, id);
        }
    }

    fn release(&mut self, ctx: &mut Ctx<'_>, track: u64) {
        let Some(t) = self.tracks.remove(&track) else {
            return;
        };
        self.unindex(&t);
        self.drop_source(ctx, track, t.source);
    }

    /// Stop what feeds `track`: FIN our upstream SUBSCRIBE, or leave the owning core's track.
    fn drop_source(&mut self, ctx: &mut Ctx<'_>, track: u64, source: Source) {
        match source {
            Source::Session { conn, up } => {
                if let Some(Upstream { stream, .. }) =
                    self.sessions.get_mut(&conn).and_then(|s| s.ups.remove(&up))
                {
                    if let Some(s) = self.sessions.get_mut(&conn) {
                        s.ins.remove(&stream);
                    }
                    self.write(ctx, conn, stream, Vec::new(), true);
                    if let Some(c) = ctx.conn(conn) {
                        let _ = c.recv_stream(stream).stop(stream_code(ErrorCode::CANCEL));
                    }
                }
            }
            Source::Core { core } => self.registry.send(
                core,
                CoreMsg::Unsubscribe {
                    from: self.core,
                    replica: track,
                },
            ),
            Source::App => {}
        }
    }

    /// The subscribe stream `id` of session `ch` is gone: cancel that subscription's groups.
    fn drop_down_stream(&mut self, ctx: &mut Ctx<'_>, ch: ConnectionHandle, id: StreamId) {
        let Some(s) = self.sessions.get_mut(&ch) else {
            return;
        };
        let Some(sub) = s
            .downs
            .iter()
            .find(|(_, d)| d.stream == id)
            .map(|(k, _)| *k)
        else {
            return;
        };
        let down = s.downs.remove(&sub).expect("found");
        for g in down.groups {
            self.reset(ctx, ch, g.stream, ErrorCode::CANCEL);
        }
        self.detach(ctx, down.track, SubRef::Down { conn: ch, id: sub });
    }

    fn serve_fetch(
        &mut self,
        ctx: &mut Ctx<'_>,
        ch: ConnectionHandle,
        id: StreamId,
        req: Fetch,
    ) -> Result<(), DecodeError> {
        let Some(s) = self.sessions.get(&ch) else {
            return Ok(());
        };
        let version = s.version();
        let abs = path::join(&s.root, &req.broadcast, self.limits.max_path)?;
        let frames = self
            .track_id(&abs, &req.track)
            .and_then(|t| self.tracks.get(&t))
            .and_then(|t| t.cache.get(req.group))
            .map(|g| g.frames.clone());
        let Some(frames) = frames else {
            self.refuse(ctx, ch, id, ErrorCode::NOT_FOUND);
            return Ok(());
        };
        let mut writer = GroupWriter::new(version);
        let mut chunks = Vec::new();
        for f in frames {
            let mut hdr = BytesMut::new();
            if writer.frame(f.size(), f.timestamp, &mut hdr).is_err() {
                return Err(DecodeError::InvalidValue);
            }
            chunks.push(hdr.freeze());
            chunks.extend(f.chunks.iter().cloned());
        }
        self.write(ctx, ch, id, chunks, true);
        Ok(())
    }

    // ----- fan-out ----------------------------------------------------------------------

    /// A frame for group `seq` of `track`: cache it, hand it to every other core with
    /// subscribers once, and write it to this core's subscribers.
    fn append(&mut self, ctx: &mut Ctx<'_>, track: u64, seq: u64, frame: Arc<Frame>) {
        let Some(t) = self.tracks.get_mut(&track) else {
            return;
        };
        let opened = t.cache.open(seq, ctx.now, self.limits.cache);
        if !t.cache.dropped.is_empty() {
            for old in std::mem::take(&mut t.cache.dropped) {
                self.group_abort(ctx, track, old, ErrorCode::EVICTED);
            }
        }
        if !opened {
            return;
        }
        let Some(t) = self.tracks.get_mut(&track) else {
            return;
        };
        let group = t.cache.get_mut(seq).expect("opened");
        if group.done {
            return;
        }
        group.frames.push(frame.clone());
        tracing::trace!(
            core = self.core,
            track,
            seq,
            subs = t.subs.len(),
            remotes = t.remotes.len(),
            "append"
        );
        for &Replica { core, id: replica } in &t.remotes {
            self.registry.counters[self.core].cross_core_frame();
            self.registry.send(
                core,
                CoreMsg::Frame {
                    replica,
                    seq,
                    frame: frame.clone(),
                },
            );
        }
        self.sync(ctx, track, seq, None);
    }

    fn group_done(&mut self, ctx: &mut Ctx<'_>, track: u64, seq: u64) {
        let Some(t) = self.tracks.get_mut(&track) else {
            return;
        };
        let Some(group) = t.cache.get_mut(seq) else {
            return;
        };
        group.finish(ctx.now);
        for &Replica { core, id: replica } in &t.remotes {
            self.registry
                .send(core, CoreMsg::GroupDone { replica, seq });
        }
        self.sync(ctx, track, seq, None);
    }

    /// Group `seq` will never finish (reset upstream, or evicted unfinished): forget it and
    /// reset every subscriber's stream for it, here and on the cores with replicas.
    fn group_abort(&mut self, ctx: &mut Ctx<'_>, track: u64, seq: u64, code: ErrorCode) {
        let Some(t) = self.tracks.get_mut(&track) else {
            return;
        };
        t.cache.groups.retain(|g| g.seq != seq);
        for &Replica { core, id: replica } in &t.remotes {
            self.registry.send(
                core,
                CoreMsg::GroupAbort {
                    replica,
                    seq,
                    code: code.0,
                },
            );
        }
        for sub in &t.subs {
            match *sub {
                SubRef::App { id } => {
                    if let Some(a) = self.app_subs.get_mut(&id) {
                        a.sent.remove(&seq);
                    }
                }
                SubRef::Fetch { .. } => {}
                SubRef::Down { conn: ch, id } => {
                    let Some(s) = self.sessions.get_mut(&ch) else {
                        continue;
                    };
                    let Some(down) = s.downs.get_mut(&id) else {
                        continue;
                    };
                    if let Some(i) = down.groups.iter().position(|g| g.seq == seq) {
                        let g = down.groups.remove(i).expect("in range");
                        s.outs.remove(&g.stream);
                        if let Some(conn) = ctx.conn(ch) {
                            let _ = conn.send_stream(g.stream).reset(stream_code(code));
                        }
                    }
                }
            }
        }
    }

    /// Bring the subscribers of `track` (or only `one`) up to date with group `seq`: open
    /// their streams if new, write the frames each has not had, FIN when the group is done.
    /// The track and the sessions are borrowed apart, so nothing is copied per subscriber.
    fn sync(&mut self, ctx: &mut Ctx<'_>, track: u64, seq: u64, one: Option<SubRef>) {
        let Some(t) = self.tracks.get(&track) else {
            return;
        };
        let Some(group) = t.cache.get(seq) else {
            return;
        };
        let subs = match &one {
            Some(sub) => std::slice::from_ref(sub),
            None => &t.subs[..],
        };
        let counters = &self.registry.counters[self.core];
        let mut fetched = Vec::new();
        for &sub in subs {
            match sub {
                SubRef::Down { conn: ch, id } => {
                    if let (Some(s), Some(conn)) = (self.sessions.get_mut(&ch), ctx.conn(ch)) {
                        s.sync_down(conn, &self.limits, counters, id, group);
                    }
                }
                SubRef::App { id } => {
                    let (Some(app), Some(AppSub { sent, .. })) =
                        (&self.app, self.app_subs.get_mut(&id))
                    else {
                        continue;
                    };
                    let from = sent.get(&seq).copied().unwrap_or(0).min(group.frames.len());
                    sent.insert(seq, group.frames.len());
                    if group.done {
                        sent.remove(&seq);
                    }
                    for (i, f) in group.frames[from..].iter().enumerate() {
                        let _ = app.events.send(AppEvent::Frame {
                            id,
                            seq,
                            index: from + i,
                            timestamp: f.timestamp,
                            payload: f.chunks.clone(),
                        });
                    }
                    if group.done {
                        let _ = app.events.send(AppEvent::GroupDone { id, seq });
                    }
                }
                // A fetch takes the whole group once it is complete.
                SubRef::Fetch { id } => {
                    if group.done
                        && let Some(reply) = self.fetches.remove(&id)
                    {
                        let _ = reply.send(frame_payloads(&group.frames));
                        fetched.push(sub);
                    }
                }
            }
        }
        for sub in fetched {
            self.detach(ctx, track, sub);
        }
    }

    /// An HTTP fetch of `track` of `path`, which this core publishes or relays: the newest
    /// complete cached group at once, else the next group to complete.
    fn fetch(&mut self, ctx: &mut Ctx<'_>, p: &str, name: &str, reply: Sender<Vec<Bytes>>) {
        let Some(track) = self.resolve(ctx, p, name) else {
            return;
        };
        let cached = self.tracks.get(&track).and_then(|t| {
            t.cache
                .groups
                .iter()
                .filter(|g| g.done)
                .max_by_key(|g| g.seq)
                .map(|g| frame_payloads(&g.frames))
        });
        if let Some(frames) = cached {
            let _ = reply.send(frames);
            self.maybe_release(ctx, track);
            return;
        }
        let id = self.next_fetch;
        self.next_fetch += 1;
        self.fetches.insert(id, reply);
        // No cached group is complete, so attaching only waits for the next to complete.
        self.attach(ctx, track, SubRef::Fetch { id }, None);
    }

    /// The source of a track is gone: end every subscription to it.
    fn end_track(&mut self, ctx: &mut Ctx<'_>, track: u64, code: ErrorCode) {
        let Some(t) = self.tracks.remove(&track) else {
            return;
        };
        self.unindex(&t);
        for &Replica { core, id: replica } in &t.remotes {
            self.registry.send(
                core,
                CoreMsg::TrackEnd {
                    replica,
                    code: code.0,
                },
            );
            self.remote_index.remove(&Replica { core, id: replica });
        }
        for sub in t.subs {
            match sub {
                SubRef::App { id } => {
                    self.app_subs.remove(&id);
                    self.emit(AppEvent::Ended { id, code: code.0 });
                }
                SubRef::Fetch { id } => {
                    // Dropping the reply tells the HTTP side there is nothing.
                    self.fetches.remove(&id);
                }
                SubRef::Down { conn, id } => {
                    let Some(s) = self.sessions.get_mut(&conn) else {
                        continue;
                    };
                    let version = s.version();
                    let Some(down) = s.downs.remove(&id) else {
                        continue;
                    };
                    if code == ErrorCode::CANCEL {
                        if version == Version::Lite05 {
                            let end = t.cache.latest.map_or(0, |l| l + 1);
                            self.write_msg(
                                ctx,
                                conn,
                                down.stream,
                                |v, b| SubscribeResponse::End(end).encode(v, b),
                                false,
                            );
                        }
                        self.write(ctx, conn, down.stream, Vec::new(), true);
                    } else {
                        for g in &down.groups {
                            self.reset(ctx, conn, g.stream, code);
                        }
                        self.reset(ctx, conn, down.stream, code);
                    }
                }
            }
        }
    }

    // ----- cross-core and application --------------------------------------------------

    fn on_core_msg(&mut self, ctx: &mut Ctx<'_>, msg: CoreMsg) {
        match msg {
            CoreMsg::Announce {
                path,
                hops,
                owner,
                active,
            } => {
                let owner = owner.map(|(core, peer)| Owner { core, peer, hops });
                self.announced(ctx, path, owner, active)
            }
            CoreMsg::Subscribe {
                path,
                track,
                from,
                replica,
            } => {
                let local = self
                    .registry
                    .lookup(&path)
                    .is_some_and(|o| o.core == self.core);
                let id = if local {
                    self.resolve(ctx, &path, &track)
                } else {
                    None
                };
                let Some(id) = id else {
                    self.registry.send(
                        from,
                        CoreMsg::TrackEnd {
                            replica,
                            code: ErrorCode::UNROUTABLE.0,
                        },
                    );
                    return;
                };
                let r = Replica {
                    core: from,
                    id: replica,
                };
                self.remote_index.insert(r, id);
                let t = self.tracks.get_mut(&id).expect("resolved");
                t.remotes.push(r);
                if let Some(g) = t.cache.latest_group() {
                    for frame in &g.frames {
                        self.registry.counters[self.core].cross_core_frame();
                        self.registry.send(
                            from,
                            CoreMsg::Frame {
                                replica,
                                seq: g.seq,
                                frame: frame.clone(),
                            },
                        );
                    }
                    if g.done {
                        self.registry.send(
                            from,
                            CoreMsg::GroupDone {
                                replica,
                                seq: g.seq,
                            },
                        );
                    }
                }
            }
            CoreMsg::Unsubscribe { from, replica } => {
                let r = Replica {
                    core: from,
                    id: replica,
                };
                if let Some(id) = self.remote_index.remove(&r)
                    && let Some(t) = self.tracks.get_mut(&id)
                {
                    t.remotes.retain(|x| *x != r);
                    self.maybe_release(ctx, id);
                }
            }
            CoreMsg::Frame {
                replica,
                seq,
                frame,
            } => self.append(ctx, replica, seq, frame),
            CoreMsg::GroupDone { replica, seq } => self.group_done(ctx, replica, seq),
            CoreMsg::GroupAbort { replica, seq, code } => {
                self.group_abort(ctx, replica, seq, ErrorCode(code))
            }
            CoreMsg::Fetch { path, track, reply } => self.fetch(ctx, &path, &track, reply),
            CoreMsg::TrackEnd { replica, code } => self.end_track(ctx, replica, ErrorCode(code)),
            CoreMsg::TrackInfo { path, track, from } => {
                self.want_info(ctx, path, track, InfoWaiter::Core(from))
            }
            CoreMsg::TrackInfoReply {
                path,
                track,
                result,
            } => self.info_known(ctx, path, track, result.map_err(ErrorCode)),
            CoreMsg::Census { reply } => {
                let _ = reply.send(self.census());
            }
        }
    }

    fn on_app(&mut self, ctx: &mut Ctx<'_>, cmd: AppCmd) {
        match cmd {
            AppCmd::Publish { path: p } => {
                if let Ok(p) = path::normalize(&p, self.limits.max_path) {
                    self.registry.publish(
                        &p,
                        Owner {
                            core: self.core,
                            peer: None,
                            hops: Vec::new(),
                        },
                    );
                }
            }
            AppCmd::Unpublish { path: p } => {
                if let Ok(p) = path::normalize(&p, self.limits.max_path) {
                    self.registry.unpublish(&p, self.core, None);
                    let ids: Vec<u64> = self
                        .tracks
                        .iter()
                        .filter(|(_, t)| *t.path == *p && matches!(t.source, Source::App))
                        .map(|(id, _)| *id)
                        .collect();
                    for id in ids {
                        self.end_track(ctx, id, ErrorCode::CANCEL);
                    }
                }
            }
            AppCmd::Frame {
                path: p,
                track,
                seq,
                timestamp,
                payload,
            } => {
                let id = self.app_track(&p, &track);
                self.append(
                    ctx,
                    id,
                    seq,
                    Arc::new(Frame::from_bytes(timestamp, payload)),
                );
            }
            AppCmd::GroupDone {
                path: p,
                track,
                seq,
            } => {
                let id = self.app_track(&p, &track);
                if let Some(t) = self.tracks.get_mut(&id) {
                    t.cache.open(seq, ctx.now, self.limits.cache);
                }
                self.group_done(ctx, id, seq);
            }
            AppCmd::TrackDone { path: p, track } => {
                let id = self.app_track(&p, &track);
                self.end_track(ctx, id, ErrorCode::CANCEL);
            }
            AppCmd::Subscribe { id, path: p, track } => {
                let Some(t) = path::normalize(&p, self.limits.max_path)
                    .ok()
                    .and_then(|p| self.resolve(ctx, &p, &track))
                else {
                    self.emit(AppEvent::Ended {
                        id,
                        code: ErrorCode::UNROUTABLE.0,
                    });
                    return;
                };
                self.app_subs.insert(
                    id,
                    AppSub {
                        track: t,
                        sent: HashMap::new(),
                    },
                );
                self.attach(ctx, t, SubRef::App { id }, None);
            }
            AppCmd::Unsubscribe { id } => {
                if let Some(a) = self.app_subs.remove(&id) {
                    self.detach(ctx, a.track, SubRef::App { id });
                }
            }
            AppCmd::TrackInfo {
                path: p,
                track,
                info,
            } => {
                if let Ok(p) = path::normalize(&p, self.limits.max_path) {
                    self.infos
                        .entry(p.into())
                        .or_default()
                        .insert(track.into(), info);
                }
            }
            AppCmd::Info { id, path: p, track } => {
                match path::normalize(&p, self.limits.max_path) {
                    Ok(p) => self.want_info(ctx, p.into(), track.into(), InfoWaiter::App(id)),
                    Err(_) => self.emit(AppEvent::TrackInfo {
                        id,
                        result: Err(ErrorCode::UNROUTABLE.0),
                    }),
                }
            }
        }
    }

    /// How much this core holds in each table, for operators and for tests that check a
    /// session leaves nothing behind.
    fn census(&self) -> Census {
        let mut c = Census {
            core: self.core,
            sessions: self.sessions.len(),
            tracks: self.tracks.len(),
            names: self.by_name.values().map(HashMap::len).sum(),
            replicas: self.remote_index.len(),
            app_subscriptions: self.app_subs.len(),
            broadcasts: self.active.len(),
            track_infos: self.infos.values().map(HashMap::len).sum(),
            info_waits: self.info_waits.len(),
            fetches: self.fetches.len(),
            ..Census::default()
        };
        for s in self.sessions.values() {
            c.streams += s.ins.len() + s.outs.len();
            c.subscriptions += s.downs.len();
            c.upstream_subscriptions += s.ups.len();
            c.announce_requests += s.announce_outs.len();
        }
        c
    }

    fn app_track(&mut self, p: &str, track: &str) -> u64 {
        let p = path::normalize(p, self.limits.max_path).unwrap_or_default();
        if let Some(id) = self.track_id(&p, track) {
            return id;
        }
        let id = self.next_track;
        self.next_track += 1;
        self.insert_track(id, &p, track, Source::App);
        id
    }
}

impl Handler for Node {
    fn on_start(&mut self, ctx: &mut Ctx<'_>) {
        if let Some(dial) = self.dial.clone()
            && let Err(e) = ctx.connect(dial.addr, &dial.server_name, None)
        {
            self.emit(AppEvent::Closed {
                reason: format!("connect: {e}"),
            });
        }
    }

    fn on_event(&mut self, ctx: &mut Ctx<'_>, ch: ConnectionHandle, event: Event) {
        match event {
            Event::Connected => self.connected(ctx, ch),
            Event::ConnectionLost { reason } => self.lost(ctx, ch, reason.to_string()),
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
                    for d in s.downs.values_mut() {
                        if let Some(i) = d.groups.iter().position(|g| g.stream == id) {
                            let g = d.groups.remove(i).expect("in range");
                            d.skip(g.seq);
                        }
                    }
                }
                let _ = ctx
                    .conn(ch)
                    .map(|c| c.send_stream(id).reset(stream_code(ErrorCode::CANCEL)));
            }
            _ => {}
        }
    }

    fn on_timer(&mut self, ctx: &mut Ctx<'_>) {
        self.release_idle(ctx);
    }

    fn on_wake(&mut self, ctx: &mut Ctx<'_>) {
        while let Ok(msg) = self.inbox.try_recv() {
            self.on_core_msg(ctx, msg);
        }
        let cmds: Vec<AppCmd> = self
            .app
            .as_ref()
            .map(|a| a.commands.try_iter().collect())
            .unwrap_or_default();
        for cmd in cmds {
            self.on_app(ctx, cmd);
        }
    }

    fn on_shutdown(&mut self, ctx: &mut Ctx<'_>) {
        let handles: Vec<_> = self.sessions.keys().copied().collect();
        for ch in handles {
            self.close(ctx, ch, ErrorCode::CANCEL, "shutdown");
        }
    }
}

/// Whether a broadcast owned by `owner` may be announced to session `ch` of `core`: never back
/// to the session it came from (split horizon), and a client only announces what its own
/// application publishes.
fn advertise(core: usize, client: bool, peer: PeerId, owner: &Owner) -> bool {
    if owner.core == core && owner.peer == Some(peer) {
        return false;
    }
    !client || owner.peer.is_none()
}

/// The announce message for `path` as seen under `prefix`, with the hop list each version
/// carries (§5.1).
fn announce_msg(
    version: Version,
    origin: u64,
    prefix: &str,
    path_: &str,
    hops: &[u64],
    active: bool,
) -> Announce {
    let hops = match (active, version) {
        (false, _) | (true, Version::Lite01 | Version::Lite02 | Version::Lite05) => {
            if active {
                hops.to_vec()
            } else {
                Vec::new()
            }
        }
        (true, _) => hops.iter().copied().chain([origin]).collect(),
    };
    let hops = if version < Version::Lite03 {
        Vec::new()
    } else {
        hops
    };
    Announce {
        status: if active {
            AnnounceStatus::Active
        } else {
            AnnounceStatus::Ended
        },
        suffix: suffix_of(path_, prefix),
        hops,
    }
}

/// Each frame's payload as one `Bytes` (chunks are joined only when there are several).
fn frame_payloads(frames: &[Arc<Frame>]) -> Vec<Bytes> {
    frames
        .iter()
        .map(|f| match f.chunks.as_slice() {
            [] => Bytes::new(),
            [one] => one.clone(),
            many => Bytes::from(many.concat()),
        })
        .collect()
}

fn suffix_of(path_: &str, prefix: &str) -> String {
    path::strip_prefix(path_, prefix)
        .unwrap_or(path_)
        .to_string()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    Open,
    Fin,
    /// Reset by the peer with this moq code (CANCEL when it is outside the mapped range).
    Reset(ErrorCode),
}

/// Everything readable now on `id`, with the peer's reset code as a moq code.
fn read_chunks(conn: &mut Connection, id: StreamId) -> (Vec<Bytes>, End) {
    let (chunks, end) = stream_io::read_chunks(conn, id);
    (chunks, moq_end(end))
}

/// How a read left a stream, with the peer's reset code as a moq code.
fn moq_end(end: ReadEnd) -> End {
    match end {
        ReadEnd::Open => End::Open,
        ReadEnd::Fin => End::Fin,
        ReadEnd::Reset(code) => {
            End::Reset(ErrorCode::from_stream_code(code).unwrap_or(ErrorCode::CANCEL))
        }
    }
}

fn extend(buf: &mut Vec<u8>, chunks: &[Bytes], max: usize) -> Result<(), DecodeError> {
    for c in chunks {
        if buf.len() + c.len() > max.saturating_mul(4) {
            return Err(DecodeError::TooLarge);
        }
        buf.extend_from_slice(c);
    }
    Ok(())
}
