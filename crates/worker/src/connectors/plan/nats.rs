//! What a NATS connector (VPL.md §9, kind `nats`) does for one pipeline: its parameters, the
//! `.from` subscriptions and the `.to` streams, checked before anything connects.
//!
//! `topic` is the NATS subject (`*` and `>` wildcards allowed in `.from`).

use crate::backoff;
use crate::error::WorkerError;
use async_nats::ConnectOptions;
use serde_json::{Map, Value};
use std::time::Duration;

/// First reconnect delay of a NATS connector.
pub const BACKOFF_INITIAL: Duration = Duration::from_millis(500);
/// Largest reconnect delay of a NATS connector.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Default NATS port.
pub const DEFAULT_PORT: u16 = 4222;

fn param_str(params: &Map<String, Value>, key: &str) -> Option<String> {
    match params.get(key)? {
        Value::Array(items) => {
            let parts: Vec<String> = items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect();
            Some(parts.join(","))
        }
        _ => super::mqtt::param_str(params, key),
    }
}

/// Whether `s` is a valid NATS subject; `wildcards` allows `*` tokens and a final `>`.
pub fn valid_subject(s: &str, wildcards: bool) -> bool {
    if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let tokens: Vec<&str> = s.split('.').collect();
    let last = tokens.len() - 1;
    tokens.iter().enumerate().all(|(i, t)| match *t {
        "" => false,
        "*" => wildcards,
        ">" => wildcards && i == last,
        t => !t.contains('*') && !t.contains('>'),
    })
}

/// Connection parameters of one NATS connector.
#[derive(Debug, Clone, PartialEq)]
pub struct NatsParams {
    /// Server URLs (`nats://host:port`, `tls://...`), from `servers`/`url`, else `host`+`port`.
    pub servers: Vec<String>,
    /// User name (with `password`).
    pub username: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// Token authentication.
    pub token: Option<String>,
    /// Connection name shown by the server (`name`, else `varpulis-<pipeline>`).
    pub name: Option<String>,
    /// Default subject (`subject`, else `topic`).
    pub subject: Option<String>,
    /// TLS (`tls`, `tls_ca`, `tls_cert`, `tls_key`; `tls://` server URLs also require TLS).
    pub tls: crate::config::ClientTlsFiles,
}

impl NatsParams {
    /// Reads parameters whose values are strings or numbers (`"port": "4222"` works).
    pub fn from_map(name: &str, params: &Map<String, Value>) -> Result<Self, WorkerError> {
        let bad = |m: String| WorkerError::Connector(format!("connector `{name}`: {m}"));
        let servers: Vec<String> = match param_str(params, "servers")
            .or_else(|| param_str(params, "url"))
            .filter(|s| !s.trim().is_empty())
        {
            Some(list) => list
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
            None => {
                let host = param_str(params, "host")
                    .filter(|h| !h.is_empty())
                    .ok_or_else(|| bad("`servers` (or `url`, or `host`) is required".into()))?;
                let port = match param_str(params, "port") {
                    None => DEFAULT_PORT,
                    Some(p) => p
                        .parse::<u16>()
                        .ok()
                        .filter(|p| *p > 0)
                        .ok_or_else(|| bad(format!("`port` `{p}` is not a port number")))?,
                };
                vec![format!("nats://{host}:{port}")]
            }
        };
        for s in &servers {
            s.parse::<async_nats::ServerAddr>()
                .map_err(|e| bad(format!("bad server address `{s}`: {e}")))?;
        }
        let subject = param_str(params, "subject").or_else(|| param_str(params, "topic"));
        let tls = crate::config::ClientTlsFiles::from_params(params).map_err(|e| bad(e.0))?;
        Ok(Self {
            servers,
            username: param_str(params, "username").or_else(|| param_str(params, "user")),
            password: param_str(params, "password"),
            token: param_str(params, "token"),
            name: param_str(params, "name").or_else(|| param_str(params, "client_id")),
            subject,
            tls,
        })
    }

