//! Raw engine throughput: one QUIC connection over 127.0.0.1, one bulk uni stream per
//! iteration, client and server each on one core of this crate's engine, with GSO/GRO on and
//! off. The payload is one shared `Bytes` written with `write_chunks`, as the relay's fan-out
//! path does.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use crossbeam_channel::{Receiver, Sender};
use moq_relay::net::{Doorbell, IoMode, SocketOptions};
use moq_relay::quic::tls::{self, ClientVerify, ServerCerts};
use moq_relay::quic::{
    ClientRole, ConnectionHandle, Ctx, Dir, Engine, EngineConfig, Event, Handler, ServerRole,
    StreamEvent, StreamId, TransportLimits, client_config, server_config,
};

const ALPN: &[u8] = b"bench";
const STREAM_BYTES: usize = 32 << 20;

/// Reads and drops everything; reports each finished stream's length.
struct Sink {
    done: mpsc::Sender<u64>,
    got: std::collections::HashMap<StreamId, u64>,
}

impl Sink {
    fn read(&mut self, ctx: &mut Ctx<'_>, ch: ConnectionHandle, id: StreamId) {
        let Some(conn) = ctx.conn(ch) else { return };
        let mut stream = conn.recv_stream(id);
        let Ok(mut chunks) = stream.read(false) else {
            return;
        };
        let n = self.got.entry(id).or_default();
        loop {
            match chunks.next(usize::MAX) {
                Ok(Some(c)) => *n += c.bytes.len() as u64,
                Ok(None) => {
                    let _ = self.done.send(*n);
                    break;
                }
                Err(_) => break,
            }
        }
        let _ = chunks.finalize();
    }
}

impl Handler for Sink {
    fn on_event(&mut self, ctx: &mut Ctx<'_>, ch: ConnectionHandle, event: Event) {
        match event {
            Event::Stream(StreamEvent::Opened { dir }) => {
                while let Some(id) = ctx.conn(ch).and_then(|c| c.streams().accept(dir)) {
                    self.read(ctx, ch, id);
                }
            }
            Event::Stream(StreamEvent::Readable { id }) => self.read(ctx, ch, id),
            _ => {}
        }
    }
}

/// Dials once; on each command opens a uni stream and writes the payload `Bytes` into it.
struct Source {
    target: std::net::SocketAddr,
    conn: Option<ConnectionHandle>,
    connected: bool,
    commands: Receiver<()>,
    ready: mpsc::Sender<()>,
    payload: Bytes,
    pending: Vec<(StreamId, Vec<Bytes>)>,
}

impl Source {
    fn pump(&mut self, ctx: &mut Ctx<'_>) {
        let Some(ch) = self.conn else { return };
        let Some(conn) = ctx.conn(ch) else { return };
        self.pending.retain_mut(|(id, chunks)| {
            let mut send = conn.send_stream(*id);
            let _ = send.write_chunks(chunks);
            chunks.retain(|c| !c.is_empty());
            if chunks.is_empty() {
                let _ = send.finish();
                false
            } else {
                true
            }
        });
    }
}

impl Handler for Source {
    fn on_start(&mut self, ctx: &mut Ctx<'_>) {
        self.conn = Some(
            ctx.connect(self.target, "localhost", None)
                .expect("connect"),
        );
    }

    fn on_event(&mut self, ctx: &mut Ctx<'_>, _ch: ConnectionHandle, event: Event) {
        match event {
            Event::Connected => {
                self.connected = true;
                let _ = self.ready.send(());
            }
            Event::Stream(StreamEvent::Writable { .. }) => self.pump(ctx),
            _ => {}
        }
    }

    fn on_wake(&mut self, ctx: &mut Ctx<'_>) {
        while self.commands.try_recv().is_ok() {
            let Some(ch) = self.conn else { continue };
            let Some(id) = ctx.conn(ch).and_then(|c| c.streams().open(Dir::Uni)) else {
                continue;
            };
            self.pending.push((id, vec![self.payload.clone()]));
        }
        self.pump(ctx);
    }
}

struct Pair {
    server: Engine,
    client: Engine,
    commands: Sender<()>,
    doorbell: Arc<Doorbell>,
    done: mpsc::Receiver<u64>,
}

fn pair(offload: bool, io: IoMode) -> Pair {
    let limits = TransportLimits {
        stream_window: 8 << 20,
        connection_window: 32 << 20,
        send_window: 32 << 20,
        ..Default::default()
    };
    let socket = SocketOptions {
        gso: offload,
        gro: offload,
        ..Default::default()
    };
    let certs = ServerCerts::generate(&["localhost".into()]).unwrap();
    let (done_tx, done) = mpsc::channel();
    let server = Engine::start(
        EngineConfig {
            threads: 1,
            io,
            socket: socket.clone(),
            server: Some(ServerRole {
                bind: "127.0.0.1:0".parse().unwrap(),
                config: server_config(certs.server_config(&[ALPN]), &limits).unwrap(),
                admission: Default::default(),
            }),
            ..Default::default()
        },
        move |_| Sink {
            done: done_tx.clone(),
            got: Default::default(),
        },
    )
    .unwrap();
    let target = server.local_addr().unwrap();
    let tls = tls::client_config(&ClientVerify::Disabled, &[ALPN]).unwrap();
    let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
    let (ready_tx, ready) = mpsc::channel();
    let payload = Bytes::from(vec![0xa5u8; STREAM_BYTES]);
    let client = Engine::start(
        EngineConfig {
            threads: 1,
            io,
            socket,
            client: Some(ClientRole {
                bind: "127.0.0.1:0".parse().unwrap(),
                config: Some(client_config(tls, &limits).unwrap()),
            }),
            ..Default::default()
        },
        move |_| Source {
            target,
            conn: None,
            connected: false,
            commands: cmd_rx.clone(),
            ready: ready_tx.clone(),
            payload: payload.clone(),
            pending: Vec::new(),
        },
    )
    .unwrap();
    ready
        .recv_timeout(Duration::from_secs(10))
        .expect("connected");
    let doorbell = client.doorbells()[0].clone();
    Pair {
        server,
        client,
        commands: cmd_tx,
        doorbell,
        done,
    }
}

fn bulk(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine_bulk_stream");
    group.throughput(Throughput::Bytes(STREAM_BYTES as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    for (name, offload, io) in [
        ("gso_gro_uring", true, IoMode::Auto),
        ("no_offload_uring", false, IoMode::Auto),
        ("gso_gro_epoll", true, IoMode::Epoll),
    ] {
        let p = pair(offload, io);
        group.bench_function(name, |b| {
            b.iter(|| {
                p.commands.send(()).unwrap();
                p.doorbell.ring();
                let n = p
                    .done
                    .recv_timeout(Duration::from_secs(30))
                    .expect("stream done");
                assert_eq!(n, STREAM_BYTES as u64);
            })
        });
        p.client.shutdown();
        p.server.shutdown();
        p.client.join().unwrap();
        p.server.join().unwrap();
    }
    group.finish();
}

criterion_group!(benches, bulk);
criterion_main!(benches);
