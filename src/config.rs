//! Command line and TOML configuration, with the reference relay's names (`moq-relay [CONFIG]
//! [flags]`). Flags and `MOQ_*` variables override the file; the file overrides defaults.
//! Every bad value stops start-up with a message that names its key.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use serde::Deserialize;

use crate::auth::Auth;
use crate::http::HttpLimits;
use crate::model::SessionLimits;
use crate::net::{IoMode, SocketOptions};
use crate::quic::AdmissionLimits;
use crate::quic::tls::ClientVerify;
use crate::relay::{CacheLimits, Limits};

/// Command-line flags. Each is optional so that an absent flag never overwrites the file.
#[derive(Parser, Debug, Default)]
#[command(name = "moq-relay", version, about = "A Media over QUIC relay")]
pub struct Cli {
    /// TOML configuration file.
    pub file: Option<PathBuf>,

    /// UDP address to serve QUIC and WebTransport on [default: [::]:443].
    #[arg(long = "server-bind", alias = "listen", env = "MOQ_SERVER_BIND")]
    pub server_bind: Option<String>,

    /// Core threads, one socket and event loop each [default: every core].
    #[arg(long, env = "MOQ_SERVER_THREADS")]
    pub threads: Option<usize>,

    /// Event loop driver: uring, epoll or auto (uring when the kernel allows) [default: auto].
    #[arg(long, env = "MOQ_SERVER_IO")]
    pub io: Option<String>,

    /// Send UDP in GSO batches [default: true].
    #[arg(long = "server-gso", env = "MOQ_SERVER_GSO", num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub gso: Option<bool>,

    /// Receive UDP in GRO batches [default: true].
    #[arg(long = "server-gro", env = "MOQ_SERVER_GRO", num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub gro: Option<bool>,

    /// Steer datagrams to their core with a reuseport BPF program [default: true].
    #[arg(long = "server-steer", env = "MOQ_SERVER_STEER", num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub steer: Option<bool>,

    /// Pin core thread i to CPU i [default: true].
    #[arg(long = "server-pin", env = "MOQ_SERVER_PIN", num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub pin: Option<bool>,

