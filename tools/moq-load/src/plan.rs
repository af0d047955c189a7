//! What every core of a load run shares: the scenario laid out as broadcasts, tracks and
//! connections, the run's timeline, and counters the cores bump as they go (read live by the
//! progress line). Per-core state stays on its core.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::payload::{Clock, STAMP_LEN, filler};
use super::scenario::Scenario;
use super::target::Target;

/// How publishers decide when to write frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pacing {
    /// At the scenario's frame rate, from the end of the ramp-up for its duration.
    Timed,
    /// Only when asked ([`super::Load::burst`]), as fast as flow control allows: for benches.
    Manual,
}

/// One published track, as every core sees it.
#[derive(Debug, Default)]
pub struct TrackShared {
    /// Frames written so far; final once `done`.
    pub published: AtomicU64,
    /// The latest group with a frame, plus one (0: nothing yet).
    group_plus_one: AtomicU64,
    /// The publisher will write no more.
    pub done: AtomicBool,
}

impl TrackShared {
    pub fn latest_group(&self) -> Option<u64> {
        self.group_plus_one.load(Ordering::Acquire).checked_sub(1)
    }

    pub(crate) fn wrote(&self, seq: u64, group: u64) {
        self.group_plus_one.store(group + 1, Ordering::Release);
        self.published.store(seq + 1, Ordering::Release);
    }
}

/// Who a connection is.
#[derive(Clone, Debug)]
pub enum ConnPlan {
    /// Publishes every track of broadcast `broadcast`.
    Publisher { broadcast: usize },
    /// Carries these viewers; each entry is the broadcast one viewer watches.
    Subscriber { viewers: Vec<usize> },
}

/// Counters one core keeps, readable from any thread.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct WorkerStats {
    pub frames_published: AtomicU64,
    pub bytes_published: AtomicU64,
    /// Distinct frames received intact, catch-up included.
    pub frames_received: AtomicU64,
    pub bytes_received: AtomicU64,
    pub sessions_ready: AtomicU64,
    pub connect_failures: AtomicU64,
    /// Sessions that ended before the run did.
    pub sessions_lost: AtomicU64,
    pub subscriptions: AtomicU64,
    /// Subscriptions the relay refused or ended before the run did.
    pub subscribe_failures: AtomicU64,
    pub groups_reset: AtomicU64,
    pub max_latency_us: AtomicU64,
    /// Streams or sessions that failed to decode.
    pub protocol_errors: AtomicU64,
    /// After publishing stopped: subscriptions still owed frames (valid once `drain_checked`).
    pub incomplete: AtomicU64,
    pub drain_checked: AtomicBool,
}

/// The whole run, shared read-only (apart from atomics) by every core.
pub struct Plan {
    pub scenario: Scenario,
    pub target: Target,
    /// Where publishers connect, when not `target`.
    pub publish_target: Option<Target>,
    pub pacing: Pacing,
    pub threads: usize,
    pub clock: Clock,
    pub start: Instant,
    /// Publishing starts (timed pacing).
    pub publish_at: Instant,
    /// Publishing stops (timed pacing).
    pub stop_at: Instant,
    /// Hop ids for SETUP, ANNOUNCE_OK and Exclude Hop are `origin + connection index`: each
    /// session is its own node, as separate clients would be, so a relay's loop avoidance does
    /// not hide one session's broadcast from another. Non-zero and below 2^53.
    pub origin: u64,
    /// Broadcast paths as sent on the wire (relative to the session root).
    pub broadcasts: Vec<String>,
    pub track_names: Vec<String>,
    /// Indexed `broadcast * tracks + track`.
    pub tracks: Vec<TrackShared>,
    pub conns: Vec<ConnPlan>,
    /// When each connection dials, after `start`.
    pub dial_after: Vec<Duration>,
    pub filler: Bytes,
    pub stats: Vec<WorkerStats>,
    /// The first connection or session error, for the user.
    pub first_error: Mutex<Option<String>>,
    /// The wire code of the version the last session to come up speaks.
    pub negotiated: AtomicU64,
}

impl Plan {
    pub fn new(
        scenario: Scenario,
        target: Target,
        pacing: Pacing,
        threads: usize,
        origin: u64,
        run_id: &str,
    ) -> Self {
        let start = Instant::now();
        let publish_at = start + scenario.ramp_up;
        let stop_at = publish_at + scenario.duration;
        let prefix = match target.root_in_band() {
            true => String::new(),
            false => target.root.clone(),
        };
        let broadcasts: Vec<String> = (0..scenario.broadcasts)
            .map(|b| {
                let name = format!("moq-load/{run_id}/{b}");
                match prefix.is_empty() {
                    true => name,
                    false => format!("{prefix}/{name}"),
                }
            })
            .collect();
        let track_names = (0..scenario.tracks).map(|t| format!("track{t}")).collect();
        let tracks = (0..scenario.tracks_total())
            .map(|_| TrackShared::default())
            .collect();

        // Publishers first, dialled at once; then subscribers spread over the ramp-up.
        let mut conns: Vec<ConnPlan> = (0..scenario.broadcasts)
            .map(|broadcast| ConnPlan::Publisher { broadcast })
            .collect();
        let mut dial_after = vec![Duration::ZERO; conns.len()];
        let viewers: Vec<usize> = (0..scenario.viewers())
            .map(|v| v % scenario.broadcasts)
            .collect();
        let subscriber_conns: Vec<Vec<usize>> = match scenario.connections_per_thread {
            None => viewers.into_iter().map(|b| vec![b]).collect(),
            Some(per_thread) => {
                let n = (per_thread * threads).min(viewers.len()).max(1);
                let mut packed = vec![Vec::new(); n];
                for (i, b) in viewers.into_iter().enumerate() {
                    packed[i % n].push(b);
                }
                packed
            }
        };
        let count = subscriber_conns.len();
        // Leave the last tenth of the ramp for the final subscriptions to settle.
        let spread = scenario.ramp_up.mul_f64(0.9);
        for (i, viewers) in subscriber_conns.into_iter().enumerate() {
            conns.push(ConnPlan::Subscriber { viewers });
            dial_after.push(spread.mul_f64(i as f64 / count as f64));
        }
        let filler = filler(scenario.frame_size.saturating_sub(STAMP_LEN));
        Self {
            scenario,
            target,
            publish_target: None,
            pacing,
            threads,
            clock: Clock::new(),
            start,
            publish_at,
            stop_at,
            origin,
            broadcasts,
            track_names,
            tracks,
            conns,
            dial_after,
            filler,
            stats: (0..threads).map(|_| WorkerStats::default()).collect(),
            first_error: Mutex::new(None),
            negotiated: AtomicU64::new(0),
        }
    }

    /// The hop id of connection `index`.
    pub fn origin_of(&self, index: usize) -> u64 {
        self.origin + index as u64
    }

    pub fn track(&self, broadcast: usize, track: usize) -> &TrackShared {
        &self.tracks[broadcast * self.scenario.tracks + track]
    }

    pub fn note_error(&self, e: String) {
        let mut first = self.first_error.lock().expect("error lock");
        if first.is_none() {
            *first = Some(e);
        }
    }

    pub fn publishers(&self) -> usize {
        self.scenario.broadcasts
    }

    pub fn subscriber_conns(&self) -> usize {
        self.conns.len() - self.scenario.broadcasts
    }
}
