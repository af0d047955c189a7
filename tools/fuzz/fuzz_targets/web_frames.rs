//! The HTTP/3 decoders `web` exposes: the control stream (frames, SETTINGS, GOAWAY), the
//! CONNECT request and the response to it (frames, QPACK, the request checks, then capsules),
//! stream headers, datagram prefixes, and our own encoders read back by our decoders.
//!
//! Input: a mode byte, a cut count byte and that many cut bytes (each the length of the next
//! chunk as the stream delivers it), then the bytes. Readers are driven as `WebSession`
//! drives them: keep what was not consumed, append the next chunk, feed again.

#![no_main]

use libfuzzer_sys::fuzz_target;
use moq_relay::web::{
    ConnectProgress, ConnectReader, ControlReader, PeerStreams, ResponseProgress, ResponseReader,
    bidi_header, choose_protocol, connect_request, headers_frame, response, split_datagram,
    uni_header,
};
use moq_relay_fuzz::{Input, split};

fn control(server: bool, pieces: &[&[u8]]) {
    let mut reader = ControlReader::new(server);
    let mut buf = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        match reader.feed(&buf) {
            Ok(used) => {
                assert!(used <= buf.len());
                buf.drain(..used);
            }
            Err(_) => return,
        }
        let _ = (reader.settings(), reader.goaway());
        let _ = (
            reader.supports_webtransport(),
            reader.webtransport_sessions(),
        );
        let _ = reader.enable_connect_protocol();
    }
}

fn connect(pieces: &[&[u8]], fin: bool) {
    let mut reader = ConnectReader::new();
    let mut buf = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            let (used, progress) = match reader.feed(&buf) {
                Ok(step) => step,
                Err(_) => return,
            };
            assert!(used <= buf.len());
            buf.drain(..used);
            match progress {
                ConnectProgress::NeedMore => break,
                ConnectProgress::Reject(r) => {
                    let _ = r.response();
                    return;
                }
                ConnectProgress::Request(req) => {
                    let _ = choose_protocol(&req.protocols, &["moq-lite-05", "moq-lite-04"]);
                }
                ConnectProgress::Capsule(_) => {}
            }
        }
    }
    if fin {
        let _ = reader.finish(buf.len());
    }
}

fn respond(pieces: &[&[u8]], fin: bool) {
    let mut reader = ResponseReader::new();
    let mut buf = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            let (used, progress) = match reader.feed(&buf) {
                Ok(step) => step,
                Err(_) => return,
            };
            assert!(used <= buf.len());
            buf.drain(..used);
            match progress {
                ResponseProgress::NeedMore => break,
                ResponseProgress::Response(r) => {
                    let _ = r.is_success();
                }
                ResponseProgress::Capsule(_) => {}
            }
        }
    }
    if fin {
        let _ = reader.finish(buf.len());
    }
}

/// `s` with everything outside printable ASCII dropped.
fn printable(s: String) -> String {
    s.chars().filter(|c| (' '..='~').contains(c)).collect()
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let mode = input.u8();
    let fin = mode & 0x80 != 0;
    let cuts = input.chunk();
    match mode & 0x7f {
        0 | 1 => {
            let bytes = input.rest();
            control(mode & 1 == 0, &split(bytes, cuts));
        }
        2 => {
            let bytes = input.rest();
            connect(&split(bytes, cuts), fin);
        }
        3 => {
            let bytes = input.rest();
            respond(&split(bytes, cuts), fin);
        }
        4 => {
            // Stream headers and datagram prefixes, with every cut of the bytes as a
            // header that is not all here yet.
            let bytes = input.rest();
            let mut peer = PeerStreams::default();
            for n in 0..=bytes.len().min(24) {
                let head = &bytes[..n];
                if let Ok(Some((kind, used))) = uni_header(head) {
                    assert!(used <= n);
                    let _ = peer.accept(kind);
                }
                if let Ok(Some((_, used))) = bidi_header(head) {
                    assert!(used <= n);
                }
            }
            if let Ok((_, payload)) = split_datagram(bytes) {
                assert!(payload.len() <= bytes.len());
            }
        }
        5 => {
            // Any fields, as a HEADERS frame of ours, then whatever follows it.
            let count = input.below(12);
            let fields: Vec<(String, String)> = (0..count)
                .map(|_| (input.string(), input.string()))
                .collect();
            let refs: Vec<(&str, &str)> = fields
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            let mut stream = headers_frame(&refs).to_vec();
            stream.extend_from_slice(input.rest());
            if fields.len().is_multiple_of(2) {
                connect(&split(&stream, cuts), fin);
            } else {
                respond(&split(&stream, cuts), fin);
            }
        }
        6 => {
            // Our CONNECT and our response, from any authority and path. Protocols and the
            // status keep the encoders' documented preconditions (protocols are our own
            // printable ALPN strings, a status has three digits): they never come from the
            // network.
            let authority = input.string();
            let path = input.string();
            let protocols: Vec<String> = (0..input.below(4))
                .map(|_| printable(input.string()))
                .collect();
            let offered: Vec<&str> = protocols.iter().map(String::as_str).collect();
            let status = 100 + input.u16() % 900;
            let chosen = input.bool().then(|| printable(input.string()));
            let mut stream = connect_request(&authority, &path, &offered).to_vec();
            stream.extend_from_slice(input.rest());
            connect(&split(&stream, cuts), fin);
            let stream = response(status, chosen.as_deref()).to_vec();
            respond(&split(&stream, cuts), fin);
        }
        _ => {}
    }
});
