use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{EncodingKey, Header, encode};
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _,
};
use serde_json::{Value, json};

use super::*;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const NOW: u64 = 1_800_000_000;

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

fn hs256_jwk() -> Value {
    json!({"alg": "HS256", "kty": "oct", "k": b64(SECRET), "key_ops": ["sign", "verify"]})
}

fn key(jwk: &Value) -> Arc<Key> {
    Arc::new(jwk.to_string().parse().unwrap())
}

fn sign(header: Header, claims: &Value, key: &EncodingKey) -> String {
    encode(&header, claims, key).unwrap()
}

fn hs256(claims: Value) -> String {
    sign(
        Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET),
    )
}

fn one(jwk: &Value) -> Auth {
    Auth::new(Keys::One(key(jwk)), Vec::new(), Vec::new())
}

fn grant(root: &str, publish: &[&str], subscribe: &[&str]) -> Grant {
    Grant {
        root: root.into(),
        publish: publish.iter().map(|s| s.to_string()).collect(),
        subscribe: subscribe.iter().map(|s| s.to_string()).collect(),
        expires: None,
    }
}

/// A key file is read as JSON or as base64url of it, padded or not, as moq-token writes.
#[test]
fn key_files_are_json_or_base64url() {
    let json = hs256_jwk().to_string();
    for text in [
        json.clone(),
        format!("  {json}\n"),
        URL_SAFE_NO_PAD.encode(&json),
        base64::engine::general_purpose::URL_SAFE.encode(&json),
    ] {
        let k: Key = text.parse().unwrap();
        assert_eq!(k.alg, jsonwebtoken::Algorithm::HS256);
    }
    // Legacy files have no `kty`: an oct key.
    let legacy = json!({"alg": "HS384", "k": b64(&[7; 48])});
    assert!(legacy.to_string().parse::<Key>().is_ok());
}

/// A key that cannot verify is refused with the reason.
#[test]
fn bad_keys_say_why() {
    let bad = |v: Value, want: &str| {
        let e = v.to_string().parse::<Key>().unwrap_err();
        assert!(e.contains(want), "{e} (want {want})");
    };
    bad(json!({"alg": "HS256", "k": b64(&[1; 16])}), "at least 32");
    bad(
        json!({"alg": "HS999", "k": b64(SECRET)}),
        "unsupported algorithm",
    );
    bad(
        json!({"alg": "ES256", "kty": "oct", "k": b64(SECRET)}),
        "cannot be used",
    );
    bad(
        json!({"alg": "ES256", "kty": "EC", "crv": "P-384", "x": b64(&[1; 48]), "y": b64(&[1; 48])}),
        "P-256",
    );
    bad(
        json!({"alg": "ES256", "kty": "EC", "crv": "P-256", "x": b64(&[1; 31]), "y": b64(&[1; 32])}),
        "32 bytes",
    );
    bad(
        json!({"alg": "EdDSA", "kty": "OKP", "crv": "Ed25519"}),
        "`x`",
    );
    bad(
        json!({"alg": "RS256", "kty": "RSA", "n": "!!", "e": "AQAB"}),
        "`n`",
    );
    bad(
        json!({"alg": "HS256", "k": b64(SECRET), "key_ops": ["sign"]}),
        "verify",
    );
    bad(
        json!({"alg": "HS256", "k": b64(SECRET), "kid": "../x"}),
        "key id",
    );
    assert!(
        "not a key"
            .parse::<Key>()
            .unwrap_err()
            .contains("base64url")
    );
}

/// An HS256 token's claims grant prefixes under the connection path.
#[test]
fn a_token_grants_its_prefixes() {
    let auth = one(&hs256_jwk());
    let token = hs256(json!({"root": "demo", "put": "alice", "get": ["", "x"], "exp": NOW + 60}));
    let g = auth.authorize("/demo/", Some(&token), NOW).unwrap();
    assert_eq!(
        g,
        Grant {
            expires: Some(NOW + 60),
            ..grant("demo", &["alice"], &["", "x"])
        }
    );
    let a = g.access();
    assert!(a.may_publish("demo/alice/cam") && a.may_publish("demo/alice"));
    assert!(!a.may_publish("demo/alicex") && !a.may_publish("demo/bob"));
    assert!(a.may_subscribe("demo/anything") && !a.may_subscribe("other"));
}

