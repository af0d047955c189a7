//! A session's wire machine (`session::Wire`), server or client, on any moq-lite version (or
//! the lite-01/02 SETUP exchange) or IETF draft 16-19, driven through a `Recorder` by a sequence of operations read from the input:
//! the peer opens streams, sends bytes, FINs and resets them, stops ours, and the layer above
//! calls the session's public functions with ids taken from the events it reported.
//!
//! Peer streams are accepted as the host accepts them: in order per direction, and only while
//! `Session::accepts` says so; bytes on a stream not yet accepted wait for it, as they wait in
//! quinn. A session that closes the connection is over: `lost` is called and the run ends.

#![no_main]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use moq_relay::lite::session::{Config, Limits, PeerEvent};
use moq_relay::session::{IETF_VERSIONS, Protocol, Wire};
use moq_relay::lite::{ErrorCode, Role, TrackInfo, Version};
use moq_relay::model::{Frame, Group};
use moq_relay::stream::testing::{Call, Recorder};
use moq_relay::stream::{Dir, End, Side, StreamId, Streams};
use moq_relay_fuzz::Input;

/// Paths and names the operations pick from, so that requests meet the peer's.
const NAMES: [&str; 6] = ["", "demo", "room/a", "room", "video", "a/b/c"];

/// What the layer above has heard of, to answer and to ask with.
#[derive(Default)]
struct Heard {
    subs: Vec<u64>,
    announce_requests: Vec<(StreamId, String, u64)>,
    info_requests: Vec<StreamId>,
    fetches: Vec<StreamId>,
    group_streams: Vec<StreamId>,
    ups: Vec<u64>,
    active: Vec<(Arc<str>, Vec<u64>)>,
}

struct Harness {
    wire: Wire,
    io: Recorder,
    peer: Side,
    /// Peer streams opened per direction (bidi, uni), and how many the session took.
    opened: [u64; 2],
    accepted: [u64; 2],
    /// Bytes and end of peer streams not yet accepted.
    waiting: HashMap<StreamId, (Vec<Bytes>, End)>,
    /// Every stream either side opened, for operations to pick from.
    known: Vec<StreamId>,
    heard: Heard,
    closed: bool,
}

fn dir_index(dir: Dir) -> usize {
    usize::from(dir == Dir::Uni)
}

impl Harness {
    fn record(&mut self, events: Vec<PeerEvent>) {
        for event in events {
            let h = &mut self.heard;
            match event {
                PeerEvent::Subscribe { id, .. } => h.subs.push(id),
                PeerEvent::AnnounceInterest {
                    request,
                    prefix,
                    exclude_hop,
                } => h
                    .announce_requests
                    .push((request.into(), prefix, exclude_hop)),
                PeerEvent::InfoWanted { request, .. } => h.info_requests.push(request.into()),
                PeerEvent::Fetch { request, .. } => h.fetches.push(request.into()),
                PeerEvent::Group { stream, .. } => h.group_streams.push(stream.into()),
                PeerEvent::Frame { frame, .. } => {
                    assert!(frame.chunks.iter().all(|c| !c.is_empty()));
                }
                _ => {}
            }
        }
        for call in self.io.take() {
            match call {
                Call::Open(id) => {
                    assert_eq!(id.initiator(), self.io.side());
                    self.known.push(id);
                }
                Call::Close { .. } => self.closed = true,
                _ => {}
            }
        }
    }

    fn feed(&mut self, id: StreamId, chunks: Vec<Bytes>, end: End) {
        if id.initiator() == self.peer && id.index() >= self.accepted[dir_index(id.dir())] {
            let wait = self.waiting.entry(id).or_insert((Vec::new(), End::Open));
            if wait.1 == End::Open {
                wait.0.extend(chunks);
                wait.1 = end;
            }
            return;
        }
        if !self.wire.reads(id) {
            return;
        }
        let mut events = Vec::new();
        self.wire.on_stream(
            &mut self.io,
            id,
            chunks,
            end,
            1_700_000_000_000,
            &mut events,
        );
        self.record(events);
    }

    /// Take the peer streams the session is ready for, as the host does.
    fn accept(&mut self) {
        loop {
            let dir = [Dir::Uni, Dir::Bi].into_iter().find(|&d| {
                self.accepted[dir_index(d)] < self.opened[dir_index(d)] && self.wire.accepts(d)
            });
            let Some(dir) = dir else { return };
            let i = dir_index(dir);
            let id = StreamId::new(self.peer, dir, self.accepted[i]);
            self.accepted[i] += 1;
            self.wire.open_peer(id);
            let (chunks, end) = self.waiting.remove(&id).unwrap_or((Vec::new(), End::Open));
            if !chunks.is_empty() || end != End::Open {
                self.feed(id, chunks, end);
            }
            if self.closed {
                return;
            }
        }
    }
}

