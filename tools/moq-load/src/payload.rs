//! What every load frame carries: its publish time and its sequence in the track, so that a
//! subscriber can measure latency and find loss, duplicates and reordering without any side
//! channel. The rest of the frame is filler up to the scenario's frame size.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};

/// Bytes of the stamp at the front of every payload: publish time (u64 microseconds since the
/// UNIX epoch, big-endian) then the frame's sequence in its track (u64, big-endian).
pub const STAMP_LEN: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// CLOCK_REALTIME microseconds, so another process on a synchronised clock can read it.
    pub sent_us: u64,
    /// 0, 1, 2, ... per track; group `seq / frames_per_group` holds it.
    pub seq: u64,
}

impl Stamp {
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(STAMP_LEN);
        b.extend_from_slice(&self.sent_us.to_be_bytes());
        b.extend_from_slice(&self.seq.to_be_bytes());
        b.freeze()
    }

    /// The stamp from the first [`STAMP_LEN`] bytes of a payload; `None` if it is shorter.
    pub fn decode(head: &[u8]) -> Option<Self> {
        let head = head.get(..STAMP_LEN)?;
        let (t, s) = head.split_at(8);
        Some(Self {
            sent_us: u64::from_be_bytes(t.try_into().ok()?),
            seq: u64::from_be_bytes(s.try_into().ok()?),
        })
    }
}

/// Filler shared by every frame of a run: frames are `stamp + filler[..size - 16]`, written as
/// two chunks, so publishing costs no payload copy.
pub fn filler(len: usize) -> Bytes {
    Bytes::from((0..len).map(|i| (i % 251) as u8).collect::<Vec<u8>>())
}

/// Maps the engine's `Instant`s to wall-clock microseconds. One clock is made per run and shared
/// by every thread, so that publish and receive times come from the same mapping.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    base: Instant,
    base_us: u64,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    pub fn new() -> Self {
        let base = Instant::now();
        let base_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_micros() as u64;
        Self { base, base_us }
    }

    pub fn us(&self, at: Instant) -> u64 {
        match at.checked_duration_since(self.base) {
            Some(d) => self.base_us + d.as_micros() as u64,
            None => self
                .base_us
                .saturating_sub(self.base.duration_since(at).as_micros() as u64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_round_trip() {
        let s = Stamp {
            sent_us: 1_795_000_000_123_456,
            seq: 42,
        };
        let b = s.encode();
        assert_eq!(b.len(), STAMP_LEN);
        assert_eq!(Stamp::decode(&b), Some(s));
        let mut longer = b.to_vec();
        longer.extend_from_slice(&filler(100));
        assert_eq!(Stamp::decode(&longer), Some(s));
        assert_eq!(Stamp::decode(&b[..15]), None);
    }

    #[test]
    fn clock_is_monotonic_wall_time() {
        let c = Clock::new();
        let now = Instant::now();
        let later = now + Duration::from_millis(1500);
        assert_eq!(c.us(later) - c.us(now), 1_500_000);
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_micros() as u64;
        assert!(c.us(Instant::now()).abs_diff(wall) < 1_000_000);
    }
}
