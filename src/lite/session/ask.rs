//! Our requests to the peer and their responses: the announce request every session makes
//! once set up, SUBSCRIBE, TRACK.

use std::sync::Arc;

use super::InfoAsk;
use super::{PeerEnd, PeerEvent, Session, State, Step};
use crate::lite::{
    Announce, AnnounceInit, AnnounceOk, AnnounceRequest, AnnounceStatus, ControlType, DecodeError,
    ErrorCode, MAX_HOPS, Subscribe, SubscribeOptions, SubscribeResponse, Track, TrackInfo, Version,
    decode_framed,
};
use crate::model::path;
use crate::stream::{StreamId, Streams};

impl Session {
    /// Ask the peer which broadcasts under `prefix` (absolute) it publishes, now and as they
    /// change: [`PeerEvent::Announced`] for each. Our origin is the hop it must leave out, so
    /// our own broadcasts do not come back. `None` when the prefix is outside the session's
    /// root or no stream could be opened.
    pub fn announce_interest(&mut self, io: &mut dyn Streams, prefix: &str) -> Option<StreamId> {
        let rel = path::strip_prefix(prefix, &self.root)?.to_string();
        let req = AnnounceRequest {
            prefix: rel,
            exclude_hop: self.cfg.origin,
        };
        let state = State::OurAnnounce {
            buf: Vec::new(),
            started: false,
            hop: 0,
            prefix: prefix.to_owned(),
        };
        self.request(io, ControlType::Announce, &req, state)
    }

