//! The machine against the `Recorder`, byte for byte, and as a client/server pair in memory.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;

use super::super::coding::tests::hex;
use super::super::message::{FetchKind, Message, Subscribe};
use super::super::params::Location;
use super::super::params::{Kvp, Params, token_value};
use super::super::{TerminationCode, Version};
use super::{Config, Session};
use crate::model::{ErrorCode, Frame, Group, PeerEvent, SessionLimits, TrackInfo};
use crate::stream::testing::{Call, Recorder};
use crate::stream::{Dir, End, Side, StreamId, Streams};

const VERSIONS: [Version; 4] = [
    Version::Draft16,
    Version::Draft17,
    Version::Draft18,
    Version::Draft19,
];

fn config(server: bool) -> Config {
    Config {
        server,
        setup_path: None,
        webtransport: false,
        limits: SessionLimits::default(),
    }
}

fn bidi(side: Side, index: u64) -> StreamId {
    StreamId::new(side, Dir::Bi, index)
}

fn uni(side: Side, index: u64) -> StreamId {
    StreamId::new(side, Dir::Uni, index)
}

fn enc(m: &Message, v: Version) -> Vec<u8> {
    let mut b = Vec::new();
    m.encode(v, &mut b).unwrap();
    b
}

/// One end of an in-memory connection.
struct Peer {
    wire: Session,
    io: Recorder,
    events: Vec<PeerEvent>,
    /// Peer streams not yet accepted, as quinn holds them.
    held: BTreeMap<StreamId, (Vec<u8>, bool)>,
    accepted: HashSet<StreamId>,
    publishes: Vec<(Arc<str>, Vec<u64>)>,
}

impl Peer {
    fn new(server: bool) -> Self {
        let side = if server { Side::Server } else { Side::Client };
        Self {
            wire: Session::new(config(server)),
            io: Recorder::new(side),
            events: Vec::new(),
            held: BTreeMap::new(),
            accepted: HashSet::new(),
            publishes: Vec::new(),
        }
    }

