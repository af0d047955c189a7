//! moq-lite wire codecs for lite-01 to lite-05, sans IO.
//!
//! Control messages implement [`Message`]: `encode` writes the framed message, and
//! [`decode_framed`] reads one from a stream buffer incrementally. Group streams, where the
//! payload lives, go through [`GroupReader`] and [`GroupWriter`] so that payload bytes are never
//! copied. Everything takes the negotiated [`Version`]; fields a version lacks are not sent and
//! decode as defaults, and messages a version lacks are errors.

mod announce;
mod coding;
mod datagram;
mod error;
mod fetch;
mod goaway;
mod group;
mod probe;
pub mod session;
mod setup;
mod stream;
mod subscribe;
mod track;
mod version;

pub use announce::{Announce, AnnounceInit, AnnounceOk, AnnounceRequest, AnnounceStatus};
pub use coding::{Framing, MAX_HOPS, MAX_VARINT, Message, decode_framed};
pub use datagram::Datagram;
pub use error::{DecodeError, EncodeError, ErrorCode};
pub use fetch::Fetch;
pub use goaway::Goaway;
pub use group::{FrameHeader, GroupEvent, GroupHeader, GroupReader, GroupWriter, MAX_FRAME_SIZE};
pub use probe::Probe;
pub use setup::{
    ClientSetup, MAX_PARAMETERS, ProbeLevel, Role, ServerSetup, SessionInfo, Setup,
    SetupParameters, SetupValue,
};
pub use stream::{ControlType, DataType};
pub use subscribe::{
    Subscribe, SubscribeDrop, SubscribeOptions, SubscribeResponse, SubscribeUpdate,
};
pub use track::{Track, TrackInfo};
pub use version::Version;

#[cfg(test)]
mod tests {
    //! Whole streams from the §11 captures, and decoding garbage without panicking.

    use std::fmt::Debug;
    use std::time::Duration;

    use bytes::Bytes;

    use super::coding::tests::hex;
    use super::*;
    use Version::*;

    /// Something that can appear on a control stream: a stream type or a message.
    trait Item: Debug {
        fn encode_item(&self, version: Version, buf: &mut Vec<u8>);
        fn decode_matches(&self, buf: &mut &[u8], version: Version) -> bool;
    }

    impl<T: Message + PartialEq + Debug> Item for T {
        fn encode_item(&self, version: Version, buf: &mut Vec<u8>) {
            self.encode(version, buf).unwrap();
        }

        fn decode_matches(&self, buf: &mut &[u8], version: Version) -> bool {
            T::decode(buf, version).as_ref() == Ok(self)
        }
    }

    impl Item for ControlType {
        fn encode_item(&self, version: Version, buf: &mut Vec<u8>) {
            self.encode(version, buf).unwrap();
        }

        fn decode_matches(&self, buf: &mut &[u8], version: Version) -> bool {
            ControlType::decode(buf, version) == Ok(*self)
        }
    }

    /// One direction of a stream: `items` encode to exactly `wire`, and decode from it in order.
    fn stream(version: Version, wire: &str, items: &[&dyn Item]) {
        let wire = hex(wire);
        let mut out = Vec::new();
        items
            .iter()
            .for_each(|item| item.encode_item(version, &mut out));
        assert_eq!(out, wire, "{items:?} on {version:?}");
        let mut input = &wire[..];
        for item in items {
            assert!(
                item.decode_matches(&mut input, version),
                "{item:?} on {version:?}"
            );
        }
        assert!(input.is_empty());
    }

    fn request(exclude_hop: u64) -> AnnounceRequest {
        AnnounceRequest {
            prefix: String::new(),
            exclude_hop,
        }
    }

    fn demo(status: AnnounceStatus, hops: Vec<u64>) -> Announce {
        Announce {
            status,
            suffix: "demo".into(),
            hops,
        }
    }

    fn subscribe(options: SubscribeOptions) -> Subscribe {
        Subscribe {
            id: 0,
            broadcast: "demo".into(),
            track: "video".into(),
            options,
        }
    }

    const PRIORITY_2: SubscribeOptions = SubscribeOptions {
        priority: 2,
        ordered: false,
        max_latency: Duration::ZERO,
        start_group: None,
        end_group: None,
    };

