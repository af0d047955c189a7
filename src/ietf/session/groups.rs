//! Subgroup streams: in from a publisher (objects as frames, payload as received), and out
//! to a subscriber (a stream per group on subgroup 0, at most `max_groups_in_flight`
//! unfinished, the oldest backlogged reset when a newer group needs room).

use super::super::data::{SubgroupEvent, SubgroupHeader, SubgroupReader, encode_object, status};
use super::super::message::Message;
use super::super::{DecodeError, DoneCode, ResetCode, Version};
use super::{PeerEnd, Session, State, Step};
use crate::model::{Delivery, ErrorCode, Frame, Group, PeerEvent};
use crate::stream::{Dir, Flight, Flying, StreamId, Streams};

/// A subgroup stream from the publisher.
pub(super) struct GroupIn {
    reader: SubgroupReader,
    header: Option<SubgroupHeader>,
    /// Our subscription it belongs to, once its alias is known.
    up: Option<u64>,
    frame: Option<Frame>,
    frames: usize,
    bytes: u64,
    partial: u64,
}

/// Our subscription to a track of the peer.
pub(super) struct Up {
    pub(super) stream: StreamId,
    /// From SUBSCRIBE_OK.
    pub(super) alias: Option<u64>,
}

/// A peer's subscription to one of our tracks.
pub(super) struct Down {
    pub(super) stream: StreamId,
    /// Scheduling weight: higher goes first (255 minus the subscriber priority).
    priority: u8,
    pub(super) accepted: bool,
    /// Its subgroup streams being written.
    pub(super) flight: Flight<()>,
    /// Data streams opened, for PUBLISH_DONE.
    streams: u64,
}

/// Streams waiting for their alias, and the bytes each may hold meanwhile.
const MAX_PARKED: usize = 16;
const MAX_PARKED_BYTES: usize = 64 * 1024;

impl Down {
    pub(super) fn new(stream: StreamId, priority: u8) -> Self {
        Self {
            stream,
            priority,
            accepted: false,
            flight: Flight::default(),
            streams: 0,
        }
    }
}

impl Session {
    pub(super) fn group_state(&self) -> GroupIn {
        GroupIn {
            reader: SubgroupReader::new(self.version, self.cfg.limits.max_frame),
            header: None,
            up: None,
            frame: None,
            frames: 0,
            bytes: 0,
            partial: 0,
        }
    }

    pub(super) fn drop_group(&mut self, g: &GroupIn) {
        self.partial_bytes = self.partial_bytes.saturating_sub(g.partial);
        if let (Some(up), Some(h)) = (g.up, g.header) {
            self.open_groups.remove(&(up, h.group));
        }
    }

    /// Which subscription a header's alias names: `Ok(None)` to wait for a SUBSCRIBE_OK
    /// still on its way, `Err` to refuse the stream.
    fn resolve(&self, h: &SubgroupHeader, g: &GroupIn) -> Result<Option<u64>, ()> {
        if let Some(&up) = self.aliases.get(&h.alias) {
            return Ok(Some(up));
        }
        let waiting = self.ups.values().any(|u| u.alias.is_none());
        if waiting && self.parked.len() < MAX_PARKED && g.reader.queued() <= MAX_PARKED_BYTES {
            Ok(None)
        } else {
            Err(())
        }
    }

