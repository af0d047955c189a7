//! Byte-exact tests of [`WebSession`] in both roles, on the recording [`Streams`], without
//! sockets: what it writes, what it reports, and two sessions wired to each other.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;

use super::*;
use crate::stream::testing::{Call, Recorder};
use crate::stream::{Dir, End, Side, StreamId, Streams};

const AUTHORITY: &str = "relay.example:4443";
const SUPPORTED: [&str; 2] = ["moq-lite-03", "moq-lite-02"];
const MAX_BUFFER: usize = 64 * 1024;

/// The CONNECT stream, and so the session id: the client's first bidi stream.
fn connect() -> StreamId {
    client_bidi(0)
}

fn client_uni(index: u64) -> StreamId {
    StreamId::new(Side::Client, Dir::Uni, index)
}

fn client_bidi(index: u64) -> StreamId {
    StreamId::new(Side::Client, Dir::Bi, index)
}

fn server_uni(index: u64) -> StreamId {
    StreamId::new(Side::Server, Dir::Uni, index)
}

/// A server that refuses roots containing "bad".
fn server() -> (WebSession, Recorder) {
    let root = |raw: &str| (!raw.contains("bad")).then(|| raw.to_owned());
    let mut web = WebSession::server(SUPPORTED, root, MAX_BUFFER);
    let mut io = Recorder::new(Side::Server);
    web.start(&mut io);
    io.take();
    (web, io)
}

fn client(protocols: &[&str]) -> (WebSession, Recorder) {
    let mut web = WebSession::client(AUTHORITY, "/room", protocols.iter().copied(), MAX_BUFFER);
    let mut io = Recorder::new(Side::Client);
    web.start(&mut io);
    io.take();
    (web, io)
}

fn request(path: &str, protocols: &[&str]) -> Vec<u8> {
    connect_request(AUTHORITY, path, protocols).to_vec()
}

/// Bytes for `id`; a server's CONNECT is accepted as the session layer does when it admits
/// the peer, its [`WebEvent::Connect`] replaced by what accepting it reports.
fn feed(
    web: &mut WebSession,
    io: &mut Recorder,
    id: StreamId,
    bytes: &[u8],
    end: End,
) -> Vec<WebEvent> {
    let mut out = Vec::new();
    for e in feed_raw(web, io, id, bytes, end) {
        match e {
            WebEvent::Connect { .. } => out.extend(web.accept_connect(io)),
            e => out.push(e),
        }
    }
    out
}

fn feed_raw(
    web: &mut WebSession,
    io: &mut Recorder,
    id: StreamId,
    bytes: &[u8],
    end: End,
) -> Vec<WebEvent> {
    let chunks = if bytes.is_empty() {
        Vec::new()
    } else {
        vec![Bytes::copy_from_slice(bytes)]
    };
    web.on_stream(io, id, chunks, end)
}

/// A server whose session is open on [`CONNECT`], with nothing recorded.
fn open_server() -> (WebSession, Recorder) {
    let (mut web, mut io) = server();
    web.accept(connect());
    let events = feed(
        &mut web,
        &mut io,
        connect(),
        &request("/room", &[]),
        End::Open,
    );
    assert!(matches!(events[..], [WebEvent::Open { .. }]), "{events:?}");
    io.take();
    (web, io)
}

fn opened(root: &str, protocol: Option<&str>, jwt: Option<&str>) -> WebEvent {
    WebEvent::Open {
        root: root.to_owned(),
        protocol: protocol.map(str::to_owned),
        jwt: jwt.map(str::to_owned),
    }
}

fn handed(id: StreamId, bidi: bool, payload: &[u8], end: End) -> WebEvent {
    let chunks = if payload.is_empty() {
        Vec::new()
    } else {
        vec![Bytes::copy_from_slice(payload)]
    };
    WebEvent::Stream {
        id,
        bidi,
        chunks,
        end,
    }
}

/// Events with each handed-over stream's chunks joined into one, so that events compare by
/// content whatever the chunking.
fn joined(events: Vec<WebEvent>) -> Vec<WebEvent> {
    events
        .into_iter()
        .map(|e| match e {
            WebEvent::Stream {
                id,
                bidi,
                chunks,
                end,
            } => handed(id, bidi, &chunks.concat(), end),
            other => other,
        })
        .collect()
}

fn refused(id: StreamId, code: u64) -> Vec<Call> {
    let mut calls = vec![Call::Stop { id, code }];
    if id.dir() == Dir::Bi {
        calls.push(Call::Reset { id, code });
    }
    calls
}

