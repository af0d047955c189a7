//! The load generator against this crate's relay on 127.0.0.1: every frame published reaches
//! every subscriber, per version and with subscribers packed onto shared connections; and an
//! unreachable relay is reported, not waited for.

use std::time::Duration;

use clap::Parser;

use super::*;
use crate::config::{Cli, Config};
use crate::server::Server;

fn relay(threads: usize) -> Server {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let threads = threads.to_string();
    let cli = Cli::try_parse_from([
        "moq-relay",
        "--server-bind",
        "127.0.0.1:0",
        "--client-bind",
        "127.0.0.1:0",
        "--threads",
        &threads,
        "--server-pin=false",
        "--tls-generate",
        "localhost",
    ])
    .unwrap();
    Server::start(&Config::from_cli(cli).unwrap()).unwrap()
}

fn target(url: &str, version: Option<&str>) -> Target {
    let mut o = TargetOptions::new(url);
    o.tls_disable_verify = true;
    o.version = version.map(str::to_string);
    Target::resolve(&o).unwrap()
}

fn small(subscribers: usize, tracks: usize, secs: f64) -> Scenario {
    Scenario {
        preset: None,
        broadcasts: 1,
        tracks,
        subscribers,
        frame_size: 1200,
        fps: 50.0,
        burst: 1,
        frames_per_group: 10,
        duration: Duration::from_secs_f64(secs),
        ramp_up: Duration::from_millis(500),
        connections_per_thread: None,
    }
}

/// Zero loss, and every subscriber got every frame: delivered == published x subscribers.
fn assert_complete(report: &Report, subscribers: u64) {
    let summary = report.summary();
    assert!(report.clean(), "{summary}");
    let d = &report.delivery;
    assert!(report.frames_published > 0, "{summary}");
    assert_eq!(d.lost, 0, "{summary}");
    assert_eq!(
        d.expected,
        report.frames_published * subscribers,
        "{summary}"
    );
    assert_eq!(
        d.delivered,
        report.frames_published * subscribers,
        "{summary}"
    );
    assert_eq!(d.bytes, report.bytes_published * subscribers, "{summary}");
    assert_eq!(d.groups_skipped, 0, "{summary}");
    // All subscribed before publishing began, so every frame was live.
    assert_eq!(report.latency_us.samples, d.delivered, "{summary}");
    assert!(report.latency_us.p50 > 0 && report.latency_us.p50 <= report.latency_us.max);
    assert!(report.latency_us.max < 2_000_000, "{summary}");
}

#[test]
fn lite05_every_frame_reaches_every_subscriber() {
    let server = relay(2);
    let url = format!("https://127.0.0.1:{}/room", server.local_addr().port());
    let mut config = LoadConfig::new(small(3, 2, 2.0), target(&url, None));
    config.threads = 2;
    let mut ticks = 0;
    let report = run(config, Some(std::process::id()), |_, _| ticks += 1).unwrap();
    assert_complete(&report, 3);
    let expected = 2.0 * 50.0 * 2.0;
    assert!(
        (report.frames_published as f64 - expected).abs() <= 2.0,
        "{} frames published, expected about {expected}",
        report.frames_published
    );
    assert_eq!(report.connections.ready, 4);
    assert_eq!(report.version.as_deref(), Some("lite-05"));
    assert_eq!(report.subscriptions, 6);
    assert!(ticks >= 2, "progress is reported while running");
    let relay = report.relay.as_ref().unwrap();
    assert!(relay.cpu_seconds > 0.0 && relay.rss_peak_kb > 0);
    assert!(relay.cpu_seconds_per_gb.unwrap() > 0.0);
    let json = serde_json::to_string(&report).unwrap();
    assert!(json.contains("\"lost\":0"), "{json}");
    assert!(json.contains("\"cpu_seconds_per_gb\":"), "{json}");
    server.stop().unwrap();
}

#[test]
fn older_versions_and_packed_connections() {
    let server = relay(1);
    let port = server.local_addr().port();
    for (url, version, packed) in [
        (format!("moql://127.0.0.1:{port}"), None, None),
        (
            format!("moql://127.0.0.1:{port}/sub"),
            Some("lite-01"),
            Some(1),
        ),
        (format!("https://127.0.0.1:{port}"), Some("lite-03"), None),
        (
            format!("https://127.0.0.1:{port}/a/b"),
            Some("lite-04"),
            Some(2),
        ),
    ] {
        let mut scenario = small(4, 1, 1.0);
        scenario.connections_per_thread = packed;
        let mut config = LoadConfig::new(scenario, target(&url, version));
        config.threads = 1;
        let report = run(config, None, |_, _| {}).unwrap();
        assert_complete(&report, 4);
        let expected = match version {
            None => "lite-02",
            Some(v) => v,
        };
        assert_eq!(report.version.as_deref(), Some(expected));
        let subscriber_conns = packed.unwrap_or(4) as u64;
        assert_eq!(
            report.connections.ready,
            1 + subscriber_conns,
            "{url} {version:?}"
        );
    }
    server.stop().unwrap();
}

#[test]
fn chat_bursts_one_frame_groups() {
    let server = relay(1);
    let url = format!("moql://127.0.0.1:{}", server.local_addr().port());
    let mut scenario = Preset::Chat.scenario();
    scenario.subscribers = 5;
    scenario.duration = Duration::from_secs(1);
    scenario.ramp_up = Duration::from_millis(400);
    let mut config = LoadConfig::new(scenario, target(&url, Some("lite-05")));
    config.threads = 1;
    let report = run(config, None, |_, _| {}).unwrap();
    assert_complete(&report, 5);
    assert_eq!(report.frames_published % 10, 0, "whole bursts");
    server.stop().unwrap();
}

#[test]
fn unreachable_relay_fails_within_the_connect_timeout() {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("moql://127.0.0.1:{port}");
    let mut config = LoadConfig::new(small(1, 1, 1.0), target(&url, None));
    config.connect_timeout = Duration::from_millis(800);
    config.threads = 1;
    let started = std::time::Instant::now();
    let e = run(config, None, |_, _| {}).unwrap_err();
    assert!(e.contains("could not reach"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn manual_bursts_are_delivered() {
    let server = relay(1);
    let url = format!("https://127.0.0.1:{}", server.local_addr().port());
    let mut scenario = small(3, 1, 1.0);
    scenario.ramp_up = Duration::ZERO;
    scenario.frames_per_group = 5;
    let mut config = LoadConfig::new(scenario, target(&url, None));
    config.threads = 1;
    config.pacing = Pacing::Manual;
    let mut load = Load::start(config).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while load.progress().subscriptions < 3 {
        assert!(std::time::Instant::now() < deadline, "subscriptions");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Subscriptions may still be travelling to the publisher: the first group reaches late
    // joiners from frame 0 anyway.
    for round in 1..=4u64 {
        load.burst(5);
        while load.progress().frames_received < round * 5 * 3 {
            assert!(std::time::Instant::now() < deadline, "round {round}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    load.stop_publishing();
    while !load.drained() {
        assert!(std::time::Instant::now() < deadline, "drain");
        std::thread::sleep(Duration::from_millis(10));
    }
    let report = load.finish();
    assert!(report.clean(), "{}", report.summary());
    assert_eq!(report.frames_published, 20);
    assert_eq!(report.delivery.delivered, 60);
    server.stop().unwrap();
}
