//! Messages from the other cores.

use super::*;
use fanout::to_replica;

impl Node {
    pub(super) fn on_core_msg(&mut self, peers: &mut dyn Peers, msg: CoreMsg) {
        match msg {
            CoreMsg::Announce {
                path,
                hops,
                owner,
                active,
            } => {
                let owner = owner.map(|(core, peer)| Owner { core, peer, hops });
                self.announced(peers, path, owner, active)
            }
            CoreMsg::Subscribe {
                path,
                track,
                from,
                replica,
            } => self.replica_wanted(peers, &path, &track, from, replica),
            CoreMsg::Unsubscribe { from, replica } => {
                let r = Replica {
                    core: from,
                    id: replica,
                };
                if let Some(id) = self.remote_index.remove(&r)
                    && let Some(t) = self.tracks.get_mut(&id)
                {
                    t.remotes.retain(|x| *x != r);
                    self.maybe_release(peers, id);
                }
            }
            CoreMsg::Frame {
                replica,
                seq,
                frame,
            } => self.append(peers, replica, seq, frame),
            CoreMsg::GroupDone { replica, seq } => self.group_done(peers, replica, seq),
            CoreMsg::GroupAbort { replica, seq, code } => {
                self.group_abort(peers, replica, seq, ErrorCode(code))
            }
            CoreMsg::Fetch { path, track, reply } => self.fetch(peers, &path, &track, reply),
            CoreMsg::TrackEnd { replica, code } => self.end_track(peers, replica, ErrorCode(code)),
            CoreMsg::TrackInfo { path, track, from } => {
                self.want_info(peers, path, track, InfoWaiter::Core(from))
            }
            CoreMsg::TrackInfoReply {
                path,
                track,
                result,
            } => self.info_known(peers, path, track, result.map_err(ErrorCode)),
            CoreMsg::Census { reply } => {
                let _ = reply.send(self.census(peers));
            }
        }
    }

    /// Core `from` wants a replica of `(path, track)`, which this core publishes: feed it from
    /// now on, starting with the latest cached group; else tell it the track is unroutable.
    fn replica_wanted(
        &mut self,
        peers: &mut dyn Peers,
        path: &str,
        track: &str,
        from: usize,
        replica: u64,
    ) {
        let local = self
            .registry
            .lookup(path)
            .is_some_and(|o| o.core == self.core);
        let id = if local {
            self.resolve(peers, path, track)
        } else {
            None
        };
        let Some(id) = id else {
            self.registry.send(
                from,
                CoreMsg::TrackEnd {
                    replica,
                    code: ErrorCode::UNROUTABLE.0,
                },
            );
            return;
        };
        let r = Replica {
            core: from,
            id: replica,
        };
        let Some(t) = self.tracks.get_mut(&id) else {
            return;
        };
        self.remote_index.insert(r, id);
        t.remotes.push(r);
        if let Some(g) = t.cache.latest_group() {
            for frame in &g.frames {
                let msg = CoreMsg::Frame {
                    replica,
                    seq: g.seq,
                    frame: frame.clone(),
                };
                if to_replica(&self.registry, self.core, &mut t.lost, r, g.seq, msg) {
                    self.registry.counters[self.core].cross_core_frame();
                }
            }
            if g.done {
                let msg = CoreMsg::GroupDone {
                    replica,
                    seq: g.seq,
                };
                to_replica(&self.registry, self.core, &mut t.lost, r, g.seq, msg);
            }
        }
    }
}
