//! Control messages of drafts 15 to 19: Type, a 16-bit Length, then the body, whose fields
//! depend on the draft (request ids leave the responses on 17+, 17 adds a Required Request ID
//! Delta to requests, 16+ end some messages with track properties). Draft-14's inline fields
//! are not read here: its messages decode as unexpected.

use super::coding::{Reader, Writer};
use super::params::{Kvp, Location, Params};
use super::{DecodeError, EncodeError, Version};

/// Message type codes.
pub mod code {
    pub const REQUEST_UPDATE: u64 = 0x02;
    pub const SUBSCRIBE: u64 = 0x03;
    pub const SUBSCRIBE_OK: u64 = 0x04;
    pub const REQUEST_ERROR: u64 = 0x05;
    pub const PUBLISH_NAMESPACE: u64 = 0x06;
    pub const REQUEST_OK: u64 = 0x07;
    pub const NAMESPACE: u64 = 0x08;
    pub const PUBLISH_NAMESPACE_DONE: u64 = 0x09;
    pub const UNSUBSCRIBE: u64 = 0x0a;
    pub const PUBLISH_DONE: u64 = 0x0b;
    pub const PUBLISH_NAMESPACE_CANCEL: u64 = 0x0c;
    pub const TRACK_STATUS: u64 = 0x0d;
    pub const NAMESPACE_DONE: u64 = 0x0e;
    pub const GOAWAY: u64 = 0x10;
    pub const SUBSCRIBE_NAMESPACE: u64 = 0x11;
    pub const UNSUBSCRIBE_NAMESPACE: u64 = 0x14;
    pub const MAX_REQUEST_ID: u64 = 0x15;
    pub const FETCH: u64 = 0x16;
    pub const FETCH_CANCEL: u64 = 0x17;
    pub const FETCH_OK: u64 = 0x18;
    pub const REQUESTS_BLOCKED: u64 = 0x1a;
    pub const PUBLISH: u64 = 0x1d;
    pub const PUBLISH_OK: u64 = 0x1e;
    pub const CLIENT_SETUP: u64 = 0x20;
    pub const SERVER_SETUP: u64 = 0x21;
    pub const SETUP: u64 = 0x2f00;
    /// SUBSCRIBE_NAMESPACE from draft-18 on.
    pub const SUBSCRIBE_NAMESPACE_18: u64 = 0x50;
    pub const SUBSCRIBE_TRACKS: u64 = 0x51;
}

/// The REQUEST_ERROR code (18+) that carries a Redirect after the reason.
const REDIRECT: u64 = 0x34;

/// A namespace tuple, its fields as bytes.
pub type Namespace = Vec<Vec<u8>>;

