//! Error codes: one u32 space shared by stream resets and session closes, named for what
//! went wrong rather than for a wire. moq-lite carries them as they are (its §9); other wire
//! protocols map theirs onto these.

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
