//! The drafts' primitive encodings: both integer forms, byte strings, reason phrases,
//! namespace tuples, and control message framing (type, 16-bit length, body).
//!
//! A [`Reader`] reads from the front of a byte slice and knows the draft, so every integer it
//! reads is in that draft's form; a [`Writer`] is its twin over a `Vec<u8>`. Every length read
//! from the wire is checked against the bytes present before anything is allocated.

use super::{DecodeError, EncodeError, Varint, Version};

/// The largest value of an RFC 9000 varint (drafts 14-16).
pub const MAX_QUIC_VARINT: u64 = (1 << 62) - 1;

/// A namespace tuple has at most this many fields (every draft).
pub const MAX_NAMESPACE_FIELDS: usize = 32;

/// A full track name (namespace fields and track name) is at most this many bytes.
pub const MAX_FULL_NAME: usize = 4096;

/// The longest reason phrase the drafts allow.
pub const MAX_REASON: usize = 1024;

/// Bytes of `v` in the form `form`, or `None` when the form cannot carry it.
pub const fn varint_len(form: Varint, v: u64) -> Option<usize> {
    match form {
        Varint::Quic => match v {
            0..=0x3f => Some(1),
            0x40..=0x3fff => Some(2),
            0x4000..=0x3fff_ffff => Some(4),
            0x4000_0000..=MAX_QUIC_VARINT => Some(8),
            _ => None,
        },
        Varint::LeadingOnes { seven } => Some(match v {
            0..=0x7f => 1,
            0x80..=0x3fff => 2,
            0x4000..=0x1f_ffff => 3,
            0x20_0000..=0x0fff_ffff => 4,
            0x1000_0000..=0x7_ffff_ffff => 5,
            0x8_0000_0000..=0x3ff_ffff_ffff => 6,
            0x400_0000_0000..=0x1_ffff_ffff_ffff if seven => 7,
            0x400_0000_0000..=0xff_ffff_ffff_ffff => 8,
            _ => 9,
        }),
    }
}

/// Reads one draft's encodings from the front of `buf`, advancing it.
#[derive(Clone, Copy, Debug)]
pub struct Reader<'a> {
    pub buf: &'a [u8],
    pub version: Version,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], version: Version) -> Self {
        Self { buf, version }
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        let (&b, rest) = self.buf.split_first().ok_or(DecodeError::Short)?;
        self.buf = rest;
        Ok(b)
    }

    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        let raw = self.bytes(2)?;
        Ok(u16::from_be_bytes([raw[0], raw[1]]))
    }

    pub fn bytes(&mut self, len: u64) -> Result<&'a [u8], DecodeError> {
        if len > self.buf.len() as u64 {
            return Err(DecodeError::Short);
        }
        let (head, rest) = self.buf.split_at(len as usize);
        self.buf = rest;
        Ok(head)
    }

    /// An integer in the draft's form.
    pub fn varint(&mut self) -> Result<u64, DecodeError> {
        let first = *self.buf.first().ok_or(DecodeError::Short)?;
        match self.version.varint() {
            Varint::Quic => {
                let len = 1usize << (first >> 6);
                let raw = self.bytes(len as u64)?;
                Ok(raw[1..]
                    .iter()
                    .fold(u64::from(first & 0x3f), |v, &b| (v << 8) | u64::from(b)))
            }
            Varint::LeadingOnes { seven } => {
                let ones = first.leading_ones() as usize;
                let len = match ones {
                    0..=5 => ones + 1,
                    6 if seven => 7,
                    6 => return Err(DecodeError::InvalidVarint),
                    7 => 8,
                    _ => 9,
                };
                let raw = self.bytes(len as u64)?;
                // The bits after the first 0 of the first byte; none in the 8- and 9-byte forms.
                let head = match ones {
                    0..=6 => u64::from(first) & (0xff >> (ones + 1)),
                    _ => 0,
                };
                Ok(raw[1..].iter().fold(head, |v, &b| (v << 8) | u64::from(b)))
            }
        }
    }

    /// A count of items that take at least a byte each: above the bytes left it is short
    /// input, which bounds whatever the caller sizes from it.
    pub fn count(&mut self) -> Result<usize, DecodeError> {
        let n = self.varint()?;
        if n > self.buf.len() as u64 {
            return Err(DecodeError::Short);
        }
        Ok(n as usize)
    }

    /// A length-prefixed byte string.
    pub fn string_bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.varint()?;
        self.bytes(len)
    }

    /// A length-prefixed UTF-8 string.
    pub fn string(&mut self) -> Result<String, DecodeError> {
        let raw = self.string_bytes()?;
        let s = std::str::from_utf8(raw).map_err(|_| DecodeError::InvalidUtf8)?;
        Ok(s.to_owned())
    }

    /// A Reason Phrase: at most [`MAX_REASON`] bytes; not UTF-8 is kept as replacement
    /// characters (it is only ever logged).
    pub fn reason(&mut self) -> Result<String, DecodeError> {
        let len = self.varint()?;
        if len > MAX_REASON as u64 {
            return Err(DecodeError::TooLong);
        }
        Ok(String::from_utf8_lossy(self.bytes(len)?).into_owned())
    }

    /// A Track Namespace tuple: a field count (1 to 32, or 0 where `empty` allows it), then
    /// the fields. Fields are kept as bytes: mapping them to a path is the session's concern.
    pub fn namespace(&mut self, empty: bool) -> Result<Vec<Vec<u8>>, DecodeError> {
        let n = self.varint()?;
        if n as usize > MAX_NAMESPACE_FIELDS || (n == 0 && !empty) {
            return Err(DecodeError::InvalidNamespace);
        }
        let mut fields = Vec::with_capacity(n as usize);
        let mut total = 0usize;
        for _ in 0..n {
            let f = self.string_bytes()?;
            total += f.len();
            if total > MAX_FULL_NAME {
                return Err(DecodeError::TooLong);
            }
            fields.push(f.to_vec());
        }
        Ok(fields)
    }

    /// A bool on the wire as one byte, which must be 0 or 1.
    pub fn flag(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::InvalidValue),
        }
    }
}

