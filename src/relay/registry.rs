//! The one piece of state all cores share: which core and session publish each broadcast.
//! Touched only by control events (announce, unannounce, subscribe lookups), never per frame.
//! Changes are pushed to every core as messages so each keeps its own announce view.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_channel::Sender;

use super::routes::Sources;
use crate::model::{Frame, PeerId, TrackInfo, path};

/// Who publishes a broadcast: a session on some core, or the local application of a core.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub core: usize,
    /// The session on that core; `None`: the application on that core (a client publishing).
    pub peer: Option<PeerId>,
    /// The hop chain of origin ids the announcement came through, for loop avoidance.
    pub hops: Vec<u64>,
}

/// A message from one core to another. Each core's inbox is FIFO per sender, which keeps a
/// track's frames in order.
pub enum CoreMsg {
    /// A broadcast became active or ended.
    Announce {
        path: Arc<str>,
        hops: Vec<u64>,
        /// Who publishes it, so that it is never announced back to where it came from.
        owner: Option<(usize, Option<PeerId>)>,
        active: bool,
    },
    /// Core `from` wants `track` of `path` for its replica `replica`.
    Subscribe {
        path: Arc<str>,
        track: Arc<str>,
        from: usize,
        replica: u64,
    },
    /// Core `from` no longer wants anything for its replica `replica`.
    Unsubscribe { from: usize, replica: u64 },
    /// A frame appended to group `seq`, sent once per core that has subscribers.
    Frame {
        replica: u64,
        seq: u64,
        frame: Arc<Frame>,
    },
    /// Group `seq` has all its frames.
    GroupDone { replica: u64, seq: u64 },
    /// Group `seq` will never finish: reset its subscribers' streams with `code`.
    GroupAbort { replica: u64, seq: u64, code: u32 },
    /// An HTTP fetch for the publishing core: the newest complete group's frame payloads.
    Fetch {
        path: Arc<str>,
        track: Arc<str>,
        reply: Box<dyn FetchReply>,
    },
    /// The track ended; `code` 0 is a clean end.
    TrackEnd { replica: u64, code: u32 },
    /// Core `from` wants the TRACK_INFO of `track` of `path`, which this core publishes.
    TrackInfo {
        path: Arc<str>,
        track: Arc<str>,
        from: usize,
    },
    /// The answer to [`CoreMsg::TrackInfo`]: the info, or the error code to reset with.
    TrackInfoReply {
        path: Arc<str>,
        track: Arc<str>,
        result: Result<TrackInfo, u32>,
    },
    /// Count what the core holds ([`Registry::census`]).
    Census { reply: Sender<Census> },
}

/// Where a fetched group goes: a reply from outside the cores (the HTTP plane), answered at
/// most once, and dropped unanswered once nobody waits for it, so that a fetch whose client
/// gave up holds no track and no upstream subscription.
pub trait FetchReply: Send {
    /// The group's payload, as the chunks it arrived in.
    fn send(self: Box<Self>, frames: Vec<bytes::Bytes>);

    /// The asker has given up: its deadline passed or its client left.
    fn abandoned(&self) -> bool;
}

/// What one core holds, table by table: a session that ended must leave nothing behind but
/// the broadcasts and tracks others still use.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Census {
    pub core: usize,
    pub sessions: usize,
    /// Streams with read state or bytes queued, over all sessions.
    pub streams: usize,
    /// Peers' subscriptions to tracks of ours.
    pub subscriptions: usize,
    /// Our subscriptions to peers' tracks.
    pub upstream_subscriptions: usize,
    /// Peers' announce requests being answered.
    pub announce_requests: usize,
    pub tracks: usize,
    /// Track names indexed by broadcast path.
    pub names: usize,
    /// This core's tracks that feed replicas on other cores.
    pub replicas: usize,
    pub app_subscriptions: usize,
    /// Active broadcasts in this core's announce view.
    pub broadcasts: usize,
    pub track_infos: usize,
    pub info_waits: usize,
    pub fetches: usize,
}

impl Census {
    /// Nothing of any session remains (the application's own entries aside).
    pub fn is_empty(&self) -> bool {
        *self
            == Census {
                core: self.core,
                ..Census::default()
            }
    }
}

/// A core's inbox, and how to wake the core once something is in it (its doorbell, which
/// coalesces rings, so calling it per message is cheap).
pub struct Link {
    pub tx: Sender<CoreMsg>,
    pub wake: Arc<dyn Fn() + Send + Sync>,
}

