//! A moq-lite load generator on moq-relay's engine in the client role: one thread per core,
//! GSO/GRO sockets, many connections per thread. Publishers write stamped frames on a timer (or
//! on demand, for benches); subscribers check every frame for latency, loss, duplicates and
//! reordering. The `moq-load` binary is its command line; moq-relay's `benches/fanout.rs` drives
//! it in-process.
//!
//! A run: publishers connect at once; subscribers connect spread over the ramp-up, watch their
//! broadcast's announcement and subscribe to its tracks; publishing starts when the ramp-up is
//! over and lasts the scenario's duration; then a drain window lets the last frames arrive, and
//! everything closes. It always ends by itself.

mod account;
mod histogram;
mod payload;
mod plan;
pub mod procfs;
mod report;
mod scenario;
mod target;
mod worker;

pub use account::{Account, MAX_SEQ, Received, Tally};
pub use histogram::Histogram;
pub use payload::{Clock, STAMP_LEN, Stamp};
pub use plan::Pacing;
pub use report::{Connections, Latency, RelayUsage, Report};
pub use scenario::{MAX_CONNECTIONS, Preset, Scenario, parse_duration};
pub use target::{Target, TargetOptions, Transport};

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use moq_relay::net::{Doorbell, IoMode, SocketOptions};
use moq_relay::quic::tls;
use moq_relay::quic::{ClientRole, Engine, EngineConfig, TransportLimits, client_config};
use plan::Plan;
use procfs::ProcessWatch;
use worker::{Cmd, Worker, WorkerReport};

/// Everything a run needs.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    pub scenario: Scenario,
    pub target: Target,
    /// Where the publishers connect instead of `target` (another relay of a cluster), with
    /// the same transport and version.
    pub publish_target: Option<Target>,
    /// Client threads, one per core; 0 means every core.
    pub threads: usize,
    pub pacing: Pacing,
    /// Abort when no session is up this long after the start.
    pub connect_timeout: Duration,
    /// After publishing stops, how long to wait for the last frames.
    pub drain: Duration,
    pub io: IoMode,
    pub socket: SocketOptions,
    /// Pin client thread `i` to CPU `i`.
    pub pin: bool,
}

impl LoadConfig {
    pub fn new(scenario: Scenario, target: Target) -> Self {
        Self {
            scenario,
            target,
            publish_target: None,
            threads: 0,
            pacing: Pacing::Timed,
            connect_timeout: Duration::from_secs(5),
            drain: Duration::from_secs(5),
            io: IoMode::Auto,
            socket: SocketOptions::default(),
            pin: false,
        }
    }
}

/// Where a run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    RampUp,
    Publishing,
    Draining,
}

/// Live totals over every client thread.
#[derive(Clone, Copy, Debug, Default)]
pub struct Progress {
    pub elapsed: Duration,
    pub sessions_ready: u64,
    pub connect_failures: u64,
    pub sessions_lost: u64,
    pub subscriptions: u64,
    pub subscribe_failures: u64,
    pub frames_published: u64,
    pub bytes_published: u64,
    pub frames_received: u64,
    pub bytes_received: u64,
    pub groups_reset: u64,
    pub max_latency_us: u64,
    pub protocol_errors: u64,
}

/// A running load. Dropping it without [`Load::finish`] leaves the client threads running.
pub struct Load {
    engine: Engine,
    plan: Arc<Plan>,
    commands: Vec<Sender<Cmd>>,
    doorbells: Arc<[Arc<Doorbell>]>,
    reports: Receiver<WorkerReport>,
    publish_started: Option<Instant>,
    publish_stopped: Option<Instant>,
}

/// A random base for the run's hop ids, in [1, 2^52) so that adding a connection index stays
/// below 2^53.
fn random_origin() -> u64 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 8];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    (u64::from_le_bytes(b) & ((1 << 52) - 1)).max(1)
}

