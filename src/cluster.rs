//! The relays this relay dials (`--cluster-connect`): their URLs as the reference writes them,
//! turned into what the session host dials. A peer relay is a session like any other, in the
//! client role: announcements and tracks flow both ways over the one connection, and hop ids
//! keep them from looping.

use std::net::{SocketAddr, ToSocketAddrs};

use crate::lite::Version;
use crate::model::path;

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
        let scheme = if self.web { "https" } else { "moql" };
        format!("{scheme}://{}:{}/{}", self.host, self.port, self.root)
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
        for bad in ["http://h/", "https://h/?cost=x", "https://", "moqt://h/"] {
            assert!(parse_peer(bad, None).is_err(), "{bad}");
        }
    }
}
