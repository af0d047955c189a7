//! This core's tracks: finding or creating one for a name and wiring its source, attaching
//! and detaching subscribers, the linger of unwanted tracks, moving a track to a new publisher.

use super::*;

impl Node {
    /// Feed `track` from whoever publishes its broadcast now. Its subscribers stay; the groups
    /// in flight from the old source can never finish, so their streams are reset, and the
    /// cache starts over with the new publisher's sequence.
    pub(super) fn resplice(&mut self, ctx: &mut Ctx<'_>, track: u64) {
        let Some(t) = self.tracks.get(&track) else {
            return;
        };
        let Some(owner) = self.registry.lookup(&t.path) else {
            return;
        };
        let current = match t.source {
            Source::Session { conn, .. } => {
                owner.core == self.core && owner.peer.is_some() && owner.peer == self.peer_of(conn)
            }
            // The owning core resplices its own track.
            Source::Core { core } => owner.core == core,
            Source::App => true,
        };
        let live = match t.source {
            Source::Session { conn, .. } => self.sessions.contains_key(&conn),
            _ => true,
        };
        if current && live {
            return;
        }
        let (p, name) = (t.path.clone(), t.name.clone());
        tracing::debug!(core = self.core, broadcast = %p, track = %name, "resplicing to the new publisher");
        let unfinished: Vec<u64> = t
            .cache
            .groups
            .iter()
            .filter(|g| !g.done)
            .map(|g| g.seq)
            .collect();
        for seq in unfinished {
            self.group_abort(ctx, track, seq, ErrorCode::DROPPED);
        }
        let Some(t) = self.tracks.get_mut(&track) else {
            return;
        };
        t.cache = GroupCache::default();
        // The new publisher's sequence may reuse numbers the old one's skipped groups had.
        for sub in &t.subs {
            if let SubRef::Down { conn, id } = sub
                && let Some(s) = self.sessions.get_mut(conn)
            {
                s.session.wire_mut().restart(*id);
            }
        }
        let old = std::mem::replace(&mut t.source, Source::App);
        self.drop_source(ctx, track, old);
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
            self.conn_of(peer).and_then(|conn| {
                self.subscribe_upstream(ctx, conn, &p, &name, track)
                    .map(|up| Source::Session { conn, up })
            })
        } else {
            Some(Source::App)
        };
        match source {
            Some(source) => {
                if let Some(t) = self.tracks.get_mut(&track) {
                    t.source = source;
                }
            }
            None => self.end_track(ctx, track, ErrorCode::DROPPED),
        }
    }

    /// Find or create this core's track for `(path, name)`, wiring its source. `None` when
    /// nobody publishes the broadcast.
    pub(super) fn resolve(&mut self, ctx: &mut Ctx<'_>, path_: &str, name: &str) -> Option<u64> {
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
            let conn = self.conn_of(peer)?;
            let up = self.subscribe_upstream(ctx, conn, path_, name, id)?;
            Source::Session { conn, up }
        } else {
            Source::App
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

    /// Subscribe to `(path, name)` on the session of `conn`, for `track`: our subscribe id.
    pub(super) fn subscribe_upstream(
        &mut self,
        ctx: &mut Ctx<'_>,
        conn: ConnectionHandle,
        path_: &str,
        name: &str,
        track: u64,
    ) -> Option<u64> {
        let up = self.wire(ctx, conn, |w, io| w.subscribe(io, path_, name))??;
        self.sessions.get_mut(&conn)?.ups.insert(up, track);
        Some(up)
    }

    /// A peer's SUBSCRIBE: find the track (subscribing upstream if need be) and attach.
    pub(super) fn serve_subscribe(
        &mut self,
        ctx: &mut Ctx<'_>,
        ch: ConnectionHandle,
        id: u64,
        path_: &str,
        name: &str,
        start: Option<u64>,
    ) {
        let Some(track) = self.resolve(ctx, path_, name) else {
            self.wire(ctx, ch, |w, io| {
                w.refuse_subscribe(io, id, ErrorCode::UNROUTABLE)
            });
            return;
        };
        let taken = self.wire(ctx, ch, |w, io| w.accept_subscribe(io, id));
        let Some(s) = self.sessions.get_mut(&ch).filter(|_| taken == Some(true)) else {
            // The subscriber left before it was answered.
            self.maybe_release(ctx, track);
            return;
        };
        s.downs.insert(id, track);
        self.attach(ctx, track, SubRef::Down { conn: ch, id }, start);
    }

    /// Add a subscriber to a track and give it the cache: the latest group from frame 0, or
    /// every cached group from `start`.
    pub(super) fn attach(
        &mut self,
        ctx: &mut Ctx<'_>,
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
            self.sync(ctx, track, seq, Some(sub));
        }
    }

    /// Remove a subscriber; a track nobody wants any more is released upstream.
    pub(super) fn detach(&mut self, ctx: &mut Ctx<'_>, track: u64, sub: SubRef) {
        let Some(t) = self.tracks.get_mut(&track) else {
            return;
        };
        t.subs.retain(|s| *s != sub);
        self.maybe_release(ctx, track);
    }

    /// A track nobody wants: keep it for the linger, then release it.
    pub(super) fn maybe_release(&mut self, ctx: &mut Ctx<'_>, track: u64) {
        let linger = self.limits.track_linger;
        let Some(t) = self.tracks.get_mut(&track) else {
            return;
        };
        if !t.subs.is_empty() || !t.remotes.is_empty() || matches!(t.source, Source::App) {
            t.idle_since = None;
            return;
        }
        let since = *t.idle_since.get_or_insert(ctx.now);
        if ctx.now < since + linger {
            ctx.wake_at(since + linger);
            return;
        }
        self.release(ctx, track);
    }

    /// Release the tracks whose linger is over, and wake again for the next one.
    pub(super) fn release_idle(&mut self, ctx: &mut Ctx<'_>) {
        let idle: Vec<u64> = self
            .tracks
            .iter()
            .filter(|(_, t)| t.idle_since.is_some())
            .map(|(id, _)| *id)
            .collect();
        for id in idle {
            self.maybe_release(ctx, id);
        }
    }

    pub(super) fn release(&mut self, ctx: &mut Ctx<'_>, track: u64) {
        let Some(t) = self.tracks.remove(&track) else {
            return;
        };
        self.unindex(&t);
        self.drop_source(ctx, track, t.source);
    }

    /// Stop what feeds `track`: end our upstream SUBSCRIBE, or leave the owning core's track.
    pub(super) fn drop_source(&mut self, ctx: &mut Ctx<'_>, track: u64, source: Source) {
        match source {
            Source::Session { conn, up } => {
                if let Some(s) = self.sessions.get_mut(&conn)
                    && s.ups.remove(&up).is_some()
                {
                    self.wire(ctx, conn, |w, io| w.unsubscribe(io, up));
                }
            }
            Source::Core { core } => self.registry.send(
                core,
                CoreMsg::Unsubscribe {
                    from: self.core,
                    replica: track,
                },
            ),
            Source::App => {}
        }
    }

    /// A peer's FETCH of one group: the cached group, whole, or NOT_FOUND.
    pub(super) fn serve_fetch(
        &mut self,
        ctx: &mut Ctx<'_>,
        ch: ConnectionHandle,
        request: StreamId,
        path_: &str,
        name: &str,
        group: u64,
    ) {
        let now = ctx.now;
        let frames = self
            .by_name
            .get(path_)
            .and_then(|m| m.get(name))
            .and_then(|t| self.tracks.get(t))
            .and_then(|t| t.cache.get(group))
            .map(|g| &g.frames[..]);
        let (Some(s), Some(conn)) = (self.sessions.get_mut(&ch), ctx.conn(ch)) else {
            return;
        };
        s.io(conn, now, |w, io| w.answer_fetch(io, request, frames));
    }
}
