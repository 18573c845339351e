//! The console's files, embedded at compile time, and the handlers that serve them.
//!
//! Files live in `crates/coordinator/console/` (plain HTML, CSS and JavaScript modules, no
//! build step) and are listed in [`ASSETS`]. They contain no cluster data: they are served
//! without an API key, and the page asks for the key before it shows anything. Each answer
//! carries an `ETag` (a hash of the file) and `Cache-Control: no-cache`, so browsers revalidate
//! and pick up a new version right after an upgrade. The page itself gets a
//! Content-Security-Policy that allows scripts, styles and images from this node only, no
//! inline code, and connections to this node and the other members (see [`super::guard`]).

use axum::extract::{Path, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use std::sync::OnceLock;

use super::guard::member_urls;
use super::origin::Origin;
use crate::error::ApiError;
use crate::state::AppState;

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    /// Path under `/ui/`.
    pub path: &'static str,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// The file.
    pub body: &'static [u8],
}

macro_rules! assets {
    ($($path:literal => $ty:expr),* $(,)?) => {
        &[$(Asset {
            path: $path,
            content_type: $ty,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/console/", $path)),
        }),*]
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file of the console.
pub static ASSETS: &[Asset] = assets![
    "index.html" => "text/html; charset=utf-8",
    "console.css" => "text/css; charset=utf-8",
    "icon.svg" => "image/svg+xml",
    "js/main.js" => JS,
    "js/api.js" => JS,
    "js/auth.js" => JS,
    "js/dom.js" => JS,
    "js/format.js" => JS,
    "js/store.js" => JS,
    "js/sse.js" => JS,
    "js/prom.js" => JS,
    "js/charts.js" => JS,
    "js/graph.js" => JS,
    "js/vpl.js" => JS,
    "js/editor.js" => JS,
    "js/sampler.js" => JS,
    "js/views/overview.js" => JS,
    "js/views/workers.js" => JS,
    "js/views/groups.js" => JS,
    "js/views/group.js" => JS,
    "js/views/new_group.js" => JS,
    "js/views/migrations.js" => JS,
    "js/views/events.js" => JS,
    "js/views/metrics.js" => JS,
];

/// The embedded file at `path` (relative to `/ui/`).
pub fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

/// FNV-1a of every file, computed once: the `ETag`s.
fn etags() -> &'static Vec<String> {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    TAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
                for byte in a.body {
                    hash ^= u64::from(*byte);
                    hash = hash.wrapping_mul(0x0100_0000_01b3);
                }
                format!("\"{hash:016x}\"")
            })
            .collect()
    })
}

fn serve(asset: &'static Asset, request: &HeaderMap, csp: Option<String>) -> Response {
    let index = ASSETS
        .iter()
        .position(|a| std::ptr::eq(a, asset))
        .unwrap_or_default();
    let etag = etags().get(index).cloned().unwrap_or_default();
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, asset.content_type)], asset.body).into_response()
    };
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("same-origin"),
    );
    if let Some(v) = csp.and_then(|c| HeaderValue::from_str(&c).ok()) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    response
}

/// The page's Content-Security-Policy: own files only, no inline code, connections to this
/// node and the other members.
pub fn page_csp(members: &[String]) -> String {
    let mut connect = vec!["'self'".to_string()];
    for origin in members.iter().filter_map(|m| Origin::parse(m)) {
        let text = origin.serialize();
        if !connect.contains(&text) {
            connect.push(text);
        }
    }
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
         connect-src {}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        connect.join(" ")
    )
}

/// `GET /`: redirects to the console.
pub async fn root() -> Redirect {
    Redirect::to("/ui/")
}

/// `GET /ui`: redirects to `/ui/` (the page's relative links need the slash).
pub async fn ui_redirect() -> Redirect {
    Redirect::permanent("/ui/")
}

/// `GET /ui/`: the console page.
pub async fn index(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let csp = page_csp(&member_urls(&state));
    match find("index.html") {
        Some(page) => serve(page, &headers, Some(csp)),
        None => ApiError::Internal("console page missing from the build".into()).into_response(),
    }
}

/// `GET /ui/{asset}`: a console file (404 for anything else; `index.html` is the page at
/// `/ui/`, which alone carries the page's CSP).
pub async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Result<Response, ApiError> {
    match find(&path) {
        Some(asset) if asset.path == "index.html" => {
            Ok(Redirect::permanent("/ui/").into_response())
        }
        Some(asset) => Ok(serve(asset, &headers, None)),
        None => Err(ApiError::NotFound(format!("no console file '{path}'"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_embedded_and_nothing_is_fetched_from_elsewhere() {
        for a in ASSETS {
            assert!(!a.body.is_empty(), "{} is empty", a.path);
            // The SVG namespace is a name, not something fetched.
            let text = std::str::from_utf8(a.body)
                .unwrap()
                .replace("http://www.w3.org/2000/svg", "");
            for bad in ["http://", "https://", "eval(", "new Function", "innerHTML"] {
                assert!(!text.contains(bad), "{} contains {bad}", a.path);
            }
        }
    }

    #[test]
    fn page_has_no_inline_script_or_style() {
        let page = std::str::from_utf8(find("index.html").unwrap().body).unwrap();
        assert!(!page.contains("<script>"), "inline script");
        let handler = page.split(" on").skip(1).any(|rest| {
            let name: String = rest.chars().take_while(char::is_ascii_alphabetic).collect();
            !name.is_empty() && rest[name.len()..].starts_with('=')
        });
        assert!(!handler, "inline event handler");
        assert!(!page.contains("style="), "inline style");
        // Every module the page and the modules import is embedded.
        for a in ASSETS.iter().filter(|a| a.path.ends_with(".js")) {
            let text = std::str::from_utf8(a.body).unwrap();
            for line in text.lines().filter(|l| l.starts_with("import ")) {
                let Some(spec) = line.split(['"', '\'']).nth(1) else {
                    continue;
                };
                let base = a.path.rsplit_once('/').map_or("", |(d, _)| d);
                let mut parts: Vec<&str> = base.split('/').filter(|p| !p.is_empty()).collect();
                for seg in spec.split('/') {
                    match seg {
                        "." => {}
                        ".." => {
                            parts.pop();
                        }
                        s => parts.push(s),
                    }
                }
                let target = parts.join("/");
                assert!(
                    find(&target).is_some(),
                    "{} imports missing {target}",
                    a.path
                );
            }
        }
    }

    #[test]
    fn csp_lists_member_origins_once() {
        let csp = page_csp(&[
            "http://127.0.0.1:9100".into(),
            "http://127.0.0.1:9100/".into(),
            "http://127.0.0.1:9101".into(),
            "not a url".into(),
        ]);
        assert!(csp.contains("connect-src 'self' http://127.0.0.1:9100 http://127.0.0.1:9101;"));
        assert!(csp.contains("script-src 'self';"));
        assert!(!csp.contains("unsafe"));
    }
}
