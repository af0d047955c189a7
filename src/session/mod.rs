//! The glue between the QUIC engine and the wire machines: one connection's transport (raw
//! QUIC, or the WebTransport session on HTTP/3), its moq-lite machine, and the writes waiting
//! for flow control. This is the one folder that knows `quic`, `web` and `lite` together; the
//! relay's node and the load generator both drive their connections through [`Session`].
//!
//! What comes out is [`Event`]s: what the wire machine reported (`PeerEvent`) and what the
//! WebTransport session did that the application may want to hear of (opened, closed,
//! refused, failed). Streams are accepted as soon as the machine can take them, so a caller
//! only forwards quinn's events.

mod host;
mod machine;

pub use host::{Dial, DialBook, Host, HostConfig};
pub use machine::{IETF_VERSIONS, Protocol, Wire};

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::lite::Role;
use crate::lite::session::{self as wire, PeerEvent};
use crate::model::{Access, ErrorCode, Gate, Refusal};
use crate::quic::stream_io::{self, ConnStreams, Outs};
use crate::quic::{Connection, Dir, StreamId};
use crate::stream::Streams;
use crate::web::{WebEvent, WebSession};

/// What a connection's session reports.
#[derive(Debug)]
pub enum Event {
    Peer(PeerEvent),
    /// From the WebTransport session, besides its streams: `Open` (the moq session has been
    /// started on it), `Closed`, `Refused`, `Failed`.
    Web(WebEvent),
}

/// One connection's session. See the module docs.
pub struct Session {
    wire: Wire,
    /// Set on HTTP/3 connections: the WebTransport session the moq session rides on.
    web: Option<WebSession>,
    outs: Outs,
    server: bool,
    /// Peer streams taken with `accept`, per direction (bidi, uni): quinn hands them out in
    /// index order, so a peer stream is accepted when its index is below this.
    peer_accepted: [u64; 2],
    /// Who decides what a server's peer may do; `None` lets it do everything.
    gate: Option<Arc<dyn Gate>>,
    /// What the peer may do, once decided: at the CONNECT on WebTransport, at setup on raw
    /// QUIC (narrowed to the role its lite-05 SETUP declares).
    access: Option<Access>,
    /// The peer presented a client certificate that chains to our client roots (a peer
    /// relay): everything under its path, without a token.
    trusted: bool,
    /// Reused for what the machine reports, so that reading a stream allocates nothing.
    spare: Vec<PeerEvent>,
    /// See [`crate::model::SessionLimits::max_queued`].
    max_queued: usize,
    /// Since when more than that has been waiting.
    over_since: Option<Instant>,
}

/// How long a session may stay over its send budget (a burst of a large write drains at once
/// for a peer that reads); past four times the budget it is cut off at once.
const OVER_BUDGET_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

fn dir_index(dir: Dir) -> usize {
    match dir {
        Dir::Bi => 0,
        Dir::Uni => 1,
    }
}

/// A refused peer, at info: its address, the path, the status and reason (never the token).
fn log_refusal(addr: std::net::SocketAddr, root: &str, r: &Refusal) {
    tracing::info!(peer = %addr, root, status = r.status, reason = %r.reason, "session refused");
}

