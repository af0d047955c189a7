//! Byte-exact tests of the HTTP/3 + WebTransport layer, cross-checked against
//! web-transport-proto's codecs where it has them.

use bytes::BytesMut;
use web_transport_proto::{ConnectError, Setting, VarInt};

use super::frame::{put_frame_header, put_varint};
use super::qpack::{self, STATIC_TABLE, put_prefix_int};
use super::*;
use crate::lite::{ErrorCode, Version};

// ---------------------------------------------------------------------------------------------
// Helpers.

/// A HEADERS frame around a field section.
fn headers(section: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    put_frame_header(&mut out, 0x01, section.len());
    out.extend_from_slice(section);
    out
}

fn frame(typ: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    put_frame_header(&mut out, typ, payload.len());
    out.extend_from_slice(payload);
    out
}

/// Reserved frame types are 0x1f * N + 0x21.
fn grease(n: u64) -> u64 {
    0x1f * n + 0x21
}

fn huffman(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    httlib_huffman::encode(s.as_bytes(), &mut out).unwrap();
    out
}

/// A field section built line by line, the way a real encoder lays it out.
struct Section(Vec<u8>);

impl Section {
    fn new() -> Self {
        Self(vec![0, 0])
    }

    fn indexed(mut self, index: u64) -> Self {
        put_prefix_int(&mut self.0, 0xc0, 6, index);
        self
    }

    fn string(&mut self, flag: u8, bits: u8, s: &str, huff: bool) {
        if huff {
            let h = huffman(s);
            put_prefix_int(&mut self.0, flag | (1 << bits), bits, h.len() as u64);
            self.0.extend_from_slice(&h);
        } else {
            put_prefix_int(&mut self.0, flag, bits, s.len() as u64);
            self.0.extend_from_slice(s.as_bytes());
        }
    }

    /// Literal with a static name reference; `never` sets the N bit.
    fn name_ref(mut self, index: u64, value: &str, huff: bool, never: bool) -> Self {
        put_prefix_int(&mut self.0, if never { 0x70 } else { 0x50 }, 4, index);
        self.string(0, 7, value, huff);
        self
    }

    fn literal(mut self, name: &str, value: &str, huff: bool) -> Self {
        self.string(0x20, 3, name, huff);
        self.string(0, 7, value, huff);
        self
    }

    fn raw(mut self, bytes: &[u8]) -> Self {
        self.0.extend_from_slice(bytes);
        self
    }

    fn frame(&self) -> Vec<u8> {
        headers(&self.0)
    }
}

/// A valid WebTransport request with every pseudo-header as a plain literal, so a test can
/// drop or replace one.
fn request_lines(skip: &str, replace: Option<(&str, &str)>) -> Section {
    let mut section = Section::new();
    for (name, value) in [
        (":method", "CONNECT"),
        (":protocol", "webtransport"),
        (":scheme", "https"),
        (":authority", "relay.example"),
        (":path", "/room"),
    ] {
        if name == skip {
            continue;
        }
        let value = match replace {
            Some((n, v)) if n == name => v,
            _ => value,
        };
        section = section.literal(name, value, false);
    }
    section
}

/// Feeds `bytes` in `chunk`-sized pieces the way a stream driver would: append, feed, drop
/// what was consumed. Returns the events and how many bytes stayed unconsumed.
fn run_connect(
    reader: &mut ConnectReader,
    bytes: &[u8],
    chunk: usize,
) -> Result<(Vec<ConnectProgress>, usize), Error> {
    let mut buf = Vec::new();
    let mut events = Vec::new();
    for piece in bytes.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            let (n, progress) = reader.feed(&buf)?;
            assert!(n <= buf.len());
            buf.drain(..n);
            if progress == ConnectProgress::NeedMore {
                break;
            }
            events.push(progress);
        }
    }
    Ok((events, buf.len()))
}

fn connect_events(bytes: &[u8]) -> Result<Vec<ConnectProgress>, Error> {
    run_connect(&mut ConnectReader::new(), bytes, usize::MAX).map(|(events, _)| events)
}

fn first_event(bytes: &[u8]) -> Result<ConnectProgress, Error> {
    Ok(connect_events(bytes)?
        .into_iter()
        .next()
        .unwrap_or(ConnectProgress::NeedMore))
}

fn rejected(bytes: &[u8]) -> u16 {
    match first_event(bytes) {
        Ok(ConnectProgress::Reject(rejection)) => rejection.status,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

fn run_response(
    reader: &mut ResponseReader,
    bytes: &[u8],
    chunk: usize,
) -> Result<(Vec<ResponseProgress>, usize), Error> {
    let mut buf = Vec::new();
    let mut events = Vec::new();
    for piece in bytes.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            let (n, progress) = reader.feed(&buf)?;
            buf.drain(..n);
            if progress == ResponseProgress::NeedMore {
                break;
            }
            events.push(progress);
        }
    }
    Ok((events, buf.len()))
}

fn run_control(reader: &mut ControlReader, bytes: &[u8], chunk: usize) -> Result<usize, Error> {
    let mut buf = Vec::new();
    for piece in bytes.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        let n = reader.feed(&buf)?;
        buf.drain(..n);
    }
    Ok(buf.len())
}

fn control_error(payload: &[u8]) -> Error {
    ControlReader::new(true).feed(payload).unwrap_err()
}

// ---------------------------------------------------------------------------------------------
// SETTINGS and the control stream.

const SERVER_SETTINGS: [u8; 35] = [
    0x01, 0x00, // QPACK_MAX_TABLE_CAPACITY 0
    0x06, 0x80, 0x00, 0x40, 0x00, // MAX_FIELD_SECTION_SIZE 16384
    0x08, 0x01, // ENABLE_CONNECT_PROTOCOL
    0x33, 0x01, // H3_DATAGRAM
    0x80, 0xff, 0xd2, 0x77, 0x01, // H3_DATAGRAM draft-04
    0xab, 0x60, 0x37, 0x42, 0x01, // ENABLE_WEBTRANSPORT draft-02
    0xab, 0x60, 0x37, 0x43, 0x01, // WEBTRANSPORT_MAX_SESSIONS draft-06
    0xc0, 0x00, 0x00, 0x00, 0xc6, 0x71, 0x70, 0x6a, 0x01, // WEBTRANSPORT_MAX_SESSIONS
];

#[test]
fn control_stream_bytes() {
    let mut server = vec![0x00, 0x04, 35];
    server.extend_from_slice(&SERVER_SETTINGS);
    assert_eq!(control_stream(true)[..], server[..]);

    // A client leaves out ENABLE_CONNECT_PROTOCOL.
    let mut client = vec![0x00, 0x04, 33];
    client.extend_from_slice(&SERVER_SETTINGS[..7]);
    client.extend_from_slice(&SERVER_SETTINGS[9..]);
    assert_eq!(control_stream(false)[..], client[..]);
}

#[test]
fn control_stream_is_understood_by_web_transport_proto_and_ourselves() {
    for server in [true, false] {
        let bytes = control_stream(server);
        let decoded = web_transport_proto::Settings::decode(&mut &bytes[..]).unwrap();
        assert_eq!(decoded.supports_webtransport(), 1);
        assert_eq!(
            decoded.get(&Setting::ENABLE_CONNECT_PROTOCOL).is_some(),
            server
        );

        let (kind, n) = uni_header(&bytes).unwrap().unwrap();
        assert_eq!((kind, n), (UniStream::Control, 1));
        let mut reader = ControlReader::new(!server);
        assert_eq!(reader.feed(&bytes[n..]).unwrap(), bytes.len() - 1);
        assert!(reader.supports_webtransport());
        assert_eq!(reader.webtransport_sessions(), 1);
        assert_eq!(reader.enable_connect_protocol(), server);
        let settings = reader.settings().unwrap();
        assert_eq!(
            settings.get(&Setting::MAX_FIELD_SECTION_SIZE),
            Some(&VarInt::from_u32(16384))
        );
    }
}

