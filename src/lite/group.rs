//! Group streams (§5.3): `Stream Type | GROUP | FRAME… | FIN`, the data path.
//!
//! Payload never passes through a buffer here: [`GroupReader`] hands out slices of the
//! received `Bytes` and [`GroupWriter`] produces only header bytes, so a relay forwards the very
//! chunks it received. Only a header split across chunks is copied, into a small stack buffer.

use std::collections::VecDeque;

use bytes::{Buf, BufMut, Bytes};

use super::coding::{MAX_VARINT, Message, Read, Write, ZIGZAG_MAX, ZIGZAG_MIN};
use super::coding::{decode_framed, incomplete, varint_len, zigzag_decode, zigzag_encode};
use super::{DataType, DecodeError, EncodeError, Version};

/// The reference's cap on one frame (`FrameTooLarge` beyond it), a sane `max_frame_size`.
pub const MAX_FRAME_SIZE: u64 = 32 << 20;

/// A GROUP body is two varints, so a longer Length can only be malformed.
const MAX_GROUP_HEADER: usize = 16;

/// The longest header either state can need: an 8-byte Length plus a 16-byte GROUP body.
const MAX_HEADER: usize = 24;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupHeader {
    /// The receiver's id from its SUBSCRIBE on this session.
    pub subscribe_id: u64,
    /// Absolute; preserved end to end by relays.
    pub sequence: u64,
}

impl Message for GroupHeader {
    /// Written directly rather than through a scratch body: this runs once per group for every
    /// subscriber.
    fn encode(&self, _: Version, buf: &mut impl BufMut) -> Result<(), EncodeError> {
        if self.subscribe_id.max(self.sequence) > MAX_VARINT {
            return Err(EncodeError::BoundsExceeded);
        }
        let len = varint_len(self.subscribe_id) + varint_len(self.sequence);
        buf.varint(len as u64)?;
        buf.varint(self.subscribe_id)?;
        buf.varint(self.sequence)
    }

    fn encode_body(&self, _: Version, buf: &mut Vec<u8>) -> Result<(), EncodeError> {
        buf.varint(self.subscribe_id)?;
        buf.varint(self.sequence)
    }

    fn decode_body(_: u64, buf: &mut &[u8], _: Version) -> Result<Self, DecodeError> {
        Ok(Self {
            subscribe_id: buf.varint()?,
            sequence: buf.varint()?,
        })
    }
}

/// A FRAME header as it is on the wire; the payload follows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameHeader {
    /// lite-05: signed change from the previous frame's timestamp in this group (baseline 0).
    pub timestamp_delta: i64,
    pub size: u64,
}

impl FrameHeader {
    pub fn encode(&self, version: Version, buf: &mut impl BufMut) -> Result<(), EncodeError> {
        if version.has_setup_stream() {
            if !(ZIGZAG_MIN..=ZIGZAG_MAX).contains(&self.timestamp_delta) {
                return Err(EncodeError::BoundsExceeded);
            }
            buf.varint(zigzag_encode(self.timestamp_delta))?;
        }
        buf.varint(self.size)
    }

    /// Not size-prefixed, so `Short` just means the header is not all here yet.
    pub fn decode(buf: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        let timestamp_delta = match version.has_setup_stream() {
            true => zigzag_decode(buf.varint()?),
            false => 0,
        };
        Ok(Self {
            timestamp_delta,
            size: buf.varint()?,
        })
    }
}

/// What a group stream yields, in order: one `Header`, then for each frame one `Frame`, its
/// `Payload` chunks and `FrameEnd`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupEvent {
    Header(GroupHeader),
    Frame {
        size: u64,
        /// Absolute, in the track's timescale (lite-05); 0 on older versions.
        timestamp: u64,
    },
    /// A slice of a pushed chunk; together a frame's chunks are exactly `size` bytes.
    Payload(Bytes),
    FrameEnd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Header,
    Frame,
    Payload(u64),
}

