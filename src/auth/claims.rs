//! The claims of a moq-token JWT and what they grant on one connection path, with moq-token's
//! path rules: slashes trimmed and collapsed, prefixes matched segment by segment.

use serde::{Deserialize, Deserializer};

use crate::model::path;

/// Longest path or prefix a token or configuration may name.
const MAX_PATH: usize = 1024;

/// What a token says (unknown claims are ignored).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Claims {
    pub root: String,
    /// Publish prefixes, relative to `root`.
    #[serde(deserialize_with = "one_or_many")]
    pub put: Vec<String>,
    /// Subscribe prefixes, relative to `root`.
    #[serde(deserialize_with = "one_or_many")]
    pub get: Vec<String>,
    pub exp: Option<u64>,
    pub iat: Option<u64>,
    /// Not before: moq-token never writes it and the reference ignores it; a token that has
    /// one is refused until then (RFC 7519 §4.1.5).
    pub nbf: Option<u64>,
}

/// The most a key lets its tokens grant: prefixes under `root`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Scope {
    pub root: String,
    #[serde(deserialize_with = "one_or_many")]
    pub put: Vec<String>,
    #[serde(deserialize_with = "one_or_many")]
    pub get: Vec<String>,
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => Vec::new(),
        Some(OneOrMany::One(s)) => vec![s],
        Some(OneOrMany::Many(v)) => v,
    })
}

/// What a connection may do: prefixes relative to its path (the session root), `""` meaning
/// everything under it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grant {
    /// The connection path, normalised: the session root.
    pub root: String,
    pub publish: Vec<String>,
    pub subscribe: Vec<String>,
    /// Unix seconds after which the grant is void.
    pub expires: Option<u64>,
}

/// Why a token or a public grant gives nothing on a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Denied {
    /// The token's root and the connection path do not overlap.
    RootMismatch,
    /// Nothing is left to publish or subscribe.
    NoAccess,
    /// A path in the token is malformed or too long.
    BadPath,
    /// The token asks for more than its key's scope.
    ScopeExceeded,
}

impl std::fmt::Display for Denied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::RootMismatch => "its root does not overlap this path",
            Self::NoAccess => "it grants nothing on this path",
            Self::BadPath => "a path in it is malformed or too long",
            Self::ScopeExceeded => "it asks for more than its key's scope",
        })
    }
}

pub(super) fn clean(p: &str) -> Result<String, Denied> {
    path::normalize(p, MAX_PATH).map_err(|_| Denied::BadPath)
}

/// `a/b`, or the non-empty side alone.
pub(super) fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_owned(),
        (_, true) => a.to_owned(),
        _ => format!("{a}/{b}"),
    }
}

/// How a connection path and a token's root overlap: the path is `root/below`, or the root
/// is `path/above`.
#[derive(Clone, Copy)]
enum Overlap<'a> {
    Below(&'a str),
    Above(&'a str),
}

impl Claims {
    /// What these claims grant on a connection to `conn` (a path, normalised or not).
    ///
    /// The path and the root must overlap. When the path goes below the root, each grant is
    /// narrowed to what lies under the path (a grant above the path covers all of it); when
    /// the path is above the root, each grant is moved under the root's remainder.
    pub fn authorize(&self, conn: &str) -> Result<Grant, Denied> {
        let conn = clean(conn)?;
        let root = clean(&self.root)?;
        let overlap = match (
            path::strip_prefix(&conn, &root),
            path::strip_prefix(&root, &conn),
        ) {
            (Some(below), _) => Overlap::Below(below),
            (None, Some(above)) => Overlap::Above(above),
            (None, None) => return Err(Denied::RootMismatch),
        };
        let narrow = |grants: &[String]| -> Result<Vec<String>, Denied> {
            let mut out = Vec::new();
            for g in grants {
                let g = clean(g)?;
                match overlap {
                    // Keep what the grant leaves of the path below the root.
                    Overlap::Below(below) => {
                        if let Some(rest) = path::strip_prefix(&g, below) {
                            out.push(rest.to_owned());
                        } else if path::has_prefix(below, &g) {
                            out.push(String::new());
                        }
                    }
                    Overlap::Above(above) => out.push(join(above, &g)),
                }
            }
            Ok(out)
        };
        let grant = Grant {
            publish: narrow(&self.put)?,
            subscribe: narrow(&self.get)?,
            expires: self.exp,
            root: conn,
        };
        if grant.publish.is_empty() && grant.subscribe.is_empty() {
            return Err(Denied::NoAccess);
        }
        Ok(grant)
    }

    /// Whether every grant lies within `scope` (absolute paths compared, per direction).
    pub fn within(&self, scope: &Scope) -> Result<(), Denied> {
        let root = clean(&self.root)?;
        let scope_root = clean(&scope.root)?;
        let inside = |grants: &[String], allowed: &[String]| -> Result<bool, Denied> {
            for g in grants {
                let g = join(&root, &clean(g)?);
                let mut ok = false;
                for a in allowed {
                    ok |= path::has_prefix(&g, &join(&scope_root, &clean(a)?));
                }
                if !ok {
                    return Ok(false);
                }
            }
            Ok(true)
        };
        if inside(&self.put, &scope.put)? && inside(&self.get, &scope.get)? {
            Ok(())
        } else {
            Err(Denied::ScopeExceeded)
        }
    }

    /// The claims of anonymous access: the public prefixes, at the top, when any overlaps
    /// the connection path in either direction.
    pub fn public(conn: &str, publish: &[String], subscribe: &[String]) -> Option<Claims> {
        let conn = clean(conn).ok()?;
        let overlaps = |p: &String| {
            clean(p).is_ok_and(|p| path::has_prefix(&conn, &p) || path::has_prefix(&p, &conn))
        };
        (publish.iter().any(overlaps) || subscribe.iter().any(overlaps)).then(|| Claims {
            put: publish.to_vec(),
            get: subscribe.to_vec(),
            ..Claims::default()
        })
    }
}