fn wt(prefix: Bytes, payload: &[u8]) -> Vec<u8> {
    [&prefix[..], payload].concat()
}

// ---------------------------------------------------------------------------------------------
// Start.

#[test]
fn server_sends_its_settings_at_start() {
    let mut web = WebSession::server(SUPPORTED, |r: &str| Some(r.to_owned()), MAX_BUFFER);
    let mut io = Recorder::new(Side::Server);
    web.start(&mut io);
    let control = server_uni(0);
    assert_eq!(
        io.take(),
        [
            Call::Open(control),
            Call::Write {
                id: control,
                bytes: control_stream(true).to_vec(),
                fin: false,
            },
        ]
    );
    assert!(web.is_server());
    assert_eq!(web.session_id(), None);
}

#[test]
fn client_sends_settings_then_its_connect() {
    let mut web = WebSession::client(AUTHORITY, "/room?jwt=t", ["moq-lite-03"], MAX_BUFFER);
    let mut io = Recorder::new(Side::Client);
    web.start(&mut io);
    assert_eq!(
        io.take(),
        [
            Call::Open(client_uni(0)),
            Call::Write {
                id: client_uni(0),
                bytes: control_stream(false).to_vec(),
                fin: false,
            },
            Call::Open(connect()),
            Call::Write {
                id: connect(),
                bytes: request("/room?jwt=t", &["moq-lite-03"]),
                fin: false,
            },
        ]
    );
    assert!(web.owns(connect()));
    assert_eq!(web.stream_prefix(Dir::Uni), None);
}

// ---------------------------------------------------------------------------------------------
// CONNECT and its response.

#[test]
fn server_answers_connect_with_the_chosen_protocol_at_every_cut_point() {
    let bytes = request(
        "/room/a?jwt=tok",
        &["moq-lite-04", "moq-lite-02", "moq-lite-03"],
    );
    for cut in 0..=bytes.len() {
        let (mut web, mut io) = server();
        web.accept(connect());
        let mut events = feed(&mut web, &mut io, connect(), &bytes[..cut], End::Open);
        if cut < bytes.len() {
            assert!(events.is_empty(), "cut {cut}: {events:?}");
            assert_eq!(web.stream_prefix(Dir::Bi), None);
            events = feed(&mut web, &mut io, connect(), &bytes[cut..], End::Open);
        }
        assert_eq!(
            events,
            [opened("room/a", Some("moq-lite-02"), Some("tok"))],
            "cut {cut}"
        );
        assert_eq!(
            io.take(),
            [
                Call::Priority {
                    id: connect(),
                    priority: CONNECT_PRIORITY,
                },
                Call::Write {
                    id: connect(),
                    bytes: response(200, Some("moq-lite-02")).to_vec(),
                    fin: false,
                },
            ],
            "cut {cut}"
        );
        assert_eq!(web.session_id(), Some(0));
        assert_eq!(web.stream_prefix(Dir::Uni), Some(uni_prefix(0)));
        assert_eq!(web.stream_prefix(Dir::Bi), Some(bidi_prefix(0)));
        // The CONNECT stream stays the session's, for capsules.
        assert!(web.owns(connect()));
    }
}

#[test]
fn server_without_a_common_protocol_answers_200_without_one() {
    let (mut web, mut io) = server();
    web.accept(connect());
    let events = feed(
        &mut web,
        &mut io,
        connect(),
        &request("/", &["moq-lite-05"]),
        End::Open,
    );
    assert_eq!(events, [opened("", None, None)]);
    assert_eq!(io.written(connect()), response(200, None).to_vec());
}

#[test]
fn root_refused_by_the_check_is_answered_414() {
    let (mut web, mut io) = server();
    web.accept(connect());
    let events = feed(
        &mut web,
        &mut io,
        connect(),
        &request("/bad", &[]),
        End::Open,
    );
    assert!(events.is_empty());
    assert_eq!(
        io.take(),
        [Call::Write {
            id: connect(),
            bytes: response(414, None).to_vec(),
            fin: true,
        }]
    );
    // The stream is no longer read, and no second CONNECT is taken.
    assert!(!web.owns(connect()));
    assert_eq!(web.session_id(), None);
    web.accept(client_bidi(1));
    feed(
        &mut web,
        &mut io,
        client_bidi(1),
        &request("/room", &[]),
        End::Open,
    );
    assert_eq!(io.take(), refused(client_bidi(1), H3_REQUEST_REJECTED));
}