/// moq-token's path scoping: a path below the root narrows the grants, a path above it moves
/// them under the root's remainder, and paths that do not overlap get nothing.
#[test]
fn grants_follow_the_connection_path() {
    let claims = |root: &str, put: &[&str], get: &[&str]| Claims {
        root: root.into(),
        put: put.iter().map(|s| s.to_string()).collect(),
        get: get.iter().map(|s| s.to_string()).collect(),
        ..Claims::default()
    };
    let c = claims("demo", &["room/alice", "other"], &["room", ""]);
    assert_eq!(
        c.authorize("demo/room").unwrap(),
        grant("demo/room", &["alice"], &["", ""])
    );
    assert_eq!(
        c.authorize("//demo//room/alice/").unwrap(),
        grant("demo/room/alice", &[""], &["", ""])
    );
    assert_eq!(
        c.authorize("demo/roomx"),
        Ok(grant("demo/roomx", &[], &[""]))
    );
    let c = claims("room/123", &["cam"], &[""]);
    assert_eq!(
        c.authorize("room").unwrap(),
        grant("room", &["123/cam"], &["123"])
    );
    assert_eq!(
        c.authorize("").unwrap(),
        grant("", &["room/123/cam"], &["room/123"])
    );
    assert_eq!(c.authorize("roomx"), Err(Denied::RootMismatch));
    assert_eq!(c.authorize("other/123"), Err(Denied::RootMismatch));
    let c = claims("demo", &["a"], &[]);
    assert_eq!(c.authorize("demo/b"), Err(Denied::NoAccess));
    assert_eq!(
        claims("", &[&"x/".repeat(600)], &[]).authorize(""),
        Err(Denied::BadPath)
    );
}

/// Tokens that must not pass: wrong signature, another algorithm, expired, not yet valid,
/// with an audience, granting nothing, or without a key to check them.
#[test]
fn bad_tokens_are_refused() {
    let auth = one(&hs256_jwk());
    let ok = json!({"root": "", "get": ""});
    let other = sign(
        Header::new(jsonwebtoken::Algorithm::HS256),
        &ok,
        &EncodingKey::from_secret(b"another secret, also 32 bytes long!"),
    );
    let invalid = |r: Result<Grant, AuthError>| matches!(r, Err(AuthError::Invalid(_)));
    assert!(invalid(auth.authorize("", Some(&other), NOW)));
    let hs384 = sign(
        Header::new(jsonwebtoken::Algorithm::HS384),
        &ok,
        &EncodingKey::from_secret(SECRET),
    );
    assert!(invalid(auth.authorize("", Some(&hs384), NOW)));
    let expired = hs256(json!({"get": "", "exp": NOW - 1}));
    assert!(invalid(auth.authorize("", Some(&expired), NOW)));
    assert!(
        auth.authorize("", Some(&expired), NOW - 1).is_ok(),
        "valid up to exp"
    );
    let early = hs256(json!({"get": "", "nbf": NOW + 1}));
    assert!(invalid(auth.authorize("", Some(&early), NOW)));
    assert!(
        auth.authorize("", Some(&early), NOW + 1).is_ok(),
        "valid from nbf"
    );
    let aud = hs256(json!({"get": "", "aud": "someone"}));
    assert!(invalid(auth.authorize("", Some(&aud), NOW)));
    let useless = hs256(json!({"root": "demo"}));
    assert_eq!(
        auth.authorize("demo", Some(&useless), NOW),
        Err(AuthError::Denied(Denied::NoAccess))
    );
    assert!(invalid(auth.authorize("", Some("a.b.c"), NOW)));
    let none = Auth::new(Keys::None, vec![String::new()], vec![String::new()]);
    assert_eq!(
        none.authorize("", Some(&hs256(ok.clone())), NOW),
        Err(AuthError::UnknownKey)
    );
}

