//! The figures of a finished run, for people (`summary`) and machines (serde).

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use super::Progress;
use super::account::Tally;
use super::histogram::Histogram;
use super::plan::Plan;
use super::procfs::{Memory, ProcessWatch};
use super::scenario::Scenario;
use super::target::Transport;
use super::worker::WorkerReport;

#[derive(Clone, Debug, Default, Serialize)]
pub struct Connections {
    pub planned: u64,
    pub publishers: u64,
    pub subscribers: u64,
    /// Sessions that completed setup.
    pub ready: u64,
    pub connect_failures: u64,
    /// Sessions that ended before the run did.
    pub sessions_lost: u64,
}

/// End-to-end latency of live frames, publish to receive, in microseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Latency {
    pub samples: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
    pub mean: u64,
}

/// What the relay process cost, read from /proc.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RelayUsage {
    pub pid: u32,
    /// User + system CPU over the whole run (handshakes included).
    pub cpu_seconds: f64,
    /// CPU from the start of publishing to the end of the drain.
    pub cpu_seconds_publishing: Option<f64>,
    /// Wall time of that window.
    pub publishing_window_seconds: Option<f64>,
    /// Publishing CPU (or whole-run CPU) per 10^9 delivered payload bytes.
    pub cpu_seconds_per_gb: Option<f64>,
    pub rss_start_kb: u64,
    /// Highest RSS sampled during the run (every 100 ms).
    pub rss_peak_kb: u64,
    pub rss_end_kb: u64,
    /// The kernel's peak since the relay started (may predate this run).
    pub vm_hwm_kb: u64,
    /// `(rss_peak - rss_start) / subscribers`.
    pub rss_per_subscriber_kb: f64,
    /// `(rss_peak - rss_start) / sessions` (publishers and subscriber connections).
    pub rss_per_session_kb: f64,
    /// Publishing CPU per delivered frame, in microseconds: the figure that matters for small
    /// frames, where per-packet work dominates.
    pub cpu_us_per_frame: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub url: String,
    pub transport: Transport,
    pub alpns: Vec<String>,
    /// The moq-lite version the sessions spoke, as `lite-0N`.
    pub version: Option<String>,
    pub scenario: Scenario,
    pub threads: usize,
    /// How long publishers published.
    pub publish_seconds: f64,
    pub connections: Connections,
    pub subscriptions: u64,
    pub subscribe_failures: u64,
    /// Viewers that never subscribed (their session failed or never saw the announcement).
    pub viewers_unsubscribed: u64,
    pub frames_published: u64,
    pub bytes_published: u64,
    pub delivery: Tally,
    pub published_mbps: f64,
    pub delivered_mbps: f64,
    pub latency_us: Latency,
    /// Groups our publishers reset because the relay did not take them fast enough.
    pub publisher_groups_dropped: u64,
    pub protocol_errors: u64,
    /// CPU the load generator's threads used.
    pub load_cpu_seconds: f64,
    pub relay: Option<RelayUsage>,
    pub first_error: Option<String>,
    /// The machine's 1-minute load average at the end: on a shared machine, how much else was
    /// competing for the CPUs.
    pub host_load_1m: Option<f64>,
}

fn mbps(bytes: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        bytes as f64 * 8.0 / secs / 1e6
    } else {
        0.0
    }
}

