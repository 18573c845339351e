//! The console in a real browser (headless Chromium through chromedriver).

use crate::browser::Browser;
use crate::harness::{Ensemble, Opts, ADMIN_KEY};
use serde_json::{json, Value};
use std::time::Duration;

/// Generous bound for anything the page shows after the cluster changed (the machine running
/// the tests may be busy; the page itself polls every 2-3 s and follows the event stream).
const SHOWN: Duration = Duration::from_secs(40);

const GOOD: &str = "# Readings above the threshold become alerts.\n\
stream Alerts = Reading\n    .where(temperature > 100)\n    .emit(sensor_id: sensor_id, temperature: temperature)\n";
/// Line 4 has an error (a field without a value).
const BAD: &str = "# Readings above the threshold become alerts.\n\
stream Alerts = Reading\n    .where(temperature > 100)\n    .emit(sensor_id: sensor_id, temperature: )\n";
/// Version 4: the stream is renamed, so its state cannot carry over.
const V4: &str = "# Readings above the threshold become alarms.\n\
stream Alarms = Reading\n    .where(temperature > 100)\n    .emit(sensor_id: sensor_id, temperature: temperature)\n";
/// Version 2: another threshold, same state shape.
const V2: &str = "# Readings above the threshold become alerts.\n\
stream Alerts = Reading\n    .where(temperature > 50)\n    .emit(sensor_id: sensor_id, temperature: temperature)\n";

/// Saves a screenshot of the page for docs/console.md (only with VARPULIS_CONSOLE_SCREENSHOTS=1),
/// from the top of the page, in a window `height` pixels high.
async fn shot(browser: &Browser, name: &str, height: u32) {
    if let Some(dir) = crate::screenshot_dir() {
        browser.set_window_size(1360, height).await;
        browser
            .js("window.scrollTo(0, 0); return true;", vec![])
            .await;
        // Let charts and tables settle after the last change.
        tokio::time::sleep(Duration::from_millis(500)).await;
        browser.screenshot(&dir.join(name)).await;
        browser.set_window_size(1360, 1000).await;
    }
}

/// Replaces the text of the visible VPL editor by typing `text` into it.
async fn type_vpl(browser: &Browser, text: &str) {
    browser
        .type_into(
            "#editors > div:not([hidden]) textarea, .panel.pipeline textarea",
            text,
        )
        .await;
}

/// Waits until the editor reports its program valid (`what` names it in a timeout).
async fn wait_editor_valid(browser: &Browser, what: &str) {
    browser
        .wait_js(
            "return document.querySelector('.editor-status').dataset.valid === 'true';",
            vec![],
            SHOWN,
            what,
        )
        .await;
}

/// Clicks `button`, then waits up to 90 s (a rolling update) until `msg` satisfies `ok`.
async fn click_and_wait(
    browser: &Browser,
    button: &str,
    msg: &str,
    what: &str,
    ok: impl Fn(&str) -> bool,
) {
    browser.click(button).await;
    browser
        .wait_text(msg, Duration::from_secs(90), what, ok)
        .await;
}

/// Waits until the group page shows `version` as the current version.
async fn wait_group_version(browser: &Browser, version: u32) {
    browser
        .wait_for(&format!("#group-version[data-version='{version}']"), SHOWN)
        .await;
}

async fn page_has(browser: &Browser, needle: &str) -> bool {
    browser.page_text().await.contains(needle)
}

async fn no_csp_violations(browser: &Browser) {
    let v = browser
        .js("return document.body.dataset.cspViolations || '0';", vec![])
        .await;
    assert_eq!(
        v,
        json!("0"),
        "the page hit Content-Security-Policy violations"
    );
}

