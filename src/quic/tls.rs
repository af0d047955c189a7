//! TLS 1.3 for both roles, on rustls with the ring provider (pure Rust/asm: builds without
//! cmake, which keeps builds on bare edge boxes and CI simple).
//!
//! Server: PEM chains chosen by SNI with the first as fallback, or a generated self-signed
//! ECDSA P-256 certificate that browsers accept by SHA-256 fingerprint (`serverCertificateHashes`
//! demands at most 14 days of validity). Client: root CAs, pinned fingerprints, or no checks.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, SignatureScheme};

/// A TLS set-up problem, naming the file or host it concerns.
#[derive(Debug)]
pub struct TlsError(pub String);

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

fn err(msg: impl Into<String>) -> TlsError {
    TlsError(msg.into())
}

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Lowercase hex SHA-256 of a certificate's DER: what browsers pin and `/certificate.sha256`
/// serves.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, cert.as_ref()).as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    let s: String = s.chars().filter(|c| !matches!(c, ':' | ' ')).collect();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The certificates a server presents.
pub struct ServerCerts {
    keys: Vec<Arc<CertifiedKey>>,
}

impl fmt::Debug for ServerCerts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.fingerprints()).finish()
    }
}

impl ServerCerts {
    /// Load `(chain, key)` PEM file pairs; the first pair is the fallback for unknown SNI.
    pub fn load(pairs: &[(PathBuf, PathBuf)]) -> Result<Self, TlsError> {
        let provider = provider();
        let mut keys = Vec::new();
        for (cert_path, key_path) in pairs {
            let chain = load_certs(cert_path)?;
            let key = PrivateKeyDer::from_pem_file(key_path)
                .map_err(|e| err(format!("tls key {}: {e}", key_path.display())))?;
            let signer = provider
                .key_provider
                .load_private_key(key)
                .map_err(|e| err(format!("tls key {}: {e}", key_path.display())))?;
            let certified = CertifiedKey::new(chain, signer);
            certified.keys_match().map_err(|e| {
                err(format!(
                    "tls key {} does not match tls cert {}: {e}",
                    key_path.display(),
                    cert_path.display()
                ))
            })?;
            keys.push(Arc::new(certified));
        }
        if keys.is_empty() {
            return Err(err("no tls certificate configured"));
        }
        Ok(Self { keys })
    }

    /// A self-signed ECDSA P-256 certificate for `hosts`, valid from an hour ago for 13 days, so
    /// that browsers accept it by fingerprint.
    pub fn generate(hosts: &[String]) -> Result<Self, TlsError> {
        if hosts.is_empty() {
            return Err(err("tls generate: no host names given"));
        }
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| err(format!("tls generate: {e}")))?;
        let mut params = rcgen::CertificateParams::new(hosts.to_vec())
            .map_err(|e| err(format!("tls generate {hosts:?}: {e}")))?;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(13);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, hosts[0].clone());
        let cert = params
            .self_signed(&key)
            .map_err(|e| err(format!("tls generate: {e}")))?;
        let der = PrivateKeyDer::try_from(key.serialize_der())
            .map_err(|e| err(format!("tls generate: {e}")))?;
        let signer = provider()
            .key_provider
            .load_private_key(der)
            .map_err(|e| err(format!("tls generate: {e}")))?;
        Ok(Self {
            keys: vec![Arc::new(CertifiedKey::new(
                vec![cert.der().clone()],
                signer,
            ))],
        })
    }

    /// Add another set's certificates after this one's (they never become the fallback).
    pub fn extend(&mut self, other: ServerCerts) {
        self.keys.extend(other.keys);
    }

    /// Hex SHA-256 of each leaf certificate, in configuration order.
    pub fn fingerprints(&self) -> Vec<String> {
        self.keys.iter().map(|k| fingerprint(leaf(k))).collect()
    }

    /// Leaf certificates (DER), in configuration order.
    pub fn leaves(&self) -> Vec<CertificateDer<'static>> {
        self.keys
            .iter()
            .map(|k| leaf(k).clone().into_owned())
            .collect()
    }

    /// A TLS 1.3-only server config offering `alpns` in this (the server's) preference order.
    pub fn server_config(&self, alpns: &[&[u8]]) -> Arc<rustls::ServerConfig> {
        self.server_config_with_clients(alpns, &[])
            .expect("no client roots to load")
    }

    /// [`Self::server_config`], also asking clients for a certificate: one that chains to a
    /// root in `client_roots` (PEM files) is verified and kept as the connection's peer
    /// identity; clients without one still connect. No roots: no certificate is asked for.
    pub fn server_config_with_clients(
        &self,
        alpns: &[&[u8]],
        client_roots: &[PathBuf],
    ) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let resolver = SniResolver {
            keys: self.keys.clone(),
        };
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("ring supports TLS 1.3");
        let builder = if client_roots.is_empty() {
            builder.with_no_client_auth()
        } else {
            let roots = Arc::new(root_store(client_roots)?);
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider())
                    .allow_unauthenticated()
                    .build()
                    .map_err(|e| err(format!("server tls root: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        };
        let mut tls = builder.with_cert_resolver(Arc::new(resolver));
        tls.alpn_protocols = alpns.iter().map(|a| a.to_vec()).collect();
        tls.max_early_data_size = 0;
        Ok(Arc::new(tls))
    }
}

/// The certificates of PEM files, as roots.
fn root_store(files: &[PathBuf]) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for file in files {
        for cert in load_certs(file)? {
            roots
                .add(cert)
                .map_err(|e| err(format!("tls root {}: {e}", file.display())))?;
        }
    }
    if roots.is_empty() {
        return Err(err("tls root: no root certificates found"));
    }
    Ok(roots)
}

