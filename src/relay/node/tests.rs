//! The node alone, driven through its [`Application`] calls with no sessions: what crosses
//! cores, and how much of it one wake takes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::*;
use crate::model::{Application, Delivery, Group, InfoAsk, SessionCounts};
use crate::relay::Link;

/// The sessions of a core that has none: only the clock, the timer and dials (which are
/// recorded, each a new peer that never sets up) are used.
#[derive(Default)]
struct NoPeers {
    now: Option<Instant>,
    dialled: Vec<(usize, PeerId)>,
    closed: Vec<PeerId>,
}

impl Peers for NoPeers {
    fn now(&self) -> Instant {
        self.now.expect("a clock")
    }
    fn wake_at(&mut self, _at: Instant) {}
    fn dial(&mut self, dial: usize) -> Result<PeerId, String> {
        let peer = PeerId(1000 + self.dialled.len() as u64);
        self.dialled.push((dial, peer));
        Ok(peer)
    }
    fn close(&mut self, peer: PeerId, _: ErrorCode, _: &str) {
        self.closed.push(peer);
    }
    fn is_server(&self, _: PeerId) -> bool {
        unreachable!("no sessions")
    }
    fn version(&self, _: PeerId) -> Option<u64> {
        unreachable!("no sessions")
    }
    fn root(&self, _: PeerId) -> Option<&str> {
        unreachable!("no sessions")
    }
    fn access(&self, _: PeerId) -> Option<&crate::model::Access> {
        unreachable!("no sessions")
    }
    fn counts(&self) -> SessionCounts {
        SessionCounts::default()
    }
    fn announce_interest(&mut self, _: PeerId, _: &str) -> bool {
        unreachable!("no sessions")
    }
    fn subscribe(&mut self, _: PeerId, _: &str, _: &str) -> Option<u64> {
        unreachable!("no sessions")
    }
    fn unsubscribe(&mut self, _: PeerId, _: u64) {
        unreachable!("no sessions")
    }
    fn ask_info(&mut self, _: PeerId, _: &Arc<str>, _: &Arc<str>) -> InfoAsk {
        unreachable!("no sessions")
    }
    fn announce_start<'a>(
        &mut self,
        _: PeerId,
        _: RequestId,
        _: &str,
        _: u64,
        _: &mut dyn Iterator<Item = (&'a Arc<str>, &'a [u64])>,
    ) {
        unreachable!("no sessions")
    }
    fn announce(&mut self, _: PeerId, _: &Arc<str>, _: &[u64], _: bool) {
        unreachable!("no sessions")
    }
    fn accept_subscribe(&mut self, _: PeerId, _: u64) -> bool {
        unreachable!("no sessions")
    }
    fn refuse_subscribe(&mut self, _: PeerId, _: u64, _: ErrorCode) {
        unreachable!("no sessions")
    }
    fn answer_info(&mut self, _: PeerId, _: RequestId, _: Result<TrackInfo, ErrorCode>) {
        unreachable!("no sessions")
    }
    fn answer_fetch(&mut self, _: PeerId, _: RequestId, _: Option<&[Arc<Frame>]>) {
        unreachable!("no sessions")
    }
    fn refuse(&mut self, _: PeerId, _: RequestId, _: ErrorCode) {
        unreachable!("no sessions")
    }
    fn deliver(&mut self, _: PeerId, _: u64, _: &Group) -> Delivery {
        unreachable!("no sessions")
    }
    fn abort_group(&mut self, _: PeerId, _: u64, _: u64, _: ErrorCode) {
        unreachable!("no sessions")
    }
    fn end_subscription(&mut self, _: PeerId, _: u64, _: ErrorCode, _: Option<u64>) {
        unreachable!("no sessions")
    }
    fn restart(&mut self, _: PeerId, _: u64) {
        unreachable!("no sessions")
    }
}

/// Cores whose inboxes hold at most `max_inbox` data messages; each counts its doorbell's
/// rings. Core 0's node is returned with an application, the other inboxes as they are.
struct Cores {
    node: Node,
    app: Sender<AppCmd>,
    rings: Vec<Arc<AtomicUsize>>,
    inboxes: Vec<Receiver<CoreMsg>>,
    registry: Arc<Registry>,
    peers: NoPeers,
}

fn cores(n: usize, max_inbox: usize) -> Cores {
    let rings: Vec<Arc<AtomicUsize>> = (0..n).map(|_| Arc::default()).collect();
    let (txs, mut inboxes): (Vec<_>, Vec<_>) =
        (0..n).map(|_| crossbeam_channel::unbounded()).unzip();
    let links = txs
        .into_iter()
        .zip(&rings)
        .map(|(tx, r)| {
            let r = r.clone();
            Link {
                tx,
                wake: Arc::new(move || {
                    r.fetch_add(1, Ordering::Relaxed);
                }),
            }
        })
        .collect();
    let registry = Arc::new(Registry::new(links, 1, max_inbox));
    let (app, commands) = crossbeam_channel::unbounded();
    let (events, _) = crossbeam_channel::unbounded();
    let inbox = inboxes.remove(0);
    let node = Node::new(
        0,
        registry.clone(),
        inbox,
        Limits::default(),
        Some(App { commands, events }),
        Vec::new(),
        None,
    );
    Cores {
        node,
        app,
        rings,
        inboxes,
        registry,
        peers: NoPeers {
            now: Some(Instant::now()),
            ..NoPeers::default()
        },
    }
}

