//! The small things of the CLI: a closed stdout ends a command quietly (no panic, exit 0, also
//! for a stream that never ends), shell completions and man pages are generated from clap.

use crate::harness::{wait_until, Ensemble, Opts, ADMIN_KEY};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn varpulis(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_varpulis"));
    cmd.args(args)
        .env_remove("VARPULIS_COORDINATOR")
        .env_remove("VARPULIS_API_KEY");
    cmd
}

/// Starts `cmd` with stdout a pipe whose reading end is closed at once, so its first write
/// fails with EPIPE; waits (at most `limit`) and returns the exit code and stderr.
fn with_closed_stdout(mut cmd: Command, limit: Duration) -> (Option<i32>, String) {
    let mut child: Child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            return (
                status.code(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            );
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "still running after {limit:?} with stdout closed; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_stdout_ends_commands_quietly() {
    let ens = Ensemble::start(1, 1, Opts::default()).await;
    let url = ens.coords[0].url.clone();
    // Something to list.
    let spec = crate::repo().join("examples/iot/group.json");
    let out = varpulis(&["cluster", "--coordinator", &url, "groups", "deploy", "-f"])
        .arg(&spec)
        .env("VARPULIS_API_KEY", ADMIN_KEY)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    for args in [
        vec!["topology"],
        vec!["topology", "--json"],
        vec!["workers"],
        vec!["groups", "list"],
        vec!["status"],
        vec!["members", "list"],
    ] {
        let mut cmd = varpulis(&["cluster", "--coordinator", &url]);
        cmd.args(&args).env("VARPULIS_API_KEY", ADMIN_KEY);
        let (code, stderr) = with_closed_stdout(cmd, Duration::from_secs(30));
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(!stderr.contains("Broken pipe"), "{args:?}: {stderr}");
        // status keeps its health exit code; the others end with 0.
        assert_eq!(code, Some(0), "{args:?}: {stderr}");
    }

    // A stream that never ends stops at its first line (the event ring holds the registration).
    let mut cmd = varpulis(&["cluster", "--coordinator", &url, "events", "--since", "0"]);
    cmd.env("VARPULIS_API_KEY", ADMIN_KEY);
    let (code, stderr) = with_closed_stdout(cmd, Duration::from_secs(30));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    // Generators write to stdout too.
    let (code, stderr) =
        with_closed_stdout(varpulis(&["completions", "bash"]), Duration::from_secs(10));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    // And `| head` in a real shell: the pipeline succeeds with one line, nothing on stderr.
    let script = format!(
        "set -o pipefail; '{}' cluster --coordinator {url} topology | head -n 1",
        env!("CARGO_BIN_EXE_varpulis")
    );
    let ok = wait_until(
        "bash pipeline",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            let out = Command::new("bash")
                .args(["-c", &script])
                .env("VARPULIS_API_KEY", ADMIN_KEY)
                .output();
            async move { out.ok() }
        },
    )
    .await;
    assert!(ok.status.success(), "{ok:?}");
    assert_eq!(String::from_utf8_lossy(&ok.stdout).lines().count(), 1);
    assert!(
        !String::from_utf8_lossy(&ok.stderr).contains("panicked"),
        "{ok:?}"
    );
}

