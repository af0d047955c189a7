//! Capsules on the CONNECT stream (RFC 9297 §3, draft-ietf-webtrans-http3 session termination).
//!
//! In HTTP/3 the capsules ride in DATA frames: the capsule stream is the concatenation of
//! DATA payloads, and one capsule may span frames. web-transport-proto 0.6.3's sync
//! `Capsule::decode` reads bare capsules and knows no DRAIN, so both directions are here.

use bytes::{BufMut, Bytes, BytesMut};

use super::error::{Error, H3_MESSAGE_ERROR};
use super::frame::{DATA, FrameHeader, put_frame_header, put_varint};

pub const CLOSE_WEBTRANSPORT_SESSION: u64 = 0x2843;
pub const DRAIN_WEBTRANSPORT_SESSION: u64 = 0x78ae;
/// The draft caps the close reason at 1024 bytes.
pub const MAX_CLOSE_REASON: usize = 1024;

/// A capsule the session acts on; others (DATAGRAM, grease, flow control of later drafts)
/// are skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Capsule {
    /// The peer ended the session; it will FIN the stream next, and so must we.
    CloseWebTransportSession { code: u32, reason: String },
    /// The peer asks us to wind the session down (like GOAWAY).
    DrainWebTransportSession,
}

/// A DATA frame carrying CLOSE_WEBTRANSPORT_SESSION. The reason is cut to 1024 bytes on a
/// character boundary. Send it on the CONNECT stream, then FIN that stream.
pub fn close_capsule(code: u32, reason: &str) -> Bytes {
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let reason = &reason.as_bytes()[..end];
    let mut capsule = BytesMut::with_capacity(8 + 4 + reason.len());
    put_varint(&mut capsule, CLOSE_WEBTRANSPORT_SESSION);
    put_varint(&mut capsule, 4 + reason.len() as u64);
    capsule.put_u32(code);
    capsule.put_slice(reason);
    data_frame(&capsule)
}

/// A DATA frame carrying DRAIN_WEBTRANSPORT_SESSION.
pub fn drain_capsule() -> Bytes {
    let mut capsule = BytesMut::with_capacity(4);
    put_varint(&mut capsule, DRAIN_WEBTRANSPORT_SESSION);
    put_varint(&mut capsule, 0);
    data_frame(&capsule)
}

fn data_frame(payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(payload.len() + 4);
    put_frame_header(&mut out, DATA, payload.len());
    out.put_slice(payload);
    out.freeze()
}

const fn malformed(reason: &'static str) -> Error {
    Error::stream(H3_MESSAGE_ERROR, reason)
}

/// Parses capsules from DATA payload bytes, buffering at most one capsule header or one
/// close reason; unknown capsules are dropped as they stream past.
#[derive(Debug, Default)]
pub(crate) struct CapsuleParser {
    buf: Vec<u8>,
    /// Type and length of the capsule being buffered.
    header: Option<(u64, u64)>,
    /// Payload bytes of an ignored capsule still to drop.
    skip: u64,
}

impl CapsuleParser {
    /// Consumes DATA payload bytes; returns how many and the capsule they completed, if any.
    pub fn push(&mut self, data: &[u8]) -> Result<(usize, Option<Capsule>), Error> {
        let mut pos = 0;
        loop {
            if self.skip > 0 {
                let n = (data.len() - pos).min(self.skip as usize);
                pos += n;
                self.skip -= n as u64;
                if self.skip > 0 {
                    return Ok((pos, None));
                }
            }
            let Some((typ, len)) = self.header else {
                // Copy exactly the header's bytes: the sizes of both varints are in their
                // first bytes, so nothing of the payload is taken.
                let Some(header) = FrameHeader::parse(&self.buf) else {
                    if pos == data.len() {
                        return Ok((pos, None));
                    }
                    self.buf.push(data[pos]);
                    pos += 1;
                    continue;
                };
                self.buf.clear();
                match header.typ {
                    CLOSE_WEBTRANSPORT_SESSION
                        if !(4..=4 + MAX_CLOSE_REASON as u64).contains(&header.len) =>
                    {
                        return Err(malformed("CLOSE_WEBTRANSPORT_SESSION of a bad length"));
                    }
                    DRAIN_WEBTRANSPORT_SESSION if header.len != 0 => {
                        return Err(malformed("DRAIN_WEBTRANSPORT_SESSION with a payload"));
                    }
                    CLOSE_WEBTRANSPORT_SESSION | DRAIN_WEBTRANSPORT_SESSION => {
                        self.header = Some((header.typ, header.len));
                    }
                    _ => self.skip = header.len,
                }
                continue;
            };
            let want = len as usize - self.buf.len();
            let n = want.min(data.len() - pos);
            self.buf.extend_from_slice(&data[pos..pos + n]);
            pos += n;
            if n < want {
                return Ok((pos, None));
            }
            self.header = None;
            let capsule = if typ == DRAIN_WEBTRANSPORT_SESSION {
                Capsule::DrainWebTransportSession
            } else {
                let code = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
                let reason = std::str::from_utf8(&self.buf[4..])
                    .map_err(|_| malformed("close reason is not UTF-8"))?
                    .to_owned();
                Capsule::CloseWebTransportSession { code, reason }
            };
            self.buf.clear();
            return Ok((pos, Some(capsule)));
        }
    }

    /// Whether the bytes so far end on a capsule boundary; a stream that ends elsewhere cut a
    /// capsule short, which makes the message malformed (RFC 9297 §3.3).
    pub fn is_idle(&self) -> bool {
        self.buf.is_empty() && self.header.is_none() && self.skip == 0
    }
}
