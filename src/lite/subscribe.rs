//! The Subscribe stream (§5.2): SUBSCRIBE then SUBSCRIBE_UPDATE… from the subscriber,
//! [`SubscribeResponse`]… from the publisher. Ending is a FIN, refusal a reset.

use std::time::Duration;

use super::coding::{Framing, Message, Read, Write};
use super::{DecodeError, EncodeError, Version};

/// Subscriber preferences, shared by SUBSCRIBE, SUBSCRIBE_UPDATE and the lite-03/04
/// SUBSCRIBE_OK. Only `priority` exists on lite-01/02; the rest then take these defaults.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubscribeOptions {
    /// Higher is more important.
    pub priority: u8,
    /// Oldest group first.
    pub ordered: bool,
    pub max_latency: Duration,
    /// First group to deliver; `None` starts at the latest.
    pub start_group: Option<u64>,
    /// Inclusive serving cap; `None` is unbounded.
    pub end_group: Option<u64>,
}

impl SubscribeOptions {
    fn encode(&self, buf: &mut Vec<u8>) -> Result<(), EncodeError> {
        buf.push(self.priority);
        buf.bool(self.ordered);
        buf.millis(self.max_latency)?;
        buf.opt_seq(self.start_group)?;
        buf.opt_seq(self.end_group)
    }

    fn decode(buf: &mut &[u8]) -> Result<Self, DecodeError> {
        Ok(Self {
            priority: buf.u8()?,
            ordered: buf.bool()?,
            max_latency: buf.millis()?,
            start_group: buf.opt_seq()?,
            end_group: buf.opt_seq()?,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscribe {
    /// Chosen by the subscriber, unique per session; group streams refer to it.
    pub id: u64,
    /// Relative to the session root; normalized on decode.
    pub broadcast: String,
    /// Not normalized.
    pub track: String,
    pub options: SubscribeOptions,
}

impl Message for Subscribe {
    fn encode_body(&self, version: Version, buf: &mut Vec<u8>) -> Result<(), EncodeError> {
        buf.varint(self.id)?;
        buf.string(&self.broadcast)?;
        buf.string(&self.track)?;
        if version.has_subscribe_options() {
            return self.options.encode(buf);
        }
        buf.push(self.options.priority);
        Ok(())
    }

    fn decode_body(_: u64, buf: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        let id = buf.varint()?;
        let broadcast = buf.path()?;
        let track = buf.string()?;
        let options = match version.has_subscribe_options() {
            true => SubscribeOptions::decode(buf)?,
            false => SubscribeOptions {
                priority: buf.u8()?,
                ..Default::default()
            },
        };
        Ok(Self {
            id,
            broadcast,
            track,
            options,
        })
    }
}

/// lite-03+: replaces all of the subscriber's preferences (not a delta).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubscribeUpdate {
    pub options: SubscribeOptions,
}

impl Message for SubscribeUpdate {
    fn encode_body(&self, version: Version, buf: &mut Vec<u8>) -> Result<(), EncodeError> {
        if !version.has_subscribe_options() {
            return Err(EncodeError::Version);
        }
        self.options.encode(buf)
    }

    /// On lite-01/02 anything after SUBSCRIBE is an error, as in the reference (reset code 5).
    fn decode_body(_: u64, buf: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        if !version.has_subscribe_options() {
            return Err(DecodeError::Version);
        }
        Ok(Self {
            options: SubscribeOptions::decode(buf)?,
        })
    }
}

/// Groups the publisher will not deliver; never sent by the reference.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubscribeDrop {
    /// Inclusive and absolute (not `(i+1)`).
    pub start_group: u64,
    pub end_group: u64,
    pub error_code: u64,
}

/// What the publisher sends on a subscribe stream.
///
/// lite-01/02: exactly one untyped `Ok`. lite-03/04: typed, `Ok` first, then `Drop`s.
/// lite-05: typed `Start`, `End`, `Drop`; acceptance is implicit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubscribeResponse {
    /// lite-01 carries only the priority, lite-02 nothing, lite-03/04 everything.
    Ok(SubscribeOptions),
    /// lite-05: the first group that will be delivered, sent just before its stream opens.
    Start(u64),
    /// lite-05: the first group that will never be delivered (exclusive); 0 for none at all.
    End(u64),
    Drop(SubscribeDrop),
}

impl Message for SubscribeResponse {
    fn framing(version: Version) -> Framing {
        match version.has_subscribe_options() {
            true => Framing::Typed,
            false => Framing::Sized,
        }
    }

