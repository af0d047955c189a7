//! The per-core QUIC driver: one quinn-proto `Endpoint`, the connections it owns, one timer heap
//! feeding one sleep, and a transmit loop that batches `poll_transmit` output into GSO sends.
//!
//! Everything here is `!Send` and lives on its core. The layers above plug in as a [`Handler`]
//! that is called synchronously with connection events and may read and write any connection of
//! its core through [`Ctx`]; there are no per-connection tasks.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::future::poll_fn;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use quinn_proto::{
    ClientConfig, ConnectError, Connection, ConnectionHandle, DatagramEvent, EcnCodepoint,
    Endpoint, Event, VarInt,
};

use super::admission::{Verdict, source_ip};
use super::engine::{CoreShared, Forwarded};
use crate::net::{Socket, SocketOptions, owner_of};

/// The layer above the driver on one core.
pub trait Handler: 'static {
    /// Once, before the first datagram: a client role dials here.
    fn on_start(&mut self, _ctx: &mut Ctx<'_>) {}
    /// A connection event, in the order quinn-proto produced them.
    fn on_event(&mut self, ctx: &mut Ctx<'_>, conn: ConnectionHandle, event: Event);
    /// The core's doorbell rang: drain the handler's own cross-core channels.
    fn on_wake(&mut self, _ctx: &mut Ctx<'_>) {}
    /// The deadline last given to [`Ctx::wake_at`] passed.
    fn on_timer(&mut self, _ctx: &mut Ctx<'_>) {}
    /// The connection is gone for good; its handle may be reused afterwards.
    fn on_drained(&mut self, _ctx: &mut Ctx<'_>, _conn: ConnectionHandle) {}
    /// Graceful stop: close what you own; the driver closes the rest and exits once drained.
    fn on_shutdown(&mut self, _ctx: &mut Ctx<'_>) {}
}

/// What a handler may touch on its core.
pub struct Ctx<'a> {
    pub core: usize,
    pub now: Instant,
    conns: &'a mut HashMap<ConnectionHandle, Conn>,
    dirty: &'a mut Vec<ConnectionHandle>,
    endpoint: &'a mut Endpoint,
    client_socket: usize,
    client_v6: bool,
    client_config: Option<&'a ClientConfig>,
    wake_at: &'a mut Option<Instant>,
    stopping: bool,
}

impl Ctx<'_> {
    /// A connection of this core, marked for transmit after the handler returns.
    pub fn conn(&mut self, ch: ConnectionHandle) -> Option<&mut Connection> {
        let conn = self.conns.get_mut(&ch)?;
        if !conn.dirty {
            conn.dirty = true;
            self.dirty.push(ch);
        }
        Some(&mut conn.inner)
    }

    /// Read-only access that does not schedule a transmit.
    pub fn peek(&self, ch: ConnectionHandle) -> Option<&Connection> {
        self.conns.get(&ch).map(|c| &c.inner)
    }

    /// The negotiated ALPN and the SNI the client asked for, once the handshake got that far.
    pub fn handshake(&self, ch: ConnectionHandle) -> Option<(Option<Vec<u8>>, Option<String>)> {
        let data = self.peek(ch)?.crypto_session().handshake_data()?;
        let data = data
            .downcast::<quinn_proto::crypto::rustls::HandshakeData>()
            .ok()?;
        Some((data.protocol, data.server_name))
    }

    /// Dial `addr` from this core with the engine's client config (or `config`).
    pub fn connect(
        &mut self,
        addr: SocketAddr,
        server_name: &str,
        config: Option<ClientConfig>,
    ) -> Result<ConnectionHandle, ConnectError> {
        if self.stopping {
            return Err(ConnectError::EndpointStopping);
        }
        let config = match config {
            Some(c) => c,
            None => self
                .client_config
                .cloned()
                .ok_or(ConnectError::NoDefaultClientConfig)?,
        };
        let addr = match (addr, self.client_v6) {
            (SocketAddr::V4(v4), true) => {
                SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port())
            }
            _ => addr,
        };
        let (ch, conn) = self.endpoint.connect(self.now, config, addr, server_name)?;
        self.conns.insert(ch, Conn::new(conn, self.client_socket));
        self.conn(ch);
        Ok(ch)
    }

    /// Close with an application error code. quinn reports no `ConnectionLost` for a close
    /// of ours: the handler hears of the end in `on_drained`.
    pub fn close(&mut self, ch: ConnectionHandle, code: u32, reason: &[u8]) {
        let now = self.now;
        if let Some(conn) = self.conn(ch) {
            conn.close(now, VarInt::from_u32(code), Bytes::copy_from_slice(reason));
        }
    }

    /// Ask for one `on_timer` call at or after `at` (the earliest request wins).
    pub fn wake_at(&mut self, at: Instant) {
        if self.wake_at.is_none_or(|t| at < t) {
            *self.wake_at = Some(at);
        }
    }

    /// Every connection handle on this core.
    pub fn handles(&self) -> Vec<ConnectionHandle> {
        self.conns.keys().copied().collect()
    }

    pub fn stopping(&self) -> bool {
        self.stopping
    }
}

struct Conn {
    inner: Connection,
    socket: usize,
    dirty: bool,
    timeout: Option<Instant>,
    drained: bool,
    /// A server connection counted by the admission, from this address.
    admitted: Option<IpAddr>,
    /// Until when its handshake may take, while it is under way.
    handshake_until: Option<Instant>,
}

impl Conn {
    fn new(inner: Connection, socket: usize) -> Self {
        Self {
            inner,
            socket,
            dirty: false,
            timeout: None,
            drained: false,
            admitted: None,
            handshake_until: None,
        }
    }
}

/// A send the socket refused with `WouldBlock`, kept until it is writable again.
struct Blocked {
    socket: usize,
    destination: SocketAddr,
    ecn: Option<u8>,
    bytes: Vec<u8>,
    segment_size: Option<usize>,
    src_ip: Option<IpAddr>,
}

/// Largest UDP payload one GSO send may carry.
const MAX_GSO_BYTES: usize = 65535;
/// Receive batches per socket per loop turn before other work gets a go.
const RECV_BUDGET: usize = 16;
/// Datagrams forwarded from other cores handled per wake.
const FORWARD_BUDGET: usize = 1024;
/// GSO sends per connection per turn, so one bulk sender cannot starve the others.
const SEND_BUDGET: usize = 8;
/// How long a graceful stop waits for peers to see the close.
const STOP_GRACE: Duration = Duration::from_millis(500);

type Pending = Pin<Box<dyn Future<Output = io::Result<()>>>>;

/// A received GRO batch: data, stride, remote, local IP, ECN.
type Batch = (BytesMut, usize, SocketAddr, Option<IpAddr>, Option<u8>);

pub(crate) struct Driver<H: Handler> {
    core: usize,
    cores: usize,
    shared: Arc<CoreShared>,
    endpoint: Endpoint,
    sockets: Vec<Socket>,
    client_socket: usize,
    /// The client socket is IPv6, so IPv4 targets are dialled as v4-mapped.
    client_v6: bool,
    client_config: Option<ClientConfig>,
    conns: HashMap<ConnectionHandle, Conn>,
    dirty: Vec<ConnectionHandle>,
    timers: BinaryHeap<Reverse<(Instant, ConnectionHandle)>>,
    wake_at: Option<Instant>,
    buf: Vec<u8>,
    /// Reused across receive calls so the hot path does not allocate the list.
    batch: Vec<Batch>,
    blocked: Option<Blocked>,
    stopping: Option<Instant>,
    /// Server handshakes under way on this core.
    handshakes: usize,
    /// Their deadlines, in order (every handshake gets the same time).
    handshake_deadlines: VecDeque<(Instant, ConnectionHandle)>,
    handler: H,
}

impl<H: Handler> Driver<H> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        core: usize,
        cores: usize,
        shared: Arc<CoreShared>,
        endpoint: Endpoint,
        sockets: Vec<(std::net::UdpSocket, SocketOptions)>,
        client_socket: usize,
        client_config: Option<ClientConfig>,
        handler: H,
    ) -> io::Result<Self> {
        let sockets = sockets
            .into_iter()
            .map(|(s, o)| Socket::new(s, &o))
            .collect::<io::Result<Vec<_>>>()?;
        let client_v6 = sockets
            .get(client_socket)
            .is_some_and(|s| s.local_addr().is_ipv6());
        Ok(Self {
            core,
            cores,
            shared,
            endpoint,
            sockets,
            client_socket,
            client_v6,
            client_config,
            conns: HashMap::new(),
            dirty: Vec::new(),
            timers: BinaryHeap::new(),
            wake_at: None,
            buf: Vec::with_capacity(MAX_GSO_BYTES),
            batch: Vec::new(),
            blocked: None,
            stopping: None,
            handshakes: 0,
            handshake_deadlines: VecDeque::new(),
            handler,
        })
    }

    fn ctx_call(&mut self, now: Instant, f: impl FnOnce(&mut H, &mut Ctx<'_>)) {
        let mut ctx = Ctx {
            core: self.core,
            now,
            conns: &mut self.conns,
            dirty: &mut self.dirty,
            endpoint: &mut self.endpoint,
            client_socket: self.client_socket,
            client_v6: self.client_v6,
            client_config: self.client_config.as_ref(),
            wake_at: &mut self.wake_at,
            stopping: self.stopping.is_some(),
        };
        f(&mut self.handler, &mut ctx);
    }

    /// Run until a graceful stop completes.
    pub(crate) async fn run(mut self) {
        let mut readable: Vec<Option<Pending>> = self
            .sockets
            .iter()
            .map(|s| Some(Box::pin(s.readable()) as Pending))
            .collect();
        let mut more: Vec<bool> = vec![true; self.sockets.len()];
        let mut writable: Option<Pending> = None;
        let mut sleep: Option<(Instant, Pin<Box<monoio::time::Sleep>>)> = None;

        self.ctx_call(Instant::now(), |h, ctx| h.on_start(ctx));

        loop {
            let deadline = self.next_deadline();
            if sleep.as_ref().map(|s| s.0) != deadline {
                sleep = deadline.map(|d| {
                    (
                        d,
                        Box::pin(monoio::time::sleep_until(monoio::time::Instant::from_std(
                            d,
                        ))),
                    )
                });
            }
            let shared = &self.shared;
            // Connections left with sends over budget go again without waiting for I/O.
            let backlog = !self.dirty.is_empty() && self.blocked.is_none();
            let (rung, timer_fired) = poll_fn(|cx| {
                let mut ready = backlog;
                for (i, fut) in readable.iter_mut().enumerate() {
                    if let Some(f) = fut
                        && f.as_mut().poll(cx).is_ready()
                    {
                        *fut = None;
                        more[i] = true;
                    }
                    ready |= more[i];
                }
                if let Some(w) = &mut writable
                    && w.as_mut().poll(cx).is_ready()
                {
                    writable = None;
                    ready = true;
                }
                let rung = shared.doorbell.poll_rung(cx).is_ready();
                let fired = sleep
                    .as_mut()
                    .is_some_and(|(_, s)| s.as_mut().poll(cx).is_ready());
                if ready || rung || fired {
                    Poll::Ready((rung, fired))
                } else {
                    Poll::Pending
                }
            })
            .await;
            if timer_fired {
                sleep = None;
            }
            let now = Instant::now();

            if rung {
                if self.stopping.is_none() && self.shared.stop.load(Ordering::Acquire) {
                    self.begin_stop(now);
                }
                // A budget, so that datagrams forwarded by other cores cannot starve our own
                // sockets and timers; the doorbell is rung again for the rest.
                for _ in 0..FORWARD_BUDGET {
                    let Ok(fwd) = self.shared.inbox.try_recv() else {
                        break;
                    };
                    self.shared
                        .stats
                        .forwarded_in
                        .fetch_add(1, Ordering::Relaxed);
                    self.on_datagram(now, fwd.socket, fwd.data, fwd.remote, fwd.local_ip, fwd.ecn);
                }
                if !self.shared.inbox.is_empty() {
                    self.shared.doorbell.ring();
                }
                self.ctx_call(now, |h, ctx| h.on_wake(ctx));
            }

            for i in 0..self.sockets.len() {
                if !more[i] {
                    continue;
                }
                more[i] = self.recv(now, i);
                if !more[i] {
                    readable[i] = Some(Box::pin(self.sockets[i].readable()));
                }
            }

            self.expire_timers(now);
            self.expire_handshakes(now);
            if self.wake_at.is_some_and(|t| t <= now) {
                self.wake_at = None;
                self.ctx_call(now, |h, ctx| h.on_timer(ctx));
            }

            if writable.is_none() {
                if let Some(b) = self.blocked.take() {
                    self.retry_blocked(b);
                }
                self.flush(now);
                if let Some(b) = &self.blocked {
                    writable = Some(Box::pin(self.sockets[b.socket].writable()));
                }
            }

            if let Some(since) = self.stopping
                && (self.conns.is_empty() || now.duration_since(since) > STOP_GRACE)
            {
                break;
            }
        }
        tracing::debug!(core = self.core, "core stopped");
    }

    fn begin_stop(&mut self, now: Instant) {
        self.stopping = Some(now);
        self.endpoint.set_server_config(None);
        self.ctx_call(now, |h, ctx| h.on_shutdown(ctx));
        let handles: Vec<_> = self.conns.keys().copied().collect();
        for ch in handles {
            self.ctx_call(now, |_, ctx| ctx.close(ch, 0, b"shutdown"));
        }
    }

    fn next_deadline(&mut self) -> Option<Instant> {
        // Drop stale heap entries so the head is a live deadline.
        while let Some(Reverse((t, ch))) = self.timers.peek().copied() {
            if self.conns.get(&ch).is_some_and(|c| c.timeout == Some(t)) {
                break;
            }
            self.timers.pop();
        }
        let conn = self.timers.peek().map(|Reverse((t, _))| *t);
        let stop = self.stopping.map(|s| s + STOP_GRACE);
        let handshake = self.handshake_deadlines.front().map(|&(t, _)| t);
        [conn, self.wake_at, stop, handshake]
            .into_iter()
            .flatten()
            .min()
    }

    fn expire_timers(&mut self, now: Instant) {
        while let Some(Reverse((t, ch))) = self.timers.peek().copied() {
            if t > now {
                break;
            }
            self.timers.pop();
            if let Some(conn) = self.conns.get_mut(&ch)
                && conn.timeout == Some(t)
            {
                conn.timeout = None;
                conn.inner.handle_timeout(now);
                mark(&mut self.dirty, ch, conn);
            }
        }
    }

    /// Drain up to a budget of receive batches; true when the socket may have more.
    fn recv(&mut self, now: Instant, socket: usize) -> bool {
        for _ in 0..RECV_BUDGET {
            let mut batch = std::mem::take(&mut self.batch);
            let result = self.sockets[socket].recv_batch(|r| {
                // One fresh buffer per GRO batch: quinn-proto keeps slices of it in stream
                // reassembly, so it must not pin a shared arena.
                batch.push((
                    BytesMut::from(r.data),
                    r.stride,
                    r.remote,
                    r.local_ip,
                    r.ecn,
                ));
            });
            match result {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.batch = batch;
                    return false;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // ICMP-triggered errors and the like: nothing to do but carry on.
                    tracing::debug!(core = self.core, error = %e, "recv error");
                    continue;
                }
            }
            for (mut data, stride, remote, local_ip, ecn) in batch.drain(..) {
                self.shared.stats.rx_batches.fetch_add(1, Ordering::Relaxed);
                while !data.is_empty() {
                    let seg = data.split_to(stride.min(data.len()));
                    self.on_datagram(now, socket, seg, remote, local_ip, ecn);
                }
            }
            self.batch = batch;
        }
        true
    }

    fn on_datagram(
        &mut self,
        now: Instant,
        socket: usize,
        data: BytesMut,
        remote: SocketAddr,
        local_ip: Option<IpAddr>,
        ecn: Option<u8>,
    ) {
        self.shared
            .stats
            .rx_datagrams
            .fetch_add(1, Ordering::Relaxed);
        if let Some(owner) = owner_of(&data, self.cores)
            && owner != self.core
        {
            let peer = &self.shared.peers[owner];
            let fwd = Forwarded {
                socket,
                data,
                remote,
                local_ip,
                ecn,
            };
            let counter = if peer.inbox_tx.try_send(fwd).is_ok() {
                peer.doorbell.ring();
                &self.shared.stats.forwarded_out
            } else {
                &self.shared.stats.forward_dropped
            };
            counter.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let ecn = ecn.and_then(EcnCodepoint::from_bits);
        self.buf.clear();
        match self
            .endpoint
            .handle(now, remote, local_ip, ecn, data, &mut self.buf)
        {
            Some(DatagramEvent::ConnectionEvent(ch, ev)) => {
                if let Some(conn) = self.conns.get_mut(&ch) {
                    conn.inner.handle_event(ev);
                    mark(&mut self.dirty, ch, conn);
                }
            }
            Some(DatagramEvent::NewConnection(incoming)) => {
                if self.stopping.is_some() {
                    let t = self.endpoint.refuse(incoming, &mut self.buf);
                    self.send_response(socket, &t);
                    return;
                }
                self.on_incoming(now, socket, incoming);
            }
            Some(DatagramEvent::Response(t)) => self.send_response(socket, &t),
            None => {}
        }
    }

    /// A new connection: accepted, answered with a Retry, or refused, as the admission says.
    fn on_incoming(&mut self, now: Instant, socket: usize, incoming: quinn_proto::Incoming) {
        let remote = incoming.remote_address();
        let ip = source_ip(remote.ip());
        let admission = self.shared.admission.clone();
        let verdict = admission.judge(
            ip,
            self.handshakes,
            incoming.remote_address_validated(),
            incoming.may_retry(),
        );
        let stats = &self.shared.stats;
        match verdict {
            Verdict::Retry => {
                stats.retried.fetch_add(1, Ordering::Relaxed);
                if let Ok(t) = self.endpoint.retry(incoming, &mut self.buf) {
                    self.send_response(socket, &t);
                }
            }
            Verdict::Refuse(limit) => {
                stats.refused.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(core = self.core, %remote, limit, "refused connection: over the limit");
                let t = self.endpoint.refuse(incoming, &mut self.buf);
                self.send_response(socket, &t);
            }
            Verdict::Accept => match self.endpoint.accept(incoming, now, &mut self.buf, None) {
                Ok((ch, conn)) => {
                    stats.accepted.fetch_add(1, Ordering::Relaxed);
                    let mut conn = Conn::new(conn, socket);
                    let until = now + admission.limits.handshake_timeout;
                    conn.admitted = Some(ip);
                    conn.handshake_until = Some(until);
                    self.handshakes += 1;
                    self.handshake_deadlines.push_back((until, ch));
                    mark(&mut self.dirty, ch, &mut conn);
                    self.conns.insert(ch, conn);
                }
                Err(e) => {
                    admission.release(ip);
                    tracing::debug!(core = self.core, %remote, error = %e.cause, "refused connection");
                    if let Some(t) = e.response {
                        self.send_response(socket, &t);
                    }
                }
            },
        }
    }

    /// Close the handshakes whose time is up.
    fn expire_handshakes(&mut self, now: Instant) {
        while let Some(&(t, ch)) = self.handshake_deadlines.front() {
            if t > now {
                break;
            }
            self.handshake_deadlines.pop_front();
            if let Some(conn) = self.conns.get_mut(&ch)
                && conn.handshake_until == Some(t)
            {
                conn.handshake_until = None;
                self.handshakes -= 1;
                self.shared.stats.refused.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(
                    core = self.core,
                    limit = "server.handshake_timeout",
                    "closing a handshake that took too long"
                );
                conn.inner.close(
                    now,
                    VarInt::from_u32(0),
                    Bytes::from_static(b"handshake timeout"),
                );
                mark(&mut self.dirty, ch, conn);
            }
        }
    }

    /// A connection's handshake is over (done, or the connection is gone).
    fn handshake_over(&mut self, ch: ConnectionHandle) {
        if let Some(conn) = self.conns.get_mut(&ch)
            && conn.handshake_until.take().is_some()
        {
            self.handshakes -= 1;
        }
    }

    /// Stateless packets (version negotiation, resets, refusals): best effort, never queued.
    fn send_response(&mut self, socket: usize, t: &quinn_proto::Transmit) {
        let bytes = &self.buf[..t.size];
        let _ = self.sockets[socket].send(
            t.destination,
            t.ecn.map(|e| e as u8),
            bytes,
            t.segment_size,
            t.src_ip,
        );
    }

    /// Drive every dirty connection: endpoint events, handler events, transmits, timers.
    fn flush(&mut self, now: Instant) {
        let mut events = Vec::new();
        let mut requeue = Vec::new();
        while let Some(ch) = self.dirty.pop() {
            let Some(conn) = self.conns.get_mut(&ch) else {
                continue;
            };
            conn.dirty = false;
            while let Some(ev) = conn.inner.poll_endpoint_events() {
                conn.drained |= ev.is_drained();
                if let Some(back) = self.endpoint.handle_event(ch, ev) {
                    conn.inner.handle_event(back);
                }
            }
            while let Some(ev) = conn.inner.poll() {
                events.push(ev);
            }
            // The connection is already in hand: no second lookup on this path.
            if conn.handshake_until.is_some() && !conn.inner.is_handshaking() {
                conn.handshake_until = None;
                self.handshakes -= 1;
            }
            for ev in events.drain(..) {
                self.ctx_call(now, |h, ctx| h.on_event(ctx, ch, ev));
            }
            if self.blocked.is_some() {
                // Socket full: keep it dirty for after the socket drains.
                requeue.push(ch);
                continue;
            }
            // Handlers cannot remove connections, so it is still here.
            if self.transmit(ch, now) {
                requeue.push(ch);
            }
            let conn = self
                .conns
                .get_mut(&ch)
                .expect("only the driver removes connections");
            let t = conn.inner.poll_timeout();
            if t != conn.timeout {
                conn.timeout = t;
                if let Some(t) = t {
                    self.timers.push(Reverse((t, ch)));
                }
            }
            if conn.drained {
                self.handshake_over(ch);
                if let Some(ip) = self.conns.get(&ch).and_then(|c| c.admitted) {
                    self.shared.admission.release(ip);
                }
                self.conns.remove(&ch);
                self.ctx_call(now, |h, ctx| h.on_drained(ctx, ch));
            }
        }
        for ch in requeue {
            if let Some(conn) = self.conns.get_mut(&ch) {
                mark(&mut self.dirty, ch, conn);
            }
        }
        if self.timers.len() > 64 + 4 * self.conns.len() {
            self.timers = self
                .conns
                .iter()
                .filter_map(|(ch, c)| c.timeout.map(|t| Reverse((t, *ch))))
                .collect();
        }
    }

    /// Send what the connection has, up to the per-turn budget; true if it may have more.
    fn transmit(&mut self, ch: ConnectionHandle, now: Instant) -> bool {
        let conn = self.conns.get_mut(&ch).expect("caller checked");
        let socket = &self.sockets[conn.socket];
        for _ in 0..SEND_BUDGET {
            let mtu = conn.inner.current_mtu() as usize;
            let max = socket.max_gso_segments().min(MAX_GSO_BYTES / mtu).max(1);
            self.buf.clear();
            let Some(t) = conn.inner.poll_transmit(now, max, &mut self.buf) else {
                return false;
            };
            let ecn = t.ecn.map(|e| e as u8);
            match socket.send(
                t.destination,
                ecn,
                &self.buf[..t.size],
                t.segment_size,
                t.src_ip,
            ) {
                Ok(()) => {
                    self.shared.stats.tx_sends.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.blocked = Some(Blocked {
                        socket: conn.socket,
                        destination: t.destination,
                        ecn,
                        bytes: self.buf[..t.size].to_vec(),
                        segment_size: t.segment_size,
                        src_ip: t.src_ip,
                    });
                    return true;
                }
                Err(e) => {
                    // EMSGSIZE from MTU probes is expected; anything else is a lost packet
                    // that QUIC recovers from.
                    if !quinn_udp::is_msg_size_err(&e) {
                        tracing::debug!(core = self.core, error = %e, "send error");
                    }
                }
            }
        }
        true
    }

    fn retry_blocked(&mut self, b: Blocked) {
        let socket = &self.sockets[b.socket];
        match socket.send(b.destination, b.ecn, &b.bytes, b.segment_size, b.src_ip) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.blocked = Some(b),
            Ok(()) => {
                self.shared.stats.tx_sends.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {}
        }
    }
}

fn mark(dirty: &mut Vec<ConnectionHandle>, ch: ConnectionHandle, conn: &mut Conn) {
    if !conn.dirty {
        conn.dirty = true;
        dirty.push(ch);
    }
}
