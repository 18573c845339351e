//! The server side: a [`rustls::ServerConfig`] rebuilt from the files on each reload.

use crate::error::TlsError;
use crate::keys::KeyStore;
use crate::pem;
use crate::settings::TlsSettings;
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use std::sync::{Arc, RwLock};

/// The HTTPS configuration of one listener; [`ServerTls::reload`] re-reads every file.
#[derive(Debug)]
pub struct ServerTls {
    settings: TlsSettings,
    keys: Arc<KeyStore>,
    config: RwLock<Arc<ServerConfig>>,
}

impl ServerTls {
    /// Loads the certificate, key and (under mutual TLS) client CA. `Ok(None)` when the
    /// settings do not ask for HTTPS.
    pub fn from_settings(settings: &TlsSettings) -> Result<Option<Arc<Self>>, TlsError> {
        settings.validate()?;
        let (Some(cert), Some(key)) = (&settings.cert, &settings.key) else {
            return Ok(None);
        };
        let keys = KeyStore::load(cert, key)?;
        let config = build(settings, &keys)?;
        Ok(Some(Arc::new(Self {
            settings: settings.clone(),
            keys,
            config: RwLock::new(config),
        })))
    }

    /// The configuration for the next handshake.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The certificate store (shared with the process's clients under mutual TLS).
    pub fn keys(&self) -> Arc<KeyStore> {
        self.keys.clone()
    }

    /// The settings this was built from.
    pub fn settings(&self) -> &TlsSettings {
        &self.settings
    }

    /// Re-reads the certificate, key and client CA. New handshakes (server and client side)
    /// use them; open connections are untouched. On error nothing changes.
    pub fn reload(&self) -> Result<(), TlsError> {
        let (Some(cert), Some(key)) = (&self.settings.cert, &self.settings.key) else {
            return Ok(());
        };
        // Validate the new pair before swapping anything.
        let fresh = KeyStore::load(cert, key)?;
        let config = build(&self.settings, &fresh)?;
        self.keys.reload()?;
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = config;
        Ok(())
    }
}

fn build(settings: &TlsSettings, keys: &Arc<KeyStore>) -> Result<Arc<ServerConfig>, TlsError> {
    let builder = ServerConfig::builder_with_provider(crate::provider())
        .with_safe_default_protocol_versions()?;
    let builder = match &settings.client_ca {
        Some(path) => {
            let roots = Arc::new(pem::roots(path)?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, crate::provider())
                .build()
                .map_err(|e| TlsError::Verifier(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    // The served chain comes from the shared store, so a reload of it is seen at once.
    let mut config = builder.with_cert_resolver(keys.clone());
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