/// Counters of one core's data path. Only that core writes them, each in a cache line of its
/// own, so nothing shared is bumped per frame; readers sum them with [`Registry::stats`].
#[derive(Default, Debug)]
#[repr(align(128))]
pub struct CoreCounters {
    cross_core_frames: AtomicU64,
    cross_core_lost: AtomicU64,
    groups_reset: AtomicU64,
    frames_delivered: AtomicU64,
}

/// Single writer: a plain load and store, no locked read-modify-write.
fn bump(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Relaxed);
}

impl CoreCounters {
    /// Frames handed to another core (one per frame per core with subscribers).
    pub fn cross_core_frame(&self) {
        bump(&self.cross_core_frames, 1);
    }

    /// A group a replica lost because its core's inbox was full.
    pub fn cross_core_lost(&self) {
        bump(&self.cross_core_lost, 1);
    }

    /// A group stream reset because its subscriber fell more than the bound behind.
    pub fn group_reset(&self) {
        bump(&self.groups_reset, 1);
    }

    /// Frames written to downstream subscriptions.
    pub fn frames_delivered(&self, n: u64) {
        bump(&self.frames_delivered, n);
    }
}

/// The relay's data-path counters, summed over cores.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Frames handed to another core (one per frame per core with subscribers).
    pub cross_core_frames: u64,
    /// Groups a replica on another core lost because that core's inbox was full.
    pub cross_core_lost: u64,
    /// Group streams reset because a subscriber fell more than the bound behind.
    pub groups_reset: u64,
    /// Frames written to downstream subscriptions.
    pub frames_delivered: u64,
}

/// Every announced path with its sources, and the attach counter that orders them.
#[derive(Default)]
struct Owners {
    /// Ordered, so that a listing walks one prefix's range a page at a time.
    paths: BTreeMap<Arc<str>, Sources>,
    next: u64,
}

/// Shared by every core of one process.
pub struct Registry {
    /// One per core, indexed by core.
    pub counters: Vec<CoreCounters>,
    owners: Mutex<Owners>,
    links: Vec<Link>,
    /// Messages an inbox may hold before [`Registry::send_data`] refuses more.
    max_inbox: usize,
    /// This node's origin (hop) id, non-zero and below 2^53 as the reference advises.
    pub origin: u64,
}

impl Registry {
    pub fn new(links: Vec<Link>, origin: u64, max_inbox: usize) -> Self {
        Self {
            max_inbox,
            counters: links.iter().map(|_| CoreCounters::default()).collect(),
            owners: Mutex::new(Owners::default()),
            links,
            origin,
        }
    }

    /// The data-path counters of every core, summed.
    pub fn stats(&self) -> RelayStats {
        let sum = |f: fn(&CoreCounters) -> &AtomicU64| {
            self.counters
                .iter()
                .map(|c| f(c).load(Ordering::Relaxed))
                .sum()
        };
        RelayStats {
            cross_core_frames: sum(|c| &c.cross_core_frames),
            cross_core_lost: sum(|c| &c.cross_core_lost),
            groups_reset: sum(|c| &c.groups_reset),
            frames_delivered: sum(|c| &c.frames_delivered),
        }
    }

    pub fn cores(&self) -> usize {
        self.links.len()
    }

    /// Ring `core`'s doorbell with nothing new: it has more of its inbox to read.
    pub fn wake(&self, core: usize) {
        (self.links[core].wake)();
    }

    /// Queue a message for `core` and ring its doorbell (coalesced, so cheap per message).
    pub fn send(&self, core: usize, msg: CoreMsg) {
        let link = &self.links[core];
        if link.tx.send(msg).is_ok() {
            (link.wake)();
        }
    }

    /// Queue data (a frame or a group's end) for `core`, unless its inbox already holds
    /// `max_inbox` messages: a stalled core does not pile up every other core's traffic.
    /// `false`: not queued, and the caller gives up the group for that core.
    pub fn send_data(&self, core: usize, msg: CoreMsg) -> bool {
        if self.links[core].tx.len() >= self.max_inbox {
            return false;
        }
        self.send(core, msg);
        true
    }

