//! The HTTP endpoints of an in-process relay on 127.0.0.1, spoken to over raw TCP (and TLS),
//! with real QUIC clients of this crate publishing and pinning the served fingerprint.

mod support;
#[path = "support/tokens.rs"]
mod tokens;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use moq_relay::client::{Client, ClientOptions};
use moq_relay::config::{Cli, Config, File};
use moq_relay::http::{FetchReply, HttpLimits, HttpServer, Listener, Origin};
use moq_relay::lite::Version;
use moq_relay::model::{Access, Refusal};
use moq_relay::quic::tls::{self, ClientVerify};
use moq_relay::relay::AppCmd;
use moq_relay::server::Server;
use support::WAIT;

/// The flags of a two-core relay on 127.0.0.1 with these HTTP and HTTPS listen addresses.
fn cli(web_http: Option<&str>, web_https: Option<&str>) -> Cli {
    Cli {
        server_bind: Some("127.0.0.1:0".into()),
        threads: Some(2),
        pin: Some(false),
        tls_generate: vec!["localhost".into()],
        client_bind: Some("127.0.0.1:0".into()),
        web_http_listen: web_http.map(Into::into),
        web_https_listen: web_https.map(Into::into),
        auth_public: vec![String::new()],
        ..Cli::default()
    }
}

/// A two-core relay with HTTP endpoints, and HTTPS ones too when `https`.
fn relay(https: bool) -> Server {
    support::relay_with_http(2, https)
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }
}

