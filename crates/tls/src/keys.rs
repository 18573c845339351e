//! The process's own certificate and key, swappable at run time.
//!
//! One [`KeyStore`] serves both directions: the server presents it in handshakes it accepts and
//! the clients present it as their client certificate under mutual TLS. [`KeyStore::reload`]
//! replaces it for all new handshakes at once.

use crate::error::TlsError;
use crate::pem;
use rustls::client::ResolvesClientCert;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::SignatureScheme;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// The certificate chain and key loaded from `cert`/`key`, replaceable by [`KeyStore::reload`].
#[derive(Debug)]
pub struct KeyStore {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl KeyStore {
    /// Loads the chain and key (they must match).
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<Self>, TlsError> {
        let current = load_certified(cert, key)?;
        Ok(Arc::new(Self {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            current: RwLock::new(current),
        }))
    }

    /// Reads the files again; on error the current certificate stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = load_certified(&self.cert, &self.key)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }

    /// The certificate and key in use.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

fn load_certified(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = pem::certificates(cert)?;
    let der = pem::private_key(key)?;
    let signing = crate::provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| TlsError::Pem {
            path: key.to_path_buf(),
            message: format!("unsupported private key: {e}"),
        })?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| {
        TlsError::Config(format!(
            "{} does not match the key in {}: {e}",
            cert.display(),
            key.display()
        ))
    })?;
    Ok(Arc::new(certified))
}

impl ResolvesServerCert for KeyStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl ResolvesClientCert for KeyStore {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
