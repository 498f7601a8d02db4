//! TLS for connections to mail servers (rustls with the ring provider, one provider throughout).
//!
//! Trust is the operating system's store (which honours `SSL_CERT_FILE`) plus an optional
//! operator bundle (`CARTERO_TLS_CA_FILE`) for companies whose own server uses an internal CA.
//! An account may instead pin the server certificate's SHA-256 fingerprint, or — flagged as a
//! risk — skip verification. Whatever the mode, the verifier records the certificate the
//! server presented and why it was refused, so a diagnosis can say "expired" or "self-signed"
//! and show the fingerprint ready to pin.

use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use sha2::{Digest, Sha256};

use crate::domain::diagnosis::CertificateProblem;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: std::sync::OnceLock<Arc<rustls::crypto::CryptoProvider>> =
        std::sync::OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// The certificate authorities cartero trusts.
#[derive(Clone)]
pub struct TlsTrust {
    roots: Arc<RootCertStore>,
}

impl std::fmt::Debug for TlsTrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TlsTrust({} roots)", self.roots.len())
    }
}

impl TlsTrust {
    /// The system store (with `SSL_CERT_FILE` / `SSL_CERT_DIR`) plus `extra_ca_file`.
    pub fn system(extra_ca_file: Option<&Path>) -> anyhow::Result<TlsTrust> {
        let mut roots = RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for error in &native.errors {
            tracing::warn!(%error, "some system CA certificates could not be loaded");
        }
        let (added, ignored) = roots.add_parsable_certificates(native.certs);
        tracing::debug!(added, ignored, "system CA certificates loaded");
        if let Some(path) = extra_ca_file {
            Self::add_pem_file(&mut roots, path)?;
        }
        Ok(TlsTrust {
            roots: Arc::new(roots),
        })
    }

    /// Only the CAs in `pem_file` (tests, and operators who want nothing else).
    pub fn only(pem_file: &Path) -> anyhow::Result<TlsTrust> {
        let mut roots = RootCertStore::empty();
        Self::add_pem_file(&mut roots, pem_file)?;
        Ok(TlsTrust {
            roots: Arc::new(roots),
        })
    }

    fn add_pem_file(roots: &mut RootCertStore, path: &Path) -> anyhow::Result<()> {
        let certs = CertificateDer::pem_file_iter(path)
            .with_context(|| format!("reading the CA file {}", path.display()))?
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("parsing the CA file {}", path.display()))?;
        if certs.is_empty() {
            anyhow::bail!("the CA file {} holds no certificate", path.display());
        }
        for cert in certs {
            roots
                .add(cert)
                .with_context(|| format!("adding a CA from {}", path.display()))?;
        }
        Ok(())
    }
}

/// How the server's certificate is judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// Chain to a trusted CA and match the host name (the default).
    Verify,
    /// Accept exactly the certificate with this SHA-256 fingerprint (hex, any case/colons).
    Pin(String),
    /// Accept any certificate (`tls_verify: false`): encrypted but not authenticated.
    Insecure,
}

impl Verification {
    /// An account's choice: its pinned fingerprint, else verification unless turned off.
    pub fn of(spec: &crate::domain::account::AccountSpec) -> Verification {
        match (&spec.tls_fingerprint, spec.tls_verify) {
            (Some(pin), _) => Verification::Pin(pin.clone()),
            (None, true) => Verification::Verify,
            (None, false) => Verification::Insecure,
        }
    }
}

/// What the verifier saw: the presented chain and, if refused, why.
#[derive(Debug, Default)]
pub struct Observed {
    pub chain: Vec<CertificateDer<'static>>,
    pub problem: Option<CertificateProblem>,
}

/// A TLS connector for one connection attempt, and what it observed.
pub struct Connector {
    pub connector: tokio_rustls::TlsConnector,
    pub observed: Arc<Mutex<Observed>>,
}

impl Connector {
    pub fn new(trust: &TlsTrust, verification: Verification) -> Connector {
        let observed = Arc::new(Mutex::new(Observed::default()));
        // An empty trust store cannot build a verifier; every chain is then "unknown issuer".
        let inner = WebPkiServerVerifier::builder_with_provider(trust.roots.clone(), provider())
            .build()
            .ok();
        let verifier = Arc::new(ObservingVerifier {
            inner,
            verification,
            observed: observed.clone(),
        });
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Connector {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            observed,
        }
    }