    /// Server connections open at once, over every core [default: 20000].
    #[arg(long = "server-max-connections", env = "MOQ_SERVER_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// Server connections open at once from one source address [default: 4096].
    #[arg(
        long = "server-max-connections-per-ip",
        env = "MOQ_SERVER_MAX_CONNECTIONS_PER_IP"
    )]
    pub max_connections_per_ip: Option<usize>,

    /// Handshakes in flight per core; past it new connections are refused [default: 1024].
    #[arg(long = "server-max-handshakes", env = "MOQ_SERVER_MAX_HANDSHAKES")]
    pub max_handshakes: Option<usize>,

    /// Answer unvalidated Initials with a QUIC Retry: never, always, or auto (once a core has
    /// --server-retry-after handshakes in flight) [default: auto].
    #[arg(long = "server-retry", env = "MOQ_SERVER_RETRY")]
    pub retry: Option<String>,

    /// Handshakes in flight per core from which `auto` answers with Retry [default: 128].
    #[arg(long = "server-retry-after", env = "MOQ_SERVER_RETRY_AFTER")]
    pub retry_after: Option<usize>,

    /// Milliseconds a handshake may take before it is closed [default: 10000].
    #[arg(
        long = "server-handshake-timeout",
        env = "MOQ_SERVER_HANDSHAKE_TIMEOUT"
    )]
    pub handshake_timeout: Option<u64>,

    /// PEM certificate chain; repeat with --tls-key for more (chosen by SNI, first as fallback).
    #[arg(long = "tls-cert", env = "MOQ_SERVER_TLS_CERT", value_delimiter = ',')]
    pub tls_cert: Vec<PathBuf>,

    /// PEM private key for the --tls-cert at the same position.
    #[arg(long = "tls-key", env = "MOQ_SERVER_TLS_KEY", value_delimiter = ',')]
    pub tls_key: Vec<PathBuf>,

    /// Generate a self-signed certificate for these host names (14-day browser limit).
    #[arg(
        long = "tls-generate",
        env = "MOQ_SERVER_TLS_GENERATE",
        value_delimiter = ','
    )]
    pub tls_generate: Vec<String>,

    /// PEM root certificates for client certificates: a peer (another relay) presenting one
    /// that chains to them gets full access under its URL path, without a token.
    #[arg(
        long = "server-tls-root",
        env = "MOQ_SERVER_TLS_ROOT",
        value_delimiter = ','
    )]
    pub server_tls_root: Vec<PathBuf>,

    /// PEM certificate chain presented to peer relays that ask for one (mutual TLS).
    #[arg(long = "client-tls-cert", env = "MOQ_CLIENT_TLS_CERT")]
    pub client_tls_cert: Option<PathBuf>,

    /// PEM private key of --client-tls-cert.
    #[arg(long = "client-tls-key", env = "MOQ_CLIENT_TLS_KEY")]
    pub client_tls_key: Option<PathBuf>,

    /// UDP address outgoing (relay-to-relay) connections bind to [default: [::]:0].
    #[arg(long = "client-bind", env = "MOQ_CLIENT_BIND")]
    pub client_bind: Option<String>,

    /// PEM root certificates for outgoing connections [default: the system bundle].
    #[arg(
        long = "client-tls-root",
        alias = "tls-root",
        env = "MOQ_CLIENT_TLS_ROOT",
        value_delimiter = ','
    )]
    pub client_tls_root: Vec<PathBuf>,

    /// Accept only servers whose certificate has one of these SHA-256 fingerprints (hex).
    #[arg(
        long = "client-tls-fingerprint",
        alias = "tls-fingerprint",
        env = "MOQ_CLIENT_TLS_FINGERPRINT",
        value_delimiter = ','
    )]
    pub client_tls_fingerprint: Vec<String>,

    /// Danger: do not verify server certificates on outgoing connections.
    #[arg(long = "client-tls-disable-verify", alias = "tls-disable-verify", env = "MOQ_CLIENT_TLS_DISABLE_VERIFY", num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub client_tls_disable_verify: Option<bool>,

    /// TCP address to serve HTTP on (`/certificate.sha256`, `/announced`, `/fetch`); use the
    /// QUIC port number, as browser clients derive one from the other [default: off].
    #[arg(long = "web-http-listen", env = "MOQ_WEB_HTTP_LISTEN")]
    pub web_http_listen: Option<String>,

    /// TCP address to serve the same endpoints over HTTPS on [default: off].
    #[arg(long = "web-https-listen", env = "MOQ_WEB_HTTPS_LISTEN")]
    pub web_https_listen: Option<String>,

    /// PEM certificate chain for HTTPS [default: the relay's --tls-cert/--tls-generate ones].
    #[arg(
        long = "web-https-cert",
        env = "MOQ_WEB_HTTPS_CERT",
        value_delimiter = ','
    )]
    pub web_https_cert: Vec<PathBuf>,

    /// PEM private key for the --web-https-cert at the same position.
    #[arg(
        long = "web-https-key",
        env = "MOQ_WEB_HTTPS_KEY",
        value_delimiter = ','
    )]
    pub web_https_key: Vec<PathBuf>,

    /// HTTP connections open at once, over both listeners [default: 1024].
    #[arg(long = "web-max-connections", env = "MOQ_WEB_MAX_CONNECTIONS")]
    pub web_max_connections: Option<usize>,

    /// HTTP connections open at once from one source address [default: 64].
    #[arg(
        long = "web-max-connections-per-ip",
        env = "MOQ_WEB_MAX_CONNECTIONS_PER_IP"
    )]
    pub web_max_connections_per_ip: Option<usize>,

    /// `/fetch` requests waiting for a group at once; more get 503 [default: 256].
    #[arg(long = "web-max-fetches", env = "MOQ_WEB_MAX_FETCHES")]
    pub web_max_fetches: Option<usize>,

    /// Milliseconds an HTTP response may wait for the client to take bytes before the
    /// connection is closed [default: 10000].
    #[arg(long = "web-write-timeout", env = "MOQ_WEB_WRITE_TIMEOUT")]
    pub web_write_timeout: Option<u64>,

    /// Log level (error, warn, info, debug, trace); RUST_LOG overrides it [default: info].
    #[arg(long = "log-level", env = "MOQ_LOG_LEVEL")]
    pub log_level: Option<String>,

    /// Groups cached per track for late joiners [default: 4].
    #[arg(long = "relay-cache-groups", env = "MOQ_RELAY_CACHE_GROUPS")]
    pub cache_groups: Option<usize>,

    /// Oldest age of a cached finished group, in milliseconds [default: 5000].
    #[arg(long = "relay-cache-age", env = "MOQ_RELAY_CACHE_AGE")]
    pub cache_age: Option<u64>,

    /// Unfinished groups in flight per subscription before the oldest is reset [default: 4].
    #[arg(long = "relay-groups-in-flight", env = "MOQ_RELAY_GROUPS_IN_FLIGHT")]
    pub groups_in_flight: Option<usize>,

    /// Subscriptions one session may hold [default: 1024].
    #[arg(long = "relay-max-subscriptions", env = "MOQ_RELAY_MAX_SUBSCRIPTIONS")]
    pub max_subscriptions: Option<usize>,

    /// Announce requests one session may hold open [default: 64].
    #[arg(long = "relay-max-announces", env = "MOQ_RELAY_MAX_ANNOUNCES")]
    pub max_announces: Option<usize>,

    /// Largest frame accepted from a publisher, in bytes [default: 32 MiB].
    #[arg(long = "relay-max-frame", env = "MOQ_RELAY_MAX_FRAME")]
    pub max_frame: Option<u64>,

    /// Largest control message, in bytes [default: 16384].
    #[arg(long = "relay-max-message", env = "MOQ_RELAY_MAX_MESSAGE")]
    pub max_message: Option<usize>,

    /// Broadcasts one session may announce as active at once [default: 1024].
    #[arg(long = "relay-max-broadcasts", env = "MOQ_RELAY_MAX_BROADCASTS")]
    pub max_broadcasts: Option<usize>,

    /// Announce changes per second one session may sustain (after a burst of
    /// --relay-max-broadcasts); a faster session is closed [default: 100].
    #[arg(long = "relay-max-announce-rate", env = "MOQ_RELAY_MAX_ANNOUNCE_RATE")]
    pub max_announce_rate: Option<u32>,

    /// Bytes one session may leave waiting for its flow control before it is cut off as a peer
    /// that does not read [default: 16 MiB].
    #[arg(long = "relay-max-queued", env = "MOQ_RELAY_MAX_QUEUED")]
    pub max_queued: Option<usize>,

    /// Frames one group may have [default: 16384].
    #[arg(long = "relay-max-group-frames", env = "MOQ_RELAY_MAX_GROUP_FRAMES")]
    pub max_group_frames: Option<usize>,

    /// Payload bytes one group may have [default: 64 MiB].
    #[arg(long = "relay-max-group-bytes", env = "MOQ_RELAY_MAX_GROUP_BYTES")]
    pub max_group_bytes: Option<u64>,

    /// Bytes of not yet whole frames one session may have over its group streams
    /// [default: 64 MiB].
    #[arg(long = "relay-max-partial", env = "MOQ_RELAY_MAX_PARTIAL")]
    pub max_partial: Option<u64>,

    /// Milliseconds a track nobody wants stays subscribed upstream and cached [default: 5000].
    #[arg(long = "relay-track-linger", env = "MOQ_RELAY_TRACK_LINGER")]
    pub track_linger: Option<u64>,

    /// JWK file (JSON, or base64url of it, as moq-token writes) that checks every token.
    #[arg(long = "auth-key", env = "MOQ_AUTH_KEY")]
    pub auth_key: Option<PathBuf>,

    /// Directory of `{kid}.jwk` files, picked by each token's `kid`; new files are found.
    #[arg(long = "auth-key-dir", env = "MOQ_AUTH_KEY_DIR")]
    pub auth_key_dir: Option<PathBuf>,

    /// Prefix anyone may publish and subscribe under without a token ("" for everything);
    /// repeat for more.
    #[arg(long = "auth-public", env = "MOQ_AUTH_PUBLIC")]
    pub auth_public: Vec<String>,

    /// Prefix anyone may subscribe under without a token; repeat for more.
    #[arg(long = "auth-public-subscribe", env = "MOQ_AUTH_PUBLIC_SUBSCRIBE")]
    pub auth_public_subscribe: Vec<String>,

    /// Prefix anyone may publish under without a token; repeat for more.
    #[arg(long = "auth-public-publish", env = "MOQ_AUTH_PUBLIC_PUBLISH")]
    pub auth_public_publish: Vec<String>,

    /// Peer relay to dial: https://host:port/path?jwt=... (WebTransport) or moql://... (raw
    /// QUIC); repeat or separate with commas.
    #[arg(
        long = "cluster-connect",
        env = "MOQ_CLUSTER_CONNECT",
        value_delimiter = ','
    )]
    pub cluster_connect: Vec<String>,

    /// This relay's hop id, non-zero and below 2^62 [default: random at each start].
    #[arg(long = "cluster-id", env = "MOQ_CLUSTER_ID")]
    pub cluster_id: Option<u64>,

    /// File holding the JWT sent to peer relays whose URL has no `jwt`.
    #[arg(long = "cluster-token", env = "MOQ_CLUSTER_TOKEN")]
    pub cluster_token: Option<PathBuf>,

    /// This relay's own URL as peers dial it (https:// or moql://), which gossip advertises;
    /// without --cluster-mesh it does nothing, as in the reference.
    #[arg(long = "cluster-node", env = "MOQ_CLUSTER_NODE")]
    pub cluster_node: Option<String>,

    /// Gossip: advertise --cluster-node under .internal/origins/ and dial the relays found
    /// there (true or false; a URL is the old spelling of --cluster-node).
    #[arg(long = "cluster-mesh", env = "MOQ_CLUSTER_MESH", num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub cluster_mesh: Option<String>,

    /// How long a broadcast whose last source vanished stays announced, e.g. 5s, 500ms, 0
    /// [default: 5s].
    #[arg(long = "cluster-linger", env = "MOQ_CLUSTER_LINGER")]
    pub cluster_linger: Option<String>,
}

