//! The relay's HTTP/1.1 endpoints over TCP, for browsers and scripts: `/certificate.sha256` (what a
//! page passes as WebTransport `serverCertificateHashes`), `/announced/{prefix}` and
//! `/fetch/{broadcast}/{track}`.
//!
//! Runs hyper on its own thread with a current-thread tokio runtime, away from the cores' event
//! loops: this is control-plane traffic. It sees the relay only through [`Origin`].

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

/// What the HTTP endpoints need from the relay.
pub trait Origin: Send + Sync + 'static {
    /// Paths of the active broadcasts under `prefix` (matched on `/` boundaries), relative to
    /// it as in an ANNOUNCE: the empty prefix lists every broadcast in full.
    fn announced(&self, prefix: &str) -> Vec<String>;

    /// The payload of the latest group of `track` in `broadcast` (its frames back to back, in
    /// any number of pieces), waiting at most `timeout` for one; `None` when there is none.
    /// May block: it is called off the serving thread.
    fn fetch(&self, broadcast: &str, track: &str, timeout: Duration) -> Option<Vec<Bytes>>;

    /// Lower-case hex SHA-256 of the default certificate's DER.
    fn fingerprint(&self) -> String;
}

/// Longest a `/fetch` waits for a group (the reference relay's deadline).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// A client that has not sent its request head by then is dropped.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`HttpServer::stop`] lets in-flight requests finish.
const DRAIN: Duration = Duration::from_secs(2);

/// Connections served at once per listener; more are closed on accept, so that a flood of idle
/// clients cannot take every descriptor the relay has.
const MAX_CONNECTIONS: usize = 1024;

/// Threads for fetches blocked in the origin; more fetches queue.
const FETCH_THREADS: usize = 16;

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
    pub fn start(listeners: Vec<Listener>, origin: Arc<dyn Origin>) -> io::Result<Self> {
        let addrs = listeners
            .iter()
            .map(|l| l.socket.local_addr())
            .collect::<io::Result<Vec<_>>>()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .max_blocking_threads(FETCH_THREADS)
            .thread_name("moq-http")
            .build()?;
        let (stop, stopped) = watch::channel(false);
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
                                    origin.clone(),
                                    stopped.clone(),
                                ));
                            }
                            Err(e) => tracing::error!("http listener: {e}"),
                        }
                    }
                    while accepts.join_next().await.is_some() {}
                });
                // Fetches still blocked in the origin are abandoned, not waited for.
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
    origin: Arc<dyn Origin>,
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
        if conns.len() >= MAX_CONNECTIONS {
            tracing::debug!(%peer, "http: too many connections");
            continue;
        }
        let _ = stream.set_nodelay(true);
        let origin = origin.clone();
        let stopped = stopped.clone();
        match &tls {
            None => {
                conns.spawn(serve(stream, origin, stopped));
            }
            Some(acceptor) => {
                let handshake = acceptor.accept(stream);
                conns.spawn(async move {
                    match tokio::time::timeout(HEADER_TIMEOUT, handshake).await {
                        Ok(Ok(stream)) => serve(stream, origin, stopped).await,
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
async fn serve<S>(stream: S, origin: Arc<dyn Origin>, mut stopped: watch::Receiver<bool>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let origin = origin.clone();
        async move { Ok::<_, std::convert::Infallible>(routes::handle(&origin, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
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
