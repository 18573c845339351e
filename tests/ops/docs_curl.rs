//! Replays the curl examples of the docs against a live ensemble, so they cannot go stale.
//!
//! Which blocks run: every ```` ```sh ```` / ```` ```bash ```` block of `docs/*.md`, `README.md`
//! and `examples/*/README.md` whose first command is `curl` or a variable assignment
//! (`W=http://127.0.0.1:9000`). Such a block may only hold `curl` commands and assignments; a
//! block that must not run is marked ```` ```sh no-run ````. Files run in that order, blocks in
//! document order, sharing one ensemble (3 coordinators, 2 workers, coordinator key `admin`,
//! worker key `secret`); variables are reset for each file.
//!
//! Placeholders:
//! - `127.0.0.1:9100` / `localhost:9100` (and 9101, 9102) are coordinators 1 (2, 3);
//!   `127.0.0.1:9000` / `localhost:9000` is a standalone worker (`varpulis server` without a
//!   coordinator, so draining it leaves the cluster alone); 9001 and 9002 are the ensemble's
//!   workers. Only URLs are rewritten, never bodies.
//! - `$GROUP_ID` is the `id` of the last group created by `POST .../pipeline-groups` (the replay
//!   then waits until the group is `running`, as a user would); `$ID` (also `$PIPELINE_ID`,
//!   `$OTHER`) is the `id` of the last pipeline deployed by `POST /api/v1/pipelines`.
//! - `-d @file` / `--data-binary @file` read a file written earlier by `> file`, else a path
//!   relative to the repository root.
//!
//! Every command must answer 2xx, unless its trailing comment starts with a status
//! (`# 404 unknown id`, `# HTTP 503 while draining`). Server-Sent Event streams are checked by
//! their status only.

use crate::harness::{free_port, wait_until, Api, Ensemble, Opts, Proc};
use crate::repo;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A piece of a shell word: literal text or a `$VAR` to expand at run time.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Lit(String),
    Var(String),
}

/// One shell word.
type Word = Vec<Piece>;

/// One command of a block.
#[derive(Debug, Clone, Default, PartialEq)]
struct Cmd {
    words: Vec<Word>,
    /// `> file` target.
    redirect: Option<Word>,
    /// Trailing comment (without `#`).
    comment: String,
}

