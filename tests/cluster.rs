//! Relays that dial relays (`--cluster-connect`), on 127.0.0.1 with real QUIC: announcements and
//! tracks cross every hop, each frame crosses a hop once however many subscribers are behind
//! it, and a peer that goes away is dialled again until it is back.

mod support;
#[path = "support/tokens.rs"]
mod tokens;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use moq_relay::client::Client;
use moq_relay::cluster::parse_peer;
use moq_relay::config::{ClusterConfig, Config};
use moq_relay::lite::Version;
use moq_relay::relay::{AppCmd, AppEvent, Limits};
use moq_relay::server::Server;
use support::{WAIT, frames, wait};

/// A relay's configuration that dials `peers` (`https://` or `moql://` URLs).
fn peering(peers: &[String], id: u64) -> Config {
    let mut config = support::config(2, Limits::default());
    config.cluster = ClusterConfig {
        id: Some(id),
        peers: peers.iter().map(|u| parse_peer(u, None).unwrap()).collect(),
        ..ClusterConfig::default()
    };
    config
}

fn url(scheme: &str, server: &Server) -> String {
    format!("{scheme}://127.0.0.1:{}/", server.local_addr().port())
}

fn has(server: &Server, path: &str) -> bool {
    server.broadcasts().iter().any(|b| b == path)
}

fn until_has(server: &Server, path: &str, present: bool) {
    support::until(
        Instant::now() + WAIT,
        Duration::from_millis(20),
        || format!("broadcasts {:?}", server.broadcasts()),
        || has(server, path) == present,
    );
}

fn payload(group: u64, index: usize) -> Bytes {
    Bytes::from(format!("group {group} frame {index} ").repeat(1 + index * 100))
}

fn send_group(p: &Client, group: u64) {
    for index in 0..3 {
        p.send(AppCmd::Frame {
            path: "demo".into(),
            track: "video".into(),
            seq: group,
            timestamp: group,
            payload: payload(group, index),
        });
    }
    p.send(AppCmd::GroupDone {
        path: "demo".into(),
        track: "video".into(),
        seq: group,
    });
}

/// A lite-05 publisher of `demo` on `server`, group 0 written.
fn publishing(server: &Server) -> Client {
    let publisher = support::connect(server, Version::Lite05);
    publisher.send(AppCmd::Publish {
        path: "demo".into(),
    });
    send_group(&publisher, 0);
    publisher
}

fn subscriber(server: &Server, web: bool) -> Client {
    let c = if web {
        support::connect_web(server, &["moq-lite-05"], Version::Lite05)
    } else {
        support::connect(server, Version::Lite05)
    };
    c.send(AppCmd::Subscribe {
        id: 1,
        path: "demo".into(),
        track: "video".into(),
    });
    c
}

/// A publisher on A, subscribers on C, C dialling B over WebTransport and B dialling A over
/// raw QUIC: every frame arrives byte-exact, and each crosses each hop once.
#[test]
fn chain_carries_each_frame_once_per_hop() {
    let a = support::start(&peering(&[], 1));
    let b = support::start(&peering(&[url("moql", &a)], 2));
    let c = support::start(&peering(&[url("https", &b)], 3));
    let publisher = publishing(&a);
    until_has(&c, "demo", true);

    let subs: Vec<Client> = (0..3).map(|i| subscriber(&c, i == 1)).collect();
    for s in &subs {
        // The newest group, from frame 0, out of the caches on the way.
        let got = frames(s, 3);
        assert_eq!(
            got.iter().map(|f| (f.0, f.1)).collect::<Vec<_>>(),
            [(0, 0), (0, 1), (0, 2)]
        );
    }
    for g in 1..=5 {
        send_group(&publisher, g);
    }
    for s in &subs {
        let got = frames(s, 15);
        for (k, (seq, index, bytes)) in got.iter().enumerate() {
            assert_eq!((*seq, *index), (1 + k as u64 / 3, k % 3));
            assert_eq!(bytes[..], payload(*seq, *index)[..]);
        }
    }
    // A wrote each of the 18 frames once (to B), B once (to C), C once per subscriber.
    support::until(
        Instant::now() + WAIT,
        Duration::from_millis(20),
        || {
            format!(
                "delivered A {:?} B {:?} C {:?}",
                a.stats(),
                b.stats(),
                c.stats()
            )
        },
        || c.stats().frames_delivered == 54,
    );
    assert_eq!(a.stats().frames_delivered, 18);
    assert_eq!(b.stats().frames_delivered, 18);

    // A publisher that ends its broadcast ends it everywhere at once.
    publisher.send(AppCmd::Unpublish {
        path: "demo".into(),
    });
    let left = Instant::now();
    until_has(&c, "demo", false);
    assert!(
        left.elapsed() < Duration::from_secs(2),
        "{:?}",
        left.elapsed()
    );
    publisher.close();
    for s in subs {
        s.close();
    }
    for r in [c, b, a] {
        r.stop().unwrap();
    }
}

