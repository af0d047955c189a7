//! The Track stream (§5.5, lite-05): TRACK from the subscriber, TRACK_INFO and FIN back.

use super::coding::{Message, Read, Write};
use super::{DecodeError, EncodeError, Version};
pub use crate::model::TrackInfo;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Track {
    /// Relative to the session root; normalized on decode.
    pub broadcast: String,
    pub track: String,
}

impl Message for Track {
    fn encode_body(&self, version: Version, buf: &mut Vec<u8>) -> Result<(), EncodeError> {
        if !version.has_setup_stream() {
            return Err(EncodeError::Version);
        }
        buf.string(&self.broadcast)?;
        buf.string(&self.track)
    }

    fn decode_body(_: u64, buf: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        if !version.has_setup_stream() {
            return Err(DecodeError::Version);
        }
        Ok(Self {
            broadcast: buf.path()?,
            track: buf.string()?,
        })
    }
}

impl Message for TrackInfo {
    fn encode_body(&self, version: Version, buf: &mut Vec<u8>) -> Result<(), EncodeError> {
        if !version.has_setup_stream() {
            return Err(EncodeError::Version);
        }
        if self.timescale == 0 {
            return Err(EncodeError::InvalidValue);
        }
        buf.push(self.priority);
        buf.bool(self.ordered);
        buf.millis(self.max_latency)?;
        buf.varint(self.timescale)
    }

    fn decode_body(_: u64, buf: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        if !version.has_setup_stream() {
            return Err(DecodeError::Version);
        }
        let info = Self {
            priority: buf.u8()?,
            ordered: buf.bool()?,
            max_latency: buf.millis()?,
            timescale: buf.varint()?,
        };
        match info.timescale {
            0 => Err(DecodeError::InvalidValue),
            _ => Ok(info),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lite::ControlType;
    use crate::lite::coding::decode_framed;
    use crate::lite::coding::tests::{check, hex};

    #[test]
    fn track_request() {
        let wire = hex("06 0b 04 64 65 6d 6f 05 76 69 64 65 6f");
        let mut input = &wire[..];
        assert_eq!(
            ControlType::decode(&mut input, Version::Lite05),
            Ok(ControlType::Track)
        );
        let msg = Track {
            broadcast: "demo".into(),
            track: "video".into(),
        };
        assert_eq!(Track::decode(&mut input, Version::Lite05), Ok(msg.clone()));
        check(&msg, Version::Lite05, "0b 04 64 65 6d 6f 05 76 69 64 65 6f");
        assert_eq!(
            msg.encode(Version::Lite04, &mut Vec::new()),
            Err(EncodeError::Version)
        );
    }

    #[test]
    fn track_info_defaults() {
        check(
            &TrackInfo::default(),
            Version::Lite05,
            "06 00 00 53 88 43 e8",
        );
        let r = decode_framed::<TrackInfo>(&hex("04 00 00 00 00"), Version::Lite05, 64);
        assert_eq!(r.unwrap_err(), DecodeError::InvalidValue);
        let zero = TrackInfo {
            timescale: 0,
            ..TrackInfo::default()
        };
        assert_eq!(
            zero.encode(Version::Lite05, &mut Vec::new()),
            Err(EncodeError::InvalidValue)
        );
    }
}
