//! TLS of the worker's broker connections (MQTT connectors and routes, NATS connectors and the
//! NATS transport): which CA to trust and which client certificate to present.
//!
//! Connectors take the parameters `tls` (`true` to require TLS), `tls_ca` (CA bundle, PEM path
//! on the worker), `tls_cert` and `tls_key` (client certificate and key, PEM paths). Naming a CA
//! or a certificate implies `tls = true`. MQTT routes use TLS for an `mqtts://` broker URL,
//! with the worker's `--tls-ca` and, under mutual TLS, its own certificate.

use super::ConfigError;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// Files of one TLS client connection, checked when the plan is made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTlsFiles {
    /// TLS required.
    pub enabled: bool,
    /// CA bundle (`None`: the platform's / public roots).
    pub ca: Option<PathBuf>,
    /// Client certificate and key.
    pub identity: Option<(PathBuf, PathBuf)>,
}

fn text(params: &Map<String, Value>, key: &str) -> Option<String> {
    match params.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl ClientTlsFiles {
    /// Reads `tls`, `tls_ca`, `tls_cert`, `tls_key` from connector parameters; the files
    /// must be readable now.
    pub fn from_params(params: &Map<String, Value>) -> Result<Self, ConfigError> {
        let enabled = match text(params, "tls").as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(ConfigError(format!(
                    "`tls` must be true or false, not `{other}`"
                )))
            }
        };
        let ca = text(params, "tls_ca").map(PathBuf::from);
        let identity = match (text(params, "tls_cert"), text(params, "tls_key")) {
            (Some(c), Some(k)) => Some((PathBuf::from(c), PathBuf::from(k))),
            (None, None) => None,
            _ => {
                return Err(ConfigError(
                    "`tls_cert` and `tls_key` go together".to_owned(),
                ))
            }
        };
        let files = Self {
            enabled: enabled || ca.is_some() || identity.is_some(),
            ca,
            identity,
        };
        files.check()?;
        Ok(files)
    }

    /// The worker's own files for its broker links: `--tls-ca`, and its certificate when it
    /// runs mutual TLS.
    pub fn for_worker(enabled: bool, settings: &varpulis_tls::TlsSettings) -> Self {
        let identity = match (&settings.cert, &settings.key) {
            (Some(c), Some(k)) if settings.client_ca.is_some() => Some((c.clone(), k.clone())),
            _ => None,
        };
        Self {
            enabled,
            ca: settings.ca.clone(),
            identity,
        }
    }

    /// Fails when a named file cannot be read.
    pub fn check(&self) -> Result<(), ConfigError> {
        let paths = self
            .ca
            .iter()
            .chain(self.identity.iter().flat_map(|(c, k)| [c, k]));
        for path in paths {
            read(path)?;
        }
        Ok(())
    }

    /// The rumqttc transport: TCP, or TLS with these files.
    pub fn mqtt_transport(&self) -> Result<rumqttc::Transport, ConfigError> {
        if !self.enabled {
            return Ok(rumqttc::Transport::Tcp);
        }
        let Some(ca) = &self.ca else {
            if self.identity.is_some() {
                return Err(ConfigError(
                    "an MQTT client certificate needs `tls_ca` (the broker's CA)".into(),
                ));
            }
            return Ok(rumqttc::Transport::tls_with_default_config());
        };
        let client_auth = match &self.identity {
            Some((c, k)) => Some((read(c)?, read(k)?)),
            None => None,
        };
        Ok(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Simple {
                ca: read(ca)?,
                alpn: None,
                client_auth,
            },
        ))
    }

    /// Applies these files to NATS connect options (TLS itself is used when `enabled`, when a
    /// URL says `tls://`, or when the server requires it).
    pub fn nats_options(
        &self,
        mut options: async_nats::ConnectOptions,
    ) -> async_nats::ConnectOptions {
        if self.enabled {
            options = options.require_tls(true);
        }
        if let Some(ca) = &self.ca {
            options = options.add_root_certificates(ca.clone());
        }
        if let Some((c, k)) = &self.identity {
            options = options.add_client_certificate(c.clone(), k.clone());
        }
        options
    }
}

fn read(path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn connector_tls_parameters() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "x").unwrap();
        let none = ClientTlsFiles::from_params(&params(json!({"host": "h"}))).unwrap();
        assert!(!none.enabled);
        assert!(matches!(
            none.mqtt_transport().unwrap(),
            rumqttc::Transport::Tcp
        ));
        let on = ClientTlsFiles::from_params(&params(json!({"tls": "true"}))).unwrap();
        assert!(on.enabled && on.ca.is_none());
        let with_ca = ClientTlsFiles::from_params(&params(json!({"tls_ca": ca}))).unwrap();
        assert!(with_ca.enabled, "a CA implies TLS");
        assert!(matches!(
            with_ca.mqtt_transport().unwrap(),
            rumqttc::Transport::Tls(_)
        ));
        // Missing files and half an identity are refused when the plan is made.
        assert!(
            ClientTlsFiles::from_params(&params(json!({"tls_ca": "/no/such/ca.pem"}))).is_err()
        );
        assert!(ClientTlsFiles::from_params(&params(json!({"tls_cert": ca}))).is_err());
        assert!(ClientTlsFiles::from_params(&params(json!({"tls": "maybe"}))).is_err());
    }
}
