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
use moq_relay::lite::session::{Config, Limits, PeerEvent, Session};
use moq_relay::lite::{ErrorCode, Role, TrackInfo, Version};
use moq_relay::quic::{Connection, ConnectionHandle, Ctx, Event, Handler, StreamEvent};
use moq_relay::session::Event as SessionEvent;
use moq_relay::stream::{StreamId, Streams};
use moq_relay::web::{self, WebEvent, WebSession};

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

/// One connection: its session (transport and moq-lite machine), and what its subscriptions
/// stand for in the worker.
struct Conn {
    plan_index: usize,
    /// The transport (raw QUIC or WebTransport) and its moq-lite machine.
    session: moq_relay::session::Session,
    /// Our subscribe id -> index into the worker's subscriptions.
    subs: HashMap<u64, usize>,
    /// Broadcasts whose viewers on this connection have subscribed.
    subscribed: HashSet<usize>,
    /// The relay's subscriptions to our tracks: subscribe id -> index into the worker's pubs.
    serving: HashMap<u64, usize>,
}

impl Conn {
    /// Run `f` on the machine with the streams of `conn`.
    fn io<R>(
        &mut self,
        conn: &mut Connection,
        now: Instant,
        f: impl FnOnce(&mut Session, &mut dyn Streams) -> R,
    ) -> R {
        self.session.io(conn, now, f)
    }
}

pub struct Worker {
    core: usize,
    plan: Arc<Plan>,
    commands: Receiver<Cmd>,
    report: Sender<WorkerReport>,
    cpu_start: Duration,
    dials: VecDeque<(Instant, usize)>,
    /// Connections dialled and not up yet, with their plan index.
    dialled: HashMap<ConnectionHandle, usize>,
    conns: HashMap<ConnectionHandle, Conn>,
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

    // ----- the machine ------------------------------------------------------------------

    /// Run `f` on the machine of `ch` with its streams (our requests and answers: they
    /// report nothing).
    fn wire<R>(
        &mut self,
        ctx: &mut Ctx<'_>,
        ch: ConnectionHandle,
        f: impl FnOnce(&mut Session, &mut dyn Streams) -> R,
    ) -> Option<R> {
        let now = ctx.now;
        let (Some(c), Some(conn)) = (self.conns.get_mut(&ch), ctx.conn(ch)) else {
            return None;
        };
        Some(c.io(conn, now, f))
    }

    /// Run `f` on the session of `ch` with its connection, then act on what it reported.
    fn drive(
        &mut self,
        ctx: &mut Ctx<'_>,
        ch: ConnectionHandle,
        f: impl FnOnce(
            &mut moq_relay::session::Session,
            &mut Connection,
            Instant,
            &mut Vec<SessionEvent>,
        ),
    ) {
        let now = ctx.now;
        let (Some(c), Some(conn)) = (self.conns.get_mut(&ch), ctx.conn(ch)) else {
            return;
        };
        let mut events = Vec::new();
        let errors = c.session.wire().decode_errors();
        f(&mut c.session, conn, now, &mut events);
        let new_errors = c.session.wire().decode_errors() - errors;
        if new_errors > 0 {
            self.stats()
                .protocol_errors
                .fetch_add(new_errors, Ordering::Relaxed);
            self.plan.note_error("protocol error from the relay".into());
        }
        for event in events {
            match event {
                SessionEvent::Peer(event) => self.peer_event(ctx, ch, event),
                SessionEvent::Web(event) => self.web_event(event),
            }
        }
    }

    /// Act on one thing the relay did.
    fn peer_event(&mut self, ctx: &mut Ctx<'_>, ch: ConnectionHandle, event: PeerEvent) {
        match event {
            PeerEvent::Ready => self.ready(ctx, ch),
            PeerEvent::AnnounceInterest {
                request,
                prefix,
                exclude_hop,
            } => self.announce_ours(ctx, ch, request, &prefix, exclude_hop),
            PeerEvent::Announced {
                path, active: true, ..
            } => self.announced(ctx, ch, &path),
            PeerEvent::Subscribe {
                id, path, track, ..
            } => self.serve(ctx, ch, id, &path, &track),
            PeerEvent::Unsubscribe { id } => self.unserve(ch, id),
            PeerEvent::Frame { up, seq, frame } => self.frame(ctx, ch, up, seq, &frame),
            PeerEvent::GroupAbort { up, .. } => self.group_reset(ch, up),
            PeerEvent::UpstreamEnded { up, code } => self.upstream_ended(ch, up, code),
            PeerEvent::InfoWanted { request, .. } => {
                self.wire(ctx, ch, |w, io| {
                    w.answer_info(io, request, Ok(TrackInfo::default()))
                });
            }
            PeerEvent::Fetch { request, .. } => {
                // We keep no past groups to fetch from.
                self.wire(ctx, ch, |w, io| w.answer_fetch(io, request, None));
            }
            PeerEvent::Announced { .. }
            | PeerEvent::Group { .. }
            | PeerEvent::GroupDone { .. }
            | PeerEvent::Info { .. } => {}
        }
    }

