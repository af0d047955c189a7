//! Starts one pinned thread per core, each with its socket(s), its `Endpoint` and its
//! [`Handler`], and wires the cross-core inboxes and doorbells between them.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;

use bytes::BytesMut;
use crossbeam_channel::{Receiver, Sender};
use quinn_proto::{EndpointConfig, ServerConfig};

use super::admission::{Admission, AdmissionLimits};
use super::cid::CoreCid;
use super::driver::{Driver, Handler};
use crate::net::{Doorbell, IoMode, SocketOptions, bind_group, bind_one, run_pinned};

/// The server half: where to listen and what to present.
#[derive(Clone)]
pub struct ServerRole {
    pub bind: SocketAddr,
    pub config: Arc<ServerConfig>,
    /// Who may connect: Retry, and caps on handshakes and connections.
    pub admission: AdmissionLimits,
}

/// The client half: where outgoing connections bind and their default config.
#[derive(Clone)]
pub struct ClientRole {
    pub bind: SocketAddr,
    pub config: Option<quinn_proto::ClientConfig>,
}

#[derive(Clone)]
pub struct EngineConfig {
    /// Cores to run; 0 means every core the process may use.
    pub threads: usize,
    pub io: IoMode,
    /// Pin core `i` to CPU `i`.
    pub pin: bool,
    pub socket: SocketOptions,
    /// Attach the reuseport cBPF program that steers datagrams by connection ID.
    pub steer: bool,
    pub server: Option<ServerRole>,
    /// A separate client socket per core; without it, dials leave from the server socket.
    pub client: Option<ClientRole>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            threads: 0,
            io: IoMode::Auto,
            pin: true,
            socket: SocketOptions::default(),
            steer: true,
            server: None,
            client: None,
        }
    }
}

impl EngineConfig {
    /// How many cores `threads` means here.
    pub fn cores(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
        .min(256)
    }
}

/// What a handler factory learns about the core it runs on.
#[derive(Clone)]
pub struct CoreInfo {
    pub core: usize,
    pub cores: usize,
    /// Every core's doorbell, to ring after sending it a message.
    pub doorbells: Arc<[Arc<Doorbell>]>,
    pub io_uring: bool,
}

/// Datagrams waiting in one core's inbox from the others; past it they are dropped (and
/// counted), as a full socket buffer would: QUIC recovers, and a stalled core does not pile
/// up every other core's traffic.
pub(crate) const FORWARD_QUEUE: usize = 2048;

/// A datagram that reached the wrong core, on its way to the owner.
pub(crate) struct Forwarded {
    pub socket: usize,
    pub data: BytesMut,
    pub remote: SocketAddr,
    pub local_ip: Option<IpAddr>,
    pub ecn: Option<u8>,
}

pub(crate) struct Peer {
    pub inbox_tx: Sender<Forwarded>,
    pub doorbell: Arc<Doorbell>,
}

/// Counters one core keeps; read from any thread.
#[derive(Default, Debug)]
pub struct CoreStats {
    pub accepted: AtomicU64,
    /// Initials answered with a Retry.
    pub retried: AtomicU64,
    /// Initials refused over a limit, and handshakes closed for taking too long.
    pub refused: AtomicU64,
    pub rx_datagrams: AtomicU64,
    pub rx_batches: AtomicU64,
    pub tx_sends: AtomicU64,
    /// Datagrams this core received but another core owns.
    pub forwarded_out: AtomicU64,
    /// Datagrams other cores handed to this one.
    pub forwarded_in: AtomicU64,
    /// Datagrams this core received for another whose inbox was full, dropped.
    pub forward_dropped: AtomicU64,
}

pub(crate) struct CoreShared {
    pub doorbell: Arc<Doorbell>,
    pub inbox: Receiver<Forwarded>,
    pub peers: Arc<[Peer]>,
    pub stop: Arc<AtomicBool>,
    pub stats: Arc<CoreStats>,
    pub admission: Arc<Admission>,
}

/// A running engine. Dropping it does not stop it; call [`Engine::shutdown`] and
/// [`Engine::join`].
pub struct Engine {
    threads: Vec<JoinHandle<()>>,
    doorbells: Arc<[Arc<Doorbell>]>,
    stats: Vec<Arc<CoreStats>>,
    stop: Arc<AtomicBool>,
    server_addr: Option<SocketAddr>,
    io_uring: bool,
}

