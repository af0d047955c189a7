//! Primitive encodings (§1) and message framing.
//!
//! Decoders read from `&mut &[u8]` and advance it; encoders write to any `BufMut`. Every length
//! read from the wire is checked against the bytes actually present before anything is
//! allocated, so a hostile length costs nothing.

use std::time::Duration;

use bytes::BufMut;

use super::{DecodeError, EncodeError, Version};
use crate::model::path;

/// The largest value a QUIC varint can carry.
pub const MAX_VARINT: u64 = (1 << 62) - 1;

/// Hop chains longer than this are rejected (`MAX_HOPS` in the reference).
pub const MAX_HOPS: usize = 32;

/// Bytes in the minimal varint encoding of `v`.
pub(crate) const fn varint_len(v: u64) -> usize {
    match v {
        0..=0x3f => 1,
        0x40..=0x3fff => 2,
        0x4000..=0x3fff_ffff => 4,
        _ => 8,
    }
}

/// Zigzag maps small signed values to small unsigned ones (lite-05 timestamp deltas).
pub(crate) const fn zigzag_encode(n: i64) -> u64 {
    ((n << 1) ^ (n >> 63)) as u64
}

pub(crate) const fn zigzag_decode(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

/// The signed range that zigzag maps into a varint.
pub(crate) const ZIGZAG_MIN: i64 = -(1 << 61);
pub(crate) const ZIGZAG_MAX: i64 = (1 << 61) - 1;

/// Reading primitives from the front of a byte slice.
pub(crate) trait Read<'a> {
    fn u8(&mut self) -> Result<u8, DecodeError>;
    fn u16(&mut self) -> Result<u16, DecodeError>;
    fn varint(&mut self) -> Result<u64, DecodeError>;
    fn bytes(&mut self, len: u64) -> Result<&'a [u8], DecodeError>;

    /// A count of items that take at least a byte each, so a count above the bytes left is
    /// short input. That bounds whatever the caller sizes from it.
    fn count(&mut self) -> Result<usize, DecodeError>;

    /// `(s)`: a length-prefixed UTF-8 string.
    fn string(&mut self) -> Result<String, DecodeError> {
        let len = self.varint()?;
        let raw = self.bytes(len)?;
        let s = std::str::from_utf8(raw).map_err(|_| DecodeError::InvalidUtf8)?;
        Ok(s.to_owned())
    }

    /// A broadcast path or suffix: a string, normalized on receive (§6).
    fn path(&mut self) -> Result<String, DecodeError> {
        let s = self.string()?;
        Ok(path::normalize(&s, usize::MAX)?)
    }

    /// Lenient like the Rust reference: any non-zero byte is true.
    fn bool(&mut self) -> Result<bool, DecodeError> {
        Ok(self.u8()? != 0)
    }

    /// `(i+1)`: 0 is absent, n is n-1.
    fn opt_seq(&mut self) -> Result<Option<u64>, DecodeError> {
        Ok(self.varint()?.checked_sub(1))
    }

    /// `(ms)`.
    fn millis(&mut self) -> Result<Duration, DecodeError> {
        Ok(Duration::from_millis(self.varint()?))
    }

    /// An OriginList: count, then that many hop ids.
    fn hops(&mut self) -> Result<Vec<u64>, DecodeError> {
        let count = self.hop_count()?;
        (0..count).map(|_| self.varint()).collect()
    }

    /// A hop count checked against `MAX_HOPS`, so it can safely size an allocation.
    fn hop_count(&mut self) -> Result<usize, DecodeError> {
        match self.varint()? {
            n if n <= MAX_HOPS as u64 => Ok(n as usize),
            _ => Err(DecodeError::BoundsExceeded),
        }
    }
}

