//! Monitoring out of the box (`deploy/monitoring/`, wired by the compose file): the Prometheus
//! configuration, alert rules, Grafana provisioning and dashboard parse, agree with each other
//! and with the compose services, and name only metrics the servers really expose (scraped from
//! a live ensemble, plus Prometheus' own `up` and `ALERTS`). With `promtool` installed the rules
//! are also checked and unit-tested (`alerts_test.yml`) and every dashboard query is parsed.

use crate::harness::{Ensemble, Opts, ADMIN_KEY, WORKER_KEY};
use crate::openapi::yaml_to_json;
use crate::repo;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use yaml_rust::YamlLoader;

fn monitoring() -> PathBuf {
    repo().join("deploy/monitoring")
}

fn yaml(path: PathBuf) -> Value {
    let text = std::fs::read_to_string(&path).unwrap();
    let docs = YamlLoader::load_from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()));
    assert_eq!(docs.len(), 1, "{}", path.display());
    yaml_to_json(&docs[0])
}

fn dashboard() -> Value {
    let path = monitoring().join("grafana/dashboards/varpulis-cluster.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Every PromQL expression: alert rules, then dashboard targets.
fn expressions() -> Vec<(String, String)> {
    let mut all = Vec::new();
    let rules = yaml(monitoring().join("alerts.yml"));
    for g in rules["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            all.push((
                format!("alert {}", r["alert"].as_str().unwrap()),
                r["expr"].as_str().unwrap().to_owned(),
            ));
        }
    }
    for p in dashboard()["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            all.push((
                format!("panel {}", p["title"].as_str().unwrap()),
                t["expr"].as_str().unwrap().to_owned(),
            ));
        }
    }
    all
}

const KEYWORDS: [&str; 12] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "atan2",
];

