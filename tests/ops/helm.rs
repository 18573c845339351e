//! The Helm chart `deploy/helm/varpulis`: every template is valid YAML once its `{{ ... }}`
//! actions are substituted, the objects have the shape a Raft group needs (parallel start,
//! headless service publishing not-ready pods, a PVC per coordinator, probes on /health and
//! /ready, disruption budgets), every `.Values` path exists, and a pod's advertised address is
//! its own entry of the peers list (pod ordinal i = Raft node id i+1). With `helm` on the PATH,
//! `helm lint` and `helm template` run too (helm is not packaged by Debian; skipped otherwise).

use crate::openapi::yaml_to_json;
use crate::repo;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use yaml_rust::YamlLoader;

fn chart() -> PathBuf {
    repo().join("deploy/helm/varpulis")
}

fn template(name: &str) -> String {
    std::fs::read_to_string(chart().join("templates").join(name)).unwrap()
}

/// Replaces template actions so the YAML structure can be parsed without Helm: lines holding
/// only a control action (`if`, `range`, `with`, `end`, `$x := ...`) go away (their bodies
/// stay), `include`/`toYaml ... | nindent N` lines become one indented placeholder, and any
/// other action becomes `x`.
fn substitute(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let t = line.trim();
        let only_action = t.starts_with("{{") && t.ends_with("}}") && t.matches("{{").count() == 1;
        if only_action {
            let inner = t
                .trim_start_matches("{{")
                .trim_end_matches("}}")
                .trim_matches('-')
                .trim();
            let control = [
                "if ", "else", "end", "range ", "with ", "define ", "/*", "$",
            ]
            .iter()
            .any(|k| inner.starts_with(k));
            if control {
                continue;
            }
            if let Some(n) = inner
                .rsplit("nindent ")
                .next()
                .filter(|_| inner.contains("nindent"))
            {
                let n: usize = n.trim().parse().unwrap();
                let placeholder = if inner.starts_with("toYaml") {
                    "{}"
                } else {
                    "placeholder/label: x"
                };
                out.push_str(&" ".repeat(n));
                out.push_str(placeholder);
                out.push('\n');
                continue;
            }
        }
        let mut rest = line;
        while let Some(start) = rest.find("{{") {
            out.push_str(&rest[..start]);
            let end = rest[start..].find("}}").expect("unclosed {{") + start + 2;
            out.push('x');
            rest = &rest[end..];
        }
        out.push_str(rest);
        out.push('\n');
    }
    out
}

/// The objects of one template, parsed after [`substitute`].
fn objects(name: &str) -> Vec<Value> {
    let text = substitute(&template(name));
    let docs = YamlLoader::load_from_str(&text)
        .unwrap_or_else(|e| panic!("{name} is not YAML after substitution: {e}\n{text}"));
    docs.iter()
        .map(yaml_to_json)
        .filter(|d| !d.is_null())
        .collect()
}

fn all_objects() -> Vec<Value> {
    let mut names: Vec<String> = std::fs::read_dir(chart().join("templates"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    names.sort();
    names.iter().flat_map(|n| objects(n)).collect()
}

fn of_kind<'a>(objs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objs.iter().filter(|o| o["kind"] == kind).collect()
}

fn load_yaml(path: PathBuf) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    yaml_to_json(&YamlLoader::load_from_str(&text).unwrap()[0])
}

