//! The publishers' side: tracks written on a timer (or in manual bursts), each frame stamped
//! with its publish time and sequence, and delivered through the machine to every
//! subscription the relay holds on the track.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::Worker;
use crate::payload::Stamp;
use crate::plan::{ConnPlan, Pacing};
use moq_relay::model::{ErrorCode, Frame, Group, PeerId, Peers, RequestId};

/// A track this core publishes.
pub(super) struct PubTrack {
    peer: PeerId,
    broadcast: usize,
    track: usize,
    pub(super) live: bool,
    next_seq: u64,
    pub(super) next_due: Instant,
    /// The latest group, for subscriptions that join mid-group.
    group: Option<Group>,
    /// The relay's subscriptions (on `conn`) to this track, by subscribe id.
    serving: Vec<u64>,
}

impl Worker {
    fn frame_interval(&self) -> Duration {
        Duration::from_secs_f64(self.plan.scenario.burst as f64 / self.plan.scenario.fps)
    }

    /// The session of `broadcast`'s publisher is up: its tracks start.
    pub(super) fn start_tracks(&mut self, peers: &mut dyn Peers, peer: PeerId, broadcast: usize) {
        let interval = self.frame_interval();
        for track in 0..self.plan.scenario.tracks {
            // Spread tracks over the frame interval so they do not all fire at once.
            let global = broadcast * self.plan.scenario.tracks + track;
            let offset = interval.mul_f64((global as f64 * 0.618_034).fract());
            self.pubs.push(PubTrack {
                peer,
                broadcast,
                track,
                live: true,
                next_seq: 0,
                next_due: self.plan.publish_at.max(peers.now()) + offset,
                group: None,
                serving: Vec::new(),
            });
        }
        self.schedule(peers);
    }

    /// The relay asks what we publish under `prefix`: our broadcast, if this connection
    /// publishes one (the machine leaves it out when it is not under the prefix).
    pub(super) fn announce_ours(
        &mut self,
        peers: &mut dyn Peers,
        peer: PeerId,
        request: RequestId,
        prefix: &str,
        exclude_hop: u64,
    ) {
        let Some(c) = self.conns.get(&peer) else {
            return;
        };
        let ours: Option<Arc<str>> = match self.plan.conns[c.plan_index] {
            ConnPlan::Publisher { broadcast } => {
                Some(self.plan.broadcasts[broadcast].as_str().into())
            }
            ConnPlan::Subscriber { .. } => None,
        };
        let mut active = ours.iter().map(|p| (p, &[][..]));
        peers.announce_start(peer, request, prefix, exclude_hop, &mut active);
    }

    /// The relay subscribes to `track` of `path`: served if it is one of this connection's
    /// live tracks, from the start of its current group.
    pub(super) fn serve(
        &mut self,
        peers: &mut dyn Peers,
        peer: PeerId,
        id: u64,
        path: &str,
        track: &str,
    ) {
        let plan = &self.plan;
        let found = self.pubs.iter().position(|p| {
            p.peer == peer
                && p.live
                && plan.broadcasts[p.broadcast] == path
                && plan.track_names[p.track] == track
        });
        let Some(p) = found else {
            peers.refuse_subscribe(peer, id, ErrorCode::NOT_FOUND);
            return;
        };
        if !peers.accept_subscribe(peer, id) {
            return;
        }
        if let Some(c) = self.conns.get_mut(&peer) {
            c.serving.insert(id, p);
        }
        self.pubs[p].serving.push(id);
        self.deliver(peers, p, Some(id));
    }

    /// The relay's subscription `id` is over.
    pub(super) fn unserve(&mut self, peer: PeerId, id: u64) {
        if let Some(p) = self
            .conns
            .get_mut(&peer)
            .and_then(|c| c.serving.remove(&id))
        {
            self.pubs[p].serving.retain(|&s| s != id);
        }
    }

