//! The stream contract wire machines write through, and a recording fake of it for tests.
//!
//! A machine (the WebTransport session, later the moq-lite session) never touches a quinn
//! `Connection` or the driver's `Ctx`: it opens, writes, resets, stops and prioritises streams
//! through [`Streams`], and the layer that knows QUIC implements it over the real engine
//! (`quic::stream_io::ConnStreams`). Tests use [`testing::Recorder`] instead.
//!
//! This module is a leaf: it uses nothing else of this crate.

use bytes::Bytes;

/// quinn's stream identity, as plain values: who opened a stream, which way it goes, its id.
pub use quinn_proto::{Dir, Side, StreamId};

/// A stream id written as its raw value (a request id above the session) read back.
pub fn stream_id(raw: u64) -> StreamId {
    quinn_proto::VarInt::from_u64(raw)
        .unwrap_or(quinn_proto::VarInt::MAX)
        .into()
}

/// How a read left a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// More may come.
    Open,
    /// The peer finished the stream.
    Fin,
    /// The peer reset it with this code (0 when the stream is unknown or gone).
    Reset(u64),
}

/// What a wire machine may do to the streams of its connection.
pub trait Streams {
    /// Which end of the connection we are (stream ids are numbered per initiator).
    fn side(&self) -> Side;
    /// A new stream of ours, or `None` when the peer's stream limit is reached.
    fn open(&mut self, dir: Dir) -> Option<StreamId>;
    /// Queue `chunks` (and FIN) behind what already waits on `id`; flow control decides when
    /// they leave.
    fn write(&mut self, id: StreamId, chunks: Vec<Bytes>, fin: bool);
    /// Abandon our half of `id` with `code` (RESET_STREAM), dropping what still waits.
    fn reset(&mut self, id: StreamId, code: u64);
    /// Ask the peer to stop sending on `id` (STOP_SENDING).
    fn stop(&mut self, id: StreamId, code: u64);
    /// Higher goes first.
    fn set_priority(&mut self, id: StreamId, priority: i32);
    /// Close the whole connection with an application error code.
    fn close(&mut self, code: u64, reason: &[u8]);
    /// What still waits on `id` for flow control: `None` when everything written (FIN
    /// included) has been handed to QUIC, else the number of chunks waiting (0: only the FIN).
    /// A slow subscriber is one whose streams keep a backlog.
    fn backlog(&self, id: StreamId) -> Option<usize>;

    /// Whether we opened `id`.
    fn is_ours(&self, id: StreamId) -> bool {
        id.initiator() == self.side()
    }
}

/// One group stream of a subscription being written: `writer` is whatever per-group state the
/// wire needs to frame what follows.
#[derive(Debug)]
pub struct Flying<W> {
    pub seq: u64,
    pub stream: StreamId,
    /// Frames written so far.
    pub sent: usize,
    /// FIN queued; the group leaves once its queue has drained.
    pub done: bool,
    pub writer: W,
}

/// Skipped groups remembered per subscription; groups come in order, so a few suffice.
const MAX_SKIPPED: usize = 16;

/// The group streams of one subscription still being written, as every wire machine keeps
/// them: at most a few unfinished, the oldest backlogged one reset when a newer group needs
/// room, and the groups given up remembered so that their later frames do not reopen them.
#[derive(Debug)]
pub struct Flight<W> {
    groups: std::collections::VecDeque<Flying<W>>,
    skipped: std::collections::VecDeque<u64>,
}

impl<W> Default for Flight<W> {
    fn default() -> Self {
        Self {
            groups: Default::default(),
            skipped: Default::default(),
        }
    }
}

impl<W> Flight<W> {
    /// Forget groups whose FIN has been handed to QUIC.
    pub fn settle(&mut self, io: &dyn Streams) {
        self.groups
            .retain(|g| !g.done || io.backlog(g.stream).is_some());
    }

    /// Whether group `seq` was given up for this subscriber.
    pub fn skipped(&self, seq: u64) -> bool {
        self.skipped.contains(&seq)
    }

    pub fn has(&self, seq: u64) -> bool {
        self.groups.iter().any(|g| g.seq == seq)
    }

    /// Room for one more group: while `max` are in flight, reset the oldest whose data is
    /// stuck behind flow control with `code` (groups that only wait on their publisher cost
    /// nothing here and stay). Returns how many were reset.
    pub fn make_room(&mut self, io: &mut dyn Streams, max: usize, code: u64) -> u64 {
        let mut resets = 0;
        while self.groups.len() >= max.max(1) {
            let backlogged = self
                .groups
                .iter()
                .position(|g| io.backlog(g.stream).is_some_and(|n| n > 0));
            let Some(victim) = backlogged else { break };
            let old = self.groups.remove(victim).expect("in range");
            self.skip(old.seq);
            io.reset(old.stream, code);
            resets += 1;
        }
        resets
    }

    pub fn push(&mut self, group: Flying<W>) {
        self.groups.push_back(group);
    }

    pub fn get_mut(&mut self, seq: u64) -> Option<&mut Flying<W>> {
        self.groups.iter_mut().find(|g| g.seq == seq)
    }

    /// Take group `seq` out (it will never finish).
    pub fn remove(&mut self, seq: u64) -> Option<Flying<W>> {
        let i = self.groups.iter().position(|g| g.seq == seq)?;
        self.groups.remove(i)
    }

    /// The subscriber stopped `stream`: its group is given up. Whether it was one of these.
    pub fn stopped(&mut self, stream: StreamId) -> bool {
        let Some(i) = self.groups.iter().position(|g| g.stream == stream) else {
            return false;
        };
        let g = self.groups.remove(i).expect("in range");
        self.skip(g.seq);
        true
    }