    pub(super) fn group_in(
        &mut self,
        id: StreamId,
        mut g: GroupIn,
        chunks: Vec<bytes::Bytes>,
        end: PeerEnd,
        now_ms: u64,
        events: &mut Vec<PeerEvent>,
    ) -> Result<Step, DecodeError> {
        self.partial_bytes = self.partial_bytes.saturating_sub(g.partial);
        for c in chunks {
            g.reader.push(c);
        }
        loop {
            if let (Some(h), None) = (g.header, g.up) {
                match self.resolve(&h, &g) {
                    Err(()) => return Ok(Step::Refuse(ResetCode::CANCELLED)),
                    Ok(None) => return Ok(Step::Keep(State::Group(g))),
                    Ok(Some(up)) => {
                        if !self.open_groups.insert((up, h.group)) {
                            // Another subgroup of a group we read already.
                            return Ok(Step::Refuse(ResetCode::CANCELLED));
                        }
                        g.up = Some(up);
                        events.push(PeerEvent::Group {
                            up,
                            seq: h.group,
                            stream: id.into(),
                        });
                    }
                }
            }
            let Some(ev) = g.reader.poll()? else { break };
            let seq = g.header.map_or(0, |h| h.group);
            match ev {
                SubgroupEvent::Header(h) => g.header = Some(h),
                SubgroupEvent::Object { status: s, .. } => {
                    if s == status::NORMAL {
                        g.frame = Some(Frame {
                            timestamp: now_ms,
                            chunks: Vec::new(),
                        });
                    }
                }
                SubgroupEvent::Payload(b) => {
                    let len = b.len() as u64;
                    g.bytes += len;
                    g.partial += len;
                    let limits = self.cfg.limits;
                    if g.bytes > limits.max_group_bytes
                        || self.partial_bytes + g.partial > limits.max_partial
                    {
                        return Ok(self.over_budget(&g, events));
                    }
                    if let Some(f) = &mut g.frame {
                        f.chunks.push(b);
                    }
                }
                SubgroupEvent::ObjectEnd => {
                    g.partial = 0;
                    g.frames += 1;
                    if g.frames > self.cfg.limits.max_group_frames {
                        return Ok(self.over_budget(&g, events));
                    }
                    if let (Some(up), Some(frame)) = (g.up, g.frame.take()) {
                        events.push(PeerEvent::Frame { up, seq, frame });
                    }
                }
            }
        }
        match end {
            PeerEnd::Open => {
                self.partial_bytes += g.partial;
                Ok(Step::Keep(State::Group(g)))
            }
            PeerEnd::Fin => {
                g.reader.finish()?;
                if let (Some(up), Some(h)) = (g.up, g.header) {
                    events.push(PeerEvent::GroupDone { up, seq: h.group });
                }
                self.drop_group(&g);
                Ok(Step::Done)
            }
            PeerEnd::Reset => {
                if let (Some(up), Some(h)) = (g.up, g.header) {
                    events.push(PeerEvent::GroupAbort {
                        up,
                        seq: h.group,
                        code: ErrorCode::CANCEL,
                    });
                }
                self.drop_group(&g);
                Ok(Step::Done)
            }
        }
    }

    /// A group past one of its budgets: its stream is refused, and the group aborted.
    fn over_budget(&mut self, g: &GroupIn, events: &mut Vec<PeerEvent>) -> Step {
        tracing::debug!("refusing a subgroup stream over its budget");
        if let (Some(up), Some(h)) = (g.up, g.header) {
            events.push(PeerEvent::GroupAbort {
                up,
                seq: h.group,
                code: ErrorCode::BOUNDS_EXCEEDED,
            });
        }
        self.drop_group(g);
        Step::Refuse(ResetCode::INTERNAL_ERROR)
    }