/// One value or a list, as the reference accepts for paths.
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> Default for OneOrMany<T> {
    fn default() -> Self {
        Self::Many(Vec::new())
    }
}

impl<T> OneOrMany<T> {
    fn into_vec(self) -> Vec<T> {
        match self {
            Self::One(v) => vec![v],
            Self::Many(v) => v,
        }
    }
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct File {
    #[serde(default)]
    pub server: FileServer,
    #[serde(default)]
    pub client: FileClient,
    #[serde(default)]
    pub log: FileLog,
    #[serde(default)]
    pub relay: FileRelay,
    #[serde(default)]
    pub web: FileWeb,
    #[serde(default)]
    pub auth: FileAuth,
    #[serde(default)]
    pub cluster: FileCluster,
    /// The reference's statistics and iroh transport: accepted so that its configs start,
    /// with a warning that they are ignored.
    pub stats: Option<toml::Value>,
    pub iroh: Option<toml::Value>,
}

/// `[cluster]`: the peer relays to dial.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct FileCluster {
    #[serde(default)]
    pub connect: OneOrMany<String>,
    pub id: Option<u64>,
    pub token: Option<PathBuf>,
    pub linger: Option<String>,
    /// This relay's own URL, which gossip advertises; without `mesh` it does nothing (as in
    /// the reference).
    pub node: Option<String>,
    /// `true`/`false`, or (the old spelling) the node's URL.
    pub mesh: Option<BoolOrString>,
}

