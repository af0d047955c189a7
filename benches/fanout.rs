//! Fan-out throughput: the relay in this process on 127.0.0.1 (one core thread), the load
//! generator on one client thread, one publisher and N = 1, 10, 100, 1000 subscriber sessions
//! on one track. Each iteration publishes one group of 10 kB frames (at most 64, a 2 s group of
//! 2.5 Mbit/s video) as fast as flow control allows and waits until every subscriber has all of
//! it, so criterion's bytes/s is delivered payload (frames x size x N) per second. One group at
//! a time keeps the relay's slow-subscriber policy (reset the oldest of too many backlogged
//! groups) out of the measurement; the price is a short idle gap between groups, so the rate is
//! a lower bound on what the relay sustains, and the CPU figures are the ones to compare.
//!
//! Relay CPU: the relay's core threads are named `moq-core-*` and the load generator renames
//! its own to `moq-load-*`, so the relay's CPU is the sum of `/proc/self/task/*/stat` over the
//! `moq-core-*` threads, read before and after the measurement. It is printed after each N as
//! relay CPU-seconds per delivered GB and delivered bytes per relay CPU-second, next to the load
//! generator's own CPU, which shows which side was the bottleneck.

use std::time::{Duration, Instant};

use clap::Parser;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use moq_load::{Load, LoadConfig, Pacing, Scenario, Target, TargetOptions, Transport, procfs};
use moq_relay::config::{Cli, Config};
use moq_relay::server::Server;

const FRAME: usize = 10_000;
/// Delivered bytes per iteration to aim for; fewer frames as N grows.
const ITERATION_BYTES: usize = 16 << 20;
const WAIT: Duration = Duration::from_secs(60);

fn relay() -> Server {
    let cli = Cli::try_parse_from([
        "moq-relay",
        "--server-bind",
        "127.0.0.1:0",
        "--client-bind",
        "127.0.0.1:0",
        "--threads",
        "1",
        "--server-pin=false",
        "--tls-generate",
        "localhost",
        "--log-level",
        "warn",
    ])
    .expect("relay flags");
    Server::start(&Config::from_cli(cli).expect("relay config")).expect("relay start")
}

fn relay_cpu() -> Duration {
    procfs::threads_cpu(std::process::id(), "moq-core").unwrap_or_default()
}

fn load_cpu() -> Duration {
    procfs::threads_cpu(std::process::id(), "moq-load").unwrap_or_default()
}

fn wait_for(load: &Load, what: &str, mut done: impl FnMut(&Load) -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done(load) {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {:?} ({:?})",
            load.progress(),
            load.first_error()
        );
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    // Criterion's filter (`cargo bench --bench fanout -- subscribers/100`) would still set up
    // every relay; skip the ones it cannot match.
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    for n in [1usize, 10, 100, 1000] {
        let name = format!("fanout/subscribers/{n}");
        if filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
            continue;
        }
        let frames = (ITERATION_BYTES / (FRAME * n)).clamp(1, 64) as u64;
        let server = relay();
        let mut options = TargetOptions::new(&format!(
            "https://127.0.0.1:{}/bench",
            server.local_addr().port()
        ));
        options.tls_disable_verify = true;
        // Raw QUIC, moq-lite-05: the relay's core path without the HTTP/3 layer.
        options.transport = Some(Transport::Quic);
        let target = Target::resolve(&options).expect("target");
        let scenario = Scenario {
            preset: None,
            broadcasts: 1,
            tracks: 1,
            subscribers: n,
            frame_size: FRAME,
            fps: 30.0,
            burst: 1,
            frames_per_group: frames,
            duration: Duration::from_secs(1),
            ramp_up: Duration::ZERO,
            connections_per_thread: None,
        };
        let mut config = LoadConfig::new(scenario, target);
        config.threads = 1;
        config.pacing = Pacing::Manual;
        config.connect_timeout = WAIT;
        let mut load = Load::start(config).expect("load start");
        wait_for(&load, "subscriptions", |l| {
            l.progress().subscriptions == n as u64
        });
        // A first group wires every subscription end to end (late joiners get it from frame 0).
        load.burst(frames);
        let want = frames * n as u64;
        wait_for(&load, "the first group", |l| {
            l.progress().frames_received >= want
        });

        let cpu_before = relay_cpu();
        let load_cpu_before = load_cpu();
        let bytes_before = load.progress().bytes_received;
        let busy_before = Instant::now();
        let per_group = frames * n as u64;
        // Frames every subscriber has had once all groups published so far are delivered.
        let mut published = load.progress().frames_received;
        group.throughput(Throughput::Bytes(frames * FRAME as u64 * n as u64));
        group.bench_function(BenchmarkId::new("subscribers", n), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    published += per_group;
                    load.burst(frames);
                    wait_for(&load, "a group", |l| {
                        l.progress().frames_received >= published
                    });
                }
                start.elapsed()
            })
        });
        let cpu = relay_cpu().saturating_sub(cpu_before).as_secs_f64();
        let client_cpu = load_cpu().saturating_sub(load_cpu_before).as_secs_f64();
        let wall = busy_before.elapsed().as_secs_f64();
        let bytes = (load.progress().bytes_received - bytes_before) as f64;

        load.stop_publishing();
        let drain = Instant::now() + Duration::from_secs(10);
        while !load.drained() && Instant::now() < drain {
            std::thread::sleep(Duration::from_millis(10));
        }
        let report = load.finish();
        server.stop().expect("relay stop");
        let d = &report.delivery;
        println!(
            "fanout/subscribers/{n}: relay {cpu:.2} CPU-s over {wall:.1} s ({:.0}% of a core; load generator {:.0}%) for {:.2} GB delivered: {:.2} relay CPU-s per GB, {:.0} MB delivered per relay CPU-second; {} frames delivered, {} lost, {} duplicates, {} group streams reset by the relay",
            100.0 * cpu / wall,
            100.0 * client_cpu / wall,
            bytes / 1e9,
            cpu / (bytes / 1e9),
            bytes / 1e6 / cpu.max(1e-9),
            d.delivered,
            d.lost,
            d.duplicates,
            d.groups_reset,
        );
        if !report.clean() {
            println!("fanout/subscribers/{n}: NOT clean:\n{}", report.summary());
        }
    }
    group.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