/// Wall time in ms, which stamps frames of versions without timestamps.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Session {
    /// `web`: the WebTransport session, on an HTTP/3 connection; `gate`: who admits a
    /// server's peer (none: anyone, for everything).
    pub fn new(wire: wire::Config, web: Option<WebSession>, gate: Option<Arc<dyn Gate>>) -> Self {
        let server = wire.server;
        let max_queued = wire.limits.max_queued;
        Self {
            wire: Wire::new(wire),
            web,
            outs: Outs::new(),
            server,
            peer_accepted: [0; 2],
            gate,
            access: None,
            trusted: false,
            spare: Vec::new(),
            max_queued,
            over_since: None,
        }
    }

    pub fn wire(&self) -> &Wire {
        &self.wire
    }

    /// The machine, for what needs no streams (a subscription's skip list starting over).
    pub fn wire_mut(&mut self) -> &mut Wire {
        &mut self.wire
    }

    /// What the peer may do; `None` until it is admitted.
    pub fn access(&self) -> Option<&Access> {
        self.access.as_ref()
    }

    /// The peer's TLS identity was verified against our client roots.
    pub fn trust(&mut self) {
        self.trusted = true;
    }

    fn admit(&self, root: &str, token: Option<&str>) -> Result<Access, Refusal> {
        match &self.gate {
            Some(_) if self.trusted => Ok(Access::new(
                vec![root.to_owned()],
                vec![root.to_owned()],
                None,
            )),
            Some(gate) => gate.admit(root, token),
            None => Ok(Access::all()),
        }
    }

    /// The machine reported `Ready`: a raw QUIC peer is admitted now, with the root and token
    /// of its SETUP (none before lite-05), and any peer is narrowed to its declared role. A
    /// refused peer's connection is closed with `unauthorized` and false returned.
    fn admit_ready(&mut self, conn: &mut Connection, now: Instant) -> bool {
        let access = match self.access.take() {
            Some(access) => Ok(access),
            None => self.admit(self.wire.root(), self.wire.token()),
        };
        let access = access.and_then(|mut a| {
            if self.gate.is_none() {
                return Ok(a);
            }
            match self.wire.peer_role() {
                Role::Publisher => a.subscribe.clear(),
                Role::Subscriber => a.publish.clear(),
                Role::Both => {}
            }
            if a.is_empty() {
                return Err(Refusal::forbidden("the declared role is not granted"));
            }
            Ok(a)
        });
        match access {
            Ok(access) => {
                self.access = Some(access);
                true
            }
            Err(r) => {
                log_refusal(conn.remote_address(), self.wire.root(), &r);
                let code = match self.wire {
                    Wire::Lite(_) => ErrorCode::UNAUTHORIZED.to_close_code(),
                    Wire::Ietf(_) => crate::ietf::TerminationCode::UNAUTHORIZED,
                };
                conn.close(
                    now,
                    quinn_proto::VarInt::from_u64(code).unwrap_or_default(),
                    bytes::Bytes::from(r.reason.into_bytes()),
                );
                false
            }
        }
    }

    /// What the machine reported goes up, once the peer is admitted if this set the session
    /// up (`was_ready`: it was set up before). False when it was refused: nothing goes up, the
    /// connection is closing.
    fn report(
        &mut self,
        conn: &mut Connection,
        now: Instant,
        was_ready: bool,
        peer: &mut Vec<PeerEvent>,
        events: &mut Vec<Event>,
    ) -> bool {
        if !was_ready && self.wire.is_ready() && !self.admit_ready(conn, now) {
            peer.clear();
            return false;
        }
        events.extend(peer.drain(..).map(Event::Peer));
        true
    }

    /// Writes waiting for flow control, by stream.
    pub fn pending_writes(&self) -> usize {
        self.outs.len()
    }

    /// Run `f` on the wire machine with the streams of `conn` (through the WebTransport
    /// session on HTTP/3, which starts each new stream with its header).
    pub fn io<R>(
        &mut self,
        conn: &mut Connection,
        now: Instant,
        f: impl FnOnce(&mut Wire, &mut dyn Streams) -> R,
    ) -> R {
        let mut raw = ConnStreams::new(conn, &mut self.outs, now);
        let r = match &self.web {
            Some(web) => f(&mut self.wire, &mut web.streams(&mut raw)),
            None => f(&mut self.wire, &mut raw),
        };
        if self.outs.bytes() <= self.max_queued {
            self.over_since = None;
            return r;
        }
        let since = *self.over_since.get_or_insert(now);
        if now.duration_since(since) > OVER_BUDGET_GRACE
            || self.outs.bytes() > self.max_queued.saturating_mul(4)
        {
            // A peer that does not read: whatever it is owed goes, and so does it.
            tracing::debug!(
                queued = self.outs.bytes(),
                limit = "max_queued",
                "closing session: the peer does not read"
            );
            self.outs.clear();
            let code = crate::lite::ErrorCode::BOUNDS_EXCEEDED.to_close_code();
            conn.close(
                now,
                quinn_proto::VarInt::from_u64(code).unwrap_or_default(),
                bytes::Bytes::from_static(b"too slow"),
            );
        }
        r
    }

    /// The connection is up. On raw QUIC the moq session starts in `protocol` (from the
    /// ALPN); on HTTP/3 the WebTransport session starts (our SETTINGS, and a client's
    /// CONNECT) and the moq session waits for it to open.
    pub fn start(
        &mut self,
        conn: &mut Connection,
        now: Instant,
        protocol: Protocol,
        events: &mut Vec<Event>,
    ) {
        match self.web.as_mut() {
            Some(web) => web.start(&mut ConnStreams::new(conn, &mut self.outs, now)),
            None => {
                let mut peer = Vec::new();
                self.io(conn, now, |w, io| {
                    w.start(io, protocol, None, false, &mut peer)
                });
                self.report(conn, now, false, &mut peer, events);
            }
        }
        self.accept(conn, now, events);
    }

    /// Take the peer's new streams that the session is ready for (on WebTransport, all: the
    /// WebTransport session holds what comes early) and read what they have.
    pub fn accept(&mut self, conn: &mut Connection, now: Instant, events: &mut Vec<Event>) {
        loop {
            let web = self.web.is_some();
            let id = if web || self.wire.accepts(Dir::Uni) {
                conn.streams().accept(Dir::Uni)
            } else {
                None
            };
            let id = id.or_else(|| {
                if web || self.wire.accepts(Dir::Bi) {
                    conn.streams().accept(Dir::Bi)
                } else {
                    None
                }
            });
            let Some(id) = id else { return };
            self.peer_accepted[dir_index(id.dir())] = id.index() + 1;
            match self.web.as_mut() {
                Some(web) => web.accept(id),
                None => self.wire.open_peer(id),
            }
            self.read(conn, now, id, events);
        }
    }

    /// Whether `id` is ours or a peer stream already taken with `accept`.
    fn accepted(&self, id: StreamId) -> bool {
        let ours = if self.server {
            quinn_proto::Side::Server
        } else {
            quinn_proto::Side::Client
        };
        id.initiator() == ours || id.index() < self.peer_accepted[dir_index(id.dir())]
    }

    /// `id` has bytes (or its end) to read.
    pub fn read(
        &mut self,
        conn: &mut Connection,
        now: Instant,
        id: StreamId,
        events: &mut Vec<Event>,
    ) {
        if self.web.as_ref().is_some_and(|w| w.owns(id)) {
            self.web_read(conn, now, id, events);
            return;
        }
        if !self.wire.reads(id) {
            // quinn reports bytes on a peer stream that is not accepted yet (its first frame
            // only said Opened): they must stay in quinn until `accept` takes the stream, or
            // a request sent in two packets before SETUP loses its body. A stream we are done
            // with is drained, so its bytes keep no flow-control credit.
            if self.accepted(id) {
                let _ = stream_io::read_chunks(conn, id);
            }
            return;
        }
        let (chunks, end) = stream_io::read_chunks(conn, id);
        self.on_wire_stream(conn, now, id, chunks, end, events);
    }

    /// Bytes for the moq-lite machine; once it is set up by them, the streams that waited for
    /// that are taken.
    fn on_wire_stream(
        &mut self,
        conn: &mut Connection,
        now: Instant,
        id: StreamId,
        chunks: Vec<bytes::Bytes>,
        end: crate::stream::End,
        events: &mut Vec<Event>,
    ) {
        let was_ready = self.wire.is_ready();
        let mut peer = std::mem::take(&mut self.spare);
        let stamp = now_ms();
        self.io(conn, now, |w, io| {
            w.on_stream(io, id, chunks, end, stamp, &mut peer)
        });
        let admitted = self.report(conn, now, was_ready, &mut peer, events);
        self.spare = peer;
        if admitted && !was_ready && self.wire.is_ready() {
            self.accept(conn, now, events);
        }
    }

    /// Bytes on a stream the WebTransport session reads (HTTP/3 streams, and WebTransport
    /// streams until their header is read or while they wait for the session to open).
    fn web_read(
        &mut self,
        conn: &mut Connection,
        now: Instant,
        id: StreamId,
        events: &mut Vec<Event>,
    ) {
        let Some(web) = self.web.as_mut() else { return };
        let (chunks, end) = stream_io::read_chunks(conn, id);
        let reported = web.on_stream(
            &mut ConnStreams::new(conn, &mut self.outs, now),
            id,
            chunks,
            end,
        );
        let mut opened = false;
        let mut queue: std::collections::VecDeque<WebEvent> = reported.into();
        while let Some(event) = queue.pop_front() {
            match event {
                // A server admits the peer (or not) before anything is answered: a refusal
                // is an HTTP status, and no session ever exists.
                WebEvent::Connect { root, jwt, .. } => {
                    let access = self.admit(&root, jwt.as_deref());
                    let addr = conn.remote_address();
                    let Some(web) = self.web.as_mut() else { return };
                    let mut io = ConnStreams::new(conn, &mut self.outs, now);
                    match access {
                        Ok(access) => {
                            self.access = Some(access);
                            for e in web.accept_connect(&mut io).into_iter().rev() {
                                queue.push_front(e);
                            }
                        }
                        Err(r) => {
                            log_refusal(addr, &root, &r);
                            web.reject_connect(&mut io, r.status);
                        }
                    }
                }
                // Once open, the version comes from the negotiated subprotocol, or from the
                // SETUP exchange when there is none; a server's root is the URL path.
                WebEvent::Open {
                    ref root,
                    ref protocol,
                    ..
                } => {
                    let root = if self.server {
                        root.clone()
                    } else {
                        String::new()
                    };
                    let protocol = protocol
                        .as_deref()
                        .and_then(Protocol::from_alpn)
                        .unwrap_or(Protocol::Lite(None));
                    let mut peer = Vec::new();
                    self.io(conn, now, |w, io| {
                        w.start(io, protocol, Some(root), true, &mut peer)
                    });
                    events.push(Event::Web(event));
                    self.report(conn, now, false, &mut peer, events);
                    opened = true;
                }
                WebEvent::Stream {
                    id, chunks, end, ..
                } => {
                    self.wire.open_peer(id);
                    self.on_wire_stream(conn, now, id, chunks, end, events);
                }
                other => events.push(Event::Web(other)),
            }
        }
        // Streams released with the session's opening came first; new ones after them.
        if opened {
            self.accept(conn, now, events);
        }
    }

    /// `id` can take more: send what waits for it.
    pub fn writable(&mut self, conn: &mut Connection, id: StreamId) {
        stream_io::resume(conn, &mut self.outs, id);
    }

    /// The peer sent STOP_SENDING on `id`.
    pub fn stopped(
        &mut self,
        conn: &mut Connection,
        now: Instant,
        id: StreamId,
        events: &mut Vec<Event>,
    ) {
        let mut peer = Vec::new();
        self.io(conn, now, |w, io| w.stopped(io, id, &mut peer));
        events.extend(peer.into_iter().map(Event::Peer));
    }

    /// The connection is gone: what the layer above must forget of it.
    pub fn lost(&mut self) -> Vec<PeerEvent> {
        self.outs.clear();
        self.wire.lost()
    }
}