/// A TOML value that is a boolean or a string.
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub enum BoolOrString {
    Bool(bool),
    Str(String),
}

/// The peer relays this relay dials, and its hop id.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClusterConfig {
    /// `None`: random at each start.
    pub id: Option<u64>,
    pub peers: Vec<crate::cluster::PeerUrl>,
    /// Our own URL for gossip (`[cluster] node`).
    pub node: Option<String>,
    /// Gossip on: `node` is advertised, and peers found are dialled.
    pub mesh: bool,
    /// The cluster token, sent to peers whose URL has no `jwt` (gossip ones too).
    pub token: Option<String>,
}

/// `[auth] public`: prefixes for both directions, or a table of one-direction lists.
#[derive(Deserialize, Debug)]
#[serde(untagged)]
pub enum Public {
    Both(OneOrMany<String>),
    Split(PublicSplit),
}

impl Default for Public {
    fn default() -> Self {
        Self::Both(OneOrMany::default())
    }
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct PublicSplit {
    #[serde(default)]
    pub subscribe: OneOrMany<String>,
    #[serde(default)]
    pub publish: OneOrMany<String>,
}

/// `[auth]`: token keys and public prefixes.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct FileAuth {
    pub key: Option<PathBuf>,
    pub key_dir: Option<PathBuf>,
    /// Both directions: one prefix or a list; or, as the reference also writes it, a table
    /// `{ subscribe = [...], publish = [...] }`.
    #[serde(default)]
    pub public: Public,
    #[serde(default)]
    pub public_subscribe: OneOrMany<String>,
    #[serde(default)]
    pub public_publish: OneOrMany<String>,
}

