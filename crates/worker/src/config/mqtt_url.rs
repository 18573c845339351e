//! MQTT broker addresses as configured (`--mqtt-url`) or shipped in deploys:
//! `mqtt://[user[:password]@]host[:port]`, `tcp://...` or no scheme; the port defaults to 1883.
//! `mqtts://` (or `ssl://`) asks for TLS; its port defaults to 8883.

use super::ConfigError;

/// Where an MQTT broker is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddr {
    /// Host name or IP.
    pub host: String,
    /// Port (1883 by default).
    pub port: u16,
    /// User name, if any.
    pub username: Option<String>,
    /// Password, if any.
    pub password: Option<String>,
    /// TLS (`mqtts://`).
    pub tls: bool,
}

/// Parses a broker URL; the error names the URL and what is wrong with it.
pub fn parse_mqtt_url(url: &str) -> Result<BrokerAddr, ConfigError> {
    let bad = |m: &str| ConfigError(format!("mqtt url `{url}`: {m}"));
    let url = url.trim();
    let (rest, tls) = match url.split_once("://") {
        Some(("mqtt" | "tcp", rest)) => (rest, false),
        Some(("mqtts" | "ssl", rest)) => (rest, true),
        Some((scheme, _)) => {
            return Err(bad(&format!(
                "scheme `{scheme}` is not supported (use mqtt:// or mqtts://)"
            )))
        }
        None => (url, false),
    };
    let rest = rest.trim_end_matches('/');
    let (creds, hostport) = match rest.rsplit_once('@') {
        Some((c, h)) => (Some(c), h),
        None => (None, rest),
    };
    let (username, password) = match creds {
        None => (None, None),
        Some(c) => match c.split_once(':') {
            Some((u, p)) => (Some(u.to_owned()), Some(p.to_owned())),
            None => (Some(c.to_owned()), None),
        },
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(|| bad("unclosed `[`"))?;
        (h.to_owned(), after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (hostport.to_owned(), None),
        }
    };
    if host.is_empty() || host.contains('/') {
        return Err(bad("no host"));
    }
    let port = match port {
        None if tls => 8883,
        None => 1883,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| bad("bad port"))?,
    };
    Ok(BrokerAddr {
        host,
        port,
        username,
        password,
        tls,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn urls_with_and_without_scheme_port_and_credentials() {
        let b = parse_mqtt_url("mqtt://127.0.0.1:1884").unwrap();
        assert_eq!((b.host.as_str(), b.port), ("127.0.0.1", 1884));
        let b = parse_mqtt_url("broker.local").unwrap();
        assert_eq!((b.host.as_str(), b.port), ("broker.local", 1883));
        let b = parse_mqtt_url("tcp://u:p@h:1/").unwrap();
        assert_eq!(
            (b.username.as_deref(), b.password.as_deref(), b.port),
            (Some("u"), Some("p"), 1)
        );
        let b = parse_mqtt_url("mqtt://[::1]:1885").unwrap();
        assert_eq!((b.host.as_str(), b.port), ("::1", 1885));
        let b = parse_mqtt_url("mqtts://broker.local").unwrap();
        assert_eq!((b.port, b.tls), (8883, true));
        assert!(!parse_mqtt_url("mqtt://h").unwrap().tls);
        assert!(parse_mqtt_url("http://h:1883").is_err());
        assert!(parse_mqtt_url("mqtt://h:notaport").is_err());
        assert!(parse_mqtt_url("mqtt://:1883").is_err());
    }
}