/// Without a token only the public prefixes apply, and only where they overlap the path; a
/// token is never merged with them.
#[test]
fn public_access_applies_only_without_a_token() {
    let auth = Auth::new(
        Keys::One(key(&hs256_jwk())),
        vec!["anon".into()],
        vec!["anon".into(), "live".into()],
    );
    assert_eq!(
        auth.authorize("anon/room", None, NOW).unwrap(),
        grant("anon/room", &[""], &[""])
    );
    assert_eq!(
        auth.authorize("", None, NOW).unwrap(),
        grant("", &["anon"], &["anon", "live"])
    );
    assert_eq!(
        auth.authorize("live", Some(""), NOW).unwrap(),
        grant("live", &[], &[""])
    );
    assert_eq!(
        auth.authorize("private", None, NOW),
        Err(AuthError::ExpectedToken)
    );
    let token = hs256(json!({"root": "private", "get": ""}));
    assert_eq!(
        auth.authorize("anon", Some(&token), NOW),
        Err(AuthError::Denied(Denied::RootMismatch))
    );
    let open = Auth::open();
    assert_eq!(
        open.authorize("x/y", None, NOW).unwrap(),
        grant("x/y", &[""], &[""])
    );
}

/// Asymmetric keys: ES256 and EdDSA tokens verify against the public half of the key.
#[test]
fn asymmetric_keys_verify() {
    let rng = SystemRandom::new();
    let claims = json!({"root": "r", "put": ""});

    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let point = pair.public_key().as_ref();
    let jwk = json!({"alg": "ES256", "kty": "EC", "crv": "P-256",
        "x": b64(&point[1..33]), "y": b64(&point[33..])});
    let token = sign(
        Header::new(jsonwebtoken::Algorithm::ES256),
        &claims,
        &EncodingKey::from_ec_der(pkcs8.as_ref()),
    );
    assert_eq!(
        one(&jwk).authorize("r", Some(&token), NOW).unwrap(),
        grant("r", &[""], &[])
    );

    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let jwk = json!({"alg": "EdDSA", "kty": "OKP", "crv": "Ed25519",
        "x": b64(pair.public_key().as_ref())});
    let token = sign(
        Header::new(jsonwebtoken::Algorithm::EdDSA),
        &claims,
        &EncodingKey::from_ed_der(pkcs8.as_ref()),
    );
    let auth = one(&jwk);
    assert!(auth.authorize("r/s", Some(&token), NOW).is_ok());
    // The HS256 token of the same claims is refused by this key.
    assert!(matches!(
        auth.authorize("r", Some(&hs256(claims)), NOW),
        Err(AuthError::Invalid(_))
    ));
}

