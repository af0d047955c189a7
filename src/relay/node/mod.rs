//! One core's MoQ node: the moq-lite sessions on its connections, its replicas of tracks, and
//! the fan-out from each track to its subscribers (sessions on this core, other cores, or the
//! local application of a client). A relay and a client are the same node; a client simply
//! also has an application that publishes and subscribes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};

use super::registry::{Census, CoreMsg, Owner, Registry};
use crate::lite::session::{self as wire, InfoAsk, PeerEvent};
use crate::lite::{self, ErrorCode, TrackInfo, Version};
use crate::model::{CacheLimits, Frame, GroupCache, PeerId, path};
use crate::quic::{Connection, ConnectionHandle, Ctx, Event, Handler, StreamEvent, StreamId};
use crate::stream::Streams;
use crate::web::{self, WebEvent, WebSession};

mod announce;
mod app;
mod fanout;
mod session;
mod tracks;
mod xcore;

pub use app::{App, AppCmd, AppEvent};

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

/// One connection's session as this node sees it: the session itself (transport and
/// moq-lite machine), the peer's name, and which of this core's tracks its subscriptions
/// stand for.
struct Session {
    /// Names this session in the registry and in cross-core messages; never reused.
    peer: PeerId,
    session: crate::session::Session,
    /// The track each of the peer's accepted subscriptions reads, by its subscribe id.
    downs: HashMap<u64, u64>,
    /// The track each of our subscriptions on the peer feeds, by our subscribe id.
    ups: HashMap<u64, u64>,
}

impl Session {
    /// Run `f` on the moq-lite machine with the connection's streams.
    fn io<R>(
        &mut self,
        conn: &mut Connection,
        now: Instant,
        f: impl FnOnce(&mut wire::Session, &mut dyn Streams) -> R,
    ) -> R {
        self.session.io(conn, now, f)
    }

    fn wire(&self) -> &wire::Session {
        self.session.wire()
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
    /// A spare event buffer, so that reading a stream allocates none.
    spare_events: Vec<crate::session::Event>,
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
            let w = s.wire();
            c.streams += w.streams_read() + s.session.pending_writes();
            c.subscriptions += w.subscriptions();
            c.upstream_subscriptions += w.upstream_subscriptions();
            c.announce_requests += w.announce_requests();
        }
        c
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
                    s.session.writable(conn, id);
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
