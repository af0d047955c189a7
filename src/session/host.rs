//! The session host of one core: the one [`Handler`] on the QUIC engine. It turns each
//! connection into a [`Session`] (the wire picked from the ALPN, then from the WebTransport
//! protocol or the SETUP exchange), dials for the client role, and runs an [`Application`]
//! over the sessions, which it sees only as [`Peers`] named by [`PeerId`].
//!
//! A second wire protocol is one more arm where the ALPN is read ([`Host::connected`]) and one
//! more machine behind [`Session`]; the application does not change.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{Event, Protocol, Session, Wire};
use crate::lite::session::{self as wire, Delivery, InfoAsk};
use crate::lite::{Role, Version};
use crate::model::{
    Access, Application, ErrorCode, Frame, Gate, Group, Notice, PeerId, PeerMap, Peers, RequestId,
    SessionCounts, TrackInfo, path,
};
use crate::quic::{ConnectionHandle, Ctx, Event as QuicEvent, Handler, StreamEvent};
use crate::stream::Streams;
use crate::web::{self, WebEvent, WebSession};

/// Where and how to dial, for the client role.
#[derive(Clone, Debug)]
pub struct Dial {
    pub addr: SocketAddr,
    pub server_name: String,
    /// The CONNECT path over WebTransport (ALPN `h3`), query included.
    pub url: String,
    /// The lite-05 SETUP Path over raw QUIC (older versions have no in-band path).
    pub setup_path: Option<String>,
    /// Offered in CLIENT_SETUP when the version is left to the SETUP exchange.
    pub setup_versions: Vec<Version>,
    /// Over WebTransport: the WT-Available-Protocols to offer; none leaves the version to the
    /// SETUP exchange.
    pub web_protocols: Vec<String>,
    /// What lite-05 SETUP says this session does.
    pub role: Role,
    /// The hop id this session adds; the host's origin when `None`.
    pub origin: Option<u64>,
    /// The QUIC client configuration (its TLS offers the ALPNs); the engine's when `None`.
    pub quic: Option<quinn_proto::ClientConfig>,
}

impl Dial {
    /// A client of a relay at `addr` whose session root is `path`.
    pub fn new(addr: SocketAddr, server_name: &str, path: &str) -> Self {
        Self {
            addr,
            server_name: server_name.to_owned(),
            url: format!("/{}", path.trim_start_matches('/')),
            setup_path: Some(path.to_owned()),
            setup_versions: Vec::new(),
            web_protocols: Vec::new(),
            role: Role::Both,
            origin: None,
            quic: None,
        }
    }
}

/// What [`Peers::dial`] dials, by number. Fixed at start for most hosts; a relay adds the peer
/// relays that gossip finds while it runs. A number names one peer for good (slots are never
/// removed), and a slot may wait for its host name to resolve.
#[derive(Debug, Default)]
pub struct DialBook {
    slots: std::sync::RwLock<Vec<Result<Arc<Dial>, String>>>,
}

impl From<Vec<Dial>> for DialBook {
    fn from(dials: Vec<Dial>) -> Self {
        Self {
            slots: std::sync::RwLock::new(dials.into_iter().map(|d| Ok(Arc::new(d))).collect()),
        }
    }
}

impl DialBook {
    /// A new slot: the dial, or why it cannot be dialled yet. Its number.
    pub fn push(&self, slot: Result<Dial, String>) -> usize {
        let mut slots = self.slots.write().expect("dial book");
        slots.push(slot.map(Arc::new));
        slots.len() - 1
    }

    /// Fill (or refill) slot `n`.
    pub fn set(&self, n: usize, slot: Result<Dial, String>) {
        if let Some(s) = self.slots.write().expect("dial book").get_mut(n) {
            *s = slot.map(Arc::new);
        }
    }

    /// Dial `n`, or why it cannot be dialled now.
    pub fn get(&self, n: usize) -> Result<Arc<Dial>, String> {
        match self.slots.read().expect("dial book").get(n) {
            Some(slot) => slot.clone(),
            None => Err(format!("no dial {n}")),
        }
    }
}

