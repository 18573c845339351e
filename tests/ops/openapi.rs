//! `docs/openapi.yaml` against the product: the file parses and its `$ref`s resolve; every route
//! the servers declare is documented; every documented path+method is routed on a live ensemble
//! (except routes marked `x-varpulis-pending` that have not landed yet); and the real answers of
//! the main calls carry exactly the documented fields, no fewer (required) and no more (objects
//! are closed unless the schema says `additionalProperties`).

use crate::harness::{fake_worker, wait_until, Api, Ensemble, Opts, Resp, WORKER_KEY};
use crate::repo;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use yaml_rust::{Yaml, YamlLoader};

/// HTTP methods an OpenAPI path item may hold.
const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

/// Converts a YAML document into JSON (keys become strings).
pub fn yaml_to_json(y: &Yaml) -> Value {
    match y {
        Yaml::Hash(h) => {
            let mut map = Map::new();
            for (k, v) in h {
                let key = match k {
                    Yaml::String(s) => s.clone(),
                    Yaml::Integer(i) => i.to_string(),
                    Yaml::Boolean(b) => b.to_string(),
                    Yaml::Real(r) => r.clone(),
                    other => panic!("unsupported YAML key {other:?}"),
                };
                map.insert(key, yaml_to_json(v));
            }
            Value::Object(map)
        }
        Yaml::Array(a) => Value::Array(a.iter().map(yaml_to_json).collect()),
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Integer(i) => json!(i),
        Yaml::Real(r) => json!(r.parse::<f64>().unwrap()),
        Yaml::Boolean(b) => json!(b),
        Yaml::Null => Value::Null,
        other => panic!("unsupported YAML value {other:?}"),
    }
}

/// `docs/openapi.yaml` as JSON.
pub fn load_spec() -> Value {
    let text = std::fs::read_to_string(repo().join("docs/openapi.yaml")).unwrap();
    let docs = YamlLoader::load_from_str(&text).unwrap();
    assert_eq!(docs.len(), 1, "one YAML document");
    yaml_to_json(&docs[0])
}

/// Follows a local `$ref` (`#/components/...`).
fn resolve<'a>(spec: &'a Value, reference: &str) -> &'a Value {
    let pointer = reference
        .strip_prefix('#')
        .unwrap_or_else(|| panic!("only local refs: {reference}"));
    spec.pointer(pointer)
        .unwrap_or_else(|| panic!("dangling $ref {reference}"))
}

/// Checks `v` against `schema`; pushes one message per mismatch, prefixed with the JSON path.
pub fn validate(spec: &Value, schema: &Value, v: &Value, at: &str, errs: &mut Vec<String>) {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        return validate(spec, resolve(spec, r), v, at, errs);
    }
    if let Some(alts) = schema.get("oneOf").and_then(Value::as_array) {
        let mut first = Vec::new();
        for (i, alt) in alts.iter().enumerate() {
            let mut e = Vec::new();
            validate(spec, alt, v, at, &mut e);
            if e.is_empty() {
                return;
            }
            if i == 0 {
                first = e;
            }
        }
        errs.push(format!(
            "{at}: matches no alternative of oneOf (first: {first:?})"
        ));
        return;
    }
    if v.is_null() {
        if schema.get("nullable") != Some(&json!(true)) && schema.get("type").is_some() {
            errs.push(format!("{at}: null but not nullable"));
        }
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        if !allowed.contains(v) {
            errs.push(format!("{at}: {v} not in enum {allowed:?}"));
        }
    }
    let ty = schema.get("type").and_then(Value::as_str);
    match ty {
        Some("object") => {
            let Some(obj) = v.as_object() else {
                errs.push(format!("{at}: expected an object, got {v}"));
                return;
            };
            let props = schema.get("properties").and_then(Value::as_object);
            for req in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let name = req.as_str().unwrap();
                if !obj.contains_key(name) {
                    errs.push(format!(
                        "{at}: documented required field `{name}` is missing"
                    ));
                }
            }
            let extra = schema.get("additionalProperties");
            for (k, val) in obj {
                let here = format!("{at}.{k}");
                if let Some(p) = props.and_then(|p| p.get(k)) {
                    validate(spec, p, val, &here, errs);
                } else {
                    match extra {
                        Some(Value::Bool(true)) => {}
                        Some(s @ Value::Object(_)) => validate(spec, s, val, &here, errs),
                        _ => errs.push(format!("{at}: field `{k}` is not documented")),
                    }
                }
            }
        }
        Some("array") => {
            let Some(items) = v.as_array() else {
                errs.push(format!("{at}: expected an array, got {v}"));
                return;
            };
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    validate(spec, item_schema, item, &format!("{at}[{i}]"), errs);
                }
            }
        }
        Some("string") if !v.is_string() => errs.push(format!("{at}: expected a string, got {v}")),
        Some("integer") if !(v.is_i64() || v.is_u64()) => {
            errs.push(format!("{at}: expected an integer, got {v}"))
        }
        Some("number") if !v.is_number() => errs.push(format!("{at}: expected a number, got {v}")),
        Some("boolean") if !v.is_boolean() => {
            errs.push(format!("{at}: expected a boolean, got {v}"))
        }
        _ => {}
    }
}