/// SETTINGS as Chromium's client sends them: a non-zero QPACK table, blocked streams, both
/// datagram code points, the draft-02 ENABLE, a grease setting, then a grease frame.
fn chromium_control() -> Vec<u8> {
    let mut payload = Vec::new();
    for (id, value) in [
        (0x01, 65536),
        (0x06, 262_144),
        (0x07, 100),
        (0x33, 1),
        (0xff_d277, 1),
        (0x2b60_3742, 1),
        (0x1f * 0x1234_5678 + 0x21, 0x1f2e_3d4c),
    ] {
        put_varint(&mut payload, id);
        put_varint(&mut payload, value);
    }
    let mut stream = frame(0x04, &payload);
    stream.extend(frame(grease(7), b"grease!"));
    stream.extend(frame(0x0d, &[0x05])); // MAX_PUSH_ID 5: we never push
    stream.extend(frame(0x2f_0000, &[1, 2, 3])); // unknown frame type
    stream
}

#[test]
fn chromium_settings_at_every_cut_point() {
    let stream = chromium_control();
    for chunk in 1..=stream.len() {
        let mut reader = ControlReader::new(true);
        assert_eq!(run_control(&mut reader, &stream, chunk).unwrap(), 0);
        assert!(reader.supports_webtransport(), "chunk {chunk}");
        let settings = reader.settings().unwrap();
        assert_eq!(settings.len(), 6, "the grease setting is dropped");
        assert_eq!(
            settings.get(&Setting::QPACK_BLOCKED_STREAMS),
            Some(&VarInt::from_u32(100))
        );
        assert!(!reader.enable_connect_protocol());
    }
    // Until the SETTINGS frame is whole nothing is consumed or known.
    let mut reader = ControlReader::new(true);
    assert_eq!(reader.feed(&stream[..10]).unwrap(), 0);
    assert!(reader.settings().is_none());
    assert!(!reader.supports_webtransport());
}

#[test]
fn control_stream_violations() {
    let settings = frame(0x04, &[0x33, 0x01]);
    let code = |bytes: &[u8]| control_error(bytes).code;

    // The first frame must be SETTINGS, even ahead of grease.
    assert_eq!(code(&frame(grease(1), b"")), H3_MISSING_SETTINGS);
    assert_eq!(code(&frame(0x07, &[0x00])), H3_MISSING_SETTINGS);
    // Then no second SETTINGS, and no request frames.
    for later in [frame(0x04, &[]), frame(0x00, b"x"), frame(0x01, b"x")] {
        let mut bytes = settings.clone();
        bytes.extend(later);
        assert_eq!(code(&bytes), H3_FRAME_UNEXPECTED);
    }
    // HTTP/2 frame types are reserved.
    let mut bytes = settings.clone();
    bytes.extend(frame(0x06, b""));
    assert_eq!(code(&bytes), H3_FRAME_UNEXPECTED);
    // Duplicate and HTTP/2 setting identifiers, booleans above 1.
    assert_eq!(
        code(&frame(0x04, &[0x33, 0x01, 0x33, 0x01])),
        H3_SETTINGS_ERROR
    );
    assert_eq!(code(&frame(0x04, &[0x02, 0x00])), H3_SETTINGS_ERROR);
    assert_eq!(code(&frame(0x04, &[0x33, 0x02])), H3_SETTINGS_ERROR);
    assert_eq!(code(&frame(0x04, &[0x08, 0x02])), H3_SETTINGS_ERROR);
    // A setting cut inside its frame.
    assert_eq!(code(&frame(0x04, &[0x33])), H3_FRAME_ERROR);
    assert_eq!(code(&frame(0x04, &[0x33, 0x40])), H3_FRAME_ERROR);
    // An oversized SETTINGS is refused from its header alone.
    assert_eq!(code(&[0x04, 0x80, 0x01, 0x00, 0x00]), H3_EXCESSIVE_LOAD);
    assert!(control_error(&[0x04, 0x80, 0x01, 0x00, 0x00]).is_connection());

    // MAX_PUSH_ID only travels client to server.
    let mut bytes = settings.clone();
    bytes.extend(frame(0x0d, &[0x00]));
    assert_eq!(
        ControlReader::new(false).feed(&bytes).unwrap_err().code,
        H3_FRAME_UNEXPECTED
    );
    assert_eq!(ControlReader::new(true).feed(&bytes), Ok(bytes.len()));
}

#[test]
fn goaway_is_tracked_and_may_only_shrink() {
    let mut bytes = frame(0x04, &[]);
    bytes.extend(frame(0x07, &[0x08]));
    let mut client = ControlReader::new(false);
    assert_eq!(client.feed(&bytes), Ok(bytes.len()));
    assert_eq!(client.goaway(), Some(8));
    assert_eq!(client.feed(&frame(0x07, &[0x04])), Ok(3));
    assert_eq!(client.goaway(), Some(4));
    assert_eq!(
        client.feed(&frame(0x07, &[0x08])).unwrap_err().code,
        H3_ID_ERROR
    );
    // From a server the id must be a client bidi stream; trailing bytes are a frame error.
    let mut client = ControlReader::new(false);
    client.feed(&frame(0x04, &[])).unwrap();
    assert_eq!(
        client.feed(&frame(0x07, &[0x05])).unwrap_err().code,
        H3_ID_ERROR
    );
    assert_eq!(
        client.feed(&frame(0x07, &[0x04, 0x00])).unwrap_err().code,
        H3_FRAME_ERROR
    );
    // A client's GOAWAY carries a push id, any value.
    let mut server = ControlReader::new(true);
    server.feed(&frame(0x04, &[])).unwrap();
    assert_eq!(server.feed(&frame(0x07, &[0x05])), Ok(3));
}

#[test]
fn goaway_frame_bytes() {
    assert_eq!(goaway_frame(4)[..], [0x07, 0x01, 0x04]);
    assert_eq!(
        goaway_frame(1 << 20)[..],
        [0x07, 0x04, 0x80, 0x10, 0x00, 0x00]
    );
    let mut client = ControlReader::new(false);
    let mut bytes = control_stream(true)[1..].to_vec();
    bytes.extend_from_slice(&goaway_frame(8));
    assert_eq!(client.feed(&bytes), Ok(bytes.len()));
    assert_eq!(client.goaway(), Some(8));
}

#[test]
fn huge_unknown_control_frame_streams_past() {
    let mut reader = ControlReader::new(true);
    reader.feed(&frame(0x04, &[])).unwrap();
    let mut head = Vec::new();
    put_varint(&mut head, grease(3));
    put_varint(&mut head, 1_000_000);
    assert_eq!(reader.feed(&head), Ok(head.len()));
    let chunk = vec![0xaa; 4096];
    let mut left = 1_000_000;
    while left > 0 {
        let n = left.min(chunk.len());
        assert_eq!(reader.feed(&chunk[..n]), Ok(n));
        left -= n;
    }
    // The next frame is parsed again.
    assert_eq!(
        reader
            .feed(&frame(0x07, &[0x02]))
            .map(|n| (n, reader.goaway())),
        Ok((3, Some(2)))
    );
}

// ---------------------------------------------------------------------------------------------
// Stream headers and datagrams.

