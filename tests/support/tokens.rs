//! Tokens for the access-control tests: one HS256 key as moq-token writes it, and claims
//! signed with it.

use std::sync::Arc;

use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use moq_relay::auth::{Auth, Keys};
use serde_json::{Value, json};

const SECRET: &[u8; 32] = b"the secret of the auth tests 32b";

/// Sign `claims` with the key of [`keyed`].
pub fn token(claims: Value) -> String {
    let key = EncodingKey::from_secret(SECRET);
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap()
}

/// Access rules with the HS256 key and these public prefixes.
pub fn keyed(publish: &[&str], subscribe: &[&str]) -> Arc<Auth> {
    let k = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(SECRET);
    let jwk = json!({"alg": "HS256", "kty": "oct", "k": k}).to_string();
    let keys = Keys::One(Arc::new(jwk.parse().unwrap()));
    let list = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
    Arc::new(Auth::new(keys, list(publish), list(subscribe)))
}