/// One wake takes at most [`INBOX_BUDGET`] messages from other cores and rings its own
/// doorbell for the rest, so a flooded core still gets back to its sockets in between.
#[test]
fn one_wake_takes_a_budget_of_the_inbox() {
    let mut c = cores(1, INBOX);
    let (reply, answers) = crossbeam_channel::unbounded();
    for _ in 0..session::INBOX_BUDGET + 10 {
        c.registry.send(
            0,
            CoreMsg::Census {
                reply: reply.clone(),
            },
        );
    }
    let rung = c.rings[0].load(Ordering::Relaxed);
    c.node.on_wake(&mut c.peers);
    assert_eq!(answers.try_iter().count(), session::INBOX_BUDGET);
    assert_eq!(
        c.rings[0].load(Ordering::Relaxed),
        rung + 1,
        "rung for the rest"
    );
    c.node.on_wake(&mut c.peers);
    assert_eq!(answers.try_iter().count(), 10);
    assert_eq!(c.rings[0].load(Ordering::Relaxed), rung + 1, "nothing left");
}

/// A replica whose core's inbox is full loses the group it missed a frame of: it gets the
/// frames queued before, then one abort with LAGGED, and nothing more of that group; the
/// next group reaches it whole.
#[test]
fn a_full_inbox_costs_the_replica_the_group_not_a_frame() {
    let mut c = cores(2, 3);
    let path = "room";
    c.app.send(AppCmd::Publish { path: path.into() }).unwrap();
    c.node.on_wake(&mut c.peers);
    c.registry.send(
        0,
        CoreMsg::Subscribe {
            path: path.into(),
            track: "video".into(),
            from: 1,
            replica: 7,
        },
    );
    c.node.on_wake(&mut c.peers);
    let frame = |seq: u64, i: u8| AppCmd::Frame {
        path: path.into(),
        track: "video".into(),
        seq,
        timestamp: u64::from(i),
        payload: Bytes::from(vec![i; 10]),
    };
    let done = |seq: u64| AppCmd::GroupDone {
        path: path.into(),
        track: "video".into(),
        seq,
    };
    // Core 1 holds the announce already; two frames fit, the third does not.
    for i in 0..6 {
        c.app.send(frame(0, i)).unwrap();
    }
    c.app.send(done(0)).unwrap();
    c.node.on_wake(&mut c.peers);
    let got: Vec<String> = c.inboxes[0]
        .try_iter()
        .map(|m| match m {
            CoreMsg::Announce { active, .. } => format!("announce {active}"),
            CoreMsg::Frame {
                replica,
                seq,
                frame,
            } => format!("frame {replica} {seq} {}", frame.timestamp),
            CoreMsg::GroupDone { replica, seq } => format!("done {replica} {seq}"),
            CoreMsg::GroupAbort { replica, seq, code } => {
                format!("abort {replica} {seq} {code}")
            }
            _ => "other".into(),
        })
        .collect();
    let lagged = ErrorCode::LAGGED.0;
    assert_eq!(
        got,
        [
            "announce true".to_string(),
            "frame 7 0 0".into(),
            "frame 7 0 1".into(),
            format!("abort 7 0 {lagged}"),
        ]
    );
    assert_eq!(c.registry.stats().cross_core_lost, 1);

    // The inbox drained, the next group goes through whole, and nothing is remembered.
    for i in 0..2 {
        c.app.send(frame(1, i)).unwrap();
    }
    c.app.send(done(1)).unwrap();
    c.node.on_wake(&mut c.peers);
    let got: Vec<(u64, bool)> = c.inboxes[0]
        .try_iter()
        .map(|m| match m {
            CoreMsg::Frame { seq, .. } => (seq, false),
            CoreMsg::GroupDone { seq, .. } => (seq, true),
            _ => panic!("unexpected message"),
        })
        .collect();
    assert_eq!(got, [(1, false), (1, false), (1, true)]);
    assert!(c.node.tracks.values().all(|t| t.lost.is_empty()));
}