#[test]
fn refused_request_is_answered_and_a_new_connect_may_follow() {
    let (mut web, mut io) = server();
    web.accept(connect());
    let get = headers_frame(&[
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", AUTHORITY),
        (":path", "/room"),
    ]);
    let events = feed(&mut web, &mut io, connect(), &get, End::Open);
    assert!(events.is_empty());
    assert_eq!(
        io.take(),
        [
            Call::Write {
                id: connect(),
                bytes: response(405, None).to_vec(),
                fin: true,
            },
            Call::Stop {
                id: connect(),
                code: H3_NO_ERROR,
            },
        ]
    );
    let next = client_bidi(1);
    web.accept(next);
    let events = feed(&mut web, &mut io, next, &request("/room", &[]), End::Open);
    assert_eq!(events, [opened("room", None, None)]);
    assert_eq!(web.session_id(), Some(u64::from(next)));
}

/// Nothing answers a CONNECT until the layer above decides: a refusal is the HTTP status
/// alone (no 200 first, no session, held streams stay held), and the next CONNECT may succeed.
#[test]
fn connect_waits_for_the_layer_above_and_a_refusal_is_a_status() {
    let (mut web, mut io) = server();
    let early = client_uni(0);
    web.accept(early);
    let mut header = uni_prefix(u64::from(connect())).to_vec();
    header.extend_from_slice(b"early");
    assert!(feed_raw(&mut web, &mut io, early, &header, End::Open).is_empty());
    web.accept(connect());
    let events = feed_raw(
        &mut web,
        &mut io,
        connect(),
        &request("/room/?jwt=t0k", &["moq-lite-03"]),
        End::Open,
    );
    assert_eq!(
        events,
        [WebEvent::Connect {
            root: "room".into(),
            protocol: Some("moq-lite-03".into()),
            jwt: Some("t0k".into()),
        }]
    );
    assert_eq!(io.take(), []);
    web.reject_connect(&mut io, 401);
    assert_eq!(
        io.take(),
        [
            Call::Write {
                id: connect(),
                bytes: response(401, None).to_vec(),
                fin: true,
            },
            Call::Stop {
                id: connect(),
                code: H3_NO_ERROR,
            },
        ]
    );
    assert_eq!(web.session_id(), None);
    assert!(web.owns(early) && !web.owns(connect()));
    // Accepting twice, or with nothing asked, does nothing.
    assert!(web.accept_connect(&mut io).is_empty());
    assert_eq!(io.take(), []);

    let next = client_bidi(1);
    web.accept(next);
    let events = feed_raw(&mut web, &mut io, next, &request("/room", &[]), End::Open);
    assert!(matches!(events[..], [WebEvent::Connect { .. }]));
    assert_eq!(io.take(), []);
    assert_eq!(web.accept_connect(&mut io), [opened("room", None, None)]);
    assert_eq!(
        io.take(),
        [
            Call::Priority {
                id: next,
                priority: CONNECT_PRIORITY,
            },
            Call::Write {
                id: next,
                bytes: response(200, None).to_vec(),
                fin: false,
            },
            // The early stream named the refused session: refused now.
            Call::Stop {
                id: early,
                code: WT_BUFFERED_STREAM_REJECTED,
            },
        ]
    );
}

#[test]
fn second_connect_is_rejected() {
    let (mut web, mut io) = open_server();
    let second = client_bidi(1);
    web.accept(second);
    let events = feed(
        &mut web,
        &mut io,
        second,
        &request("/other", &[]),
        End::Open,
    );
    assert!(events.is_empty());
    assert_eq!(io.take(), refused(second, H3_REQUEST_REJECTED));
    assert_eq!(web.session_id(), Some(0));
}

#[test]
fn client_opens_on_a_2xx_at_every_cut_point() {
    let bytes = response(200, Some("moq-lite-03"));
    for cut in 0..=bytes.len() {
        let (mut web, mut io) = client(&["moq-lite-03"]);
        let mut events = feed(&mut web, &mut io, connect(), &bytes[..cut], End::Open);
        if cut < bytes.len() {
            assert!(events.is_empty(), "cut {cut}");
            events = feed(&mut web, &mut io, connect(), &bytes[cut..], End::Open);
        }
        assert_eq!(events, [opened("/room", Some("moq-lite-03"), None)]);
        assert!(io.take().is_empty());
        assert_eq!(web.stream_prefix(Dir::Uni), Some(uni_prefix(0)));
    }
}

#[test]
fn client_refused_by_the_server_closes() {
    let (mut web, mut io) = client(&[]);
    let events = feed(
        &mut web,
        &mut io,
        connect(),
        &response(404, None),
        End::Open,
    );
    assert_eq!(events, [WebEvent::Refused { status: 404 }]);
    assert_eq!(
        io.closed(),
        Some((H3_NO_ERROR, b"CONNECT refused with status 404".to_vec()))
    );
    assert_eq!(web.session_id(), None);
}

