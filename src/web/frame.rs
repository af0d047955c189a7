//! Varints and HTTP/3 frame headers over byte slices.
//!
//! web-transport-proto's `decode` functions advance their `Buf` even when they fail with
//! `UnexpectedEnd`, so every decode here runs on a copy of the slice and reports how many bytes
//! it used only on success.

use bytes::BufMut;
use web_transport_proto::VarInt;

use super::error::{Error, H3_FRAME_ERROR, H3_FRAME_UNEXPECTED};

pub const DATA: u64 = 0x00;
pub const HEADERS: u64 = 0x01;
pub const CANCEL_PUSH: u64 = 0x03;
pub const SETTINGS: u64 = 0x04;
pub const PUSH_PROMISE: u64 = 0x05;
pub const GOAWAY: u64 = 0x07;
pub const MAX_PUSH_ID: u64 = 0x0d;
/// WEBTRANSPORT_STREAM: the signal that opens a WT bidi stream; it has no length.
pub const WEBTRANSPORT_STREAM: u64 = 0x41;

/// A varint and its encoded size, or `None` if `buf` ends inside it.
pub fn varint(buf: &[u8]) -> Option<(u64, usize)> {
    let mut cursor = buf;
    let value = VarInt::decode(&mut cursor).ok()?;
    Some((value.into_inner(), buf.len() - cursor.len()))
}

/// Appends `value` as a varint. Callers pass stream ids, lengths and codes of ours, all
/// below 2^62 by construction.
pub fn put_varint(out: &mut impl BufMut, value: u64) {
    VarInt::from_u64(value)
        .expect("varint values are below 2^62")
        .encode(out);
}

/// Appends a frame header: type and payload length.
pub fn put_frame_header(out: &mut impl BufMut, typ: u64, len: usize) {
    put_varint(out, typ);
    put_varint(out, len as u64);
}

/// The start of a frame: its type, payload length and how many bytes those took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub typ: u64,
    pub len: u64,
    pub size: usize,
}

impl FrameHeader {
    /// `None` when `buf` ends inside the header.
    pub fn parse(buf: &[u8]) -> Option<Self> {
        let (typ, a) = varint(buf)?;
        let (len, b) = varint(&buf[a..])?;
        Some(Self {
            typ,
            len,
            size: a + b,
        })
    }

    /// The whole frame (header and payload) if `buf` holds all of it.
    pub fn payload<'a>(&self, buf: &'a [u8]) -> Option<&'a [u8]> {
        let len = usize::try_from(self.len).ok()?;
        buf.get(self.size..self.size.checked_add(len)?)
    }
}

/// Frames that never belong on a request stream (RFC 9114 §7.2): control-stream frames,
/// PUSH_PROMISE from a client, and the HTTP/2 types reserved in §7.2.8. All are connection
/// errors of type H3_FRAME_UNEXPECTED.
pub fn check_request_frame(typ: u64) -> Result<(), Error> {
    match typ {
        CANCEL_PUSH | SETTINGS | GOAWAY | MAX_PUSH_ID => Err(Error::connection(
            H3_FRAME_UNEXPECTED,
            "control frame on a request stream",
        )),
        PUSH_PROMISE => Err(Error::connection(
            H3_FRAME_UNEXPECTED,
            "PUSH_PROMISE on a request stream",
        )),
        0x02 | 0x06 | 0x08 | 0x09 => Err(Error::connection(
            H3_FRAME_UNEXPECTED,
            "reserved HTTP/2 frame type",
        )),
        // Only valid as the first bytes of a stream, where `bidi_header` takes it.
        WEBTRANSPORT_STREAM => Err(Error::connection(
            H3_FRAME_ERROR,
            "WEBTRANSPORT_STREAM after the start of a stream",
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_cut_points() {
        let mut buf = Vec::new();
        put_varint(&mut buf, 0x3fff_ffff);
        assert_eq!(buf, [0xbf, 0xff, 0xff, 0xff]);
        for cut in 0..buf.len() {
            assert_eq!(varint(&buf[..cut]), None);
        }
        assert_eq!(varint(&buf), Some((0x3fff_ffff, 4)));
    }

    #[test]
    fn frame_header_and_payload() {
        let buf = [0x01, 0x03, 1, 2, 3, 9];
        let header = FrameHeader::parse(&buf).unwrap();
        assert_eq!(
            header,
            FrameHeader {
                typ: 1,
                len: 3,
                size: 2
            }
        );
        assert_eq!(header.payload(&buf), Some(&[1, 2, 3][..]));
        assert_eq!(header.payload(&buf[..4]), None);
        assert_eq!(FrameHeader::parse(&[0x01]), None);
        // A length far beyond the address space is "not yet here", never a panic.
        let huge = [0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        let header = FrameHeader::parse(&huge).unwrap();
        assert_eq!(header.payload(&huge), None);
    }
}
