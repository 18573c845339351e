//! The web console (`/ui/`, docs/console.md), tested the way an operator uses it.
//!
//! - `http.rs`: the console's HTTP side without a browser: `/` redirects, embedded assets with
//!   their security headers and Content-Security-Policy, CORS for member origins only,
//!   cross-site writes refused, and the two routes added for the console (VPL validation,
//!   group pipeline counters).
//! - `ui.rs`: a real headless Chromium (through chromedriver, see `browser.rs`) against an
//!   ensemble of three coordinators and two workers, opened through a follower: sign-in with a
//!   wrong then the right key, members/workers/groups shown, a killed worker turning unhealthy
//!   without a reload, a group deployed from the editor (a deliberate error first: its
//!   diagnostic appears at the right line), a rolling update and a rollback, live output after
//!   injected events, the follower killed and the console carrying on through another member;
//!   and a cluster without a key opening directly. These skip with `SKIPPED: ...` when
//!   Chromium or chromedriver is missing (`.ci/run` installs both).
//!
//! With `VARPULIS_CONSOLE_SCREENSHOTS=1` the browser tests save the screenshots used by
//! docs/console.md into `docs/console/` (off by default, so test runs never change the tree).

#[path = "../cluster/harness.rs"]
mod harness;

mod browser;
mod http;
mod ui;

use std::path::PathBuf;

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where screenshots go, when they are wanted (`VARPULIS_CONSOLE_SCREENSHOTS=1`).
pub fn screenshot_dir() -> Option<PathBuf> {
    let wanted = std::env::var("VARPULIS_CONSOLE_SCREENSHOTS").is_ok_and(|v| v == "1");
    wanted.then(|| {
        let dir = repo().join("docs/console");
        std::fs::create_dir_all(&dir).expect("create docs/console");
        dir
    })
}