/// One documented operation.
#[derive(Debug, Clone)]
pub struct Operation {
    /// Path template (`/api/v1/pipelines/{id}`).
    pub path: String,
    /// Lower-case method.
    pub method: String,
    /// `coordinator`, `worker` or `both`.
    pub server: String,
    /// Marked `x-varpulis-pending` (on the path or the operation).
    pub pending: bool,
}

/// Every operation of the spec.
pub fn operations(spec: &Value) -> Vec<Operation> {
    let mut out = Vec::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        let server = item["x-varpulis-server"]
            .as_str()
            .unwrap_or_else(|| panic!("{path}: no x-varpulis-server"))
            .to_owned();
        for m in METHODS {
            if let Some(op) = item.get(m) {
                out.push(Operation {
                    path: path.clone(),
                    method: m.to_owned(),
                    server: server.clone(),
                    pending: item["x-varpulis-pending"] == json!(true)
                        || op["x-varpulis-pending"] == json!(true),
                });
            }
        }
    }
    out
}

fn op<'a>(spec: &'a Value, path: &str, method: &str) -> &'a Value {
    spec["paths"]
        .get(path)
        .and_then(|p| p.get(method))
        .unwrap_or_else(|| panic!("{method} {path} is not documented"))
}

#[test]
fn openapi_parses_and_every_ref_resolves() {
    let spec = load_spec();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3.0"));
    // Every $ref anywhere points at something.
    fn walk(spec: &Value, v: &Value, n: &mut usize) {
        match v {
            Value::Object(m) => {
                if let Some(r) = m.get("$ref").and_then(Value::as_str) {
                    resolve(spec, r);
                    *n += 1;
                }
                m.values().for_each(|x| walk(spec, x, n));
            }
            Value::Array(a) => a.iter().for_each(|x| walk(spec, x, n)),
            _ => {}
        }
    }
    let mut refs = 0;
    walk(&spec, &spec, &mut refs);
    assert!(refs > 50, "{refs} refs");
    let ops = operations(&spec);
    for o in &ops {
        assert!(
            ["coordinator", "worker", "both"].contains(&o.server.as_str()),
            "{o:?}"
        );
        let def = op(&spec, &o.path, &o.method);
        assert!(
            def["responses"].as_object().is_some_and(|r| !r.is_empty()),
            "{o:?}: no responses"
        );
        // Every `{param}` of the path is declared as a path parameter.
        let declared: BTreeSet<String> = def["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| match p.get("$ref").and_then(Value::as_str) {
                Some(r) => resolve(&spec, r).clone(),
                None => p.clone(),
            })
            .filter(|p| p["in"] == "path")
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect();
        let in_path: BTreeSet<String> = o
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(str::to_owned)
            .collect();
        assert_eq!(declared, in_path, "{} {}", o.method, o.path);
    }
    assert!(ops.len() >= 40, "{} operations", ops.len());
}

