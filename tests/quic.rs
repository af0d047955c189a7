//! End-to-end tests of the engine over 127.0.0.1: real sockets, real TLS, real QUIC, both roles
//! of this crate. A bulk protocol checks every byte in both directions.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use quinn_proto::{ReadError, WriteError};

use moq_relay::net::{IoMode, SocketOptions};
use moq_relay::quic::{
    ClientRole, ConnectionHandle, CoreStats, Ctx, Dir, Engine, EngineConfig, Event, Handler,
    ServerRole, StreamEvent, StreamId, TransportLimits, client_config, server_config, tls,
};

const ALPN: &[u8] = b"bulk-test";

/// Byte `i` of a stream with `len` payload bytes and `seed`: a 16-byte header then a pattern.
fn pattern(len: u64, seed: u64, i: u64) -> u8 {
    match i {
        0..8 => len.to_be_bytes()[i as usize],
        8..16 => seed.to_be_bytes()[i as usize - 8],
        _ => ((i.wrapping_mul(7).wrapping_add(seed)) % 251) as u8,
    }
}

struct Sending {
    total: u64,
    seed: u64,
    len: u64,
    written: u64,
}

#[derive(Default)]
struct Receiving {
    head: Vec<u8>,
    got: u64,
}

#[derive(Clone, Copy)]
struct Plan {
    connections: usize,
    streams: usize,
    bytes: u64,
}

enum Report {
    Done { core: usize },
    Failed(String),
}

/// One handler for both roles. The server checks each client stream and answers it with another
/// pattern, and opens one uni stream of its own; the client checks everything it gets back.
struct Bulk {
    server: bool,
    core: usize,
    plan: Plan,
    target: Option<SocketAddr>,
    sending: HashMap<(ConnectionHandle, StreamId), Sending>,
    receiving: HashMap<(ConnectionHandle, StreamId), Receiving>,
    verified: HashMap<ConnectionHandle, usize>,
    report: mpsc::Sender<Report>,
}

impl Bulk {
    fn new(
        server: bool,
        core: usize,
        plan: Plan,
        target: Option<SocketAddr>,
        report: mpsc::Sender<Report>,
    ) -> Self {
        Self {
            server,
            core,
            plan,
            target,
            sending: HashMap::new(),
            receiving: HashMap::new(),
            verified: HashMap::new(),
            report,
        }
    }

    fn start_send(
        &mut self,
        ctx: &mut Ctx<'_>,
        ch: ConnectionHandle,
        id: StreamId,
        len: u64,
        seed: u64,
    ) {
        self.sending.insert(
            (ch, id),
            Sending {
                total: len + 16,
                seed,
                len,
                written: 0,
            },
        );
        self.write(ctx, ch, id);
    }

    fn write(&mut self, ctx: &mut Ctx<'_>, ch: ConnectionHandle, id: StreamId) {
        let Some(s) = self.sending.get_mut(&(ch, id)) else {
            return;
        };
        let Some(conn) = ctx.conn(ch) else { return };
        let mut chunk = Vec::with_capacity(32 * 1024);
        while s.written < s.total {
            let n = (s.total - s.written).min(32 * 1024);
            chunk.clear();
            chunk.extend((s.written..s.written + n).map(|i| pattern(s.len, s.seed, i)));
            match conn.send_stream(id).write(&chunk) {
                Ok(w) => s.written += w as u64,
                Err(WriteError::Blocked) => return,
                Err(e) => {
                    let _ = self.report.send(Report::Failed(format!("write: {e}")));
                    return;
                }
            }
        }
        let _ = conn.send_stream(id).finish();
        self.sending.remove(&(ch, id));
    }

    fn read(&mut self, ctx: &mut Ctx<'_>, ch: ConnectionHandle, id: StreamId) {
        let Some(conn) = ctx.conn(ch) else { return };
        let mut stream = conn.recv_stream(id);
        let Ok(mut chunks) = stream.read(true) else {
            return;
        };
        let r = self.receiving.entry((ch, id)).or_default();
        let mut finished = false;
        let mut failure = None;
        loop {
            match chunks.next(usize::MAX) {
                Ok(Some(chunk)) => {
                    for &b in chunk.bytes.iter() {
                        if r.head.len() < 16 {
                            r.head.push(b);
                        } else {
                            let len = u64::from_be_bytes(r.head[..8].try_into().unwrap());
                            let seed = u64::from_be_bytes(r.head[8..].try_into().unwrap());
                            if b != pattern(len, seed, r.got + 16) && failure.is_none() {
                                failure = Some(format!("byte {} of stream {id} differs", r.got));
                            }
                            r.got += 1;
                        }
                    }
                }
                Ok(None) => {
                    finished = true;
                    break;
                }
                Err(ReadError::Blocked) => break,
                Err(e) => {
                    failure = Some(format!("read: {e}"));
                    break;
                }
            }
        }
        let _ = chunks.finalize();
        if let Some(f) = failure {
            let _ = self.report.send(Report::Failed(f));
            return;
        }
        if !finished {
            return;
        }
        let r = self.receiving.remove(&(ch, id)).unwrap();
        let len = u64::from_be_bytes(r.head[..8].try_into().unwrap());
        let seed = u64::from_be_bytes(r.head[8..].try_into().unwrap());
        if r.got != len {
            let _ = self.report.send(Report::Failed(format!(
                "stream {id}: {} of {len} bytes",
                r.got
            )));
            return;
        }
        if self.server {
            if id.dir() == Dir::Bi {
                self.start_send(ctx, ch, id, len, seed ^ 0x5a5a);
            }
        } else {
            let n = self.verified.entry(ch).or_default();
            *n += 1;
            if *n == self.plan.streams + 1 {
                let _ = self.report.send(Report::Done { core: self.core });
            }
        }
    }
}

