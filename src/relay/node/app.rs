//! The local application of a client node: what it asks (`AppCmd`) and hears (`AppEvent`).

use super::*;

/// What a client application asks its node to do.
pub enum AppCmd {
    /// Announce `path` (relative to the connection root) as published here.
    Publish {
        path: String,
    },
    Unpublish {
        path: String,
    },
    /// Append a frame to group `seq` of a track this application publishes.
    Frame {
        path: String,
        track: String,
        seq: u64,
        timestamp: u64,
        payload: Bytes,
    },
    /// Group `seq` has all its frames.
    GroupDone {
        path: String,
        track: String,
        seq: u64,
    },
    /// The track is over.
    TrackDone {
        path: String,
        track: String,
    },
    /// Deliver `track` of `path` as [`AppEvent`]s tagged `id`.
    Subscribe {
        id: u64,
        path: String,
        track: String,
    },
    Unsubscribe {
        id: u64,
    },
    /// Declare the TRACK_INFO of a track this application publishes (else the defaults).
    TrackInfo {
        path: String,
        track: String,
        info: TrackInfo,
    },
    /// Ask for a track's TRACK_INFO; answered with [`AppEvent::TrackInfo`] tagged `id`.
    Info {
        id: u64,
        path: String,
        track: String,
    },
}

/// What a client application hears from its node.
#[derive(Debug)]
pub enum AppEvent {
    /// A session is set up and can carry requests.
    Ready {
        /// The wire version's code.
        version: u64,
    },
    Announced {
        path: String,
        active: bool,
    },
    Frame {
        id: u64,
        seq: u64,
        index: usize,
        timestamp: u64,
        payload: Vec<Bytes>,
    },
    GroupDone {
        id: u64,
        seq: u64,
    },
    /// The subscription is over; `code` 0 is a clean end.
    Ended {
        id: u64,
        code: u32,
    },
    Closed {
        reason: String,
    },
    /// The answer to [`AppCmd::Info`]: the publisher's TRACK_INFO, or the reset code.
    TrackInfo {
        id: u64,
        result: Result<TrackInfo, u32>,
    },
}

/// A client node's application side.
pub struct App {
    pub commands: Receiver<AppCmd>,
    pub events: Sender<AppEvent>,
}

impl Node {
    /// The application stops publishing `p`: its tracks there end cleanly.
    fn app_unpublish(&mut self, peers: &mut dyn Peers, p: &str) {
        let Ok(p) = path::normalize(p, self.limits.session.max_path) else {
            return;
        };
        self.registry.unpublish(&p, self.core, None);
        let ids: Vec<u64> = self
            .tracks
            .iter()
            .filter(|(_, t)| *t.path == *p && matches!(t.source, Source::App))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.end_track(peers, id, ErrorCode::CANCEL);
        }
    }

    pub(super) fn on_app(&mut self, peers: &mut dyn Peers, cmd: AppCmd) {
        match cmd {
            AppCmd::Publish { path: p } => {
                if let Ok(p) = path::normalize(&p, self.limits.session.max_path) {
                    self.registry.publish(
                        &p,
                        Owner {
                            core: self.core,
                            peer: None,
                            hops: Vec::new(),
                        },
                        0,
                    );
                }
            }
            AppCmd::Unpublish { path: p } => self.app_unpublish(peers, &p),
            AppCmd::Frame {
                path: p,
                track,
                seq,
                timestamp,
                payload,
            } => {
                let id = self.app_track(&p, &track);
                self.append(
                    peers,
                    id,
                    seq,
                    Arc::new(Frame::from_bytes(timestamp, payload)),
                );
            }
            AppCmd::GroupDone {
                path: p,
                track,
                seq,
            } => {
                let id = self.app_track(&p, &track);
                self.open_group(peers, id, seq);
                self.group_done(peers, id, seq);
            }
            AppCmd::TrackDone { path: p, track } => {
                let id = self.app_track(&p, &track);
                self.end_track(peers, id, ErrorCode::CANCEL);
            }
            AppCmd::Subscribe { id, path: p, track } => {
                let Some(t) = path::normalize(&p, self.limits.session.max_path)
                    .ok()
                    .and_then(|p| self.resolve(peers, &p, &track))
                else {
                    self.emit(AppEvent::Ended {
                        id,
                        code: ErrorCode::UNROUTABLE.0,
                    });
                    return;
                };
                self.app_subs.insert(
                    id,
                    AppSub {
                        track: t,
                        sent: HashMap::new(),
                    },
                );
                self.attach(peers, t, SubRef::App { id }, None);
            }
            AppCmd::Unsubscribe { id } => {
                if let Some(a) = self.app_subs.remove(&id) {
                    self.detach(peers, a.track, SubRef::App { id });
                }
            }
            AppCmd::TrackInfo {
                path: p,
                track,
                info,
            } => {
                if let Ok(p) = path::normalize(&p, self.limits.session.max_path) {
                    self.infos
                        .entry(p.into())
                        .or_default()
                        .insert(track.into(), info);
                }
            }
            AppCmd::Info { id, path: p, track } => {
                match path::normalize(&p, self.limits.session.max_path) {
                    Ok(p) => self.want_info(peers, p.into(), track.into(), InfoWaiter::App(id)),
                    Err(_) => self.emit(AppEvent::TrackInfo {
                        id,
                        result: Err(ErrorCode::UNROUTABLE.0),
                    }),
                }
            }
        }
    }

    pub(super) fn app_track(&mut self, p: &str, track: &str) -> u64 {
        let p = path::normalize(p, self.limits.session.max_path).unwrap_or_default();
        if let Some(id) = self.track_id(&p, track) {
            return id;
        }
        let id = self.next_track;
        self.next_track += 1;
        self.insert_track(id, &p, track, Source::App);
        id
    }
}