#[test]
fn uni_headers_at_every_cut_point() {
    let cases: Vec<(Vec<u8>, UniStream)> = vec![
        (vec![0x00], UniStream::Control),
        (vec![0x01], UniStream::Push),
        (vec![0x02], UniStream::QpackEncoder),
        (vec![0x03], UniStream::QpackDecoder),
        (
            vec![0x40, 0x54, 0x00],
            UniStream::WebTransport { session: 0 },
        ),
        (
            vec![0x40, 0x54, 0x80, 0x00, 0x40, 0x00],
            UniStream::WebTransport { session: 16384 },
        ),
        (vec![0x21], UniStream::Unknown(0x21)),
        (vec![0x7f, 0xff], UniStream::Unknown(0x3fff)),
    ];
    for (header, kind) in cases {
        for cut in 0..header.len() {
            assert_eq!(
                uni_header(&header[..cut]),
                Ok(None),
                "{header:x?} cut {cut}"
            );
        }
        let mut with_data = header.clone();
        with_data.extend_from_slice(b"payload");
        assert_eq!(uni_header(&with_data), Ok(Some((kind, header.len()))));
    }
    assert_eq!(uni_prefix(0)[..], [0x40, 0x54, 0x00]);
    assert_eq!(uni_prefix(8)[..], [0x40, 0x54, 0x08]);
    assert_eq!(
        uni_header(&uni_prefix(1 << 40)),
        Ok(Some((UniStream::WebTransport { session: 1 << 40 }, 10)))
    );
    // Only a client-initiated bidi stream can be a session.
    for session in [1, 2, 3, 6] {
        let mut bytes = vec![0x40, 0x54];
        put_varint(&mut bytes, session);
        assert_eq!(uni_header(&bytes).unwrap_err().code, H3_ID_ERROR);
    }
}

#[test]
fn bidi_headers_at_every_cut_point() {
    let header = bidi_prefix(4);
    assert_eq!(header[..], [0x40, 0x41, 0x04]);
    for cut in 0..header.len() {
        assert_eq!(bidi_header(&header[..cut]), Ok(None), "cut {cut}");
    }
    let mut with_data = header.to_vec();
    with_data.extend_from_slice(b"moq");
    assert_eq!(
        bidi_header(&with_data),
        Ok(Some((BidiStream::WebTransport { session: 4 }, 3)))
    );
    // A request stream starts with a frame type other than 0x41; nothing is consumed.
    let request = connect_request("a.example", "/", &[]);
    assert_eq!(bidi_header(&request), Ok(Some((BidiStream::Request, 0))));
    assert_eq!(bidi_header(&[0x21]), Ok(Some((BidiStream::Request, 0))));
    // 0x40 starts a two-byte varint that may still turn out to be 0x41.
    assert_eq!(bidi_header(&[0x40]), Ok(None));
    assert_eq!(
        bidi_header(&[0x40, 0x41, 0x05]).unwrap_err().code,
        H3_ID_ERROR
    );
}

#[test]
fn critical_streams_are_unique() {
    let mut peer = PeerStreams::default();
    for kind in [
        UniStream::Control,
        UniStream::QpackEncoder,
        UniStream::QpackDecoder,
        UniStream::WebTransport { session: 0 },
        UniStream::WebTransport { session: 0 },
        UniStream::Unknown(0x21),
    ] {
        peer.accept(kind).unwrap();
    }
    for kind in [
        UniStream::Control,
        UniStream::QpackEncoder,
        UniStream::QpackDecoder,
    ] {
        assert_eq!(
            peer.accept(kind).unwrap_err().code,
            H3_STREAM_CREATION_ERROR
        );
    }
    assert_eq!(
        Error::closed_critical_stream().code,
        H3_CLOSED_CRITICAL_STREAM
    );
}

#[test]
fn datagrams_use_the_quarter_stream_id() {
    assert_eq!(datagram_prefix(0)[..], [0x00]);
    assert_eq!(datagram_prefix(4)[..], [0x01]);
    assert_eq!(datagram_prefix(400)[..], [0x40, 0x64]);
    for session in [0, 4, 400, 1 << 40] {
        let mut datagram = datagram_prefix(session).to_vec();
        datagram.extend_from_slice(b"\x05data");
        assert_eq!(split_datagram(&datagram), Ok((session, &b"\x05data"[..])));
    }
    assert_eq!(split_datagram(&[0x00]), Ok((0, &[][..])));
    for bad in [&[][..], &[0x40], &[0xc0, 0, 0, 0, 0, 0, 0]] {
        assert_eq!(split_datagram(bad).unwrap_err().code, H3_DATAGRAM_ERROR);
    }
    // 2^60 quarter ids would overflow a stream id.
    let mut too_big = Vec::new();
    put_varint(&mut too_big, 1 << 60);
    assert_eq!(
        split_datagram(&too_big).unwrap_err().code,
        H3_DATAGRAM_ERROR
    );
}

// ---------------------------------------------------------------------------------------------
// CONNECT request and response.

#[test]
fn connect_request_bytes() {
    let bytes = connect_request(
        "relay.example:4443",
        "/room?jwt=t",
        &["moq-lite-05", "moql"],
    );
    let mut section = vec![0x00, 0x00, 0xcf]; // prefix, :method CONNECT (static 15)
    section.extend_from_slice(&[0x27, 0x02]); // literal name, length 9
    section.extend_from_slice(b":protocol");
    section.push(12);
    section.extend_from_slice(b"webtransport");
    section.push(0xd7); // :scheme https (static 23)
    section.extend_from_slice(&[0x50, 18]); // :authority (static name 0)
    section.extend_from_slice(b"relay.example:4443");
    section.extend_from_slice(&[0x51, 11]); // :path (static name 1)
    section.extend_from_slice(b"/room?jwt=t");
    section.extend_from_slice(&[0x27, 0x0f]); // literal name, length 22
    section.extend_from_slice(b"wt-available-protocols");
    section.push(21);
    section.extend_from_slice(b"\"moq-lite-05\", \"moql\"");
    assert_eq!(section.len(), 107);
    let mut expected = vec![0x01, 0x40, 107];
    expected.extend(section);
    assert_eq!(bytes[..], expected[..]);
}

#[test]
fn connect_request_round_trip_at_every_chunk_size() {
    let bytes = connect_request(
        "relay.example:4443",
        "/room/a?jwt=t0k%2Ben&x=1",
        &["moq-lite-05", "moq-lite-04", "moql"],
    );
    let expected = Request {
        authority: "relay.example:4443".into(),
        path: "/room/a?jwt=t0k%2Ben&x=1".into(),
        protocols: vec!["moq-lite-05".into(), "moq-lite-04".into(), "moql".into()],
        jwt: Some("t0k+en".into()),
        root: "room/a".into(),
        origin: None,
    };
    for chunk in 1..=bytes.len() {
        let mut reader = ConnectReader::new();
        let (events, left) = run_connect(&mut reader, &bytes, chunk).unwrap();
        assert_eq!(events, [ConnectProgress::Request(expected.clone())]);
        assert_eq!(left, 0);
        reader.finish(0).unwrap();
    }
    // Every strict prefix needs more and consumes nothing: HEADERS is taken whole.
    for cut in 0..bytes.len() {
        assert_eq!(
            ConnectReader::new().feed(&bytes[..cut]),
            Ok((0, ConnectProgress::NeedMore))
        );
        assert_eq!(
            ConnectReader::new().finish(cut).unwrap_err().code,
            H3_REQUEST_INCOMPLETE
        );
    }
}

