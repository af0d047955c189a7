//! The moq-lite session machine without sockets: one machine against the recording fake,
//! byte for byte, and a client and a server machine wired to each other in memory (streams
//! held "in quinn" until the machine accepts them, as the real engine does).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;

use super::*;
use crate::lite::{
    Announce, AnnounceInit, AnnounceOk, AnnounceRequest, AnnounceStatus, ClientSetup, Fetch,
    GroupHeader, GroupWriter, Message, ServerSetup, Setup, Subscribe, SubscribeOptions,
    SubscribeResponse,
};
use crate::model::{Frame, Group, TrackInfo};
use crate::stream::testing::{Call, Recorder};
use crate::stream::{Side, StreamId};

const ORIGIN: u64 = 77;
const PEER_ORIGIN: u64 = 99;
const VERSIONS: [Version; 5] = [
    Version::Lite01,
    Version::Lite02,
    Version::Lite03,
    Version::Lite04,
    Version::Lite05,
];

fn config(server: bool, origin: u64) -> Config {
    Config {
        server,
        origin,
        setup_versions: Vec::new(),
        setup_path: None,
        role: crate::lite::Role::Both,
        limits: Limits::default(),
    }
}

/// Something written into a buffer: a stream type or a message.
type Item<'a> = &'a dyn Fn(&mut Vec<u8>);