impl Handler for Bulk {
    fn on_start(&mut self, ctx: &mut Ctx<'_>) {
        if let Some(target) = self.target {
            for _ in 0..self.plan.connections {
                ctx.connect(target, "localhost", None).expect("connect");
            }
        }
    }

    fn on_event(&mut self, ctx: &mut Ctx<'_>, ch: ConnectionHandle, event: Event) {
        match event {
            Event::Connected => {
                let (alpn, _) = ctx.handshake(ch).expect("handshake data");
                assert_eq!(alpn.as_deref(), Some(ALPN));
                if self.server {
                    let id = ctx.conn(ch).unwrap().streams().open(Dir::Uni).unwrap();
                    self.start_send(ctx, ch, id, self.plan.bytes, 99);
                } else {
                    for s in 0..self.plan.streams {
                        let id = ctx.conn(ch).unwrap().streams().open(Dir::Bi).unwrap();
                        self.start_send(ctx, ch, id, self.plan.bytes, s as u64 + 1);
                    }
                }
            }
            Event::Stream(StreamEvent::Opened { dir }) => {
                while let Some(id) = ctx.conn(ch).and_then(|c| c.streams().accept(dir)) {
                    self.read(ctx, ch, id);
                }
            }
            Event::Stream(StreamEvent::Readable { id }) => self.read(ctx, ch, id),
            Event::Stream(StreamEvent::Writable { id }) => self.write(ctx, ch, id),
            Event::ConnectionLost { reason } if !ctx.stopping() && !self.server => {
                let _ = self
                    .report
                    .send(Report::Failed(format!("connection lost: {reason}")));
            }
            _ => {}
        }
    }
}

fn certs() -> tls::ServerCerts {
    tls::ServerCerts::generate(&["localhost".into()]).unwrap()
}

struct Setup {
    threads: usize,
    io: IoMode,
    offload: bool,
    steer: bool,
}

fn server(setup: &Setup, plan: Plan) -> Engine {
    let limits = TransportLimits::default();
    let config = EngineConfig {
        threads: setup.threads,
        io: setup.io,
        pin: false,
        socket: SocketOptions {
            gso: setup.offload,
            gro: setup.offload,
            ..Default::default()
        },
        steer: setup.steer,
        server: Some(ServerRole {
            bind: "127.0.0.1:0".parse().unwrap(),
            config: server_config(certs().server_config(&[ALPN]), &limits).unwrap(),
            admission: Default::default(),
        }),
        client: None,
    };
    let (tx, _rx) = mpsc::channel();
    Engine::start(config, move |info| {
        Bulk::new(true, info.core, plan, None, tx.clone())
    })
    .unwrap()
}

fn client(
    setup: &Setup,
    plan: Plan,
    target: SocketAddr,
    verify: tls::ClientVerify,
) -> (Engine, mpsc::Receiver<Report>) {
    let limits = TransportLimits::default();
    let tls = tls::client_config(&verify, &[ALPN]).unwrap();
    let config = EngineConfig {
        threads: setup.threads,
        io: setup.io,
        pin: false,
        socket: SocketOptions {
            gso: setup.offload,
            gro: setup.offload,
            ..Default::default()
        },
        steer: setup.steer,
        server: None,
        client: Some(ClientRole {
            bind: "127.0.0.1:0".parse().unwrap(),
            config: Some(client_config(tls, &limits).unwrap()),
        }),
    };
    let (tx, rx) = mpsc::channel();
    let engine = Engine::start(config, move |info| {
        Bulk::new(false, info.core, plan, Some(target), tx.clone())
    })
    .unwrap();
    (engine, rx)
}

