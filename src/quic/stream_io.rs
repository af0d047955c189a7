//! Reading and writing quinn-proto streams without copies: what every handler on the engine
//! needs, whatever protocol it speaks.

use std::collections::VecDeque;

use bytes::Bytes;

use super::{Connection, StreamId};

/// How a read left a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadEnd {
    /// More may come.
    Open,
    /// The peer finished the stream.
    Fin,
    /// The peer reset it with this code (0 when the stream is unknown or gone).
    Reset(u64),
}

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
}

/// Hand quinn what it will take; true when everything including FIN is gone (or the stream is).
pub fn flush(conn: &mut Connection, id: StreamId, out: &mut Out) -> bool {
    let mut send = conn.send_stream(id);
    while !out.queue.is_empty() {
        let (front, _) = out.queue.as_mut_slices();
        let offered = front.len();
        match send.write_chunks(front) {
            Ok(_) => {}
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