#[test]
fn request_stream_from_a_server_is_rejected() {
    let (mut web, mut io) = client(&[]);
    let id = StreamId::new(Side::Server, Dir::Bi, 0);
    web.accept(id);
    feed(&mut web, &mut io, id, &request("/", &[]), End::Open);
    assert_eq!(io.take(), refused(id, H3_REQUEST_REJECTED));
}

// ---------------------------------------------------------------------------------------------
// WebTransport streams.

/// Feeds `bytes` in two reads cut at `cut`, as the moq layer would after a hand-over (bytes
/// after the hand-over go to the moq layer, not the session); returns the payload the moq
/// layer got and the end the hand-over reported.
fn hand_over(
    web: &mut WebSession,
    io: &mut Recorder,
    id: StreamId,
    bytes: &[u8],
    cut: usize,
) -> (Vec<u8>, End) {
    web.accept(id);
    let mut events = feed(web, io, id, &bytes[..cut], End::Open);
    let mut moq = Vec::new();
    if events.is_empty() {
        assert!(web.owns(id), "cut {cut}");
        events = feed(web, io, id, &bytes[cut..], End::Fin);
    } else {
        moq.extend_from_slice(&bytes[cut..]);
    }
    let [
        WebEvent::Stream {
            id: got,
            chunks,
            end,
            ..
        },
    ] = &events[..]
    else {
        panic!("cut {cut}: {events:?}");
    };
    assert_eq!(*got, id);
    assert!(!web.owns(id), "handed over, so no longer the session's");
    ([chunks.concat(), moq].concat(), *end)
}

#[test]
fn uni_stream_payload_follows_the_header_at_every_cut_point() {
    let payload = b"\x00group header and frames";
    let bytes = wt(uni_prefix(0), payload);
    for cut in 0..=bytes.len() {
        let (mut web, mut io) = open_server();
        let id = client_uni(cut as u64);
        let (got, end) = hand_over(&mut web, &mut io, id, &bytes, cut);
        assert_eq!(got, payload, "cut {cut}");
        let header = uni_prefix(0).len();
        assert_eq!(end, if cut < header { End::Fin } else { End::Open });
        assert!(io.take().is_empty());
    }
}

#[test]
fn bidi_stream_payload_follows_the_header_at_every_cut_point() {
    let payload = b"\x02subscribe request";
    let bytes = wt(bidi_prefix(0), payload);
    for cut in 0..=bytes.len() {
        let (mut web, mut io) = open_server();
        let id = client_bidi(1 + cut as u64);
        let (got, _) = hand_over(&mut web, &mut io, id, &bytes, cut);
        assert_eq!(got, payload, "cut {cut}");
        assert!(io.take().is_empty());
    }
}

#[test]
fn payload_after_the_header_is_not_copied() {
    // The session copies at most the 16 bytes a header can take; the payload beyond them is
    // handed over in the chunks it came in.
    let (mut web, mut io) = open_server();
    let window = 16 - uni_prefix(0).len();
    for (index, chunks) in [
        vec![uni_prefix(0), Bytes::from(vec![7u8; 4096])],
        vec![Bytes::from(wt(uni_prefix(0), &[7u8; 4096]))],
    ]
    .into_iter()
    .enumerate()
    {
        let id = client_uni(index as u64);
        let last = chunks.last().cloned().expect("a chunk");
        web.accept(id);
        let events = web.on_stream(&mut io, id, chunks, End::Open);
        let [WebEvent::Stream { chunks, .. }] = &events[..] else {
            panic!("{events:?}");
        };
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0].len(), window);
        assert_eq!(
            chunks[1].as_ptr(),
            last[last.len() - (4096 - window)..].as_ptr()
        );
        assert_eq!(chunks.concat(), vec![7u8; 4096]);
    }
}

#[test]
fn stream_ended_before_its_header_is_dropped() {
    let (mut web, mut io) = open_server();
    let id = client_uni(0);
    web.accept(id);
    let events = feed(&mut web, &mut io, id, &[0x40], End::Fin);
    assert!(events.is_empty());
    assert!(io.take().is_empty());
    assert!(!web.owns(id));
}

// ---------------------------------------------------------------------------------------------
// Early streams.