    // ----- session life -----------------------------------------------------------------

    fn dial(&mut self, ctx: &mut Ctx<'_>, index: usize) {
        let target = &self.plan.target;
        match ctx.connect(target.addr, &target.server_name, None) {
            Ok(ch) => {
                self.dialled.insert(ch, index);
            }
            Err(e) => {
                self.stats()
                    .connect_failures
                    .fetch_add(1, Ordering::Relaxed);
                self.plan.note_error(format!("connect: {e}"));
            }
        }
    }

    /// The handshake is done: the ALPN says whether the version is fixed (a lite ALPN), left
    /// to SETUP (`moql`), or comes with the WebTransport session (`h3`).
    fn connected(&mut self, ctx: &mut Ctx<'_>, ch: ConnectionHandle) {
        let Some(&index) = self.dialled.get(&ch) else {
            return;
        };
        let alpn = ctx
            .handshake(ch)
            .and_then(|(alpn, _)| alpn)
            .map(|a| String::from_utf8_lossy(&a).into_owned())
            .unwrap_or_default();
        let h3 = alpn.as_bytes() == web::ALPN;
        let version = Version::from_alpn(&alpn);
        let legacy = alpn == Version::LEGACY_ALPN;
        if !h3 && version.is_none() && !legacy {
            self.plan.note_error(format!(
                "the relay chose ALPN `{alpn}`, which is not moq-lite"
            ));
            ctx.close(ch, ErrorCode::UNKNOWN_ALPN.0, b"unsupported ALPN");
            return;
        }
        self.dialled.remove(&ch);
        let target = &self.plan.target;
        let web = h3.then(|| {
            let authority = format!("{}:{}", target.server_name, target.addr.port());
            let protocols = &target.web_protocols;
            WebSession::client(&authority, &target.request_path, protocols, 4 * MAX_MESSAGE)
        });
        let publisher = matches!(self.plan.conns[index], ConnPlan::Publisher { .. });
        let cfg = Config {
            server: false,
            origin: self.plan.origin_of(index),
            setup_versions: target.setup_versions.clone(),
            // On WebTransport the root is the CONNECT path, never a SETUP parameter.
            setup_path: if h3 { None } else { target.setup_path.clone() },
            role: if publisher {
                Role::Publisher
            } else {
                Role::Subscriber
            },
            limits: Limits {
                max_message: MAX_MESSAGE,
                ..Limits::default()
            },
        };
        let conn = Conn {
            plan_index: index,
            session: moq_relay::session::Session::new(cfg, web),
            subs: HashMap::new(),
            subscribed: HashSet::new(),
            serving: HashMap::new(),
        };
        self.conns.insert(ch, conn);
        self.drive(ctx, ch, |s, conn, now, ev| s.start(conn, now, version, ev));
    }

    /// What the WebTransport session did besides its streams (its opening needs nothing here:
    /// the session has started the moq session on it).
    fn web_event(&mut self, event: WebEvent) {
        match event {
            WebEvent::Closed { code, reason } if !self.shutting_down => {
                self.plan.note_error(format!(
                    "the relay closed the WebTransport session: {code} {reason}"
                ));
            }
            WebEvent::Refused { status } => {
                self.plan
                    .note_error(format!("CONNECT refused with status {status}"));
            }
            WebEvent::Failed(e) if !self.shutting_down => {
                self.stats().protocol_errors.fetch_add(1, Ordering::Relaxed);
                self.plan
                    .note_error(format!("HTTP/3 error from the relay: {e}"));
            }
            _ => {}
        }
    }

