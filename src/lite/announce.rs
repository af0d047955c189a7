//! The Announce stream (§5.1): one request from the opener, then the responder's current set
//! and live changes.
//!
//! Responder order: lite-01/02 ANNOUNCE_INIT then ANNOUNCE…; lite-03/04 ANNOUNCE…; lite-05
//! ANNOUNCE_OK then ANNOUNCE…. Paths are normalized on decode.

use super::coding::{Message, Read, Write};
use super::{DecodeError, EncodeError, Version};

/// ANNOUNCE_PLEASE (01–03), ANNOUNCE_INTEREST (04), ANNOUNCE_REQUEST (05).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AnnounceRequest {
    pub prefix: String,
    /// The requester's own hop id, so the responder does not reflect its routes back; 0 is none.
    /// lite-04+ only: not sent before, and 0 when decoded there.
    pub exclude_hop: u64,
}

impl Message for AnnounceRequest {
    fn encode_body(&self, version: Version, buf: &mut Vec<u8>) -> Result<(), EncodeError> {
        buf.string(&self.prefix)?;
        if version.has_hop_ids() {
            buf.varint(self.exclude_hop)?;
        }
        Ok(())
    }

    fn decode_body(_: u64, buf: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        let prefix = buf.path()?;
        let exclude_hop = match version.has_hop_ids() {
            true => buf.varint()?,
            false => 0,
        };
        Ok(Self {
            prefix,
            exclude_hop,
        })
    }
}

/// lite-01/02: the broadcasts active when the request arrived, sent first even when empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AnnounceInit {
    pub suffixes: Vec<String>,
}

impl Message for AnnounceInit {
    fn encode_body(&self, version: Version, buf: &mut Vec<u8>) -> Result<(), EncodeError> {
        if !version.has_setup_exchange() {
            return Err(EncodeError::Version);
        }
        buf.varint(self.suffixes.len() as u64)?;
        self.suffixes.iter().try_for_each(|s| buf.string(s))
    }

    fn decode_body(_: u64, buf: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        if !version.has_setup_exchange() {
            return Err(DecodeError::Version);
        }
        let count = buf.count()?;
        let suffixes = (0..count).map(|_| buf.path()).collect::<Result<_, _>>()?;
        Ok(Self { suffixes })
    }
}

/// lite-05: sent first by the responder.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AnnounceOk {
    /// The responder's hop id, which the receiver appends to every hop chain on this stream.
    /// The JS client rejects 0, so encoding refuses it; decoding accepts it like the Rust one.
    pub hop: u64,
    /// How many ANNOUNCE(active) messages follow as the initial set.
    pub active_count: u64,
}

impl Message for AnnounceOk {
    fn encode_body(&self, version: Version, buf: &mut Vec<u8>) -> Result<(), EncodeError> {
        if !version.has_setup_stream() {
            return Err(EncodeError::Version);
        }
        if self.hop == 0 {
            return Err(EncodeError::InvalidValue);
        }
        buf.varint(self.hop)?;
        buf.varint(self.active_count)
    }

