//! The session glue of a node: a connection's ALPN picks the wire, the WebTransport session
//! (on HTTP/3) and the moq-lite machine are driven over the connection's streams, peer
//! streams are accepted when the machine can take them, and what the machine reports
//! (`PeerEvent`) is acted on.

use super::*;

impl Node {
    /// Run `f` on the moq-lite machine of `ch` with its streams, then act on what it reported.
    pub(super) fn wire<R>(
        &mut self,
        ctx: &mut Ctx<'_>,
        ch: ConnectionHandle,
        f: impl FnOnce(&mut wire::Session, &mut dyn Streams, &mut Vec<PeerEvent>) -> R,
    ) -> Option<R> {
        let now = ctx.now;
        let (Some(s), Some(conn)) = (self.sessions.get_mut(&ch), ctx.conn(ch)) else {
            return None;
        };
        let mut events = std::mem::take(&mut self.spare_events);
        let r = s.io(conn, now, |w, io| f(w, io, &mut events));
        if !events.is_empty() {
            self.peer_events(ctx, ch, &mut events);
        }
        if self.spare_events.capacity() < events.capacity() {
            self.spare_events = events;
        }
        Some(r)
    }

    pub(super) fn wire_config(&self, server: bool, h3: bool) -> wire::Config {
        let l = &self.limits;
        wire::Config {
            server,
            origin: self.registry.origin,
            setup_versions: self
                .dial
                .as_ref()
                .map(|d| d.setup_versions.clone())
                .unwrap_or_default(),
            // A client's root travels in SETUP on raw QUIC, in the URL on WebTransport; inside
            // the node its paths are relative to it.
            setup_path: match &self.dial {
                Some(d) if !server && !h3 => Some(d.path.clone()),
                _ => None,
            },
            role: lite::Role::Both,
            limits: wire::Limits {
                max_message: l.max_message,
                max_path: l.max_path,
                max_frame: l.max_frame,
                max_subscriptions: l.max_subscriptions,
                max_announces: l.max_announces,
                max_groups_in_flight: l.max_groups_in_flight,
            },
        }
    }

    pub(super) fn connected(&mut self, ctx: &mut Ctx<'_>, ch: ConnectionHandle) {
        let (alpn, _) = ctx.handshake(ch).unwrap_or_default();
        let alpn = alpn
            .map(|a| String::from_utf8_lossy(&a).into_owned())
            .unwrap_or_default();
        let server = ctx.peek(ch).is_some_and(|c| c.side().is_server());
        let version = Version::from_alpn(&alpn);
        let legacy = alpn == Version::LEGACY_ALPN;
        let h3 = alpn.as_bytes() == web::ALPN;
        if version.is_none() && !legacy && !h3 {
            tracing::debug!(core = self.core, alpn = %alpn, "closing session: unsupported ALPN");
            ctx.close(ch, ErrorCode::UNKNOWN_ALPN.0, b"unsupported ALPN");
            return;
        }
        tracing::debug!(core = self.core, conn = ?ch, alpn = %alpn, server, "session connected");
        let peer = PeerId(self.next_peer);
        self.next_peer += 1;
        self.peers.insert(peer, ch);
        let session = Session {
            peer,
            server,
            wire: wire::Session::new(self.wire_config(server, h3)),
            downs: HashMap::new(),
            ups: HashMap::new(),
            outs: HashMap::new(),
            web: h3.then(|| self.web_session(server)),
            jwt: None,
            peer_accepted: [0; 2],
        };
        self.sessions.insert(ch, session);
        if h3 {
            self.web_start(ctx, ch);
        } else {
            self.wire(ctx, ch, |w, io, ev| w.start(io, version, None, ev));
        }
        self.accept(ctx, ch);
    }

