//! A new subscriber always hears of a live broadcast, whatever order its SETUP and its announce
//! request reach the relay in, and sessions that end leave nothing in any core's tables.
//!
//! The subscriber is a scripted raw-QUIC peer: it writes its streams in steps a few
//! milliseconds apart, so each step leaves in its own packets. The bug this guards against: a
//! request whose stream type came in one packet (quinn: Opened) and whose body came in the next
//! (quinn: Readable) before the session was set up had its body read and dropped, and the
//! subscriber never got an answer.

mod support;

use std::collections::HashMap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use moq_relay::client::Client;
use moq_relay::lite::{
    self, Announce, AnnounceInit, AnnounceOk, AnnounceRequest, AnnounceStatus, ClientSetup,
    ControlType, DataType, Message, Role, Setup, Version,
};
use moq_relay::quic::tls::{self, ClientVerify};
use moq_relay::quic::{
    ClientRole, ConnectionHandle, Ctx, Dir, Engine, EngineConfig, Event, Handler, StreamEvent,
    StreamId, TransportLimits, client_config,
};
use moq_relay::relay::{AppCmd, AppEvent, Limits};
use moq_relay::server::Server;
use support::WAIT;

/// How long a subscriber may take to hear of the broadcast before it counts as a miss.
const ANNOUNCE_WAIT: Duration = Duration::from_secs(2);
/// Between two steps of a script: long enough that each step goes out in its own packets.
const STEP: Duration = Duration::from_millis(3);
const PAIRS: usize = 200;

/// A two-core relay whose unwanted tracks linger only 50 ms, so that ended sessions clear soon.
fn relay() -> Server {
    support::relay_with(
        2,
        Limits {
            track_linger: Duration::from_millis(50),
            ..Limits::default()
        },
    )
}

/// One write of a script: bytes on stream `stream` (opened in `dir` on its first write).
struct Write {
    stream: usize,
    dir: Dir,
    bytes: Vec<u8>,
    fin: bool,
}

fn write(stream: usize, dir: Dir, bytes: Vec<u8>, fin: bool) -> Write {
    Write {
        stream,
        dir,
        bytes,
        fin,
    }
}

/// The orders a subscriber may send its SETUP and its announce request in.
#[derive(Clone, Copy, Debug)]
enum Order {
    /// lite-05: SETUP stream, then the announce request, in one step.
    SetupThenAnnounce,
    /// lite-05: the announce request, then the SETUP stream, in one step.
    AnnounceThenSetup,
    /// lite-05: the SETUP stream's type, the request's type, the request's body, then SETUP's
    /// body: the whole request is in before SETUP can be read.
    AnnounceBeforeSetupReadable,
    /// lite-05: the request's type, its body, then the whole SETUP stream.
    SplitAnnounceThenSetup,
    /// lite-02 over `moql`: CLIENT_SETUP's first byte, the request's type and body, then the
    /// rest of CLIENT_SETUP.
    LegacyAnnounceBeforeSetup,
}

const ORDERS: [Order; 5] = [
    Order::SetupThenAnnounce,
    Order::AnnounceThenSetup,
    Order::AnnounceBeforeSetupReadable,
    Order::SplitAnnounceThenSetup,
    Order::LegacyAnnounceBeforeSetup,
];

impl Order {
    fn version(self) -> Version {
        match self {
            Order::LegacyAnnounceBeforeSetup => Version::Lite02,
            _ => Version::Lite05,
        }
    }