/// How the host of one core runs its sessions.
#[derive(Clone, Debug)]
pub struct HostConfig {
    pub core: usize,
    /// Our hop id: added to what we announce, and the loops we refuse.
    pub origin: u64,
    pub limits: wire::Limits,
    /// What [`Peers::dial`] dials, by number.
    pub dials: Arc<DialBook>,
    /// Who admits the peers that dial us, and to what; `None` admits anyone to everything.
    /// Sessions we dial are trusted with everything.
    pub gate: Option<Arc<dyn Gate>>,
}

/// One connection: the dial it came from (ours), and its session once it is up.
struct Conn {
    dial: Option<usize>,
    session: Option<Session>,
    /// The session's access has been seen, and its expiry (if any) is in the heap.
    armed: bool,
}

/// Everything of the host but the application, so that the two are disjoint borrows.
struct Conns {
    cfg: HostConfig,
    by_peer: PeerMap<(ConnectionHandle, Conn)>,
    /// The peer of each connection, by the handle's index (quinn's handles are a slab).
    by_handle: Vec<Option<PeerId>>,
    next_peer: u64,
    /// Reused for what a session reports, so that reading a stream allocates nothing.
    spare: Vec<Event>,
    /// When each session's access ends (its token's `exp`): it is closed then.
    expiries: BinaryHeap<Reverse<(Instant, PeerId)>>,
}

/// The host of one core. See the module docs.
pub struct Host<A> {
    app: A,
    conns: Conns,
}

/// The sessions as the application sees them during one call.
struct View<'a, 'c> {
    ctx: &'a mut Ctx<'c>,
    conns: &'a mut Conns,
}

impl<A: Application> Host<A> {
    pub fn new(cfg: HostConfig, app: A) -> Self {
        Self {
            app,
            conns: Conns {
                cfg,
                by_peer: PeerMap::default(),
                by_handle: Vec::new(),
                next_peer: 0,
                spare: Vec::new(),
                expiries: BinaryHeap::new(),
            },
        }
    }

    pub fn app(&self) -> &A {
        &self.app
    }

    /// The handshake is done: the ALPN picks the wire, the session starts.
    fn connected(&mut self, ctx: &mut Ctx<'_>, ch: ConnectionHandle) {
        let alpn = ctx
            .handshake(ch)
            .and_then(|(alpn, _)| alpn)
            .map(|a| String::from_utf8_lossy(&a).into_owned())
            .unwrap_or_default();
        let server = ctx.peek(ch).is_some_and(|c| c.side().is_server());
        // rustls asks for a client certificate only with client roots configured, and one
        // that does not chain to them fails the handshake: a certificate here is verified.
        let verified = server
            && ctx
                .peek(ch)
                .and_then(|q| q.crypto_session().peer_identity())
                .is_some();
        let protocol = Protocol::from_alpn(&alpn);
        let h3 = alpn.as_bytes() == web::ALPN;
        if protocol.is_none() && !h3 {
            tracing::debug!(core = ctx.core, alpn = %alpn, "closing session: unsupported ALPN");
            ctx.close(ch, ErrorCode::UNKNOWN_ALPN.0, b"unsupported ALPN");
            return;
        }
        let c = &mut self.conns;
        let peer = match c.peer_of(ch) {
            Some(peer) => peer,
            None => {
                let peer = c.new_peer();
                c.set_peer(ch, Some(peer));
                let conn = Conn {
                    dial: None,
                    session: None,
                    armed: false,
                };
                c.by_peer.insert(peer, (ch, conn));
                peer
            }
        };
        let Some((_, conn)) = c.by_peer.get_mut(&peer) else {
            return;
        };
        let dial = conn.dial.and_then(|n| c.cfg.dials.get(n).ok());
        let dial = dial.as_deref();
        let web = h3.then(|| web_session(&c.cfg.limits, dial));
        let gate = c.cfg.gate.clone().filter(|_| server);
        let mut session = Session::new(wire_config(&c.cfg, server, h3, dial), web, gate);
        if verified {
            tracing::info!(core = ctx.core, %peer, "peer with a verified client certificate");
            session.trust();
        }
        conn.session = Some(session);
        tracing::debug!(core = ctx.core, %peer, alpn = %alpn, server, "session connected");
        self.app.on_session(&mut View { ctx, conns: c }, peer);
        let protocol = protocol.unwrap_or(Protocol::Lite(None));
        self.drive(ctx, ch, |s, conn, now, ev| s.start(conn, now, protocol, ev));
    }

