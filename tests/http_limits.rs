//! The HTTP plane against clients that hold on: fetches that never complete, readers that
//! never read, and many connections from one address. Each keeps its cost to its own limit
//! while everyone else is served.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use moq_relay::client::ClientOptions;
use moq_relay::http::{FetchReply, HttpLimits, HttpServer, Listener, Origin};
use moq_relay::lite::Version;
use moq_relay::model::{Access, Refusal};
use moq_relay::relay::AppCmd;
use socket2::{Domain, Socket, Type};
use support::{WAIT, until};

/// An origin whose `hang/...` fetches are kept unanswered, and whose `big/...` fetches get
/// `big` bytes.
#[derive(Default)]
struct Slow {
    held: Mutex<Vec<FetchReply>>,
    big: usize,
}

impl Origin for Slow {
    fn announced(&self, _prefix: &str) -> Vec<String> {
        Vec::new()
    }

    fn fetch(&self, broadcast: &str, _track: &str, reply: FetchReply) {
        match broadcast {
            "hang" => self.held.lock().unwrap().push(reply),
            "big" => reply.send(vec![Bytes::from(vec![1u8; self.big])]),
            _ => reply.send(vec![Bytes::from_static(b"ok")]),
        }
    }

    fn admit(&self, _path: &str, _token: Option<&str>) -> Result<Access, Refusal> {
        Ok(Access::all())
    }

    fn fingerprint(&self) -> String {
        "f".repeat(64)
    }
}

fn serve(origin: Arc<Slow>, limits: HttpLimits) -> (HttpServer, SocketAddr) {
    let listener = Listener::bind("127.0.0.1:0".parse().unwrap(), None).unwrap();
    let http = HttpServer::start(vec![listener], origin, limits).unwrap();
    let addr = http.local_addrs()[0];
    (http, addr)
}

/// A connection from `source` with `GET path` sent on it.
fn send_get(source: &str, addr: SocketAddr, path: &str) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let source: SocketAddr = format!("{source}:0").parse().unwrap();
    socket.bind(&source.into()).unwrap();
    // A small receive buffer, so that a reader that never reads stalls the server soon.
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&addr.into()).unwrap();
    let mut stream: TcpStream = socket.into();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream
}

/// The status and body of the response on `stream`; `None` when the server closed it first.
fn response(mut stream: TcpStream) -> Option<(u16, Vec<u8>)> {
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, raw[split + 4..].to_vec()))
}

fn get(source: &str, addr: SocketAddr, path: &str) -> Option<(u16, Vec<u8>)> {
    response(send_get(source, addr, path))
}

/// Fetches waiting on the origin hold no thread: with more of them waiting than the old
/// design had threads, another fetch is answered at once; past `max_fetches` one is refused
/// with 503; and a fetch whose client leaves tells the origin nobody waits any more.
#[test]
fn waiting_fetches_hold_no_thread_and_are_bounded() {
    let origin = Arc::new(Slow::default());
    let limits = HttpLimits {
        max_fetches: 40,
        ..HttpLimits::default()
    };
    let (http, addr) = serve(origin.clone(), limits);
    let hanging: Vec<TcpStream> = (0..39)
        .map(|_| send_get("127.0.0.1", addr, "/fetch/hang/video"))
        .collect();
    let deadline = Instant::now() + WAIT;
    let every = Duration::from_millis(10);
    let held = |n: usize| {
        let origin = &origin;
        move || origin.held.lock().unwrap().len() >= n
    };
    until(
        deadline,
        every,
        || "the fetches never reached the origin".into(),
        held(39),
    );
    let start = Instant::now();
    assert_eq!(
        get("127.0.0.1", addr, "/fetch/now/video"),
        Some((200, b"ok".to_vec()))
    );
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );

    let last = send_get("127.0.0.1", addr, "/fetch/hang/video");
    until(
        deadline,
        every,
        || "the 40th fetch never reached the origin".into(),
        held(40),
    );
    let refused = get("127.0.0.1", addr, "/fetch/now/video").expect("a response");
    assert_eq!(refused.0, 503);

    assert!(origin.held.lock().unwrap().iter().all(|r| !r.is_closed()));
    drop(hanging);
    drop(last);
    until(
        Instant::now() + WAIT,
        every,
        || "fetches of gone clients still open".into(),
        || {
            origin
                .held
                .lock()
                .unwrap()
                .iter()
                .all(FetchReply::is_closed)
        },
    );
    assert_eq!(
        get("127.0.0.1", addr, "/fetch/now/video"),
        Some((200, b"ok".to_vec()))
    );
    http.stop();
}