/// `[relay]`: the bounds of what the relay holds per track and per session.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct FileRelay {
    pub cache_groups: Option<usize>,
    pub cache_age: Option<u64>,
    pub groups_in_flight: Option<usize>,
    pub max_subscriptions: Option<usize>,
    pub max_announces: Option<usize>,
    pub max_frame: Option<u64>,
    pub max_message: Option<usize>,
    pub track_linger: Option<u64>,
    pub max_broadcasts: Option<usize>,
    pub max_announce_rate: Option<u32>,
    pub max_queued: Option<usize>,
    pub max_group_frames: Option<usize>,
    pub max_group_bytes: Option<u64>,
    pub max_partial: Option<u64>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct FileServer {
    #[serde(alias = "listen")]
    pub bind: Option<String>,
    pub threads: Option<usize>,
    pub io: Option<String>,
    pub gso: Option<bool>,
    pub gro: Option<bool>,
    pub steer: Option<bool>,
    pub pin: Option<bool>,
    pub max_connections: Option<usize>,
    pub max_connections_per_ip: Option<usize>,
    pub max_handshakes: Option<usize>,
    pub retry: Option<String>,
    pub retry_after: Option<usize>,
    pub handshake_timeout: Option<u64>,
    #[serde(default)]
    pub tls: FileServerTls,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct FileServerTls {
    #[serde(default)]
    pub cert: OneOrMany<PathBuf>,
    #[serde(default)]
    pub key: OneOrMany<PathBuf>,
    #[serde(default)]
    pub generate: OneOrMany<String>,
    /// Roots for client certificates (mutual TLS between relays).
    #[serde(default)]
    pub root: OneOrMany<PathBuf>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct FileClient {
    pub bind: Option<String>,
    #[serde(default)]
    pub tls: FileClientTls,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct FileClientTls {
    #[serde(default)]
    pub root: OneOrMany<PathBuf>,
    #[serde(default)]
    pub fingerprint: OneOrMany<String>,
    pub disable_verify: Option<bool>,
    /// Our client certificate for mutual TLS: a chain and its key (one file each).
    #[serde(default)]
    pub cert: OneOrMany<PathBuf>,
    #[serde(default)]
    pub key: OneOrMany<PathBuf>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct FileLog {
    pub level: Option<String>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct FileWeb {
    pub max_connections: Option<usize>,
    pub max_connections_per_ip: Option<usize>,
    pub max_fetches: Option<usize>,
    pub write_timeout: Option<u64>,
    #[serde(default)]
    pub http: FileWebHttp,
    #[serde(default)]
    pub https: FileWebHttps,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct FileWebHttp {
    pub listen: Option<String>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct FileWebHttps {
    pub listen: Option<String>,
    #[serde(default)]
    pub cert: OneOrMany<PathBuf>,
    #[serde(default)]
    pub key: OneOrMany<PathBuf>,
}

/// Where the server's certificates come from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServerTls {
    pub pairs: Vec<(PathBuf, PathBuf)>,
    pub generate: Vec<String>,
    /// Roots that client certificates must chain to; none: no client certificates asked for.
    pub client_roots: Vec<PathBuf>,
}

/// The HTTP endpoints over TCP; each listener is off when `None`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WebConfig {
    pub http: Option<SocketAddr>,
    pub https: Option<WebHttps>,
    pub limits: HttpLimits,
}

#[derive(Clone, Debug, PartialEq)]
pub struct WebHttps {
    pub listen: SocketAddr,
    /// `(chain, key)` PEM pairs; empty: serve the relay's own certificates.
    pub pairs: Vec<(PathBuf, PathBuf)>,
}

/// The resolved, validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub bind: SocketAddr,
    pub threads: usize,
    pub io: IoMode,
    pub socket: SocketOptions,
    pub steer: bool,
    pub pin: bool,
    /// Who may connect: Retry, and caps on handshakes and connections.
    pub admission: AdmissionLimits,
    pub tls: ServerTls,
    pub client_bind: SocketAddr,
    pub client_verify: ClientVerify,
    /// Our certificate and key for mutual TLS with peer relays.
    pub client_identity: Option<(PathBuf, PathBuf)>,
    pub log_level: String,
    pub limits: Limits,
    pub web: WebConfig,
    /// Who may publish and subscribe where.
    pub auth: Arc<Auth>,
    pub cluster: ClusterConfig,
    /// What start-up should log once logging is up (keys accepted but ignored, and such).
    pub warnings: Vec<String>,
}

/// A configuration error that names the offending key.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

fn bad(key: &str, msg: impl std::fmt::Display) -> ConfigError {
    ConfigError(format!("config {key}: {msg}"))
}

fn resolve(key: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    value
        .to_socket_addrs()
        .map_err(|e| bad(key, format!("`{value}` is not a socket address: {e}")))?
        .next()
        .ok_or_else(|| bad(key, format!("`{value}` resolves to no address")))
}

/// `cli` wins over `file`, which wins over `default`.
fn pick<T>(cli: Option<T>, file: Option<T>, default: T) -> T {
    cli.or(file).unwrap_or(default)
}

fn pick_list<T>(cli: Vec<T>, file: OneOrMany<T>) -> Vec<T> {
    if cli.is_empty() { file.into_vec() } else { cli }
}

impl Config {
    /// Parse the process arguments and environment, read the file they name, and validate.
    pub fn load() -> Result<Self, ConfigError> {
        Self::from_cli(Cli::parse())
    }

    pub fn from_cli(cli: Cli) -> Result<Self, ConfigError> {
        let file = match &cli.file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigError(format!("config file {}: {e}", path.display())))?;
                toml::from_str::<File>(&text)
                    .map_err(|e| ConfigError(format!("config file {}: {e}", path.display())))?
            }
            None => File::default(),
        };
        Self::merge(cli, file)
    }

    pub fn merge(cli: Cli, file: File) -> Result<Self, ConfigError> {
        let admission = admission(&cli, &file.server)?;
        let mut limits = relay_limits(&cli, &file.relay)?;
        if let Some(l) = cli.cluster_linger.clone().or(file.cluster.linger.clone()) {
            limits.broadcast_linger =
                duration(&l).map_err(|e| bad("cluster.linger (--cluster-linger)", e))?;
        }
        let http_limits = limits::http(&cli, &file.web)?;
        let (both, mut publish, mut subscribe) = match file.auth.public {
            Public::Both(b) => (b.into_vec(), Vec::new(), Vec::new()),
            Public::Split(s) => (Vec::new(), s.publish.into_vec(), s.subscribe.into_vec()),
        };
        publish.extend(file.auth.public_publish.into_vec());
        subscribe.extend(file.auth.public_subscribe.into_vec());
        let auth = Arc::new(auth(
            cli.auth_key.clone().or(file.auth.key.clone()),
            cli.auth_key_dir.clone().or(file.auth.key_dir.clone()),
            [
                pick_list(cli.auth_public.clone(), OneOrMany::Many(both)),
                pick_list(cli.auth_public_publish.clone(), OneOrMany::Many(publish)),
                pick_list(
                    cli.auth_public_subscribe.clone(),
                    OneOrMany::Many(subscribe),
                ),
            ],
        )?);
        let mut warnings = Vec::new();
        let mesh = cli.cluster_mesh.clone().map(|m| match m.parse::<bool>() {
            Ok(b) => BoolOrString::Bool(b),
            Err(_) => BoolOrString::Str(m),
        });
        let node = cli.cluster_node.clone().or(file.cluster.node.clone());
        let (node, mesh) = mesh_config(node, mesh.or(file.cluster.mesh), &mut warnings)?;
        let connect = pick_list(cli.cluster_connect.clone(), file.cluster.connect);
        let mut cluster = cluster(
            connect.clone(),
            cli.cluster_id.or(file.cluster.id),
            cli.cluster_token.clone().or(file.cluster.token),
        )?;
        (cluster.node, cluster.mesh) = (node, mesh);
        let bind = pick(cli.server_bind, file.server.bind, "[::]:443".into());
        let bind = resolve("server.bind (--server-bind)", &bind)?;

        let threads = pick(cli.threads, file.server.threads, 0);
        if threads > 256 {
            return Err(bad(
                "server.threads (--threads)",
                format!("{threads} is more than 256"),
            ));
        }
        let io = pick(cli.io, file.server.io, "auto".into());
        let io: IoMode = io.parse().map_err(|e| bad("server.io (--io)", e))?;

        let mut tls = server_tls(
            pick_list(cli.tls_cert, file.server.tls.cert),
            pick_list(cli.tls_key, file.server.tls.key),
            pick_list(cli.tls_generate, file.server.tls.generate),
        )?;
        tls.client_roots = pick_list(cli.server_tls_root, file.server.tls.root);
        let client_identity = match (
            cli.client_tls_cert
                .or(file.client.tls.cert.into_vec().into_iter().next()),
            cli.client_tls_key
                .or(file.client.tls.key.into_vec().into_iter().next()),
        ) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => {
                return Err(bad(
                    "client.tls.cert/key (--client-tls-cert/--client-tls-key)",
                    "give both or neither",
                ));
            }
        };
        for (table, present) in [
            ("stats", file.stats.is_some()),
            ("iroh", file.iroh.is_some()),
        ] {
            if present {
                warnings.push(format!(
                    "config [{table}] is not supported by this relay and is ignored"
                ));
            }
        }
        for raw in &connect {
            if !raw.contains("://") {
                warnings.push(format!(
                    "config cluster.connect `{raw}` has no scheme: taken as https://"
                ));
            }
        }

        let client_bind = pick(cli.client_bind, file.client.bind, "[::]:0".into());
        let client_bind = resolve("client.bind (--client-bind)", &client_bind)?;
        let client_verify = client_verify(
            pick_list(cli.client_tls_root, file.client.tls.root),
            pick_list(cli.client_tls_fingerprint, file.client.tls.fingerprint),
            pick(
                cli.client_tls_disable_verify,
                file.client.tls.disable_verify,
                false,
            ),
        );

        let log_level = pick(cli.log_level, file.log.level, "info".into());
        if log_level.parse::<tracing::Level>().is_err() {
            return Err(bad(
                "log.level (--log-level)",
                format!("`{log_level}` is not a level"),
            ));
        }

        let web = Self::web(
            &cli.web_http_listen,
            &cli.web_https_listen,
            cli.web_https_cert,
            cli.web_https_key,
            file.web,
            http_limits,
        )?;

        Ok(Config {
            bind,
            threads,
            io,
            socket: SocketOptions {
                gso: pick(cli.gso, file.server.gso, true),
                gro: pick(cli.gro, file.server.gro, true),
                ..SocketOptions::default()
            },
            steer: pick(cli.steer, file.server.steer, true),
            pin: pick(cli.pin, file.server.pin, true),
            admission,
            tls,
            client_bind,
            client_verify,
            client_identity,
            log_level,
            limits,
            web,
            auth,
            cluster,
            warnings,
        })
    }

    fn web(
        http: &Option<String>,
        https: &Option<String>,
        certs: Vec<PathBuf>,
        keys: Vec<PathBuf>,
        file: FileWeb,
        limits: HttpLimits,
    ) -> Result<WebConfig, ConfigError> {
        let http = http.clone().or(file.http.listen);
        let http = match http {
            Some(a) => Some(resolve("web.http.listen (--web-http-listen)", &a)?),
            None => None,
        };
        let certs = pick_list(certs, file.https.cert);
        let keys = pick_list(keys, file.https.key);
        if certs.len() != keys.len() {
            return Err(bad(
                "web.https.cert/key (--web-https-cert/--web-https-key)",
                format!(
                    "{} certificates but {} keys; give them in pairs",
                    certs.len(),
                    keys.len()
                ),
            ));
        }
        let https = match https.clone().or(file.https.listen) {
            Some(a) => Some(WebHttps {
                listen: resolve("web.https.listen (--web-https-listen)", &a)?,
                pairs: certs.into_iter().zip(keys).collect(),
            }),
            None if !certs.is_empty() => {
                return Err(bad(
                    "web.https.cert (--web-https-cert)",
                    "given without web.https.listen",
                ));
            }
            None => None,
        };
        Ok(WebConfig {
            http,
            https,
            limits,
        })
    }
}