async fn inject(ens: &Ensemble, via: usize, gid: &str, temperature: f64) -> Value {
    let r = ens
        .api
        .post(
            &format!("{}/api/v1/cluster/pipeline-groups/{gid}/inject", ens.coords[via].url),
            &json!({"event_type": "Reading", "fields": {"sensor_id": "T1", "temperature": temperature}}),
        )
        .await
        .expect("inject");
    r.expect_ok();
    r.body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_runs_a_cluster_through_a_follower() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let mut ens = Ensemble::start(3, 2, Opts::default()).await;
    let leader = ens.wait_leader(Duration::from_secs(20)).await;
    let follower = ens.others(leader)[0];
    let page = ens.coords[follower].url.clone();

    // --- Sign-in: nothing about the cluster before the right key. -------------------------
    browser.goto(&format!("{page}/")).await;
    assert!(
        browser.url().await.ends_with("/ui/"),
        "{}",
        browser.url().await
    );
    browser
        .wait_for("#login:not([hidden]) #api-key", SHOWN)
        .await;
    assert_eq!(
        browser.count("#nav:not([hidden])").await,
        0,
        "navigation shown before sign-in"
    );
    for w in &ens.workers {
        assert!(
            !page_has(&browser, &w.id).await,
            "{} shown before sign-in",
            w.id
        );
    }
    browser.type_into("#api-key", "not-the-key").await;
    browser.click("#login-submit").await;
    browser
        .wait_text("#login-error", SHOWN, "the wrong-key message", |t| {
            t.contains("Wrong API key")
        })
        .await;
    shot(&browser, "login.png", 640).await;
    assert_eq!(browser.count("#nav:not([hidden])").await, 0);
    assert!(!page_has(&browser, "worker-0").await);
    browser.type_into("#api-key", ADMIN_KEY).await;
    browser.click("#login-submit").await;
    browser.wait_for("body[data-ready='true']", SHOWN).await;
    // The key is kept for this tab only, and never in the URL.
    let storage = browser
        .js("return [sessionStorage.getItem('varpulis.console.apiKey'), localStorage.length, document.cookie];", vec![])
        .await;
    assert_eq!(storage, json!([ADMIN_KEY, 0, ""]));
    assert!(!browser.url().await.contains(ADMIN_KEY));
    // A page reload keeps the session (session storage) and does not ask again.
    browser
        .js(
            "window.__beforeReload = true; setTimeout(() => location.reload(), 0); return true;",
            vec![],
        )
        .await;
    browser
        .wait_js(
            "return window.__beforeReload === undefined && document.body.dataset.ready === 'true';",
            vec![],
            SHOWN,
            "the reloaded page signed in",
        )
        .await;
    assert_eq!(browser.count("#login:not([hidden])").await, 0);

    // --- Overview: members, leader, quorum, workers. -----------------------------------------
    let leader_id = leader + 1;
    browser
        .wait_js(
            "const rows = document.querySelectorAll('#members tbody tr[data-node]');
             return rows.length === 3 && [...rows].every(r => r.querySelector('.health').textContent === 'up');",
            vec![],
            SHOWN,
            "three members up",
        )
        .await;
    browser
        .wait_text(
            &format!("#members tr[data-node='{leader_id}'] .role"),
            SHOWN,
            "the leader's role",
            |t| t == "Leader",
        )
        .await;
    browser
        .wait_text("#card-leader .v", SHOWN, "the leader card", |t| {
            t == format!("node {leader_id}")
        })
        .await;
    browser
        .wait_text("#card-quorum .v", SHOWN, "the quorum card", |t| {
            t == "3 / 3 up"
        })
        .await;
    assert_eq!(
        browser
            .js(
                "return document.getElementById('conn').dataset.node;",
                vec![]
            )
            .await,
        json!((follower + 1).to_string()),
        "the console talks to the follower it was opened on"
    );
    for w in &ens.workers {
        browser
            .wait_text(
                &format!("#overview-workers tr[data-worker='{}'] .status", w.id),
                SHOWN,
                "a ready worker",
                |t| t == "ready",
            )
            .await;
    }

    // --- A group from the editor: a deliberate error first. ---------------------------------
    browser.click("#nav a[data-view='groups']").await;
    browser.click("#new-group-link").await;
    browser.wait_for("#new-name", SHOWN).await;
    browser.type_into("#new-name", "console-demo").await;
    type_vpl(&browser, BAD).await;
    // The diagnostic shows at line 4: gutter, underline in the code, message, list entry.
    browser
        .wait_for(".editor .gutter div.err[data-line='4']", SHOWN)
        .await;
    assert_eq!(
        browser.count(".editor .gutter div.err").await,
        1,
        "one line in error"
    );
    browser
        .wait_for(".editor pre .ln[data-line='4'] .diag.error", SHOWN)
        .await;
    browser
        .wait_for(".editor pre .ln[data-line='4'] .lens", SHOWN)
        .await;
    let entry = browser
        .wait_text(".diag-list li.error", SHOWN, "a diagnostic entry", |t| {
            t.starts_with("4:")
        })
        .await;
    let column: u64 = browser
        .js(
            "return Number(document.querySelector('.diag-list li.error').dataset.column);",
            vec![],
        )
        .await
        .as_u64()
        .unwrap_or(0);
    assert!(column > 20, "column {column} of {entry}");
    assert_eq!(
        browser
            .text(".editor-status")
            .await
            .as_deref()
            .map(|t| t.starts_with('✗')),
        Some(true)
    );
    // Keywords, types and strings are highlighted.
    assert!(browser.count(".editor pre .tok-kw").await >= 1);
    assert!(browser.count(".editor pre .tok-type").await >= 1);
    assert!(browser.count(".editor pre .tok-com").await >= 1);
    shot(&browser, "editor-error.png", 900).await;
    // Creating it anyway is refused with the same diagnostics, and nothing is stored.
    browser.click("#create-group").await;
    browser
        .wait_text("#create-msg", SHOWN, "the refusal", |t| {
            t.contains("Not created") && t.contains("4:")
        })
        .await;
    let groups = ens
        .api
        .get(&format!("{page}/api/v1/cluster/pipeline-groups"))
        .await
        .unwrap();
    assert_eq!(groups.body["total"], 0, "a refused group was stored");
    type_vpl(&browser, GOOD).await;
    browser
        .wait_js(
            "return document.querySelector('.editor-status').dataset.valid === 'true'
                && document.querySelectorAll('.editor .gutter div.err').length === 0;",
            vec![],
            SHOWN,
            "the fixed program checked valid",
        )
        .await;
    browser.click("#create-group").await;
    browser
        .wait_text("#group-name", SHOWN, "the new group's page", |t| {
            t == "console-demo"
        })
        .await;
    let url = browser.url().await;
    let gid = url.rsplit('/').next().unwrap_or_default().to_owned();
    assert_eq!(gid.len(), 36, "group id in {url}");
    ens.wait_group_running(follower, &gid).await;
    browser
        .wait_text(
            "#placements tr[data-pipeline='pipeline-1'] .status",
            SHOWN,
            "a running placement",
            |t| t == "Running",
        )
        .await;
    browser
        .wait_for("#routes-graph g.node[data-node='pipeline-1']", SHOWN)
        .await;
    browser
        .wait_for(
            "#routes-graph path.edge[data-from='_external'][data-to='pipeline-1']",
            SHOWN,
        )
        .await;
    browser
        .wait_text("#versions tr[data-version='1']", SHOWN, "version 1", |t| {
            t.contains("running")
        })
        .await;

    // --- Live output after injected events (through the API and the page's own form). ------
    browser
        .wait_text("#output-state", SHOWN, "the output stream", |t| t == "live")
        .await;
    // The coordinator starts following the worker's stream when the page connects: inject
    // until the first alert shows (events before that are not replayed: a live view).
    let mut injected = 0;
    let deadline = std::time::Instant::now() + SHOWN;
    loop {
        inject(&ens, leader, &gid, 120.5).await;
        injected += 1;
        if browser.count("#output tr.output-row").await > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no live output; page:\n{}",
            browser.page_text().await
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    inject(&ens, follower, &gid, 80.0).await; // under the threshold: no output
    browser.type_into("#inject-type", "Reading").await;
    browser
        .type_into(
            "#inject-fields",
            r#"{"sensor_id": "T2", "temperature": 130}"#,
        )
        .await;
    browser.click("#inject-send").await;
    browser
        .wait_text("#inject-msg", SHOWN, "the inject answer", |t| {
            t.contains("1 output event")
        })
        .await;
    injected += 2;
    browser
        .wait_js(
            "const rows = [...document.querySelectorAll('#output tr.output-row')];
             return rows.every(r => r.dataset.eventType === 'Alerts' && !r.textContent.includes('\"temperature\":80'))
                && rows.some(r => r.textContent.includes('\"temperature\":120.5'))
                && rows.some(r => r.textContent.includes('\"sensor_id\":\"T2\"'));",
            vec![],
            SHOWN,
            "the alerts in the live output",
        )
        .await;
    browser
        .wait_js(
            "const c = document.querySelector('#group-metrics .events-in');
             return c !== null && c.textContent === String(arguments[0]);",
            vec![json!(injected)],
            SHOWN,
            "the pipeline counters",
        )
        .await;
    shot(&browser, "group.png", 1300).await;

    // --- A new version from the editor (rolling update, state kept), then a rollback. ------
    type_vpl(&browser, V2).await;
    browser.wait_for("#pipeline-tabs button.dirty", SHOWN).await;
    wait_editor_valid(&browser, "v2 valid").await;
    click_and_wait(
        &browser,
        "#deploy",
        "#deploy-msg",
        "the rolling update",
        |t| t.contains("Version 2 is running") && t.contains("state keep"),
    )
    .await;
    wait_group_version(&browser, 2).await;
    // 60 passes the new threshold only; the output stream follows the replaced pipeline.
    let deadline = std::time::Instant::now() + SHOWN;
    let v2_output = "return [...document.querySelectorAll('#output tr.output-row')]
        .some(r => r.textContent.includes('\"temperature\":60}'));";
    loop {
        inject(&ens, leader, &gid, 60.0).await;
        if browser.js(v2_output, vec![]).await == json!(true) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no output of version 2"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    click_and_wait(
        &browser,
        "#rollback",
        "#rollback-msg",
        "the rollback",
        |t| t.contains("Version 3 is running") && t.contains("restores version 1"),
    )
    .await;
    wait_group_version(&browser, 3).await;
    browser
        .wait_js(
            "return document.querySelector('.editor-wrap textarea').value.includes('temperature > 100');",
            vec![],
            SHOWN,
            "the editor showing version 1's source again",
        )
        .await;
    // A version whose state cannot carry over (the stream is renamed): refused with "keep when
    // compatible", deployed with "state: reset".
    type_vpl(&browser, V4).await;
    wait_editor_valid(&browser, "v4 valid").await;
    click_and_wait(
        &browser,
        "#deploy",
        "#deploy-msg",
        "the refusal of a state change",
        |t| t.contains("Not deployed") && t.contains("state: reset"),
    )
    .await;
    wait_group_version(&browser, 3).await;
    browser.click("#state-mode option[value='reset']").await;
    click_and_wait(
        &browser,
        "#deploy",
        "#deploy-msg",
        "the update with a state reset",
        |t| t.contains("Version 4 is running") && t.contains("state reset"),
    )
    .await;
    browser
        .wait_for("#versions tr[data-version='4']", SHOWN)
        .await;
    let versions = ens
        .api
        .get(&format!(
            "{page}/api/v1/cluster/pipeline-groups/{gid}/versions"
        ))
        .await
        .unwrap();
    assert_eq!(versions.body["version"], 4, "{}", versions.text);
    assert_eq!(
        versions.body["history"][3]["state"], "reset",
        "{}",
        versions.text
    );

    // --- Workers: a killed worker turns unhealthy without a reload; drain from the page. ----
    browser.click("#nav a[data-view='workers']").await;
    browser.wait_for("#workers tr[data-worker]", SHOWN).await;
    browser
        .js("window.__sameDocument = true; return true;", vec![])
        .await;
    let group = ens.group_view(follower, &gid).await.expect("group");
    let busy = group["placements"][0]["worker_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let idle_idx = ens.workers.iter().position(|w| w.id != busy).unwrap();
    let idle = ens.workers[idle_idx].id.clone();
    ens.workers[idle_idx].proc.kill();
    browser
        .wait_text(
            &format!("#workers tr[data-worker='{idle}'] .status"),
            SHOWN,
            "the killed worker unhealthy",
            |t| t == "unhealthy",
        )
        .await;
    assert_eq!(
        browser
            .js("return window.__sameDocument === true;", vec![])
            .await,
        json!(true),
        "the page was reloaded"
    );
    shot(&browser, "workers.png", 420).await;
    ens.workers[idle_idx].proc.restart();
    browser
        .wait_text(
            &format!("#workers tr[data-worker='{idle}'] .status"),
            SHOWN,
            "ready again",
            |t| t == "ready",
        )
        .await;
    browser
        .click(&format!("#workers tr[data-worker='{busy}'] button.drain"))
        .await;
    browser
        .click(&format!("#workers tr[data-worker='{busy}'] button.drain"))
        .await; // confirm
    browser
        .wait_text(
            "#workers-msg",
            Duration::from_secs(90),
            "the drain answer",
            |t| t.contains("draining"),
        )
        .await;
    browser
        .wait_text(
            &format!("#workers tr[data-worker='{busy}'] .status"),
            SHOWN,
            "draining",
            |t| t == "draining",
        )
        .await;
    browser.click("#nav a[data-view='migrations']").await;
    browser
        .wait_js(
            "return [...document.querySelectorAll('#migrations tr[data-migration]')]
                .some(r => r.textContent.includes('drain') && r.querySelector('.status').textContent === 'completed');",
            vec![],
            Duration::from_secs(60),
            "the drain's migration completed",
        )
        .await;
    shot(&browser, "migrations.png", 360).await;
    browser.goto(&format!("{page}/ui/#/groups/{gid}")).await;
    browser
        .wait_text(
            "#placements tr[data-pipeline='pipeline-1'] .worker",
            SHOWN,
            "the moved placement",
            |t| t == idle,
        )
        .await;

    // --- Event stream and metrics pages. ---------------------------------------------------
    browser.click("#nav a[data-view='events']").await;
    for kind in ["worker_unhealthy", "group_deployed", "migration_completed"] {
        browser
            .wait_for(&format!("#events tr[data-type='{kind}']"), SHOWN)
            .await;
    }
    browser.click("#nav a[data-view='metrics']").await;
    // Some traffic for the per-pipeline charts (a few seconds: the page samples every 2 s).
    for i in 0..24 {
        inject(&ens, leader, &gid, 140.0 + f64::from(i)).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    browser
        .wait_js(
            "return ['chart-writes', 'chart-events-in', 'chart-events-out', 'chart-workers']
                .every(id => document.querySelector('#' + id + ' path.line') !== null);",
            vec![],
            SHOWN,
            "the charts drawn",
        )
        .await;
    browser
        .wait_for(
            "#chart-events-in .legend [data-series='console-demo/pipeline-1']",
            SHOWN,
        )
        .await;
    browser
        .wait_for("#chart-workers .legend [data-series='ready']", SHOWN)
        .await;
    shot(&browser, "metrics.png", 1250).await;

    // --- The node the console talks to dies: it carries on through another member. --------
    browser.click("#nav a[data-view='overview']").await;
    shot(&browser, "overview.png", 1100).await;
    ens.coords[follower].proc.kill();
    browser
        .wait_js(
            "const n = document.getElementById('conn').dataset.node; return n !== '' && n !== arguments[0];",
            vec![json!((follower + 1).to_string())],
            SHOWN,
            "the console switched to another member",
        )
        .await;
    browser
        .wait_text("#banner", SHOWN, "the switch notice", |t| {
            t.contains("stopped answering")
        })
        .await;
    browser
        .wait_text(
            &format!("#members tr[data-node='{}'] .health", follower + 1),
            SHOWN,
            "the dead member shown down",
            |t| t == "down",
        )
        .await;
    browser
        .wait_text("#card-quorum .v", SHOWN, "the quorum card", |t| {
            t == "2 / 3 up"
        })
        .await;
    shot(&browser, "failover.png", 520).await;
    // Still live: a new group created elsewhere shows up without a reload.
    let spec = json!({"name": "after-switch", "pipelines": [{"name": "p", "source": "stream P = X .emit(v: 1)"}],
                      "routes": [{"from_pipeline": "_external", "to_pipeline": "p", "event_types": ["X"]}]});
    ens.create_group(leader, &spec).await;
    browser
        .wait_js(
            "return [...document.querySelectorAll('#overview-groups tr[data-group] a')].some(a => a.textContent === 'after-switch');",
            vec![],
            SHOWN,
            "the new group on the overview",
        )
        .await;
    no_csp_violations(&browser).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_opens_directly_without_a_key() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let opts = Opts {
        api_key: String::new(),
        ..Opts::default()
    };
    let ens = Ensemble::start(1, 1, opts).await;
    let page = ens.coords[0].url.clone();
    browser.goto(&format!("{page}/")).await;
    browser.wait_for("body[data-ready='true']", SHOWN).await;
    assert_eq!(
        browser.count("#login:not([hidden])").await,
        0,
        "asked for a key"
    );
    assert_eq!(browser.count("#logout:not([hidden])").await, 0);
    browser
        .wait_js(
            "return document.querySelectorAll('#members tbody tr[data-node]').length === 1;",
            vec![],
            SHOWN,
            "one member",
        )
        .await;
    browser
        .wait_text(
            "#members tr[data-node='1'] .role",
            SHOWN,
            "a single-node leader",
            |t| t == "Leader",
        )
        .await;
    let w = ens.workers[0].id.clone();
    browser
        .wait_text(
            &format!("#overview-workers tr[data-worker='{w}'] .status"),
            SHOWN,
            "the worker",
            |t| t == "ready",
        )
        .await;
    let storage = browser
        .js(
            "return [sessionStorage.length, localStorage.length];",
            vec![],
        )
        .await;
    assert_eq!(storage, json!([0, 0]), "nothing stored without a key");
    no_csp_violations(&browser).await;
}