    const B_OPTIONS: SubscribeOptions = SubscribeOptions {
        max_latency: Duration::from_millis(500),
        ..PRIORITY_2
    };

    const ANNOUNCE: ControlType = ControlType::Announce;
    const SUBSCRIBE: ControlType = ControlType::Subscribe;

    #[test]
    fn lite01_02_streams() {
        for v in [Lite01, Lite02] {
            stream(v, "01 01 00", &[&ANNOUNCE, &request(0)]);
            stream(
                v,
                "06 01 04 64 65 6d 6f",
                &[&AnnounceInit {
                    suffixes: vec!["demo".into()],
                }],
            );
            stream(v, "01 00", &[&AnnounceInit::default()]);
            stream(
                v,
                "02 0d 00 04 64 65 6d 6f 05 76 69 64 65 6f 02",
                &[&SUBSCRIBE, &subscribe(PRIORITY_2)],
            );
            stream(
                v,
                "06 00 04 64 65 6d 6f",
                &[&demo(AnnounceStatus::Ended, vec![])],
            );
        }
        stream(
            Lite02,
            "00",
            &[&SubscribeResponse::Ok(SubscribeOptions::default())],
        );
        stream(Lite01, "01 02", &[&SubscribeResponse::Ok(PRIORITY_2)]);
    }

    #[test]
    fn lite03_streams() {
        stream(Lite03, "01 01 00", &[&ANNOUNCE, &request(0)]);
        stream(
            Lite03,
            "07 01 04 64 65 6d 6f 01",
            &[&demo(AnnounceStatus::Active, vec![0])],
        );
        stream(
            Lite03,
            "07 01 04 64 65 6d 6f 02",
            &[&demo(AnnounceStatus::Active, vec![0, 0])],
        );
        stream(
            Lite03,
            "02 12 00 04 64 65 6d 6f 05 76 69 64 65 6f 02 00 41 f4 00 00",
            &[&SUBSCRIBE, &subscribe(B_OPTIONS)],
        );
        stream(
            Lite03,
            "00 05 02 00 00 00 00",
            &[&SubscribeResponse::Ok(PRIORITY_2)],
        );
        stream(Lite03, "04", &[&ControlType::Probe]);
        stream(
            Lite03,
            "04 80 0f 42 40",
            &[&Probe {
                bitrate: 1_000_000,
                rtt: Duration::ZERO,
            }],
        );
    }

    #[test]
    fn lite04_streams() {
        stream(Lite04, "01 02 00 09", &[&ANNOUNCE, &request(9)]);
        stream(Lite04, "01 02 00 07", &[&ANNOUNCE, &request(7)]);
        stream(
            Lite04,
            "08 01 04 64 65 6d 6f 01 05",
            &[&demo(AnnounceStatus::Active, vec![5])],
        );
        stream(
            Lite04,
            "09 01 04 64 65 6d 6f 02 05 09",
            &[&demo(AnnounceStatus::Active, vec![5, 9])],
        );
        stream(Lite04, "04", &[&ControlType::Probe]);
        stream(
            Lite04,
            "02 12 00 04 64 65 6d 6f 05 76 69 64 65 6f 02 00 41 f4 00 00",
            &[&SUBSCRIBE, &subscribe(B_OPTIONS)],
        );
        stream(
            Lite04,
            "00 05 02 00 00 00 00",
            &[&SubscribeResponse::Ok(PRIORITY_2)],
        );
        stream(
            Lite04,
            "05 80 0f 42 40 28",
            &[&Probe {
                bitrate: 1_000_000,
                rtt: Duration::from_millis(40),
            }],
        );
        stream(
            Lite04,
            "02 00 01",
            &[&Probe {
                bitrate: 0,
                rtt: Duration::from_millis(1),
            }],
        );
        stream(
            Lite04,
            "05 01 00",
            &[&ControlType::Goaway, &Goaway::default()],
        );
    }

