//! What bounds one HTTP connection: its admission against the connection caps (total and per
//! source address), a deadline on writes that make no progress, and a response body that
//! hands out the relay's chunks as they are.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The open connections, in total and by source address, shared by every listener.
#[derive(Debug)]
pub(super) struct Admission {
    max: usize,
    max_per_ip: usize,
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// One admitted connection; dropping it frees its place.
pub(super) struct Slot {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Admission {
    pub(super) fn new(max: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            max_per_ip,
            open: Mutex::new((0, HashMap::new())),
        })
    }

    /// A place for a connection from `ip`, or why there is none.
    pub(super) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, &'static str> {
        let mut open = self.open.lock().expect("http admission lock");
        let (total, by_ip) = &mut *open;
        if *total >= self.max {
            return Err("max_connections");
        }
        let n = by_ip.entry(ip).or_insert(0);
        if *n >= self.max_per_ip {
            return Err("max_connections_per_ip");
        }
        *n += 1;
        *total += 1;
        Ok(Slot {
            admission: self.clone(),
            ip,
        })
    }

    #[cfg(test)]
    fn open(&self) -> (usize, usize) {
        let open = self.open.lock().unwrap();
        (open.0, open.1.len())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.admission.open.lock().expect("http admission lock");
        let (total, by_ip) = &mut *open;
        *total -= 1;
        if let Some(n) = by_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                by_ip.remove(&self.ip);
            }
        }
    }
}

/// A connection whose writes fail with `TimedOut` once one has waited `limit` for the client
/// to take bytes: a client that stops reading (a zero window) gives its place back.
pub(super) struct Stalling<S> {
    inner: S,
    limit: Duration,
    /// Armed while a write waits; cleared by any progress.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<S> Stalling<S> {
    pub(super) fn new(inner: S, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            deadline: None,
        }
    }

    /// The result of a write-side poll, with the deadline armed while it stays pending.
    fn watch<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.deadline = None;
            return poll;
        }
        let limit = self.limit;
        let deadline = self
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(Instant::now() + limit)));
        ready!(deadline.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "client took no bytes within the write timeout",
        )))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Stalling<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Stalling<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, poll)
    }
}

/// A response body of chunks sent as they are: a fetched group is never joined into one
/// buffer.
#[derive(Debug, Default)]
pub(super) struct Chunks {
    chunks: VecDeque<Bytes>,
}

impl Chunks {
    pub(super) fn new(chunks: Vec<Bytes>) -> Self {
        Self {
            chunks: chunks.into_iter().filter(|c| !c.is_empty()).collect(),
        }
    }
}

impl From<Bytes> for Chunks {
    fn from(b: Bytes) -> Self {
        Self::new(vec![b])
    }
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.chunks.pop_front().map(|c| Ok(Frame::data(c))))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.chunks.iter().map(|c| c.len() as u64).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_counts_per_address_and_in_total() {
        let a = Admission::new(3, 2);
        let (x, y, z) = (
            "10.0.0.1".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
            "10.0.0.3".parse().unwrap(),
        );
        let x1 = a.admit(x).unwrap();
        let _x2 = a.admit(x).unwrap();
        assert_eq!(a.admit(x).err(), Some("max_connections_per_ip"));
        let _y1 = a.admit(y).unwrap();
        assert_eq!(a.admit(z).err(), Some("max_connections"));
        drop(x1);
        assert_eq!(a.open(), (2, 2));
        let _z1 = a.admit(z).unwrap();
        assert_eq!(a.admit(x).err(), Some("max_connections"));
    }

    #[test]
    fn chunks_are_handed_out_as_they_are() {
        let parts = vec![
            Bytes::from_static(b"ab"),
            Bytes::new(),
            Bytes::from(vec![7u8; 1000]),
        ];
        let mut body = Chunks::new(parts.clone());
        assert_eq!(body.size_hint().exact(), Some(1002));
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut out = Vec::new();
        while let Poll::Ready(Some(Ok(f))) = Pin::new(&mut body).poll_frame(&mut cx) {
            out.push(f.into_data().unwrap());
        }
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].as_ptr(), parts[0].as_ptr());
        assert_eq!(out[1].as_ptr(), parts[2].as_ptr());
        assert!(body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(0));
    }
}
