//! The control stream: our SETTINGS out, the peer's SETTINGS and GOAWAY in (RFC 9114 §6.2.1,
//! §7.2.4).

use bytes::{Bytes, BytesMut};
use web_transport_proto::{Setting, Settings, VarInt};

use super::error::{
    Error, H3_EXCESSIVE_LOAD, H3_FRAME_ERROR, H3_FRAME_UNEXPECTED, H3_ID_ERROR,
    H3_MISSING_SETTINGS, H3_SETTINGS_ERROR,
};
use super::frame::{
    DATA, FrameHeader, GOAWAY, HEADERS, MAX_PUSH_ID, PUSH_PROMISE, SETTINGS, put_frame_header,
    put_varint, varint,
};

/// The largest field section we accept, advertised as SETTINGS_MAX_FIELD_SECTION_SIZE and
/// enforced on the CONNECT request (RFC 9114 §4.2.2 sizing).
pub const MAX_FIELD_SECTION_SIZE: u64 = 16 * 1024;

/// The largest SETTINGS payload we buffer; Chromium's is under 64 bytes.
const MAX_SETTINGS_SIZE: u64 = 4 * 1024;

const QPACK_MAX_TABLE_CAPACITY: u64 = 0x01;
const MAX_FIELD_SECTION: u64 = 0x06;
const ENABLE_CONNECT_PROTOCOL: u64 = 0x08;
const H3_DATAGRAM: u64 = 0x33;
/// draft-ietf-masque-h3-datagram-04's code point, which Chromium still sends and checks.
const H3_DATAGRAM_DRAFT04: u64 = 0xff_d277;
/// draft-ietf-webtrans-http3-02..06: ENABLE_WEBTRANSPORT and the server's session limit.
const WEBTRANSPORT_ENABLE_DRAFT02: u64 = 0x2b60_3742;
const WEBTRANSPORT_MAX_SESSIONS_DRAFT06: u64 = 0x2b60_3743;
/// draft-ietf-webtrans-http3-07+: a non-zero session limit enables WebTransport.
const WEBTRANSPORT_MAX_SESSIONS: u64 = 0xc671_706a;

/// The bytes that open our control stream: type 0x00 and one SETTINGS frame.
///
/// The dynamic table stays at capacity 0 (sent explicitly, and the default), so the peer never
/// references it and neither side needs QPACK encoder/decoder streams (RFC 9204 §3.2.3).
/// Only a server advertises ENABLE_CONNECT_PROTOCOL (RFC 9220 §3). Both sides send every
/// WebTransport and datagram code point still in use, the ones web-transport-proto's
/// `enable_webtransport(1)` sends (so reference peers accept us), in a fixed order so the bytes
/// are testable; its own `encode` iterates a HashMap.
pub fn control_stream(server: bool) -> Bytes {
    let mut settings: Vec<(u64, u64)> = vec![
        (QPACK_MAX_TABLE_CAPACITY, 0),
        (MAX_FIELD_SECTION, MAX_FIELD_SECTION_SIZE),
    ];
    if server {
        settings.push((ENABLE_CONNECT_PROTOCOL, 1));
    }
    settings.extend([
        (H3_DATAGRAM, 1),
        (H3_DATAGRAM_DRAFT04, 1),
        (WEBTRANSPORT_ENABLE_DRAFT02, 1),
        (WEBTRANSPORT_MAX_SESSIONS_DRAFT06, 1),
        (WEBTRANSPORT_MAX_SESSIONS, 1),
    ]);

    let mut payload = BytesMut::new();
    for (id, value) in settings {
        put_varint(&mut payload, id);
        put_varint(&mut payload, value);
    }
    let mut out = BytesMut::with_capacity(payload.len() + 4);
    put_varint(&mut out, 0x00);
    put_frame_header(&mut out, SETTINGS, payload.len());
    out.extend_from_slice(&payload);
    out.freeze()
}

/// A GOAWAY frame for our control stream (RFC 9114 §5.2). A server names the first request
/// stream it will not process (a client-initiated bidi id, e.g. the session id + 4); pair it
/// with [`super::drain_capsule`] to ask a WebTransport client to move on.
pub fn goaway_frame(id: u64) -> Bytes {
    let mut out = BytesMut::with_capacity(10);
    let mut payload = BytesMut::with_capacity(8);
    put_varint(&mut payload, id);
    put_frame_header(&mut out, GOAWAY, payload.len());
    out.extend_from_slice(&payload);
    out.freeze()
}

/// Reads the peer's control stream after its type byte.
#[derive(Debug)]
pub struct ControlReader {
    /// We are the server, so MAX_PUSH_ID is legal from the peer and GOAWAY carries a push id.
    server: bool,
    settings: Option<Settings>,
    goaway: Option<u64>,
    /// Payload bytes of an ignored frame still to drop.
    skip: u64,
}

impl ControlReader {
    pub fn new(server: bool) -> Self {
        Self {
            server,
            settings: None,
            goaway: None,
            skip: 0,
        }
    }

