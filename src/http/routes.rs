//! Request routing: every response carries `Access-Control-Allow-Origin: *` so that pages on
//! any origin can read it.

use std::net::SocketAddr;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use super::conn::Chunks;
use super::{FETCH_TIMEOUT, FetchReply, Shared};
use crate::model::{Access, path};

type Reply = Response<Chunks>;

const ALLOW: &str = "GET, HEAD, OPTIONS";

/// Longest broadcast path or prefix accepted, as the session layer's limit.
const MAX_PATH: usize = 1024;

enum Route {
    Certificate,
    Announced(String),
    Fetch { broadcast: String, track: String },
}

pub(super) async fn handle(shared: &Shared, peer: SocketAddr, req: Request<Incoming>) -> Reply {
    let origin = &shared.origin;
    let route = match route(req.uri().path()) {
        Ok(Some(r)) => r,
        Ok(None) => return text(StatusCode::NOT_FOUND, "not found\n"),
        Err(why) => return text(StatusCode::BAD_REQUEST, why),
    };
    match *req.method() {
        Method::GET | Method::HEAD => {}
        Method::OPTIONS => return preflight(&req),
        _ => {
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(ALLOW));
            return r;
        }
    }
    let token = match path::query_param(req.uri().query().unwrap_or_default(), "jwt") {
        Some(t) => t,
        None => return text(StatusCode::BAD_REQUEST, "jwt is not UTF-8 once decoded\n"),
    };
    // What the token (or public access) lets this request read under `p`: 401 or 403 when
    // nothing, or when `whole` and not all of `p`.
    let admit = |p: &str, whole: bool| -> Result<Access, (StatusCode, String)> {
        let access = origin.admit(p, token.as_deref()).map_err(|r| {
            tracing::info!(%peer, path = p, status = r.status, reason = %r.reason, "http request refused");
            let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::UNAUTHORIZED);
            (status, format!("{}\n", r.reason))
        })?;
        let some = access.subscribe.iter().any(|s| path::has_prefix(s, p));
        if !access.may_subscribe(p) && (whole || !some) {
            return Err((StatusCode::FORBIDDEN, "no subscribe grant here\n".into()));
        }
        Ok(access)
    };
    match route {
        Route::Certificate => text(StatusCode::OK, origin.fingerprint()),
        Route::Announced(prefix) => match admit(&prefix, false) {
            Ok(access) => {
                let mut paths = origin.announced(&prefix);
                paths.retain(|p| {
                    path::join(&prefix, p, usize::MAX).is_ok_and(|full| access.may_subscribe(&full))
                });
                paths.sort();
                text(StatusCode::OK, paths.join("\n"))
            }
            Err((status, why)) => text(status, why),
        },
        Route::Fetch { broadcast, track } => match admit(&broadcast, true) {
            Ok(_) => fetch(shared, &broadcast, &track).await,
            Err((status, why)) => text(status, why),
        },
    }
}

/// Wait for the group without holding a thread: the core answers through the reply, and
/// gives up on it once this request is gone (timed out, or its client left).
async fn fetch(shared: &Shared, broadcast: &str, track: &str) -> Reply {
    let Ok(_permit) = shared.fetches.try_acquire() else {
        tracing::debug!(limit = "max_fetches", "http fetch refused");
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many fetches in flight\n",
        );
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    shared.origin.fetch(broadcast, track, FetchReply(tx));
    match tokio::time::timeout(FETCH_TIMEOUT, rx).await {
        Ok(Ok(frames)) => {
            let mut r = Response::new(Chunks::new(frames));
            headers(&mut r, StatusCode::OK, "application/octet-stream");
            r
        }
        _ => text(StatusCode::NOT_FOUND, "no such track or no group yet\n"),
    }
}

/// The route for a request path; `Err` for a path that names a route but is malformed.
fn route(raw: &str) -> Result<Option<Route>, &'static str> {
    let decoded = percent_decode(raw).ok_or("bad percent-encoding in path\n")?;
    let norm = |p: &str| path::normalize(p, MAX_PATH).map_err(|_| "path too long or too deep\n");
    if decoded == "/certificate.sha256" {
        return Ok(Some(Route::Certificate));
    }
    if decoded == "/announced" {
        return Ok(Some(Route::Announced(String::new())));
    }
    if let Some(prefix) = decoded.strip_prefix("/announced/") {
        return Ok(Some(Route::Announced(norm(prefix)?)));
    }
    if let Some(rest) = decoded.strip_prefix("/fetch/") {
        let rest = norm(rest)?;
        let Some((broadcast, track)) = rest.rsplit_once('/') else {
            return Err("expected /fetch/{broadcast}/{track}\n");
        };
        return Ok(Some(Route::Fetch {
            broadcast: broadcast.to_owned(),
            track: track.to_owned(),
        }));
    }
    Ok(None)
}

/// `%XX` escapes decoded; `None` for a bad escape or a result that is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Answer a CORS preflight: any origin may GET, with whatever headers it asks for.
fn preflight(req: &Request<Incoming>) -> Reply {
    let mut r = reply(StatusCode::NO_CONTENT, "text/plain", Bytes::new());
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(ALLOW),
    );
    if let Some(asked) = req.headers().get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
    }
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    r
}

fn text(status: StatusCode, body: impl Into<String>) -> Reply {
    reply(
        status,
        "text/plain; charset=utf-8",
        Bytes::from(body.into().into_bytes()),
    )
}

fn reply(status: StatusCode, content_type: &'static str, body: Bytes) -> Reply {
    let mut r = Response::new(Chunks::from(body));
    headers(&mut r, status, content_type);
    r
}

fn headers(r: &mut Reply, status: StatusCode, content_type: &'static str) {
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn routes_split_broadcast_and_track() {
        match route("/fetch/room/a%20b/video").unwrap() {
            Some(Route::Fetch { broadcast, track }) => {
                assert_eq!((broadcast.as_str(), track.as_str()), ("room/a b", "video"))
            }
            _ => panic!("not a fetch"),
        }
        assert!(route("/fetch/video").is_err());
        assert!(route("/fetch/").is_err());
        assert!(matches!(route("/announced"), Ok(Some(Route::Announced(p))) if p.is_empty()));
        assert!(matches!(route("/announced/"), Ok(Some(Route::Announced(p))) if p.is_empty()));
        assert!(matches!(route("/announced//room/"), Ok(Some(Route::Announced(p))) if p == "room"));
        assert!(matches!(
            route("/certificate.sha256"),
            Ok(Some(Route::Certificate))
        ));
        assert!(matches!(route("/"), Ok(None)));
        assert!(matches!(route("/announcedx"), Ok(None)));
        assert!(route("/announced/%zz").is_err());
        assert!(route("/announced/%ff").is_err());
        assert!(route(&format!("/announced/{}", "a/".repeat(40))).is_err());
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Fb%20c").unwrap(), "a/b c");
        assert_eq!(percent_decode("plain").unwrap(), "plain");
        assert!(percent_decode("%4").is_none());
        assert!(percent_decode("%").is_none());
        assert!(percent_decode("%+f").is_none());
    }
}