    /// Run `f` on the session of `ch` with its connection, then tell the application what it
    /// reported.
    fn drive(
        &mut self,
        ctx: &mut Ctx<'_>,
        ch: ConnectionHandle,
        f: impl FnOnce(&mut Session, &mut quinn_proto::Connection, Instant, &mut Vec<Event>),
    ) {
        let now = ctx.now;
        let c = &mut self.conns;
        let Some(peer) = c.peer_of(ch) else {
            return;
        };
        let (
            Some((
                _,
                Conn {
                    session: Some(s),
                    armed,
                    ..
                },
            )),
            Some(conn),
        ) = (c.by_peer.get_mut(&peer), ctx.conn(ch))
        else {
            return;
        };
        let mut events = std::mem::take(&mut c.spare);
        let errors = s.wire().decode_errors();
        f(s, conn, now, &mut events);
        let errors = s.wire().decode_errors() - errors;
        if !*armed && let Some(access) = s.access() {
            *armed = true;
            if let Some(at) = access.expires.map(|exp| deadline(now, exp)) {
                c.expiries.push(Reverse((at, peer)));
                ctx.wake_at(at);
            }
        }
        if errors > 0 {
            self.app
                .on_notice(peer, Notice::DecodeErrors { count: errors });
        }
        for event in events.drain(..) {
            match event {
                Event::Peer(event) => {
                    let mut view = View {
                        ctx,
                        conns: &mut self.conns,
                    };
                    self.app.on_event(&mut view, peer, event);
                }
                Event::Web(event) => self.web_event(ctx, peer, event),
            }
        }
        if self.conns.spare.capacity() < events.capacity() {
            self.conns.spare = events;
        }
    }

    /// What the WebTransport session did besides its streams (its opening needs nothing
    /// here: the session has started the moq session on it).
    fn web_event(&mut self, ctx: &Ctx<'_>, peer: PeerId, event: WebEvent) {
        let notice = match event {
            WebEvent::Closed { code, reason } => {
                tracing::debug!(core = ctx.core, %peer, code, reason, "webtransport session closed by peer");
                Notice::Closed { code, reason }
            }
            WebEvent::Refused { status } => {
                tracing::debug!(core = ctx.core, %peer, status, "CONNECT refused");
                Notice::Refused { status }
            }
            WebEvent::Failed(e) => {
                tracing::debug!(core = ctx.core, %peer, error = %e, "http/3 error");
                Notice::Failed {
                    error: e.to_string(),
                }
            }
            WebEvent::Connect { .. } | WebEvent::Open { .. } | WebEvent::Stream { .. } => return,
        };
        self.app.on_notice(peer, notice);
    }

    fn lost(&mut self, ctx: &mut Ctx<'_>, ch: ConnectionHandle, reason: String) {
        let c = &mut self.conns;
        let Some(peer) = c.peer_of(ch) else {
            return;
        };
        c.set_peer(ch, None);
        let Some((_, conn)) = c.by_peer.remove(&peer) else {
            return;
        };
        tracing::debug!(core = ctx.core, %peer, reason = %reason, "session lost");
        let forgotten = conn.session.map(|mut s| s.lost()).unwrap_or_default();
        let mut view = View { ctx, conns: c };
        self.app.on_lost(&mut view, peer, &reason, forgotten);
    }

