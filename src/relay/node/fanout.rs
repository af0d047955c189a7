//! Fan-out: a frame (or a group's end or abort) goes into the track's cache, once to each
//! core with a replica, and to each local subscriber.

use super::*;

/// How often a core looks for HTTP fetches whose client gave up.
const FETCH_SWEEP: std::time::Duration = std::time::Duration::from_secs(1);

impl Node {
    /// Open group `seq` in the cache of `track` and abort the unfinished groups that made room
    /// for it. False when the group is too old for the cache (or the track is gone).
    pub(super) fn open_group(&mut self, peers: &mut dyn Peers, track: u64, seq: u64) -> bool {
        let Some(t) = self.tracks.get_mut(&track) else {
            return false;
        };
        let opened = t.cache.open(seq, peers.now(), self.limits.cache);
        for old in opened.evicted {
            self.group_abort(peers, track, old, ErrorCode::EVICTED);
        }
        opened.open
    }

    /// A frame for group `seq` of `track`: cache it, hand it to every other core with
    /// subscribers once, and write it to this core's subscribers.
    pub(super) fn append(
        &mut self,
        peers: &mut dyn Peers,
        track: u64,
        seq: u64,
        frame: Arc<Frame>,
    ) {
        if !self.open_group(peers, track, seq) {
            return;
        }
        let Some(t) = self.tracks.get_mut(&track) else {
            return;
        };
        let Some(group) = t.cache.get_mut(seq).filter(|g| !g.done) else {
            return;
        };
        group.frames.push(frame.clone());
        tracing::trace!(
            core = self.core,
            track,
            seq,
            subs = t.subs.len(),
            remotes = t.remotes.len(),
            "append"
        );
        for &r in &t.remotes {
            let msg = CoreMsg::Frame {
                replica: r.id,
                seq,
                frame: frame.clone(),
            };
            if to_replica(&self.registry, self.core, &mut t.lost, r, seq, msg) {
                self.registry.counters[self.core].cross_core_frame();
            }
        }
        self.sync(peers, track, seq, None);
    }

    pub(super) fn group_done(&mut self, peers: &mut dyn Peers, track: u64, seq: u64) {
        let Some(t) = self.tracks.get_mut(&track) else {
            return;
        };
        let Some(group) = t.cache.get_mut(seq) else {
            return;
        };
        group.finish(peers.now());
        for &r in &t.remotes {
            let msg = CoreMsg::GroupDone { replica: r.id, seq };
            to_replica(&self.registry, self.core, &mut t.lost, r, seq, msg);
        }
        t.lost.retain(|&(_, s)| s != seq);
        self.sync(peers, track, seq, None);
    }

    /// Group `seq` will never finish (reset upstream, or evicted unfinished): forget it and
    /// reset every subscriber's stream for it, here and on the cores with replicas.
    pub(super) fn group_abort(
        &mut self,
        peers: &mut dyn Peers,
        track: u64,
        seq: u64,
        code: ErrorCode,
    ) {
        let Some(t) = self.tracks.get_mut(&track) else {
            return;
        };
        t.cache.groups.retain(|g| g.seq != seq);
        for &r in &t.remotes {
            if t.lost.contains(&(r, seq)) {
                continue;
            }
            self.registry.send(
                r.core,
                CoreMsg::GroupAbort {
                    replica: r.id,
                    seq,
                    code: code.0,
                },
            );
        }
        t.lost.retain(|&(_, s)| s != seq);
        for sub in &t.subs {
            match *sub {
                SubRef::App { id } => {
                    if let Some(a) = self.app_subs.get_mut(&id) {
                        a.sent.remove(&seq);
                    }
                }
                SubRef::Fetch { .. } => {}
                SubRef::Down { peer, id } => peers.abort_group(peer, id, seq, code),
            }
        }
    }

    /// Bring the subscribers of `track` (or only `one`) up to date with group `seq`: open
    /// their streams if new, write the frames each has not had, FIN when the group is done.
    /// The track and the sessions are borrowed apart, so nothing is copied per subscriber.
    pub(super) fn sync(
        &mut self,
        peers: &mut dyn Peers,
        track: u64,
        seq: u64,
        one: Option<SubRef>,
    ) {
        let Some(t) = self.tracks.get(&track) else {
            return;
        };
        let Some(group) = t.cache.get(seq) else {
            return;
        };
        let subs = match &one {
            Some(sub) => std::slice::from_ref(sub),
            None => &t.subs[..],
        };
        let counters = &self.registry.counters[self.core];
        let mut fetched = Vec::new();
        for &sub in subs {
            match sub {
                SubRef::Down { peer, id } => {
                    let done = peers.deliver(peer, id, group);
                    counters.frames_delivered(done.frames);
                    for _ in 0..done.resets {
                        counters.group_reset();
                    }
                }
                SubRef::App { id } => {
                    let (Some(app), Some(AppSub { sent, .. })) =
                        (&self.app, self.app_subs.get_mut(&id))
                    else {
                        continue;
                    };
                    let from = sent.get(&seq).copied().unwrap_or(0).min(group.frames.len());
                    sent.insert(seq, group.frames.len());
                    if group.done {
                        sent.remove(&seq);
                    }
                    for (i, f) in group.frames[from..].iter().enumerate() {
                        let _ = app.events.send(AppEvent::Frame {
                            id,
                            seq,
                            index: from + i,
                            timestamp: f.timestamp,
                            payload: f.chunks.clone(),
                        });
                    }
                    if group.done {
                        let _ = app.events.send(AppEvent::GroupDone { id, seq });
                    }
                }
                // A fetch takes the whole group once it is complete.
                SubRef::Fetch { id } => {
                    if group.done
                        && let Some((_, reply)) = self.fetches.remove(&id)
                    {
                        reply.send(frame_payloads(&group.frames));
                        fetched.push(sub);
                    }
                }
            }
        }
        for sub in fetched {
            self.detach(peers, track, sub);
        }
    }