    /// The HTTP/3 + WebTransport session of a new connection. A server checks the CONNECT's
    /// root as a broadcast path and offers the moq-lite ALPNs as WT-Protocols; a client asks
    /// for its dial path, offering the dial's protocols.
    pub(super) fn web_session(&self, server: bool) -> WebSession {
        let max_buffer = self.limits.max_message.saturating_mul(4);
        if server {
            let max_path = self.limits.max_path;
            let root = move |raw: &str| path::normalize(raw, max_path).ok();
            return WebSession::server(Version::ALPNS, root, max_buffer);
        }
        let (authority, url, protocols) = match &self.dial {
            Some(d) => (
                format!("{}:{}", d.server_name, d.addr.port()),
                format!("/{}", d.path.trim_start_matches('/')),
                d.web_protocols.clone(),
            ),
            None => (String::new(), "/".to_owned(), Vec::new()),
        };
        WebSession::client(&authority, &url, protocols, max_buffer)
    }

    /// An HTTP/3 connection: our SETTINGS at once (Chromium waits for them), and a client
    /// sends its CONNECT.
    pub(super) fn web_start(&mut self, ctx: &mut Ctx<'_>, ch: ConnectionHandle) {
        let now = ctx.now;
        let (Some(s), Some(conn)) = (self.sessions.get_mut(&ch), ctx.conn(ch)) else {
            return;
        };
        if let Some(web) = s.web.as_mut() {
            web.start(&mut ConnStreams::new(conn, &mut s.outs, now));
        }
    }

    /// Bytes on a stream the WebTransport session reads (HTTP/3 streams, and WebTransport
    /// streams until their header is read or while they wait for the session to open).
    pub(super) fn web_read(&mut self, ctx: &mut Ctx<'_>, ch: ConnectionHandle, id: StreamId) {
        let now = ctx.now;
        let (Some(s), Some(conn)) = (self.sessions.get_mut(&ch), ctx.conn(ch)) else {
            return;
        };
        let Some(web) = s.web.as_mut() else { return };
        let (chunks, end) = stream_io::read_chunks(conn, id);
        let mut io = ConnStreams::new(conn, &mut s.outs, now);
        let events = web.on_stream(&mut io, id, chunks, end);
        self.web_events(ctx, ch, events);
    }

    /// What the WebTransport session reported. Once it is open the version comes from the
    /// negotiated subprotocol, or from the SETUP exchange when there is none; its streams go
    /// to the moq-lite machine.
    pub(super) fn web_events(
        &mut self,
        ctx: &mut Ctx<'_>,
        ch: ConnectionHandle,
        events: Vec<WebEvent>,
    ) {
        let mut opened = false;
        for event in events {
            match event {
                WebEvent::Open {
                    root,
                    protocol,
                    jwt,
                } => {
                    let Some(s) = self.sessions.get_mut(&ch) else {
                        return;
                    };
                    let root = if s.server {
                        s.jwt = jwt;
                        root
                    } else {
                        String::new()
                    };
                    let version = protocol.as_deref().and_then(Version::from_alpn);
                    self.wire(ctx, ch, |w, io, ev| w.start(io, version, Some(root), ev));
                    opened = true;
                }
                WebEvent::Stream {
                    id, chunks, end, ..
                } => {
                    if let Some(s) = self.sessions.get_mut(&ch) {
                        s.wire.open_peer(id);
                    }
                    let now = now_ms();
                    self.wire(ctx, ch, |w, io, ev| {
                        w.on_stream(io, id, chunks, end, now, ev)
                    });
                }
                WebEvent::Closed { code, reason } => {
                    tracing::debug!(
                        core = self.core,
                        code,
                        reason,
                        "webtransport session closed by peer"
                    );
                }
                WebEvent::Refused { status } => {
                    tracing::debug!(core = self.core, status, "CONNECT refused");
                }
                WebEvent::Failed(e) => {
                    tracing::debug!(core = self.core, error = %e, "http/3 error");
                }
            }
        }
        if opened {
            self.accept(ctx, ch);
        }
    }

