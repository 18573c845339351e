//! Each pipeline runs in exactly one place (issue 20): coordinator discovery, the worker's
//! lease and self-fencing, and the removal of stale copies when a cut-off worker comes back.

use crate::cut_proxy::CutProxy;
use crate::harness::{
    free_port, mqtt_options, mqtt_subscriber, wait_until, Api, Ensemble, NetLayout, Opts,
};
use rumqttc::{AsyncClient, QoS};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The pipeline's name on the workers (`group/pipeline`).
const ECHO: &str = "cut-echo/echo";

/// Status of worker `id` as each live coordinator sees it, sampled every 200 ms for `span`;
/// returns every status seen.
async fn statuses_during(ens: &Ensemble, live: &[usize], id: &str, span: Duration) -> Vec<String> {
    let mut seen = Vec::new();
    let end = Instant::now() + span;
    while Instant::now() < end {
        for &i in live {
            if let Some(s) = ens.worker_status(i, id).await {
                seen.push(s);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_started_with_one_coordinator_fails_over_to_the_others() {
    let mut ens = Ensemble::start(3, 0, Opts::default()).await;
    let leader = ens.wait_leader(Duration::from_secs(20)).await;
    // The worker knows only the leader's URL.
    let only = vec![ens.coords[leader].url.clone()];
    let key = ens.opts.worker_key.clone();
    ens.add_worker_with("solo", &key, &only);
    ens.wait_workers_in_status(&["solo"], "ready", Duration::from_secs(20))
        .await;
    // One heartbeat answer is enough to learn the others; give it two.
    tokio::time::sleep(Duration::from_secs(2)).await;
    ens.coords[leader].proc.kill();
    let others = ens.others(leader);
    let new_leader = ens
        .wait_leader_among(&others, Duration::from_secs(20))
        .await;
    // Longer than the new leader's grace plus the heartbeat timeout: without discovery the
    // worker would be marked unhealthy here.
    let seen = statuses_during(&ens, &[new_leader], "solo", Duration::from_secs(8)).await;
    assert!(!seen.is_empty(), "the new leader never answered");
    assert!(
        seen.iter().all(|s| s == "ready"),
        "worker left `ready` after its only configured coordinator died: {seen:?}\n{}",
        ens.all_logs(30)
    );
}

/// An MQTT echo: every `Tick{value}` on `{prefix}/in` becomes `Echo{v}` on `{prefix}/out`.
fn echo(port: u16, prefix: &str) -> String {
    format!(
        "connector Bus = mqtt(host: \"127.0.0.1\", port: {port}, qos: 1)\n\
         stream Echo = Tick.from(Bus, topic: \"{prefix}/in\") .emit(v: value) .to(Bus, topic: \"{prefix}/out\")\n"
    )
}

/// Waits (polling every 100 ms, panicking after `timeout`) until the coordinators hold `n`
/// worker sessions in all.
async fn wait_sessions(ens: &Ensemble, n: u64, what: &str, timeout: Duration) {
    wait_until(what, timeout, Duration::from_millis(100), || async move {
        (ws_connections(ens).await == n).then_some(())
    })
    .await;
}

/// A steady numbered MQTT flow: `{"value": i}` for i = 1, 2, … on one topic every 10 ms.
struct NumberedFlow {
    stopped: Arc<AtomicBool>,
    sent: Arc<AtomicI64>,
    task: tokio::task::JoinHandle<()>,
}

impl NumberedFlow {
    /// Starts publishing to `topic` on the broker at `port` as client `name`.
    fn start(port: u16, name: &str, topic: String) -> Self {
        let (pubc, mut el) = AsyncClient::new(mqtt_options(port, name), 1024);
        tokio::spawn(async move {
            loop {
                if el.poll().await.is_err() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicI64::new(0));
        let task = {
            let (stop, sent) = (stop.clone(), sent.clone());
            tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let payload = json!({"value": i}).to_string();
                    let _ = pubc.publish(&topic, QoS::AtLeastOnce, false, payload).await;
                    sent.store(i, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        };
        Self {
            stopped: stop,
            sent,
            task,
        }
    }

    /// Stops the flow; returns the last value sent.
    async fn stop(self) -> i64 {
        self.stopped.store(true, Ordering::Relaxed);
        self.task.await.expect("flow");
        self.sent.load(Ordering::Relaxed)
    }
}

/// Waits up to 20 s for the first output.
async fn first_output(outs: &mut tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>) {
    wait_until(
        "first outputs",
        Duration::from_secs(20),
        Duration::from_millis(50),
        || {
            let got = outs.try_recv().ok();
            async move { got }
        },
    )
    .await;
}

/// How many times each `v` came out, reading until 1.5 s pass without an output.
async fn output_counts(
    outs: &mut tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>,
) -> BTreeMap<i64, usize> {
    let mut seen: BTreeMap<i64, usize> = BTreeMap::new();
    while let Ok(Some(v)) = tokio::time::timeout(Duration::from_millis(1500), outs.recv()).await {
        if let Some(n) = crate::harness::event_field(&v, "v").as_i64() {
            *seen.entry(n).or_default() += 1;
        }
    }
    seen
}

/// Names of the pipelines of worker `url` in `status`.
async fn pipelines_in(api: &Api, url: &str, status: &str) -> Option<Vec<String>> {
    let r = api.get(&format!("{url}/api/v1/pipelines")).await.ok()?;
    let list = r.body["pipelines"].as_array()?;
    Some(
        list.iter()
            .filter(|p| p["status"] == status)
            .filter_map(|p| p["name"].as_str().map(str::to_owned))
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_cut_off_from_every_coordinator_fences_and_its_pipeline_runs_once() {
    let broker_port = free_port();
    let _broker = varpulis_worker::start_embedded_broker(broker_port).expect("embedded broker");
    let prefix = format!("cut-{:08x}", rand::random::<u32>());
    let (cut_key, spare_key) = ("key-of-cut-worker-7f3a", "key-of-spare-worker-21c9");

    // Three coordinators, each behind a proxy it advertises (Raft traffic goes through too).
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut proxies = Vec::new();
    for p in &ports {
        let target = format!("127.0.0.1:{p}").parse().expect("addr");
        proxies.push(CutProxy::start(target, &format!("x-api-key: {cut_key}")).await);
    }
    let net = NetLayout {
        advertise: proxies.iter().map(CutProxy::url).collect(),
        ports: ports.clone(),
        ..NetLayout::default()
    };
    let mut ens = Ensemble::start_in(3, 0, Opts::default(), &net).await;
    let first = vec![proxies[0].url()];
    ens.add_worker_with("cut", cut_key, &first);
    ens.add_worker_with("spare", spare_key, &first);
    ens.wait_workers_in_status(&["cut", "spare"], "ready", Duration::from_secs(20))
        .await;
    let cut_url = ens.workers[0].url.clone();
    let spare_url = ens.workers[1].url.clone();
    let cut_api = Api::new(Some(cut_key));
    let spare_api = Api::new(Some(spare_key));

    let (_sub, mut outs) = mqtt_subscriber(
        mqtt_options(broker_port, "cut-sub"),
        1024,
        &format!("{prefix}/out"),
    )
    .await;
    let spec = json!({"name": "cut-echo", "pipelines": [
        {"name": "echo", "source": echo(broker_port, &prefix), "worker_affinity": "cut"}]});
    ens.deploy_group(0, &spec).await;

    // A steady numbered flow, one message every 10 ms.
    let flow = NumberedFlow::start(broker_port, "cut-pub", format!("{prefix}/in"));
    // Outputs flow from the worker about to be cut.
    first_output(&mut outs).await;
    assert_eq!(
        pipelines_in(&cut_api, &cut_url, "running").await,
        Some(vec![ECHO.to_owned()])
    );

    // Sample both workers' running sets all along: never two copies at once.
    let overlap = Arc::new(AtomicI64::new(0));
    let samples = Arc::new(AtomicI64::new(0));
    let sampler = {
        let (overlap, samples, stop) = (overlap.clone(), samples.clone(), flow.stopped.clone());
        let (cut_api, spare_api) = (cut_api.clone(), spare_api.clone());
        let (cut_url, spare_url) = (cut_url.clone(), spare_url.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let a = pipelines_in(&cut_api, &cut_url, "running").await;
                let b = pipelines_in(&spare_api, &spare_url, "running").await;
                if let (Some(a), Some(b)) = (a, b) {
                    samples.fetch_add(1, Ordering::Relaxed);
                    if a.contains(&ECHO.to_owned()) && b.contains(&ECHO.to_owned()) {
                        overlap.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    // Cut the worker from every coordinator; its sources and the broker stay reachable.
    let cut_at = Instant::now();
    for p in &proxies {
        p.set_cut(true);
    }
    wait_until(
        "the cut worker fences its pipeline",
        Duration::from_secs(15),
        Duration::from_millis(50),
        || {
            let (api, url) = (cut_api.clone(), cut_url.clone());
            async move {
                pipelines_in(&api, &url, "fenced")
                    .await
                    .filter(|f| f.contains(&ECHO.to_owned()))
            }
        },
    )
    .await;
    let fenced_after = cut_at.elapsed();
    wait_until(
        "the pipeline runs on the spare worker",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || {
            let (api, url) = (spare_api.clone(), spare_url.clone());
            async move {
                pipelines_in(&api, &url, "running")
                    .await
                    .filter(|r| r.contains(&ECHO.to_owned()))
            }
        },
    )
    .await;
    let moved_after = cut_at.elapsed();
    let moved_at_value = flow.sent.load(Ordering::Relaxed);
    assert!(
        fenced_after < moved_after,
        "fenced after {fenced_after:?}, moved after {moved_after:?}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;

    // The worker comes back: its stale copy goes before it consumes anything.
    for p in &proxies {
        p.set_cut(false);
    }
    let ids = vec!["cut".to_owned()];
    wait_until(
        "the cut worker is back and its stale copy removed",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || {
            let (api, url, ens, ids) = (cut_api.clone(), cut_url.clone(), &ens, &ids);
            async move {
                let r = api.get(&format!("{url}/api/v1/pipelines")).await.ok()?;
                let empty = r.body["total"] == 0;
                (empty && ens.workers_in_status(ids, "ready").await).then_some(())
            }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let last = flow.stop().await;
    sampler.await.expect("sampler");

    // Every output exactly once, none lost.
    let seen = output_counts(&mut outs).await;
    let dups: Vec<i64> = seen
        .iter()
        .filter(|(_, c)| **c > 1)
        .map(|(v, _)| *v)
        .collect();
    let first_seen = seen.keys().next().copied().unwrap_or(1);
    let missing: Vec<i64> = (first_seen..=last)
        .filter(|v| !seen.contains_key(v))
        .collect();
    eprintln!(
        "sessions: fenced {:.2} s and moved {:.2} s after the cut (at input {moved_at_value}); \
         {} inputs lost at the lease edge ({:?}..{:?}), {} duplicates; {} samples, {} with two \
         copies running",
        fenced_after.as_secs_f64(),
        moved_after.as_secs_f64(),
        missing.len(),
        missing.first(),
        missing.last(),
        dups.len(),
        samples.load(Ordering::Relaxed),
        overlap.load(Ordering::Relaxed)
    );
    assert!(dups.is_empty(), "duplicated outputs: {dups:?}");
    assert_eq!(
        overlap.load(Ordering::Relaxed),
        0,
        "both workers ran the pipeline at once"
    );
    assert!(samples.load(Ordering::Relaxed) > 10);
    // Nothing lost at the lease edge: the placement's persistent MQTT session kept what
    // arrived between the old copy's fence and the new copy's subscription, and the old copy
    // acknowledged only what it had published.
    assert!(
        missing.is_empty(),
        "{} inputs lost (moved at input {moved_at_value}): {missing:?}",
        missing.len()
    );
}

/// Sum of `ws_connections` over the coordinators that answer `/health`.
async fn ws_connections(ens: &Ensemble) -> u64 {
    let mut total = 0;
    for c in &ens.coords {
        if let Ok(r) = ens.api.get(&format!("{}/health", c.url)).await {
            total += r.body["ws_connections"].as_u64().unwrap_or(0);
        }
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workers_pipeline_moves_within_two_seconds_through_its_session() {
    // Default-like detection (heartbeat timeout 15 s): only the session hint can be this fast.
    let opts = Opts {
        heartbeat_timeout: 15.0,
        ..Opts::default()
    };
    let mut ens = Ensemble::start(3, 2, opts).await;
    wait_sessions(
        &ens,
        2,
        "every worker holds a session",
        Duration::from_secs(15),
    )
    .await;
    // Sessions settle on the leader (a follower sends them there: it cannot renew leases)
    // and then stay: renewals and pings are answered, nothing reconnects.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let settled = ens.all_logs(2000).matches("WebSocket connected").count();
    assert!(settled <= 4, "sessions kept moving\n{}", ens.all_logs(60));
    tokio::time::sleep(Duration::from_secs(5)).await;
    let connects = ens.all_logs(2000).matches("WebSocket connected").count();
    assert_eq!(
        connects,
        settled,
        "sessions reconnected\n{}",
        ens.all_logs(60)
    );
    assert_eq!(ws_connections(&ens).await, 2);
    let leader = ens.wait_leader(Duration::from_secs(5)).await;
    let on_leader = ens
        .api
        .get(&format!("{}/health", ens.coords[leader].url))
        .await
        .map(|r| r.body["ws_connections"].as_u64().unwrap_or(0))
        .unwrap_or(0);
    assert_eq!(on_leader, 2, "every session is held by the leader");
    let spec = json!({"name": "kill-me", "pipelines": [
        {"name": "p", "source": "stream S = Tick .emit(v: value)", "worker_affinity": "worker-0"}]});
    let gid = ens.deploy_group(0, &spec).await;
    crate::migration::wait_placed(&ens, 0, &gid, "p", "worker-0").await;
    let killed_at = Instant::now();
    ens.workers[0].proc.kill();
    crate::migration::wait_placed(&ens, 0, &gid, "p", "worker-1").await;
    let moved = killed_at.elapsed();
    eprintln!("sessions: killed worker's pipeline running elsewhere after {moved:?}");
    assert!(
        moved < Duration::from_secs(2),
        "moved after {moved:?}\n{}",
        ens.all_logs(30)
    );
    let logs = ens.all_logs(400);
    assert!(
        logs.contains("WebSocket disconnected: worker-0"),
        "no disconnect logged"
    );
    wait_sessions(
        &ens,
        1,
        "the dead worker's session is gone",
        Duration::from_secs(5),
    )
    .await;
}

/// A counter of worker `url`'s `/metrics`.
async fn worker_counter(api: &Api, url: &str, name: &str) -> Option<u64> {
    let r = api.get(&format!("{url}/metrics")).await.ok()?;
    r.text
        .lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_are_renewed_over_the_session_when_heartbeats_are_too_slow() {
    // The leader marks a worker unhealthy after 3 s of silence and grants 2.7 s leases.
    let mut ens = Ensemble::start(3, 0, Opts::default()).await;
    ens.wait_leader(Duration::from_secs(20)).await;
    // This worker heartbeats every 8 s: heartbeats alone would let its lease run out and the
    // leader mark it unhealthy between two of them. Its session renews the lease every second.
    ens.opts.heartbeat_interval = 8.0;
    let w = ens.add_worker("slow");
    ens.wait_workers_in_status(&["slow"], "ready", Duration::from_secs(20))
        .await;
    let spec = json!({"name": "slow-hb", "pipelines": [
        {"name": "p", "source": "stream S = Tick .emit(v: value)", "worker_affinity": "slow"}]});
    let gid = ens.deploy_group(0, &spec).await;
    crate::migration::wait_placed(&ens, 0, &gid, "p", "slow").await;
    let live: Vec<usize> = (0..ens.coords.len()).collect();
    let seen = statuses_during(&ens, &live, "slow", Duration::from_secs(12)).await;
    let url = ens.workers[w].url.clone();
    let api = Api::new(Some(&ens.opts.worker_key));
    let fences = worker_counter(&api, &url, "varpulis_worker_fences_total").await;
    let renewals = worker_counter(&api, &url, "varpulis_worker_lease_session_renewals_total").await;
    eprintln!("sessions: slow heartbeats: {renewals:?} session renewals, {fences:?} fences");
    assert!(
        seen.iter().all(|s| s == "ready"),
        "the worker left `ready`: {seen:?}\n{}",
        ens.all_logs(40)
    );
    assert_eq!(
        fences,
        Some(0),
        "the worker fenced itself\n{}",
        ens.all_logs(40)
    );
    assert!(
        renewals.is_some_and(|n| n >= 8),
        "leases were not renewed over the session: {renewals:?}"
    );
    crate::migration::wait_placed(&ens, 0, &gid, "p", "slow").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_over_wss_renew_leases_with_mutual_tls() {
    let opts = Opts {
        tls: Some(crate::harness::TlsFiles::generate(&[], true)),
        ..Opts::default()
    };
    let ens = Ensemble::start(3, 1, opts).await;
    assert!(ens.coords[0].url.starts_with("https://"));
    wait_sessions(
        &ens,
        1,
        "the worker holds a wss:// session",
        Duration::from_secs(20),
    )
    .await;
    let api = ens.api.with_key(Some(&ens.opts.worker_key));
    let url = ens.workers[0].url.clone();
    let renewals = wait_until(
        "leases renewed over the wss:// session",
        Duration::from_secs(15),
        Duration::from_millis(200),
        || {
            let (api, url) = (&api, &url);
            async move {
                worker_counter(api, url, "varpulis_worker_lease_session_renewals_total")
                    .await
                    .filter(|n| *n >= 3)
            }
        },
    )
    .await;
    assert!(renewals >= 3);
    assert!(
        ens.all_logs(400)
            .contains("session open coordinator=https://"),
        "{}",
        ens.all_logs(60)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workers_mqtt_pipeline_moves_and_loses_nothing() {
    let broker_port = free_port();
    let _broker = varpulis_worker::start_embedded_broker(broker_port).expect("embedded broker");
    let prefix = format!("kill-{:08x}", rand::random::<u32>());
    let ens = Ensemble::start(3, 2, Opts::default()).await;
    let (_sub, mut outs) = mqtt_subscriber(
        mqtt_options(broker_port, "kill-sub"),
        1024,
        &format!("{prefix}/out"),
    )
    .await;
    let spec = json!({"name": "kill-echo", "pipelines": [
        {"name": "echo", "source": echo(broker_port, &prefix), "worker_affinity": "worker-0"}]});
    let gid = ens.deploy_group(0, &spec).await;
    crate::migration::wait_placed(&ens, 0, &gid, "echo", "worker-0").await;

    let flow = NumberedFlow::start(broker_port, "kill-pub", format!("{prefix}/in"));
    first_output(&mut outs).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut ens = ens;
    ens.workers[0].proc.kill();
    crate::migration::wait_placed(&ens, 0, &gid, "echo", "worker-1").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let last = flow.stop().await;
    let seen = output_counts(&mut outs).await;
    let first = seen.keys().next().copied().unwrap_or(1);
    let missing: Vec<i64> = (first..=last).filter(|v| !seen.contains_key(v)).collect();
    let dups: usize = seen.values().map(|c| c - 1).sum();
    eprintln!(
        "sessions: kill -9 of the MQTT pipeline's worker: {} inputs, {} lost, {dups} delivered twice",
        last - first + 1,
        missing.len()
    );
    // At-least-once across a crash: what the dead copy had not acknowledged comes again.
    assert!(missing.is_empty(), "lost: {missing:?}");
}
