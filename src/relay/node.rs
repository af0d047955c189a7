//! One core's MoQ node: the moq-lite sessions on its connections, its replicas of tracks, and
//! the fan-out from each track to its subscribers (sessions on this core, other cores, or the
//! local application of a client). A relay and a client are the same node; a client simply
//! also has an application that publishes and subscribes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};

use super::registry::{Census, CoreMsg, Owner, Registry};
use crate::lite::session::{self as wire, InfoAsk, PeerEvent};
use crate::lite::{self, ErrorCode, TrackInfo, Version};
use crate::model::{CacheLimits, Frame, GroupCache, PeerId, path};
use crate::quic::stream_io::{self, ConnStreams, Outs};
use crate::quic::{Connection, ConnectionHandle, Ctx, Dir, Event, Handler, StreamEvent, StreamId};
use crate::stream::Streams;
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

/// The local application's subscription: the track, and how many frames of each unfinished
/// group it has had.
struct AppSub {
    track: u64,
    sent: HashMap<u64, usize>,
}

/// One connection's session: the moq-lite machine, the WebTransport session under it on
/// HTTP/3, the writes waiting for flow control, and which of this core's tracks its
/// subscriptions stand for.
struct Session {
    /// Names this session in the registry and in cross-core messages; never reused.
    peer: PeerId,
    server: bool,
    wire: wire::Session,
    /// The track each of the peer's accepted subscriptions reads, by its subscribe id.
    downs: HashMap<u64, u64>,
    /// The track each of our subscriptions on the peer feeds, by our subscribe id.
    ups: HashMap<u64, u64>,
    outs: Outs,
    /// Set on HTTP/3 connections: the WebTransport session the moq session rides on.
    web: Option<WebSession>,
    /// The `jwt` query parameter of the CONNECT URL, kept for the auth layer.
    jwt: Option<String>,
    /// Peer streams taken with `accept`, per direction ([`dir_index`]): quinn hands them out
    /// in index order, so a peer stream is accepted when its index is below this.
    peer_accepted: [u64; 2],
}

impl Session {
    /// Run `f` on the moq-lite machine with the streams of `conn` (through the WebTransport
    /// session on HTTP/3, which starts each new stream with its header).
    fn io<R>(
        &mut self,
        conn: &mut Connection,
        now: Instant,
        f: impl FnOnce(&mut wire::Session, &mut dyn Streams) -> R,
    ) -> R {
        let mut raw = ConnStreams::new(conn, &mut self.outs, now);
        match &self.web {
            Some(web) => f(&mut self.wire, &mut web.streams(&mut raw)),
            None => f(&mut self.wire, &mut raw),
        }
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
    /// A spare event buffer for [`Self::wire`], so that reading a stream allocates none.
    spare_events: Vec<PeerEvent>,
}

/// Someone who asked for a track's TRACK_INFO.
#[derive(Clone, Copy, Debug)]
enum InfoWaiter {
    /// A peer's TRACK stream on this core.
    Stream(PeerId, StreamId),
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
            spare_events: Vec::new(),
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

    // ----- sessions ---------------------------------------------------------------------

    /// Run `f` on the moq-lite machine of `ch` with its streams, then act on what it reported.
    fn wire<R>(
        &mut self,
        ctx: &mut Ctx<'_>,
        ch: ConnectionHandle,
        f: impl FnOnce(&mut wire::Session, &mut dyn Streams, &mut Vec<PeerEvent>) -> R,
    ) -> Option<R> {
        let now = ctx.now;
        let (Some(s), Some(conn)) = (self.sessions.get_mut(&ch), ctx.conn(ch)) else {
            return None;
        };
        let mut events = std::mem::take(&mut self.spare_events);
        let r = s.io(conn, now, |w, io| f(w, io, &mut events));
        if !events.is_empty() {
            self.peer_events(ctx, ch, &mut events);
        }
        if self.spare_events.capacity() < events.capacity() {
            self.spare_events = events;
        }
        Some(r)
    }

