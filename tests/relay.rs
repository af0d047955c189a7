//! End-to-end: the relay on 127.0.0.1 with publisher and subscriber clients of this crate, for
//! every moq-lite version.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;

use moq_relay::client::{Client, ClientOptions};
use moq_relay::lite::Version;
use moq_relay::quic::tls::ClientVerify;
use moq_relay::relay::{AppCmd, AppEvent, Limits};
use moq_relay::server::Server;
use support::{WAIT, connect, relay, relay_with, wait};

/// How a test client reaches the relay.
#[derive(Clone, Copy, Debug)]
enum Via {
    /// Raw QUIC with this version's ALPN.
    Raw(Version),
    /// WebTransport offering these subprotocols; the relay should settle on the version.
    Web(&'static [&'static str], Version),
}

fn connect_via(server: &Server, via: Via) -> Client {
    match via {
        Via::Raw(v) => connect(server, v),
        Via::Web(protocols, v) => support::connect_web(server, protocols, v),
    }
}

fn payload(group: u64, index: usize, size: usize) -> Bytes {
    Bytes::from(
        (0..size)
            .map(|i| (i as u64 * 31 + group * 7 + index as u64) as u8)
            .collect::<Vec<u8>>(),
    )
}

fn frame(p: &Client, group: u64, index: usize, size: usize) {
    p.send(AppCmd::Frame {
        path: "demo".into(),
        track: "video".into(),
        seq: group,
        timestamp: group * 1000 + index as u64,
        payload: payload(group, index, size),
    });
}

fn group_done(p: &Client, seq: u64) {
    p.send(AppCmd::GroupDone {
        path: "demo".into(),
        track: "video".into(),
        seq,
    });
}

/// Collect frames of subscription `id` until `count` arrived; returns (seq, index, bytes).
fn frames(c: &Client, id: u64, count: usize) -> Vec<(u64, usize, Vec<u8>)> {
    let mut got = Vec::new();
    while got.len() < count {
        let what = format!(
            "frame {} of {count} (have {:?})",
            got.len(),
            got.iter()
                .map(|f: &(u64, usize, Vec<u8>)| (f.0, f.1))
                .collect::<Vec<_>>()
        );
        let f = wait(c, &what, |e| match e {
            AppEvent::Frame {
                id: i,
                seq,
                index,
                payload,
                ..
            } if i == id => Some((
                seq,
                index,
                payload
                    .iter()
                    .flat_map(|b| b.iter().copied())
                    .collect::<Vec<u8>>(),
            )),
            AppEvent::Ended { id: i, code } if i == id => {
                panic!("subscription ended early with {code}")
            }
            _ => None,
        });
        got.push(f);
    }
    got
}

fn publish_subscribe(version: Version) {
    publish_subscribe_via(Via::Raw(version), Via::Raw(version));
}

