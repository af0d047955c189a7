//! Group streams: in from a publisher (frames with their payload as received), and out to a
//! subscriber (one uni stream per group, at most `max_groups_in_flight` unfinished, the
//! oldest backlogged reset when a newer group needs room).

use bytes::BytesMut;

use super::{Delivery, PeerEnd, PeerEvent, Session, State, Step};
use crate::lite::{
    DecodeError, ErrorCode, GroupEvent, GroupHeader, GroupReader, GroupWriter, Message,
    SubscribeResponse, Version,
};
use crate::model::{Frame, Group};
use crate::stream::{Dir, Flight, Flying, StreamId, Streams};

/// A group stream from the publisher.
pub(super) struct GroupIn {
    pub(super) reader: GroupReader,
    /// Our subscription it belongs to, once its header is read.
    pub(super) up: Option<u64>,
    pub(super) seq: u64,
    pub(super) frame: Option<Frame>,
    /// Frames and payload bytes of the group so far.
    pub(super) frames: usize,
    pub(super) bytes: u64,
    /// Bytes of the frame not yet whole.
    pub(super) partial: u64,
}

/// A peer's subscription to one of our tracks.
pub(super) struct Down {
    pub(super) stream: StreamId,
    pub(super) priority: u8,
    /// The layer above took it ([`Session::accept_subscribe`]).
    pub(super) accepted: bool,
    /// lite-05: SUBSCRIBE_START went out.
    pub(super) started: bool,
    /// Its group streams being written, each with its frame writer.
    pub(super) flight: Flight<GroupWriter>,
}

/// A group past one of its budgets: its stream is refused, and the group aborted for those
/// who had its first frames.
fn over_group_budget(g: &GroupIn, limit: &'static str, events: &mut Vec<PeerEvent>) -> Step {
    tracing::debug!(
        seq = g.seq,
        limit,
        "refusing a group stream over its budget"
    );
    if let Some(up) = g.up {
        events.push(PeerEvent::GroupAbort {
            up,
            seq: g.seq,
            code: ErrorCode::BOUNDS_EXCEEDED,
        });
    }
    Step::Refuse(ErrorCode::BOUNDS_EXCEEDED)
}

impl Session {
    pub(super) fn group_in(
        &mut self,
        id: StreamId,
        mut g: GroupIn,
        chunks: Vec<bytes::Bytes>,
        end: PeerEnd,
        now_ms: u64,
        events: &mut Vec<PeerEvent>,
    ) -> Result<Step, DecodeError> {
        for c in chunks {
            g.reader.push(c);
        }
        let stamped = self.version() == Version::Lite05;
        while let Some(ev) = g.reader.poll()? {
            match ev {
                GroupEvent::Header(GroupHeader {
                    subscribe_id,
                    sequence,
                }) => {
                    if !self.ups.contains_key(&subscribe_id) {
                        return Ok(Step::Refuse(ErrorCode::CANCEL));
                    }
                    g.up = Some(subscribe_id);
                    g.seq = sequence;
                    events.push(PeerEvent::Group {
                        up: subscribe_id,
                        seq: sequence,
                        stream: id.into(),
                    });
                }
                GroupEvent::Frame { timestamp, .. } => {
                    g.frame = Some(Frame {
                        timestamp: if stamped { timestamp } else { now_ms },
                        chunks: Vec::new(),
                    });
                }
                GroupEvent::Payload(b) => {
                    let len = b.len() as u64;
                    g.bytes += len;
                    g.partial += len;
                    let limits = self.cfg.limits;
                    let over = if g.bytes > limits.max_group_bytes {
                        Some("max_group_bytes")
                    } else if self.partial_bytes + g.partial > limits.max_partial {
                        Some("max_partial")
                    } else {
                        None
                    };
                    if let Some(limit) = over {
                        return Ok(over_group_budget(&g, limit, events));
                    }
                    if let Some(f) = &mut g.frame {
                        f.chunks.push(b);
                    }
                }
                GroupEvent::FrameEnd => {
                    g.partial = 0;
                    g.frames += 1;
                    if g.frames > self.cfg.limits.max_group_frames {
                        return Ok(over_group_budget(&g, "max_group_frames", events));
                    }
                    if let (Some(up), Some(frame)) = (g.up, g.frame.take()) {
                        events.push(PeerEvent::Frame {
                            up,
                            seq: g.seq,
                            frame,
                        });
                    }
                }
            }
        }
        match end {
            PeerEnd::Open => Ok(Step::Keep(State::Group(g))),
            PeerEnd::Fin => {
                g.reader.finish()?;
                if let Some(up) = g.up {
                    events.push(PeerEvent::GroupDone { up, seq: g.seq });
                }
                Ok(Step::Done)
            }
            PeerEnd::Reset(code) => {
                // The publisher gave up on the group: so do its subscribers.
                if let Some(up) = g.up {
                    events.push(PeerEvent::GroupAbort {
                        up,
                        seq: g.seq,
                        code,
                    });
                }
                Ok(Step::Done)
            }
        }
    }