fn enc(items: &[Item<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for item in items {
        item(&mut out);
    }
    out
}

fn control(kind: ControlType, version: Version) -> impl Fn(&mut Vec<u8>) {
    move |b| kind.encode(version, b).unwrap()
}

fn msg<M: Message>(m: M, version: Version) -> impl Fn(&mut Vec<u8>) {
    move |b| m.encode(version, b).unwrap()
}

fn bidi(side: Side, index: u64) -> StreamId {
    StreamId::new(side, Dir::Bi, index)
}

fn uni(side: Side, index: u64) -> StreamId {
    StreamId::new(side, Dir::Uni, index)
}

/// One machine alone on a recorder.
struct One {
    wire: Session,
    io: Recorder,
    events: Vec<PeerEvent>,
}

impl One {
    fn new(server: bool) -> Self {
        let side = if server { Side::Server } else { Side::Client };
        Self {
            wire: Session::new(config(server, ORIGIN)),
            io: Recorder::new(side),
            events: Vec::new(),
        }
    }

    fn start(&mut self, version: Option<Version>) {
        self.wire
            .start(&mut self.io, version, None, &mut self.events);
    }

    /// The peer's bytes on `id` (opening it if new), with FIN when `fin`.
    fn feed(&mut self, id: StreamId, bytes: &[u8], fin: bool) {
        if !self.io.is_ours(id) && !self.wire.reads(id) {
            self.wire.open_peer(id);
        }
        let end = if fin { End::Fin } else { End::Open };
        let chunks = vec![Bytes::copy_from_slice(bytes)];
        self.wire
            .on_stream(&mut self.io, id, chunks, end, 1234, &mut self.events);
    }

    fn take_events(&mut self) -> Vec<PeerEvent> {
        std::mem::take(&mut self.events)
    }
}

/// A server on lite-03 or later is set up at once, and can ask what the peer publishes.
#[test]
fn server_with_an_alpn_version_is_ready_and_asks_for_announcements() {
    for v in [Version::Lite03, Version::Lite04] {
        let mut s = One::new(true);
        s.start(Some(v));
        assert!(matches!(s.take_events()[..], [PeerEvent::Ready]), "{v:?}");
        assert!(s.io.take().is_empty());
        assert_eq!(
            s.wire.announce_interest(&mut s.io, ""),
            Some(bidi(Side::Server, 0))
        );
        let req = bidi(Side::Server, 0);
        let want = enc(&[
            &control(ControlType::Announce, v),
            &msg(
                AnnounceRequest {
                    prefix: String::new(),
                    exclude_hop: ORIGIN,
                },
                v,
            ),
        ]);
        assert_eq!(
            s.io.take(),
            vec![
                Call::Open(req),
                Call::Priority {
                    id: req,
                    priority: CONTROL_PRIORITY
                },
                Call::Write {
                    id: req,
                    bytes: want,
                    fin: false
                },
            ],
            "{v:?}"
        );
    }
}

/// The lite-03 announce request on the wire, pinned: Announce stream type 1, then a framed
/// message with the empty prefix and (lite-03 has no exclude hop) nothing else.
#[test]
fn lite03_announce_request_bytes() {
    let mut s = One::new(true);
    s.start(Some(Version::Lite03));
    s.wire.announce_interest(&mut s.io, "");
    let (bytes, fin) = s.io.take_written(bidi(Side::Server, 0));
    assert_eq!(bytes, vec![0x01, 0x01, 0x00]);
    assert!(!fin);
}

/// Suffixes answer the prefix asked for: an announce request for `room/a` hears of `room/a`
/// itself (empty suffix) and of `room/a/b`, on every version.
#[test]
fn announcements_are_relative_to_the_prefix_asked_for() {
    for v in VERSIONS {
        let mut s = One::new(false);
        s.start(Some(v));
        s.take_events();
        let req = s.wire.announce_interest(&mut s.io, "room/a").unwrap();
        let active = |suffix: &str| Announce {
            status: AnnounceStatus::Active,
            suffix: suffix.to_owned(),
            hops: Vec::new(),
        };
        let bytes = match v {
            Version::Lite01 | Version::Lite02 => enc(&[&msg(
                AnnounceInit {
                    suffixes: vec![String::new(), "b".into()],
                },
                v,
            )]),
            Version::Lite05 => enc(&[
                &msg(
                    AnnounceOk {
                        hop: PEER_ORIGIN,
                        active_count: 2,
                    },
                    v,
                ),
                &msg(active(""), v),
                &msg(active("b"), v),
            ]),
            _ => enc(&[&msg(active(""), v), &msg(active("b"), v)]),
        };
        s.feed(req, &bytes, false);
        let paths: Vec<String> = s
            .take_events()
            .into_iter()
            .filter_map(|e| match e {
                PeerEvent::Announced {
                    path, active: true, ..
                } => Some(path.to_string()),
                _ => None,
            })
            .collect();
        assert_eq!(paths, ["room/a", "room/a/b"], "{v:?}");
    }
}

/// lite-05: SETUP goes out on its own finished uni stream; a server waits for the client's
/// SETUP (which names the root, `?` query dropped) before anything else.
#[test]
fn lite05_server_waits_for_setup_and_takes_its_root() {
    let v = Version::Lite05;
    let mut s = One::new(true);
    s.start(Some(v));
    assert!(s.take_events().is_empty());
    let setup = enc(&[
        &|b: &mut Vec<u8>| DataType::Setup.encode(v, b).unwrap(),
        &msg(
            Setup {
                origin: ORIGIN,
                ..Setup::default()
            },
            v,
        ),
    ]);
    assert_eq!(s.io.take_written(uni(Side::Server, 0)), (setup, true));
    assert!(s.wire.accepts(Dir::Uni));
    assert!(!s.wire.accepts(Dir::Bi));

    let mut theirs = Vec::new();
    DataType::Setup.encode(v, &mut theirs).unwrap();
    Setup {
        path: Some("/room//a/?x=1&jwt=a%2Bb.c&y".into()),
        origin: PEER_ORIGIN,
        role: crate::lite::Role::Subscriber,
        ..Setup::default()
    }
    .encode(v, &mut theirs)
    .unwrap();
    assert_eq!(s.wire.peer_role(), crate::lite::Role::Both);
    s.feed(uni(Side::Client, 0), &theirs, true);
    assert!(matches!(s.take_events()[..], [PeerEvent::Ready]));
    assert_eq!(s.wire.root(), "room/a");
    // The token and the role are kept for the session layer's admission.
    assert_eq!(s.wire.token(), Some("a+b.c"));
    assert_eq!(s.wire.peer_role(), crate::lite::Role::Subscriber);
    assert!(s.wire.accepts(Dir::Bi));

    // Paths of the peer's requests are under the root.
    let sub = bidi(Side::Client, 0);
    let req = enc(&[
        &control(ControlType::Subscribe, v),
        &msg(
            Subscribe {
                id: 4,
                broadcast: "cam".into(),
                track: "video".into(),
                options: SubscribeOptions::default(),
            },
            v,
        ),
    ]);
    s.feed(sub, &req, false);
    match &s.take_events()[..] {
        [
            PeerEvent::Subscribe {
                id, path, track, ..
            },
        ] => {
            assert_eq!(
                (*id, path.as_str(), track.as_str()),
                (4, "room/a/cam", "video")
            );
        }
        other => panic!("{other:?}"),
    }

    // A second SETUP may not re-root the session: it closes it.
    let mut again = Vec::new();
    DataType::Setup.encode(v, &mut again).unwrap();
    Setup {
        path: Some("elsewhere".into()),
        origin: PEER_ORIGIN,
        ..Setup::default()
    }
    .encode(v, &mut again)
    .unwrap();
    assert!(s.io.closed().is_none());
    s.feed(uni(Side::Client, 1), &again, true);
    assert_eq!(
        s.io.closed().map(|c| c.0),
        Some(ErrorCode::PROTOCOL_VIOLATION.0 as u64)
    );
    assert_eq!(s.wire.root(), "room/a");
}

/// lite-01/02 over `moql`: the SETUP exchange on the first bidi stream picks the version.
#[test]
fn legacy_setup_exchange_both_roles() {
    let mut s = One::new(true);
    s.start(None);
    assert!(s.wire.accepts(Dir::Bi) && !s.wire.accepts(Dir::Uni));
    let stream = bidi(Side::Client, 0);
    let offer = ClientSetup {
        versions: vec![0x1234, Version::Lite02.code(), Version::Lite01.code()],
        parameters: Vec::new(),
    };
    let mut bytes = Vec::new();
    offer.encode(Version::Lite02, &mut bytes).unwrap();
    s.feed(stream, &bytes, false);
    assert_eq!(s.wire.version(), Version::Lite02);
    assert!(matches!(s.take_events()[..], [PeerEvent::Ready]));
    let mut reply = Vec::new();
    ServerSetup {
        version: Version::Lite02.code(),
        parameters: Vec::new(),
    }
    .encode(Version::Lite02, &mut reply)
    .unwrap();
    assert_eq!(s.io.take_written(stream).0, reply);

    let mut c = One::new(false);
    c.wire.cfg.setup_versions = vec![Version::Lite01];
    c.start(None);
    let mine = bidi(Side::Client, 0);
    let mut offer = Vec::new();
    ClientSetup {
        versions: vec![Version::Lite01.code()],
        parameters: Vec::new(),
    }
    .encode(Version::Lite02, &mut offer)
    .unwrap();
    assert_eq!(c.io.take_written(mine).0, offer);
    assert!(c.take_events().is_empty());
    let mut answer = Vec::new();
    ServerSetup {
        version: Version::Lite01.code(),
        parameters: Vec::new(),
    }
    .encode(Version::Lite02, &mut answer)
    .unwrap();
    c.feed(mine, &answer, false);
    assert_eq!(c.wire.version(), Version::Lite01);
    assert!(matches!(c.take_events()[..], [PeerEvent::Ready]));

    // A server that picks a version the client did not offer ends the session.
    let mut c = One::new(false);
    c.wire.cfg.setup_versions = vec![Version::Lite01];
    c.start(None);
    let mut answer = Vec::new();
    ServerSetup {
        version: Version::Lite02.code(),
        parameters: Vec::new(),
    }
    .encode(Version::Lite02, &mut answer)
    .unwrap();
    c.feed(mine, &answer, false);
    assert_eq!(
        c.io.closed().map(|c| c.0),
        Some(ErrorCode::VERSION.0 as u64)
    );
    assert!(c.take_events().is_empty());
}

/// Failures of what holds the session together close it; failures of one request refuse
/// only that stream.
#[test]
fn fatal_and_refused_are_told_apart() {
    // No common version: the session closes with VERSION.
    let mut s = One::new(true);
    s.start(None);
    let mut bytes = Vec::new();
    ClientSetup {
        versions: vec![0x1234],
        parameters: Vec::new(),
    }
    .encode(Version::Lite02, &mut bytes)
    .unwrap();
    s.feed(bidi(Side::Client, 0), &bytes, false);
    assert_eq!(
        s.io.closed().map(|c| c.0),
        Some(ErrorCode::VERSION.0 as u64)
    );

    // The session stream ending closes the session.
    let mut s = One::new(true);
    s.start(None);
    let mut bytes = Vec::new();
    ClientSetup {
        versions: vec![Version::Lite02.code()],
        parameters: Vec::new(),
    }
    .encode(Version::Lite02, &mut bytes)
    .unwrap();
    s.feed(bidi(Side::Client, 0), &bytes, false);
    assert!(s.io.closed().is_none());
    s.feed(bidi(Side::Client, 0), &[], true);
    assert_eq!(s.io.closed().map(|c| c.0), Some(ErrorCode::CANCEL.0 as u64));

    // A garbage SUBSCRIBE on a set-up session: that stream is refused, the session lives.
    let v = Version::Lite03;
    let mut s = One::new(true);
    s.start(Some(v));
    s.io.take();
    let req = bidi(Side::Client, 0);
    let mut bytes = Vec::new();
    ControlType::Subscribe.encode(v, &mut bytes).unwrap();
    bytes.extend_from_slice(&[0x05, 0xff, 0xff, 0xff, 0xff, 0xff]);
    s.feed(req, &bytes, true);
    let calls = s.io.take();
    assert!(
        calls
            .iter()
            .any(|c| matches!(c, Call::Stop { id, .. } if *id == req))
    );
    assert!(
        calls
            .iter()
            .any(|c| matches!(c, Call::Reset { id, .. } if *id == req))
    );
    assert!(s.io.closed().is_none());
    assert!(!s.wire.reads(req));
    assert_eq!(s.wire.decode_errors(), 1);

    // A garbage SETUP before the session is set up closes it.
    let v = Version::Lite05;
    let mut s = One::new(true);
    s.start(Some(v));
    let mut bytes = Vec::new();
    DataType::Setup.encode(v, &mut bytes).unwrap();
    bytes.extend_from_slice(&[0x03, 0xff, 0xff, 0xff]);
    s.feed(uni(Side::Client, 0), &bytes, true);
    assert!(s.io.closed().is_some());

    // An unknown uni stream type is refused with UNEXPECTED_STREAM, even before setup.
    let mut s = One::new(true);
    s.start(Some(v));
    s.io.take();
    s.feed(uni(Side::Client, 0), &[0x3f], false);
    assert!(s.io.closed().is_none());
    assert_eq!(
        s.wire.decode_errors(),
        0,
        "a refusal by policy is no decode error"
    );
    assert_eq!(
        s.io.take(),
        vec![Call::Stop {
            id: uni(Side::Client, 0),
            code: ErrorCode::UNEXPECTED_STREAM.to_stream_code()
        }]
    );
}

fn subscribe_bytes(v: Version, id: u64, broadcast: &str) -> Vec<u8> {
    let mut b = Vec::new();
    ControlType::Subscribe.encode(v, &mut b).unwrap();
    Subscribe {
        id,
        broadcast: broadcast.into(),
        track: "t".into(),
        options: SubscribeOptions::default(),
    }
    .encode(v, &mut b)
    .unwrap();
    b
}

#[test]
fn duplicate_and_excess_subscriptions_are_refused() {
    let v = Version::Lite04;
    let mut s = One::new(true);
    s.wire.cfg.limits.max_subscriptions = 2;
    s.start(Some(v));
    s.feed(bidi(Side::Client, 0), &subscribe_bytes(v, 1, "a"), false);
    s.feed(bidi(Side::Client, 1), &subscribe_bytes(v, 1, "b"), false);
    s.feed(bidi(Side::Client, 2), &subscribe_bytes(v, 2, "c"), false);
    s.feed(bidi(Side::Client, 3), &subscribe_bytes(v, 3, "d"), false);
    let reset = |id: StreamId, code: ErrorCode| Call::Reset {
        id,
        code: code.to_stream_code(),
    };
    let calls = s.io.take();
    assert!(calls.contains(&reset(bidi(Side::Client, 1), ErrorCode::DUPLICATE)));
    assert!(calls.contains(&reset(bidi(Side::Client, 3), ErrorCode::BOUNDS_EXCEEDED)));
    assert_eq!(s.wire.subscriptions(), 2);
    let subs = s
        .take_events()
        .iter()
        .filter(|e| matches!(e, PeerEvent::Subscribe { .. }))
        .count();
    assert_eq!(subs, 2);
}

fn group(seq: u64, payloads: &[&'static [u8]], done: bool) -> Group {
    Group {
        seq,
        frames: payloads
            .iter()
            .map(|p| Arc::new(Frame::from_bytes(7, Bytes::from_static(p))))
            .collect(),
        done,
        done_at: None,
    }
}

/// Delivery: one uni stream per group, GROUP header then frames with the payload as given,
/// FIN when done; lite-05 says SUBSCRIBE_START first; older versions answer SUBSCRIBE_OK.
#[test]
fn deliver_writes_groups_byte_exact() {
    for v in VERSIONS {
        let mut s = One::new(true);
        s.start(Some(v));
        if v == Version::Lite05 {
            let mut setup = Vec::new();
            DataType::Setup.encode(v, &mut setup).unwrap();
            Setup::default().encode(v, &mut setup).unwrap();
            s.feed(uni(Side::Client, 0), &setup, true);
        }
        let req = bidi(Side::Client, 0);
        s.feed(req, &subscribe_bytes(v, 9, "b"), false);
        s.io.take();
        assert!(s.wire.accept_subscribe(&mut s.io, 9));
        let (answer, _) = s.io.take_written(req);
        let mut ok = Vec::new();
        if v < Version::Lite05 {
            SubscribeResponse::Ok(SubscribeOptions::default())
                .encode(v, &mut ok)
                .unwrap();
        }
        assert_eq!(answer, ok, "{v:?}");

        let done = s
            .wire
            .deliver(&mut s.io, 9, &group(3, &[b"ab", b"cde"], true));
        assert_eq!(
            done,
            Delivery {
                frames: 2,
                resets: 0
            }
        );
        let out = if v == Version::Lite05 {
            uni(Side::Server, 1)
        } else {
            uni(Side::Server, 0)
        };
        let mut want = Vec::new();
        let mut w = GroupWriter::new(v);
        w.header(
            &GroupHeader {
                subscribe_id: 9,
                sequence: 3,
            },
            &mut want,
        )
        .unwrap();
        w.frame(2, 7, &mut want).unwrap();
        want.extend_from_slice(b"ab");
        w.frame(3, 7, &mut want).unwrap();
        want.extend_from_slice(b"cde");
        assert_eq!(s.io.take_written(out), (want, true), "{v:?}");
        if v == Version::Lite05 {
            let mut start = Vec::new();
            SubscribeResponse::Start(3).encode(v, &mut start).unwrap();
            assert_eq!(s.io.take_written(req).0, start);
        }
    }
}

/// A slow subscriber: a new group resets the oldest backlogged one past the in-flight bound,
/// and later frames of that group do not reopen it.
#[test]
fn in_flight_bound_resets_the_oldest_backlogged_group() {
    let v = Version::Lite03;
    let mut s = One::new(true);
    s.wire.cfg.limits.max_groups_in_flight = 2;
    s.start(Some(v));
    s.feed(bidi(Side::Client, 0), &subscribe_bytes(v, 1, "b"), false);
    s.wire.accept_subscribe(&mut s.io, 1);
    s.wire.deliver(&mut s.io, 1, &group(0, &[b"x"], false));
    s.wire.deliver(&mut s.io, 1, &group(1, &[b"y"], false));
    let first = uni(Side::Server, 0);
    s.io.set_backlog(first, Some(3));
    s.io.take();
    let done = s.wire.deliver(&mut s.io, 1, &group(2, &[b"z"], false));
    assert_eq!(done.resets, 1);
    assert_eq!(
        s.io.take()[0],
        Call::Reset {
            id: first,
            code: ErrorCode::CANCEL.to_stream_code()
        }
    );
    let again = s
        .wire
        .deliver(&mut s.io, 1, &group(0, &[b"x", b"x2"], false));
    assert_eq!(again, Delivery::default());
    assert!(s.io.take().is_empty());
}

/// FETCH (lite-05): the group's frames and FIN; an unknown group is NOT_FOUND.
#[test]
fn fetch_is_answered_with_the_whole_group() {
    let v = Version::Lite05;
    let mut s = One::new(true);
    s.start(Some(v));
    let mut setup = Vec::new();
    DataType::Setup.encode(v, &mut setup).unwrap();
    Setup::default().encode(v, &mut setup).unwrap();
    s.feed(uni(Side::Client, 0), &setup, true);
    let req = bidi(Side::Client, 0);
    let mut b = Vec::new();
    ControlType::Fetch.encode(v, &mut b).unwrap();
    Fetch {
        broadcast: "b".into(),
        track: "t".into(),
        priority: 0,
        group: 5,
    }
    .encode(v, &mut b)
    .unwrap();
    s.take_events();
    s.feed(req, &b, false);
    match &s.take_events()[..] {
        [
            PeerEvent::Fetch {
                request,
                path,
                track,
                group,
            },
        ] => {
            assert_eq!(
                (*request, path.as_str(), track.as_str(), *group),
                (req.into(), "b", "t", 5)
            );
        }
        other => panic!("{other:?}"),
    }
    s.io.take();
    let g = group(5, &[b"hello"], true);
    s.wire.answer_fetch(&mut s.io, req, Some(&g.frames));
    let mut want = Vec::new();
    GroupWriter::new(v).frame(5, 7, &mut want).unwrap();
    want.extend_from_slice(b"hello");
    assert_eq!(s.io.take_written(req), (want, true));

    let other = bidi(Side::Client, 1);
    s.feed(other, &b, false);
    s.wire.answer_fetch(&mut s.io, other, None);
    assert!(s.io.take().contains(&Call::Reset {
        id: other,
        code: ErrorCode::NOT_FOUND.to_stream_code()
    }));
}

// ----- two machines in memory -------------------------------------------------------------

/// One end of an in-memory connection.
struct Peer {
    wire: Session,
    io: Recorder,
    events: Vec<PeerEvent>,
    /// Peer streams not yet accepted, as quinn holds them: bytes, and whether FIN came.
    held: BTreeMap<StreamId, (Vec<u8>, bool)>,
    accepted: HashSet<StreamId>,
    /// What this end publishes, answered to announce interest.
    publishes: Vec<(Arc<str>, Vec<u64>)>,
}

impl Peer {
    fn new(server: bool, origin: u64) -> Self {
        let side = if server { Side::Server } else { Side::Client };
        Self {
            wire: Session::new(config(server, origin)),
            io: Recorder::new(side),
            events: Vec::new(),
            held: BTreeMap::new(),
            accepted: HashSet::new(),
            publishes: Vec::new(),
        }
    }

    /// Bytes from the other end on `id`.
    fn receive(&mut self, id: StreamId, bytes: Vec<u8>, end: End) {
        if self.io.is_ours(id) || self.accepted.contains(&id) {
            let chunks = vec![Bytes::from(bytes)];
            self.wire
                .on_stream(&mut self.io, id, chunks, end, 1234, &mut self.events);
            return;
        }
        let held = self.held.entry(id).or_default();
        held.0.extend_from_slice(&bytes);
        held.1 |= end == End::Fin;
    }

    /// Take held streams, in index order per direction, as long as the machine accepts them.
    fn accept(&mut self) -> bool {
        let mut any = false;
        while let Some(id) = self
            .held
            .keys()
            .copied()
            .find(|id| self.wire.accepts(id.dir()))
        {
            let (bytes, fin) = self.held.remove(&id).expect("found");
            self.accepted.insert(id);
            self.wire.open_peer(id);
            let end = if fin { End::Fin } else { End::Open };
            self.receive(id, bytes, end);
            any = true;
        }
        any
    }

    /// Play the relay above the machine: answer announce interest with what this end
    /// publishes, take every subscription. Returns the events it did not answer.
    fn answer(&mut self) -> Vec<PeerEvent> {
        let mut rest = Vec::new();
        for event in std::mem::take(&mut self.events) {
            match event {
                PeerEvent::Ready => {
                    let root = self.wire.root().to_owned();
                    assert!(self.wire.announce_interest(&mut self.io, &root).is_some());
                    rest.push(event);
                }
                PeerEvent::AnnounceInterest {
                    request,
                    prefix,
                    exclude_hop,
                } => {
                    let active = self.publishes.iter().map(|(p, h)| (p, h.as_slice()));
                    self.wire.announce_start(
                        &mut self.io,
                        request.into(),
                        &prefix,
                        exclude_hop,
                        active,
                    );
                }
                PeerEvent::Subscribe { id, .. } => {
                    assert!(self.wire.accept_subscribe(&mut self.io, id));
                    rest.push(event);
                }
                other => rest.push(other),
            }
        }
        rest
    }
}

/// A client and a server machine with the bytes each writes carried to the other.
struct Pair {
    client: Peer,
    server: Peer,
    /// Heard so far, per end, in order.
    client_heard: Vec<PeerEvent>,
    server_heard: Vec<PeerEvent>,
    /// Deliver each batch of writes newest stream first (a hostile but legal reordering of
    /// streams: QUIC orders bytes within a stream, never across streams).
    reverse: bool,
}

impl Pair {
    fn new(version: Option<Version>) -> Self {
        Self::with_root(version, None)
    }

    /// `root`: the client's lite-05 SETUP Path.
    fn with_root(version: Option<Version>, root: Option<&str>) -> Self {
        let mut pair = Self {
            client: Peer::new(false, ORIGIN),
            server: Peer::new(true, PEER_ORIGIN),
            client_heard: Vec::new(),
            server_heard: Vec::new(),
            reverse: false,
        };
        pair.server.publishes.push(("live/cam".into(), vec![5]));
        pair.client.wire.cfg.setup_path = root.map(str::to_owned);
        let c = &mut pair.client;
        c.wire.start(&mut c.io, version, None, &mut c.events);
        let s = &mut pair.server;
        s.wire.start(&mut s.io, version, None, &mut s.events);
        pair
    }

    /// Carry writes both ways until nothing moves.
    fn run(&mut self) {
        for _ in 0..100 {
            let mut moved = false;
            for to_server in [true, false] {
                let (from, to) = if to_server {
                    (&mut self.client, &mut self.server)
                } else {
                    (&mut self.server, &mut self.client)
                };
                let mut calls = from.io.take();
                if self.reverse {
                    // Stable: the calls of one stream keep their order.
                    calls.sort_by_key(|c| std::cmp::Reverse(stream_of(c)));
                }
                for call in calls {
                    moved = true;
                    match call {
                        Call::Write { id, bytes, fin } => {
                            to.receive(id, bytes, if fin { End::Fin } else { End::Open })
                        }
                        Call::Reset { id, code } => to.receive(id, Vec::new(), End::Reset(code)),
                        Call::Close { .. } => panic!("session closed: {call:?}"),
                        _ => {}
                    }
                }
                moved |= to.accept();
            }
            let heard = self.client.answer();
            moved |= !heard.is_empty();
            self.client_heard.extend(heard);
            let heard = self.server.answer();
            moved |= !heard.is_empty();
            self.server_heard.extend(heard);
            if !moved {
                return;
            }
        }
        panic!("the pair never settled");
    }
}

fn stream_of(call: &Call) -> Option<StreamId> {
    match call {
        Call::Open(id)
        | Call::Write { id, .. }
        | Call::Reset { id, .. }
        | Call::Stop { id, .. }
        | Call::Priority { id, .. } => Some(*id),
        Call::Close { .. } => None,
    }
}

/// Every version, in order and with streams reordered: setup, the announcement of what the
/// server publishes, a subscription and a whole group, then the subscriber leaving.
#[test]
fn pair_announces_subscribes_and_delivers_on_every_version() {
    let cases: Vec<Option<Version>> = [None].into_iter().chain(VERSIONS.map(Some)).collect();
    for version in cases {
        for reverse in [false, true] {
            let name = format!("{version:?} reverse={reverse}");
            let mut pair = Pair::new(version);
            pair.reverse = reverse;
            pair.run();
            assert!(
                pair.client.wire.is_ready() && pair.server.wire.is_ready(),
                "{name}"
            );
            assert!(pair.client_heard.contains(&PeerEvent::Ready), "{name}");
            let announced = pair.client_heard.iter().find_map(|e| match e {
                PeerEvent::Announced { path, active, hops } => {
                    Some((path.clone(), *active, hops.clone()))
                }
                _ => None,
            });
            let (path, active, hops) = announced.unwrap_or_else(|| panic!("{name}: no announce"));
            assert_eq!((&*path, active), ("live/cam", true), "{name}");
            let v = pair.client.wire.version();
            let want_hops = match v {
                Version::Lite01 | Version::Lite02 => vec![],
                // lite-03 carries only the hop count, which decodes as that many zero ids.
                Version::Lite03 => vec![0, 0],
                // lite-04 adds the server's origin to each ANNOUNCE, lite-05 once in
                // ANNOUNCE_OK; either way the subscriber sees the same path.
                Version::Lite04 | Version::Lite05 => vec![5, PEER_ORIGIN],
            };
            assert_eq!(hops, want_hops, "{name}");
            assert_eq!(pair.server.wire.announced_to_peer().len(), 1, "{name}");

            let c = &mut pair.client;
            let up = c
                .wire
                .subscribe(&mut c.io, "live/cam", "video")
                .expect("subscribed");
            pair.run();
            let sub = pair
                .server_heard
                .iter()
                .find_map(|e| match e {
                    PeerEvent::Subscribe {
                        id, path, track, ..
                    } => {
                        assert_eq!((path.as_str(), track.as_str()), ("live/cam", "video"));
                        Some(*id)
                    }
                    _ => None,
                })
                .unwrap_or_else(|| panic!("{name}: no subscribe"));
            let s = &mut pair.server;
            let done = s
                .wire
                .deliver(&mut s.io, sub, &group(8, &[b"one", b"two"], true));
            assert_eq!(done.frames, 2, "{name}");
            pair.run();
            let got: Vec<&PeerEvent> = pair
                .client_heard
                .iter()
                .filter(|e| {
                    matches!(
                        e,
                        PeerEvent::Group { .. }
                            | PeerEvent::Frame { .. }
                            | PeerEvent::GroupDone { .. }
                    )
                })
                .collect();
            assert_eq!(got.len(), 4, "{name}: {got:?}");
            assert!(matches!(got[0], PeerEvent::Group { up: u, seq: 8, .. } if *u == up));
            let payloads: Vec<Vec<u8>> = got[1..3]
                .iter()
                .map(|e| match e {
                    PeerEvent::Frame { frame, seq: 8, .. } => frame.chunks.concat(),
                    other => panic!("{other:?}"),
                })
                .collect();
            assert_eq!(payloads, vec![b"one".to_vec(), b"two".to_vec()], "{name}");
            // Timestamps travel from lite-05 on; before, the receiver stamps its own time.
            if let PeerEvent::Frame { frame, .. } = got[1] {
                let want = if v == Version::Lite05 { 7 } else { 1234 };
                assert_eq!(frame.timestamp, want, "{name}");
            }
            assert!(matches!(got[3], PeerEvent::GroupDone { seq: 8, .. }));

            let c = &mut pair.client;
            c.wire.unsubscribe(&mut c.io, up);
            pair.run();
            assert!(
                pair.server_heard
                    .contains(&PeerEvent::Unsubscribe { id: sub }),
                "{name}"
            );
            assert_eq!(pair.server.wire.subscriptions(), 0, "{name}");
        }
    }
}

/// The orderings of issue 17: the client's requests reach the server before its SETUP, split
/// across packets. The machine does not accept them before it is set up (so the bytes wait in
/// quinn) and reads them once SETUP has given the root they are relative to.
#[test]
fn announce_request_before_setup_is_answered_after_it() {
    for version in [None, Some(Version::Lite05)] {
        for split in [0usize, 1, 2] {
            let mut pair = Pair::with_root(version, Some("room"));
            // Under the client's root when it has one (lite-05): what it may hear of.
            pair.server.publishes.push(("room/cam".into(), vec![]));
            // Carry the client's writes by hand: the request stream first, in pieces.
            let mut calls = pair.client.io.take();
            let c = &mut pair.client;
            c.wire.subscribe(&mut c.io, "x", "y");
            calls.extend(pair.client.io.take());
            calls.sort_by_key(|c| match c {
                Call::Write { id, .. } if id.dir() == Dir::Bi && version.is_some() => 0,
                _ => 1,
            });
            for call in calls {
                if let Call::Write { id, bytes, fin } = call {
                    let cut = split.min(bytes.len());
                    let s = &mut pair.server;
                    s.receive(id, bytes[..cut].to_vec(), End::Open);
                    s.accept();
                    s.receive(
                        id,
                        bytes[cut..].to_vec(),
                        if fin { End::Fin } else { End::Open },
                    );
                    s.accept();
                }
            }
            pair.run();
            let name = format!("{version:?} split={split}");
            assert!(pair.server.wire.is_ready(), "{name}");
            assert_eq!(pair.server.wire.announce_requests(), 1, "{name}");
            // And the server's own interest, under the root SETUP gave it, reached the client.
            assert_eq!(pair.client.wire.announce_requests(), 1, "{name}");
            let root = if version.is_some() { "room/x" } else { "x" };
            assert!(
                pair.server_heard.iter().any(
                    |e| matches!(e, PeerEvent::Subscribe { path, .. } if path.as_str() == root)
                ),
                "{name}: {:?}",
                pair.server_heard
            );
            assert!(
                pair.client_heard
                    .iter()
                    .any(|e| matches!(e, PeerEvent::Announced { active: true, .. })),
                "{name}: {:?}",
                pair.client_heard
            );
        }
    }
}

/// lite-05 TRACK: the subscriber asks, the publisher's layer answers, the asker hears it.
#[test]
fn track_info_round_trip() {
    let mut pair = Pair::new(Some(Version::Lite05));
    pair.run();
    let c = &mut pair.client;
    let (p, t): (Arc<str>, Arc<str>) = ("live/cam".into(), "video".into());
    assert_eq!(c.wire.ask_info(&mut c.io, &p, &t), InfoAsk::Asked);
    pair.run();
    let request = pair
        .server_heard
        .iter()
        .find_map(|e| match e {
            PeerEvent::InfoWanted {
                request,
                path,
                track,
            } if **path == *"live/cam" && **track == *"video" => Some(*request),
            _ => None,
        })
        .expect("asked");
    let info = TrackInfo {
        priority: 3,
        ordered: true,
        ..TrackInfo::default()
    };
    let s = &mut pair.server;
    s.wire.answer_info(&mut s.io, request.into(), Ok(info));
    pair.run();
    assert!(pair.client_heard.iter().any(|e| matches!(
        e,
        PeerEvent::Info { result: Ok(got), .. } if *got == info
    )));

    // Older versions have no TRACK_INFO to ask for.
    let mut old = Pair::new(Some(Version::Lite04));
    old.run();
    let c = &mut old.client;
    assert_eq!(c.wire.ask_info(&mut c.io, &p, &t), InfoAsk::Unsupported);
}

/// A lost session hands back everything the layer above holds for it.
#[test]
fn lost_reports_what_the_session_held() {
    let mut pair = Pair::new(Some(Version::Lite05));
    pair.run();
    let c = &mut pair.client;
    let (p, t): (Arc<str>, Arc<str>) = ("live/cam".into(), "video".into());
    c.wire.ask_info(&mut c.io, &p, &t);
    let s = &mut pair.server;
    s.wire.subscribe(&mut s.io, "mine", "t");
    pair.run();
    let mut sub = None;
    for e in std::mem::take(&mut pair.client_heard) {
        if let PeerEvent::Subscribe { id, .. } = e {
            sub = Some(id);
        }
    }
    assert!(sub.is_some());
    let lost = pair.client.wire.lost();
    assert!(lost.contains(&PeerEvent::Announced {
        path: "live/cam".into(),
        active: false,
        hops: Vec::new()
    }));
    assert!(lost.contains(&PeerEvent::Info {
        path: p,
        track: t,
        result: Err(ErrorCode::DROPPED)
    }));
    assert!(lost.contains(&PeerEvent::Unsubscribe { id: sub.unwrap() }));
    assert_eq!(pair.client.wire.streams_read(), 0);
}

/// When the peer ends one of our request streams (SUBSCRIBE, TRACK, ANNOUNCE), we end our half
/// too: else the stream never closes and the peer never gets its stream credit back.
#[test]
fn our_half_ends_when_the_peer_ends_a_request() {
    let refused = End::Reset(ErrorCode::UNAUTHORIZED.to_stream_code());
    for (end, code) in [
        (End::Fin, ErrorCode::CANCEL),
        (End::Reset(0), ErrorCode::DROPPED),
        (refused, ErrorCode::UNAUTHORIZED),
    ] {
        let v = Version::Lite05;
        let mut c = One::new(false);
        c.start(Some(v));
        let up = c.wire.subscribe(&mut c.io, "b", "t").expect("subscribed");
        let track = c.wire.ask_info(&mut c.io, &Arc::from("b"), &Arc::from("t"));
        assert_eq!(track, InfoAsk::Asked);
        let announce = c.wire.announce_interest(&mut c.io, "").expect("asked");
        let ours: Vec<StreamId> =
            c.io.take()
                .iter()
                .filter_map(|call| match call {
                    Call::Open(id) => Some(*id),
                    _ => None,
                })
                .filter(|id| id.dir() == Dir::Bi)
                .collect();
        assert_eq!(ours.len(), 3);
        assert!(ours.contains(&announce));
        for &id in &ours {
            c.wire
                .on_stream(&mut c.io, id, Vec::new(), end, 0, &mut c.events);
        }
        let calls = c.io.take();
        for id in ours {
            assert!(
                calls.contains(&Call::Write {
                    id,
                    bytes: Vec::new(),
                    fin: true
                }),
                "our half of {id} was not finished: {calls:?}"
            );
            assert!(!c.wire.reads(id));
        }
        assert!(
            c.take_events()
                .contains(&PeerEvent::UpstreamEnded { up, code })
        );
    }
}

/// Announce changes past the burst and the rate close the session; time refills the budget.
#[test]
fn announce_churn_past_the_rate_closes_the_session() {
    let v = Version::Lite03;
    let toggle = |n: usize| {
        let mut out = Vec::new();
        for i in 0..n {
            let status = if i % 2 == 0 {
                AnnounceStatus::Active
            } else {
                AnnounceStatus::Ended
            };
            msg(
                Announce {
                    status,
                    suffix: "x".into(),
                    hops: Vec::new(),
                },
                v,
            )(&mut out);
        }
        out
    };
    let mut s = One::new(false);
    s.wire.cfg.limits.max_broadcasts = 8;
    s.wire.cfg.limits.max_announce_rate = 10;
    s.start(Some(v));
    s.take_events();
    let req = s.wire.announce_interest(&mut s.io, "").unwrap();
    let feed_at = |s: &mut One, bytes: &[u8], now_ms: u64| {
        let chunks = vec![Bytes::copy_from_slice(bytes)];
        s.wire
            .on_stream(&mut s.io, req, chunks, End::Open, now_ms, &mut s.events);
    };
    // The burst, then what 0.8 s of the rate gives back.
    feed_at(&mut s, &toggle(8), 1_000);
    assert!(s.io.closed().is_none());
    feed_at(&mut s, &toggle(8), 1_800);
    assert!(s.io.closed().is_none());
    assert_eq!(s.take_events().len(), 16);
    // One more at once is over the rate.
    feed_at(&mut s, &toggle(1), 1_800);
    assert_eq!(
        s.io.closed().map(|c| c.0),
        Some(ErrorCode::BOUNDS_EXCEEDED.0 as u64)
    );
}

/// A group past its frame or byte budget, or a frame that would take the session's partial
/// frames past theirs, gets its stream refused with BOUNDS_EXCEEDED and the group aborted.
#[test]
fn groups_past_their_budget_are_refused() {
    let v = Version::Lite03;
    let stream_bytes = |up: u64, seq: u64, frames: &[usize], last_partial: Option<usize>| {
        let mut w = GroupWriter::new(v);
        let mut out = Vec::new();
        w.header(
            &GroupHeader {
                subscribe_id: up,
                sequence: seq,
            },
            &mut out,
        )
        .unwrap();
        for &n in frames {
            w.frame(n as u64, 0, &mut out).unwrap();
            out.extend(std::iter::repeat_n(7u8, n));
        }
        if let Some(n) = last_partial {
            w.frame(n as u64 * 2, 0, &mut out).unwrap();
            out.extend(std::iter::repeat_n(7u8, n));
        }
        out
    };
    let setup = || {
        let mut c = One::new(false);
        c.wire.cfg.limits.max_group_frames = 3;
        c.wire.cfg.limits.max_group_bytes = 1000;
        c.wire.cfg.limits.max_partial = 500;
        c.start(Some(v));
        let up = c.wire.subscribe(&mut c.io, "b", "t").unwrap();
        c.io.take();
        c.take_events();
        (c, up)
    };
    let refused = |c: &mut One, id: StreamId| {
        let calls = c.io.take();
        let stopped = calls.contains(&Call::Stop {
            id,
            code: ErrorCode::BOUNDS_EXCEEDED.to_stream_code(),
        });
        let aborted = c.take_events().iter().any(|e| {
            matches!(e, PeerEvent::GroupAbort { code, .. } if *code == ErrorCode::BOUNDS_EXCEEDED)
        });
        stopped && aborted && !c.wire.reads(id)
    };

    // Frames: three pass, the fourth is over.
    let (mut c, up) = setup();
    let id = uni(Side::Server, 0);
    c.feed(id, &stream_bytes(up, 0, &[1, 1, 1], None), false);
    assert!(c.wire.reads(id));
    let mut more = Vec::new();
    let mut w = GroupWriter::new(v);
    w.frame(1, 0, &mut more).unwrap();
    more.push(7);
    c.feed(id, &more, false);
    assert!(refused(&mut c, id), "a fourth frame");

    // Bytes: 1001 of them in one group.
    let (mut c, up) = setup();
    let id = uni(Side::Server, 0);
    c.feed(id, &stream_bytes(up, 0, &[400, 400], Some(201)), false);
    assert!(refused(&mut c, id), "1001 bytes");

    // Partial frames: 200 on one stream, then 301 more on another.
    let (mut c, up) = setup();
    let (a, b) = (uni(Side::Server, 0), uni(Side::Server, 1));
    c.feed(a, &stream_bytes(up, 0, &[], Some(200)), false);
    assert!(c.wire.reads(a));
    c.feed(b, &stream_bytes(up, 1, &[], Some(301)), false);
    assert!(
        refused(&mut c, b),
        "partial frames over the session's budget"
    );
    // The first stream's frame completing frees its share: the budget is whole again.
    c.feed(a, &[7u8; 200], false);
    assert!(c.wire.reads(a));
    assert!(
        c.take_events()
            .iter()
            .any(|e| matches!(e, PeerEvent::Frame { .. }))
    );
    let c2 = uni(Side::Server, 2);
    c.feed(c2, &stream_bytes(up, 2, &[], Some(499)), false);
    assert!(c.wire.reads(c2), "the budget came back");
}
