//! The CONNECT stream: the extended CONNECT request (RFC 9220), its response, then capsules.

use bytes::{Bytes, BytesMut};
use percent_encoding::percent_decode;

use super::capsule::{Capsule, CapsuleParser};
use super::error::{
    Error, H3_EXCESSIVE_LOAD, H3_FRAME_ERROR, H3_FRAME_UNEXPECTED, H3_MESSAGE_ERROR,
    H3_REQUEST_INCOMPLETE,
};
use super::frame::{DATA, FrameHeader, HEADERS, check_request_frame, put_frame_header};
use super::qpack::{self, Field, SectionError};
use super::settings::MAX_FIELD_SECTION_SIZE;
use crate::model::path::query_param;

/// The request header that lists the client's WebTransport subprotocols (an sf-list of
/// sf-strings), as Chromium and @moq/lite send it.
pub const AVAILABLE_PROTOCOLS: &str = "wt-available-protocols";
/// The response header that names the chosen subprotocol (an sf-string).
pub const SELECTED_PROTOCOL: &str = "wt-protocol";

/// The `:protocol` tokens of a WebTransport request: Chromium sends `webtransport`; later
/// drafts register `webtransport-h3`, accepted so newer clients are not refused.
const PROTOCOL_TOKENS: [&[u8]; 2] = [b"webtransport", b"webtransport-h3"];

/// The client's extended CONNECT, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// `:authority` as sent (host and optional port).
    pub authority: String,
    /// `:path` as sent, query included.
    pub path: String,
    /// WT-Available-Protocols in the client's order of preference; empty when absent or not
    /// a valid sf-list of strings (then the version is left to the SETUP exchange).
    pub protocols: Vec<String>,
    /// The last non-empty `jwt` query parameter, form-decoded (`+` is a space), as the
    /// reference relay reads it.
    pub jwt: Option<String>,
    /// The path without its query, percent-decoded, dot segments resolved, without empty
    /// segments or leading/trailing slashes: `/room//a/%20b/` is `room/a/ b`.
    pub root: String,
    /// The `origin` header browsers send, for an origin policy.
    pub origin: Option<String>,
}

/// A refused request: reply with [`Rejection::response`], FIN the stream and stop reading it
/// with STOP_SENDING(H3_NO_ERROR) (RFC 9114 §4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    pub reason: &'static str,
}

impl Rejection {
    pub fn response(&self) -> Bytes {
        response(self.status, None)
    }
}

const fn reject(status: u16, reason: &'static str) -> Rejection {
    Rejection { status, reason }
}

/// What a [`ConnectReader`] found in the bytes it consumed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectProgress {
    /// Nothing complete yet: keep the unconsumed bytes and feed again with more.
    NeedMore,
    /// The request: answer with [`response`] (200 to accept) and keep feeding for capsules.
    Request(Request),
    /// The request is refused; the reader discards whatever follows.
    Reject(Rejection),
    Capsule(Capsule),
}

/// Server side of the CONNECT stream: the request, then the client's capsules.
#[derive(Debug, Default)]
pub struct ConnectReader {
    frames: MessageFrames,
}