    /// Close the sessions whose access has ended.
    fn expire(&mut self, ctx: &mut Ctx<'_>) {
        let c = &mut self.conns;
        while let Some(&Reverse((at, peer))) = c.expiries.peek() {
            if at > ctx.now {
                ctx.wake_at(at);
                break;
            }
            c.expiries.pop();
            let Some(&(ch, _)) = c.by_peer.get(&peer) else {
                continue;
            };
            let addr = ctx.peek(ch).map(|q| q.remote_address());
            tracing::info!(core = ctx.core, %peer, peer_addr = ?addr, "token expired, closing session");
            ctx.close(ch, ErrorCode::UNAUTHORIZED.0, b"token expired");
        }
    }

    fn view<'a, 'c>(&'a mut self, ctx: &'a mut Ctx<'c>) -> (&'a mut A, View<'a, 'c>) {
        (
            &mut self.app,
            View {
                ctx,
                conns: &mut self.conns,
            },
        )
    }
}

impl Conns {
    fn new_peer(&mut self) -> PeerId {
        let peer = PeerId(self.next_peer);
        self.next_peer += 1;
        peer
    }

    fn peer_of(&self, ch: ConnectionHandle) -> Option<PeerId> {
        self.by_handle.get(ch.0).copied().flatten()
    }

    fn set_peer(&mut self, ch: ConnectionHandle, peer: Option<PeerId>) {
        if self.by_handle.len() <= ch.0 {
            self.by_handle.resize(ch.0 + 1, None);
        }
        self.by_handle[ch.0] = peer;
    }

    /// The session of `ch` and its connection, for what reports nothing.
    fn session<'a>(
        &'a mut self,
        ctx: &'a mut Ctx<'_>,
        ch: ConnectionHandle,
    ) -> Option<(&'a mut Session, &'a mut quinn_proto::Connection)> {
        let peer = self.peer_of(ch)?;
        let session = self.by_peer.get_mut(&peer)?.1.session.as_mut()?;
        Some((session, ctx.conn(ch)?))
    }
}

/// The instant at which Unix time `exp` (seconds) comes, seen from `now`.
fn deadline(now: Instant, exp: u64) -> Instant {
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    now + Duration::from_secs(exp).saturating_sub(unix)
}

/// The moq-lite machine's configuration for a new connection (`dial`: ours, dialled).
fn wire_config(cfg: &HostConfig, server: bool, h3: bool, dial: Option<&Dial>) -> wire::Config {
    wire::Config {
        server,
        origin: dial.and_then(|d| d.origin).unwrap_or(cfg.origin),
        setup_versions: dial.map(|d| d.setup_versions.clone()).unwrap_or_default(),
        // A client's root travels in SETUP on raw QUIC, in the URL on WebTransport.
        setup_path: dial.filter(|_| !h3).and_then(|d| d.setup_path.clone()),
        role: dial.map_or(Role::Both, |d| d.role),
        limits: cfg.limits,
    }
}

/// The HTTP/3 + WebTransport session of a new connection. A server checks the CONNECT's root
/// as a broadcast path and offers the moq-lite ALPNs as WT-Protocols; a client asks for its
/// dial's URL, offering the dial's protocols.
fn web_session(limits: &wire::Limits, dial: Option<&Dial>) -> WebSession {
    let max_buffer = limits.max_message.saturating_mul(4);
    match dial {
        None => {
            let max_path = limits.max_path;
            let root = move |raw: &str| path::normalize(raw, max_path).ok();
            WebSession::server(Protocol::alpns(), root, max_buffer)
        }
        Some(d) => {
            let authority = format!("{}:{}", d.server_name, d.addr.port());
            WebSession::client(&authority, &d.url, d.web_protocols.clone(), max_buffer)
        }
    }
}