#[test]
fn connect_request_interoperates_with_web_transport_proto() {
    // Ours, decoded by web-transport-proto.
    let bytes = connect_request("relay.example", "/a/b?jwt=x", &["moq-lite-05", "moql"]);
    let decoded = web_transport_proto::ConnectRequest::decode(&mut &bytes[..]).unwrap();
    assert_eq!(decoded.url.as_str(), "https://relay.example/a/b?jwt=x");
    assert_eq!(decoded.protocols, ["moq-lite-05", "moql"]);

    // Theirs (field order is not fixed: it comes from a HashMap), decoded by us.
    let url: url::Url = "https://relay.example:443/a/b?jwt=x".parse().unwrap();
    let theirs = web_transport_proto::ConnectRequest::new(url)
        .with_protocol("moq-lite-04")
        .with_protocol("moql");
    let mut wire = Vec::new();
    theirs.encode(&mut wire).unwrap();
    let Ok(ConnectProgress::Request(request)) = first_event(&wire) else {
        panic!("web-transport-proto's request was not accepted");
    };
    assert_eq!(request.authority, "relay.example");
    assert_eq!(request.root, "a/b");
    assert_eq!(request.jwt.as_deref(), Some("x"));
    assert_eq!(request.protocols, ["moq-lite-04", "moql"]);
}

/// A CONNECT the way Chromium's QPACK encoder writes it against a zero-capacity table:
/// static references, Huffman literals, a never-indexed line, browser headers.
fn chromium_request() -> Vec<u8> {
    // RFC 7541 C.4.1: "www.example.com", Huffman-coded.
    let authority = [
        0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff,
    ];
    Section::new()
        .indexed(15) // :method CONNECT
        .indexed(23) // :scheme https
        .raw(&[0x50, 0x80 | authority.len() as u8])
        .raw(&authority)
        .name_ref(1, "/live/room?jwt=abc.def", true, false)
        .literal(":protocol", "webtransport", true)
        .literal("sec-webtransport-http3-draft02", "1", true)
        .name_ref(90, "https://www.example.com", true, true) // origin, never indexed
        .name_ref(
            95,
            "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0",
            false,
            false,
        )
        .literal(
            "wt-available-protocols",
            "\"moq-lite-05\", \"moq-lite-04\", \"moq-lite-03\", \"moql\", \"moqt-17\"",
            true,
        )
        .frame()
}

#[test]
fn chromium_huffman_request() {
    let bytes = chromium_request();
    let expected = Request {
        authority: "www.example.com".into(),
        path: "/live/room?jwt=abc.def".into(),
        protocols: [
            "moq-lite-05",
            "moq-lite-04",
            "moq-lite-03",
            "moql",
            "moqt-17",
        ]
        .map(String::from)
        .into(),
        jwt: Some("abc.def".into()),
        root: "live/room".into(),
        origin: Some("https://www.example.com".into()),
    };
    for chunk in [1, 2, 3, 7, bytes.len()] {
        let (events, _) = run_connect(&mut ConnectReader::new(), &bytes, chunk).unwrap();
        assert_eq!(events, [ConnectProgress::Request(expected.clone())]);
    }
    // web-transport-proto agrees on what it says.
    let theirs = web_transport_proto::ConnectRequest::decode(&mut &bytes[..]).unwrap();
    assert_eq!(
        theirs.url.as_str(),
        "https://www.example.com/live/room?jwt=abc.def"
    );
    assert_eq!(theirs.protocols, expected.protocols);
}

#[test]
fn response_bytes() {
    let draft = {
        let mut d = vec![0x27, 0x15];
        d.extend_from_slice(b"sec-webtransport-http3-draft");
        d.push(7);
        d.extend_from_slice(b"draft02");
        d
    };

    let mut section = vec![0x00, 0x00, 0xd9]; // :status 200 (static 25)
    section.extend_from_slice(&draft);
    section.extend_from_slice(&[0x27, 0x04]);
    section.extend_from_slice(b"wt-protocol");
    section.push(13);
    section.extend_from_slice(b"\"moq-lite-05\"");
    let mut expected = vec![0x01, 0x40, 68];
    expected.extend_from_slice(&section);
    assert_eq!(response(200, Some("moq-lite-05"))[..], expected[..]);

    let mut section = vec![0x00, 0x00, 0xdb]; // :status 404 (static 27)
    section.extend_from_slice(&draft);
    assert_eq!(response(404, None)[..], headers(&section)[..]);

    let mut section = vec![0x00, 0x00, 0xff, 0x04]; // :status 400 (static 67)
    section.extend_from_slice(&draft);
    assert_eq!(response(400, None)[..], headers(&section)[..]);

    // 405 has no static entry: :status by name (static 24), then Allow.
    let mut section = vec![0x00, 0x00, 0x5f, 0x09, 3];
    section.extend_from_slice(b"405");
    section.extend_from_slice(&draft);
    section.push(0x25);
    section.extend_from_slice(b"allow");
    section.push(7);
    section.extend_from_slice(b"CONNECT");
    assert_eq!(response(405, None)[..], headers(&section)[..]);
}

#[test]
fn response_round_trip_and_interop() {
    for (status, protocol) in [(200, Some("moq-lite-05")), (200, None), (404, None)] {
        let bytes = response(status, protocol);
        let expected = Response {
            status,
            protocol: protocol.map(String::from),
        };
        for chunk in 1..=bytes.len() {
            let (events, left) = run_response(&mut ResponseReader::new(), &bytes, chunk).unwrap();
            assert_eq!(events, [ResponseProgress::Response(expected.clone())]);
            assert_eq!(left, 0);
        }
        // web-transport-proto reads ours: the status, and the protocol unquoted.
        match web_transport_proto::ConnectResponse::decode(&mut &bytes[..]) {
            Ok(theirs) => {
                assert_eq!(theirs.status.as_u16(), status);
                assert_eq!(theirs.protocol.as_deref(), protocol);
            }
            Err(ConnectError::WrongStatus(Some(s))) => assert_eq!(s.as_u16(), status),
            Err(err) => panic!("{err}"),
        }
    }
    // And we read theirs.
    let mut wire = Vec::new();
    web_transport_proto::ConnectResponse::OK
        .with_protocol("moq-lite-04")
        .encode(&mut wire)
        .unwrap();
    let (events, _) = run_response(&mut ResponseReader::new(), &wire, usize::MAX).unwrap();
    assert_eq!(
        events,
        [ResponseProgress::Response(Response {
            status: 200,
            protocol: Some("moq-lite-04".into())
        })]
    );
}

#[test]
fn response_reader_skips_interim_and_discards_error_bodies() {
    let mut bytes = frame(grease(2), b"x");
    bytes.extend(Section::new().indexed(63).frame()); // :status 100
    bytes.extend(Section::new().indexed(24).frame()); // :status 103
    bytes.extend_from_slice(&response(200, None));
    bytes.extend_from_slice(&close_capsule(3, "done"));
    let (events, _) = run_response(&mut ResponseReader::new(), &bytes, 5).unwrap();
    assert_eq!(
        events,
        [
            ResponseProgress::Response(Response {
                status: 200,
                protocol: None
            }),
            ResponseProgress::Capsule(Capsule::CloseWebTransportSession {
                code: 3,
                reason: "done".into()
            }),
        ]
    );

    // A 404 with a body: the body is not capsules.
    let mut bytes = response(404, None).to_vec();
    bytes.extend(frame(0x00, b"<html>not found</html>"));
    let mut reader = ResponseReader::new();
    let (events, left) = run_response(&mut reader, &bytes, usize::MAX).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(left, 0);
    reader.finish(0).unwrap();

    // Malformed responses.
    let bad = |section: Section| {
        ResponseReader::new()
            .feed(&section.frame())
            .unwrap_err()
            .code
    };
    assert_eq!(bad(Section::new()), H3_MESSAGE_ERROR);
    assert_eq!(
        bad(Section::new().indexed(25).indexed(25)),
        H3_MESSAGE_ERROR
    );
    assert_eq!(
        bad(Section::new().indexed(25).indexed(15)),
        H3_MESSAGE_ERROR
    );
    assert_eq!(
        bad(Section::new().name_ref(24, "101", false, false)),
        H3_MESSAGE_ERROR
    );
    assert_eq!(
        bad(Section::new().name_ref(24, "2000", false, false)),
        H3_MESSAGE_ERROR
    );
    assert_eq!(
        bad(Section::new()
            .indexed(25)
            .literal("wt-protocol", "moq-lite-05", false)),
        H3_MESSAGE_ERROR,
        "a token, not an sf-string"
    );
    assert_eq!(
        ResponseReader::new().finish(0).unwrap_err().code,
        H3_MESSAGE_ERROR
    );
}