impl Load {
    /// Validate, start the client threads and begin dialling.
    pub fn start(config: LoadConfig) -> Result<Self, String> {
        config.scenario.validate()?;
        let threads = EngineConfig {
            threads: config.threads,
            ..Default::default()
        }
        .cores();
        let alpns: Vec<&[u8]> = config.target.alpns.iter().map(|a| a.as_bytes()).collect();
        let tls = tls::client_config(&config.target.verify, &alpns).map_err(|e| e.0)?;
        let limits = TransportLimits {
            idle_timeout: Duration::from_secs(10),
            keep_alive: Some(Duration::from_secs(2)),
            ..Default::default()
        };
        let quic = client_config(tls, &limits).map_err(|e| e.0)?;
        let bind: SocketAddr = match config.target.addr {
            SocketAddr::V4(_) => "0.0.0.0:0",
            SocketAddr::V6(_) => "[::]:0",
        }
        .parse()
        .expect("literal address");
        let origin = random_origin();
        let run_id = format!("{:06x}", origin & 0xff_ffff);
        if let Some(p) = &config.publish_target
            && (p.alpns != config.target.alpns || p.transport != config.target.transport)
        {
            return Err("--publish-url must use the transport and version of --url".into());
        }
        let mut plan = Plan::new(
            config.scenario,
            config.target,
            config.pacing,
            threads,
            origin,
            &run_id,
        );
        plan.publish_target = config.publish_target;
        let plan = Arc::new(plan);
        let (report_tx, reports) = crossbeam_channel::unbounded();
        let (commands, receivers): (Vec<_>, Vec<_>) =
            (0..threads).map(|_| crossbeam_channel::unbounded()).unzip();
        let receivers = std::sync::Mutex::new(receivers.into_iter().map(Some).collect::<Vec<_>>());
        let engine_config = EngineConfig {
            threads,
            io: config.io,
            pin: config.pin,
            socket: config.socket,
            steer: false,
            server: None,
            client: Some(ClientRole {
                bind,
                config: Some(quic),
            }),
        };
        let worker_plan = plan.clone();
        let dials = worker::dials(&plan);
        let engine = Engine::start(engine_config, move |info| {
            let commands = receivers.lock().expect("receivers")[info.core]
                .take()
                .expect("one worker per core");
            let worker = Worker::new(info.core, worker_plan.clone(), commands, report_tx.clone());
            worker::host(worker, dials.clone())
        })
        .map_err(|e| format!("starting the client threads: {e}"))?;
        let doorbells = engine.doorbells().clone();
        Ok(Self {
            engine,
            plan,
            commands,
            doorbells,
            reports,
            publish_started: None,
            publish_stopped: None,
        })
    }

    pub fn scenario(&self) -> &Scenario {
        &self.plan.scenario
    }

    pub fn threads(&self) -> usize {
        self.plan.threads
    }

    /// When publishing starts and stops under timed pacing.
    pub fn timeline(&self) -> (Instant, Instant, Instant) {
        (self.plan.start, self.plan.publish_at, self.plan.stop_at)
    }

    pub fn phase(&self) -> Phase {
        let now = Instant::now();
        match self.plan.pacing {
            Pacing::Timed if now < self.plan.publish_at => Phase::RampUp,
            Pacing::Timed if now < self.plan.stop_at => Phase::Publishing,
            Pacing::Manual if self.publish_stopped.is_none() => Phase::Publishing,
            _ => Phase::Draining,
        }
    }

    pub fn progress(&self) -> Progress {
        let mut p = Progress {
            elapsed: self.plan.start.elapsed(),
            ..Default::default()
        };
        for s in &self.plan.stats {
            let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
            p.sessions_ready += get(&s.sessions_ready);
            p.connect_failures += get(&s.connect_failures);
            p.sessions_lost += get(&s.sessions_lost);
            p.subscriptions += get(&s.subscriptions);
            p.subscribe_failures += get(&s.subscribe_failures);
            p.frames_published += get(&s.frames_published);
            p.bytes_published += get(&s.bytes_published);
            p.frames_received += get(&s.frames_received);
            p.bytes_received += get(&s.bytes_received);
            p.groups_reset += get(&s.groups_reset);
            p.max_latency_us = p.max_latency_us.max(get(&s.max_latency_us));
            p.protocol_errors += get(&s.protocol_errors);
        }
        p
    }

    /// Connections the scenario plans, publishers included.
    pub fn planned_connections(&self) -> usize {
        self.plan.conns.len()
    }

