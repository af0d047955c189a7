//! What a wire session reports upward, and what comes back of asking it: the same for every
//! wire protocol, so the relay above them is written once.

use std::sync::Arc;

use super::{ErrorCode, Frame, TrackInfo};

/// A request of the peer that waits for an answer (an announce request, a TRACK or FETCH
/// request, a group stream that may be refused). Opaque above the session; unique within it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RequestId(pub u64);

/// What the peer did that the layer above must act on. Paths are absolute (the session's root
/// is already joined in). Answers go back through [`super::Peers`].
#[derive(Debug, PartialEq)]
pub enum PeerEvent {
    /// The session is set up: requests may flow (ask what the peer publishes with
    /// [`super::Peers::announce_interest`]).
    Ready,
    /// The peer wants to hear which broadcasts under `prefix` are active: answer with
    /// [`super::Peers::announce_start`].
    AnnounceInterest {
        request: RequestId,
        prefix: String,
        exclude_hop: u64,
    },
    /// The peer publishes (or stopped publishing) a broadcast.
    Announced {
        path: Arc<str>,
        active: bool,
        hops: Vec<u64>,
    },
    /// The peer subscribes: answer with [`super::Peers::accept_subscribe`] or
    /// [`super::Peers::refuse_subscribe`].
    Subscribe {
        id: u64,
        path: String,
        track: String,
        /// Deliver from this group on (the cache's groups from it), else the latest group.
        start: Option<u64>,
    },
    /// A subscription of the peer is over: it left, or its stream failed.
    Unsubscribe { id: u64 },
    /// A group of our subscription `up` begins on `stream`; [`super::Peers::refuse`] it if
    /// it is not wanted (too old for the cache).
    Group {
        up: u64,
        seq: u64,
        stream: RequestId,
    },
    /// A whole frame of group `seq` of our subscription `up`, payload as received.
    Frame { up: u64, seq: u64, frame: Frame },
    /// The publisher finished group `seq`.
    GroupDone { up: u64, seq: u64 },
    /// The publisher gave up group `seq`.
    GroupAbort { up: u64, seq: u64, code: ErrorCode },
    /// Our subscription `up` is over: finished by the peer (CANCEL) or reset (DROPPED).
    UpstreamEnded { up: u64, code: ErrorCode },
    /// The peer asks for a track's TRACK_INFO: answer with [`super::Peers::answer_info`].
    InfoWanted {
        request: RequestId,
        path: Arc<str>,
        track: Arc<str>,
    },
    /// The answer to our [`super::Peers::ask_info`].
    Info {
        path: Arc<str>,
        track: Arc<str>,
        result: Result<TrackInfo, ErrorCode>,
    },
    /// The peer fetches one group: answer with [`super::Peers::answer_fetch`].
    Fetch {
        request: RequestId,
        path: String,
        track: String,
        group: u64,
    },
}

/// What the transport under a session did that an application may want to hear of (nothing
/// for the relay to act on: the session goes on, or is lost and reported so).
#[derive(Debug, PartialEq, Eq)]
pub enum Notice {
    /// The peer closed the session (a WebTransport CLOSE_SESSION capsule).
    Closed { code: u64, reason: String },
    /// The server refused our session request (a CONNECT status other than 2xx).
    Refused { status: u16 },
    /// The transport under the session failed (an HTTP/3 error).
    Failed { error: String },
    /// Streams of the peer that could not be decoded since the last notice; each was refused,
    /// or the session closed.
    DecodeErrors { count: u64 },
}

/// What became of [`super::Peers::ask_info`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InfoAsk {
    /// The request is out; a [`PeerEvent::Info`] will answer it.
    Asked,
    /// The peer cannot be asked: its version has no TRACK_INFO, or the track is outside the
    /// session's root. Its defaults apply.
    Unsupported,
    /// No stream could be opened (or there is no such session).
    Failed,
}

/// What one [`super::Peers::deliver`] did, for the data-path counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Delivery {
    pub frames: u64,
    /// Backlogged groups reset to make room.
    pub resets: u64,
}
