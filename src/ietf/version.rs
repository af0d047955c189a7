//! The moq-transport drafts we speak, their ALPNs and what each one has on the wire.

/// A draft of draft-ietf-moq-transport. Ordered, so `v >= Version::Draft17` reads as "17 or
/// later".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    Draft14,
    Draft15,
    Draft16,
    Draft17,
    Draft18,
    Draft19,
}

/// How a draft encodes its integers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Varint {
    /// RFC 9000 §16: a 2-bit length prefix, 1, 2, 4 or 8 bytes, values below 2^62.
    Quic,
    /// Drafts 17+: the count of leading 1 bits gives the length, 1 to 9 bytes, any u64.
    /// `seven`: whether the 7-byte form (first byte `1111110x`) exists; 17 forbids it.
    LeadingOnes { seven: bool },
}

impl Version {
    /// Newest first: our order of preference among the drafts.
    pub const ALL: [Self; 6] = [
        Self::Draft19,
        Self::Draft18,
        Self::Draft17,
        Self::Draft16,
        Self::Draft15,
        Self::Draft14,
    ];

    /// The code in a draft-14 CLIENT_SETUP version list, and in moq-lite's SETUP exchange.
    pub const fn code(self) -> u64 {
        0xff00_0000
            + match self {
                Self::Draft14 => 14,
                Self::Draft15 => 15,
                Self::Draft16 => 16,
                Self::Draft17 => 17,
                Self::Draft18 => 18,
                Self::Draft19 => 19,
            }
    }

    pub fn from_code(code: u64) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.code() == code)
    }

    /// The ALPN on raw QUIC, and the WebTransport subprotocol.
    pub const fn alpn(self) -> &'static str {
        match self {
            Self::Draft14 => "moq-00",
            Self::Draft15 => "moqt-15",
            Self::Draft16 => "moqt-16",
            Self::Draft17 => "moqt-17",
            Self::Draft18 => "moqt-18",
            Self::Draft19 => "moqt-19",
        }
    }

    pub fn from_alpn(alpn: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.alpn() == alpn)
    }

    pub const fn varint(self) -> Varint {
        match self {
            Self::Draft14 | Self::Draft15 | Self::Draft16 => Varint::Quic,
            Self::Draft17 => Varint::LeadingOnes { seven: false },
            Self::Draft18 | Self::Draft19 => Varint::LeadingOnes { seven: true },
        }
    }

    /// Draft-14 only: CLIENT_SETUP lists versions and SERVER_SETUP picks one (15+ fix the
    /// version by ALPN).
    pub const fn has_setup_versions(self) -> bool {
        matches!(self, Self::Draft14)
    }

    /// Drafts 17+: SETUP on a uni stream each way, every request on a bidi stream of its own,
    /// no request ids in responses, no MAX_REQUEST_ID.
    pub const fn has_request_streams(self) -> bool {
        matches!(self, Self::Draft17 | Self::Draft18 | Self::Draft19)
    }

    /// Drafts 16+: Key-Value-Pair types are deltas from the previous type.
    pub const fn has_delta_types(self) -> bool {
        !matches!(self, Self::Draft14 | Self::Draft15)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_alpns() {
        for v in Version::ALL {
            assert_eq!(Version::from_code(v.code()), Some(v));
            assert_eq!(Version::from_alpn(v.alpn()), Some(v));
        }
        assert_eq!(Version::Draft14.code(), 0xff00000e);
        assert_eq!(Version::Draft19.code(), 0xff000013);
        assert_eq!(Version::from_alpn("moq-00"), Some(Version::Draft14));
        assert_eq!(Version::from_alpn("moq-lite-05"), None);
        assert_eq!(Version::from_code(0xff0dad05), None);
        assert!(Version::Draft17 > Version::Draft16);
    }
}