    /// Consumes as many whole frames from `buf` as it can (ignored frames also in part) and
    /// returns how many bytes it used; keep the rest and call again with more appended.
    /// Every error is a connection error.
    pub fn feed(&mut self, buf: &[u8]) -> Result<usize, Error> {
        let mut pos = 0;
        loop {
            if self.skip > 0 {
                let n = (buf.len() - pos).min(self.skip as usize);
                pos += n;
                self.skip -= n as u64;
                if self.skip > 0 {
                    return Ok(pos);
                }
            }
            let Some(header) = FrameHeader::parse(&buf[pos..]) else {
                return Ok(pos);
            };
            if self.settings.is_none() && header.typ != SETTINGS {
                return Err(Error::connection(
                    H3_MISSING_SETTINGS,
                    "control stream does not start with SETTINGS",
                ));
            }
            match header.typ {
                SETTINGS => {
                    if self.settings.is_some() {
                        return Err(Error::connection(
                            H3_FRAME_UNEXPECTED,
                            "second SETTINGS frame",
                        ));
                    }
                    if header.len > MAX_SETTINGS_SIZE {
                        return Err(Error::connection(H3_EXCESSIVE_LOAD, "SETTINGS too large"));
                    }
                    let Some(payload) = header.payload(&buf[pos..]) else {
                        return Ok(pos);
                    };
                    self.settings = Some(parse_settings(payload)?);
                    pos += header.size + payload.len();
                }
                GOAWAY => {
                    if header.len > 8 {
                        return Err(Error::connection(H3_FRAME_ERROR, "GOAWAY too long"));
                    }
                    let Some(payload) = header.payload(&buf[pos..]) else {
                        return Ok(pos);
                    };
                    self.on_goaway(payload)?;
                    pos += header.size + payload.len();
                }
                MAX_PUSH_ID if !self.server => {
                    return Err(Error::connection(
                        H3_FRAME_UNEXPECTED,
                        "MAX_PUSH_ID from a server",
                    ));
                }
                DATA | HEADERS | PUSH_PROMISE | 0x02 | 0x06 | 0x08 | 0x09 => {
                    return Err(Error::connection(
                        H3_FRAME_UNEXPECTED,
                        "frame not allowed on the control stream",
                    ));
                }
                // MAX_PUSH_ID and CANCEL_PUSH only matter to a server that pushes; grease and
                // unknown frames must be ignored (RFC 9114 §9).
                _ => {
                    pos += header.size;
                    self.skip = header.len;
                }
            }
        }
    }

    fn on_goaway(&mut self, payload: &[u8]) -> Result<(), Error> {
        let Some((id, _)) = varint(payload).filter(|&(_, n)| n == payload.len()) else {
            return Err(Error::connection(H3_FRAME_ERROR, "malformed GOAWAY"));
        };
        // From a server the id is a client-initiated bidi stream id (RFC 9114 §5.2).
        if !self.server && !id.is_multiple_of(4) {
            return Err(Error::connection(
                H3_ID_ERROR,
                "GOAWAY with a bad stream id",
            ));
        }
        if self.goaway.is_some_and(|last| id > last) {
            return Err(Error::connection(H3_ID_ERROR, "GOAWAY id increased"));
        }
        self.goaway = Some(id);
        Ok(())
    }

    /// The peer's SETTINGS, once its first frame has arrived.
    pub fn settings(&self) -> Option<&Settings> {
        self.settings.as_ref()
    }

    /// The peer's WebTransport session limit: 0 until SETTINGS arrive, or when the peer lacks
    /// HTTP datagrams or any of the WebTransport settings (draft-02 ENABLE or draft-07 limit).
    pub fn webtransport_sessions(&self) -> u64 {
        self.settings
            .as_ref()
            .map_or(0, Settings::supports_webtransport)
    }

    pub fn supports_webtransport(&self) -> bool {
        self.webtransport_sessions() > 0
    }

    /// Whether a server allows extended CONNECT; a client must not send one before this is
    /// true (RFC 9220 §3).
    pub fn enable_connect_protocol(&self) -> bool {
        self.value(ENABLE_CONNECT_PROTOCOL) == Some(1)
    }

    /// The last GOAWAY id: from a server, the first request stream it will not process; from
    /// a client, a push id.
    pub fn goaway(&self) -> Option<u64> {
        self.goaway
    }

    fn value(&self, id: u64) -> Option<u64> {
        let id = Setting(VarInt::from_u64(id).ok()?);
        Some(self.settings.as_ref()?.get(&id)?.into_inner())
    }
}

/// Parses a SETTINGS payload, rejecting what RFC 9114 §7.2.4 and the extensions make a
/// connection error: duplicates, HTTP/2-only identifiers and out-of-range booleans.
fn parse_settings(mut payload: &[u8]) -> Result<Settings, Error> {
    let mut settings = Settings::default();
    while !payload.is_empty() {
        let parsed = varint(payload).and_then(|(id, a)| {
            let (value, b) = varint(&payload[a..])?;
            Some((id, value, a + b))
        });
        let Some((id, value, n)) = parsed else {
            return Err(Error::connection(H3_FRAME_ERROR, "truncated SETTINGS"));
        };
        payload = &payload[n..];
        match id {
            0x00 | 0x02 | 0x03 | 0x04 | 0x05 => {
                return Err(Error::connection(
                    H3_SETTINGS_ERROR,
                    "HTTP/2 setting in SETTINGS",
                ));
            }
            ENABLE_CONNECT_PROTOCOL | H3_DATAGRAM if value > 1 => {
                return Err(Error::connection(
                    H3_SETTINGS_ERROR,
                    "boolean setting above 1",
                ));
            }
            _ => {}
        }
        let key = Setting(VarInt::from_u64(id).expect("decoded varints fit"));
        let value = VarInt::from_u64(value).expect("decoded varints fit");
        if settings.insert(key, value).is_some() {
            return Err(Error::connection(H3_SETTINGS_ERROR, "duplicate setting"));
        }
    }
    // Grease stays in the map only long enough to catch duplicates.
    settings.retain(|id, _| !id.is_grease());
    Ok(settings)
}
