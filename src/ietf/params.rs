//! Parameters: the Key-Value-Pairs of setup (every draft) and of messages (14-16), the typed
//! Message Parameters of 17+, and the track properties that end some messages.
//!
//! Only the parameters a relay acts on are kept as fields; on 14-16 and in setup the rest are
//! skipped by the even/odd rule. On 17+ a message parameter's value encoding depends on its
//! type, so an unknown type cannot be skipped and fails the message.

use super::coding::{Reader, Writer};
use super::{DecodeError, EncodeError, Version};

/// Setup parameters (options on 17+).
pub mod setup {
    pub const PATH: u64 = 0x01;
    pub const MAX_REQUEST_ID: u64 = 0x02;
    pub const AUTHORIZATION_TOKEN: u64 = 0x03;
    pub const AUTHORITY: u64 = 0x05;
    pub const MOQT_IMPLEMENTATION: u64 = 0x07;
}

/// Message parameter types.
pub mod kind {
    pub const DELIVERY_TIMEOUT: u64 = 0x02;
    pub const AUTHORIZATION_TOKEN: u64 = 0x03;
    /// MAX_CACHE_DURATION on 14-15, RENDEZVOUS_TIMEOUT on 17+.
    pub const CACHE_OR_RENDEZVOUS: u64 = 0x04;
    pub const SUBGROUP_DELIVERY_TIMEOUT: u64 = 0x06;
    pub const EXPIRES: u64 = 0x08;
    pub const LARGEST_OBJECT: u64 = 0x09;
    pub const FILL_TIMEOUT: u64 = 0x0a;
    pub const PUBLISHER_PRIORITY: u64 = 0x0e;
    pub const FORWARD: u64 = 0x10;
    pub const SUBSCRIBER_PRIORITY: u64 = 0x20;
    pub const SUBSCRIPTION_FILTER: u64 = 0x21;
    pub const GROUP_ORDER: u64 = 0x22;
    pub const DYNAMIC_GROUPS: u64 = 0x30;
    pub const NEW_GROUP_REQUEST: u64 = 0x32;
    pub const TRACK_NAMESPACE_PREFIX: u64 = 0x34;
}

/// At most this many parameters in one message or setup.
pub const MAX_PARAMS: u64 = 64;

/// A Location: group and object.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Location {
    pub group: u64,
    pub object: u64,
}

/// Where a subscription starts (and ends).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filter {
    NextGroup,
    LargestObject,
    AbsoluteStart(Location),
    /// Start, and the last group (inclusive, absolute; the wire form differs by draft).
    AbsoluteRange(Location, u64),
}

impl Filter {
    pub fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        match *self {
            Self::NextGroup => w.varint(0x1),
            Self::LargestObject => w.varint(0x2),
            Self::AbsoluteStart(start) => {
                w.varint(0x3)?;
                w.location(start)
            }
            Self::AbsoluteRange(start, end) => {
                w.varint(0x4)?;
                w.location(start)?;
                if w.version >= Version::Draft17 {
                    w.varint(
                        end.checked_sub(start.group)
                            .ok_or(EncodeError::BoundsExceeded)?,
                    )
                } else {
                    w.varint(end)
                }
            }
        }
    }

    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match r.varint()? {
            0x1 => Self::NextGroup,
            0x2 => Self::LargestObject,
            0x3 => Self::AbsoluteStart(r.location()?),
            0x4 => {
                let start = r.location()?;
                let end = r.varint()?;
                let end = if r.version >= Version::Draft17 {
                    start
                        .group
                        .checked_add(end)
                        .ok_or(DecodeError::InvalidValue)?
                } else {
                    end
                };
                if end < start.group {
                    return Err(DecodeError::InvalidValue);
                }
                Self::AbsoluteRange(start, end)
            }
            _ => return Err(DecodeError::InvalidValue),
        })
    }
}