impl<'a> Read<'a> for &'a [u8] {
    fn u8(&mut self) -> Result<u8, DecodeError> {
        let (&b, rest) = self.split_first().ok_or(DecodeError::Short)?;
        *self = rest;
        Ok(b)
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        let raw = self.bytes(2)?;
        Ok(u16::from_be_bytes([raw[0], raw[1]]))
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let first = *self.first().ok_or(DecodeError::Short)?;
        let len = 1usize << (first >> 6);
        let raw = self.bytes(len as u64)?;
        let mut value = u64::from(first & 0x3f);
        for &b in &raw[1..] {
            value = (value << 8) | u64::from(b);
        }
        Ok(value)
    }

    fn count(&mut self) -> Result<usize, DecodeError> {
        match self.varint()? {
            n if n <= self.len() as u64 => Ok(n as usize),
            _ => Err(DecodeError::Short),
        }
    }

    fn bytes(&mut self, len: u64) -> Result<&'a [u8], DecodeError> {
        if len > self.len() as u64 {
            return Err(DecodeError::Short);
        }
        let (head, rest) = self.split_at(len as usize);
        *self = rest;
        Ok(head)
    }
}

/// Writing primitives; implemented for every `BufMut`.
pub(crate) trait Write: BufMut {
    fn varint(&mut self, v: u64) -> Result<(), EncodeError> {
        match varint_len(v) {
            1 => self.put_u8(v as u8),
            2 => self.put_u16(0x4000 | v as u16),
            4 => self.put_u32(0x8000_0000 | v as u32),
            _ if v <= MAX_VARINT => self.put_u64(0xc000_0000_0000_0000 | v),
            _ => return Err(EncodeError::BoundsExceeded),
        }
        Ok(())
    }

    fn string(&mut self, s: &str) -> Result<(), EncodeError> {
        self.varint(s.len() as u64)?;
        self.put_slice(s.as_bytes());
        Ok(())
    }

    fn bool(&mut self, b: bool) {
        self.put_u8(b.into());
    }

    fn opt_seq(&mut self, seq: Option<u64>) -> Result<(), EncodeError> {
        match seq {
            None => self.varint(0),
            Some(n) => self.varint(n.checked_add(1).ok_or(EncodeError::BoundsExceeded)?),
        }
    }

    fn millis(&mut self, d: Duration) -> Result<(), EncodeError> {
        let ms = u64::try_from(d.as_millis()).map_err(|_| EncodeError::BoundsExceeded)?;
        self.varint(ms)
    }

    fn hops(&mut self, hops: &[u64]) -> Result<(), EncodeError> {
        self.hop_count(hops.len())?;
        hops.iter().try_for_each(|&hop| self.varint(hop))
    }

    fn hop_count(&mut self, count: usize) -> Result<(), EncodeError> {
        if count > MAX_HOPS {
            return Err(EncodeError::BoundsExceeded);
        }
        self.varint(count as u64)
    }
}

impl<B: BufMut + ?Sized> Write for B {}

/// How a message is delimited on its stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// `Length (i) | Body`.
    Sized,
    /// `Type (i) | Length (i) | Body`, for streams that multiplex message kinds.
    Typed,
    /// `Kind (8) | Length (16) | Body` with this Kind: the draft-14 CLIENT_SETUP/SERVER_SETUP
    /// of lite-01/02. Another kind fails at once rather than being misread as a length.
    Setup(u8),
}

/// A control message: a body plus the framing that delimits it.
pub trait Message: Sized {
    fn framing(_version: Version) -> Framing {
        Framing::Sized
    }

    /// The Type written before the Length of a [`Framing::Typed`] message.
    fn kind(&self, _version: Version) -> Result<u64, EncodeError> {
        Ok(0)
    }

    fn encode_body(&self, version: Version, buf: &mut Vec<u8>) -> Result<(), EncodeError>;

    /// Decodes a complete body; `kind` is the Type read before a [`Framing::Typed`] body.
    fn decode_body(kind: u64, buf: &mut &[u8], version: Version) -> Result<Self, DecodeError>;

    /// Writes the framed message.
    fn encode(&self, version: Version, buf: &mut impl BufMut) -> Result<(), EncodeError> {
        let mut body = Vec::new();
        self.encode_body(version, &mut body)?;
        match Self::framing(version) {
            Framing::Sized => {}
            Framing::Typed => buf.varint(self.kind(version)?)?,
            Framing::Setup(kind) => {
                let len = u16::try_from(body.len()).map_err(|_| EncodeError::BoundsExceeded)?;
                buf.put_u8(kind);
                buf.put_u16(len);
                buf.put_slice(&body);
                return Ok(());
            }
        }
        buf.varint(body.len() as u64)?;
        buf.put_slice(&body);
        Ok(())
    }