fn push_lit(word: &mut Word, c: char) {
    if let Some(Piece::Lit(s)) = word.last_mut() {
        s.push(c);
    } else {
        word.push(Piece::Lit(c.to_string()));
    }
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Reads `$NAME` or `${NAME}` at `chars[i]` (which is `$`); returns the name and the next index.
fn read_var(chars: &[char], i: usize) -> Result<(String, usize), String> {
    if chars.get(i + 1) == Some(&'{') {
        let end = chars[i + 2..]
            .iter()
            .position(|c| *c == '}')
            .ok_or("unclosed ${")?;
        return Ok((chars[i + 2..i + 2 + end].iter().collect(), i + 3 + end));
    }
    let mut j = i + 1;
    while j < chars.len() && is_ident(chars[j]) {
        j += 1;
    }
    if j == i + 1 {
        return Err(format!(
            "unsupported `${}` (only $VAR, ${{VAR}} and $'...')",
            chars.get(i + 1).copied().unwrap_or(' ')
        ));
    }
    Ok((chars[i + 1..j].iter().collect(), j))
}

/// Splits a block into commands, the way `sh` would for the subset docs use: quotes ('', "",
/// $''), `\` line continuations, `;` and newlines between commands, `#` comments, `> file`.
/// Pipes, `&&`, `&`, command substitution and `<` are refused (mark such a block `no-run`).
fn parse_block(text: &str) -> Result<Vec<Cmd>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut cmds = Vec::new();
    let mut cmd = Cmd::default();
    let mut word: Option<Word> = None;
    let mut redirect_next = false;
    let mut i = 0;
    let end_word = |cmd: &mut Cmd, word: &mut Option<Word>, redirect_next: &mut bool| {
        if let Some(w) = word.take() {
            if *redirect_next {
                cmd.redirect = Some(w);
                *redirect_next = false;
            } else {
                cmd.words.push(w);
            }
        }
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' => {
                end_word(&mut cmd, &mut word, &mut redirect_next);
                i += 1;
            }
            '\\' if chars.get(i + 1) == Some(&'\n') => {
                end_word(&mut cmd, &mut word, &mut redirect_next);
                i += 2;
            }
            '\\' => {
                let next = *chars.get(i + 1).ok_or("trailing backslash")?;
                push_lit(word.get_or_insert_with(Vec::new), next);
                i += 2;
            }
            '\n' | ';' => {
                end_word(&mut cmd, &mut word, &mut redirect_next);
                if !cmd.words.is_empty() {
                    cmds.push(std::mem::take(&mut cmd));
                } else {
                    cmd = Cmd::default();
                }
                i += 1;
            }
            '#' if word.is_none() => {
                let end = chars[i..]
                    .iter()
                    .position(|c| *c == '\n')
                    .map_or(chars.len(), |p| i + p);
                let comment: String = chars[i + 1..end].iter().collect();
                if !cmd.words.is_empty() && cmd.comment.is_empty() {
                    cmd.comment = comment.trim().to_owned();
                }
                i = end;
            }
            '\'' => {
                let w = word.get_or_insert_with(Vec::new);
                let end = chars[i + 1..]
                    .iter()
                    .position(|c| *c == '\'')
                    .ok_or("unclosed '")?;
                for ch in &chars[i + 1..i + 1 + end] {
                    push_lit(w, *ch);
                }
                if end == 0 {
                    w.push(Piece::Lit(String::new()));
                }
                i += end + 2;
            }
            '$' if chars.get(i + 1) == Some(&'\'') => {
                let w = word.get_or_insert_with(Vec::new);
                let mut j = i + 2;
                loop {
                    let ch = *chars.get(j).ok_or("unclosed $'")?;
                    match ch {
                        '\'' => break,
                        '\\' => {
                            let esc = *chars.get(j + 1).ok_or("unclosed $'")?;
                            let out = match esc {
                                'n' => '\n',
                                't' => '\t',
                                'r' => '\r',
                                other => other,
                            };
                            push_lit(w, out);
                            j += 2;
                        }
                        other => {
                            push_lit(w, other);
                            j += 1;
                        }
                    }
                }
                i = j + 1;
            }
            '"' => {
                let w = word.get_or_insert_with(Vec::new);
                w.push(Piece::Lit(String::new()));
                let mut j = i + 1;
                loop {
                    let ch = *chars.get(j).ok_or("unclosed \"")?;
                    match ch {
                        '"' => break,
                        '\\' if matches!(chars.get(j + 1), Some('"' | '\\' | '$' | '`')) => {
                            push_lit(w, chars[j + 1]);
                            j += 2;
                        }
                        '$' => {
                            let (name, next) = read_var(&chars, j)?;
                            w.push(Piece::Var(name));
                            j = next;
                        }
                        '`' => return Err("command substitution is not supported".into()),
                        other => {
                            push_lit(w, other);
                            j += 1;
                        }
                    }
                }
                i = j + 1;
            }
            '$' => {
                let (name, next) = read_var(&chars, i)?;
                word.get_or_insert_with(Vec::new).push(Piece::Var(name));
                i = next;
            }
            '>' => {
                end_word(&mut cmd, &mut word, &mut redirect_next);
                redirect_next = true;
                i += 1;
            }
            '|' | '&' | '`' | '<' | '(' | ')' => {
                return Err(format!("`{c}` is not supported in a replayed block"));
            }
            other => {
                push_lit(word.get_or_insert_with(Vec::new), other);
                i += 1;
            }
        }
    }
    end_word(&mut cmd, &mut word, &mut redirect_next);
    if !cmd.words.is_empty() {
        cmds.push(cmd);
    }
    Ok(cmds)
}