// ---------------------------------------------------------------------------------------------
// Malformed and refused requests.

#[test]
fn missing_pseudo_headers_are_400() {
    for name in [":path", ":authority", ":scheme"] {
        assert_eq!(rejected(&request_lines(name, None).frame()), 400, "{name}");
    }
    // No :method at all is malformed too.
    assert_eq!(rejected(&request_lines(":method", None).frame()), 400);
    // A classic CONNECT (no :protocol, no :scheme, no :path) asks for a proxy.
    let classic = Section::new()
        .indexed(15)
        .literal(":authority", "relay.example:443", false);
    assert_eq!(rejected(&classic.frame()), 400);
}

#[test]
fn wrong_protocol_scheme_or_target_is_400() {
    for (name, value) in [
        (":protocol", "websocket"),
        (":protocol", "WEBTRANSPORT"),
        (":scheme", "http"),
        (":authority", ""),
        (":authority", "user@relay.example"),
        (":path", "room"),
        (":path", "*"),
        (":path", "/%ff"),
        (":path", "/room?jwt=%ff"),
    ] {
        let bytes = request_lines("", Some((name, value))).frame();
        assert_eq!(rejected(&bytes), 400, "{name}: {value}");
    }
    // The later draft's token is accepted.
    let bytes = request_lines("", Some((":protocol", "webtransport-h3"))).frame();
    assert!(matches!(
        first_event(&bytes),
        Ok(ConnectProgress::Request(_))
    ));
}

#[test]
fn get_is_405_and_says_allow() {
    let get = Section::new()
        .indexed(17) // :method GET
        .indexed(23)
        .literal(":authority", "relay.example", false)
        .indexed(1) // :path /
        .name_ref(95, "curl/8", false, false);
    let Ok(ConnectProgress::Reject(rejection)) = first_event(&get.frame()) else {
        panic!("GET was not rejected");
    };
    assert_eq!(rejection.status, 405);
    let answer = rejection.response();
    assert_eq!(answer[..], response(405, None)[..]);
    assert!(answer.windows(13).any(|w| w == b"allow\x07CONNECT"));
    // A GET without :path is malformed rather than merely not allowed.
    let get = Section::new()
        .indexed(17)
        .indexed(23)
        .literal(":authority", "relay.example", false);
    assert_eq!(rejected(&get.frame()), 400);
    // POST is 405 too.
    let post = Section::new()
        .indexed(20)
        .indexed(23)
        .literal(":authority", "relay.example", false)
        .indexed(1);
    assert_eq!(rejected(&post.frame()), 405);
}

#[test]
fn malformed_field_sections_are_400() {
    let base = || request_lines("", None);
    let cases = [
        ("upper-case name", base().literal("X-Token", "1", false)),
        ("empty name", base().literal("", "1", false)),
        ("space in name", base().literal("x token", "1", false)),
        ("NUL in value", base().literal("x-a", "a\0b", false)),
        ("LF in value", base().literal("x-a", "a\nb", false)),
        ("leading space", base().literal("x-a", " a", false)),
        ("trailing tab", base().literal("x-a", "a\t", false)),
        (
            "connection header",
            base().literal("connection", "close", false),
        ),
        (
            "transfer-encoding",
            base().literal("transfer-encoding", "chunked", false),
        ),
        ("te", base().literal("te", "gzip", false)),
        (
            "pseudo after regular",
            request_lines(":path", None)
                .literal("x-a", "1", false)
                .literal(":path", "/", false),
        ),
        ("duplicate :path", base().literal(":path", "/other", false)),
        ("unknown pseudo", base().literal(":foo", "1", false)),
        ("response pseudo", base().indexed(25)),
    ];
    for (what, section) in cases {
        assert_eq!(rejected(&section.frame()), 400, "{what}");
    }
    // TE: trailers is fine.
    let ok = base().literal("te", "trailers", false).frame();
    assert!(matches!(first_event(&ok), Ok(ConnectProgress::Request(_))));
}

#[test]
fn frames_before_headers() {
    let request = connect_request("relay.example", "/", &[]);
    // Grease and unknown frames first are skipped, even a large one fed in pieces.
    let mut bytes = frame(grease(0), b"");
    bytes.extend(frame(grease(9), &[0u8; 3000]));
    bytes.extend(frame(0x2f_00ff, b"unknown"));
    bytes.extend_from_slice(&request);
    for chunk in [1, 100, bytes.len()] {
        let (events, _) = run_connect(&mut ConnectReader::new(), &bytes, chunk).unwrap();
        assert!(
            matches!(events[..], [ConnectProgress::Request(_)]),
            "chunk {chunk}"
        );
    }
    // DATA before HEADERS is a connection error.
    let mut bytes = frame(0x00, b"early");
    bytes.extend_from_slice(&request);
    let err = first_event(&bytes).unwrap_err();
    assert_eq!((err.code, err.is_connection()), (H3_FRAME_UNEXPECTED, true));
    // So are control frames and PUSH_PROMISE on a request stream.
    for typ in [0x03, 0x04, 0x05, 0x07, 0x0d, 0x02] {
        let mut bytes = frame(typ, &[0x00]);
        bytes.extend_from_slice(&request);
        assert_eq!(first_event(&bytes).unwrap_err().code, H3_FRAME_UNEXPECTED);
    }
    // WEBTRANSPORT_STREAM is only a stream's first bytes.
    let mut bytes = frame(grease(1), b"");
    bytes.extend_from_slice(&[0x40, 0x41, 0x00]);
    assert_eq!(first_event(&bytes).unwrap_err().code, H3_FRAME_ERROR);
}

#[test]
fn oversized_header_sections_are_431() {
    // Refused from the frame header alone, before 16 KiB arrive.
    let mut bytes = Vec::new();
    put_frame_header(&mut bytes, 0x01, 16 * 1024 + 1);
    assert_eq!(
        ConnectReader::new().feed(&bytes),
        Ok((
            bytes.len(),
            ConnectProgress::Reject(Rejection {
                status: 431,
                reason: "header section too large"
            })
        ))
    );
    // A small frame that decodes past the limit: each line costs 32 bytes over its text.
    let mut section = request_lines("", None);
    for i in 0..600 {
        section = section.literal(&format!("x-{i}"), "", false);
    }
    assert!(section.0.len() < 16 * 1024);
    assert_eq!(rejected(&section.frame()), 431);
    // Huffman expansion counts: 17000 'a's take 10625 bytes on the wire.
    let section = request_lines("", None).literal("x-a", &"a".repeat(17_000), true);
    assert!(section.0.len() < 16 * 1024);
    assert_eq!(rejected(&section.frame()), 431);
    // After a rejection the rest of the stream is dropped.
    let mut reader = ConnectReader::new();
    let mut bytes = Vec::new();
    put_frame_header(&mut bytes, 0x01, 20_000);
    bytes.extend(vec![0u8; 20_000]);
    bytes.extend(frame(0x00, b"more"));
    let (events, left) = run_connect(&mut reader, &bytes, 1000).unwrap();
    assert!(matches!(
        events[..],
        [ConnectProgress::Reject(Rejection { status: 431, .. })]
    ));
    assert_eq!(left, 0);
    reader.finish(0).unwrap();
}

