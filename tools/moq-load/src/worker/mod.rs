//! One core of the load generator: a quinn-proto [`Handler`] that dials its share of the run's
//! connections, each driving one moq-lite [`Session`] machine, as a publisher that writes its
//! tracks on a timer (`publish.rs`) or as subscribers that announce-watch their broadcasts and
//! check every frame that arrives (`subscribe.rs`).
//!
//! Everything here is `!Send` and lives on its core; the only shared state is the [`Plan`]
//! (atomics) and the report sent at shutdown.

mod publish;
mod subscribe;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::account::Tally;
use super::histogram::Histogram;
use super::plan::{ConnPlan, Pacing, Plan};
use super::procfs;
use moq_relay::lite::Role;
use moq_relay::model::{Application, Notice, PeerEvent, PeerId, Peers, SessionLimits, TrackInfo};
use moq_relay::session::{Dial, DialBook, Host, HostConfig};

use publish::PubTrack;
use subscribe::SubRecord;

/// Largest control message we accept from the relay: a relay's ANNOUNCE_INIT may list many.
const MAX_MESSAGE: usize = 64 * 1024;
/// How often the drain phase checks whether every subscription has all it is owed.
const DRAIN_TICK: Duration = Duration::from_millis(50);

/// Commands from the controlling thread.
pub enum Cmd {
    /// Write this many frames on every track now (manual pacing).
    Burst(u64),
    /// Stop publishing: finish the open groups.
    Stop,
}

/// What a core hands back at shutdown.
#[derive(Debug, Default)]
pub struct WorkerReport {
    pub tally: Tally,
    pub latency: Histogram,
    pub cpu: Duration,
    pub subscriptions: u64,
    /// Viewers whose subscriptions were never sent (their session never got that far).
    pub viewers_unsubscribed: u64,
    pub publisher_groups_dropped: u64,
}

/// One connection: its place in the plan, and what its subscriptions stand for in the
/// worker.
struct Conn {
    plan_index: usize,
    /// Our subscribe id -> index into the worker's subscriptions.
    subs: HashMap<u64, usize>,
    /// Broadcasts whose viewers on this connection have subscribed.
    subscribed: HashSet<usize>,
    /// The relay's subscriptions to our tracks: subscribe id -> index into the worker's pubs.
    serving: HashMap<u64, usize>,
}

pub struct Worker {
    core: usize,
    plan: Arc<Plan>,
    commands: Receiver<Cmd>,
    report: Sender<WorkerReport>,
    cpu_start: Duration,
    dials: VecDeque<(Instant, usize)>,
    /// Connections dialled and not up yet, with their plan index.
    dialled: HashMap<PeerId, usize>,
    conns: HashMap<PeerId, Conn>,
    subs: Vec<SubRecord>,
    pubs: Vec<PubTrack>,
    latency: Histogram,
    stopped: bool,
    shutting_down: bool,
    next_drain_check: Option<Instant>,
    publisher_groups_dropped: u64,
}

impl Worker {
    pub fn new(
        core: usize,
        plan: Arc<Plan>,
        commands: Receiver<Cmd>,
        report: Sender<WorkerReport>,
    ) -> Self {
        procfs::name_this_thread(&format!("moq-load-{core}"));
        let cpu_start = procfs::this_thread_cpu();
        let mut dials: Vec<(Instant, usize)> = (0..plan.conns.len())
            .filter(|i| i % plan.threads == core)
            .map(|i| (plan.start + plan.dial_after[i], i))
            .collect();
        dials.sort();
        Self {
            core,
            plan,
            commands,
            report,
            cpu_start,
            dials: dials.into(),
            dialled: HashMap::new(),
            conns: HashMap::new(),
            subs: Vec::new(),
            pubs: Vec::new(),
            latency: Histogram::default(),
            stopped: false,
            shutting_down: false,
            next_drain_check: None,
            publisher_groups_dropped: 0,
        }
    }

    fn stats(&self) -> &super::plan::WorkerStats {
        &self.plan.stats[self.core]
    }