/// `NAME=` prefix of an assignment word.
fn assignment(word: &Word) -> Option<(String, Word)> {
    let Some(Piece::Lit(first)) = word.first() else {
        return None;
    };
    let (name, rest) = first.split_once('=')?;
    if name.is_empty()
        || !name.chars().all(is_ident)
        || name.starts_with(|c: char| c.is_ascii_digit())
    {
        return None;
    }
    let mut value = vec![Piece::Lit(rest.to_owned())];
    value.extend(word[1..].iter().cloned());
    Some((name.to_owned(), value))
}

fn expand(word: &Word, env: &HashMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    for p in word {
        match p {
            Piece::Lit(s) => out.push_str(s),
            Piece::Var(v) => {
                out.push_str(env.get(v).ok_or_else(|| {
                    format!("variable ${v} is not set (see the placeholder list)")
                })?)
            }
        }
    }
    Ok(out)
}

/// A replayable block: file, first line, info string and text.
#[derive(Debug)]
struct Block {
    file: PathBuf,
    line: usize,
    text: String,
}

/// The sh/bash blocks of a markdown file whose first command is `curl` or an assignment.
fn curl_blocks(file: &Path) -> Vec<Block> {
    let text = std::fs::read_to_string(file).unwrap();
    let mut blocks = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        let Some(info) = line.trim_start().strip_prefix("```") else {
            continue;
        };
        let mut body = String::new();
        for (_, l) in lines.by_ref() {
            if l.trim_start().starts_with("```") {
                break;
            }
            body.push_str(l);
            body.push('\n');
        }
        let mut info = info.split_whitespace();
        let lang = info.next().unwrap_or_default();
        if !(lang == "sh" || lang == "bash") || info.any(|w| w == "no-run") {
            continue;
        }
        let first = body
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .unwrap_or_default();
        // `W=http://...` alone, not `VAR=x cargo test ...` (an environment for a command).
        let starts_with_assignment = parse_block(first).is_ok_and(|cmds| {
            cmds.first()
                .is_some_and(|c| c.words.len() == 1 && assignment(&c.words[0]).is_some())
        });
        if first.starts_with("curl ") || starts_with_assignment {
            blocks.push(Block {
                file: file.to_owned(),
                line: n + 1,
                text: body,
            });
        }
    }
    blocks
}

/// The files whose blocks are replayed, in replay order.
fn doc_files() -> Vec<PathBuf> {
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    docs.push(repo().join("README.md"));
    let mut examples: Vec<PathBuf> = std::fs::read_dir(repo().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path().join("README.md"))
        .filter(|p| p.exists())
        .collect();
    examples.sort();
    docs.extend(examples);
    docs
}

/// A parsed curl invocation.
#[derive(Debug, Default)]
struct Curl {
    method: Option<String>,
    url: String,
    headers: Vec<(String, String)>,
    data: Option<Vec<u8>>,
}

