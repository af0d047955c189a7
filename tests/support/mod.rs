//! What the end-to-end tests share: one tracing set-up, one way to start an in-process relay on
//! 127.0.0.1, and waiting on a client's events with a deadline.
//!
//! Each test binary includes this module (`mod support;`; `tools/moq-load/tests/load.rs` by
//! path) and uses part of it, hence `dead_code` is allowed here.

#![allow(dead_code)]

pub mod link;

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::time::{Duration, Instant};

use moq_relay::client::{Client, ClientOptions};
use moq_relay::config::{Config, ServerTls, WebConfig, WebHttps};
use moq_relay::lite::Version;
use moq_relay::net::{IoMode, SocketOptions};
use moq_relay::quic::tls::ClientVerify;
use moq_relay::relay::{AppEvent, Limits};
use moq_relay::server::Server;

/// How long a test waits for something that takes milliseconds on loopback.
pub const WAIT: Duration = Duration::from_secs(10);

/// Poll `done` every `every` until it holds; past `deadline` the test fails with `what()`.
pub fn until(
    deadline: Instant,
    every: Duration,
    what: impl Fn() -> String,
    mut done: impl FnMut() -> bool,
) {
    while !done() {
        assert!(Instant::now() < deadline, "{}", what());
        std::thread::sleep(every);
    }
}

/// Log to the test's captured output, filtered by `RUST_LOG` (`RUST_LOG=moq_relay=debug`
/// shows what the relay did). Every test may call it; the first call wins.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A relay with `threads` cores on a free UDP port of 127.0.0.1, a generated certificate for
/// `localhost`, no pinning, no HTTP endpoints, and `limits`.
pub fn config(threads: usize, limits: Limits) -> Config {
    Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        threads,
        io: IoMode::Auto,
        socket: SocketOptions::default(),
        steer: true,
        pin: false,
        admission: Default::default(),
        tls: ServerTls {
            pairs: Vec::new(),
            generate: vec!["localhost".into()],
            client_roots: Vec::new(),
        },
        client_bind: "127.0.0.1:0".parse().unwrap(),
        client_verify: ClientVerify::Disabled,
        client_identity: None,
        log_level: "info".into(),
        limits,
        web: WebConfig::default(),
        auth: std::sync::Arc::new(moq_relay::auth::Auth::open()),
        cluster: Default::default(),
        warnings: Vec::new(),
    }
}

/// Start a relay from `config`, with tracing set up.
pub fn start(config: &Config) -> Server {
    init_tracing();
    Server::start(config).unwrap()
}

/// A relay with `threads` cores and the default limits.
pub fn relay(threads: usize) -> Server {
    relay_with(threads, Limits::default())
}

/// A relay with `threads` cores and `limits`.
pub fn relay_with(threads: usize, limits: Limits) -> Server {
    start(&config(threads, limits))
}

/// A relay with HTTP endpoints on a free TCP port, and HTTPS ones on another when `https`.
pub fn relay_with_http(threads: usize, https: bool) -> Server {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut config = config(threads, Limits::default());
    config.web = WebConfig {
        http: Some(any),
        https: https.then(|| WebHttps {
            listen: any,
            pairs: Vec::new(),
        }),
        ..WebConfig::default()
    };
    start(&config)
}

/// A relay with QUIC on UDP and HTTP on TCP of the same port number, as `@moq/lite` and
/// `moq-load` assume for `http://` URLs; its certificate is for `localhost` and `127.0.0.1`.
pub fn relay_on_one_port(threads: usize) -> Server {
    relay_on_one_port_with(threads, |_| {})
}

/// [`relay_on_one_port`], its configuration changed by `tweak` first.
pub fn relay_on_one_port_with(threads: usize, tweak: impl Fn(&mut Config)) -> Server {
    init_tracing();
    let mut last = String::new();
    for _ in 0..20 {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = udp.local_addr().unwrap();
        if TcpListener::bind(addr).is_err() {
            continue;
        }
        drop(udp);
        let mut config = config(threads, Limits::default());
        config.bind = addr;
        config.tls.generate = vec!["localhost".into(), "127.0.0.1".into()];
        config.web.http = Some(addr);
        tweak(&mut config);
        // Another process may take the port between the probe and here: try another.
        match Server::start(&config) {
            Ok(server) => return server,
            Err(e) => last = format!("{e:#}"),
        }
    }
    panic!("no port free on both UDP and TCP: {last}");
}

/// Frames of subscription 1 of `c` until `count` came, as (group, index, payload), sorted; the
/// subscription ending first fails the test.
pub fn frames(c: &Client, count: usize) -> Vec<(u64, usize, Vec<u8>)> {
    let mut got = Vec::new();
    while got.len() < count {
        got.push(wait(c, "a frame", |e| match e {
            AppEvent::Frame {
                id: 1,
                seq,
                index,
                payload,
                ..
            } => Some((seq, index, payload.concat())),
            AppEvent::Ended { id: 1, code } => panic!("ended with {code}"),
            _ => None,
        }));
    }
    got.sort_by_key(|f| (f.0, f.1));
    got
}

/// Wait up to [`WAIT`] for the first event of `client` that `f` accepts, failing on a closed
/// session; `what` names it in the failure.
pub fn wait<T>(client: &Client, what: &str, mut f: impl FnMut(AppEvent) -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match client.events.recv_timeout(left) {
            Ok(AppEvent::Closed { reason }) => {
                panic!("session closed while waiting for {what}: {reason}")
            }
            Ok(ev) => {
                if let Some(v) = f(ev) {
                    return v;
                }
            }
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }
}

/// Dial with `opts` and wait up to `within` for the session: the client and the version it
/// settled on, or why not. A refused handshake may end in silence: the client node reports
/// `Closed` only for sessions that got past it.
pub fn session(opts: ClientOptions, within: Duration) -> Result<(Client, Version), String> {
    let client = Client::connect(opts).unwrap();
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match client.events.recv_timeout(left) {
            Ok(AppEvent::Ready { version }) => {
                let version = Version::from_code(version).expect("a moq-lite version");
                return Ok((client, version));
            }
            Ok(AppEvent::Closed { reason }) => return Err(reason),
            Ok(_) => {}
            Err(_) => {
                client.close();
                return Err(format!("no session within {within:?}"));
            }
        }
    }
}

/// Dial with `opts` and wait for the session, which must settle on `version`.
pub fn connect_with(opts: ClientOptions, version: Version) -> Client {
    let how = format!("{:?} {:?}", opts.alpns, opts.web_protocols);
    let (client, negotiated) =
        session(opts, WAIT).unwrap_or_else(|e| panic!("no session ({how}): {e}"));
    assert_eq!(negotiated, version, "{how}");
    client
}

/// A raw-QUIC session with `server` offering exactly `version`.
pub fn connect(server: &Server, version: Version) -> Client {
    connect_with(ClientOptions::new(server.local_addr(), version), version)
}

/// A WebTransport session with `server` offering `protocols` in WT-Available-Protocols; the
/// relay must settle on `version` (from them, or in the SETUP exchange when none fits).
pub fn connect_web(server: &Server, protocols: &[&str], version: Version) -> Client {
    let mut opts = ClientOptions::new(server.local_addr(), version);
    opts.alpns = vec!["h3".into()];
    opts.web_protocols = protocols.iter().map(|p| p.to_string()).collect();
    connect_with(opts, version)
}
