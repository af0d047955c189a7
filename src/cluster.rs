//! The relays this relay dials (`--cluster-connect`): their URLs as the reference writes them,
//! turned into what the session host dials. A peer relay is a session like any other, in the
//! client role: announcements and tracks flow both ways over the one connection, and hop ids
//! keep them from looping.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::lite::Version;
use crate::model::path;
use crate::quic::TransportLimits;
use crate::quic::tls::{self, ClientVerify};
use crate::relay::{Dialer, PeerLink};
use crate::session::{Dial, DialBook};

/// Hop ids on the wire are varints; the reference keeps them below 2^62 and draws random ones
/// below 2^53.
pub const MAX_ID: u64 = (1 << 62) - 1;

/// One peer to dial, parsed from its URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerUrl {
    /// WebTransport (`https://`) or raw QUIC moq-lite (`moql://`).
    pub web: bool,
    pub host: String,
    pub port: u16,
    /// The URL path, normalised: the session root on the peer.
    pub root: String,
    /// The query without `cost` (and with the cluster token added as `jwt` when it had none).
    pub query: Option<String>,
    /// `?cost=N`: carried for ranking once a wire version has cost; moq-lite-05 has none.
    pub cost: Option<u64>,
}

impl PeerUrl {
    /// The URL without its query, for logs (a token never appears in them).
    pub fn display(&self) -> String {
        format!(
            "{}://{}:{}/{}",
            self.scheme(),
            self.host(),
            self.port,
            self.root
        )
    }

    /// The peer's identity, as the reference spells it: the URL without its query, the host
    /// in lower case, no port when it is 443. Two relays of a gossip mesh compare these to
    /// agree on which of them dials.
    pub fn key(&self) -> String {
        let port = if self.port == 443 {
            String::new()
        } else {
            format!(":{}", self.port)
        };
        let host = self.host().to_ascii_lowercase();
        format!("{}://{host}{port}/{}", self.scheme(), self.root)
    }

    fn scheme(&self) -> &'static str {
        if self.web { "https" } else { "moql" }
    }

    /// The host as a URL writes it: an IPv6 address in brackets.
    fn host(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }

    /// The path to send: the WebTransport CONNECT path, or the lite-05 SETUP path, with the
    /// query.
    pub fn path(&self) -> String {
        match &self.query {
            Some(q) => format!("/{}?{q}", self.root),
            None => format!("/{}", self.root),
        }
    }

    /// The peer's address, resolved now.
    pub fn resolve(&self) -> Result<SocketAddr, String> {
        (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| format!("{}: {e}", self.display()))?
            .next()
            .ok_or_else(|| format!("{} resolves to no address", self.display()))
    }

    /// What the client role offers: WebTransport, or the moq-lite ALPNs newest first.
    pub fn alpns(&self) -> Vec<&'static [u8]> {
        if self.web {
            vec![crate::web::ALPN]
        } else {
            Version::ALPNS.iter().map(|a| a.as_bytes()).collect()
        }
    }
}

/// How the relay dials its peer relays: the QUIC and TLS settings they share, each peer's
/// slot in the session host's [`DialBook`], and host names resolved off the cores.
pub struct PeerDialer {
    book: Arc<DialBook>,
    verify: ClientVerify,
    identity: Option<(PathBuf, PathBuf)>,
    limits: TransportLimits,
    /// The cluster token, for peers whose URL has none.
    token: Option<String>,
    peers: Mutex<Peers>,
}

#[derive(Default)]
struct Peers {
    by_key: HashMap<String, usize>,
    /// By dial number: the URL, and whether a resolution of its host is under way.
    slots: Vec<(PeerUrl, bool)>,
}

/// The QUIC idle timeout of relay-to-relay links.
pub const PEER_IDLE: Duration = Duration::from_secs(10);

impl PeerDialer {
    /// A dialer whose dials get `verify` and `identity` for TLS and `limits` for QUIC (with
    /// the idle timeout of relay-to-relay links).
    pub fn new(
        verify: ClientVerify,
        identity: Option<(PathBuf, PathBuf)>,
        limits: &TransportLimits,
        token: Option<String>,
    ) -> Arc<Self> {
        Arc::new(Self {
            book: Arc::default(),
            verify,
            identity,
            // A peer relay that dies without a word is noticed within PEER_IDLE (QUIC takes
            // the smaller of the two sides' idle timeouts), and kept alive well inside it.
            limits: TransportLimits {
                idle_timeout: PEER_IDLE,
                keep_alive: Some(PEER_IDLE / 4),
                ..limits.clone()
            },
            token,
            peers: Mutex::default(),
        })
    }

