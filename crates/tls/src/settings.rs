//! The TLS files a coordinator, worker or CLI is given, and what they switch on.

use crate::error::TlsError;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `--tls-cert`, `--tls-key`, `--tls-ca`, `--tls-client-ca` and `--tls-peer-name`.
///
/// In a configuration file (flattened into the coordinator's and the worker's) the keys are
/// `tls_cert`, `tls_key`, `tls_ca`, `tls_client_ca` and `tls_peer_name`.
///
/// - `cert` + `key`: serve HTTPS only (PEM chain, leaf first; PEM key).
/// - `ca`: verify every server this process calls against this CA bundle (instead of the
///   public web roots).
/// - `client_ca`: require a client certificate signed by this CA on every accepted connection,
///   and present `cert` when calling others (mutual TLS). Needs `cert` + `key`.
/// - `peer_name`: under mutual TLS, a client certificate valid for this DNS name identifies a
///   coordinator peer and stands in for the peer secret on the Raft RPCs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TlsSettings {
    /// Certificate chain served (and presented as client certificate under mutual TLS).
    #[serde(rename = "tls_cert")]
    pub cert: Option<PathBuf>,
    /// Private key of `cert`.
    #[serde(rename = "tls_key")]
    pub key: Option<PathBuf>,
    /// CA bundle that servers this process calls must chain to.
    #[serde(rename = "tls_ca")]
    pub ca: Option<PathBuf>,
    /// CA bundle that client certificates must chain to (turns mutual TLS on).
    #[serde(rename = "tls_client_ca")]
    pub client_ca: Option<PathBuf>,
    /// DNS name that marks a client certificate as a coordinator peer's.
    #[serde(rename = "tls_peer_name")]
    pub peer_name: Option<String>,
}

impl TlsSettings {
    /// Checks that the files that go together are given together.
    pub fn validate(&self) -> Result<(), TlsError> {
        match (&self.cert, &self.key) {
            (Some(_), None) => {
                return Err(TlsError::Config(
                    "--tls-cert needs --tls-key (the certificate's private key)".into(),
                ))
            }
            (None, Some(_)) => {
                return Err(TlsError::Config(
                    "--tls-key needs --tls-cert (the certificate it belongs to)".into(),
                ))
            }
            _ => {}
        }
        if self.client_ca.is_some() && self.cert.is_none() {
            return Err(TlsError::Config(
                "--tls-client-ca (mutual TLS) needs --tls-cert and --tls-key".into(),
            ));
        }
        if self.peer_name.is_some() && self.client_ca.is_none() {
            return Err(TlsError::Config(
                "--tls-peer-name needs --tls-client-ca (it names peers among client certificates)"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Whether the process serves HTTPS.
    pub fn serves_tls(&self) -> bool {
        self.cert.is_some() && self.key.is_some()
    }

    /// Whether mutual TLS is on (client certificates required and presented).
    pub fn mutual(&self) -> bool {
        self.client_ca.is_some() && self.serves_tls()
    }

    /// The URL scheme this process advertises for itself.
    pub fn scheme(&self) -> &'static str {
        if self.serves_tls() {
            "https"
        } else {
            "http"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_that_go_together_are_checked() {
        let cert = Some(PathBuf::from("c.pem"));
        let key = Some(PathBuf::from("k.pem"));
        assert!(TlsSettings::default().validate().is_ok());
        let only_cert = TlsSettings {
            cert: cert.clone(),
            ..Default::default()
        };
        assert!(only_cert.validate().is_err());
        let mtls_no_cert = TlsSettings {
            client_ca: Some("ca.pem".into()),
            ..Default::default()
        };
        assert!(mtls_no_cert.validate().is_err());
        let full = TlsSettings {
            cert,
            key,
            ca: Some("ca.pem".into()),
            client_ca: Some("ca.pem".into()),
            peer_name: Some("varpulis-coordinator".into()),
        };
        assert!(full.validate().is_ok());
        assert!(full.mutual());
        assert_eq!(full.scheme(), "https");
    }
}
