//! The connection flags shared by `varpulis coordinator` and `varpulis server`
//! (docs/security.md, "Connections").

use std::time::Duration;
use varpulis_coordinator::config::parse_secs;

/// `--header-read-timeout`, `--body-read-timeout`, `--idle-timeout`, `--max-connections` (and
/// their environment variables).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConnArgs {
    /// Seconds a connection has to send a complete request head (slowloris) [default: 10]
    #[arg(long, env = "VARPULIS_HEADER_READ_TIMEOUT", value_parser = parse_secs, value_name = "SECS")]
    pub header_read_timeout: Option<Duration>,
    /// Seconds a request body has to arrive [default: 60]
    #[arg(long, env = "VARPULIS_BODY_READ_TIMEOUT", value_parser = parse_secs, value_name = "SECS")]
    pub body_read_timeout: Option<Duration>,
    /// Seconds a kept-alive connection may stay without a request [default: 60]
    #[arg(long, env = "VARPULIS_IDLE_TIMEOUT", value_parser = parse_secs, value_name = "SECS")]
    pub idle_timeout: Option<Duration>,
    /// Most client connections at once, at most half the open-file limit [default: 4096]
    #[arg(long, env = "VARPULIS_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,
}

impl ConnArgs {
    /// Overlays the given flags on the configuration's values.
    pub fn overlay(self, limits: &mut varpulis_tls::ConnLimits) {
        for (given, target) in [
            (self.header_read_timeout, &mut limits.header_read_timeout),
            (self.body_read_timeout, &mut limits.body_read_timeout),
            (self.idle_timeout, &mut limits.idle_timeout),
        ] {
            if let Some(value) = given {
                *target = value;
            }
        }
        if let Some(n) = self.max_connections {
            limits.max_connections = n;
        }
    }
}