/// A client that asks for a large body and never reads is closed after the write timeout,
/// and its place (here the only one for its address) is free again.
#[test]
fn a_reader_that_never_reads_is_closed_after_the_write_timeout() {
    let origin = Arc::new(Slow {
        big: 32 << 20,
        ..Slow::default()
    });
    let limits = HttpLimits {
        max_connections_per_ip: 1,
        write_timeout: Duration::from_millis(500),
        ..HttpLimits::default()
    };
    let (http, addr) = serve(origin, limits);
    let deaf = send_get("127.0.0.1", addr, "/fetch/big/video");
    std::thread::sleep(Duration::from_millis(200));
    // Its one place is taken: another connection from the address is closed unanswered.
    assert_eq!(get("127.0.0.1", addr, "/certificate.sha256"), None);
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some((200, body)) = get("127.0.0.1", addr, "/certificate.sha256") {
            assert_eq!(body, "f".repeat(64).as_bytes());
            break;
        }
        assert!(Instant::now() < deadline, "the deaf reader kept its place");
        std::thread::sleep(Duration::from_millis(100));
    }
    // What it finally reads is cut short: the server gave up on it.
    let mut deaf = deaf;
    let mut got = Vec::new();
    let _ = deaf.read_to_end(&mut got);
    assert!(got.len() < 32 << 20, "{} bytes", got.len());
    http.stop();
}

/// Idle connections from one address fill only that address's places: the next from it is
/// closed unanswered, one from another address is served.
#[test]
fn connections_are_capped_per_address() {
    let limits = HttpLimits {
        max_connections_per_ip: 3,
        ..HttpLimits::default()
    };
    let (http, addr) = serve(Arc::new(Slow::default()), limits);
    let idle: Vec<TcpStream> = (0..3)
        .map(|_| {
            let s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(WAIT)).unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(get("127.0.0.1", addr, "/certificate.sha256"), None);
    let other = get("127.0.0.2", addr, "/certificate.sha256").expect("served");
    assert_eq!(other.0, 200);
    drop(idle);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        get("127.0.0.1", addr, "/certificate.sha256").map(|r| r.0),
        Some(200)
    );
    http.stop();
}

/// On the relay, a `/fetch` whose client leaves before any group completes is forgotten by
/// the core within about a second; it holds no fetch entry until a group that may never come.
#[test]
fn an_abandoned_fetch_leaves_nothing_on_the_core() {
    let server = support::relay_with_http(2, false);
    let http = server.http_addr().unwrap();
    let (publisher, _) = support::session(
        ClientOptions::new(server.local_addr(), Version::Lite05),
        WAIT,
    )
    .unwrap();
    publisher.send(AppCmd::Publish {
        path: "demo".into(),
    });
    let every = Duration::from_millis(20);
    until(
        Instant::now() + WAIT,
        every,
        || "never announced".into(),
        || get("127.0.0.1", http, "/announced").map(|r| r.1) == Some(b"demo".to_vec()),
    );
    let waiting = send_get("127.0.0.1", http, "/fetch/demo/video");
    let fetches = || server.census().iter().map(|c| c.fetches).sum::<usize>();
    let what = || "the fetch never reached the core".into();
    until(Instant::now() + WAIT, every, what, || fetches() != 0);
    drop(waiting);
    let deadline = Instant::now() + Duration::from_secs(5);
    let what = || "the core kept the abandoned fetch".into();
    until(deadline, Duration::from_millis(50), what, || fetches() == 0);
    publisher.close();
    server.stop().unwrap();
}
