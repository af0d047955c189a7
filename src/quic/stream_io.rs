//! Reading and writing quinn-proto streams without copies: what every handler on the engine
//! needs, whatever protocol it speaks.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use bytes::Bytes;

use super::{Connection, StreamId, VarInt};
use crate::stream::{Dir, Side, Streams};

/// How a read left a stream: the stream contract's [`crate::stream::End`].
pub use crate::stream::End as ReadEnd;

/// Everything readable now on `id`, in order, as the received `Bytes`.
pub fn read_chunks(conn: &mut Connection, id: StreamId) -> (Vec<Bytes>, ReadEnd) {
    let mut out = Vec::new();
    let mut stream = conn.recv_stream(id);
    let Ok(mut chunks) = stream.read(true) else {
        return (out, ReadEnd::Reset(0));
    };
    let end = loop {
        match chunks.next(usize::MAX) {
            Ok(Some(c)) => out.push(c.bytes),
            Ok(None) => break ReadEnd::Fin,
            Err(quinn_proto::ReadError::Blocked) => break ReadEnd::Open,
            Err(quinn_proto::ReadError::Reset(code)) => break ReadEnd::Reset(code.into_inner()),
        }
    };
    let _ = chunks.finalize();
    (out, end)
}

/// Bytes queued for a stream that flow control would not take yet.
#[derive(Default)]
pub struct Out {
    pub queue: VecDeque<Bytes>,
    pub fin: bool,
    /// What `queue` holds, in bytes.
    pub bytes: usize,
}

/// A connection's streams with bytes waiting for flow control, and how many bytes that is:
/// what a peer that does not read makes us hold.
#[derive(Default)]
pub struct Outs {
    streams: HashMap<StreamId, Out>,
    bytes: usize,
}

impl Outs {
    pub fn new() -> Self {
        Self::default()
    }

    /// Streams with something waiting.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// Bytes waiting, over every stream.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn get(&self, id: &StreamId) -> Option<&Out> {
        self.streams.get(id)
    }

    /// Drop what waits on `id`.
    pub fn remove(&mut self, id: &StreamId) {
        if let Some(out) = self.streams.remove(id) {
            self.bytes -= out.bytes;
        }
    }

    pub fn clear(&mut self) {
        self.streams.clear();
        self.bytes = 0;
    }
}

/// Queue `chunks` (and FIN) on `id` behind what already waits there, and hand quinn what flow
/// control allows now; the rest goes out on [`resume`].
pub fn send(conn: &mut Connection, outs: &mut Outs, id: StreamId, chunks: Vec<Bytes>, fin: bool) {
    let out = outs.streams.entry(id).or_default();
    for c in chunks.into_iter().filter(|c| !c.is_empty()) {
        out.bytes += c.len();
        outs.bytes += c.len();
        out.queue.push_back(c);
    }
    out.fin |= fin;
    settle(conn, outs, id);
}

/// `id` became writable: send what waits for it.
pub fn resume(conn: &mut Connection, outs: &mut Outs, id: StreamId) {
    if outs.streams.contains_key(&id) {
        settle(conn, outs, id);
    }
}

/// Flush `id` and keep the byte counts true; forget it once everything is gone.
fn settle(conn: &mut Connection, outs: &mut Outs, id: StreamId) {
    let Some(out) = outs.streams.get_mut(&id) else {
        return;
    };
    let before = out.bytes;
    let done = flush(conn, id, out);
    outs.bytes -= before - out.bytes;
    if done {
        outs.remove(&id);
    }
}

/// Hand quinn what it will take; true when everything including FIN is gone (or the stream is).
fn flush(conn: &mut Connection, id: StreamId, out: &mut Out) -> bool {
    let mut send = conn.send_stream(id);
    while !out.queue.is_empty() {
        let (front, _) = out.queue.as_mut_slices();
        let offered = front.len();
        match send.write_chunks(front) {
            Ok(w) => out.bytes -= w.bytes,
            Err(quinn_proto::WriteError::Blocked) => return false,
            Err(_) => return true,
        }
        let mut written = 0;
        while out.queue.front().is_some_and(Bytes::is_empty) {
            out.queue.pop_front();
            written += 1;
        }
        if written < offered {
            // Flow control took only part of what was offered.
            return false;
        }
    }
    if out.fin {
        let _ = send.finish();
    }
    true
}

/// The stream contract over one quinn connection and its queued writes: what wire machines
/// write through on the real engine. Writes go through [`send`], so flow control behaves as
/// for every other write of the connection.
pub struct ConnStreams<'a> {
    conn: &'a mut Connection,
    outs: &'a mut Outs,
    now: Instant,
}

impl<'a> ConnStreams<'a> {
    /// `now` is the time a close is stamped with (the driver's `Ctx::now`).
    pub fn new(conn: &'a mut Connection, outs: &'a mut Outs, now: Instant) -> Self {
        Self { conn, outs, now }
    }
}

fn varint(code: u64) -> VarInt {
    VarInt::from_u64(code).unwrap_or(VarInt::from_u32(0))
}

impl Streams for ConnStreams<'_> {
    fn side(&self) -> Side {
        self.conn.side()
    }

    fn open(&mut self, dir: Dir) -> Option<StreamId> {
        self.conn.streams().open(dir)
    }

    fn write(&mut self, id: StreamId, chunks: Vec<Bytes>, fin: bool) {
        send(self.conn, self.outs, id, chunks, fin);
    }

    fn reset(&mut self, id: StreamId, code: u64) {
        self.outs.remove(&id);
        let _ = self.conn.send_stream(id).reset(varint(code));
    }

    fn stop(&mut self, id: StreamId, code: u64) {
        let _ = self.conn.recv_stream(id).stop(varint(code));
    }

    fn set_priority(&mut self, id: StreamId, priority: i32) {
        let _ = self.conn.send_stream(id).set_priority(priority);
    }

    fn close(&mut self, code: u64, reason: &[u8]) {
        self.conn
            .close(self.now, varint(code), Bytes::copy_from_slice(reason));
    }

    fn backlog(&self, id: StreamId) -> Option<usize> {
        self.outs.get(&id).map(|o| o.queue.len())
    }
}
