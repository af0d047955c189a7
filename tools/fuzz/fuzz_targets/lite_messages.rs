//! Every moq-lite control message decoder, on every version.
//!
//! Input: a version byte, a kind byte, a max-size byte, then the wire bytes. Whatever decodes
//! must re-encode (or be refused as a value we never send) and decode back to itself, as the
//! crate's own round-trip tests require; nothing may panic.

#![no_main]

use std::fmt::Debug;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use moq_relay::lite::{
    Announce, AnnounceInit, AnnounceOk, AnnounceRequest, ClientSetup, ControlType, DataType,
    Datagram, EncodeError, Fetch, FrameHeader, Goaway, GroupHeader, Message, Probe, ServerSetup,
    SessionInfo, Setup, Subscribe, SubscribeResponse, SubscribeUpdate, Track, TrackInfo, Version,
    decode_framed,
};
use moq_relay_fuzz::{Input, version};

/// Decodes `buf` as a stream of `T` would be read: framed messages one after the other under
/// `max`, then the whole buffer at once with no limit.
fn messages<T: Message + PartialEq + Debug>(buf: &[u8], v: Version, max: usize) {
    let mut at = 0;
    while let Ok(Some((msg, used))) = decode_framed::<T>(&buf[at..], v, max) {
        assert!(
            used > 0 && used <= buf.len() - at,
            "{used} of {}",
            buf.len() - at
        );
        at += used;
        round_trip(&msg, v);
    }
    let _ = T::decode(&mut &buf[..], v);
}

fn round_trip<T: Message + PartialEq + Debug>(msg: &T, v: Version) {
    let mut out = Vec::new();
    match msg.encode(v, &mut out) {
        Ok(()) => {
            let back = T::decode(&mut &out[..], v);
            assert_eq!(back.as_ref(), Ok(msg), "{v:?}");
        }
        // Accepted from a peer but never sent by us (an ANNOUNCE_OK hop of 0, say).
        Err(e) => assert_eq!(e, EncodeError::InvalidValue, "{msg:?} on {v:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let v = version(input.u8());
    let kind = input.u8();
    // A small limit exercises the early TooLarge path; 0 means none.
    let max = match input.u8() {
        0 => usize::MAX,
        n => usize::from(n),
    };
    let buf = input.rest();
    match kind % 22 {
        0 => messages::<ClientSetup>(buf, v, max),
        1 => messages::<ServerSetup>(buf, v, max),
        2 => messages::<SessionInfo>(buf, v, max),
        3 => messages::<Setup>(buf, v, max),
        4 => messages::<AnnounceRequest>(buf, v, max),
        5 => messages::<AnnounceInit>(buf, v, max),
        6 => messages::<AnnounceOk>(buf, v, max),
        7 => messages::<Announce>(buf, v, max),
        8 => messages::<Subscribe>(buf, v, max),
        9 => messages::<SubscribeUpdate>(buf, v, max),
        10 => messages::<SubscribeResponse>(buf, v, max),
        11 => messages::<Fetch>(buf, v, max),
        12 => messages::<Probe>(buf, v, max),
        13 => messages::<Goaway>(buf, v, max),
        14 => messages::<Track>(buf, v, max),
        15 => messages::<TrackInfo>(buf, v, max),
        16 => messages::<GroupHeader>(buf, v, max),
        17 => {
            let mut cursor = buf;
            if let Ok(t) = ControlType::decode(&mut cursor, v) {
                let mut out = Vec::new();
                t.encode(v, &mut out)
                    .expect("a decoded control type encodes");
                assert_eq!(ControlType::decode(&mut &out[..], v), Ok(t));
            }
        }
        18 => {
            let mut cursor = buf;
            if let Ok(t) = DataType::decode(&mut cursor, v) {
                let mut out = Vec::new();
                t.encode(v, &mut out).expect("a decoded data type encodes");
                assert_eq!(DataType::decode(&mut &out[..], v), Ok(t));
            }
        }
        19 => {
            let mut cursor = buf;
            while let Ok(h) = FrameHeader::decode(&mut cursor, v) {
                let mut out = Vec::new();
                h.encode(v, &mut out)
                    .expect("a decoded frame header encodes");
                assert_eq!(FrameHeader::decode(&mut &out[..], v), Ok(h));
            }
        }
        20 => {
            if let Ok(d) = Datagram::decode(Bytes::copy_from_slice(buf), v) {
                let mut out = Vec::new();
                d.encode(v, &mut out).expect("a decoded datagram encodes");
                assert_eq!(Datagram::decode(Bytes::from(out), v), Ok(d));
            }
        }
        // A control stream of the typed messages, as a session reads them after the type.
        _ => {
            let mut cursor = buf;
            while let Ok(t) = ControlType::decode(&mut cursor, v) {
                let ok = match t {
                    ControlType::Announce => AnnounceRequest::decode(&mut cursor, v).is_ok(),
                    ControlType::Subscribe => Subscribe::decode(&mut cursor, v).is_ok(),
                    ControlType::Fetch => Fetch::decode(&mut cursor, v).is_ok(),
                    ControlType::Probe => Probe::decode(&mut cursor, v).is_ok(),
                    ControlType::Goaway => Goaway::decode(&mut cursor, v).is_ok(),
                    ControlType::Track => Track::decode(&mut cursor, v).is_ok(),
                };
                if !ok {
                    break;
                }
            }
        }
    }
});