/// Parses curl's arguments (the subset the docs use).
fn parse_curl(args: &[String], files: &Path) -> Result<Curl, String> {
    let mut c = Curl::default();
    let mut i = 0;
    let value = |i: &mut usize, flag: &str| -> Result<String, String> {
        *i += 1;
        args.get(*i).cloned().ok_or(format!("{flag} needs a value"))
    };
    let add_data = |c: &mut Curl, v: &str, binary: bool| -> Result<(), String> {
        let bytes = if let Some(name) = v.strip_prefix('@') {
            let local = files.join(name);
            let path = if local.exists() {
                local
            } else {
                repo().join(name)
            };
            let mut b = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            if !binary {
                b.retain(|x| *x != b'\n' && *x != b'\r');
            }
            b
        } else {
            v.as_bytes().to_vec()
        };
        match &mut c.data {
            Some(d) => {
                d.push(b'&');
                d.extend(bytes);
            }
            None => c.data = Some(bytes),
        }
        Ok(())
    };
    while i < args.len() {
        let a = args[i].as_str();
        match a {
            "-X" | "--request" => c.method = Some(value(&mut i, a)?),
            "-H" | "--header" => {
                let h = value(&mut i, a)?;
                let (k, v) = h.split_once(':').ok_or(format!("bad header {h}"))?;
                c.headers.push((k.trim().to_owned(), v.trim().to_owned()));
            }
            "-d" | "--data" | "--data-ascii" => add_data(&mut c, &value(&mut i, a)?, false)?,
            "--data-binary" | "--data-raw" => add_data(&mut c, &value(&mut i, a)?, true)?,
            "--silent" | "--show-error" | "--fail" | "--no-buffer" | "--location" | "--include" => {
            }
            _ if a.starts_with("-X") && a.len() > 2 => c.method = Some(a[2..].to_owned()),
            _ if a.starts_with('-')
                && !a.starts_with("--")
                && a[1..].chars().all(|f| "sSfNLi".contains(f)) => {}
            _ if a.starts_with('-') => return Err(format!("unsupported curl flag {a}")),
            _ if c.url.is_empty() => c.url = a.to_owned(),
            _ => return Err(format!("second URL {a}")),
        }
        i += 1;
    }
    if c.url.is_empty() {
        return Err("no URL".into());
    }
    Ok(c)
}

/// The status a command's comment announces (`# 404 ...`, `# HTTP 503 ...`), if any.
fn expected_status(comment: &str) -> Option<u16> {
    let c = comment.trim_start();
    let c = c.strip_prefix("HTTP ").unwrap_or(c);
    let digits: String = c.chars().take_while(char::is_ascii_digit).collect();
    let rest = &c[digits.len()..];
    (digits.len() == 3 && (rest.is_empty() || rest.starts_with([' ', ':', ',', ';', '.'])))
        .then(|| digits.parse().ok())
        .flatten()
}

/// Rewrites the documented hosts to the ensemble's.
fn rewrite_url(url: &str, ens: &Ensemble, standalone: u16) -> String {
    let mut u = if url.contains("://") {
        url.to_owned()
    } else {
        format!("http://{url}")
    };
    let mut map: Vec<(u16, u16)> = Vec::new();
    for (i, c) in ens.coords.iter().enumerate() {
        map.push((9100 + i as u16, c.port));
    }
    map.push((9000, standalone));
    for (i, w) in ens.workers.iter().enumerate() {
        map.push((9001 + i as u16, w.port));
    }
    for (doc, real) in map {
        for host in ["127.0.0.1", "localhost"] {
            u = u.replace(&format!("//{host}:{doc}/"), &format!("//127.0.0.1:{real}/"));
            if u.ends_with(&format!("//{host}:{doc}")) {
                u = u.replace(&format!("//{host}:{doc}"), &format!("//127.0.0.1:{real}"));
            }
        }
    }
    u
}

/// Runs one curl command; returns the status and the body (empty for SSE streams).
async fn run_curl(http: &reqwest::Client, c: &Curl) -> Result<(u16, String, bool), String> {
    let method = c
        .method
        .clone()
        .unwrap_or_else(|| if c.data.is_some() { "POST" } else { "GET" }.to_owned());
    let m = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
    let mut req = http.request(m, &c.url).timeout(Duration::from_secs(30));
    let mut has_ct = false;
    for (k, v) in &c.headers {
        has_ct |= k.eq_ignore_ascii_case("content-type");
        req = req.header(k, v);
    }
    if let Some(d) = &c.data {
        if !has_ct {
            // What curl sends with -d and no Content-Type.
            req = req.header("content-type", "application/x-www-form-urlencoded");
        }
        req = req.body(d.clone());
    }
    let resp = req.send().await.map_err(|e| format!("transport: {e}"))?;
    let status = resp.status().as_u16();
    if crate::is_event_stream(&resp) {
        return Ok((status, String::new(), true));
    }
    let text = resp.text().await.map_err(|e| e.to_string())?;
    Ok((status, text, false))
}

