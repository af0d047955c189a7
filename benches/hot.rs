//! Micro benches of the relay's hot paths, each the code the data path runs:
//!
//! - `group_codec`: a 2 s video group (60 frames of 10 416 bytes) through `GroupWriter` (the
//!   per-subscriber header encoding; counted in frames) and `GroupReader` (decoding the
//!   publisher's stream as quinn delivers it, in 1200-byte chunks; counted in bytes), payload
//!   never copied.
//! - `cross_core_handoff`: one frame handed to another core as the relay does it, through
//!   `Registry::send` (crossbeam channel plus the coalescing doorbell) to a thread that drains
//!   its inbox when rung.
//! - `subscriber_write`: one 10 kB frame written to N subscribers, each its own QUIC
//!   connection with one group stream, as `write_chunks` of the shared `Bytes`, then packetised
//!   and encrypted by `poll_transmit`. Only the sending (relay) side is timed: the in-memory
//!   receivers that read the data and acknowledge it are not.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Wake, Waker};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use moq_relay::lite::{GroupEvent, GroupHeader, GroupReader, GroupWriter, Version};
use moq_relay::net::Doorbell;
use moq_relay::quic::tls::{self, ClientVerify, ServerCerts};
use moq_relay::quic::{TransportLimits, client_config, server_config};
use moq_relay::relay::{CoreMsg, Frame, Link, Registry};
use quinn_proto::{
    ClientConfig, Connection, ConnectionHandle, DatagramEvent, Dir, Endpoint, EndpointConfig,
    ServerConfig, StreamId,
};

const FRAME: usize = 10_416;
const FRAMES_PER_GROUP: usize = 60;

fn group_codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("group_codec");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(3));
    let payload = Bytes::from(vec![0x5au8; FRAME]);
    let bytes = (FRAME * FRAMES_PER_GROUP) as u64;

    for version in [Version::Lite02, Version::Lite05] {
        // Encoding touches headers only: count frames.
        group.throughput(Throughput::Elements(FRAMES_PER_GROUP as u64));
        group.bench_function(BenchmarkId::new("encode", format!("{version:?}")), |b| {
            b.iter(|| {
                let mut writer = GroupWriter::new(version);
                let mut chunks = Vec::with_capacity(2 * FRAMES_PER_GROUP + 1);
                let mut hdr = BytesMut::new();
                writer
                    .header(
                        &GroupHeader {
                            subscribe_id: 7,
                            sequence: 1234,
                        },
                        &mut hdr,
                    )
                    .unwrap();
                chunks.push(hdr.freeze());
                for i in 0..FRAMES_PER_GROUP {
                    let mut hdr = BytesMut::with_capacity(16);
                    writer
                        .frame(FRAME as u64, 1_795_000_000_000 + 33 * i as u64, &mut hdr)
                        .unwrap();
                    chunks.push(hdr.freeze());
                    chunks.push(payload.clone());
                }
                chunks
            })
        });

        // The same group as one wire buffer, cut the way QUIC packets cut it.
        let mut wire = BytesMut::new();
        let mut writer = GroupWriter::new(version);
        writer
            .header(
                &GroupHeader {
                    subscribe_id: 7,
                    sequence: 1234,
                },
                &mut wire,
            )
            .unwrap();
        for i in 0..FRAMES_PER_GROUP {
            writer
                .frame(FRAME as u64, 1_795_000_000_000 + 33 * i as u64, &mut wire)
                .unwrap();
            wire.extend_from_slice(&payload);
        }
        // The reader starts after the stream type, which the session layer consumes.
        let wire = wire.freeze().slice(1..);
        let chunks: Vec<Bytes> = (0..wire.len())
            .step_by(1200)
            .map(|at| wire.slice(at..(at + 1200).min(wire.len())))
            .collect();
        group.throughput(Throughput::Bytes(bytes));
        group.bench_function(BenchmarkId::new("decode", format!("{version:?}")), |b| {
            b.iter(|| {
                let mut reader = GroupReader::new(version, 1 << 25);
                let (mut frames, mut payload_bytes) = (0, 0);
                for chunk in &chunks {
                    reader.push(chunk.clone());
                    while let Some(ev) = reader.poll().unwrap() {
                        match ev {
                            GroupEvent::FrameEnd => frames += 1,
                            GroupEvent::Payload(p) => payload_bytes += p.len(),
                            _ => {}
                        }
                    }
                }
                reader.finish().unwrap();
                assert_eq!(
                    (frames, payload_bytes),
                    (FRAMES_PER_GROUP, FRAME * FRAMES_PER_GROUP)
                );
            })
        });
    }
    group.finish();
}

struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