#[test]
fn early_streams_wait_for_the_session_and_are_released_in_order() {
    let (mut web, mut io) = server();
    let (a, b) = (client_uni(0), client_bidi(1));
    web.accept(a);
    web.accept(b);
    assert!(
        feed(
            &mut web,
            &mut io,
            a,
            &wt(uni_prefix(0), b"early"),
            End::Open
        )
        .is_empty()
    );
    assert!(
        feed(
            &mut web,
            &mut io,
            b,
            &wt(bidi_prefix(0), b"bidi"),
            End::Open
        )
        .is_empty()
    );
    assert!(feed(&mut web, &mut io, a, b"-a", End::Fin).is_empty());
    // A read after FIN finds the stream gone in quinn (a reset with code 0): still held.
    assert!(feed(&mut web, &mut io, a, &[], End::Reset(0)).is_empty());
    assert!(web.owns(a) && web.owns(b));
    assert!(io.take().is_empty());

    web.accept(connect());
    let events = feed(
        &mut web,
        &mut io,
        connect(),
        &request("/room", &[]),
        End::Open,
    );
    assert_eq!(
        joined(events),
        [
            opened("room", None, None),
            handed(a, false, b"early-a", End::Fin),
            handed(b, true, b"bidi", End::Open),
        ]
    );
    assert!(!web.owns(a) && !web.owns(b));
}

#[test]
fn client_holds_streams_that_beat_the_response() {
    let (mut web, mut io) = client(&[]);
    let id = server_uni(1);
    web.accept(id);
    assert!(
        feed(
            &mut web,
            &mut io,
            id,
            &wt(uni_prefix(0), b"group"),
            End::Open
        )
        .is_empty()
    );
    let events = feed(
        &mut web,
        &mut io,
        connect(),
        &response(200, None),
        End::Open,
    );
    assert_eq!(
        joined(events),
        [
            opened("/room", None, None),
            handed(id, false, b"group", End::Open)
        ]
    );
}

#[test]
fn seventeenth_early_stream_is_refused() {
    let (mut web, mut io) = server();
    for i in 0..MAX_EARLY_STREAMS as u64 {
        web.accept(client_uni(i));
        feed(&mut web, &mut io, client_uni(i), &uni_prefix(0), End::Open);
    }
    assert!(io.take().is_empty());
    let (uni, bidi) = (client_uni(MAX_EARLY_STREAMS as u64), client_bidi(1));
    web.accept(uni);
    feed(&mut web, &mut io, uni, &uni_prefix(0), End::Open);
    assert_eq!(io.take(), refused(uni, WT_BUFFERED_STREAM_REJECTED));
    web.accept(bidi);
    feed(&mut web, &mut io, bidi, &bidi_prefix(0), End::Open);
    assert_eq!(io.take(), refused(bidi, WT_BUFFERED_STREAM_REJECTED));

    // The sixteen held ones are released when the session opens.
    web.accept(connect());
    let events = feed(&mut web, &mut io, connect(), &request("/", &[]), End::Open);
    assert_eq!(events.len(), 1 + MAX_EARLY_STREAMS);
}

#[test]
fn early_stream_over_its_budget_is_refused() {
    let (mut web, mut io) = server();
    let id = client_bidi(1);
    web.accept(id);
    feed(&mut web, &mut io, id, &bidi_prefix(0), End::Open);
    feed(
        &mut web,
        &mut io,
        id,
        &vec![1u8; MAX_EARLY_BYTES],
        End::Open,
    );
    assert!(io.take().is_empty(), "exactly the budget is held");
    feed(&mut web, &mut io, id, b"x", End::Open);
    assert_eq!(io.take(), refused(id, WT_BUFFERED_STREAM_REJECTED));
    assert!(!web.owns(id));

    web.accept(connect());
    let events = feed(&mut web, &mut io, connect(), &request("/", &[]), End::Open);
    assert_eq!(events, [opened("", None, None)]);
}

#[test]
fn early_stream_of_another_session_is_refused_when_the_session_opens() {
    let (mut web, mut io) = server();
    let id = client_bidi(2);
    web.accept(id);
    feed(
        &mut web,
        &mut io,
        id,
        &wt(bidi_prefix(4), b"lost"),
        End::Open,
    );
    assert!(io.take().is_empty());
    web.accept(connect());
    let events = feed(&mut web, &mut io, connect(), &request("/", &[]), End::Open);
    assert_eq!(events, [opened("", None, None)]);
    assert_eq!(io.take()[2..], refused(id, WT_BUFFERED_STREAM_REJECTED));
}

