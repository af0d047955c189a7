//! Who a core talks to.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// One session on one core, numbered by the core and never reused, unlike the QUIC connection
/// handle under it: state that names a `PeerId` can never reach a later session by mistake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u64);

impl std::fmt::Display for PeerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "peer{}", self.0)
    }
}

/// A map keyed by [`PeerId`], hashed with one multiply: the ids are small counters chosen by
/// us, never by a peer, so SipHash's protection against chosen keys buys nothing on a path
/// taken once per subscriber per frame.
pub type PeerMap<V> = HashMap<PeerId, V, BuildHasherDefault<PeerHasher>>;

/// See [`PeerMap`].
#[derive(Default)]
pub struct PeerHasher(u64);

impl Hasher for PeerHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        // Fibonacci hashing: the high bits, which hashbrown uses for its control bytes, depend
        // on every bit of the id.
        self.0 = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

#[cfg(test)]
mod tests {
    use std::hash::Hash;

    use super::*;

    #[test]
    fn peer_map_spreads_sequential_ids() {
        let mut m = PeerMap::default();
        for i in 0..10_000 {
            m.insert(PeerId(i), i);
        }
        assert!((0..10_000).all(|i| m[&PeerId(i)] == i));
        let top: std::collections::HashSet<u64> = (0..128)
            .map(|i| {
                let mut h = PeerHasher::default();
                PeerId(i).hash(&mut h);
                h.finish() >> 57
            })
            .collect();
        assert!(
            top.len() > 64,
            "control bytes of sequential ids collide: {}",
            top.len()
        );
    }
}