fn leaf(key: &CertifiedKey) -> &CertificateDer<'_> {
    key.end_entity_cert()
        .expect("every configured chain has a leaf")
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(format!("tls cert {}: {e}", path.display())))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(format!("tls cert {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(err(format!(
            "tls cert {}: no certificate in file",
            path.display()
        )));
    }
    Ok(certs)
}

#[derive(Debug)]
struct SniResolver {
    keys: Vec<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if let Some(sni) = hello.server_name()
            && let Ok(name) = ServerName::try_from(sni)
        {
            for key in &self.keys {
                let Ok(cert) = webpki::EndEntityCert::try_from(leaf(key)) else {
                    continue;
                };
                if cert.verify_is_valid_for_subject_name(&name).is_ok() {
                    return Some(key.clone());
                }
            }
        }
        self.keys.first().cloned()
    }
}

/// How a client checks the server's certificate.
#[derive(Clone, Debug, Default)]
pub enum ClientVerify {
    /// Web PKI against these PEM root files, or the system bundle when the list is empty.
    Roots(Vec<PathBuf>),
    /// Accept exactly the leaf certificates with these SHA-256 fingerprints (hex).
    Fingerprints(Vec<String>),
    /// Accept any certificate (signatures are still checked). Development and trusted links only.
    #[default]
    Disabled,
}

const SYSTEM_ROOTS: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// A TLS 1.3-only client config offering `alpns` in preference order.
pub fn client_config(
    verify: &ClientVerify,
    alpns: &[&[u8]],
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    client_config_with(verify, alpns, None)
}

/// [`client_config`], presenting `identity` (a PEM chain and its key) when the server asks
/// for a client certificate.
pub fn client_config_with(
    verify: &ClientVerify,
    alpns: &[&[u8]],
    identity: Option<&(PathBuf, PathBuf)>,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("ring supports TLS 1.3");
    let builder = match verify {
        ClientVerify::Roots(files) => {
            let files: Vec<PathBuf> = if files.is_empty() {
                SYSTEM_ROOTS
                    .iter()
                    .map(PathBuf::from)
                    .filter(|p| p.exists())
                    .take(1)
                    .collect()
            } else {
                files.clone()
            };
            builder.with_root_certificates(root_store(&files)?)
        }
        ClientVerify::Fingerprints(list) => {
            let pins = list
                .iter()
                .map(|s| {
                    unhex(s)
                        .filter(|b| b.len() == 32)
                        .ok_or_else(|| err(format!("tls fingerprint `{s}` is not 64 hex digits")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Pinned {
                    pins: Some(pins),
                    algs: provider.signature_verification_algorithms,
                }))
        }
        ClientVerify::Disabled => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned {
                pins: None,
                algs: provider.signature_verification_algorithms,
            })),
    };
    let mut tls = match identity {
        None => builder.with_no_client_auth(),
        Some((chain, key)) => {
            let certs = load_certs(chain)?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| err(format!("client tls key {}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| err(format!("client tls cert {}: {e}", chain.display())))?
        }
    };
    tls.alpn_protocols = alpns.iter().map(|a| a.to_vec()).collect();
    Ok(Arc::new(tls))
}

/// Checks the leaf against pinned fingerprints (`None`: accepts any leaf), and always checks the
/// handshake signature so the peer must hold the key.
#[derive(Debug)]
struct Pinned {
    pins: Option<Vec<Vec<u8>>>,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(pins) = &self.pins {
            let digest = ring::digest::digest(&ring::digest::SHA256, end_entity.as_ref());
            if !pins.iter().any(|p| p.as_slice() == digest.as_ref()) {
                return Err(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::ApplicationVerificationFailure,
                ));
            }
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_cert_is_p256_and_short_lived() {
        let certs = ServerCerts::generate(&["localhost".into(), "127.0.0.1".into()]).unwrap();
        let fp = certs.fingerprints();
        assert_eq!(fp.len(), 1);
        assert_eq!(fp[0].len(), 64);
        let leaf = &certs.leaves()[0];
        let cert = webpki::EndEntityCert::try_from(leaf).unwrap();
        assert!(
            cert.verify_is_valid_for_subject_name(&ServerName::try_from("localhost").unwrap())
                .is_ok()
        );
        assert!(
            cert.verify_is_valid_for_subject_name(&ServerName::try_from("127.0.0.1").unwrap())
                .is_ok()
        );
    }

    #[test]
    fn missing_files_are_named() {
        let e = ServerCerts::load(&[(
            "/nonexistent/cert.pem".into(),
            "/nonexistent/key.pem".into(),
        )])
        .unwrap_err();
        assert!(e.0.contains("/nonexistent/cert.pem"), "{e}");
    }

    #[test]
    fn bad_fingerprint_is_refused() {
        let e = client_config(&ClientVerify::Fingerprints(vec!["abc".into()]), &[]).unwrap_err();
        assert!(e.0.contains("abc"), "{e}");
        assert_eq!(unhex("0aFF").unwrap(), vec![0x0a, 0xff]);
    }
}