fn cross_core_handoff(c: &mut Criterion) {
    let mut group = c.benchmark_group("cross_core_handoff");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(1));

    let (tx0, _rx0) = crossbeam_channel::unbounded();
    let (tx1, rx1) = crossbeam_channel::unbounded();
    let bell1 = Arc::new(Doorbell::default());
    let registry = Arc::new(Registry::new(
        vec![
            Link {
                tx: tx0,
                wake: Arc::new(|| {}),
            },
            Link {
                tx: tx1,
                wake: {
                    let bell = bell1.clone();
                    Arc::new(move || bell.ring())
                },
            },
        ],
        1,
        moq_relay::relay::INBOX,
    ));
    let received = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let consumer = {
        let (received, stop, bell) = (received.clone(), stop.clone(), bell1.clone());
        std::thread::spawn(move || {
            let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
            let mut cx = Context::from_waker(&waker);
            while !stop.load(Ordering::Acquire) {
                if bell.poll_rung(&mut cx).is_ready() {
                    let mut n = 0;
                    while let Ok(msg) = rx1.try_recv() {
                        if let CoreMsg::Frame { frame, .. } = msg {
                            std::hint::black_box(frame.size());
                            n += 1;
                        }
                    }
                    received.fetch_add(n, Ordering::Release);
                } else {
                    std::thread::park_timeout(Duration::from_millis(10));
                }
            }
        })
    };
    let frame = Arc::new(Frame::from_bytes(0, Bytes::from(vec![1u8; FRAME])));
    group.bench_function("frame", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            let target = received.load(Ordering::Acquire) + iters;
            // The data path's own send, with its inbox bound: a full inbox is waited out.
            for seq in 0..iters {
                let msg = || CoreMsg::Frame {
                    replica: 1,
                    seq,
                    frame: frame.clone(),
                };
                while !registry.send_data(1, msg()) {
                    std::hint::spin_loop();
                }
            }
            while received.load(Ordering::Acquire) < target {
                std::hint::spin_loop();
            }
            start.elapsed()
        })
    });
    stop.store(true, Ordering::Release);
    bell1.ring();
    consumer.thread().unpark();
    consumer.join().unwrap();
    group.finish();
}

/// Client and server quinn-proto endpoints joined by memory.
struct Sim {
    server: Endpoint,
    client: Endpoint,
    server_config: Arc<ServerConfig>,
    servers: HashMap<ConnectionHandle, Connection>,
    /// Each subscriber connection with the group streams it accepted.
    clients: HashMap<ConnectionHandle, (Connection, Vec<StreamId>)>,
    server_addr: SocketAddr,
    client_addr: SocketAddr,
    buf: Vec<u8>,
    /// Time spent in server-side (relay) work.
    server_time: Duration,
}

impl Sim {
    fn new() -> (Self, ClientConfig) {
        let limits = TransportLimits {
            stream_window: 8 << 20,
            connection_window: 16 << 20,
            send_window: 16 << 20,
            idle_timeout: Duration::from_secs(60),
            keep_alive: None,
            ..Default::default()
        };
        let certs = ServerCerts::generate(&["localhost".into()]).unwrap();
        let server_config = server_config(certs.server_config(&[b"bench"]), &limits).unwrap();
        let tls = tls::client_config(&ClientVerify::Disabled, &[b"bench"]).unwrap();
        let client = client_config(tls, &limits).unwrap();
        let sim = Self {
            server: Endpoint::new(
                Arc::new(EndpointConfig::default()),
                Some(server_config.clone()),
                true,
                None,
            ),
            client: Endpoint::new(Arc::new(EndpointConfig::default()), None, true, None),
            server_config,
            servers: HashMap::new(),
            clients: HashMap::new(),
            server_addr: "127.0.0.1:4443".parse().unwrap(),
            client_addr: "127.0.0.1:50000".parse().unwrap(),
            buf: Vec::with_capacity(65536),
            server_time: Duration::ZERO,
        };
        (sim, client)
    }

    fn connect(&mut self, config: &ClientConfig) {
        let (ch, conn) = self
            .client
            .connect(
                Instant::now(),
                config.clone(),
                self.server_addr,
                "localhost",
            )
            .unwrap();
        self.clients.insert(ch, (conn, Vec::new()));
    }

    /// Move every datagram both ways until nothing is left to send.
    fn run(&mut self) {
        loop {
            let now = Instant::now();
            let mut moved = false;
            // Server side: the relay's work.
            let t = Instant::now();
            let mut to_client = Vec::new();
            for conn in self.servers.values_mut() {
                if conn.poll_timeout().is_some_and(|d| d <= now) {
                    conn.handle_timeout(now);
                }
                while let Some(tx) = conn.poll_transmit(now, 10, &mut self.buf) {
                    split(&self.buf[..tx.size], tx.segment_size, &mut to_client);
                    self.buf.clear();
                }
            }
            self.server_time += t.elapsed();
            moved |= !to_client.is_empty();
            for d in to_client {
                self.deliver_to_client(now, d);
            }

            let mut to_server = Vec::new();
            for (conn, _) in self.clients.values_mut() {
                if conn.poll_timeout().is_some_and(|d| d <= now) {
                    conn.handle_timeout(now);
                }
                while let Some(tx) = conn.poll_transmit(now, 10, &mut self.buf) {
                    split(&self.buf[..tx.size], tx.segment_size, &mut to_server);
                    self.buf.clear();
                }
            }
            moved |= !to_server.is_empty();
            let t = Instant::now();
            for d in to_server {
                self.deliver_to_server(now, d);
            }
            self.server_time += t.elapsed();
            self.drain_clients();
            if !moved {
                return;
            }
        }
    }

