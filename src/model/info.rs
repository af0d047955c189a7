//! What a publisher declares about a track, whatever protocol carries it.

use std::time::Duration;

/// A track's immutable properties.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrackInfo {
    /// Tie-breakers only; the subscriber's preferences come first.
    pub priority: u8,
    pub ordered: bool,
    /// How long the publisher keeps groups; bounds cache retention.
    pub max_latency: Duration,
    /// Frame timestamp units per second; never zero.
    pub timescale: u64,
}

/// The reference defaults, which a relay serves when its upstream predates lite-05.
impl Default for TrackInfo {
    fn default() -> Self {
        Self {
            priority: 0,
            ordered: false,
            max_latency: Duration::from_secs(5),
            timescale: 1000,
        }
    }
}
