//! `varpulis cluster connectors ...`: list, get, create, update, rm.
//!
//! A connector is named (VPL refers to it by name), so the name is its id. `create` takes a
//! JSON spec (`-f`) or flags; `update` with flags reads the stored connector and changes only
//! what the flags name (`--param k=v` sets, `--unset-param k` removes), then sends the whole
//! spec (`PUT`); `update -f` replaces it.

use anyhow::{bail, Context};
use reqwest::Method;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use varpulis_api::cluster::{ConnectorList, ConnectorSpec, DeletedResponse};

use super::client::{read_input, segment, Client};
use super::resolve::PAGE;
use crate::cmd::output::{self, outln};

const CONNECTORS: &str = "/api/v1/cluster/connectors";

/// `varpulis cluster connectors ...`.
#[derive(Debug, clap::Subcommand)]
pub enum ConnectorsCmd {
    /// List connectors.
    List,
    /// Show one connector.
    Get {
        /// Connector name.
        name: String,
    },
    /// Create a connector from flags or a JSON spec.
    Create(SpecArgs),
    /// Change a connector: flags change only what they name; `-f` replaces the whole spec.
    Update(SpecArgs),
    /// Delete a connector.
    Rm {
        /// Connector name.
        name: String,
    },
}

/// Flags describing a connector.
#[derive(Debug, clap::Args)]
pub struct SpecArgs {
    /// Connector name (an identifier; VPL refers to it).
    #[arg(required_unless_present = "file")]
    pub name: Option<String>,
    /// `mqtt` or `nats`.
    #[arg(long = "type", value_name = "TYPE")]
    pub connector_type: Option<String>,
    /// One parameter, `KEY=VALUE` (e.g. `host=broker`, `port=1883`); repeatable.
    #[arg(long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// Remove a parameter (update only); repeatable.
    #[arg(long = "unset-param", value_name = "KEY")]
    pub unset: Vec<String>,
    /// Free text.
    #[arg(long)]
    pub description: Option<String>,
    /// The whole spec as JSON: `{name, connector_type, params, description}` (`-` reads stdin).
    #[arg(short = 'f', long = "file", conflicts_with_all = ["connector_type", "params", "unset", "description"])]
    pub file: Option<PathBuf>,
}

/// `KEY=VALUE` pairs into a parameter map (values sent as strings; the server accepts both).
fn parse_params(pairs: &[String]) -> anyhow::Result<Map<String, Value>> {
    let mut map = Map::new();
    for p in pairs {
        match p.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                map.insert(k.trim().to_owned(), Value::String(v.to_owned()));
            }
            _ => bail!("--param takes KEY=VALUE, got `{p}`"),
        }
    }
    Ok(map)
}

/// The spec in `-f`, checked against the name given on the command line.
fn spec_from_file(a: &SpecArgs, file: &Path) -> anyhow::Result<ConnectorSpec> {
    let text = read_input(file)?;
    let spec: ConnectorSpec = serde_json::from_str(&text)
        .with_context(|| format!("`{}` is not a connector spec", file.display()))?;
    if let Some(name) = &a.name {
        if name != &spec.name {
            bail!(
                "the name on the command line (`{name}`) differs from the file's (`{}`)",
                spec.name
            );
        }
    }
    Ok(spec)
}

/// Applies the flags of `a` to `spec`.
fn apply_flags(spec: &mut ConnectorSpec, a: &SpecArgs) -> anyhow::Result<()> {
    if let Some(t) = &a.connector_type {
        spec.connector_type.clone_from(t);
    }
    for k in &a.unset {
        spec.params.remove(k);
    }
    spec.params.extend(parse_params(&a.params)?);
    if let Some(d) = &a.description {
        spec.description = Some(d.clone());
    }
    Ok(())
}