    #[test]
    fn lite05_streams() {
        stream(Lite05, "01 02 00 09", &[&ANNOUNCE, &request(9)]);
        stream(
            Lite05,
            "02 05 01 07 01 04 64 65 6d 6f 00",
            &[
                &AnnounceOk {
                    hop: 5,
                    active_count: 1,
                },
                &demo(AnnounceStatus::Active, vec![]),
            ],
        );
        stream(
            Lite05,
            "02 09 01 08 01 04 64 65 6d 6f 01 05",
            &[
                &AnnounceOk {
                    hop: 9,
                    active_count: 1,
                },
                &demo(AnnounceStatus::Active, vec![5]),
            ],
        );
        stream(
            Lite05,
            "07 00 04 64 65 6d 6f 00",
            &[&demo(AnnounceStatus::Ended, vec![])],
        );
        let track = Track {
            broadcast: "demo".into(),
            track: "video".into(),
        };
        stream(
            Lite05,
            "06 0b 04 64 65 6d 6f 05 76 69 64 65 6f",
            &[&ControlType::Track, &track],
        );
        stream(Lite05, "06 00 00 53 88 43 e8", &[&TrackInfo::default()]);
        stream(
            Lite05,
            "02 12 00 04 64 65 6d 6f 05 76 69 64 65 6f 02 00 41 f4 00 00",
            &[&SUBSCRIBE, &subscribe(B_OPTIONS)],
        );
        stream(Lite05, "00 01 00", &[&SubscribeResponse::Start(0)]);
        stream(
            Lite05,
            "00 01 00 01 01 01",
            &[&SubscribeResponse::Start(0), &SubscribeResponse::End(1)],
        );
        let fetch = Fetch {
            broadcast: "demo".into(),
            track: "video".into(),
            priority: 2,
            group: 7,
        };
        stream(
            Lite05,
            "03 0d 04 64 65 6d 6f 05 76 69 64 65 6f 02 07",
            &[&ControlType::Fetch, &fetch],
        );
    }

    #[test]
    fn lite05_fetch_answer_is_bare_frames() {
        let mut writer = GroupWriter::new(Lite05);
        let mut out = Vec::new();
        writer.frame(2, 1000, &mut out).unwrap();
        out.extend_from_slice(b"hi");
        assert_eq!(out, hex("47 d0 02 68 69"));
        let mut reader = GroupReader::frames(Lite05, 100);
        reader.push(Bytes::from(out));
        assert_eq!(
            reader.poll(),
            Ok(Some(GroupEvent::Frame {
                size: 2,
                timestamp: 1000
            }))
        );
        assert_eq!(
            reader.poll(),
            Ok(Some(GroupEvent::Payload(Bytes::from_static(b"hi"))))
        );
        assert_eq!(reader.poll(), Ok(Some(GroupEvent::FrameEnd)));
        assert_eq!(reader.poll(), Ok(None));
        reader.finish().unwrap();
    }

    #[test]
    fn decode_errors_map_to_codes() {
        assert_eq!(DecodeError::BodyLong.code(), ErrorCode::DECODE);
        assert_eq!(DecodeError::Version.code(), ErrorCode::DECODE);
        assert_eq!(
            DecodeError::BoundsExceeded.code(),
            ErrorCode::BOUNDS_EXCEEDED
        );
        assert_eq!(
            DecodeError::UnexpectedStream(1).code(),
            ErrorCode::UNEXPECTED_STREAM
        );
        assert_eq!(DecodeError::WrongSize.code(), ErrorCode::WRONG_SIZE);
        assert_eq!(
            DecodeError::FrameTooLarge.code(),
            ErrorCode::FRAME_TOO_LARGE
        );
        assert_eq!(
            DecodeError::TooManyParameters.code(),
            ErrorCode::TOO_MANY_PARAMETERS
        );
        assert_eq!(EncodeError::Version.code(), ErrorCode::VERSION);
        assert_eq!(EncodeError::BoundsExceeded.code(), ErrorCode::ENCODE);
    }

    /// xorshift64: deterministic noise without a dependency.
    struct Noise(u64);

    impl Noise {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn bytes(&mut self, max_len: u64) -> Vec<u8> {
            let len = self.next() % (max_len + 1);
            (0..len).map(|_| self.next() as u8).collect()
        }
    }