/// One of `from`, counted from the newest: 0 is the last one heard of.
fn pick<T: Clone>(input: &mut Input, from: &[T]) -> Option<T> {
    match from.len() {
        0 => None,
        n => Some(from[n - 1 - input.below(n)].clone()),
    }
}

fn name(input: &mut Input) -> String {
    match input.u8() {
        n if (n as usize) < NAMES.len() * 32 => NAMES[n as usize % NAMES.len()].to_owned(),
        _ => input.string(),
    }
}

fn end(input: &mut Input) -> End {
    match input.u8() % 4 {
        0 | 1 => End::Open,
        2 => End::Fin,
        _ => End::Reset(u64::from(input.u8())),
    }
}

fn group(input: &mut Input) -> Group {
    let seq = u64::from(input.u8() % 8);
    let count = input.below(4);
    let frames = (0..count)
        .map(|_| {
            let timestamp = match input.u8() {
                255 => input.u64(),
                n => u64::from(n),
            };
            let payload = Bytes::copy_from_slice(input.chunk());
            Arc::new(Frame::from_bytes(timestamp, payload))
        })
        .collect();
    let done = input.bool();
    Group {
        seq,
        frames,
        done,
        done_at: done.then(Instant::now),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let flags = input.u8();
    let server = flags & 1 != 0;
    let protocol = match (flags >> 1) % 6 {
        n if flags & 0x80 != 0 => Protocol::Ietf(IETF_VERSIONS[usize::from(n) % IETF_VERSIONS.len()]),
        0 => Protocol::Lite(None),
        n => Protocol::Lite(Some(Version::ALL[usize::from(n - 1)])),
    };
    let limits = if flags & 0x10 != 0 {
        Limits {
            max_message: 64,
            max_path: 32,
            max_frame: 64,
            max_subscriptions: 2,
            max_announces: 2,
            max_groups_in_flight: 1,
            max_broadcasts: 2,
            max_announce_rate: 2,
            max_queued: 256,
            max_group_frames: 4,
            max_group_bytes: 128,
            max_partial: 96,
        }
    } else {
        Limits::default()
    };
    let root = (flags & 0x20 != 0).then(|| name(&mut input));
    let cfg = Config {
        server,
        origin: u64::from(input.u8()),
        setup_versions: vec![Version::Lite02, Version::Lite01],
        setup_path: (flags & 0x40 != 0).then(|| name(&mut input)),
        role: [Role::Both, Role::Publisher, Role::Subscriber][input.below(3)],
        limits,
    };
    let (side, peer) = if server {
        (Side::Server, Side::Client)
    } else {
        (Side::Client, Side::Server)
    };
    let mut h = Harness {
        wire: Wire::new(cfg),
        io: Recorder::new(side),
        peer,
        opened: [0; 2],
        accepted: [0; 2],
        waiting: HashMap::new(),
        known: Vec::new(),
        heard: Heard::default(),
        closed: false,
    };
    let mut events = Vec::new();
    h.wire.start(&mut h.io, protocol, root, false, &mut events);
    h.record(events);
    h.accept();

    while !input.is_empty() && !h.closed {
        match input.u8() % 24 {
            // The peer opens a stream, often with bytes at once.
            0..=2 => {
                let dir = if input.bool() { Dir::Bi } else { Dir::Uni };
                let i = dir_index(dir);
                let id = StreamId::new(h.peer, dir, h.opened[i]);
                h.opened[i] += 1;
                h.known.push(id);
                let bytes = input.long_chunk();
                if !bytes.is_empty() {
                    h.feed(id, vec![Bytes::copy_from_slice(bytes)], End::Open);
                }
            }
            // Bytes, in one or more chunks, and how the read left the stream.
            3..=8 => {
                let Some(id) = pick(&mut input, &h.known) else {
                    continue;
                };
                let chunks = (0..1 + input.below(3))
                    .map(|_| Bytes::copy_from_slice(input.long_chunk()))
                    .filter(|c| !c.is_empty())
                    .collect();
                let end = end(&mut input);
                h.feed(id, chunks, end);
            }
            9 => {
                let Some(id) = pick(&mut input, &h.known) else {
                    continue;
                };
                h.feed(id, Vec::new(), End::Fin);
            }
            10 => {
                let Some(id) = pick(&mut input, &h.known) else {
                    continue;
                };
                let code = match input.u8() {
                    255 => input.u64(),
                    n => u64::from(n),
                };
                h.feed(id, Vec::new(), End::Reset(code));
            }
            // STOP_SENDING, on a stream we send on.
            11 => {
                let Some(id) = pick(&mut input, &h.known) else {
                    continue;
                };
                if id.dir() == Dir::Bi || id.initiator() == side {
                    let mut events = Vec::new();
                    h.wire.stopped(&mut h.io, id, &mut events);
                    h.record(events);
                }
            }
            12 => {
                let (path, track) = (name(&mut input), name(&mut input));
                if let Some(up) = h.wire.subscribe(&mut h.io, &path, &track) {
                    h.heard.ups.push(up);
                }
            }
            13 => {
                let prefix = name(&mut input);
                h.wire.announce_interest(&mut h.io, &prefix);
            }
            14 => {
                let Some(up) = pick(&mut input, &h.heard.ups) else {
                    continue;
                };
                h.wire.unsubscribe(&mut h.io, up);
            }
            15 => {
                let Some(sub) = pick(&mut input, &h.heard.subs) else {
                    continue;
                };
                let g = group(&mut input);
                if let Some(&id) = h.known.last()
                    && input.bool()
                {
                    h.io.set_backlog(id, Some(input.below(3)));
                }
                h.wire.deliver(&mut h.io, sub, &g);
            }
            16 => {
                let Some(sub) = pick(&mut input, &h.heard.subs) else {
                    continue;
                };
                match input.u8() % 5 {
                    0 => {
                        h.wire.accept_subscribe(&mut h.io, sub);
                    }
                    1 => h
                        .wire
                        .refuse_subscribe(&mut h.io, sub, ErrorCode(input.u8().into())),
                    2 => {
                        let seq = u64::from(input.u8() % 8);
                        h.wire
                            .abort_group(&mut h.io, sub, seq, ErrorCode(input.u8().into()));
                    }
                    3 => {
                        let code = ErrorCode(u32::from(input.u8() % 3));
                        let latest = input.bool().then(|| u64::from(input.u8()));
                        h.wire.end_subscription(&mut h.io, sub, code, latest);
                    }
                    _ => h.wire.restart(sub),
                }
            }
            17 => {
                let path: Arc<str> = name(&mut input).into();
                let hops: Vec<u64> = (0..input.below(4)).map(|_| u64::from(input.u8())).collect();
                let active = input.bool();
                h.wire.announce(&mut h.io, &path, &hops, active);
                if active {
                    h.heard.active.push((path, hops));
                } else {
                    h.heard.active.retain(|(p, _)| *p != path);
                }
            }
            18 => {
                let Some((request, prefix, exclude)) = pick(&mut input, &h.heard.announce_requests)
                else {
                    continue;
                };
                let active = h.heard.active.iter().map(|(p, hops)| (p, &hops[..]));
                h.wire
                    .announce_start(&mut h.io, request, &prefix, exclude, active);
            }
            19 => {
                let Some(request) = pick(&mut input, &h.heard.info_requests) else {
                    continue;
                };
                let result = match input.u8() {
                    0 => Err(ErrorCode::NOT_FOUND),
                    n => Ok(TrackInfo {
                        priority: n,
                        ordered: input.bool(),
                        max_latency: Duration::from_millis(input.u16().into()),
                        timescale: u64::from(input.u16()).max(1),
                    }),
                };
                h.wire.answer_info(&mut h.io, request, result);
            }
            20 => {
                let Some(request) = pick(&mut input, &h.heard.fetches) else {
                    continue;
                };
                let g = group(&mut input);
                let frames = input.bool().then_some(&g.frames[..]);
                h.wire.answer_fetch(&mut h.io, request, frames);
            }
            21 => {
                let (path, track) = (name(&mut input), name(&mut input));
                h.wire.ask_info(&mut h.io, &path.into(), &track.into());
            }
            22 => {
                let Some(id) = pick(&mut input, &h.heard.group_streams) else {
                    continue;
                };
                h.wire.refuse(&mut h.io, id, ErrorCode(input.u8().into()));
            }
            _ => {
                let _ = (h.wire.streams_read(), h.wire.subscriptions());
                let _ = (h.wire.upstream_subscriptions(), h.wire.announce_requests());
                let _ = (h.wire.version_code(), h.wire.is_ready(), h.wire.root());
                let _ = h.wire.decode_errors();
            }
        }
        let events = Vec::new();
        h.record(events);
        h.accept();
    }
    let _ = h.wire.lost();
});