/// B goes away and comes back on the same port: C dials it again (with backoff) and the
/// broadcast on A is reachable from C once more.
#[test]
fn a_lost_peer_is_dialled_again() {
    let a = support::start(&peering(&[], 1));
    let b_config = peering(&[url("moql", &a)], 2);
    let b = support::start(&b_config);
    let b_addr: SocketAddr = b.local_addr();
    let c = support::start(&peering(&[url("moql", &b)], 3));
    let publisher = publishing(&a);
    until_has(&c, "demo", true);
    let s = subscriber(&c, false);
    assert_eq!(frames(&s, 3).len(), 3);

    // B goes; C keeps the broadcast lingering, redials, and B comes back within the linger.
    b.stop().unwrap();
    let down = Instant::now();
    let mut b_config = b_config;
    b_config.bind = b_addr;
    let b = support::start(&b_config);
    // The same subscription on C resumes with the publisher's next groups.
    let mut group = 1;
    let resumed = loop {
        send_group(&publisher, group);
        let got = s.events.recv_timeout(Duration::from_millis(500));
        if let Ok(AppEvent::Frame { seq, .. }) = got
            && seq >= 1
        {
            break seq;
        }
        if let Ok(AppEvent::Ended { code, .. }) = got {
            panic!("the subscription ended ({code}) instead of waiting for the peer");
        }
        assert!(
            down.elapsed() < moq_relay::relay::BACKOFF_MAX,
            "not resumed"
        );
        group += 1;
    };
    assert!(resumed >= 1);
    s.close();
    publisher.close();
    for r in [c, b, a] {
        r.stop().unwrap();
    }
}

/// Two relays that dial each other carry a broadcast without looping: it stays announced once
/// on each, and a subscriber gets each frame once.
#[test]
fn relays_dialling_each_other_do_not_loop() {
    let a = support::start(&peering(&[], 1));
    let b = support::start(&peering(&[url("moql", &a)], 2));
    // A learns of B only now; both dial each other from here on.
    let mut a_config = peering(&[url("moql", &b)], 1);
    let a_addr = a.local_addr();
    a.stop().unwrap();
    a_config.bind = a_addr;
    let a = support::start(&a_config);
    let publisher = publishing(&a);
    until_has(&b, "demo", true);
    let s = subscriber(&b, false);
    assert_eq!(frames(&s, 3).len(), 3);
    send_group(&publisher, 1);
    assert_eq!(frames(&s, 3)[0].0, 1);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        s.events
            .try_iter()
            .all(|e| !matches!(e, AppEvent::Frame { .. })),
        "a frame came twice"
    );
    assert_eq!(b.broadcasts(), ["demo"]);
    assert_eq!(a.broadcasts(), ["demo"]);
    s.close();
    publisher.close();
    for r in [b, a] {
        r.stop().unwrap();
    }
}

/// A triangle (B and C dial A, C dials B): the broadcast is known once on every relay, the
/// subscriber on C is served by the direct route and stays on it, and gets each frame once.
#[test]
fn a_triangle_serves_by_one_stable_route() {
    let a = support::start(&peering(&[], 1));
    let b = support::start(&peering(&[url("moql", &a)], 2));
    let c = support::start(&peering(&[url("moql", &a), url("https", &b)], 3));
    let publisher = publishing(&a);
    until_has(&b, "demo", true);
    until_has(&c, "demo", true);
    // Both of C's routes are known before it subscribes.
    std::thread::sleep(Duration::from_millis(300));
    let s = subscriber(&c, false);
    assert_eq!(frames(&s, 3).len(), 3);
    for g in 1..=5 {
        send_group(&publisher, g);
        let got = frames(&s, 3);
        assert_eq!(
            got.iter().map(|f| (f.0, f.1)).collect::<Vec<_>>(),
            [(g, 0), (g, 1), (g, 2)]
        );
        assert_eq!(got[2].2, payload(g, 2)[..]);
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        s.events
            .try_iter()
            .all(|e| !matches!(e, AppEvent::Frame { .. })),
        "a frame came twice"
    );
    // The two-hop route through B never served.
    assert_eq!(b.stats().frames_delivered, 0);
    for r in [&a, &b, &c] {
        assert_eq!(r.broadcasts(), ["demo"]);
    }
    s.close();
    publisher.close();
    for r in [c, b, a] {
        r.stop().unwrap();
    }
}