    fn announce_all(&self, path: &Arc<str>, owner: Option<&Owner>, active: bool) {
        for core in 0..self.links.len() {
            self.send(
                core,
                CoreMsg::Announce {
                    path: path.clone(),
                    hops: owner.map(|o| o.hops.clone()).unwrap_or_default(),
                    owner: owner.map(|o| (o.core, o.peer)),
                    active,
                },
            );
        }
    }

    /// Add `owner` as a source of `path` at the price `cost` (see [`Sources::best`] for which
    /// source serves it). Every core hears when the serving source changes, to move its
    /// tracks to it.
    pub fn publish(&self, path: &str, owner: Owner, cost: u64) {
        let mut owners = self.owners.lock().expect("registry lock");
        let seq = owners.next;
        owners.next += 1;
        let key = match owners.paths.get_key_value(path) {
            Some((k, _)) => k.clone(),
            None => Arc::from(path),
        };
        let sources = owners.paths.entry(key.clone()).or_default();
        let before = sources.best(&key).cloned();
        sources.attach(seq, owner, cost);
        let after = sources.best(&key).cloned();
        drop(owners);
        if after != before {
            self.announce_all(&key, after.as_ref(), true);
        }
    }

    /// Remove `core`/`peer` as a source of `path`: the next best serves it, or, with none
    /// left, it ends.
    pub fn unpublish(&self, path: &str, core: usize, peer: Option<PeerId>) {
        self.detach(path, core, peer, false);
    }

    /// The source of `core`/`peer` was lost without unannouncing (its session died). When it
    /// was the last, the path stays announced with no source, lingering: the linger's id
    /// then, which the caller passes to [`Registry::expire`] once the linger is over.
    pub fn lose(&self, path: &str, core: usize, peer: Option<PeerId>) -> Option<u64> {
        self.detach(path, core, peer, true)
    }

    /// End a path whose linger `linger` is over, if it is still that linger (no source came
    /// meanwhile, and none that came has gone since).
    pub fn expire(&self, path: &str, linger: u64) {
        let mut owners = self.owners.lock().expect("registry lock");
        let Some((key, sources)) = owners.paths.get_key_value(path) else {
            return;
        };
        if sources.lingering != Some(linger) {
            return;
        }
        let key = key.clone();
        owners.paths.remove(&key);
        drop(owners);
        self.announce_all(&key, None, false);
    }

    fn detach(&self, path: &str, core: usize, peer: Option<PeerId>, linger: bool) -> Option<u64> {
        let mut owners = self.owners.lock().expect("registry lock");
        let (key, _) = owners.paths.get_key_value(path)?;
        let key = key.clone();
        let episode = owners.next;
        owners.next += 1;
        let sources = owners.paths.get_mut(&key).expect("just found");
        let before = sources.best(&key).cloned();
        if !sources.detach(core, peer) {
            return None;
        }
        let after = sources.best(&key).cloned();
        let lingering = (sources.is_empty() && linger).then_some(episode);
        sources.lingering = lingering;
        if sources.is_empty() && !linger {
            owners.paths.remove(&key);
        }
        drop(owners);
        if after != before && lingering.is_none() {
            self.announce_all(&key, after.as_ref(), after.is_some());
        }
        lingering
    }

    pub fn lookup(&self, path: &str) -> Option<Owner> {
        let owners = self.owners.lock().expect("registry lock");
        owners.paths.get(path)?.best(path).cloned()
    }

    /// Ask the core that publishes `path` for the newest complete group of `track`, or the
    /// next one to complete; `reply` is dropped unanswered when there is no such broadcast.
    /// Never blocks: the caller waits on its reply, with its own deadline.
    pub fn fetch(&self, path: &str, track: &str, reply: Box<dyn FetchReply>) {
        let Some(owner) = self.lookup(path) else {
            return;
        };
        self.send(
            owner.core,
            CoreMsg::Fetch {
                path: path.into(),
                track: track.into(),
                reply,
            },
        );
    }

    /// What every core holds now, asked of each in turn; a core that does not answer within
    /// `timeout` is left out. Blocking: for threads outside the cores.
    pub fn census(&self, timeout: std::time::Duration) -> Vec<Census> {
        (0..self.links.len())
            .filter_map(|core| {
                let (tx, rx) = crossbeam_channel::bounded(1);
                self.send(core, CoreMsg::Census { reply: tx });
                rx.recv_timeout(timeout).ok()
            })
            .collect()
    }