    /// Act on one thing the relay did.
    fn peer_event(&mut self, peers: &mut dyn Peers, peer: PeerId, event: PeerEvent) {
        match event {
            PeerEvent::Ready => self.ready(peers, peer),
            PeerEvent::AnnounceInterest {
                request,
                prefix,
                exclude_hop,
            } => self.announce_ours(peers, peer, request, &prefix, exclude_hop),
            PeerEvent::Announced {
                path, active: true, ..
            } => self.announced(peers, peer, &path),
            PeerEvent::Subscribe {
                id, path, track, ..
            } => self.serve(peers, peer, id, &path, &track),
            PeerEvent::Unsubscribe { id } => self.unserve(peer, id),
            PeerEvent::Frame { up, seq, frame } => self.frame(peers, peer, up, seq, &frame),
            PeerEvent::GroupAbort { up, .. } => self.group_reset(peer, up),
            PeerEvent::UpstreamEnded { up, code } => self.upstream_ended(peer, up, code),
            PeerEvent::InfoWanted { request, .. } => {
                peers.answer_info(peer, request, Ok(TrackInfo::default()));
            }
            // We keep no past groups to fetch from.
            PeerEvent::Fetch { request, .. } => peers.answer_fetch(peer, request, None),
            PeerEvent::Announced { .. }
            | PeerEvent::Group { .. }
            | PeerEvent::GroupDone { .. }
            | PeerEvent::Info { .. } => {}
        }
    }

    // ----- session life -----------------------------------------------------------------

    /// Dial connection `index` of the plan (the host's dial of the same number).
    fn dial(&mut self, peers: &mut dyn Peers, index: usize) {
        match peers.dial(index) {
            Ok(peer) => {
                self.dialled.insert(peer, index);
            }
            Err(e) => {
                self.stats()
                    .connect_failures
                    .fetch_add(1, Ordering::Relaxed);
                self.plan.note_error(e);
            }
        }
    }

    /// Setup done: publishers start their tracks, viewers ask for their broadcasts.
    fn ready(&mut self, peers: &mut dyn Peers, peer: PeerId) {
        let Some(c) = self.conns.get(&peer) else {
            return;
        };
        let index = c.plan_index;
        if let Some(version) = peers.version(peer) {
            self.plan.negotiated.store(version, Ordering::Relaxed);
        }
        self.stats().sessions_ready.fetch_add(1, Ordering::Relaxed);
        match self.plan.conns[index].clone() {
            ConnPlan::Publisher { broadcast } => self.start_tracks(peers, peer, broadcast),
            ConnPlan::Subscriber { viewers } => {
                let wanted: HashSet<usize> = viewers.into_iter().collect();
                for broadcast in wanted {
                    peers.announce_interest(peer, &self.plan.broadcasts[broadcast]);
                }
            }
        }
    }

    fn schedule(&self, peers: &mut dyn Peers) {
        let mut next: Option<Instant> = self.dials.front().map(|d| d.0);
        let mut earliest = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        if self.plan.pacing == Pacing::Timed && !self.stopped {
            earliest(self.plan.stop_at);
            for p in self.pubs.iter().filter(|p| p.live) {
                earliest(p.next_due);
            }
        }
        if let Some(t) = self.next_drain_check {
            earliest(t);
        }
        if let Some(t) = next {
            peers.wake_at(t);
        }
    }

    fn tick(&mut self, peers: &mut dyn Peers) {
        while let Some(&(at, index)) = self.dials.front() {
            if at > peers.now() {
                break;
            }
            self.dials.pop_front();
            self.dial(peers, index);
        }
        self.publish_due(peers);
        self.check_drain(peers);
        self.schedule(peers);
    }

    /// Viewers that never got to subscribe: on sessions that never got the announcement, on
    /// connections that never came up, and on connections not even dialled.
    fn viewers_unsubscribed(&self) -> u64 {
        let viewers = |index: usize| match &self.plan.conns[index] {
            ConnPlan::Subscriber { viewers } => viewers.as_slice(),
            ConnPlan::Publisher { .. } => &[],
        };
        let mut n = 0;
        for c in self.conns.values() {
            n += viewers(c.plan_index)
                .iter()
                .filter(|b| !c.subscribed.contains(b))
                .count();
        }
        let waiting = self.dialled.values().copied();
        for index in waiting.chain(self.dials.iter().map(|&(_, i)| i)) {
            n += viewers(index).len();
        }
        n as u64
    }
}

impl Application for Worker {
    fn on_start(&mut self, peers: &mut dyn Peers) {
        self.tick(peers);
    }

    fn on_session(&mut self, _peers: &mut dyn Peers, peer: PeerId) {
        if let Some(plan_index) = self.dialled.remove(&peer) {
            let conn = Conn {
                plan_index,
                subs: HashMap::new(),
                subscribed: HashSet::new(),
                serving: HashMap::new(),
            };
            self.conns.insert(peer, conn);
        }
    }

    fn on_event(&mut self, peers: &mut dyn Peers, peer: PeerId, event: PeerEvent) {
        self.peer_event(peers, peer, event);
    }