/// A peer relay is admitted like any client: B reaches A, which lets nobody in without a
/// token, with the token in its peer URL; with a token for another root it is refused, and
/// keeps redialling without anything else on B noticing.
#[test]
fn a_peer_relay_carries_a_token() {
    let mut a_config = peering(&[], 1);
    a_config.auth = tokens::keyed(&[], &[]);
    let a = support::start(&a_config);
    let jwt = tokens::token(serde_json::json!({"put": [""], "get": [""]}));
    let b = support::start(&peering(&[format!("{}?jwt={jwt}", url("https", &a))], 2));
    let wrong = tokens::token(serde_json::json!({"root": "elsewhere", "get": [""]}));
    let c = support::start(&peering(&[format!("{}?jwt={wrong}", url("moql", &a))], 3));
    let mut opts = moq_relay::client::ClientOptions::new(a.local_addr(), Version::Lite05);
    opts.path = format!("?jwt={jwt}");
    let publisher = support::connect_with(opts, Version::Lite05);
    publisher.send(AppCmd::Publish {
        path: "demo".into(),
    });
    send_group(&publisher, 0);
    until_has(&b, "demo", true);
    let s = subscriber(&b, true);
    assert_eq!(frames(&s, 3)[1].2, payload(0, 1)[..]);
    // C is refused (code 6) and redials; its own clients are served meanwhile.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!has(&c, "demo"));
    let local = support::connect(&c, Version::Lite05);
    local.close();
    s.close();
    publisher.close();
    for r in [c, b, a] {
        r.stop().unwrap();
    }
}

/// Two routes to one broadcast (C dials B and D, both dial A): the shorter or, at equal
/// length, the same-hash route serves; when its relay dies the other serves at once, and the
/// subscriber on C keeps getting the publisher's groups.
#[test]
fn a_second_route_takes_over_at_once() {
    let a = support::start(&peering(&[], 1));
    let b = support::start(&peering(&[url("moql", &a)], 2));
    let d = support::start(&peering(&[url("https", &a)], 4));
    let c = support::start(&peering(&[url("moql", &b), url("moql", &d)], 3));
    let publisher = publishing(&a);
    until_has(&c, "demo", true);
    // Both routes are known before one is cut.
    std::thread::sleep(Duration::from_millis(300));
    let s = subscriber(&c, false);
    assert_eq!(frames(&s, 3).len(), 3);
    let via_b = b.stats().frames_delivered > 0;
    assert_ne!(
        via_b,
        d.stats().frames_delivered > 0,
        "exactly one route serves"
    );
    let (serving, other) = if via_b { (b, d) } else { (d, b) };
    serving.stop().unwrap();
    let cut = Instant::now();
    for g in 1..=3 {
        send_group(&publisher, g);
    }
    // The groups after the cut arrive through the other relay.
    let mut seen = std::collections::BTreeSet::new();
    while !(1..=3).all(|g| seen.contains(&g)) {
        let (seq, _, bytes) = wait(&s, "a frame after the cut", |e| match e {
            AppEvent::Frame {
                id: 1,
                seq,
                index,
                payload,
                ..
            } => Some((seq, index, payload.concat())),
            _ => None,
        });
        assert!(bytes.starts_with(format!("group {seq} ").as_bytes()));
        seen.insert(seq);
    }
    assert!(
        cut.elapsed() < Duration::from_secs(3),
        "{:?}",
        cut.elapsed()
    );
    assert!(other.stats().frames_delivered > 0);
    s.close();
    publisher.close();
    for r in [c, other, a] {
        r.stop().unwrap();
    }
}

