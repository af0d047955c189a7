//! Starts the relay's QUIC engine from a [`Config`]: certificates, ALPNs, the server and
//! client roles, and a graceful stop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;

use crate::cluster::PeerDialer;
use crate::config::Config;
use crate::http::{HttpServer, Listener};
use crate::model::{Access, Gate, Refusal, path};
use crate::quic::tls::{self, ServerCerts};
use crate::quic::{ClientRole, CoreInfo, Engine, EngineConfig, ServerRole, TransportLimits};
use crate::relay::{App, Census, Mesh, Node, NodeFactory, RelayStats, Wake};
use crate::session::{DialBook, Host, HostConfig};

/// ALPNs the relay offers, in its own preference order (rustls picks the first the client
/// also offers).
pub const ALPNS: &[&[u8]] = &[
    b"moq-lite-05",
    b"moq-lite-04",
    b"moq-lite-03",
    b"moql",
    b"moqt-19",
    b"moqt-18",
    b"moqt-17",
    b"moqt-16",
    b"h3",
];

/// The session host of one core, running that core's relay node; `dials` is what a client
/// node dials, `gate` who admits the peers that dial us (none: everyone, to everything).
pub(crate) fn relay_host(
    nodes: &NodeFactory,
    info: &CoreInfo,
    app: Option<App>,
    dials: Arc<DialBook>,
    gate: Option<Arc<dyn Gate>>,
) -> Host<Node> {
    let wakes: Vec<Wake> = info
        .doorbells
        .iter()
        .map(|d| {
            let d = d.clone();
            Arc::new(move || d.ring()) as Wake
        })
        .collect();
    let cfg = HostConfig {
        core: info.core,
        origin: nodes.origin(),
        limits: nodes.limits().session,
        dials,
        gate,
    };
    Host::new(cfg, nodes.node(info.core, &wakes, app))
}

/// ALPN of the HTTPS listener.
const HTTPS_ALPNS: &[&[u8]] = &[b"http/1.1"];

pub struct Server {
    engine: Engine,
    nodes: Arc<NodeFactory>,
    fingerprints: Vec<String>,
    http: Option<HttpServer>,
    http_addr: Option<SocketAddr>,
    https_addr: Option<SocketAddr>,
}

impl Server {
    pub fn start(config: &Config) -> anyhow::Result<Self> {
        let certs = load_certs(config)?;
        let fingerprints = certs.fingerprints();
        // Bound before the engine starts so that a busy port stops start-up with nothing to undo.
        let mut listeners = Vec::new();
        if let Some(addr) = config.web.http {
            let l = Listener::bind(addr, None)
                .with_context(|| format!("web.http.listen (--web-http-listen) {addr}"))?;
            listeners.push(l);
        }
        if let Some(https) = &config.web.https {
            let tls = if https.pairs.is_empty() {
                certs.server_config(HTTPS_ALPNS)
            } else {
                ServerCerts::load(&https.pairs)
                    .context("web.https.cert/key")?
                    .server_config(HTTPS_ALPNS)
            };
            let l = Listener::bind(https.listen, Some(tls)).with_context(|| {
                format!("web.https.listen (--web-https-listen) {}", https.listen)
            })?;
            listeners.push(l);
        }
        let limits = TransportLimits::default();
        let quic_tls = certs
            .server_config_with_clients(ALPNS, &config.tls.client_roots)
            .context("server.tls.root (--server-tls-root)")?;
        let server = crate::quic::server_config(quic_tls, &limits)?;
        let client_tls = tls::client_config(&config.client_verify, ALPNS)?;
        let client = crate::quic::client_config(client_tls, &limits)?;
        let engine_config = EngineConfig {
            threads: config.threads,
            io: config.io,
            pin: config.pin,
            socket: config.socket.clone(),
            steer: config.steer,
            server: Some(ServerRole {
                bind: config.bind,
                config: server,
                admission: config.admission.clone(),
            }),
            client: Some(ClientRole {
                bind: config.client_bind,
                config: Some(client),
            }),
        };
        let (dials, nodes) = cluster(config, &limits, engine_config.cores())?;
        let factory = nodes.clone();
        let gate: Arc<dyn Gate> = config.auth.clone();
        let host_gate = gate.clone();
        let engine = Engine::start(engine_config, move |info| {
            relay_host(
                &factory,
                &info,
                None,
                dials.clone(),
                Some(host_gate.clone()),
            )
        })
        .with_context(|| format!("starting on {}", config.bind))?;
        tracing::info!(
            addr = %engine.local_addr().expect("server role"),
            cores = engine.cores(),
            io = if engine.io_uring() { "io_uring" } else { "epoll" },
            "listening"
        );
        for fp in &fingerprints {
            tracing::info!(sha256 = %fp, "certificate fingerprint");
        }
        if let (true, Some(node)) = (config.cluster.mesh, &config.cluster.node) {
            // An empty broadcast of the application of core 0, announced like any other.
            let at = crate::relay::advertisement(node);
            let at = path::normalize(&at, usize::MAX).expect("checked with the config");
            let own = crate::relay::Owner {
                core: 0,
                peer: None,
                hops: Vec::new(),
            };
            nodes
                .registry()
                .expect("cores started")
                .publish(&at, own, 0);
            tracing::info!(%node, path = %at, "advertising this relay to the cluster");
        }
        let mut server = Self {
            engine,
            nodes: nodes.clone(),
            fingerprints: fingerprints.clone(),
            http: None,
            http_addr: None,
            https_addr: None,
        };
        if !listeners.is_empty() {
            let origin = Arc::new(RelayOrigin {
                nodes,
                fingerprint: fingerprints.first().cloned().unwrap_or_default(),
                gate,
            });
            let http = match HttpServer::start(listeners, origin, config.web.limits) {
                Ok(h) => h,
                Err(e) => {
                    let _ = server.stop();
                    return Err(e).context("starting the http endpoints");
                }
            };
            let mut addrs = http.local_addrs().iter().copied();
            server.http_addr = config.web.http.and_then(|_| addrs.next());
            server.https_addr = config.web.https.as_ref().and_then(|_| addrs.next());
            server.http = Some(http);
        }
        Ok(server)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.engine.local_addr().expect("server role")
    }