/// SUBSCRIBE, and TRACK_STATUS, which has its shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscribe {
    pub request_id: u64,
    pub namespace: Namespace,
    pub name: Vec<u8>,
    pub params: Params,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchKind {
    /// `end` is one past the last object; object 0 there means the whole group before.
    Standalone {
        namespace: Namespace,
        name: Vec<u8>,
        start: Location,
        end: Location,
    },
    /// Relative (`start` groups before the subscription's largest) or absolute.
    Joining {
        absolute: bool,
        request: u64,
        start: u64,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// 15-16.
    ClientSetup(Vec<(u64, Kvp)>),
    ServerSetup(Vec<(u64, Kvp)>),
    /// 17+: the first message of each control stream.
    Setup(Vec<(u64, Kvp)>),
    Goaway {
        uri: String,
        /// 17+.
        timeout: u64,
    },
    MaxRequestId(u64),
    RequestsBlocked(u64),
    Subscribe(Subscribe),
    TrackStatus(Subscribe),
    SubscribeOk {
        request_id: u64,
        alias: u64,
        params: Params,
        /// Track properties (16+), as they came.
        props: Vec<u8>,
    },
    RequestOk {
        request_id: u64,
        params: Params,
        props: Vec<u8>,
    },
    RequestError {
        request_id: u64,
        code: u64,
        /// 16+: the minimum retry delay in ms plus 1; 0 never retry.
        retry: u64,
        reason: String,
    },
    RequestUpdate {
        request_id: u64,
        /// 15-16: the request it updates (17+: its stream says).
        existing: u64,
        params: Params,
    },
    Unsubscribe {
        request_id: u64,
    },
    PublishDone {
        request_id: u64,
        status: u64,
        streams: u64,
        reason: String,
    },
    Publish {
        request_id: u64,
        namespace: Namespace,
        name: Vec<u8>,
        alias: u64,
        params: Params,
        props: Vec<u8>,
    },
    /// 15-17 (18+ answer PUBLISH with REQUEST_OK).
    PublishOk {
        request_id: u64,
        params: Params,
    },
    Fetch {
        request_id: u64,
        kind: FetchKind,
        params: Params,
    },
    FetchOk {
        request_id: u64,
        end_of_track: bool,
        end: Location,
        params: Params,
        props: Vec<u8>,
    },
    FetchCancel {
        request_id: u64,
    },
    PublishNamespace {
        request_id: u64,
        namespace: Namespace,
        params: Params,
    },
    /// 15: names the namespace; 16: the request.
    PublishNamespaceDone {
        request_id: u64,
        namespace: Namespace,
    },
    PublishNamespaceCancel {
        request_id: u64,
        namespace: Namespace,
        code: u64,
        reason: String,
    },
    SubscribeNamespace {
        request_id: u64,
        prefix: Namespace,
        /// 16-17: 0 PUBLISH only, 1 NAMESPACE only, 2 both.
        options: u64,
        params: Params,
    },
    /// 15.
    UnsubscribeNamespace {
        request_id: u64,
    },
    Namespace(Namespace),
    NamespaceDone(Namespace),
    SubscribeTracks {
        request_id: u64,
        prefix: Namespace,
        params: Params,
    },
}

impl Message {
    /// The message's type code in `v`.
    pub fn code(&self, v: Version) -> u64 {
        use code::*;
        match self {
            Self::ClientSetup(_) => CLIENT_SETUP,
            Self::ServerSetup(_) => SERVER_SETUP,
            Self::Setup(_) => SETUP,
            Self::Goaway { .. } => GOAWAY,
            Self::MaxRequestId(_) => MAX_REQUEST_ID,
            Self::RequestsBlocked(_) => REQUESTS_BLOCKED,
            Self::Subscribe(_) => SUBSCRIBE,
            Self::TrackStatus(_) => TRACK_STATUS,
            Self::SubscribeOk { .. } => SUBSCRIBE_OK,
            Self::RequestOk { .. } => REQUEST_OK,
            Self::RequestError { .. } => REQUEST_ERROR,
            Self::RequestUpdate { .. } => REQUEST_UPDATE,
            Self::Unsubscribe { .. } => UNSUBSCRIBE,
            Self::PublishDone { .. } => PUBLISH_DONE,
            Self::Publish { .. } => PUBLISH,
            Self::PublishOk { .. } => PUBLISH_OK,
            Self::Fetch { .. } => FETCH,
            Self::FetchOk { .. } => FETCH_OK,
            Self::FetchCancel { .. } => FETCH_CANCEL,
            Self::PublishNamespace { .. } => PUBLISH_NAMESPACE,
            Self::PublishNamespaceDone { .. } => PUBLISH_NAMESPACE_DONE,
            Self::PublishNamespaceCancel { .. } => PUBLISH_NAMESPACE_CANCEL,
            Self::SubscribeNamespace { .. } if v >= Version::Draft18 => SUBSCRIBE_NAMESPACE_18,
            Self::SubscribeNamespace { .. } => SUBSCRIBE_NAMESPACE,
            Self::UnsubscribeNamespace { .. } => UNSUBSCRIBE_NAMESPACE,
            Self::Namespace(_) => NAMESPACE,
            Self::NamespaceDone(_) => NAMESPACE_DONE,
            Self::SubscribeTracks { .. } => SUBSCRIBE_TRACKS,
        }
    }

    /// The request a message opens or answers (the one it updates for REQUEST_UPDATE is
    /// `existing`); `None` for messages of the session.
    pub fn request_id(&self) -> Option<u64> {
        match self {
            Self::Subscribe(s) | Self::TrackStatus(s) => Some(s.request_id),
            Self::SubscribeOk { request_id, .. }
            | Self::RequestOk { request_id, .. }
            | Self::RequestError { request_id, .. }
            | Self::RequestUpdate { request_id, .. }
            | Self::Unsubscribe { request_id }
            | Self::PublishDone { request_id, .. }
            | Self::Publish { request_id, .. }
            | Self::PublishOk { request_id, .. }
            | Self::Fetch { request_id, .. }
            | Self::FetchOk { request_id, .. }
            | Self::FetchCancel { request_id }
            | Self::PublishNamespace { request_id, .. }
            | Self::PublishNamespaceDone { request_id, .. }
            | Self::PublishNamespaceCancel { request_id, .. }
            | Self::SubscribeNamespace { request_id, .. }
            | Self::UnsubscribeNamespace { request_id }
            | Self::SubscribeTracks { request_id, .. } => Some(*request_id),
            _ => None,
        }
    }

    /// Name request `id` in a response (15-16 carry it; 17+ leave it to the stream).
    pub fn set_response_id(&mut self, id: u64) {
        match self {
            Self::SubscribeOk { request_id, .. }
            | Self::RequestOk { request_id, .. }
            | Self::RequestError { request_id, .. }
            | Self::PublishDone { request_id, .. }
            | Self::PublishOk { request_id, .. }
            | Self::FetchOk { request_id, .. } => *request_id = id,
            _ => {}
        }
    }

    /// Whether the message exists in `v`.
    fn exists(code: u64, v: Version) -> bool {
        use code::*;
        let (from, to) = match code {
            CLIENT_SETUP
            | SERVER_SETUP
            | MAX_REQUEST_ID
            | REQUESTS_BLOCKED
            | UNSUBSCRIBE
            | FETCH_CANCEL
            | PUBLISH_NAMESPACE_DONE
            | PUBLISH_NAMESPACE_CANCEL => (Version::Draft15, Version::Draft16),
            UNSUBSCRIBE_NAMESPACE => (Version::Draft15, Version::Draft15),
            SETUP => (Version::Draft17, Version::Draft19),
            NAMESPACE | NAMESPACE_DONE => (Version::Draft16, Version::Draft19),
            PUBLISH_OK => (Version::Draft15, Version::Draft17),
            SUBSCRIBE_NAMESPACE => (Version::Draft15, Version::Draft17),
            SUBSCRIBE_NAMESPACE_18 | SUBSCRIBE_TRACKS => (Version::Draft18, Version::Draft19),
            REQUEST_UPDATE | SUBSCRIBE | SUBSCRIBE_OK | REQUEST_ERROR | PUBLISH_NAMESPACE
            | REQUEST_OK | PUBLISH_DONE | TRACK_STATUS | GOAWAY | FETCH | FETCH_OK | PUBLISH => {
                (Version::Draft15, Version::Draft19)
            }
            _ => return false,
        };
        v >= from && v <= to
    }

    /// Append the whole message (type, length, body) to `buf`.
    pub fn encode(&self, v: Version, buf: &mut Vec<u8>) -> Result<(), EncodeError> {
        let code = self.code(v);
        if !Self::exists(code, v) {
            return Err(EncodeError::Version);
        }
        let mut body = Vec::new();
        self.encode_body(&mut Writer::new(&mut body, v))?;
        let len = u16::try_from(body.len()).map_err(|_| EncodeError::BoundsExceeded)?;
        let mut w = Writer::new(buf, v);
        w.varint(code)?;
        w.u16(len);
        w.bytes(&body);
        Ok(())
    }

    fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        let v = w.version;
        // Responses name their request before 17; requests carry a dependency on 17.
        let response_id = |w: &mut Writer<'_>, id: u64| {
            if v < Version::Draft17 {
                w.varint(id)
            } else {
                Ok(())
            }
        };
        let request_id = |w: &mut Writer<'_>, id: u64| {
            w.varint(id)?;
            if v == Version::Draft17 {
                w.varint(0)?;
            }
            Ok::<_, EncodeError>(())
        };
        let props = |w: &mut Writer<'_>, props: &[u8]| {
            if v >= Version::Draft16 {
                w.bytes(props);
            }
        };
        match self {
            Self::ClientSetup(kvps) | Self::ServerSetup(kvps) => w.kvps(kvps, true)?,
            Self::Setup(kvps) => w.kvps(kvps, false)?,
            Self::Goaway { uri, timeout } => {
                w.string_bytes(uri.as_bytes())?;
                if v >= Version::Draft17 {
                    w.varint(*timeout)?;
                }
            }
            Self::MaxRequestId(id) | Self::RequestsBlocked(id) => w.varint(*id)?,
            Self::Subscribe(s) | Self::TrackStatus(s) => {
                request_id(w, s.request_id)?;
                w.namespace(&s.namespace)?;
                w.string_bytes(&s.name)?;
                w.params(&s.params)?;
            }
            Self::SubscribeOk {
                request_id,
                alias,
                params,
                props: p,
            } => {
                response_id(w, *request_id)?;
                w.varint(*alias)?;
                w.params(params)?;
                props(w, p);
            }
            Self::RequestOk {
                request_id,
                params,
                props: p,
            } => {
                response_id(w, *request_id)?;
                w.params(params)?;
                if v >= Version::Draft18 {
                    w.bytes(p);
                }
            }
            Self::RequestError {
                request_id,
                code,
                retry,
                reason,
            } => {
                response_id(w, *request_id)?;
                w.varint(*code)?;
                if v >= Version::Draft16 {
                    w.varint(*retry)?;
                }
                w.reason(reason)?;
                // 18+: a REDIRECT carries where to; ours says "here, the same track".
                if v >= Version::Draft18 && *code == REDIRECT {
                    w.varint(0)?;
                    w.varint(0)?;
                    w.varint(0)?;
                }
            }
            Self::RequestUpdate {
                request_id: id,
                existing,
                params,
            } => {
                request_id(w, *id)?;
                if v < Version::Draft17 {
                    w.varint(*existing)?;
                }
                w.params(params)?;
            }
            Self::Unsubscribe { request_id }
            | Self::FetchCancel { request_id }
            | Self::UnsubscribeNamespace { request_id } => w.varint(*request_id)?,
            Self::PublishDone {
                request_id,
                status,
                streams,
                reason,
            } => {
                response_id(w, *request_id)?;
                w.varint(*status)?;
                w.varint(*streams)?;
                w.reason(reason)?;
            }
            Self::Publish {
                request_id: id,
                namespace,
                name,
                alias,
                params,
                props: p,
            } => {
                request_id(w, *id)?;
                w.namespace(namespace)?;
                w.string_bytes(name)?;
                w.varint(*alias)?;
                w.params(params)?;
                props(w, p);
            }
            Self::PublishOk { request_id, params } => {
                response_id(w, *request_id)?;
                w.params(params)?;
            }
            Self::Fetch {
                request_id: id,
                kind,
                params,
            } => {
                request_id(w, *id)?;
                match kind {
                    FetchKind::Standalone {
                        namespace,
                        name,
                        start,
                        end,
                    } => {
                        w.varint(0x1)?;
                        w.namespace(namespace)?;
                        w.string_bytes(name)?;
                        w.location(*start)?;
                        w.location(*end)?;
                    }
                    FetchKind::Joining {
                        absolute,
                        request,
                        start,
                    } => {
                        w.varint(if *absolute { 0x3 } else { 0x2 })?;
                        w.varint(*request)?;
                        w.varint(*start)?;
                    }
                }
                w.params(params)?;
            }
            Self::FetchOk {
                request_id,
                end_of_track,
                end,
                params,
                props: p,
            } => {
                response_id(w, *request_id)?;
                w.flag(*end_of_track);
                w.location(*end)?;
                w.params(params)?;
                props(w, p);
            }
            Self::PublishNamespace {
                request_id: id,
                namespace,
                params,
            } => {
                request_id(w, *id)?;
                w.namespace(namespace)?;
                w.params(params)?;
            }
            Self::PublishNamespaceDone {
                request_id,
                namespace,
            } => {
                if v == Version::Draft15 {
                    w.namespace(namespace)?;
                } else {
                    w.varint(*request_id)?;
                }
            }
            Self::PublishNamespaceCancel {
                request_id,
                namespace,
                code,
                reason,
            } => {
                if v == Version::Draft15 {
                    w.namespace(namespace)?;
                } else {
                    w.varint(*request_id)?;
                }
                w.varint(*code)?;
                w.reason(reason)?;
            }
            Self::SubscribeNamespace {
                request_id: id,
                prefix,
                options,
                params,
            } => {
                request_id(w, *id)?;
                w.namespace(prefix)?;
                if matches!(v, Version::Draft16 | Version::Draft17) {
                    w.varint(*options)?;
                }
                w.params(params)?;
            }
            Self::Namespace(ns) | Self::NamespaceDone(ns) => w.namespace(ns)?,
            Self::SubscribeTracks {
                request_id,
                prefix,
                params,
            } => {
                w.varint(*request_id)?;
                w.namespace(prefix)?;
                w.params(params)?;
            }
        }
        Ok(())
    }

    /// One whole message from the front of `buf`: `None` while it is incomplete, else the
    /// message and the bytes it took. A Length above `max` is an error at once.
    pub fn decode(
        buf: &[u8],
        v: Version,
        max: usize,
    ) -> Result<Option<(Self, usize)>, DecodeError> {
        let mut r = Reader::new(buf, v);
        let head = (|| Ok::<_, DecodeError>((r.varint()?, r.u16()?)))();
        let (code, len) = match head {
            Ok(h) => h,
            Err(DecodeError::Short) => return Ok(None),
            Err(e) => return Err(e),
        };
        if len as usize > max {
            return Err(DecodeError::TooLarge);
        }
        if r.remaining() < len as usize {
            return Ok(None);
        }
        let taken = buf.len() - r.remaining() + len as usize;
        let mut body = Reader::new(&r.buf[..len as usize], v);
        let msg = Self::decode_body(code, &mut body).map_err(|e| match e {
            DecodeError::Short => DecodeError::BadLength,
            e => e,
        })?;
        Ok(Some((msg, taken)))
    }

    /// The type of the message at the front of `buf`, once its bytes are there.
    pub fn peek_code(buf: &[u8], v: Version) -> Result<Option<u64>, DecodeError> {
        match Reader::new(buf, v).varint() {
            Ok(code) => Ok(Some(code)),
            Err(DecodeError::Short) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn decode_body(code: u64, r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        use code::*;
        let v = r.version;
        if !Self::exists(code, v) {
            return Err(DecodeError::UnexpectedMessage(code));
        }
        let response_id = |r: &mut Reader<'_>| {
            if v < Version::Draft17 {
                r.varint()
            } else {
                Ok(0)
            }
        };
        let request_id = |r: &mut Reader<'_>| {
            let id = r.varint()?;
            if v == Version::Draft17 {
                r.varint()?;
            }
            Ok::<_, DecodeError>(id)
        };
        // Track properties fill the rest of the message; they are kept as bytes and checked.
        let props = |r: &mut Reader<'_>| -> Result<Vec<u8>, DecodeError> {
            if v < Version::Draft16 {
                return Ok(Vec::new());
            }
            let rest = r.buf;
            r.kvps(None)?;
            Ok(rest.to_vec())
        };
        let namespace = |r: &mut Reader<'_>| r.namespace(v >= Version::Draft17);
        let msg = match code {
            CLIENT_SETUP | SERVER_SETUP => {
                let n = r.varint()?;
                let kvps = r.kvps(Some(n))?;
                if code == CLIENT_SETUP {
                    Self::ClientSetup(kvps)
                } else {
                    Self::ServerSetup(kvps)
                }
            }
            SETUP => Self::Setup(r.kvps(None)?),
            GOAWAY => {
                let uri = r.string_bytes()?;
                if uri.len() > 8192 {
                    return Err(DecodeError::TooLong);
                }
                let uri = std::str::from_utf8(uri)
                    .map_err(|_| DecodeError::InvalidUtf8)?
                    .to_owned();
                let timeout = if v >= Version::Draft17 {
                    r.varint()?
                } else {
                    0
                };
                // 18 may end with a Request ID on the control stream.
                if v == Version::Draft18 && !r.is_empty() {
                    r.varint()?;
                }
                Self::Goaway { uri, timeout }
            }
            MAX_REQUEST_ID => Self::MaxRequestId(r.varint()?),
            REQUESTS_BLOCKED => Self::RequestsBlocked(r.varint()?),
            SUBSCRIBE | TRACK_STATUS => {
                let s = Subscribe {
                    request_id: request_id(r)?,
                    namespace: namespace(r)?,
                    name: r.string_bytes()?.to_vec(),
                    params: r.params()?,
                };
                if code == SUBSCRIBE {
                    Self::Subscribe(s)
                } else {
                    Self::TrackStatus(s)
                }
            }
            SUBSCRIBE_OK => Self::SubscribeOk {
                request_id: response_id(r)?,
                alias: r.varint()?,
                params: r.params()?,
                props: props(r)?,
            },
            REQUEST_OK => Self::RequestOk {
                request_id: response_id(r)?,
                params: r.params()?,
                props: if v >= Version::Draft18 {
                    props(r)?
                } else {
                    Vec::new()
                },
            },
            REQUEST_ERROR => {
                let request_id = response_id(r)?;
                let code = r.varint()?;
                let retry = if v >= Version::Draft16 {
                    r.varint()?
                } else {
                    0
                };
                let reason = r.reason()?;
                // 18+: a REDIRECT carries where to; it is read and not followed.
                if v >= Version::Draft18 && code == REDIRECT {
                    r.string_bytes()?;
                    r.namespace(true)?;
                    r.string_bytes()?;
                }
                Self::RequestError {
                    request_id,
                    code,
                    retry,
                    reason,
                }
            }
            REQUEST_UPDATE => {
                let request_id = request_id(r)?;
                let existing = if v < Version::Draft17 { r.varint()? } else { 0 };
                Self::RequestUpdate {
                    request_id,
                    existing,
                    params: r.params()?,
                }
            }
            UNSUBSCRIBE => Self::Unsubscribe {
                request_id: r.varint()?,
            },
            FETCH_CANCEL => Self::FetchCancel {
                request_id: r.varint()?,
            },
            UNSUBSCRIBE_NAMESPACE => Self::UnsubscribeNamespace {
                request_id: r.varint()?,
            },
            PUBLISH_DONE => Self::PublishDone {
                request_id: response_id(r)?,
                status: r.varint()?,
                streams: r.varint()?,
                reason: r.reason()?,
            },
            PUBLISH => Self::Publish {
                request_id: request_id(r)?,
                namespace: namespace(r)?,
                name: r.string_bytes()?.to_vec(),
                alias: r.varint()?,
                params: r.params()?,
                props: props(r)?,
            },
            PUBLISH_OK => Self::PublishOk {
                request_id: response_id(r)?,
                params: r.params()?,
            },
            FETCH => {
                let request_id = request_id(r)?;
                let kind = match r.varint()? {
                    0x1 => FetchKind::Standalone {
                        namespace: namespace(r)?,
                        name: r.string_bytes()?.to_vec(),
                        start: r.location()?,
                        end: r.location()?,
                    },
                    k @ (0x2 | 0x3) => FetchKind::Joining {
                        absolute: k == 0x3,
                        request: r.varint()?,
                        start: r.varint()?,
                    },
                    _ => return Err(DecodeError::InvalidValue),
                };
                Self::Fetch {
                    request_id,
                    kind,
                    params: r.params()?,
                }
            }
            FETCH_OK => Self::FetchOk {
                request_id: response_id(r)?,
                end_of_track: r.flag()?,
                end: r.location()?,
                params: r.params()?,
                props: props(r)?,
            },
            PUBLISH_NAMESPACE => Self::PublishNamespace {
                request_id: request_id(r)?,
                namespace: namespace(r)?,
                params: r.params()?,
            },
            PUBLISH_NAMESPACE_DONE => {
                if v == Version::Draft15 {
                    Self::PublishNamespaceDone {
                        request_id: 0,
                        namespace: namespace(r)?,
                    }
                } else {
                    Self::PublishNamespaceDone {
                        request_id: r.varint()?,
                        namespace: Vec::new(),
                    }
                }
            }
            PUBLISH_NAMESPACE_CANCEL => {
                let (request_id, namespace) = if v == Version::Draft15 {
                    (0, namespace(r)?)
                } else {
                    (r.varint()?, Vec::new())
                };
                Self::PublishNamespaceCancel {
                    request_id,
                    namespace,
                    code: r.varint()?,
                    reason: r.reason()?,
                }
            }
            SUBSCRIBE_NAMESPACE | SUBSCRIBE_NAMESPACE_18 => {
                let request_id = request_id(r)?;
                let prefix = r.namespace(v >= Version::Draft16)?;
                let options = if matches!(v, Version::Draft16 | Version::Draft17) {
                    let o = r.varint()?;
                    if o > 2 {
                        return Err(DecodeError::InvalidValue);
                    }
                    o
                } else {
                    1
                };
                Self::SubscribeNamespace {
                    request_id,
                    prefix,
                    options,
                    params: r.params()?,
                }
            }
            NAMESPACE => Self::Namespace(r.namespace(true)?),
            NAMESPACE_DONE => Self::NamespaceDone(r.namespace(true)?),
            SUBSCRIBE_TRACKS => Self::SubscribeTracks {
                request_id: r.varint()?,
                prefix: r.namespace(true)?,
                params: r.params()?,
            },
            other => return Err(DecodeError::UnexpectedMessage(other)),
        };
        r.end()?;
        Ok(msg)
    }
}