impl ConnectReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// Consumes bytes of the request stream (from its first byte: `bidi_header` consumes
    /// nothing for a request) and returns how many, with at most one event. Call again with
    /// the rest while events keep coming.
    pub fn feed(&mut self, buf: &[u8]) -> Result<(usize, ConnectProgress), Error> {
        let mut pos = 0;
        let progress = match self.frames.step(buf, &mut pos)? {
            Step::NeedMore => ConnectProgress::NeedMore,
            Step::Capsule(capsule) => ConnectProgress::Capsule(capsule),
            Step::TooLarge => {
                self.frames.phase = Phase::Discard;
                // RFC 9114 §4.2.2: a server may answer an oversized header section with 431.
                ConnectProgress::Reject(reject(431, "header section too large"))
            }
            Step::Headers(payload) => {
                let parsed = match qpack::decode_section(payload, MAX_FIELD_SECTION_SIZE) {
                    Ok(fields) => parse_request(&fields),
                    Err(SectionError::TooLarge) => Err(reject(431, "header section too large")),
                    Err(SectionError::Qpack(err)) => return Err(err),
                };
                match parsed {
                    Ok(request) => {
                        self.frames.phase = Phase::Body;
                        ConnectProgress::Request(request)
                    }
                    Err(rejection) => {
                        self.frames.phase = Phase::Discard;
                        ConnectProgress::Reject(rejection)
                    }
                }
            }
        };
        Ok((pos, progress))
    }

    /// Checks the stream's clean end (FIN) with `unconsumed` bytes left over. `Ok` means the
    /// session ended; without a close capsule that is code 0 with an empty reason.
    pub fn finish(&self, unconsumed: usize) -> Result<(), Error> {
        if matches!(self.frames.phase, Phase::Head) {
            return Err(Error::stream(
                H3_REQUEST_INCOMPLETE,
                "request stream ended before the request",
            ));
        }
        self.frames.finish(unconsumed)
    }
}

/// The server's answer, as a client sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// WT-Protocol, when the server chose one of ours.
    pub protocol: Option<String>,
}

impl Response {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponseProgress {
    NeedMore,
    /// The final response. Only a 2xx opens the session; after any other status the reader
    /// discards the body.
    Response(Response),
    Capsule(Capsule),
}

/// Client side of the CONNECT stream: the response (interim 1xx skipped), then capsules.
#[derive(Debug, Default)]
pub struct ResponseReader {
    frames: MessageFrames,
}

impl ResponseReader {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn feed(&mut self, buf: &[u8]) -> Result<(usize, ResponseProgress), Error> {
        let mut pos = 0;
        loop {
            let progress = match self.frames.step(buf, &mut pos)? {
                Step::NeedMore => ResponseProgress::NeedMore,
                Step::Capsule(capsule) => ResponseProgress::Capsule(capsule),
                Step::TooLarge => {
                    return Err(Error::stream(
                        H3_EXCESSIVE_LOAD,
                        "response headers too large",
                    ));
                }
                Step::Headers(payload) => {
                    let fields = match qpack::decode_section(payload, MAX_FIELD_SECTION_SIZE) {
                        Ok(fields) => fields,
                        Err(SectionError::TooLarge) => {
                            return Err(Error::stream(
                                H3_EXCESSIVE_LOAD,
                                "response headers too large",
                            ));
                        }
                        Err(SectionError::Qpack(err)) => return Err(err),
                    };
                    let Some(response) = parse_response(&fields)? else {
                        // Interim 1xx: the final response is still to come.
                        continue;
                    };
                    self.frames.phase = if response.is_success() {
                        Phase::Body
                    } else {
                        Phase::Discard
                    };
                    ResponseProgress::Response(response)
                }
            };
            return Ok((pos, progress));
        }
    }

    /// As [`ConnectReader::finish`]; a stream that ends before the final response is a
    /// malformed response.
    pub fn finish(&self, unconsumed: usize) -> Result<(), Error> {
        if matches!(self.frames.phase, Phase::Head) {
            return Err(Error::stream(
                H3_MESSAGE_ERROR,
                "CONNECT stream ended before the response",
            ));
        }
        self.frames.finish(unconsumed)
    }
}

/// Where a request stream is in its frame sequence (RFC 9114 §4.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Phase {
    /// Before the (final) HEADERS.
    #[default]
    Head,
    /// DATA frames carry capsules.
    Body,
    /// After trailers: only unknown frames may follow.
    Trailed,
    /// After CLOSE_WEBTRANSPORT_SESSION: nothing may follow.
    Closed,
    /// A refused request or failed response: drop everything.
    Discard,
}

