//! The Goaway stream (§5.7, lite-04+). Neither reference implementation sends it.

use super::coding::{Message, Read, Write};
use super::{DecodeError, EncodeError, Version};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Goaway {
    /// Where to reconnect; `""` is no redirect.
    pub uri: String,
}

impl Message for Goaway {
    fn encode_body(&self, version: Version, buf: &mut Vec<u8>) -> Result<(), EncodeError> {
        if !version.has_hop_ids() {
            return Err(EncodeError::Version);
        }
        buf.string(&self.uri)
    }

    fn decode_body(_: u64, buf: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        if !version.has_hop_ids() {
            return Err(DecodeError::Version);
        }
        Ok(Self { uri: buf.string()? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lite::ControlType;
    use crate::lite::coding::tests::{check, hex};

    #[test]
    fn goaway_example() {
        let wire = hex("05 01 00");
        let mut input = &wire[..];
        assert_eq!(
            ControlType::decode(&mut input, Version::Lite04),
            Ok(ControlType::Goaway)
        );
        assert_eq!(
            Goaway::decode(&mut input, Version::Lite04),
            Ok(Goaway::default())
        );
        check(
            &Goaway {
                uri: "https://b".into(),
            },
            Version::Lite05,
            "0a 09 68 74 74 70 73 3a 2f 2f 62",
        );
        assert_eq!(
            Goaway::default().encode(Version::Lite03, &mut Vec::new()),
            Err(EncodeError::Version)
        );
    }
}