impl Report {
    pub(crate) fn build(
        plan: &Plan,
        progress: &Progress,
        workers: &[WorkerReport],
        publish_window: Duration,
        first_error: Option<String>,
    ) -> Self {
        let mut delivery = Tally::default();
        let mut latency = Histogram::default();
        let mut load_cpu = Duration::ZERO;
        let (mut subscriptions, mut unsubscribed, mut dropped) = (0, 0, 0);
        for w in workers {
            delivery += w.tally;
            latency.merge(&w.latency);
            load_cpu += w.cpu;
            subscriptions += w.subscriptions;
            unsubscribed += w.viewers_unsubscribed;
            dropped += w.publisher_groups_dropped;
        }
        let secs = publish_window.as_secs_f64();
        Self {
            url: plan.target.url.clone(),
            transport: plan.target.transport,
            alpns: plan.target.alpns.clone(),
            version: match plan.negotiated.load(std::sync::atomic::Ordering::Relaxed) {
                0 => None,
                code => Some(match moq_relay::ietf::Version::from_code(code) {
                    Some(v) => v.alpn().to_owned(),
                    None => format!("lite-{:02x}", code & 0xff),
                }),
            },
            scenario: plan.scenario.clone(),
            threads: plan.threads,
            publish_seconds: secs,
            connections: Connections {
                planned: plan.conns.len() as u64,
                publishers: plan.publishers() as u64,
                subscribers: plan.subscriber_conns() as u64,
                ready: progress.sessions_ready,
                connect_failures: progress.connect_failures,
                sessions_lost: progress.sessions_lost,
            },
            subscriptions,
            subscribe_failures: progress.subscribe_failures,
            viewers_unsubscribed: unsubscribed,
            frames_published: progress.frames_published,
            bytes_published: progress.bytes_published,
            delivery,
            published_mbps: mbps(progress.bytes_published, secs),
            delivered_mbps: mbps(delivery.bytes, secs),
            latency_us: Latency {
                samples: latency.count(),
                p50: latency.quantile(0.50),
                p90: latency.quantile(0.90),
                p99: latency.quantile(0.99),
                max: latency.max(),
                mean: latency.mean(),
            },
            publisher_groups_dropped: dropped,
            protocol_errors: progress.protocol_errors,
            load_cpu_seconds: load_cpu.as_secs_f64(),
            relay: None,
            first_error,
            host_load_1m: std::fs::read_to_string("/proc/loadavg")
                .ok()
                .and_then(|l| l.split_whitespace().next()?.parse().ok()),
        }
    }

    pub(crate) fn attach_relay(
        &mut self,
        watch: &ProcessWatch,
        cpu_total: Duration,
        cpu_publishing: Option<(Duration, Duration)>,
        memory: Memory,
    ) {
        let window = cpu_publishing.map(|(_, w)| w.as_secs_f64());
        let cpu_publishing = cpu_publishing.map(|(c, _)| c);
        let gb = self.delivery.bytes as f64 / 1e9;
        let cpu = cpu_publishing.unwrap_or(cpu_total).as_secs_f64();
        let viewers = self.scenario.viewers().max(1) as f64;
        let sessions = self.connections.planned.max(1) as f64;
        let growth = watch.rss_peak_kb.saturating_sub(watch.rss_start_kb) as f64;
        let frames = self.delivery.delivered;
        self.relay = Some(RelayUsage {
            pid: watch.pid,
            cpu_seconds: cpu_total.as_secs_f64(),
            cpu_seconds_publishing: cpu_publishing.map(|d| d.as_secs_f64()),
            publishing_window_seconds: window,
            cpu_seconds_per_gb: (gb > 0.0).then(|| cpu / gb),
            rss_start_kb: watch.rss_start_kb,
            rss_peak_kb: watch.rss_peak_kb,
            rss_end_kb: memory.rss_kb,
            vm_hwm_kb: memory.hwm_kb,
            rss_per_subscriber_kb: growth / viewers,
            rss_per_session_kb: growth / sessions,
            cpu_us_per_frame: (frames > 0).then(|| cpu * 1e6 / frames as f64),
        });
    }

    /// Nothing lost, refused, failed or garbled.
    pub fn clean(&self) -> bool {
        let d = &self.delivery;
        d.lost == 0
            && d.corrupt == 0
            && d.duplicates == 0
            && self.connections.connect_failures == 0
            && self.connections.sessions_lost == 0
            && self.subscribe_failures == 0
            && self.viewers_unsubscribed == 0
            && self.protocol_errors == 0
    }

