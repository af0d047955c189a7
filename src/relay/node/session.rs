//! The node as the session host's [`Application`]: what a peer's session reports
//! ([`PeerEvent`]) is acted on here, sessions come and go, and the core's doorbell and timer
//! drive the cross-core inbox, the local application and the linger of idle tracks.

use super::*;
use crate::model::Application;

/// Cross-core messages handled per wake of the core.
pub(super) const INBOX_BUDGET: usize = 4096;

impl Application for Node {
    /// A client node dials its upstream (the host's first dial) at once.
    /// A relay dials its peer relays.
    fn on_start(&mut self, peers: &mut dyn Peers) {
        if self.app.is_none() {
            self.dial_peers(peers);
        } else if let Err(reason) = peers.dial(0) {
            self.emit(AppEvent::Closed { reason });
        }
    }

    fn on_session(&mut self, _peers: &mut dyn Peers, peer: PeerId) {
        self.sessions.insert(peer, PeerState::default());
    }

    fn on_event(&mut self, peers: &mut dyn Peers, peer: PeerId, event: PeerEvent) {
        self.peer_event(peers, peer, event);
    }

    /// A client hears why its upstream refused it (a CONNECT status) when the session ends.
    fn on_notice(&mut self, _peer: PeerId, notice: crate::model::Notice) {
        if let crate::model::Notice::Refused { status } = notice
            && self.app.is_some()
        {
            self.refused = Some(format!("CONNECT refused with status {status}"));
        }
    }

    fn on_lost(
        &mut self,
        peers: &mut dyn Peers,
        peer: PeerId,
        reason: &str,
        forgotten: Vec<PeerEvent>,
    ) {
        let refused = self.refused.take();
        self.lost(peers, peer, refused.as_deref().unwrap_or(reason), forgotten);
        self.peer_lost(peers, peer, reason);
    }

    fn on_timer(&mut self, peers: &mut dyn Peers) {
        self.expire_lingering(peers);
        self.release_idle(peers);
        self.sweep_fetches(peers);
        self.release_stale(peers);
        self.dial_peers(peers);
        if let Some(at) = self.next_dial() {
            peers.wake_at(at);
        }
    }

    /// At most [`INBOX_BUDGET`] messages from other cores per wake: a core flooded with them
    /// (an announce storm elsewhere) still gets to its sockets and timers in between.
    fn on_wake(&mut self, peers: &mut dyn Peers) {
        for _ in 0..INBOX_BUDGET {
            let Ok(msg) = self.inbox.try_recv() else {
                break;
            };
            self.on_core_msg(peers, msg);
        }
        if !self.inbox.is_empty() {
            self.registry.wake(self.core);
        }
        let cmds: Vec<AppCmd> = self
            .app
            .as_ref()
            .map(|a| a.commands.try_iter().collect())
            .unwrap_or_default();
        for cmd in cmds {
            self.on_app(peers, cmd);
        }
    }
}

/// Whether the peer was granted publishing `broadcast` (absolute).
pub(super) fn may_publish(peers: &dyn Peers, peer: PeerId, broadcast: &str) -> bool {
    peers.access(peer).is_some_and(|a| a.may_publish(broadcast))
}

/// Whether the peer was granted subscribing to `broadcast` (absolute), or hearing of it.
pub(super) fn may_subscribe(peers: &dyn Peers, peer: PeerId, broadcast: &str) -> bool {
    peers
        .access(peer)
        .is_some_and(|a| a.may_subscribe(broadcast))
}

impl Node {
    /// Act on one thing the session of `peer` reported.
    fn peer_event(&mut self, peers: &mut dyn Peers, peer: PeerId, event: PeerEvent) {
        let Some(s) = self.sessions.get_mut(&peer) else {
            return;
        };
        match event {
            PeerEvent::Ready => self.ready(peers, peer),
            PeerEvent::AnnounceInterest {
                request,
                prefix,
                exclude_hop,
            } => self.serve_announce(peers, peer, request, &prefix, exclude_hop),
            PeerEvent::Announced { path, active, hops } => {
                if active && !may_publish(peers, peer, &path) {
                    // Outside what we asked it for: a broadcast it may not publish (so can
                    // never take over) is not routed.
                    tracing::debug!(%peer, path = %path, "announce outside the publish grant ignored");
                } else if active {
                    let owner = Owner {
                        core: self.core,
                        peer: Some(peer),
                        hops,
                    };
                    self.registry.publish(&path, owner, self.cost_of(peer));
                } else {
                    self.registry.unpublish(&path, self.core, Some(peer));
                }
            }
            PeerEvent::Subscribe { id, path, .. } if !may_subscribe(peers, peer, &path) => {
                peers.refuse_subscribe(peer, id, ErrorCode::UNAUTHORIZED)
            }
            PeerEvent::Subscribe {
                id,
                path,
                track,
                start,
            } => self.serve_subscribe(peers, peer, id, &path, &track, start),
            PeerEvent::Unsubscribe { id } => {
                if let Some(track) = s.downs.remove(&id) {
                    self.detach(peers, track, SubRef::Down { peer, id });
                }
            }
            PeerEvent::Group { up, seq, stream } => {
                let Some(&track) = s.ups.get(&up).filter(|t| self.tracks.contains_key(t)) else {
                    return;
                };
                if !self.open_group(peers, track, seq) {
                    peers.refuse(peer, stream, ErrorCode::OLD);
                }
            }
            PeerEvent::Frame { up, seq, frame } => {
                if let Some(&track) = s.ups.get(&up) {
                    self.append(peers, track, seq, Arc::new(frame));
                }
            }
            PeerEvent::GroupDone { up, seq } => {
                if let Some(&track) = s.ups.get(&up) {
                    self.group_done(peers, track, seq);
                }
            }
            PeerEvent::GroupAbort { up, seq, code } => {
                if let Some(&track) = s.ups.get(&up) {
                    self.group_abort(peers, track, seq, code);
                }
            }
            PeerEvent::UpstreamEnded { up, code } => {
                if let Some(track) = s.ups.remove(&up) {
                    self.end_track(peers, track, code);
                }
            }
            PeerEvent::InfoWanted { request, path, .. } if !may_subscribe(peers, peer, &path) => {
                peers.answer_info(peer, request, Err(ErrorCode::UNAUTHORIZED))
            }
            PeerEvent::InfoWanted {
                request,
                path,
                track,
            } => self.want_info(peers, path, track, InfoWaiter::Stream(peer, request)),
            PeerEvent::Info {
                path,
                track,
                result,
            } => self.info_known(peers, path, track, result),
            PeerEvent::Fetch { request, path, .. } if !may_subscribe(peers, peer, &path) => {
                peers.refuse(peer, request, ErrorCode::UNAUTHORIZED)
            }
            PeerEvent::Fetch {
                request,
                path,
                track,
                group,
            } => self.serve_fetch(peers, peer, request, &path, &track, group),
        }
    }

