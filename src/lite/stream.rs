//! Stream-type varints that open every stream except the lite-01/02 session stream (§4).
//!
//! A type that is unknown or not part of the version decodes to `UnexpectedStream`; that is
//! never session-fatal. The reference drops an unexpected bidi stream with code 0 and stops an
//! unexpected uni stream (Setup before lite-05 with code 10).

use bytes::BufMut;

use super::coding::{Read, Write};
use super::{DecodeError, EncodeError, Version};

/// Bidirectional (control) streams, opened by the side that wants something.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ControlType {
    Announce,
    Subscribe,
    /// lite-05 only: lite-03/04 peers decode FETCH but never serve it (§5.4).
    Fetch,
    Probe,
    Goaway,
    Track,
}

impl ControlType {
    pub const fn code(self) -> u64 {
        match self {
            Self::Announce => 1,
            Self::Subscribe => 2,
            Self::Fetch => 3,
            Self::Probe => 4,
            Self::Goaway => 5,
            Self::Track => 6,
        }
    }

    pub fn from_code(code: u64, version: Version) -> Option<Self> {
        let ty = match code {
            1 => Self::Announce,
            2 => Self::Subscribe,
            3 => Self::Fetch,
            4 => Self::Probe,
            5 => Self::Goaway,
            6 => Self::Track,
            _ => return None,
        };
        ty.exists_in(version).then_some(ty)
    }

    fn exists_in(self, version: Version) -> bool {
        match self {
            Self::Announce | Self::Subscribe => true,
            Self::Probe => version >= Version::Lite03,
            Self::Goaway => version >= Version::Lite04,
            Self::Fetch | Self::Track => version.has_setup_stream(),
        }
    }

    pub fn decode(buf: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        let code = buf.varint()?;
        Self::from_code(code, version).ok_or(DecodeError::UnexpectedStream(code))
    }

    pub fn encode(self, version: Version, buf: &mut impl BufMut) -> Result<(), EncodeError> {
        if !self.exists_in(version) {
            return Err(EncodeError::Version);
        }
        buf.varint(self.code())
    }
}

/// Unidirectional (data) streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DataType {
    Group,
    /// lite-05 only, once per endpoint.
    Setup,
}

impl DataType {
    pub const fn code(self) -> u64 {
        match self {
            Self::Group => 0,
            Self::Setup => 1,
        }
    }

    pub fn from_code(code: u64, version: Version) -> Option<Self> {
        match code {
            0 => Some(Self::Group),
            1 if version.has_setup_stream() => Some(Self::Setup),
            _ => None,
        }
    }

    pub fn decode(buf: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        let code = buf.varint()?;
        Self::from_code(code, version).ok_or(DecodeError::UnexpectedStream(code))
    }

    pub fn encode(self, version: Version, buf: &mut impl BufMut) -> Result<(), EncodeError> {
        if Self::from_code(self.code(), version).is_none() {
            return Err(EncodeError::Version);
        }
        buf.varint(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Version::*;

    #[test]
    fn control_types_per_version() {
        let table: [(u64, [bool; 5]); 7] = [
            (0, [false; 5]),
            (1, [true; 5]),
            (2, [true; 5]),
            (3, [false, false, false, false, true]),
            (4, [false, false, true, true, true]),
            (5, [false, false, false, true, true]),
            (6, [false, false, false, false, true]),
        ];
        for (code, present) in table {
            for (v, ok) in [Lite01, Lite02, Lite03, Lite04, Lite05]
                .into_iter()
                .zip(present)
            {
                let r = ControlType::decode(&mut &[code as u8][..], v);
                assert_eq!(r.is_ok(), ok, "type {code} on {v:?}");
                match r {
                    Ok(ty) => {
                        let mut out = Vec::new();
                        ty.encode(v, &mut out).unwrap();
                        assert_eq!(out, [code as u8]);
                    }
                    Err(e) => assert_eq!(e, DecodeError::UnexpectedStream(code)),
                }
            }
        }
        assert_eq!(
            ControlType::Track.encode(Lite04, &mut Vec::new()),
            Err(EncodeError::Version)
        );
        assert_eq!(
            ControlType::decode(&mut &[][..], Lite05),
            Err(DecodeError::Short)
        );
        // Non-minimal varints are still stream types.
        assert_eq!(
            ControlType::decode(&mut &[0x40, 0x02][..], Lite01),
            Ok(ControlType::Subscribe)
        );
    }

    #[test]
    fn data_types_per_version() {
        for v in Version::ALL {
            assert_eq!(DataType::decode(&mut &[0][..], v), Ok(DataType::Group));
            let setup = DataType::decode(&mut &[1][..], v);
            assert_eq!(setup.is_ok(), v == Lite05);
            assert_eq!(
                DataType::decode(&mut &[2][..], v),
                Err(DecodeError::UnexpectedStream(2))
            );
        }
        assert_eq!(
            DataType::decode(&mut &[1][..], Lite04),
            Err(DecodeError::UnexpectedStream(1))
        );
        assert_eq!(
            DataType::Setup.encode(Lite04, &mut Vec::new()),
            Err(EncodeError::Version)
        );
        let mut out = Vec::new();
        DataType::Setup.encode(Lite05, &mut out).unwrap();
        assert_eq!(out, [1]);
    }
}