/// Routes declared in the servers' sources: `.route("/path", get(..).post(..))`, with
/// `format!("{CONST}/...")` paths resolved from `const CONST: &str = "..."` in the same file.
fn source_routes() -> BTreeSet<(String, String)> {
    let mut found = BTreeSet::new();
    let mut stack: Vec<std::path::PathBuf> = [
        "crates/coordinator/src",
        "crates/worker/src",
        "crates/raft/src",
    ]
    .iter()
    .map(|d| repo().join(d))
    .collect();
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                // Unit-test modules serve stand-in routes; only the product's count.
                let product = text.split("#[cfg(test)]").next().unwrap_or_default();
                scan_routes(product, &mut found);
            }
        }
    }
    found
}

/// The string literal starting at `s` (which begins with `"`), and what follows it.
fn literal(s: &str) -> Option<(&str, &str)> {
    let body = s.strip_prefix('"')?;
    let end = body.find('"')?;
    Some((&body[..end], &body[end + 1..]))
}

fn scan_routes(text: &str, found: &mut BTreeSet<(String, String)>) {
    let consts: BTreeMap<String, String> = text
        .match_indices("const ")
        .filter_map(|(i, _)| {
            let rest = &text[i + 6..];
            let (name, rest) = rest.split_once(": &str = ")?;
            let (value, _) = literal(rest.trim_start())?;
            Some((name.trim().to_owned(), value.to_owned()))
        })
        .collect();
    for (i, _) in text.match_indices(".route(") {
        let args = text[i + 7..].trim_start();
        let raw = if let Some((lit, _)) = literal(args) {
            lit.to_owned()
        } else if let Some(rest) = args.strip_prefix("&format!(") {
            let Some((lit, _)) = literal(rest.trim_start()) else {
                continue;
            };
            let mut p = lit.to_owned();
            for (name, value) in &consts {
                p = p.replace(&format!("{{{name}}}"), value);
            }
            p.replace("{{", "{").replace("}}", "}")
        } else {
            let name: String = args
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            match consts.get(&name) {
                Some(v) => v.clone(),
                None => {
                    eprintln!(
                        "note: route with an unresolved path `{}`",
                        &args[..args.len().min(40)]
                    );
                    continue;
                }
            }
        };
        // An axum catch-all `{*rest}` is an ordinary path parameter in OpenAPI.
        let raw = raw.replace("{*", "{");
        // The route call's arguments: up to the matching `)`.
        let mut depth = 1;
        let mut end = 0;
        for (j, c) in text[i + 7..].char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = j;
                        break;
                    }
                }
                _ => {}
            }
        }
        let call = &text[i + 7..i + 7 + end];
        for m in METHODS {
            let pat = format!("{m}(");
            for (k, _) in call.match_indices(&pat) {
                // `get(h)` or a chained `...).post(h)`, not `headers.get(..)` or `x::get(..)`.
                let head = call[..k].trim_end();
                let routing = match head.chars().last() {
                    None => true,
                    Some('.') => head[..head.len() - 1].trim_end().ends_with(')'),
                    Some(c) => !(c.is_alphanumeric() || c == '_' || c == ':'),
                };
                if routing {
                    found.insert((raw.clone(), m.to_owned()));
                }
            }
        }
    }
}

#[test]
fn every_route_in_the_sources_is_documented() {
    let spec = load_spec();
    let documented: BTreeSet<(String, String)> = operations(&spec)
        .into_iter()
        .map(|o| (o.path, o.method))
        .collect();
    let routes = source_routes();
    assert!(routes.len() >= 30, "scanner found only {routes:?}");
    let missing: Vec<String> = routes
        .iter()
        .filter(|r| !documented.contains(*r))
        .map(|(p, m)| format!("{} {p}", m.to_uppercase()))
        .collect();
    assert!(
        missing.is_empty(),
        "routes served but not in docs/openapi.yaml:\n{}",
        missing.join("\n")
    );
}

/// Validates live answers against the spec and remembers which operations were exercised.
struct Checker {
    spec: Value,
    errors: Vec<String>,
    seen: BTreeSet<(String, String)>,
    /// Pending routes exercised but not served by this build.
    not_served: Vec<String>,
}

