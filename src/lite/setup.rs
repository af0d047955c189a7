//! Session setup (§3): the draft-14-framed exchange of lite-01/02, SESSION_INFO on their
//! session stream, and the lite-05 SETUP stream.

use super::coding::{Framing, Message, Read, Write};
use super::{DecodeError, EncodeError, Version};

/// A draft-14 setup parameter: even ids carry a varint, odd ids carry bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetupValue {
    Varint(u64),
    Bytes(Vec<u8>),
}

/// Draft-14 setup parameters in wire order. A lite server ignores them, but the codec keeps
/// them so that our client role can send what the reference clients send.
pub type SetupParameters = Vec<(u64, SetupValue)>;

fn encode_setup_parameters(params: &SetupParameters, buf: &mut Vec<u8>) -> Result<(), EncodeError> {
    buf.varint(params.len() as u64)?;
    for (id, value) in params {
        buf.varint(*id)?;
        match value {
            SetupValue::Varint(v) if id % 2 == 0 => buf.varint(*v)?,
            SetupValue::Bytes(b) if id % 2 == 1 => {
                buf.varint(b.len() as u64)?;
                buf.extend_from_slice(b);
            }
            _ => return Err(EncodeError::InvalidValue),
        }
    }
    Ok(())
}

fn decode_setup_parameters(buf: &mut &[u8]) -> Result<SetupParameters, DecodeError> {
    let count = buf.count()?;
    (0..count)
        .map(|_| {
            let id = buf.varint()?;
            let value = match id % 2 {
                0 => SetupValue::Varint(buf.varint()?),
                _ => {
                    let len = buf.varint()?;
                    SetupValue::Bytes(buf.bytes(len)?.to_vec())
                }
            };
            Ok((id, value))
        })
        .collect()
}

/// lite-01/02 CLIENT_SETUP: the first bytes of the client's first bidi stream, no stream type.
///
/// Sent before a version exists, so the `version` argument of the codec is ignored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientSetup {
    /// Version codes in client preference order; may include IETF drafts. See [`Version::select`].
    pub versions: Vec<u64>,
    pub parameters: SetupParameters,
}

impl ClientSetup {
    pub const KIND: u8 = 0x20;
}

impl Message for ClientSetup {
    fn framing(_: Version) -> Framing {
        Framing::Setup(Self::KIND)
    }

    fn encode_body(&self, _: Version, buf: &mut Vec<u8>) -> Result<(), EncodeError> {
        buf.varint(self.versions.len() as u64)?;
        self.versions.iter().try_for_each(|&v| buf.varint(v))?;
        encode_setup_parameters(&self.parameters, buf)
    }

    fn decode_body(_: u64, buf: &mut &[u8], _: Version) -> Result<Self, DecodeError> {
        let count = buf.count()?;
        let versions = (0..count).map(|_| buf.varint()).collect::<Result<_, _>>()?;
        let parameters = decode_setup_parameters(buf)?;
        Ok(Self {
            versions,
            parameters,
        })
    }
}

/// lite-01/02 SERVER_SETUP. A lite server sends no parameters (the single byte `00`), which is
/// what the JS client requires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerSetup {
    pub version: u64,
    pub parameters: SetupParameters,
}

impl ServerSetup {
    pub const KIND: u8 = 0x21;
}

impl Message for ServerSetup {
    fn framing(_: Version) -> Framing {
        Framing::Setup(Self::KIND)
    }

    fn encode_body(&self, _: Version, buf: &mut Vec<u8>) -> Result<(), EncodeError> {
        buf.varint(self.version)?;
        encode_setup_parameters(&self.parameters, buf)
    }

    fn decode_body(_: u64, buf: &mut &[u8], _: Version) -> Result<Self, DecodeError> {
        let version = buf.varint()?;
        let parameters = decode_setup_parameters(buf)?;
        Ok(Self {
            version,
            parameters,
        })
    }
}

/// lite-01/02 SESSION_INFO, after SERVER_SETUP on the session stream. The reference never sends
/// it and ignores it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    /// Bits per second; 0 is unknown.
    pub bitrate: u64,
}

impl Message for SessionInfo {
    fn encode_body(&self, version: Version, buf: &mut Vec<u8>) -> Result<(), EncodeError> {
        if !version.has_setup_exchange() {
            return Err(EncodeError::Version);
        }
        buf.varint(self.bitrate)
    }

    fn decode_body(_: u64, buf: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        if !version.has_setup_exchange() {
            return Err(DecodeError::Version);
        }
        Ok(Self {
            bitrate: buf.varint()?,
        })
    }
}