enum Step<'a> {
    NeedMore,
    /// A complete HEADERS payload before the body.
    Headers(&'a [u8]),
    /// A HEADERS frame longer than we buffer; its header was consumed.
    TooLarge,
    Capsule(Capsule),
}

/// The frame layer shared by both ends of a CONNECT stream.
#[derive(Debug, Default)]
struct MessageFrames {
    phase: Phase,
    /// Payload bytes of an ignored frame still to drop.
    skip: u64,
    /// Payload bytes of the current DATA frame not yet given to the capsule parser.
    data_left: u64,
    capsules: CapsuleParser,
}

impl MessageFrames {
    fn step<'a>(&mut self, buf: &'a [u8], pos: &mut usize) -> Result<Step<'a>, Error> {
        loop {
            if self.phase == Phase::Discard {
                *pos = buf.len();
                return Ok(Step::NeedMore);
            }
            if self.phase == Phase::Closed && *pos < buf.len() {
                // draft-ietf-webtrans-http3: data after the close capsule resets the stream.
                return Err(Error::stream(
                    H3_MESSAGE_ERROR,
                    "data after CLOSE_WEBTRANSPORT_SESSION",
                ));
            }
            if self.skip > 0 {
                let n = (buf.len() - *pos).min(self.skip as usize);
                *pos += n;
                self.skip -= n as u64;
                if self.skip > 0 {
                    return Ok(Step::NeedMore);
                }
            }
            if self.data_left > 0 {
                let left = usize::try_from(self.data_left).unwrap_or(usize::MAX);
                let end = pos.saturating_add(left).min(buf.len());
                let (n, capsule) = self.capsules.push(&buf[*pos..end])?;
                *pos += n;
                self.data_left -= n as u64;
                if let Some(capsule) = capsule {
                    if matches!(capsule, Capsule::CloseWebTransportSession { .. }) {
                        self.phase = Phase::Closed;
                    }
                    return Ok(Step::Capsule(capsule));
                }
                if self.data_left > 0 {
                    return Ok(Step::NeedMore);
                }
            }
            let Some(header) = FrameHeader::parse(&buf[*pos..]) else {
                return Ok(Step::NeedMore);
            };
            check_request_frame(header.typ)?;
            match (self.phase, header.typ) {
                (Phase::Head, HEADERS) => {
                    if header.len > MAX_FIELD_SECTION_SIZE {
                        *pos += header.size;
                        return Ok(Step::TooLarge);
                    }
                    let Some(payload) = header.payload(&buf[*pos..]) else {
                        return Ok(Step::NeedMore);
                    };
                    *pos += header.size + payload.len();
                    return Ok(Step::Headers(payload));
                }
                (Phase::Head, DATA) => {
                    return Err(Error::connection(
                        H3_FRAME_UNEXPECTED,
                        "DATA before HEADERS",
                    ));
                }
                (Phase::Body, DATA) => self.data_left = header.len,
                (Phase::Body, HEADERS) => {
                    // Trailers: nothing in them matters to a session, and with no dynamic
                    // table they can be dropped undecoded.
                    if !self.capsules.is_idle() {
                        return Err(Error::stream(H3_MESSAGE_ERROR, "trailers inside a capsule"));
                    }
                    if header.len > MAX_FIELD_SECTION_SIZE {
                        return Err(Error::stream(H3_EXCESSIVE_LOAD, "trailers too large"));
                    }
                    self.phase = Phase::Trailed;
                    self.skip = header.len;
                }
                (Phase::Trailed, DATA | HEADERS) => {
                    return Err(Error::connection(
                        H3_FRAME_UNEXPECTED,
                        "frame after trailers",
                    ));
                }
                // Grease and unknown frame types are ignored (RFC 9114 §9).
                _ => self.skip = header.len,
            }
            *pos += header.size;
        }
    }

    fn finish(&self, unconsumed: usize) -> Result<(), Error> {
        if matches!(self.phase, Phase::Discard) {
            return Ok(());
        }
        if unconsumed > 0 || self.skip > 0 || self.data_left > 0 {
            // RFC 9114 §7.1: a stream that ends inside a frame.
            return Err(Error::connection(
                H3_FRAME_ERROR,
                "stream ended inside a frame",
            ));
        }
        if !self.capsules.is_idle() {
            return Err(Error::stream(
                H3_MESSAGE_ERROR,
                "stream ended inside a capsule",
            ));
        }
        Ok(())
    }
}