/// Writes one draft's encodings.
#[derive(Debug)]
pub struct Writer<'a> {
    pub buf: &'a mut Vec<u8>,
    pub version: Version,
}

impl<'a> Writer<'a> {
    pub fn new(buf: &'a mut Vec<u8>, version: Version) -> Self {
        Self { buf, version }
    }

    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn bytes(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    /// An integer in the draft's form, shortest encoding.
    pub fn varint(&mut self, v: u64) -> Result<(), EncodeError> {
        let form = self.version.varint();
        let len = varint_len(form, v).ok_or(EncodeError::BoundsExceeded)?;
        match form {
            Varint::Quic => {
                let tag = match len {
                    1 => 0u64,
                    2 => 1,
                    4 => 2,
                    _ => 3,
                };
                let word = v | (tag << (len * 8 - 2));
                self.buf.extend_from_slice(&word.to_be_bytes()[8 - len..]);
            }
            Varint::LeadingOnes { .. } => match len {
                9 => {
                    self.buf.push(0xff);
                    self.buf.extend_from_slice(&v.to_be_bytes());
                }
                8 => {
                    self.buf.push(0xfe);
                    self.buf.extend_from_slice(&v.to_be_bytes()[1..]);
                }
                _ => {
                    // `len - 1` leading ones, a zero, then the value.
                    let prefix = !(0xffu64 >> (len - 1)) & 0xff;
                    let word = v | (prefix << ((len - 1) * 8));
                    self.buf.extend_from_slice(&word.to_be_bytes()[8 - len..]);
                }
            },
        }
        Ok(())
    }

    pub fn string_bytes(&mut self, b: &[u8]) -> Result<(), EncodeError> {
        self.varint(b.len() as u64)?;
        self.bytes(b);
        Ok(())
    }

    pub fn reason(&mut self, r: &str) -> Result<(), EncodeError> {
        // Cut at a char boundary so the phrase stays UTF-8.
        let mut end = r.len().min(MAX_REASON);
        while !r.is_char_boundary(end) {
            end -= 1;
        }
        self.string_bytes(&r.as_bytes()[..end])
    }

    pub fn namespace(&mut self, fields: &[Vec<u8>]) -> Result<(), EncodeError> {
        let total: usize = fields.iter().map(Vec::len).sum();
        if fields.len() > MAX_NAMESPACE_FIELDS || total > MAX_FULL_NAME {
            return Err(EncodeError::BoundsExceeded);
        }
        self.varint(fields.len() as u64)?;
        for f in fields {
            self.string_bytes(f)?;
        }
        Ok(())
    }

    pub fn flag(&mut self, v: bool) {
        self.buf.push(u8::from(v));
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use Version::*;

    pub(crate) fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn enc(v: Version, x: u64) -> Result<Vec<u8>, EncodeError> {
        let mut buf = Vec::new();
        Writer::new(&mut buf, v).varint(x)?;
        Ok(buf)
    }

    fn dec(v: Version, b: &[u8]) -> Result<u64, DecodeError> {
        let mut r = Reader::new(b, v);
        let x = r.varint()?;
        assert!(r.is_empty(), "trailing bytes");
        Ok(x)
    }

    /// The example tables of drafts 17-19 ("Example Integer Encodings"; RFC 9000 §A.1 for
    /// 14-16). Draft-17's table lists `0xdd7f3e7d` as 494,878,333, which its own rules read as
    /// a 3-byte integer; draft-18 corrected the row to `0xed7f3e7d`, 226,442,877.
    #[test]
    fn the_drafts_examples() {
        for v in [Draft17, Draft18, Draft19] {
            for (bytes, value) in [
                ("25", 37),
                ("8025", 37),
                ("bbbd", 15_293),
                ("ed7f3e7d", 226_442_877),
                ("faa1a0e403d8", 2_893_212_287_960),
                ("fefa318fa8e3ca11", 70_423_237_261_249_041),
                ("ffffffffffffffffff", u64::MAX),
            ] {
                assert_eq!(dec(v, &hex(bytes)), Ok(value), "{v:?} {bytes}");
            }
        }
        for v in [Draft18, Draft19] {
            assert_eq!(dec(v, &hex("fc8998abc66bc0")), Ok(151_288_809_941_952));
        }
        let three = hex("dd7f3e7d");
        let mut r = Reader::new(&three, Draft17);
        assert_eq!(r.varint(), Ok(0x1d_7f3e));
        assert_eq!(r.remaining(), 1);
        for v in [Draft14, Draft15, Draft16] {
            for (bytes, value) in [
                ("c2197c5eff14e88c", 151_288_809_941_952_652),
                ("9d7f3e7d", 494_878_333),
                ("7bbd", 15_293),
                ("25", 37),
                ("4025", 37),
            ] {
                assert_eq!(dec(v, &hex(bytes)), Ok(value), "{v:?} {bytes}");
            }
        }
    }

    #[test]
    fn every_length_round_trips_shortest() {
        let edges = [
            0,
            0x3f,
            0x40,
            0x7f,
            0x80,
            0x3fff,
            0x4000,
            0x1f_ffff,
            0x20_0000,
            0x0fff_ffff,
            0x1000_0000,
            0x3fff_ffff,
            0x4000_0000,
            0x7_ffff_ffff,
            0x8_0000_0000,
            0x3ff_ffff_ffff,
            0x400_0000_0000,
            0x1_ffff_ffff_ffff,
            0x2_0000_0000_0000,
            0xff_ffff_ffff_ffff,
            0x100_0000_0000_0000,
            MAX_QUIC_VARINT,
            MAX_QUIC_VARINT + 1,
            u64::MAX,
        ];
        for v in Version::ALL {
            for x in edges {
                match enc(v, x) {
                    Ok(b) => {
                        assert_eq!(Some(b.len()), varint_len(v.varint(), x));
                        assert_eq!(dec(v, &b), Ok(x), "{v:?} {x:#x}");
                        // Every cut point is short input.
                        for cut in 0..b.len() {
                            assert_eq!(Reader::new(&b[..cut], v).varint(), Err(DecodeError::Short));
                        }
                    }
                    Err(e) => {
                        assert_eq!(e, EncodeError::BoundsExceeded);
                        assert!(v.varint() == Varint::Quic && x > MAX_QUIC_VARINT);
                    }
                }
            }
        }
    }

    /// Draft-17 has no 7-byte form: `11111100`/`11111101` is invalid there and a 7-byte
    /// integer in 18+; 17 writes such values in 8 bytes.
    #[test]
    fn the_seven_byte_form() {
        let seven = hex("fc0102030405 06");
        assert_eq!(dec(Draft18, &seven), Ok(0x0102_0304_0506));
        assert_eq!(
            dec(Draft19, &hex("fd ffffffffffff")),
            Ok(0x1_ffff_ffff_ffff)
        );
        assert_eq!(dec(Draft17, &seven), Err(DecodeError::InvalidVarint));
        assert_eq!(
            enc(Draft18, 0x400_0000_0000).unwrap(),
            hex("fc0400 00000000")
        );
        assert_eq!(
            enc(Draft17, 0x400_0000_0000).unwrap(),
            hex("fe00 0400 00000000")
        );
        assert_eq!(enc(Draft17, 0x400_0000_0000).unwrap().len(), 8);
    }

    #[test]
    fn namespaces_and_reasons() {
        let ns = vec![b"demo".to_vec(), b"bbb".to_vec()];
        let mut buf = Vec::new();
        Writer::new(&mut buf, Draft16).namespace(&ns).unwrap();
        assert_eq!(buf, hex("02 04 64656d6f 03 626262"));
        assert_eq!(Reader::new(&buf, Draft16).namespace(false), Ok(ns));
        assert_eq!(
            Reader::new(&hex("00"), Draft16).namespace(false),
            Err(DecodeError::InvalidNamespace)
        );
        assert_eq!(Reader::new(&hex("00"), Draft16).namespace(true), Ok(vec![]));
        let mut many = vec![33u8];
        many.extend(std::iter::repeat_n(0u8, 33));
        assert_eq!(
            Reader::new(&many, Draft16).namespace(false),
            Err(DecodeError::InvalidNamespace)
        );
        let mut long = vec![2u8];
        for _ in 0..2 {
            long.extend([0x48, 0x01]);
            long.extend(std::iter::repeat_n(b'a', 0x801));
        }
        assert_eq!(
            Reader::new(&long, Draft16).namespace(false),
            Err(DecodeError::TooLong)
        );
        let mut buf = Vec::new();
        Writer::new(&mut buf, Draft18)
            .reason(&"é".repeat(600))
            .unwrap();
        let r = Reader::new(&buf, Draft18).reason().unwrap();
        assert_eq!(r.len(), 1024);
        let mut over = vec![0x84, 0x01];
        over.extend(std::iter::repeat_n(b'x', 0x401));
        assert_eq!(
            Reader::new(&over, Draft18).reason(),
            Err(DecodeError::TooLong)
        );
    }
}
