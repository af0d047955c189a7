//! The relay's HTTP/1.1 endpoints over TCP, for browsers and scripts: `/certificate.sha256` (what a
//! page passes as WebTransport `serverCertificateHashes`), `/announced/{prefix}` and
//! `/fetch/{broadcast}/{track}`.
//!
//! Runs hyper on its own thread with a current-thread tokio runtime, away from the cores' event
//! loops: this is control-plane traffic. It sees the relay only through [`Origin`].

mod conn;
mod routes;

use std::future::{Future, poll_fn};
use std::io;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::model::{Access, Refusal};

/// What the HTTP endpoints need from the relay.
pub trait Origin: Send + Sync + 'static {
    /// Paths of the active broadcasts under `prefix` (matched on `/` boundaries), relative to
    /// it as in an ANNOUNCE: the empty prefix lists every broadcast in full.
    fn announced(&self, prefix: &str) -> Vec<String>;

    /// Ask for the payload of the latest group of `track` in `broadcast` (its frames back to
    /// back, in any number of pieces), or of the next to complete. Must not block: the answer
    /// comes through `reply`, and a reply dropped unanswered means there is none.
    fn fetch(&self, broadcast: &str, track: &str, reply: FetchReply);

    /// What a request for `path` with `token` (its `jwt` query parameter) may read.
    fn admit(&self, path: &str, token: Option<&str>) -> Result<Access, Refusal>;

    /// Lower-case hex SHA-256 of the default certificate's DER.
    fn fingerprint(&self) -> String;
}

/// Where the answer to one `/fetch` goes.
pub struct FetchReply(tokio::sync::oneshot::Sender<Vec<Bytes>>);

impl FetchReply {
    pub fn send(self, frames: Vec<Bytes>) {
        let _ = self.0.send(frames);
    }

    /// The request timed out or its client left: nobody will read an answer.
    pub fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
}

/// Longest a `/fetch` waits for a group (the reference relay's deadline).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// The bounds of the HTTP plane; past one, a connection is closed on accept or a request
/// answered 503.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// Connections open at once, over every listener.
    pub max_connections: usize,
    /// Connections open at once from one source address.
    pub max_connections_per_ip: usize,
    /// `/fetch` requests waiting for a group at once.
    pub max_fetches: usize,
    /// How long a response write may wait for the client to take bytes.
    pub write_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_connections_per_ip: 64,
            max_fetches: 256,
            write_timeout: Duration::from_secs(10),
        }
    }
}

/// Largest request head hyper buffers for one connection (requests here are short GETs).
const MAX_REQUEST_BUFFER: usize = 16 * 1024;

/// A client that has not sent its request head by then is dropped.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`HttpServer::stop`] lets in-flight requests finish.
const DRAIN: Duration = Duration::from_secs(2);

/// What every connection's requests share.
struct Shared {
    origin: Arc<dyn Origin>,
    /// Permits for `/fetch` requests in flight ([`HttpLimits::max_fetches`]).
    fetches: tokio::sync::Semaphore,
    write_timeout: Duration,
}