/// One HTTP/1.1 exchange on `stream`, closing after it.
fn exchange(mut stream: impl Read + Write, method: &str, path: &str, extra: &str) -> Reply {
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://example.test\r\n{extra}Connection: close\r\n\r\n"
    );
    stream.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    // A TLS peer may close without close_notify after `Connection: close`; what arrived counts.
    let _ = stream.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response head");
    let head = std::str::from_utf8(&raw[..split]).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap();
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_owned(), v.trim().to_owned())
        })
        .collect();
    Reply {
        status: status.parse().unwrap(),
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

fn request(addr: SocketAddr, method: &str, path: &str) -> Reply {
    request_with(addr, method, path, "")
}

fn request_with(addr: SocketAddr, method: &str, path: &str, extra: &str) -> Reply {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let r = exchange(stream, method, path, extra);
    if method != "HEAD"
        && let Some(len) = r.header("content-length")
    {
        assert_eq!(
            len.parse::<usize>().unwrap(),
            r.body.len(),
            "{method} {path}"
        );
    }
    r
}

fn get(addr: SocketAddr, path: &str) -> Reply {
    request(addr, "GET", path)
}

/// A session set up within `wait`, or why not.
fn connect_within(server: &Server, verify: ClientVerify, wait: Duration) -> Result<Client, String> {
    let mut opts = ClientOptions::new(server.local_addr(), Version::Lite05);
    opts.verify = verify;
    support::session(opts, wait).map(|(client, _)| client)
}

fn connect(server: &Server, verify: ClientVerify) -> Result<Client, String> {
    connect_within(server, verify, WAIT)
}

/// Poll `path` until its body is `want`.
fn wait_body(addr: SocketAddr, path: &str, want: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let r = get(addr, path);
        assert_eq!(r.status, 200);
        if r.text() == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{path}: still {:?}, want {want:?}",
            r.text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn certificate_hash_pins_the_quic_certificate() {
    let server = relay(false);
    let http = server.http_addr().expect("http listening");
    assert_eq!(server.https_addr(), None);
    let r = get(http, "/certificate.sha256");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    let fp = r.text().to_owned();
    assert_eq!(fp.len(), 64, "{fp:?}");
    assert!(
        fp.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
        "{fp:?}"
    );

    // A QUIC client that accepts only the served hash gets in; one pinning another does not.
    let client = connect(&server, ClientVerify::Fingerprints(vec![fp.clone()]))
        .expect("pinning the served hash connects");
    client.close();
    let mut wrong = fp.into_bytes();
    wrong[0] = if wrong[0] == b'0' { b'1' } else { b'0' };
    let wrong = String::from_utf8(wrong).unwrap();
    // Loopback handshakes take milliseconds; 3 s without a session is a refusal.
    let refused = connect_within(
        &server,
        ClientVerify::Fingerprints(vec![wrong]),
        Duration::from_secs(3),
    );
    assert!(refused.is_err());
    server.stop().unwrap();
}

#[test]
fn announced_lists_published_broadcasts_under_a_prefix() {
    let server = relay(false);
    let http = server.http_addr().unwrap();
    assert_eq!(get(http, "/announced").text(), "");

    let publisher = connect(&server, ClientVerify::Disabled).unwrap();
    for path in ["room/b", "room/a", "roomy", "other/x y"] {
        publisher.send(AppCmd::Publish { path: path.into() });
    }
    wait_body(http, "/announced", "other/x y\nroom/a\nroom/b\nroomy");
    let r = get(http, "/announced/room");
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    // Relative to the prefix, on segment boundaries only.
    assert_eq!(r.text(), "a\nb");
    assert_eq!(
        get(http, "/announced/").text(),
        get(http, "/announced").text()
    );
    assert_eq!(get(http, "/announced//room/").text(), "a\nb");
    assert_eq!(get(http, "/announced/room/a").text(), "");
    assert_eq!(get(http, "/announced/other/x%20y").text(), "");
    assert_eq!(get(http, "/announced/roo").text(), "");
    assert_eq!(get(http, "/announced/nothing").status, 200);

    publisher.send(AppCmd::Unpublish {
        path: "room/a".into(),
    });
    wait_body(http, "/announced/room", "b");
    // The publisher leaving ends the rest.
    publisher.close();
    wait_body(http, "/announced", "");
    server.stop().unwrap();
}

#[test]
fn cors_methods_and_unknown_paths() {
    let server = relay(false);
    let http = server.http_addr().unwrap();

    let r = request_with(
        http,
        "OPTIONS",
        "/announced/room",
        "Access-Control-Request-Method: GET\r\nAccess-Control-Request-Headers: x-custom\r\n",
    );
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert!(
        r.header("access-control-allow-methods")
            .unwrap()
            .contains("GET")
    );
    assert_eq!(r.header("access-control-allow-headers"), Some("x-custom"));

    let r = request(http, "POST", "/certificate.sha256");
    assert_eq!(r.status, 405);
    assert!(r.header("allow").unwrap().contains("GET"));
    assert_eq!(request(http, "DELETE", "/announced").status, 405);

    let r = get(http, "/");
    assert_eq!(r.status, 404);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(get(http, "/certificate.sha256/x").status, 404);
    assert_eq!(request(http, "POST", "/nope").status, 404);

    let r = request(http, "HEAD", "/certificate.sha256");
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());

    // No group is reachable from HTTP yet: every fetch is a 404, a malformed one a 400.
    let r = get(http, "/fetch/demo/video");
    assert_eq!(r.status, 404);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(get(http, "/fetch/video").status, 400);
    assert_eq!(get(http, "/announced/%zz").status, 400);

    // The parser holds up to junk on the socket.
    let mut s = TcpStream::connect(http).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(b"\x16\x03\x01\x00\x05hello\r\n\r\n").unwrap();
    let mut junk = Vec::new();
    let _ = s.read_to_end(&mut junk);
    assert!(
        junk.is_empty() || junk.starts_with(b"HTTP/1.1 400"),
        "{junk:?}"
    );
    assert_eq!(get(http, "/certificate.sha256").status, 200);
    server.stop().unwrap();
}

#[test]
fn https_serves_the_same_endpoints_with_the_relay_certificate() {
    let server = relay(true);
    let https = server.https_addr().expect("https listening");
    let fp = server.fingerprints()[0].clone();
    let config = tls::client_config(
        &ClientVerify::Fingerprints(vec![fp.clone()]),
        &[b"http/1.1"],
    )
    .unwrap();
    let tls = rustls::ClientConnection::new(config, "localhost".try_into().unwrap()).unwrap();
    let tcp = TcpStream::connect(https).unwrap();
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    let r = exchange(
        rustls::StreamOwned::new(tls, tcp),
        "GET",
        "/certificate.sha256",
        "",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), fp);
    assert_eq!(
        get(server.http_addr().unwrap(), "/certificate.sha256").text(),
        fp
    );

    // Plain HTTP on the HTTPS port gets nothing.
    let mut s = TcpStream::connect(https).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(b"GET /certificate.sha256 HTTP/1.1\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert!(!got.starts_with(b"HTTP/1.1 200"));
    server.stop().unwrap();
}

#[test]
fn stop_closes_idle_connections_and_the_listener() {
    let server = relay(false);
    let http = server.http_addr().unwrap();
    // A keep-alive connection that finished one request, and one that never sent a byte.
    let mut kept = TcpStream::connect(http).unwrap();
    kept.set_read_timeout(Some(WAIT)).unwrap();
    kept.write_all(b"GET /certificate.sha256 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 4096];
    assert!(kept.read(&mut buf).unwrap() > 0);
    let idle = TcpStream::connect(http).unwrap();
    idle.set_read_timeout(Some(WAIT)).unwrap();

    let started = Instant::now();
    server.stop().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stop took {:?}",
        started.elapsed()
    );
    assert_eq!(
        kept.read(&mut buf).unwrap(),
        0,
        "keep-alive connection left open"
    );
    assert!(TcpStream::connect(http).is_err(), "listener still open");
}

#[test]
fn a_busy_or_bad_listen_address_stops_start_up_naming_the_key() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let config = Config::merge(cli(Some(&addr), None), File::default()).unwrap();
    let e = format!("{:#}", Server::start(&config).err().expect("port is taken"));
    assert!(e.contains("web.http.listen"), "{e}");

    let config = Config::merge(cli(Some("127.0.0.1:0"), Some(&addr)), File::default()).unwrap();
    let e = format!("{:#}", Server::start(&config).err().expect("port is taken"));
    assert!(e.contains("web.https.listen"), "{e}");

    let e = Config::merge(cli(Some("127.0.0.1:http-ish"), None), File::default()).unwrap_err();
    assert!(e.0.contains("web.http.listen"), "{e}");
    // The same error reaches the binary's exit path through `Config::from_cli`.
    let e = Config::from_cli(cli(Some("not an address"), None)).unwrap_err();
    assert!(e.0.contains("web.http.listen"), "{e}");
}

