//! Hostile peers against a relay on 127.0.0.1, one test per attack. In each, a well-behaved
//! publisher and subscriber on the same relay keep receiving every frame, in bounded time, and
//! the relay's memory stays bounded. Attackers come from 127.0.0.2 so that limits per source
//! address can tell them from the honest clients on 127.0.0.1.

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;

use moq_relay::client::Client;
use moq_relay::lite::Version;
use moq_relay::net::{IoMode, SocketOptions};
use moq_relay::quic::tls::{self, ClientVerify};
use moq_relay::quic::{
    ClientRole, ConnectionHandle, Ctx, Engine, EngineConfig, Event, Handler, TransportLimits,
    client_config,
};
use moq_relay::relay::{AppCmd, AppEvent, Limits};
use moq_relay::server::Server;
use support::{connect, wait};

/// Where attackers send from.
const ATTACKER: &str = "127.0.0.2:0";

/// The honest pair: a publisher of `demo/video` and a subscriber to it.
struct Honest {
    publisher: Client,
    subscriber: Client,
    next: u64,
}

impl Honest {
    fn start(server: &Server) -> Self {
        let publisher = connect(server, Version::Lite03);
        publisher.send(AppCmd::Publish {
            path: "demo".into(),
        });
        let subscriber = connect(server, Version::Lite03);
        wait(&subscriber, "the announcement", |e| match e {
            AppEvent::Announced { path, active: true } if path == "demo" => Some(()),
            _ => None,
        });
        subscriber.send(AppCmd::Subscribe {
            id: 1,
            path: "demo".into(),
            track: "video".into(),
        });
        let mut honest = Self {
            publisher,
            subscriber,
            next: 0,
        };
        // The subscription is in place once a frame makes it through.
        honest.frame_time();
        honest
    }

    /// Publish one frame (a group of its own) and wait for it: how long it took.
    fn frame_time(&mut self) -> Duration {
        let seq = self.next;
        self.next += 1;
        let sent = Instant::now();
        self.publisher.send(AppCmd::Frame {
            path: "demo".into(),
            track: "video".into(),
            seq,
            timestamp: seq,
            payload: Bytes::from(vec![seq as u8; 1000]),
        });
        self.publisher.send(AppCmd::GroupDone {
            path: "demo".into(),
            track: "video".into(),
            seq,
        });
        wait(
            &self.subscriber,
            &format!("frame of group {seq}"),
            |e| match e {
                AppEvent::Frame {
                    seq: s, payload, ..
                } if s == seq => {
                    assert_eq!(payload.concat(), vec![seq as u8; 1000]);
                    Some(())
                }
                _ => None,
            },
        );
        sent.elapsed()
    }
}

/// This process's resident memory, in KiB.
fn rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn relay(threads: usize, f: impl FnOnce(&mut moq_relay::config::Config)) -> Server {
    let mut config = support::config(threads, Limits::default());
    f(&mut config);
    support::start(&config)
}