/// The message parameters a relay acts on; every field is `None` when absent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Params {
    pub forward: Option<bool>,
    pub subscriber_priority: Option<u8>,
    /// 1 ascending, 2 descending.
    pub group_order: Option<u8>,
    pub filter: Option<Filter>,
    pub largest: Option<Location>,
    pub expires: Option<u64>,
    pub delivery_timeout: Option<u64>,
    pub publisher_priority: Option<u8>,
    /// AUTHORIZATION_TOKEN values as they came (a Token structure each).
    pub auth: Vec<Vec<u8>>,
}

impl Reader<'_> {
    pub fn location(&mut self) -> Result<Location, DecodeError> {
        Ok(Location {
            group: self.varint()?,
            object: self.varint()?,
        })
    }

    /// A count-prefixed parameter block in the draft's form.
    pub fn params(&mut self) -> Result<Params, DecodeError> {
        let n = self.varint()?;
        if n > MAX_PARAMS {
            return Err(DecodeError::TooLarge);
        }
        let mut p = Params::default();
        let mut kind = 0u64;
        for i in 0..n {
            let raw = self.varint()?;
            kind = if self.version.has_delta_types() {
                kind.checked_add(raw)
                    .ok_or(DecodeError::KeyValueFormatting)?
            } else {
                raw
            };
            if i > 0
                && raw == 0
                && self.version.has_delta_types()
                && kind != kind::AUTHORIZATION_TOKEN
            {
                return Err(DecodeError::DuplicateParameter(kind));
            }
            if self.version >= Version::Draft17 {
                self.typed_param(kind, &mut p)?;
            } else {
                self.kvp_param(kind, &mut p)?;
            }
        }
        Ok(p)
    }

    /// 14-16: a Key-Value-Pair; unknown types are skipped.
    fn kvp_param(&mut self, kind: u64, p: &mut Params) -> Result<(), DecodeError> {
        if kind.is_multiple_of(2) {
            let v = self.varint()?;
            let byte = || u8::try_from(v).map_err(|_| DecodeError::InvalidValue);
            match kind {
                kind::FORWARD => p.forward = Some(bool_value(v)?),
                kind::SUBSCRIBER_PRIORITY => p.subscriber_priority = Some(byte()?),
                kind::GROUP_ORDER => p.group_order = Some(order_value(v)?),
                kind::EXPIRES => p.expires = Some(v),
                kind::DELIVERY_TIMEOUT => p.delivery_timeout = Some(v),
                kind::PUBLISHER_PRIORITY => p.publisher_priority = Some(byte()?),
                _ => {}
            }
            return Ok(());
        }
        let len = self.varint()?;
        if len > u16::MAX as u64 {
            return Err(DecodeError::KeyValueFormatting);
        }
        let value = self.bytes(len)?;
        let mut inner = Reader::new(value, self.version);
        match kind {
            kind::AUTHORIZATION_TOKEN => p.auth.push(value.to_vec()),
            kind::SUBSCRIPTION_FILTER => {
                p.filter = Some(Filter::decode(&mut inner)?);
                inner.end()?;
            }
            kind::LARGEST_OBJECT => {
                p.largest = Some(inner.location()?);
                inner.end()?;
            }
            _ => {}
        }
        Ok(())
    }

    /// 17+: a Message Parameter, its value encoded as its type says.
    fn typed_param(&mut self, kind: u64, p: &mut Params) -> Result<(), DecodeError> {
        match kind {
            kind::FORWARD => p.forward = Some(bool_value(self.u8()?.into())?),
            kind::SUBSCRIBER_PRIORITY => p.subscriber_priority = Some(self.u8()?),
            kind::GROUP_ORDER => p.group_order = Some(order_value(self.u8()?.into())?),
            kind::LARGEST_OBJECT => p.largest = Some(self.location()?),
            kind::EXPIRES => p.expires = Some(self.varint()?),
            kind::DELIVERY_TIMEOUT => p.delivery_timeout = Some(self.varint()?),
            kind::CACHE_OR_RENDEZVOUS
            | kind::SUBGROUP_DELIVERY_TIMEOUT
            | kind::FILL_TIMEOUT
            | kind::NEW_GROUP_REQUEST => {
                self.varint()?;
            }
            kind::AUTHORIZATION_TOKEN => p.auth.push(self.string_bytes()?.to_vec()),
            kind::SUBSCRIPTION_FILTER => {
                let mut inner = Reader::new(self.string_bytes()?, self.version);
                p.filter = Some(Filter::decode(&mut inner)?);
                inner.end()?;
            }
            // Range filters (19): accepted and not applied.
            0x25..=0x29 => {
                self.string_bytes()?;
            }
            kind::TRACK_NAMESPACE_PREFIX => {
                self.namespace(true)?;
            }
            other => return Err(DecodeError::UnknownParameter(other)),
        }
        Ok(())
    }

    /// Key-Value-Pairs up to the end of the input (setup options on 17+, track properties),
    /// or `count` of them: `(type, value)` where an even type's value is its varint.
    pub fn kvps(&mut self, count: Option<u64>) -> Result<Vec<(u64, Kvp)>, DecodeError> {
        let mut out = Vec::new();
        let mut kind = 0u64;
        let mut i = 0;
        while count.map_or(!self.is_empty(), |n| i < n) {
            if i >= MAX_PARAMS {
                return Err(DecodeError::TooLarge);
            }
            i += 1;
            let raw = self.varint()?;
            kind = if self.version.has_delta_types() {
                kind.checked_add(raw)
                    .ok_or(DecodeError::KeyValueFormatting)?
            } else {
                raw
            };
            let value = if kind.is_multiple_of(2) {
                Kvp::Int(self.varint()?)
            } else {
                let len = self.varint()?;
                if len > u16::MAX as u64 {
                    return Err(DecodeError::KeyValueFormatting);
                }
                Kvp::Bytes(self.bytes(len)?.to_vec())
            };
            out.push((kind, value));
        }
        Ok(out)
    }

    /// The input must be used up.
    pub fn end(&self) -> Result<(), DecodeError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::BadLength)
        }
    }
}