    /// Where the HTTP endpoints listen, when `web.http.listen` is set.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// Where the HTTPS endpoints listen, when `web.https.listen` is set.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.https_addr
    }

    /// Hex SHA-256 of each served certificate, first the default.
    pub fn fingerprints(&self) -> &[String] {
        &self.fingerprints
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Data-path counters of the relay.
    pub fn stats(&self) -> RelayStats {
        self.nodes.registry().expect("cores started").stats()
    }

    /// Every broadcast the relay announces (lingering ones too), by absolute path.
    pub fn broadcasts(&self) -> Vec<String> {
        self.nodes.registry().map_or_else(Vec::new, |r| {
            r.paths().iter().map(|p| p.to_string()).collect()
        })
    }

    /// What each core holds now, table by table (see [`Census`]).
    pub fn census(&self) -> Vec<Census> {
        self.nodes
            .registry()
            .map_or_else(Vec::new, |r| r.census(Duration::from_secs(5)))
    }

    /// Stop the HTTP endpoints, close every connection and wait for the cores to exit.
    pub fn stop(mut self) -> anyhow::Result<()> {
        if let Some(http) = self.http.take() {
            http.stop();
        }
        self.engine.shutdown();
        self.engine.join()?;
        Ok(())
    }
}

/// The peer relays to dial and the node factory that dials them: the `--cluster-connect`
/// peers, resolved now, and, with `--cluster-mesh`, those gossip finds later.
fn cluster(
    config: &Config,
    limits: &TransportLimits,
    cores: usize,
) -> anyhow::Result<(Arc<DialBook>, Arc<NodeFactory>)> {
    let cluster = &config.cluster;
    let dialer = PeerDialer::new(
        config.client_verify.clone(),
        config.client_identity.clone(),
        limits,
        cluster.token.clone(),
    );
    let mut peers = Vec::new();
    for peer in &cluster.peers {
        let link = dialer
            .add_static(peer)
            .map_err(|e| anyhow::anyhow!("config cluster.connect (--cluster-connect): {e}"))?;
        peers.push((link, peer.display()));
    }
    let mesh = match (cluster.mesh, &cluster.node) {
        (true, Some(node)) => Some(Arc::new(Mesh {
            key: crate::cluster::parse_peer(node, None)
                .map_err(|e| anyhow::anyhow!("config cluster.node (--cluster-node): {e}"))?
                .key(),
            discover: !cluster.peers.is_empty(),
            dialer: Arc::new(dialer.clone()),
        })),
        _ => None,
    };
    let limits = config.limits.clone();
    let nodes = NodeFactory::cluster(cores, limits, cluster.id, peers, mesh);
    Ok((dialer.book(), nodes))
}

fn load_certs(config: &Config) -> anyhow::Result<ServerCerts> {
    let mut certs = if config.tls.pairs.is_empty() {
        ServerCerts::generate(&config.tls.generate)?
    } else {
        ServerCerts::load(&config.tls.pairs)?
    };
    if !config.tls.pairs.is_empty() && !config.tls.generate.is_empty() {
        certs.extend(ServerCerts::generate(&config.tls.generate)?);
    }
    Ok(certs)
}

/// Broadcasts looked at per hold of the registry's lock by an `/announced` listing.
const ANNOUNCED_PAGE: usize = 256;

impl crate::relay::FetchReply for crate::http::FetchReply {
    fn send(self: Box<Self>, frames: Vec<Bytes>) {
        crate::http::FetchReply::send(*self, frames);
    }

    fn abandoned(&self) -> bool {
        self.is_closed()
    }
}

/// The relay as the HTTP endpoints see it.
struct RelayOrigin {
    nodes: Arc<NodeFactory>,
    fingerprint: String,
    gate: Arc<dyn Gate>,
}

impl crate::http::Origin for RelayOrigin {
    /// A page at a time, so that the registry's lock is never held for the whole listing.
    fn announced(&self, prefix: &str) -> Vec<String> {
        let Some(registry) = self.nodes.registry() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let (paths, next) = registry.paths_page(prefix, after.as_deref(), ANNOUNCED_PAGE);
            out.extend(
                paths
                    .iter()
                    .filter_map(|p| path::strip_prefix(p, prefix).map(str::to_owned)),
            );
            match next {
                Some(n) => after = Some(n),
                None => return out,
            }
        }
    }

    /// `broadcast` comes normalised from the route.
    fn fetch(&self, broadcast: &str, track: &str, reply: crate::http::FetchReply) {
        if let Some(registry) = self.nodes.registry() {
            registry.fetch(broadcast, track, Box::new(reply));
        }
    }

    fn admit(&self, path: &str, token: Option<&str>) -> Result<Access, Refusal> {
        self.gate.admit(path, token)
    }

    fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }
}