#[test]
fn dynamic_table_references_are_rejected() {
    let qpack = |section: Vec<u8>| first_event(&headers(&section)).unwrap_err();
    let cases: [(&str, Vec<u8>); 6] = [
        ("required insert count", vec![0x01, 0x00, 0xcf]),
        ("indexed dynamic", vec![0x00, 0x00, 0x80]),
        ("name reference dynamic", vec![0x00, 0x00, 0x40, 0x01, b'x']),
        ("post-base indexed", vec![0x00, 0x00, 0x10]),
        (
            "post-base name reference",
            vec![0x00, 0x00, 0x00, 0x01, b'x'],
        ),
        ("static index past the table", vec![0x00, 0x00, 0xff, 0x24]),
    ];
    for (what, section) in cases {
        let err = qpack(section);
        assert_eq!(
            (err.code, err.is_connection()),
            (QPACK_DECOMPRESSION_FAILED, true),
            "{what}"
        );
    }
    // Truncated lines, integer overflow and bad Huffman padding inside a complete frame.
    for section in [
        vec![0x00, 0x00, 0x27],       // name length continues past the end
        vec![0x00, 0x00, 0x23, b'a'], // name shorter than its length
        vec![
            0x00, 0x00, 0x5f, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01,
        ],
        vec![0x00, 0x00, 0x51, 0x81, 0x00], // Huffman padding of zeros
        vec![0x00, 0x00, 0x51, 0x84, 0xff, 0xff, 0xff, 0xff], // EOS inside the string
        vec![0x00],                         // no Delta Base
    ] {
        assert_eq!(
            qpack(section.clone()).code,
            QPACK_DECOMPRESSION_FAILED,
            "{section:x?}"
        );
    }
}

#[test]
fn root_and_jwt() {
    let request = |path: &str| match first_event(&connect_request("r.example", path, &[])) {
        Ok(ConnectProgress::Request(request)) => (request.root, request.jwt),
        other => panic!("{path}: {other:?}"),
    };
    let some = |s: &str| Some(s.to_owned());
    assert_eq!(request("/"), ("".into(), None));
    assert_eq!(request("/room//a/%20b/"), ("room/a/ b".into(), None));
    assert_eq!(request("//a///b//"), ("a/b".into(), None));
    assert_eq!(request("/a/./b/../c"), ("a/c".into(), None));
    assert_eq!(request("/a/%2e%2e/c"), ("c".into(), None));
    assert_eq!(request("/../../x"), ("x".into(), None));
    assert_eq!(request("/a%2Fb"), ("a/b".into(), None));
    assert_eq!(request("/caf%C3%A9"), ("café".into(), None));
    assert_eq!(request("/r?jwt=abc.def"), ("r".into(), some("abc.def")));
    assert_eq!(request("/r?x=1&jwt=a%2Bb+c"), ("r".into(), some("a+b c")));
    assert_eq!(
        request("/r?jwt=first&jwt=second"),
        ("r".into(), some("second"))
    );
    assert_eq!(request("/r?jwt=first&jwt="), ("r".into(), some("first")));
    assert_eq!(request("/r?jwt"), ("r".into(), None));
    assert_eq!(request("/r?notjwt=1"), ("r".into(), None));
}

