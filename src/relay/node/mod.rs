//! One core's MoQ node: the moq-lite sessions on its connections, its replicas of tracks, and
//! the fan-out from each track to its subscribers (sessions on this core, other cores, or the
//! local application of a client). A relay and a client are the same node; a client simply
//! also has an application that publishes and subscribes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};

use super::registry::{Census, CoreMsg, FetchReply, Owner, Registry};
use crate::model::{
    CacheLimits, ErrorCode, Frame, GroupCache, InfoAsk, PeerEvent, PeerId, Peers, RequestId,
    SessionLimits, TrackInfo, path,
};

mod announce;
mod app;
mod fanout;
mod peering;
mod session;
mod tracks;
mod xcore;

pub use app::{App, AppCmd, AppEvent};
use peering::PeerDial;
pub use peering::{
    BACKOFF_MAX, BACKOFF_MIN, Dialer, MESH_PREFIX, Mesh, PeerLink, STABLE, STALE_AFTER,
    advertised_url, advertisement,
};

/// Named, configurable bounds on what the relay holds.
#[derive(Clone, Debug)]
pub struct Limits {
    /// What one peer can make its session hold.
    pub session: SessionLimits,
    /// How long a track nobody wants stays subscribed upstream and cached, so that a quick
    /// re-subscribe (or an HTTP fetch) finds it warm.
    pub track_linger: std::time::Duration,
    pub cache: CacheLimits,
    /// How long a broadcast whose last source vanished (its session died without ending it)
    /// stays announced, its subscribers waiting for another source; zero ends it at once.
    pub broadcast_linger: std::time::Duration,
    /// Messages a core's inbox may hold before frames for it are dropped; a replica that
    /// misses a frame loses the whole group instead (aborted there with `LAGGED`). Fixed at
    /// [`INBOX`] outside tests.
    pub inbox: usize,
}

/// The default of [`Limits::inbox`]: at 50 groups a second of a few frames each, seconds of a
/// stalled core's traffic.
pub const INBOX: usize = 65_536;

impl Default for Limits {
    fn default() -> Self {
        Self {
            session: SessionLimits::default(),
            track_linger: std::time::Duration::from_secs(5),
            cache: CacheLimits::default(),
            broadcast_linger: std::time::Duration::from_secs(5),
            inbox: INBOX,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SubRef {
    Down {
        peer: PeerId,
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
    Session { peer: PeerId, up: u64 },
    /// A replica fed by the owning core.
    Core { core: usize },
    /// Written by the local application.
    App,
    /// None: the broadcast lost its last source and lingers; another may come.
    Lingering,
}

struct TrackState {
    path: Arc<str>,
    name: Arc<str>,
    source: Source,
    cache: GroupCache,
    subs: Vec<SubRef>,
    /// Other cores that hold replicas of this track: (core, their replica id).
    remotes: Vec<Replica>,
    /// Groups a replica missed a frame of (its core's inbox was full), already aborted
    /// there: nothing more of them goes to it.
    lost: Vec<(Replica, u64)>,
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

/// What this node keeps of one session: which of this core's tracks its subscriptions stand
/// for.
#[derive(Default)]
struct PeerState {
    /// The track each of the peer's accepted subscriptions reads, by its subscribe id.
    downs: HashMap<u64, u64>,
    /// The track each of our subscriptions on the peer feeds, by our subscribe id.
    ups: HashMap<u64, u64>,
}

/// One core's routing and fan-out: the relay's [`Application`](crate::model::Application)
/// on the session host. See the module docs.
pub struct Node {
    core: usize,
    registry: Arc<Registry>,
    inbox: Receiver<CoreMsg>,
    limits: Limits,
    app: Option<App>,
    /// A client's one upstream session, once it is set up.
    upstream: Option<PeerId>,
    /// Why a client's upstream refused it (an HTTP status), told when the session ends.
    refused: Option<String>,
    sessions: HashMap<PeerId, PeerState>,
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
    /// HTTP fetches waiting for a complete group, by their [`SubRef::Fetch`] id, with the
    /// track they wait on.
    fetches: HashMap<u64, (u64, Box<dyn FetchReply>)>,
    next_fetch: u64,
    /// The peer relays this core dials.
    peering: Vec<PeerDial>,
    /// Gossip discovery of more of them, when on.
    mesh: Option<Arc<Mesh>>,
    /// Broadcasts this core saw lose their last source, and when their linger ends.
    lingering: Vec<(std::time::Instant, Arc<str>, u64)>,
    /// State of the jitter of redials.
    jitter: u64,
}

/// Someone who asked for a track's TRACK_INFO.
#[derive(Clone, Copy, Debug)]
enum InfoWaiter {
    /// A peer's TRACK stream on this core.
    Stream(PeerId, RequestId),
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
        peering: Vec<(PeerLink, String)>,
        mesh: Option<Arc<Mesh>>,
    ) -> Self {
        let active = registry.snapshot().into_iter().collect();
        let jitter = (registry.origin ^ (core as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1;
        Self {
            core,
            registry,
            inbox,
            limits,
            app,
            upstream: None,
            refused: None,
            sessions: HashMap::new(),
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
            peering: peering
                .into_iter()
                .map(|(link, name)| PeerDial::new(link, name))
                .collect(),
            mesh,
            jitter,
            lingering: Vec::new(),
        }
    }

    /// A client routes what nobody here publishes to its one upstream session.
    fn upstream_owner(&self) -> Option<Owner> {
        Some(Owner {
            core: self.core,
            peer: Some(self.upstream?),
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
    fn census(&self, peers: &dyn Peers) -> Census {
        let counts = peers.counts();
        Census {
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
            streams: counts.streams,
            subscriptions: counts.subscriptions,
            upstream_subscriptions: counts.upstream_subscriptions,
            announce_requests: counts.announce_requests,
        }
    }
}

/// Whether a broadcast owned by `owner` may be announced to `peer` on `core`: never back
/// to the session it came from (split horizon), and a client only announces what its own
/// application publishes.
fn advertise(core: usize, client: bool, peer: PeerId, owner: &Owner) -> bool {
    if owner.core == core && owner.peer == Some(peer) {
        return false;
    }
    !client || owner.peer.is_none()
}

/// The frames' payloads back to back, as the chunks they arrived in: a group goes to HTTP
/// without a copy on the core thread.
fn frame_payloads(frames: &[Arc<Frame>]) -> Vec<Bytes> {
    frames
        .iter()
        .flat_map(|f| f.chunks.iter().cloned())
        .collect()
}

#[cfg(test)]
mod tests;