/// Incremental group-stream decoder. Feed it what the transport delivers after the stream type
/// and drain [`GroupReader::poll`] after each push; at FIN call [`GroupReader::finish`].
#[derive(Debug)]
pub struct GroupReader {
    version: Version,
    max_frame_size: u64,
    state: State,
    /// Received bytes not yet handed out. Drained by `poll`, so between pushes it holds at most
    /// one partial header.
    chunks: VecDeque<Bytes>,
    /// The previous frame's absolute timestamp (lite-05).
    timestamp: u64,
}

impl GroupReader {
    /// A reader for a group stream, starting at the GROUP header. Frames declaring more than
    /// `max_frame_size` bytes fail before any of their payload is waited for.
    pub fn new(version: Version, max_frame_size: u64) -> Self {
        Self {
            version,
            max_frame_size,
            state: State::Header,
            chunks: VecDeque::new(),
            timestamp: 0,
        }
    }

    /// A reader for bare frames with no GROUP header: the answer on a Fetch stream.
    pub fn frames(version: Version, max_frame_size: u64) -> Self {
        Self {
            state: State::Frame,
            ..Self::new(version, max_frame_size)
        }
    }

    pub fn push(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.chunks.push_back(chunk);
        }
    }

    /// The next event, or `None` until more bytes are pushed.
    pub fn poll(&mut self) -> Result<Option<GroupEvent>, DecodeError> {
        match self.state {
            State::Header => {
                let parse =
                    |buf: &[u8]| decode_framed::<GroupHeader>(buf, self.version, MAX_GROUP_HEADER);
                let Some((header, used)) = self.peek(parse)? else {
                    return Ok(None);
                };
                self.consume(used);
                self.state = State::Frame;
                Ok(Some(GroupEvent::Header(header)))
            }
            State::Frame => {
                let Some((header, used)) = self.peek_frame()? else {
                    return Ok(None);
                };
                if header.size > self.max_frame_size {
                    return Err(DecodeError::FrameTooLarge);
                }
                let timestamp = self.timestamp as i64 + header.timestamp_delta;
                if !(0..=MAX_VARINT as i64).contains(&timestamp) {
                    return Err(DecodeError::InvalidValue);
                }
                self.consume(used);
                self.timestamp = timestamp as u64;
                self.state = State::Payload(header.size);
                Ok(Some(GroupEvent::Frame {
                    size: header.size,
                    timestamp: self.timestamp,
                }))
            }
            State::Payload(0) => {
                self.state = State::Frame;
                Ok(Some(GroupEvent::FrameEnd))
            }
            State::Payload(remaining) => {
                let Some(front) = self.chunks.front_mut() else {
                    return Ok(None);
                };
                let take = remaining.min(front.len() as u64) as usize;
                let payload = front.split_to(take);
                if front.is_empty() {
                    self.chunks.pop_front();
                }
                self.state = State::Payload(remaining - take as u64);
                Ok(Some(GroupEvent::Payload(payload)))
            }
        }
    }

    /// Checks that the stream ended cleanly: after the header and on a frame boundary. Call it
    /// at FIN, once `poll` has returned `None`.
    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.state {
            State::Payload(remaining) if remaining > 0 => Err(DecodeError::WrongSize),
            State::Header => Err(DecodeError::Short),
            _ if !self.chunks.is_empty() => Err(DecodeError::Short),
            _ => Ok(()),
        }
    }

    fn peek_frame(&self) -> Result<Option<(FrameHeader, usize)>, DecodeError> {
        self.peek(|buf| {
            let mut rest = buf;
            let header = incomplete(FrameHeader::decode(&mut rest, self.version))?;
            Ok(header.map(|h| (h, buf.len() - rest.len())))
        })
    }

    /// Runs `parse` on the unread bytes, returning what it parsed and how many bytes it used.
    ///
    /// Headers almost always sit inside one chunk and are parsed in place; otherwise up to
    /// `MAX_HEADER` bytes are gathered across chunks, which is enough for any valid header.
    fn peek<T>(
        &self,
        parse: impl Fn(&[u8]) -> Result<Option<(T, usize)>, DecodeError>,
    ) -> Result<Option<(T, usize)>, DecodeError> {
        let Some(front) = self.chunks.front() else {
            return Ok(None);
        };
        if let Some(found) = parse(front)? {
            return Ok(Some(found));
        }
        if self.chunks.len() == 1 {
            return Ok(None);
        }
        let mut scratch = [0u8; MAX_HEADER];
        let mut len = 0;
        for chunk in &self.chunks {
            let take = chunk.len().min(MAX_HEADER - len);
            scratch[len..len + take].copy_from_slice(&chunk[..take]);
            len += take;
            if len == MAX_HEADER {
                break;
            }
        }
        parse(&scratch[..len])
    }

    fn consume(&mut self, mut used: usize) {
        while used > 0
            && let Some(front) = self.chunks.front_mut()
        {
            let take = used.min(front.len());
            front.advance(take);
            used -= take;
            if front.is_empty() {
                self.chunks.pop_front();
            }
        }
    }
}