    /// Write what subscription `sub` has not had of `group`: open its stream if the group is
    /// new to it (resetting its oldest backlogged groups past the in-flight bound), then the
    /// frame headers and the same payload `Bytes`, and FIN once the group is done.
    pub fn deliver(&mut self, io: &mut dyn Streams, sub: u64, group: &Group) -> Delivery {
        let mut done = Delivery::default();
        let seq = group.seq;
        let version = self.version();
        let max = self.cfg.limits.max_groups_in_flight.max(1);
        let Some(down) = self.downs.get_mut(&sub) else {
            return done;
        };
        down.flight.settle(io);
        if down.flight.skipped(seq) {
            return done;
        }
        if !down.flight.has(seq) {
            // A new group: if the subscriber is behind, its oldest backlogged groups go.
            done.resets += down
                .flight
                .make_room(io, max, ErrorCode::CANCEL.to_stream_code());
            let Some(stream) = io.open(Dir::Uni) else {
                return done;
            };
            io.set_priority(
                stream,
                ((down.priority as i32) << 23) | (seq & 0x7f_ffff) as i32,
            );
            if version == Version::Lite05 && !down.started {
                down.started = true;
                let mut b = BytesMut::new();
                if SubscribeResponse::Start(seq)
                    .encode(version, &mut b)
                    .is_ok()
                {
                    io.write(down.stream, vec![b.freeze()], false);
                }
            }
            let writer = GroupWriter::new(version);
            let mut hdr = BytesMut::new();
            let header = GroupHeader {
                subscribe_id: sub,
                sequence: seq,
            };
            let _ = writer.header(&header, &mut hdr);
            io.write(stream, vec![hdr.freeze()], false);
            down.flight.push(Flying {
                seq,
                stream,
                sent: 0,
                done: false,
                writer,
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
            let mut hdr = BytesMut::with_capacity(16);
            if g.writer.frame(f.size(), f.timestamp, &mut hdr).is_err() {
                break;
            }
            chunks.push(hdr.freeze());
            chunks.extend(f.chunks.iter().cloned());
            g.sent += 1;
            done.frames += 1;
        }
        g.done |= group.done;
        io.write(g.stream, chunks, group.done);
        done
    }

    /// Group `seq` will never finish: reset subscription `sub`'s stream for it.
    pub fn abort_group(&mut self, io: &mut dyn Streams, sub: u64, seq: u64, code: ErrorCode) {
        let Some(down) = self.downs.get_mut(&sub) else {
            return;
        };
        if let Some(g) = down.flight.remove(seq) {
            io.reset(g.stream, code.to_stream_code());
        }
    }

    /// The track of subscription `sub` is over. A clean end (CANCEL) finishes the stream
    /// (lite-05 first says SUBSCRIBE_END with the group after `latest`); any other code resets
    /// its groups and its stream.
    pub fn end_subscription(
        &mut self,
        io: &mut dyn Streams,
        sub: u64,
        code: ErrorCode,
        latest: Option<u64>,
    ) {
        let Some(down) = self.downs.remove(&sub) else {
            return;
        };
        if code == ErrorCode::CANCEL {
            if self.version() == Version::Lite05 {
                let end = latest.map_or(0, |l| l + 1);
                self.write_msg(
                    io,
                    down.stream,
                    |v, b| SubscribeResponse::End(end).encode(v, b),
                    false,
                );
            }
            io.write(down.stream, Vec::new(), true);
        } else {
            for stream in down.flight.streams() {
                io.reset(stream, code.to_stream_code());
            }
            io.reset(down.stream, code.to_stream_code());
        }
    }

    /// The track of `sub` starts over with a new publisher, whose sequence may reuse numbers of
    /// groups skipped before.
    pub fn restart(&mut self, sub: u64) {
        if let Some(d) = self.downs.get_mut(&sub) {
            d.flight.restart();
        }
    }

    /// The peer sent STOP_SENDING on `id`: a group it no longer wants is skipped; our half is
    /// reset.
    pub fn stopped(&mut self, io: &mut dyn Streams, id: StreamId) {
        for d in self.downs.values_mut() {
            d.flight.stopped(id);
        }
        io.reset(id, ErrorCode::CANCEL.to_stream_code());
    }
}
