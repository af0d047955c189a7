//! Error codes (§9) and the codec errors that map onto them.

use std::fmt;

/// A moq error code: one u32 space shared by stream resets and session closes (§9.1).
///
/// A newtype rather than an enum because peers send codes we do not know, and those must be
/// carried through unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ErrorCode(pub u32);

impl ErrorCode {
    pub const CANCEL: Self = Self(0);
    pub const REQUIRED_EXTENSION: Self = Self(1);
    pub const OLD: Self = Self(2);
    pub const TIMEOUT: Self = Self(3);
    pub const TRANSPORT: Self = Self(4);
    pub const DECODE: Self = Self(5);
    pub const UNAUTHORIZED: Self = Self(6);
    pub const VERSION: Self = Self(9);
    pub const UNEXPECTED_STREAM: Self = Self(10);
    pub const BOUNDS_EXCEEDED: Self = Self(11);
    pub const DUPLICATE: Self = Self(12);
    pub const NOT_FOUND: Self = Self(13);
    pub const WRONG_SIZE: Self = Self(14);
    pub const PROTOCOL_VIOLATION: Self = Self(15);
    pub const UNEXPECTED_MESSAGE: Self = Self(16);
    pub const UNSUPPORTED: Self = Self(17);
    pub const ENCODE: Self = Self(18);
    pub const TOO_MANY_PARAMETERS: Self = Self(19);
    pub const INVALID_ROLE: Self = Self(20);
    pub const UNKNOWN_ALPN: Self = Self(21);
    pub const DROPPED: Self = Self(24);
    pub const CLOSED: Self = Self(25);
    pub const LAGGED: Self = Self(26);
    pub const FRAME_TOO_LARGE: Self = Self(27);
    pub const TIMESTAMP_MISMATCH: Self = Self(29);
    pub const UNROUTABLE: Self = Self(30);
    pub const EVICTED: Self = Self(31);

    /// Application codes start at 64; the relay maps HTTP-like statuses other than 401/403 here.
    pub const fn app(code: u32) -> Self {
        Self(64 + code)
    }

    /// The code for RESET_STREAM and STOP_SENDING (§9.2).
    ///
    /// The reference maps stream codes into the HTTP/3 WebTransport range on raw QUIC too, so a
    /// peer only sees our moq code if we do the same.
    pub const fn to_stream_code(self) -> u64 {
        let code = self.0 as u64;
        WT_FIRST + code + code / 0x1e
    }

    /// Reverses [`Self::to_stream_code`]; `None` for codes outside the WebTransport range or on
    /// its reserved points, such as the raw 0 that quinn sends when a stream is dropped.
    pub const fn from_stream_code(code: u64) -> Option<Self> {
        if code < WT_FIRST || code > WT_LAST {
            return None;
        }
        let shifted = code - WT_FIRST;
        if shifted % 0x1f == 0x1e {
            return None;
        }
        Some(Self((shifted - shifted / 0x1f) as u32))
    }

    /// The code for a session close; raw, unlike stream codes (§9.2).
    pub const fn to_close_code(self) -> u64 {
        self.0 as u64
    }
}

const WT_FIRST: u64 = 0x52e4_a40f_a8db;
const WT_LAST: u64 = 0x52e5_ac98_3162;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_codes_match_spec() {
        let cases = [
            (0, 0x52e4a40fa8db),
            (2, 0x52e4a40fa8dd),
            (5, 0x52e4a40fa8e0),
            (10, 0x52e4a40fa8e5),
            (12, 0x52e4a40fa8e7),
            (13, 0x52e4a40fa8e8),
            (24, 0x52e4a40fa8f3),
            (30, 0x52e4a40fa8fa),
            (31, 0x52e4a40fa8fb),
        ];
        for (code, wire) in cases {
            assert_eq!(ErrorCode(code).to_stream_code(), wire);
            assert_eq!(ErrorCode::from_stream_code(wire), Some(ErrorCode(code)));
        }
        assert_eq!(ErrorCode(u32::MAX).to_stream_code(), WT_LAST);
    }

    #[test]
    fn stream_codes_roundtrip_and_reject_outside() {
        for code in (0..100_000).chain([u32::MAX - 1, u32::MAX]) {
            let wire = ErrorCode(code).to_stream_code();
            assert_eq!(ErrorCode::from_stream_code(wire), Some(ErrorCode(code)));
        }
        // quinn's implicit STOP_SENDING on drop, and the reserved point between 29 and 30.
        assert_eq!(ErrorCode::from_stream_code(0), None);
        assert_eq!(ErrorCode::from_stream_code(WT_FIRST + 0x1e), None);
        assert_eq!(ErrorCode::from_stream_code(WT_FIRST - 1), None);
        assert_eq!(ErrorCode::from_stream_code(WT_LAST + 1), None);
    }

    #[test]
    fn close_codes_are_raw() {
        assert_eq!(ErrorCode::DUPLICATE.to_close_code(), 12);
        assert_eq!(ErrorCode::app(1).to_close_code(), 65);
    }
}
