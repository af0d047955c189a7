//! The one piece of state all cores share: which core and session publish each broadcast.
//! Touched only by control events (announce, unannounce, subscribe lookups), never per frame.
//! Changes are pushed to every core as messages so each keeps its own announce view.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_channel::Sender;

use super::model::Frame;
use crate::lite::TrackInfo;
use crate::net::Doorbell;
use crate::quic::ConnectionHandle;

/// Who publishes a broadcast: a session on some core, or the local application of a core.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub core: usize,
    /// `None`: the application on that core (a client node publishing).
    pub conn: Option<ConnectionHandle>,
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
        owner: Option<(usize, Option<ConnectionHandle>)>,
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
        reply: Sender<Vec<bytes::Bytes>>,
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

pub struct Link {
    pub tx: Sender<CoreMsg>,
    pub doorbell: Arc<Doorbell>,
}

/// Counters of the relay's data path, summed over cores.
#[derive(Default, Debug)]
pub struct RelayStats {
    /// Frames handed to another core (one per frame per core with subscribers).
    pub cross_core_frames: AtomicU64,
    /// Group streams reset because a subscriber fell more than the bound behind.
    pub groups_reset: AtomicU64,
    /// Frames written to downstream subscriptions.
    pub frames_delivered: AtomicU64,
}

/// Shared by every core of one process.
pub struct Registry {
    pub stats: RelayStats,
    owners: Mutex<HashMap<Arc<str>, Owner>>,
    links: Vec<Link>,
    /// This node's origin (hop) id, non-zero and below 2^53 as the reference advises.
    pub origin: u64,
}

impl Registry {
    pub fn new(links: Vec<Link>, origin: u64) -> Self {
        Self {
            stats: RelayStats::default(),
            owners: Mutex::new(HashMap::new()),
            links,
            origin,
        }
    }

    pub fn cores(&self) -> usize {
        self.links.len()
    }

    /// Queue a message for `core` and ring its doorbell (coalesced, so cheap per message).
    pub fn send(&self, core: usize, msg: CoreMsg) {
        if let CoreMsg::Frame { .. } = msg {
            self.stats.cross_core_frames.fetch_add(1, Ordering::Relaxed);
        }
        let link = &self.links[core];
        if link.tx.send(msg).is_ok() {
            link.doorbell.ring();
        }
    }

    fn announce_all(&self, path: &Arc<str>, owner: Option<&Owner>, active: bool) {
        for core in 0..self.links.len() {
            self.send(
                core,
                CoreMsg::Announce {
                    path: path.clone(),
                    hops: owner.map(|o| o.hops.clone()).unwrap_or_default(),
                    owner: owner.map(|o| (o.core, o.conn)),
                    active,
                },
            );
        }
    }

    /// Record `owner` as the publisher of `path`; a newer publisher takes over an older one,
    /// except that a broadcast the local application publishes stays its own.
    pub fn publish(&self, path: &str, owner: Owner) {
        let path: Arc<str> = path.into();
        let mut owners = self.owners.lock().expect("registry lock");
        let changed = match owners.get(&path) {
            Some(old) if old.conn.is_none() && owner.conn.is_some() => return,
            Some(old) => old.core != owner.core || old.conn != owner.conn || old.hops != owner.hops,
            None => true,
        };
        owners.insert(path.clone(), owner.clone());
        drop(owners);
        // Every core learns of a takeover too, to move its tracks to the new publisher.
        if changed {
            self.announce_all(&path, Some(&owner), true);
        }
    }

    /// Remove `path` if `core`/`conn` still owns it.
    pub fn unpublish(&self, path: &str, core: usize, conn: Option<ConnectionHandle>) {
        let mut owners = self.owners.lock().expect("registry lock");
        let Some((key, owner)) = owners.get_key_value(path) else {
            return;
        };
        if owner.core != core || owner.conn != conn {
            return;
        }
        let key = key.clone();
        owners.remove(&key);
        drop(owners);
        self.announce_all(&key, None, false);
    }

    pub fn lookup(&self, path: &str) -> Option<Owner> {
        self.owners
            .lock()
            .expect("registry lock")
            .get(path)
            .cloned()
    }

    /// The newest complete group of `track` of `path`, from the core that publishes it,
    /// waiting up to `timeout` for one. Blocking: for threads outside the cores.
    pub fn fetch_latest(
        &self,
        path: &str,
        track: &str,
        timeout: std::time::Duration,
    ) -> Option<Vec<bytes::Bytes>> {
        let owner = self.lookup(path)?;
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.send(
            owner.core,
            CoreMsg::Fetch {
                path: path.into(),
                track: track.into(),
                reply: tx,
            },
        );
        rx.recv_timeout(timeout).ok()
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

    /// Every active broadcast with its owner (for a core that starts late).
    pub fn snapshot(&self) -> Vec<(Arc<str>, Owner)> {
        self.owners
            .lock()
            .expect("registry lock")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}