/// Runs `connectors SUB`.
pub async fn run(c: &Client, cmd: &ConnectorsCmd, json: bool) -> anyhow::Result<()> {
    match cmd {
        ConnectorsCmd::List => list(c, json).await,
        ConnectorsCmd::Get { name } => {
            let (spec, raw): (ConnectorSpec, _) =
                c.get(&format!("{CONNECTORS}/{}", segment(name))).await?;
            if json {
                return Ok(output::json(&raw)?);
            }
            print_spec(&spec)?;
            Ok(())
        }
        ConnectorsCmd::Create(a) => {
            let spec = match &a.file {
                Some(file) => spec_from_file(a, file)?,
                None => {
                    if !a.unset.is_empty() {
                        bail!("--unset-param only applies to `connectors update`");
                    }
                    let Some(connector_type) = a.connector_type.clone() else {
                        bail!("--type is required (mqtt or nats), or give the spec with -f");
                    };
                    ConnectorSpec {
                        name: a.name.clone().unwrap_or_default(),
                        connector_type,
                        params: parse_params(&a.params)?,
                        description: a.description.clone(),
                    }
                }
            };
            let (stored, raw): (ConnectorSpec, _) = c
                .write(Method::POST, CONNECTORS, Some(serde_json::to_value(&spec)?))
                .await?;
            if json {
                return Ok(output::json(&raw)?);
            }
            outln!("connector {} created", stored.name)?;
            print_spec(&stored)?;
            Ok(())
        }
        ConnectorsCmd::Update(a) => {
            let spec = match &a.file {
                Some(file) => spec_from_file(a, file)?,
                None => {
                    let name = a.name.clone().unwrap_or_default();
                    let (mut spec, _): (ConnectorSpec, _) =
                        c.get(&format!("{CONNECTORS}/{}", segment(&name))).await?;
                    apply_flags(&mut spec, a)?;
                    spec
                }
            };
            let path = format!("{CONNECTORS}/{}", segment(&spec.name));
            let (stored, raw): (ConnectorSpec, _) = c
                .write(Method::PUT, &path, Some(serde_json::to_value(&spec)?))
                .await?;
            if json {
                return Ok(output::json(&raw)?);
            }
            outln!("connector {} updated", stored.name)?;
            print_spec(&stored)?;
            Ok(())
        }
        ConnectorsCmd::Rm { name } => {
            let path = format!("{CONNECTORS}/{}", segment(name));
            let (_, raw): (DeletedResponse, _) = c.write(Method::DELETE, &path, None).await?;
            if json {
                return Ok(output::json(&raw)?);
            }
            outln!("connector {name} deleted")?;
            Ok(())
        }
    }
}

async fn list(c: &Client, json: bool) -> anyhow::Result<()> {
    let mut all: Vec<Value> = Vec::new();
    let mut specs: Vec<ConnectorSpec> = Vec::new();
    loop {
        let path = format!("{CONNECTORS}?limit={PAGE}&offset={}", specs.len());
        let (page, raw): (ConnectorList, Value) = c.get(&path).await?;
        let n = page.connectors.len();
        all.extend(raw["connectors"].as_array().cloned().unwrap_or_default());
        specs.extend(page.connectors);
        if !page.pagination.has_more || n == 0 {
            break;
        }
    }
    if json {
        let total = all.len();
        return Ok(output::json(&json!({
            "connectors": all,
            "total": total,
            "pagination": {"limit": total, "offset": 0, "has_more": false},
        }))?);
    }
    let rows: Vec<Vec<String>> = specs
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.connector_type.clone(),
                params_text(&s.params),
                s.description.clone().unwrap_or_default(),
            ]
        })
        .collect();
    output::table(&["NAME", "TYPE", "PARAMS", "DESCRIPTION"], &rows)?;
    outln!("{} connector(s)", specs.len())?;
    Ok(())
}

fn params_text(params: &Map<String, Value>) -> String {
    params
        .iter()
        .map(|(k, v)| match v {
            Value::String(s) => format!("{k}={s}"),
            other => format!("{k}={other}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_spec(s: &ConnectorSpec) -> std::io::Result<()> {
    outln!("{} ({})", s.name, s.connector_type)?;
    if let Some(d) = &s.description {
        outln!("  {d}")?;
    }
    for (k, v) in &s.params {
        outln!("  {k} = {v}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> SpecArgs {
        SpecArgs {
            name: Some("Broker".into()),
            connector_type: None,
            params: vec!["host=mqtt.local".into(), "port=1883".into()],
            unset: vec!["user".into()],
            description: Some("d".into()),
            file: None,
        }
    }

    #[test]
    fn params_need_a_key() {
        assert!(parse_params(&["=x".into()]).is_err());
        assert!(parse_params(&["novalue".into()]).is_err());
        let m = parse_params(&["a=b=c".into()]).unwrap();
        assert_eq!(m["a"], "b=c");
    }

    #[test]
    fn update_flags_change_only_what_they_name() {
        let mut spec = ConnectorSpec {
            name: "Broker".into(),
            connector_type: "mqtt".into(),
            params: serde_json::from_value(json!({"host": "old", "user": "u", "qos": 1})).unwrap(),
            description: None,
        };
        apply_flags(&mut spec, &args()).unwrap();
        assert_eq!(spec.connector_type, "mqtt");
        assert_eq!(
            Value::Object(spec.params),
            json!({"host": "mqtt.local", "qos": 1, "port": "1883"})
        );
        assert_eq!(spec.description.as_deref(), Some("d"));
    }
}
