//! Codec errors, and the drafts' error codes they close sessions and reset streams with.

use std::fmt;

use crate::model::ErrorCode;

/// Why bytes from the peer could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The input ended before the item did: wait for more, or at a FIN the stream was cut.
    Short,
    /// A control message's body ended before its fields did, or had bytes left over.
    BadLength,
    /// A control message longer than the configured limit (or the 16-bit length allows).
    TooLarge,
    /// The 7-byte integer form, which draft-17 forbids.
    InvalidVarint,
    InvalidUtf8,
    /// A field outside its defined values.
    InvalidValue,
    /// A namespace tuple with no field where one is needed, or more than 32.
    InvalidNamespace,
    /// A string, name or reason past its bound.
    TooLong,
    /// A Key-Value-Pair that breaks the encoding rules (an odd type's length past the bytes
    /// left, a delta that overflows).
    KeyValueFormatting,
    /// A parameter that appears twice where it may not.
    DuplicateParameter(u64),
    /// A message parameter of a type the draft (17+) gives no encoding for: it cannot be
    /// skipped.
    UnknownParameter(u64),
    /// A message type this stream does not carry in this draft.
    UnexpectedMessage(u64),
    /// A stream type this draft does not have.
    UnexpectedStream(u64),
    /// A frame (object payload) past the configured limit.
    FrameTooLarge,
    /// An object id that goes backwards, or a subgroup that the relay does not merge.
    Unsupported,
}

impl DecodeError {
    /// The session close code when this breaks the session.
    pub const fn close_code(self) -> u64 {
        match self {
            Self::KeyValueFormatting | Self::DuplicateParameter(_) | Self::UnknownParameter(_) => {
                TerminationCode::KEY_VALUE_FORMATTING_ERROR
            }
            _ => TerminationCode::PROTOCOL_VIOLATION,
        }
    }