#[test]
fn origin_is_only_a_trait_object() {
    // The endpoints run against any `Origin`: here one that answers fetches, proving the body
    // is the group's frames back to back.
    struct Fixed;
    impl Origin for Fixed {
        fn announced(&self, prefix: &str) -> Vec<String> {
            vec![format!("{prefix}:z"), format!("{prefix}:a")]
        }
        fn fetch(&self, b: &str, t: &str, reply: FetchReply) {
            if b == "room/cam" && t == "video" {
                reply.send(vec![
                    bytes::Bytes::from_static(b"ab"),
                    bytes::Bytes::new(),
                    bytes::Bytes::from(vec![7u8; 70_000]),
                ]);
            }
        }
        fn admit(&self, _: &str, _: Option<&str>) -> Result<Access, Refusal> {
            Ok(Access::all())
        }
        fn fingerprint(&self) -> String {
            "f".repeat(64)
        }
    }
    let listener = Listener::bind("127.0.0.1:0".parse().unwrap(), None).unwrap();
    let http = HttpServer::start(vec![listener], Arc::new(Fixed), HttpLimits::default()).unwrap();
    let addr = http.local_addrs()[0];
    let r = get(addr, "/fetch/room/cam/video");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    let mut want = b"ab".to_vec();
    want.extend(vec![7u8; 70_000]);
    assert_eq!(r.body, want);
    assert_eq!(get(addr, "/fetch/room/cam/audio").status, 404);
    assert_eq!(get(addr, "/announced/p").text(), "p:a\np:z");
    assert_eq!(get(addr, "/certificate.sha256").text(), "f".repeat(64));
    http.stop();
}

/// `/fetch` answers with the newest complete group of a real publisher's track, waits for the
/// next one when none is complete yet, and is 404 for what nobody publishes.
#[test]
fn fetch_returns_the_latest_complete_group() {
    use bytes::Bytes;
    let server = relay(false);
    let http = server.http_addr().unwrap();
    assert_eq!(get(http, "/fetch/demo/video").status, 404);

    let publisher = connect(&server, ClientVerify::Disabled).unwrap();
    publisher.send(AppCmd::Publish {
        path: "demo".into(),
    });
    wait_body(http, "/announced", "demo");
    let frame = |seq: u64, payload: &'static [u8]| AppCmd::Frame {
        path: "demo".into(),
        track: "video".into(),
        seq,
        timestamp: seq,
        payload: Bytes::from_static(payload),
    };
    let done = |seq: u64| AppCmd::GroupDone {
        path: "demo".into(),
        track: "video".into(),
        seq,
    };
    // Nothing complete yet: the fetch waits for group 0 to finish.
    publisher.send(frame(0, b"ab"));
    let waiting = std::thread::spawn(move || get(http, "/fetch/demo/video"));
    std::thread::sleep(Duration::from_millis(300));
    publisher.send(frame(0, b""));
    publisher.send(frame(0, b"cde"));
    publisher.send(done(0));
    let r = waiting.join().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"abcde");
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));

    // Group 1 complete, group 2 in progress: the newest complete one is served at once.
    publisher.send(frame(1, b"one"));
    publisher.send(done(1));
    publisher.send(frame(2, b"unfinished"));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = get(http, "/fetch/demo/video");
        if r.body == b"one" {
            break;
        }
        assert!(Instant::now() < deadline, "got {:?}", r.text());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(get(http, "/fetch/nobody/video").status, 404);
    publisher.close();
    server.stop().unwrap();
}