    fn alpn(self) -> &'static [u8] {
        match self {
            Order::LegacyAnnounceBeforeSetup => Version::LEGACY_ALPN.as_bytes(),
            _ => Version::Lite05.alpn().as_bytes(),
        }
    }

    /// The steps of the script and the stream that carries the announce request.
    fn script(self) -> (Vec<Vec<Write>>, usize) {
        let v = self.version();
        let mut setup = Vec::new();
        if v == Version::Lite05 {
            DataType::Setup.encode(v, &mut setup).unwrap();
            Setup {
                role: Role::Both,
                ..Setup::default()
            }
            .encode(v, &mut setup)
            .unwrap();
        } else {
            ClientSetup {
                versions: vec![v.code()],
                parameters: Vec::new(),
            }
            .encode(v, &mut setup)
            .unwrap();
        }
        let mut kind = Vec::new();
        ControlType::Announce.encode(v, &mut kind).unwrap();
        let mut body = Vec::new();
        AnnounceRequest {
            prefix: String::new(),
            exclude_hop: 0,
        }
        .encode(v, &mut body)
        .unwrap();
        let request = [kind.clone(), body.clone()].concat();
        let (s, a) = (0, 1);
        let steps = match self {
            Order::SetupThenAnnounce => vec![vec![
                write(s, Dir::Uni, setup, true),
                write(a, Dir::Bi, request, false),
            ]],
            Order::AnnounceThenSetup => vec![vec![
                write(a, Dir::Bi, request, false),
                write(s, Dir::Uni, setup, true),
            ]],
            Order::AnnounceBeforeSetupReadable => vec![
                vec![write(s, Dir::Uni, setup[..1].to_vec(), false)],
                vec![write(a, Dir::Bi, kind, false)],
                vec![write(a, Dir::Bi, body, false)],
                vec![write(s, Dir::Uni, setup[1..].to_vec(), true)],
            ],
            Order::SplitAnnounceThenSetup => vec![
                vec![write(a, Dir::Bi, kind, false)],
                vec![write(a, Dir::Bi, body, false)],
                vec![write(s, Dir::Uni, setup, true)],
            ],
            // The session stream must be the client's first bidi stream.
            Order::LegacyAnnounceBeforeSetup => vec![
                vec![write(s, Dir::Bi, setup[..1].to_vec(), false)],
                vec![write(a, Dir::Bi, kind, false)],
                vec![write(a, Dir::Bi, body, false)],
                vec![write(s, Dir::Bi, setup[1..].to_vec(), false)],
            ],
        };
        (steps, a)
    }
}

/// What the scripted subscriber reports.
#[derive(Debug)]
enum Heard {
    Connected,
    /// An active broadcast under the announce request.
    Active(String),
    Failed(String),
}

/// A raw subscriber that sends its script step by step and reads the announce stream.
struct Scripted {
    target: std::net::SocketAddr,
    version: Version,
    steps: Vec<Vec<Write>>,
    next: usize,
    announce: usize,
    conn: Option<ConnectionHandle>,
    streams: HashMap<usize, StreamId>,
    buf: Vec<u8>,
    started: bool,
    heard: mpsc::Sender<Heard>,
}

impl Scripted {
    fn step(&mut self, ctx: &mut Ctx<'_>) {
        let Some(ch) = self.conn else { return };
        let Some(writes) = self.steps.get(self.next) else {
            return;
        };
        self.next += 1;
        let Some(conn) = ctx.conn(ch) else { return };
        for w in writes {
            let id = *self
                .streams
                .entry(w.stream)
                .or_insert_with(|| conn.streams().open(w.dir).expect("stream credit"));
            conn.send_stream(id).write(&w.bytes).expect("write");
            if w.fin {
                conn.send_stream(id).finish().expect("finish");
            }
        }
        if self.next < self.steps.len() {
            ctx.wake_at(ctx.now + STEP);
        }
    }

    /// Decode what the relay wrote on the announce stream so far.
    fn answers(&mut self) -> Result<(), lite::DecodeError> {
        let v = self.version;
        loop {
            if !self.started && v == Version::Lite05 {
                let Some((_, used)) = lite::decode_framed::<AnnounceOk>(&self.buf, v, 4096)? else {
                    return Ok(());
                };
                self.buf.drain(..used);
            } else if !self.started {
                let Some((init, used)) = lite::decode_framed::<AnnounceInit>(&self.buf, v, 4096)?
                else {
                    return Ok(());
                };
                self.buf.drain(..used);
                for suffix in init.suffixes {
                    let _ = self.heard.send(Heard::Active(suffix));
                }
            } else {
                let Some((a, used)) = lite::decode_framed::<Announce>(&self.buf, v, 4096)? else {
                    return Ok(());
                };
                self.buf.drain(..used);
                if a.status == AnnounceStatus::Active {
                    let _ = self.heard.send(Heard::Active(a.suffix));
                }
            }
            self.started = true;
        }
    }
}

