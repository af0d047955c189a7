//! The peer relays this core dials (`--cluster-connect`): dialled at start, and again for ever
//! after a loss, with backoff. Nothing else on the relay notices: a peer's broadcasts come and
//! go with its session like any publisher's.

use std::time::{Duration, Instant};

use super::*;

/// The first wait after a failed dial or a short session, doubled up to [`BACKOFF_MAX`].
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
pub const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A session that stayed up this long resets the backoff.
pub const STABLE: Duration = Duration::from_secs(10);

/// One peer relay this core dials.
pub(super) struct PeerDial {
    /// The host's dial number.
    pub dial: usize,
    /// For logs: the URL without its query.
    pub name: String,
    pub peer: Option<PeerId>,
    /// When its session was set up.
    pub up_since: Option<Instant>,
    /// The next wait after a loss.
    pub delay: Duration,
    /// When to dial again.
    pub next: Option<Instant>,
}

impl PeerDial {
    pub fn new(dial: usize, name: String) -> Self {
        Self {
            dial,
            name,
            peer: None,
            up_since: None,
            delay: BACKOFF_MIN,
            next: None,
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
            match peers.dial(p.dial) {
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

    /// The soonest redial, for the timer.
    pub(super) fn next_dial(&self) -> Option<Instant> {
        self.peering.iter().filter_map(|p| p.next).min()
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
