//! QPACK field sections without a dynamic table (RFC 9204), for the one request and response
//! of a WebTransport session.
//!
//! Written here rather than taken from web-transport-proto: its QPACK module is private, and
//! its `ConnectRequest::decode` folds the field lines into a map, so duplicates, order
//! (pseudo-headers first), upper-case names and unknown pseudo-headers, which RFC 9114 §4.1.2
//! makes a malformed request, can no longer be seen; nor can the method be told apart from a
//! missing `:scheme`, which decides 405 against 400. The proto crate's Huffman decoder is
//! private too, and `httlib-huffman`'s accepts zero-bit padding, which RFC 7541 §5.2 makes an
//! error; so the decoder is ours, over `httlib-huffman`'s code table (RFC 7541 Appendix B).

use std::sync::OnceLock;

use bytes::{BufMut, BytesMut};
use httlib_huffman::encoder::table::ENCODE_TABLE;

use super::error::{Error, QPACK_DECOMPRESSION_FAILED};

/// One decoded field line, in wire order. Bytes, not strings: validation is HTTP's job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    pub name: Vec<u8>,
    pub value: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SectionError {
    /// A QPACK violation: a connection error (RFC 9204 §2.2.3).
    Qpack(Error),
    /// The decoded size (name + value + 32 per line, RFC 9114 §4.2.2) went over the limit.
    TooLarge,
}

/// RFC 9114 §4.2.2: each field line costs its name, its value and 32 bytes.
const LINE_OVERHEAD: u64 = 32;

const fn qpack_error(reason: &'static str) -> SectionError {
    SectionError::Qpack(Error::connection(QPACK_DECOMPRESSION_FAILED, reason))
}

/// Decodes a whole field section (the payload of one HEADERS frame).
///
/// We advertise a dynamic table capacity of 0, so a non-zero Required Insert Count or any
/// dynamic or post-base reference is QPACK_DECOMPRESSION_FAILED (RFC 9204 §4.5.1.1, §2.2.3).
pub fn decode_section(buf: &[u8], limit: u64) -> Result<Vec<Field>, SectionError> {
    let mut pos = 0;
    let required_insert_count = prefix_int(buf, &mut pos, 8)?;
    if required_insert_count != 0 {
        return Err(qpack_error("dynamic table required"));
    }
    // Sign and Delta Base: meaningless without dynamic references.
    prefix_int(buf, &mut pos, 7)?;

    let mut fields = Vec::new();
    let mut size = 0u64;
    while pos < buf.len() {
        let first = buf[pos];
        let (name, value) = if first & 0x80 != 0 {
            // Indexed field line: 1 T index(6).
            if first & 0x40 == 0 {
                return Err(qpack_error("dynamic table reference"));
            }
            let (name, value) = static_entry(prefix_int(buf, &mut pos, 6)?)?;
            (name.as_bytes().to_vec(), value.as_bytes().to_vec())
        } else if first & 0x40 != 0 {
            // Literal with name reference: 0 1 N T index(4).
            if first & 0x10 == 0 {
                return Err(qpack_error("dynamic table name reference"));
            }
            let (name, _) = static_entry(prefix_int(buf, &mut pos, 4)?)?;
            (name.as_bytes().to_vec(), string(buf, &mut pos, 7)?)
        } else if first & 0x20 != 0 {
            // Literal with literal name: 0 0 1 N H len(3).
            let name = string(buf, &mut pos, 3)?;
            (name, string(buf, &mut pos, 7)?)
        } else {
            // 0001 indexed post-base, 0000 literal with post-base name reference.
            return Err(qpack_error("post-base reference"));
        };
        size += name.len() as u64 + value.len() as u64 + LINE_OVERHEAD;
        if size > limit {
            return Err(SectionError::TooLarge);
        }
        fields.push(Field { name, value });
    }
    Ok(fields)
}

fn static_entry(index: u64) -> Result<(&'static str, &'static str), SectionError> {
    usize::try_from(index)
        .ok()
        .and_then(|i| STATIC_TABLE.get(i))
        .copied()
        .ok_or(qpack_error("static index out of range"))
}