/// The server's certificates: cert/key pairs, and host names to generate one for.
fn server_tls(
    certs: Vec<PathBuf>,
    keys: Vec<PathBuf>,
    generate: Vec<String>,
) -> Result<ServerTls, ConfigError> {
    if certs.len() != keys.len() {
        return Err(bad(
            "server.tls.cert/key (--tls-cert/--tls-key)",
            format!(
                "{} certificates but {} keys; give them in pairs",
                certs.len(),
                keys.len()
            ),
        ));
    }
    if generate.iter().any(|h| h.trim().is_empty()) {
        return Err(bad(
            "server.tls.generate (--tls-generate)",
            "empty host name",
        ));
    }
    if certs.is_empty() && generate.is_empty() {
        return Err(bad(
            "server.tls",
            "no certificate: give --tls-cert and --tls-key, or --tls-generate HOST,...",
        ));
    }
    Ok(ServerTls {
        pairs: certs.into_iter().zip(keys).collect(),
        generate,
        client_roots: Vec::new(),
    })
}

/// How the client role checks the relays it dials: not at all, by pinned fingerprints, or
/// against roots (the system's when none are given).
fn client_verify(roots: Vec<PathBuf>, fingerprints: Vec<String>, disable: bool) -> ClientVerify {
    if disable {
        ClientVerify::Disabled
    } else if !fingerprints.is_empty() {
        ClientVerify::Fingerprints(fingerprints)
    } else {
        ClientVerify::Roots(roots)
    }
}

#[path = "config_access.rs"]
mod access;
use access::{auth, cluster, duration, mesh_config};

#[path = "config_limits.rs"]
mod limits;
use limits::{admission, relay_limits};

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