/// Aggregation operators (may be followed by `by (...)` before their parenthesis).
const AGGREGATIONS: [&str; 14] = [
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// Metric names a PromQL expression selects: identifiers that are not functions (followed by
/// `(`), keywords, label names (inside `{}` or the list after `by`/`on`/...), durations,
/// numbers or strings.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let skip_until = |from: usize, close: char| -> usize {
        let mut j = from;
        let mut quote: Option<char> = None;
        while j < chars.len() {
            match (quote, chars[j]) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), '\\') => j += 1,
                (Some(_), _) => {}
                (None, '"' | '\'' | '`') => quote = Some(chars[j]),
                (None, c) if c == close => return j + 1,
                _ => {}
            }
            j += 1;
        }
        j
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '{' {
            i = skip_until(i + 1, '}');
        } else if c == '[' {
            i = skip_until(i + 1, ']');
        } else if c == '"' || c == '\'' || c == '`' {
            let q = c;
            i += 1;
            while i < chars.len() && chars[i] != q {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c.is_ascii_digit() || c == '.' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c == '$' {
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut j = i;
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            let next = chars.get(j).copied();
            if AGGREGATIONS.contains(&word.as_str()) {
                // `sum by (le) (...)`: the aggregation itself is no metric.
            } else if KEYWORDS.contains(&word.as_str()) {
                // `by (a, b)`: a label list, not metrics.
                if next == Some('(')
                    && [
                        "by",
                        "without",
                        "on",
                        "ignoring",
                        "group_left",
                        "group_right",
                    ]
                    .contains(&word.as_str())
                {
                    i = skip_until(j + 1, ')');
                }
            } else if next != Some('(') {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// Values of `job="..."` matchers in an expression.
fn jobs(expr: &str) -> BTreeSet<String> {
    expr.match_indices("job=\"")
        .filter_map(|(i, m)| {
            let rest = &expr[i + m.len()..];
            rest.find('"').map(|end| rest[..end].to_owned())
        })
        .collect()
}

#[test]
fn metric_names_are_read_from_promql() {
    let names = metric_names(
        r#"histogram_quantile(0.99, sum by (le) (rate(a_bucket{job="x", le=~"1.*"}[1m]))) + on(instance) group_left(status) b offset 5m or absent(up{j="}"} == 1) > bool 2"#,
    );
    assert_eq!(
        names,
        ["a_bucket", "b", "up"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    assert_eq!(
        jobs(r#"up{job="a"} + x{job="b"}"#),
        ["a", "b"].iter().map(|s| s.to_string()).collect()
    );
}

#[test]
fn monitoring_files_parse_and_agree_with_compose() {
    let prom = yaml(monitoring().join("prometheus.yml"));
    let jobs_cfg: Vec<&Value> = prom["scrape_configs"].as_array().unwrap().iter().collect();
    let job = |name: &str| {
        *jobs_cfg
            .iter()
            .find(|j| j["job_name"] == name)
            .unwrap_or_else(|| panic!("no scrape job {name}"))
    };
    let compose = yaml(repo().join("deploy/docker/docker-compose.cluster.yml"));
    let services = compose["services"].as_object().unwrap();
    // Targets: exactly the compose coordinators on 9100 and workers on 9000.
    for (name, prefix, port) in [
        ("varpulis-coordinators", "coordinator-", 9100),
        ("varpulis-workers", "worker-", 9000),
    ] {
        let j = job(name);
        let targets: BTreeSet<String> = j["static_configs"][0]["targets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_owned())
            .collect();
        let expected: BTreeSet<String> = services
            .keys()
            .filter(|s| s.starts_with(prefix))
            .map(|s| format!("{s}:{port}"))
            .collect();
        assert_eq!(targets, expected, "{name}");
        assert_eq!(j["metrics_path"], "/metrics");
    }
    // The key files the scrape sends as x-api-key are written by the container's command.
    let p = &services["prometheus"];
    let script = p["command"][0].as_str().unwrap();
    for (job_name, env) in [
        ("varpulis-coordinators", "VARPULIS_API_KEY"),
        ("varpulis-workers", "VARPULIS_WORKER_KEY"),
    ] {
        let file = job(job_name)["http_headers"]["x-api-key"]["files"][0]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            script.contains(&format!("\"$${env}\" > {file}")),
            "{job_name}: {file} is not written from {env}: {script}"
        );
        assert!(p["environment"][env].is_string(), "prometheus lacks {env}");
    }
    assert!(script.contains("exec /bin/prometheus --config.file=/etc/prometheus/prometheus.yml"));
    // Mounted files exist and the rule file is the one prometheus.yml loads.
    let mounts: Vec<(String, String)> = p["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| {
            let mut parts = v.as_str()?.split(':');
            Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
        })
        .collect();
    let mounted = |target: &str| {
        mounts
            .iter()
            .find(|(_, t)| t == target)
            .map(|(src, _)| repo().join("deploy/docker").join(src))
            .unwrap_or_else(|| panic!("nothing mounted at {target}"))
    };
    assert!(mounted("/etc/prometheus/prometheus.yml").ends_with("monitoring/prometheus.yml"));
    assert_eq!(prom["rule_files"][0], "/etc/prometheus/alerts.yml");
    assert!(mounted("/etc/prometheus/alerts.yml").exists());
    assert_eq!(services["prometheus"]["ports"][0], "9091:9090");

    // Grafana: provisioned data source (the uid every panel uses) and dashboard folder.
    let g = &services["grafana"];
    let gmounts: Vec<String> = g["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert!(gmounts
        .iter()
        .any(|m| m.starts_with("../monitoring/grafana/provisioning:/etc/grafana/provisioning")));
    assert!(gmounts
        .iter()
        .any(|m| m.starts_with("../monitoring/grafana/dashboards:/var/lib/grafana/dashboards")));
    assert_eq!(g["ports"][0], "3000:3000");
    let ds = yaml(monitoring().join("grafana/provisioning/datasources/prometheus.yml"));
    let ds = &ds["datasources"][0];
    assert_eq!(ds["type"], "prometheus");
    assert_eq!(ds["url"], "http://prometheus:9090");
    let uid = ds["uid"].as_str().unwrap();
    let provider = yaml(monitoring().join("grafana/provisioning/dashboards/varpulis.yml"));
    assert_eq!(
        provider["providers"][0]["options"]["path"],
        "/var/lib/grafana/dashboards"
    );

    let dash = dashboard();
    assert_eq!(dash["uid"], "varpulis-cluster");
    let panels = dash["panels"].as_array().unwrap();
    let titles: Vec<String> = panels
        .iter()
        .map(|p| p["title"].as_str().unwrap().to_lowercase())
        .collect();
    for topic in [
        "term",
        "leader",
        "commit latency",
        "applied index",
        "workers by state",
        "events per second",
        "migrations",
        "proxy failures",
    ] {
        assert!(
            titles.iter().any(|t| t.contains(topic)),
            "no panel about {topic}: {titles:?}"
        );
    }
    for p in panels.iter().filter(|p| p["type"] != "row") {
        assert_eq!(p["datasource"]["uid"], uid, "{}", p["title"]);
        for t in p["targets"].as_array().unwrap() {
            assert_eq!(t["datasource"]["uid"], uid, "{}", p["title"]);
            assert!(t["expr"].as_str().is_some_and(|e| !e.is_empty()));
        }
        let pos = &p["gridPos"];
        assert!(pos["x"].as_u64().unwrap() + pos["w"].as_u64().unwrap() <= 24);
    }

    // Alert rules: the four the issue asks for, each with a severity and a summary.
    let rules = yaml(monitoring().join("alerts.yml"));
    let mut names = BTreeSet::new();
    for group in rules["groups"].as_array().unwrap() {
        for r in group["rules"].as_array().unwrap() {
            let name = r["alert"].as_str().unwrap();
            assert!(names.insert(name.to_owned()), "duplicate alert {name}");
            assert!(
                ["critical", "warning"].contains(&r["labels"]["severity"].as_str().unwrap()),
                "{name}"
            );
            assert!(r["annotations"]["summary"].is_string(), "{name}");
        }
    }
    for required in [
        "VarpulisNoLeader",
        "VarpulisQuorumLost",
        "VarpulisCoordinatorDown",
        "VarpulisMemberMissing",
        "VarpulisWorkerUnhealthy",
    ] {
        assert!(names.contains(required), "{required} missing: {names:?}");
    }
    // Every job an expression names is a scrape job.
    let job_names: BTreeSet<String> = jobs_cfg
        .iter()
        .map(|j| j["job_name"].as_str().unwrap().to_owned())
        .collect();
    for (what, expr) in expressions() {
        for j in jobs(&expr) {
            assert!(job_names.contains(&j), "{what}: unknown job {j}");
        }
    }
}

/// Metric names in a Prometheus text exposition (sample lines and `# TYPE` lines; a
/// histogram's `_bucket`, `_sum` and `_count`).
fn exposed(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                names.insert(name.to_owned());
                if kind == "histogram" {
                    for suffix in ["_bucket", "_sum", "_count"] {
                        names.insert(format!("{name}{suffix}"));
                    }
                }
            }
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_owned());
        }
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_and_alerts_name_only_metrics_the_servers_expose() {
    let ens = Ensemble::start(3, 1, Opts::default()).await;
    // A group, so the per-pipeline worker series exist.
    let spec: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("examples/iot/group.json")).unwrap(),
    )
    .unwrap();
    let gid = ens.create_group(0, &spec).await;
    ens.wait_group_running(0, &gid).await;

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let scrape = |url: String, key: &'static str| {
        let http = http.clone();
        async move {
            let r = http
                .get(format!("{url}/metrics"))
                .header("x-api-key", key)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{url}/metrics");
            r.text().await.unwrap()
        }
    };
    let mut available = exposed(&scrape(ens.coords[0].url.clone(), ADMIN_KEY).await);
    let leader = ens.wait_leader(Duration::from_secs(20)).await;
    available.extend(exposed(
        &scrape(ens.coords[leader].url.clone(), ADMIN_KEY).await,
    ));
    available.extend(exposed(
        &scrape(ens.workers[0].url.clone(), WORKER_KEY).await,
    ));
    // Synthetic series Prometheus itself makes.
    available.extend(["up".to_owned(), "ALERTS".to_owned()]);
    for required in [
        "varpulis_raft_term",
        "varpulis_raft_leader_id",
        "varpulis_raft_applied_index",
        "varpulis_migrations",
        "varpulis_migrations_started_total",
        "varpulis_raft_learners",
        "varpulis_raft_data_size_bytes",
    ] {
        assert!(available.contains(required), "{required} is not exposed");
    }

    let mut used = BTreeSet::new();
    for (what, expr) in expressions() {
        let names = metric_names(&expr);
        assert!(!names.is_empty(), "{what}: no metric in `{expr}`");
        for n in names {
            assert!(
                available.contains(&n),
                "{what}: `{n}` is not exposed by any server (expr `{expr}`)"
            );
            used.insert(n);
        }
    }
    assert!(used.len() >= 15, "{used:?}");
}

#[test]
fn promtool_checks_and_unit_tests_the_rules() {
    if Command::new("promtool").arg("--version").output().is_err() {
        eprintln!("SKIP: promtool is not installed (apt-get install prometheus)");
        return;
    }
    let dir = monitoring();
    let out = Command::new("promtool")
        .args(["check", "rules", "alerts.yml"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = Command::new("promtool")
        .args(["test", "rules", "alerts_test.yml"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Dashboard queries parse as PromQL: check them as recording rules.
    let tmp = tempfile::tempdir().unwrap();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (_, expr)) in expressions().iter().enumerate() {
        rules.push_str(&format!(
            "      - record: dashboard_query_{i}\n        expr: {}\n",
            serde_json::to_string(expr).unwrap()
        ));
    }
    let path = tmp.path().join("dashboard-rules.yml");
    std::fs::write(&path, rules).unwrap();
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}
