//! End-to-end over 127.0.0.1: IETF moq-transport sessions (drafts 16 to 19, raw QUIC and
//! WebTransport) beside moq-lite ones on one relay. Publishers and subscribers are clients of
//! this crate that speak the draft their ALPN names.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;

use moq_relay::client::{Client, ClientOptions};
use moq_relay::ietf;
use moq_relay::lite::Version;
use moq_relay::relay::{AppCmd, AppEvent, Limits};
use moq_relay::server::Server;
use support::{WAIT, frames, wait};

/// How a test client reaches the relay.
#[derive(Clone, Copy, Debug)]
enum Via {
    /// Raw QUIC with a draft's ALPN.
    Ietf(ietf::Version),
    /// WebTransport offering a draft's protocol.
    IetfWeb(ietf::Version),
    Lite05,
}

fn connect(server: &Server, via: Via) -> Client {
    let mut opts = ClientOptions::new(server.local_addr(), Version::Lite05);
    let code = match via {
        Via::Lite05 => return support::connect(server, Version::Lite05),
        Via::Ietf(v) => {
            opts.alpns = vec![v.alpn().into()];
            v.code()
        }
        Via::IetfWeb(v) => {
            opts.alpns = vec!["h3".into()];
            opts.web_protocols = vec![v.alpn().into()];
            v.code()
        }
    };
    let client = Client::connect(opts).unwrap();
    let version = wait(&client, "the session", |e| match e {
        AppEvent::Ready { version } => Some(version),
        _ => None,
    });
    assert_eq!(version, code, "{via:?}");
    client
}

/// A 2-core relay whose broadcasts end soon after their publisher vanishes.
fn relay() -> Server {
    let limits = Limits {
        broadcast_linger: Duration::from_millis(200),
        ..Limits::default()
    };
    support::relay_with(2, limits)
}

fn payload(group: u64, index: usize) -> Bytes {
    Bytes::from(format!("group {group} frame {index} ").repeat(1 + index * 50))
}

fn send_group(p: &Client, group: u64, frames: usize) {
    for index in 0..frames {
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

fn until_announced(server: &Server, present: bool) {
    support::until(
        Instant::now() + WAIT,
        Duration::from_millis(20),
        || format!("broadcasts {:?}", server.broadcasts()),
        || server.broadcasts().iter().any(|b| b == "demo") == present,
    );
}

fn subscribe(c: &Client) {
    c.send(AppCmd::Subscribe {
        id: 1,
        path: "demo".into(),
        track: "video".into(),
    });
}

/// A publisher and a subscriber through the relay: a late joiner gets the latest group from
/// its first frame, then the live groups, byte-exact; a publisher that goes ends the track.
fn through(server: &Server, publisher: Via, subscriber: Via) {
    let name = format!("{publisher:?} -> {subscriber:?}");
    let p = connect(server, publisher);
    p.send(AppCmd::Publish {
        path: "demo".into(),
    });
    send_group(&p, 0, 3);
    until_announced(server, true);
    let s = connect(server, subscriber);
    subscribe(&s);
    let got = frames(&s, 3);
    assert_eq!(
        got.iter().map(|f| (f.0, f.1)).collect::<Vec<_>>(),
        [(0, 0), (0, 1), (0, 2)],
        "{name}"
    );
    for g in 1..=3 {
        send_group(&p, g, 2);
        let got = frames(&s, 2);
        assert_eq!(got[0].0, g, "{name}");
        assert_eq!(got[1].2, payload(g, 1)[..], "{name}");
    }
    p.close();
    wait(&s, "the end of the track", |e| match e {
        AppEvent::Ended { id: 1, .. } => Some(()),
        _ => None,
    });
    until_announced(server, false);
    s.close();
}

#[test]
fn every_draft_publishes_to_moq_lite_and_back() {
    let server = relay();
    for v in moq_relay::session::IETF_VERSIONS {
        through(&server, Via::Ietf(v), Via::Lite05);
        through(&server, Via::Lite05, Via::Ietf(v));
    }
    server.stop().unwrap();
}

#[test]
fn ietf_to_ietf_over_raw_quic_and_webtransport() {
    use ietf::Version::*;
    let server = relay();
    through(&server, Via::Ietf(Draft18), Via::Ietf(Draft18));
    through(&server, Via::Ietf(Draft17), Via::IetfWeb(Draft19));
    through(&server, Via::IetfWeb(Draft18), Via::Ietf(Draft19));
    through(&server, Via::IetfWeb(Draft17), Via::Lite05);
    through(&server, Via::IetfWeb(Draft16), Via::Ietf(Draft16));
    through(&server, Via::Ietf(Draft16), Via::IetfWeb(Draft18));
    server.stop().unwrap();
}

/// Subscribers on both cores of the relay (sessions land on either), of both protocols, of
/// one IETF publisher.
#[test]
fn many_subscribers_across_cores() {
    let server = relay();
    let p = connect(&server, Via::Ietf(ietf::Version::Draft18));
    p.send(AppCmd::Publish {
        path: "demo".into(),
    });
    send_group(&p, 0, 2);
    until_announced(&server, true);
    let subs: Vec<Client> = (0..6)
        .map(|i| {
            let via = match i % 3 {
                0 => Via::Lite05,
                1 => Via::Ietf(ietf::Version::Draft19),
                _ => Via::IetfWeb(ietf::Version::Draft17),
            };
            let s = connect(&server, via);
            subscribe(&s);
            s
        })
        .collect();
    for s in &subs {
        assert_eq!(frames(s, 2)[1].2, payload(0, 1)[..]);
    }
    send_group(&p, 1, 2);
    for s in &subs {
        let got = frames(s, 2);
        assert_eq!((got[0].0, got[1].0), (1, 1));
    }
    // Each subscriber got each frame once.
    assert_eq!(server.stats().frames_delivered, 6 * 4);
    for s in subs {
        s.close();
    }
    p.close();
    server.stop().unwrap();
}
