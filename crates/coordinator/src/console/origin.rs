//! Web origins (`scheme://host:port`) and which of them belong to the cluster.
//!
//! A console page served by one member may call every other member (its node can die, the
//! page then carries on through another one), so the members' advertised URLs are the origins
//! the coordinator trusts for cross-origin calls. Loopback names are one host: a page opened at
//! `http://localhost:9100` is the member advertised as `http://127.0.0.1:9100`.

/// A parsed web origin: lower-case scheme and host, explicit port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `http` or `https`.
    pub scheme: String,
    /// Host name or address (IPv6 in brackets), lower-case.
    pub host: String,
    /// Port (the scheme's default when the text has none).
    pub port: u16,
}

impl Origin {
    /// Parses an `Origin` header value or the start of a URL (`http://h:p/path` gives
    /// `http://h:p`). `None` for `null`, other schemes and malformed text.
    pub fn parse(text: &str) -> Option<Origin> {
        let text = text.trim();
        let (scheme, rest) = text.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return None,
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if authority.is_empty() || authority.contains('@') {
            return None;
        }
        let (host, port) = split_host_port(authority)?;
        let port = match port {
            Some(p) => p.parse().ok()?,
            None => default_port,
        };
        Some(Origin {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// Whether the host is a loopback name or address.
    pub fn is_loopback(&self) -> bool {
        self.host == "localhost" || self.host == "[::1]" || self.host.starts_with("127.")
    }

    /// Whether both name the same server: equal, or both on loopback with the same scheme
    /// and port.
    pub fn same_server(&self, other: &Origin) -> bool {
        self == other
            || (self.scheme == other.scheme
                && self.port == other.port
                && self.is_loopback()
                && other.is_loopback())
    }

    /// The origin as a browser writes it (`http://127.0.0.1:9100`, default ports omitted).
    pub fn serialize(&self) -> String {
        let default = matches!(
            (self.scheme.as_str(), self.port),
            ("http", 80) | ("https", 443)
        );
        if default {
            format!("{}://{}", self.scheme, self.host)
        } else {
            format!("{}://{}:{}", self.scheme, self.host, self.port)
        }
    }
}

/// Splits `host[:port]` (IPv6 in brackets) into host and optional port text.
fn split_host_port(authority: &str) -> Option<(&str, Option<&str>)> {
    if authority.starts_with('[') {
        let end = authority.find(']')?;
        let host = &authority[..=end];
        return match &authority[end + 1..] {
            "" => Some((host, None)),
            rest => Some((host, Some(rest.strip_prefix(':')?))),
        };
    }
    match authority.split_once(':') {
        Some((host, port)) if !host.is_empty() => Some((host, Some(port))),
        Some(_) => None,
        None => Some((authority, None)),
    }
}

/// Whether a request carrying `origin` comes from the page of the server it was sent to:
/// `host` is the request's `Host` header (`name[:port]`).
pub fn is_same_origin(origin: &Origin, host: Option<&str>) -> bool {
    let Some(host) = host else {
        return false;
    };
    let default_port = if origin.scheme == "https" { 443 } else { 80 };
    let Some((name, port)) = split_host_port(host.trim()) else {
        return false;
    };
    let port = match port {
        Some(p) => match p.parse::<u16>() {
            Ok(p) => p,
            Err(_) => return false,
        },
        None => default_port,
    };
    name.eq_ignore_ascii_case(&origin.host) && port == origin.port
}

/// Whether `origin` is one of `members` (advertised URLs).
pub fn is_member<'a>(origin: &Origin, members: impl IntoIterator<Item = &'a str>) -> bool {
    members
        .into_iter()
        .filter_map(Origin::parse)
        .any(|m| m.same_server(origin))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_parse_with_default_ports() {
        let o = Origin::parse("http://127.0.0.1:9100").unwrap();
        assert_eq!((o.host.as_str(), o.port), ("127.0.0.1", 9100));
        assert_eq!(Origin::parse("https://Node.Example").unwrap().port, 443);
        assert_eq!(
            Origin::parse("http://h:1/x?y").unwrap().serialize(),
            "http://h:1"
        );
        assert_eq!(Origin::parse("http://[::1]:8080").unwrap().host, "[::1]");
        for bad in [
            "null",
            "file://x",
            "http://",
            "http://:80",
            "http://u@h",
            "http://h:x",
        ] {
            assert_eq!(Origin::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn members_match_exactly_or_on_loopback() {
        let members = ["http://127.0.0.1:9100", "http://10.0.0.2:9100"];
        let is = |o: &str| is_member(&Origin::parse(o).unwrap(), members);
        assert!(is("http://127.0.0.1:9100"));
        assert!(is("http://localhost:9100"));
        assert!(is("http://10.0.0.2:9100"));
        assert!(!is("http://10.0.0.2:9101"));
        assert!(!is("https://127.0.0.1:9100"));
        assert!(!is("http://evil.example:9100"));
        assert!(!is("http://localhost:9101"));
    }

    #[test]
    fn same_origin_compares_host_and_port() {
        let o = Origin::parse("http://Example.com:9100").unwrap();
        assert!(is_same_origin(&o, Some("example.com:9100")));
        assert!(!is_same_origin(&o, Some("example.com:9101")));
        assert!(!is_same_origin(&o, None));
        let plain = Origin::parse("http://example.com").unwrap();
        assert!(is_same_origin(&plain, Some("example.com")));
    }
}