#[test]
fn stream_of_another_session_after_open_is_refused() {
    let (mut web, mut io) = open_server();
    let id = client_uni(3);
    web.accept(id);
    let events = feed(&mut web, &mut io, id, &wt(uni_prefix(8), b"x"), End::Open);
    assert!(events.is_empty());
    assert_eq!(io.take(), refused(id, WT_BUFFERED_STREAM_REJECTED));
}

#[test]
fn early_stream_reset_by_the_peer_is_forgotten() {
    let (mut web, mut io) = server();
    let id = client_uni(0);
    web.accept(id);
    feed(&mut web, &mut io, id, &wt(uni_prefix(0), b"x"), End::Open);
    feed(&mut web, &mut io, id, &[], End::Reset(7));
    assert!(!web.owns(id));
    web.accept(connect());
    let events = feed(&mut web, &mut io, connect(), &request("/", &[]), End::Open);
    assert_eq!(events, [opened("", None, None)]);
}

// ---------------------------------------------------------------------------------------------
// The end of the session.

#[test]
fn close_capsule_ends_the_session() {
    let (mut web, mut io) = open_server();
    let events = feed(
        &mut web,
        &mut io,
        connect(),
        &close_capsule(7, "bye"),
        End::Open,
    );
    assert_eq!(
        events,
        [WebEvent::Closed {
            code: 7,
            reason: "bye".into(),
        }]
    );
    assert_eq!(
        io.take(),
        [Call::Close {
            code: H3_NO_ERROR,
            reason: b"bye".to_vec()
        }]
    );
    assert!(!web.owns(connect()));
}

#[test]
fn drain_capsule_changes_nothing() {
    let (mut web, mut io) = open_server();
    let events = feed(&mut web, &mut io, connect(), &drain_capsule(), End::Open);
    assert!(events.is_empty());
    assert!(io.take().is_empty());
    assert!(web.owns(connect()));
}

#[test]
fn connect_fin_ends_the_session() {
    let (mut web, mut io) = open_server();
    let events = feed(&mut web, &mut io, connect(), &[], End::Fin);
    assert_eq!(
        events,
        [WebEvent::Closed {
            code: 0,
            reason: String::new(),
        }]
    );
    assert_eq!(
        io.take(),
        [Call::Close {
            code: H3_NO_ERROR,
            reason: Vec::new()
        }]
    );
}

#[test]
fn connect_reset_ends_the_session() {
    let (mut web, mut io) = open_server();
    let events = feed(
        &mut web,
        &mut io,
        connect(),
        &[],
        End::Reset(0x52e4a40fa8db),
    );
    assert_eq!(
        events,
        [WebEvent::Closed {
            code: 0x52e4a40fa8db,
            reason: "CONNECT stream reset".into(),
        }]
    );
    assert_eq!(
        io.closed(),
        Some((H3_NO_ERROR, b"CONNECT stream reset".to_vec()))
    );
}

#[test]
fn server_ending_our_connect_stream_ends_the_session() {
    let (mut web, mut io) = client(&[]);
    feed(
        &mut web,
        &mut io,
        connect(),
        &response(200, None),
        End::Open,
    );
    let events = feed(&mut web, &mut io, connect(), &[], End::Fin);
    assert_eq!(
        events,
        [WebEvent::Closed {
            code: 0,
            reason: "CONNECT stream ended".into(),
        }]
    );
    assert_eq!(
        io.closed(),
        Some((H3_NO_ERROR, b"CONNECT stream ended".to_vec()))
    );
}

// ---------------------------------------------------------------------------------------------
// HTTP/3 errors.

fn connection_error(
    web: &mut WebSession,
    io: &mut Recorder,
    id: StreamId,
    bytes: &[u8],
    end: End,
    code: u64,
) {
    web.accept(id);
    let events = feed(web, io, id, bytes, end);
    let [WebEvent::Failed(e)] = &events[..] else {
        panic!("{events:?}");
    };
    assert_eq!(e.code, code);
    assert!(e.is_connection());
    assert_eq!(
        io.take(),
        [Call::Close {
            code,
            reason: e.reason.as_bytes().to_vec()
        }]
    );
}

#[test]
fn control_stream_closing_is_a_connection_error() {
    let (mut web, mut io) = open_server();
    let id = client_uni(0);
    web.accept(id);
    assert!(feed(&mut web, &mut io, id, &control_stream(false), End::Open).is_empty());
    assert!(io.take().is_empty());
    let events = feed(&mut web, &mut io, id, &[], End::Fin);
    assert_eq!(events, [WebEvent::Failed(Error::closed_critical_stream())]);
    assert_eq!(
        io.take(),
        [Call::Close {
            code: H3_CLOSED_CRITICAL_STREAM,
            reason: b"critical stream closed".to_vec(),
        }]
    );

    let (mut web, mut io) = client(&[]);
    connection_error(
        &mut web,
        &mut io,
        server_uni(0),
        &control_stream(true),
        End::Reset(0),
        H3_CLOSED_CRITICAL_STREAM,
    );
}

