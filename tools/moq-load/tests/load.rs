//! The load generator against moq-relay's relay on 127.0.0.1: every frame published reaches
//! every subscriber, per version and with subscribers packed onto shared connections; and an
//! unreachable relay is reported, not waited for.

#[path = "../../../tests/support/mod.rs"]
mod support;

use std::time::Duration;

use moq_load::{
    Load, LoadConfig, Pacing, Preset, Report, Scenario, Target, TargetOptions, Transport, run,
};
use support::relay;

fn target(url: &str, version: Option<&str>) -> Target {
    target_over(url, version, None)
}

fn target_over(url: &str, version: Option<&str>, transport: Option<Transport>) -> Target {
    let mut o = TargetOptions::new(url);
    o.tls_disable_verify = true;
    o.version = version.map(str::to_string);
    o.transport = transport;
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

/// WebTransport (https://), the relay picking lite-05 from WT-Available-Protocols.
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
    assert_eq!(report.transport, Transport::WebTransport);
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
fn every_version_over_both_transports_and_packed_connections() {
    let server = relay(1);
    let port = server.local_addr().port();
    let quic = Some(Transport::Quic);
    let wt = Some(Transport::WebTransport);
    for (url, transport, version, packed, expected) in [
        (
            format!("moql://127.0.0.1:{port}"),
            None,
            None,
            None,
            "lite-02",
        ),
        (
            format!("moql://127.0.0.1:{port}/sub"),
            None,
            Some("lite-01"),
            Some(1),
            "lite-01",
        ),
        (
            format!("https://127.0.0.1:{port}"),
            quic,
            Some("lite-03"),
            None,
            "lite-03",
        ),
        (
            format!("https://127.0.0.1:{port}/a/b"),
            quic,
            Some("lite-04"),
            Some(2),
            "lite-04",
        ),
        (
            format!("https://127.0.0.1:{port}/r"),
            quic,
            None,
            None,
            "lite-05",
        ),
        (
            format!("https://127.0.0.1:{port}/r"),
            wt,
            Some("lite-04"),
            Some(2),
            "lite-04",
        ),
        (
            format!("https://127.0.0.1:{port}/r"),
            wt,
            Some("lite-03"),
            None,
            "lite-03",
        ),
        // No common subprotocol: SETUP inside the WebTransport session.
        (
            format!("https://127.0.0.1:{port}"),
            wt,
            Some("moql"),
            None,
            "lite-02",
        ),
        // IETF moq-transport, the root in SETUP's PATH or the URL.
        (
            format!("https://127.0.0.1:{port}/r"),
            quic,
            Some("moqt-17"),
            Some(2),
            "moqt-17",
        ),
        (
            format!("https://127.0.0.1:{port}/r"),
            wt,
            Some("moq-transport-18"),
            None,
            "moqt-18",
        ),
        (
            format!("https://127.0.0.1:{port}"),
            quic,
            Some("moqt-19"),
            None,
            "moqt-19",
        ),
        (
            format!("https://127.0.0.1:{port}/r"),
            quic,
            Some("moqt-16"),
            Some(2),
            "moqt-16",
        ),
        (
            format!("https://127.0.0.1:{port}"),
            wt,
            Some("moqt-16"),
            None,
            "moqt-16",
        ),
    ] {
        let mut scenario = small(4, 1, 1.0);
        scenario.connections_per_thread = packed;
        let mut config = LoadConfig::new(scenario, target_over(&url, version, transport));
        config.threads = 1;
        let report = run(config, None, |_, _| {}).unwrap();
        assert_complete(&report, 4);
        assert_eq!(
            report.version.as_deref(),
            Some(expected),
            "{url} {version:?}"
        );
        let subscriber_conns = packed.unwrap_or(4) as u64;
        assert_eq!(
            report.connections.ready,
            1 + subscriber_conns,
            "{url} {version:?}"
        );
    }
    server.stop().unwrap();
}

/// An http:// URL fetches the certificate fingerprint from the relay's HTTP endpoint on the
/// same port number, pins it, and goes on over WebTransport.
#[test]
fn http_url_pins_the_relay_fingerprint() {
    let server = support::relay_on_one_port(1);
    let addr = server.local_addr();
    assert_eq!(server.http_addr(), Some(addr));
    let target = Target::resolve(&TargetOptions::new(&format!("http://{addr}/pinned"))).unwrap();
    match &target.verify {
        moq_relay::quic::tls::ClientVerify::Fingerprints(f) => {
            assert_eq!(f, server.fingerprints())
        }
        other => panic!("{other:?}"),
    }
    let mut config = LoadConfig::new(small(2, 1, 1.0), target);
    config.threads = 1;
    let report = run(config, None, |_, _| {}).unwrap();
    assert_complete(&report, 2);
    assert_eq!(report.transport, Transport::WebTransport);
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

#[path = "../../../tests/support/tokens.rs"]
mod tokens;

/// A token in the target URL travels as the relay expects (the WebTransport URL, the lite-05
/// SETUP path): a relay that lets nobody in without one serves the load; without it nothing
/// gets through.
#[test]
fn a_token_in_the_url_is_sent() {
    let mut config = support::config(1, moq_relay::relay::Limits::default());
    config.auth = tokens::keyed(&[], &[]);
    let server = support::start(&config);
    let port = server.local_addr().port();
    let jwt = tokens::token(serde_json::json!({"root": "room", "put": [""], "get": [""]}));
    for scheme in ["https", "moql"] {
        let url = format!("{scheme}://127.0.0.1:{port}/room?jwt={jwt}");
        let mut config = LoadConfig::new(small(2, 1, 1.0), target(&url, Some("lite-05")));
        config.threads = 1;
        let report = run(config, None, |_, _| {}).unwrap();
        assert_complete(&report, 2);
        let url = format!("{scheme}://127.0.0.1:{port}/room");
        let mut config = LoadConfig::new(small(1, 1, 0.5), target(&url, Some("lite-05")));
        config.threads = 1;
        let report = run(config, None, |_, _| {}).unwrap();
        assert_eq!(report.delivery.delivered, 0, "{}", report.summary());
        assert!(!report.clean(), "{}", report.summary());
    }
    server.stop().unwrap();
}

/// A chain of two relays (B dials A): publishers on A, subscribers on B, every frame through.
#[test]
fn publishers_and_subscribers_on_two_relays_of_a_chain() {
    let a = relay(1);
    let mut b_config = support::config(1, moq_relay::relay::Limits::default());
    let up = format!("moql://127.0.0.1:{}/", a.local_addr().port());
    b_config.cluster.peers = vec![moq_relay::cluster::parse_peer(&up, None).unwrap()];
    let b = support::start(&b_config);
    let url =
        |s: &moq_relay::server::Server| format!("moql://127.0.0.1:{}/", s.local_addr().port());
    let mut config = LoadConfig::new(small(2, 1, 1.0), target(&url(&b), Some("lite-05")));
    config.publish_target = Some(target(&url(&a), Some("lite-05")));
    config.threads = 1;
    config.scenario.ramp_up = Duration::from_secs(1);
    let report = run(config, None, |_, _| {}).unwrap();
    assert_complete(&report, 2);
    assert_eq!(a.stats().frames_delivered, report.frames_published);
    for r in [b, a] {
        r.stop().unwrap();
    }
}
