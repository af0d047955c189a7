//! The relay model: origin (path -> broadcast), broadcast -> track -> group -> frame, with
//! subscriptions, announcements, late join, a bounded group cache and cross-core fan-out.

mod node;
mod registry;
mod routes;

pub use crate::model::{CacheLimits, Frame, Group, GroupCache};
pub use node::{
    App, AppCmd, AppEvent, BACKOFF_MAX, BACKOFF_MIN, Dialer, INBOX, Limits, MESH_PREFIX, Mesh,
    Node, PeerLink, STABLE, STALE_AFTER, advertised_url, advertisement,
};
pub use registry::{Census, CoreCounters, CoreMsg, FetchReply, Link, Owner, Registry, RelayStats};

use std::sync::{Arc, Mutex, OnceLock};

use crossbeam_channel::Receiver;

/// Builds each core's [`Node`] from inside the engine's factory: the first core to start makes
/// the shared [`Registry`] (it needs every core's doorbell), each core takes its own inbox.
pub struct NodeFactory {
    registry: OnceLock<Arc<Registry>>,
    senders: Vec<crossbeam_channel::Sender<CoreMsg>>,
    inboxes: Mutex<Vec<Option<Receiver<CoreMsg>>>>,
    origin: u64,
    limits: Limits,
    /// The peer relays to dial, with their URLs without the query (for logs); dial `n`
    /// belongs to core `n % cores`.
    peers: Vec<(PeerLink, String)>,
    mesh: Option<Arc<Mesh>>,
}

impl NodeFactory {
    pub fn new(cores: usize, limits: Limits) -> Arc<Self> {
        Self::cluster(cores, limits, None, Vec::new(), None)
    }

    /// A relay that dials `peers` (the session host's dials, by number) and those `mesh`
    /// finds, with hop id `origin` (random when `None`).
    pub fn cluster(
        cores: usize,
        limits: Limits,
        origin: Option<u64>,
        peers: Vec<(PeerLink, String)>,
        mesh: Option<Arc<Mesh>>,
    ) -> Arc<Self> {
        // Unbounded as channels, bounded by use: data goes through `Registry::send_data`,
        // which stops at `limits.inbox`; control messages are bounded by the session limits.
        let (senders, inboxes): (Vec<_>, Vec<_>) =
            (0..cores).map(|_| crossbeam_channel::unbounded()).unzip();
        Arc::new(Self {
            registry: OnceLock::new(),
            senders,
            inboxes: Mutex::new(inboxes.into_iter().map(Some).collect()),
            origin: origin.unwrap_or_else(random_origin),
            limits,
            peers,
            mesh,
        })
    }

    /// Our hop id, the same on every core.
    pub fn origin(&self) -> u64 {
        self.origin
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn registry(&self) -> Option<&Arc<Registry>> {
        self.registry.get()
    }

    /// The node for `core`; `doorbells` wake each core (by index) to read its inbox.
    pub fn node(&self, core: usize, doorbells: &[Wake], app: Option<App>) -> Node {
        let registry = self
            .registry
            .get_or_init(|| {
                let links = self
                    .senders
                    .iter()
                    .zip(doorbells)
                    .map(|(tx, wake)| Link {
                        tx: tx.clone(),
                        wake: wake.clone(),
                    })
                    .collect();
                Arc::new(Registry::new(links, self.origin, self.limits.inbox))
            })
            .clone();
        let inbox = self.inboxes.lock().expect("inboxes")[core]
            .take()
            .expect("one node per core");
        let cores = self.senders.len();
        let peering = (self.peers.iter())
            .filter(|(link, _)| link.dial % cores == core)
            .cloned()
            .collect();
        let (limits, mesh) = (self.limits.clone(), self.mesh.clone());
        Node::new(core, registry, inbox, limits, app, peering, mesh)
    }
}

/// Rings a core's doorbell.
pub type Wake = Arc<dyn Fn() + Send + Sync>;

/// A hop id: random, non-zero and below 2^53 so JavaScript peers can hold it exactly.
fn random_origin() -> u64 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 8];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    (u64::from_le_bytes(b) & ((1 << 53) - 1)).max(1)
}
