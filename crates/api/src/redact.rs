//! Which connector parameters are secrets, and how answers show them.
//!
//! A connector's `params` go to the workers that run a pipeline using it (they need the real
//! values), but API answers (`GET`, and the answers of `POST`/`PUT`) show every secret as
//! [`REDACTED`]. The rule (docs/security.md, "Secrets in answers"), on the parameter's name,
//! case-insensitive:
//!
//! - it contains `password`, `passwd`, `passphrase`, `secret`, `token`, `credential`, `apikey`,
//!   `privatekey` or `private_key`, or ends with `key` (`api_key`, `accessKey`, `client_key`);
//! - or one of its words (split at `_`, `-`, `.` and lower→upper case changes) is `pwd`, `pass`,
//!   `auth` or `authorization`;
//! - and any string value holding a URL with a password (`mqtt://user:pw@host`) has that
//!   password replaced, whatever the parameter's name.
//!
//! Sending [`REDACTED`] back as a value in a `PUT` keeps the stored value, so a client can
//! round-trip what it read.

use serde_json::Value;

use crate::cluster::ConnectorSpec;

/// What a secret parameter's value reads as in an answer.
pub const REDACTED: &str = "<redacted>";

const SECRET_PARTS: [&str; 9] = [
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "credential",
    "apikey",
    "privatekey",
    "private_key",
];
const SECRET_WORDS: [&str; 4] = ["pwd", "pass", "auth", "authorization"];

/// Whether a parameter named `name` holds a secret (see the module doc for the rule).
pub fn is_secret_param(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    if SECRET_PARTS.iter().any(|p| lower.contains(p)) || lower.ends_with("key") {
        return true;
    }
    words(name)
        .iter()
        .any(|w| SECRET_WORDS.contains(&w.as_str()))
}

/// `name` split at `_`, `-`, `.`, spaces and lower→upper case changes, lowercased.
fn words(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if !c.is_alphanumeric() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        prev_lower = c.is_lowercase() || c.is_ascii_digit();
        cur.extend(c.to_lowercase());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// `text` with the password of any `scheme://user:password@host` URL in it replaced.
pub fn redact_url_password(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace())
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.split_once(':') {
                    Some((user, _)) => {
                        out.push_str(user);
                        out.push(':');
                        out.push_str(REDACTED);
                        out.push_str(&authority[at..]);
                    }
                    None => out.push_str(authority),
                }
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// A parameter value as an answer shows it.
fn redact_value(name: &str, value: &Value) -> Value {
    match value {
        _ if is_secret_param(name) && !value.is_null() => Value::String(REDACTED.to_owned()),
        Value::String(s) if s.contains("://") => Value::String(redact_url_password(s)),
        other => other.clone(),
    }
}

impl ConnectorSpec {
    /// This connector as API answers show it: secret parameters replaced by [`REDACTED`].
    pub fn redacted(&self) -> ConnectorSpec {
        ConnectorSpec {
            name: self.name.clone(),
            connector_type: self.connector_type.clone(),
            params: self
                .params
                .iter()
                .map(|(k, v)| (k.clone(), redact_value(k, v)))
                .collect(),
            description: self.description.clone(),
        }
    }

    /// Puts back the stored value of every parameter sent as [`REDACTED`], or sent as the
    /// stored URL with its password redacted (a client round-tripping what it read); a redacted
    /// value with nothing stored stays as sent.
    pub fn restore_redacted(&mut self, stored: &ConnectorSpec) {
        for (k, v) in self.params.iter_mut() {
            let Some(old) = stored.params.get(k) else {
                continue;
            };
            let sent = v.as_str().unwrap_or_default();
            let unchanged_url = sent.contains(REDACTED)
                && old.as_str().is_some_and(|o| redact_url_password(o) == sent);
            if sent == REDACTED || unchanged_url {
                *v = old.clone();
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secret_names_follow_the_documented_rule() {
        for name in [
            "password",
            "mqtt_password",
            "Password",
            "passwd",
            "secret",
            "client_secret",
            "token",
            "authToken",
            "api_key",
            "apiKey",
            "accessKey",
            "client_key",
            "credentials",
            "credentials_file",
            "pwd",
            "db-pass",
            "auth",
            "basicAuth",
            "private_key_pem",
        ] {
            assert!(is_secret_param(name), "{name}");
        }
        for name in [
            "host",
            "port",
            "username",
            "user",
            "client_id",
            "topic",
            "qos",
            "keep_alive",
            "url",
            "passive",
            "author",
        ] {
            assert!(!is_secret_param(name), "{name}");
        }
    }

    #[test]
    fn url_passwords_are_redacted() {
        assert_eq!(
            redact_url_password("mqtt://bob:hunter2@broker:1883/x"),
            "mqtt://bob:<redacted>@broker:1883/x"
        );
        assert_eq!(
            redact_url_password("nats://broker:4222"),
            "nats://broker:4222"
        );
        assert_eq!(
            redact_url_password("nats://tok@broker"),
            "nats://tok@broker"
        );
        assert_eq!(
            redact_url_password("a://u:p@h b://v:q@i"),
            "a://u:<redacted>@h b://v:<redacted>@i"
        );
    }

    #[test]
    fn answers_hide_secrets_and_round_trips_keep_them() {
        let spec: ConnectorSpec = serde_json::from_value(json!({
            "name": "m", "connector_type": "mqtt",
            "params": {"host": "h", "port": 1883, "password": "hunter2", "token": 42,
                       "url": "mqtt://u:pw@h:1883"}
        }))
        .unwrap();
        let shown = spec.redacted();
        let text = serde_json::to_string(&shown).unwrap();
        assert!(!text.contains("hunter2") && !text.contains(":pw@") && !text.contains("42"));
        assert_eq!(shown.params["host"], "h");
        assert_eq!(shown.params["port"], 1883);
        let mut back = shown.clone();
        back.params.insert("host".into(), json!("h2"));
        back.restore_redacted(&spec);
        assert_eq!(back.params["password"], "hunter2");
        assert_eq!(back.params["url"], "mqtt://u:pw@h:1883");
        assert_eq!(back.params["token"], 42);
        assert_eq!(back.params["host"], "h2");
    }
}
