//! The peer relays this core dials: those of `--cluster-connect`, dialled at start, and those
//! gossip finds (`--cluster-mesh`), dialled when their advertisement appears; each again for
//! ever after a loss, with backoff. Nothing else on the relay notices: a peer's broadcasts
//! come and go with its session like any publisher's.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::*;

/// The first wait after a failed dial or a short session, doubled up to [`BACKOFF_MAX`].
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
pub const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A session that stayed up this long resets the backoff.
pub const STABLE: Duration = Duration::from_secs(10);

/// Where relays advertise their own URL, as an empty broadcast each (the reference's prefix).
pub const MESH_PREFIX: &str = ".internal/origins";
/// A gossip peer whose advertisement is gone this long is no longer dialled (a route change
/// re-announces within milliseconds; a relay that left stays gone).
pub const STALE_AFTER: Duration = Duration::from_secs(60);
/// How soon to look again at a gossip peer whose host name is still resolving.
const RESOLVING: Duration = Duration::from_millis(250);

/// One peer relay as the session host dials it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerLink {
    /// The host's dial number.
    pub dial: usize,
    /// Its identity: the URL without the query, canonical, so that two spellings of one peer
    /// are one peer, and so that the two ends of a gossip pair agree on who dials.
    pub key: String,
    /// `?cost=N` of its URL: added to the routes it announces (none: 0).
    pub cost: u64,
}

/// Turns peer URLs into dials of the session host: the relay's own, shared by every core.
pub trait Dialer: Send + Sync {
    /// The dial of `url` (the same number for every spelling of one peer), added if new.
    fn register(&self, url: &str) -> Result<PeerLink, String>;

    /// Whether dial `dial` can be dialled now: `Err` while its host name resolves (resolving
    /// it again when an earlier try failed).
    fn ready(&self, dial: usize) -> Result<(), String>;
}

/// Gossip discovery (`--cluster-node` with `--cluster-mesh`).
pub struct Mesh {
    /// Our own [`PeerLink::key`]: only peers whose key sorts after it are dialled by us (the
    /// other side dials us), so each pair has one session.
    pub key: String,
    /// Whether to dial what gossip finds: only a relay that dials peers of its own does (a
    /// relay that only advertises itself is a rendezvous).
    pub discover: bool,
    pub dialer: Arc<dyn Dialer>,
}

/// The URL a relay advertises at `MESH_PREFIX/<advertised>`: a path collapses `//`, so
/// `https:/host:port/x` gets its `//` back (a first segment ending in `:` is a scheme).
pub fn advertised_url(advertised: &str) -> String {
    match advertised.split_once('/') {
        Some((scheme, rest)) if scheme.ends_with(':') => format!("{scheme}//{rest}"),
        _ => advertised.to_owned(),
    }
}

/// Where `node` (our own URL) is advertised.
pub fn advertisement(node: &str) -> String {
    format!("{MESH_PREFIX}/{node}")
}

/// One peer relay this core dials.
pub(super) struct PeerDial {
    pub link: PeerLink,
    /// For logs: the URL without its query.
    pub name: String,
    pub peer: Option<PeerId>,
    /// When its session was set up.
    pub up_since: Option<Instant>,
    /// The next wait after a loss.
    pub delay: Duration,
    /// When to dial again.
    pub next: Option<Instant>,
    /// Found by gossip: the advertisements that name it now, and since when none has.
    pub gossip: Option<(BTreeSet<Arc<str>>, Option<Instant>)>,
}

impl PeerDial {
    pub fn new(link: PeerLink, name: String) -> Self {
        Self {
            link,
            name,
            peer: None,
            up_since: None,
            delay: BACKOFF_MIN,
            next: None,
            gossip: None,
        }
    }
}

impl Node {
    /// Dial every peer that is due (all of them at start).
    pub(super) fn dial_peers(&mut self, peers: &mut dyn Peers) {
        let now = peers.now();
        for i in 0..self.peering.len() {
            let p = &mut self.peering[i];
            if p.peer.is_some() || p.next.is_some_and(|at| at > now) {
                continue;
            }
            p.next = None;
            if let (Some(_), Some(mesh)) = (&p.gossip, &self.mesh)
                && let Err(e) = mesh.dialer.ready(p.link.dial)
            {
                tracing::debug!(core = self.core, peer = %p.name, error = %e, "cluster peer not dialled yet");
                let at = now + RESOLVING;
                p.next = Some(at);
                peers.wake_at(at);
                continue;
            }
            match peers.dial(p.link.dial) {
                Ok(peer) => p.peer = Some(peer),
                Err(e) => {
                    tracing::warn!(core = self.core, peer = %p.name, error = %e, "cluster peer dial failed");
                    self.retry_later(peers, i);
                }
            }
        }
    }

    /// The session with a peer relay is set up.
    pub(super) fn peer_ready(&mut self, peers: &dyn Peers, peer: PeerId) {
        if let Some(p) = self.peering.iter_mut().find(|p| p.peer == Some(peer)) {
            tracing::info!(core = self.core, peer = %p.name, "cluster peer connected");
            p.up_since = Some(peers.now());
        }
    }