const fn malformed(reason: &'static str) -> Rejection {
    // RFC 9114 §4.1.2: a malformed request is a stream error (H3_MESSAGE_ERROR), and the server
    // may answer it first; 400 tells a browser what went wrong.
    reject(400, reason)
}

/// Validates the CONNECT request, in this order, each with the status a client can act on:
/// 1. a malformed message (RFC 9114 §4.1.2, §4.2, §4.3): 400;
/// 2. a well-formed request with another method: 405 with `allow: CONNECT`, since WebTransport
///    is all this resource does (RFC 9110 §15.5.6);
/// 3. a CONNECT that is not a WebTransport extended CONNECT (classic proxy CONNECT, missing
///    `:scheme`/`:path`/`:authority`, `:scheme` other than https, another `:protocol`): 400,
///    as RFC 9220 and the WebTransport draft define no better status.
///
/// A 404 (unknown root) or 401/403 (bad token) is the caller's decision after this.
fn parse_request(fields: &[Field]) -> Result<Request, Rejection> {
    let mut method = None;
    let mut scheme = None;
    let mut authority = None;
    let mut path = None;
    let mut protocol = None;
    let mut available: Vec<&[u8]> = Vec::new();
    let mut origin = None;
    let mut regular = false;

    for field in fields {
        check_value(&field.value)?;
        let name = field.name.as_slice();
        if name.first() == Some(&b':') {
            if regular {
                return Err(malformed("pseudo-header after a regular field"));
            }
            let slot = match name {
                b":method" => &mut method,
                b":scheme" => &mut scheme,
                b":authority" => &mut authority,
                b":path" => &mut path,
                b":protocol" => &mut protocol,
                _ => return Err(malformed("unknown or response pseudo-header")),
            };
            if slot.replace(field.value.as_slice()).is_some() {
                return Err(malformed("duplicate pseudo-header"));
            }
            continue;
        }
        regular = true;
        check_name(name)?;
        // RFC 9114 §4.2: TE may only say "trailers".
        if name == b"te" && field.value != b"trailers" {
            return Err(malformed("TE other than trailers"));
        }
        match name {
            b"wt-available-protocols" => available.push(&field.value),
            b"origin" => origin = Some(field.value.as_slice()),
            _ => {}
        }
    }

    let Some(method) = method else {
        return Err(malformed("missing :method"));
    };
    if method != b"CONNECT" {
        // RFC 9114 §4.3.1: every other request carries :scheme and :path, and :protocol is
        // CONNECT's alone.
        if scheme.is_none() || path.is_none() || protocol.is_some() {
            return Err(malformed("request without :scheme or :path"));
        }
        return Err(reject(405, "only CONNECT is served here"));
    }
    let Some(protocol) = protocol else {
        return Err(reject(
            400,
            "CONNECT without :protocol; this is not a proxy",
        ));
    };
    let (Some(scheme), Some(authority), Some(path)) = (scheme, authority, path) else {
        return Err(malformed(
            "extended CONNECT without :scheme, :authority or :path",
        ));
    };
    if !PROTOCOL_TOKENS.contains(&protocol) {
        return Err(reject(400, ":protocol is not webtransport"));
    }
    if scheme != b"https" {
        return Err(reject(400, ":scheme is not https"));
    }
    // RFC 9114 §4.3.1: no userinfo in :authority.
    if authority.is_empty() || authority.contains(&b'@') {
        return Err(malformed("empty :authority or one with userinfo"));
    }
    let authority = std::str::from_utf8(authority).map_err(|_| malformed("invalid :authority"))?;
    if path.first() != Some(&b'/') {
        return Err(malformed(":path is not an absolute path"));
    }
    let path = std::str::from_utf8(path).map_err(|_| malformed("invalid :path"))?;
    let (raw_root, query) = path.split_once('?').unwrap_or((path, ""));
    let root = normalize_root(raw_root).ok_or(malformed("path is not UTF-8 once decoded"))?;
    let jwt = query_param(query, "jwt").ok_or(malformed("jwt is not UTF-8 once decoded"))?;
    let origin = origin
        .map(|o| std::str::from_utf8(o).map(str::to_owned))
        .transpose()
        .map_err(|_| malformed("invalid origin"))?;

    Ok(Request {
        authority: authority.to_owned(),
        path: path.to_owned(),
        protocols: parse_protocols(&available),
        jwt,
        root,
        origin,
    })
}

