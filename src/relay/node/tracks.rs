//! This core's tracks: finding or creating one for a name and wiring its source, attaching
//! and detaching subscribers, the linger of unwanted tracks, moving a track to a new publisher.

use super::*;

impl Node {
    /// Feed `track` from whoever publishes its broadcast now. Its subscribers stay; the groups
    /// in flight from the old source can never finish, so their streams are reset, and the
    /// cache starts over with the new publisher's sequence.
    pub(super) fn resplice(&mut self, peers: &mut dyn Peers, track: u64) {
        let Some(t) = self.tracks.get(&track) else {
            return;
        };
        let Some(owner) = self.registry.lookup(&t.path) else {
            return;
        };
        let current = match t.source {
            Source::Session { peer, .. } => owner.core == self.core && owner.peer == Some(peer),
            // The owning core resplices its own track.
            Source::Core { core } => owner.core == core,
            Source::App => true,
            Source::Lingering => false,
        };
        let live = match t.source {
            Source::Session { peer, .. } => self.sessions.contains_key(&peer),
            _ => true,
        };
        if current && live {
            return;
        }
        let (p, name) = (t.path.clone(), t.name.clone());
        tracing::debug!(core = self.core, broadcast = %p, track = %name, "resplicing to the new publisher");
        self.abort_unfinished(peers, track);
        let Some(t) = self.tracks.get_mut(&track) else {
            return;
        };
        t.cache = GroupCache::default();
        // The new publisher's sequence may reuse numbers the old one's skipped groups had.
        for sub in &t.subs {
            if let SubRef::Down { peer, id } = *sub {
                peers.restart(peer, id);
            }
        }
        let old = std::mem::replace(&mut t.source, Source::App);
        self.drop_source(peers, track, old);
        let source = if owner.core != self.core {
            self.registry.send(
                owner.core,
                CoreMsg::Subscribe {
                    path: p,
                    track: name,
                    from: self.core,
                    replica: track,
                },
            );
            Some(Source::Core { core: owner.core })
        } else if let Some(peer) = owner.peer {
            self.subscribe_upstream(peers, peer, &p, &name, track)
                .map(|up| Source::Session { peer, up })
        } else {
            Some(Source::App)
        };
        match source {
            Some(source) => {
                if let Some(t) = self.tracks.get_mut(&track) {
                    t.source = source;
                }
            }
            None => self.end_track(peers, track, ErrorCode::DROPPED),
        }
    }

    /// The track's groups in flight will never finish from its old source: abort them for
    /// its subscribers.
    pub(super) fn abort_unfinished(&mut self, peers: &mut dyn Peers, track: u64) {
        let Some(t) = self.tracks.get(&track) else {
            return;
        };
        let unfinished: Vec<u64> = (t.cache.groups.iter())
            .filter(|g| !g.done)
            .map(|g| g.seq)
            .collect();
        for seq in unfinished {
            self.group_abort(peers, track, seq, ErrorCode::DROPPED);
        }
    }

    /// Find or create this core's track for `(path, name)`, wiring its source. `None` when
    /// nobody publishes the broadcast.
    pub(super) fn resolve(
        &mut self,
        peers: &mut dyn Peers,
        path_: &str,
        name: &str,
    ) -> Option<u64> {
        if let Some(id) = self.track_id(path_, name) {
            return Some(id);
        }
        let owner = self
            .registry
            .lookup(path_)
            .or_else(|| self.upstream_owner())?;
        let id = self.next_track;
        self.next_track += 1;
        let source = if owner.core != self.core {
            self.registry.send(
                owner.core,
                CoreMsg::Subscribe {
                    path: path_.into(),
                    track: name.into(),
                    from: self.core,
                    replica: id,
                },
            );
            Source::Core { core: owner.core }
        } else if let Some(peer) = owner.peer {
            let up = self.subscribe_upstream(peers, peer, path_, name, id)?;
            Source::Session { peer, up }
        } else if self.app.is_some() {
            Source::App
        } else {
            // The relay's own broadcasts (its gossip advertisement) have no tracks.
            return None;
        };
        self.insert_track(id, path_, name, source);
        Some(id)
    }

    pub(super) fn track_id(&self, path_: &str, name: &str) -> Option<u64> {
        self.by_name.get(path_)?.get(name).copied()
    }

    /// Forget the name of a track that is going away.
    pub(super) fn unindex(&mut self, t: &TrackState) {
        if let Some(names) = self.by_name.get_mut(&t.path) {
            names.remove(&t.name);
            if names.is_empty() {
                self.by_name.remove(&t.path);
            }
        }
    }

    pub(super) fn insert_track(&mut self, id: u64, path_: &str, name: &str, source: Source) {
        let (p, n): (Arc<str>, Arc<str>) = (path_.into(), name.into());
        self.by_name
            .entry(p.clone())
            .or_default()
            .insert(n.clone(), id);
        self.tracks.insert(
            id,
            TrackState {
                lost: Vec::new(),
                path: p,
                name: n,
                source,
                cache: GroupCache::default(),
                subs: Vec::new(),
                remotes: Vec::new(),
                idle_since: None,
            },
        );
    }

