//! HTTP/3 error codes (RFC 9114 §8.1, RFC 9204 §6, RFC 9297 §5.2, WebTransport) and the error
//! every reader here returns.
//!
//! WebTransport application codes (stream resets inside the session) are not defined here: they
//! are [`crate::lite::ErrorCode::to_stream_code`] / [`crate::lite::ErrorCode::from_stream_code`],
//! the same mapping as `web_transport_proto::error_to_http3` / `error_from_http3`.

use std::fmt;

pub const H3_NO_ERROR: u64 = 0x100;
pub const H3_GENERAL_PROTOCOL_ERROR: u64 = 0x101;
pub const H3_INTERNAL_ERROR: u64 = 0x102;
pub const H3_STREAM_CREATION_ERROR: u64 = 0x103;
pub const H3_CLOSED_CRITICAL_STREAM: u64 = 0x104;
pub const H3_FRAME_UNEXPECTED: u64 = 0x105;
pub const H3_FRAME_ERROR: u64 = 0x106;
pub const H3_EXCESSIVE_LOAD: u64 = 0x107;
pub const H3_ID_ERROR: u64 = 0x108;
pub const H3_SETTINGS_ERROR: u64 = 0x109;
pub const H3_MISSING_SETTINGS: u64 = 0x10a;
pub const H3_REQUEST_REJECTED: u64 = 0x10b;
pub const H3_REQUEST_CANCELLED: u64 = 0x10c;
pub const H3_REQUEST_INCOMPLETE: u64 = 0x10d;
pub const H3_MESSAGE_ERROR: u64 = 0x10e;
pub const H3_CONNECT_ERROR: u64 = 0x10f;
pub const H3_VERSION_FALLBACK: u64 = 0x110;
pub const QPACK_DECOMPRESSION_FAILED: u64 = 0x200;
pub const QPACK_ENCODER_STREAM_ERROR: u64 = 0x201;
pub const QPACK_DECODER_STREAM_ERROR: u64 = 0x202;
/// RFC 9297: a malformed HTTP datagram.
pub const H3_DATAGRAM_ERROR: u64 = 0x33;
/// WebTransport: a stream or datagram for a session that is gone (reset code for WT streams).
pub const WT_SESSION_GONE: u64 = 0x170d_7b68;
/// WebTransport: a stream for a session we never saw and will not buffer.
pub const WT_BUFFERED_STREAM_REJECTED: u64 = 0x3994_bd84;

/// Whether an error ends one stream (RESET_STREAM/STOP_SENDING) or the whole connection
/// (CONNECTION_CLOSE), as RFC 9114 assigns it for each violation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Connection,
    Stream,
}

/// A protocol violation by the peer: what to close, with which HTTP/3 code, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Error {
    pub code: u64,
    pub scope: Scope,
    /// For logs and the CONNECTION_CLOSE reason phrase.
    pub reason: &'static str,
}

impl Error {
    pub const fn connection(code: u64, reason: &'static str) -> Self {
        Self {
            code,
            scope: Scope::Connection,
            reason,
        }
    }

    pub const fn stream(code: u64, reason: &'static str) -> Self {
        Self {
            code,
            scope: Scope::Stream,
            reason,
        }
    }

    /// The peer closed (FIN or reset) its control or a QPACK stream, which must stay open for
    /// the connection's lifetime (RFC 9114 §6.2.1, RFC 9204 §4.2).
    pub const fn closed_critical_stream() -> Self {
        Self::connection(H3_CLOSED_CRITICAL_STREAM, "critical stream closed")
    }

    pub const fn is_connection(&self) -> bool {
        matches!(self.scope, Scope::Connection)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scope = match self.scope {
            Scope::Connection => "connection",
            Scope::Stream => "stream",
        };
        write!(f, "{} ({scope} error {:#x})", self.reason, self.code)
    }
}

impl std::error::Error for Error {}