/// A publisher that vanishes (its session ends without ending the broadcast) leaves the
/// broadcast announced for the linger: a new publisher within it takes the subscribers over
/// without their subscriptions ending; without one, it ends after the linger.
#[test]
fn a_vanished_publisher_lingers() {
    let mut a_config = peering(&[], 1);
    a_config.limits.broadcast_linger = Duration::from_millis(1500);
    let a = support::start(&a_config);
    let c = support::start(&peering(&[url("moql", &a)], 3));
    let first = support::connect(&a, Version::Lite05);
    first.send(AppCmd::Publish {
        path: "demo".into(),
    });
    send_group(&first, 0);
    until_has(&c, "demo", true);
    let s = subscriber(&c, false);
    assert_eq!(frames(&s, 3).len(), 3);

    first.close();
    std::thread::sleep(Duration::from_millis(500));
    assert!(has(&c, "demo"), "still announced while it lingers");
    let second = support::connect(&a, Version::Lite05);
    second.send(AppCmd::Publish {
        path: "demo".into(),
    });
    send_group(&second, 7);
    // The same subscription, now fed by the new publisher.
    let got = frames(&s, 3);
    assert_eq!(got[0].0, 7);

    let vanished = Instant::now();
    second.close();
    until_has(&a, "demo", false);
    let gone = vanished.elapsed();
    assert!(gone >= Duration::from_millis(1400), "ended after {gone:?}");
    wait(&s, "the end of the subscription", |e| {
        matches!(e, AppEvent::Ended { id: 1, .. }).then_some(())
    });
    until_has(&c, "demo", false);
    s.close();
    for r in [c, a] {
        r.stop().unwrap();
    }
}

