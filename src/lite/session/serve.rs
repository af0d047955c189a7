//! The peer's requests: ANNOUNCE interest and the announcements we send under it, SUBSCRIBE
//! and its updates, TRACK, FETCH.

#[cfg(test)]
use std::collections::HashSet;
use std::sync::Arc;

use bytes::BytesMut;

use super::groups::Down;
use super::{AnnounceOut, CONTROL_PRIORITY, PeerEnd, PeerEvent, Session, State, Step, short};
use crate::lite::{
    Announce, AnnounceInit, AnnounceOk, AnnounceRequest, AnnounceStatus, DecodeError, EncodeError,
    ErrorCode, Fetch, GroupWriter, Message, Subscribe, SubscribeOptions, SubscribeResponse,
    SubscribeUpdate, Track, TrackInfo, Version, decode_framed,
};
use crate::model::{Frame, path};
use crate::stream::Flight;
use crate::stream::{StreamId, Streams};

impl Session {
    pub(super) fn announce_request(
        &mut self,
        id: StreamId,
        buf: Vec<u8>,
        end: PeerEnd,
        events: &mut Vec<PeerEvent>,
    ) -> Result<Step, DecodeError> {
        let limits = self.cfg.limits;
        let Some((req, _)) =
            decode_framed::<AnnounceRequest>(&buf, self.version(), limits.max_message)?
        else {
            return short(end, State::AnnounceRequest { buf });
        };
        if self.announce_outs.len() >= limits.max_announces {
            return Err(DecodeError::TooLarge);
        }
        let prefix = path::join(&self.root, &req.prefix, limits.max_path)?;
        events.push(PeerEvent::AnnounceInterest {
            request: id.into(),
            prefix,
            exclude_hop: req.exclude_hop,
        });
        Ok(Step::Keep(State::Discard))
    }

