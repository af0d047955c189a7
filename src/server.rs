//! Starts the relay's QUIC engine from a [`Config`]: certificates, ALPNs, the server and
//! client roles, and a graceful stop.

use anyhow::Context as _;

use crate::config::Config;
use crate::quic::tls::{self, ServerCerts};
use crate::quic::{ClientRole, Engine, EngineConfig, ServerRole, TransportLimits};
use std::sync::Arc;

use crate::relay::{NodeFactory, RelayStats};

/// ALPNs the relay offers, in its own preference order (rustls picks the first the client
/// also offers).
pub const ALPNS: &[&[u8]] = &[b"moq-lite-05", b"moq-lite-04", b"moq-lite-03", b"moql"];

pub struct Server {
    engine: Engine,
    nodes: Arc<NodeFactory>,
    fingerprints: Vec<String>,
}

impl Server {
    pub fn start(config: &Config) -> anyhow::Result<Self> {
        let certs = load_certs(config)?;
        let fingerprints = certs.fingerprints();
        let limits = TransportLimits::default();
        let server = crate::quic::server_config(certs.server_config(ALPNS), &limits)?;
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
            }),
            client: Some(ClientRole {
                bind: config.client_bind,
                config: Some(client),
            }),
        };
        let nodes = NodeFactory::new(engine_config.cores(), config.limits.clone());
        let factory = nodes.clone();
        let engine = Engine::start(engine_config, move |info| factory.node(&info, None, None))
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
        Ok(Self {
            engine,
            nodes,
            fingerprints,
        })
    }

    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.engine.local_addr().expect("server role")
    }

    /// Hex SHA-256 of each served certificate, first the default.
    pub fn fingerprints(&self) -> &[String] {
        &self.fingerprints
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Data-path counters of the relay.
    pub fn stats(&self) -> &RelayStats {
        &self.nodes.registry().expect("cores started").stats
    }

    /// Close every connection and wait for the cores to exit.
    pub fn stop(self) -> anyhow::Result<()> {
        self.engine.shutdown();
        self.engine.join()?;
        Ok(())
    }
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
