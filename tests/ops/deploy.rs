//! Deployment files: `systemd-analyze verify` on both units, and the compose service graph.

use crate::repo;
use std::collections::HashSet;
use std::process::Command;
use yaml_rust::{Yaml, YamlLoader};

/// Copies `unit` into `dir` as `instance`, pointing ExecStart at the built binary.
fn instantiate(unit: &str, instance: &str, dir: &std::path::Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(repo().join("deploy/systemd").join(unit)).unwrap();
    assert!(
        text.contains("ExecStart=/usr/local/bin/varpulis "),
        "{unit}: ExecStart must run /usr/local/bin/varpulis"
    );
    let text = text.replace("/usr/local/bin/varpulis", env!("CARGO_BIN_EXE_varpulis"));
    let path = dir.join(instance);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    let analyze = std::path::Path::new("/usr/bin/systemd-analyze");
    if !analyze.exists() {
        eprintln!("SKIP: /usr/bin/systemd-analyze is not installed; units not verified");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let units = [
        instantiate(
            "varpulis-coordinator@.service",
            "varpulis-coordinator@1.service",
            dir.path(),
        ),
        instantiate(
            "varpulis-worker@.service",
            "varpulis-worker@w1.service",
            dir.path(),
        ),
    ];
    let out = Command::new(analyze)
        .arg("verify")
        .arg("--man=no")
        .args(&units)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{stderr}"
    );
    // Warnings about our own files (unknown keys, bad values) count as failures too.
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("varpulis-coordinator@") || l.contains("varpulis-worker@"))
        .collect();
    assert!(
        ours.is_empty(),
        "systemd-analyze warnings:\n{}",
        ours.join("\n")
    );
}

#[test]
fn systemd_units_are_hardened() {
    for unit in ["varpulis-coordinator@.service", "varpulis-worker@.service"] {
        let text = std::fs::read_to_string(repo().join("deploy/systemd").join(unit)).unwrap();
        for line in [
            "User=varpulis",
            "ProtectSystem=strict",
            "ProtectHome=yes",
            "PrivateTmp=yes",
            "NoNewPrivileges=yes",
            "Restart=on-failure",
            "LimitNOFILE=65536",
            "KillSignal=SIGTERM",
            "EnvironmentFile=/etc/varpulis/varpulis.env",
        ] {
            assert!(text.lines().any(|l| l == line), "{unit} lacks `{line}`");
        }
        assert!(
            text.contains("StateDirectory=varpulis/"),
            "{unit}: StateDirectory"
        );
        assert!(text.contains("TimeoutStopSec="), "{unit}: stop timeout");
    }
}

fn load_compose() -> Yaml {
    let path = repo().join("deploy/docker/docker-compose.cluster.yml");
    let text = std::fs::read_to_string(path).unwrap();
    let mut docs = YamlLoader::load_from_str(&text).unwrap();
    assert_eq!(docs.len(), 1);
    docs.remove(0)
}

/// The value following `flag` in a compose `command` list.
fn flag<'a>(command: &'a [Yaml], flag: &str) -> Option<&'a str> {
    let i = command.iter().position(|a| a.as_str() == Some(flag))?;
    command.get(i + 1)?.as_str()
}