    /// One page of the active broadcasts under `prefix` (matched on `/` boundaries), in order,
    /// after the path `after`: at most `page` paths are looked at under the lock the cores
    /// take, so a listing of any size stalls no core for longer than one page. The second
    /// value is where the next page starts, `None` when this was the last.
    pub fn paths_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        page: usize,
    ) -> (Vec<Arc<str>>, Option<Arc<str>>) {
        let start = match after {
            Some(a) => Bound::Excluded(a),
            None => Bound::Included(prefix),
        };
        let owners = self.owners.lock().expect("registry lock");
        let mut out = Vec::new();
        let mut keys = owners
            .paths
            .range::<str, _>((start, Bound::Unbounded))
            .map(|(k, _)| k)
            .take_while(|k| k.starts_with(prefix));
        let mut last = None;
        for key in keys.by_ref().take(page.max(1)) {
            last = Some(key);
            if path::strip_prefix(key, prefix).is_some() {
                out.push(key.clone());
            }
        }
        // More to come: resume after the last path looked at, kept or not.
        if keys.next().is_some() {
            return (out, last.cloned());
        }
        (out, None)
    }

    /// Every announced broadcast, lingering ones too.
    pub fn paths(&self) -> Vec<Arc<str>> {
        let owners = self.owners.lock().expect("registry lock");
        owners.paths.keys().cloned().collect()
    }

    /// Every active broadcast with its owner (for a core that starts late).
    pub fn snapshot(&self) -> Vec<(Arc<str>, Owner)> {
        let owners = self.owners.lock().expect("registry lock");
        (owners.paths.iter())
            .filter_map(|(k, s)| Some((k.clone(), s.best(k)?.clone())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(paths: &[&str]) -> Registry {
        let (tx, _rx) = crossbeam_channel::unbounded();
        let r = Registry::new(
            vec![Link {
                tx,
                wake: Arc::new(|| {}),
            }],
            1,
            8,
        );
        for p in paths {
            let owner = Owner {
                core: 0,
                peer: None,
                hops: vec![],
            };
            r.publish(p, owner, 0);
        }
        r
    }

    /// All pages together are the listing, on `/` boundaries, whatever the page size; no
    /// page looks at more than its size.
    #[test]
    fn paths_are_listed_a_page_at_a_time() {
        let r = registry(&[
            "room", "room-x", "room/a", "room/b/c", "room0", "roomz/a", "other", "ro",
        ]);
        let list = |prefix: &str, page: usize| {
            let (mut all, mut after, mut pages) = (Vec::new(), None::<Arc<str>>, 0);
            loop {
                let (got, next) = r.paths_page(prefix, after.as_deref(), page);
                assert!(got.len() <= page);
                all.extend(got.iter().map(|p| p.to_string()));
                pages += 1;
                match next {
                    Some(n) => after = Some(n),
                    None => return (all, pages),
                }
            }
        };
        for page in [1, 2, 3, 100] {
            let (all, _) = list("room", page);
            assert_eq!(all, ["room", "room/a", "room/b/c"], "page {page}");
            let (all, pages) = list("", page);
            assert_eq!(all.len(), 8);
            assert_eq!(pages, 8usize.div_ceil(page));
            assert_eq!(list("room/b", page).0, ["room/b/c"]);
            assert!(list("nothing", page).0.is_empty());
        }
    }

    /// A lost last source leaves the path lingering; only the end of the newest linger ends
    /// it, and a new source ends the linger.
    #[test]
    fn lingers_end_only_with_the_newest_linger() {
        let r = registry(&[]);
        let src = |peer| Owner {
            core: 0,
            peer: Some(PeerId(peer)),
            hops: vec![9],
        };
        r.publish("p", src(1), 0);
        let first = r.lose("p", 0, Some(PeerId(1))).expect("lingers");
        assert_eq!(r.paths().len(), 1);
        assert!(r.lookup("p").is_none());
        r.publish("p", src(2), 0);
        assert_eq!(r.lookup("p").unwrap().peer, Some(PeerId(2)));
        let second = r.lose("p", 0, Some(PeerId(2))).expect("lingers again");
        r.expire("p", first);
        assert_eq!(r.paths().len(), 1, "an older linger ends nothing");
        r.expire("p", second);
        assert!(r.paths().is_empty());
        // A clean end does not linger.
        r.publish("q", src(3), 0);
        r.unpublish("q", 0, Some(PeerId(3)));
        assert!(r.paths().is_empty());
    }
}
