//! Where a load run connects and how: the URL forms the reference clients accept, the moq-lite
//! version to speak, and how the server's certificate is checked.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use serde::Serialize;

use moq_relay::lite::Version;
use moq_relay::model::path;
use moq_relay::quic::tls::ClientVerify;
use moq_relay::session::IETF_VERSIONS;
use moq_relay::web;

/// How sessions reach the relay; the session code differs only in how streams open and are
/// accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// moq-lite directly on QUIC streams; the version comes from the ALPN (or, for `moql`, the
    /// SETUP exchange).
    Quic,
    /// moq-lite inside a WebTransport session (HTTP/3, ALPN `h3`), as browsers speak it; the
    /// version comes from `WT-Available-Protocols`/`WT-Protocol`.
    WebTransport,
}

impl std::str::FromStr for Transport {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "quic" => Ok(Self::Quic),
            "webtransport" | "wt" => Ok(Self::WebTransport),
            other => Err(format!("--transport `{other}` is not quic or webtransport")),
        }
    }
}

/// What the user asked for.
#[derive(Clone, Debug)]
pub struct TargetOptions {
    /// `moql://host:port/path`, `https://host:port/path`, or `http://host:port/path`.
    pub url: String,
    /// `lite-01` ... `lite-05`, or an ALPN (`moq-lite-05`, `moql`); `None` follows the URL.
    pub version: Option<String>,
    /// `None` follows the URL: raw QUIC for `moql://`, WebTransport for `https://`/`http://`.
    pub transport: Option<Transport>,
    pub tls_disable_verify: bool,
    /// SHA-256 fingerprints (hex) to pin instead of checking the chain.
    pub tls_fingerprints: Vec<String>,
    /// How long the fingerprint fetch and name resolution may take.
    pub timeout: Duration,
}

impl TargetOptions {
    pub fn new(url: &str) -> Self {
        Self {
            url: url.into(),
            version: None,
            transport: None,
            tls_disable_verify: false,
            tls_fingerprints: Vec::new(),
            timeout: Duration::from_secs(5),
        }
    }
}

/// A resolved target, ready to dial.
#[derive(Clone, Debug)]
pub struct Target {
    pub url: String,
    pub addr: SocketAddr,
    /// SNI and the name the certificate must carry.
    pub server_name: String,
    pub transport: Transport,
    /// Offered in the TLS handshake, in preference order.
    pub alpns: Vec<String>,
    /// WebTransport: the subprotocols offered in `WT-Available-Protocols`, in preference order.
    pub web_protocols: Vec<String>,
    /// WebTransport: the CONNECT `:path` (URL path and query).
    pub request_path: String,
    /// Offered in CLIENT_SETUP when the ALPN is `moql`.
    pub setup_versions: Vec<Version>,
    /// The normalised URL path: the session root.
    pub root: String,
    /// What lite-05 SETUP carries as its Path parameter: the URL path plus `?query`.
    pub setup_path: Option<String>,
    pub verify: ClientVerify,
}

#[derive(Debug, PartialEq, Eq)]
struct Url {
    scheme: String,
    host: String,
    port: Option<u16>,
    path: String,
    query: Option<String>,
}

fn parse_url(url: &str) -> Result<Url, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("--url `{url}` has no scheme (use moql://, https:// or http://)"))?;
    let scheme = scheme.to_ascii_lowercase();
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (path, query) = match tail.split_once('?') {
        Some((p, q)) => (p, Some(q.to_string())),
        None => (tail, None),
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("--url `{url}`: unclosed `[` in the host"))?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("--url `{url}`: junk after the host"))?,
            ),
        };
        (h.to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err(format!("--url `{url}` has no host"));
    }
    let port = port
        .map(|p| {
            p.parse::<u16>()
                .ok()
                .filter(|&n| n != 0)
                .ok_or_else(|| format!("--url `{url}`: `{p}` is not a port"))
        })
        .transpose()?;
    Ok(Url {
        scheme,
        host,
        port,
        path: path.to_string(),
        query,
    })
}