    /// Decodes one framed message from input that should hold all of it; `Short` if it does not.
    fn decode(buf: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        let (msg, used) = decode_framed(buf, version, usize::MAX)?.ok_or(DecodeError::Short)?;
        *buf = &buf[used..];
        Ok(msg)
    }
}

/// Decodes one framed message from the front of a stream buffer.
///
/// Returns `Ok(None)` while more bytes are needed, and the message with the bytes it used
/// otherwise. The declared Length is checked against `max_size` as soon as it is readable, so an
/// oversize message fails before its body is buffered.
pub fn decode_framed<T: Message>(
    buf: &[u8],
    version: Version,
    max_size: usize,
) -> Result<Option<(T, usize)>, DecodeError> {
    let mut cursor = buf;
    let header = |cursor: &mut &[u8]| -> Result<(u64, u64), DecodeError> {
        match T::framing(version) {
            Framing::Sized => Ok((0, cursor.varint()?)),
            Framing::Typed => Ok((cursor.varint()?, cursor.varint()?)),
            Framing::Setup(expected) => match cursor.u8()? {
                kind if kind == expected => Ok((0, cursor.u16()?.into())),
                kind => Err(DecodeError::UnknownMessage(kind.into())),
            },
        }
    };
    let (kind, size) = match header(&mut cursor) {
        Err(DecodeError::Short) => return Ok(None),
        other => other?,
    };
    if size > max_size as u64 {
        return Err(DecodeError::TooLarge);
    }
    let Ok(mut body) = cursor.bytes(size) else {
        return Ok(None);
    };
    let msg = T::decode_body(kind, &mut body, version).map_err(|e| match e {
        DecodeError::Short => DecodeError::BodyShort,
        e => e,
    })?;
    if !body.is_empty() {
        return Err(DecodeError::BodyLong);
    }
    Ok(Some((msg, buf.len() - cursor.len())))
}

