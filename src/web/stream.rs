//! Stream headers (RFC 9114 §6.2, WebTransport over HTTP/3 §4) and HTTP datagrams (RFC 9297).

use bytes::{Bytes, BytesMut};

use super::error::{Error, H3_DATAGRAM_ERROR, H3_ID_ERROR, H3_STREAM_CREATION_ERROR};
use super::frame::{WEBTRANSPORT_STREAM, put_varint, varint};

const CONTROL: u64 = 0x00;
const PUSH: u64 = 0x01;
const QPACK_ENCODER: u64 = 0x02;
const QPACK_DECODER: u64 = 0x03;
const WEBTRANSPORT_UNI: u64 = 0x54;

/// What a peer-initiated unidirectional stream carries, from its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UniStream {
    /// Feed the rest to a [`super::ControlReader`]; must stay open (H3_CLOSED_CRITICAL_STREAM).
    Control,
    /// We advertise a zero dynamic table, so a peer's encoder stream carries nothing we must
    /// act on; read and discard, but never close it (RFC 9204 §4.2).
    QpackEncoder,
    /// As [`Self::QpackEncoder`].
    QpackDecoder,
    /// A WebTransport uni stream; the rest is application data.
    WebTransport { session: u64 },
    /// Server push. A server must reject it from a client (H3_STREAM_CREATION_ERROR); a client
    /// that never sent MAX_PUSH_ID must close with H3_ID_ERROR.
    Push,
    /// Reserved or unknown: STOP_SENDING with H3_STREAM_CREATION_ERROR (RFC 9114 §6.2).
    Unknown(u64),
}

/// Parses the type of a peer's unidirectional stream. `Ok(None)` means the header is not all
/// here yet; otherwise the stream kind and how many bytes the header took.
pub fn uni_header(buf: &[u8]) -> Result<Option<(UniStream, usize)>, Error> {
    let Some((typ, n)) = varint(buf) else {
        return Ok(None);
    };
    let kind = match typ {
        CONTROL => UniStream::Control,
        PUSH => UniStream::Push,
        QPACK_ENCODER => UniStream::QpackEncoder,
        QPACK_DECODER => UniStream::QpackDecoder,
        WEBTRANSPORT_UNI => {
            let Some((session, m)) = varint(&buf[n..]) else {
                return Ok(None);
            };
            check_session(session)?;
            return Ok(Some((UniStream::WebTransport { session }, n + m)));
        }
        other => UniStream::Unknown(other),
    };
    Ok(Some((kind, n)))
}

/// What a bidirectional stream carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BidiStream {
    /// A WebTransport bidi stream; the rest is application data.
    WebTransport { session: u64 },
    /// An HTTP request stream (for us, the CONNECT); nothing was consumed, so feed the stream
    /// from its start to a [`super::ConnectReader`].
    Request,
}

/// Tells a WebTransport bidi stream (`0x41` + session id) from an HTTP request stream.
/// `Ok(None)` means more bytes are needed to decide.
pub fn bidi_header(buf: &[u8]) -> Result<Option<(BidiStream, usize)>, Error> {
    let Some((typ, n)) = varint(buf) else {
        return Ok(None);
    };
    if typ != WEBTRANSPORT_STREAM {
        return Ok(Some((BidiStream::Request, 0)));
    }
    let Some((session, m)) = varint(&buf[n..]) else {
        return Ok(None);
    };
    check_session(session)?;
    Ok(Some((BidiStream::WebTransport { session }, n + m)))
}

/// A session id is the id of the client-initiated bidi stream that carried the CONNECT; any
/// other value is H3_ID_ERROR (draft-ietf-webtrans-http3, stream and datagram framing).
fn check_session(session: u64) -> Result<(), Error> {
    if !session.is_multiple_of(4) {
        return Err(Error::connection(
            H3_ID_ERROR,
            "session id is not a client-initiated bidirectional stream",
        ));
    }
    Ok(())
}

/// Tracks the peer's critical uni streams: a second control or QPACK stream of the same type
/// is H3_STREAM_CREATION_ERROR (RFC 9114 §6.2.1, RFC 9204 §4.2).
#[derive(Debug, Default)]
pub struct PeerStreams {
    control: bool,
    encoder: bool,
    decoder: bool,
}

impl PeerStreams {
    pub fn accept(&mut self, kind: UniStream) -> Result<(), Error> {
        let seen = match kind {
            UniStream::Control => &mut self.control,
            UniStream::QpackEncoder => &mut self.encoder,
            UniStream::QpackDecoder => &mut self.decoder,
            _ => return Ok(()),
        };
        if std::mem::replace(seen, true) {
            return Err(Error::connection(
                H3_STREAM_CREATION_ERROR,
                "duplicate control or QPACK stream",
            ));
        }
        Ok(())
    }
}

/// The bytes that open a WebTransport uni stream of `session`.
pub fn uni_prefix(session: u64) -> Bytes {
    let mut out = BytesMut::with_capacity(9);
    put_varint(&mut out, WEBTRANSPORT_UNI);
    put_varint(&mut out, session);
    out.freeze()
}

/// The bytes that open a WebTransport bidi stream of `session`.
pub fn bidi_prefix(session: u64) -> Bytes {
    let mut out = BytesMut::with_capacity(10);
    put_varint(&mut out, WEBTRANSPORT_STREAM);
    put_varint(&mut out, session);
    out.freeze()
}

/// The prefix of every datagram of `session`: its Quarter Stream ID, `session / 4`
/// (RFC 9297 §2.1). web-transport-quinn writes the full id, which only agrees for session 0.
pub fn datagram_prefix(session: u64) -> Bytes {
    let mut out = BytesMut::with_capacity(8);
    put_varint(&mut out, session / 4);
    out.freeze()
}

/// Splits a received datagram into its session id and payload. A datagram too short to hold
/// a Quarter Stream ID, or one above 2^60-1, is H3_DATAGRAM_ERROR (RFC 9297 §2.1). A session we
/// do not know is the caller's to drop.
pub fn split_datagram(buf: &[u8]) -> Result<(u64, &[u8]), Error> {
    let Some((quarter, n)) = varint(buf) else {
        return Err(Error::connection(
            H3_DATAGRAM_ERROR,
            "datagram without a quarter stream id",
        ));
    };
    if quarter >= 1 << 60 {
        return Err(Error::connection(
            H3_DATAGRAM_ERROR,
            "quarter stream id above 2^60-1",
        ));
    }
    Ok((quarter * 4, &buf[n..]))
}