/// The protocol names (ALPNs or WebTransport subprotocols) and SETUP versions for a
/// `--version` value; `None` offers every version, newest first.
fn version_choice(v: Option<&str>) -> Result<(Vec<String>, Vec<Version>), String> {
    let legacy = vec![Version::Lite02, Version::Lite01];
    let version = match v {
        None => {
            let all = Version::ALPNS.iter().map(|a| a.to_string()).collect();
            return Ok((all, legacy));
        }
        Some("lite-01" | "01") => Version::Lite01,
        Some("lite-02" | "02") => Version::Lite02,
        Some("lite-03" | "03" | "moq-lite-03") => Version::Lite03,
        Some("lite-04" | "04" | "moq-lite-04") => Version::Lite04,
        Some("lite-05" | "05" | "moq-lite-05") => Version::Lite05,
        Some("moql") => return Ok((vec![Version::LEGACY_ALPN.into()], legacy)),
        Some(other) => {
            // IETF moq-transport: `moqt-NN` (its ALPN) or `moq-transport-NN` (the reference's
            // name), for the drafts the relay runs sessions for.
            let alpn = other.replace("moq-transport-", "moqt-");
            if let Some(v) = IETF_VERSIONS.into_iter().find(|v| v.alpn() == alpn) {
                return Ok((vec![v.alpn().into()], Vec::new()));
            }
            return Err(format!(
                "--version `{other}` is not one of lite-01 .. lite-05, moq-lite-03/04/05, moql \
                 or moqt-16 .. moqt-19"
            ));
        }
    };
    Ok((vec![version.alpn().into()], vec![version]))
}

impl Target {
    /// Parse, resolve and (for `http://`) fetch the certificate fingerprint.
    pub fn resolve(opts: &TargetOptions) -> Result<Self, String> {
        let url = parse_url(&opts.url)?;
        let transport = match (url.scheme.as_str(), opts.transport) {
            ("moql", None | Some(Transport::Quic)) => Transport::Quic,
            ("moql", Some(Transport::WebTransport)) => {
                return Err("--transport webtransport needs an https:// or http:// URL".into());
            }
            ("https" | "http", t) => t.unwrap_or(Transport::WebTransport),
            (other, _) => {
                return Err(format!(
                    "--url scheme `{other}://` is not supported (moql://, https:// or http://)"
                ));
            }
        };
        let port = match (url.port, url.scheme.as_str()) {
            (Some(p), _) => p,
            (None, "http") => {
                return Err(format!(
                    "--url `{}`: http:// needs an explicit port (the relay's QUIC port, where it \
                     also serves /certificate.sha256 over TCP)",
                    opts.url
                ));
            }
            (None, _) => 443,
        };
        // Raw QUIC offers one version by ALPN: `moql` (SETUP) for moql://, the newest for
        // https://, unless --version says otherwise. WebTransport offers them all in
        // WT-Available-Protocols (or the one asked for) and lets the relay pick.
        let version = opts.version.as_deref();
        let (protocols, setup_versions) = match (transport, url.scheme.as_str(), version) {
            (Transport::Quic, "moql", None) => version_choice(Some("moql"))?,
            (Transport::Quic, _, None) => version_choice(Some("lite-05"))?,
            (_, _, v) => version_choice(v)?,
        };
        let (alpns, web_protocols) = match transport {
            Transport::Quic => (protocols, Vec::new()),
            Transport::WebTransport => (vec![String::from_utf8_lossy(web::ALPN).into()], protocols),
        };
        let addr = resolve_host(&url.host, port, opts.timeout)?;
        let verify = if opts.tls_disable_verify {
            ClientVerify::Disabled
        } else if url.scheme == "http" {
            let fp = fetch_fingerprint(addr, &url.host, port, opts.timeout)?;
            ClientVerify::Fingerprints(vec![fp])
        } else if !opts.tls_fingerprints.is_empty() {
            ClientVerify::Fingerprints(opts.tls_fingerprints.clone())
        } else {
            ClientVerify::Roots(Vec::new())
        };
        let root = path::normalize(&url.path, 1024)
            .map_err(|e| format!("--url path `{}`: {e:?}", url.path))?;
        let setup_path = match (&url.query, root.is_empty()) {
            (None, true) => None,
            (None, false) => Some(format!("/{root}")),
            (Some(q), _) => Some(format!("/{root}?{q}")),
        };
        let request_path = match &url.query {
            Some(q) => format!("/{}?{q}", url.path.trim_start_matches('/')),
            None => format!("/{}", url.path.trim_start_matches('/')),
        };
        Ok(Self {
            url: opts.url.clone(),
            addr,
            server_name: url.host,
            transport,
            alpns,
            web_protocols,
            request_path,
            setup_versions,
            root,
            setup_path,
            verify,
        })
    }

    /// Whether the session root travels with the session: the CONNECT path on WebTransport,
    /// the SETUP Path on raw-QUIC lite-05. Older raw-QUIC versions have no path, so the root
    /// is put in front of every broadcast path instead.
    pub fn root_in_band(&self) -> bool {
        match self.transport {
            Transport::WebTransport => true,
            Transport::Quic => self
                .alpns
                .iter()
                .all(|a| a == Version::Lite05.alpn() || a.starts_with("moqt-")),
        }
    }
}