    /// Setup is complete: ask the peer what it publishes where it may (once per prefix it
    /// was granted, the whole root for one granted all of it); a client's first session is
    /// its upstream, and its application hears of it.
    fn ready(&mut self, peers: &mut dyn Peers, peer: PeerId) {
        let root = peers.root(peer).unwrap_or_default().to_owned();
        let prefixes: Vec<String> = peers
            .access(peer)
            .map(|a| a.publish.clone())
            .unwrap_or_default();
        for prefix in prefixes {
            let prefix = if path::has_prefix(&root, &prefix) {
                &root
            } else {
                &prefix
            };
            peers.announce_interest(peer, prefix);
        }
        if !peers.is_server(peer) && self.app.is_none() {
            self.peer_ready(peers, peer);
        } else if !peers.is_server(peer) {
            let version = peers.version(peer).unwrap_or_default();
            if self.upstream.is_none() {
                self.upstream = Some(peer);
            }
            self.emit(AppEvent::Ready { version });
        }
    }

    fn lost(
        &mut self,
        peers: &mut dyn Peers,
        peer: PeerId,
        reason: &str,
        forgotten: Vec<PeerEvent>,
    ) {
        let session = self.sessions.remove(&peer);
        if self.upstream == Some(peer) || (self.upstream.is_none() && self.app.is_some()) {
            // The upstream session ended, or the client's one dial never became a session
            // that was set up (refused at its handshake, its CONNECT or its SETUP).
            self.upstream = None;
            self.emit(AppEvent::Closed {
                reason: reason.to_owned(),
            });
        }
        let Some(mut s) = session else {
            return;
        };
        // Its TRACK streams wait for nothing any more.
        self.info_waits.retain(|_, waiters| {
            waiters.retain(|w| !matches!(w, InfoWaiter::Stream(p, _) if *p == peer));
            !waiters.is_empty()
        });
        // What it announced and never ended lingers, on a relay, for another source.
        let linger = self.limits.broadcast_linger;
        let mut lingering = Vec::new();
        for event in forgotten {
            match event {
                PeerEvent::Announced { path, .. } if self.app.is_none() && !linger.is_zero() => {
                    if let Some(id) = self.registry.lose(&path, self.core, Some(peer)) {
                        lingering.push((path, id));
                    }
                }
                PeerEvent::Announced { path, .. } => {
                    self.registry.unpublish(&path, self.core, Some(peer))
                }
                PeerEvent::Info {
                    path,
                    track,
                    result,
                } => self.info_known(peers, path, track, result),
                PeerEvent::Unsubscribe { id } => {
                    if let Some(track) = s.downs.remove(&id) {
                        self.detach(peers, track, SubRef::Down { peer, id });
                    }
                }
                _ => {}
            }
        }
        let sourced: Vec<u64> = self
            .tracks
            .iter()
            .filter(|(_, t)| matches!(t.source, Source::Session { peer: p, .. } if p == peer))
            .map(|(id, _)| *id)
            .collect();
        for id in sourced {
            // A publisher that took the broadcast over keeps its subscribers; else it ends.
            let taken = self
                .tracks
                .get(&id)
                .and_then(|t| self.registry.lookup(&t.path));
            let waits = self
                .tracks
                .get(&id)
                .is_some_and(|t| lingering.iter().any(|(p, _)| *p == t.path));
            if taken.is_some() {
                self.resplice(peers, id);
            } else if waits {
                self.linger_track(peers, id);
            } else {
                self.end_track(peers, id, ErrorCode::DROPPED);
            }
        }
        if !lingering.is_empty() {
            let until = peers.now() + linger;
            self.lingering
                .extend(lingering.into_iter().map(|(p, id)| (until, p, id)));
            peers.wake_at(until);
        }
    }
}
