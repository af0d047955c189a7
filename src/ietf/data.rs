//! Subgroup streams: the SUBGROUP_HEADER and the objects after it, read incrementally with
//! payloads handed on as the received `Bytes`, and written with a header per object in front
//! of the same payload `Bytes`.

use std::collections::VecDeque;

use bytes::{Buf, Bytes};

use super::coding::{Reader, Writer};
use super::{DecodeError, EncodeError, Version};

/// FETCH_HEADER, the type of a uni stream that carries a fetch's objects.
pub const FETCH_HEADER: u64 = 0x05;
/// A uni stream of zero bytes (18+).
pub const PADDING: u64 = 0x132b_3e28;

/// Object status codes.
pub mod status {
    pub const NORMAL: u64 = 0x0;
    pub const DOES_NOT_EXIST: u64 = 0x1;
    pub const END_OF_GROUP: u64 = 0x3;
    pub const END_OF_TRACK: u64 = 0x4;
}

/// Whether `kind` is a SUBGROUP_HEADER type in `v`.
pub fn is_subgroup(kind: u64, v: Version) -> bool {
    let mask = if v >= Version::Draft18 { 0x90 } else { 0xd0 };
    kind < 0x80
        && kind & mask == 0x10
        && kind & 0x06 != 0x06
        && (v >= Version::Draft15 || kind & 0x20 == 0)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubgroupHeader {
    pub kind: u64,
    pub alias: u64,
    pub group: u64,
    /// Present when the type says it is explicit.
    pub subgroup: Option<u64>,
    /// Absent when the type says the subscription's default applies.
    pub priority: Option<u8>,
}

impl SubgroupHeader {
    fn properties(&self) -> bool {
        self.kind & 0x01 != 0
    }

    /// The header a relay writes: subgroup 0, the priority given, END_OF_GROUP (the FIN ends
    /// the group), no object properties, and on 18+ FIRST_OBJECT (it starts at object 0).
    pub fn ours(version: Version, alias: u64, group: u64, priority: u8) -> Self {
        let first = if version >= Version::Draft18 { 0x40 } else { 0 };
        Self {
            kind: 0x18 | first,
            alias,
            group,
            subgroup: None,
            priority: Some(priority),
        }
    }

    pub fn encode(&self, v: Version, buf: &mut Vec<u8>) -> Result<(), EncodeError> {
        let mut w = Writer::new(buf, v);
        w.varint(self.kind)?;
        w.varint(self.alias)?;
        w.varint(self.group)?;
        if let Some(s) = self.subgroup {
            w.varint(s)?;
        }
        if let Some(p) = self.priority {
            w.u8(p);
        }
        Ok(())
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let v = r.version;
        let kind = r.varint()?;
        if !is_subgroup(kind, v) {
            return Err(DecodeError::UnexpectedStream(kind));
        }
        let alias = r.varint()?;
        let group = r.varint()?;
        let subgroup = if kind & 0x06 == 0x04 {
            Some(r.varint()?)
        } else {
            None
        };
        let priority = if kind & 0x20 == 0 || v < Version::Draft15 {
            Some(r.u8()?)
        } else {
            None
        };
        Ok(Self {
            kind,
            alias,
            group,
            subgroup,
            priority,
        })
    }
}

/// The header of one object, in front of its payload.
pub fn encode_object(v: Version, size: u64, buf: &mut Vec<u8>) -> Result<(), EncodeError> {
    let mut w = Writer::new(buf, v);
    // Object ids go 0, 1, 2...: a delta of 0 each.
    w.varint(0)?;
    w.varint(size)?;
    if size == 0 {
        w.varint(status::NORMAL)?;
    }
    Ok(())
}

/// The FETCH_HEADER that starts the uni stream of a fetch's objects.
pub fn encode_fetch_header(
    v: Version,
    request_id: u64,
    buf: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let mut w = Writer::new(buf, v);
    w.varint(FETCH_HEADER)?;
    w.varint(request_id)
}

/// One object of a fetch (16+): the first names its group, object and priority (on 18+ the
/// first object's deltas are the absolute values, so the bytes are the same); the ones after
/// it follow on in the same group and subgroup 0, with the next object id and the same
/// priority, which serialization flags 0 say.
pub fn encode_fetch_object(
    v: Version,
    first: Option<(u64, u64, u8)>,
    size: u64,
    buf: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let mut w = Writer::new(buf, v);
    match first {
        Some((group, object, priority)) => {
            // Group, object id and priority present; subgroup 0.
            w.varint(0x08 | 0x04 | 0x10)?;
            w.varint(group)?;
            w.varint(object)?;
            w.u8(priority);
        }
        None => w.varint(0)?,
    }
    w.varint(size)
}

/// What a subgroup stream holds, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubgroupEvent {
    Header(SubgroupHeader),
    /// An object begins: its payload follows in `Payload`s, then `ObjectEnd`. An object with
    /// a status other than Normal has no payload and no `ObjectEnd`: it ends nothing here.
    Object {
        id: u64,
        size: u64,
        status: u64,
    },
    Payload(Bytes),
    ObjectEnd,
}

enum Stage {
    Header,
    /// The object's id delta and properties length.
    ObjectHead,
    /// Properties of this many bytes to skip, then the rest of the head.
    Properties(u64),
    /// The payload length and the status of an empty object.
    ObjectTail,
    Payload(u64),
}