fn resolve_host(host: &str, port: u16, timeout: Duration) -> Result<SocketAddr, String> {
    let host_port = format!("{host}:{port}");
    let (tx, rx) = std::sync::mpsc::channel();
    let query = host_port.clone();
    // getaddrinfo has no timeout of its own.
    std::thread::spawn(move || {
        let _ = tx.send(query.to_socket_addrs().map(|mut a| a.next()));
    });
    match rx.recv_timeout(timeout) {
        Ok(Ok(Some(addr))) => Ok(addr),
        Ok(Ok(None)) => Err(format!("--url host `{host}` resolves to no address")),
        Ok(Err(e)) => Err(format!("--url host `{host}` does not resolve: {e}")),
        Err(_) => Err(format!(
            "--url host `{host}` did not resolve within {timeout:?}"
        )),
    }
}

/// GET `http://host:port/certificate.sha256` and return the hex fingerprint it serves.
fn fetch_fingerprint(
    addr: SocketAddr,
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<String, String> {
    let what = format!("http://{host}:{port}/certificate.sha256");
    let fail = |e: &dyn std::fmt::Display| format!("fetching {what}: {e}");
    let deadline = Instant::now() + timeout;
    let mut tcp = TcpStream::connect_timeout(&addr, timeout).map_err(|e| fail(&e))?;
    tcp.set_write_timeout(Some(timeout)).map_err(|e| fail(&e))?;
    let host_header = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let request = format!(
        "GET /certificate.sha256 HTTP/1.0\r\nHost: {host_header}\r\nUser-Agent: moq-load\r\nConnection: close\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).map_err(|e| fail(&e))?;
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(fail(&"timed out"));
        }
        tcp.set_read_timeout(Some(left)).map_err(|e| fail(&e))?;
        match tcp.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(fail(&e)),
        }
        if response.len() > 64 * 1024 {
            return Err(fail(&"response too large"));
        }
    }
    parse_fingerprint_response(&response).map_err(|e| fail(&e))
}

fn parse_fingerprint_response(response: &[u8]) -> Result<String, String> {
    let text = std::str::from_utf8(response).map_err(|_| "response is not text".to_string())?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or("response has no header end")?;
    let status = head.lines().next().unwrap_or_default();
    let code = status.split_whitespace().nth(1).unwrap_or_default();
    if code != "200" {
        return Err(format!("server answered `{status}`"));
    }
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_string()
    };
    let fp: String = body.trim().chars().filter(|c| *c != ':').collect();
    if fp.len() != 64 || !fp.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!("`{}` is not a SHA-256 fingerprint", body.trim()));
    }
    Ok(fp.to_ascii_lowercase())
}