    fn wire_config(&self, server: bool, h3: bool) -> wire::Config {
        let l = &self.limits;
        wire::Config {
            server,
            origin: self.registry.origin,
            setup_versions: self
                .dial
                .as_ref()
                .map(|d| d.setup_versions.clone())
                .unwrap_or_default(),
            // A client's root travels in SETUP on raw QUIC, in the URL on WebTransport; inside
            // the node its paths are relative to it.
            setup_path: match &self.dial {
                Some(d) if !server && !h3 => Some(d.path.clone()),
                _ => None,
            },
            role: lite::Role::Both,
            limits: wire::Limits {
                max_message: l.max_message,
                max_path: l.max_path,
                max_frame: l.max_frame,
                max_subscriptions: l.max_subscriptions,
                max_announces: l.max_announces,
                max_groups_in_flight: l.max_groups_in_flight,
            },
        }
    }

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
            tracing::debug!(core = self.core, alpn = %alpn, "closing session: unsupported ALPN");
            ctx.close(ch, ErrorCode::UNKNOWN_ALPN.0, b"unsupported ALPN");
            return;
        }
        tracing::debug!(core = self.core, conn = ?ch, alpn = %alpn, server, "session connected");
        let peer = PeerId(self.next_peer);
        self.next_peer += 1;
        self.peers.insert(peer, ch);
        let session = Session {
            peer,
            server,
            wire: wire::Session::new(self.wire_config(server, h3)),
            downs: HashMap::new(),
            ups: HashMap::new(),
            outs: HashMap::new(),
            web: h3.then(|| self.web_session(server)),
            jwt: None,
            peer_accepted: [0; 2],
        };
        self.sessions.insert(ch, session);
        if h3 {
            self.web_start(ctx, ch);
        } else {
            self.wire(ctx, ch, |w, io, ev| w.start(io, version, None, ev));
        }
        self.accept(ctx, ch);
    }

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
    /// negotiated subprotocol, or from the SETUP exchange when there is none; its streams go
    /// to the moq-lite machine.
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
                    let root = if s.server {
                        s.jwt = jwt;
                        root
                    } else {
                        String::new()
                    };
                    let version = protocol.as_deref().and_then(Version::from_alpn);
                    self.wire(ctx, ch, |w, io, ev| w.start(io, version, Some(root), ev));
                    opened = true;
                }
                WebEvent::Stream {
                    id, chunks, end, ..
                } => {
                    if let Some(s) = self.sessions.get_mut(&ch) {
                        s.wire.open_peer(id);
                    }
                    let now = now_ms();
                    self.wire(ctx, ch, |w, io, ev| {
                        w.on_stream(io, id, chunks, end, now, ev)
                    });
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

    /// Take the peer's new streams that the session is ready for (on WebTransport, all: the
    /// WebTransport session holds what comes early).
    fn accept(&mut self, ctx: &mut Ctx<'_>, ch: ConnectionHandle) {
        loop {
            let Some(s) = self.sessions.get(&ch) else {
                return;
            };
            let web = s.web.is_some();
            let uni_ok = web || s.wire.accepts(Dir::Uni);
            let bi_ok = web || s.wire.accepts(Dir::Bi);
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
            match s.web.as_mut() {
                Some(web) => web.accept(id),
                None => s.wire.open_peer(id),
            }
            self.read(ctx, ch, id);
        }
    }

    fn read(&mut self, ctx: &mut Ctx<'_>, ch: ConnectionHandle, id: StreamId) {
        let Some(s) = self.sessions.get_mut(&ch) else {
            return;
        };
        if s.web.as_ref().is_some_and(|w| w.owns(id)) {
            self.web_read(ctx, ch, id);
            return;
        }
        let reads = s.wire.reads(id);
        let accepted = s.accepted(id);
        let Some(conn) = ctx.conn(ch) else { return };
        if !reads {
            // quinn reports bytes on a peer stream that is not accepted yet (its first frame
            // only said Opened): they must stay in quinn until `accept` takes the stream, or
            // a request sent in two packets before SETUP loses its body. A stream we are done
            // with is drained, so its bytes keep no flow-control credit.
            if accepted {
                let _ = stream_io::read_chunks(conn, id);
            }
            return;
        }
        let (chunks, end) = stream_io::read_chunks(conn, id);
        let now = now_ms();
        self.wire(ctx, ch, |w, io, ev| {
            w.on_stream(io, id, chunks, end, now, ev)
        });
    }

    /// Act on what the moq-lite machine of `ch` reported; `events` is left empty.
    fn peer_events(
        &mut self,
        ctx: &mut Ctx<'_>,
        ch: ConnectionHandle,
        events: &mut Vec<PeerEvent>,
    ) {
        for event in events.drain(..) {
            let Some(s) = self.sessions.get_mut(&ch) else {
                return;
            };
            match event {
                PeerEvent::Ready => self.ready(ctx, ch),
                PeerEvent::AnnounceInterest {
                    request,
                    prefix,
                    exclude_hop,
                } => self.serve_announce(ctx, ch, request, &prefix, exclude_hop),
                PeerEvent::Announced { path, active, hops } => {
                    let peer = Some(s.peer);
                    if active {
                        let owner = Owner {
                            core: self.core,
                            peer,
                            hops,
                        };
                        self.registry.publish(&path, owner);
                    } else {
                        self.registry.unpublish(&path, self.core, peer);
                    }
                }
                PeerEvent::Subscribe {
                    id,
                    path,
                    track,
                    start,
                } => self.serve_subscribe(ctx, ch, id, &path, &track, start),
                PeerEvent::Unsubscribe { id } => {
                    if let Some(track) = s.downs.remove(&id) {
                        self.detach(ctx, track, SubRef::Down { conn: ch, id });
                    }
                }
                PeerEvent::Group { up, seq, stream } => {
                    let Some(t) = s.ups.get(&up).and_then(|t| self.tracks.get_mut(t)) else {
                        continue;
                    };
                    if !t.cache.open(seq, ctx.now, self.limits.cache) {
                        self.wire(ctx, ch, |w, io, _| w.refuse(io, stream, ErrorCode::OLD));
                    }
                }
                PeerEvent::Frame { up, seq, frame } => {
                    if let Some(&track) = s.ups.get(&up) {
                        self.append(ctx, track, seq, Arc::new(frame));
                    }
                }
                PeerEvent::GroupDone { up, seq } => {
                    if let Some(&track) = s.ups.get(&up) {
                        self.group_done(ctx, track, seq);
                    }
                }
                PeerEvent::GroupAbort { up, seq, code } => {
                    if let Some(&track) = s.ups.get(&up) {
                        self.group_abort(ctx, track, seq, code);
                    }
                }
                PeerEvent::UpstreamEnded { up, code } => {
                    if let Some(track) = s.ups.remove(&up) {
                        self.end_track(ctx, track, code);
                    }
                }
                PeerEvent::InfoWanted {
                    request,
                    path,
                    track,
                } => {
                    let waiter = InfoWaiter::Stream(s.peer, request);
                    self.want_info(ctx, path, track, waiter);
                }
                PeerEvent::Info {
                    path,
                    track,
                    result,
                } => self.info_known(ctx, path, track, result),
                PeerEvent::Fetch {
                    request,
                    path,
                    track,
                    group,
                } => self.serve_fetch(ctx, ch, request, &path, &track, group),
            }
        }
    }

    /// Setup is complete: ask the peer what it publishes; a client's first session is its
    /// upstream, and its application hears of it; the peer's waiting streams can be taken now.
    fn ready(&mut self, ctx: &mut Ctx<'_>, ch: ConnectionHandle) {
        // Everything under the session's root: a rooted session's paths all start with it.
        self.wire(ctx, ch, |w, io, _| {
            let root = w.root().to_owned();
            w.announce_interest(io, &root)
        });
        let Some(s) = self.sessions.get(&ch) else {
            return;
        };
        if !s.server {
            let version = s.wire.version();
            if self.upstream.is_none() {
                self.upstream = Some(ch);
            }
            self.emit(AppEvent::Ready { version });
        }
        self.accept(ctx, ch);
    }

    fn lost(&mut self, ctx: &mut Ctx<'_>, ch: ConnectionHandle, reason: String) {
        let Some(mut s) = self.sessions.remove(&ch) else {
            return;
        };
        self.peers.remove(&s.peer);
        tracing::debug!(core = self.core, conn = ?ch, reason = %reason, "session lost");
        if self.upstream == Some(ch) {
            self.upstream = None;
            self.emit(AppEvent::Closed { reason });
        }
        // Its TRACK streams wait for nothing any more.
        let peer = s.peer;
        self.info_waits.retain(|_, waiters| {
            waiters.retain(|w| !matches!(w, InfoWaiter::Stream(p, _) if *p == peer));
            !waiters.is_empty()
        });
        for event in s.wire.lost() {
            match event {
                PeerEvent::Announced { path, .. } => {
                    self.registry.unpublish(&path, self.core, Some(peer))
                }
                PeerEvent::Info {
                    path,
                    track,
                    result,
                } => self.info_known(ctx, path, track, result),
                PeerEvent::Unsubscribe { id } => {
                    if let Some(track) = s.downs.remove(&id) {
                        self.detach(ctx, track, SubRef::Down { conn: ch, id });
                    }
                }
                _ => {}
            }
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
                && let Some(s) = self.sessions.get_mut(conn)
            {
                s.wire.restart(*id);
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

    // ----- announcements ----------------------------------------------------------------

    /// The peer's announce request: answer with what this core knows is active, except what
    /// it must not hear ([`advertise`]).
    fn serve_announce(
        &mut self,
        ctx: &mut Ctx<'_>,
        ch: ConnectionHandle,
        request: StreamId,
        prefix: &str,
        exclude_hop: u64,
    ) {
        let (core, client, now) = (self.core, self.app.is_some(), ctx.now);
        let (Some(s), Some(conn)) = (self.sessions.get_mut(&ch), ctx.conn(ch)) else {
            return;
        };
        let peer = s.peer;
        let active = self
            .active
            .iter()
            .filter(|(_, o)| advertise(core, client, peer, o))
            .map(|(p, o)| (p, o.hops.as_slice()));
        s.io(conn, now, |w, io| {
            w.announce_start(io, request, prefix, exclude_hop, active)
        });
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
        if self.app.is_some() {
            self.emit(AppEvent::Announced {
                path: path_.to_string(),
                active,
            });
        }
        let (client, now) = (self.app.is_some(), ctx.now);
        for (ch, s) in &mut self.sessions {
            if !advertise(self.core, client, s.peer, &owner) {
                continue;
            }
            if let Some(conn) = ctx.conn(*ch) {
                s.io(conn, now, |w, io| {
                    w.announce(io, &path_, &owner.hops, active)
                });
            }
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
        self.info_waits.insert(key, vec![waiter]);
        if owner.core != self.core {
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
        let asked = owner
            .peer
            .and_then(|peer| self.conn_of(peer))
            .and_then(|conn| self.wire(ctx, conn, |w, io, _| w.ask_info(io, &p, &name)));
        match asked {
            Some(InfoAsk::Asked) => {}
            Some(InfoAsk::Failed) => self.info_known(ctx, p, name, Err(ErrorCode::DROPPED)),
            Some(InfoAsk::Unsupported) | None => {
                self.info_known(ctx, p, name, Ok(TrackInfo::default()))
            }
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
        match waiter {
            InfoWaiter::Stream(peer, id) => {
                if let Some(ch) = self.conn_of(peer) {
                    self.wire(ctx, ch, |w, io, _| w.answer_info(io, id, result));
                }
            }
            InfoWaiter::App(id) => self.emit(AppEvent::TrackInfo {
                id,
                result: result.map_err(|c| c.0),
            }),
            InfoWaiter::Core(core) => self.registry.send(
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

    /// Subscribe to `(path, name)` on the session of `conn`, for `track`: our subscribe id.
    fn subscribe_upstream(
        &mut self,
        ctx: &mut Ctx<'_>,
        conn: ConnectionHandle,
        path_: &str,
        name: &str,
        track: u64,
    ) -> Option<u64> {
        let up = self.wire(ctx, conn, |w, io, _| w.subscribe(io, path_, name))??;
        self.sessions.get_mut(&conn)?.ups.insert(up, track);
        Some(up)
    }

    /// A peer's SUBSCRIBE: find the track (subscribing upstream if need be) and attach.
    fn serve_subscribe(
        &mut self,
        ctx: &mut Ctx<'_>,
        ch: ConnectionHandle,
        id: u64,
        path_: &str,
        name: &str,
        start: Option<u64>,
    ) {
        let Some(track) = self.resolve(ctx, path_, name) else {
            self.wire(ctx, ch, |w, io, _| {
                w.refuse_subscribe(io, id, ErrorCode::UNROUTABLE)
            });
            return;
        };
        let taken = self.wire(ctx, ch, |w, io, _| w.accept_subscribe(io, id));
        let Some(s) = self.sessions.get_mut(&ch).filter(|_| taken == Some(true)) else {
            // The subscriber left before it was answered.
            self.maybe_release(ctx, track);
            return;
        };
        s.downs.insert(id, track);
        self.attach(ctx, track, SubRef::Down { conn: ch, id }, start);
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

    /// Stop what feeds `track`: end our upstream SUBSCRIBE, or leave the owning core's track.
    fn drop_source(&mut self, ctx: &mut Ctx<'_>, track: u64, source: Source) {
        match source {
            Source::Session { conn, up } => {
                if let Some(s) = self.sessions.get_mut(&conn)
                    && s.ups.remove(&up).is_some()
                {
                    self.wire(ctx, conn, |w, io, _| w.unsubscribe(io, up));
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

    /// A peer's FETCH of one group: the cached group, whole, or NOT_FOUND.
    fn serve_fetch(
        &mut self,
        ctx: &mut Ctx<'_>,
        ch: ConnectionHandle,
        request: StreamId,
        path_: &str,
        name: &str,
        group: u64,
    ) {
        let now = ctx.now;
        let frames = self
            .by_name
            .get(path_)
            .and_then(|m| m.get(name))
            .and_then(|t| self.tracks.get(t))
            .and_then(|t| t.cache.get(group))
            .map(|g| &g.frames[..]);
        let (Some(s), Some(conn)) = (self.sessions.get_mut(&ch), ctx.conn(ch)) else {
            return;
        };
        s.io(conn, now, |w, io| w.answer_fetch(io, request, frames));
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
                    let now = ctx.now;
                    if let (Some(s), Some(conn)) = (self.sessions.get_mut(&ch), ctx.conn(ch)) {
                        s.io(conn, now, |w, io| w.abort_group(io, id, seq, code));
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
        let now = ctx.now;
        let mut fetched = Vec::new();
        for &sub in subs {
            match sub {
                SubRef::Down { conn: ch, id } => {
                    if let (Some(s), Some(conn)) = (self.sessions.get_mut(&ch), ctx.conn(ch)) {
                        let done = s.io(conn, now, |w, io| w.deliver(io, id, group));
                        counters.frames_delivered(done.frames);
                        for _ in 0..done.resets {
                            counters.group_reset();
                        }
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
                    let (latest, now) = (t.cache.latest, ctx.now);
                    if let (Some(s), Some(c)) = (self.sessions.get_mut(&conn), ctx.conn(conn)) {
                        s.downs.remove(&id);
                        s.io(c, now, |w, io| w.end_subscription(io, id, code, latest));
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
            c.streams += s.wire.streams_read() + s.outs.len();
            c.subscriptions += s.wire.subscriptions();
            c.upstream_subscriptions += s.wire.upstream_subscriptions();
            c.announce_requests += s.wire.announce_requests();
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
                let now = ctx.now;
                if let (Some(s), Some(conn)) = (self.sessions.get_mut(&ch), ctx.conn(ch)) {
                    s.io(conn, now, |w, io| w.stopped(io, id));
                }
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
            ctx.close(ch, ErrorCode::CANCEL.0, b"shutdown");
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