fn publish_subscribe_via(publisher: Via, subscriber: Via) {
    let server = relay(2);
    let publisher = connect_via(&server, publisher);
    publisher.send(AppCmd::Publish {
        path: "demo".into(),
    });
    // Group 0 is written before anyone subscribes: a late joiner gets it from frame 0.
    for i in 0..3 {
        frame(&publisher, 0, i, 100 + i * 1000);
    }

    let subscriber = connect_via(&server, subscriber);
    wait(&subscriber, "announce", |e| match e {
        AppEvent::Announced { path, active: true } if path == "demo" => Some(()),
        _ => None,
    });
    subscriber.send(AppCmd::Subscribe {
        id: 7,
        path: "demo".into(),
        track: "video".into(),
    });
    let late = frames(&subscriber, 7, 3);
    for (i, (seq, index, bytes)) in late.iter().enumerate() {
        assert_eq!((*seq, *index), (0, i));
        assert_eq!(bytes[..], payload(0, i, 100 + i * 1000)[..]);
    }

    // Live: the rest of group 0, then groups 1 and 2 with sizes from 0 to 64 KiB.
    frame(&publisher, 0, 3, 0);
    group_done(&publisher, 0);
    let sizes = [0usize, 1, 1200, 65536];
    for g in 1..3 {
        for (i, size) in sizes.iter().enumerate() {
            frame(&publisher, g, i, *size);
        }
        group_done(&publisher, g);
    }
    // Groups travel on their own streams and may interleave; within a group frames are ordered.
    let mut live = frames(&subscriber, 7, 1 + 2 * sizes.len());
    for g in 0..3 {
        let order: Vec<usize> = live.iter().filter(|f| f.0 == g).map(|f| f.1).collect();
        assert!(order.is_sorted(), "group {g} out of order: {order:?}");
    }
    live.sort_by_key(|f| (f.0, f.1));
    assert_eq!(live[0], (0, 3, Vec::new()));
    for (k, (seq, index, bytes)) in live[1..].iter().enumerate() {
        let (g, i) = (1 + k as u64 / sizes.len() as u64, k % sizes.len());
        assert_eq!((*seq, *index), (g, i));
        assert_eq!(
            bytes[..],
            payload(g, i, sizes[i])[..],
            "group {g} frame {i}"
        );
    }

    // The publisher ends the broadcast and leaves: the subscription ends and the broadcast is
    // announced as ended at once (a publisher that only vanishes lingers; tests/cluster.rs).
    publisher.send(AppCmd::Unpublish {
        path: "demo".into(),
    });
    publisher.close();
    let mut ended = false;
    let mut unannounced = false;
    while !(ended && unannounced) {
        wait(&subscriber, "end of broadcast", |e| {
            match e {
                AppEvent::Ended { id: 7, .. } => ended = true,
                AppEvent::Announced {
                    path,
                    active: false,
                } if path == "demo" => unannounced = true,
                _ => return None,
            }
            Some(())
        });
    }
    subscriber.close();
    server.stop().unwrap();
}

#[test]
fn lite01_publish_subscribe() {
    publish_subscribe(Version::Lite01);
}

#[test]
fn lite02_publish_subscribe() {
    publish_subscribe(Version::Lite02);
}

#[test]
fn lite03_publish_subscribe() {
    publish_subscribe(Version::Lite03);
}

#[test]
fn lite04_publish_subscribe() {
    publish_subscribe(Version::Lite04);
}

#[test]
fn lite05_publish_subscribe() {
    publish_subscribe(Version::Lite05);
}

/// With two relay cores and subscribers on both, every subscriber gets every frame and the
/// publisher's core hands each frame to the other core once, not once per subscriber.
#[test]
fn fan_out_across_cores_sends_each_frame_once() {
    use std::sync::atomic::Ordering;
    let server = relay(2);
    let publisher = connect(&server, Version::Lite05);
    publisher.send(AppCmd::Publish {
        path: "demo".into(),
    });
    // The kernel spreads new connections over the cores by hash: dial until both have some.
    let accepted = || -> Vec<u64> {
        server
            .engine()
            .stats()
            .iter()
            .map(|s| s.accepted.load(Ordering::Relaxed))
            .collect()
    };
    let mut subs: Vec<Client> = (0..8).map(|_| connect(&server, Version::Lite05)).collect();
    while accepted().contains(&0) && subs.len() < 64 {
        subs.push(connect(&server, Version::Lite05));
    }
    let accepted = accepted();
    assert!(
        accepted.iter().all(|&n| n > 0),
        "sessions on both cores: {accepted:?}"
    );
    for s in &subs {
        wait(s, "announce", |e| {
            matches!(e, AppEvent::Announced { active: true, .. }).then_some(())
        });
        s.send(AppCmd::Subscribe {
            id: 1,
            path: "demo".into(),
            track: "video".into(),
        });
    }
    // A first group proves every subscription is wired before counting.
    frame(&publisher, 0, 0, 10);
    group_done(&publisher, 0);
    for s in &subs {
        frames(s, 1, 1);
    }
    let before = server.stats().cross_core_frames;
    let groups = 5;
    let per_group = 4;
    for g in 1..=groups {
        for i in 0..per_group {
            frame(&publisher, g, i, 3000);
        }
        group_done(&publisher, g);
    }
    for s in &subs {
        let mut got = frames(s, 1, (groups as usize) * per_group);
        got.sort_by_key(|f| (f.0, f.1));
        for (k, (seq, index, bytes)) in got.iter().enumerate() {
            let (g, i) = (1 + (k / per_group) as u64, k % per_group);
            assert_eq!((*seq, *index), (g, i));
            assert_eq!(bytes[..], payload(g, i, 3000)[..]);
        }
    }
    let crossed = server.stats().cross_core_frames - before;
    assert_eq!(
        crossed,
        groups * per_group as u64,
        "each frame crosses to the other core once"
    );
    for s in subs {
        s.close();
    }
    publisher.close();
    server.stop().unwrap();
}