fn dechunk(mut body: &str) -> Result<String, String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").ok_or("bad chunked body")?;
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| "bad chunk size")?;
        if size == 0 {
            return Ok(out);
        }
        let chunk = rest.get(..size).ok_or("short chunk")?;
        out.push_str(chunk);
        body = rest
            .get(size..)
            .and_then(|r| r.strip_prefix("\r\n"))
            .ok_or("bad chunk end")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("moql://relay.example:4443/room/a?jwt=x").unwrap(),
            Url {
                scheme: "moql".into(),
                host: "relay.example".into(),
                port: Some(4443),
                path: "/room/a".into(),
                query: Some("jwt=x".into()),
            }
        );
        let v6 = parse_url("https://[::1]:443").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", Some(443)));
        assert!(parse_url("relay:443").unwrap_err().contains("no scheme"));
        assert!(parse_url("moql://:443").unwrap_err().contains("no host"));
        assert!(
            parse_url("moql://h:99999")
                .unwrap_err()
                .contains("not a port")
        );
        assert!(parse_url("moql://h:0").unwrap_err().contains("not a port"));
    }

    #[test]
    fn targets_per_scheme_and_version() {
        let mut o = TargetOptions::new("moql://127.0.0.1:4443");
        o.tls_disable_verify = true;
        let t = Target::resolve(&o).unwrap();
        assert_eq!(t.transport, Transport::Quic);
        assert_eq!(t.alpns, ["moql"]);
        assert_eq!(t.setup_versions, [Version::Lite02, Version::Lite01]);
        assert!(!t.root_in_band());
        assert_eq!(t.addr, "127.0.0.1:4443".parse().unwrap());

        // https:// is WebTransport, offering every version.
        o.url = "https://127.0.0.1/anon/?jwt=abc".into();
        let t = Target::resolve(&o).unwrap();
        assert_eq!(t.transport, Transport::WebTransport);
        assert_eq!(t.alpns, ["h3"]);
        assert_eq!(
            t.web_protocols,
            ["moq-lite-05", "moq-lite-04", "moq-lite-03", "moql"]
        );
        assert_eq!(t.request_path, "/anon/?jwt=abc");
        assert_eq!(t.addr.port(), 443);
        assert_eq!(t.root, "anon");
        assert!(t.root_in_band());
        o.version = Some("lite-04".into());
        let t = Target::resolve(&o).unwrap();
        assert_eq!(
            (t.alpns.as_slice(), t.web_protocols.as_slice()),
            (&["h3".to_string()][..], &["moq-lite-04".to_string()][..])
        );

        // ... or raw QUIC with the newest ALPN, the root in SETUP.
        o.transport = Some(Transport::Quic);
        o.version = None;
        let t = Target::resolve(&o).unwrap();
        assert_eq!(t.alpns, ["moq-lite-05"]);
        assert_eq!(t.setup_path.as_deref(), Some("/anon?jwt=abc"));
        assert!(t.root_in_band());
        o.version = Some("lite-03".into());
        let t = Target::resolve(&o).unwrap();
        assert_eq!(t.alpns, ["moq-lite-03"]);
        assert!(!t.root_in_band());
        o.version = Some("lite-01".into());
        let t = Target::resolve(&o).unwrap();
        assert_eq!(
            (t.alpns[0].as_str(), t.setup_versions[0]),
            ("moql", Version::Lite01)
        );
        o.version = Some("moq-transport-18".into());
        let t = Target::resolve(&o).unwrap();
        assert_eq!(t.alpns, ["moqt-18"]);
        assert!(t.root_in_band());
        o.version = Some("moqt-15".into());
        assert!(Target::resolve(&o).unwrap_err().contains("moqt-16"));
        o.version = Some("lite-9".into());
        assert!(Target::resolve(&o).unwrap_err().contains("--version"));

        o.version = None;
        o.url = "moql://127.0.0.1:1".into();
        o.transport = Some(Transport::WebTransport);
        assert!(Target::resolve(&o).unwrap_err().contains("--transport"));
        o.transport = None;
        o.url = "wss://127.0.0.1:443".into();
        assert!(Target::resolve(&o).unwrap_err().contains("not supported"));
        o.url = "http://127.0.0.1/x".into();
        assert!(Target::resolve(&o).unwrap_err().contains("explicit port"));
        o.url = "moql://no-such-host.invalid:443".into();
        assert!(
            Target::resolve(&o)
                .unwrap_err()
                .contains("no-such-host.invalid")
        );
    }

    #[test]
    fn http_url_pins_the_served_fingerprint() {
        let fp = "ab".repeat(32);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let body = fp.clone();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut req = [0u8; 1024];
            let n = s.read(&mut req).unwrap();
            assert!(
                std::str::from_utf8(&req[..n])
                    .unwrap()
                    .starts_with("GET /certificate.sha256 ")
            );
            write!(
                s,
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\n{body}\n"
            )
            .unwrap();
        });
        let o = TargetOptions::new(&format!("http://127.0.0.1:{port}/room"));
        let t = Target::resolve(&o).unwrap();
        server.join().unwrap();
        match t.verify {
            ClientVerify::Fingerprints(f) => assert_eq!(f, [fp]),
            other => panic!("{other:?}"),
        }
        assert_eq!(t.transport, Transport::WebTransport);
    }

    #[test]
    fn fingerprint_responses() {
        let fp = "0f".repeat(32);
        let ok = format!("HTTP/1.1 200 OK\r\n\r\n{fp}\n");
        assert_eq!(parse_fingerprint_response(ok.as_bytes()).unwrap(), fp);
        let chunked = format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n20\r\n{}\r\n20\r\n{}\r\n0\r\n\r\n",
            &fp[..32],
            &fp[32..]
        );
        assert_eq!(parse_fingerprint_response(chunked.as_bytes()).unwrap(), fp);
        let missing = b"HTTP/1.1 404 Not Found\r\n\r\nnope";
        assert!(
            parse_fingerprint_response(missing)
                .unwrap_err()
                .contains("404")
        );
        let junk = b"HTTP/1.1 200 OK\r\n\r\nhello";
        assert!(
            parse_fingerprint_response(junk)
                .unwrap_err()
                .contains("not a SHA-256")
        );
    }

    #[test]
    fn closed_fingerprint_port_fails_fast() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let o = TargetOptions::new(&format!("http://127.0.0.1:{port}"));
        let e = Target::resolve(&o).unwrap_err();
        assert!(e.contains("certificate.sha256"), "{e}");
    }
}
