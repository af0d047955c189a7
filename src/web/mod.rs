//! HTTP/3 just enough for one WebTransport session per connection, sans IO.
//!
//! Everything here works on byte slices of streams someone else reads and writes: readers say
//! how many bytes they consumed (keep the rest, append more, call again) and encoders return
//! the bytes to write. Wire codecs come from `web-transport-proto` where they fit the sans-IO
//! shape; QPACK, capsules and the request checks are ours (each module says why).
//!
//! A server connection, in order:
//! 1. ALPN [`ALPN`]; open a uni stream and write [`control_stream`]`(true)` at once (Chromium
//!    waits for our SETTINGS before sending its CONNECT). Never finish that stream.
//! 2. Peer uni streams: [`uni_header`], then [`PeerStreams::accept`]. Control goes to a
//!    [`ControlReader`]; QPACK streams are read and discarded but kept open; an end of any of
//!    these three is [`Error::closed_critical_stream`].
//! 3. Peer bidi streams: [`bidi_header`]. A [`BidiStream::Request`] (the first is the CONNECT;
//!    its stream id is the session id) goes to a [`ConnectReader`]; answer the request with
//!    [`response`] and keep both directions of that stream open for the session's life.
//! 4. WebTransport streams open with [`uni_prefix`] / [`bidi_prefix`], and datagrams with
//!    [`datagram_prefix`]; incoming ones are split by [`split_datagram`].
//! 5. Close: write [`close_capsule`] on the CONNECT stream and FIN it. Stream resets inside the
//!    session use [`crate::lite::ErrorCode::to_stream_code`].

mod capsule;
mod connect;
mod error;
mod frame;
mod qpack;
mod session;
mod settings;
mod stream;

pub use capsule::{
    CLOSE_WEBTRANSPORT_SESSION, Capsule, DRAIN_WEBTRANSPORT_SESSION, MAX_CLOSE_REASON,
    close_capsule, drain_capsule,
};
pub use connect::{
    AVAILABLE_PROTOCOLS, ConnectProgress, ConnectReader, Rejection, Request, Response,
    ResponseProgress, ResponseReader, SELECTED_PROTOCOL, choose_protocol, connect_request,
    response,
};
pub use error::*;
pub use session::{
    CONNECT_PRIORITY, MAX_EARLY_BYTES, MAX_EARLY_STREAMS, RootCheck, SessionStreams, WebEvent,
    WebSession,
};
pub use settings::{ControlReader, MAX_FIELD_SECTION_SIZE, control_stream, goaway_frame};
pub use stream::{
    BidiStream, PeerStreams, UniStream, bidi_header, bidi_prefix, datagram_prefix, split_datagram,
    uni_header, uni_prefix,
};

/// The ALPN of HTTP/3, which WebTransport rides on.
pub const ALPN: &[u8] = b"h3";

#[cfg(test)]
mod session_tests;
#[cfg(test)]
mod tests;

/// A HEADERS frame carrying `fields` in order (static-table QPACK, no Huffman): any request or
/// response, malformed ones included, for clients and tests.
pub fn headers_frame(fields: &[(&str, &str)]) -> bytes::Bytes {
    let mut section = bytes::BytesMut::new();
    qpack::encode_section(fields, &mut section);
    let mut out = bytes::BytesMut::with_capacity(section.len() + 16);
    frame::put_frame_header(&mut out, frame::HEADERS, section.len());
    out.extend_from_slice(&section);
    out.freeze()
}
