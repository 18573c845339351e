//! Rolling update of an MQTT-fed stateful pipeline (issue 11): while a publisher sends numbered
//! QoS-1 messages, a keep-state update replaces the pipeline. Every message must be counted
//! exactly once across the switch (no gap, no duplicate) and the count must continue from the
//! old version's state.

use crate::harness::{free_port, mqtt_options, mqtt_subscriber, Ensemble, Opts};
use crate::migration::group_view;
use rumqttc::{AsyncClient, QoS};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Numbered inputs still sent once the update under test has returned, so the new version
/// always gets some, however fast or slow the machine is.
const TAIL: i64 = 50;

/// Sends `1, 2, 3, ...` through `send` until `stop` is set and [`TAIL`] more went out; the task
/// returns the last number sent. Tying the end of the flow to the update (rather than a fixed
/// count) keeps both versions busy on a loaded CI machine, where a fixed count could all be
/// processed by the old version before the switch.
fn numbered_flow<F, Fut>(mut send: F) -> (Arc<AtomicBool>, JoinHandle<i64>)
where
    F: FnMut(i64) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let task = tokio::spawn(async move {
        let mut tail = 0;
        for i in 1.. {
            send(i).await;
            if flag.load(Ordering::Relaxed) {
                tail += 1;
                if tail >= TAIL {
                    return i;
                }
            }
            assert!(i < 100_000, "the update never returned");
        }
        unreachable!()
    });
    (stop, task)
}

/// A counter fed by MQTT `topic_in`, publishing `Count(n, v, ver)` to `topic_out`.
fn mqtt_counter(port: u16, prefix: &str, ver: i64) -> String {
    format!(
        "connector Bus = mqtt(host: \"127.0.0.1\", port: {port}, qos: 1)\n\
         var count = 0\n\
         fn bump(v: int):\n    count := count + 1\n    emit Count(n: count, v: v, ver: {ver})\n\
         stream Counted = Tick.from(Bus, topic: \"{prefix}/in\") .process(bump(value)) .to(Bus, topic: \"{prefix}/out\")\n"
    )
}

fn client(port: u16, name: &str) -> (AsyncClient, rumqttc::EventLoop) {
    AsyncClient::new(mqtt_options(port, name), 256)
}

/// Subscribes to `topic`; returns once the broker acknowledged, with the received payloads.
async fn subscribe(port: u16, topic: &str) -> (AsyncClient, mpsc::UnboundedReceiver<Value>) {
    mqtt_subscriber(mqtt_options(port, "live-sub"), 256, topic).await
}

/// A publisher whose event loop runs in the background.
fn publisher(port: u16) -> AsyncClient {
    let (c, mut el) = client(port, "live-pub");
    tokio::spawn(async move {
        loop {
            if el.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    c
}

async fn publish(c: &AsyncClient, topic: &str, value: i64) {
    c.publish(
        topic,
        QoS::AtLeastOnce,
        false,
        json!({"value": value}).to_string(),
    )
    .await
    .unwrap();
}

/// Sends value-0 probes through `send` until the pipeline answers one, then reads the answers to
/// the probes still in flight until it is quiet: the probes' `(n, v, ver)`, in arrival order.
/// Their number shifts the counts of the numbered inputs that follow.
async fn probe<F, Fut>(
    outs: &mut mpsc::UnboundedReceiver<Value>,
    mut send: F,
) -> Vec<(i64, i64, i64)>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let first = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            send().await;
            if let Ok(Some(v)) = tokio::time::timeout(Duration::from_millis(300), outs.recv()).await
            {
                return v;
            }
        }
    })
    .await
    .expect("the pipeline never answered a probe");
    let mut probes = vec![count_of(&first)];
    while let Ok(Some(v)) = tokio::time::timeout(Duration::from_millis(700), outs.recv()).await {
        probes.push(count_of(&v));
    }
    assert!(probes.iter().all(|&(_, v, _)| v == 0), "{probes:?}");
    probes
}