#[test]
fn compose_has_three_raft_coordinators_four_workers_mosquitto_and_monitoring() {
    let doc = load_compose();
    let services = doc["services"].as_hash().expect("services map");
    let names: Vec<&str> = services.keys().filter_map(Yaml::as_str).collect();
    let coords: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| n.starts_with("coordinator-"))
        .collect();
    let workers: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| n.starts_with("worker-"))
        .collect();
    assert_eq!(coords.len(), 3, "{names:?}");
    assert_eq!(workers.len(), 4, "{names:?}");
    assert!(names.contains(&"mosquitto"), "{names:?}");
    assert!(names.contains(&"prometheus"), "{names:?}");
    assert!(names.contains(&"grafana"), "{names:?}");

    let svc = |n: &str| &doc["services"][n];
    let peers0 = {
        let cmd = svc(coords[0])["command"].as_vec().unwrap();
        flag(cmd, "--raft-peers").unwrap().to_owned()
    };
    let peer_list: Vec<&str> = peers0.split(',').collect();
    assert_eq!(peer_list.len(), 3);
    let mut ids = HashSet::new();
    for c in &coords {
        let cmd = svc(c)["command"].as_vec().expect("command list");
        assert_eq!(cmd[0].as_str(), Some("coordinator"));
        assert_eq!(
            flag(cmd, "--raft-peers"),
            Some(peers0.as_str()),
            "{c}: peers differ"
        );
        let id: usize = flag(cmd, "--raft-node-id").unwrap().parse().unwrap();
        assert!(ids.insert(id), "{c}: duplicate node id");
        let advertise = flag(cmd, "--advertise-address").unwrap();
        assert_eq!(
            peer_list[id - 1],
            advertise,
            "{c}: id does not match its peer entry"
        );
        assert!(
            advertise.contains(&format!("//{c}:")),
            "{c}: advertise {advertise}"
        );
        assert!(flag(cmd, "--data-dir").is_some(), "{c}: no --data-dir");
        assert_eq!(
            flag(cmd, "--mqtt-url"),
            Some("mqtt://mosquitto:1883"),
            "{c}: routes need the broker"
        );
        assert!(
            !svc(c)["volumes"].is_badvalue(),
            "{c}: data dir not on a volume"
        );
    }
    for w in &workers {
        let cmd = svc(w)["command"].as_vec().expect("command list");
        assert_eq!(cmd[0].as_str(), Some("server"));
        let list: HashSet<&str> = flag(cmd, "--coordinator").unwrap().split(',').collect();
        let all: HashSet<&str> = peer_list.iter().copied().collect();
        assert_eq!(list, all, "{w} must know every coordinator");
        assert_eq!(flag(cmd, "--worker-id"), Some(*w));
        assert_eq!(
            flag(cmd, "--mqtt-url"),
            Some("mqtt://mosquitto:1883"),
            "{w}: routes need the broker"
        );
        let advertise = flag(cmd, "--advertise-address").unwrap();
        assert!(
            advertise.contains(&format!("//{w}:")),
            "{w}: advertise {advertise}"
        );
    }
    let mut host_ports = HashSet::new();
    for n in &names {
        if let Some(ports) = svc(n)["ports"].as_vec() {
            for p in ports {
                let host = p.as_str().unwrap().split(':').next().unwrap().to_owned();
                assert!(
                    host_ports.insert(host.clone()),
                    "host port {host} used twice"
                );
            }
        }
    }
    assert_eq!(host_ports.len(), 10, "every service publishes one port");
    // The port plan of every doc: coordinators 9100-9102, workers 9000-9003, in name order.
    let published = |n: &str| {
        svc(n)["ports"][0]
            .as_str()
            .unwrap()
            .split(':')
            .next()
            .unwrap()
            .to_owned()
    };
    let mut sorted_coords = coords.clone();
    sorted_coords.sort();
    for (i, c) in sorted_coords.iter().enumerate() {
        assert_eq!(published(c), (9100 + i).to_string(), "{c}");
    }
    let mut sorted_workers = workers.clone();
    sorted_workers.sort();
    for (i, w) in sorted_workers.iter().enumerate() {
        assert_eq!(published(w), (9000 + i).to_string(), "{w}");
    }
    assert_eq!(published("prometheus"), "9091");
    assert_eq!(published("grafana"), "3000");
}

/// One port plan everywhere: `raft-cluster.toml` uses coordinators 9100-9102 on one host, like
/// `varpulis local`, the compose file and the CLI default (`http://127.0.0.1:9100`).
#[test]
fn sample_config_follows_the_port_plan() {
    let text = std::fs::read_to_string(repo().join("raft-cluster.toml")).unwrap();
    let cfg: toml::Value = toml::from_str(&text).unwrap();
    assert_eq!(cfg["port"].as_integer(), Some(9100));
    let peers: Vec<&str> = cfg["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(
        peers,
        [
            "http://127.0.0.1:9100",
            "http://127.0.0.1:9101",
            "http://127.0.0.1:9102"
        ]
    );
    assert!(!text.contains("9103"), "raft-cluster.toml still names 9103");
}