/// One bound listener: plain HTTP, or HTTPS when given a TLS config.
pub struct Listener {
    socket: StdListener,
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl Listener {
    /// Bind now, so that a bad or busy address fails start-up rather than the serving thread.
    pub fn bind(addr: SocketAddr, tls: Option<Arc<rustls::ServerConfig>>) -> io::Result<Self> {
        let socket = StdListener::bind(addr)?;
        socket.set_nonblocking(true)?;
        Ok(Self { socket, tls })
    }
}

/// The running HTTP endpoints; [`stop`](Self::stop) ends them.
pub struct HttpServer {
    addrs: Vec<SocketAddr>,
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Serve the listeners from one thread.
    pub fn start(
        listeners: Vec<Listener>,
        origin: Arc<dyn Origin>,
        limits: HttpLimits,
    ) -> io::Result<Self> {
        let addrs = listeners
            .iter()
            .map(|l| l.socket.local_addr())
            .collect::<io::Result<Vec<_>>>()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .thread_name("moq-http")
            .build()?;
        let (stop, stopped) = watch::channel(false);
        let shared = Arc::new(Shared {
            origin,
            fetches: tokio::sync::Semaphore::new(limits.max_fetches),
            write_timeout: limits.write_timeout,
        });
        let admission = conn::Admission::new(limits.max_connections, limits.max_connections_per_ip);
        let thread = std::thread::Builder::new()
            .name("moq-http".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let mut accepts = JoinSet::new();
                    for Listener { socket, tls } in listeners {
                        match TcpListener::from_std(socket) {
                            Ok(listener) => {
                                accepts.spawn(accept_loop(
                                    listener,
                                    tls,
                                    shared.clone(),
                                    admission.clone(),
                                    stopped.clone(),
                                ));
                            }
                            Err(e) => tracing::error!("http listener: {e}"),
                        }
                    }
                    while accepts.join_next().await.is_some() {}
                });
                runtime.shutdown_timeout(Duration::from_millis(100));
            })?;
        for addr in &addrs {
            tracing::info!(%addr, "http listening");
        }
        Ok(Self {
            addrs,
            stop,
            thread: Some(thread),
        })
    }

    /// The bound addresses, in the order the listeners were given.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Stop accepting, let in-flight requests finish for a moment, and join the thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.send_replace(true);
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("http thread panicked");
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    shared: Arc<Shared>,
    admission: Arc<conn::Admission>,
    mut stopped: watch::Receiver<bool>,
) {
    let tls = tls.map(tokio_rustls::TlsAcceptor::from);
    let mut conns = JoinSet::new();
    loop {
        let accepted = {
            let stop = pin!(stopped.wait_for(|s| *s));
            let accept = pin!(listener.accept());
            match race(accept, stop).await {
                Either::Left(a) => a,
                Either::Right(_) => break,
            }
        };
        // Reap finished connections so the set does not grow with the server's lifetime.
        while conns.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                tracing::warn!("http accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Over a cap the connection is closed at once: a flood of idle clients from one
        // address takes neither every place nor every descriptor.
        let slot = match admission.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(limit) => {
                tracing::debug!(%peer, limit, "http connection refused");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let stream = conn::Stalling::new(stream, shared.write_timeout);
        let shared = shared.clone();
        let stopped = stopped.clone();
        match &tls {
            None => {
                conns.spawn(async move {
                    let _slot = slot;
                    serve(stream, peer, shared, stopped).await;
                });
            }
            Some(acceptor) => {
                let handshake = acceptor.accept(stream);
                conns.spawn(async move {
                    let _slot = slot;
                    match tokio::time::timeout(HEADER_TIMEOUT, handshake).await {
                        Ok(Ok(stream)) => serve(stream, peer, shared, stopped).await,
                        Ok(Err(e)) => tracing::debug!(%peer, "https handshake: {e}"),
                        Err(_) => tracing::debug!(%peer, "https handshake timed out"),
                    }
                });
            }
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(DRAIN, async { while conns.join_next().await.is_some() {} });
    if drained.await.is_err() {
        conns.abort_all();
    }
}

/// Serve one connection until the client leaves or the server stops, then finish the request
/// in flight and close.
async fn serve<S>(
    stream: S,
    peer: SocketAddr,
    shared: Arc<Shared>,
    mut stopped: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, std::convert::Infallible>(routes::handle(&shared, peer, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_REQUEST_BUFFER)
        .serve_connection(TokioIo::new(stream), service);
    let mut conn = pin!(conn);
    let done = match race(conn.as_mut(), pin!(stopped.wait_for(|s| *s))).await {
        Either::Left(r) => Some(r),
        Either::Right(_) => None,
    };
    let result = match done {
        Some(r) => r,
        None => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!("http connection: {e}");
    }
}

enum Either<A, B> {
    Left(A),
    Right(B),
}

/// Whichever of two futures finishes first (`a` wins ties).
async fn race<A: Future, B: Future>(
    mut a: std::pin::Pin<&mut A>,
    mut b: std::pin::Pin<&mut B>,
) -> Either<A::Output, B::Output> {
    poll_fn(|cx| {
        if let Poll::Ready(v) = a.as_mut().poll(cx) {
            return Poll::Ready(Either::Left(v));
        }
        if let Poll::Ready(v) = b.as_mut().poll(cx) {
            return Poll::Ready(Either::Right(v));
        }
        Poll::Pending
    })
    .await
}