    /// The publishing session of `peer` is gone: its tracks are final.
    pub(super) fn publisher_lost(&mut self, peer: PeerId) {
        for p in self.pubs.iter_mut().filter(|p| p.peer == peer) {
            p.live = false;
            p.serving.clear();
            self.plan
                .track(p.broadcast, p.track)
                .done
                .store(true, Ordering::Release);
        }
    }

    /// Bring the subscriptions to track `p` (or just `only`) up to date with its current group.
    fn deliver(&mut self, peers: &mut dyn Peers, p: usize, only: Option<u64>) {
        let t = &self.pubs[p];
        let Some(group) = &t.group else { return };
        for &sub in t.serving.iter().filter(|&&s| only.is_none_or(|o| o == s)) {
            self.publisher_groups_dropped += peers.deliver(t.peer, sub, group).resets;
        }
    }

    /// Write the next frame of published track `p`.
    pub(super) fn emit(&mut self, peers: &mut dyn Peers, p: usize) {
        let fpg = self.plan.scenario.frames_per_group;
        let now_us = self.plan.clock.us(peers.now());
        let filler = self.plan.filler.clone();
        let t = &mut self.pubs[p];
        if !t.live {
            return;
        }
        let seq = t.next_seq;
        let group_seq = seq / fpg;
        let group = match &mut t.group {
            Some(g) if !seq.is_multiple_of(fpg) => g,
            slot => slot.insert(Group {
                seq: group_seq,
                frames: Vec::new(),
                done: false,
                done_at: None,
            }),
        };
        let stamp = Stamp {
            sent_us: now_us,
            seq,
        }
        .encode();
        // The stamp and the shared filler as two chunks: publishing copies no payload.
        group.frames.push(Arc::new(Frame {
            timestamp: now_us / 1000,
            chunks: vec![stamp, filler],
        }));
        if seq % fpg == fpg - 1 {
            group.finish(peers.now());
        }
        t.next_seq += 1;
        self.plan.track(t.broadcast, t.track).wrote(seq, group_seq);
        let stats = &self.plan.stats[self.core];
        stats.frames_published.fetch_add(1, Ordering::Relaxed);
        stats
            .bytes_published
            .fetch_add(self.plan.scenario.frame_size as u64, Ordering::Relaxed);
        self.deliver(peers, p, None);
    }

    /// Publishing is over: finish every open group and tell subscribers the totals are final.
    pub(super) fn stop_publishing(&mut self, peers: &mut dyn Peers) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        for p in 0..self.pubs.len() {
            let t = &mut self.pubs[p];
            if let Some(group) = t.group.as_mut().filter(|g| !g.done)
                && t.live
            {
                group.finish(peers.now());
                self.deliver(peers, p, None);
            }
        }
        // Every track this core was to publish is final now, even one whose session never
        // came up.
        let plan = &self.plan;
        for index in (0..plan.conns.len()).filter(|i| i % plan.threads == self.core) {
            if let ConnPlan::Publisher { broadcast } = plan.conns[index] {
                for track in 0..plan.scenario.tracks {
                    plan.track(broadcast, track)
                        .done
                        .store(true, Ordering::Release);
                }
            }
        }
        self.next_drain_check = Some(peers.now());
    }

    pub(super) fn publish_due(&mut self, peers: &mut dyn Peers) {
        if self.plan.pacing != Pacing::Timed || self.stopped {
            return;
        }
        if peers.now() >= self.plan.stop_at {
            self.stop_publishing(peers);
            return;
        }
        let interval = self.frame_interval();
        let burst = self.plan.scenario.burst;
        for p in 0..self.pubs.len() {
            while self.pubs[p].live
                && self.pubs[p].next_due <= peers.now()
                && self.pubs[p].next_due < self.plan.stop_at
            {
                for _ in 0..burst {
                    self.emit(peers, p);
                }
                self.pubs[p].next_due += interval;
            }
        }
    }
}