/// RFC 9114 §4.2: names are lower-case tokens (RFC 9110 §5.1), and connection-specific fields
/// are malformed in HTTP/3.
fn check_name(name: &[u8]) -> Result<(), Rejection> {
    let token =
        |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&c);
    if name.is_empty() || !name.iter().all(|&c| token(c)) {
        return Err(malformed("invalid field name"));
    }
    if matches!(
        name,
        b"connection" | b"keep-alive" | b"proxy-connection" | b"transfer-encoding" | b"upgrade"
    ) {
        return Err(malformed("connection-specific field"));
    }
    Ok(())
}

/// RFC 9114 §4.2 / RFC 9110 §5.5: no NUL, CR or LF, and no leading or trailing whitespace.
fn check_value(value: &[u8]) -> Result<(), Rejection> {
    let space = |c: &u8| *c == b' ' || *c == b'\t';
    if value.iter().any(|&c| c == 0 || c == b'\r' || c == b'\n')
        || value.first().is_some_and(space)
        || value.last().is_some_and(space)
    {
        return Err(malformed("invalid field value"));
    }
    Ok(())
}

/// Percent-decodes the path and normalises it into a broadcast root. Dot segments are resolved
/// as a URL parser (and so the reference relay) would; an encoded `/` becomes a separator.
/// `None` if the decoded bytes are not UTF-8.
fn normalize_root(raw: &str) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    for segment in raw.split('/') {
        let decoded = percent_decode(segment.as_bytes()).decode_utf8().ok()?;
        match decoded.as_ref() {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            _ => parts.extend(
                decoded
                    .split('/')
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned),
            ),
        }
    }
    Some(parts.join("/"))
}

/// WT-Available-Protocols: an sf-list of sf-strings; several field lines join with commas
/// (RFC 8941 §4.2). Anything else is ignored, leaving the choice to SETUP.
fn parse_protocols(lines: &[&[u8]]) -> Vec<String> {
    if lines.is_empty() {
        return Vec::new();
    }
    let joined = lines.join(&b", "[..]);
    let Ok(list) = sfv::Parser::new(&joined).parse::<sfv::List>() else {
        return Vec::new();
    };
    let mut protocols = Vec::with_capacity(list.len());
    for entry in &list {
        let sfv::ListEntry::Item(item) = entry else {
            return Vec::new();
        };
        let Some(s) = item.bare_item.as_string() else {
            return Vec::new();
        };
        protocols.push(s.as_str().to_owned());
    }
    protocols
}

