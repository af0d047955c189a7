//! A moq-lite client on the same engine and node as the relay: one core, one connection,
//! driven by [`AppCmd`]s and reporting [`AppEvent`]s. Tests, benches and `moq-load` use it.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use crate::lite::{Role, Version};
use crate::net::{Doorbell, IoMode, SocketOptions};
use crate::quic::tls::{self, ClientVerify};
use crate::quic::{ClientRole, Engine, EngineConfig, TransportLimits, client_config};
use crate::relay::{App, AppCmd, AppEvent, Limits, NodeFactory};
use crate::session::Dial;

#[derive(Clone, Debug)]
pub struct ClientOptions {
    pub addr: SocketAddr,
    pub server_name: String,
    /// The session root (lite-05 SETUP Path).
    pub path: String,
    /// ALPNs to offer, in preference order (`moql` means lite-01/02 via SETUP).
    pub alpns: Vec<String>,
    /// Versions offered in CLIENT_SETUP under `moql`.
    pub setup_versions: Vec<Version>,
    /// WT-Available-Protocols when `alpns` is `h3` (WebTransport).
    pub web_protocols: Vec<String>,
    /// What lite-05 SETUP says this session does.
    pub role: Role,
    pub verify: ClientVerify,
    pub io: IoMode,
    pub socket: SocketOptions,
    pub transport: TransportLimits,
}

impl ClientOptions {
    /// Offer exactly `version`.
    pub fn new(addr: SocketAddr, version: Version) -> Self {
        let alpn = version.alpn().to_string();
        Self {
            addr,
            server_name: "localhost".into(),
            path: String::new(),
            alpns: vec![alpn],
            setup_versions: vec![version],
            web_protocols: Vec::new(),
            role: Role::Both,
            verify: ClientVerify::Disabled,
            io: IoMode::Auto,
            socket: SocketOptions::default(),
            transport: TransportLimits::default(),
        }
    }
}

pub struct Client {
    engine: Engine,
    commands: Sender<AppCmd>,
    doorbell: Arc<Doorbell>,
    pub events: Receiver<AppEvent>,
}

impl Client {
    /// Start a one-core engine that dials `opts.addr` at once.
    pub fn connect(opts: ClientOptions) -> io::Result<Self> {
        let alpns: Vec<&[u8]> = opts.alpns.iter().map(|a| a.as_bytes()).collect();
        let tls = tls::client_config(&opts.verify, &alpns).map_err(io::Error::other)?;
        let quic = client_config(tls, &opts.transport).map_err(io::Error::other)?;
        let bind: SocketAddr = if opts.addr.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        }
        .parse()
        .expect("literal");
        let config = EngineConfig {
            threads: 1,
            io: opts.io,
            pin: false,
            socket: opts.socket.clone(),
            steer: false,
            server: None,
            client: Some(ClientRole {
                bind,
                config: Some(quic),
            }),
        };
        let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
        let (ev_tx, ev_rx) = crossbeam_channel::unbounded();
        let nodes = NodeFactory::new(1, Limits::default());
        let dial = Dial {
            setup_versions: opts.setup_versions.clone(),
            web_protocols: opts.web_protocols.clone(),
            role: opts.role,
            ..Dial::new(opts.addr, &opts.server_name, &opts.path)
        };
        let dials = Arc::new(crate::session::DialBook::from(vec![dial]));
        let engine = Engine::start(config, move |info| {
            let app = App {
                commands: cmd_rx.clone(),
                events: ev_tx.clone(),
            };
            crate::server::relay_host(&nodes, &info, Some(app), dials.clone(), None)
        })?;
        let doorbell = engine.doorbells()[0].clone();
        Ok(Self {
            engine,
            commands: cmd_tx,
            doorbell,
            events: ev_rx,
        })
    }

    pub fn send(&self, cmd: AppCmd) {
        if self.commands.send(cmd).is_ok() {
            self.doorbell.ring();
        }
    }

    /// Close the connection and stop the engine.
    pub fn close(self) {
        self.engine.shutdown();
        let _ = self.engine.join();
    }
}