impl Engine {
    /// Bind every socket, spawn the cores and wait until each is running. `factory` builds each
    /// core's handler on that core's thread, so the handler need not be `Send`.
    pub fn start<H, F>(config: EngineConfig, factory: F) -> io::Result<Engine>
    where
        H: Handler,
        F: Fn(CoreInfo) -> H + Send + Sync + 'static,
    {
        crate::net::abort_on_panic();
        let cores = config.cores();
        let (mut server_sockets, mut client_sockets) = bind_sockets(&config, cores)?;
        let server_addr = server_sockets
            .first()
            .and_then(|s| s.as_ref())
            .map(|s| s.local_addr())
            .transpose()?;
        if config.server.is_none() && config.client.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "engine needs a server or a client role",
            ));
        }

        let doorbells: Arc<[Arc<Doorbell>]> =
            (0..cores).map(|_| Arc::new(Doorbell::default())).collect();
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..cores)
            .map(|_| crossbeam_channel::bounded(FORWARD_QUEUE))
            .unzip();
        let peers: Arc<[Peer]> = txs
            .into_iter()
            .zip(doorbells.iter())
            .map(|(inbox_tx, doorbell)| Peer {
                inbox_tx,
                doorbell: doorbell.clone(),
            })
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let admission = Arc::new(Admission::new(
            config
                .server
                .as_ref()
                .map(|s| s.admission.clone())
                .unwrap_or_default(),
        ));
        let stats: Vec<Arc<CoreStats>> = (0..cores).map(|_| Arc::default()).collect();
        let reset_key = reset_key()?;

        let factory = Arc::new(factory);
        let (ready_tx, ready_rx) = mpsc::channel::<io::Result<bool>>();
        let mut threads = Vec::with_capacity(cores);
        for (core, inbox) in rxs.into_iter().enumerate() {
            let shared = Arc::new(CoreShared {
                doorbell: doorbells[core].clone(),
                inbox,
                peers: peers.clone(),
                stop: stop.clone(),
                stats: stats[core].clone(),
                admission: admission.clone(),
            });
            let mut sockets = Vec::new();
            if let Some(s) = server_sockets[core].take() {
                sockets.push((s, config.socket.clone()));
            }
            let client_socket = match client_sockets[core].take() {
                Some(s) => {
                    sockets.push((s, config.socket.clone()));
                    sockets.len() - 1
                }
                None => 0,
            };
            let mut endpoint_config = EndpointConfig::new(reset_key.clone());
            endpoint_config.cid_generator(move || Box::new(CoreCid::new(core, cores)));
            let setup = CoreSetup {
                core,
                cores,
                shared,
                sockets,
                client_socket,
                endpoint_config,
                server_config: config.server.as_ref().map(|s| s.config.clone()),
                client_config: config.client.as_ref().and_then(|c| c.config.clone()),
                doorbells: doorbells.clone(),
                io: config.io,
                pin: config.pin,
            };
            let thread = setup.spawn(factory.clone(), ready_tx.clone())?;
            threads.push(thread);
        }
        drop(ready_tx);
        let (io_uring, failure) = await_cores(&ready_rx, cores);
        let engine = Engine {
            threads,
            doorbells,
            stats,
            stop,
            server_addr,
            io_uring,
        };
        if let Some(e) = failure {
            engine.shutdown();
            let _ = engine.join();
            return Err(e);
        }
        Ok(engine)
    }

    /// The bound server address (the real port when 0 was asked for).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.server_addr
    }

    pub fn cores(&self) -> usize {
        self.threads.len()
    }

    /// Whether the cores run on io_uring (false: epoll).
    pub fn io_uring(&self) -> bool {
        self.io_uring
    }

    pub fn stats(&self) -> &[Arc<CoreStats>] {
        &self.stats
    }

    pub fn doorbells(&self) -> &Arc<[Arc<Doorbell>]> {
        &self.doorbells
    }

    /// Begin a graceful stop: refuse new connections, close the rest, then let cores exit.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::Release);
        for d in self.doorbells.iter() {
            d.ring();
        }
    }

    /// Wait for every core to exit.
    pub fn join(self) -> io::Result<()> {
        let mut ok = true;
        for t in self.threads {
            ok &= t.join().is_ok();
        }
        if ok {
            Ok(())
        } else {
            Err(io::Error::other("a core thread panicked"))
        }
    }
}

fn annotate(e: io::Error, what: &str, addr: SocketAddr) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {addr}: {e}"))
}

