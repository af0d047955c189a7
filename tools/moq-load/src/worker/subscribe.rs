//! The viewers' side: subscribe to each watched broadcast's tracks once the relay announces
//! it, and account for every frame that arrives.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{DRAIN_TICK, Worker};
use crate::account::{Account, Received};
use crate::payload::{STAMP_LEN, Stamp};
use crate::plan::ConnPlan;
use moq_relay::model::{ErrorCode, Frame, PeerId, Peers};

/// One subscription of a viewer to one track.
pub(super) struct SubRecord {
    pub(super) broadcast: usize,
    pub(super) track: usize,
    pub(super) account: Account,
    pub(super) ended: bool,
}

/// The stamp at the front of a payload, which may span its chunks.
fn stamp_of(frame: &Frame) -> Option<Stamp> {
    let mut head = [0; STAMP_LEN];
    let mut len = 0;
    for c in &frame.chunks {
        let take = (STAMP_LEN - len).min(c.len());
        head[len..len + take].copy_from_slice(&c[..take]);
        len += take;
        if len == STAMP_LEN {
            break;
        }
    }
    Stamp::decode(&head[..len])
}

impl Worker {
    /// The relay announced `path`: if it is a broadcast this connection watches, its viewers
    /// subscribe (once).
    pub(super) fn announced(&mut self, peers: &mut dyn Peers, peer: PeerId, path: &str) {
        let Some(c) = self.conns.get(&peer) else {
            return;
        };
        let ConnPlan::Subscriber { viewers } = &self.plan.conns[c.plan_index] else {
            return;
        };
        let watched = viewers
            .iter()
            .copied()
            .find(|&b| self.plan.broadcasts[b] == path);
        if let Some(broadcast) = watched {
            self.watch(peers, peer, broadcast);
        }
    }

    /// Broadcast `broadcast` is live: every viewer of it on this connection subscribes to each
    /// of its tracks (asking for the track's info first where the version has TRACK).
    fn watch(&mut self, peers: &mut dyn Peers, peer: PeerId, broadcast: usize) {
        let Some(c) = self.conns.get_mut(&peer) else {
            return;
        };
        if !c.subscribed.insert(broadcast) {
            return;
        }
        let plan = self.plan.clone();
        let ConnPlan::Subscriber { viewers } = &plan.conns[c.plan_index] else {
            return;
        };
        let viewers = viewers.iter().filter(|&&b| b == broadcast).count();
        let path: Arc<str> = plan.broadcasts[broadcast].as_str().into();
        for _ in 0..viewers {
            for track in 0..plan.scenario.tracks {
                let name: Arc<str> = plan.track_names[track].as_str().into();
                peers.ask_info(peer, &path, &name);
                let up = peers.subscribe(peer, &path, &name);
                let index = self.subs.len();
                if let (Some(up), Some(c)) = (up, self.conns.get_mut(&peer)) {
                    c.subs.insert(up, index);
                }
                let account = Account::new(
                    plan.scenario.frames_per_group,
                    plan.track(broadcast, track).latest_group(),
                    plan.clock.us(peers.now()),
                );
                self.subs.push(SubRecord {
                    broadcast,
                    track,
                    account,
                    ended: false,
                });
                self.stats().subscriptions.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A whole frame of group `group` on our subscription `up`.
    pub(super) fn frame(
        &mut self,
        peers: &mut dyn Peers,
        peer: PeerId,
        up: u64,
        group: u64,
        frame: &Frame,
    ) {
        let Some(&sub) = self.conns.get(&peer).and_then(|c| c.subs.get(&up)) else {
            return;
        };
        let now_us = self.plan.clock.us(peers.now());
        let size = frame.size();
        let got = self.subs[sub]
            .account
            .frame(group, size, stamp_of(frame), now_us);
        let stats = &self.plan.stats[self.core];
        match got {
            Received::Live(latency) => {
                self.latency.record(latency);
                stats.max_latency_us.fetch_max(latency, Ordering::Relaxed);
            }
            Received::CatchUp => {}
            Received::Duplicate | Received::Corrupt => return,
        }
        stats.frames_received.fetch_add(1, Ordering::Relaxed);
        stats.bytes_received.fetch_add(size, Ordering::Relaxed);
    }

    /// The relay gave up a group of our subscription `up`.
    pub(super) fn group_reset(&mut self, peer: PeerId, up: u64) {
        let Some(&sub) = self.conns.get(&peer).and_then(|c| c.subs.get(&up)) else {
            return;
        };
        self.subs[sub].account.group_reset();
        self.stats().groups_reset.fetch_add(1, Ordering::Relaxed);
    }

    /// The relay ended our subscription `up`: a failure unless the run is winding down.
    pub(super) fn upstream_ended(&mut self, peer: PeerId, up: u64, code: ErrorCode) {
        let Some(&sub) = self.conns.get(&peer).and_then(|c| c.subs.get(&up)) else {
            return;
        };
        let record = &mut self.subs[sub];
        if !record.ended && !self.stopped && !self.shutting_down {
            self.plan.stats[self.core]
                .subscribe_failures
                .fetch_add(1, Ordering::Relaxed);
            self.plan.note_error(format!(
                "the relay ended subscription to {}/{} ({})",
                self.plan.broadcasts[record.broadcast],
                self.plan.track_names[record.track],
                if code == ErrorCode::CANCEL {
                    "FIN"
                } else {
                    "reset"
                }
            ));
        }
        record.ended = true;
    }

    /// After publishing stopped: count the subscriptions still owed frames.
    pub(super) fn check_drain(&mut self, peers: &mut dyn Peers) {
        let Some(at) = self.next_drain_check else {
            return;
        };
        if peers.now() < at {
            return;
        }
        self.next_drain_check = Some(peers.now() + DRAIN_TICK);
        let plan = &self.plan;
        let all_done = plan.tracks.iter().all(|t| t.done.load(Ordering::Acquire));
        let incomplete = match all_done {
            false => u64::MAX,
            true => self
                .subs
                .iter()
                .filter(|s| {
                    let published = plan
                        .track(s.broadcast, s.track)
                        .published
                        .load(Ordering::Acquire);
                    !s.ended && !s.account.complete(published)
                })
                .count() as u64,
        };
        let stats = &plan.stats[self.core];
        stats.incomplete.store(incomplete, Ordering::Release);
        stats.drain_checked.store(true, Ordering::Release);
    }
}