    fn kind(&self, version: Version) -> Result<u64, EncodeError> {
        let lite05 = version.has_setup_stream();
        match self {
            Self::Ok(_) if !lite05 => Ok(0),
            Self::Start(_) if lite05 => Ok(0),
            Self::End(_) if lite05 => Ok(1),
            Self::Drop(_) if lite05 => Ok(2),
            Self::Drop(_) if version.has_subscribe_options() => Ok(1),
            _ => Err(EncodeError::Version),
        }
    }

    fn encode_body(&self, version: Version, buf: &mut Vec<u8>) -> Result<(), EncodeError> {
        self.kind(version)?;
        match self {
            Self::Ok(options) => match version {
                Version::Lite01 => buf.push(options.priority),
                Version::Lite02 => {}
                _ => options.encode(buf)?,
            },
            Self::Start(group) | Self::End(group) => buf.varint(*group)?,
            Self::Drop(drop) => {
                buf.varint(drop.start_group)?;
                buf.varint(drop.end_group)?;
                buf.varint(drop.error_code)?;
            }
        }
        Ok(())
    }

    fn decode_body(kind: u64, buf: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        if !version.has_subscribe_options() {
            let priority = match version {
                Version::Lite01 => buf.u8()?,
                _ => 0,
            };
            return Ok(Self::Ok(SubscribeOptions {
                priority,
                ..Default::default()
            }));
        }
        match (kind, version.has_setup_stream()) {
            (0, false) => Ok(Self::Ok(SubscribeOptions::decode(buf)?)),
            (0, true) => Ok(Self::Start(buf.varint()?)),
            (1, true) => Ok(Self::End(buf.varint()?)),
            (1, false) | (2, true) => Ok(Self::Drop(SubscribeDrop {
                start_group: buf.varint()?,
                end_group: buf.varint()?,
                error_code: buf.varint()?,
            })),
            _ => Err(DecodeError::UnknownMessage(kind)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lite::ControlType;
    use crate::lite::coding::decode_framed;
    use crate::lite::coding::tests::{check, hex};
    use Version::*;

    fn demo_video(options: SubscribeOptions) -> Subscribe {
        Subscribe {
            id: 0,
            broadcast: "demo".into(),
            track: "video".into(),
            options,
        }
    }

    const B_OPTIONS: SubscribeOptions = SubscribeOptions {
        priority: 2,
        ordered: false,
        max_latency: Duration::from_millis(500),
        start_group: None,
        end_group: None,
    };

    #[test]
    fn subscribe_lite01_02() {
        let msg = demo_video(SubscribeOptions {
            priority: 2,
            ..Default::default()
        });
        for v in [Lite01, Lite02] {
            check(&msg, v, "0d 00 04 64 65 6d 6f 05 76 69 64 65 6f 02");
        }
        // Options that lite-01/02 cannot carry are not sent.
        let mut out = Vec::new();
        demo_video(B_OPTIONS).encode(Lite02, &mut out).unwrap();
        assert_eq!(out, hex("0d 00 04 64 65 6d 6f 05 76 69 64 65 6f 02"));
    }

    #[test]
    fn subscribe_lite03_plus() {
        for v in [Lite03, Lite04, Lite05] {
            check(
                &demo_video(B_OPTIONS),
                v,
                "12 00 04 64 65 6d 6f 05 76 69 64 65 6f 02 00 41 f4 00 00",
            );
        }
        let full = Subscribe {
            id: 7,
            broadcast: "a/b".into(),
            track: "t".into(),
            options: SubscribeOptions {
                priority: 255,
                ordered: true,
                max_latency: Duration::from_millis(5000),
                start_group: Some(0),
                end_group: Some(100),
            },
        };
        check(
            &full,
            Lite05,
            "0e 07 03 61 2f 62 01 74 ff 01 53 88 01 40 65",
        );
    }

    #[test]
    fn subscribe_stream_prefix() {
        let wire = hex("02 0d 00 04 64 65 6d 6f 05 76 69 64 65 6f 02");
        let mut input = &wire[..];
        assert_eq!(
            ControlType::decode(&mut input, Lite02),
            Ok(ControlType::Subscribe)
        );
        let msg = Subscribe::decode(&mut input, Lite02).unwrap();
        assert_eq!(msg.options.priority, 2);
        assert!(input.is_empty());
    }

    #[test]
    fn subscribe_normalizes_broadcast_not_track() {
        let mut out = Vec::new();
        Subscribe {
            id: 1,
            broadcast: "/a//b/".into(),
            track: "/x/".into(),
            options: B_OPTIONS,
        }
        .encode(Lite04, &mut out)
        .unwrap();
        let msg = Subscribe::decode(&mut &out[..], Lite04).unwrap();
        assert_eq!((msg.broadcast.as_str(), msg.track.as_str()), ("a/b", "/x/"));
    }

    #[test]
    fn update() {
        let update = SubscribeUpdate {
            options: SubscribeOptions {
                priority: 1,
                ordered: true,
                start_group: Some(3),
                ..Default::default()
            },
        };
        for v in [Lite03, Lite04, Lite05] {
            check(&update, v, "05 01 01 00 04 00");
        }
        assert_eq!(
            update.encode(Lite02, &mut Vec::new()),
            Err(EncodeError::Version)
        );
        let r = decode_framed::<SubscribeUpdate>(&hex("05 01 01 00 04 00"), Lite01, 64);
        assert_eq!(r.unwrap_err(), DecodeError::Version);
    }

    #[test]
    fn ok_lite01_02() {
        let ok = SubscribeResponse::Ok(SubscribeOptions {
            priority: 2,
            ..Default::default()
        });
        check(&ok, Lite01, "01 02");
        check(
            &SubscribeResponse::Ok(SubscribeOptions::default()),
            Lite02,
            "00",
        );
        let mut out = Vec::new();
        ok.encode(Lite02, &mut out).unwrap();
        assert_eq!(out, hex("00"));
        let r = decode_framed::<SubscribeResponse>(&hex("01 02"), Lite02, 64);
        assert_eq!(r.unwrap_err(), DecodeError::BodyLong);
        for other in [
            SubscribeResponse::Start(0),
            SubscribeResponse::End(0),
            SubscribeResponse::Drop(SubscribeDrop::default()),
        ] {
            assert_eq!(
                other.encode(Lite01, &mut Vec::new()),
                Err(EncodeError::Version)
            );
        }
    }

    #[test]
    fn ok_and_drop_lite03_04() {
        let ok = SubscribeResponse::Ok(SubscribeOptions {
            priority: 2,
            ..Default::default()
        });
        for v in [Lite03, Lite04] {
            check(&ok, v, "00 05 02 00 00 00 00");
            let drop = SubscribeResponse::Drop(SubscribeDrop {
                start_group: 1,
                end_group: 3,
                error_code: 0,
            });
            check(&drop, v, "01 03 01 03 00");
            assert_eq!(
                SubscribeResponse::Start(0).encode(v, &mut Vec::new()),
                Err(EncodeError::Version)
            );
            let r = decode_framed::<SubscribeResponse>(&hex("02 03 01 03 00"), v, 64);
            assert_eq!(r.unwrap_err(), DecodeError::UnknownMessage(2));
        }
    }

    #[test]
    fn start_end_drop_lite05() {
        check(&SubscribeResponse::Start(0), Lite05, "00 01 00");
        check(&SubscribeResponse::End(1), Lite05, "01 01 01");
        let drop = SubscribeResponse::Drop(SubscribeDrop {
            start_group: 1,
            end_group: 3,
            error_code: 0,
        });
        check(&drop, Lite05, "02 03 01 03 00");
        let ok = SubscribeResponse::Ok(SubscribeOptions::default());
        assert_eq!(
            ok.encode(Lite05, &mut Vec::new()),
            Err(EncodeError::Version)
        );
        let r = decode_framed::<SubscribeResponse>(&hex("03 00"), Lite05, 64);
        assert_eq!(r.unwrap_err(), DecodeError::UnknownMessage(3));
        // The captured clean end: START 0, END 1, FIN.
        let wire = hex("00 01 00 01 01 01");
        let mut input = &wire[..];
        assert_eq!(
            SubscribeResponse::decode(&mut input, Lite05),
            Ok(SubscribeResponse::Start(0))
        );
        assert_eq!(
            SubscribeResponse::decode(&mut input, Lite05),
            Ok(SubscribeResponse::End(1))
        );
        assert!(input.is_empty());
    }

    #[test]
    fn typed_oversize_rejected_before_body() {
        let r = decode_framed::<SubscribeResponse>(&hex("00 80 01 00 00"), Lite05, 1024);
        assert_eq!(r.unwrap_err(), DecodeError::TooLarge);
    }
}