/// Real QUIC Initials, each of a new connection attempt, from one socket that never answers:
/// what a spoofed flood looks like to the relay. With Retry once a core is busy, the relay
/// keeps no state for them.
#[test]
fn handshake_flood_costs_no_state() {
    let server = relay(2, |c| c.admission.retry_after = 16);
    let target = server.local_addr();
    let mut honest = Honest::start(&server);
    let before = rss_kb();

    let socket = UdpSocket::bind(ATTACKER).unwrap();
    socket.set_nonblocking(true).unwrap();
    let alpns: &[&[u8]] = &[b"moq-lite-03"];
    let tls = tls::client_config(&ClientVerify::Disabled, alpns).unwrap();
    let config = client_config(tls, &TransportLimits::default()).unwrap();
    let mut endpoint = quinn_proto::Endpoint::new(Arc::default(), None, false, None);
    let mut worst = Duration::ZERO;
    let mut buf = Vec::new();
    const INITIALS: usize = 10_000;
    for i in 0..INITIALS {
        let now = Instant::now();
        let (_, mut conn) = endpoint
            .connect(now, config.clone(), target, "localhost")
            .unwrap();
        buf.clear();
        if let Some(t) = conn.poll_transmit(now, 1, &mut buf) {
            let _ = socket.send_to(&buf[..t.size], target);
        }
        // Paced so that the relay sees most of them rather than its socket dropping them; now
        // and then the honest pair must still get through.
        if i % 50 == 49 {
            std::thread::sleep(Duration::from_millis(1));
        }
        if i % 1000 == 999 {
            worst = worst.max(honest.frame_time());
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    worst = worst.max(honest.frame_time());
    let grown = rss_kb().saturating_sub(before);
    eprintln!("{INITIALS} Initials: RSS grew {grown} KiB; slowest frame {worst:?}");
    // Without Retry each half-open connection costs about 190 KB: 10,000 of them are ~1.9 GB.
    assert!(grown < 64 * 1024, "RSS grew {grown} KiB");
    assert!(worst < Duration::from_millis(500), "a frame took {worst:?}");
}

/// Dials once and reports what the relay's transport parameters allow for DATAGRAM frames.
struct DatagramProbe {
    target: SocketAddr,
    told: std::sync::mpsc::Sender<Option<usize>>,
}

impl Handler for DatagramProbe {
    fn on_start(&mut self, ctx: &mut Ctx<'_>) {
        ctx.connect(self.target, "localhost", None).unwrap();
    }

    fn on_event(&mut self, ctx: &mut Ctx<'_>, ch: ConnectionHandle, event: Event) {
        if let (Event::Connected, Some(conn)) = (event, ctx.conn(ch)) {
            let _ = self.told.send(conn.datagrams().max_size());
        }
    }
}

/// The relay reads no DATAGRAM frames yet, so it must not offer them: a peer could otherwise
/// park about 1.25 MB of them per connection in quinn's receive buffer.
#[test]
fn datagrams_are_not_offered() {
    let server = relay(1, |_| {});
    let (told, heard) = std::sync::mpsc::channel();
    let target = server.local_addr();
    let probe = Engine::start(attacker_config(), move |_| DatagramProbe {
        target,
        told: told.clone(),
    })
    .unwrap();
    let max = heard.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(max, None, "the relay offers DATAGRAM frames");
    probe.shutdown();
    let _ = probe.join();
}

/// A one-core client engine on the attacker's address, offering moq-lite-03.
fn attacker_config() -> EngineConfig {
    let alpns: &[&[u8]] = &[b"moq-lite-03"];
    let tls = tls::client_config(&ClientVerify::Disabled, alpns).unwrap();
    EngineConfig {
        threads: 1,
        io: IoMode::Auto,
        pin: false,
        socket: SocketOptions::default(),
        steer: false,
        server: None,
        client: Some(ClientRole {
            bind: ATTACKER.parse().unwrap(),
            config: Some(client_config(tls, &TransportLimits::default()).unwrap()),
        }),
    }
}

/// Dials `count` connections on start and counts how they end.
struct Dialler {
    target: SocketAddr,
    count: usize,
    up: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
    connected: std::collections::HashSet<ConnectionHandle>,
}

impl Handler for Dialler {
    fn on_start(&mut self, ctx: &mut Ctx<'_>) {
        for _ in 0..self.count {
            ctx.connect(self.target, "localhost", None).unwrap();
        }
    }

    fn on_event(&mut self, _ctx: &mut Ctx<'_>, ch: ConnectionHandle, event: Event) {
        match event {
            Event::Connected => {
                self.connected.insert(ch);
                self.up.fetch_add(1, Ordering::Relaxed);
            }
            Event::ConnectionLost { .. } if !self.connected.remove(&ch) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
            }
            Event::ConnectionLost { .. } => {
                self.up.fetch_sub(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }
}

/// One address opens many real connections and holds them: it gets its share, the rest are
/// refused, and everyone else still connects.
#[test]
fn many_connections_from_one_address_get_a_share() {
    const CAP: usize = 40;
    let server = relay(2, |c| c.admission.max_connections_per_ip = CAP);
    let mut honest = Honest::start(&server);
    let (up, refused) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let config = attacker_config();
    let (target, u, r) = (server.local_addr(), up.clone(), refused.clone());
    let attacker = Engine::start(config, move |_| Dialler {
        target,
        count: 200,
        up: u.clone(),
        refused: r.clone(),
        connected: Default::default(),
    })
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while up.load(Ordering::Relaxed) + refused.load(Ordering::Relaxed) < 200 {
        assert!(
            Instant::now() < deadline,
            "the attacker's dials never all ended"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (up, refused) = (up.load(Ordering::Relaxed), refused.load(Ordering::Relaxed));
    eprintln!("200 dials from one address: {up} up, {refused} refused");
    assert_eq!(up, CAP, "the address holds exactly its share");
    assert_eq!(refused, 200 - CAP);
    // Everyone else: the honest pair, and a newcomer.
    assert!(honest.frame_time() < Duration::from_millis(500));
    let newcomer = connect(&server, Version::Lite05);
    newcomer.close();
    attacker.shutdown();
    let _ = attacker.join();
}