/// TRACK_INFO asked for names nobody declared is answered with the defaults and not kept:
/// a peer that makes up names grows nothing. Declared infos are kept, up to a bound.
#[test]
fn made_up_track_names_leave_no_track_info_behind() {
    let mut c = cores(1, INBOX);
    c.app
        .send(AppCmd::Publish {
            path: "room".into(),
        })
        .unwrap();
    // Two wakes: the publish, then its announcement to this core's own view.
    c.node.on_wake(&mut c.peers);
    c.node.on_wake(&mut c.peers);
    assert!(c.node.active.contains_key("room"));
    for id in 0..2000 {
        c.app
            .send(AppCmd::Info {
                id,
                path: "room".into(),
                track: format!("made-up-{id}"),
            })
            .unwrap();
    }
    c.node.on_wake(&mut c.peers);
    let census = |c: &mut Cores| c.node.census(&c.peers);
    assert_eq!(census(&mut c).track_infos, 0);
    assert_eq!(census(&mut c).info_waits, 0);
    for i in 0..300 {
        c.node.info_known(
            &mut c.peers,
            "room".into(),
            format!("declared-{i}").into(),
            Ok(TrackInfo::default()),
        );
    }
    assert_eq!(census(&mut c).track_infos, 256);
}

/// An HTTP fetch gets the received chunks themselves: nothing is copied on the core.
#[test]
fn fetched_groups_share_the_received_bytes() {
    let (a, b, c) = (
        Bytes::from_static(b"ab"),
        Bytes::from(vec![1u8; 100]),
        Bytes::from_static(b"z"),
    );
    let frames = vec![
        Arc::new(Frame {
            timestamp: 0,
            chunks: vec![a.clone(), b.clone()],
        }),
        Arc::new(Frame {
            timestamp: 1,
            chunks: vec![c.clone()],
        }),
    ];
    let out = frame_payloads(&frames);
    assert_eq!(out.concat(), [&a[..], &b[..], &c[..]].concat());
    let same = |x: &Bytes, y: &Bytes| x.as_ptr() == y.as_ptr() && x.len() == y.len();
    assert!(same(&out[0], &a) && same(&out[1], &b) && same(&out[2], &c));
}

/// Dial numbers by URL, in the order first seen; the URL is the key.
#[derive(Default)]
struct Book(std::sync::Mutex<Vec<String>>);

impl Dialer for Book {
    fn register(&self, url: &str) -> Result<PeerLink, String> {
        let mut urls = self.0.lock().unwrap();
        let dial = match urls.iter().position(|u| u == url) {
            Some(i) => i,
            None => {
                urls.push(url.to_owned());
                urls.len() - 1
            }
        };
        Ok(PeerLink {
            dial,
            key: url.to_owned(),
            cost: 0,
        })
    }
    fn ready(&self, _: usize) -> Result<(), String> {
        Ok(())
    }
}

/// Gossip on a relay whose URL is `moql://b`: an advertised relay that sorts after it is
/// dialled once, one that sorts before is left to dial us; one whose advertisement is gone is
/// released after [`STALE_AFTER`], unless it comes back first.
#[test]
fn gossip_dials_the_larger_url_and_releases_a_stale_one() {
    let (tx, inbox) = crossbeam_channel::unbounded();
    let links = vec![Link {
        tx,
        wake: Arc::new(|| {}),
    }];
    let registry = Arc::new(Registry::new(links, 1, INBOX));
    let mesh = Arc::new(Mesh {
        key: "moql://b".into(),
        discover: true,
        dialer: Arc::new(Book::default()),
    });
    let mut node = Node::new(
        0,
        registry.clone(),
        inbox,
        Limits::default(),
        None,
        Vec::new(),
        Some(mesh),
    );
    let start = Instant::now();
    let mut peers = NoPeers {
        now: Some(start),
        ..NoPeers::default()
    };
    let other = |peer| Owner {
        core: 0,
        peer: Some(PeerId(peer)),
        hops: vec![peer],
    };
    let advertise = |node: &mut Node, peers: &mut NoPeers, url: &str, peer, on: bool| {
        let at = path::normalize(&advertisement(url), 1024).unwrap();
        if on {
            registry.publish(&at, other(peer), 0);
        } else {
            registry.unpublish(&at, 0, Some(PeerId(peer)));
        }
        node.on_wake(peers);
    };
    advertise(&mut node, &mut peers, "moql://a", 1, true);
    advertise(&mut node, &mut peers, "moql://b", 2, true);
    assert!(peers.dialled.is_empty(), "a and ourselves are not dialled");
    advertise(&mut node, &mut peers, "moql://c", 3, true);
    assert_eq!(peers.dialled.len(), 1);
    let (_, c) = peers.dialled[0];
    // Gone, back within the window: kept, not dialled twice.
    advertise(&mut node, &mut peers, "moql://c", 3, false);
    peers.now = Some(start + STALE_AFTER / 2);
    advertise(&mut node, &mut peers, "moql://c", 3, true);
    peers.now = Some(start + STALE_AFTER * 2);
    node.on_timer(&mut peers);
    assert!(peers.closed.is_empty() && peers.dialled.len() == 1);
    // Gone for good: released after the window, its session closed.
    advertise(&mut node, &mut peers, "moql://c", 3, false);
    peers.now = Some(start + STALE_AFTER * 3 - Duration::from_secs(1));
    node.on_timer(&mut peers);
    assert!(peers.closed.is_empty());
    peers.now = Some(start + STALE_AFTER * 3);
    node.on_timer(&mut peers);
    assert_eq!(peers.closed, [c]);
    assert!(node.peering.is_empty());
}