/// Wait for `expect` successful connections; returns how many finished on each client core.
fn collect(rx: &mpsc::Receiver<Report>, expect: usize, cores: usize) -> Vec<usize> {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut per_core = vec![0; cores];
    for _ in 0..expect {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Report::Done { core }) => per_core[core] += 1,
            Ok(Report::Failed(why)) => panic!("transfer failed: {why}"),
            Err(_) => panic!("timed out with {per_core:?} of {expect} connections done"),
        }
    }
    per_core
}

fn stop(engine: Engine) {
    engine.shutdown();
    engine.join().unwrap();
}

fn sum(engine: &Engine, f: impl Fn(&CoreStats) -> &std::sync::atomic::AtomicU64) -> u64 {
    engine
        .stats()
        .iter()
        .map(|s| f(s).load(Ordering::Relaxed))
        .sum()
}

fn bulk_both_directions(setup: Setup) {
    let plan = Plan {
        connections: 2,
        streams: 4,
        bytes: 2 << 20,
    };
    let srv = server(&setup, plan);
    let fp = certs_fingerprint_pin(&srv);
    let (cli, rx) = client(&setup, plan, srv.local_addr().unwrap(), fp);
    collect(&rx, plan.connections, setup.threads);
    assert!(sum(&srv, |s| &s.accepted) >= 2);
    stop(cli);
    stop(srv);
}

/// The test certificate is generated per engine; these tests skip pinning (covered below).
fn certs_fingerprint_pin(_: &Engine) -> tls::ClientVerify {
    tls::ClientVerify::Disabled
}

#[test]
fn bulk_streams_uring_with_offload() {
    bulk_both_directions(Setup {
        threads: 2,
        io: IoMode::Auto,
        offload: true,
        steer: true,
    });
}

#[test]
fn bulk_streams_epoll() {
    bulk_both_directions(Setup {
        threads: 2,
        io: IoMode::Epoll,
        offload: true,
        steer: true,
    });
}

#[test]
fn bulk_streams_without_gso_gro() {
    bulk_both_directions(Setup {
        threads: 2,
        io: IoMode::Auto,
        offload: false,
        steer: true,
    });
}

#[test]
fn bulk_streams_epoll_without_gso_gro() {
    bulk_both_directions(Setup {
        threads: 1,
        io: IoMode::Epoll,
        offload: false,
        steer: false,
    });
}

/// Many connections over two cores: all succeed, both server cores own some, and with the
/// steering program no datagram needs forwarding.
#[test]
fn many_connections_spread_over_cores() {
    let setup = Setup {
        threads: 2,
        io: IoMode::Auto,
        offload: true,
        steer: true,
    };
    let plan = Plan {
        connections: 24,
        streams: 1,
        bytes: 4096,
    };
    let srv = server(&setup, plan);
    let (cli, rx) = client(
        &setup,
        plan,
        srv.local_addr().unwrap(),
        tls::ClientVerify::Disabled,
    );
    let per_client_core = collect(&rx, 2 * plan.connections, 2);
    assert!(
        per_client_core.iter().all(|&n| n == plan.connections),
        "{per_client_core:?}"
    );
    let accepted: Vec<u64> = srv
        .stats()
        .iter()
        .map(|s| s.accepted.load(Ordering::Relaxed))
        .collect();
    assert_eq!(accepted.iter().sum::<u64>(), 48);
    assert!(
        accepted.iter().all(|&n| n > 0),
        "both cores own connections: {accepted:?}"
    );
    assert_eq!(
        sum(&srv, |s| &s.forwarded_out),
        0,
        "cBPF steering should make forwarding unnecessary"
    );
    stop(cli);
    stop(srv);
}

#[test]
fn pinned_fingerprint_accepts_right_and_refuses_wrong() {
    let limits = TransportLimits::default();
    let certs = certs();
    let fp = certs.fingerprints()[0].clone();
    let config = EngineConfig {
        threads: 1,
        pin: false,
        server: Some(ServerRole {
            bind: "127.0.0.1:0".parse().unwrap(),
            config: server_config(certs.server_config(&[ALPN]), &limits).unwrap(),
            admission: Default::default(),
        }),
        ..Default::default()
    };
    let plan = Plan {
        connections: 1,
        streams: 1,
        bytes: 1000,
    };
    let (tx, _rx) = mpsc::channel();
    let srv = Engine::start(config, move |i| {
        Bulk::new(true, i.core, plan, None, tx.clone())
    })
    .unwrap();
    let setup = Setup {
        threads: 1,
        io: IoMode::Auto,
        offload: true,
        steer: false,
    };
    let (cli, rx) = client(
        &setup,
        plan,
        srv.local_addr().unwrap(),
        tls::ClientVerify::Fingerprints(vec![fp]),
    );
    collect(&rx, 1, 1);
    stop(cli);
    let wrong = "00".repeat(32);
    let (cli, rx) = client(
        &setup,
        plan,
        srv.local_addr().unwrap(),
        tls::ClientVerify::Fingerprints(vec![wrong]),
    );
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(Report::Failed(why)) => assert!(why.contains("connection lost"), "{why}"),
        Ok(Report::Done { .. }) => panic!("a wrong fingerprint was accepted"),
        Err(_) => panic!("no verdict on the wrong fingerprint"),
    }
    stop(cli);
    stop(srv);
}

