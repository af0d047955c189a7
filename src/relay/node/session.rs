//! The session glue of a node: a connection's ALPN picks the wire, the WebTransport session
//! (on HTTP/3) and the moq-lite machine are driven over the connection's streams, peer
//! streams are accepted when the machine can take them, and what the machine reports
//! (`PeerEvent`) is acted on.

use super::*;
use crate::session::Event as SessionEvent;

impl Node {
    /// Run `f` on the moq-lite machine of `ch` with its streams (answers and requests of
    /// ours: they report nothing).
    pub(super) fn wire<R>(
        &mut self,
        ctx: &mut Ctx<'_>,
        ch: ConnectionHandle,
        f: impl FnOnce(&mut wire::Session, &mut dyn Streams) -> R,
    ) -> Option<R> {
        let now = ctx.now;
        let (Some(s), Some(conn)) = (self.sessions.get_mut(&ch), ctx.conn(ch)) else {
            return None;
        };
        Some(s.io(conn, now, f))
    }

    /// Run `f` on the session of `ch` with its connection, then act on what it reported.
    fn drive(
        &mut self,
        ctx: &mut Ctx<'_>,
        ch: ConnectionHandle,
        f: impl FnOnce(&mut crate::session::Session, &mut Connection, Instant, &mut Vec<SessionEvent>),
    ) {
        let now = ctx.now;
        let (Some(s), Some(conn)) = (self.sessions.get_mut(&ch), ctx.conn(ch)) else {
            return;
        };
        let mut events = std::mem::take(&mut self.spare_events);
        f(&mut s.session, conn, now, &mut events);
        self.session_events(ctx, ch, &mut events);
        if self.spare_events.capacity() < events.capacity() {
            self.spare_events = events;
        }
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
        let web = h3.then(|| self.web_session(server));
        let session = Session {
            peer,
            session: crate::session::Session::new(self.wire_config(server, h3), web),
            downs: HashMap::new(),
            ups: HashMap::new(),
        };
        self.sessions.insert(ch, session);
        self.drive(ctx, ch, |s, conn, now, ev| s.start(conn, now, version, ev));
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

    /// The peer opened streams: take those the session is ready for.
    pub(super) fn accept(&mut self, ctx: &mut Ctx<'_>, ch: ConnectionHandle) {
        self.drive(ctx, ch, |s, conn, now, ev| s.accept(conn, now, ev));
    }

    pub(super) fn read(&mut self, ctx: &mut Ctx<'_>, ch: ConnectionHandle, id: StreamId) {
        self.drive(ctx, ch, |s, conn, now, ev| s.read(conn, now, id, ev));
    }

    /// What the session of `ch` reported: the machine's events are acted on, the
    /// WebTransport session's are logged. `events` is left empty.
    fn session_events(
        &mut self,
        ctx: &mut Ctx<'_>,
        ch: ConnectionHandle,
        events: &mut Vec<SessionEvent>,
    ) {
        for event in events.drain(..) {
            match event {
                SessionEvent::Peer(event) => self.peer_event(ctx, ch, event),
                SessionEvent::Web(WebEvent::Closed { code, reason }) => {
                    tracing::debug!(
                        core = self.core,
                        code,
                        reason,
                        "webtransport session closed by peer"
                    );
                }
                SessionEvent::Web(WebEvent::Refused { status }) => {
                    tracing::debug!(core = self.core, status, "CONNECT refused");
                }
                SessionEvent::Web(WebEvent::Failed(e)) => {
                    tracing::debug!(core = self.core, error = %e, "http/3 error");
                }
                SessionEvent::Web(_) => {}
            }
        }
    }

    /// Act on one thing the moq-lite machine of `ch` reported.
    fn peer_event(&mut self, ctx: &mut Ctx<'_>, ch: ConnectionHandle, event: PeerEvent) {
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
                let Some(&track) = s.ups.get(&up).filter(|t| self.tracks.contains_key(t)) else {
                    return;
                };
                if !self.open_group(ctx, track, seq) {
                    self.wire(ctx, ch, |w, io| w.refuse(io, stream, ErrorCode::OLD));
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

    /// Setup is complete: ask the peer what it publishes; a client's first session is its
    /// upstream, and its application hears of it.
    pub(super) fn ready(&mut self, ctx: &mut Ctx<'_>, ch: ConnectionHandle) {
        self.wire(ctx, ch, |w, io| {
            // Everything the peer publishes: all of the session's root.
            let root = w.root().to_owned();
            w.announce_interest(io, &root)
        });
        let Some(s) = self.sessions.get(&ch) else {
            return;
        };
        if !s.wire().is_server() {
            let version = s.wire().version();
            if self.upstream.is_none() {
                self.upstream = Some(ch);
            }
            self.emit(AppEvent::Ready { version });
        }
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
        for event in s.session.lost() {
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
