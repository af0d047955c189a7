//! The per-core QUIC engine on sans-IO quinn-proto: connection table, timers, GSO transmit
//! loop, TLS, and both roles. Knows nothing of HTTP/3 or MoQ.

mod admission;
mod cid;
mod driver;
mod engine;
pub mod stream_io;
pub mod tls;

pub use admission::{AdmissionLimits, RetryPolicy};
pub use cid::CoreCid;
pub use driver::{Ctx, Handler};
pub use engine::{ClientRole, CoreInfo, CoreStats, Engine, EngineConfig, ServerRole};
pub use quinn_proto::{
    ClientConfig, Connection, ConnectionHandle, ConnectionId, ConnectionIdGenerator, Dir, Event,
    ServerConfig, StreamEvent, StreamId, TransportConfig, VarInt,
};

use std::sync::Arc;
use std::time::Duration;

/// Transport settings for MoQ: many concurrent streams (a group is a stream) and windows large
/// enough for a burst of video, but nothing allocated until used.
#[derive(Clone, Debug)]
pub struct TransportLimits {
    pub max_streams_bidi: u32,
    pub max_streams_uni: u32,
    pub stream_window: u32,
    pub connection_window: u32,
    pub send_window: u64,
    pub idle_timeout: Duration,
    pub keep_alive: Option<Duration>,
}

impl Default for TransportLimits {
    fn default() -> Self {
        Self {
            max_streams_bidi: 1024,
            max_streams_uni: 1024,
            stream_window: 1 << 20,
            connection_window: 16 << 20,
            send_window: 16 << 20,
            idle_timeout: Duration::from_secs(30),
            keep_alive: Some(Duration::from_secs(5)),
        }
    }
}

/// Bytes of received DATAGRAM frames quinn keeps per connection.
pub const DATAGRAM_BUFFER: usize = 16 * 1024;

impl TransportLimits {
    pub fn transport_config(&self) -> Arc<TransportConfig> {
        let mut t = TransportConfig::default();
        t.max_concurrent_bidi_streams(VarInt::from_u32(self.max_streams_bidi))
            .max_concurrent_uni_streams(VarInt::from_u32(self.max_streams_uni))
            .stream_receive_window(VarInt::from_u32(self.stream_window))
            .receive_window(VarInt::from_u32(self.connection_window))
            .send_window(self.send_window)
            // Nothing reads DATAGRAM frames yet, but the reference client insists that they are
            // offered: quinn keeps at most this much of them per connection (oldest dropped)
            // instead of its default 1.25 MB.
            .datagram_receive_buffer_size(Some(DATAGRAM_BUFFER))
            .keep_alive_interval(self.keep_alive)
            .max_idle_timeout(Some(
                self.idle_timeout
                    .try_into()
                    .unwrap_or(quinn_proto::IdleTimeout::from(VarInt::from_u32(30_000))),
            ));
        Arc::new(t)
    }
}

/// A quinn-proto server config from a rustls one (which carries the ALPN list).
pub fn server_config(
    tls: Arc<rustls::ServerConfig>,
    limits: &TransportLimits,
) -> Result<Arc<ServerConfig>, tls::TlsError> {
    let crypto = quinn_proto::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| tls::TlsError(format!("quic server tls: {e}")))?;
    let mut config = ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(limits.transport_config());
    Ok(Arc::new(config))
}

/// A quinn-proto client config from a rustls one.
pub fn client_config(
    tls: Arc<rustls::ClientConfig>,
    limits: &TransportLimits,
) -> Result<ClientConfig, tls::TlsError> {
    let crypto = quinn_proto::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| tls::TlsError(format!("quic client tls: {e}")))?;
    let mut config = ClientConfig::new(Arc::new(crypto));
    config.transport_config(limits.transport_config());
    Ok(config)
}