/// Encodes the header bytes of a group stream; the caller writes each payload after its frame
/// header. Tracks the previous timestamp to produce lite-05 deltas.
#[derive(Debug)]
pub struct GroupWriter {
    version: Version,
    timestamp: u64,
}

impl GroupWriter {
    /// For a Fetch answer, skip [`GroupWriter::header`] and write frames only.
    pub fn new(version: Version) -> Self {
        Self {
            version,
            timestamp: 0,
        }
    }

    /// The stream type and GROUP header that open a group stream.
    pub fn header(&self, header: &GroupHeader, buf: &mut impl BufMut) -> Result<(), EncodeError> {
        DataType::Group.encode(self.version, buf)?;
        header.encode(self.version, buf)
    }

    /// A frame header; `timestamp` is absolute in the track's timescale and ignored before
    /// lite-05.
    pub fn frame(
        &mut self,
        size: u64,
        timestamp: u64,
        buf: &mut impl BufMut,
    ) -> Result<(), EncodeError> {
        let timestamp_delta = match self.version.has_setup_stream() {
            true if timestamp > MAX_VARINT => return Err(EncodeError::BoundsExceeded),
            true => timestamp as i64 - self.timestamp as i64,
            false => 0,
        };
        FrameHeader {
            timestamp_delta,
            size,
        }
        .encode(self.version, buf)?;
        if self.version.has_setup_stream() {
            self.timestamp = timestamp;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lite::coding::tests::{check, hex};
    use Version::*;

    /// The §11 group stream: "hi" then "there", at 1000 and 1033 on lite-05.
    const LITE02_GROUP: &str = "00 02 00 00 02 68 69 05 74 68 65 72 65";
    const LITE05_GROUP: &str = "00 02 00 00 47 d0 02 68 69 40 42 05 74 68 65 72 65";

    #[derive(Debug, PartialEq)]
    struct Frame {
        size: u64,
        timestamp: u64,
        payload: Vec<u8>,
    }

    /// Feeds `chunks` one by one, draining after each, and reassembles the frames. Also checks
    /// that every payload slice points into the chunk it arrived in.
    fn read(
        mut reader: GroupReader,
        chunks: &[Bytes],
    ) -> Result<(Option<GroupHeader>, Vec<Frame>), DecodeError> {
        let mut header = None;
        let mut frames: Vec<Frame> = Vec::new();
        let mut open = false;
        for chunk in chunks {
            reader.push(chunk.clone());
            while let Some(event) = reader.poll()? {
                match event {
                    GroupEvent::Header(h) => header = Some(h),
                    GroupEvent::Frame { size, timestamp } => {
                        assert!(!open);
                        open = true;
                        frames.push(Frame {
                            size,
                            timestamp,
                            payload: Vec::new(),
                        });
                    }
                    GroupEvent::Payload(data) => {
                        assert!(open && !data.is_empty());
                        let range = chunk.as_ptr_range();
                        assert!(
                            range.contains(&data.as_ptr()),
                            "payload is not a slice of its chunk"
                        );
                        assert!(data.as_ptr_range().end <= range.end);
                        frames.last_mut().unwrap().payload.extend_from_slice(&data);
                    }
                    GroupEvent::FrameEnd => {
                        let frame = frames.last().unwrap();
                        assert_eq!(frame.payload.len() as u64, frame.size);
                        open = false;
                    }
                }
            }
        }
        reader.finish()?;
        Ok((header, frames))
    }

    fn expected(timestamps: [u64; 2]) -> (Option<GroupHeader>, Vec<Frame>) {
        let header = GroupHeader {
            subscribe_id: 0,
            sequence: 0,
        };
        let frames = vec![
            Frame {
                size: 2,
                timestamp: timestamps[0],
                payload: b"hi".to_vec(),
            },
            Frame {
                size: 5,
                timestamp: timestamps[1],
                payload: b"there".to_vec(),
            },
        ];
        (Some(header), frames)
    }

    fn split(wire: &Bytes, cuts: &[usize]) -> Vec<Bytes> {
        let mut bounds = vec![0];
        bounds.extend_from_slice(cuts);
        bounds.push(wire.len());
        bounds.windows(2).map(|w| wire.slice(w[0]..w[1])).collect()
    }

    /// The stream after its type byte, checking the type on the way.
    fn body(wire: &str, version: Version) -> Bytes {
        let wire = Bytes::from(hex(wire));
        assert_eq!(
            DataType::decode(&mut &wire[..], version),
            Ok(DataType::Group)
        );
        wire.slice(1..)
    }

    #[test]
    fn spec_group_streams_every_split() {
        let cases = [
            (Lite01, LITE02_GROUP, [0, 0]),
            (Lite02, LITE02_GROUP, [0, 0]),
            (Lite03, LITE02_GROUP, [0, 0]),
            (Lite04, LITE02_GROUP, [0, 0]),
            (Lite05, LITE05_GROUP, [1000, 1033]),
        ];
        for (version, wire, timestamps) in cases {
            let stream = body(wire, version);
            let want = expected(timestamps);
            for i in 0..=stream.len() {
                for j in i..=stream.len() {
                    let chunks = split(&stream, &[i, j]);
                    let got = read(GroupReader::new(version, 1024), &chunks).unwrap();
                    assert_eq!(got, want, "{version:?} split at {i}, {j}");
                }
            }
            let bytewise: Vec<usize> = (1..stream.len()).collect();
            let got = read(GroupReader::new(version, 1024), &split(&stream, &bytewise)).unwrap();
            assert_eq!(got, want);
        }
    }

    #[test]
    fn payload_inside_one_chunk_is_one_slice() {
        let stream = body(LITE05_GROUP, Lite05);
        let mut reader = GroupReader::new(Lite05, 1024);
        reader.push(stream.clone());
        let events: Vec<GroupEvent> = std::iter::from_fn(|| reader.poll().unwrap()).collect();
        let payloads: Vec<&Bytes> = events
            .iter()
            .filter_map(|e| match e {
                GroupEvent::Payload(b) => Some(b),
                _ => None,
            })
            .collect();
        assert_eq!(payloads.len(), 2);
        assert_eq!(payloads[0].as_ptr(), stream[6..].as_ptr());
        assert_eq!(payloads[1].as_ptr(), stream[11..].as_ptr());
        assert_eq!(events.len(), 7);
    }

    #[test]
    fn writer_reproduces_spec_bytes() {
        for (version, wire, timestamps) in [
            (Lite02, LITE02_GROUP, [0, 0]),
            (Lite05, LITE05_GROUP, [1000, 1033]),
        ] {
            let mut writer = GroupWriter::new(version);
            let mut out = Vec::new();
            writer
                .header(
                    &GroupHeader {
                        subscribe_id: 0,
                        sequence: 0,
                    },
                    &mut out,
                )
                .unwrap();
            for (payload, ts) in [(&b"hi"[..], timestamps[0]), (b"there", timestamps[1])] {
                writer.frame(payload.len() as u64, ts, &mut out).unwrap();
                out.extend_from_slice(payload);
            }
            assert_eq!(out, hex(wire));
        }
    }

    #[test]
    fn writer_and_reader_agree_on_timestamps() {
        let timestamps = [5, 0, 1 << 40, 3, (1 << 61) - 1];
        let mut writer = GroupWriter::new(Lite05);
        let mut out = Vec::new();
        for ts in timestamps {
            writer.frame(1, ts, &mut out).unwrap();
            out.push(0);
            // A step beyond the zigzag range fails and leaves the baseline alone.
            let far = writer.frame(1, MAX_VARINT, &mut Vec::new());
            assert_eq!(far, Err(EncodeError::BoundsExceeded));
        }
        let mut reader = GroupReader::frames(Lite05, 10);
        reader.push(Bytes::from(out));
        let mut seen = Vec::new();
        while let Some(event) = reader.poll().unwrap() {
            if let GroupEvent::Frame { timestamp, .. } = event {
                seen.push(timestamp);
            }
        }
        reader.finish().unwrap();
        assert_eq!(seen, timestamps);
        let beyond = GroupWriter::new(Lite05).frame(0, MAX_VARINT + 1, &mut Vec::new());
        assert_eq!(beyond, Err(EncodeError::BoundsExceeded));
        // Older versions have no timestamps at all.
        let mut out = Vec::new();
        GroupWriter::new(Lite04).frame(3, 1000, &mut out).unwrap();
        assert_eq!(out, [3]);
    }

    #[test]
    fn group_header_encoding() {
        for v in Version::ALL {
            check(
                &GroupHeader {
                    subscribe_id: 0,
                    sequence: 0,
                },
                v,
                "02 00 00",
            );
            check(
                &GroupHeader {
                    subscribe_id: 1 << 20,
                    sequence: 70,
                },
                v,
                "06 80 10 00 00 40 46",
            );
        }
        let huge = GroupHeader {
            subscribe_id: 0,
            sequence: MAX_VARINT + 1,
        };
        let mut out = Vec::new();
        assert_eq!(
            huge.encode(Lite05, &mut out),
            Err(EncodeError::BoundsExceeded)
        );
        assert!(out.is_empty());
    }

    #[test]
    fn oversize_frame_rejected_before_payload() {
        let mut reader = GroupReader::new(Lite02, 100);
        reader.push(Bytes::from(hex("02 00 07 40 65")));
        assert!(matches!(reader.poll(), Ok(Some(GroupEvent::Header(_)))));
        assert_eq!(reader.poll(), Err(DecodeError::FrameTooLarge));
        let mut reader = GroupReader::frames(Lite05, 100);
        reader.push(Bytes::from(hex("00 40 64")));
        assert!(matches!(
            reader.poll(),
            Ok(Some(GroupEvent::Frame { size: 100, .. }))
        ));
    }

    #[test]
    fn bad_group_headers() {
        let poll = |wire: &str| {
            let mut reader = GroupReader::new(Lite03, 100);
            reader.push(Bytes::from(hex(wire)));
            reader.poll()
        };
        assert_eq!(poll("11"), Err(DecodeError::TooLarge));
        assert_eq!(poll("c0 00 00 00 00 00 00 11"), Err(DecodeError::TooLarge));
        assert_eq!(poll("03 00 00 00"), Err(DecodeError::BodyLong));
        assert_eq!(poll("01 00"), Err(DecodeError::BodyShort));
        // Non-minimal but valid: the longest header there is.
        let max = "c0 00 00 00 00 00 00 10 c0 00 00 00 00 00 00 01 c0 00 00 00 00 00 00 02";
        let want = GroupEvent::Header(GroupHeader {
            subscribe_id: 1,
            sequence: 2,
        });
        assert_eq!(poll(max), Ok(Some(want.clone())));
        let wire = Bytes::from(hex(max));
        let mut reader = GroupReader::new(Lite03, 100);
        for b in split(&wire, &(1..wire.len()).collect::<Vec<_>>()) {
            assert_eq!(reader.poll(), Ok(None));
            reader.push(b);
        }
        assert_eq!(reader.poll(), Ok(Some(want)));
    }

    #[test]
    fn fin_checks() {
        let finish = |version, wire: &str| {
            let mut reader = GroupReader::new(version, 100);
            reader.push(Bytes::from(hex(wire)));
            while reader.poll()?.is_some() {}
            reader.finish()
        };
        assert_eq!(finish(Lite02, ""), Err(DecodeError::Short));
        assert_eq!(finish(Lite02, "02 00"), Err(DecodeError::Short));
        assert_eq!(finish(Lite02, "02 00 00"), Ok(()));
        assert_eq!(finish(Lite02, "02 00 00 00"), Ok(()));
        assert_eq!(
            finish(Lite02, "02 00 00 05 74 68"),
            Err(DecodeError::WrongSize)
        );
        assert_eq!(finish(Lite02, "02 00 00 40"), Err(DecodeError::Short));
        assert_eq!(finish(Lite05, "02 00 00 47 d0"), Err(DecodeError::Short));
        assert_eq!(finish(Lite05, "02 00 00 47 d0 00"), Ok(()));
        // A first delta below zero would make the timestamp negative.
        assert_eq!(
            finish(Lite05, "02 00 00 01 00"),
            Err(DecodeError::InvalidValue)
        );
    }

    #[test]
    fn empty_frames_and_groups() {
        let mut reader = GroupReader::new(Lite04, 100);
        reader.push(Bytes::from(hex("02 03 09 00 00")));
        let events: Vec<GroupEvent> = std::iter::from_fn(|| reader.poll().unwrap()).collect();
        let frame = GroupEvent::Frame {
            size: 0,
            timestamp: 0,
        };
        let header = GroupEvent::Header(GroupHeader {
            subscribe_id: 3,
            sequence: 9,
        });
        assert_eq!(
            events,
            [
                header,
                frame.clone(),
                GroupEvent::FrameEnd,
                frame,
                GroupEvent::FrameEnd
            ]
        );
        reader.finish().unwrap();
        reader.push(Bytes::new());
        assert_eq!(reader.poll(), Ok(None));
    }

    #[test]
    fn large_payload_over_many_chunks() {
        let payload: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let mut writer = GroupWriter::new(Lite05);
        let mut wire = Vec::new();
        writer
            .header(
                &GroupHeader {
                    subscribe_id: 1,
                    sequence: 1 << 30,
                },
                &mut wire,
            )
            .unwrap();
        writer
            .frame(payload.len() as u64, 90_000, &mut wire)
            .unwrap();
        wire.extend_from_slice(&payload);
        let wire = Bytes::from(wire).slice(1..);
        let cuts: Vec<usize> = (1..wire.len()).step_by(777).collect();
        let (header, frames) =
            read(GroupReader::new(Lite05, 10_000), &split(&wire, &cuts)).unwrap();
        assert_eq!(header.unwrap().sequence, 1 << 30);
        assert_eq!(
            frames,
            [Frame {
                size: 10_000,
                timestamp: 90_000,
                payload
            }]
        );
        let r = read(GroupReader::new(Lite05, 9_999), std::slice::from_ref(&wire));
        assert!(read(GroupReader::new(Lite05, MAX_FRAME_SIZE), &[wire]).is_ok());
        assert_eq!(r.unwrap_err(), DecodeError::FrameTooLarge);
    }
}
