//! The codec errors and the error codes (§9, now in `model`) they map onto.

use std::fmt;

pub use crate::model::ErrorCode;

/// Why bytes from the peer could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The input ended before the item did. Incremental readers wait for more bytes; at a FIN it
    /// means the stream was cut short.
    Short,
    /// A size-prefixed body ended before its fields did.
    BodyShort,
    /// A size-prefixed body had bytes left over; lite has no room for extensions.
    BodyLong,
    /// A message declared a Length above the configured limit.
    TooLarge,
    /// A frame declared a payload above the configured limit.
    FrameTooLarge,
    /// A FIN arrived inside a frame payload.
    WrongSize,
    InvalidUtf8,
    /// A field outside its defined values (announce status, zero timescale, negative timestamp).
    InvalidValue,
    /// Too many hops or path parts.
    BoundsExceeded,
    TooManyParameters,
    DuplicateParameter(u64),
    /// A message type (or setup kind) that this stream does not carry.
    UnknownMessage(u64),
    /// A stream type that is unknown or not part of this version.
    UnexpectedStream(u64),
    /// A message that does not exist in the negotiated version.
    Version,
}

impl DecodeError {
    /// The code to reset the stream (or close the session) with.
    pub const fn code(self) -> ErrorCode {
        match self {
            Self::FrameTooLarge => ErrorCode::FRAME_TOO_LARGE,
            Self::WrongSize => ErrorCode::WRONG_SIZE,
            Self::BoundsExceeded | Self::TooLarge => ErrorCode::BOUNDS_EXCEEDED,
            Self::TooManyParameters => ErrorCode::TOO_MANY_PARAMETERS,
            Self::UnexpectedStream(_) => ErrorCode::UNEXPECTED_STREAM,
            // The reference resets with Decode for a message not valid in the version (§5.2).
            Self::Short
            | Self::BodyShort
            | Self::BodyLong
            | Self::InvalidUtf8
            | Self::InvalidValue
            | Self::DuplicateParameter(_)
            | Self::UnknownMessage(_)
            | Self::Version => ErrorCode::DECODE,
        }
    }
}

impl From<crate::model::path::PathTooLong> for DecodeError {
    fn from(_: crate::model::path::PathTooLong) -> Self {
        Self::BoundsExceeded
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Short => write!(f, "input ended early"),
            Self::BodyShort => write!(f, "message body ended early"),
            Self::BodyLong => write!(f, "message body has trailing bytes"),
            Self::TooLarge => write!(f, "message too large"),
            Self::FrameTooLarge => write!(f, "frame too large"),
            Self::WrongSize => write!(f, "stream ended inside a frame payload"),
            Self::InvalidUtf8 => write!(f, "invalid utf-8"),
            Self::InvalidValue => write!(f, "invalid field value"),
            Self::BoundsExceeded => write!(f, "bounds exceeded"),
            Self::TooManyParameters => write!(f, "too many parameters"),
            Self::DuplicateParameter(id) => write!(f, "duplicate parameter {id:#x}"),
            Self::UnknownMessage(kind) => write!(f, "unknown message type {kind:#x}"),
            Self::UnexpectedStream(kind) => write!(f, "unexpected stream type {kind:#x}"),
            Self::Version => write!(f, "message not valid in this version"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Why a message could not be encoded: always a bug or a bad value on our side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// A value that does not fit its field (varint >= 2^62, more than 32 hops, a SETUP over
    /// 64 KiB, a timestamp delta outside the zigzag range).
    BoundsExceeded,
    /// A value the peer would reject (zero timescale, an IETF parameter of the wrong kind).
    InvalidValue,
    /// A message or stream that does not exist in the version.
    Version,
}

impl EncodeError {
    pub const fn code(self) -> ErrorCode {
        match self {
            Self::Version => ErrorCode::VERSION,
            Self::BoundsExceeded | Self::InvalidValue => ErrorCode::ENCODE,
        }
    }
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BoundsExceeded => write!(f, "value out of bounds"),
            Self::InvalidValue => write!(f, "invalid field value"),
            Self::Version => write!(f, "not valid in this version"),
        }
    }
}

impl std::error::Error for EncodeError {}
