//! `lite::GroupReader` over a group stream (or a fetch answer's bare frames) split into chunks
//! where the fuzzer says, on every version, with a small frame limit and with the default.
//!
//! Input: a version byte, a mode byte (bit 0: bare frames; bit 1: small limit), a cut count
//! byte and that many cut bytes (each the length of the next chunk), then the stream's bytes.
//! Checked besides "no panic": payload slices add up to each frame's size, and the events are
//! the same however the stream was cut (each chunking against the whole stream in one push).

#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use moq_relay::lite::{GroupEvent, GroupReader, MAX_FRAME_SIZE};
use moq_relay_fuzz::{Input, split, version};

/// What a reader made of a stream: headers and frames (payload joined), whether it failed,
/// and what `finish` said.
#[derive(Debug, PartialEq)]
struct Outcome {
    events: Vec<GroupEvent>,
    failed: bool,
    finished: bool,
}

fn read(mut reader: GroupReader, wire: &Bytes, cuts: &[u8], max_frame: u64) -> Outcome {
    let mut events = Vec::new();
    let mut frame: Option<(u64, u64, BytesMut)> = None;
    for piece in split(wire, cuts) {
        let start = piece.as_ptr() as usize - wire.as_ptr() as usize;
        reader.push(wire.slice(start..start + piece.len()));
        loop {
            match reader.poll() {
                Ok(Some(GroupEvent::Header(h))) => {
                    assert!(events.is_empty() && frame.is_none(), "a late header");
                    events.push(GroupEvent::Header(h));
                }
                Ok(Some(GroupEvent::Frame { size, timestamp })) => {
                    assert!(frame.is_none(), "a frame inside a frame");
                    assert!(size <= max_frame, "{size} over {max_frame}");
                    frame = Some((size, timestamp, BytesMut::new()));
                }
                Ok(Some(GroupEvent::Payload(p))) => {
                    let (size, _, got) = frame.as_mut().expect("payload outside a frame");
                    assert!(!p.is_empty(), "an empty payload slice");
                    got.extend_from_slice(&p);
                    assert!(got.len() as u64 <= *size, "payload past the frame's size");
                }
                Ok(Some(GroupEvent::FrameEnd)) => {
                    let (size, timestamp, got) = frame.take().expect("an end outside a frame");
                    assert_eq!(got.len() as u64, size, "frame ended early");
                    events.push(GroupEvent::Frame { size, timestamp });
                    events.push(GroupEvent::Payload(got.freeze()));
                }
                Ok(None) => break,
                Err(_) => {
                    return Outcome {
                        events,
                        failed: true,
                        finished: false,
                    };
                }
            }
        }
    }
    Outcome {
        events,
        failed: false,
        finished: reader.finish().is_ok(),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let v = version(input.u8());
    let mode = input.u8();
    let max_frame = if mode & 2 != 0 { 16 } else { MAX_FRAME_SIZE };
    let cuts = input.chunk();
    let wire = Bytes::copy_from_slice(input.rest());
    let reader = || match mode & 1 {
        0 => GroupReader::new(v, max_frame),
        _ => GroupReader::frames(v, max_frame),
    };
    let cut = read(reader(), &wire, cuts, max_frame);
    let whole = read(reader(), &wire, &[], max_frame);
    assert_eq!(cut, whole, "{v:?}: chunking changed the outcome");
});