/// A [`numbered_flow`] of QoS-1 messages `{"value": i}` to `topic`, one every 5 ms.
fn publish_flow(pubc: &AsyncClient, topic: &str) -> (Arc<AtomicBool>, JoinHandle<i64>) {
    let (pubc, topic) = (pubc.clone(), topic.to_owned());
    numbered_flow(move |i| {
        let (pubc, topic) = (pubc.clone(), topic.clone());
        async move {
            publish(&pubc, &topic, i).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
}

/// `(n, v, ver)` of an output payload (flat or under `fields`).
fn count_of(v: &Value) -> (i64, i64, i64) {
    let f = |k: &str| {
        crate::harness::event_field(v, k)
            .as_i64()
            .unwrap_or_else(|| panic!("no `{k}` in {v}"))
    };
    (f("n"), f("v"), f("ver"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_fed_pipeline_counts_every_message_once_across_a_rolling_update() {
    let port = free_port();
    let _broker = varpulis_worker::start_embedded_broker(port).expect("embedded broker");
    let prefix = format!("live-mqtt-{:08x}", rand::random::<u32>());
    let ens = Ensemble::start(1, 1, Opts::default()).await;
    let (_sub, mut outs) = subscribe(port, &format!("{prefix}/out")).await;
    let spec = json!({"name": "live-mqtt", "pipelines": [
        {"name": "count", "source": mqtt_counter(port, &prefix, 1), "worker_affinity": "worker-0"}]});
    let gid = ens.deploy_group(0, &spec).await;

    // Probe with value 0 until the pipeline is subscribed; the probes it counted shift `n`.
    let topic_in = format!("{prefix}/in");
    let pubc = publisher(port);
    let probes = probe(&mut outs, || publish(&pubc, &topic_in, 0)).await;
    let k = probes.len() as i64;
    assert!(probes.iter().all(|&(_, _, ver)| ver == 1), "{probes:?}");

    // Numbered messages flow while the update runs.
    let (stop, flow) = publish_flow(&pubc, &topic_in);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = put_update(
        &ens,
        &gid,
        json!([{"name": "count", "source": mqtt_counter(port, &prefix, 2)}]),
    )
    .await;
    r.expect_ok();
    assert_eq!(r.body["version"], 2, "{}", r.text);
    assert_eq!(r.body["state"], "keep", "{}", r.text);
    stop.store(true, Ordering::Relaxed);
    let n = flow.await.unwrap();

    let got = collect(&mut outs, n as usize).await;
    assert_once(&got, 1..=n, k);
    // Both versions answered, and the old one never after the new one.
    let mut by_v = got.clone();
    by_v.sort_by_key(|o| o.1);
    let first_new = by_v.iter().position(|o| o.2 == 2);
    let first_new = first_new.expect("the new version processed some messages");
    assert!(
        first_new > 0,
        "the old version processed none: update too early"
    );
    assert!(
        by_v[first_new..].iter().all(|o| o.2 == 2),
        "the old version processed a message after the switch"
    );
    let g = group_view(&ens, 0, &gid).await.unwrap();
    assert_eq!(g["version"], 2);
}

/// A counter fed by an inter-pipeline route (events `Fwd`), publishing to `topic_out`.
fn routed_counter(port: u16, prefix: &str, ver: i64) -> String {
    format!(
        "connector Bus = mqtt(host: \"127.0.0.1\", port: {port}, qos: 1)\n\
         var count = 0\n\
         fn bump(v: int):\n    count := count + 1\n    emit Count(n: count, v: v, ver: {ver})\n\
         stream Counted = Fwd .process(bump(value)) .to(Bus, topic: \"{prefix}/out\")\n"
    )
}

const FORWARDER: &str = "stream Fwd = Tick .emit(value: value)";

async fn put_update(ens: &Ensemble, gid: &str, pipelines: Value) -> crate::harness::Resp {
    ens.api
        .with_timeout(Duration::from_secs(60))
        .send(
            reqwest::Method::PUT,
            &ens.cluster_url(0, &format!("/pipeline-groups/{gid}")),
            Some((
                serde_json::to_vec(&json!({ "pipelines": pipelines })).unwrap(),
                "application/json",
            )),
        )
        .await
        .unwrap()
}

async fn inject_tick(ens: &Ensemble, gid: &str, value: i64) {
    let r = ens
        .api
        .post(
            &ens.cluster_url(0, &format!("/pipeline-groups/{gid}/inject")),
            &json!({"event_type": "Tick", "fields": {"value": value}}),
        )
        .await
        .unwrap();
    assert!(r.ok(), "inject {value}: {} {}", r.status, r.text);
}

/// Reads outputs until `want` distinct values `>= 1` arrived and nothing more comes.
async fn collect(outs: &mut mpsc::UnboundedReceiver<Value>, want: usize) -> Vec<(i64, i64, i64)> {
    let mut got: Vec<(i64, i64, i64)> = Vec::new();
    loop {
        let enough = got.iter().filter(|o| o.1 > 0).count() >= want;
        let wait = Duration::from_millis(if enough { 1500 } else { 20_000 });
        match tokio::time::timeout(wait, outs.recv()).await {
            Ok(Some(v)) => got.push(count_of(&v)),
            _ => return got,
        }
    }
}

/// Asserts that `got` holds each of `values` exactly once, counted as the `k + v`-th event.
fn assert_once(got: &[(i64, i64, i64)], values: std::ops::RangeInclusive<i64>, k: i64) {
    let mut seen: BTreeMap<i64, usize> = BTreeMap::new();
    for o in got {
        *seen.entry(o.1).or_default() += 1;
    }
    let dups: Vec<i64> = seen
        .iter()
        .filter(|(_, c)| **c > 1)
        .map(|(v, _)| *v)
        .collect();
    let missing: Vec<i64> = values.clone().filter(|v| !seen.contains_key(v)).collect();
    let extra: Vec<i64> = seen
        .keys()
        .filter(|v| !values.contains(v))
        .copied()
        .collect();
    assert!(
        dups.is_empty() && missing.is_empty() && extra.is_empty(),
        "duplicated {dups:?}; missing {missing:?}; unexpected {extra:?}"
    );
    let off: Vec<&(i64, i64, i64)> = got.iter().filter(|o| o.0 != k + o.1).collect();
    assert!(off.is_empty(), "counts off (k = {k}): {off:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_fed_pipeline_counts_every_event_once_across_an_update_and_an_abort() {
    let port = free_port();
    let _broker = varpulis_worker::start_embedded_broker(port).expect("embedded broker");
    let prefix = format!("live-route-{:08x}", rand::random::<u32>());
    let opts = Opts {
        coord_extra_args: vec!["--mqtt-url".into(), format!("mqtt://127.0.0.1:{port}")],
        // Room for the two pipelines and one new version: updating both at once fails.
        worker_extra_args: vec!["--max-pipelines".into(), "3".into()],
        ..Opts::default()
    };
    let ens = Ensemble::start(1, 1, opts).await;
    let (_sub, mut outs) = subscribe(port, &format!("{prefix}/out")).await;
    let spec = json!({"name": "live-route", "pipelines": [
            {"name": "fwd", "source": FORWARDER},
            {"name": "count", "source": routed_counter(port, &prefix, 1)}],
        "routes": [
            {"from_pipeline": "_external", "to_pipeline": "fwd", "event_types": ["Tick"]},
            {"from_pipeline": "fwd", "to_pipeline": "count", "event_types": ["Fwd"]}]});
    let gid = ens.deploy_group(0, &spec).await;
    // Probe with value 0 until the route carries events.
    let k = probe(&mut outs, || inject_tick(&ens, &gid, 0)).await.len() as i64;

    // Events flow through the route while the counter is updated.
    let flow = |from: i64, to: i64| {
        let (url, api) = (
            ens.cluster_url(0, &format!("/pipeline-groups/{gid}/inject")),
            ens.api.clone(),
        );
        tokio::spawn(async move {
            for i in from..=to {
                let r = api
                    .post(&url, &json!({"event_type": "Tick", "fields": {"value": i}}))
                    .await
                    .unwrap();
                assert!(r.ok(), "inject {i}: {} {}", r.status, r.text);
            }
        })
    };
    let (stop, running) = {
        let (url, api) = (
            ens.cluster_url(0, &format!("/pipeline-groups/{gid}/inject")),
            ens.api.clone(),
        );
        numbered_flow(move |i| {
            let (url, api) = (url.clone(), api.clone());
            async move {
                let r = api
                    .post(&url, &json!({"event_type": "Tick", "fields": {"value": i}}))
                    .await
                    .unwrap();
                assert!(r.ok(), "inject {i}: {} {}", r.status, r.text);
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = put_update(
        &ens,
        &gid,
        json!([{"name": "count", "source": routed_counter(port, &prefix, 2)}]),
    )
    .await;
    r.expect_ok();
    assert_eq!(r.body["version"], 2, "{}", r.text);
    stop.store(true, Ordering::Relaxed);
    let m = running.await.unwrap();
    let got = collect(&mut outs, m as usize).await;
    assert_once(&got, 1..=m, k);
    let mut by_v = got.clone();
    by_v.sort_by_key(|o| o.1);
    let first_new = by_v
        .iter()
        .position(|o| o.2 == 2)
        .expect("v2 processed some");
    assert!(first_new > 0, "the update came before any event");
    assert!(
        by_v[first_new..].iter().all(|o| o.2 == 2),
        "old version after the switch"
    );

    // An update of both pipelines fails on the second deploy (no room): aborted, the paused
    // copy deleted, the running pipelines never stopped.
    let running = flow(m + 1, m + 100);
    let r = put_update(
        &ens,
        &gid,
        json!([{"name": "fwd", "source": FORWARDER.replace("value: value", "value: value * 1")},
               {"name": "count", "source": routed_counter(port, &prefix, 3)}]),
    )
    .await;
    r.expect_error(409);
    assert_eq!(r.body["code"], "update_aborted", "{}", r.text);
    running.await.unwrap();
    let got = collect(&mut outs, 100).await;
    assert_once(&got, m + 1..=m + 100, k);
    assert!(
        got.iter().all(|o| o.2 == 2),
        "served by version 2 throughout"
    );
    let g = group_view(&ens, 0, &gid).await.unwrap();
    assert_eq!(g["version"], 2);
    let wapi = ens.api.with_key(Some(&ens.opts.worker_key));
    let list = wapi
        .get(&format!("{}/api/v1/pipelines", ens.workers[0].url))
        .await
        .unwrap();
    assert_eq!(list.body["total"], 2, "paused copy removed: {}", list.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_mqtt_source_is_replaced_at_the_switch_without_double_counting() {
    let port = free_port();
    let _broker = varpulis_worker::start_embedded_broker(port).expect("embedded broker");
    let prefix = format!("live-chg-{:08x}", rand::random::<u32>());
    let ens = Ensemble::start(1, 1, Opts::default()).await;
    let (_sub, mut outs) = subscribe(port, &format!("{prefix}/out")).await;
    // v1 reads `<prefix>/in/a`, v2 `<prefix>/in/+`: another subscription, so v2 opens its own.
    let v1 = mqtt_counter(port, &prefix, 1).replace("/in\"", "/in/a\"");
    let v2 = mqtt_counter(port, &prefix, 2).replace("/in\"", "/in/+\"");
    let spec = json!({"name": "live-chg", "pipelines": [{"name": "count", "source": v1}]});
    let gid = ens.deploy_group(0, &spec).await;
    let topic_in = format!("{prefix}/in/a");
    let pubc = publisher(port);
    let k = probe(&mut outs, || publish(&pubc, &topic_in, 0))
        .await
        .len() as i64;

    let (stop, flow) = publish_flow(&pubc, &topic_in);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = put_update(&ens, &gid, json!([{"name": "count", "source": v2}])).await;
    r.expect_ok();
    assert_eq!(r.body["state"], "keep", "{}", r.text);
    stop.store(true, Ordering::Relaxed);
    let m = flow.await.unwrap();
    // The last message is surely seen by v2; a few around the reconnect may be missed.
    let mut got: Vec<(i64, i64, i64)> = Vec::new();
    while !got.iter().any(|o| o.1 == m) {
        match tokio::time::timeout(Duration::from_secs(20), outs.recv()).await {
            Ok(Some(v)) => got.push(count_of(&v)),
            _ => panic!("message {m} never counted: {got:?}"),
        }
    }
    while let Ok(Some(v)) = tokio::time::timeout(Duration::from_millis(1500), outs.recv()).await {
        got.push(count_of(&v));
    }
    got.sort_by_key(|o| o.0);
    eprintln!(
        "changed source: {} of {m} messages counted across the reconnect",
        got.iter().filter(|o| o.1 > 0).count()
    );
    // Never counted twice: the counts are k+1, k+2, ... and follow the message order.
    let ns: Vec<i64> = got.iter().map(|o| o.0).collect();
    assert_eq!(
        ns,
        (k + 1..k + 1 + got.len() as i64).collect::<Vec<_>>(),
        "{got:?}"
    );
    assert!(
        got.windows(2).all(|w| w[0].1 < w[1].1),
        "order or duplicate: {got:?}"
    );
    let first_new = got.iter().position(|o| o.2 == 2).expect("v2 counted");
    assert!(
        first_new > 0 && got[first_new..].iter().all(|o| o.2 == 2),
        "{got:?}"
    );
}
