//! Access control end to end over 127.0.0.1: relays with a moq-token key and public prefixes,
//! clients of this crate carrying tokens in the lite-05 SETUP path or the WebTransport URL.

mod support;
#[path = "support/tokens.rs"]
mod tokens;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use moq_relay::auth::{Auth, Keys};
use moq_relay::client::{Client, ClientOptions};
use moq_relay::lite::{ErrorCode, Role, Version};
use moq_relay::relay::{AppCmd, AppEvent, Limits};
use moq_relay::server::Server;
use serde_json::json;
use support::{WAIT, wait};
use tokens::token;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A two-core relay checking tokens with the test key, and these public prefixes.
fn relay(publish: &[&str], subscribe: &[&str]) -> Server {
    let mut config = support::config(2, Limits::default());
    config.auth = tokens::keyed(publish, subscribe);
    support::start(&config)
}

#[derive(Clone, Copy, Debug)]
enum Via {
    Lite05,
    Web,
}

/// A session at `path` (query included), or why there is none.
fn dial(server: &Server, via: Via, path: &str) -> Result<Client, String> {
    let mut opts = ClientOptions::new(server.local_addr(), Version::Lite05);
    opts.path = path.into();
    if let Via::Web = via {
        opts.alpns = vec!["h3".into()];
        opts.web_protocols = vec!["moq-lite-05".into()];
    }
    support::session(opts, WAIT).map(|(c, _)| c)
}

/// Why the session ends: a lite-05 client is set up without waiting for the server, so a
/// refusal at SETUP comes after its `Ready`.
fn closed(c: &Client) -> String {
    loop {
        match c.events.recv_timeout(WAIT) {
            Ok(AppEvent::Closed { reason }) => return reason,
            Ok(_) => {}
            Err(_) => panic!("the session is still open"),
        }
    }
}

/// Why a session at `path` is refused.
fn refused(server: &Server, via: Via, path: &str) -> String {
    match dial(server, via, path) {
        Ok(c) => closed(&c),
        Err(e) => e,
    }
}

fn at(server: &Server, via: Via, path: &str) -> Client {
    dial(server, via, path).unwrap_or_else(|e| panic!("no session at {path} ({via:?}): {e}"))
}

fn with(root: &str, token: &str) -> String {
    format!("{root}?jwt={token}")
}

fn publish(c: &Client, path: &str, payload: &'static [u8]) {
    c.send(AppCmd::Publish { path: path.into() });
    c.send(AppCmd::Frame {
        path: path.into(),
        track: "video".into(),
        seq: 0,
        timestamp: 0,
        payload: Bytes::from_static(payload),
    });
}

fn subscribe(c: &Client, id: u64, path: &str) {
    c.send(AppCmd::Subscribe {
        id,
        path: path.into(),
        track: "video".into(),
    });
}

/// The payload of the next frame of subscription `id`, or the code it ended with.
fn next(c: &Client, id: u64) -> Result<Vec<u8>, u32> {
    wait(c, "a frame or the end", |e| match e {
        AppEvent::Frame { id: i, payload, .. } if i == id => Some(Ok(payload.concat())),
        AppEvent::Ended { id: i, code } if i == id => Some(Err(code)),
        _ => None,
    })
}

/// The broadcasts announced to `c` as active, once none has come for half a second.
fn announced(c: &Client) -> Vec<String> {
    let mut paths = Vec::new();
    while let Ok(e) = c.events.recv_timeout(Duration::from_millis(500)) {
        if let AppEvent::Announced { path, active: true } = e {
            paths.push(path);
        }
    }
    paths.sort();
    paths
}

fn broadcasts_become(server: &Server, want: &[&str]) {
    support::until(
        Instant::now() + WAIT,
        Duration::from_millis(20),
        || format!("broadcasts {:?}, want {want:?}", server.broadcasts()),
        || {
            let mut b = server.broadcasts();
            b.sort();
            b == want
        },
    );
}

