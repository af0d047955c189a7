//! Named bounds on what one peer can make a session hold, whatever its wire protocol.

/// Bounds on what one peer can make a session hold.
#[derive(Clone, Copy, Debug)]
pub struct SessionLimits {
    /// Largest control message, in bytes; a control stream buffers at most four.
    pub max_message: usize,
    /// Longest absolute broadcast path, in bytes.
    pub max_path: usize,
    /// Largest frame accepted from a publisher.
    pub max_frame: u64,
    /// Subscriptions the peer may hold at once.
    pub max_subscriptions: usize,
    /// Announce requests the peer may hold open.
    pub max_announces: usize,
    /// Unfinished group streams per subscription; a newer group resets the oldest backlogged.
    pub max_groups_in_flight: usize,
    /// Broadcasts the peer may announce as active at once.
    pub max_broadcasts: usize,
    /// Announce changes (active or ended) per second the peer may sustain, after a burst of
    /// `max_broadcasts`; past it the session is closed (each change reaches every core and
    /// every session that listens).
    pub max_announce_rate: u32,
    /// Bytes waiting for the peer's flow control, over all its streams, beyond what QUIC
    /// itself buffers: a peer that does not read past this is cut off.
    pub max_queued: usize,
    /// Frames one group may have; past it the group stream is refused and the group aborted.
    pub max_group_frames: usize,
    /// Payload bytes one group may have, likewise.
    pub max_group_bytes: u64,
    /// Bytes of frames not yet whole, over all the peer's group streams (a frame is cached
    /// only once whole): past it the stream that would exceed it is refused.
    pub max_partial: u64,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            max_message: 16 * 1024,
            max_path: 1024,
            max_frame: 32 << 20,
            max_subscriptions: 1024,
            max_announces: 64,
            max_groups_in_flight: 4,
            max_broadcasts: 1024,
            max_announce_rate: 100,
            max_queued: 16 << 20,
            max_group_frames: 16_384,
            max_group_bytes: 64 << 20,
            max_partial: 64 << 20,
        }
    }
}

/// The token bucket behind [`SessionLimits::max_announce_rate`]: a burst of `max_broadcasts`
/// changes, then `max_announce_rate` a second.
#[derive(Clone, Copy, Debug, Default)]
pub struct AnnounceBudget {
    tokens: f64,
    /// When the bucket was last filled (ms); `None` until the first change.
    at_ms: Option<u64>,
}

impl AnnounceBudget {
    /// Spend one change at wall time `now_ms`; false when the peer is past its rate.
    pub fn allow(&mut self, limits: &SessionLimits, now_ms: u64) -> bool {
        let burst = limits.max_broadcasts.max(1) as f64;
        let rate = f64::from(limits.max_announce_rate);
        let last = self.at_ms.unwrap_or_else(|| {
            self.tokens = burst;
            now_ms
        });
        let elapsed = now_ms.saturating_sub(last) as f64 / 1000.0;
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.at_ms = Some(now_ms.max(last));
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}