/// Maps `Short` to "need more input" for items that are not size-prefixed.
pub(crate) fn incomplete<T>(r: Result<T, DecodeError>) -> Result<Option<T>, DecodeError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(DecodeError::Short) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Parses a spec hex dump such as `"02 0d 00 04"`.
    pub fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits
            .chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
            .collect()
    }

    /// Asserts that `msg` encodes to exactly `wire` for `version` and decodes back to itself,
    /// and that every truncation of `wire` asks for more bytes instead of failing.
    pub fn check<T: Message + PartialEq + std::fmt::Debug>(msg: &T, version: Version, wire: &str) {
        let wire = hex(wire);
        let mut out = Vec::new();
        msg.encode(version, &mut out).unwrap();
        assert_eq!(out, wire, "{msg:?} on {version:?}");
        let (decoded, used) = decode_framed::<T>(&wire, version, usize::MAX)
            .unwrap()
            .unwrap();
        assert_eq!(&decoded, msg);
        assert_eq!(used, wire.len());
        for cut in 0..wire.len() {
            let r = decode_framed::<T>(&wire[..cut], version, usize::MAX);
            assert!(matches!(r, Ok(None)), "cut at {cut} of {wire:02x?}: {r:?}");
        }
        // Trailing stream bytes belong to the next message, not this one.
        let mut more = wire.clone();
        more.push(0);
        let (_, used) = decode_framed::<T>(&more, version, usize::MAX)
            .unwrap()
            .unwrap();
        assert_eq!(used, wire.len());
    }

    #[test]
    fn varint_table() {
        let cases: [(u64, &str); 11] = [
            (0, "00"),
            (63, "3f"),
            (64, "40 40"),
            (500, "41 f4"),
            (1000, "43 e8"),
            (5000, "53 88"),
            (16384, "80 00 40 00"),
            (42069, "80 00 a4 55"),
            (0x40B5A, "80 04 0b 5a"),
            (0xff0dad02, "c0 00 00 00 ff 0d ad 02"),
            (0xffffffff, "c0 00 00 00 ff ff ff ff"),
        ];
        for (value, wire) in cases {
            let wire = hex(wire);
            let mut out = Vec::new();
            out.varint(value).unwrap();
            assert_eq!(out, wire);
            assert_eq!(varint_len(value), wire.len());
            let mut input = wire.as_slice();
            assert_eq!(input.varint(), Ok(value));
            assert!(input.is_empty());
            for cut in 0..wire.len() {
                assert_eq!((&wire[..cut]).varint(), Err(DecodeError::Short));
            }
        }
    }

    #[test]
    fn varint_bounds() {
        for v in [
            0x3f,
            0x40,
            0x3fff,
            0x4000,
            0x3fff_ffff,
            0x4000_0000,
            MAX_VARINT,
        ] {
            let mut out = Vec::new();
            out.varint(v).unwrap();
            assert_eq!((&out[..]).varint(), Ok(v));
        }
        assert_eq!(
            Vec::new().varint(MAX_VARINT + 1),
            Err(EncodeError::BoundsExceeded)
        );
    }

    #[test]
    fn varint_accepts_non_minimal() {
        assert_eq!((&hex("40 05")[..]).varint(), Ok(5));
        assert_eq!((&hex("80 00 00 05")[..]).varint(), Ok(5));
        assert_eq!((&hex("c0 00 00 00 00 00 00 05")[..]).varint(), Ok(5));
    }

    #[test]
    fn zigzag_examples() {
        for (n, u) in [
            (0, 0),
            (-1, 1),
            (1, 2),
            (-2, 3),
            (1000, 2000),
            (33, 66),
            (-33, 65),
        ] {
            assert_eq!(zigzag_encode(n), u);
            assert_eq!(zigzag_decode(u), n);
        }
        assert_eq!(zigzag_encode(ZIGZAG_MAX), MAX_VARINT - 1);
        assert_eq!(zigzag_encode(ZIGZAG_MIN), MAX_VARINT);
        assert_eq!(zigzag_decode(MAX_VARINT), ZIGZAG_MIN);
        let mut out = Vec::new();
        out.varint(zigzag_encode(1000)).unwrap();
        out.varint(zigzag_encode(33)).unwrap();
        out.varint(zigzag_encode(-33)).unwrap();
        assert_eq!(out, hex("47 d0 40 42 40 41"));
    }

    #[test]
    fn strings() {
        let mut out = Vec::new();
        out.string("demo").unwrap();
        assert_eq!(out, hex("04 64 65 6d 6f"));
        assert_eq!((&out[..]).string().as_deref(), Ok("demo"));
        assert_eq!(
            (&hex("02 c3 28")[..]).string(),
            Err(DecodeError::InvalidUtf8)
        );
        // A huge declared length is short input, not an allocation.
        assert_eq!(
            (&hex("c0 ff ff ff ff ff ff ff 61")[..]).string(),
            Err(DecodeError::Short)
        );
    }

    #[test]
    fn bools_and_optional_sequences() {
        assert_eq!((&[0u8][..]).bool(), Ok(false));
        assert_eq!((&[1u8][..]).bool(), Ok(true));
        assert_eq!((&[7u8][..]).bool(), Ok(true));
        let mut out = Vec::new();
        out.bool(true);
        out.opt_seq(None).unwrap();
        out.opt_seq(Some(0)).unwrap();
        out.opt_seq(Some(62)).unwrap();
        assert_eq!(out, hex("01 00 01 3f"));
        let mut input = &out[1..];
        assert_eq!(input.opt_seq(), Ok(None));
        assert_eq!(input.opt_seq(), Ok(Some(0)));
        assert_eq!(input.opt_seq(), Ok(Some(62)));
        assert_eq!(
            Vec::new().opt_seq(Some(MAX_VARINT)),
            Err(EncodeError::BoundsExceeded)
        );
    }

    #[test]
    fn hops_are_bounded() {
        let hops: Vec<u64> = (1..=32).collect();
        let mut out = Vec::new();
        out.hops(&hops).unwrap();
        assert_eq!((&out[..]).hops(), Ok(hops));
        let too_many: Vec<u64> = (1..=33).collect();
        assert_eq!(Vec::new().hops(&too_many), Err(EncodeError::BoundsExceeded));
        let mut wire = vec![33];
        wire.extend(1..=33u8);
        assert_eq!((&wire[..]).hops(), Err(DecodeError::BoundsExceeded));
        // The count is checked before anything is read or allocated.
        assert_eq!(
            (&hex("c0 00 00 00 ff ff ff ff")[..]).hops(),
            Err(DecodeError::BoundsExceeded)
        );
    }
}