#[test]
fn shell_subset_handles_quotes_continuations_comments_and_redirects() {
    let cmds = parse_block(
        "H='x-api-key: k'; W=http://h:1\n\
         # a comment line\n\
         curl -s -XPOST $W/p -H \"$H\" \\\n  -d '{\"a\":\n 1}'   # 404 unknown\n\
         curl ${W}/q --data-binary $'a\\nb' > out.json\n",
    )
    .unwrap();
    assert_eq!(cmds.len(), 4, "{cmds:?}");
    let mut env = HashMap::new();
    for c in &cmds[..2] {
        let (k, v) = assignment(&c.words[0]).unwrap();
        let v = expand(&v, &env).unwrap();
        env.insert(k, v);
    }
    assert_eq!(env["H"], "x-api-key: k");
    let words: Vec<String> = cmds[2]
        .words
        .iter()
        .map(|w| expand(w, &env).unwrap())
        .collect();
    assert_eq!(
        words,
        [
            "curl",
            "-s",
            "-XPOST",
            "http://h:1/p",
            "-H",
            "x-api-key: k",
            "-d",
            "{\"a\":\n 1}"
        ]
    );
    assert_eq!(expected_status(&cmds[2].comment), Some(404));
    let words: Vec<String> = cmds[3]
        .words
        .iter()
        .map(|w| expand(w, &env).unwrap())
        .collect();
    assert_eq!(words, ["curl", "http://h:1/q", "--data-binary", "a\nb"]);
    assert_eq!(
        expand(cmds[3].redirect.as_ref().unwrap(), &env).unwrap(),
        "out.json"
    );
    assert!(parse_block("G=$(curl -s x | jq .id)").is_err());
    assert!(parse_block("curl x && curl y").is_err());
    assert_eq!(expected_status("200 when ready"), Some(200));
    assert_eq!(expected_status("HTTP 503 while draining"), Some(503));
    assert_eq!(expected_status("Prometheus text"), None);
    assert_eq!(expected_status("2000 events"), None);
    let c = parse_curl(
        &[
            "-fsS".into(),
            "-X".into(),
            "PUT".into(),
            "u".into(),
            "-H".into(),
            "a: b".into(),
        ],
        Path::new("/"),
    )
    .unwrap();
    assert_eq!((c.method.as_deref(), c.url.as_str()), (Some("PUT"), "u"));
    assert!(parse_curl(&["-k".into(), "u".into()], Path::new("/")).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docs_curl_examples_replay_against_a_live_ensemble() {
    let files = doc_files();
    let blocks: Vec<Block> = files.iter().flat_map(|f| curl_blocks(f)).collect();
    let opts = Opts {
        worker_key: "secret".into(),
        ..Opts::default()
    };
    let ens = Ensemble::start(3, 2, opts).await;
    let admin = Api::new(Some(&ens.opts.api_key));
    let port = free_port();
    let args = [
        "server",
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--api-key",
        "secret",
        "--worker-id",
        "doc-standalone",
    ]
    .map(str::to_owned)
    .to_vec();
    let _standalone = Proc::spawn("doc-standalone", args, ens.log_dir());
    let health = format!("http://127.0.0.1:{port}/ready");
    wait_until(
        "standalone worker ready",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || {
            let (api, url) = (admin.clone(), health.clone());
            async move { api.get(&url).await.ok().filter(|r| r.ok()).map(|_| ()) }
        },
    )
    .await;
    let http = reqwest::Client::new();
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    let mut ran = 0;
    let mut env: HashMap<String, String> = HashMap::new();
    let mut current_file = PathBuf::new();
    for block in &blocks {
        if block.file != current_file {
            env.clear();
            current_file = block.file.clone();
        }
        let rel = block
            .file
            .strip_prefix(repo())
            .unwrap_or(&block.file)
            .display()
            .to_string();
        let at = format!("{rel}:{}", block.line);
        let cmds = match parse_block(&block.text) {
            Ok(c) => c,
            Err(e) => {
                failures.push(format!("{at}: {e}; mark the block ```sh no-run"));
                continue;
            }
        };
        for cmd in cmds {
            if cmd.words.len() == 1 {
                if let Some((k, v)) = assignment(&cmd.words[0]) {
                    match expand(&v, &env) {
                        Ok(v) => {
                            env.insert(k, v);
                        }
                        Err(e) => failures.push(format!("{at}: {e}")),
                    }
                    continue;
                }
            }
            let words: Result<Vec<String>, String> =
                cmd.words.iter().map(|w| expand(w, &env)).collect();
            let words = match words {
                Ok(w) => w,
                Err(e) => {
                    failures.push(format!("{at}: {e}"));
                    continue;
                }
            };
            if words[0] != "curl" {
                failures.push(format!(
                    "{at}: `{}` in a replayed block (only curl and assignments; or mark it no-run)",
                    words.join(" ")
                ));
                continue;
            }
            let shown = words.join(" ");
            let mut curl = match parse_curl(&words[1..], dir.path()) {
                Ok(c) => c,
                Err(e) => {
                    failures.push(format!("{at}: {shown}: {e}"));
                    continue;
                }
            };
            curl.url = rewrite_url(&curl.url, &ens, port);
            ran += 1;
            let (status, body, _sse) = match run_curl(&http, &curl).await {
                Ok(r) => r,
                Err(e) => {
                    failures.push(format!("{at}: {shown}: {e}"));
                    continue;
                }
            };
            let expected = expected_status(&cmd.comment);
            let ok = match expected {
                Some(s) => status == s,
                None => (200..300).contains(&status),
            };
            if !ok {
                let want = expected.map_or("2xx".to_owned(), |s| s.to_string());
                failures.push(format!(
                    "{at}: {shown}\n    -> {status} (expected {want}): {body}"
                ));
                continue;
            }
            if let Some(target) = &cmd.redirect {
                let name = expand(target, &env).unwrap_or_default();
                std::fs::write(dir.path().join(name), &body).unwrap();
            }
            // Bind the placeholders from what this command created.
            let json: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            let path = reqwest::Url::parse(&curl.url)
                .map(|u| u.path().to_owned())
                .unwrap_or_default();
            let post = curl.method.as_deref().unwrap_or("POST") == "POST" && curl.data.is_some();
            if let (true, Some(id)) = (post, json["id"].as_str()) {
                if path == "/api/v1/cluster/pipeline-groups" {
                    env.insert("GROUP_ID".into(), id.to_owned());
                    let url = format!("{}{path}/{id}", ens.coords[0].url);
                    let api = admin.clone();
                    wait_until(
                        &format!("{at}: group {id} running"),
                        Duration::from_secs(30),
                        Duration::from_millis(200),
                        || {
                            let (api, url) = (api.clone(), url.clone());
                            async move {
                                let r = api.get(&url).await.ok()?;
                                (r.body["status"] == "running").then_some(())
                            }
                        },
                    )
                    .await;
                } else if path == "/api/v1/pipelines" {
                    for k in ["ID", "PIPELINE_ID", "OTHER"] {
                        env.insert(k.into(), id.to_owned());
                    }
                }
            }
        }
    }
    eprintln!(
        "replayed {ran} curl commands from {} blocks of {} files",
        blocks.len(),
        files.len()
    );
    assert!(
        failures.is_empty(),
        "{} doc example(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        ran >= 30,
        "only {ran} curl commands found: is the extraction broken?"
    );
}
