//! TLS (issue 18 item 7): HTTPS listeners, verification of servers against `--tls-ca`,
//! mutual TLS, the peer certificate standing in for the peer secret, SIGHUP reload, and a whole
//! ensemble (three coordinators, two workers) deploying and injecting over mutual TLS.
//! Certificates come from throwaway CAs generated here (rcgen, through `varpulis_tls`).

use crate::harness::{wait_until, Api, Ensemble, Opts, TlsFiles};
use serde_json::json;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use varpulis_tls::keys::KeyStore;
use varpulis_tls::throwaway::ThrowawayCa;
use varpulis_tls::ClientTls;

fn tls_opts(tls: TlsFiles) -> Opts {
    Opts {
        tls: Some(tls),
        ..Opts::default()
    }
}

/// A client of a foreign CA (and, when `with_cert`, presenting that CA's leaf).
fn stranger(with_cert: bool) -> (ClientTls, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = ThrowawayCa::new("stranger CA").expect("CA");
    ca.write_cert(&dir.path().join("ca.pem")).expect("write");
    let leaf = ca
        .issue_files(dir.path(), "leaf", &["localhost", "127.0.0.1"])
        .expect("leaf");
    let identity = with_cert.then(|| KeyStore::load(&leaf.cert, &leaf.key).expect("identity"));
    let tls = ClientTls::new(Some(&dir.path().join("ca.pem")), identity).expect("client");
    (tls, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_only_and_a_server_of_another_ca_is_refused() {
    let tls = TlsFiles::generate(&[], false);
    let ens = Ensemble::start(1, 0, tls_opts(tls.clone())).await;
    let url = &ens.coords[0].url;
    assert!(url.starts_with("https://"), "{url}");
    // The right CA: served.
    let r = ens.api.get(&format!("{url}/health")).await.expect("https");
    assert_eq!(r.status, 200, "{}", r.text);
    // A client trusting another CA refuses the server's certificate.
    let (other, _dir) = stranger(false);
    let err = Api::with_tls(None, &other)
        .get(&format!("{url}/health"))
        .await
        .expect_err("certificate of an unknown CA must be refused");
    assert!(err.is_connect() || err.is_request(), "{err:?}");
    // Clear text on the HTTPS port gets no HTTP answer.
    let plain = url.replacen("https://", "http://", 1);
    let r = Api::new(None)
        .with_timeout(Duration::from_secs(5))
        .get(&format!("{plain}/health"))
        .await;
    assert!(
        !matches!(&r, Ok(resp) if resp.status == 200),
        "plain HTTP must not be served: {r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_refuses_clients_without_a_certificate_of_the_client_ca() {
    let tls = TlsFiles::generate(&[], true);
    let ens = Ensemble::start(1, 0, tls_opts(tls.clone())).await;
    let health = format!("{}/health", ens.coords[0].url);
    // Server verified, but no client certificate: the handshake fails.
    let no_cert = ClientTls::new(Some(&tls.ca), None).expect("client");
    let r = Api::with_tls(None, &no_cert).get(&health).await;
    assert!(
        r.is_err(),
        "a client without a certificate was served: {r:?}"
    );
    // A certificate from another CA is refused too.
    let (_, foreign_dir) = stranger(true);
    let foreign = ClientTls::new(
        Some(&tls.ca),
        Some(
            KeyStore::load(
                &foreign_dir.path().join("leaf.pem"),
                &foreign_dir.path().join("leaf-key.pem"),
            )
            .expect("identity"),
        ),
    )
    .expect("client");
    let r = Api::with_tls(None, &foreign).get(&health).await;
    assert!(
        r.is_err(),
        "a certificate of another CA was accepted: {r:?}"
    );
    // The client CA's certificate opens it.
    let r = ens.api.get(&health).await.expect("mutual TLS");
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_certificate_stands_in_for_the_peer_secret_on_raft_rpcs_only() {
    let tls = TlsFiles::generate(&[], true);
    let mut opts = tls_opts(tls.clone());
    opts.coord_extra_args = vec!["--tls-peer-name".into(), "varpulis-coordinator".into()];
    let ens = Ensemble::start(1, 0, opts).await;
    let url = &ens.coords[0].url;
    let vote = json!({"vote": {"leader_id": {"term": 1, "node_id": 1}, "committed": false},
                      "last_log_id": null});
    // The shared leaf is valid for `varpulis-coordinator`: a peer, no secret needed.
    let peer = Api::with_tls(None, &tls.client());
    let r = peer
        .post(&format!("{url}/raft/vote"), &vote)
        .await
        .expect("vote");
    assert_ne!(r.status, 401, "peer certificate refused: {}", r.text);
    assert_eq!(r.status, 200, "{}", r.text);
    // But not an admin credential.
    let r = peer
        .post(
            &format!("{url}/raft/add-learner"),
            &json!({"node_id": 9, "addr": "https://127.0.0.1:9"}),
        )
        .await
        .expect("add-learner");
    assert_eq!(r.status, 401, "{}", r.text);
    // A certificate of the same CA for another name (a worker's) is not a peer's.
    let worker = tls
        .authority
        .issue_files(tls.dir.path(), "worker", &["worker-7", "127.0.0.1"])
        .expect("leaf");
    let worker_tls = ClientTls::new(
        Some(&tls.ca),
        Some(KeyStore::load(&worker.cert, &worker.key).expect("identity")),
    )
    .expect("client");
    let r = Api::with_tls(None, &worker_tls)
        .post(&format!("{url}/raft/vote"), &vote)
        .await
        .expect("vote");
    assert_eq!(r.status, 401, "{}", r.text);
    assert_eq!(r.body["code"], "unauthorized", "{}", r.text);
}

/// The leaf certificate a fresh TLS connection to `addr` is served, and the connection.
async fn handshake(
    client: &ClientTls,
    addr: &str,
) -> (
    Vec<u8>,
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
) {
    let config = client.rustls_config().expect("custom client config");
    let connector = tokio_rustls::TlsConnector::from(config);
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let stream = connector.connect(name, tcp).await.expect("handshake");
    let leaf = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .expect("served certificate")
        .to_vec();
    (leaf, stream)
}

fn file_leaf_der(path: &std::path::Path) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_file(path)
        .expect("PEM")
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate_and_keeps_the_process_and_open_connections() {
    let tls = TlsFiles::generate(&[], true);
    let mut ens = Ensemble::start(1, 0, tls_opts(tls.clone())).await;
    let addr = format!("127.0.0.1:{}", ens.coords[0].port);
    let client = tls.client();
    let (before, mut open) = handshake(&client, &addr).await;
    assert_eq!(before, file_leaf_der(&tls.cert));

    // Replace the files (same paths), then SIGHUP.
    let names: Vec<&str> = tls.names.iter().map(String::as_str).collect();
    tls.authority
        .issue_files(tls.dir.path(), "node", &names)
        .expect("new leaf");
    let after_file = file_leaf_der(&tls.cert);
    assert_ne!(before, after_file);
    let pid = ens.coords[0].proc.pid().expect("pid");
    signal(pid, "HUP");

    let tls_ref = &client;
    let addr_ref = &addr;
    let before_ref = &before;
    let served = wait_until(
        "new handshakes serve the new certificate",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async move {
            let (leaf, _) = handshake(tls_ref, addr_ref).await;
            (&leaf != before_ref).then_some(leaf)
        },
    )
    .await;
    assert_eq!(served, after_file);

    // The connection opened before the reload still works, and so does the process.
    open.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("write on the old connection");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), open.read_to_end(&mut answer))
        .await
        .expect("answer in time")
        .ok();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(ens.coords[0].proc.is_up(), "the coordinator died on SIGHUP");
    let r = ens
        .api
        .get(&format!("{}/health", ens.coords[0].url))
        .await
        .expect("health after reload");
    assert_eq!(r.status, 200);

    // A broken key is refused at reload; the node keeps serving the last good certificate.
    std::fs::write(&tls.key, "not a key").expect("write");
    signal(pid, "HUP");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(ens.coords[0].proc.is_up());
    let (leaf, _) = handshake(&client, &addr).await;
    assert_eq!(leaf, after_file);
}

/// Sends signal `name` to the child `pid` (one we started).
fn signal(pid: u32, name: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{name} {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ensemble_over_mutual_tls_deploys_and_injects() {
    let tls = TlsFiles::generate(&[], true);
    let opts = Opts {
        worker_ids: vec!["tls-w1".into(), "tls-w2".into()],
        ..tls_opts(tls)
    };
    // Raft peers, worker registration and heartbeats: all over mutual TLS.
    let ens = Ensemble::start(3, 2, opts).await;
    let leader = ens.wait_leader(Duration::from_secs(20)).await;
    let follower = ens.others(leader)[0];
    let group = json!({
        "name": "tls-alerts",
        "pipelines": [
            {"name": "hot",
             "source": "stream Hot = Reading .where(temperature > 100) .emit(sensor_id: sensor_id, temperature: temperature)"}
        ],
        "routes": [
            {"from_pipeline": "_external", "to_pipeline": "hot", "event_types": ["Reading"]}
        ]
    });
    // Created through a follower: the leader proxy forwards over TLS, the leader deploys to a
    // worker over TLS.
    let gid = ens.deploy_group(follower, &group).await;
    for via in [follower, leader] {
        let r = ens
            .api
            .post(
                &ens.cluster_url(via, &format!("/pipeline-groups/{gid}/inject")),
                &json!({"event_type": "Reading", "fields": {"sensor_id": "S1", "temperature": 120.0}}),
            )
            .await
            .expect("inject");
        r.expect_status(200);
        let out = r.body["worker_response"]["output_events"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(out.len(), 1, "{}", r.text);
        assert_eq!(out[0]["event_type"], "Hot", "{}", r.text);
    }
}

/// `varpulis local --tls`: the whole ensemble on a throwaway CA; the banner names the CA and
/// prints curl lines with `--cacert`, and a client trusting that CA deploys and injects. The
/// embedded broker speaks `mqtts://`: a route between two pipelines crosses it over TLS, seen
/// by a subscriber that trusts the same CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_tls_runs_the_ensemble_on_a_throwaway_ca() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().expect("tempdir");
    let base = loop {
        let p = crate::harness::free_port();
        if p < 65000 && (1..3).all(|i| std::net::TcpListener::bind(("127.0.0.1", p + i)).is_ok()) {
            break p;
        }
    };
    let mqtt_port = crate::harness::free_port();
    let mut child = Command::new(crate::harness::bin())
        .args(["local", "--workers", "1", "--tls"])
        .args(["--base-port", &base.to_string()])
        .args([
            "--worker-base-port",
            &crate::harness::free_port().to_string(),
        ])
        .args(["--mqtt-port", &mqtt_port.to_string()])
        .arg("--data-dir")
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("varpulis local");
    let stdout = child.stdout.take().expect("stdout");
    let banner = tokio::task::spawn_blocking(move || {
        let mut lines = Vec::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let done = line.contains("Press Ctrl-C to stop.");
            lines.push(line);
            if done {
                break;
            }
        }
        lines
    });
    let banner = tokio::time::timeout(Duration::from_secs(120), banner)
        .await
        .expect("banner in time")
        .expect("reader");
    let text = banner.join("\n");
    let kill = |child: &mut std::process::Child| {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let _ = child.wait();
    };
    if !text.contains("Press Ctrl-C to stop.") {
        kill(&mut child);
        panic!("local --tls did not start:\n{text}");
    }
    let ca = dir.path().join("tls").join("ca.pem");
    assert!(
        text.contains(&format!("--cacert {}", ca.display())),
        "{text}"
    );
    assert!(
        text.contains(&format!("https://127.0.0.1:{base}")),
        "{text}"
    );
    let api = Api::with_tls(
        Some("admin"),
        &ClientTls::new(Some(&ca), None).expect("client"),
    );
    let url = format!("https://127.0.0.1:{base}");
    assert!(
        text.contains(&format!("mqtts://127.0.0.1:{mqtt_port}")),
        "{text}"
    );
    // A subscriber over TLS, trusting the run's CA, on every topic of the embedded broker.
    let mut options = rumqttc::MqttOptions::new("tls-test-sub", "127.0.0.1", mqtt_port);
    options.set_transport(rumqttc::Transport::tls_with_config(
        rumqttc::TlsConfiguration::Simple {
            ca: std::fs::read(&ca).expect("CA"),
            alpn: None,
            client_auth: None,
        },
    ));
    let (sub, mut events) = rumqttc::AsyncClient::new(options, 64);
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(event) = events.poll().await {
            if let rumqttc::Event::Incoming(packet) = event {
                let _ = seen_tx.send(packet);
            }
        }
    });
    sub.subscribe("#", rumqttc::QoS::AtMostOnce)
        .await
        .expect("subscribe");
    // The TLS handshake and the subscription are done once the broker acknowledged it.
    let acked = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(packet) = seen.recv().await {
            if matches!(packet, rumqttc::Packet::SubAck(_)) {
                return true;
            }
        }
        false
    })
    .await;
    if !matches!(acked, Ok(true)) {
        kill(&mut child);
        panic!("no SUBACK from the broker over TLS: {acked:?}\n{text}");
    }
    let group = json!({
        "name": "local-tls",
        "pipelines": [
            {"name": "p", "source": "stream Mid = Reading .where(v > 1) .emit(v: v)"},
            {"name": "q", "source": "stream Out = Mid .emit(v: v)"}
        ],
        "routes": [
            {"from_pipeline": "_external", "to_pipeline": "p", "event_types": ["Reading"]},
            {"from_pipeline": "p", "to_pipeline": "q", "event_types": ["Mid"]}
        ]
    });
    let api_ref = &api;
    let url_ref = &url;
    let group_ref = &group;
    let outcome = async move {
        let created = api_ref
            .post(
                &format!("{url_ref}/api/v1/cluster/pipeline-groups"),
                group_ref,
            )
            .await
            .map_err(|e| format!("create: {e}"))?;
        let gid = created.body["id"]
            .as_str()
            .ok_or(format!("no id: {}", created.text))?
            .to_owned();
        let inject = format!("{url_ref}/api/v1/cluster/pipeline-groups/{gid}/inject");
        let gid_ref = &inject;
        let r = crate::harness::try_wait_until(
            Duration::from_secs(30),
            Duration::from_millis(200),
            || async move {
                let r = api_ref
                    .post(
                        gid_ref,
                        &json!({"event_type": "Reading", "fields": {"v": 5}}),
                    )
                    .await
                    .ok()?;
                (r.status == 200).then_some(r)
            },
        )
        .await
        .ok_or("inject never answered 200")?;
        let out = r.body["worker_response"]["output_events"]
            .as_array()
            .map_or(0, Vec::len);
        (out == 1)
            .then_some(())
            .ok_or(format!("unexpected output: {}", r.text))?;
        // The route p -> q went through the broker over TLS.
        let published = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                match seen.recv().await {
                    Some(rumqttc::Packet::Publish(p)) => return Some(p.topic),
                    Some(_) => continue,
                    None => return None,
                }
            }
        })
        .await;
        match published {
            Ok(Some(_topic)) => Ok(()),
            other => Err(format!(
                "no route message seen on the TLS broker: {other:?}"
            )),
        }
    }
    .await;
    kill(&mut child);
    if let Err(e) = outcome {
        panic!("{e}\n{text}");
    }
    // SIGTERM stopped the whole ensemble, although nobody reads `local`'s stdout any more (its
    // last line once panicked on the closed pipe and left every child running).
    let ports = [base, base + 1, base + 2];
    let gone = crate::harness::try_wait_until(
        Duration::from_secs(15),
        Duration::from_millis(200),
        || async move {
            ports
                .iter()
                .all(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_err())
                .then_some(())
        },
    )
    .await;
    assert!(
        gone.is_some(),
        "a coordinator of `local` still listens after SIGTERM"
    );
}