#[test]
fn qpack_stream_closing_is_a_connection_error() {
    let (mut web, mut io) = server();
    let id = client_uni(1);
    web.accept(id);
    assert!(feed(&mut web, &mut io, id, &[0x02, 0x3f, 0xe1], End::Open).is_empty());
    let events = feed(&mut web, &mut io, id, &[], End::Fin);
    assert_eq!(events, [WebEvent::Failed(Error::closed_critical_stream())]);
    assert_eq!(io.closed().map(|c| c.0), Some(H3_CLOSED_CRITICAL_STREAM));
}

#[test]
fn second_control_stream_is_a_connection_error() {
    let (mut web, mut io) = server();
    web.accept(client_uni(0));
    feed(
        &mut web,
        &mut io,
        client_uni(0),
        &control_stream(false),
        End::Open,
    );
    connection_error(
        &mut web,
        &mut io,
        client_uni(1),
        &control_stream(false),
        End::Open,
        H3_STREAM_CREATION_ERROR,
    );
}

#[test]
fn control_stream_without_settings_is_a_connection_error() {
    let (mut web, mut io) = server();
    connection_error(
        &mut web,
        &mut io,
        client_uni(0),
        &[0x00, 0x07, 0x01, 0x00],
        End::Open,
        H3_MISSING_SETTINGS,
    );
}

#[test]
fn push_stream_from_a_client_is_a_connection_error() {
    let (mut web, mut io) = server();
    connection_error(
        &mut web,
        &mut io,
        client_uni(0),
        &[0x01, 0x00],
        End::Open,
        H3_STREAM_CREATION_ERROR,
    );
}

#[test]
fn push_and_unknown_streams_on_a_client_are_refused() {
    let (mut web, mut io) = client(&[]);
    for (i, bytes) in [&[0x01, 0x00][..], &[0x40, 0x21]].into_iter().enumerate() {
        let id = server_uni(i as u64);
        web.accept(id);
        let events = feed(&mut web, &mut io, id, bytes, End::Open);
        assert!(events.is_empty());
        assert_eq!(io.take(), refused(id, H3_STREAM_CREATION_ERROR));
        assert!(!web.owns(id));
    }
}

#[test]
fn unknown_stream_from_a_client_is_refused() {
    let (mut web, mut io) = server();
    let id = client_uni(0);
    web.accept(id);
    feed(&mut web, &mut io, id, &[0x40, 0x21, 0xff], End::Open);
    assert_eq!(io.take(), refused(id, H3_STREAM_CREATION_ERROR));
}

#[test]
fn session_id_that_is_not_a_request_stream_is_a_connection_error() {
    let (mut web, mut io) = server();
    connection_error(
        &mut web,
        &mut io,
        client_uni(0),
        &[0x40, 0x54, 0x01],
        End::Open,
        H3_ID_ERROR,
    );
}

#[test]
fn malformed_capsule_is_a_stream_error() {
    // DATA carrying a DRAIN_WEBTRANSPORT_SESSION with a payload: H3_MESSAGE_ERROR on the
    // CONNECT stream only.
    let (mut web, mut io) = open_server();
    let bytes = [0x00, 0x06, 0x80, 0x00, 0x78, 0xae, 0x01, 0x00];
    let events = feed(&mut web, &mut io, connect(), &bytes, End::Open);
    let [WebEvent::Failed(e)] = &events[..] else {
        panic!("{events:?}");
    };
    assert_eq!(e.code, H3_MESSAGE_ERROR);
    assert!(!e.is_connection());
    assert_eq!(io.take(), refused(connect(), H3_MESSAGE_ERROR));
    assert!(!web.owns(connect()));
}

#[test]
fn http3_stream_buffering_is_bounded() {
    let (mut web, mut io) = server();
    let mut bytes = control_stream(false).to_vec();
    bytes.extend(vec![0u8; MAX_BUFFER + 1]);
    connection_error(
        &mut web,
        &mut io,
        client_uni(0),
        &bytes,
        End::Open,
        H3_EXCESSIVE_LOAD,
    );
}

// ---------------------------------------------------------------------------------------------
// Two sessions wired to each other.

