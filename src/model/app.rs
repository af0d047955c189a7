//! The seam between the sessions of one core and what runs on them (the relay's routing, the
//! load generator): [`Peers`] is what an application may ask of the sessions, [`Application`]
//! is what the session host tells it. Both speak only the model's vocabulary, so an
//! application never learns which wire protocol, transport or QUIC connection a peer rides on.

use std::sync::Arc;
use std::time::Instant;

use super::{
    Access, Delivery, ErrorCode, Frame, Group, InfoAsk, Notice, PeerEvent, PeerId, RequestId,
    TrackInfo,
};

/// What the sessions of one core hold, summed over them, for operators and leak tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionCounts {
    /// Streams read, and streams with writes waiting for flow control.
    pub streams: usize,
    pub subscriptions: usize,
    pub upstream_subscriptions: usize,
    pub announce_requests: usize,
}

/// The sessions of one core, each named by its [`PeerId`]. Calls on a peer that is gone do
/// nothing (and return what says so): a session may be lost between an event and its answer.
pub trait Peers {
    /// The time of the event being handled.
    fn now(&self) -> Instant;
    /// Call [`Application::on_timer`] at `at` (or earlier).
    fn wake_at(&mut self, at: Instant);
    /// Dial the host's dial number `dial` (its configuration says where and how). The peer
    /// is reported ready with [`PeerEvent::Ready`], or lost.
    fn dial(&mut self, dial: usize) -> Result<PeerId, String>;
    /// Close the peer's connection.
    fn close(&mut self, peer: PeerId, code: ErrorCode, reason: &str);

    /// Whether the peer dialled us.
    fn is_server(&self, peer: PeerId) -> bool;
    /// The wire version the session settled on (its code on the wire), once set up.
    fn version(&self, peer: PeerId) -> Option<u64>;
    /// The broadcast path the session's paths are relative to, absolute.
    fn root(&self, peer: PeerId) -> Option<&str>;
    /// What the peer may publish and subscribe to; `None` until it is admitted (or gone).
    fn access(&self, peer: PeerId) -> Option<&Access>;
    /// Summed over every session of the core.
    fn counts(&self) -> SessionCounts;

    /// Ask the peer which broadcasts under `prefix` (absolute) it publishes, now and as they
    /// change: [`PeerEvent::Announced`] for each. False when it cannot be asked.
    fn announce_interest(&mut self, peer: PeerId, prefix: &str) -> bool;
    /// Subscribe to a track of the peer: our subscription id, whose groups come as events.
    fn subscribe(&mut self, peer: PeerId, path: &str, track: &str) -> Option<u64>;
    fn unsubscribe(&mut self, peer: PeerId, up: u64);
    /// Ask the peer for a track's info; [`PeerEvent::Info`] answers it when `Asked`.
    fn ask_info(&mut self, peer: PeerId, path: &Arc<str>, track: &Arc<str>) -> InfoAsk;

    /// Answer [`PeerEvent::AnnounceInterest`] with the broadcasts active now (the session
    /// leaves out those outside the prefix and those that passed the excluded hop).
    fn announce_start<'a>(
        &mut self,
        peer: PeerId,
        request: RequestId,
        prefix: &str,
        exclude_hop: u64,
        active: &mut dyn Iterator<Item = (&'a Arc<str>, &'a [u64])>,
    );
    /// A broadcast became active or ended: tell the peer's announce requests that cover it.
    fn announce(&mut self, peer: PeerId, path: &Arc<str>, hops: &[u64], active: bool);
    /// Accept [`PeerEvent::Subscribe`]; false when the session could not (no stream).
    fn accept_subscribe(&mut self, peer: PeerId, id: u64) -> bool;
    fn refuse_subscribe(&mut self, peer: PeerId, id: u64, code: ErrorCode);
    fn answer_info(&mut self, peer: PeerId, request: RequestId, info: Result<TrackInfo, ErrorCode>);
    /// Answer [`PeerEvent::Fetch`] with the group's frames, or `None`: not found.
    fn answer_fetch(&mut self, peer: PeerId, request: RequestId, frames: Option<&[Arc<Frame>]>);
    /// Refuse a request (a group stream not wanted) with `code`.
    fn refuse(&mut self, peer: PeerId, request: RequestId, code: ErrorCode);

    /// Send the peer's subscription `sub` what it has not had of `group`.
    fn deliver(&mut self, peer: PeerId, sub: u64, group: &Group) -> Delivery;
    fn abort_group(&mut self, peer: PeerId, sub: u64, seq: u64, code: ErrorCode);
    /// The track of subscription `sub` ended; `latest` is its last group, if any.
    fn end_subscription(&mut self, peer: PeerId, sub: u64, code: ErrorCode, latest: Option<u64>);
    /// The track of `sub` starts over (a new publisher): what was sent of it is forgotten.
    fn restart(&mut self, peer: PeerId, sub: u64);
}

/// What runs on the sessions of one core. Every call comes with the sessions, to answer and
/// ask through; none may block.
pub trait Application {
    /// The core's loop has started.
    fn on_start(&mut self, peers: &mut dyn Peers) {
        let _ = peers;
    }
    /// A connection became a session with `peer` (its setup may still be under way).
    fn on_session(&mut self, peers: &mut dyn Peers, peer: PeerId) {
        let _ = (peers, peer);
    }
    /// The peer did something.
    fn on_event(&mut self, peers: &mut dyn Peers, peer: PeerId, event: PeerEvent);
    /// The transport under the peer's session did something worth hearing of.
    fn on_notice(&mut self, peer: PeerId, notice: Notice) {
        let _ = (peer, notice);
    }
    /// The peer is gone (or a dial never became a session: `forgotten` is then empty).
    /// `forgotten` is what must be forgotten of it: announcements withdrawn
    /// (`Announced { active: false }`), the peer's subscriptions over (`Unsubscribe`), answers
    /// that will never come (`Info` with an error).
    fn on_lost(
        &mut self,
        peers: &mut dyn Peers,
        peer: PeerId,
        reason: &str,
        forgotten: Vec<PeerEvent>,
    );
    /// The time asked for with [`Peers::wake_at`] has come.
    fn on_timer(&mut self, peers: &mut dyn Peers) {
        let _ = peers;
    }
    /// Someone rang the core's doorbell (a cross-core message, a command).
    fn on_wake(&mut self, peers: &mut dyn Peers) {
        let _ = peers;
    }
    /// The core is stopping; the host closes every session after this.
    fn on_shutdown(&mut self, peers: &mut dyn Peers) {
        let _ = peers;
    }
}