/// A Key-Value-Pair's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kvp {
    Int(u64),
    Bytes(Vec<u8>),
}

fn bool_value(v: u64) -> Result<bool, DecodeError> {
    match v {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(DecodeError::InvalidValue),
    }
}

fn order_value(v: u64) -> Result<u8, DecodeError> {
    match v {
        // 0 (the publisher's order) exists in draft-14's inline field only; read as unset.
        0..=2 => Ok(v as u8),
        _ => Err(DecodeError::InvalidValue),
    }
}

/// Parameters to write, by type (ascending), in the form each draft wants.
enum Value {
    Int(u64),
    Byte(u8),
    Bytes(Vec<u8>),
    Location(Location),
}

impl Writer<'_> {
    pub fn location(&mut self, l: Location) -> Result<(), EncodeError> {
        self.varint(l.group)?;
        self.varint(l.object)
    }

    /// A count-prefixed parameter block in the draft's form.
    pub fn params(&mut self, p: &Params) -> Result<(), EncodeError> {
        let mut list: Vec<(u64, Value)> = Vec::new();
        if let Some(t) = p.delivery_timeout {
            list.push((kind::DELIVERY_TIMEOUT, Value::Int(t)));
        }
        for a in &p.auth {
            list.push((kind::AUTHORIZATION_TOKEN, Value::Bytes(a.clone())));
        }
        if let Some(e) = p.expires {
            list.push((kind::EXPIRES, Value::Int(e)));
        }
        if let Some(l) = p.largest {
            list.push((kind::LARGEST_OBJECT, Value::Location(l)));
        }
        if let Some(pp) = p.publisher_priority {
            list.push((kind::PUBLISHER_PRIORITY, Value::Byte(pp)));
        }
        if let Some(f) = p.forward {
            list.push((kind::FORWARD, Value::Byte(u8::from(f))));
        }
        if let Some(s) = p.subscriber_priority {
            list.push((kind::SUBSCRIBER_PRIORITY, Value::Byte(s)));
        }
        if let Some(f) = &p.filter {
            let mut inner = Vec::new();
            f.encode(&mut Writer::new(&mut inner, self.version))?;
            list.push((kind::SUBSCRIPTION_FILTER, Value::Bytes(inner)));
        }
        if let Some(o) = p.group_order {
            list.push((kind::GROUP_ORDER, Value::Byte(o)));
        }
        self.varint(list.len() as u64)?;
        let typed = self.version >= Version::Draft17;
        let mut prev = 0;
        for (kind, value) in list {
            let key = if self.version.has_delta_types() {
                kind - prev
            } else {
                kind
            };
            prev = kind;
            self.varint(key)?;
            match value {
                Value::Int(v) => self.varint(v)?,
                Value::Byte(b) if typed => self.u8(b),
                Value::Byte(b) => self.varint(b.into())?,
                Value::Location(l) if typed => self.location(l)?,
                Value::Location(l) => {
                    let mut inner = Vec::new();
                    Writer::new(&mut inner, self.version).location(l)?;
                    self.string_bytes(&inner)?;
                }
                Value::Bytes(b) => self.string_bytes(&b)?,
            }
        }
        Ok(())
    }

    /// Key-Value-Pairs in ascending type order, without a count (setup options on 17+, track
    /// properties) or with one (setup parameters on 14-16).
    pub fn kvps(&mut self, pairs: &[(u64, Kvp)], count: bool) -> Result<(), EncodeError> {
        if count {
            self.varint(pairs.len() as u64)?;
        }
        // Delta types (16+) need them in order; the order of one type's repeats is kept.
        let mut sorted: Vec<&(u64, Kvp)> = pairs.iter().collect();
        sorted.sort_by_key(|(kind, _)| *kind);
        let mut prev = 0;
        for (kind, value) in sorted {
            let key = if self.version.has_delta_types() {
                kind.checked_sub(prev).ok_or(EncodeError::BoundsExceeded)?
            } else {
                *kind
            };
            prev = *kind;
            self.varint(key)?;
            match value {
                Kvp::Int(v) if kind.is_multiple_of(2) => self.varint(*v)?,
                Kvp::Bytes(b) if !kind.is_multiple_of(2) => self.string_bytes(b)?,
                _ => return Err(EncodeError::BoundsExceeded),
            }
        }
        Ok(())
    }
}

/// The value of an AUTHORIZATION_TOKEN that carries its token in full (USE_VALUE), with token
/// type 0 (out of band: a moq-token JWT here).
pub fn token_value(jwt: &str, version: Version) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = Writer::new(&mut out, version);
    let _ = w.varint(0x3);
    let _ = w.varint(0);
    w.bytes(jwt.as_bytes());
    out
}

/// The token carried in full by an AUTHORIZATION_TOKEN value (USE_VALUE or REGISTER); `None`
/// for aliases, which this relay does not keep.
pub fn token_of(value: &[u8], version: Version) -> Result<Option<String>, DecodeError> {
    let mut r = Reader::new(value, version);
    let token = match r.varint()? {
        0x3 => {
            r.varint()?;
            r.buf
        }
        0x1 => {
            r.varint()?;
            r.varint()?;
            r.buf
        }
        0x0 | 0x2 => {
            r.varint()?;
            r.end()?;
            return Ok(None);
        }
        _ => return Err(DecodeError::KeyValueFormatting),
    };
    std::str::from_utf8(token)
        .map(|s| Some(s.to_owned()))
        .map_err(|_| DecodeError::KeyValueFormatting)
}