impl<A: Application + 'static> Handler for Host<A> {
    fn on_start(&mut self, ctx: &mut Ctx<'_>) {
        let (app, mut view) = self.view(ctx);
        app.on_start(&mut view);
    }

    fn on_event(&mut self, ctx: &mut Ctx<'_>, ch: ConnectionHandle, event: QuicEvent) {
        match event {
            QuicEvent::Connected => self.connected(ctx, ch),
            QuicEvent::ConnectionLost { reason } => self.lost(ctx, ch, reason.to_string()),
            QuicEvent::Stream(StreamEvent::Opened { .. }) => {
                self.drive(ctx, ch, |s, conn, now, ev| s.accept(conn, now, ev));
            }
            QuicEvent::Stream(StreamEvent::Readable { id }) => {
                self.drive(ctx, ch, |s, conn, now, ev| s.read(conn, now, id, ev));
            }
            QuicEvent::Stream(StreamEvent::Writable { id }) => {
                if let Some((s, conn)) = self.conns.session(ctx, ch) {
                    s.writable(conn, id);
                }
            }
            QuicEvent::Stream(StreamEvent::Stopped { id, .. }) => {
                self.drive(ctx, ch, |s, conn, now, ev| s.stopped(conn, now, id, ev));
            }
            _ => {}
        }
    }

    /// quinn reports no loss for a connection closed on our side (a refused peer, a slow
    /// one, an expired token, a refused CONNECT of ours): its session ends when it drains,
    /// before its handle can name another connection.
    fn on_drained(&mut self, ctx: &mut Ctx<'_>, ch: ConnectionHandle) {
        self.lost(ctx, ch, "closed by us".into());
    }

    fn on_timer(&mut self, ctx: &mut Ctx<'_>) {
        self.expire(ctx);
        let (app, mut view) = self.view(ctx);
        app.on_timer(&mut view);
    }

    fn on_wake(&mut self, ctx: &mut Ctx<'_>) {
        let (app, mut view) = self.view(ctx);
        app.on_wake(&mut view);
    }

    fn on_shutdown(&mut self, ctx: &mut Ctx<'_>) {
        let (app, mut view) = self.view(ctx);
        app.on_shutdown(&mut view);
        let handles: Vec<_> = self.conns.by_peer.values().map(|(ch, _)| *ch).collect();
        for ch in handles {
            ctx.close(ch, ErrorCode::CANCEL.0, b"shutdown");
        }
    }
}

impl View<'_, '_> {
    fn session(&self, peer: PeerId) -> Option<&Session> {
        self.conns.by_peer.get(&peer)?.1.session.as_ref()
    }

    /// Run `f` on the peer's moq-lite machine with its streams (our requests and answers:
    /// they report nothing).
    fn io<R>(
        &mut self,
        peer: PeerId,
        f: impl FnOnce(&mut Wire, &mut dyn Streams) -> R,
    ) -> Option<R> {
        let now = self.ctx.now;
        let (ch, conn) = self.conns.by_peer.get_mut(&peer)?;
        let session = conn.session.as_mut()?;
        let quic = self.ctx.conn(*ch)?;
        Some(session.io(quic, now, f))
    }
}

impl Peers for View<'_, '_> {
    fn now(&self) -> Instant {
        self.ctx.now
    }

    fn wake_at(&mut self, at: Instant) {
        self.ctx.wake_at(at);
    }

    fn dial(&mut self, dial: usize) -> Result<PeerId, String> {
        let d = self.conns.cfg.dials.get(dial)?;
        let ch = self
            .ctx
            .connect(d.addr, &d.server_name, d.quic.clone())
            .map_err(|e| format!("connect: {e}"))?;
        let c = &mut *self.conns;
        let peer = c.new_peer();
        c.set_peer(ch, Some(peer));
        let conn = Conn {
            dial: Some(dial),
            session: None,
            armed: false,
        };
        c.by_peer.insert(peer, (ch, conn));
        Ok(peer)
    }

    fn close(&mut self, peer: PeerId, code: ErrorCode, reason: &str) {
        if let Some(&(ch, _)) = self.conns.by_peer.get(&peer) {
            self.ctx.close(ch, code.0, reason.as_bytes());
        }
    }

    fn is_server(&self, peer: PeerId) -> bool {
        self.session(peer).is_some_and(|s| s.wire().is_server())
    }

    fn version(&self, peer: PeerId) -> Option<u64> {
        let w = self.session(peer)?.wire();
        w.is_ready().then(|| w.version_code())
    }

