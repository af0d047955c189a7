//! End-to-end: the relay on 127.0.0.1 with publisher and subscriber clients of this crate, for
//! every moq-lite version.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{AppCmd, AppEvent};
use crate::client::{Client, ClientOptions};
use crate::config::{Config, ServerTls};
use crate::lite::Version;
use crate::net::{IoMode, SocketOptions};
use crate::quic::tls::ClientVerify;
use crate::server::Server;

pub(crate) fn relay(threads: usize) -> Server {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let config = Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        threads,
        io: IoMode::Auto,
        socket: SocketOptions::default(),
        steer: true,
        pin: false,
        tls: ServerTls {
            pairs: Vec::new(),
            generate: vec!["localhost".into()],
        },
        client_bind: "127.0.0.1:0".parse().unwrap(),
        client_verify: ClientVerify::Disabled,
        log_level: "info".into(),
    };
    Server::start(&config).unwrap()
}

const WAIT: Duration = Duration::from_secs(10);

/// Wait for the first event `f` accepts, failing on a closed session.
fn wait<T>(client: &Client, what: &str, mut f: impl FnMut(AppEvent) -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match client.events.recv_timeout(left) {
            Ok(AppEvent::Closed { reason }) => {
                panic!("session closed while waiting for {what}: {reason}")
            }
            Ok(ev) => {
                if let Some(v) = f(ev) {
                    return v;
                }
            }
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }
}

fn connect(server: &Server, version: Version) -> Client {
    let c = Client::connect(ClientOptions::new(server.local_addr(), version)).unwrap();
    let negotiated = wait(&c, "setup", |e| match e {
        AppEvent::Ready { version: v } => Some(v),
        _ => None,
    });
    assert_eq!(negotiated, version);
    c
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
        let f = wait(c, "frame", |e| match e {
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
    let server = relay(2);
    let publisher = connect(&server, version);
    publisher.send(AppCmd::Publish {
        path: "demo".into(),
    });
    // Group 0 is written before anyone subscribes: a late joiner gets it from frame 0.
    for i in 0..3 {
        frame(&publisher, 0, i, 100 + i * 1000);
    }

    let subscriber = connect(&server, version);
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

    // The publisher leaves: the subscription ends and the broadcast is announced as ended.
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