    /// Decodes `buf` as `T`; anything decoded must survive a re-encode unchanged.
    fn try_decode<T: Message + PartialEq + Debug>(buf: &[u8], version: Version) {
        if let Ok(Some((msg, used))) = decode_framed::<T>(buf, version, 256) {
            assert!(used <= buf.len());
            let mut out = Vec::new();
            match msg.encode(version, &mut out) {
                Ok(()) => assert_eq!(T::decode(&mut &out[..], version), Ok(msg)),
                // Accepted but never sent, like an ANNOUNCE_OK hop of 0.
                Err(e) => assert_eq!(e, EncodeError::InvalidValue, "{msg:?}"),
            }
        }
        let _ = T::decode(&mut &buf[..], version);
    }

    fn try_everything(buf: &[u8], version: Version, noise: &mut Noise) {
        try_decode::<ClientSetup>(buf, version);
        try_decode::<ServerSetup>(buf, version);
        try_decode::<SessionInfo>(buf, version);
        try_decode::<Setup>(buf, version);
        try_decode::<AnnounceRequest>(buf, version);
        try_decode::<AnnounceInit>(buf, version);
        try_decode::<AnnounceOk>(buf, version);
        try_decode::<Announce>(buf, version);
        try_decode::<Subscribe>(buf, version);
        try_decode::<SubscribeUpdate>(buf, version);
        try_decode::<SubscribeResponse>(buf, version);
        try_decode::<Fetch>(buf, version);
        try_decode::<Probe>(buf, version);
        try_decode::<Goaway>(buf, version);
        try_decode::<Track>(buf, version);
        try_decode::<TrackInfo>(buf, version);
        try_decode::<GroupHeader>(buf, version);
        let _ = ControlType::decode(&mut &buf[..], version);
        let _ = DataType::decode(&mut &buf[..], version);
        let _ = FrameHeader::decode(&mut &buf[..], version);
        let _ = Datagram::decode(Bytes::copy_from_slice(buf), version);
        let _ = crate::model::path::normalize(&String::from_utf8_lossy(buf), 64);
        for mut reader in [
            GroupReader::new(version, 64),
            GroupReader::frames(version, 64),
        ] {
            let wire = Bytes::copy_from_slice(buf);
            let mut at = 0;
            while at < wire.len() {
                let end = (at + 1 + (noise.next() % 8) as usize).min(wire.len());
                reader.push(wire.slice(at..end));
                at = end;
                loop {
                    match reader.poll() {
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(_) => return,
                    }
                }
            }
            let _ = reader.finish();
        }
    }

    #[test]
    fn random_input_never_panics() {
        let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
        for _ in 0..3000 {
            let buf = noise.bytes(48);
            for v in Version::ALL {
                try_everything(&buf, v, &mut noise);
            }
        }
    }

    /// Valid messages with a few bytes changed reach much deeper than pure noise.
    #[test]
    fn mutated_messages_never_panic() {
        let samples = [
            "20 00 25 01 c0 00 00 00 ff 0d ad 01 03 02 c0 00 00 00 ff ff ff ff 80 04 0b 5a 01 07 0b 6d 6f 71 2d 6c 69 74 65 2d 72 73",
            "21 00 09 c0 00 00 00 ff 0d ad 02 00",
            "19 04 01 01 01 02 0d 2f 61 6e 6f 6e 3f 6a 77 74 3d 61 62 63 03 01 01 05 01 05",
            "09 01 04 64 65 6d 6f 02 05 09",
            "06 01 04 64 65 6d 6f",
            "12 00 04 64 65 6d 6f 05 76 69 64 65 6f 02 00 41 f4 00 00",
            "00 05 02 00 00 00 00",
            "02 03 01 03 00",
            "0d 04 64 65 6d 6f 05 76 69 64 65 6f 02 07",
            "06 00 00 53 88 43 e8",
            "02 00 00 47 d0 02 68 69 40 42 05 74 68 65 72 65",
        ];
        let mut noise = Noise(42);
        for sample in samples {
            let wire = hex(sample);
            for _ in 0..300 {
                let mut buf = wire.clone();
                for _ in 0..1 + noise.next() % 3 {
                    let at = (noise.next() % buf.len() as u64) as usize;
                    buf[at] = noise.next() as u8;
                }
                buf.truncate(buf.len() - (noise.next() % 3) as usize);
                for v in Version::ALL {
                    try_everything(&buf, v, &mut noise);
                }
            }
        }
    }
}