impl Handler for Scripted {
    fn on_start(&mut self, ctx: &mut Ctx<'_>) {
        if let Err(e) = ctx.connect(self.target, "localhost", None) {
            let _ = self.heard.send(Heard::Failed(format!("connect: {e}")));
        }
    }

    fn on_event(&mut self, ctx: &mut Ctx<'_>, ch: ConnectionHandle, event: Event) {
        match event {
            Event::Connected => {
                self.conn = Some(ch);
                let _ = self.heard.send(Heard::Connected);
                self.step(ctx);
            }
            Event::Stream(StreamEvent::Readable { id })
                if self.streams.get(&self.announce) == Some(&id) =>
            {
                let Some(conn) = ctx.conn(ch) else { return };
                let mut rs = conn.recv_stream(id);
                let Ok(mut chunks) = rs.read(true) else {
                    return;
                };
                while let Ok(Some(c)) = chunks.next(usize::MAX) {
                    self.buf.extend_from_slice(&c.bytes);
                }
                let _ = chunks.finalize();
                if let Err(e) = self.answers() {
                    let _ = self
                        .heard
                        .send(Heard::Failed(format!("announce stream: {e}")));
                }
            }
            Event::ConnectionLost { reason } => {
                let _ = self.heard.send(Heard::Failed(format!("lost: {reason}")));
            }
            _ => {}
        }
    }

    fn on_timer(&mut self, ctx: &mut Ctx<'_>) {
        self.step(ctx);
    }
}

/// Dial the relay with a scripted subscriber in `order`.
fn subscriber(server: &Server, order: Order) -> (Engine, mpsc::Receiver<Heard>) {
    let tls = tls::client_config(&ClientVerify::Disabled, &[order.alpn()]).unwrap();
    let config = EngineConfig {
        threads: 1,
        pin: false,
        client: Some(ClientRole {
            bind: "127.0.0.1:0".parse().unwrap(),
            config: Some(client_config(tls, &TransportLimits::default()).unwrap()),
        }),
        ..Default::default()
    };
    let (tx, rx) = mpsc::channel();
    let target = server.local_addr();
    let engine = Engine::start(config, move |_| {
        let (steps, announce) = order.script();
        Scripted {
            target,
            version: order.version(),
            steps,
            next: 0,
            announce,
            conn: None,
            streams: HashMap::new(),
            buf: Vec::new(),
            started: false,
            heard: tx.clone(),
        }
    })
    .unwrap();
    match rx.recv_timeout(WAIT) {
        Ok(Heard::Connected) => {}
        other => panic!("{order:?}: subscriber did not connect: {other:?}"),
    }
    (engine, rx)
}

fn publisher(server: &Server, name: &str) -> Client {
    let c = support::connect(server, Version::Lite05);
    c.send(AppCmd::Publish { path: name.into() });
    let deadline = Instant::now() + WAIT;
    while !server.broadcasts().iter().any(|b| b == name) {
        assert!(Instant::now() < deadline, "the relay never learned {name}");
        std::thread::sleep(Duration::from_millis(1));
    }
    c
}