/// Parses a response field section: `Ok(None)` for an interim 1xx.
fn parse_response(fields: &[Field]) -> Result<Option<Response>, Error> {
    let bad = |reason| Error::stream(H3_MESSAGE_ERROR, reason);
    let mut status = None;
    let mut protocol = None;
    let mut regular = false;
    for field in fields {
        match field.name.as_slice() {
            b":status" if !regular && status.is_none() => status = Some(field.value.as_slice()),
            name if name.first() == Some(&b':') => {
                return Err(bad("bad pseudo-header in response"));
            }
            b"wt-protocol" => {
                regular = true;
                protocol = Some(field.value.as_slice());
            }
            _ => regular = true,
        }
    }
    let status = status
        .filter(|s| s.len() == 3 && s.iter().all(u8::is_ascii_digit))
        .and_then(|s| std::str::from_utf8(s).ok()?.parse::<u16>().ok())
        .filter(|s| (100..600).contains(s))
        .ok_or(bad("missing or invalid :status"))?;
    if status == 101 {
        // RFC 9114 §4.5: no Upgrade in HTTP/3.
        return Err(bad("101 in HTTP/3"));
    }
    if status < 200 {
        return Ok(None);
    }
    let protocol = match protocol {
        None => None,
        Some(value) => {
            let item = sfv::Parser::new(value)
                .parse::<sfv::Item>()
                .map_err(|_| bad("WT-Protocol is not a structured field"))?;
            let s = item
                .bare_item
                .as_string()
                .ok_or(bad("WT-Protocol is not a string"))?;
            Some(s.as_str().to_owned())
        }
    };
    Ok(Some(Response { status, protocol }))
}

/// An sf-string (RFC 8941 §3.3.3): printable ASCII, with `"` and `\` escaped.
fn sf_string(s: &str) -> String {
    debug_assert!(s.bytes().all(|c| (0x20..0x7f).contains(&c)));
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars().filter(|c| (' '..='~').contains(c)) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// The HEADERS frame answering a CONNECT: `:status`, `sec-webtransport-http3-draft: draft02`
/// (older Chromium waits for it; the reference sends it on every response), `wt-protocol` as
/// an sf-string when a protocol was chosen, and `allow: CONNECT` on a 405 (RFC 9110 §15.5.6).
/// `protocol` must be printable ASCII; it is one of our own ALPN strings.
pub fn response(status: u16, protocol: Option<&str>) -> Bytes {
    debug_assert!((100..1000).contains(&status));
    let status = status.to_string();
    let protocol = protocol.map(sf_string);
    let mut fields = vec![
        (":status", status.as_str()),
        ("sec-webtransport-http3-draft", "draft02"),
    ];
    if let Some(protocol) = &protocol {
        fields.push((SELECTED_PROTOCOL, protocol));
    }
    if status == "405" {
        fields.push(("allow", "CONNECT"));
    }
    headers_frame(&fields)
}

/// The HEADERS frame of a WebTransport CONNECT, for our load generator and tests. `path` is
/// sent as given (query included); `protocols` become WT-Available-Protocols when non-empty.
pub fn connect_request(authority: &str, path: &str, protocols: &[&str]) -> Bytes {
    let list = protocols
        .iter()
        .map(|p| sf_string(p))
        .collect::<Vec<_>>()
        .join(", ");
    let mut fields = vec![
        (":method", "CONNECT"),
        (":protocol", "webtransport"),
        (":scheme", "https"),
        (":authority", authority),
        (":path", path),
    ];
    if !protocols.is_empty() {
        fields.push((AVAILABLE_PROTOCOLS, &list));
    }
    headers_frame(&fields)
}

fn headers_frame(fields: &[(&str, &str)]) -> Bytes {
    let mut section = BytesMut::new();
    qpack::encode_section(fields, &mut section);
    let mut out = BytesMut::with_capacity(section.len() + 4);
    put_frame_header(&mut out, HEADERS, section.len());
    out.extend_from_slice(&section);
    out.freeze()
}

/// The subprotocol to answer with: the first of the client's offers (its preference order)
/// that we support, as the reference server picks. `None` sends no WT-Protocol, and the
/// session falls back to the lite-01/02 SETUP exchange.
pub fn choose_protocol(offered: &[String], supported: &[&str]) -> Option<String> {
    offered
        .iter()
        .find(|p| supported.contains(&p.as_str()))
        .cloned()
}
