//! What a session may do, and who decides it: the auth layer answers a connection's path and
//! token with an [`Access`] or a [`Refusal`] through the [`Gate`] it implements, the session
//! layer asks it before a session exists, and the relay checks every announce, subscribe and
//! fetch against the answer.

use super::path;

/// Prefixes of absolute broadcast paths a session may publish and subscribe under, matched on
/// segment boundaries (`""` is everything), and when the right ends.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Access {
    pub publish: Vec<String>,
    pub subscribe: Vec<String>,
    /// Unix seconds after which the session is closed (a token's `exp`).
    pub expires: Option<u64>,
}

impl Access {
    /// Prefixes covered by another of the same list are dropped, so that each broadcast is
    /// matched (and asked for) once.
    pub fn new(publish: Vec<String>, subscribe: Vec<String>, expires: Option<u64>) -> Self {
        Self {
            publish: minimal(publish),
            subscribe: minimal(subscribe),
            expires,
        }
    }

    /// Everything, for ever: sessions we dialled, and relays without access control.
    pub fn all() -> Self {
        Self::new(vec![String::new()], vec![String::new()], None)
    }

    pub fn may_publish(&self, broadcast: &str) -> bool {
        self.publish.iter().any(|p| path::has_prefix(broadcast, p))
    }

    pub fn may_subscribe(&self, broadcast: &str) -> bool {
        self.subscribe
            .iter()
            .any(|p| path::has_prefix(broadcast, p))
    }

    pub fn is_empty(&self) -> bool {
        self.publish.is_empty() && self.subscribe.is_empty()
    }
}

fn minimal(mut prefixes: Vec<String>) -> Vec<String> {
    prefixes.sort();
    prefixes.dedup();
    let all = prefixes.clone();
    prefixes.retain(|p| !all.iter().any(|q| q != p && path::has_prefix(p, q)));
    prefixes
}

/// Why a connection gets nothing, as an HTTP status: 401 (no valid token) or 403 (a valid
/// token that grants nothing here). `reason` is for logs and the peer, never the token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub reason: String,
}

impl Refusal {
    pub fn forbidden(reason: impl Into<String>) -> Self {
        Self {
            status: 403,
            reason: reason.into(),
        }
    }
}

/// Decides what a connection to `path` (its URL or SETUP path, without the query) that sent
/// `token` (if any) may do. Shared by every core and the HTTP thread; must not block.
pub trait Gate: Send + Sync + std::fmt::Debug {
    fn admit(&self, path: &str, token: Option<&str>) -> Result<Access, Refusal>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn prefixes_are_minimal_and_matched_on_segments() {
        let a = Access::new(v(&["a/b", "a", "c/d", "a"]), v(&["x/y", "x/yz"]), None);
        assert_eq!(a.publish, v(&["a", "c/d"]));
        assert_eq!(a.subscribe, v(&["x/y", "x/yz"]));
        assert!(a.may_publish("a/q") && a.may_publish("c/d/e"));
        assert!(!a.may_publish("c") && !a.may_publish("ab"));
        assert!(a.may_subscribe("x/yz/1") && !a.may_subscribe("x"));
        assert_eq!(Access::all().publish, v(&[""]));
        assert!(Access::new(vec![], vec![], None).is_empty());
    }
}
