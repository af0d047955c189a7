//! The Fetch stream (§5.4, served on lite-05 only): one FETCH, answered by bare lite-05 FRAMEs
//! and a FIN, with no response header. Read the answer with [`GroupReader::frames`].
//!
//! [`GroupReader::frames`]: super::GroupReader::frames

use super::coding::{Message, Read, Write};
use super::{DecodeError, EncodeError, Version};

/// One group of a track, by sequence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetch {
    /// Relative to the session root; normalized on decode.
    pub broadcast: String,
    pub track: String,
    pub priority: u8,
    pub group: u64,
}

impl Message for Fetch {
    fn encode_body(&self, _: Version, buf: &mut Vec<u8>) -> Result<(), EncodeError> {
        buf.string(&self.broadcast)?;
        buf.string(&self.track)?;
        buf.push(self.priority);
        buf.varint(self.group)
    }

    /// Decodes on any version, as the reference does; whether to serve it is the session's call.
    fn decode_body(_: u64, buf: &mut &[u8], _: Version) -> Result<Self, DecodeError> {
        Ok(Self {
            broadcast: buf.path()?,
            track: buf.string()?,
            priority: buf.u8()?,
            group: buf.varint()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lite::coding::tests::check;

    #[test]
    fn fetch_example() {
        let msg = Fetch {
            broadcast: "demo".into(),
            track: "video".into(),
            priority: 2,
            group: 7,
        };
        check(
            &msg,
            Version::Lite05,
            "0d 04 64 65 6d 6f 05 76 69 64 65 6f 02 07",
        );
    }
}