/// What one core's thread starts with.
struct CoreSetup {
    core: usize,
    cores: usize,
    shared: Arc<CoreShared>,
    sockets: Vec<(std::net::UdpSocket, SocketOptions)>,
    client_socket: usize,
    endpoint_config: EndpointConfig,
    server_config: Option<Arc<ServerConfig>>,
    client_config: Option<quinn_proto::ClientConfig>,
    doorbells: Arc<[Arc<Doorbell>]>,
    io: IoMode,
    pin: bool,
}

impl CoreSetup {
    /// Start the core's thread: its runtime, endpoint, handler and driver. It reports on
    /// `ready` whether it runs on io_uring, or why it could not start.
    fn spawn<H, F>(
        self,
        factory: Arc<F>,
        ready: mpsc::Sender<io::Result<bool>>,
    ) -> io::Result<JoinHandle<()>>
    where
        H: Handler,
        F: Fn(CoreInfo) -> H + Send + Sync + 'static,
    {
        let (core, pin, io) = (self.core, self.pin, self.io);
        std::thread::Builder::new()
            .name(format!("{}core-{core}", crate::net::THREAD_PREFIX))
            .spawn(move || {
                let ready2 = ready.clone();
                let result = run_pinned(pin.then_some(core), io, move || async move {
                    let io_uring = !monoio::utils::is_legacy();
                    let endpoint = quinn_proto::Endpoint::new(
                        Arc::new(self.endpoint_config),
                        self.server_config,
                        true,
                        None,
                    );
                    let handler = factory(CoreInfo {
                        core,
                        cores: self.cores,
                        doorbells: self.doorbells,
                        io_uring,
                    });
                    let driver = Driver::new(
                        core,
                        self.cores,
                        self.shared,
                        endpoint,
                        self.sockets,
                        self.client_socket,
                        self.client_config,
                        handler,
                    );
                    match driver {
                        Ok(driver) => {
                            let _ = ready2.send(Ok(io_uring));
                            driver.run().await;
                        }
                        Err(e) => {
                            let _ = ready2.send(Err(e));
                        }
                    }
                });
                if let Err(e) = result {
                    let _ = ready.send(Err(e));
                }
            })
    }
}

/// One socket per core for each role the engine has (a reuseport group; a client on port 0
/// binds one ephemeral socket per core).
#[allow(clippy::type_complexity)]
fn bind_sockets(
    config: &EngineConfig,
    cores: usize,
) -> io::Result<(
    Vec<Option<std::net::UdpSocket>>,
    Vec<Option<std::net::UdpSocket>>,
)> {
    let server = match &config.server {
        Some(s) => bind_group(s.bind, cores, config.steer, &config.socket)
            .map_err(|e| annotate(e, "server bind", s.bind))?
            .into_iter()
            .map(Some)
            .collect(),
        None => (0..cores).map(|_| None).collect(),
    };
    let client = match &config.client {
        Some(c) if c.bind.port() == 0 => (0..cores)
            .map(|_| bind_one(c.bind, &config.socket).map(Some))
            .collect::<io::Result<_>>()
            .map_err(|e| annotate(e, "client bind", c.bind))?,
        Some(c) => bind_group(c.bind, cores, config.steer, &config.socket)
            .map_err(|e| annotate(e, "client bind", c.bind))?
            .into_iter()
            .map(Some)
            .collect(),
        None => (0..cores).map(|_| None).collect(),
    };
    Ok((server, client))
}

/// The key of stateless resets, shared by every core's endpoint so that any core can reset
/// a connection another core issued.
fn reset_key() -> io::Result<Arc<dyn quinn_proto::crypto::HmacKey>> {
    let rng = ring::rand::SystemRandom::new();
    let key = ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &rng)
        .map_err(|_| io::Error::other("no system randomness"))?;
    Ok(Arc::new(key))
}

/// Wait until every core has started (or failed to): whether all run io_uring, and the
/// first failure.
fn await_cores(
    ready: &mpsc::Receiver<io::Result<bool>>,
    cores: usize,
) -> (bool, Option<io::Error>) {
    let mut io_uring = true;
    let mut failure = None;
    for _ in 0..cores {
        match ready.recv() {
            Ok(Ok(uring)) => io_uring &= uring,
            Ok(Err(e)) => failure = Some(e),
            Err(_) => failure = Some(io::Error::other("a core thread died during start-up")),
        }
    }
    (io_uring, failure)
}
