//! lite-05 datagrams (§5.8): a single-frame group on an existing subscription, delimited by the
//! datagram itself.

use bytes::{BufMut, Bytes};

use super::coding::{Read, Write};
use super::{DecodeError, EncodeError, Version};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    pub subscribe_id: u64,
    pub group_sequence: u64,
    /// Absolute (not a delta), in the track's timescale.
    pub timestamp: u64,
    pub payload: Bytes,
}

impl Datagram {
    /// The payload is a slice of `datagram`, not a copy.
    pub fn decode(datagram: Bytes, version: Version) -> Result<Self, DecodeError> {
        if !version.has_setup_stream() {
            return Err(DecodeError::Version);
        }
        let mut buf = &datagram[..];
        let subscribe_id = buf.varint()?;
        let group_sequence = buf.varint()?;
        let timestamp = buf.varint()?;
        let payload = datagram.slice(datagram.len() - buf.len()..);
        Ok(Self {
            subscribe_id,
            group_sequence,
            timestamp,
            payload,
        })
    }

    pub fn encode(&self, version: Version, buf: &mut impl BufMut) -> Result<(), EncodeError> {
        if !version.has_setup_stream() {
            return Err(EncodeError::Version);
        }
        buf.varint(self.subscribe_id)?;
        buf.varint(self.group_sequence)?;
        buf.varint(self.timestamp)?;
        buf.put_slice(&self.payload);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lite::coding::tests::hex;

    #[test]
    fn datagram_example() {
        let wire = Bytes::from(hex("00 07 43 e8 68 69"));
        let msg = Datagram::decode(wire.clone(), Version::Lite05).unwrap();
        let expected = Datagram {
            subscribe_id: 0,
            group_sequence: 7,
            timestamp: 1000,
            payload: Bytes::from_static(b"hi"),
        };
        assert_eq!(msg, expected);
        assert_eq!(msg.payload.as_ptr(), wire[4..].as_ptr());
        let mut out = Vec::new();
        msg.encode(Version::Lite05, &mut out).unwrap();
        assert_eq!(out, wire);
    }

    #[test]
    fn datagram_edges() {
        let empty = Datagram::decode(Bytes::from(hex("01 02 03")), Version::Lite05).unwrap();
        assert!(empty.payload.is_empty());
        for cut in 0..3 {
            let r = Datagram::decode(Bytes::from(hex("01 02 03")).slice(..cut), Version::Lite05);
            assert_eq!(r, Err(DecodeError::Short));
        }
        let r = Datagram::decode(Bytes::from(hex("01 02 03")), Version::Lite04);
        assert_eq!(r, Err(DecodeError::Version));
        assert_eq!(
            empty.encode(Version::Lite03, &mut Vec::new()),
            Err(EncodeError::Version)
        );
    }
}