    /// The dials, for the session hosts.
    pub fn book(&self) -> Arc<DialBook> {
        self.book.clone()
    }

    /// Add a `--cluster-connect` peer, resolved now (an error stops start-up).
    pub fn add_static(&self, peer: &PeerUrl) -> Result<PeerLink, String> {
        let dial = self.dial(peer)?;
        let mut peers = self.peers.lock().expect("peers");
        let n = self.book.push(Ok(dial));
        peers.by_key.insert(peer.key(), n);
        peers.slots.push((peer.clone(), false));
        Ok(Self::link(peer, n))
    }

    fn link(peer: &PeerUrl, dial: usize) -> PeerLink {
        PeerLink {
            dial,
            key: peer.key(),
            cost: peer.cost.unwrap_or(0),
        }
    }

    /// What the session host dials for `peer`, its host resolved (which may block).
    fn dial(&self, peer: &PeerUrl) -> Result<Dial, String> {
        let addr = peer.resolve()?;
        let tls = tls::client_config_with(&self.verify, &peer.alpns(), self.identity.as_ref())
            .map_err(|e| {
                format!("client.tls.cert/key (--client-tls-cert/--client-tls-key): {e}")
            })?;
        let quic = crate::quic::client_config(tls, &self.limits).map_err(|e| e.to_string())?;
        let path = peer.path();
        Ok(Dial {
            // Over WebTransport the moq-lite versions with an ALPN of their own.
            web_protocols: if peer.web {
                Version::ALPNS[..3].iter().map(|s| s.to_string()).collect()
            } else {
                Vec::new()
            },
            quic: Some(quic),
            ..Dial::new(addr, &peer.host, &path)
        })
    }

    /// Resolve slot `n`'s host on a thread of its own (a name server may take seconds; the
    /// cores never wait for one), then fill the slot.
    fn resolve_later(self: &Arc<Self>, n: usize) {
        let mut peers = self.peers.lock().expect("peers");
        let Some((peer, resolving)) = peers.slots.get_mut(n) else {
            return;
        };
        if std::mem::replace(resolving, true) {
            return;
        }
        let (peer, this) = (peer.clone(), self.clone());
        let spawned = std::thread::Builder::new()
            .name("moq-resolve".into())
            .spawn(move || {
                let slot = this.dial(&peer);
                this.book.set(n, slot);
                if let Some(s) = this.peers.lock().expect("peers").slots.get_mut(n) {
                    s.1 = false;
                }
            });
        if let Err(e) = spawned {
            peers.slots[n].1 = false;
            self.book.set(n, Err(format!("resolving: {e}")));
        }
    }
}

/// The dialer as the relay's cores use it, for peers that gossip finds.
impl Dialer for Arc<PeerDialer> {
    fn register(&self, url: &str) -> Result<PeerLink, String> {
        let peer = parse_peer(url, self.token.as_deref())?;
        let mut peers = self.peers.lock().expect("peers");
        if let Some(&n) = peers.by_key.get(&peer.key()) {
            return Ok(PeerDialer::link(&peer, n));
        }
        let literal = peer.host.parse::<IpAddr>().is_ok();
        let slot = match literal {
            true => self.dial(&peer),
            false => Err(format!("resolving {}", peer.host)),
        };
        let n = self.book.push(slot);
        peers.by_key.insert(peer.key(), n);
        peers.slots.push((peer.clone(), false));
        drop(peers);
        if !literal {
            self.resolve_later(n);
        }
        Ok(PeerDialer::link(&peer, n))
    }