    /// A human summary, several lines.
    pub fn summary(&self) -> String {
        let d = &self.delivery;
        let l = &self.latency_us;
        let ms = |us: u64| us as f64 / 1000.0;
        let mut out = String::new();
        self.write_setup(&mut out);
        let _ = writeln!(
            out,
            "published:   {} frames, {:.1} MB, {:.2} Mbit/s over {:.1} s",
            self.frames_published,
            self.bytes_published as f64 / 1e6,
            self.published_mbps,
            self.publish_seconds
        );
        let _ = writeln!(
            out,
            "delivered:   {} of {} expected frames, {:.1} MB, {:.2} Mbit/s; lost {}, groups skipped {}, group streams reset {}",
            d.delivered,
            d.expected,
            d.bytes as f64 / 1e6,
            self.delivered_mbps,
            d.lost,
            d.groups_skipped,
            d.groups_reset
        );
        let _ = writeln!(
            out,
            "latency:     p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} live frames; {} catch-up frames from late joins not counted)",
            ms(l.p50),
            ms(l.p90),
            ms(l.p99),
            ms(l.max),
            l.samples,
            d.catchup
        );
        let _ = writeln!(
            out,
            "anomalies:   {} duplicates, {} reordered, {} corrupt, {} protocol errors, {} publisher groups dropped",
            d.duplicates,
            d.reordered,
            d.corrupt,
            self.protocol_errors,
            self.publisher_groups_dropped
        );
        self.write_usage(&mut out);
        if let Some(e) = &self.first_error {
            let _ = writeln!(out, "first error: {e}");
        }
        let _ = write!(
            out,
            "result:      {}",
            if self.clean() {
                "clean (nothing lost, refused or failed)"
            } else {
                "NOT clean"
            }
        );
        out
    }

    /// The summary's first lines: the scenario, the target, the connections.
    fn write_setup(&self, out: &mut String) {
        let s = &self.scenario;
        let preset = s
            .preset
            .map_or("custom".to_string(), |p| format!("{p} preset"));
        let _ = writeln!(
            out,
            "scenario:    {preset}: {} broadcast(s) x {} track(s) x {} subscriber(s) per track; {} B frames at {} fps{} ({:.2} Mbit/s per track), {} frames per group",
            s.broadcasts,
            s.tracks,
            s.subscribers,
            s.frame_size,
            s.fps,
            if s.burst > 1 {
                format!(" in bursts of {}", s.burst)
            } else {
                String::new()
            },
            s.track_bitrate() / 1e6,
            s.frames_per_group
        );
        let _ = writeln!(
            out,
            "target:      {} ({}, ALPN {}, {}), {} client thread(s)",
            self.url,
            match self.transport {
                Transport::Quic => "raw QUIC",
                Transport::WebTransport => "WebTransport",
            },
            self.alpns.join(","),
            self.version.as_deref().unwrap_or("no session"),
            self.threads
        );
        let c = &self.connections;
        let _ = writeln!(
            out,
            "connections: {} planned, {} up, {} failed to connect, {} lost; {} subscriptions, {} refused or ended early, {} viewers never subscribed",
            c.planned,
            c.ready,
            c.connect_failures,
            c.sessions_lost,
            self.subscriptions,
            self.subscribe_failures,
            self.viewers_unsubscribed
        );
    }

    /// The summary's lines on CPU and memory: the relay's, the load generator's.
    fn write_usage(&self, out: &mut String) {
        if let Some(r) = &self.relay {
            let per_gb = r
                .cpu_seconds_per_gb
                .map_or("n/a".into(), |v| format!("{v:.2}"));
            let _ = writeln!(
                out,
                "relay:       pid {}: {:.2} CPU-s in all, {} CPU-s while publishing ({:.0}% of a core), {} CPU-s per delivered GB, {} µs per delivered frame; RSS {:.1} MB at start, {:.1} MB peak, {:.1} KB per subscriber",
                r.pid,
                r.cpu_seconds,
                r.cpu_seconds_publishing
                    .map_or("n/a".into(), |v| format!("{v:.2}")),
                100.0 * r.cpu_seconds_publishing.unwrap_or(0.0) / (self.publish_seconds + 1e-9),
                per_gb,
                r.cpu_us_per_frame
                    .map_or("n/a".into(), |v| format!("{v:.2}")),
                r.rss_start_kb as f64 / 1024.0,
                r.rss_peak_kb as f64 / 1024.0,
                r.rss_per_subscriber_kb
            );
        }
        let _ = writeln!(
            out,
            "load gen:    {:.2} CPU-s on its threads; host load average {}",
            self.load_cpu_seconds,
            self.host_load_1m
                .map_or("n/a".into(), |l| format!("{l:.2}"))
        );
    }
}