/// A prefixed integer (RFC 7541 §5.1) whose prefix is the low `bits` of `buf[*pos]`.
fn prefix_int(buf: &[u8], pos: &mut usize, bits: u8) -> Result<u64, SectionError> {
    let truncated = qpack_error("truncated integer");
    let mask = ((1u16 << bits) - 1) as u8;
    let first = *buf.get(*pos).ok_or(truncated)?;
    *pos += 1;
    let mut value = u64::from(first & mask);
    if value < u64::from(mask) {
        return Ok(value);
    }
    let mut shift = 0u32;
    loop {
        let byte = *buf.get(*pos).ok_or(truncated)?;
        *pos += 1;
        let part = u64::from(byte & 0x7f);
        // Refuse before the shift could overflow; no valid length or index is that large.
        if shift > 56 {
            return Err(qpack_error("integer overflow"));
        }
        value = value
            .checked_add(part << shift)
            .ok_or(qpack_error("integer overflow"))?;
        shift += 7;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
}

/// A string literal: the Huffman flag sits just above a `bits`-bit length prefix.
fn string(buf: &[u8], pos: &mut usize, bits: u8) -> Result<Vec<u8>, SectionError> {
    let first = *buf.get(*pos).ok_or(qpack_error("truncated string"))?;
    let huffman = first & (1 << bits) != 0;
    let len = prefix_int(buf, pos, bits)?;
    let end = usize::try_from(len)
        .ok()
        .and_then(|len| pos.checked_add(len))
        .filter(|&end| end <= buf.len())
        .ok_or(qpack_error("truncated string"))?;
    let raw = &buf[*pos..end];
    *pos = end;
    if !huffman {
        return Ok(raw.to_vec());
    }
    huffman_decode(raw).ok_or(qpack_error("invalid Huffman string"))
}

/// Marks a trie entry as a symbol rather than a child node.
const LEAF: u16 = 0x8000;

/// The Huffman code as a binary trie: node 0 is the root, each node holds its two children,
/// 0 for none (the root is nobody's child).
fn huffman_trie() -> &'static [[u16; 2]] {
    static TRIE: OnceLock<Vec<[u16; 2]>> = OnceLock::new();
    TRIE.get_or_init(|| {
        let mut nodes = vec![[0u16; 2]];
        for (symbol, &(len, code)) in ENCODE_TABLE.iter().enumerate() {
            let mut node = 0;
            for shift in (0..u32::from(len)).rev() {
                let bit = ((code >> shift) & 1) as usize;
                if shift == 0 {
                    nodes[node][bit] = LEAF | symbol as u16;
                } else {
                    if nodes[node][bit] == 0 {
                        nodes.push([0; 2]);
                        nodes[node][bit] = (nodes.len() - 1) as u16;
                    }
                    node = usize::from(nodes[node][bit]);
                }
            }
        }
        nodes
    })
}

/// Decodes a Huffman string bit by bit. `None` for the EOS symbol, or padding that is not a
/// prefix of EOS (all ones) shorter than 8 bits (RFC 7541 §5.2).
fn huffman_decode(encoded: &[u8]) -> Option<Vec<u8>> {
    let trie = huffman_trie();
    let mut out = Vec::with_capacity(encoded.len() * 8 / 5);
    let (mut node, mut depth, mut ones) = (0usize, 0u32, true);
    for &byte in encoded {
        for shift in (0..8).rev() {
            let bit = (byte >> shift) & 1;
            let next = trie[node][usize::from(bit)];
            if next & LEAF != 0 {
                let symbol = next & !LEAF;
                out.push(u8::try_from(symbol).ok()?);
                (node, depth, ones) = (0, 0, true);
            } else if next == 0 {
                return None;
            } else {
                node = usize::from(next);
                depth += 1;
                ones &= bit == 1;
            }
        }
    }
    (depth < 8 && ones).then_some(out)
}

/// Encodes a field section with static references and plain literals: no dynamic table, no
/// Huffman, so what we send is trivially within the peer's decoder.
pub fn encode_section(fields: &[(&str, &str)], out: &mut BytesMut) {
    // Required Insert Count 0, Delta Base 0.
    out.put_u8(0);
    out.put_u8(0);
    for &(name, value) in fields {
        if let Some(index) = STATIC_TABLE.iter().position(|&e| e == (name, value)) {
            put_prefix_int(out, 0xc0, 6, index as u64);
        } else if let Some(index) = STATIC_TABLE.iter().position(|&(n, _)| n == name) {
            put_prefix_int(out, 0x50, 4, index as u64);
            put_prefix_int(out, 0x00, 7, value.len() as u64);
            out.put_slice(value.as_bytes());
        } else {
            put_prefix_int(out, 0x20, 3, name.len() as u64);
            out.put_slice(name.as_bytes());
            put_prefix_int(out, 0x00, 7, value.len() as u64);
            out.put_slice(value.as_bytes());
        }
    }
}

/// Appends a prefixed integer, `flags` holding the bits above the `bits`-bit prefix.
pub fn put_prefix_int(out: &mut impl BufMut, flags: u8, bits: u8, value: u64) {
    let mask = ((1u16 << bits) - 1) as u8;
    if value < u64::from(mask) {
        out.put_u8(flags | value as u8);
        return;
    }
    out.put_u8(flags | mask);
    let mut rest = value - u64::from(mask);
    while rest >= 0x80 {
        out.put_u8(rest as u8 | 0x80);
        rest >>= 7;
    }
    out.put_u8(rest as u8);
}