    fn decode_body(_: u64, buf: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        if !version.has_setup_stream() {
            return Err(DecodeError::Version);
        }
        Ok(Self {
            hop: buf.varint()?,
            active_count: buf.varint()?,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnnounceStatus {
    Ended,
    Active,
}

/// A broadcast becoming active or ending under the requested prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announce {
    pub status: AnnounceStatus,
    /// The path with the prefix (and its `/`) stripped; `""` for the prefix itself.
    pub suffix: String,
    /// The hop chain as it is on the wire: absent on lite-01/02 (decoded empty); on lite-03 only
    /// its length is sent, so it decodes as that many zeros; ids on lite-04/05. What to put in
    /// it differs per version (§5.1). Ended announcements carry an empty chain.
    pub hops: Vec<u64>,
}

impl Message for Announce {
    fn encode_body(&self, version: Version, buf: &mut Vec<u8>) -> Result<(), EncodeError> {
        buf.push(match self.status {
            AnnounceStatus::Ended => 0,
            AnnounceStatus::Active => 1,
        });
        buf.string(&self.suffix)?;
        if version.has_hop_ids() {
            buf.hops(&self.hops)?;
        } else if version.has_subscribe_options() {
            buf.hop_count(self.hops.len())?;
        }
        Ok(())
    }

    fn decode_body(_: u64, buf: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        let status = match buf.u8()? {
            0 => AnnounceStatus::Ended,
            1 => AnnounceStatus::Active,
            // "Restart" on lite-05: a second active replaces the announcement anyway.
            2 if version.has_setup_stream() => AnnounceStatus::Active,
            _ => return Err(DecodeError::InvalidValue),
        };
        let suffix = buf.path()?;
        let hops = if version.has_hop_ids() {
            buf.hops()?
        } else if version.has_subscribe_options() {
            vec![0; buf.hop_count()?]
        } else {
            Vec::new()
        };
        Ok(Self {
            status,
            suffix,
            hops,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lite::ControlType;
    use crate::lite::coding::decode_framed;
    use crate::lite::coding::tests::{check, hex};
    use Version::*;

    fn demo(status: AnnounceStatus, hops: Vec<u64>) -> Announce {
        Announce {
            status,
            suffix: "demo".into(),
            hops,
        }
    }

    #[test]
    fn request_per_version() {
        let all = AnnounceRequest::default();
        for v in [Lite01, Lite02, Lite03] {
            check(&all, v, "01 00");
        }
        check(
            &AnnounceRequest {
                prefix: String::new(),
                exclude_hop: 9,
            },
            Lite04,
            "02 00 09",
        );
        check(
            &AnnounceRequest {
                prefix: String::new(),
                exclude_hop: 7,
            },
            Lite05,
            "02 00 07",
        );
        check(
            &AnnounceRequest {
                prefix: "room".into(),
                exclude_hop: 0,
            },
            Lite05,
            "06 04 72 6f 6f 6d 00",
        );
        // The prefix is normalized on receive.
        let wire = hex("08 06 2f 72 6f 6f 6d 2f 00");
        let msg = AnnounceRequest::decode(&mut &wire[..], Lite04).unwrap();
        assert_eq!(msg.prefix, "room");
    }

    #[test]
    fn request_stream_prefix() {
        let wire = hex("01 02 00 09");
        let mut input = &wire[..];
        assert_eq!(
            ControlType::decode(&mut input, Lite05),
            Ok(ControlType::Announce)
        );
        let msg = AnnounceRequest::decode(&mut input, Lite05).unwrap();
        assert_eq!(
            msg,
            AnnounceRequest {
                prefix: String::new(),
                exclude_hop: 9
            }
        );
        assert!(input.is_empty());
    }

    #[test]
    fn init_lite01_02() {
        for v in [Lite01, Lite02] {
            check(
                &AnnounceInit {
                    suffixes: vec!["demo".into()],
                },
                v,
                "06 01 04 64 65 6d 6f",
            );
            check(&AnnounceInit::default(), v, "01 00");
            check(
                &demo(AnnounceStatus::Ended, vec![]),
                v,
                "06 00 04 64 65 6d 6f",
            );
            check(
                &demo(AnnounceStatus::Active, vec![]),
                v,
                "06 01 04 64 65 6d 6f",
            );
        }
        assert_eq!(
            AnnounceInit::default().encode(Lite03, &mut Vec::new()),
            Err(EncodeError::Version)
        );
        let r = decode_framed::<AnnounceInit>(&hex("01 00"), Lite05, 64);
        assert_eq!(r.unwrap_err(), DecodeError::Version);
        // A count larger than the body is short, never an allocation.
        let r = decode_framed::<AnnounceInit>(&hex("05 80 ff ff ff 01"), Lite02, 64);
        assert_eq!(r.unwrap_err(), DecodeError::BodyShort);
    }

    #[test]
    fn announce_lite03_counts_hops() {
        check(
            &demo(AnnounceStatus::Active, vec![0]),
            Lite03,
            "07 01 04 64 65 6d 6f 01",
        );
        check(
            &demo(AnnounceStatus::Active, vec![0, 0]),
            Lite03,
            "07 01 04 64 65 6d 6f 02",
        );
        // Only the count goes on the wire.
        let mut out = Vec::new();
        demo(AnnounceStatus::Active, vec![5, 9])
            .encode(Lite03, &mut out)
            .unwrap();
        assert_eq!(out, hex("07 01 04 64 65 6d 6f 02"));
    }

    #[test]
    fn announce_lite04_lite05_hop_ids() {
        check(
            &demo(AnnounceStatus::Active, vec![5]),
            Lite04,
            "08 01 04 64 65 6d 6f 01 05",
        );
        check(
            &demo(AnnounceStatus::Active, vec![5, 9]),
            Lite04,
            "09 01 04 64 65 6d 6f 02 05 09",
        );
        check(
            &demo(AnnounceStatus::Active, vec![]),
            Lite05,
            "07 01 04 64 65 6d 6f 00",
        );
        check(
            &demo(AnnounceStatus::Active, vec![5]),
            Lite05,
            "08 01 04 64 65 6d 6f 01 05",
        );
        check(
            &demo(AnnounceStatus::Ended, vec![]),
            Lite05,
            "07 00 04 64 65 6d 6f 00",
        );
    }

    #[test]
    fn announce_ok_then_initial_set() {
        let wire = hex("02 05 01 07 01 04 64 65 6d 6f 00");
        let mut input = &wire[..];
        let ok = AnnounceOk::decode(&mut input, Lite05).unwrap();
        assert_eq!(
            ok,
            AnnounceOk {
                hop: 5,
                active_count: 1
            }
        );
        assert_eq!(
            Announce::decode(&mut input, Lite05),
            Ok(demo(AnnounceStatus::Active, vec![]))
        );
        assert!(input.is_empty());
        check(
            &AnnounceOk {
                hop: 9,
                active_count: 1,
            },
            Lite05,
            "02 09 01",
        );
        check(
            &AnnounceOk {
                hop: 1 << 40,
                active_count: 0,
            },
            Lite05,
            "09 c0 00 01 00 00 00 00 00 00",
        );
        assert_eq!(
            AnnounceOk::default().encode(Lite04, &mut Vec::new()),
            Err(EncodeError::Version)
        );
        assert_eq!(
            AnnounceOk::default().encode(Lite05, &mut Vec::new()),
            Err(EncodeError::InvalidValue)
        );
        let zero = AnnounceOk::decode(&mut &hex("02 00 00")[..], Lite05).unwrap();
        assert_eq!(zero.hop, 0);
    }

    #[test]
    fn status_values() {
        let restart = hex("07 02 04 64 65 6d 6f 00");
        let msg = Announce::decode(&mut &restart[..], Lite05).unwrap();
        assert_eq!(msg.status, AnnounceStatus::Active);
        let restart = hex("07 02 04 64 65 6d 6f 00");
        assert_eq!(
            Announce::decode(&mut &restart[..], Lite04),
            Err(DecodeError::InvalidValue)
        );
        let bad = hex("06 03 04 64 65 6d 6f");
        assert_eq!(
            Announce::decode(&mut &bad[..], Lite02),
            Err(DecodeError::InvalidValue)
        );
    }

    #[test]
    fn hop_limits() {
        let chain: Vec<u64> = (1..=32).collect();
        let mut out = Vec::new();
        demo(AnnounceStatus::Active, chain.clone())
            .encode(Lite04, &mut out)
            .unwrap();
        assert_eq!(Announce::decode(&mut &out[..], Lite04).unwrap().hops, chain);
        let long = demo(AnnounceStatus::Active, (1..=33).collect());
        for v in [Lite03, Lite04, Lite05] {
            assert_eq!(
                long.encode(v, &mut Vec::new()),
                Err(EncodeError::BoundsExceeded)
            );
        }
        // 33 hops on the wire, lite-03 count and lite-04 list.
        let r = Announce::decode(&mut &hex("07 01 04 64 65 6d 6f 21")[..], Lite03);
        assert_eq!(r, Err(DecodeError::BoundsExceeded));
        let mut wire = hex("28 01 04 64 65 6d 6f 21");
        wire.extend(1..=33u8);
        assert_eq!(
            Announce::decode(&mut &wire[..], Lite05),
            Err(DecodeError::BoundsExceeded)
        );
    }

    #[test]
    fn trailing_and_bad_utf8() {
        let r = decode_framed::<Announce>(&hex("08 01 04 64 65 6d 6f 00 00"), Lite05, 64);
        assert_eq!(r.unwrap_err(), DecodeError::BodyLong);
        let r = decode_framed::<Announce>(&hex("06 01 04 64 65 6d 6f"), Lite05, 64);
        assert_eq!(r.unwrap_err(), DecodeError::BodyShort);
        let r = decode_framed::<Announce>(&hex("05 01 02 c3 28 00"), Lite05, 64);
        assert_eq!(r.unwrap_err(), DecodeError::InvalidUtf8);
        // Oversize is known from the length alone.
        let r = decode_framed::<Announce>(&hex("41 00"), Lite05, 64);
        assert_eq!(r.unwrap_err(), DecodeError::TooLarge);
    }
}
