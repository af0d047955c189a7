//! `web::WebSession`, server or client, through a `Recorder`, with arbitrary stream events:
//! the peer opens streams and sends bytes, FINs and resets on them; the layer above opens
//! streams through `WebSession::streams` once the session is open.
//!
//! A stream the session hands over (`WebEvent::Stream`) belongs to the moq layer from then
//! on, as in the host: its further bytes no longer reach the session.

#![no_main]

use std::collections::HashSet;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use moq_relay::stream::testing::{Call, Recorder};
use moq_relay::stream::{Dir, End, Side, StreamId, Streams};
use moq_relay::web::{WebEvent, WebSession};
use moq_relay_fuzz::Input;

const PROTOCOLS: [&str; 3] = ["moq-lite-05", "moq-lite-04", "moq-lite-03"];

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let flags = input.u8();
    let server = flags & 1 != 0;
    let max_buffer = if flags & 2 != 0 { 64 } else { 64 * 1024 };
    let offered = usize::from(flags >> 2) % (PROTOCOLS.len() + 1);
    let (mut web, side, peer) = if server {
        let root = |raw: &str| (!raw.contains("bad")).then(|| raw.to_owned());
        let web = WebSession::server(PROTOCOLS, root, max_buffer);
        (web, Side::Server, Side::Client)
    } else {
        let web = WebSession::client(
            "relay.test:4443",
            "/room",
            PROTOCOLS[..offered].iter().copied(),
            max_buffer,
        );
        (web, Side::Client, Side::Server)
    };
    let mut io = Recorder::new(side);
    web.start(&mut io);
    // Ours from the start: the control stream, and a client's CONNECT stream last.
    let mut known: Vec<StreamId> = io
        .take()
        .into_iter()
        .filter_map(|c| match c {
            Call::Open(id) => Some(id),
            _ => None,
        })
        .collect();
    let mut opened = [0u64; 2];
    let mut handed: HashSet<StreamId> = HashSet::new();
    let mut open_seen = false;
    let mut over = false;

    while !input.is_empty() && !over {
        let mut events = Vec::new();
        match input.u8() % 8 {
            0 | 1 => {
                let dir = if input.bool() { Dir::Bi } else { Dir::Uni };
                let i = usize::from(dir == Dir::Uni);
                let id = StreamId::new(peer, dir, opened[i]);
                opened[i] += 1;
                known.push(id);
                web.accept(id);
                let bytes = input.long_chunk();
                if !bytes.is_empty() {
                    let chunks = vec![Bytes::copy_from_slice(bytes)];
                    events = web.on_stream(&mut io, id, chunks, End::Open);
                }
            }
            2..=5 => {
                if known.is_empty() {
                    continue;
                }
                // Counted from the newest: 0 is the last stream opened.
                let id = known[known.len() - 1 - input.below(known.len())];
                let chunks: Vec<Bytes> = (0..1 + input.below(3))
                    .map(|_| Bytes::copy_from_slice(input.long_chunk()))
                    .filter(|c| !c.is_empty())
                    .collect();
                let end = match input.u8() % 4 {
                    0 | 1 => End::Open,
                    2 => End::Fin,
                    _ => End::Reset(input.u64() >> 2),
                };
                if web.owns(id) {
                    events = web.on_stream(&mut io, id, chunks, end);
                } else {
                    // Not the session's: ignored, whatever it is.
                    assert!(web.on_stream(&mut io, id, chunks, end).is_empty());
                }
            }
            6 => {
                // The moq layer opens a stream through the session.
                let dir = if input.bool() { Dir::Bi } else { Dir::Uni };
                let prefix = web.stream_prefix(dir);
                assert_eq!(prefix.is_some(), web.session_id().is_some());
                let mut streams = web.streams(&mut io);
                if let Some(id) = streams.open(dir) {
                    streams.write(id, vec![Bytes::from_static(b"x")], input.bool());
                    known.push(id);
                }
            }
            _ => {
                let _ = (web.is_server(), web.session_id());
            }
        }
        let mut queue: std::collections::VecDeque<WebEvent> = events.into();
        while let Some(event) = queue.pop_front() {
            match event {
                // The layer above admits the peer, or answers with a status.
                WebEvent::Connect { root, .. } => {
                    assert!(server && !open_seen && !root.contains("bad"));
                    if input.bool() {
                        queue.extend(web.accept_connect(&mut io));
                    } else {
                        web.reject_connect(&mut io, 401 + 2 * u16::from(input.bool()));
                    }
                }
                WebEvent::Open { root, .. } => {
                    assert!(!open_seen, "opened twice");
                    open_seen = true;
                    assert!(!root.contains("bad") || !server);
                }
                WebEvent::Stream { id, .. } => {
                    assert!(open_seen, "a stream before the session opened");
                    assert!(handed.insert(id), "{id} handed over twice");
                    assert!(!web.owns(id));
                }
                WebEvent::Closed { .. } | WebEvent::Refused { .. } => over = true,
                WebEvent::Failed(_) => {}
            }
        }
        if io.take().iter().any(|c| matches!(c, Call::Close { .. })) {
            over = true;
        }
    }
});