#[test]
fn available_protocols() {
    let protocols = |lines: &[&str]| {
        let mut section = request_lines("", None);
        for line in lines {
            section = section.literal("wt-available-protocols", line, false);
        }
        match first_event(&section.frame()) {
            Ok(ConnectProgress::Request(request)) => request.protocols,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(protocols(&[]), Vec::<String>::new());
    assert_eq!(
        protocols(&["\"moq-lite-05\",\"moql\""]),
        ["moq-lite-05", "moql"]
    );
    // Field lines join; parameters are allowed and ignored.
    assert_eq!(
        protocols(&["\"moq-lite-05\";q=1", "\"moql\""]),
        ["moq-lite-05", "moql"]
    );
    // Not a list of strings: ignored, leaving the version to SETUP.
    assert_eq!(protocols(&["moq-lite-05, moql"]), Vec::<String>::new());
    assert_eq!(
        protocols(&["\"moql\", (\"a\" \"b\")"]),
        Vec::<String>::new()
    );
    assert_eq!(protocols(&["\"unterminated"]), Vec::<String>::new());
}

#[test]
fn choose_protocol_follows_the_client() {
    let offered = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let ours = Version::ALPNS;
    // @moq/lite's browser list, newest first, then the IETF drafts.
    let browser = offered(&[
        "moq-lite-05",
        "moq-lite-04",
        "moq-lite-03",
        "moql",
        "moqt-19",
        "moqt-18",
        "moqt-17",
        "moqt-16",
        "moqt-15",
    ]);
    assert_eq!(
        choose_protocol(&browser, &ours).as_deref(),
        Some("moq-lite-05")
    );
    assert_eq!(
        choose_protocol(&offered(&["moq-lite-03", "moq-lite-05"]), &ours).as_deref(),
        Some("moq-lite-03")
    );
    assert_eq!(
        choose_protocol(&offered(&["moqt-17", "moql"]), &ours).as_deref(),
        Some("moql")
    );
    assert_eq!(choose_protocol(&offered(&["moqt-17"]), &ours), None);
    assert_eq!(choose_protocol(&[], &ours), None);
    // The choice goes back quoted and comes out as the version.
    let chosen = choose_protocol(&browser, &ours).unwrap();
    let (events, _) =
        run_response(&mut ResponseReader::new(), &response(200, Some(&chosen)), 1).unwrap();
    let [
        ResponseProgress::Response(Response {
            protocol: Some(p), ..
        }),
    ] = &events[..]
    else {
        panic!("{events:?}");
    };
    assert_eq!(Version::from_alpn(p), Some(Version::Lite05));
}

// ---------------------------------------------------------------------------------------------
// Capsules.

#[test]
fn capsule_bytes() {
    let close = close_capsule(7, "bye");
    assert_eq!(
        close[..],
        [0x00, 0x0a, 0x68, 0x43, 0x07, 0, 0, 0, 7, b'b', b'y', b'e']
    );
    // web-transport-proto decodes the capsule inside the DATA frame.
    let inner = web_transport_proto::Capsule::decode(&mut &close[2..]).unwrap();
    assert_eq!(
        inner,
        web_transport_proto::Capsule::CloseWebTransportSession {
            code: 7,
            reason: "bye".into()
        }
    );
    assert_eq!(
        drain_capsule()[..],
        [0x00, 0x05, 0x80, 0x00, 0x78, 0xae, 0x00]
    );
    // The reason is cut to 1024 bytes, not inside a character.
    let long = "é".repeat(600);
    let close = close_capsule(1, &long);
    let (_, events) = session_events(&close, usize::MAX).unwrap();
    let [ConnectProgress::Capsule(Capsule::CloseWebTransportSession { reason, .. })] = &events[..]
    else {
        panic!("{events:?}");
    };
    assert_eq!(reason.len(), 1024);
}

/// An accepted request followed by `after`, fed in `chunk`-sized pieces; returns the reader
/// and the events after the request.
fn session_events(
    after: &[u8],
    chunk: usize,
) -> Result<(ConnectReader, Vec<ConnectProgress>), Error> {
    let mut bytes = connect_request("relay.example", "/", &[]).to_vec();
    bytes.extend_from_slice(after);
    let mut reader = ConnectReader::new();
    let (mut events, left) = run_connect(&mut reader, &bytes, chunk)?;
    assert!(matches!(events.first(), Some(ConnectProgress::Request(_))));
    events.remove(0);
    reader.finish(left)?;
    Ok((reader, events))
}

#[test]
fn capsules_across_frames_at_every_chunk_size() {
    // Capsules: an unknown one (DATAGRAM, type 0), grease, DRAIN, then CLOSE split over two
    // DATA frames with grease frames around them.
    let mut capsules = Vec::new();
    put_varint(&mut capsules, 0x00);
    put_varint(&mut capsules, 5);
    capsules.extend_from_slice(b"\x00dgrm");
    put_varint(&mut capsules, 0x29 * 3 + 0x17);
    put_varint(&mut capsules, 2);
    capsules.extend_from_slice(b"gg");
    let drain = drain_capsule();
    capsules.extend_from_slice(&drain[2..]);
    let close = close_capsule(0x1234_5678, "going away");
    capsules.extend_from_slice(&close[2..]);

    let split = capsules.len() - 6;
    let mut stream = frame(0x00, &capsules[..split]);
    stream.extend(frame(grease(4), b"zz"));
    stream.extend(frame(0x00, &[]));
    stream.extend(frame(0x00, &capsules[split..]));

    let expected = [
        ConnectProgress::Capsule(Capsule::DrainWebTransportSession),
        ConnectProgress::Capsule(Capsule::CloseWebTransportSession {
            code: 0x1234_5678,
            reason: "going away".into(),
        }),
    ];
    for chunk in 1..=stream.len() {
        let (_, events) = session_events(&stream, chunk).unwrap();
        assert_eq!(events, expected, "chunk {chunk}");
    }
    // Every place a DATA frame boundary can fall, headers of capsules included.
    for split in 0..capsules.len() {
        let mut stream = frame(0x00, &capsules[..split]);
        stream.extend(frame(0x00, &capsules[split..]));
        for chunk in [1, usize::MAX] {
            let (_, events) = session_events(&stream, chunk).unwrap();
            assert_eq!(events, expected, "split {split} chunk {chunk}");
        }
    }
}

#[test]
fn capsule_violations() {
    let close = close_capsule(1, "x");
    // Anything after the close capsule resets the stream.
    let mut after = close.to_vec();
    after.extend(frame(grease(0), b""));
    let err = session_events(&after, usize::MAX).unwrap_err();
    assert_eq!((err.code, err.is_connection()), (H3_MESSAGE_ERROR, false));

    let capsule = |typ: u64, payload: &[u8]| {
        let mut c = Vec::new();
        put_varint(&mut c, typ);
        put_varint(&mut c, payload.len() as u64);
        c.extend_from_slice(payload);
        frame(0x00, &c)
    };
    for (what, bytes) in [
        ("close without a code", capsule(0x2843, &[0, 0, 1])),
        ("reason too long", capsule(0x2843, &[b'a'; 1029])),
        ("reason not UTF-8", capsule(0x2843, &[0, 0, 0, 1, 0xff])),
        ("drain with a payload", capsule(0x78ae, &[0])),
    ] {
        let err = session_events(&bytes, usize::MAX).unwrap_err();
        assert_eq!(err.code, H3_MESSAGE_ERROR, "{what}");
    }

    // A stream that ends inside a frame or a capsule.
    let cut_frame = &close[..close.len() - 1];
    assert_eq!(
        session_events(cut_frame, usize::MAX).unwrap_err().code,
        H3_FRAME_ERROR
    );
    let cut_capsule = frame(0x00, &close[2..close.len() - 1]);
    assert_eq!(
        session_events(&cut_capsule, usize::MAX).unwrap_err().code,
        H3_MESSAGE_ERROR
    );
    // A FIN without a capsule is a clean end.
    assert!(session_events(&[], usize::MAX).unwrap().1.is_empty());

    // Trailers end the body; DATA after them is unexpected.
    let mut trailers = Section::new().literal("x-done", "1", false).frame();
    let (_, events) = session_events(&trailers, usize::MAX).unwrap();
    assert!(events.is_empty());
    trailers.extend(frame(0x00, b""));
    assert_eq!(
        session_events(&trailers, usize::MAX).unwrap_err().code,
        H3_FRAME_UNEXPECTED
    );
    // A huge unknown capsule streams past without being buffered.
    let mut big = Vec::new();
    put_varint(&mut big, 0x1234);
    put_varint(&mut big, 100_000);
    big.extend(vec![0u8; 100_000]);
    let mut stream = frame(0x00, &big);
    stream.extend_from_slice(&close_capsule(9, ""));
    let (_, events) = session_events(&stream, 4096).unwrap();
    assert_eq!(
        events,
        [ConnectProgress::Capsule(
            Capsule::CloseWebTransportSession {
                code: 9,
                reason: String::new()
            }
        )]
    );
}

// ---------------------------------------------------------------------------------------------
// Cross-checks.

#[test]
fn application_error_codes_match_web_transport_proto() {
    for code in (0..200_000u32).chain([u32::MAX - 1, u32::MAX]) {
        let wire = ErrorCode(code).to_stream_code();
        assert_eq!(wire, web_transport_proto::error_to_http3(code));
        assert_eq!(web_transport_proto::error_from_http3(wire), Some(code));
        assert_eq!(ErrorCode::from_stream_code(wire), Some(ErrorCode(code)));
    }
}

/// Every static table entry, checked against web-transport-proto's own table: each index is
/// sent to its decoder and must come back as our (name, value).
#[test]
fn static_table_matches_web_transport_proto() {
    let pseudo = |skip: &str| {
        let mut s = Section::new();
        for (name, value) in [
            (":method", "CONNECT"),
            (":scheme", "https"),
            (":authority", "a.example"),
            (":path", "/p"),
            (":protocol", "webtransport"),
        ] {
            if name != skip {
                s = s.literal(name, value, false);
            }
        }
        s
    };
    for (index, &(name, value)) in STATIC_TABLE.iter().enumerate() {
        let index = index as u64;
        match name {
            ":status" => {
                let bytes = Section::new().indexed(index).frame();
                let status = match web_transport_proto::ConnectResponse::decode(&mut &bytes[..]) {
                    Ok(response) => response.status,
                    Err(ConnectError::WrongStatus(Some(status))) => status,
                    Err(err) => panic!("{index}: {err}"),
                };
                assert_eq!(status.as_str(), value, "{index}");
            }
            ":method" => {
                let bytes = pseudo(":method").indexed(index).frame();
                match web_transport_proto::ConnectRequest::decode(&mut &bytes[..]) {
                    Ok(_) => assert_eq!(value, "CONNECT"),
                    Err(ConnectError::WrongMethod(Some(m))) => assert_eq!(m.as_str(), value),
                    Err(err) => panic!("{index}: {err}"),
                }
            }
            ":scheme" => {
                let bytes = pseudo(":scheme").indexed(index).frame();
                match web_transport_proto::ConnectRequest::decode(&mut &bytes[..]) {
                    Ok(_) => assert_eq!(value, "https"),
                    Err(ConnectError::WrongScheme(Some(s))) => assert_eq!(s, value),
                    Err(err) => panic!("{index}: {err}"),
                }
            }
            ":path" => {
                let bytes = pseudo(":path").indexed(index).frame();
                let decoded = web_transport_proto::ConnectRequest::decode(&mut &bytes[..]);
                assert_eq!(decoded.unwrap().url.path(), value);
            }
            ":authority" => {
                assert_eq!(value, "");
                let bytes = pseudo(":authority")
                    .name_ref(index, "b.example", false, false)
                    .frame();
                let decoded = web_transport_proto::ConnectRequest::decode(&mut &bytes[..]);
                assert_eq!(decoded.unwrap().url.host_str(), Some("b.example"));
            }
            _ => {
                let bytes = pseudo("").indexed(index).frame();
                let decoded = web_transport_proto::ConnectRequest::decode(&mut &bytes[..]).unwrap();
                assert_eq!(decoded.headers.get(name).unwrap(), value, "{index}");
                let bytes = pseudo("").name_ref(index, "v", false, false).frame();
                let decoded = web_transport_proto::ConnectRequest::decode(&mut &bytes[..]).unwrap();
                assert_eq!(decoded.headers.get(name).unwrap(), "v", "{index}");
            }
        }
    }
    // One past the end is refused by both.
    let bytes = Section::new().indexed(99).frame();
    assert!(web_transport_proto::ConnectResponse::decode(&mut &bytes[..]).is_err());
    assert!(qpack::decode_section(&bytes[2..], 1 << 20).is_err());
}

#[test]
fn our_encoder_round_trips_every_static_entry() {
    for &(name, value) in &STATIC_TABLE {
        for v in [value, "other"] {
            let mut out = BytesMut::new();
            qpack::encode_section(&[(name, v)], &mut out);
            let fields = qpack::decode_section(&out, 1 << 20).unwrap();
            assert_eq!(fields.len(), 1);
            assert_eq!(
                (&fields[0].name[..], &fields[0].value[..]),
                (name.as_bytes(), v.as_bytes())
            );
        }
    }
    // Long names and values need multi-byte prefix integers.
    let long = "x".repeat(300);
    let mut out = BytesMut::new();
    qpack::encode_section(&[(&long, &long)], &mut out);
    let fields = qpack::decode_section(&out, 1 << 20).unwrap();
    assert_eq!(fields[0].value.len(), 300);
    assert_eq!(fields[0].name.len(), 300);
}

// ---------------------------------------------------------------------------------------------
// Garbage never panics.

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let len = (self.next() as usize) % (max + 1);
        (0..len).map(|_| self.next() as u8).collect()
    }
}