    /// Take the peer's new streams that the session is ready for (on WebTransport, all: the
    /// WebTransport session holds what comes early).
    pub(super) fn accept(&mut self, ctx: &mut Ctx<'_>, ch: ConnectionHandle) {
        loop {
            let Some(s) = self.sessions.get(&ch) else {
                return;
            };
            let web = s.web.is_some();
            let uni_ok = web || s.wire.accepts(Dir::Uni);
            let bi_ok = web || s.wire.accepts(Dir::Bi);
            let Some(conn) = ctx.conn(ch) else { return };
            let id = if uni_ok {
                conn.streams().accept(Dir::Uni)
            } else {
                None
            };
            let id = id.or_else(|| {
                if bi_ok {
                    conn.streams().accept(Dir::Bi)
                } else {
                    None
                }
            });
            let Some(id) = id else { return };
            let s = self.sessions.get_mut(&ch).expect("checked");
            s.peer_accepted[dir_index(id.dir())] = id.index() + 1;
            match s.web.as_mut() {
                Some(web) => web.accept(id),
                None => s.wire.open_peer(id),
            }
            self.read(ctx, ch, id);
        }
    }

    pub(super) fn read(&mut self, ctx: &mut Ctx<'_>, ch: ConnectionHandle, id: StreamId) {
        let Some(s) = self.sessions.get_mut(&ch) else {
            return;
        };
        if s.web.as_ref().is_some_and(|w| w.owns(id)) {
            self.web_read(ctx, ch, id);
            return;
        }
        let reads = s.wire.reads(id);
        let accepted = s.accepted(id);
        let Some(conn) = ctx.conn(ch) else { return };
        if !reads {
            // quinn reports bytes on a peer stream that is not accepted yet (its first frame
            // only said Opened): they must stay in quinn until `accept` takes the stream, or
            // a request sent in two packets before SETUP loses its body. A stream we are done
            // with is drained, so its bytes keep no flow-control credit.
            if accepted {
                let _ = stream_io::read_chunks(conn, id);
            }
            return;
        }
        let (chunks, end) = stream_io::read_chunks(conn, id);
        let now = now_ms();
        self.wire(ctx, ch, |w, io, ev| {
            w.on_stream(io, id, chunks, end, now, ev)
        });
    }

    /// Act on what the moq-lite machine of `ch` reported; `events` is left empty.
    pub(super) fn peer_events(
        &mut self,
        ctx: &mut Ctx<'_>,
        ch: ConnectionHandle,
        events: &mut Vec<PeerEvent>,
    ) {
        for event in events.drain(..) {
            let Some(s) = self.sessions.get_mut(&ch) else {
                return;
            };
            match event {
                PeerEvent::Ready => self.ready(ctx, ch),
                PeerEvent::AnnounceInterest {
                    request,
                    prefix,
                    exclude_hop,
                } => self.serve_announce(ctx, ch, request, &prefix, exclude_hop),
                PeerEvent::Announced { path, active, hops } => {
                    let peer = Some(s.peer);
                    if active {
                        let owner = Owner {
                            core: self.core,
                            peer,
                            hops,
                        };
                        self.registry.publish(&path, owner);
                    } else {
                        self.registry.unpublish(&path, self.core, peer);
                    }
                }
                PeerEvent::Subscribe {
                    id,
                    path,
                    track,
                    start,
                } => self.serve_subscribe(ctx, ch, id, &path, &track, start),
                PeerEvent::Unsubscribe { id } => {
                    if let Some(track) = s.downs.remove(&id) {
                        self.detach(ctx, track, SubRef::Down { conn: ch, id });
                    }
                }
                PeerEvent::Group { up, seq, stream } => {
                    let Some(&track) = s.ups.get(&up).filter(|t| self.tracks.contains_key(t))
                    else {
                        continue;
                    };
                    if !self.open_group(ctx, track, seq) {
                        self.wire(ctx, ch, |w, io, _| w.refuse(io, stream, ErrorCode::OLD));
                    }
                }
                PeerEvent::Frame { up, seq, frame } => {
                    if let Some(&track) = s.ups.get(&up) {
                        self.append(ctx, track, seq, Arc::new(frame));
                    }
                }
                PeerEvent::GroupDone { up, seq } => {
                    if let Some(&track) = s.ups.get(&up) {
                        self.group_done(ctx, track, seq);
                    }
                }
                PeerEvent::GroupAbort { up, seq, code } => {
                    if let Some(&track) = s.ups.get(&up) {
                        self.group_abort(ctx, track, seq, code);
                    }
                }
                PeerEvent::UpstreamEnded { up, code } => {
                    if let Some(track) = s.ups.remove(&up) {
                        self.end_track(ctx, track, code);
                    }
                }
                PeerEvent::InfoWanted {
                    request,
                    path,
                    track,
                } => {
                    let waiter = InfoWaiter::Stream(s.peer, request);
                    self.want_info(ctx, path, track, waiter);
                }
                PeerEvent::Info {
                    path,
                    track,
                    result,
                } => self.info_known(ctx, path, track, result),
                PeerEvent::Fetch {
                    request,
                    path,
                    track,
                    group,
                } => self.serve_fetch(ctx, ch, request, &path, &track, group),
            }
        }
    }