    /// The certificate problem found during the handshake, if any.
    pub fn problem(&self) -> Option<CertificateProblem> {
        self.observed.lock().expect("not poisoned").problem.clone()
    }

    /// A description of the server certificate that was presented, if any.
    pub fn certificate(&self) -> Option<CertificateInfo> {
        let observed = self.observed.lock().expect("not poisoned");
        observed.chain.first().map(|c| CertificateInfo::from_der(c))
    }
}

#[derive(Debug)]
struct ObservingVerifier {
    inner: Option<Arc<WebPkiServerVerifier>>,
    verification: Verification,
    observed: Arc<Mutex<Observed>>,
}

impl ServerCertVerifier for ObservingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut chain = vec![end_entity.clone().into_owned()];
        chain.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        let verdict = match &self.verification {
            Verification::Insecure => Ok(ServerCertVerified::assertion()),
            Verification::Pin(pin) => {
                if normalize_fingerprint(pin) == fingerprint(end_entity).replace(':', "") {
                    Ok(ServerCertVerified::assertion())
                } else {
                    Err((
                        CertificateProblem::FingerprintMismatch,
                        rustls::Error::InvalidCertificate(
                            CertificateError::ApplicationVerificationFailure,
                        ),
                    ))
                }
            }
            Verification::Verify => match &self.inner {
                Some(inner) => inner
                    .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
                    .map_err(|e| (problem_of(&e, end_entity), e)),
                None => {
                    let e = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
                    Err((problem_of(&e, end_entity), e))
                }
            },
        };
        let mut observed = self.observed.lock().expect("not poisoned");
        observed.chain = chain;
        match verdict {
            Ok(v) => Ok(v),
            Err((problem, error)) => {
                observed.problem = Some(problem);
                Err(error)
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn problem_of(error: &rustls::Error, end_entity: &CertificateDer<'_>) -> CertificateProblem {
    match error {
        rustls::Error::InvalidCertificate(e) => match e {
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                CertificateProblem::Expired
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                CertificateProblem::NotYetValid
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                CertificateProblem::NameMismatch
            }
            CertificateError::UnknownIssuer => {
                if CertificateInfo::from_der(end_entity).self_signed {
                    CertificateProblem::SelfSigned
                } else {
                    CertificateProblem::UnknownIssuer
                }
            }
            other => CertificateProblem::Other(format!("{other:?}")),
        },
        other => CertificateProblem::Other(other.to_string()),
    }
}

/// `AB:CD:…` — the SHA-256 of a certificate, as shown and as pinned.
pub fn fingerprint(cert: &[u8]) -> String {
    Sha256::digest(cert)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A fingerprint as typed by a person, reduced to upper-case hex without separators.
pub fn normalize_fingerprint(pin: &str) -> String {
    pin.chars()
        .filter(char::is_ascii_hexdigit)
        .collect::<String>()
        .to_ascii_uppercase()
}

/// What a person needs to know about a server certificate.
#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
pub struct CertificateInfo {
    pub subject: String,
    pub issuer: String,
    pub not_after: String,
    pub sha256: String,
    pub self_signed: bool,
}

impl CertificateInfo {
    pub fn from_der(der: &[u8]) -> CertificateInfo {
        let sha256 = fingerprint(der);
        match x509_parser::parse_x509_certificate(der) {
            Ok((_, cert)) => CertificateInfo {
                subject: cert.subject().to_string(),
                issuer: cert.issuer().to_string(),
                not_after: cert
                    .validity()
                    .not_after
                    .to_rfc2822()
                    .unwrap_or_else(|_| cert.validity().not_after.to_string()),
                self_signed: cert.subject() == cert.issuer(),
                sha256,
            },
            Err(_) => CertificateInfo {
                subject: "(unreadable certificate)".into(),
                issuer: String::new(),
                not_after: String::new(),
                sha256,
                self_signed: false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_normalize() {
        assert_eq!(normalize_fingerprint("ab:cd 0f"), "ABCD0F");
        let f = fingerprint(b"x");
        assert_eq!(f.len(), 32 * 3 - 1);
        assert_eq!(normalize_fingerprint(&f.to_lowercase()), f.replace(':', ""));
    }
}