    fn ready(&self, dial: usize) -> Result<(), String> {
        let err = match self.book.get(dial) {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        self.resolve_later(dial);
        Err(err)
    }
}

/// Parse one `--cluster-connect` value. `token` (the `--cluster-token` file's JWT) is added as
/// `?jwt=` unless the URL has a non-empty one. A bare `host` or `host:port` means
/// `https://host:port/`, as the reference accepts.
pub fn parse_peer(raw: &str, token: Option<&str>) -> Result<PeerUrl, String> {
    let raw = raw.trim();
    let full = if raw.contains("://") {
        raw.to_owned()
    } else {
        format!("https://{raw}/")
    };
    let (scheme, rest) = full.split_once("://").expect("has a scheme");
    let web = match scheme {
        "https" => true,
        "moql" => false,
        other => {
            return Err(format!(
                "`{raw}`: scheme `{other}` is not https (WebTransport) or moql (raw QUIC)"
            ));
        }
    };
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, url_path) = rest.split_once('/').unwrap_or((rest, ""));
    let (host, port) = split_host_port(authority).ok_or_else(|| format!("`{raw}`: bad host"))?;
    let root = path::normalize(url_path, 1024).map_err(|e| format!("`{raw}`: {e}"))?;
    let mut cost = None;
    let mut has_jwt = false;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let key = pair.split_once('=').map_or(pair, |(k, _)| k);
        match key {
            "cost" => {
                let v = path::query_param(pair, "cost")
                    .flatten()
                    .unwrap_or_default();
                cost = Some(
                    v.parse::<u64>()
                        .map_err(|_| format!("`{raw}`: cost `{v}` is not a number"))?,
                );
            }
            "jwt" => {
                has_jwt |= path::query_param(pair, "jwt").flatten().is_some();
                kept.push(pair.to_owned());
            }
            _ => kept.push(pair.to_owned()),
        }
    }
    if let (false, Some(t)) = (has_jwt, token) {
        kept.retain(|p| p != "jwt" && !p.starts_with("jwt="));
        kept.push(format!("jwt={t}"));
    }
    Ok(PeerUrl {
        web,
        host: host.to_owned(),
        port,
        root,
        query: (!kept.is_empty()).then(|| kept.join("&")),
        cost,
    })
}

/// `host`, `host:port`, `[v6]` or `[v6]:port` (443 when none).
fn split_host_port(authority: &str) -> Option<(&str, u16)> {
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (host, rest) = v6.split_once(']')?;
            (host, rest.strip_prefix(':'))
        }
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => 443,
    };
    (!host.is_empty() && !host.contains(['@', '/', ' '])).then_some((host, port))
}

/// The cluster token: the file's contents, trimmed; it must be a JWT's three parts.
pub fn read_token(file: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let token = text.trim().to_owned();
    let parts = token.split('.').count();
    let safe = token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if parts != 3 || !safe {
        return Err(format!("{}: not a JWT", file.display()));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_urls_as_the_reference_writes_them() {
        let p = parse_peer("https://relay.example:4443/root//x/?jwt=a.b.c&cost=5", None).unwrap();
        assert_eq!(
            p,
            PeerUrl {
                web: true,
                host: "relay.example".into(),
                port: 4443,
                root: "root/x".into(),
                query: Some("jwt=a.b.c".into()),
                cost: Some(5),
            }
        );
        assert_eq!(p.path(), "/root/x?jwt=a.b.c");
        assert_eq!(p.display(), "https://relay.example:4443/root/x");
        // The cluster token goes in only when the URL has none.
        let p = parse_peer("moql://[::1]:9000", Some("t.o.k")).unwrap();
        assert_eq!((p.web, p.host.as_str(), p.port), (false, "::1", 9000));
        assert_eq!(p.path(), "/?jwt=t.o.k");
        assert_eq!(
            parse_peer("https://h/?jwt=", Some("t.o.k")).unwrap().path(),
            "/?jwt=t.o.k"
        );
        assert_eq!(
            parse_peer("https://h/?jwt=x.y.z", Some("t.o.k"))
                .unwrap()
                .path(),
            "/?jwt=x.y.z"
        );
        // A bare host:port is https.
        let p = parse_peer("relay.example:4443", None).unwrap();
        assert_eq!((p.web, p.port, p.root.as_str()), (true, 4443, ""));
        // The identity of a peer: no query, host in lower case, no default port; an
        // advertisement under .internal/origins/ gives the URL back.
        let p = parse_peer("https://Relay.Example:443/a/?jwt=x.y.z&cost=2", None).unwrap();
        assert_eq!(p.key(), "https://relay.example/a");
        assert_eq!(
            parse_peer("moql://[::1]:9/", None).unwrap().key(),
            "moql://[::1]:9/"
        );
        let advertised = crate::relay::advertisement("https://b.example:4443/x");
        let advertised = path::normalize(&advertised, 1024).unwrap();
        let back = crate::relay::advertised_url(
            path::strip_prefix(&advertised, crate::relay::MESH_PREFIX).unwrap(),
        );
        assert_eq!(back, "https://b.example:4443/x");
        assert_eq!(
            crate::relay::advertised_url("b.example:4443"),
            "b.example:4443"
        );
        for bad in ["http://h/", "https://h/?cost=x", "https://", "moqt://h/"] {
            assert!(parse_peer(bad, None).is_err(), "{bad}");
        }
    }
}