#[test]
fn garbage_and_mutations_do_not_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let valid = [chromium_request(), {
        let mut b = connect_request("a.example", "/x?jwt=1", &["moql"]).to_vec();
        b.extend_from_slice(&close_capsule(1, "x"));
        b
    }];
    for round in 0..20_000 {
        let bytes = if round % 2 == 0 {
            rng.bytes(64)
        } else {
            let mut b = valid[round % valid.len()].clone();
            for _ in 0..1 + rng.next() % 4 {
                let i = rng.next() as usize % b.len();
                b[i] = rng.next() as u8;
            }
            let cut = rng.next() as usize % (b.len() + 1);
            b.truncate(cut);
            b
        };
        let chunk = 1 + rng.next() as usize % 16;
        let mut reader = ConnectReader::new();
        if let Ok((_, left)) = run_connect(&mut reader, &bytes, chunk) {
            let _ = reader.finish(left);
        }
        let mut reader = ResponseReader::new();
        if let Ok((_, left)) = run_response(&mut reader, &bytes, chunk) {
            let _ = reader.finish(left);
        }
        let _ = run_control(&mut ControlReader::new(round % 3 == 0), &bytes, chunk);
        let _ = uni_header(&bytes);
        let _ = bidi_header(&bytes);
        let _ = split_datagram(&bytes);
        let _ = qpack::decode_section(&bytes, MAX_FIELD_SECTION_SIZE);
    }
}

#[test]
fn errors_display_scope_and_code() {
    let err = Error::connection(H3_MISSING_SETTINGS, "no settings");
    assert_eq!(err.to_string(), "no settings (connection error 0x10a)");
    assert_eq!(Error::stream(H3_MESSAGE_ERROR, "x").scope, Scope::Stream);
    assert_eq!(ALPN, b"h3");
}

/// Both ends of a session through the public API, the way the relay and the load generator
/// drive it: SETTINGS both ways, CONNECT on stream 0, streams, datagrams, close both ways.
#[test]
fn client_and_server_end_to_end() {
    // Client to server: control stream, then the CONNECT on bidi stream 0.
    let client_control = control_stream(false);
    let connect = connect_request("relay.example", "/demo/?jwt=tok", &["moq-lite-05", "moql"]);

    let mut peer = PeerStreams::default();
    let (kind, n) = uni_header(&client_control).unwrap().unwrap();
    peer.accept(kind).unwrap();
    let mut server_control = ControlReader::new(true);
    assert_eq!(
        server_control.feed(&client_control[n..]),
        Ok(client_control.len() - n)
    );
    assert!(server_control.supports_webtransport());

    assert_eq!(bidi_header(&connect), Ok(Some((BidiStream::Request, 0))));
    let mut server = ConnectReader::new();
    let (used, ConnectProgress::Request(request)) = server.feed(&connect).unwrap() else {
        panic!("no request");
    };
    assert_eq!(used, connect.len());
    assert_eq!(
        (request.root.as_str(), request.jwt.as_deref()),
        ("demo", Some("tok"))
    );
    let chosen = choose_protocol(&request.protocols, &Version::ALPNS);
    let answer = response(200, chosen.as_deref());

    // Server to client: control stream and the answer.
    let server_control_bytes = control_stream(true);
    let (kind, n) = uni_header(&server_control_bytes).unwrap().unwrap();
    assert_eq!(kind, UniStream::Control);
    let mut client_control_reader = ControlReader::new(false);
    client_control_reader
        .feed(&server_control_bytes[n..])
        .unwrap();
    assert!(client_control_reader.enable_connect_protocol());
    assert!(client_control_reader.supports_webtransport());
    let mut client = ResponseReader::new();
    let (_, ResponseProgress::Response(answer)) = client.feed(&answer).unwrap() else {
        panic!("no response");
    };
    assert!(answer.is_success());
    assert_eq!(answer.protocol.as_deref(), Some("moq-lite-05"));

    // Session 0: streams and datagrams both ways.
    let session = 0;
    let uni = [&uni_prefix(session)[..], b"group"].concat();
    let (kind, n) = uni_header(&uni).unwrap().unwrap();
    assert_eq!(
        (kind, &uni[n..]),
        (UniStream::WebTransport { session }, &b"group"[..])
    );
    let bidi = [&bidi_prefix(session)[..], b"setup"].concat();
    let (kind, n) = bidi_header(&bidi).unwrap().unwrap();
    assert_eq!(
        (kind, &bidi[n..]),
        (BidiStream::WebTransport { session }, &b"setup"[..])
    );
    let datagram = [&datagram_prefix(session)[..], b"obj"].concat();
    assert_eq!(split_datagram(&datagram), Ok((session, &b"obj"[..])));

    // The server drains, then closes; the client sees both and the clean FIN.
    let mut tail = drain_capsule().to_vec();
    tail.extend_from_slice(&close_capsule(13, "not found"));
    let (events, left) = run_response(&mut client, &tail, 3).unwrap();
    assert_eq!(
        events,
        [
            ResponseProgress::Capsule(Capsule::DrainWebTransportSession),
            ResponseProgress::Capsule(Capsule::CloseWebTransportSession {
                code: 13,
                reason: "not found".into()
            }),
        ]
    );
    client.finish(left).unwrap();

    // The client's own close reaches the server the same way.
    let close = close_capsule(0, "");
    let (events, left) = run_connect(&mut server, &close, 1).unwrap();
    assert_eq!(
        events,
        [ConnectProgress::Capsule(
            Capsule::CloseWebTransportSession {
                code: 0,
                reason: String::new()
            }
        )]
    );
    server.finish(left).unwrap();
}