    /// Write what subscription `sub` has not had of `group`: a subgroup stream for a group
    /// new to it (resetting its oldest backlogged groups past the in-flight bound), then each
    /// object's header and the same payload `Bytes`, and FIN once the group is done.
    pub fn deliver(&mut self, io: &mut dyn Streams, sub: u64, group: &Group) -> Delivery {
        let mut done = Delivery::default();
        let seq = group.seq;
        let version = self.version;
        let max = self.cfg.limits.max_groups_in_flight.max(1);
        let cancelled = self.stream_code(ResetCode::CANCELLED);
        let Some(down) = self.downs.get_mut(&sub) else {
            return done;
        };
        down.flight.settle(io);
        if down.flight.skipped(seq) {
            return done;
        }
        if !down.flight.has(seq) {
            done.resets += down.flight.make_room(io, max, cancelled);
            let Some(stream) = io.open(Dir::Uni) else {
                return done;
            };
            down.streams += 1;
            io.set_priority(
                stream,
                ((down.priority as i32) << 23) | (seq & 0x7f_ffff) as i32,
            );
            let mut hdr = Vec::new();
            let _ = SubgroupHeader::ours(version, sub, seq, 128).encode(version, &mut hdr);
            io.write(stream, vec![hdr.into()], false);
            down.flight.push(Flying {
                seq,
                stream,
                sent: 0,
                done: false,
                writer: (),
            });
        }
        let Some(g) = down.flight.get_mut(seq) else {
            return done;
        };
        if g.done {
            return done;
        }
        let mut chunks = Vec::new();
        for f in &group.frames[g.sent.min(group.frames.len())..] {
            let mut hdr = Vec::with_capacity(16);
            if encode_object(version, f.size(), &mut hdr).is_err() {
                break;
            }
            chunks.push(hdr.into());
            chunks.extend(f.chunks.iter().cloned());
            g.sent += 1;
            done.frames += 1;
        }
        g.done |= group.done;
        io.write(g.stream, chunks, group.done);
        done
    }

    /// Group `seq` will never finish: reset subscription `sub`'s stream for it.
    pub fn abort_group(&mut self, io: &mut dyn Streams, sub: u64, seq: u64, _code: ErrorCode) {
        let cancelled = self.stream_code(ResetCode::CANCELLED);
        let Some(down) = self.downs.get_mut(&sub) else {
            return;
        };
        if let Some(g) = down.flight.remove(seq) {
            io.reset(g.stream, cancelled);
        }
    }

    /// The track of subscription `sub` is over: PUBLISH_DONE with the number of streams it
    /// had, then FIN. A clean end (CANCEL) is TRACK_ENDED; any other resets its groups.
    pub fn end_subscription(
        &mut self,
        io: &mut dyn Streams,
        sub: u64,
        code: ErrorCode,
        _latest: Option<u64>,
    ) {
        let Some(down) = self.downs.remove(&sub) else {
            return;
        };
        self.ins.remove(&down.stream);
        let status = match code {
            ErrorCode::CANCEL => DoneCode::TRACK_ENDED,
            ErrorCode::UNAUTHORIZED => DoneCode::UNAUTHORIZED,
            ErrorCode::LAGGED if self.version >= Version::Draft18 => 0x5,
            ErrorCode::LAGGED => DoneCode::TOO_FAR_BEHIND,
            _ => DoneCode::SUBSCRIPTION_ENDED,
        };
        if code != ErrorCode::CANCEL {
            for stream in down.flight.streams() {
                io.reset(stream, self.stream_code(ResetCode::CANCELLED));
            }
        }
        let msg = Message::PublishDone {
            request_id: 0,
            status,
            streams: down.streams,
            reason: String::new(),
        };
        self.write(io, down.stream, &msg, true);
    }

    /// The track of `sub` starts over with a new publisher.
    pub fn restart(&mut self, sub: u64) {
        if let Some(d) = self.downs.get_mut(&sub) {
            d.flight.restart();
        }
    }

    /// The peer sent STOP_SENDING on `id`: on a subscription's request stream it cancels the
    /// subscription (17-18); on a group stream it skips that group. Our half is reset.
    pub fn stopped(&mut self, io: &mut dyn Streams, id: StreamId, events: &mut Vec<PeerEvent>) {
        let sub = self
            .downs
            .iter()
            .find(|(_, d)| d.stream == id)
            .map(|(s, _)| *s);
        if let Some(sub) = sub {
            self.ins.remove(&id);
            self.cancel_down(io, sub, events);
            return;
        }
        for d in self.downs.values_mut() {
            d.flight.stopped(id);
        }
        io.reset(id, self.stream_code(ResetCode::CANCELLED));
    }
}