    /// What the transport did besides the session's streams.
    fn on_notice(&mut self, _peer: PeerId, notice: Notice) {
        match notice {
            Notice::DecodeErrors { count } => {
                self.stats()
                    .protocol_errors
                    .fetch_add(count, Ordering::Relaxed);
                self.plan.note_error("protocol error from the relay".into());
            }
            Notice::Closed { code, reason } if !self.shutting_down => {
                self.plan.note_error(format!(
                    "the relay closed the WebTransport session: {code} {reason}"
                ));
            }
            Notice::Refused { status } => {
                self.plan
                    .note_error(format!("CONNECT refused with status {status}"));
            }
            Notice::Failed { error } if !self.shutting_down => {
                self.stats().protocol_errors.fetch_add(1, Ordering::Relaxed);
                self.plan
                    .note_error(format!("HTTP/3 error from the relay: {error}"));
            }
            _ => {}
        }
    }

    fn on_lost(&mut self, _peers: &mut dyn Peers, peer: PeerId, reason: &str, _: Vec<PeerEvent>) {
        if self.dialled.remove(&peer).is_some() {
            self.stats()
                .connect_failures
                .fetch_add(1, Ordering::Relaxed);
            self.plan.note_error(format!("connection failed: {reason}"));
            return;
        }
        let Some(c) = self.conns.remove(&peer) else {
            return;
        };
        if !self.shutting_down {
            self.stats().sessions_lost.fetch_add(1, Ordering::Relaxed);
            self.plan.note_error(format!("session lost: {reason}"));
        }
        for &sub in c.subs.values() {
            self.subs[sub].ended = true;
        }
        self.publisher_lost(peer);
    }

    fn on_wake(&mut self, peers: &mut dyn Peers) {
        while let Ok(cmd) = self.commands.try_recv() {
            match cmd {
                Cmd::Burst(n) if !self.stopped => {
                    for p in 0..self.pubs.len() {
                        for _ in 0..n {
                            self.emit(peers, p);
                        }
                    }
                }
                Cmd::Burst(_) => {}
                Cmd::Stop => self.stop_publishing(peers),
            }
        }
        self.tick(peers);
    }

    fn on_timer(&mut self, peers: &mut dyn Peers) {
        self.tick(peers);
    }

    /// The report goes back; the host closes the sessions after this.
    fn on_shutdown(&mut self, _peers: &mut dyn Peers) {
        self.shutting_down = true;
        let mut report = WorkerReport {
            latency: std::mem::take(&mut self.latency),
            cpu: procfs::this_thread_cpu().saturating_sub(self.cpu_start),
            subscriptions: self.subs.len() as u64,
            viewers_unsubscribed: self.viewers_unsubscribed(),
            publisher_groups_dropped: self.publisher_groups_dropped,
            ..Default::default()
        };
        for s in &self.subs {
            let published = self
                .plan
                .track(s.broadcast, s.track)
                .published
                .load(Ordering::Acquire);
            report.tally += s.account.finish(published);
        }
        let _ = self.report.send(report);
    }
}

/// The session host of one load core: the worker, over one dial per connection of the plan
/// (dial `i` is connection `i`, whichever core dials it).
pub fn host(worker: Worker, dials: Arc<DialBook>) -> Host<Worker> {
    let cfg = HostConfig {
        core: worker.core,
        origin: worker.plan.origin,
        limits: SessionLimits {
            max_message: MAX_MESSAGE,
            ..SessionLimits::default()
        },
        dials,
        gate: None,
    };
    Host::new(cfg, worker)
}

/// What each connection of `plan` dials: the target, with the connection's own hop id and the
/// role of its half of the run.
pub fn dials(plan: &Plan) -> Arc<DialBook> {
    let dials = (0..plan.conns.len())
        .map(|i| {
            let t = match (&plan.conns[i], &plan.publish_target) {
                (ConnPlan::Publisher { .. }, Some(p)) => p,
                _ => &plan.target,
            };
            Dial {
                addr: t.addr,
                server_name: t.server_name.clone(),
                url: t.request_path.clone(),
                setup_path: t.setup_path.clone(),
                setup_versions: t.setup_versions.clone(),
                web_protocols: t.web_protocols.clone(),
                role: match plan.conns[i] {
                    ConnPlan::Publisher { .. } => Role::Publisher,
                    ConnPlan::Subscriber { .. } => Role::Subscriber,
                },
                origin: Some(plan.origin_of(i)),
                quic: None,
            }
        })
        .collect::<Vec<_>>();
    Arc::new(DialBook::from(dials))
}