/// Inside the token's grant publishing and subscribing work; outside it a broadcast is not
/// routed, a subscription is refused `unauthorized` and nothing is announced.
fn scoped(via: Via) {
    let server = relay(&[], &[]);
    let alice = token(json!({"root": "demo", "put": ["alice"], "get": [""]}));
    let publisher = at(&server, via, &with("demo", &alice));
    publish(&publisher, "alice", b"from alice");
    publish(&publisher, "bob", b"not hers");
    broadcasts_become(&server, &["demo/alice"]);
    let all = token(json!({"root": "demo", "put": [""]}));
    let other = at(&server, via, &with("demo", &all));
    publish(&other, "carol", b"from carol");
    broadcasts_become(&server, &["demo/alice", "demo/carol"]);

    // Only what the token may subscribe to is announced.
    let watcher = token(json!({"root": "demo", "get": ["alice"]}));
    let subscriber = at(&server, via, &with("/demo/", &watcher));
    assert_eq!(announced(&subscriber), ["alice"]);
    subscribe(&subscriber, 1, "alice");
    assert_eq!(next(&subscriber, 1).unwrap(), b"from alice");
    subscribe(&subscriber, 2, "carol");
    assert_eq!(next(&subscriber, 2), Err(ErrorCode::UNAUTHORIZED.0));

    // From the top, the same token sees its grant under the token's root.
    let top = at(&server, via, &with("", &alice));
    assert_eq!(announced(&top), ["demo/alice", "demo/carol"]);
    subscribe(&top, 3, "demo/alice");
    assert_eq!(next(&top, 3).unwrap(), b"from alice");
    for c in [publisher, other, subscriber, top] {
        c.close();
    }
    server.stop().unwrap();
}

#[test]
fn scoped_token_on_raw_quic() {
    scoped(Via::Lite05);
}

#[test]
fn scoped_token_on_webtransport() {
    scoped(Via::Web);
}

/// No token, a bad one, an expired one or one for another root: a WebTransport CONNECT gets
/// 401 or 403 and no session; raw QUIC is closed with `unauthorized` (6) and the reason.
#[test]
fn refusals_say_why() {
    let server = relay(&[], &[]);
    let good = json!({"root": "demo", "get": [""]});
    let forged = {
        let t = token(good.clone());
        let (rest, _) = t.rsplit_once('.').unwrap();
        format!("{rest}.AAAA")
    };
    let cases = [
        ("demo".to_string(), 401),
        (with("demo", &forged), 401),
        (
            with(
                "demo",
                &token(json!({"root": "demo", "get": [""], "exp": 1000})),
            ),
            401,
        ),
        (with("other", &token(good.clone())), 403),
        (with("demo", &token(json!({"root": "demo"}))), 403),
    ];
    for (path, status) in cases {
        let e = refused(&server, Via::Web, &path);
        assert!(e.contains(&format!("status {status}")), "{path}: {e}");
        let e = refused(&server, Via::Lite05, &path);
        assert!(e.contains("(code 6)"), "{path}: {e}");
    }
    // Before lite-05 a raw QUIC client cannot send a token: with no public access, nothing.
    let old = ClientOptions::new(server.local_addr(), Version::Lite03);
    let e = support::session(old, WAIT).map_or_else(|e| e, |(c, _)| closed(&c));
    assert!(e.contains("(code 6)"), "{e}");
    // A lite-05 SETUP that declares a role the token does not grant is refused too.
    let mut opts = ClientOptions::new(server.local_addr(), Version::Lite05);
    opts.path = with("demo", &token(good));
    opts.role = Role::Publisher;
    let e = support::session(opts.clone(), WAIT).map_or_else(|e| e, |(c, _)| closed(&c));
    assert!(e.contains("role is not granted (code 6)"), "{e}");
    opts.role = Role::Subscriber;
    support::session(opts, WAIT).unwrap().0.close();
    // Every refused connection (closed by the relay) is forgotten once it drains.
    support::until(
        Instant::now() + WAIT,
        Duration::from_millis(50),
        || format!("{:?}", server.census()),
        || server.census().iter().all(|c| c.sessions == 0),
    );
    server.stop().unwrap();
}