/// RFC 9204 Appendix A.
pub const STATIC_TABLE: [(&str, &str); 99] = [
    (":authority", ""),
    (":path", "/"),
    ("age", "0"),
    ("content-disposition", ""),
    ("content-length", "0"),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("referer", ""),
    ("set-cookie", ""),
    (":method", "CONNECT"),
    (":method", "DELETE"),
    (":method", "GET"),
    (":method", "HEAD"),
    (":method", "OPTIONS"),
    (":method", "POST"),
    (":method", "PUT"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "103"),
    (":status", "200"),
    (":status", "304"),
    (":status", "404"),
    (":status", "503"),
    ("accept", "*/*"),
    ("accept", "application/dns-message"),
    ("accept-encoding", "gzip, deflate, br"),
    ("accept-ranges", "bytes"),
    ("access-control-allow-headers", "cache-control"),
    ("access-control-allow-headers", "content-type"),
    ("access-control-allow-origin", "*"),
    ("cache-control", "max-age=0"),
    ("cache-control", "max-age=2592000"),
    ("cache-control", "max-age=604800"),
    ("cache-control", "no-cache"),
    ("cache-control", "no-store"),
    ("cache-control", "public, max-age=31536000"),
    ("content-encoding", "br"),
    ("content-encoding", "gzip"),
    ("content-type", "application/dns-message"),
    ("content-type", "application/javascript"),
    ("content-type", "application/json"),
    ("content-type", "application/x-www-form-urlencoded"),
    ("content-type", "image/gif"),
    ("content-type", "image/jpeg"),
    ("content-type", "image/png"),
    ("content-type", "text/css"),
    ("content-type", "text/html; charset=utf-8"),
    ("content-type", "text/plain"),
    ("content-type", "text/plain;charset=utf-8"),
    ("range", "bytes=0-"),
    ("strict-transport-security", "max-age=31536000"),
    (
        "strict-transport-security",
        "max-age=31536000; includesubdomains",
    ),
    (
        "strict-transport-security",
        "max-age=31536000; includesubdomains; preload",
    ),
    ("vary", "accept-encoding"),
    ("vary", "origin"),
    ("x-content-type-options", "nosniff"),
    ("x-xss-protection", "1; mode=block"),
    (":status", "100"),
    (":status", "204"),
    (":status", "206"),
    (":status", "302"),
    (":status", "400"),
    (":status", "403"),
    (":status", "421"),
    (":status", "425"),
    (":status", "500"),
    ("accept-language", ""),
    ("access-control-allow-credentials", "FALSE"),
    ("access-control-allow-credentials", "TRUE"),
    ("access-control-allow-headers", "*"),
    ("access-control-allow-methods", "get"),
    ("access-control-allow-methods", "get, post, options"),
    ("access-control-allow-methods", "options"),
    ("access-control-expose-headers", "content-length"),
    ("access-control-request-headers", "content-type"),
    ("access-control-request-method", "get"),
    ("access-control-request-method", "post"),
    ("alt-svc", "clear"),
    ("authorization", ""),
    (
        "content-security-policy",
        "script-src 'none'; object-src 'none'; base-uri 'none'",
    ),
    ("early-data", "1"),
    ("expect-ct", ""),
    ("forwarded", ""),
    ("if-range", ""),
    ("origin", ""),
    ("purpose", "prefetch"),
    ("server", ""),
    ("timing-allow-origin", "*"),
    ("upgrade-insecure-requests", "1"),
    ("user-agent", ""),
    ("x-forwarded-for", ""),
    ("x-frame-options", "deny"),
    ("x-frame-options", "sameorigin"),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(s: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        httlib_huffman::encode(s, &mut out).unwrap();
        out
    }

    #[test]
    fn huffman_known_answers() {
        // RFC 7541 C.4.1 to C.4.3.
        let cases: [(&[u8], &str); 4] = [
            (
                &[
                    0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff,
                ],
                "www.example.com",
            ),
            (&[0xa8, 0xeb, 0x10, 0x64, 0x9c, 0xbf], "no-cache"),
            (
                &[0x25, 0xa8, 0x49, 0xe9, 0x5b, 0xa9, 0x7d, 0x7f],
                "custom-key",
            ),
            (
                &[0x25, 0xa8, 0x49, 0xe9, 0x5b, 0xb8, 0xe8, 0xb4, 0xbf],
                "custom-value",
            ),
        ];
        for (encoded, text) in cases {
            assert_eq!(huffman_decode(encoded).as_deref(), Some(text.as_bytes()));
            assert_eq!(encode(text.as_bytes()), encoded);
        }
    }

    #[test]
    fn huffman_round_trips_every_byte() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(huffman_decode(&encode(&all)).unwrap(), all);
        for b in 0..=255u8 {
            for n in 1..4 {
                let s = vec![b; n];
                assert_eq!(huffman_decode(&encode(&s)).unwrap(), s, "{b} x{n}");
            }
        }
        assert_eq!(huffman_decode(&[]), Some(Vec::new()));
    }

    #[test]
    fn huffman_rejects_bad_padding_and_eos() {
        // '0' is 00000: three zero bits of padding.
        assert_eq!(huffman_decode(&[0x07]), Some(b"0".to_vec()));
        assert_eq!(huffman_decode(&[0x00]), None);
        // Eight or more bits of padding.
        assert_eq!(huffman_decode(&[0xff]), None);
        assert_eq!(huffman_decode(&[0x07, 0xff]), None);
        // The 30-bit EOS symbol itself.
        assert_eq!(huffman_decode(&[0xff, 0xff, 0xff, 0xff]), None);
    }
}