impl Checker {
    fn pending(&self, method: &str, path: &str) -> bool {
        operations(&self.spec)
            .iter()
            .any(|o| o.path == path && o.method == method && o.pending)
    }

    /// Like [`Checker::check`], but a pending route that this build does not serve yet is
    /// skipped (and listed).
    fn check_served(&mut self, method: &str, path: &str, resp: &Resp) {
        if self.pending(method, path) && unrouted(resp.status, &resp.text) {
            self.not_served
                .push(format!("{} {path}", method.to_uppercase()));
            return;
        }
        self.check(method, path, resp);
    }

    /// A Server-Sent Events route: served means 200 with `text/event-stream` (or a documented
    /// error status).
    async fn check_sse(&mut self, http: &reqwest::Client, path: &str, url: &str, key: &str) {
        let (status, body, sse) = request(http, "get", url, key).await;
        if self.pending("get", path) && unrouted(status, &body) {
            self.not_served.push(format!("GET {path}"));
            return;
        }
        self.seen.insert((path.to_owned(), "get".to_owned()));
        let documented = op(&self.spec, path, "get")["responses"]
            .get(status.to_string())
            .is_some();
        if !documented || (status == 200 && !sse) {
            self.errors.push(format!(
                "GET {path} -> {status} (event stream: {sse}): {body}"
            ));
        }
    }

    /// Checks `resp` as the answer of `method path`: the status must be documented, and a JSON
    /// body must match the documented schema for that status.
    fn check(&mut self, method: &str, path: &str, resp: &Resp) {
        let what = format!("{} {path} -> {}", method.to_uppercase(), resp.status);
        eprintln!("checked {what}");
        self.seen.insert((path.to_owned(), method.to_owned()));
        let op = op(&self.spec, path, method).clone();
        let Some(doc) = op["responses"].get(resp.status.to_string()) else {
            self.errors
                .push(format!("{what}: status not documented ({})", resp.text));
            return;
        };
        let doc = match doc.get("$ref").and_then(Value::as_str) {
            Some(r) => resolve(&self.spec, r).clone(),
            None => doc.clone(),
        };
        let content = &doc["content"];
        if let Some(schema) = content.get("application/json").map(|c| &c["schema"]) {
            if resp.body.is_null() {
                self.errors.push(format!("{what}: not JSON: {}", resp.text));
            } else {
                let mut errs = Vec::new();
                validate(&self.spec, schema, &resp.body, "$", &mut errs);
                self.errors
                    .extend(errs.into_iter().map(|e| format!("{what}: {e}")));
            }
        } else if content.get("text/plain").is_some() {
            let ct = resp.content_type.clone().unwrap_or_default();
            if !ct.starts_with("text/plain") {
                self.errors
                    .push(format!("{what}: content-type {ct}, documented text/plain"));
            }
        }
    }
}

/// Whether an answer means "this server has no such route" (as opposed to "no such id").
fn unrouted(status: u16, body: &str) -> bool {
    status == 405
        || (status == 404
            && serde_json::from_str::<Value>(body)
                .ok()
                .and_then(|v| v["error"].as_str().map(|e| e.starts_with("no route for")))
                .unwrap_or(false))
}

/// Sends `method url` without a body and returns the status and (unless it is an SSE stream)
/// the body.
async fn probe(http: &reqwest::Client, method: &str, url: &str, key: &str) -> (u16, String) {
    let (status, body, _) = request(http, method, url, key).await;
    (status, body)
}