    /// The code in the vocabulary of the layer above (and of the stream resets we write).
    pub const fn code(self) -> ErrorCode {
        match self {
            Self::TooLarge | Self::TooLong => ErrorCode::BOUNDS_EXCEEDED,
            Self::FrameTooLarge => ErrorCode::FRAME_TOO_LARGE,
            Self::UnexpectedStream(_) => ErrorCode::UNEXPECTED_STREAM,
            Self::UnexpectedMessage(_) => ErrorCode::UNEXPECTED_MESSAGE,
            Self::Unsupported => ErrorCode::UNSUPPORTED,
            _ => ErrorCode::DECODE,
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Short => write!(f, "input ended early"),
            Self::BadLength => write!(f, "message length does not match its fields"),
            Self::TooLarge => write!(f, "message too large"),
            Self::InvalidVarint => write!(f, "invalid integer encoding"),
            Self::InvalidUtf8 => write!(f, "invalid utf-8"),
            Self::InvalidValue => write!(f, "invalid field value"),
            Self::InvalidNamespace => write!(f, "invalid namespace tuple"),
            Self::TooLong => write!(f, "field too long"),
            Self::KeyValueFormatting => write!(f, "malformed key-value pair"),
            Self::DuplicateParameter(t) => write!(f, "duplicate parameter {t:#x}"),
            Self::UnknownParameter(t) => write!(f, "unknown message parameter {t:#x}"),
            Self::UnexpectedMessage(t) => write!(f, "unexpected message type {t:#x}"),
            Self::UnexpectedStream(t) => write!(f, "unexpected stream type {t:#x}"),
            Self::FrameTooLarge => write!(f, "object too large"),
            Self::Unsupported => write!(f, "not supported by this relay"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Why a message could not be encoded: a value that does not fit its field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeError {
    BoundsExceeded,
    /// The message does not exist in this draft.
    Version,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BoundsExceeded => write!(f, "value out of bounds"),
            Self::Version => write!(f, "not valid in this draft"),
        }
    }
}

impl std::error::Error for EncodeError {}

/// Session termination codes (CONNECTION_CLOSE or CLOSE_WEBTRANSPORT_SESSION).
pub struct TerminationCode;

impl TerminationCode {
    pub const NO_ERROR: u64 = 0x0;
    pub const INTERNAL_ERROR: u64 = 0x1;
    pub const UNAUTHORIZED: u64 = 0x2;
    pub const PROTOCOL_VIOLATION: u64 = 0x3;
    pub const INVALID_REQUEST_ID: u64 = 0x4;
    pub const DUPLICATE_TRACK_ALIAS: u64 = 0x5;
    pub const KEY_VALUE_FORMATTING_ERROR: u64 = 0x6;
    pub const TOO_MANY_REQUESTS: u64 = 0x7;
    pub const INVALID_PATH: u64 = 0x8;
    pub const MALFORMED_PATH: u64 = 0x9;
    pub const GOAWAY_TIMEOUT: u64 = 0x10;
    pub const VERSION_NEGOTIATION_FAILED: u64 = 0x15;
}

/// Request error codes (REQUEST_ERROR, SUBSCRIBE_ERROR, ...), and PUBLISH_DONE status codes.
pub struct RequestCode;

impl RequestCode {
    pub const INTERNAL_ERROR: u64 = 0x0;
    pub const UNAUTHORIZED: u64 = 0x1;
    pub const TIMEOUT: u64 = 0x2;
    pub const NOT_SUPPORTED: u64 = 0x3;
    pub const MALFORMED_AUTH_TOKEN: u64 = 0x4;
    pub const EXPIRED_AUTH_TOKEN: u64 = 0x5;
    pub const DOES_NOT_EXIST: u64 = 0x10;
    pub const INVALID_RANGE: u64 = 0x11;
    pub const UNINTERESTED: u64 = 0x20;
    pub const PREFIX_OVERLAP: u64 = 0x30;

    /// The wire code for a refusal decided above the session.
    pub const fn from_model(code: ErrorCode) -> u64 {
        match code {
            ErrorCode::UNAUTHORIZED => Self::UNAUTHORIZED,
            ErrorCode::NOT_FOUND | ErrorCode::UNROUTABLE => Self::DOES_NOT_EXIST,
            ErrorCode::UNSUPPORTED | ErrorCode::VERSION => Self::NOT_SUPPORTED,
            ErrorCode::TIMEOUT => Self::TIMEOUT,
            ErrorCode::DUPLICATE => Self::PREFIX_OVERLAP,
            _ => Self::INTERNAL_ERROR,
        }
    }

    /// A peer's refusal in the vocabulary above.
    pub const fn to_model(code: u64) -> ErrorCode {
        match code {
            Self::UNAUTHORIZED | Self::MALFORMED_AUTH_TOKEN | Self::EXPIRED_AUTH_TOKEN => {
                ErrorCode::UNAUTHORIZED
            }
            Self::DOES_NOT_EXIST => ErrorCode::NOT_FOUND,
            Self::NOT_SUPPORTED => ErrorCode::UNSUPPORTED,
            Self::TIMEOUT => ErrorCode::TIMEOUT,
            _ => ErrorCode::DROPPED,
        }
    }
}

/// PUBLISH_DONE status codes.
pub struct DoneCode;

impl DoneCode {
    pub const INTERNAL_ERROR: u64 = 0x0;
    pub const UNAUTHORIZED: u64 = 0x1;
    pub const TRACK_ENDED: u64 = 0x2;
    pub const SUBSCRIPTION_ENDED: u64 = 0x3;
    pub const GOING_AWAY: u64 = 0x4;
    pub const EXPIRED: u64 = 0x5;
    pub const TOO_FAR_BEHIND: u64 = 0x6;
}

/// Stream reset codes of data streams.
pub struct ResetCode;

impl ResetCode {
    pub const INTERNAL_ERROR: u64 = 0x0;
    pub const CANCELLED: u64 = 0x1;
    pub const DELIVERY_TIMEOUT: u64 = 0x2;
    pub const SESSION_CLOSED: u64 = 0x3;
}