    /// Responses to our announce request: the initial set (ANNOUNCE_INIT on lite-01/02,
    /// ANNOUNCE_OK with the peer's hop on lite-05), then ANNOUNCE messages.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn our_announce(
        &mut self,
        mut buf: Vec<u8>,
        mut started: bool,
        mut hop: u64,
        prefix: String,
        end: PeerEnd,
        now_ms: u64,
        events: &mut Vec<PeerEvent>,
    ) -> Result<Step, DecodeError> {
        let version = self.version();
        let max = self.cfg.limits.max_message;
        let mut at = 0;
        loop {
            let rest = &buf[at..];
            if !started && version < Version::Lite03 {
                let Some((init, used)) = decode_framed::<AnnounceInit>(rest, version, max)? else {
                    break;
                };
                at += used;
                started = true;
                for suffix in init.suffixes {
                    if !self.announce_allowed(now_ms) {
                        return Ok(over_announce_rate());
                    }
                    self.learned(&prefix, &suffix, true, Vec::new(), events)?;
                }
            } else if !started && version == Version::Lite05 {
                let Some((ok, used)) = decode_framed::<AnnounceOk>(rest, version, max)? else {
                    break;
                };
                at += used;
                started = true;
                hop = ok.hop;
            } else {
                let Some((a, used)) = decode_framed::<Announce>(rest, version, max)? else {
                    break;
                };
                at += used;
                started = true;
                let mut hops = a.hops;
                if version == Version::Lite05 && hop != 0 {
                    hops.push(hop);
                }
                let active = a.status == AnnounceStatus::Active;
                if !self.announce_allowed(now_ms) {
                    return Ok(over_announce_rate());
                }
                self.learned(&prefix, &a.suffix, active, hops, events)?;
            }
        }
        buf.drain(..at);
        if end != PeerEnd::Open {
            return Ok(Step::Done);
        }
        Ok(Step::Keep(State::OurAnnounce {
            buf,
            started,
            hop,
            prefix,
        }))
    }

    /// One more announce change from the peer at `now_ms`: within its rate, after a burst of
    /// `max_broadcasts`?
    fn announce_allowed(&mut self, now_ms: u64) -> bool {
        self.announce_budget.allow(&self.cfg.limits, now_ms)
    }

    /// The peer announced (or ended) `suffix` under our request for `prefix`. Announcements
    /// that went through us already, or through too many relays, are loops and are ignored.
    fn learned(
        &mut self,
        prefix: &str,
        suffix: &str,
        active: bool,
        hops: Vec<u64>,
        events: &mut Vec<PeerEvent>,
    ) -> Result<(), DecodeError> {
        let limits = self.cfg.limits;
        let abs: Arc<str> = path::join(prefix, suffix, limits.max_path)?.into();
        if active {
            if hops.contains(&self.cfg.origin) || hops.len() >= MAX_HOPS {
                return Ok(());
            }
            if self.published.len() >= limits.max_broadcasts && !self.published.contains(&abs) {
                tracing::debug!(
                    limit = "max_broadcasts",
                    "refusing the peer's announcements"
                );
                return Err(DecodeError::TooLarge);
            }
            self.published.insert(abs.clone());
            events.push(PeerEvent::Announced {
                path: abs,
                active: true,
                hops,
            });
        } else if self.published.remove(&abs) {
            events.push(PeerEvent::Announced {
                path: abs,
                active: false,
                hops,
            });
        }
        Ok(())
    }

    /// Subscribe to `track` of the peer's broadcast `path_` (absolute): our subscribe id, or
    /// `None` when the path is outside the session's root or no stream could be opened.
    pub fn subscribe(&mut self, io: &mut dyn Streams, path_: &str, track: &str) -> Option<u64> {
        let rel = path::strip_prefix(path_, &self.root)?.to_string();
        let up = self.next_up;
        let req = Subscribe {
            id: up,
            broadcast: rel,
            track: track.to_string(),
            options: SubscribeOptions::default(),
        };
        let state = State::OurSubscribe {
            buf: Vec::new(),
            up,
        };
        let id = self.request(io, ControlType::Subscribe, &req, state)?;
        self.next_up += 1;
        self.ups.insert(up, id);
        Some(up)
    }

    /// End our subscription `up`: FIN our half, and stop the peer's.
    pub fn unsubscribe(&mut self, io: &mut dyn Streams, up: u64) {
        if let Some(stream) = self.ups.remove(&up) {
            self.ins.remove(&stream);
            io.write(stream, Vec::new(), true);
            io.stop(stream, ErrorCode::CANCEL.to_stream_code());
        }
    }

    /// Responses to our SUBSCRIBE (read and dropped); its end ends the subscription.
    pub(super) fn our_subscribe(
        &mut self,
        mut buf: Vec<u8>,
        up: u64,
        end: PeerEnd,
        events: &mut Vec<PeerEvent>,
    ) -> Result<Step, DecodeError> {
        let version = self.version();
        let max = self.cfg.limits.max_message;
        let mut at = 0;
        while let Some((_, used)) = decode_framed::<SubscribeResponse>(&buf[at..], version, max)? {
            at += used;
        }
        buf.drain(..at);
        if end != PeerEnd::Open {
            if self.ups.remove(&up).is_some() {
                // A reset says why (unauthorized, unroutable, ...) unless its code is not ours.
                let code = match end {
                    PeerEnd::Fin => ErrorCode::CANCEL,
                    PeerEnd::Reset(code) if code != ErrorCode::CANCEL => code,
                    _ => ErrorCode::DROPPED,
                };
                events.push(PeerEvent::UpstreamEnded { up, code });
            }
            return Ok(Step::Done);
        }
        Ok(Step::Keep(State::OurSubscribe { buf, up }))
    }

    /// Ask the peer for the TRACK_INFO of `track` of its broadcast `path_` (absolute).
    pub fn ask_info(
        &mut self,
        io: &mut dyn Streams,
        path_: &Arc<str>,
        track: &Arc<str>,
    ) -> InfoAsk {
        if self.version() < Version::Lite05 {
            return InfoAsk::Unsupported;
        }
        let Some(rel) = path::strip_prefix(path_, &self.root) else {
            return InfoAsk::Unsupported;
        };
        let req = Track {
            broadcast: rel.to_string(),
            track: track.to_string(),
        };
        let state = State::OurTrack {
            buf: Vec::new(),
            path: path_.clone(),
            track: track.clone(),
        };
        match self.request(io, ControlType::Track, &req, state) {
            Some(_) => InfoAsk::Asked,
            None => InfoAsk::Failed,
        }
    }

    /// The answer to our TRACK request: TRACK_INFO, or a reset (or FIN) without one.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn our_track(
        &mut self,
        io: &mut dyn Streams,
        id: StreamId,
        buf: Vec<u8>,
        path: Arc<str>,
        track: Arc<str>,
        end: PeerEnd,
        events: &mut Vec<PeerEvent>,
    ) -> Result<Step, DecodeError> {
        let max = self.cfg.limits.max_message;
        if let Some((info, _)) = decode_framed::<TrackInfo>(&buf, self.version(), max)? {
            io.write(id, Vec::new(), true);
            events.push(PeerEvent::Info {
                path,
                track,
                result: Ok(info),
            });
            return Ok(Step::Keep(State::Discard));
        }
        if end != PeerEnd::Open {
            let code = match end {
                PeerEnd::Reset(code) => code,
                _ => ErrorCode::NOT_FOUND,
            };
            events.push(PeerEvent::Info {
                path,
                track,
                result: Err(code),
            });
            return Ok(Step::Done);
        }
        Ok(Step::Keep(State::OurTrack { buf, path, track }))
    }
}

/// The peer changes its announcements faster than `max_announce_rate`: the session goes.
fn over_announce_rate() -> Step {
    tracing::debug!(limit = "max_announce_rate", "closing session");
    Step::Close(ErrorCode::BOUNDS_EXCEEDED, "announce rate")
}