    /// Subscribe to `(path, name)` on the session of `peer`, for `track`: our subscribe id.
    pub(super) fn subscribe_upstream(
        &mut self,
        peers: &mut dyn Peers,
        peer: PeerId,
        path_: &str,
        name: &str,
        track: u64,
    ) -> Option<u64> {
        let s = self.sessions.get_mut(&peer)?;
        let up = peers.subscribe(peer, path_, name)?;
        s.ups.insert(up, track);
        Some(up)
    }

    /// A peer's SUBSCRIBE: find the track (subscribing upstream if need be) and attach.
    pub(super) fn serve_subscribe(
        &mut self,
        peers: &mut dyn Peers,
        peer: PeerId,
        id: u64,
        path_: &str,
        name: &str,
        start: Option<u64>,
    ) {
        let Some(track) = self.resolve(peers, path_, name) else {
            peers.refuse_subscribe(peer, id, ErrorCode::UNROUTABLE);
            return;
        };
        let taken = peers.accept_subscribe(peer, id);
        let Some(s) = self.sessions.get_mut(&peer).filter(|_| taken) else {
            // The subscriber left before it was answered.
            self.maybe_release(peers, track);
            return;
        };
        s.downs.insert(id, track);
        self.attach(peers, track, SubRef::Down { peer, id }, start);
    }

    /// Add a subscriber to a track and give it the cache: the latest group from frame 0, or
    /// every cached group from `start`.
    pub(super) fn attach(
        &mut self,
        peers: &mut dyn Peers,
        track: u64,
        sub: SubRef,
        start: Option<u64>,
    ) {
        let Some(t) = self.tracks.get_mut(&track) else {
            return;
        };
        t.subs.push(sub);
        t.idle_since = None;
        let seqs: Vec<u64> = match start {
            Some(s) => t
                .cache
                .groups
                .iter()
                .filter(|g| g.seq >= s)
                .map(|g| g.seq)
                .collect(),
            None => t.cache.latest.into_iter().collect(),
        };
        for seq in seqs {
            self.sync(peers, track, seq, Some(sub));
        }
    }

    /// Remove a subscriber; a track nobody wants any more is released upstream.
    pub(super) fn detach(&mut self, peers: &mut dyn Peers, track: u64, sub: SubRef) {
        let Some(t) = self.tracks.get_mut(&track) else {
            return;
        };
        t.subs.retain(|s| *s != sub);
        self.maybe_release(peers, track);
    }

    /// A track nobody wants: keep it for the linger, then release it.
    pub(super) fn maybe_release(&mut self, peers: &mut dyn Peers, track: u64) {
        let linger = self.limits.track_linger;
        let Some(t) = self.tracks.get_mut(&track) else {
            return;
        };
        if !t.subs.is_empty() || !t.remotes.is_empty() || matches!(t.source, Source::App) {
            t.idle_since = None;
            return;
        }
        let since = *t.idle_since.get_or_insert(peers.now());
        if peers.now() < since + linger {
            peers.wake_at(since + linger);
            return;
        }
        self.release(peers, track);
    }

    /// Release the tracks whose linger is over, and wake again for the next one.
    pub(super) fn release_idle(&mut self, peers: &mut dyn Peers) {
        let idle: Vec<u64> = self
            .tracks
            .iter()
            .filter(|(_, t)| t.idle_since.is_some())
            .map(|(id, _)| *id)
            .collect();
        for id in idle {
            self.maybe_release(peers, id);
        }
    }

    pub(super) fn release(&mut self, peers: &mut dyn Peers, track: u64) {
        let Some(t) = self.tracks.remove(&track) else {
            return;
        };
        self.unindex(&t);
        self.drop_source(peers, track, t.source);
    }

    /// Stop what feeds `track`: end our upstream SUBSCRIBE, or leave the owning core's track.
    pub(super) fn drop_source(&mut self, peers: &mut dyn Peers, track: u64, source: Source) {
        match source {
            Source::Session { peer, up } => {
                if let Some(s) = self.sessions.get_mut(&peer)
                    && s.ups.remove(&up).is_some()
                {
                    peers.unsubscribe(peer, up);
                }
            }
            Source::Core { core } => self.registry.send(
                core,
                CoreMsg::Unsubscribe {
                    from: self.core,
                    replica: track,
                },
            ),
            Source::App | Source::Lingering => {}
        }
    }

    /// A peer's FETCH of one group: the cached group, whole, or NOT_FOUND.
    pub(super) fn serve_fetch(
        &mut self,
        peers: &mut dyn Peers,
        peer: PeerId,
        request: RequestId,
        path_: &str,
        name: &str,
        group: u64,
    ) {
        let frames = self
            .by_name
            .get(path_)
            .and_then(|m| m.get(name))
            .and_then(|t| self.tracks.get(t))
            .and_then(|t| t.cache.get(group))
            .map(|g| &g.frames[..]);
        peers.answer_fetch(peer, request, frames);
    }
}