/// `/announced` and `/fetch` take the token from `?jwt=`: 401 without a valid one, 403 for a
/// path it grants nothing on, and a listing holds only what the token may subscribe to.
#[test]
fn endpoints_check_the_token() {
    use bytes::Bytes;
    let mut config = support::config(2, moq_relay::relay::Limits::default());
    config.web.http = Some("127.0.0.1:0".parse().unwrap());
    config.auth = tokens::keyed(&[], &[]);
    let server = support::start(&config);
    let http = server.http_addr().unwrap();
    let all = tokens::token(serde_json::json!({"put": [""], "get": [""]}));
    let mut opts = ClientOptions::new(server.local_addr(), Version::Lite05);
    opts.path = format!("?jwt={all}");
    let publisher = support::session(opts, WAIT).unwrap().0;
    for path in ["demo/a", "other/b"] {
        publisher.send(AppCmd::Publish { path: path.into() });
        publisher.send(AppCmd::Frame {
            path: path.into(),
            track: "video".into(),
            seq: 0,
            timestamp: 0,
            payload: Bytes::from_static(b"group"),
        });
        publisher.send(AppCmd::GroupDone {
            path: path.into(),
            track: "video".into(),
            seq: 0,
        });
    }
    wait_body(http, &format!("/announced?jwt={all}"), "demo/a\nother/b");

    let demo = tokens::token(serde_json::json!({"root": "demo", "get": [""]}));
    assert_eq!(get(http, "/announced").status, 401);
    assert_eq!(get(http, "/announced?jwt=x.y.z").status, 401);
    assert_eq!(
        get(http, &format!("/announced?jwt={demo}")).text(),
        "demo/a"
    );
    assert_eq!(
        get(http, &format!("/announced/demo?jwt={demo}")).text(),
        "a"
    );
    assert_eq!(
        get(http, &format!("/announced/other?jwt={demo}")).status,
        403
    );
    let r = get(http, &format!("/fetch/demo/a/video?jwt={demo}"));
    assert_eq!((r.status, r.body.as_slice()), (200, &b"group"[..]));
    assert_eq!(get(http, "/fetch/demo/a/video").status, 401);
    assert_eq!(
        get(http, &format!("/fetch/other/b/video?jwt={demo}")).status,
        403
    );
    let writer = tokens::token(serde_json::json!({"root": "demo", "put": [""]}));
    assert_eq!(
        get(http, &format!("/fetch/demo/a/video?jwt={writer}")).status,
        403
    );
    publisher.close();
    server.stop().unwrap();
}

/// `/announced` and `/fetch` on a relay serve what it learned from a peer relay it dials: the
/// fetch subscribes upstream for the group.
#[test]
fn endpoints_serve_broadcasts_of_peer_relays() {
    use bytes::Bytes;
    let origin = support::relay(1);
    let mut edge_config = support::config(1, moq_relay::relay::Limits::default());
    edge_config.web.http = Some("127.0.0.1:0".parse().unwrap());
    let up = format!("moql://127.0.0.1:{}/", origin.local_addr().port());
    edge_config.cluster.peers = vec![moq_relay::cluster::parse_peer(&up, None).unwrap()];
    let edge = support::start(&edge_config);
    let http = edge.http_addr().unwrap();
    let publisher = connect(&origin, ClientVerify::Disabled).unwrap();
    publisher.send(AppCmd::Publish {
        path: "far/cam".into(),
    });
    publisher.send(AppCmd::Frame {
        path: "far/cam".into(),
        track: "video".into(),
        seq: 3,
        timestamp: 3,
        payload: Bytes::from_static(b"from the origin"),
    });
    publisher.send(AppCmd::GroupDone {
        path: "far/cam".into(),
        track: "video".into(),
        seq: 3,
    });
    wait_body(http, "/announced/far", "cam");
    let r = get(http, "/fetch/far/cam/video");
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, &b"from the origin"[..])
    );
    publisher.close();
    for r in [edge, origin] {
        r.stop().unwrap();
    }
}