#[test]
fn completions_are_generated_for_every_shell() {
    let script = |shell: &str| {
        let out = varpulis(&["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let bash = script("bash");
    assert!(bash.contains("_varpulis()"), "bash script");
    for word in [
        "cluster",
        "status",
        "groups",
        "rollback",
        "connectors",
        "--coordinator",
    ] {
        assert!(bash.contains(word), "bash completion lacks {word}");
    }
    let zsh = script("zsh");
    assert!(
        zsh.starts_with("#compdef varpulis"),
        "{}",
        &zsh[..40.min(zsh.len())]
    );
    assert!(script("fish").contains("complete -c varpulis"));
    assert!(script("powershell").contains("Register-ArgumentCompleter"));
    assert!(script("elvish").contains("edit:completion:arg-completer[varpulis]"));
    let out = varpulis(&["completions", "tcsh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "unknown shell is a usage error");

    // The bash script is valid bash.
    if Command::new("bash").arg("--version").output().is_ok() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("varpulis.bash");
        std::fs::write(&path, &bash).unwrap();
        let check = Command::new("bash").arg("-n").arg(&path).output().unwrap();
        assert!(check.status.success(), "{check:?}");
    }
}

#[test]
fn man_pages_are_generated_for_every_command() {
    let out = varpulis(&["man"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(
        page.starts_with(".ie") || page.contains(".TH varpulis"),
        "{}",
        &page[..200.min(page.len())]
    );
    assert!(
        page.contains("cluster"),
        "the main page lists the subcommands"
    );

    let dir = tempfile::tempdir().unwrap();
    let out = varpulis(&["man", "--out-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    for name in [
        "varpulis.1",
        "varpulis-cluster.1",
        "varpulis-cluster-status.1",
        "varpulis-cluster-groups-update.1",
        "varpulis-cluster-connectors-create.1",
        "varpulis-cluster-workers-drain.1",
        "varpulis-coordinator.1",
        "varpulis-completions.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let title = name.trim_end_matches(".1");
        assert!(
            text.contains(&format!(".TH {title}")),
            "{name}: {}",
            &text[..200.min(text.len())]
        );
    }
    let status = std::fs::read_to_string(dir.path().join("varpulis-cluster-status.1")).unwrap();
    assert!(
        status.contains("max\\-lag"),
        "flags are documented: {status}"
    );
}

/// Three consecutive ports free on 127.0.0.1 (the coordinators of `varpulis local`).
fn three_free_ports() -> u16 {
    for _ in 0..50 {
        let base = crate::harness::free_port();
        if base < 60000
            && (0..3).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok())
        {
            return base;
        }
    }
    panic!("no three consecutive free ports");
}

/// Lines of a child's pipe, read on a thread.
fn lines_of(pipe: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(pipe).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Reads lines until one contains `needle` (at most `limit`); returns every line read.
fn read_until(
    rx: &std::sync::mpsc::Receiver<String>,
    needle: &str,
    limit: Duration,
) -> Vec<String> {
    let deadline = Instant::now() + limit;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let done = line.contains(needle);
                seen.push(line);
                if done {
                    return seen;
                }
            }
            Err(_) => panic!(
                "no line with `{needle}` within {limit:?}; got:\n{}",
                seen.join("\n")
            ),
        }
    }
}

/// `varpulis local` shows each child's pid, and reports a child that dies (name, pid, status)
/// while the others keep running.
#[test]
fn local_prints_pids_and_reports_a_dead_child() {
    let mut last = String::new();
    for _attempt in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let base = three_free_ports();
        let worker_port = crate::harness::free_port();
        let mqtt_port = crate::harness::free_port();
        let mut child = varpulis(&["local", "--workers", "1"])
            .args(["--base-port", &base.to_string()])
            .args(["--worker-base-port", &worker_port.to_string()])
            .args(["--mqtt-port", &mqtt_port.to_string()])
            .arg("--data-dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = lines_of(child.stdout.take().unwrap());
        let stderr = lines_of(child.stderr.take().unwrap());
        // The banner, or an early failure (a port taken meanwhile: try other ports).
        let banner = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            read_until(&stdout, "Press Ctrl-C to stop.", Duration::from_secs(90))
        }));
        let Ok(banner) = banner else {
            let _ = child.kill();
            let _ = child.wait();
            last = stderr.try_iter().collect::<Vec<_>>().join("\n");
            continue;
        };
        let pid_of = |prefix: &str| -> u32 {
            let line = banner
                .iter()
                .find(|l| l.starts_with(prefix))
                .unwrap_or_else(|| panic!("no `{prefix}` line in:\n{}", banner.join("\n")));
            let pid = line
                .split("pid ")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .unwrap_or_else(|| panic!("no pid in `{line}`"));
            pid.parse().unwrap()
        };
        for i in 1..=3 {
            assert!(pid_of(&format!("coordinator {i}:")) > 0);
        }
        let worker_pid = pid_of("worker-0:");
        let killed = Command::new("kill")
            .args(["-9", &worker_pid.to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let report = read_until(
            &stderr,
            &format!("worker-0 (pid {worker_pid}) exited"),
            Duration::from_secs(20),
        );
        let line = report.last().unwrap();
        assert!(line.contains("the others keep running"), "{line}");
        // Still serving: the coordinators answer.
        assert!(
            child.try_wait().unwrap().is_none(),
            "local exited with the worker"
        );
        let term = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(term.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "local did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(100));
        }
        return;
    }
    panic!("varpulis local never started:\n{last}");
}