    /// A session (or a dial) is gone: if it was a peer relay's, dial it again after the
    /// backoff, reset when the session had been up for [`STABLE`].
    pub(super) fn peer_lost(&mut self, peers: &mut dyn Peers, peer: PeerId, reason: &str) {
        let Some(i) = self.peering.iter().position(|p| p.peer == Some(peer)) else {
            return;
        };
        let now = peers.now();
        let p = &mut self.peering[i];
        p.peer = None;
        if p.up_since
            .take()
            .is_some_and(|since| now.duration_since(since) >= STABLE)
        {
            p.delay = BACKOFF_MIN;
        }
        tracing::warn!(core = self.core, peer = %p.name, %reason, "cluster peer lost; redialling");
        self.retry_later(peers, i);
    }

    /// Schedule peer `i` after its delay with jitter (0.5 to 1 times), and double the delay.
    fn retry_later(&mut self, peers: &mut dyn Peers, i: usize) {
        let jitter = 0.5 + 0.5 * self.random_unit();
        let p = &mut self.peering[i];
        let at = peers.now() + p.delay.mul_f64(jitter);
        p.next = Some(at);
        p.delay = (p.delay * 2).min(BACKOFF_MAX);
        peers.wake_at(at);
    }

    /// The soonest redial or gossip release, for the timer.
    pub(super) fn next_dial(&self) -> Option<Instant> {
        let stale = (self.peering.iter())
            .filter_map(|p| p.gossip.as_ref()?.1.map(|since| since + STALE_AFTER));
        self.peering
            .iter()
            .filter_map(|p| p.next)
            .chain(stale)
            .min()
    }

    /// The price of routes announced by `peer`: its link's `?cost=`, else 0.
    pub(super) fn cost_of(&self, peer: PeerId) -> u64 {
        (self.peering.iter())
            .find(|p| p.peer == Some(peer))
            .map_or(0, |p| p.link.cost)
    }

    /// A broadcast under [`MESH_PREFIX`] came or went: a relay advertising itself. Dial it
    /// when this core is the one that dials it and its key sorts after ours; stop when its
    /// advertisements have been gone for [`STALE_AFTER`].
    pub(super) fn gossip(&mut self, peers: &mut dyn Peers, p: &Arc<str>, active: bool) {
        let Some(mesh) = self.mesh.clone().filter(|m| m.discover) else {
            return;
        };
        let Some(advertised) = path::strip_prefix(p, MESH_PREFIX).filter(|a| !a.is_empty()) else {
            return;
        };
        let url = advertised_url(advertised);
        let link = match mesh.dialer.register(&url) {
            Ok(link) => link,
            Err(e) => {
                tracing::warn!(core = self.core, advertised = %advertised, error = %e, "gossiped cluster peer URL ignored");
                return;
            }
        };
        if link.key <= mesh.key || link.dial % self.registry.cores() != self.core {
            return;
        }
        let now = peers.now();
        let at = match self.peering.iter().position(|d| d.link.dial == link.dial) {
            Some(i) => i,
            None if active => {
                tracing::info!(core = self.core, peer = %link.key, "discovered cluster peer; dialling");
                let mut dial = PeerDial::new(link.clone(), link.key.clone());
                dial.gossip = Some((BTreeSet::new(), None));
                self.peering.push(dial);
                self.peering.len() - 1
            }
            None => return,
        };
        let d = &mut self.peering[at];
        // A peer also listed in --cluster-connect is never released.
        let Some((adverts, gone)) = d.gossip.as_mut() else {
            return;
        };
        if active {
            adverts.insert(p.clone());
            *gone = None;
            d.link.cost = link.cost;
        } else {
            adverts.remove(p);
            if adverts.is_empty() && gone.is_none() {
                *gone = Some(now);
                peers.wake_at(now + STALE_AFTER);
            }
        }
        self.dial_peers(peers);
    }

    /// Stop dialling gossip peers whose advertisements stayed gone, and close their sessions.
    pub(super) fn release_stale(&mut self, peers: &mut dyn Peers) {
        let now = peers.now();
        let stale = |d: &PeerDial| {
            d.gossip
                .as_ref()
                .and_then(|g| g.1)
                .is_some_and(|since| now.duration_since(since) >= STALE_AFTER)
        };
        for d in self.peering.iter().filter(|d| stale(d)) {
            tracing::info!(core = self.core, peer = %d.name, "cluster peer no longer advertised; released");
            if let Some(peer) = d.peer {
                peers.close(peer, ErrorCode::CANCEL, "no longer advertised");
            }
        }
        self.peering.retain(|d| !stale(d));
    }

    /// A number in [0, 1) from a xorshift of the node's own state: jitter needs no more.
    fn random_unit(&mut self) -> f64 {
        let mut x = self.jitter;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.jitter = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}