    /// An HTTP fetch of `track` of `path`, which this core publishes or relays: the newest
    /// complete cached group at once, else the next group to complete.
    pub(super) fn fetch(
        &mut self,
        peers: &mut dyn Peers,
        p: &str,
        name: &str,
        reply: Box<dyn FetchReply>,
    ) {
        let Some(track) = self.resolve(peers, p, name) else {
            return;
        };
        let cached = self.tracks.get(&track).and_then(|t| {
            t.cache
                .groups
                .iter()
                .filter(|g| g.done)
                .max_by_key(|g| g.seq)
                .map(|g| frame_payloads(&g.frames))
        });
        if let Some(frames) = cached {
            reply.send(frames);
            self.maybe_release(peers, track);
            return;
        }
        let id = self.next_fetch;
        self.next_fetch += 1;
        self.fetches.insert(id, (track, reply));
        // No cached group is complete, so attaching only waits for the next to complete.
        self.attach(peers, track, SubRef::Fetch { id }, None);
        // Also arms the next sweep, now that a fetch waits.
        self.sweep_fetches(peers);
    }

    /// Forget the fetches nobody waits for any more, and let go of what they held (the
    /// track, and through it the upstream subscription); look again in [`FETCH_SWEEP`] while
    /// any are left.
    pub(super) fn sweep_fetches(&mut self, peers: &mut dyn Peers) {
        let gone: Vec<(u64, u64)> = self
            .fetches
            .iter()
            .filter(|(_, (_, reply))| reply.abandoned())
            .map(|(&id, &(track, _))| (id, track))
            .collect();
        for (id, track) in gone {
            self.fetches.remove(&id);
            self.detach(peers, track, SubRef::Fetch { id });
        }
        if !self.fetches.is_empty() {
            peers.wake_at(peers.now() + FETCH_SWEEP);
        }
    }

    /// The source of a track is gone: end every subscription to it.
    pub(super) fn end_track(&mut self, peers: &mut dyn Peers, track: u64, code: ErrorCode) {
        let Some(t) = self.tracks.remove(&track) else {
            return;
        };
        self.unindex(&t);
        for &Replica { core, id: replica } in &t.remotes {
            self.registry.send(
                core,
                CoreMsg::TrackEnd {
                    replica,
                    code: code.0,
                },
            );
            self.remote_index.remove(&Replica { core, id: replica });
        }
        for sub in t.subs {
            match sub {
                SubRef::App { id } => {
                    self.app_subs.remove(&id);
                    self.emit(AppEvent::Ended { id, code: code.0 });
                }
                SubRef::Fetch { id } => {
                    // Dropping the reply tells the HTTP side there is nothing.
                    self.fetches.remove(&id);
                }
                SubRef::Down { peer, id } => {
                    if let Some(s) = self.sessions.get_mut(&peer) {
                        s.downs.remove(&id);
                        peers.end_subscription(peer, id, code, t.cache.latest);
                    }
                }
            }
        }
    }
}

/// Hand replica `r` data (a frame or the end) of group `seq`, unless it has lost that group.
/// When its core's inbox is full it loses the group now: aborted there with `LAGGED`, once,
/// rather than delivered with a hole. `true`: the data was queued.
pub(super) fn to_replica(
    registry: &Registry,
    own: usize,
    lost: &mut Vec<(Replica, u64)>,
    r: Replica,
    seq: u64,
    msg: CoreMsg,
) -> bool {
    if lost.contains(&(r, seq)) {
        return false;
    }
    if registry.send_data(r.core, msg) {
        return true;
    }
    tracing::debug!(core = r.core, seq, limit = "inbox", "replica lost a group");
    lost.push((r, seq));
    registry.counters[own].cross_core_lost();
    registry.send(
        r.core,
        CoreMsg::GroupAbort {
            replica: r.id,
            seq,
            code: ErrorCode::LAGGED.0,
        },
    );
    false
}
