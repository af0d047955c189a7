//! The data model a core keeps for each track: groups of frames, cached for late joiners.
//! Payload stays in the `Bytes` chunks it arrived in; frames are shared by `Arc` across
//! subscribers and cores.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

/// One frame: its payload chunks exactly as received, never copied.
#[derive(Debug, Default)]
pub struct Frame {
    /// Absolute, in the track's timescale (lite-05), else receive time in ms.
    pub timestamp: u64,
    pub chunks: Vec<Bytes>,
}

impl Frame {
    pub fn size(&self) -> u64 {
        self.chunks.iter().map(|c| c.len() as u64).sum()
    }

    /// A frame from one contiguous payload.
    pub fn from_bytes(timestamp: u64, payload: Bytes) -> Self {
        Self {
            timestamp,
            chunks: if payload.is_empty() {
                Vec::new()
            } else {
                vec![payload]
            },
        }
    }
}

#[derive(Debug)]
pub struct Group {
    pub seq: u64,
    pub frames: Vec<Arc<Frame>>,
    /// All frames are in (FIN seen, or the source said so).
    pub done: bool,
    pub created: Instant,
}

/// Bounds of a track's group cache: the latest group is always kept; older ones while there
/// are at most `groups` of them and they are younger than `age`.
#[derive(Clone, Copy, Debug)]
pub struct CacheLimits {
    pub groups: usize,
    pub age: Duration,
}

impl Default for CacheLimits {
    fn default() -> Self {
        Self {
            groups: 4,
            age: Duration::from_secs(5),
        }
    }
}

/// Groups in arrival order; `latest` is the highest sequence seen.
#[derive(Debug, Default)]
pub struct GroupCache {
    pub groups: VecDeque<Group>,
    pub latest: Option<u64>,
}

impl GroupCache {
    pub fn get_mut(&mut self, seq: u64) -> Option<&mut Group> {
        self.groups.iter_mut().rev().find(|g| g.seq == seq)
    }

    pub fn get(&self, seq: u64) -> Option<&Group> {
        self.groups.iter().rev().find(|g| g.seq == seq)
    }

    /// Start group `seq` (idempotent); false when it is older than what the cache may hold.
    pub fn open(&mut self, seq: u64, now: Instant, limits: CacheLimits) -> bool {
        if self.get(seq).is_some() {
            return true;
        }
        self.groups.push_back(Group {
            seq,
            frames: Vec::new(),
            done: false,
            created: now,
        });
        if self.latest.is_none_or(|l| seq > l) {
            self.latest = Some(seq);
        }
        self.evict(now, limits);
        self.get(seq).is_some()
    }

    /// Drop groups past the age bound, and the oldest finished groups past the count bound;
    /// never the latest. A group still being written is only dropped by age: its frames are
    /// still arriving and subscribers are mid-way through it.
    pub fn evict(&mut self, now: Instant, limits: CacheLimits) {
        let latest = self.latest;
        let mut excess = self.groups.len().saturating_sub(limits.groups.max(1));
        self.groups.retain(|g| {
            if Some(g.seq) == latest {
                return true;
            }
            if now.duration_since(g.created) > limits.age {
                excess = excess.saturating_sub(1);
                return false;
            }
            if excess > 0 && g.done {
                excess -= 1;
                return false;
            }
            true
        });
    }

    pub fn latest_group(&self) -> Option<&Group> {
        self.latest.and_then(|l| self.get(l))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_keeps_latest_and_bounds_the_rest() {
        let now = Instant::now();
        let limits = CacheLimits {
            groups: 2,
            age: Duration::from_secs(1),
        };
        let mut c = GroupCache::default();
        for seq in 0..10 {
            assert!(c.open(seq, now, limits));
            c.get_mut(seq).unwrap().done = seq != 3;
        }
        // Group 3 is unfinished, so count eviction spares it; of the rest only the latest fits.
        let seqs: Vec<u64> = c.groups.iter().map(|g| g.seq).collect();
        assert_eq!(seqs, vec![3, 9]);
        assert_eq!(c.latest, Some(9));
        // Age: only the latest survives, finished or not.
        c.evict(now + Duration::from_secs(2), limits);
        assert_eq!(c.groups.iter().map(|g| g.seq).collect::<Vec<_>>(), vec![9]);
        // A late older group is kept while it fits.
        assert!(c.open(5, now + Duration::from_secs(2), limits));
        assert_eq!(c.latest, Some(9));
    }

    #[test]
    fn frame_size_sums_chunks() {
        let f = Frame {
            timestamp: 0,
            chunks: vec![Bytes::from_static(b"ab"), Bytes::from_static(b"cde")],
        };
        assert_eq!(f.size(), 5);
        assert!(Frame::from_bytes(1, Bytes::new()).chunks.is_empty());
    }
}
