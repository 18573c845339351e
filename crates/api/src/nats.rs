//! Wire-level names of the NATS cluster transport (spec/nats-transport.txt), shared by the
//! coordinator and the workers: subjects, headers, the transport setting and the parsing of a
//! NATS server list. Pure helpers, and with the `nats-client` feature the one connection
//! set-up ([`connect`]) of coordinators and workers.

use serde::{Deserialize, Serialize};

/// Prefix of every cluster subject.
pub const PREFIX: &str = "varpulis.cluster";
/// Registration subject (request/reply).
pub const REGISTER_SUBJECT: &str = "varpulis.cluster.register";
/// Wildcard the coordinator leader subscribes to for heartbeats.
pub const HEARTBEAT_WILDCARD: &str = "varpulis.cluster.heartbeat.>";
/// Header holding the HTTP status of a reply.
pub const STATUS_HEADER: &str = "varpulis-status";

/// `varpulis.cluster.heartbeat.{worker_id}`.
pub fn heartbeat_subject(worker_id: &str) -> String {
    format!("{PREFIX}.heartbeat.{worker_id}")
}

/// `varpulis.cluster.cmd.{worker_id}.{cmd}`.
pub fn command_subject(worker_id: &str, cmd: &str) -> String {
    format!("{PREFIX}.cmd.{worker_id}.{cmd}")
}

/// Whether `id` can be one subject token (worker ids appear in subjects).
pub fn valid_token(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Parses a comma-separated NATS server list into the caller's address type (blank entries
/// are skipped); the error message names the bad entry, or says the list is empty.
pub fn parse_servers<A>(url: &str) -> Result<Vec<A>, String>
where
    A: std::str::FromStr,
    A::Err: std::fmt::Display,
{
    let addrs: Vec<A> = url
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|e| format!("bad NATS URL `{s}`: {e}")))
        .collect::<Result<_, _>>()?;
    if addrs.is_empty() {
        return Err("the NATS URL is empty".into());
    }
    Ok(addrs)
}

/// Largest delay between two reconnect attempts to the NATS server.
pub const RECONNECT_MAX: std::time::Duration = std::time::Duration::from_secs(5);

/// Delay before reconnect attempt `attempt` (1-based): `initial` doubling per attempt, at most
/// [`RECONNECT_MAX`].
pub fn reconnect_delay(initial: std::time::Duration, attempt: usize) -> std::time::Duration {
    let shift = attempt.saturating_sub(1).min(16) as u32;
    initial.saturating_mul(1u32 << shift).min(RECONNECT_MAX)
}

/// Connects `options` (TLS already set) to `addrs` as client `name`: the connection is retried
/// in the background forever (so this returns at once), reconnects back off from
/// `reconnect_initial` ([`reconnect_delay`]), requests time out after `request_timeout`, and
/// connection events are logged.
#[cfg(feature = "nats-client")]
pub async fn connect(
    options: async_nats::ConnectOptions,
    name: String,
    addrs: Vec<async_nats::ServerAddr>,
    request_timeout: std::time::Duration,
    reconnect_initial: std::time::Duration,
) -> Result<async_nats::Client, async_nats::ConnectError> {
    options
        .name(name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(std::time::Duration::from_secs(5))
        .request_timeout(Some(request_timeout))
        .reconnect_delay_callback(move |n| reconnect_delay(reconnect_initial, n))
        .event_callback(|event| async move {
            match event {
                async_nats::Event::Connected => tracing::info!("nats transport connected"),
                other => tracing::warn!("nats transport: {other}"),
            }
        })
        .connect(addrs)
        .await
}

/// Coordinator ↔ worker transport.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// Workers register and heartbeat over HTTP; the coordinator calls their REST API.
    #[default]
    Http,
    /// Workers register, heartbeat and take commands over NATS subjects.
    Nats,
}

impl std::str::FromStr for Transport {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "http" | "rest" => Ok(Self::Http),
            "nats" => Ok(Self::Nats),
            other => Err(format!("unknown transport `{other}` (http or nats)")),
        }
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Http => "http",
            Self::Nats => "nats",
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn subjects_follow_the_spec() {
        assert_eq!(heartbeat_subject("w-1"), "varpulis.cluster.heartbeat.w-1");
        assert_eq!(
            command_subject("w-1", "deploy"),
            "varpulis.cluster.cmd.w-1.deploy"
        );
        assert_eq!(
            command_subject("w1", "inject_batch"),
            "varpulis.cluster.cmd.w1.inject_batch"
        );
        assert!(valid_token("9b1c-aa_2"));
        assert!(!valid_token("a.b"));
        assert!(!valid_token("a*"));
        assert!(!valid_token(""));
    }

    #[test]
    fn server_lists_and_transport_names() {
        let addrs: Vec<std::net::SocketAddr> =
            parse_servers("127.0.0.1:4222, 127.0.0.1:1").unwrap();
        assert_eq!(addrs.len(), 2);
        let err = parse_servers::<std::net::SocketAddr>("127.0.0.1:4222,nope").unwrap_err();
        assert!(err.contains("bad NATS URL `nope`"), "{err}");
        assert!(parse_servers::<std::net::SocketAddr>(" , ").is_err());
        assert_eq!("NATS".parse::<Transport>(), Ok(Transport::Nats));
        assert_eq!(" rest ".parse::<Transport>(), Ok(Transport::Http));
        assert!("carrier-pigeon".parse::<Transport>().is_err());
        assert_eq!(Transport::Nats.to_string(), "nats");
    }
}