/// Whether the peer wants PROBE reports (lite-05 SETUP parameter 1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProbeLevel {
    #[default]
    None,
    Report,
    /// Never sent by the reference; values above 2 also decode as this.
    Increase,
}

/// Which half of a session the peer uses (lite-05 SETUP parameter 3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Role {
    /// Also what 0 and unknown values decode to.
    #[default]
    Both,
    Publisher,
    Subscriber,
}

/// More lite parameters than this are rejected.
pub const MAX_PARAMETERS: u64 = 64;

const PARAM_PROBE: u64 = 1;
const PARAM_PATH: u64 = 2;
const PARAM_ROLE: u64 = 3;
const PARAM_COST: u64 = 4;
const PARAM_ORIGIN: u64 = 5;

/// lite-05 SETUP, alone on a uni stream of type Setup. Defaults are omitted on the wire, and
/// unknown parameters are ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Setup {
    pub probe: ProbeLevel,
    /// URI path plus `?query`, not normalized; sent only by clients on transports without a
    /// request URI.
    pub path: Option<String>,
    pub role: Role,
    /// Route cost; used on lite-06 only, carried here because the reference may send it.
    pub cost: Option<u64>,
    /// The sender's hop id; 0 is none.
    pub origin: u64,
}

/// Encodes one length-prefixed lite parameter holding a single varint.
fn put_varint_param(buf: &mut Vec<u8>, id: u64, value: u64) -> Result<(), EncodeError> {
    let mut inner = Vec::new();
    inner.varint(value)?;
    put_bytes_param(buf, id, &inner)
}

fn put_bytes_param(buf: &mut Vec<u8>, id: u64, value: &[u8]) -> Result<(), EncodeError> {
    buf.varint(id)?;
    buf.varint(value.len() as u64)?;
    buf.extend_from_slice(value);
    Ok(())
}

/// A varint-valued parameter must be exactly one varint.
fn varint_param(mut value: &[u8]) -> Result<u64, DecodeError> {
    let v = value.varint()?;
    match value.is_empty() {
        true => Ok(v),
        false => Err(DecodeError::BodyLong),
    }
}

impl Message for Setup {
    /// Ascending id order, which matches the reference JS client and the spec's examples.
    fn encode_body(&self, version: Version, buf: &mut Vec<u8>) -> Result<(), EncodeError> {
        if !version.has_setup_stream() {
            return Err(EncodeError::Version);
        }
        let mut params = Vec::new();
        let mut count = 0;
        let probe = match self.probe {
            ProbeLevel::None => None,
            ProbeLevel::Report => Some(1),
            ProbeLevel::Increase => Some(2),
        };
        if let Some(level) = probe {
            put_varint_param(&mut params, PARAM_PROBE, level)?;
            count += 1;
        }
        if let Some(path) = &self.path {
            put_bytes_param(&mut params, PARAM_PATH, path.as_bytes())?;
            count += 1;
        }
        let role = match self.role {
            Role::Both => None,
            Role::Publisher => Some(1),
            Role::Subscriber => Some(2),
        };
        if let Some(role) = role {
            put_varint_param(&mut params, PARAM_ROLE, role)?;
            count += 1;
        }
        if let Some(cost) = self.cost {
            put_varint_param(&mut params, PARAM_COST, cost)?;
            count += 1;
        }
        if self.origin != 0 {
            put_varint_param(&mut params, PARAM_ORIGIN, self.origin)?;
            count += 1;
        }
        buf.varint(count)?;
        buf.extend_from_slice(&params);
        Ok(())
    }

