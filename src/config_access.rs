//! Who may connect and whom the relay dials: `[auth]` into the access rules, `[cluster]` into
//! the peers to dial, and the reference's duration values.

use std::path::PathBuf;
use std::sync::Arc;

use super::{BoolOrString, ClusterConfig, ConfigError, bad};
use crate::auth::{Auth, Key, Keys};
use crate::model::path;

/// The access rules: a key or a key directory for tokens, public prefixes (`[both, publish,
/// subscribe]`) for connections without one. With neither, start-up stops: a relay open to
/// everyone must say so (`--auth-public ""`).
pub(super) fn auth(
    key: Option<PathBuf>,
    key_dir: Option<PathBuf>,
    public: [Vec<String>; 3],
) -> Result<Auth, ConfigError> {
    let keys = match (key, key_dir) {
        (Some(_), Some(_)) => {
            return Err(bad(
                "auth.key (--auth-key)",
                "give auth.key or auth.key_dir (--auth-key-dir), not both",
            ));
        }
        (Some(file), None) => {
            let key = Key::from_file(&file)
                .map_err(|e| bad("auth.key (--auth-key)", format!("{}: {e}", file.display())))?;
            Keys::One(Arc::new(key))
        }
        (None, Some(dir)) => {
            Auth::key_dir(&dir).map_err(|e| bad("auth.key_dir (--auth-key-dir)", e))?
        }
        (None, None) => Keys::None,
    };
    let names = [
        "auth.public (--auth-public)",
        "auth.public_publish (--auth-public-publish)",
        "auth.public_subscribe (--auth-public-subscribe)",
    ];
    let mut lists: [Vec<String>; 3] = Default::default();
    for ((list, prefixes), name) in lists.iter_mut().zip(public).zip(names) {
        for p in prefixes {
            let p = crate::model::path::normalize(&p, MAX_PUBLIC_PREFIX)
                .map_err(|e| bad(name, format!("`{p}`: {e}")))?;
            list.push(p);
        }
    }
    let [both, mut publish, mut subscribe] = lists;
    if matches!(keys, Keys::None) && both.is_empty() && publish.is_empty() && subscribe.is_empty() {
        return Err(bad(
            "auth",
            "nobody may connect: give --auth-key FILE or --auth-key-dir DIR for tokens, or \
             --auth-public PREFIX for anonymous access (--auth-public \"\" opens everything)",
        ));
    }
    publish.extend(both.iter().cloned());
    subscribe.extend(both);
    Ok(Auth::new(keys, publish, subscribe))
}

/// The peers to dial, each URL checked now (its host is resolved at start).
pub(super) fn cluster(
    connect: Vec<String>,
    id: Option<u64>,
    token: Option<PathBuf>,
) -> Result<ClusterConfig, ConfigError> {
    if id.is_some_and(|id| id == 0 || id > crate::cluster::MAX_ID) {
        return Err(bad(
            "cluster.id (--cluster-id)",
            "must be non-zero and below 2^62",
        ));
    }
    let token = match token {
        Some(f) => Some(
            crate::cluster::read_token(&f)
                .map_err(|e| bad("cluster.token (--cluster-token)", e))?,
        ),
        None => None,
    };
    let peers = connect
        .iter()
        .map(|raw| crate::cluster::parse_peer(raw, token.as_deref()))
        .collect::<Result<_, _>>()
        .map_err(|e| bad("cluster.connect (--cluster-connect)", e))?;
    Ok(ClusterConfig {
        id,
        peers,
        token,
        ..ClusterConfig::default()
    })
}

/// `[cluster] node` and `mesh`: gossip needs a node URL that peers can dial; the old spelling
/// `mesh = "<url>"` names the node.
pub(super) fn mesh_config(
    node: Option<String>,
    mesh: Option<BoolOrString>,
    warnings: &mut Vec<String>,
) -> Result<(Option<String>, bool), ConfigError> {
    let (node, mesh) = match mesh {
        None | Some(BoolOrString::Bool(false)) => (node, false),
        Some(BoolOrString::Bool(true)) => (node, true),
        Some(BoolOrString::Str(url)) => {
            if node.as_ref().is_some_and(|n| *n != url) {
                return Err(bad(
                    "cluster.mesh (--cluster-mesh)",
                    format!("`{url}` is not cluster.node (--cluster-node)"),
                ));
            }
            warnings.push(format!(
                "config cluster.mesh `{url}`: a URL there is the old spelling; use cluster.node and cluster.mesh = true"
            ));
            (Some(url), true)
        }
    };
    if let Some(n) = &node {
        let peer = crate::cluster::parse_peer(n, None)
            .map_err(|e| bad("cluster.node (--cluster-node)", e))?;
        if peer.query.as_deref().is_some_and(|q| q.contains("jwt=")) {
            return Err(bad(
                "cluster.node (--cluster-node)",
                "a token in the advertised URL would be public; use cluster.token",
            ));
        }
        let at = crate::relay::advertisement(n);
        path::normalize(&at, crate::model::SessionLimits::default().max_path)
            .map_err(|e| bad("cluster.node (--cluster-node)", e))?;
    }
    if mesh && node.is_none() {
        return Err(bad(
            "cluster.mesh (--cluster-mesh)",
            "gossip needs this relay's URL in cluster.node (--cluster-node)",
        ));
    }
    Ok((node, mesh))
}

/// `5s`, `250ms`, `1m`, `1h`, or `0`, as the reference's humantime values.
pub(super) fn duration(text: &str) -> Result<std::time::Duration, String> {
    let t = text.trim();
    if t == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    let at = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(at);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as 5s or 500ms"))?;
    let ms = match unit.trim() {
        "ms" => n,
        "s" => n.saturating_mul(1000),
        "m" => n.saturating_mul(60_000),
        "h" => n.saturating_mul(3_600_000),
        _ => return Err(format!("`{text}` is not a duration such as 5s or 500ms")),
    };
    Ok(std::time::Duration::from_millis(ms))
}

/// Longest public prefix accepted.
const MAX_PUBLIC_PREFIX: usize = 1024;