    /// Setup done: publishers start their tracks, viewers ask for their broadcasts; the
    /// relay's waiting streams can be taken now.
    fn ready(&mut self, ctx: &mut Ctx<'_>, ch: ConnectionHandle) {
        let Some(c) = self.conns.get(&ch) else {
            return;
        };
        let version = c.session.wire().version();
        let index = c.plan_index;
        self.plan
            .negotiated
            .store(version.code(), Ordering::Relaxed);
        self.stats().sessions_ready.fetch_add(1, Ordering::Relaxed);
        match self.plan.conns[index].clone() {
            ConnPlan::Publisher { broadcast } => self.start_tracks(ctx, ch, broadcast),
            ConnPlan::Subscriber { viewers } => {
                let wanted: HashSet<usize> = viewers.into_iter().collect();
                let plan = self.plan.clone();
                for broadcast in wanted {
                    let prefix = &plan.broadcasts[broadcast];
                    self.wire(ctx, ch, |w, io| w.announce_interest(io, prefix));
                }
            }
        }
    }

    /// The relay opened streams: take those the session is ready for.
    fn accept(&mut self, ctx: &mut Ctx<'_>, ch: ConnectionHandle) {
        self.drive(ctx, ch, |s, conn, now, ev| s.accept(conn, now, ev));
    }

    fn read(&mut self, ctx: &mut Ctx<'_>, ch: ConnectionHandle, id: StreamId) {
        self.drive(ctx, ch, |s, conn, now, ev| s.read(conn, now, id, ev));
    }

    fn lost(&mut self, ch: ConnectionHandle, reason: String) {
        if self.dialled.remove(&ch).is_some() {
            self.stats()
                .connect_failures
                .fetch_add(1, Ordering::Relaxed);
            self.plan.note_error(format!("connection failed: {reason}"));
            return;
        }
        let Some(c) = self.conns.remove(&ch) else {
            return;
        };
        if !self.shutting_down {
            self.stats().sessions_lost.fetch_add(1, Ordering::Relaxed);
            self.plan.note_error(format!("session lost: {reason}"));
        }
        for &sub in c.subs.values() {
            self.subs[sub].ended = true;
        }
        self.publisher_lost(ch);
    }

    fn schedule(&self, ctx: &mut Ctx<'_>) {
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
            ctx.wake_at(t);
        }
    }

    fn tick(&mut self, ctx: &mut Ctx<'_>) {
        while let Some(&(at, index)) = self.dials.front() {
            if at > ctx.now {
                break;
            }
            self.dials.pop_front();
            self.dial(ctx, index);
        }
        self.publish_due(ctx);
        self.check_drain(ctx);
        self.schedule(ctx);
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

impl Handler for Worker {
    fn on_start(&mut self, ctx: &mut Ctx<'_>) {
        self.tick(ctx);
    }

    fn on_event(&mut self, ctx: &mut Ctx<'_>, ch: ConnectionHandle, event: Event) {
        match event {
            Event::Connected => self.connected(ctx, ch),
            Event::ConnectionLost { reason } => self.lost(ch, reason.to_string()),
            Event::Stream(StreamEvent::Opened { .. }) => self.accept(ctx, ch),
            Event::Stream(StreamEvent::Readable { id }) => self.read(ctx, ch, id),
            Event::Stream(StreamEvent::Writable { id }) => {
                if let (Some(c), Some(conn)) = (self.conns.get_mut(&ch), ctx.conn(ch)) {
                    c.session.writable(conn, id);
                }
            }
            Event::Stream(StreamEvent::Stopped { id, .. }) => {
                self.wire(ctx, ch, |w, io| w.stopped(io, id));
            }
            _ => {}
        }
    }

    fn on_wake(&mut self, ctx: &mut Ctx<'_>) {
        while let Ok(cmd) = self.commands.try_recv() {
            match cmd {
                Cmd::Burst(n) if !self.stopped => {
                    for p in 0..self.pubs.len() {
                        for _ in 0..n {
                            self.emit(ctx, p);
                        }
                    }
                }
                Cmd::Burst(_) => {}
                Cmd::Stop => self.stop_publishing(ctx),
            }
        }
        self.tick(ctx);
    }

    fn on_timer(&mut self, ctx: &mut Ctx<'_>) {
        self.tick(ctx);
    }

    fn on_shutdown(&mut self, ctx: &mut Ctx<'_>) {
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
        let open = self.conns.keys().chain(self.dialled.keys()).copied();
        for ch in open.collect::<Vec<_>>() {
            ctx.close(ch, ErrorCode::CANCEL.0, b"load run over");
        }
    }
}