    fn start(&mut self, v: Version) {
        self.wire.start(&mut self.io, v, None, &mut self.events);
    }

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
            self.receive(id, bytes, if fin { End::Fin } else { End::Open });
            any = true;
        }
        any
    }

    /// Play the relay: ask for announcements when ready, answer interest with what this end
    /// publishes, take every subscription.
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
                    request, prefix, ..
                } => {
                    let active = self.publishes.iter().map(|(p, h)| (p, h.as_slice()));
                    self.wire
                        .announce_start(&mut self.io, request.into(), &prefix, 0, active);
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

struct Pair {
    client: Peer,
    server: Peer,
    client_heard: Vec<PeerEvent>,
    server_heard: Vec<PeerEvent>,
    /// Carry each batch of writes newest stream first.
    reverse: bool,
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

impl Pair {
    fn new(v: Version, reverse: bool) -> Self {
        let mut pair = Self {
            client: Peer::new(false),
            server: Peer::new(true),
            client_heard: Vec::new(),
            server_heard: Vec::new(),
            reverse,
        };
        pair.server.publishes.push(("live/cam".into(), vec![]));
        pair.client.start(v);
        pair.server.start(v);
        pair
    }

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
                    calls.sort_by_key(|c| std::cmp::Reverse(stream_of(c)));
                }
                for call in calls {
                    moved = true;
                    match call {
                        Call::Write { id, bytes, fin } => {
                            to.receive(id, bytes, if fin { End::Fin } else { End::Open })
                        }
                        Call::Reset { id, code } => to.receive(id, Vec::new(), End::Reset(code)),
                        Call::Stop { id, .. } => {
                            let mut ev = Vec::new();
                            to.wire.stopped(&mut to.io, id, &mut ev);
                            to.events.extend(ev);
                        }
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

#[test]
fn each_end_sends_its_setup_on_a_uni_stream_of_its_own() {
    for v in [Version::Draft17, Version::Draft18, Version::Draft19] {
        let mut c = Peer::new(false);
        c.wire.cfg.setup_path = Some("demo?jwt=abc".into());
        c.start(v);
        // PATH "/demo?jwt=abc" (13 bytes), MOQT_IMPLEMENTATION "moq-relay" (delta 6).
        let want = hex("af00 001a 01 0d 2f64656d6f3f6a77743d616263 06 09 6d6f712d72656c6179");
        assert_eq!(c.io.written(uni(Side::Client, 0)), want, "{v:?}");
        assert!(!c.wire.is_ready(), "a client waits for the server's SETUP");
        assert!(c.wire.accepts(Dir::Uni) && !c.wire.accepts(Dir::Bi));

        // The server takes its root and token from PATH.
        let mut s = Peer::new(true);
        s.start(v);
        assert_eq!(
            s.io.written(uni(Side::Server, 0)),
            hex("af00 000b 07 09 6d6f712d72656c6179")
        );
        s.receive(uni(Side::Client, 0), want, End::Open);
        s.accept();
        assert!(s.wire.is_ready());
        assert_eq!(s.wire.root(), "demo");
        assert_eq!(s.wire.token(), Some("abc"));
        assert_eq!(s.events, [PeerEvent::Ready]);
    }
}

#[test]
fn a_token_in_authorization_token_is_taken() {
    let v = Version::Draft18;
    let mut s = Peer::new(true);
    s.start(v);
    let setup = Message::Setup(vec![(0x03, Kvp::Bytes(token_value("x.y.z", v)))]);
    s.receive(uni(Side::Client, 0), enc(&setup, v), End::Open);
    s.accept();
    assert_eq!(s.wire.token(), Some("x.y.z"));
}

#[test]
fn the_control_stream_is_guarded() {
    let v = Version::Draft18;
    // A second SETUP, or the control stream's end: the session goes.
    let setup = enc(&Message::Setup(vec![]), v);
    for (bytes, fin) in [
        ([setup.clone(), setup.clone()].concat(), false),
        (setup, true),
    ] {
        let mut s = Peer::new(true);
        s.start(v);
        s.io.take();
        s.receive(
            uni(Side::Client, 0),
            bytes,
            if fin { End::Fin } else { End::Open },
        );
        s.accept();
        assert!(
            s.io.calls().iter().any(|c| matches!(
                c,
                Call::Close {
                    code: TerminationCode::PROTOCOL_VIOLATION,
                    ..
                }
            )),
            "{:?}",
            s.io.calls()
        );
    }
}

#[test]
fn pair_announces_subscribes_and_delivers_on_16_to_19() {
    for v in VERSIONS {
        for reverse in [false, true] {
            let name = format!("{v:?} reverse={reverse}");
            let mut pair = Pair::new(v, reverse);
            pair.run();
            assert!(
                pair.client.wire.is_ready() && pair.server.wire.is_ready(),
                "{name}"
            );
            assert!(
                pair.client_heard.contains(&PeerEvent::Announced {
                    path: "live/cam".into(),
                    active: true,
                    hops: vec![]
                }),
                "{name}: {:?}",
                pair.client_heard
            );
            let c = &mut pair.client;
            let up = c.wire.subscribe(&mut c.io, "live/cam", "video").unwrap();
            pair.run();
            let sub = pair
                .server_heard
                .iter()
                .find_map(|e| match e {
                    PeerEvent::Subscribe {
                        id, path, track, ..
                    } if path == "live/cam" && track == "video" => Some(*id),
                    _ => None,
                })
                .unwrap_or_else(|| panic!("{name}: {:?}", pair.server_heard));
            let s = &mut pair.server;
            let d = s
                .wire
                .deliver(&mut s.io, sub, &group(4, &[b"one", b"", b"three"], true));
            assert_eq!(d.frames, 3);
            pair.run();
            let frames: Vec<Vec<u8>> = pair
                .client_heard
                .iter()
                .filter_map(|e| match e {
                    PeerEvent::Frame {
                        up: u,
                        seq: 4,
                        frame,
                    } if *u == up => Some(frame.chunks.concat()),
                    _ => None,
                })
                .collect();
            assert_eq!(
                frames,
                [b"one".to_vec(), vec![], b"three".to_vec()],
                "{name}"
            );
            assert!(
                pair.client_heard
                    .contains(&PeerEvent::GroupDone { up, seq: 4 }),
                "{name}"
            );
            // The publisher ends the track: the subscriber hears a clean end.
            let s = &mut pair.server;
            s.wire
                .end_subscription(&mut s.io, sub, ErrorCode::CANCEL, Some(4));
            pair.run();
            assert!(
                pair.client_heard.contains(&PeerEvent::UpstreamEnded {
                    up,
                    code: ErrorCode::CANCEL
                }),
                "{name}"
            );
            assert_eq!(pair.client.wire.upstream_subscriptions(), 0);
            assert_eq!(pair.server.wire.subscriptions(), 0);
        }
    }
}

#[test]
fn the_subscriber_leaving_ends_the_subscription() {
    let v = Version::Draft18;
    let mut pair = Pair::new(v, false);
    pair.run();
    let c = &mut pair.client;
    let up = c.wire.subscribe(&mut c.io, "live/cam", "video").unwrap();
    pair.run();
    assert_eq!(pair.server.wire.subscriptions(), 1);
    let c = &mut pair.client;
    c.wire.unsubscribe(&mut c.io, up);
    pair.run();
    assert!(
        pair.server_heard
            .iter()
            .any(|e| matches!(e, PeerEvent::Unsubscribe { .. })),
        "{:?}",
        pair.server_heard
    );
    assert_eq!(pair.server.wire.subscriptions(), 0);
}

/// Objects may beat SUBSCRIBE_OK: the stream waits for its alias, then goes up whole.
#[test]
fn a_group_before_its_subscribe_ok_waits_for_it() {
    let v = Version::Draft19;
    let mut c = Peer::new(false);
    c.start(v);
    c.receive(
        uni(Side::Server, 0),
        enc(&Message::Setup(vec![]), v),
        End::Open,
    );
    c.accept();
    c.events.clear();
    let up = c.wire.subscribe(&mut c.io, "live/cam", "video").unwrap();
    let mut data = Vec::new();
    super::super::data::SubgroupHeader::ours(v, 9, 2, 128)
        .encode(v, &mut data)
        .unwrap();
    super::super::data::encode_object(v, 2, &mut data).unwrap();
    data.extend_from_slice(b"hi");
    c.receive(uni(Side::Server, 1), data, End::Fin);
    c.accept();
    assert!(c.events.is_empty(), "{:?}", c.events);
    assert_eq!(c.wire.streams_read(), 3);
    let ok = Message::SubscribeOk {
        request_id: 0,
        alias: 9,
        params: Params::default(),
        props: Vec::new(),
    };
    c.receive(bidi(Side::Client, 0), enc(&ok, v), End::Open);
    let frames: Vec<_> = c
        .events
        .iter()
        .filter(|e| matches!(e, PeerEvent::Frame { .. } | PeerEvent::GroupDone { .. }))
        .collect();
    assert_eq!(frames.len(), 2, "{:?}", c.events);
    assert!(c.events.contains(&PeerEvent::GroupDone { up, seq: 2 }));
    // An alias nobody waits for is refused at once.
    let mut data = Vec::new();
    super::super::data::SubgroupHeader::ours(v, 33, 2, 128)
        .encode(v, &mut data)
        .unwrap();
    c.receive(uni(Side::Server, 2), data, End::Open);
    c.accept();
    assert!(
        c.io.calls()
            .iter()
            .any(|call| matches!(call, Call::Stop { id, .. } if *id == uni(Side::Server, 2)))
    );
}

#[test]
fn a_publisher_announces_with_publish_namespace_and_withdraws_by_ending_it() {
    let v = Version::Draft18;
    let mut s = Peer::new(true);
    s.start(v);
    s.receive(
        uni(Side::Client, 0),
        enc(&Message::Setup(vec![]), v),
        End::Open,
    );
    s.accept();
    s.io.take();
    s.events.clear();
    let pn = Message::PublishNamespace {
        request_id: 0,
        namespace: vec![b"demo".to_vec(), b"clock".to_vec()],
        params: Params::default(),
    };
    let id = bidi(Side::Client, 0);
    s.receive(id, enc(&pn, v), End::Open);
    s.accept();
    assert_eq!(
        s.events,
        [PeerEvent::Announced {
            path: "demo/clock".into(),
            active: true,
            hops: vec![]
        }]
    );
    assert_eq!(s.io.written(id), hex("07 0001 00"));
    s.events.clear();
    s.receive(id, Vec::new(), End::Fin);
    assert_eq!(
        s.events,
        [PeerEvent::Announced {
            path: "demo/clock".into(),
            active: false,
            hops: vec![]
        }]
    );
}

#[test]
fn what_a_relay_does_not_serve_is_refused_not_supported() {
    let v = Version::Draft18;
    let mut s = Peer::new(true);
    s.start(v);
    s.receive(
        uni(Side::Client, 0),
        enc(&Message::Setup(vec![]), v),
        End::Open,
    );
    s.accept();
    s.io.take();
    let joining = Message::Fetch {
        request_id: 0,
        kind: FetchKind::Joining {
            absolute: false,
            request: 2,
            start: 1,
        },
        params: Params::default(),
    };
    let id = bidi(Side::Client, 0);
    s.receive(id, enc(&joining, v), End::Open);
    s.accept();
    // REQUEST_ERROR NOT_SUPPORTED (0x3), no retry, no reason, then FIN.
    assert!(s.io.calls().contains(&Call::Write {
        id,
        bytes: hex("05 0003 03 00 00"),
        fin: true
    }));
    // A response where a request belongs breaks the protocol.
    s.receive(bidi(Side::Client, 1), hex("07 0001 00"), End::Open);
    s.accept();
    assert!(s.io.calls().iter().any(|c| matches!(c, Call::Close { .. })));
}

#[test]
fn lost_reports_what_the_session_held() {
    let mut pair = Pair::new(Version::Draft17, false);
    pair.run();
    let c = &mut pair.client;
    c.wire.subscribe(&mut c.io, "live/cam", "video").unwrap();
    pair.run();
    let gone = pair.server.wire.lost();
    assert!(
        gone.iter()
            .any(|e| matches!(e, PeerEvent::Unsubscribe { .. }))
    );
    let gone = pair.client.wire.lost();
    assert!(gone.contains(&PeerEvent::Announced {
        path: "live/cam".into(),
        active: false,
        hops: vec![]
    }));
    assert_eq!(pair.client.wire.streams_read(), 0);
}

#[test]
fn announce_churn_past_the_rate_closes_the_session() {
    let v = Version::Draft18;
    let mut s = Peer::new(true);
    s.wire.cfg.limits.max_broadcasts = 2;
    s.wire.cfg.limits.max_announce_rate = 1;
    s.start(v);
    s.receive(
        uni(Side::Client, 0),
        enc(&Message::Setup(vec![]), v),
        End::Open,
    );
    s.accept();
    s.io.take();
    // A burst of two changes (announce, withdraw), then the third is past the rate.
    for i in 0..2u64 {
        let pn = Message::PublishNamespace {
            request_id: i * 2,
            namespace: vec![format!("demo{i}").into_bytes()],
            params: Params::default(),
        };
        s.receive(bidi(Side::Client, i), enc(&pn, v), End::Fin);
        s.accept();
    }
    assert!(
        s.io.calls().iter().any(|c| matches!(
            c,
            Call::Close {
                code: TerminationCode::PROTOCOL_VIOLATION,
                ..
            }
        )),
        "{:?}",
        s.io.calls()
    );
    assert_eq!(s.events.len(), 3, "{:?}", s.events);
}

/// Draft 16: CLIENT_SETUP opens the one control stream (MAX_REQUEST_ID granted as the
/// reference does), the server answers on it, and requests travel on it by request id.
#[test]
fn draft16_runs_requests_on_the_control_stream() {
    let v = Version::Draft16;
    let mut c = Peer::new(false);
    c.start(v);
    let control = bidi(Side::Client, 0);
    assert_eq!(
        c.io.written(control),
        hex("20 0015 02 02 c0000000ffffffff 05 09 6d6f712d72656c6179")
    );
    let mut s = Peer::new(true);
    s.start(v);
    assert!(s.io.calls().is_empty(), "a server waits for CLIENT_SETUP");
    assert!(s.wire.accepts(Dir::Bi) && !s.wire.accepts(Dir::Uni));
    s.receive(control, c.io.written(control), End::Open);
    s.accept();
    assert_eq!(s.events, [PeerEvent::Ready]);
    assert_eq!(
        s.io.written(control),
        hex("21 0015 02 02 c0000000ffffffff 05 09 6d6f712d72656c6179")
    );
    s.io.take();
    s.events.clear();
    // SUBSCRIBE with request id 4: SUBSCRIBE_OK names it, with alias 0 (the first
    // subscription); UNSUBSCRIBE 4 ends it.
    let sub = Message::Subscribe(Subscribe {
        request_id: 4,
        namespace: vec![b"demo".to_vec()],
        name: b"v".to_vec(),
        params: Params::default(),
    });
    s.receive(control, enc(&sub, v), End::Open);
    assert!(matches!(s.events[..], [PeerEvent::Subscribe { id: 0, .. }]));
    assert!(s.wire.accept_subscribe(&mut s.io, 0));
    assert_eq!(s.io.written(control), hex("04 0003 04 00 00"));
    // A request id still in use closes the session; first the UNSUBSCRIBE.
    s.events.clear();
    s.receive(control, hex("0a 0001 04"), End::Open);
    assert_eq!(s.events, [PeerEvent::Unsubscribe { id: 0 }]);
    assert_eq!(s.wire.subscriptions(), 0);
    // PUBLISH_NAMESPACE 6, then PUBLISH_NAMESPACE_DONE 6.
    s.io.take();
    s.events.clear();
    let pn = Message::PublishNamespace {
        request_id: 6,
        namespace: vec![b"live".to_vec()],
        params: Params::default(),
    };
    s.receive(control, enc(&pn, v), End::Open);
    assert_eq!(s.io.written(control), hex("07 0002 06 00"));
    s.receive(control, hex("09 0001 06"), End::Open);
    assert_eq!(
        s.events,
        [
            PeerEvent::Announced {
                path: "live".into(),
                active: true,
                hops: vec![]
            },
            PeerEvent::Announced {
                path: "live".into(),
                active: false,
                hops: vec![]
            }
        ]
    );
    s.receive(control, enc(&pn, v), End::Open);
    assert!(!s.io.calls().iter().any(|c| matches!(c, Call::Close { .. })));
    s.receive(control, enc(&pn, v), End::Open);
    assert!(s.io.calls().iter().any(|c| matches!(
        c,
        Call::Close {
            code: TerminationCode::INVALID_REQUEST_ID,
            ..
        }
    )));
}

/// A server past its SETUP on draft `v`, its writes so far taken.
fn ready_server(v: Version) -> Peer {
    let mut s = Peer::new(true);
    s.start(v);
    s.receive(
        uni(Side::Client, 0),
        enc(&Message::Setup(vec![]), v),
        End::Open,
    );
    s.accept();
    s.io.take();
    s.events.clear();
    s
}

#[test]
fn track_status_is_answered_as_track_info_would_be() {
    let v = Version::Draft18;
    let mut s = ready_server(v);
    let ts = |request_id| {
        Message::TrackStatus(Subscribe {
            request_id,
            namespace: vec![b"demo".to_vec()],
            name: b"v".to_vec(),
            params: Params::default(),
        })
    };
    for (i, answer) in [Ok(TrackInfo::default()), Err(ErrorCode::UNROUTABLE)]
        .into_iter()
        .enumerate()
    {
        let id = bidi(Side::Client, i as u64);
        s.receive(id, enc(&ts(i as u64 * 2), v), End::Fin);
        s.accept();
        let request = match s.events.pop() {
            Some(PeerEvent::InfoWanted {
                request,
                path,
                track,
            }) => {
                assert_eq!((&*path, &*track), ("demo", "v"));
                request
            }
            other => panic!("{other:?}"),
        };
        s.wire.answer_info(&mut s.io, request.into(), answer);
        let want = if answer.is_ok() {
            hex("07 0001 00")
        } else {
            // DOES_NOT_EXIST.
            hex("05 0003 10 00 00")
        };
        assert!(s.io.calls().contains(&Call::Write {
            id,
            bytes: want,
            fin: true
        }));
    }
    assert_eq!(s.wire.streams_read(), 1, "only the control stream is read");
}

#[test]
fn a_fetch_of_one_group_is_served_from_what_the_layer_above_holds() {
    let v = Version::Draft18;
    let mut s = ready_server(v);
    let fetch = |request_id, start: u64, end: Location| Message::Fetch {
        request_id,
        kind: FetchKind::Standalone {
            namespace: vec![b"demo".to_vec()],
            name: b"v".to_vec(),
            start: Location {
                group: 3,
                object: start,
            },
            end,
        },
        params: Params::default(),
    };
    // The whole of group 3: FETCH_OK with its end, then FETCH_HEADER and its objects.
    let id = bidi(Side::Client, 0);
    s.receive(
        id,
        enc(
            &fetch(
                6,
                0,
                Location {
                    group: 4,
                    object: 0,
                },
            ),
            v,
        ),
        End::Fin,
    );
    s.accept();
    let Some(PeerEvent::Fetch {
        request, group: 3, ..
    }) = s.events.pop()
    else {
        panic!("{:?}", s.events);
    };
    let g = group(3, &[b"one", b"three"], true);
    s.wire
        .answer_fetch(&mut s.io, request.into(), Some(&g.frames));
    assert_eq!(s.io.written(id), hex("18 0004 00 03 02 00"));
    assert_eq!(
        s.io.written(uni(Side::Server, 1)),
        hex("05 06  1c 03 00 80 03 6f6e65  00 05 7468726565")
    );
    // Objects 1 up to 2 of it; then a group the cache does not hold.
    let id = bidi(Side::Client, 1);
    s.receive(
        id,
        enc(
            &fetch(
                8,
                1,
                Location {
                    group: 3,
                    object: 2,
                },
            ),
            v,
        ),
        End::Fin,
    );
    s.accept();
    let Some(PeerEvent::Fetch { request, .. }) = s.events.pop() else {
        panic!();
    };
    s.wire
        .answer_fetch(&mut s.io, request.into(), Some(&g.frames));
    assert_eq!(
        s.io.written(uni(Side::Server, 2)),
        hex("05 08  1c 03 01 80 05 7468726565")
    );
    let id = bidi(Side::Client, 2);
    s.receive(
        id,
        enc(
            &fetch(
                10,
                0,
                Location {
                    group: 4,
                    object: 0,
                },
            ),
            v,
        ),
        End::Fin,
    );
    s.accept();
    let Some(PeerEvent::Fetch { request, .. }) = s.events.pop() else {
        panic!();
    };
    s.wire.answer_fetch(&mut s.io, request.into(), None);
    assert_eq!(s.io.written(id), hex("05 0003 10 00 00"));
    // More than one group is not served.
    let id = bidi(Side::Client, 3);
    s.receive(
        id,
        enc(
            &fetch(
                12,
                0,
                Location {
                    group: 6,
                    object: 0,
                },
            ),
            v,
        ),
        End::Fin,
    );
    s.accept();
    assert!(s.events.is_empty());
    assert_eq!(s.io.written(id), hex("05 0003 03 00 00"));
}

/// PUBLISH is taken (the reference refuses it): the track is announced, held at forward 0,
/// asked to forward once the layer above subscribes, and PUBLISH_DONE ends it.
#[test]
fn a_published_track_is_taken_and_forwarded_once_wanted() {
    for (v, ok, update) in [
        (
            Version::Draft17,
            "1e 0003 01 10 00",
            "02 0005 01 00 01 10 01",
        ),
        (Version::Draft18, "07 0003 01 10 00", "02 0004 01 01 10 01"),
    ] {
        let mut s = ready_server(v);
        let publish = Message::Publish {
            request_id: 0,
            namespace: vec![b"demo".to_vec()],
            name: b"v".to_vec(),
            alias: 5,
            params: Params::default(),
            props: Vec::new(),
        };
        let id = bidi(Side::Client, 0);
        s.receive(id, enc(&publish, v), End::Open);
        s.accept();
        assert_eq!(
            s.events,
            [PeerEvent::Announced {
                path: "demo".into(),
                active: true,
                hops: vec![]
            }]
        );
        assert_eq!(s.io.written(id), hex(ok), "{v:?}");
        s.io.take();
        s.events.clear();
        let up = s.wire.subscribe(&mut s.io, "demo", "v").unwrap();
        assert_eq!(s.io.written(id), hex(update), "{v:?}");
        let mut data = Vec::new();
        super::super::data::SubgroupHeader::ours(v, 5, 1, 128)
            .encode(v, &mut data)
            .unwrap();
        super::super::data::encode_object(v, 2, &mut data).unwrap();
        data.extend_from_slice(b"hi");
        s.receive(uni(Side::Client, 1), data, End::Fin);
        s.accept();
        assert!(
            s.events.contains(&PeerEvent::GroupDone { up, seq: 1 }),
            "{:?}",
            s.events
        );
        s.events.clear();
        let done = Message::PublishDone {
            request_id: 0,
            status: 2,
            streams: 1,
            reason: String::new(),
        };
        s.receive(id, enc(&done, v), End::Open);
        assert_eq!(
            s.events,
            [
                PeerEvent::UpstreamEnded {
                    up,
                    code: ErrorCode::CANCEL
                },
                PeerEvent::Announced {
                    path: "demo".into(),
                    active: false,
                    hops: vec![]
                }
            ]
        );
        assert_eq!(s.wire.upstream_subscriptions(), 0);
    }
}
