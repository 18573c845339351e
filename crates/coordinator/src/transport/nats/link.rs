//! This node's NATS connection.

use std::time::Duration;

use crate::config::CoordinatorConfig;

pub use varpulis_api::nats::Transport;

/// First reconnect delay to the NATS server.
const RECONNECT_INITIAL: Duration = Duration::from_millis(250);

/// The configuration names no usable NATS server.
#[derive(Debug, thiserror::Error)]
#[error("invalid NATS configuration: {0}")]
pub struct NatsConfigError(pub String);

/// This node's NATS connection.
#[derive(Debug, Clone)]
pub struct NatsLink {
    /// The client (cheap to clone; reconnects by itself).
    pub client: async_nats::Client,
}

/// Parses a comma-separated NATS server list.
pub fn parse_servers(url: &str) -> Result<Vec<async_nats::ServerAddr>, NatsConfigError> {
    varpulis_api::nats::parse_servers(url).map_err(NatsConfigError)
}

/// Connects (retrying in the background forever) when the config selects NATS.
pub async fn connect(
    config: &CoordinatorConfig,
    node_id: u64,
) -> Result<Option<NatsLink>, NatsConfigError> {
    if config.transport != Transport::Nats {
        return Ok(None);
    }
    let url = config
        .nats_url
        .as_deref()
        .ok_or_else(|| NatsConfigError("--transport nats needs --nats-url".into()))?;
    let addrs = parse_servers(url)?;
    // TLS of the NATS link: `tls://` URLs (or a server that requires TLS) are verified
    // against `--tls-ca`; under mutual TLS the node presents its certificate.
    let mut options = async_nats::ConnectOptions::new();
    if let Some(ca) = &config.tls.ca {
        options = options.add_root_certificates(ca.clone());
    }
    if let (Some(cert), Some(key), Some(_)) =
        (&config.tls.cert, &config.tls.key, &config.tls.client_ca)
    {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    let client = varpulis_api::nats::connect(
        options,
        format!("varpulis-coordinator-{node_id}"),
        addrs,
        config.http_client_timeout,
        RECONNECT_INITIAL,
    )
    .await
    .map_err(|e| NatsConfigError(e.to_string()))?;
    Ok(Some(NatsLink { client }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_lists_parse() {
        assert!(parse_servers("nats://127.0.0.1:4222, nats://h:1").is_ok());
        assert!(parse_servers(" , ").is_err());
    }
}
