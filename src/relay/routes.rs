//! Every source that announces one broadcast path, and which of them serves it. A source is a
//! session (or the local application) that announced the path; two sources whose hop chains
//! start at the same origin are two routes to the same broadcast, and the better route serves
//! it; a source whose chain starts elsewhere is new content and takes the path over. When the
//! serving source goes, the next best serves at once. A route's price is the `?cost=` of the
//! link it came over (moq-lite-05 carries no cost on the wire, so it is this relay's own
//! preference and does not travel).

use super::registry::Owner;
use crate::model::PeerId;

/// One source: its attach order, its price, who it is.
#[derive(Clone, Debug)]
struct Source {
    seq: u64,
    cost: u64,
    owner: Owner,
}

/// The sources of one path, in the order they were attached.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    list: Vec<Source>,
    /// Set while the path lingers with no source: which loss started it, so that the end of
    /// an older linger does not end a newer one.
    pub lingering: Option<u64>,
}

impl Sources {
    /// Add a source, or update the hops and price of one already there (the same core and
    /// session).
    pub fn attach(&mut self, seq: u64, owner: Owner, cost: u64) {
        self.lingering = None;
        match (self.list.iter_mut()).find(|s| same(&s.owner, owner.core, owner.peer)) {
            Some(s) => (s.owner, s.cost) = (owner, cost),
            None => self.list.push(Source { seq, cost, owner }),
        }
    }

    /// Remove the source of `core`/`peer`; false when it was not one.
    pub fn detach(&mut self, core: usize, peer: Option<PeerId>) -> bool {
        let before = self.list.len();
        self.list.retain(|s| !same(&s.owner, core, peer));
        self.list.len() != before
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The source that serves `path`. The local application's own broadcast is always its
    /// own. Otherwise the newest source says what the content is (the origin its chain starts
    /// at; an unknown origin, 0 or none, is content of its own) and, among the routes to that
    /// content, the cheaper serves, then the one with fewer hops, then the lower hash of path
    /// and hops (so every relay with the same candidates picks the same), then the newest.
    pub fn best(&self, path: &str) -> Option<&Owner> {
        if let Some(app) = (self.list.iter())
            .filter(|s| s.owner.peer.is_none())
            .max_by_key(|s| s.seq)
        {
            return Some(&app.owner);
        }
        let latest = self.list.iter().max_by_key(|s| s.seq)?;
        let content = latest.owner.hops.first().copied().filter(|h| *h != 0);
        self.list
            .iter()
            .filter(|s| match content {
                Some(c) => s.owner.hops.first() == Some(&c),
                None => s.seq == latest.seq,
            })
            .min_by_key(|s| {
                let hops = &s.owner.hops;
                (s.cost, hops.len(), route_hash(path, hops), u64::MAX - s.seq)
            })
            .map(|s| &s.owner)
    }
}

fn same(o: &Owner, core: usize, peer: Option<PeerId>) -> bool {
    o.core == core && o.peer == peer
}

/// FNV-1a 64 over the path's bytes, then each hop as 8 little-endian bytes, from the seed the
/// reference relay uses, so that its relays and ours rank equal routes alike.
pub fn route_hash(path: &str, hops: &[u64]) -> u64 {
    const SEED: u64 = 0x420C_0DEC_B00B;
    const PRIME: u64 = 0x0100_0000_01b3;
    let mut h = SEED;
    let bytes = path
        .bytes()
        .chain(hops.iter().flat_map(|x| x.to_le_bytes()));
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(PRIME);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(core: usize, peer: Option<u64>, hops: &[u64]) -> Owner {
        Owner {
            core,
            peer: peer.map(PeerId),
            hops: hops.to_vec(),
        }
    }

    #[test]
    fn routes_to_one_content_rank_by_hops_then_hash_and_new_content_takes_over() {
        let mut s = Sources::default();
        s.attach(1, owner(0, Some(1), &[7, 2, 3]), 0);
        s.attach(2, owner(1, Some(2), &[7, 2]), 0);
        // The shorter route serves, whichever came first.
        assert_eq!(s.best("p").unwrap().peer, Some(PeerId(2)));
        // Equal lengths: the hash decides, the same on every relay.
        s.attach(3, owner(0, Some(3), &[7, 9]), 0);
        let pick = if route_hash("p", &[7, 2]) < route_hash("p", &[7, 9]) {
            2
        } else {
            3
        };
        assert_eq!(s.best("p").unwrap().peer, Some(PeerId(pick)));
        // New content (another first hop) takes over; when it goes, the old routes serve.
        s.attach(4, owner(1, Some(4), &[8]), 0);
        assert_eq!(s.best("p").unwrap().peer, Some(PeerId(4)));
        assert!(s.detach(1, Some(PeerId(4))));
        assert_eq!(s.best("p").unwrap().peer, Some(PeerId(pick)));
        // The serving route goes: the next serves at once.
        s.detach(0, Some(PeerId(3)));
        s.detach(1, Some(PeerId(2)));
        assert_eq!(s.best("p").unwrap().peer, Some(PeerId(1)));
        // A re-announce updates a source in place.
        s.attach(9, owner(0, Some(1), &[7]), 0);
        assert_eq!(s.best("p").unwrap().hops, [7]);
        assert!(!s.detach(5, None) && s.detach(0, Some(PeerId(1))) && s.is_empty());
    }

    #[test]
    fn a_cheaper_link_beats_fewer_hops() {
        let mut s = Sources::default();
        s.attach(1, owner(0, Some(1), &[7]), 5);
        s.attach(2, owner(0, Some(2), &[7, 3, 4]), 1);
        assert_eq!(s.best("p").unwrap().peer, Some(PeerId(2)));
        // A re-announce over the same link may change its price.
        s.attach(3, owner(0, Some(2), &[7, 3, 4]), 9);
        assert_eq!(s.best("p").unwrap().peer, Some(PeerId(1)));
    }

    #[test]
    fn the_applications_broadcast_stays_its_own_and_unknown_origins_are_new_content() {
        let mut s = Sources::default();
        s.attach(1, owner(0, None, &[]), 0);
        s.attach(2, owner(1, Some(1), &[5]), 0);
        assert_eq!(s.best("p").unwrap().peer, None);
        let mut s = Sources::default();
        s.attach(1, owner(0, Some(1), &[0]), 0);
        s.attach(2, owner(0, Some(2), &[0, 4, 5]), 0);
        assert_eq!(s.best("p").unwrap().peer, Some(PeerId(2)));
        // The reference's hash, computed by hand for one input.
        assert_eq!(route_hash("", &[]), 0x420C_0DEC_B00B);
    }
}