    /// The streams in flight.
    pub fn streams(&self) -> impl Iterator<Item = StreamId> + '_ {
        self.groups.iter().map(|g| g.stream)
    }

    /// The track starts over with a new publisher, whose sequence may reuse skipped numbers.
    pub fn restart(&mut self) {
        self.skipped.clear();
    }

    fn skip(&mut self, seq: u64) {
        if self.skipped.len() == MAX_SKIPPED {
            self.skipped.pop_front();
        }
        self.skipped.push_back(seq);
    }
}

/// Fakes for tests of wire machines, here rather than under `cfg(test)` so that integration
/// tests and other crates can drive machines too.
pub mod testing {
    use std::collections::HashMap;

    use bytes::Bytes;

    use super::{Dir, Side, StreamId, Streams};

    /// One call a machine made on its [`Streams`].
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub enum Call {
        Open(StreamId),
        /// The chunks of one `write`, joined.
        Write {
            id: StreamId,
            bytes: Vec<u8>,
            fin: bool,
        },
        Reset {
            id: StreamId,
            code: u64,
        },
        Stop {
            id: StreamId,
            code: u64,
        },
        Priority {
            id: StreamId,
            priority: i32,
        },
        Close {
            code: u64,
            reason: Vec<u8>,
        },
    }

    /// A [`Streams`] that records every call and hands out stream ids as quinn numbers them
    /// for its side, without limit.
    #[derive(Debug)]
    pub struct Recorder {
        side: Side,
        /// Next index per direction: bidi, uni.
        next: [u64; 2],
        calls: Vec<Call>,
        /// What [`Streams::backlog`] answers, as a test sets it; nothing waits by default.
        backlogs: HashMap<StreamId, usize>,
    }

    impl Recorder {
        pub fn new(side: Side) -> Self {
            Self {
                side,
                next: [0; 2],
                calls: Vec::new(),
                backlogs: HashMap::new(),
            }
        }

        /// Pretend `chunks` chunks wait on `id` (`None`: nothing waits).
        pub fn set_backlog(&mut self, id: StreamId, chunks: Option<usize>) {
            match chunks {
                Some(n) => self.backlogs.insert(id, n),
                None => self.backlogs.remove(&id),
            };
        }

        /// Every call not yet taken, in order.
        pub fn calls(&self) -> &[Call] {
            &self.calls
        }

        /// Every call not yet taken, leaving none.
        pub fn take(&mut self) -> Vec<Call> {
            std::mem::take(&mut self.calls)
        }

        /// The bytes written on `id` so far (calls not yet taken), joined.
        pub fn written(&self, id: StreamId) -> Vec<u8> {
            let mut out = Vec::new();
            for call in &self.calls {
                if let Call::Write { id: on, bytes, .. } = call
                    && *on == id
                {
                    out.extend_from_slice(bytes);
                }
            }
            out
        }

        /// The bytes written on `id` and whether a FIN followed them; those writes are
        /// removed from the record, so the next take returns only what came after.
        pub fn take_written(&mut self, id: StreamId) -> (Vec<u8>, bool) {
            let mut out = Vec::new();
            let mut finished = false;
            self.calls.retain(|call| match call {
                Call::Write { id: on, bytes, fin } if *on == id => {
                    out.extend_from_slice(bytes);
                    finished |= *fin;
                    false
                }
                _ => true,
            });
            (out, finished)
        }

        /// Whether a write on `id` carried FIN.
        pub fn finished(&self, id: StreamId) -> bool {
            self.calls
                .iter()
                .any(|c| matches!(c, Call::Write { id: on, fin: true, .. } if *on == id))
        }

        /// The streams opened so far, in order.
        pub fn opened(&self) -> Vec<StreamId> {
            self.calls
                .iter()
                .filter_map(|c| match c {
                    Call::Open(id) => Some(*id),
                    _ => None,
                })
                .collect()
        }

        /// The streams written on, in the order of their first write.
        pub fn streams_written(&self) -> Vec<StreamId> {
            let mut out = Vec::new();
            for call in &self.calls {
                if let Call::Write { id, .. } = call
                    && !out.contains(id)
                {
                    out.push(*id);
                }
            }
            out
        }

        /// The connection close, if one was asked for: its code and reason.
        pub fn closed(&self) -> Option<(u64, Vec<u8>)> {
            self.calls.iter().find_map(|c| match c {
                Call::Close { code, reason } => Some((*code, reason.clone())),
                _ => None,
            })
        }
    }

    impl Streams for Recorder {
        fn side(&self) -> Side {
            self.side
        }

        fn open(&mut self, dir: Dir) -> Option<StreamId> {
            let next = &mut self.next[usize::from(dir == Dir::Uni)];
            let id = StreamId::new(self.side, dir, *next);
            *next += 1;
            self.calls.push(Call::Open(id));
            Some(id)
        }

        fn write(&mut self, id: StreamId, chunks: Vec<Bytes>, fin: bool) {
            self.calls.push(Call::Write {
                id,
                bytes: chunks.concat(),
                fin,
            });
        }

        fn reset(&mut self, id: StreamId, code: u64) {
            self.calls.push(Call::Reset { id, code });
        }

        fn stop(&mut self, id: StreamId, code: u64) {
            self.calls.push(Call::Stop { id, code });
        }

        fn set_priority(&mut self, id: StreamId, priority: i32) {
            self.calls.push(Call::Priority { id, priority });
        }

        fn close(&mut self, code: u64, reason: &[u8]) {
            self.calls.push(Call::Close {
                code,
                reason: reason.to_vec(),
            });
        }

        fn backlog(&self, id: StreamId) -> Option<usize> {
            self.backlogs.get(&id).copied()
        }
    }
}