/// Wait until no core holds anything of the sessions that ended.
fn assert_tables_empty(server: &Server) {
    let deadline = Instant::now() + WAIT;
    loop {
        let census = server.census();
        assert_eq!(census.len(), 2, "both cores answer");
        if census.iter().all(|c| c.is_empty()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "state left behind after every session ended: {census:#?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// 200 publisher/subscriber pairs on a 2-core relay, each subscriber in one of the orders:
/// every subscriber hears of its publisher's live broadcast.
#[test]
fn every_new_subscriber_hears_of_a_live_broadcast() {
    let server = relay();
    let mut misses = Vec::new();
    for i in 0..PAIRS {
        let order = ORDERS[i % ORDERS.len()];
        let name = format!("clock-{i}");
        let publisher = publisher(&server, &name);
        let (engine, heard) = subscriber(&server, order);
        let deadline = Instant::now() + ANNOUNCE_WAIT;
        let outcome = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match heard.recv_timeout(left) {
                Ok(Heard::Active(path)) if path == name => break None,
                Ok(Heard::Active(_) | Heard::Connected) => {}
                Ok(Heard::Failed(e)) => break Some(e),
                Err(_) => break Some("no announcement".to_string()),
            }
        };
        if let Some(why) = outcome {
            misses.push(format!("pair {i} {order:?}: {why}"));
        }
        engine.shutdown();
        engine.join().unwrap();
        publisher.close();
    }
    assert!(
        misses.is_empty(),
        "{} of {PAIRS} subscribers missed the announcement:\n{}",
        misses.len(),
        misses.join("\n")
    );
    assert_tables_empty(&server);
    server.stop().unwrap();
}

/// Publishers, subscribers on both cores, TRACK_INFO requests and HTTP-style latest-group
/// fetches all end: afterwards no core keeps a session, track, name, replica, announce view
/// entry, TRACK_INFO or waiter of theirs.
#[test]
fn ended_sessions_leave_nothing_behind() {
    let server = relay();
    let publishers: Vec<(String, Client)> = (0..6)
        .map(|i| {
            let name = format!("room-{i}");
            let p = publisher(&server, &name);
            (name, p)
        })
        .collect();
    let mut subscribers = Vec::new();
    for k in 0..12 {
        let c = support::connect(&server, Version::Lite05);
        let (name, _) = &publishers[k % publishers.len()];
        c.send(AppCmd::Subscribe {
            id: 1,
            path: name.clone(),
            track: "video".into(),
        });
        c.send(AppCmd::Info {
            id: 2,
            path: name.clone(),
            track: "video".into(),
        });
        subscribers.push(c);
    }
    // Frames flow to every subscriber, across cores too.
    for seq in 0..2 {
        for (name, p) in &publishers {
            p.send(AppCmd::Frame {
                path: name.clone(),
                track: "video".into(),
                seq,
                timestamp: seq,
                payload: bytes::Bytes::from_static(b"frame"),
            });
            p.send(AppCmd::GroupDone {
                path: name.clone(),
                track: "video".into(),
                seq,
            });
        }
    }
    for c in &subscribers {
        let deadline = Instant::now() + WAIT;
        let (mut framed, mut informed) = (false, false);
        while !(framed && informed) {
            let left = deadline.saturating_duration_since(Instant::now());
            match c.events.recv_timeout(left) {
                Ok(AppEvent::Frame { id: 1, .. }) => framed = true,
                Ok(AppEvent::TrackInfo { id: 2, .. }) => informed = true,
                Ok(AppEvent::Ended { id: 1, code }) => panic!("subscription ended with {code}"),
                Ok(_) => {}
                Err(_) => panic!("no frame or TRACK_INFO (framed {framed}, informed {informed})"),
            }
        }
    }
    let busy = server.census();
    assert!(
        busy.iter().map(|c| c.sessions).sum::<usize>() >= 18,
        "{busy:#?}"
    );
    assert!(busy.iter().all(|c| c.broadcasts == 6), "{busy:#?}");
    // Half the subscribers leave first, then the publishers, then the rest.
    let rest = subscribers.split_off(6);
    for c in subscribers {
        c.close();
    }
    for (_, p) in publishers {
        p.close();
    }
    for c in rest {
        c.close();
    }
    assert_tables_empty(&server);
    server.stop().unwrap();
}