/// `varpulis cluster --tls-ca --tls-cert --tls-key` against coordinators that require mutual
/// TLS; without the client certificate it cannot reach them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_cli_speaks_mutual_tls() {
    let tls = TlsFiles::generate(&[], true);
    let ens = Ensemble::start(1, 1, tls_opts(tls.clone())).await;
    let url = ens.coords[0].url.clone();
    let key = ens.opts.api_key.clone();
    let files = tls.clone();
    let cli = move |with_cert: bool| {
        let tls = &files;
        let mut cmd = std::process::Command::new(crate::harness::bin());
        cmd.args(["cluster", "--json", "--timeout", "5"])
            .args(["--coordinator", &url])
            .args(["--api-key", &key])
            .arg("--tls-ca")
            .arg(&tls.ca)
            .env_remove("VARPULIS_TLS_CERT")
            .env_remove("VARPULIS_TLS_KEY");
        if with_cert {
            cmd.arg("--tls-cert")
                .arg(&tls.cert)
                .arg("--tls-key")
                .arg(&tls.key);
        }
        cmd.arg("workers").output().expect("varpulis cluster")
    };
    let out = tokio::task::spawn_blocking(move || (cli(true), cli(false)))
        .await
        .expect("cli");
    let (with, without) = out;
    let text = String::from_utf8_lossy(&with.stdout);
    assert!(
        with.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&with.stderr)
    );
    assert!(text.contains("worker-0"), "{text}");
    assert!(
        !without.status.success(),
        "no client certificate, yet: {}",
        String::from_utf8_lossy(&without.stdout)
    );
}