    fn root(&self, peer: PeerId) -> Option<&str> {
        Some(self.session(peer)?.wire().root())
    }

    fn access(&self, peer: PeerId) -> Option<&Access> {
        self.session(peer)?.access()
    }

    fn counts(&self) -> SessionCounts {
        let mut c = SessionCounts::default();
        for (_, conn) in self.conns.by_peer.values() {
            let Some(s) = &conn.session else { continue };
            let w = s.wire();
            c.streams += w.streams_read() + s.pending_writes();
            c.subscriptions += w.subscriptions();
            c.upstream_subscriptions += w.upstream_subscriptions();
            c.announce_requests += w.announce_requests();
        }
        c
    }

    fn announce_interest(&mut self, peer: PeerId, prefix: &str) -> bool {
        self.io(peer, |w, io| w.announce_interest(io, prefix))
            .flatten()
            .is_some()
    }

    fn subscribe(&mut self, peer: PeerId, path: &str, track: &str) -> Option<u64> {
        self.io(peer, |w, io| w.subscribe(io, path, track))?
    }

    fn unsubscribe(&mut self, peer: PeerId, up: u64) {
        self.io(peer, |w, io| w.unsubscribe(io, up));
    }

    fn ask_info(&mut self, peer: PeerId, path: &Arc<str>, track: &Arc<str>) -> InfoAsk {
        self.io(peer, |w, io| w.ask_info(io, path, track))
            .unwrap_or(InfoAsk::Unsupported)
    }

    fn announce_start<'a>(
        &mut self,
        peer: PeerId,
        request: RequestId,
        prefix: &str,
        exclude_hop: u64,
        active: &mut dyn Iterator<Item = (&'a Arc<str>, &'a [u64])>,
    ) {
        self.io(peer, |w, io| {
            w.announce_start(io, request.into(), prefix, exclude_hop, active)
        });
    }

    fn announce(&mut self, peer: PeerId, path: &Arc<str>, hops: &[u64], active: bool) {
        self.io(peer, |w, io| w.announce(io, path, hops, active));
    }

    fn accept_subscribe(&mut self, peer: PeerId, id: u64) -> bool {
        self.io(peer, |w, io| w.accept_subscribe(io, id))
            .unwrap_or(false)
    }

    fn refuse_subscribe(&mut self, peer: PeerId, id: u64, code: ErrorCode) {
        self.io(peer, |w, io| w.refuse_subscribe(io, id, code));
    }

    fn answer_info(
        &mut self,
        peer: PeerId,
        request: RequestId,
        info: Result<TrackInfo, ErrorCode>,
    ) {
        self.io(peer, |w, io| w.answer_info(io, request.into(), info));
    }

    fn answer_fetch(&mut self, peer: PeerId, request: RequestId, frames: Option<&[Arc<Frame>]>) {
        self.io(peer, |w, io| w.answer_fetch(io, request.into(), frames));
    }

    fn refuse(&mut self, peer: PeerId, request: RequestId, code: ErrorCode) {
        self.io(peer, |w, io| w.refuse(io, request.into(), code));
    }

    fn deliver(&mut self, peer: PeerId, sub: u64, group: &Group) -> Delivery {
        self.io(peer, |w, io| w.deliver(io, sub, group))
            .unwrap_or_default()
    }

    fn abort_group(&mut self, peer: PeerId, sub: u64, seq: u64, code: ErrorCode) {
        self.io(peer, |w, io| w.abort_group(io, sub, seq, code));
    }

    fn end_subscription(&mut self, peer: PeerId, sub: u64, code: ErrorCode, latest: Option<u64>) {
        self.io(peer, |w, io| w.end_subscription(io, sub, code, latest));
    }

    fn restart(&mut self, peer: PeerId, sub: u64) {
        if let Some((
            _,
            Conn {
                session: Some(s), ..
            },
        )) = self.conns.by_peer.get_mut(&peer)
        {
            s.wire_mut().restart(sub);
        }
    }
}
