//! IETF moq-transport: the control message decoder and the subgroup stream reader, on every
//! draft.
//!
//! Input: a draft byte, a max-size byte, a cut count, then the wire bytes. Each message that
//! decodes must encode again (or be one we never send), and what that encodes to must decode
//! and encode to the same bytes; the subgroup reader must hand out each payload byte once,
//! however the bytes are cut; nothing may panic.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use moq_relay::ietf::data::{SubgroupEvent, SubgroupReader};
use moq_relay::ietf::message::Message;
use moq_relay::ietf::{EncodeError, Version};
use moq_relay_fuzz::{Input, split};

fn messages(buf: &[u8], v: Version, max: usize) {
    let mut at = 0;
    while let Ok(Some((msg, used))) = Message::decode(&buf[at..], v, max) {
        assert!(used > 0 && used <= buf.len() - at);
        at += used;
        let mut once = Vec::new();
        match msg.encode(v, &mut once) {
            Ok(()) => {
                let (again, n) = Message::decode(&once, v, usize::MAX)
                    .expect("our encoding decodes")
                    .expect("whole");
                assert_eq!(n, once.len());
                let mut twice = Vec::new();
                again.encode(v, &mut twice).expect("encodes again");
                assert_eq!(once, twice, "{msg:?} on {v:?}");
            }
            // A value past a field's bounds (a reason cut to UTF-8 grows, say).
            Err(e) => assert_eq!(e, EncodeError::BoundsExceeded, "{msg:?} on {v:?}"),
        }
    }
}

fn subgroup(buf: &[u8], cuts: &[u8], v: Version) {
    let mut r = SubgroupReader::new(v, 1 << 16);
    let mut payload = 0usize;
    for chunk in split(buf, cuts) {
        r.push(Bytes::copy_from_slice(chunk));
        loop {
            match r.poll() {
                Ok(Some(SubgroupEvent::Payload(b))) => {
                    assert!(!b.is_empty());
                    payload += b.len();
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
    }
    assert!(payload <= buf.len());
    let _ = r.finish();
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let v = Version::ALL[usize::from(input.u8()) % Version::ALL.len()];
    let max = match input.u8() {
        0 => usize::MAX,
        n => usize::from(n),
    };
    let n = usize::from(input.u8() % 16);
    let cuts = input.take(n).to_vec();
    let buf = input.rest();
    messages(buf, v, max);
    subgroup(buf, &cuts, v);
});