/// A NAT in front of the client that moves to a new source port every few hundred packets.
/// Without steering, the kernel's hash lands some new ports on the core that does not own the
/// connection, which must forward them.
struct Rebinder {
    addr: SocketAddr,
    rebinds: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Rebinder {
    fn start(server: SocketAddr, every: usize, max: usize) -> Self {
        let front = UdpSocket::bind("127.0.0.1:0").unwrap();
        front.set_nonblocking(true).unwrap();
        let addr = front.local_addr().unwrap();
        let rebinds = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (rebinds.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let new_upstream = || {
                let u = UdpSocket::bind("127.0.0.1:0").unwrap();
                u.set_nonblocking(true).unwrap();
                u
            };
            let mut ups = vec![new_upstream()];
            let mut client: Option<SocketAddr> = None;
            let mut buf = vec![0u8; 65536];
            let mut sent = 0usize;
            while !s.load(Ordering::Relaxed) {
                let mut idle = true;
                while let Ok((n, from)) = front.recv_from(&mut buf) {
                    idle = false;
                    client = Some(from);
                    let _ = ups.last().unwrap().send_to(&buf[..n], server);
                    sent += 1;
                    if sent.is_multiple_of(every) && ups.len() <= max {
                        ups.push(new_upstream());
                        r.fetch_add(1, Ordering::Relaxed);
                    }
                }
                for u in &ups {
                    while let Ok((n, _)) = u.recv_from(&mut buf) {
                        idle = false;
                        if let Some(c) = client {
                            let _ = front.send_to(&buf[..n], c);
                        }
                    }
                }
                if idle {
                    std::thread::sleep(Duration::from_micros(100));
                }
            }
        });
        Self {
            addr,
            rebinds,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Rebinder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn nat_rebinding_survives_through_forwarding() {
    let setup = Setup {
        threads: 2,
        io: IoMode::Auto,
        offload: false,
        steer: false,
    };
    let plan = Plan {
        connections: 1,
        streams: 4,
        bytes: 4 << 20,
    };
    let srv = server(&setup, plan);
    let nat = Rebinder::start(srv.local_addr().unwrap(), 200, 40);
    let one = Setup {
        threads: 1,
        ..setup
    };
    let (cli, rx) = client(&one, plan, nat.addr, tls::ClientVerify::Disabled);
    collect(&rx, 1, 1);
    let rebinds = nat.rebinds.load(Ordering::Relaxed);
    assert!(rebinds >= 10, "only {rebinds} rebinds happened");
    let forwarded = sum(&srv, |s| &s.forwarded_out);
    assert!(
        forwarded > 0,
        "no datagram went through the forwarding path in {rebinds} rebinds"
    );
    // Every forwarded datagram reaches its owner: once the client is gone and the last ones
    // are through the cores' inboxes, the two counts agree.
    stop(cli);
    let deadline = Instant::now() + Duration::from_secs(5);
    let (out, into) = loop {
        let (out, into) = (
            sum(&srv, |s| &s.forwarded_out),
            sum(&srv, |s| &s.forwarded_in),
        );
        if out == into || Instant::now() > deadline {
            break (out, into);
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(
        out, into,
        "forwarded datagrams that never reached their owner"
    );
    stop(srv);
}

/// Garbage of every length from 0 to 1500 bytes, with and without a long-header first byte,
/// neither crashes nor stalls the engine: a real client still gets through afterwards.
#[test]
fn garbage_datagrams_are_harmless() {
    let setup = Setup {
        threads: 2,
        io: IoMode::Auto,
        offload: true,
        steer: true,
    };
    let plan = Plan {
        connections: 2,
        streams: 1,
        bytes: 10_000,
    };
    let srv = server(&setup, plan);
    let target = srv.local_addr().unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for len in 0..=1500usize {
        for first in [None, Some(0xc0u8), Some(0x40u8)] {
            let mut d: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            if let (Some(f), Some(b)) = (first, d.first_mut()) {
                *b = f;
            }
            let _ = sock.send_to(&d, target);
        }
        if len % 100 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let (cli, rx) = client(&setup, plan, target, tls::ClientVerify::Disabled);
    collect(&rx, 2 * plan.connections, 2);
    assert!(sum(&srv, |s| &s.rx_datagrams) > 1500);
    stop(cli);
    stop(srv);
}