/// Mutual TLS between relays (`--server-tls-root` on A, `--client-tls-cert/key` on B): B's
/// certificate chains to A's root, so B gets full access without a token, where A lets
/// nobody else in; a relay without the certificate is refused.
#[test]
fn a_peer_relay_with_a_client_certificate_needs_no_token() {
    let dir = std::env::temp_dir().join(format!("moq-mtls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut leaf = rcgen::CertificateParams::new(vec!["relay-b".to_string()]).unwrap();
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
    let write = |name: &str, pem: String| {
        let p = dir.join(name);
        std::fs::write(&p, pem).unwrap();
        p
    };
    let ca_pem = write("ca.pem", ca_cert.pem());
    let cert = write("b.crt", leaf_cert.pem());
    let key = write("b.key", leaf_key.serialize_pem());

    let mut a_config = peering(&[], 1);
    a_config.auth = tokens::keyed(&[], &[]);
    a_config.tls.client_roots = vec![ca_pem];
    let a = support::start(&a_config);
    let mut b_config = peering(&[url("moql", &a)], 2);
    b_config.client_identity = Some((cert, key));
    let b = support::start(&b_config);
    let c = support::start(&peering(&[url("https", &a)], 3));

    let mut opts = moq_relay::client::ClientOptions::new(b.local_addr(), Version::Lite05);
    opts.path = String::new();
    let publisher = support::connect_with(opts, Version::Lite05);
    publisher.send(AppCmd::Publish {
        path: "demo".into(),
    });
    send_group(&publisher, 0);
    // B's broadcast reaches A over B's certificate; C (no certificate, no token) gets nothing.
    until_has(&a, "demo", true);
    std::thread::sleep(Duration::from_millis(500));
    assert!(!has(&c, "demo"));
    publisher.close();
    for r in [c, b, a] {
        r.stop().unwrap();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A relay with gossip on, advertising `moql://127.0.0.1:<its port>/`, dialling `peers`: on a
/// port probed free first, since its URL must be known before it starts.
fn meshed(peers: &[String], id: u64) -> (Server, String) {
    for _ in 0..20 {
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = probe.local_addr().unwrap();
        drop(probe);
        let mut config = peering(peers, id);
        config.bind = addr;
        let node = format!("moql://127.0.0.1:{}/", addr.port());
        config.cluster.node = Some(node.clone());
        config.cluster.mesh = true;
        if let Ok(server) = Server::start(&config) {
            return (server, node);
        }
    }
    panic!("no free port for a meshed relay");
}

/// Where a relay whose URL is `node` is advertised (a path has no `//` and no trailing `/`).
fn advertised_at(node: &str) -> String {
    let at = format!(".internal/origins/{}", node.replace("//", "/"));
    at.trim_end_matches('/').to_owned()
}

fn sessions(server: &Server) -> usize {
    server.census().iter().map(|c| c.sessions).sum()
}

/// Gossip: A and B each dial only the rendezvous R, find each other under `.internal/origins/`
/// and the one with the smaller URL dials the other, once. With R gone, a broadcast published
/// on A still reaches B over that link; the advertisements themselves have no tracks.
#[test]
fn gossip_links_relays_that_only_know_a_rendezvous() {
    let (r, r_url) = meshed(&[], 1);
    let (a, a_url) = meshed(std::slice::from_ref(&r_url), 2);
    let (b, b_url) = meshed(std::slice::from_ref(&r_url), 3);
    for node in [&r_url, &a_url, &b_url] {
        for s in [&r, &a, &b] {
            until_has(s, &advertised_at(node), true);
        }
    }
    // R has two sessions (A and B); A and B have R and each other, one session each way.
    support::until(
        Instant::now() + WAIT,
        Duration::from_millis(20),
        || {
            format!(
                "sessions: R {}, A {}, B {}",
                sessions(&r),
                sessions(&a),
                sessions(&b)
            )
        },
        || sessions(&a) == 2 && sessions(&b) == 2,
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!((sessions(&r), sessions(&a), sessions(&b)), (2, 2, 2));

    // An advertisement has no tracks: a subscription to one is refused, not kept.
    let probe = support::connect(&a, Version::Lite05);
    probe.send(AppCmd::Subscribe {
        id: 1,
        path: advertised_at(&b_url),
        track: "video".into(),
    });
    let code = wait(&probe, "the refusal", |e| match e {
        AppEvent::Ended { id: 1, code } => Some(code),
        _ => None,
    });
    assert_ne!(code, 0);
    probe.close();

    r.stop().unwrap();
    let publisher = publishing(&a);
    until_has(&b, "demo", true);
    let s = subscriber(&b, false);
    assert_eq!(frames(&s, 3).len(), 3);
    s.close();
    publisher.close();
    for r in [b, a] {
        r.stop().unwrap();
    }
}

/// A peer relay that goes silent (no close, no packet: the link is cut) is noticed within the
/// relay-to-relay idle timeout, and the subscriber on C moves to the other route: C dials B
/// over that link and D at `?cost=5`, so B's route serves until it goes quiet.
#[test]
fn a_silent_peer_is_routed_around_within_the_idle_timeout() {
    let a = support::start(&peering(&[], 1));
    let b = support::start(&peering(&[url("moql", &a)], 2));
    let d = support::start(&peering(&[url("moql", &a)], 4));
    let link = support::link::DelayLink::start(
        "127.0.0.1:0".parse().unwrap(),
        b.local_addr(),
        Duration::from_millis(5),
        Duration::ZERO,
    );
    let via_link = format!("moql://{}/", link.addr());
    let priced = format!("{}?cost=5", url("moql", &d));
    let c = support::start(&peering(&[via_link, priced], 3));
    let publisher = publishing(&a);
    until_has(&c, "demo", true);
    std::thread::sleep(Duration::from_millis(300));
    let s = subscriber(&c, false);
    assert_eq!(frames(&s, 3).len(), 3);
    assert!(b.stats().frames_delivered > 0, "the cheaper link serves");
    assert_eq!(d.stats().frames_delivered, 0);

    link.cut();
    let cut = Instant::now();
    let mut group = 1;
    let resumed = loop {
        send_group(&publisher, group);
        group += 1;
        match s.events.recv_timeout(Duration::from_millis(250)) {
            Ok(AppEvent::Frame { seq, .. }) if seq >= 1 => break cut.elapsed(),
            Ok(AppEvent::Ended { code, .. }) => panic!("the subscription ended ({code})"),
            _ => {}
        }
        assert!(
            cut.elapsed() < moq_relay::cluster::PEER_IDLE + Duration::from_secs(3),
            "not resumed"
        );
    };
    assert!(d.stats().frames_delivered > 0, "the other route serves");
    eprintln!("resumed {resumed:?} after the link went silent");
    s.close();
    publisher.close();
    for r in [c, d, b, a] {
        r.stop().unwrap();
    }
}
