//! Native TLS: a listener's certificate and key read from PEM files, served through rustls (the
//! ring provider reqwest already brings in), and swapped on reload without touching the
//! connections already open.
//!
//! A handshake asks [`Resolver`] for the certificate each time, so a reload only replaces the
//! `Arc` it hands out: new handshakes get the new certificate, sessions in progress keep theirs.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;
use tracing::{error, info};

/// Why a certificate or key could not be used; each names the configuration key at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{key}: cannot read {path}: {source}")]
    Read { key: String, path: PathBuf, source: io::Error },
    #[error("{key}: {path} is not a PEM certificate chain: {source}")]
    Certificate { key: String, path: PathBuf, source: rustls::pki_types::pem::Error },
    #[error("{key}: {path} holds no PEM private key (PKCS#8, PKCS#1 or SEC1): {source}")]
    PrivateKey { key: String, path: PathBuf, source: rustls::pki_types::pem::Error },
    #[error("{key}: {path}: the key is unusable or does not match the certificate: {source}")]
    Unusable { key: String, path: PathBuf, source: rustls::Error },
    #[error("{key}: rustls refused the configuration: {source}")]
    Config { key: String, source: rustls::Error },
}

/// Where one listener's certificate and key live, and the configuration keys that named them
/// (`server.tls_cert`, `admin.tls_key`, ...) for the messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// `server` or `admin`: the section the two paths come from.
    pub section: &'static str,
}

impl CertFiles {
    /// The files of a section whose `tls_cert` / `tls_key` are both set; `None` when neither is
    /// (the configuration check refuses one without the other).
    pub fn of(section: &'static str, cert: &str, key: &str) -> Option<CertFiles> {
        (!cert.is_empty() && !key.is_empty()).then(|| CertFiles {
            cert: PathBuf::from(cert),
            key: PathBuf::from(key),
            section,
        })
    }

    fn cert_key(&self) -> String {
        format!("{}.tls_cert", self.section)
    }

    fn key_key(&self) -> String {
        format!("{}.tls_key", self.section)
    }

    /// Reads and checks both files: a chain of at least one certificate, a private key the
    /// provider can sign with, and the key matching the first certificate.
    pub fn load(&self) -> Result<Arc<CertifiedKey>, TlsError> {
        let cert_pem = read(&self.cert, self.cert_key())?;
        let key_pem = read(&self.key, self.key_key())?;
        let chain = certificates(&cert_pem).map_err(|source| TlsError::Certificate {
            key: self.cert_key(),
            path: self.cert.clone(),
            source,
        })?;
        let private_key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|source| TlsError::PrivateKey {
            key: self.key_key(),
            path: self.key.clone(),
            source,
        })?;
        let certified = CertifiedKey::from_der(chain, private_key, &provider())
            .map_err(|source| TlsError::Unusable { key: self.key_key(), path: self.key.clone(), source })?;
        Ok(Arc::new(certified))
    }
}

fn read(path: &Path, key: String) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { key, path: path.to_path_buf(), source })
}

/// Every certificate of a PEM file, in order; an empty file is `NoItemsFound`.
fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, rustls::pki_types::pem::Error> {
    let chain = CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>()?;
    if chain.is_empty() {
        return Err(rustls::pki_types::pem::Error::NoItemsFound);
    }
    Ok(chain)
}

/// The one crypto provider Herald uses: ring, already compiled in for reqwest.
fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// The certificate new handshakes get; replaced whole by [`Resolver::reload`].
#[derive(Debug)]
pub(crate) struct Resolver {
    files: CertFiles,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone())
    }
}

impl Resolver {
    /// Reads the files again; on success new handshakes use them, on failure the certificate in
    /// use stays (a half-written file during a renewal must not take the listener down).
    fn reload(&self) -> Result<(), TlsError> {
        let fresh = self.files.load()?;
        *self.current.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = fresh;
        Ok(())
    }
}

/// One listener's TLS: the acceptor its connections handshake with and its resolver.
#[derive(Clone)]
pub(crate) struct Tls {
    pub(crate) acceptor: TlsAcceptor,
    resolver: Arc<Resolver>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("files", &self.resolver.files).finish_non_exhaustive()
    }
}

impl Tls {
    /// Loads the files and builds the server configuration: TLS 1.2 and 1.3, HTTP/1.1 only
    /// (the listeners speak HTTP/1), no client certificates.
    pub(crate) fn new(files: CertFiles) -> Result<Tls, TlsError> {
        let current = files.load()?;
        let key = files.cert_key();
        let resolver = Arc::new(Resolver { files, current: RwLock::new(current) });
        let mut config = ServerConfig::builder_with_provider(Arc::new(provider()))
            .with_safe_default_protocol_versions()
            .map_err(|source| TlsError::Config { key, source })?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls { acceptor: TlsAcceptor::from(Arc::new(config)), resolver })
    }
}

/// Reloads the certificates of every TLS listener of an [`App`](crate::App) (SIGHUP in
/// `herald serve`, a direct call in tests). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct TlsReload {
    resolvers: Vec<Arc<Resolver>>,
}

impl TlsReload {
    pub(crate) fn new(listeners: impl IntoIterator<Item = Tls>) -> TlsReload {
        TlsReload { resolvers: listeners.into_iter().map(|tls| tls.resolver).collect() }
    }

    /// Whether any listener serves TLS (else there is nothing to reload).
    pub fn is_enabled(&self) -> bool {
        !self.resolvers.is_empty()
    }

    /// Reads every listener's files again. Each listener that fails keeps its certificate and
    /// the error is logged; the others still take their new one. Returns the failures.
    pub fn reload(&self) -> Result<(), Vec<TlsError>> {
        let mut failures = Vec::new();
        for resolver in &self.resolvers {
            match resolver.reload() {
                Ok(()) => info!(
                    section = resolver.files.section,
                    cert = %resolver.files.cert.display(),
                    "TLS certificate reloaded; new connections use it"
                ),
                Err(failure) => {
                    error!(error = %failure, "TLS certificate not reloaded; keeping the one in use");
                    failures.push(failure);
                }
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures)
        }
    }
}
