//! A headless Chromium driven over the W3C WebDriver protocol: `chromedriver` is started on a
//! free loopback port, and the handful of commands the console tests need (navigate, find,
//! click, type, run a script, screenshot) are plain JSON calls made with reqwest. No WebDriver
//! crate: the protocol is small, and this keeps the test build light.
//!
//! Chromium runs with a fresh profile and everything that would reach the internet turned off
//! (`--disable-background-networking`, `--disable-component-update`, `--disable-sync`, ...);
//! on top of that no host name resolves and non-loopback requests go to a dead proxy.
//! When `chromium` or `chromedriver` is missing, [`Browser::start`] prints
//! `SKIPPED: ...` and returns `None` (`.ci/run` installs both).

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Key of an element reference in W3C answers.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

fn find_binary(env: &str, names: &[&str]) -> Option<PathBuf> {
    if let Ok(p) = std::env::var(env) {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let path = std::env::var("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = path
        .split(':')
        .map(PathBuf::from)
        .chain(["/usr/bin", "/usr/lib/chromium", "/usr/local/bin"].map(PathBuf::from))
        .collect();
    names
        .iter()
        .flat_map(|n| dirs.iter().map(move |d| d.join(n)))
        .find(|p| p.is_file())
}

/// A chromedriver process with one browser session; both end on drop.
pub struct Browser {
    http: reqwest::Client,
    /// `http://127.0.0.1:PORT/session/ID`
    session: String,
    driver: Child,
    _profile: tempfile::TempDir,
}

/// An error answered by chromedriver (`{"value": {"error", "message"}}`).
#[derive(Debug)]
pub struct DriverError(pub String);

impl std::fmt::Display for DriverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session; `None` (after printing why) when
    /// either binary is missing.
    pub async fn start() -> Option<Browser> {
        let Some(chromium) = find_binary("CHROMIUM_BIN", &["chromium", "chromium-browser"]) else {
            println!("SKIPPED: chromium not found (install with apt-get install chromium chromium-driver)");
            return None;
        };
        let Some(chromedriver) = find_binary("CHROMEDRIVER_BIN", &["chromedriver"]) else {
            println!(
                "SKIPPED: chromedriver not found (install with apt-get install chromium-driver)"
            );
            return None;
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("http client");
        let mut last = String::new();
        for _ in 0..3 {
            let port = crate::harness::free_port();
            let mut driver = Command::new(&chromedriver)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn chromedriver");
            let base = format!("http://127.0.0.1:{port}");
            if !wait_ready(&http, &base, &mut driver).await {
                let _ = driver.kill();
                let _ = driver.wait();
                last = "chromedriver did not become ready".into();
                continue;
            }
            let profile = tempfile::Builder::new()
                .prefix("varpulis-chromium-")
                .tempdir()
                .expect("profile dir");
            match new_session(&http, &base, &chromium, profile.path()).await {
                Ok(id) => {
                    return Some(Browser {
                        http,
                        session: format!("{base}/session/{id}"),
                        driver,
                        _profile: profile,
                    })
                }
                Err(e) => {
                    last = e.0;
                    let _ = driver.kill();
                    let _ = driver.wait();
                }
            }
        }
        panic!("could not start a Chromium session: {last}");
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, DriverError> {
        let url = format!("{}{path}", self.session);
        let mut req = self.http.request(method, &url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| DriverError(format!("{path}: {e}")))?;
        let status = resp.status();
        let v: Value = resp
            .json()
            .await
            .map_err(|e| DriverError(format!("{path}: {e}")))?;
        if !status.is_success() {
            return Err(DriverError(format!(
                "{path}: {} {}",
                v["value"]["error"].as_str().unwrap_or("error"),
                v["value"]["message"].as_str().unwrap_or("")
            )));
        }
        Ok(v["value"].clone())
    }

    /// Opens `url`.
    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await
            .unwrap_or_else(|e| panic!("navigate to {url}: {e}"));
    }

    /// The current URL.
    pub async fn url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None)
            .await
            .map(|v| v.as_str().unwrap_or_default().to_owned())
            .unwrap_or_default()
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its result.
    pub async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.try_js(script, args)
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// [`Browser::js`] without panicking.
    pub async fn try_js(&self, script: &str, args: Vec<Value>) -> Result<Value, DriverError> {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// `textContent` of the first element matching `css` (None when there is none).
    pub async fn text(&self, css: &str) -> Option<String> {
        let v = self
            .try_js(
                "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
                vec![json!(css)],
            )
            .await
            .ok()?;
        v.as_str().map(str::to_owned)
    }

    /// Number of elements matching `css`.
    pub async fn count(&self, css: &str) -> usize {
        self.try_js(
            "return document.querySelectorAll(arguments[0]).length;",
            vec![json!(css)],
        )
        .await
        .ok()
        .and_then(|v| v.as_u64())
        .unwrap_or(0) as usize
    }

    /// The element reference of the first match of `css`.
    pub async fn find(&self, css: &str) -> Result<String, DriverError> {
        let v = self
            .call(
                reqwest::Method::POST,
                "/element",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await?;
        v[ELEMENT_KEY]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| DriverError(format!("no element reference for {css}: {v}")))
    }

    /// Waits (polling every 100 ms) until `css` matches an element; panics after `timeout`.
    pub async fn wait_for(&self, css: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(id) = self.find(css).await {
                return id;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {timeout:?} waiting for `{css}`; page:\n{}",
                    self.page_text().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the text of `css` satisfies `ok`; returns it. Panics after `timeout`.
    pub async fn wait_text(
        &self,
        css: &str,
        timeout: Duration,
        what: &str,
        ok: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(t) = self.text(css).await {
                if ok(&t) {
                    return t;
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what} in `{css}` (now: {:?}); page:\n{}",
                    self.text(css).await,
                    self.page_text().await
                );
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    /// Waits until `script` returns true.
    pub async fn wait_js(&self, script: &str, args: Vec<Value>, timeout: Duration, what: &str) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.try_js(script, args.clone()).await.ok() == Some(Value::Bool(true)) {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; page:\n{}",
                    self.page_text().await
                );
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    /// Clicks the first element matching `css` (waiting up to 10 s for it). The console
    /// re-renders live tables every few seconds, so an element found a moment ago may have been
    /// replaced: a stale reference is looked up again.
    pub async fn click(&self, css: &str) {
        let mut attempts = 0;
        loop {
            let id = self.wait_for(css, Duration::from_secs(10)).await;
            match self
                .call(
                    reqwest::Method::POST,
                    &format!("/element/{id}/click"),
                    Some(json!({})),
                )
                .await
            {
                Ok(_) => return,
                Err(e) if attempts < 5 && e.0.contains("stale element") => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("click {css}: {e}"),
            }
        }
    }

    /// Clears the field matching `css`, then types `text` into it as keystrokes.
    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self.wait_for(css, Duration::from_secs(10)).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/clear"),
            Some(json!({})),
        )
        .await
        .unwrap_or_else(|e| panic!("clear {css}: {e}"));
        self.send_keys(css, text).await;
    }

    /// Types `text` into the element matching `css` (at its caret).
    pub async fn send_keys(&self, css: &str, text: &str) {
        let id = self.wait_for(css, Duration::from_secs(10)).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        )
        .await
        .unwrap_or_else(|e| panic!("type into {css}: {e}"));
    }

    /// Resizes the browser window (the viewport a screenshot shows).
    pub async fn set_window_size(&self, width: u32, height: u32) {
        self.call(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({ "width": width, "height": height })),
        )
        .await
        .unwrap_or_else(|e| panic!("resize window: {e}"));
    }

    /// Visible text of the page (for failure messages).
    pub async fn page_text(&self) -> String {
        self.try_js(
            "return document.body ? document.body.innerText : '';",
            vec![],
        )
        .await
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
    }

    /// Saves a PNG screenshot of the page to `path`.
    pub async fn screenshot(&self, path: &Path) {
        use base64::Engine as _;
        let v = self
            .call(reqwest::Method::GET, "/screenshot", None)
            .await
            .unwrap_or_else(|e| panic!("screenshot: {e}"));
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .expect("screenshot is base64");
        std::fs::write(path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // End the session (closes Chromium), then stop the driver.
        let http = self.http.clone();
        let session = self.session.clone();
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                let _ = rt.block_on(async {
                    tokio::time::timeout(Duration::from_secs(10), http.delete(&session).send())
                        .await
                });
            }
        })
        .join();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

async fn wait_ready(http: &reqwest::Client, base: &str, driver: &mut Child) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = driver.try_wait() {
            return false;
        }
        if let Ok(r) = http.get(format!("{base}/status")).send().await {
            if let Ok(v) = r.json::<Value>().await {
                if v["value"]["ready"] == json!(true) {
                    return true;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

async fn new_session(
    http: &reqwest::Client,
    base: &str,
    chromium: &Path,
    profile: &Path,
) -> Result<String, DriverError> {
    let args = [
        "--headless=new".to_owned(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-dev-shm-usage".into(),
        "--disable-quic".into(),
        "--no-first-run".into(),
        "--no-default-browser-check".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--disable-extensions".into(),
        "--disable-default-apps".into(),
        "--disable-client-side-phishing-detection".into(),
        "--disable-domain-reliability".into(),
        "--disable-breakpad".into(),
        "--safebrowsing-disable-auto-update".into(),
        "--metrics-recording-only".into(),
        "--no-pings".into(),
        "--password-store=basic".into(),
        "--disable-features=Translate,MediaRouter,OptimizationHints,OptimizationGuideModelDownloading,\
         AutofillServerCommunication,CertificateTransparencyComponentUpdater,DialMediaRouteProvider"
            .into(),
        // Belt and braces: no name resolves and every non-loopback request goes to a dead proxy
        // (loopback is never proxied), so nothing can leave the machine whatever Chromium tries.
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1".into(),
        "--proxy-server=http://127.0.0.1:9".into(),
        "--window-size=1360,1000".into(),
        format!("--user-data-dir={}", profile.display()),
    ];
    let caps = json!({
        "capabilities": {
            "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": chromium.display().to_string(),
                    "args": args,
                }
            }
        }
    });
    let resp = http
        .post(format!("{base}/session"))
        .json(&caps)
        .send()
        .await
        .map_err(|e| DriverError(format!("new session: {e}")))?;
    let v: Value = resp
        .json()
        .await
        .map_err(|e| DriverError(format!("new session: {e}")))?;
    v["value"]["sessionId"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| DriverError(format!("new session refused: {v}")))
}
