//! The TLS flags shared by `varpulis coordinator` and `varpulis server` (docs/security.md).

use std::path::PathBuf;

/// `--tls-cert`, `--tls-key`, `--tls-ca`, `--tls-client-ca` (and their environment variables).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServerTlsArgs {
    /// PEM certificate chain: serve HTTPS only on the port (needs --tls-key; reloaded on SIGHUP)
    #[arg(long, env = "VARPULIS_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert
    #[arg(long, env = "VARPULIS_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// CA bundle that every server this process calls must chain to (peers, leader, workers, coordinators)
    #[arg(long, env = "VARPULIS_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Require client certificates signed by this CA, and present --tls-cert when calling others (mutual TLS)
    #[arg(long, env = "VARPULIS_TLS_CLIENT_CA", value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
}

impl ServerTlsArgs {
    /// Overlays the given flags on the configuration's values (an empty value clears one).
    pub fn overlay(self, settings: &mut varpulis_tls::TlsSettings) {
        for (given, target) in [
            (self.tls_cert, &mut settings.cert),
            (self.tls_key, &mut settings.key),
            (self.tls_ca, &mut settings.ca),
            (self.tls_client_ca, &mut settings.client_ca),
        ] {
            if let Some(path) = given {
                *target = Some(path).filter(|p| !p.as_os_str().is_empty());
            }
        }
    }
}