    /// Setup is complete: ask the peer what it publishes; a client's first session is its
    /// upstream, and its application hears of it; the peer's waiting streams can be taken now.
    pub(super) fn ready(&mut self, ctx: &mut Ctx<'_>, ch: ConnectionHandle) {
        self.wire(ctx, ch, |w, io, _| {
            // Everything the peer publishes: all of the session's root.
            let root = w.root().to_owned();
            w.announce_interest(io, &root)
        });
        let Some(s) = self.sessions.get(&ch) else {
            return;
        };
        if !s.server {
            let version = s.wire.version();
            if self.upstream.is_none() {
                self.upstream = Some(ch);
            }
            self.emit(AppEvent::Ready { version });
        }
        self.accept(ctx, ch);
    }

    pub(super) fn lost(&mut self, ctx: &mut Ctx<'_>, ch: ConnectionHandle, reason: String) {
        let Some(mut s) = self.sessions.remove(&ch) else {
            return;
        };
        self.peers.remove(&s.peer);
        tracing::debug!(core = self.core, conn = ?ch, reason = %reason, "session lost");
        if self.upstream == Some(ch) {
            self.upstream = None;
            self.emit(AppEvent::Closed { reason });
        }
        // Its TRACK streams wait for nothing any more.
        let peer = s.peer;
        self.info_waits.retain(|_, waiters| {
            waiters.retain(|w| !matches!(w, InfoWaiter::Stream(p, _) if *p == peer));
            !waiters.is_empty()
        });
        for event in s.wire.lost() {
            match event {
                PeerEvent::Announced { path, .. } => {
                    self.registry.unpublish(&path, self.core, Some(peer))
                }
                PeerEvent::Info {
                    path,
                    track,
                    result,
                } => self.info_known(ctx, path, track, result),
                PeerEvent::Unsubscribe { id } => {
                    if let Some(track) = s.downs.remove(&id) {
                        self.detach(ctx, track, SubRef::Down { conn: ch, id });
                    }
                }
                _ => {}
            }
        }
        let sourced: Vec<u64> = self
            .tracks
            .iter()
            .filter(|(_, t)| matches!(t.source, Source::Session { conn, .. } if conn == ch))
            .map(|(id, _)| *id)
            .collect();
        for id in sourced {
            // A publisher that took the broadcast over keeps its subscribers; else it ends.
            let taken = self
                .tracks
                .get(&id)
                .and_then(|t| self.registry.lookup(&t.path));
            if taken.is_some() {
                self.resplice(ctx, id);
            } else {
                self.end_track(ctx, id, ErrorCode::DROPPED);
            }
        }
    }
}