/// Like [`probe`], also saying whether the answer is an SSE stream (whose body is not read).
async fn request(
    http: &reqwest::Client,
    method: &str,
    url: &str,
    key: &str,
) -> (u16, String, bool) {
    let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
    let resp = http
        .request(m, url)
        .header("x-api-key", key)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    if crate::is_event_stream(&resp) {
        return (status, String::new(), true);
    }
    (status, resp.text().await.unwrap_or_default(), false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_matches_a_live_ensemble() {
    let spec = load_spec();
    let mut ens = Ensemble::start(3, 2, Opts::default()).await;
    let c = ens.coords[0].url.clone();
    let api = ens.api.clone();
    let wapi = Api::new(Some(WORKER_KEY));
    let mut ck = Checker {
        spec: spec.clone(),
        errors: Vec::new(),
        seen: BTreeSet::new(),
        not_served: Vec::new(),
    };
    let http = reqwest::Client::new();

    // Health, readiness, metrics on a coordinator.
    for path in ["/health", "/ready", "/metrics"] {
        ck.check("get", path, &api.get(&format!("{c}{path}")).await.unwrap());
    }
    ck.check(
        "get",
        "/raft/metrics",
        &api.get(&format!("{c}/raft/metrics")).await.unwrap(),
    );

    // Connectors.
    let conn = json!({"name": "Broker", "connector_type": "mqtt",
                      "params": {"host": "localhost", "port": "1883"}, "description": "doc check"});
    let url = format!("{c}/api/v1/cluster/connectors");
    ck.check(
        "post",
        "/api/v1/cluster/connectors",
        &api.post(&url, &conn).await.unwrap(),
    );
    ck.check(
        "get",
        "/api/v1/cluster/connectors",
        &api.get(&url).await.unwrap(),
    );
    let one = format!("{url}/Broker");
    ck.check(
        "get",
        "/api/v1/cluster/connectors/{name}",
        &api.get(&one).await.unwrap(),
    );
    let put = api
        .send(
            reqwest::Method::PUT,
            &one,
            Some((serde_json::to_vec(&conn).unwrap(), "application/json")),
        )
        .await
        .unwrap();
    ck.check("put", "/api/v1/cluster/connectors/{name}", &put);
    ck.check(
        "delete",
        "/api/v1/cluster/connectors/{name}",
        &api.delete(&one).await.unwrap(),
    );

    // A group with one pipeline on each worker.
    let group = json!({
        "name": "doc-check",
        "pipelines": [
            {"name": "a", "source": "stream A = TypeA .emit(v: value)"},
            {"name": "b", "source": "stream B = TypeB .emit(v: value)"}],
        "routes": [
            {"from_pipeline": "_external", "to_pipeline": "a", "event_types": ["TypeA"]},
            {"from_pipeline": "_external", "to_pipeline": "b", "event_types": ["TypeB"]}]});
    let groups = format!("{c}/api/v1/cluster/pipeline-groups");
    let created = api.post(&groups, &group).await.unwrap();
    ck.check("post", "/api/v1/cluster/pipeline-groups", &created);
    created.expect_status(201);
    let gid = created.body["id"].as_str().unwrap().to_owned();
    let gurl = format!("{groups}/{gid}");
    let api2 = api.clone();
    let running = wait_until(
        "group running",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let (api, u) = (api2.clone(), gurl.clone());
            async move {
                let r = api.get(&u).await.ok()?;
                (r.body["status"] == "running").then_some(r)
            }
        },
    )
    .await;
    ck.check("get", "/api/v1/cluster/pipeline-groups/{id}", &running);
    ck.check(
        "get",
        "/api/v1/cluster/pipeline-groups",
        &api.get(&groups).await.unwrap(),
    );
    ck.check(
        "get",
        "/api/v1/cluster/topology",
        &api.get(&format!("{c}/api/v1/cluster/topology"))
            .await
            .unwrap(),
    );
    ck.check(
        "post",
        "/api/v1/cluster/validate",
        &api.post(
            &format!("{c}/api/v1/cluster/validate"),
            &json!({"source": "stream A = TypeA .emit(v: value)", "pipeline": "a"}),
        )
        .await
        .unwrap(),
    );
    ck.check(
        "post",
        "/api/v1/cluster/validate",
        &api.post(
            &format!("{c}/api/v1/cluster/validate"),
            &json!({"source": "stream A = TypeA .emit(v: )"}),
        )
        .await
        .unwrap(),
    );
    let inject = api
        .post(
            &format!("{gurl}/inject"),
            &json!({"event_type": "TypeA", "fields": {"value": 1}}),
        )
        .await
        .unwrap();
    inject.expect_ok();
    ck.check(
        "post",
        "/api/v1/cluster/pipeline-groups/{id}/inject",
        &inject,
    );
    let batch = api
        .post(
            &format!("{gurl}/inject-batch"),
            &json!([{"event_type": "TypeA", "fields": {"value": 2}}, {"event_type": "TypeB", "fields": {"value": 3}}]),
        )
        .await
        .unwrap();
    batch.expect_ok();
    ck.check(
        "post",
        "/api/v1/cluster/pipeline-groups/{id}/inject-batch",
        &batch,
    );

    ck.check(
        "get",
        "/api/v1/cluster/pipeline-groups/{id}/metrics",
        &api.get(&format!("{gurl}/metrics")).await.unwrap(),
    );

    // Session-2 routes (skipped while pending and not served): versions, rolling update,
    // rollback, the event and output streams, rebalance.
    let versions = format!("{gurl}/versions");
    let v = "/api/v1/cluster/pipeline-groups/{id}/versions";
    ck.check_served("get", v, &api.get(&versions).await.unwrap());
    let update = json!({"pipelines": [{"name": "a", "source": "stream A = TypeA .emit(v: value + 1)"}],
                        "state": "reset"});
    // Rolling updates, rollbacks and drains wait for workers: allow more than the default 15 s.
    let slow = api.with_timeout(Duration::from_secs(90));
    let put = slow
        .send(
            reqwest::Method::PUT,
            &gurl,
            Some((serde_json::to_vec(&update).unwrap(), "application/json")),
        )
        .await
        .unwrap();
    ck.check_served("put", "/api/v1/cluster/pipeline-groups/{id}", &put);
    let rollback = slow
        .post(&format!("{gurl}/rollback"), &json!({"state": "reset"}))
        .await
        .unwrap();
    ck.check_served(
        "post",
        "/api/v1/cluster/pipeline-groups/{id}/rollback",
        &rollback,
    );
    ck.check_served("get", v, &api.get(&versions).await.unwrap());
    let key = ens.opts.api_key.clone();
    ck.check_sse(
        &http,
        "/api/v1/cluster/events",
        &format!("{c}/api/v1/cluster/events?since=0"),
        &key,
    )
    .await;
    ck.check_sse(
        &http,
        "/api/v1/cluster/pipeline-groups/{id}/output",
        &format!("{gurl}/output"),
        &key,
    )
    .await;
    let rebalance = slow
        .post_raw(
            &format!("{c}/api/v1/cluster/rebalance"),
            Vec::new(),
            "application/json",
        )
        .await
        .unwrap();
    ck.check_served("post", "/api/v1/cluster/rebalance", &rebalance);

    // Workers, as the coordinator sees them.
    let workers = format!("{c}/api/v1/cluster/workers");
    ck.check(
        "get",
        "/api/v1/cluster/workers",
        &api.get(&workers).await.unwrap(),
    );
    let w0 = ens.workers[0].id.clone();
    ck.check(
        "get",
        "/api/v1/cluster/workers/{id}",
        &api.get(&format!("{workers}/{w0}")).await.unwrap(),
    );
    let fake = fake_worker("doc-fake");
    ck.check(
        "post",
        "/api/v1/cluster/workers/register",
        &api.post(&format!("{workers}/register"), &fake)
            .await
            .unwrap(),
    );
    // A heartbeat presents the key the worker registered with (fake_worker's).
    let hb = api
        .with_key(Some("fake"))
        .post(
            &format!("{workers}/doc-fake/heartbeat"),
            &json!({"events_processed": 1, "pipelines_running": 0}),
        )
        .await
        .unwrap();
    ck.check("post", "/api/v1/cluster/workers/{id}/heartbeat", &hb);
    ck.check(
        "delete",
        "/api/v1/cluster/workers/{id}",
        &api.delete(&format!("{workers}/doc-fake")).await.unwrap(),
    );

    // A worker's own API, on the pipeline the coordinator placed there.
    let w = ens.workers[0].url.clone();
    for path in ["/health", "/ready", "/metrics"] {
        ck.check("get", path, &wapi.get(&format!("{w}{path}")).await.unwrap());
    }
    let list = wapi.get(&format!("{w}/api/v1/pipelines")).await.unwrap();
    ck.check("get", "/api/v1/pipelines", &list);
    let deployed = wapi
        .post(
            &format!("{w}/api/v1/pipelines"),
            &json!({"name": "doc-local", "source": "stream Hot = Reading .where(temp > 50) .emit(temp: temp)"}),
        )
        .await
        .unwrap();
    ck.check("post", "/api/v1/pipelines", &deployed);
    let pid = deployed.body["id"].as_str().unwrap().to_owned();
    let p = format!("{w}/api/v1/pipelines/{pid}");
    let ev = wapi
        .post(
            &format!("{p}/events"),
            &json!({"event_type": "Reading", "fields": {"temp": 70}}),
        )
        .await
        .unwrap();
    ck.check("post", "/api/v1/pipelines/{id}/events", &ev);
    let evb = wapi
        .post_raw(
            &format!("{p}/events-batch"),
            b"Reading { temp: 80 }\nReading { temp: 1 }\n".to_vec(),
            "text/plain",
        )
        .await
        .unwrap();
    ck.check("post", "/api/v1/pipelines/{id}/events-batch", &evb);
    ck.check(
        "get",
        "/api/v1/pipelines/{id}",
        &wapi.get(&p).await.unwrap(),
    );
    ck.check(
        "get",
        "/api/v1/pipelines/{id}/metrics",
        &wapi.get(&format!("{p}/metrics")).await.unwrap(),
    );
    let cp = wapi
        .post_raw(&format!("{p}/checkpoint"), Vec::new(), "application/json")
        .await
        .unwrap();
    ck.check("post", "/api/v1/pipelines/{id}/checkpoint", &cp);
    let restored = wapi.post(&format!("{p}/restore"), &cp.body).await.unwrap();
    ck.check("post", "/api/v1/pipelines/{id}/restore", &restored);
    let second = wapi
        .post(
            &format!("{w}/api/v1/pipelines"),
            &json!({"name": "doc-local-2", "source": "stream Hot = Reading .where(temp > 50) .emit(temp: temp)"}),
        )
        .await
        .unwrap();
    ck.check("post", "/api/v1/pipelines", &second);
    let pid2 = second.body["id"].as_str().unwrap().to_owned();
    ck.check_sse(
        &http,
        "/api/v1/pipelines/{id}/output",
        &format!("{w}/api/v1/pipelines/{pid2}/output"),
        WORKER_KEY,
    )
    .await;
    let handover = wapi
        .post(
            &format!("{p}/handover"),
            &json!({"to": pid2, "state": "keep"}),
        )
        .await
        .unwrap();
    ck.check_served("post", "/api/v1/pipelines/{id}/handover", &handover);
    wapi.delete(&format!("{w}/api/v1/pipelines/{pid2}"))
        .await
        .unwrap()
        .expect_ok();
    ck.check(
        "delete",
        "/api/v1/pipelines/{id}",
        &wapi.delete(&p).await.unwrap(),
    );

    // A failover gives a migration record: kill the worker running pipeline `b`.
    let b_worker = running.body["placements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|pl| pl["pipeline_name"] == "b")
        .map(|pl| pl["worker_id"].as_str().unwrap().to_owned())
        .unwrap();
    let idx = ens.worker_index(&b_worker);
    ens.workers[idx].proc.kill();
    let migrations = format!("{c}/api/v1/cluster/migrations");
    let api3 = api.clone();
    let m = wait_until(
        "a migration record",
        Duration::from_secs(40),
        Duration::from_millis(300),
        || {
            let (api, u) = (api3.clone(), migrations.clone());
            async move {
                let r = api.get(&u).await.ok()?;
                (r.body["total"].as_u64() > Some(0)).then_some(r)
            }
        },
    )
    .await;
    ck.check("get", "/api/v1/cluster/migrations", &m);
    let survivor = ens.workers[1 - idx].id.clone();
    let drain = api
        .with_timeout(Duration::from_secs(90))
        .post_raw(
            &format!("{workers}/{survivor}/drain"),
            Vec::new(),
            "application/json",
        )
        .await
        .unwrap();
    ck.check_served("post", "/api/v1/cluster/workers/{id}/drain", &drain);
    ck.check(
        "delete",
        "/api/v1/cluster/pipeline-groups/{id}",
        &api.delete(&gurl).await.unwrap(),
    );

    // Every documented GET answering JSON (the main reads) was exercised, unless pending.
    for o in operations(&spec) {
        if o.method != "get" || o.pending {
            continue;
        }
        let ok = &op(&spec, &o.path, "get")["responses"]["200"]["content"];
        if ok.get("application/json").is_some() {
            assert!(
                ck.seen.contains(&(o.path.clone(), o.method.clone())),
                "GET {} is documented but not checked against a live answer",
                o.path
            );
        }
    }

    eprintln!(
        "pending routes exercised but not served: {:?}",
        ck.not_served
    );

    // (b) Every documented path+method is routed on the server(s) that should serve it.
    let live_worker = ens
        .workers
        .iter()
        .find(|x| x.id != b_worker)
        .unwrap()
        .url
        .clone();
    let mut unrouted_ops = Vec::new();
    let mut pending_missing = Vec::new();
    let mut ops = operations(&spec);
    // The worker's drain stops it from taking deploys; probe it last.
    ops.sort_by_key(|o| o.path == "/api/v1/drain");
    for o in ops {
        let path = o
            .path
            .replace("{id}", "openapi-route-check")
            .replace("{name}", "openapi-route-check");
        let mut targets = Vec::new();
        if o.server != "worker" {
            targets.push((c.clone(), ens.opts.api_key.clone()));
        }
        if o.server != "coordinator" {
            targets.push((live_worker.clone(), WORKER_KEY.to_owned()));
        }
        for (base, key) in targets {
            let (status, body) = probe(&http, &o.method, &format!("{base}{path}"), &key).await;
            if unrouted(status, &body) {
                let line = format!(
                    "{} {} on {base}: {status} {body}",
                    o.method.to_uppercase(),
                    o.path
                );
                if o.pending {
                    pending_missing.push(line);
                } else {
                    unrouted_ops.push(line);
                }
            } else if o.pending {
                eprintln!(
                    "note: {} {} is served now; its x-varpulis-pending marker can go",
                    o.method, o.path
                );
            }
        }
    }
    eprintln!("pending routes not served yet: {}", pending_missing.len());
    for l in &pending_missing {
        eprintln!("  {l}");
    }
    assert!(
        unrouted_ops.is_empty(),
        "documented but not routed:\n{}",
        unrouted_ops.join("\n")
    );
    assert!(
        ck.errors.is_empty(),
        "live answers differ from docs/openapi.yaml:\n{}",
        ck.errors.join("\n")
    );
}

#[test]
fn api_md_lists_every_documented_route() {
    let spec = load_spec();
    let api_md = std::fs::read_to_string(repo().join("docs/api.md")).unwrap();
    let missing: Vec<String> = spec["paths"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|p| {
            // The path must appear as a whole (followed by a backtick, a space or a query).
            ["`", " ", "?", "\""]
                .iter()
                .all(|end| !api_md.contains(&format!("{p}{end}")))
        })
        .cloned()
        .collect();
    assert!(
        missing.is_empty(),
        "docs/api.md does not mention: {missing:?}"
    );
}

/// Structural validation by `openapi-spec-validator` (Python), when it is installed.
#[test]
fn openapi_passes_openapi_spec_validator_when_installed() {
    let script = "import sys\n\
        from openapi_spec_validator import validate\n\
        from openapi_spec_validator.readers import read_from_filename\n\
        validate(read_from_filename(sys.argv[1])[0])\n";
    let probe = std::process::Command::new("python3")
        .args(["-c", "import openapi_spec_validator"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("SKIP: python3 with openapi-spec-validator is not installed");
        return;
    }
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(repo().join("docs/openapi.yaml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openapi-spec-validator:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