/// A key directory picks the key by the token's `kid`, finds files added after start, and a
/// bad file in it stops loading with its name.
#[test]
fn key_directory_picks_by_kid() {
    let dir = std::env::temp_dir().join(format!("moq-auth-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a.jwk"), hs256_jwk().to_string()).unwrap();
    std::fs::write(dir.join("notes.txt"), "ignored").unwrap();
    let auth = Auth::new(Auth::key_dir(&dir).unwrap(), Vec::new(), Vec::new());
    let with_kid = |kid: &str| {
        let mut h = Header::new(jsonwebtoken::Algorithm::HS256);
        h.kid = Some(kid.into());
        sign(h, &json!({"get": ""}), &EncodingKey::from_secret(SECRET))
    };
    assert!(auth.authorize("", Some(&with_kid("a")), NOW).is_ok());
    assert_eq!(
        auth.authorize("", Some(&with_kid("b")), NOW),
        Err(AuthError::UnknownKey)
    );
    std::fs::write(
        dir.join("b.jwk"),
        URL_SAFE_NO_PAD.encode(hs256_jwk().to_string()),
    )
    .unwrap();
    assert!(auth.authorize("", Some(&with_kid("b")), NOW).is_ok());
    assert!(matches!(
        auth.authorize("", Some(&with_kid("../a")), NOW),
        Err(AuthError::Invalid(_))
    ));
    assert!(matches!(
        auth.authorize("", Some(&hs256(json!({"get": ""}))), NOW),
        Err(AuthError::Invalid(_))
    ));
    std::fs::write(dir.join("c.jwk"), "{}").unwrap();
    let e = Auth::key_dir(&dir).unwrap_err();
    assert!(e.contains("c.jwk"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A key's scope bounds its tokens: a grant outside it rejects the whole token.
#[test]
fn key_scope_bounds_its_tokens() {
    let mut jwk = hs256_jwk();
    jwk["scope"] = json!({"root": "tenant", "put": ["cams"], "get": ""});
    let auth = one(&jwk);
    let inside = hs256(json!({"root": "tenant/cams", "put": "one", "get": ""}));
    assert!(auth.authorize("tenant/cams", Some(&inside), NOW).is_ok());
    let outside = hs256(json!({"root": "tenant", "put": "mics"}));
    assert_eq!(
        auth.authorize("tenant", Some(&outside), NOW),
        Err(AuthError::Denied(Denied::ScopeExceeded))
    );
    let elsewhere = hs256(json!({"root": "other", "get": ""}));
    assert_eq!(
        auth.authorize("other", Some(&elsewhere), NOW),
        Err(AuthError::Denied(Denied::ScopeExceeded))
    );
}

/// Keys and tokens written by the reference's `moq-token` CLI (`tests/fixtures/moq-token`,
/// made with `moq-token generate --algorithm A --id k-A` and `moq-token sign --root demo
/// --publish alice --subscribe ""`): every algorithm verifies here unchanged, and a key of
/// one algorithm refuses the tokens of every other.
#[test]
fn reference_cli_keys_and_tokens_verify() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/moq-token");
    let algs = [
        "HS256", "HS384", "HS512", "ES256", "ES384", "RS256", "RS512", "PS256", "PS384", "EdDSA",
    ];
    let read = |name: String| std::fs::read_to_string(dir.join(name)).unwrap();
    for alg in algs {
        let key = Arc::new(Key::from_file(&dir.join(format!("{alg}.key"))).unwrap());
        assert_eq!(key.kid.as_deref(), Some(format!("k-{alg}").as_str()));
        let auth = Auth::new(Keys::One(key), Vec::new(), Vec::new());
        let token = read(format!("{alg}.jwt"));
        let g = auth.authorize("demo", Some(token.trim()), NOW).unwrap();
        assert_eq!(g, grant("demo", &["alice"], &[""]), "{alg}");
        for other in algs.iter().filter(|&&o| o != alg) {
            let token = read(format!("{other}.jwt"));
            assert!(
                auth.authorize("demo", Some(token.trim()), NOW).is_err(),
                "{alg} key took a {other} token"
            );
        }
    }
    let auth = Auth::new(
        Keys::One(Arc::new(Key::from_file(&dir.join("HS256.key")).unwrap())),
        Vec::new(),
        Vec::new(),
    );
    let expired = read("HS256-expired.jwt".into());
    assert!(
        auth.authorize("demo", Some(expired.trim()), 1_700_000_000)
            .is_ok()
    );
    assert!(matches!(
        auth.authorize("demo", Some(expired.trim()), NOW),
        Err(AuthError::Invalid(_))
    ));
}

/// The gate the sessions and the HTTP endpoints ask: absolute prefixes, and statuses 401 (no
/// valid token) and 403 (a valid token that grants nothing on the path).
#[test]
fn gate_answers_absolute_prefixes_and_statuses() {
    let auth = Auth::new(
        Keys::One(key(&hs256_jwk())),
        vec!["open".into()],
        Vec::new(),
    );
    let tok = hs256(json!({"root": "demo", "put": ["alice"], "get": [""]}));
    let a = auth.admit("/", Some(&tok)).unwrap();
    assert_eq!(
        (a.publish, a.subscribe),
        (vec!["demo/alice".into()], vec!["demo".into()])
    );
    let a = auth.admit("demo/room", Some(&tok)).unwrap();
    assert_eq!((a.publish, a.subscribe), (vec![], vec!["demo/room".into()]));
    assert_eq!(auth.admit("/other", Some(&tok)).unwrap_err().status, 403);
    assert_eq!(auth.admit("demo", None).unwrap_err().status, 401);
    assert_eq!(auth.admit("demo", Some("a.b.c")).unwrap_err().status, 401);
    let expired = hs256(json!({"root": "demo", "get": [""], "exp": 1_000}));
    let e = auth.admit("demo", Some(&expired)).unwrap_err();
    assert_eq!((e.status, e.reason.contains("expired")), (401, true));
    let later = hs256(json!({"root": "demo", "get": [""], "exp": 4_000_000_000u64}));
    assert_eq!(
        auth.admit("demo", Some(&later)).unwrap().expires,
        Some(4_000_000_000)
    );
    // Public access is used only without a token.
    assert_eq!(auth.admit("open/x", None).unwrap().publish, ["open/x"]);
    assert_eq!(auth.admit("open/x", Some(&tok)).unwrap_err().status, 403);
}