/// A raw moq-lite-03 peer for tests: opens streams with given bytes, never reads data streams,
/// and reports what the relay did to it.
mod raw {
    use std::sync::mpsc;

    use moq_relay::quic::{ConnectionHandle, Ctx, Dir, Event, Handler, StreamEvent, StreamId};

    #[derive(Debug, PartialEq)]
    pub enum Seen {
        Connected,
        /// The relay reset or stopped one of our streams (index in the script).
        Refused(usize),
        /// The relay finished its half of our bidi stream (index) after sending these bytes.
        Answered(usize, Vec<u8>),
        Lost(String),
    }

    pub struct Raw {
        pub target: std::net::SocketAddr,
        pub script: Vec<(Dir, Vec<u8>, bool)>,
        pub seen: mpsc::Sender<Seen>,
        pub streams: Vec<StreamId>,
        pub received: std::collections::HashMap<usize, Vec<u8>>,
    }

    impl Handler for Raw {
        fn on_start(&mut self, ctx: &mut Ctx<'_>) {
            ctx.connect(self.target, "localhost", None)
                .expect("connect");
        }

        fn on_event(&mut self, ctx: &mut Ctx<'_>, ch: ConnectionHandle, event: Event) {
            match event {
                Event::Connected => {
                    let _ = self.seen.send(Seen::Connected);
                    for (dir, bytes, fin) in &self.script {
                        let conn = ctx.conn(ch).unwrap();
                        let id = conn.streams().open(*dir).unwrap();
                        conn.send_stream(id).write(bytes).unwrap();
                        if *fin {
                            conn.send_stream(id).finish().unwrap();
                        }
                        self.streams.push(id);
                    }
                }
                Event::Stream(StreamEvent::Stopped { id, .. }) => {
                    if let Some(i) = self.streams.iter().position(|s| *s == id) {
                        let _ = self.seen.send(Seen::Refused(i));
                    }
                }
                Event::Stream(StreamEvent::Readable { id }) => {
                    // Only our bidi streams: read to see a reset.
                    let Some(i) = self.streams.iter().position(|s| *s == id) else {
                        return;
                    };
                    let conn = ctx.conn(ch).unwrap();
                    let mut rs = conn.recv_stream(id);
                    let Ok(mut chunks) = rs.read(true) else {
                        return;
                    };
                    let mut reset = false;
                    let mut fin = false;
                    loop {
                        match chunks.next(usize::MAX) {
                            Ok(Some(c)) => self.received.entry(i).or_default().extend(&c.bytes[..]),
                            Ok(None) => {
                                fin = true;
                                break;
                            }
                            Err(quinn_proto::ReadError::Reset(_)) => {
                                reset = true;
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    let _ = chunks.finalize();
                    if reset {
                        let _ = self.seen.send(Seen::Refused(i));
                    } else if fin {
                        let got = self.received.remove(&i).unwrap_or_default();
                        let _ = self.seen.send(Seen::Answered(i, got));
                    }
                }
                Event::ConnectionLost { reason } => {
                    let _ = self.seen.send(Seen::Lost(reason.to_string()));
                }
                _ => {}
            }
        }
    }
}

fn raw_peer(
    server: &Server,
    script: Vec<(moq_relay::quic::Dir, Vec<u8>, bool)>,
    limits: moq_relay::quic::TransportLimits,
) -> (
    moq_relay::quic::Engine,
    std::sync::mpsc::Receiver<raw::Seen>,
) {
    raw_peer_alpn(server, b"moq-lite-03", script, limits)
}

fn raw_peer_alpn(
    server: &Server,
    alpn: &[u8],
    script: Vec<(moq_relay::quic::Dir, Vec<u8>, bool)>,
    limits: moq_relay::quic::TransportLimits,
) -> (
    moq_relay::quic::Engine,
    std::sync::mpsc::Receiver<raw::Seen>,
) {
    use moq_relay::quic::{ClientRole, Engine, EngineConfig, client_config, tls};
    let tls = tls::client_config(&ClientVerify::Disabled, &[alpn]).unwrap();
    let config = EngineConfig {
        threads: 1,
        pin: false,
        client: Some(ClientRole {
            bind: "127.0.0.1:0".parse().unwrap(),
            config: Some(client_config(tls, &limits).unwrap()),
        }),
        ..Default::default()
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let target = server.local_addr();
    let engine = Engine::start(config, move |_| raw::Raw {
        target,
        script: script.clone(),
        seen: tx.clone(),
        streams: Vec::new(),
        received: Default::default(),
    })
    .unwrap();
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), raw::Seen::Connected);
    (engine, rx)
}

fn encode(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut b = Vec::new();
    f(&mut b);
    b
}

fn subscribe_bytes(version: Version, id: u64, broadcast: &str) -> Vec<u8> {
    use moq_relay::lite::{ControlType, Message, Subscribe, SubscribeOptions};
    encode(|b| {
        ControlType::Subscribe.encode(version, b).unwrap();
        Subscribe {
            id,
            broadcast: broadcast.into(),
            track: "video".into(),
            options: SubscribeOptions {
                priority: 1,
                ordered: false,
                max_latency: Duration::ZERO,
                start_group: None,
                end_group: None,
            },
        }
        .encode(version, b)
        .unwrap();
    })
}

/// A subscriber that never reads: its groups beyond the in-flight bound are reset, and the
/// other subscriber still gets every frame promptly.
#[test]
fn slow_subscriber_is_bounded_and_does_not_delay_others() {
    let server = relay(1);
    let publisher = connect(&server, Version::Lite03);
    publisher.send(AppCmd::Publish {
        path: "demo".into(),
    });
    let fast = connect(&server, Version::Lite03);
    wait(&fast, "announce", |e| {
        matches!(e, AppEvent::Announced { active: true, .. }).then_some(())
    });
    fast.send(AppCmd::Subscribe {
        id: 1,
        path: "demo".into(),
        track: "video".into(),
    });
    let tiny = moq_relay::quic::TransportLimits {
        stream_window: 16 * 1024,
        connection_window: 32 * 1024,
        ..Default::default()
    };
    let (slow, _seen) = raw_peer(
        &server,
        vec![(
            moq_relay::quic::Dir::Bi,
            subscribe_bytes(Version::Lite03, 0, "demo"),
            false,
        )],
        tiny,
    );
    std::thread::sleep(Duration::from_millis(200));

    let groups = 40u64;
    let per_group = 4;
    let start = Instant::now();
    for g in 0..groups {
        for i in 0..per_group {
            frame(&publisher, g, i, 16 * 1024);
        }
        group_done(&publisher, g);
    }
    let got = frames(&fast, 1, groups as usize * per_group);
    let elapsed = start.elapsed();
    assert_eq!(got.len(), groups as usize * per_group);
    assert!(
        elapsed < Duration::from_secs(5),
        "the fast subscriber was held up: {elapsed:?}"
    );
    let reset = server.stats().groups_reset;
    assert!(
        reset >= groups - 4 - 2,
        "only {reset} of the slow subscriber's groups were reset"
    );
    slow.shutdown();
    slow.join().unwrap();
    fast.close();
    publisher.close();
    server.stop().unwrap();
}

/// Malformed input on each stream type gets that stream refused; the session and the relay
/// keep serving.
#[test]
fn malformed_streams_are_refused_without_killing_sessions() {
    use moq_relay::quic::Dir;
    let v = Version::Lite03;
    let server = relay(1);
    let truncated = {
        let mut b = subscribe_bytes(v, 0, "demo");
        b.truncate(b.len() - 3);
        b
    };
    let oversize = vec![0x02, 0x80, 0x10, 0x00, 0x00, 0x00]; // SUBSCRIBE claiming 1 MiB
    let bad_utf8 = vec![0x01, 0x03, 0x02, 0xff, 0xfe]; // ANNOUNCE_INTEREST prefix "\xff\xfe"
    let unknown_bidi = vec![0x3f, 0x00];
    let unknown_uni = vec![0x2a, 0x01, 0x02];
    let stray_group = vec![0x00, 0x02, 0x09, 0x00, 0x03, b'a', b'b', b'c']; // unknown subscribe id 9
    let setup_on_03 = vec![0x01, 0x00];
    let script = vec![
        (Dir::Bi, truncated, true),
        (Dir::Bi, oversize, false),
        (Dir::Bi, bad_utf8, false),
        (Dir::Bi, unknown_bidi, false),
        (Dir::Uni, unknown_uni, false),
        (Dir::Uni, stray_group, false),
        (Dir::Uni, setup_on_03, false),
        (Dir::Bi, subscribe_bytes(v, 5, "nowhere"), false),
    ];
    let n = script.len();
    let (peer, seen) = raw_peer(&server, script, Default::default());
    let mut refused = std::collections::BTreeSet::new();
    let deadline = Instant::now() + WAIT;
    while refused.len() < n && Instant::now() < deadline {
        match seen.recv_timeout(Duration::from_millis(200)) {
            Ok(raw::Seen::Refused(i)) => {
                refused.insert(i);
            }
            Ok(raw::Seen::Lost(why)) => panic!("the session was closed: {why}"),
            _ => {}
        }
    }
    assert_eq!(
        refused,
        (0..n).collect(),
        "every malformed stream is refused"
    );

    // The relay still serves: a fresh pair works end to end.
    let publisher = connect(&server, v);
    publisher.send(AppCmd::Publish {
        path: "demo".into(),
    });
    let sub = connect(&server, v);
    wait(&sub, "announce", |e| {
        matches!(e, AppEvent::Announced { active: true, .. }).then_some(())
    });
    sub.send(AppCmd::Subscribe {
        id: 1,
        path: "demo".into(),
        track: "video".into(),
    });
    std::thread::sleep(Duration::from_millis(100));
    frame(&publisher, 0, 0, 500);
    assert_eq!(frames(&sub, 1, 1)[0].2, payload(0, 0, 500)[..]);
    // The malformed peer's session is still up.
    assert!(!seen.try_iter().any(|s| matches!(s, raw::Seen::Lost(_))));
    peer.shutdown();
    peer.join().unwrap();
    sub.close();
    publisher.close();
    server.stop().unwrap();
}

/// lite-05 SETUP Path is the session root: a publisher at `room` publishing `demo` is
/// `room/demo` to a subscriber at the root, and plain `demo` to one at `room`.
#[test]
fn lite05_setup_path_is_the_session_root() {
    let server = relay(1);
    let at = |path: &str| {
        let mut opts = ClientOptions::new(server.local_addr(), Version::Lite05);
        opts.path = path.into();
        let c = Client::connect(opts).unwrap();
        wait(&c, "setup", |e| {
            matches!(e, AppEvent::Ready { .. }).then_some(())
        });
        c
    };
    let publisher = at("/room/");
    publisher.send(AppCmd::Publish {
        path: "demo".into(),
    });
    frame(&publisher, 0, 0, 42);
    let root = at("");
    let room = at("room");
    for (c, expect) in [(&root, "room/demo"), (&room, "demo")] {
        let path = wait(c, "announce", |e| match e {
            AppEvent::Announced { path, active: true } => Some(path),
            _ => None,
        });
        assert_eq!(path, expect);
        c.send(AppCmd::Subscribe {
            id: 3,
            path: expect.into(),
            track: "video".into(),
        });
        assert_eq!(frames(c, 3, 1)[0].2, payload(0, 0, 42)[..]);
    }
    for c in [publisher, root, room] {
        c.close();
    }
    server.stop().unwrap();
}

/// A lite-05 subscriber gets the publisher's own TRACK_INFO through the relay, whichever core
/// each lands on; an older publisher's tracks get the reference defaults; an unknown broadcast
/// is unroutable.
#[test]
fn track_info_is_forwarded_from_the_publisher() {
    use moq_relay::lite::{ErrorCode, TrackInfo};

    let server = relay(2);
    let info = TrackInfo {
        priority: 3,
        ordered: true,
        max_latency: Duration::from_millis(2500),
        timescale: 1_000_000,
    };
    let publisher = connect(&server, Version::Lite05);
    publisher.send(AppCmd::TrackInfo {
        path: "demo".into(),
        track: "video".into(),
        info,
    });
    publisher.send(AppCmd::Publish {
        path: "demo".into(),
    });
    let old = connect(&server, Version::Lite03);
    old.send(AppCmd::Publish { path: "old".into() });

    let subscribers: Vec<Client> = (0..4).map(|_| connect(&server, Version::Lite05)).collect();
    for s in &subscribers {
        for p in ["demo", "old"] {
            wait(s, "announce", |e| match e {
                AppEvent::Announced { path, active: true } if path == p => Some(()),
                _ => None,
            });
        }
    }
    let ask = |c: &Client, id: u64, p: &str| {
        c.send(AppCmd::Info {
            id,
            path: p.into(),
            track: "video".into(),
        });
        wait(c, "track info", |e| match e {
            AppEvent::TrackInfo { id: i, result } if i == id => Some(result),
            _ => None,
        })
    };
    for (n, s) in subscribers.iter().enumerate() {
        // Twice: the second answer comes from the relay's cache.
        for round in 0..2 {
            let id = (n * 10 + round) as u64;
            assert_eq!(ask(s, id, "demo"), Ok(info), "subscriber {n} round {round}");
        }
        assert_eq!(ask(s, 100 + n as u64, "old"), Ok(TrackInfo::default()));
        assert_eq!(
            ask(s, 200 + n as u64, "nobody"),
            Err(ErrorCode::UNROUTABLE.0)
        );
    }
}

/// What @moq/lite 0.2 offers in WT-Available-Protocols (observed from Chromium).
const BROWSER_PROTOCOLS: &[&str] = &["moq-lite-04", "moq-lite-03", "moql", "moqt-17", "moqt-16"];

#[test]
fn webtransport_publisher_reaches_raw_quic_subscriber() {
    publish_subscribe_via(
        Via::Web(BROWSER_PROTOCOLS, Version::Lite04),
        Via::Raw(Version::Lite05),
    );
}

#[test]
fn raw_quic_publisher_reaches_webtransport_subscriber() {
    publish_subscribe_via(
        Via::Raw(Version::Lite02),
        Via::Web(&["moq-lite-05", "moq-lite-04"], Version::Lite05),
    );
}

/// Without WT-Available-Protocols the version comes from the SETUP exchange, as with `moql`.
#[test]
fn webtransport_without_protocols_negotiates_in_setup() {
    publish_subscribe_via(
        Via::Web(&[], Version::Lite02),
        Via::Web(&["moq-lite-03"], Version::Lite03),
    );
}

/// A group that lasts longer than the cache age (the reference clock's minute) still gets its
/// FIN forwarded when it arrives after the next group has opened (found by the interop check).
#[test]
fn long_group_ends_after_the_next_one_opens() {
    let mut limits = Limits::default();
    limits.cache.age = Duration::from_millis(200);
    let server = relay_with(2, limits);
    let publisher = connect(&server, Version::Lite05);
    publisher.send(AppCmd::Publish {
        path: "demo".into(),
    });
    let subscribers: Vec<Client> = (0..4).map(|_| connect(&server, Version::Lite03)).collect();
    for (n, s) in subscribers.iter().enumerate() {
        wait(s, "announce", |e| match e {
            AppEvent::Announced { path, active: true } if path == "demo" => Some(()),
            _ => None,
        });
        s.send(AppCmd::Subscribe {
            id: n as u64,
            path: "demo".into(),
            track: "video".into(),
        });
    }
    frame(&publisher, 0, 0, 10);
    for (n, s) in subscribers.iter().enumerate() {
        assert_eq!(frames(s, n as u64, 1)[0].0, 0);
    }
    std::thread::sleep(Duration::from_millis(500));
    frame(&publisher, 1, 0, 10);
    group_done(&publisher, 0);
    frame(&publisher, 0, 9, 10);
    for (n, s) in subscribers.iter().enumerate() {
        let mut done0 = false;
        let mut got1 = false;
        while !(done0 && got1) {
            wait(s, "group 0 end and group 1", |e| {
                match e {
                    AppEvent::GroupDone { id, seq: 0 } if id == n as u64 => done0 = true,
                    AppEvent::Frame { id, seq: 1, .. } if id == n as u64 => got1 = true,
                    AppEvent::Frame { id, seq: 0, .. } if id == n as u64 => {
                        panic!("frame after the group's end")
                    }
                    _ => return None,
                }
                Some(())
            });
        }
    }
}

/// A WebTransport stream whose header arrives together with a large group (more than any
/// control message limit) is taken whole: only the header is parsed, the payload passes on.
#[test]
fn webtransport_group_larger_than_a_message_arrives_whole() {
    // The smallest message limit: any read of a group stream holds more than it.
    let mut limits = Limits::default();
    limits.session.max_message = 256;
    let server = relay_with(1, limits);
    let publisher = connect_via(&server, Via::Web(BROWSER_PROTOCOLS, Version::Lite04));
    publisher.send(AppCmd::Publish {
        path: "demo".into(),
    });
    // The whole group is waiting at the publisher when the relay subscribes, so it arrives in
    // a burst behind the stream header.
    let sizes = [40_000usize, 40_000, 40_000, 40_000, 0, 1];
    for (i, size) in sizes.iter().enumerate() {
        frame(&publisher, 0, i, *size);
    }
    let subscriber = connect(&server, Version::Lite05);
    wait(&subscriber, "announce", |e| match e {
        AppEvent::Announced { path, active: true } if path == "demo" => Some(()),
        _ => None,
    });
    subscriber.send(AppCmd::Subscribe {
        id: 1,
        path: "demo".into(),
        track: "video".into(),
    });
    let got = frames(&subscriber, 1, sizes.len());
    for (i, (seq, index, bytes)) in got.iter().enumerate() {
        assert_eq!((*seq, *index), (0, i));
        assert_eq!(bytes[..], payload(0, i, sizes[i])[..], "frame {i}");
    }
}

/// Requests that are not a valid WebTransport CONNECT get their HTTP/3 status on their stream,
/// and the connection lives on: GET is 405, a CONNECT for another protocol or without a path
/// is 400, an oversize header section is 431; grease frames before HEADERS are skipped.
#[test]
fn webtransport_bad_requests_get_http_statuses() {
    use moq_relay::quic::Dir;
    use moq_relay::web;

    let server = relay(1);
    let base = [
        (":method", "CONNECT"),
        (":scheme", "https"),
        (":authority", "localhost"),
        (":path", "/room"),
    ];
    let with = |change: &[(&str, &str)], drop: &str| -> Vec<u8> {
        let mut fields: Vec<(&str, &str)> =
            base.iter().copied().filter(|(n, _)| *n != drop).collect();
        for (n, v) in change {
            match fields.iter_mut().find(|(f, _)| f == n) {
                Some(f) => f.1 = v,
                None => fields.push((n, v)),
            }
        }
        web::headers_frame(&fields).to_vec()
    };
    let big = "x".repeat(20_000);
    // A reserved (grease) frame type 0x21 with 3 bytes, then the request.
    let mut greased = vec![0x21, 0x03, 1, 2, 3];
    greased.extend(with(&[(":method", "GET")], ":protocol"));
    let script = vec![
        (Dir::Uni, web::control_stream(false).to_vec(), false),
        (Dir::Bi, with(&[(":method", "GET")], ""), true),
        (Dir::Bi, with(&[(":protocol", "websocket")], ""), true),
        (
            Dir::Bi,
            with(&[(":protocol", "webtransport")], ":path"),
            true,
        ),
        (
            Dir::Bi,
            with(&[(":protocol", "webtransport"), ("x-big", &big)], ""),
            true,
        ),
        (Dir::Bi, greased, true),
    ];
    let expect = [(1usize, 405u16), (2, 400), (3, 400), (4, 431), (5, 405)];
    let (engine, seen) = raw_peer_alpn(&server, b"h3", script, Default::default());
    let mut statuses = std::collections::HashMap::new();
    while statuses.len() < expect.len() {
        match seen
            .recv_timeout(WAIT)
            .expect("a response to every request")
        {
            raw::Seen::Answered(i, bytes) => {
                let mut reader = web::ResponseReader::new();
                let (_, progress) = reader.feed(&bytes).unwrap();
                let web::ResponseProgress::Response(r) = progress else {
                    panic!("request {i}: no response in {bytes:?}");
                };
                statuses.insert(i, r.status);
            }
            raw::Seen::Lost(reason) => panic!("connection lost: {reason}"),
            // STOP_SENDING(H3_NO_ERROR) after an early answer (the 431) is allowed.
            raw::Seen::Refused(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    for (i, status) in expect {
        assert_eq!(statuses[&i], status, "request {i}");
    }
    // The relay keeps serving: a real WebTransport client still gets a session.
    let c = connect_via(&server, Via::Web(BROWSER_PROTOCOLS, Version::Lite04));
    c.close();
    engine.shutdown();
    let _ = engine.join();
}

/// A publisher that takes a broadcast over (the old one crashed and restarted under the same
/// name) keeps the subscribers: they move to the new publisher at once, on every core, and
/// the old publisher leaving later ends nothing.
#[test]
fn publisher_takeover_keeps_subscribers() {
    let server = relay(2);
    let old = connect(&server, Version::Lite05);
    old.send(AppCmd::Publish {
        path: "demo".into(),
    });
    let subscribers: Vec<Client> = (0..4).map(|_| connect(&server, Version::Lite04)).collect();
    for (n, s) in subscribers.iter().enumerate() {
        wait(s, "announce", |e| match e {
            AppEvent::Announced { path, active: true } if path == "demo" => Some(()),
            _ => None,
        });
        s.send(AppCmd::Subscribe {
            id: n as u64,
            path: "demo".into(),
            track: "video".into(),
        });
    }
    frame(&old, 0, 0, 10);
    for (n, s) in subscribers.iter().enumerate() {
        assert_eq!(frames(s, n as u64, 1)[0].0, 0);
    }

    // The new publisher starts its own sequence over while the old session still lives.
    let new = connect(&server, Version::Lite02);
    new.send(AppCmd::Publish {
        path: "demo".into(),
    });
    // Its groups go out only once the relay has subscribed; keep writing until all have one.
    let deadline = Instant::now() + WAIT;
    let mut seq = 100;
    let mut got = vec![false; subscribers.len()];
    while got.iter().any(|g| !g) {
        assert!(
            Instant::now() < deadline,
            "subscribers with the new publisher: {got:?}"
        );
        frame(&new, seq, 0, 20);
        group_done(&new, seq);
        for (n, s) in subscribers.iter().enumerate() {
            while let Ok(e) = s.events.recv_timeout(Duration::from_millis(20)) {
                match e {
                    AppEvent::Frame {
                        id,
                        seq: sq,
                        payload: chunks,
                        ..
                    } if id == n as u64 && sq >= 100 => {
                        let bytes: Vec<u8> = chunks.iter().flat_map(|b| b.to_vec()).collect();
                        assert_eq!(bytes[..], payload(sq, 0, 20)[..]);
                        got[n] = true;
                    }
                    AppEvent::Ended { id, code } if id == n as u64 => {
                        panic!("subscription {n} ended with {code} on takeover")
                    }
                    _ => {}
                }
            }
        }
        seq += 1;
    }

    // The old publisher going away now ends nothing: the next group still arrives.
    old.close();
    std::thread::sleep(Duration::from_millis(200));
    frame(&new, seq, 0, 30);
    group_done(&new, seq);
    for (n, s) in subscribers.iter().enumerate() {
        wait(s, "a group after the old publisher left", |e| match e {
            AppEvent::Frame { id, seq: sq, .. } if id == n as u64 && sq == seq => Some(()),
            AppEvent::Ended { id, code } if id == n as u64 => {
                panic!("subscription {n} ended with {code} when the old publisher left")
            }
            _ => None,
        });
    }
}
