//! Verification keys as moq-token writes them: a JWK, either as JSON or as unpadded base64url
//! of the JSON. Only the public half is used; the algorithm is the key's own, and a token
//! signed with any other is refused.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

use super::claims::Scope;

/// A key a token can be checked with.
pub struct Key {
    pub alg: Algorithm,
    pub kid: Option<String>,
    /// What tokens verified by this key may grant at most, when the key says.
    pub scope: Option<Scope>,
    pub(super) decoding: DecodingKey,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// The JWK fields moq-token writes (`kty` defaults to `oct` for its legacy files).
#[derive(Deserialize)]
struct Jwk {
    alg: String,
    #[serde(default)]
    kty: Option<String>,
    #[serde(default)]
    key_ops: Option<Vec<String>>,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    scope: Option<Scope>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    k: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
}

/// Shortest HMAC secret moq-token accepts.
const MIN_SECRET: usize = 32;

impl Key {
    /// Read a key file; the error says what is wrong with it (the caller names the file).
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
        text.parse()
    }

    fn from_jwk(jwk: Jwk) -> Result<Self, String> {
        let alg = algorithm(&jwk.alg)?;
        if let Some(ops) = &jwk.key_ops
            && !ops.iter().any(|o| o == "verify")
        {
            return Err("key_ops has no \"verify\"".into());
        }
        let kty = jwk.kty.as_deref().unwrap_or("oct");
        let field = |v: &Option<String>, name: &str| -> Result<Vec<u8>, String> {
            let v = v
                .as_deref()
                .ok_or_else(|| format!("{kty} key without `{name}`"))?;
            bytes(v).map_err(|e| format!("`{name}`: {e}"))
        };
        let crv = jwk.crv.as_deref().unwrap_or_default();
        let decoding = match (kty, alg) {
            ("oct", Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) => {
                let k = field(&jwk.k, "k")?;
                if k.len() < MIN_SECRET {
                    return Err(format!(
                        "secret of {} bytes; at least {MIN_SECRET}",
                        k.len()
                    ));
                }
                DecodingKey::from_secret(&k)
            }
            ("EC", Algorithm::ES256 | Algorithm::ES384) => {
                let (want, size) = if alg == Algorithm::ES256 {
                    ("P-256", 32)
                } else {
                    ("P-384", 48)
                };
                if crv != want {
                    return Err(format!("{:?} needs curve {want}, not `{crv}`", alg));
                }
                let (x, y) = (field(&jwk.x, "x")?, field(&jwk.y, "y")?);
                if x.len() != size || y.len() != size {
                    return Err(format!("{want} coordinates must be {size} bytes"));
                }
                let mut point = Vec::with_capacity(1 + 2 * size);
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                DecodingKey::from_ec_der(&point)
            }
            (
                "RSA",
                Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512,
            ) => DecodingKey::from_rsa_raw_components(&field(&jwk.n, "n")?, &field(&jwk.e, "e")?),
            ("OKP", Algorithm::EdDSA) => {
                if crv != "Ed25519" {
                    return Err(format!("EdDSA needs curve Ed25519, not `{crv}`"));
                }
                let x = field(&jwk.x, "x")?;
                if x.len() != 32 {
                    return Err("Ed25519 public key must be 32 bytes".into());
                }
                DecodingKey::from_ed_der(&x)
            }
            (kty, _) => {
                return Err(format!("key type `{kty}` cannot be used with {}", jwk.alg));
            }
        };
        if let Some(kid) = &jwk.kid {
            check_kid(kid)?;
        }
        Ok(Self {
            alg,
            kid: jwk.kid,
            scope: jwk.scope,
            decoding,
        })
    }
}

impl std::str::FromStr for Key {
    type Err = String;

    /// JSON when the text starts with `{`, else base64url (padded or not) of the JSON.
    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let json = if text.starts_with('{') {
            text.as_bytes().to_vec()
        } else {
            bytes(text).map_err(|e| format!("neither JSON nor base64url of it: {e}"))?
        };
        let jwk: Jwk = serde_json::from_slice(&json).map_err(|e| format!("not a JWK: {e}"))?;
        Self::from_jwk(jwk)
    }
}

fn algorithm(name: &str) -> Result<Algorithm, String> {
    Ok(match name {
        "HS256" => Algorithm::HS256,
        "HS384" => Algorithm::HS384,
        "HS512" => Algorithm::HS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "EdDSA" => Algorithm::EdDSA,
        other => return Err(format!("unsupported algorithm `{other}`")),
    })
}

/// base64url, unpadded first and padded accepted, as moq-token reads it.
fn bytes(v: &str) -> Result<Vec<u8>, base64::DecodeError> {
    URL_SAFE_NO_PAD.decode(v).or_else(|_| URL_SAFE.decode(v))
}

/// A key id as moq-token allows: 1 to 128 characters of `[A-Za-z0-9_-]`, so that it can
/// name a file safely.
pub fn check_kid(kid: &str) -> Result<(), String> {
    let ok = (1..=128).contains(&kid.len())
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!("bad key id `{kid}`"))
    }
}