/// A broadcast is taken over only by a session allowed to publish it: one without `put` there
/// is ignored and the subscriber keeps the first publisher's frames; one with it takes over.
#[test]
fn takeover_needs_put() {
    let server = relay(&[], &[]);
    let owner = token(json!({"root": "demo", "put": [""], "get": [""]}));
    let first = at(&server, Via::Lite05, &with("demo", &owner));
    publish(&first, "cam", b"first");
    broadcasts_become(&server, &["demo/cam"]);
    let subscriber = at(&server, Via::Web, &with("demo", &owner));
    subscribe(&subscriber, 1, "cam");
    assert_eq!(next(&subscriber, 1).unwrap(), b"first");

    let intruder = token(json!({"root": "demo", "put": ["mine"], "get": [""]}));
    let intruder = at(&server, Via::Lite05, &with("demo", &intruder));
    publish(&intruder, "cam", b"hijacked");
    first.send(AppCmd::Frame {
        path: "cam".into(),
        track: "video".into(),
        seq: 1,
        timestamp: 1,
        payload: Bytes::from_static(b"still first"),
    });
    assert_eq!(next(&subscriber, 1).unwrap(), b"still first");

    let second = at(&server, Via::Lite05, &with("demo", &owner));
    publish(&second, "cam", b"second");
    support::until(
        Instant::now() + WAIT,
        Duration::ZERO,
        || "the allowed publisher's frames".into(),
        || next(&subscriber, 1).is_ok_and(|p| p == b"second"),
    );
    for c in [first, subscriber, intruder, second] {
        c.close();
    }
    server.stop().unwrap();
}

/// A session ends within a second of its token's `exp`, closed with `unauthorized`.
#[test]
fn token_expiry_closes_the_session() {
    let server = relay(&[], &[]);
    let exp = unix_now() + 2;
    let t = token(json!({"root": "demo", "get": [""], "exp": exp}));
    for via in [Via::Lite05, Via::Web] {
        let c = at(&server, via, &with("demo", &t));
        let reason = closed(&c);
        let late = SystemTime::now()
            .duration_since(UNIX_EPOCH + Duration::from_secs(exp))
            .expect("closed before exp");
        assert!(
            late < Duration::from_secs(1),
            "{via:?} closed {late:?} after exp"
        );
        if let Via::Lite05 = via {
            assert!(reason.contains("token expired (code 6)"), "{reason}");
        }
    }
    server.stop().unwrap();
}

/// Public prefixes beside a key: anonymous sessions (even before lite-05) get them and no
/// more; tokens work as before. Alone, they refuse every token (there is no key).
#[test]
fn public_prefixes_alone_and_beside_keys() {
    let server = relay(&["drop"], &["live", "drop"]);
    let anon = support::connect(&server, Version::Lite03);
    publish(&anon, "drop/x", b"anonymous");
    publish(&anon, "live/y", b"not public to publish");
    broadcasts_become(&server, &["drop/x"]);
    let viewer = at(&server, Via::Web, "live");
    subscribe(&viewer, 1, "y");
    assert_eq!(next(&viewer, 1), Err(ErrorCode::UNROUTABLE.0));
    let dropper = at(&server, Via::Lite05, "");
    subscribe(&dropper, 2, "drop/x");
    assert_eq!(next(&dropper, 2).unwrap(), b"anonymous");
    let e = refused(&server, Via::Web, "secret");
    assert!(e.contains("status 401"), "{e}");
    let all = token(json!({"put": [""], "get": [""]}));
    let holder = at(&server, Via::Lite05, &with("secret", &all));
    publish(&holder, "s", b"with a token");
    broadcasts_become(&server, &["drop/x", "secret/s"]);
    for c in [anon, viewer, dropper, holder] {
        c.close();
    }
    server.stop().unwrap();

    let mut config = support::config(1, Limits::default());
    config.auth = Arc::new(Auth::new(
        Keys::None,
        vec!["anon".into()],
        vec!["anon".into()],
    ));
    let server = support::start(&config);
    at(&server, Via::Web, "anon/room").close();
    let e = refused(&server, Via::Web, &with("anon", &all));
    assert!(e.contains("status 401"), "a token and no key: {e}");
    let e = refused(&server, Via::Lite05, "other");
    assert!(e.contains("(code 6)"), "{e}");
    server.stop().unwrap();
}