    /// Answer announce request `request` with the broadcasts active now, as `(path, hops)`;
    /// those outside its prefix or looping through its excluded hop are left out. Later
    /// changes go out through [`Self::announce`].
    pub fn announce_start<'a>(
        &mut self,
        io: &mut dyn Streams,
        request: StreamId,
        prefix: &str,
        exclude_hop: u64,
        active: impl IntoIterator<Item = (&'a Arc<str>, &'a [u64])>,
    ) {
        let version = self.version();
        let origin = self.cfg.origin;
        let matches: Vec<(&Arc<str>, &[u64])> = active
            .into_iter()
            .filter(|(p, hops)| {
                path::has_prefix(p, prefix) && !(exclude_hop != 0 && hops.contains(&exclude_hop))
            })
            .collect();
        let mut buf = BytesMut::new();
        let res = (|| {
            match version {
                Version::Lite01 | Version::Lite02 => AnnounceInit {
                    suffixes: matches.iter().map(|(p, _)| suffix_of(p, prefix)).collect(),
                }
                .encode(version, &mut buf)?,
                Version::Lite05 => AnnounceOk {
                    hop: origin,
                    active_count: matches.len() as u64,
                }
                .encode(version, &mut buf)?,
                _ => {}
            }
            if version >= Version::Lite03 {
                for (p, hops) in &matches {
                    announce_msg(version, origin, prefix, p, hops, true)
                        .encode(version, &mut buf)?;
                }
            }
            Ok::<_, EncodeError>(())
        })();
        if res.is_err() {
            self.refuse(io, request, ErrorCode::ENCODE);
            return;
        }
        self.announce_outs.push(AnnounceOut {
            stream: request,
            prefix: prefix.to_owned(),
            exclude: exclude_hop,
            active: matches.into_iter().map(|(p, _)| p.clone()).collect(),
        });
        io.set_priority(request, CONTROL_PRIORITY);
        io.write(request, vec![buf.freeze()], false);
    }

    /// A broadcast became active (with `hops`) or ended: tell each of the peer's announce
    /// requests that covers it, once per change.
    pub fn announce(&mut self, io: &mut dyn Streams, path_: &Arc<str>, hops: &[u64], active: bool) {
        let version = self.version();
        let origin = self.cfg.origin;
        for out in &mut self.announce_outs {
            if !path::has_prefix(path_, &out.prefix) {
                continue;
            }
            if active {
                if (out.exclude != 0 && hops.contains(&out.exclude))
                    || !out.active.insert(path_.clone())
                {
                    continue;
                }
            } else if !out.active.remove(path_) {
                continue;
            }
            let mut buf = BytesMut::new();
            if announce_msg(version, origin, &out.prefix, path_, hops, active)
                .encode(version, &mut buf)
                .is_ok()
            {
                io.write(out.stream, vec![buf.freeze()], false);
            }
        }
    }

    /// A SUBSCRIBE stream: the request, then its updates; its end ends the subscription.
    pub(super) fn subscribe_stream(
        &mut self,
        io: &mut dyn Streams,
        id: StreamId,
        mut buf: Vec<u8>,
        mut sub: Option<u64>,
        end: PeerEnd,
        events: &mut Vec<PeerEvent>,
    ) -> Result<Step, DecodeError> {
        let version = self.version();
        let limits = self.cfg.limits;
        let mut used_total = 0;
        loop {
            let rest = &buf[used_total..];
            match sub {
                None => {
                    let Some((req, used)) =
                        decode_framed::<Subscribe>(rest, version, limits.max_message)?
                    else {
                        break;
                    };
                    used_total += used;
                    if self.downs.contains_key(&req.id) {
                        return Ok(Step::Refuse(ErrorCode::DUPLICATE));
                    }
                    if self.downs.len() >= limits.max_subscriptions {
                        return Ok(Step::Refuse(ErrorCode::BOUNDS_EXCEEDED));
                    }
                    let abs = path::join(&self.root, &req.broadcast, limits.max_path)?;
                    tracing::debug!(broadcast = %abs, track = %req.track, id = req.id, "subscribe");
                    self.downs.insert(
                        req.id,
                        Down {
                            stream: id,
                            priority: req.options.priority,
                            accepted: false,
                            started: false,
                            flight: Flight::default(),
                        },
                    );
                    sub = Some(req.id);
                    events.push(PeerEvent::Subscribe {
                        id: req.id,
                        path: abs,
                        track: req.track,
                        start: req.options.start_group,
                    });
                }
                Some(sid) => {
                    let Some((update, used)) =
                        decode_framed::<SubscribeUpdate>(rest, version, limits.max_message)?
                    else {
                        break;
                    };
                    used_total += used;
                    if let Some(d) = self.downs.get_mut(&sid) {
                        d.priority = update.options.priority;
                    }
                }
            }
        }
        buf.drain(..used_total);
        if end == PeerEnd::Fin && !buf.is_empty() {
            return Err(DecodeError::Short);
        }
        if end != PeerEnd::Open {
            // The subscriber left: FIN our half, cancel its groups.
            self.drop_down_stream(io, id, events);
            io.write(id, Vec::new(), true);
            return Ok(Step::Done);
        }
        Ok(Step::Keep(State::Subscribe { buf, id: sub }))
    }

    /// Take the peer's subscription `id`: its stream goes first, and versions before lite-05
    /// answer SUBSCRIBE_OK. False when the subscription is already gone.
    pub fn accept_subscribe(&mut self, io: &mut dyn Streams, id: u64) -> bool {
        let version = self.version();
        let Some(down) = self.downs.get_mut(&id) else {
            return false;
        };
        down.accepted = true;
        let (stream, priority) = (down.stream, down.priority);
        io.set_priority(stream, CONTROL_PRIORITY);
        if version < Version::Lite05 {
            let ok = SubscribeResponse::Ok(SubscribeOptions {
                priority,
                ..Default::default()
            });
            self.write_msg(io, stream, |v, b| ok.encode(v, b), false);
        }
        true
    }

    /// Refuse the peer's subscription `id` (nobody publishes the broadcast, say).
    pub fn refuse_subscribe(&mut self, io: &mut dyn Streams, id: u64, code: ErrorCode) {
        if let Some(down) = self.downs.remove(&id) {
            self.refuse(io, down.stream, code);
        }
    }

    /// The subscription on stream `id` is gone: reset its groups and report it.
    pub(super) fn drop_down_stream(
        &mut self,
        io: &mut dyn Streams,
        id: StreamId,
        events: &mut Vec<PeerEvent>,
    ) {
        let Some(sub) = self
            .downs
            .iter()
            .find(|(_, d)| d.stream == id)
            .map(|(k, _)| *k)
        else {
            return;
        };
        let down = self.downs.remove(&sub).expect("found");
        for stream in down.flight.streams() {
            io.reset(stream, ErrorCode::CANCEL.to_stream_code());
        }
        if down.accepted {
            events.push(PeerEvent::Unsubscribe { id: sub });
        }
    }

    pub(super) fn track_request(
        &mut self,
        id: StreamId,
        buf: Vec<u8>,
        end: PeerEnd,
        events: &mut Vec<PeerEvent>,
    ) -> Result<Step, DecodeError> {
        let limits = self.cfg.limits;
        let Some((req, _)) = decode_framed::<Track>(&buf, self.version(), limits.max_message)?
        else {
            return short(end, State::TrackRequest { buf });
        };
        let abs = path::join(&self.root, &req.broadcast, limits.max_path)?;
        events.push(PeerEvent::InfoWanted {
            request: id.into(),
            path: abs.into(),
            track: req.track.into(),
        });
        Ok(Step::Keep(State::Discard))
    }

    /// Answer the peer's TRACK request: the TRACK_INFO and FIN, or a refusal with the code.
    pub fn answer_info(
        &mut self,
        io: &mut dyn Streams,
        request: StreamId,
        result: Result<TrackInfo, ErrorCode>,
    ) {
        match result {
            Ok(info) => self.write_msg(io, request, |v, b| info.encode(v, b), true),
            Err(code) => self.refuse(io, request, code),
        }
    }

    pub(super) fn fetch_request(
        &mut self,
        id: StreamId,
        buf: Vec<u8>,
        end: PeerEnd,
        events: &mut Vec<PeerEvent>,
    ) -> Result<Step, DecodeError> {
        let limits = self.cfg.limits;
        let Some((req, _)) = decode_framed::<Fetch>(&buf, self.version(), limits.max_message)?
        else {
            return short(end, State::FetchRequest { buf });
        };
        let abs = path::join(&self.root, &req.broadcast, limits.max_path)?;
        events.push(PeerEvent::Fetch {
            request: id.into(),
            path: abs,
            track: req.track,
            group: req.group,
        });
        Ok(Step::Keep(State::Discard))
    }

    /// Answer the peer's FETCH: the group's frames and FIN, or NOT_FOUND.
    pub fn answer_fetch(
        &mut self,
        io: &mut dyn Streams,
        request: StreamId,
        frames: Option<&[Arc<Frame>]>,
    ) {
        let Some(frames) = frames else {
            self.refuse(io, request, ErrorCode::NOT_FOUND);
            return;
        };
        let mut writer = GroupWriter::new(self.version());
        let mut chunks = Vec::with_capacity(frames.len() * 2);
        for f in frames {
            let mut hdr = BytesMut::new();
            if writer.frame(f.size(), f.timestamp, &mut hdr).is_err() {
                self.refuse(io, request, ErrorCode::ENCODE);
                return;
            }
            chunks.push(hdr.freeze());
            chunks.extend(f.chunks.iter().cloned());
        }
        io.write(request, chunks, true);
    }

    /// Paths under each of the peer's announce requests, for tests.
    #[cfg(test)]
    pub(super) fn announced_to_peer(&self) -> Vec<HashSet<Arc<str>>> {
        self.announce_outs
            .iter()
            .map(|o| o.active.clone())
            .collect()
    }
}

/// The announce message for `path` as seen under `prefix`, with the hop list each version
/// carries (§5.1): lite-03/04 add our origin themselves, lite-05 sends it once in ANNOUNCE_OK.
fn announce_msg(
    version: Version,
    origin: u64,
    prefix: &str,
    path_: &str,
    hops: &[u64],
    active: bool,
) -> Announce {
    let hops = match (active, version) {
        (false, _) => Vec::new(),
        (true, Version::Lite01 | Version::Lite02) => Vec::new(),
        (true, Version::Lite05) => hops.to_vec(),
        (true, _) => hops.iter().copied().chain([origin]).collect(),
    };
    Announce {
        status: if active {
            AnnounceStatus::Active
        } else {
            AnnounceStatus::Ended
        },
        suffix: suffix_of(path_, prefix),
        hops,
    }
}

fn suffix_of(path_: &str, prefix: &str) -> String {
    path::strip_prefix(path_, prefix)
        .unwrap_or(path_)
        .to_string()
}
