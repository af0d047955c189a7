//! Who may publish and subscribe where: JWTs as moq-token mints them (same keys, same claims,
//! same path rules), and public prefixes for connections without one. Given a connection's
//! path and its token, [`Auth::authorize`] answers with a [`Grant`] or says why not. Knows
//! nothing of sessions or transports; the token comes in as a string.

mod claims;
mod key;

pub use claims::{Claims, Denied, Grant, Scope};
pub use key::{Key, check_kid};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::Validation;

use crate::model::{Access, Gate, Refusal};

/// Where verification keys come from.
#[derive(Debug)]
pub enum Keys {
    /// No tokens accepted: public access only.
    None,
    /// One key; a token's `kid` is not looked at.
    One(Arc<Key>),
    /// `{dir}/{kid}.jwk`, chosen by the token's `kid`; files added later are found too.
    Dir {
        dir: PathBuf,
        loaded: Mutex<HashMap<String, Arc<Key>>>,
    },
}

/// Why a connection gets nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthError {
    /// No token, and no public prefix covers the path.
    ExpectedToken,
    /// A token, but no key to check it with (none configured, or no file for its `kid`).
    UnknownKey,
    /// The token is malformed, badly signed, signed with another algorithm, or expired.
    Invalid(String),
    Denied(Denied),
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ExpectedToken => f.write_str("a token is required for this path"),
            Self::UnknownKey => f.write_str("no key for this token"),
            Self::Invalid(why) => write!(f, "invalid token: {why}"),
            Self::Denied(d) => write!(f, "token denied: {d}"),
        }
    }
}

/// The relay's access rules.
#[derive(Debug)]
pub struct Auth {
    keys: Keys,
    public_publish: Vec<String>,
    public_subscribe: Vec<String>,
}

impl Auth {
    pub fn new(keys: Keys, public_publish: Vec<String>, public_subscribe: Vec<String>) -> Self {
        Self {
            keys,
            public_publish,
            public_subscribe,
        }
    }

    /// Everything is public: the development setting (`--auth-public ""`).
    pub fn open() -> Self {
        Self::new(Keys::None, vec![String::new()], vec![String::new()])
    }

    /// Load `dir`'s `*.jwk` files now, so that a bad one stops start-up; the error names it.
    pub fn key_dir(dir: &Path) -> Result<Keys, String> {
        let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut loaded = HashMap::new();
        for entry in entries {
            let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
            let Some(kid) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".jwk"))
            else {
                continue;
            };
            check_kid(kid).map_err(|e| format!("{}: {e}", path.display()))?;
            let key = Key::from_file(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            loaded.insert(kid.to_owned(), Arc::new(key));
        }
        Ok(Keys::Dir {
            dir: dir.to_owned(),
            loaded: Mutex::new(loaded),
        })
    }

    /// What a connection to `conn` (its path) with `token` (if it sent one) may do, at `now`
    /// (Unix seconds). A token is never merged with public access.
    pub fn authorize(&self, conn: &str, token: Option<&str>, now: u64) -> Result<Grant, AuthError> {
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            let claims = Claims::public(conn, &self.public_publish, &self.public_subscribe)
                .ok_or(AuthError::ExpectedToken)?;
            return claims.authorize(conn).map_err(AuthError::Denied);
        };
        let claims = self.verify(token, now)?;
        claims.authorize(conn).map_err(AuthError::Denied)
    }

    /// The token's claims, once its signature, algorithm, expiry and key scope check out.
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, AuthError> {
        let invalid = |e: jsonwebtoken::errors::Error| AuthError::Invalid(e.to_string());
        let header = jsonwebtoken::decode_header(token).map_err(invalid)?;
        let key = self.key(header.kid.as_deref())?;
        // The header's algorithm must be the key's; no claim is required; expiry has no
        // leeway; a token with an audience is refused (none is expected): as moq-token.
        let mut validation = Validation::new(key.alg);
        validation.required_spec_claims.clear();
        validation.leeway = 0;
        validation.validate_exp = false;
        let data =
            jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation).map_err(invalid)?;
        let claims = data.claims;
        if claims.exp.is_some_and(|exp| exp < now) {
            return Err(AuthError::Invalid("expired".into()));
        }
        if claims.nbf.is_some_and(|nbf| nbf > now) {
            return Err(AuthError::Invalid("not yet valid".into()));
        }
        if let Some(scope) = &key.scope {
            claims.within(scope).map_err(AuthError::Denied)?;
        }
        Ok(claims)
    }

    fn key(&self, kid: Option<&str>) -> Result<Arc<Key>, AuthError> {
        match &self.keys {
            Keys::None => Err(AuthError::UnknownKey),
            Keys::One(key) => Ok(key.clone()),
            Keys::Dir { dir, loaded } => {
                let kid = kid.ok_or(AuthError::Invalid("no `kid` in the header".into()))?;
                check_kid(kid).map_err(AuthError::Invalid)?;
                let mut loaded = loaded.lock().expect("auth keys lock");
                if let Some(key) = loaded.get(kid) {
                    return Ok(key.clone());
                }
                let key = Key::from_file(&dir.join(format!("{kid}.jwk")))
                    .map_err(|_| AuthError::UnknownKey)?;
                let key = Arc::new(key);
                loaded.insert(kid.to_owned(), key.clone());
                Ok(key)
            }
        }
    }
}

impl AuthError {
    /// The HTTP status that says it: 403 for a valid token that grants nothing on the path,
    /// 401 for everything else (no token, or none that checks out).
    pub fn status(&self) -> u16 {
        match self {
            Self::Denied(Denied::RootMismatch | Denied::NoAccess) => 403,
            _ => 401,
        }
    }
}

impl Grant {
    /// The grant as absolute prefixes, for the layers that hold absolute paths.
    pub fn access(&self) -> Access {
        let abs = |prefixes: &[String]| -> Vec<String> {
            prefixes
                .iter()
                .map(|p| claims::join(&self.root, p))
                .collect()
        };
        Access::new(abs(&self.publish), abs(&self.subscribe), self.expires)
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Gate for Auth {
    fn admit(&self, path: &str, token: Option<&str>) -> Result<Access, Refusal> {
        self.authorize(path, token, unix_now())
            .map(|g| g.access())
            .map_err(|e| Refusal {
                status: e.status(),
                reason: e.to_string(),
            })
    }
}

#[cfg(test)]
mod tests;