    /// The first connection or session error seen, if any.
    pub fn first_error(&self) -> Option<String> {
        self.plan.first_error.lock().expect("error lock").clone()
    }

    fn tell(&self, cmd: impl Fn() -> Cmd) {
        for (tx, bell) in self.commands.iter().zip(self.doorbells.iter()) {
            if tx.send(cmd()).is_ok() {
                bell.ring();
            }
        }
    }

    /// Manual pacing: write `frames` frames on every track now.
    pub fn burst(&mut self, frames: u64) {
        self.publish_started.get_or_insert_with(Instant::now);
        self.tell(|| Cmd::Burst(frames));
    }

    /// Stop publishing now (timed pacing stops by itself).
    pub fn stop_publishing(&mut self) {
        self.publish_stopped.get_or_insert_with(Instant::now);
        self.tell(|| Cmd::Stop);
    }

    /// After publishing stopped: every established subscription has all it is owed.
    pub fn drained(&self) -> bool {
        self.plan.stats.iter().all(|s| {
            s.drain_checked.load(Ordering::Acquire) && s.incomplete.load(Ordering::Acquire) == 0
        })
    }

    /// Close everything and gather the figures.
    pub fn finish(self) -> Report {
        let progress = self.progress();
        self.engine.shutdown();
        let mut workers = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while workers.len() < self.plan.threads {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.reports.recv_timeout(left) {
                Ok(r) => workers.push(r),
                Err(_) => break,
            }
        }
        let first_error = self.first_error();
        let _ = self.engine.join();
        let publish_window = match self.plan.pacing {
            Pacing::Timed => self.plan.scenario.duration,
            Pacing::Manual => match (self.publish_started, self.publish_stopped) {
                (Some(a), Some(b)) => b.saturating_duration_since(a),
                (Some(a), None) => a.elapsed(),
                _ => Duration::ZERO,
            },
        };
        Report::build(&self.plan, &progress, &workers, publish_window, first_error)
    }
}

/// Run a timed load to the end: check that the relay answers, print progress through
/// `on_progress` about once a second, sample the relay process if `relay_pid` is given, and
/// return the report.
pub fn run(
    config: LoadConfig,
    relay_pid: Option<u32>,
    mut on_progress: impl FnMut(&Load, &Progress),
) -> Result<Report, String> {
    config.scenario.validate()?;
    let mut watch = relay_pid.map(ProcessWatch::start).transpose()?;
    let connect_timeout = config.connect_timeout;
    let drain = config.drain;
    let load = Load::start(LoadConfig {
        pacing: Pacing::Timed,
        ..config
    })?;
    let (start, publish_at, stop_at) = load.timeline();
    let mut cpu_at_publish = None;
    let mut last_progress = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = Instant::now();
        let progress = load.progress();
        if now >= start + connect_timeout && progress.sessions_ready == 0 {
            let why = load
                .first_error()
                .unwrap_or_else(|| "no answer (is a relay listening on that UDP port?)".into());
            let url = load.plan.target.url.clone();
            drop(load.finish());
            return Err(format!(
                "could not reach {url} within {connect_timeout:?}: {why}"
            ));
        }
        if let Some(w) = &mut watch {
            w.sample();
            if cpu_at_publish.is_none() && now >= publish_at {
                cpu_at_publish = procfs::process_cpu(w.pid).map(|c| (c, now));
            }
        }
        if now.duration_since(last_progress) >= Duration::from_secs(1) {
            last_progress = now;
            on_progress(&load, &progress);
        }
        if now >= stop_at && (load.drained() || now >= stop_at + drain) {
            break;
        }
    }
    let progress = load.progress();
    on_progress(&load, &progress);
    let mut report = load.finish();
    if let Some(w) = &mut watch
        && let Some((cpu_total, memory)) = w.finish()
    {
        let cpu_end = procfs::process_cpu(w.pid).unwrap_or_default();
        let cpu_publish = cpu_at_publish.map(|(c, at)| {
            (
                cpu_end.saturating_sub(c),
                Instant::now().saturating_duration_since(at),
            )
        });
        report.attach_relay(w, cpu_total, cpu_publish, memory);
    }
    Ok(report)
}
