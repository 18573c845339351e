//! The client side: one TLS configuration per process, handed to every outbound client.
//!
//! Build it once from the settings ([`ClientTls::from_settings`], or [`ClientTls::new`] for the
//! CLI) and use [`ClientTls::reqwest_builder`] wherever a `reqwest::Client` is made, or
//! [`ClientTls::rustls_config`] for other transports (WebSocket sessions, ...). Without a CA and
//! without a client identity it changes nothing: reqwest's defaults (public web roots) apply.

use crate::error::TlsError;
use crate::keys::KeyStore;
use crate::settings::TlsSettings;
use crate::verifier::CaVerifier;
use rustls::{ClientConfig, RootCertStore};
use std::path::Path;
use std::sync::Arc;

/// How this process verifies the servers it calls and which certificate it presents.
#[derive(Clone, Default)]
pub struct ClientTls {
    config: Option<Arc<ClientConfig>>,
    /// The `--tls-ca` verifier shared by every client of the process ([`ClientTls::reload`]).
    ca: Option<Arc<CaVerifier>>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("custom", &self.config.is_some())
            .finish()
    }
}

impl ClientTls {
    /// Plain reqwest defaults (public web roots, no client certificate).
    pub fn none() -> Self {
        Self::default()
    }

    /// Servers must chain to the CA bundle `ca` (public web roots when `None`); `identity`, if
    /// any, is presented as client certificate (and follows its reloads).
    pub fn new(ca: Option<&Path>, identity: Option<Arc<KeyStore>>) -> Result<Self, TlsError> {
        if ca.is_none() && identity.is_none() {
            return Ok(Self::default());
        }
        let builder = ClientConfig::builder_with_provider(crate::provider())
            .with_safe_default_protocol_versions()?;
        let (builder, verifier) = match ca {
            // A CA file: verified through a verifier that SIGHUP can reload.
            Some(path) => {
                let verifier = CaVerifier::load(path)?;
                (
                    builder
                        .dangerous()
                        .with_custom_certificate_verifier(verifier.clone()),
                    Some(verifier),
                )
            }
            None => (
                builder.with_root_certificates(RootCertStore {
                    roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
                }),
                None,
            ),
        };
        let mut config = match identity {
            Some(keys) => builder.with_client_cert_resolver(keys),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            config: Some(Arc::new(config)),
            ca: verifier,
        })
    }

    /// Re-reads the `--tls-ca` bundle (no-op without one): the next handshakes of every client
    /// built from this configuration use it. On error the previous bundle stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        match &self.ca {
            Some(ca) => ca.reload(),
            None => Ok(()),
        }
    }

    /// The client side of a server process: verify with `--tls-ca`, and under mutual TLS
    /// (`--tls-client-ca`) present the process's own certificate from `keys` (the same store
    /// the server uses, so a SIGHUP reload covers both).
    pub fn from_settings(
        settings: &TlsSettings,
        keys: Option<Arc<KeyStore>>,
    ) -> Result<Self, TlsError> {
        let identity = if settings.mutual() {
            match keys {
                Some(keys) => Some(keys),
                None => match (&settings.cert, &settings.key) {
                    (Some(c), Some(k)) => Some(KeyStore::load(c, k)?),
                    _ => None,
                },
            }
        } else {
            None
        };
        Self::new(settings.ca.as_deref(), identity)
    }

    /// Whether [`ClientTls::reload`] re-reads a CA bundle.
    pub fn reloads_ca(&self) -> bool {
        self.ca.is_some()
    }

    /// Whether a custom configuration (own CA or client certificate) is in use.
    pub fn is_custom(&self) -> bool {
        self.config.is_some()
    }

    /// The rustls configuration for non-reqwest clients (e.g. a WebSocket connector); `None`
    /// means "use the transport's defaults".
    pub fn rustls_config(&self) -> Option<Arc<ClientConfig>> {
        self.config.clone()
    }

    /// A rustls configuration in every case: the custom one, or the public web roots.
    pub fn rustls_config_or_default(&self) -> Result<Arc<ClientConfig>, TlsError> {
        if let Some(config) = &self.config {
            return Ok(config.clone());
        }
        let roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let config = ClientConfig::builder_with_provider(crate::provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Arc::new(config))
    }

    /// A `reqwest::ClientBuilder` using this configuration; callers add their timeouts.
    pub fn reqwest_builder(&self) -> reqwest::ClientBuilder {
        self.apply(reqwest::Client::builder())
    }

    /// Applies this configuration to an existing builder.
    pub fn apply(&self, builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        match &self.config {
            Some(config) => builder.use_preconfigured_tls(ClientConfig::clone(config)),
            None => builder,
        }
    }
}