    fn deliver_to_server(&mut self, now: Instant, data: BytesMut) {
        let mut resp = Vec::new();
        match self
            .server
            .handle(now, self.client_addr, None, None, data, &mut resp)
        {
            Some(DatagramEvent::NewConnection(incoming)) => {
                let (ch, conn) = self
                    .server
                    .accept(incoming, now, &mut resp, Some(self.server_config.clone()))
                    .map_err(|e| e.cause)
                    .unwrap();
                self.servers.insert(ch, conn);
            }
            Some(DatagramEvent::ConnectionEvent(ch, ev)) => {
                if let Some(conn) = self.servers.get_mut(&ch) {
                    conn.handle_event(ev);
                }
            }
            Some(DatagramEvent::Response(tx)) => {
                let d = BytesMut::from(&resp[..tx.size]);
                self.deliver_to_client(now, d);
            }
            None => {}
        }
        for (ch, conn) in self.servers.iter_mut() {
            while let Some(ev) = conn.poll_endpoint_events() {
                if let Some(back) = self.server.handle_event(*ch, ev) {
                    conn.handle_event(back);
                }
            }
            while conn.poll().is_some() {}
        }
    }

    fn deliver_to_client(&mut self, now: Instant, data: BytesMut) {
        let mut resp = Vec::new();
        if let Some(DatagramEvent::ConnectionEvent(ch, ev)) =
            self.client
                .handle(now, self.server_addr, None, None, data, &mut resp)
            && let Some((conn, _)) = self.clients.get_mut(&ch)
        {
            conn.handle_event(ev);
        }
    }

    /// The subscribers: accept group streams and read everything, returning flow credit.
    fn drain_clients(&mut self) {
        for (ch, (conn, streams)) in self.clients.iter_mut() {
            while let Some(ev) = conn.poll_endpoint_events() {
                if let Some(back) = self.client.handle_event(*ch, ev) {
                    conn.handle_event(back);
                }
            }
            while conn.poll().is_some() {}
            while let Some(id) = conn.streams().accept(Dir::Uni) {
                streams.push(id);
            }
            for id in streams.iter() {
                let mut stream = conn.recv_stream(*id);
                if let Ok(mut chunks) = stream.read(false) {
                    while let Ok(Some(c)) = chunks.next(usize::MAX) {
                        std::hint::black_box(c.bytes.len());
                    }
                    let _ = chunks.finalize();
                }
            }
        }
    }
}

fn split(buf: &[u8], segment: Option<usize>, out: &mut Vec<BytesMut>) {
    let seg = segment.unwrap_or(buf.len()).max(1);
    for chunk in buf.chunks(seg) {
        out.push(BytesMut::from(chunk));
    }
}

fn subscriber_write(c: &mut Criterion) {
    let mut group = c.benchmark_group("subscriber_write");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(3));
    let payload = Bytes::from(vec![0x5au8; FRAME]);
    for n in [1usize, 10, 100] {
        let (mut sim, config) = Sim::new();
        for _ in 0..n {
            sim.connect(&config);
        }
        sim.run();
        assert_eq!(sim.servers.len(), n, "handshakes");
        // One group stream per subscriber.
        let streams: Vec<(ConnectionHandle, StreamId)> = sim
            .servers
            .iter_mut()
            .map(|(ch, conn)| (*ch, conn.streams().open(Dir::Uni).unwrap()))
            .collect();
        let sim = Mutex::new(sim);
        group.throughput(Throughput::Bytes((FRAME * n) as u64));
        group.bench_function(BenchmarkId::new("subscribers", n), |b| {
            b.iter_custom(|iters| {
                let mut sim = sim.lock().unwrap();
                sim.server_time = Duration::ZERO;
                for _ in 0..iters {
                    let t = Instant::now();
                    let mut writer = GroupWriter::new(Version::Lite05);
                    for (ch, id) in &streams {
                        let mut hdr = BytesMut::with_capacity(16);
                        writer.frame(FRAME as u64, 0, &mut hdr).unwrap();
                        let mut chunks = [hdr.freeze(), payload.clone()];
                        let conn = sim.servers.get_mut(ch).unwrap();
                        conn.send_stream(*id).write_chunks(&mut chunks).unwrap();
                        assert!(
                            chunks.iter().all(Bytes::is_empty),
                            "flow control held data back"
                        );
                    }
                    sim.server_time += t.elapsed();
                    sim.run();
                }
                sim.server_time
            })
        });
    }
    group.finish();
}

criterion_group!(benches, group_codec, cross_core_handoff, subscriber_write);
criterion_main!(benches);