/// Reads a subgroup stream as bytes arrive.
pub struct SubgroupReader {
    version: Version,
    queue: VecDeque<Bytes>,
    queued: usize,
    stage: Stage,
    header: Option<SubgroupHeader>,
    id: Option<u64>,
    max_object: u64,
}

/// The longest run of integers parsed at once (a header: five integers and a byte).
const SCRATCH: usize = 48;

impl SubgroupReader {
    pub fn new(version: Version, max_object: u64) -> Self {
        Self {
            version,
            queue: VecDeque::new(),
            queued: 0,
            stage: Stage::Header,
            header: None,
            id: None,
            max_object,
        }
    }

    pub fn push(&mut self, b: Bytes) {
        if !b.is_empty() {
            self.queued += b.len();
            self.queue.push_back(b);
        }
    }

    /// Bytes received and not yet handed out.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Parse from a contiguous copy of the first bytes; `None` while they are not all there.
    fn parse<T>(
        &mut self,
        f: impl FnOnce(&mut Reader<'_>) -> Result<T, DecodeError>,
    ) -> Result<Option<T>, DecodeError> {
        let mut scratch = [0u8; SCRATCH];
        let mut n = 0;
        for b in &self.queue {
            let take = (SCRATCH - n).min(b.len());
            scratch[n..n + take].copy_from_slice(&b[..take]);
            n += take;
            if n == SCRATCH {
                break;
            }
        }
        let mut r = Reader::new(&scratch[..n], self.version);
        match f(&mut r) {
            Ok(v) => {
                let used = n - r.remaining();
                self.skip(used as u64);
                Ok(Some(v))
            }
            Err(DecodeError::Short) if n < SCRATCH => Ok(None),
            Err(DecodeError::Short) => Err(DecodeError::InvalidValue),
            Err(e) => Err(e),
        }
    }

    /// Drop `n` queued bytes (at most what is queued); returns how many went.
    fn skip(&mut self, mut n: u64) -> u64 {
        let mut gone = 0;
        while n > 0 {
            let Some(front) = self.queue.front_mut() else {
                break;
            };
            let take = (front.len() as u64).min(n) as usize;
            front.advance(take);
            if front.is_empty() {
                self.queue.pop_front();
            }
            n -= take as u64;
            gone += take as u64;
        }
        self.queued -= gone as usize;
        gone
    }

    /// The next event, or `None` until more bytes come.
    pub fn poll(&mut self) -> Result<Option<SubgroupEvent>, DecodeError> {
        loop {
            match self.stage {
                Stage::Header => {
                    let Some(h) = self.parse(SubgroupHeader::decode)? else {
                        return Ok(None);
                    };
                    self.header = Some(h);
                    self.stage = Stage::ObjectHead;
                    return Ok(Some(SubgroupEvent::Header(h)));
                }
                Stage::ObjectHead => {
                    if self.queued == 0 {
                        return Ok(None);
                    }
                    let props = self.header.is_some_and(|h| h.properties());
                    let Some((delta, plen)) = self.parse(|r| {
                        let delta = r.varint()?;
                        let plen = if props { r.varint()? } else { 0 };
                        Ok((delta, plen))
                    })?
                    else {
                        return Ok(None);
                    };
                    let id = match self.id {
                        None => delta,
                        Some(prev) => prev
                            .checked_add(delta)
                            .and_then(|x| x.checked_add(1))
                            .ok_or(DecodeError::InvalidValue)?,
                    };
                    self.id = Some(id);
                    if plen > u16::MAX as u64 {
                        return Err(DecodeError::TooLarge);
                    }
                    self.stage = Stage::Properties(plen);
                }
                Stage::Properties(left) => {
                    let gone = self.skip(left);
                    if gone < left {
                        self.stage = Stage::Properties(left - gone);
                        return Ok(None);
                    }
                    self.stage = Stage::ObjectTail;
                }
                Stage::ObjectTail => {
                    let Some((size, status)) = self.parse(|r| {
                        let size = r.varint()?;
                        let status = if size == 0 {
                            r.varint()?
                        } else {
                            status::NORMAL
                        };
                        Ok((size, status))
                    })?
                    else {
                        return Ok(None);
                    };
                    if size > self.max_object {
                        return Err(DecodeError::FrameTooLarge);
                    }
                    let id = self.id.unwrap_or(0);
                    self.stage = if status == status::NORMAL {
                        Stage::Payload(size)
                    } else {
                        Stage::ObjectHead
                    };
                    return Ok(Some(SubgroupEvent::Object { id, size, status }));
                }
                Stage::Payload(0) => {
                    self.stage = Stage::ObjectHead;
                    return Ok(Some(SubgroupEvent::ObjectEnd));
                }
                Stage::Payload(left) => {
                    let Some(front) = self.queue.front_mut() else {
                        return Ok(None);
                    };
                    let take = (front.len() as u64).min(left) as usize;
                    let chunk = front.split_to(take);
                    if front.is_empty() {
                        self.queue.pop_front();
                    }
                    self.queued -= take;
                    self.stage = Stage::Payload(left - take as u64);
                    return Ok(Some(SubgroupEvent::Payload(chunk)));
                }
            }
        }
    }

    /// The stream ended: it must end between objects.
    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.stage {
            Stage::ObjectHead if self.queued == 0 => Ok(()),
            _ => Err(DecodeError::Short),
        }
    }
}