    /// Client options: infinite reconnects with our backoff, and auth.
    pub fn options(&self, default_name: &str) -> ConnectOptions {
        let mut o = ConnectOptions::new()
            .name(self.name.clone().unwrap_or_else(|| default_name.to_owned()))
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connection_timeout(Duration::from_secs(5))
            .reconnect_delay_callback(|n| backoff::delay(BACKOFF_INITIAL, n, BACKOFF_MAX));
        if let Some(u) = &self.username {
            o = o.user_and_password(u.clone(), self.password.clone().unwrap_or_default());
        }
        if let Some(t) = &self.token {
            o = o.token(t.clone());
        }
        self.tls.nats_options(o)
    }

    /// The server list as async-nats addresses (checked in [`Self::from_map`]).
    pub fn addrs(&self) -> Vec<async_nats::ServerAddr> {
        self.servers.iter().filter_map(|s| s.parse().ok()).collect()
    }
}

/// One NATS connector's subscriptions and sinks for one pipeline.
pub type NatsPlan = super::ConnectorPlan<NatsParams>;

impl NatsParams {
    fn subject_or_default(
        &self,
        name: &str,
        topic: Option<&str>,
        what: &str,
        wildcards: bool,
    ) -> Result<String, WorkerError> {
        let subject = topic
            .map(str::to_owned)
            .or_else(|| self.subject.clone())
            .ok_or_else(|| {
                WorkerError::Connector(format!(
                    "connector `{name}`: {what} needs a `topic` (NATS subject)"
                ))
            })?;
        if !valid_subject(&subject, wildcards) {
            return Err(WorkerError::Connector(format!(
                "connector `{name}`: bad NATS subject `{subject}` for {what}"
            )));
        }
        Ok(subject)
    }
}

impl super::Params for NatsParams {
    fn from_map(name: &str, params: &Map<String, Value>) -> Result<Self, WorkerError> {
        NatsParams::from_map(name, params)
    }

    fn source_topic(&self, name: &str, topic: Option<&str>) -> Result<String, WorkerError> {
        self.subject_or_default(name, topic, "`.from`", true)
    }

    fn check_sink_topic(&self, name: &str, topic: Option<&str>) -> Result<(), WorkerError> {
        self.subject_or_default(name, topic, "`.to`", false)
            .map(|_| ())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn params_take_servers_url_or_host_port() {
        let p =
            NatsParams::from_map("N", &map(json!({"servers": "nats://a:1,nats://b:2"}))).unwrap();
        assert_eq!(p.servers, vec!["nats://a:1", "nats://b:2"]);
        let p = NatsParams::from_map("N", &map(json!({"host": "h", "port": "4333"}))).unwrap();
        assert_eq!(p.servers, vec!["nats://h:4333"]);
        let p = NatsParams::from_map("N", &map(json!({"host": "h", "subject": "a.b"}))).unwrap();
        assert_eq!(p.servers, vec!["nats://h:4222"]);
        assert_eq!(p.subject.as_deref(), Some("a.b"));
        let p = NatsParams::from_map("N", &map(json!({"servers": ["nats://a:1", "nats://b:2"]})))
            .unwrap();
        assert_eq!(p.servers.len(), 2);
        assert!(NatsParams::from_map("N", &map(json!({}))).is_err());
        assert!(NatsParams::from_map("N", &map(json!({"host": "h", "port": 0}))).is_err());
        assert!(NatsParams::from_map("N", &map(json!({"host": "h", "port": "x"}))).is_err());
    }

    #[test]
    fn subjects_are_checked() {
        assert!(valid_subject("a.b.c", false));
        assert!(valid_subject("a.*.c", true));
        assert!(valid_subject("a.>", true));
        assert!(!valid_subject("a.>", false));
        assert!(!valid_subject("a.>.c", true));
        assert!(!valid_subject("a..b", true));
        assert!(!valid_subject("", true));
        assert!(!valid_subject("a b", true));
        assert!(!valid_subject("a.b*", true));
    }
}
