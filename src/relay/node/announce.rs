//! Announcements (the peer's interest and what this core tells it) and TRACK_INFO (the cache
//! of publishers' track info and who waits for it).

use super::session::may_subscribe;
use super::*;

/// TRACK_INFOs remembered per broadcast; past it more are still answered, just not kept.
const MAX_TRACK_INFOS: usize = 256;

impl Node {
    /// The peer's announce request: answer with what this core knows is active, except what
    /// it must not hear ([`advertise`]) or may not subscribe to.
    pub(super) fn serve_announce(
        &mut self,
        peers: &mut dyn Peers,
        peer: PeerId,
        request: RequestId,
        prefix: &str,
        exclude_hop: u64,
    ) {
        let (core, client) = (self.core, self.app.is_some());
        let access = peers.access(peer).cloned().unwrap_or_default();
        let mut active = self
            .active
            .iter()
            .filter(|(p, o)| advertise(core, client, peer, o) && access.may_subscribe(p))
            .map(|(p, o)| (p, o.hops.as_slice()));
        peers.announce_start(peer, request, prefix, exclude_hop, &mut active);
    }

    /// A broadcast became active or ended somewhere: tell every announce request that covers it.
    pub(super) fn announced(
        &mut self,
        peers: &mut dyn Peers,
        path_: Arc<str>,
        owner: Option<Owner>,
        active: bool,
    ) {
        let owner = match owner {
            Some(o) if active => {
                let previous = self.active.insert(path_.clone(), o.clone());
                if previous.is_some_and(|old| old.core != o.core || old.peer != o.peer) {
                    // A new publisher took the broadcast over: move this core's tracks to it.
                    let ids: Vec<u64> = self
                        .by_name
                        .get(&path_)
                        .map(|m| m.values().copied().collect())
                        .unwrap_or_default();
                    for id in ids {
                        self.resplice(peers, id);
                    }
                }
                o
            }
            _ => match self.active.remove(&path_) {
                Some(o) => {
                    self.infos.remove(&path_);
                    self.end_lingering(peers, &path_);
                    o
                }
                None => return,
            },
        };
        if self.app.is_some() {
            self.emit(AppEvent::Announced {
                path: path_.to_string(),
                active,
            });
        }
        let client = self.app.is_some();
        for &peer in self.sessions.keys() {
            if advertise(self.core, client, peer, &owner) && may_subscribe(peers, peer, &path_) {
                peers.announce(peer, &path_, &owner.hops, active);
            }
        }
        self.gossip(peers, &path_, active);
    }

    /// The track's source is gone but its broadcast lingers: groups in flight will never
    /// finish (they are aborted), and its subscribers wait for a new source.
    pub(super) fn linger_track(&mut self, peers: &mut dyn Peers, id: u64) {
        self.abort_unfinished(peers, id);
        if let Some(t) = self.tracks.get_mut(&id) {
            t.source = Source::Lingering;
        }
    }

    /// End the broadcasts whose linger is over and that found no new source.
    pub(super) fn expire_lingering(&mut self, peers: &mut dyn Peers) {
        let now = peers.now();
        let (due, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.lingering)
            .into_iter()
            .partition(|(until, _, _)| *until <= now);
        self.lingering = rest;
        for (_, p, id) in due {
            self.registry.expire(&p, id);
        }
        if let Some(next) = self.lingering.iter().map(|(until, _, _)| *until).min() {
            peers.wake_at(next);
        }
    }

    /// The broadcast ended: its tracks still waiting for a source end too.
    fn end_lingering(&mut self, peers: &mut dyn Peers, p: &str) {
        let ids: Vec<u64> = (self.tracks.iter())
            .filter(|(_, t)| *t.path == *p && matches!(t.source, Source::Lingering))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.end_track(peers, id, ErrorCode::DROPPED);
        }
    }

    /// Answer `waiter` with the TRACK_INFO of `(path, name)`: from this core's cache, from a
    /// lite-05 publisher (asked once however many wait), from the owning core, or the reference
    /// defaults when the publisher's version has no TRACK_INFO.
    pub(super) fn want_info(
        &mut self,
        peers: &mut dyn Peers,
        p: Arc<str>,
        name: Arc<str>,
        waiter: InfoWaiter,
    ) {
        if let Some(info) = self.infos.get(&p).and_then(|m| m.get(&name)).copied() {
            self.give_info(peers, &p, &name, waiter, Ok(info));
            return;
        }
        let key = (p.clone(), name.clone());
        if let Some(waiters) = self.info_waits.get_mut(&key) {
            waiters.push(waiter);
            return;
        }
        let owner = self.registry.lookup(&p).or_else(|| self.upstream_owner());
        let Some(owner) = owner else {
            self.give_info(peers, &p, &name, waiter, Err(ErrorCode::UNROUTABLE));
            return;
        };
        self.info_waits.insert(key, vec![waiter]);
        if owner.core != self.core {
            self.registry.send(
                owner.core,
                CoreMsg::TrackInfo {
                    path: p,
                    track: name,
                    from: self.core,
                },
            );
            return;
        }
        let asked = owner.peer.map(|peer| peers.ask_info(peer, &p, &name));
        match asked {
            Some(InfoAsk::Asked) => {}
            Some(InfoAsk::Failed) => self.info_known(peers, p, name, Err(ErrorCode::DROPPED)),
            // The defaults cost nothing to give again, so any name a peer makes up is
            // answered without being remembered.
            Some(InfoAsk::Unsupported) | None => {
                self.info_answer(peers, p, name, Ok(TrackInfo::default()))
            }
        }
    }

    /// The TRACK_INFO of `(path, name)` is known (or cannot be): cache it and answer everyone.
    pub(super) fn info_known(
        &mut self,
        peers: &mut dyn Peers,
        p: Arc<str>,
        name: Arc<str>,
        result: Result<TrackInfo, ErrorCode>,
    ) {
        if let Ok(info) = result
            && self.active.contains_key(&p)
        {
            let known = self.infos.entry(p.clone()).or_default();
            if known.len() < MAX_TRACK_INFOS || known.contains_key(&name) {
                known.insert(name.clone(), info);
            }
        }
        self.info_answer(peers, p, name, result);
    }

    /// Answer everyone waiting for the TRACK_INFO of `(path, name)`.
    fn info_answer(
        &mut self,
        peers: &mut dyn Peers,
        p: Arc<str>,
        name: Arc<str>,
        result: Result<TrackInfo, ErrorCode>,
    ) {
        let waiters = self
            .info_waits
            .remove(&(p.clone(), name.clone()))
            .unwrap_or_default();
        for w in waiters {
            self.give_info(peers, &p, &name, w, result);
        }
    }

    pub(super) fn give_info(
        &mut self,
        peers: &mut dyn Peers,
        p: &Arc<str>,
        name: &Arc<str>,
        waiter: InfoWaiter,
        result: Result<TrackInfo, ErrorCode>,
    ) {
        match waiter {
            InfoWaiter::Stream(peer, id) => peers.answer_info(peer, id, result),
            InfoWaiter::App(id) => self.emit(AppEvent::TrackInfo {
                id,
                result: result.map_err(|c| c.0),
            }),
            InfoWaiter::Core(core) => self.registry.send(
                core,
                CoreMsg::TrackInfoReply {
                    path: p.clone(),
                    track: name.clone(),
                    result: result.map_err(|c| c.0),
                },
            ),
        }
    }
}
