//! The data model a core keeps for each track: groups of frames, cached for late joiners.
//! Payload stays in the `Bytes` chunks it arrived in; frames are shared by `Arc` across
//! subscribers and cores.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

/// One frame: its payload chunks exactly as received, never copied.
#[derive(Debug, Default, PartialEq, Eq)]
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
    /// When `done` became true; a finished group's cache age counts from here.
    pub done_at: Option<Instant>,
}

impl Group {
    pub fn finish(&mut self, now: Instant) {
        if !self.done {
            self.done = true;
            self.done_at = Some(now);
        }
    }
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

/// What [`GroupCache::open`] did.
#[derive(Debug, Default, PartialEq, Eq)]
#[must_use = "evicted groups must be aborted"]
pub struct Opened {
    /// The group is in the cache (false: older than what the cache may hold).
    pub open: bool,
    /// Unfinished groups evicted to make room: their subscribers' streams must be reset, not
    /// left waiting for a FIN that will never be forwarded. Handed back by the call that
    /// evicted them, so no stale entry can outlive a group's re-opening.
    pub evicted: Vec<u64>,
}

/// Unfinished groups (besides the latest) kept per cached group allowed: a publisher may
/// overlap groups for a while, but not without bound.
const UNFINISHED_PER_GROUP: usize = 4;

impl GroupCache {
    pub fn get_mut(&mut self, seq: u64) -> Option<&mut Group> {
        self.groups.iter_mut().rev().find(|g| g.seq == seq)
    }

    pub fn get(&self, seq: u64) -> Option<&Group> {
        self.groups.iter().rev().find(|g| g.seq == seq)
    }

    /// Start group `seq` (idempotent).
    pub fn open(&mut self, seq: u64, now: Instant, limits: CacheLimits) -> Opened {
        if self.get(seq).is_some() {
            return Opened {
                open: true,
                evicted: Vec::new(),
            };
        }
        self.groups.push_back(Group {
            seq,
            frames: Vec::new(),
            done: false,
            done_at: None,
        });
        if self.latest.is_none_or(|l| seq > l) {
            self.latest = Some(seq);
        }
        let evicted = self.evict(now, limits);
        Opened {
            open: self.get(seq).is_some(),
            evicted,
        }
    }

    /// Drop finished groups older than the age bound (counted from their end) and the oldest
    /// finished groups past the count bound; never the latest. A group still being written is
    /// kept however long it takes (a clock's group lasts a minute): its frames are still
    /// arriving and subscribers are mid-way through it. Only an excess of unfinished groups
    /// drops the oldest of them; those are returned.
    pub fn evict(&mut self, now: Instant, limits: CacheLimits) -> Vec<u64> {
        let latest = self.latest;
        let mut excess = self.groups.len().saturating_sub(limits.groups.max(1));
        let unfinished = self
            .groups
            .iter()
            .filter(|g| !g.done && Some(g.seq) != latest)
            .count();
        let mut unfinished_excess =
            unfinished.saturating_sub(limits.groups.max(1) * UNFINISHED_PER_GROUP);
        let mut dropped = Vec::new();
        self.groups.retain(|g| {
            if Some(g.seq) == latest {
                return true;
            }
            if !g.done {
                if unfinished_excess > 0 {
                    unfinished_excess -= 1;
                    excess = excess.saturating_sub(1);
                    dropped.push(g.seq);
                    return false;
                }
                return true;
            }
            let aged = g
                .done_at
                .is_some_and(|t| now.duration_since(t) > limits.age);
            if aged || excess > 0 {
                excess = excess.saturating_sub(1);
                return false;
            }
            true
        });
        dropped
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
            assert!(c.open(seq, now, limits).open);
            if seq != 3 {
                c.get_mut(seq).unwrap().finish(now);
            }
        }
        // Group 3 is unfinished, so count eviction spares it; of the rest only the latest fits.
        let seqs: Vec<u64> = c.groups.iter().map(|g| g.seq).collect();
        assert_eq!(seqs, vec![3, 9]);
        assert_eq!(c.latest, Some(9));
        // Age drops finished groups only: unfinished group 3 is still being written.
        assert!(c.evict(now + Duration::from_secs(2), limits).is_empty());
        assert_eq!(
            c.groups.iter().map(|g| g.seq).collect::<Vec<_>>(),
            vec![3, 9]
        );
        // A late older group is kept while it fits.
        assert!(c.open(5, now + Duration::from_secs(2), limits).open);
        assert_eq!(c.latest, Some(9));
    }

    /// A group that takes longer than the age bound (a clock's minute) is not evicted while it
    /// is written, and its age counts from its end.
    #[test]
    fn long_groups_survive_until_they_end() {
        let t0 = Instant::now();
        let limits = CacheLimits {
            groups: 4,
            age: Duration::from_secs(5),
        };
        let mut c = GroupCache::default();
        assert!(c.open(21, t0, limits).open);
        let minute = t0 + Duration::from_secs(60);
        // Group 22 opens a moment before 21's FIN arrives.
        assert!(c.open(22, minute, limits).open);
        assert!(c.get(21).is_some(), "unfinished group evicted by age");
        c.get_mut(21).unwrap().finish(minute);
        assert!(c.evict(minute + Duration::from_secs(4), limits).is_empty());
        assert!(c.get(21).is_some());
        assert!(c.evict(minute + Duration::from_secs(6), limits).is_empty());
        assert!(c.get(21).is_none());
    }

    /// Unfinished groups are bounded too; the ones dropped are reported.
    #[test]
    fn excess_unfinished_groups_are_dropped_and_reported() {
        let now = Instant::now();
        let limits = CacheLimits {
            groups: 1,
            age: Duration::from_secs(5),
        };
        let mut c = GroupCache::default();
        let mut evicted = Vec::new();
        for seq in 0..(UNFINISHED_PER_GROUP as u64 + 3) {
            let opened = c.open(seq, now, limits);
            assert!(opened.open);
            evicted.extend(opened.evicted);
        }
        assert_eq!(evicted, vec![0, 1]);
        assert_eq!(c.groups.len(), UNFINISHED_PER_GROUP + 1);
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

    /// An evicted group that comes back (a late frame of it) is a new group: the call that
    /// re-opens it never reports it as evicted, which is what once let a stale eviction
    /// abort the group just re-opened (robustness review, finding 1).
    #[test]
    fn reopened_group_is_never_reported_evicted() {
        let now = Instant::now();
        let limits = CacheLimits {
            groups: 1,
            age: Duration::from_secs(5),
        };
        let mut c = GroupCache::default();
        let last = UNFINISHED_PER_GROUP as u64 + 1;
        for seq in 0..=last {
            let _ = c.open(seq, now, limits);
        }
        assert!(c.get(0).is_none(), "0 was evicted");
        let again = c.open(0, now, limits);
        assert!(again.open);
        assert!(!again.evicted.contains(&0), "{:?}", again.evicted);
        assert!(c.get(0).is_some());
    }
}