#[test]
fn helm_templates_parse_and_have_the_raft_shape() {
    let meta = load_yaml(chart().join("Chart.yaml"));
    assert_eq!(meta["apiVersion"], "v2");
    assert_eq!(meta["name"], "varpulis");
    assert!(meta["version"].is_string());

    let objs = all_objects();
    for o in &objs {
        assert!(o["apiVersion"].is_string() && o["kind"].is_string(), "{o}");
        assert!(o["metadata"]["name"].is_string(), "{o}");
    }
    let sts = of_kind(&objs, "StatefulSet");
    assert_eq!(sts.len(), 1);
    let sts = sts[0];
    assert_eq!(sts["spec"]["podManagementPolicy"], "Parallel");
    assert!(sts["spec"]["serviceName"].is_string());
    let claim = &sts["spec"]["volumeClaimTemplates"][0];
    assert_eq!(claim["metadata"]["name"], "data");
    let pod = &sts["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert!(c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["name"] == "data" && m["mountPath"] == "/var/lib/varpulis"));
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/health");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/ready");
    assert_eq!(c["command"], serde_json::json!(["/bin/sh", "-ec"]));
    let script = c["args"][0].as_str().unwrap();
    for flag in [
        "coordinator --config",
        "--advertise-address",
        "--data-dir",
        "--join",
        "--raft-node-id",
    ] {
        assert!(script.contains(flag), "{script}");
    }
    let env_names = |c: &Value| -> Vec<String> {
        c["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let env = env_names(c);
    for v in ["POD_NAME", "VARPULIS_API_KEY", "VARPULIS_WORKER_TOKEN"] {
        assert!(env.iter().any(|e| e == v), "{env:?}");
    }

    let services = of_kind(&objs, "Service");
    let headless: Vec<_> = services
        .iter()
        .filter(|s| s["spec"]["clusterIP"] == "None")
        .collect();
    assert_eq!(headless.len(), 1, "one headless service");
    assert_eq!(headless[0]["spec"]["publishNotReadyAddresses"], true);

    let cm = of_kind(&objs, "ConfigMap");
    assert!(cm[0]["data"]["raft-cluster.toml"]
        .as_str()
        .unwrap()
        .contains("peers = ["));
    let secret = of_kind(&objs, "Secret");
    for k in ["api-key", "worker-key", "worker-token", "peer-secret"] {
        assert!(!secret[0]["data"][k].is_null(), "secret lacks {k}");
    }
    let sts = of_kind(&objs, "StatefulSet");
    let coordinator_env = env_names(&sts[0]["spec"]["template"]["spec"]["containers"][0]);
    assert!(
        coordinator_env.iter().any(|e| e == "VARPULIS_PEER_SECRET"),
        "{coordinator_env:?}"
    );

    let dep: Vec<&Value> = of_kind(&objs, "Deployment")
        .into_iter()
        .filter(|d| d["metadata"]["name"].as_str().unwrap().ends_with("-worker"))
        .collect();
    assert_eq!(dep.len(), 1);
    let w = &dep[0]["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(w["args"][0], "server");
    assert_eq!(w["livenessProbe"]["httpGet"]["path"], "/health");
    assert_eq!(w["readinessProbe"]["httpGet"]["path"], "/ready");
    let env = env_names(w);
    for v in [
        "VARPULIS_COORDINATOR",
        "VARPULIS_WORKER_ID",
        "VARPULIS_API_KEY",
        "VARPULIS_WORKER_TOKEN",
        "POD_IP",
    ] {
        assert!(env.iter().any(|e| e == v), "{env:?}");
    }
    assert!(
        !env.iter().any(|e| e == "VARPULIS_PEER_SECRET"),
        "workers never get the peer secret: {env:?}"
    );

    let pdbs = of_kind(&objs, "PodDisruptionBudget");
    assert_eq!(pdbs.len(), 2);
    assert!(pdbs.iter().any(|p| !p["spec"]["maxUnavailable"].is_null()));
}

/// MQTT is optional: off by default; `mqtt.enabled` runs mosquitto in the release, `mqtt.url`
/// names an existing broker; either way coordinators and workers get `VARPULIS_MQTT_URL`.
#[test]
fn mqtt_broker_is_optional() {
    let values = load_yaml(chart().join("values.yaml"));
    assert_eq!(values["mqtt"]["enabled"], false);
    assert_eq!(values["mqtt"]["url"], "");
    let raw = template("mqtt.yaml");
    assert!(
        raw.starts_with("{{- if and .Values.mqtt.enabled (not .Values.mqtt.url) }}"),
        "the broker is only rendered when enabled and no external url is given"
    );
    let objs = objects("mqtt.yaml");
    let dep = of_kind(&objs, "Deployment");
    let c = &dep[0]["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        c["command"],
        serde_json::json!(["mosquitto", "-c", "/mosquitto-no-auth.conf"]),
        "the image's default config listens on localhost only"
    );
    assert_eq!(c["ports"][0]["containerPort"], 1883);
    let svc = of_kind(&objs, "Service");
    assert_eq!(svc[0]["spec"]["ports"][0]["targetPort"], "mqtt");
    let helpers = template("_helpers.tpl");
    assert!(helpers.contains("define \"varpulis.mqttUrl\""));
    assert!(helpers.contains("mqtt://%s-mqtt.%s.svc.cluster.local:%d"));
    for t in ["coordinator-statefulset.yaml", "worker-deployment.yaml"] {
        let text = template(t);
        assert!(
            text.contains("{{- with (include \"varpulis.mqttUrl\" .) }}\n")
                && text.contains("- name: VARPULIS_MQTT_URL\n              value: {{ . | quote }}"),
            "{t} does not pass the broker"
        );
    }
    // With helm: rendered only when asked, and the URL reaches both roles.
    if Command::new("helm").arg("version").output().is_err() {
        return;
    }
    let render = |extra: &[&str]| -> Vec<Value> {
        let out = Command::new("helm")
            .args(["template", "rel", "--namespace", "ns"])
            .arg(chart())
            .args(extra)
            .output()
            .unwrap();
        let text = crate::stdout_of(out);
        YamlLoader::load_from_str(&text)
            .unwrap()
            .iter()
            .map(yaml_to_json)
            .filter(|d| !d.is_null())
            .collect()
    };
    let mqtt_env = |docs: &[Value]| -> Vec<String> {
        docs.iter()
            .filter(|d| d["kind"] == "StatefulSet" || d["kind"] == "Deployment")
            .flat_map(|d| {
                d["spec"]["template"]["spec"]["containers"][0]["env"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter(|e| e["name"] == "VARPULIS_MQTT_URL")
            .map(|e| e["value"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(mqtt_env(&render(&[])).is_empty());
    let on = render(&["--set", "mqtt.enabled=true"]);
    assert_eq!(
        mqtt_env(&on),
        ["mqtt://rel-varpulis-mqtt.ns.svc.cluster.local:1883"; 2]
    );
    let external = render(&[
        "--set",
        "mqtt.enabled=true",
        "--set",
        "mqtt.url=mqtt://b:1883",
    ]);
    assert_eq!(mqtt_env(&external), ["mqtt://b:1883"; 2]);
    assert!(!external
        .iter()
        .any(|d| d["metadata"]["name"] == "rel-varpulis-mqtt"));
}

#[test]
fn every_values_path_used_by_the_templates_exists() {
    let values = load_yaml(chart().join("values.yaml"));
    let mut n = 0;
    for entry in std::fs::read_dir(chart().join("templates")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for (i, _) in text.match_indices(".Values.") {
            let dotted: String = text[i + 8..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '.' || *c == '_')
                .collect();
            let pointer = format!("/{}", dotted.trim_end_matches('.').replace('.', "/"));
            assert!(
                values.pointer(&pointer).is_some(),
                "{}: .Values.{dotted} is not in values.yaml",
                path.display()
            );
            n += 1;
        }
    }
    assert!(n > 30, "{n} .Values references");
}

/// Fills the template expressions the coordinator start script and the peers list use.
fn fill(s: &str, i: usize) -> String {
    s.replace("{{ $full }}", "rel-varpulis")
        .replace("{{ $i }}", &i.to_string())
        .replace("{{ $headless }}", "rel-varpulis-coordinator-headless")
        .replace("{{ .Release.Namespace }}", "ns")
        .replace("{{ $.Release.Namespace }}", "ns")
        .replace("{{ .Values.coordinator.port }}", "9100")
        .replace("{{ $.Values.coordinator.port }}", "9100")
        .replace("{{ .Values.coordinator.founders }}", "3")
        .replace("{{ $scheme }}", "http")
}

/// The coordinator's start script (the statefulset's `args[0]`), template expressions filled,
/// with `echo` standing in for the binary.
fn start_script() -> String {
    let sts = objects("coordinator-statefulset.yaml");
    assert_eq!(sts.len(), 1);
    // Read the raw block (substitution replaced the expressions with `x`).
    let raw = template("coordinator-statefulset.yaml");
    let from = raw.find("self=").unwrap();
    let to = raw[from..].find("          env:").unwrap() + from;
    let script: String = raw[from..to]
        .lines()
        .map(str::trim_start)
        .collect::<Vec<_>>()
        .join("\n");
    fill(&script, 0).replace("exec /usr/local/bin/varpulis", "exec echo")
}

/// Runs the start script as pod `ordinal` would, returning the coordinator's arguments.
fn start_args(ordinal: usize) -> String {
    let out = Command::new("sh")
        .args(["-ec", &start_script()])
        .env("POD_NAME", format!("rel-varpulis-coordinator-{ordinal}"))
        .output()
        .unwrap();
    crate::stdout_of(out).trim().to_owned()
}

/// Founders (pods 0..3) advertise exactly their own entry of the peers list, so each finds its
/// node id (ordinal + 1) there; a later pod joins the running group with node id ordinal + 1.
#[test]
fn pod_ordinal_is_the_raft_node_id() {
    let peer_line = template("configmap.yaml")
        .lines()
        .find(|l| l.contains("svc.cluster.local"))
        .unwrap()
        .trim()
        .trim_matches(|c| c == '"' || c == ',')
        .to_owned();
    for i in 0..3 {
        let args = start_args(i);
        let peer = fill(&peer_line, i);
        assert!(!peer.contains("{{"), "unfilled: {peer}");
        assert_eq!(
            args,
            format!(
                "coordinator --config /etc/varpulis/raft-cluster.toml --advertise-address {peer} \
                 --data-dir /var/lib/varpulis/raft"
            ),
            "founder {i}"
        );
    }
    let args = start_args(3);
    assert!(
        args.contains(
            "--raft-node-id 4 --join http://rel-varpulis-coordinator.ns.svc.cluster.local:9100"
        ),
        "{args}"
    );
    assert!(args.contains(
        "--advertise-address http://rel-varpulis-coordinator-3.rel-varpulis-coordinator-headless.ns.svc.cluster.local:9100"
    ));
    // The statefulset's pods are named `<full>-coordinator-<i>`, the headless service is its
    // serviceName, and `peers` lists the founders only.
    let sts = template("coordinator-statefulset.yaml");
    assert!(sts.contains("name: {{ $full }}-coordinator\n"));
    assert!(sts.contains("serviceName: {{ $headless }}"));
    assert!(template("configmap.yaml").contains("until (int .Values.coordinator.founders)"));
}

#[test]
fn helm_lint_and_template_when_helm_is_installed() {
    if Command::new("helm").arg("version").output().is_err() {
        eprintln!("SKIP: helm is not installed; the chart is checked by substitution only");
        return;
    }
    let lint = Command::new("helm")
        .arg("lint")
        .arg(chart())
        .output()
        .unwrap();
    assert!(
        lint.status.success(),
        "helm lint:\n{}{}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );
    let out = Command::new("helm")
        .args(["template", "rel", "--namespace", "ns"])
        .arg(chart())
        .output()
        .unwrap();
    let text = crate::stdout_of(out);
    let docs: Vec<Value> = YamlLoader::load_from_str(&text)
        .unwrap()
        .iter()
        .map(yaml_to_json)
        .filter(|d| !d.is_null())
        .collect();
    let cm = of_kind(&docs, "ConfigMap");
    let toml = cm[0]["data"]["raft-cluster.toml"].as_str().unwrap();
    assert_eq!(toml.matches("svc.cluster.local").count(), 3, "{toml}");
}