    fn decode_body(_: u64, buf: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        if !version.has_setup_stream() {
            return Err(DecodeError::Version);
        }
        let count = buf.varint()?;
        if count > MAX_PARAMETERS {
            return Err(DecodeError::TooManyParameters);
        }
        let mut seen = Vec::new();
        let mut setup = Self::default();
        for _ in 0..count {
            let id = buf.varint()?;
            let len = buf.varint()?;
            let value = buf.bytes(len)?;
            if seen.contains(&id) {
                return Err(DecodeError::DuplicateParameter(id));
            }
            seen.push(id);
            match id {
                PARAM_PROBE => {
                    setup.probe = match varint_param(value)? {
                        0 => ProbeLevel::None,
                        1 => ProbeLevel::Report,
                        _ => ProbeLevel::Increase,
                    }
                }
                PARAM_PATH => {
                    let path = std::str::from_utf8(value).map_err(|_| DecodeError::InvalidUtf8)?;
                    setup.path = Some(path.to_owned());
                }
                PARAM_ROLE => {
                    setup.role = match varint_param(value)? {
                        1 => Role::Publisher,
                        2 => Role::Subscriber,
                        _ => Role::Both,
                    }
                }
                PARAM_COST => setup.cost = Some(varint_param(value)?),
                PARAM_ORIGIN => setup.origin = varint_param(value)?,
                _ => {}
            }
        }
        Ok(setup)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lite::DataType;
    use crate::lite::coding::decode_framed;
    use crate::lite::coding::tests::{check, hex};

    fn rust_client_setup(versions: Vec<u64>) -> ClientSetup {
        ClientSetup {
            versions,
            parameters: vec![
                (0x02, SetupValue::Varint(0xffffffff)),
                (0x40B5A, SetupValue::Varint(1)),
                (0x07, SetupValue::Bytes(b"moq-lite-rs".to_vec())),
            ],
        }
    }

    #[test]
    fn client_setup_rust_lite02() {
        let msg = rust_client_setup(vec![0xff0dad02, 0xff0dad01, 0xff00000e]);
        check(
            &msg,
            Version::Lite02,
            "20 00 35 03 c0 00 00 00 ff 0d ad 02 c0 00 00 00 ff 0d ad 01 c0 00 00 00 ff 00 00 0e
             03 02 c0 00 00 00 ff ff ff ff 80 04 0b 5a 01 07 0b 6d 6f 71 2d 6c 69 74 65 2d 72 73",
        );
        assert_eq!(
            Version::select(&msg.versions, &Version::ALL),
            Some(Version::Lite02)
        );
    }

    #[test]
    fn client_setup_rust_lite01_only() {
        let msg = rust_client_setup(vec![0xff0dad01]);
        check(
            &msg,
            Version::Lite01,
            "20 00 25 01 c0 00 00 00 ff 0d ad 01
             03 02 c0 00 00 00 ff ff ff ff 80 04 0b 5a 01 07 0b 6d 6f 71 2d 6c 69 74 65 2d 72 73",
        );
    }

    #[test]
    fn client_setup_js() {
        let msg = ClientSetup {
            versions: vec![0xff0dad02, 0xff0dad01, 0xff00000e],
            parameters: vec![
                (0x02, SetupValue::Varint(42069)),
                (0x40B5A, SetupValue::Varint(1)),
                (0x07, SetupValue::Bytes(b"moq-lite-js".to_vec())),
            ],
        };
        check(
            &msg,
            Version::Lite02,
            "20 00 31 03 c0 00 00 00 ff 0d ad 02 c0 00 00 00 ff 0d ad 01 c0 00 00 00 ff 00 00 0e
             03 02 80 00 a4 55 80 04 0b 5a 01 07 0b 6d 6f 71 2d 6c 69 74 65 2d 6a 73",
        );
    }

    #[test]
    fn server_setup() {
        for v in [Version::Lite01, Version::Lite02] {
            let msg = ServerSetup {
                version: v.code(),
                parameters: vec![],
            };
            let wire = format!("21 00 09 c0 00 00 00 ff 0d ad 0{} 00", v.code() & 0xf);
            check(&msg, v, &wire);
        }
    }

    #[test]
    fn setup_kinds_and_parameter_kinds() {
        // A server setup on the client's stream, and the legacy kinds B no longer accepts.
        for kind in [0x21, 0x00, 0x40] {
            let wire = [kind, 0x00, 0x02, 0x00, 0x00];
            let r = decode_framed::<ClientSetup>(&wire, Version::Lite02, 1024);
            assert_eq!(r.unwrap_err(), DecodeError::UnknownMessage(kind.into()));
        }
        // Rejected from the first byte, not misread as a u16 length.
        let r = decode_framed::<ClientSetup>(&[0x00], Version::Lite02, 1024);
        assert_eq!(r.unwrap_err(), DecodeError::UnknownMessage(0));
        let odd_varint = ServerSetup {
            version: 1,
            parameters: vec![(1, SetupValue::Varint(1))],
        };
        assert_eq!(
            odd_varint.encode(Version::Lite02, &mut Vec::new()),
            Err(EncodeError::InvalidValue)
        );
        let even_bytes = ServerSetup {
            version: 1,
            parameters: vec![(2, SetupValue::Bytes(vec![]))],
        };
        assert_eq!(
            even_bytes.encode(Version::Lite02, &mut Vec::new()),
            Err(EncodeError::InvalidValue)
        );
    }

    #[test]
    fn setup_length_is_u16_and_checked() {
        let huge = ClientSetup {
            versions: vec![],
            parameters: vec![(1, SetupValue::Bytes(vec![0; 70_000]))],
        };
        assert_eq!(
            huge.encode(Version::Lite02, &mut Vec::new()),
            Err(EncodeError::BoundsExceeded)
        );
        // Declared 0xffff, limit 1000: rejected from the three header bytes alone.
        let r = decode_framed::<ClientSetup>(&hex("20 ff ff"), Version::Lite02, 1000);
        assert_eq!(r.unwrap_err(), DecodeError::TooLarge);
    }

    #[test]
    fn session_info() {
        check(&SessionInfo { bitrate: 0 }, Version::Lite01, "01 00");
        check(&SessionInfo { bitrate: 0 }, Version::Lite02, "01 00");
        let r = decode_framed::<SessionInfo>(&hex("01 00"), Version::Lite03, 1024);
        assert_eq!(r.unwrap_err(), DecodeError::Version);
    }

    /// Checks a whole Setup stream: type, message, nothing after.
    fn check_stream(setup: &Setup, wire: &str) {
        let mut out = Vec::new();
        DataType::Setup.encode(Version::Lite05, &mut out).unwrap();
        setup.encode(Version::Lite05, &mut out).unwrap();
        assert_eq!(out, hex(wire));
        let mut input = &out[..];
        assert_eq!(
            DataType::decode(&mut input, Version::Lite05),
            Ok(DataType::Setup)
        );
        check(setup, Version::Lite05, &wire[3..]);
    }

    #[test]
    fn setup_examples() {
        let publisher = Setup {
            probe: ProbeLevel::Report,
            role: Role::Publisher,
            origin: 5,
            ..Setup::default()
        };
        check_stream(&publisher, "01 0a 03 01 01 01 03 01 01 05 01 05");
        let relay = Setup {
            probe: ProbeLevel::Report,
            origin: 9,
            ..Setup::default()
        };
        check_stream(&relay, "01 07 02 01 01 01 05 01 09");
        let with_path = Setup {
            path: Some("/anon?jwt=abc".into()),
            ..publisher.clone()
        };
        check_stream(
            &with_path,
            "01 19 04 01 01 01 02 0d 2f 61 6e 6f 6e 3f 6a 77 74 3d 61 62 63 03 01 01 05 01 05",
        );
        let no_stats = Setup {
            role: Role::Publisher,
            origin: 5,
            ..Setup::default()
        };
        check_stream(&no_stats, "01 07 02 03 01 01 05 01 05");
        let subscriber = Setup {
            probe: ProbeLevel::Report,
            role: Role::Subscriber,
            origin: 7,
            ..Setup::default()
        };
        check_stream(&subscriber, "01 0a 03 01 01 01 03 01 02 05 01 07");
        let all = Setup {
            probe: ProbeLevel::Increase,
            path: Some(String::new()),
            role: Role::Subscriber,
            cost: Some(300),
            origin: 1 << 52,
        };
        let mut out = Vec::new();
        all.encode(Version::Lite05, &mut out).unwrap();
        assert_eq!(Setup::decode(&mut &out[..], Version::Lite05), Ok(all));
    }

    #[test]
    fn setup_parameter_rules() {
        let decode = |wire: &str| Setup::decode(&mut &hex(wire)[..], Version::Lite05);
        // Order does not matter, unknown ids are skipped, odd values degrade as specified.
        let s = decode("0e 04 05 01 09 3f 02 ff ff 01 01 07 03 01 09").unwrap();
        assert_eq!(
            (s.origin, s.probe, s.role),
            (9, ProbeLevel::Increase, Role::Both)
        );
        assert_eq!(decode("04 01 01 01 00").unwrap().probe, ProbeLevel::None);
        assert_eq!(
            decode("07 02 01 01 01 01 01 01"),
            Err(DecodeError::DuplicateParameter(1))
        );
        assert_eq!(decode("05 01 01 02 05 00"), Err(DecodeError::BodyLong));
        assert_eq!(decode("03 01 01 00"), Err(DecodeError::BodyShort));
        assert_eq!(decode("04 01 02 01 ff"), Err(DecodeError::InvalidUtf8));
        assert_eq!(decode("02 40 41"), Err(DecodeError::TooManyParameters));
        let mut sixty_four = vec![0x40, 0x40];
        for id in 0..64u8 {
            sixty_four.extend([0x41, id, 0x00]);
        }
        let mut framed = Vec::new();
        framed.varint(sixty_four.len() as u64).unwrap();
        framed.extend(&sixty_four);
        assert!(Setup::decode(&mut &framed[..], Version::Lite05).is_ok());
        assert_eq!(
            Setup::default().encode(Version::Lite04, &mut Vec::new()),
            Err(EncodeError::Version)
        );
        assert_eq!(
            Setup::decode(&mut &hex("01 00")[..], Version::Lite04),
            Err(DecodeError::Version)
        );
    }
}
