//! The Probe stream (§5.6, lite-03+): the opener writes only the stream type; the responder
//! sends PROBE reports when its estimates move.

use std::time::Duration;

use super::coding::{Message, Read, Write};
use super::{DecodeError, EncodeError, Version};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Probe {
    /// Estimated send rate in bits/s; 0 is unknown, so a measured 0 is sent as 1.
    pub bitrate: u64,
    /// Smoothed RTT, in whole ms on the wire; zero is unknown. lite-04+ only.
    pub rtt: Duration,
}

impl Message for Probe {
    fn encode_body(&self, version: Version, buf: &mut Vec<u8>) -> Result<(), EncodeError> {
        if !version.has_subscribe_options() {
            return Err(EncodeError::Version);
        }
        buf.varint(self.bitrate)?;
        if version.has_hop_ids() {
            buf.millis(self.rtt)?;
        }
        Ok(())
    }

    fn decode_body(_: u64, buf: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        if !version.has_subscribe_options() {
            return Err(DecodeError::Version);
        }
        let bitrate = buf.varint()?;
        let rtt = match version.has_hop_ids() {
            true => buf.millis()?,
            false => Duration::ZERO,
        };
        Ok(Self { bitrate, rtt })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lite::ControlType;
    use crate::lite::coding::tests::check;

    #[test]
    fn probe_examples() {
        let mbit = Probe {
            bitrate: 1_000_000,
            rtt: Duration::ZERO,
        };
        check(&mbit, Version::Lite03, "04 80 0f 42 40");
        let with_rtt = Probe {
            bitrate: 1_000_000,
            rtt: Duration::from_millis(40),
        };
        check(&with_rtt, Version::Lite04, "05 80 0f 42 40 28");
        check(&with_rtt, Version::Lite05, "05 80 0f 42 40 28");
        check(
            &Probe {
                bitrate: 0,
                rtt: Duration::from_millis(1),
            },
            Version::Lite04,
            "02 00 01",
        );
        assert_eq!(
            mbit.encode(Version::Lite02, &mut Vec::new()),
            Err(EncodeError::Version)
        );
        assert_eq!(
            Probe::decode(&mut &[1, 0][..], Version::Lite01),
            Err(DecodeError::Version)
        );
        // The opener's whole contribution to the stream.
        let mut out = Vec::new();
        ControlType::Probe
            .encode(Version::Lite03, &mut out)
            .unwrap();
        assert_eq!(out, [0x04]);
    }
}