/// One end of an in-memory connection: its session, what it wrote, the peer streams it has
/// accepted, and what its moq layer got.
struct Peer {
    web: WebSession,
    io: Recorder,
    accepted: HashSet<StreamId>,
    events: Vec<WebEvent>,
    /// Bytes for the moq layer, by stream, and whether they ended with FIN.
    moq: HashMap<StreamId, (Vec<u8>, bool)>,
}

impl Peer {
    fn new(web: WebSession, side: Side) -> Self {
        Self {
            web,
            io: Recorder::new(side),
            accepted: HashSet::new(),
            events: Vec::new(),
            moq: HashMap::new(),
        }
    }

    /// What the moq layer of this end writes on a stream of its own.
    fn moq_open(&mut self, dir: Dir, payload: &[u8], fin: bool) -> StreamId {
        let id = self.io.open(dir).expect("no limit");
        let prefix = self.web.stream_prefix(dir).expect("open");
        self.io
            .write(id, vec![prefix, Bytes::copy_from_slice(payload)], fin);
        id
    }
}

/// Deliver everything `from` wrote to `to`, as quinn would: new peer streams accepted, bytes
/// of the session's streams to the session, the rest (and hand-overs) to the moq layer.
fn pump(from: &mut Peer, to: &mut Peer) {
    for id in from.io.streams_written() {
        let (bytes, fin) = from.io.take_written(id);
        let end = if fin { End::Fin } else { End::Open };
        if id.initiator() == from.io.side() && to.accepted.insert(id) {
            to.web.accept(id);
        }
        if to.web.owns(id) {
            let events = feed(&mut to.web, &mut to.io, id, &bytes, end);
            for event in events {
                if let WebEvent::Stream {
                    id, chunks, end, ..
                } = &event
                {
                    let moq = to.moq.entry(*id).or_default();
                    moq.0.extend_from_slice(&chunks.concat());
                    moq.1 |= *end == End::Fin;
                }
                to.events.push(event);
            }
        } else {
            let moq = to.moq.entry(id).or_default();
            moq.0.extend_from_slice(&bytes);
            moq.1 |= fin;
        }
    }
    from.io.take();
}

#[test]
fn client_and_server_sessions_talk_to_each_other() {
    let root = |raw: &str| Some(raw.to_owned());
    let mut server = Peer::new(
        WebSession::server(SUPPORTED, root, MAX_BUFFER),
        Side::Server,
    );
    let offered = ["moq-lite-04", "moq-lite-03"];
    let mut client = Peer::new(
        WebSession::client(AUTHORITY, "/live/room?jwt=abc", offered, MAX_BUFFER),
        Side::Client,
    );
    server.web.start(&mut server.io);
    client.web.start(&mut client.io);

    // SETTINGS and the CONNECT one way, SETTINGS and the 200 the other.
    pump(&mut client, &mut server);
    assert_eq!(
        server.events,
        [opened("live/room", Some("moq-lite-03"), Some("abc"))]
    );
    pump(&mut server, &mut client);
    assert_eq!(
        client.events,
        [opened("/live/room?jwt=abc", Some("moq-lite-03"), None)]
    );
    assert!(server.io.closed().is_none() && client.io.closed().is_none());
    server.events.clear();
    client.events.clear();

    // A uni stream from the client, a bidi stream from the server and the client's answer.
    let up = client.moq_open(Dir::Uni, b"group from the client", true);
    pump(&mut client, &mut server);
    assert_eq!(
        joined(std::mem::take(&mut server.events)),
        [handed(up, false, b"group from the client", End::Fin)]
    );
    let down = server.moq_open(Dir::Bi, b"request from the server", false);
    pump(&mut server, &mut client);
    assert_eq!(
        joined(std::mem::take(&mut client.events)),
        [handed(down, true, b"request from the server", End::Open)]
    );
    client
        .io
        .write(down, vec![Bytes::from_static(b"answer")], true);
    pump(&mut client, &mut server);
    assert!(server.events.is_empty());
    assert_eq!(server.moq[&down], (b"answer".to_vec(), true));
    assert_eq!(server.moq[&up], (b"group from the client".to_vec(), true));
    assert_eq!(
        client.moq[&down],
        (b"request from the server".to_vec(), false)
    );

    // The client closes the session with a capsule.
    client
        .io
        .write(connect(), vec![close_capsule(0, "done")], true);
    pump(&mut client, &mut server);
    assert_eq!(
        server.events,
        [WebEvent::Closed {
            code: 0,
            reason: "done".into()
        }]
    );
    assert_eq!(server.io.closed(), Some((H3_NO_ERROR, b"done".to_vec())));
}
