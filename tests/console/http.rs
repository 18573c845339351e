//! The console's HTTP contract, without a browser: redirects, embedded assets and their
//! headers, CORS for member origins only, cross-site writes refused, and the routes added for
//! the console (`POST /api/v1/cluster/validate`, `GET /pipeline-groups/{id}/metrics`).

use crate::harness::{wait_until, Ensemble, Opts, ADMIN_KEY};
use reqwest::header::HeaderMap;
use serde_json::{json, Value};
use std::time::Duration;

fn header(h: &HeaderMap, name: &str) -> String {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn assert_security_headers(h: &HeaderMap, what: &str) {
    assert_eq!(header(h, "x-content-type-options"), "nosniff", "{what}");
    assert_eq!(header(h, "x-frame-options"), "DENY", "{what}");
    assert_eq!(header(h, "referrer-policy"), "no-referrer", "{what}");
    let csp = header(h, "content-security-policy");
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
    assert!(!csp.contains("unsafe"), "{what}: {csp}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_pages_headers_cors_and_routes() {
    let ens = Ensemble::start(3, 1, Opts::default()).await;
    let c0 = ens.coords[0].url.clone();
    let c1 = ens.coords[1].url.clone();
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // `/` and `/ui` lead to `/ui/`, which needs no key (it holds no cluster data).
    let r = plain.get(format!("{c0}/")).send().await.unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());
    assert_eq!(header(r.headers(), "location"), "/ui/");
    let r = plain.get(format!("{c0}/ui")).send().await.unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());
    assert_eq!(header(r.headers(), "location"), "/ui/");
    let page = plain.get(format!("{c0}/ui/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let h = page.headers().clone();
    assert!(header(&h, "content-type").starts_with("text/html"));
    assert_security_headers(&h, "page");
    let csp = header(&h, "content-security-policy");
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "form-action 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} missing: {csp}");
    }
    // The page may call every member (it moves to another one when its node dies).
    for c in &ens.coords {
        assert!(csp.contains(&c.url), "{} not in connect-src: {csp}", c.url);
    }
    let html = page.text().await.unwrap();
    assert!(
        html.contains(r#"<script type="module" src="js/main.js"></script>"#),
        "{html}"
    );
    assert!(!html.contains("<script>"), "inline script");
    assert!(html.contains(r#"type="password""#));

    // Assets: embedded, typed, revalidated by ETag.
    for (path, ty) in [
        ("js/main.js", "text/javascript"),
        ("js/views/group.js", "text/javascript"),
        ("console.css", "text/css"),
        ("icon.svg", "image/svg+xml"),
    ] {
        let r = plain.get(format!("{c0}/ui/{path}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert!(
            header(r.headers(), "content-type").starts_with(ty),
            "{path}"
        );
        assert_security_headers(r.headers(), path);
        let etag = header(r.headers(), "etag");
        assert!(etag.starts_with('"'), "{path}: etag {etag}");
        let again = plain
            .get(format!("{c0}/ui/{path}"))
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{path}");
    }
    let missing = plain.get(format!("{c0}/ui/nope.js")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["code"], "not_found");

    // API answers carry the security headers too.
    let api = plain
        .get(format!("{c0}/api/v1/cluster/workers"))
        .header("x-api-key", ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 200);
    assert_security_headers(api.headers(), "api");
    assert_eq!(
        header(api.headers(), "content-security-policy"),
        "default-src 'none'; frame-ancestors 'none'"
    );

    // CORS: another member's page may call this node (preflight, then the call) ...
    let member = c1.clone();
    let loopback_alias = c1.replace("127.0.0.1", "localhost");
    for origin in [member.as_str(), loopback_alias.as_str()] {
        let pre = plain
            .request(
                reqwest::Method::OPTIONS,
                format!("{c0}/api/v1/cluster/workers"),
            )
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "x-api-key")
            .send()
            .await
            .unwrap();
        assert_eq!(pre.status(), 204, "preflight from {origin}");
        assert_eq!(header(pre.headers(), "access-control-allow-origin"), origin);
        assert!(header(pre.headers(), "access-control-allow-headers").contains("x-api-key"));
        assert!(header(pre.headers(), "access-control-allow-methods").contains("PUT"));
        let get = plain
            .get(format!("{c0}/api/v1/cluster/workers"))
            .header("origin", origin)
            .header("x-api-key", ADMIN_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(get.status(), 200);
        assert_eq!(header(get.headers(), "access-control-allow-origin"), origin);
        assert!(header(get.headers(), "vary").contains("Origin"));
    }
    // ... any other origin may not: no CORS headers, a refused preflight, refused writes.
    let evil = "http://evil.example:8080";
    let pre = plain
        .request(
            reqwest::Method::OPTIONS,
            format!("{c0}/api/v1/cluster/workers"),
        )
        .header("origin", evil)
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(pre.status(), 403);
    assert_eq!(header(pre.headers(), "access-control-allow-origin"), "");
    let get = plain
        .get(format!("{c0}/api/v1/cluster/workers"))
        .header("origin", evil)
        .header("x-api-key", ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 200);
    assert_eq!(header(get.headers(), "access-control-allow-origin"), "");
    let worker = ens.workers[0].id.clone();
    for origin in [evil, "null"] {
        let drain = plain
            .post(format!("{c0}/api/v1/cluster/workers/{worker}/drain"))
            .header("origin", origin)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-api-key", ADMIN_KEY)
            .body("a=1")
            .send()
            .await
            .unwrap();
        assert_eq!(drain.status(), 403, "write from {origin}");
        let body: Value = drain.json().await.unwrap();
        assert_eq!(body["code"], "forbidden_origin");
    }
    assert_eq!(
        ens.worker_status(0, &worker).await.as_deref(),
        Some("ready")
    );

    // A write from a member's page goes through (a follower forwards it to the leader).
    let spec = json!({
        "name": "console-http",
        "pipelines": [{"name": "hot", "source": "stream Hot = Reading .where(temperature > 50) .emit(t: temperature)"}],
        "routes": [{"from_pipeline": "_external", "to_pipeline": "hot", "event_types": ["Reading"]}]
    });
    let created = plain
        .post(format!("{c1}/api/v1/cluster/pipeline-groups"))
        .header("origin", c0.as_str())
        .header("x-api-key", ADMIN_KEY)
        .json(&spec)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    assert_eq!(header(created.headers(), "access-control-allow-origin"), c0);
    let gid = created.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    ens.wait_group_running(1, &gid).await;

    // POST /api/v1/cluster/validate: served by any node, key required, diagnostics with line:col.
    let validate = format!("{c1}/api/v1/cluster/validate");
    let r = ens
        .api
        .with_key(None)
        .post(&validate, &json!({"source": "stream A = X"}))
        .await
        .unwrap();
    r.expect_error(401);
    let ok = ens
        .api
        .post(
            &validate,
            &json!({"source": "stream A = X .emit(v: 1)", "pipeline": "a"}),
        )
        .await
        .unwrap();
    ok.expect_status(200);
    assert_eq!(ok.body["valid"], true, "{}", ok.text);
    let bad_src = "stream A = Reading\n    .where(temperature > 100)\n    .emit(t: temperature, )\n    .nope(1)\n";
    let bad = ens
        .api
        .post(&validate, &json!({"source": bad_src, "pipeline": "alerts"}))
        .await
        .unwrap();
    bad.expect_status(200);
    assert_eq!(bad.body["valid"], false, "{}", bad.text);
    let first = &bad.body["diagnostics"][0];
    assert_eq!(first["severity"], "error", "{}", bad.text);
    assert!(first["line"].as_u64().unwrap() >= 3, "{}", bad.text);
    assert!(first["column"].as_u64().unwrap() >= 1, "{}", bad.text);
    assert_eq!(first["pipeline"], "alerts");
    ens.api
        .post_raw(&validate, b"{not json".to_vec(), "application/json")
        .await
        .unwrap()
        .expect_error(400);
    ens.api.get(&validate).await.unwrap().expect_error(405);

    // GET /pipeline-groups/{id}/metrics: the workers' counters per placement.
    for i in 0..3 {
        ens.api
            .post(
                &format!("{c0}/api/v1/cluster/pipeline-groups/{gid}/inject"),
                &json!({"event_type": "Reading", "fields": {"temperature": 60 + i}}),
            )
            .await
            .unwrap()
            .expect_ok();
    }
    let url = format!("{c1}/api/v1/cluster/pipeline-groups/{gid}/metrics");
    let api = ens.api.clone();
    let m = wait_until(
        "counters",
        Duration::from_secs(15),
        Duration::from_millis(200),
        || {
            let (api, url) = (api.clone(), url.clone());
            async move {
                let r = api.get(&url).await.ok()?;
                (r.body["placements"][0]["events_in"].as_u64()? >= 3).then_some(r.body)
            }
        },
    )
    .await;
    assert_eq!(m["group_id"], gid.as_str());
    assert_eq!(m["name"], "console-http");
    let p = &m["placements"][0];
    assert_eq!(p["pipeline_name"], "hot");
    assert_eq!(p["status"], "Running");
    assert_eq!(p["events_out"].as_u64(), Some(3), "{m}");
    assert_eq!(p["errors"].as_u64(), Some(0), "{m}");
    ens.api
        .get(&format!("{c1}/api/v1/cluster/pipeline-groups/nope/metrics"))
        .await
        .unwrap()
        .expect_error(404);
}
