//! Kubernetes peer discovery (cargo feature `k8s`): coordinators run as a StatefulSet behind a
//! headless service and find each other through its DNS records instead of `--raft-peers`.
//!
//! A StatefulSet pod is named `<set>-<ordinal>` (its `HOSTNAME`), and a headless service
//! `<service>` gives every pod the record `<set>-<ordinal>.<service>[.<namespace>.svc...]`.
//! So the peer list is derived, not configured: node id = ordinal + 1, and peer `i` is
//! `http://<set>-<i-1>.<service>:<port>`. The replica count comes from `--k8s-replicas` or, when
//! absent, from the number of addresses the service name resolves to (the service needs
//! `publishNotReadyAddresses: true`, or pods would wait for each other's readiness forever).
//! [`discover`] waits until every peer name resolves, so Raft starts with reachable peers.

use std::time::Duration;
use tokio::time::Instant;

/// Discovery settings (from `--k8s-service`, `--k8s-replicas`, `--k8s-namespace`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct K8sOptions {
    /// Headless service name.
    pub service: String,
    /// Namespace, appended to the DNS names when given.
    pub namespace: Option<String>,
    /// Number of coordinator pods; resolved from DNS when `None`.
    pub replicas: Option<usize>,
    /// This pod's name (`HOSTNAME`), `<set>-<ordinal>`.
    pub pod_name: String,
    /// API port of every coordinator.
    pub port: u16,
    /// How long to wait for the DNS records.
    pub timeout: Duration,
}

/// Why discovery failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum K8sError {
    /// The pod name does not end in `-<ordinal>`.
    #[error(
        "pod name '{0}' is not '<statefulset>-<ordinal>' (set HOSTNAME or run in a StatefulSet)"
    )]
    NotAStatefulSetPod(String),
    /// Option values are unusable.
    #[error("invalid kubernetes discovery settings: {0}")]
    Invalid(String),
    /// DNS did not answer as needed in time.
    #[error("DNS discovery timed out: {0}")]
    Timeout(String),
}

/// What discovery found: this node's id and every peer URL in id order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered {
    /// This node's Raft id (ordinal + 1).
    pub node_id: u64,
    /// Peer URLs; position `i` is node id `i + 1`.
    pub peers: Vec<String>,
}

/// Splits `<set>-<ordinal>` into the set name and the ordinal.
pub fn split_pod_name(pod: &str) -> Result<(&str, u64), K8sError> {
    let err = || K8sError::NotAStatefulSetPod(pod.to_string());
    let (set, ordinal) = pod.rsplit_once('-').ok_or_else(err)?;
    if set.is_empty() {
        return Err(err());
    }
    Ok((set, ordinal.parse().map_err(|_| err())?))
}

/// The DNS name of pod `ordinal` of `set` behind `service`.
pub fn pod_host(set: &str, ordinal: u64, o: &K8sOptions) -> String {
    match &o.namespace {
        Some(ns) => format!("{set}-{ordinal}.{}.{ns}.svc", o.service),
        None => format!("{set}-{ordinal}.{}", o.service),
    }
}

/// The peer list for `replicas` pods, and this pod's node id.
pub fn plan(o: &K8sOptions, replicas: usize) -> Result<Discovered, K8sError> {
    if o.service.trim().is_empty() {
        return Err(K8sError::Invalid("--k8s-service is empty".into()));
    }
    if replicas == 0 {
        return Err(K8sError::Invalid("replicas must be at least 1".into()));
    }
    let (set, ordinal) = split_pod_name(&o.pod_name)?;
    if ordinal >= replicas as u64 {
        return Err(K8sError::Invalid(format!(
            "pod ordinal {ordinal} is outside the {replicas} replicas"
        )));
    }
    let peers = (0..replicas as u64)
        .map(|i| format!("http://{}:{}", pod_host(set, i, o), o.port))
        .collect();
    Ok(Discovered {
        node_id: ordinal + 1,
        peers,
    })
}

/// Addresses `host` resolves to (0 on failure or when `deadline` passes first).
async fn resolve(host: &str, port: u16, deadline: Instant) -> usize {
    match tokio::time::timeout_at(deadline, tokio::net::lookup_host((host, port))).await {
        Ok(Ok(addrs)) => addrs.count(),
        _ => 0,
    }
}

/// Resolves the peer list from the headless service's DNS records (see the module docs).
pub async fn discover(o: &K8sOptions) -> Result<Discovered, K8sError> {
    let deadline = Instant::now() + o.timeout;
    let service_host = match &o.namespace {
        Some(ns) => format!("{}.{ns}.svc", o.service),
        None => o.service.clone(),
    };
    let replicas = match o.replicas {
        Some(n) => n,
        None => loop {
            let n = resolve(&service_host, o.port, deadline).await;
            if n > 0 {
                break n;
            }
            if Instant::now() >= deadline {
                return Err(K8sError::Timeout(format!(
                    "service '{service_host}' has no addresses"
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        },
    };
    let found = plan(o, replicas)?;
    let (set, _) = split_pod_name(&o.pod_name)?;
    for ordinal in 0..replicas as u64 {
        let host = pod_host(set, ordinal, o);
        while resolve(&host, o.port, deadline).await == 0 {
            if Instant::now() >= deadline {
                return Err(K8sError::Timeout(format!("'{host}' does not resolve")));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    tracing::info!(node_id = found.node_id, peers = ?found.peers, "kubernetes discovery");
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pod: &str) -> K8sOptions {
        K8sOptions {
            service: "varpulis-coord".into(),
            namespace: None,
            replicas: Some(3),
            pod_name: pod.into(),
            port: 9100,
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn ids_come_from_pod_ordinals() {
        let d = plan(&opts("coord-2"), 3).unwrap();
        assert_eq!(d.node_id, 3);
        assert_eq!(
            d.peers,
            [
                "http://coord-0.varpulis-coord:9100",
                "http://coord-1.varpulis-coord:9100",
                "http://coord-2.varpulis-coord:9100"
            ]
        );
        let mut o = opts("my-coord-0");
        o.namespace = Some("prod".into());
        let d = plan(&o, 1).unwrap();
        assert_eq!(d.node_id, 1);
        assert_eq!(d.peers, ["http://my-coord-0.varpulis-coord.prod.svc:9100"]);
    }

    #[test]
    fn bad_pod_names_and_counts_are_refused() {
        assert!(matches!(
            plan(&opts("coordinator"), 3),
            Err(K8sError::NotAStatefulSetPod(_))
        ));
        assert!(plan(&opts("coord-x"), 3).is_err());
        assert!(plan(&opts("-1"), 3).is_err());
        assert!(matches!(
            plan(&opts("coord-3"), 3),
            Err(K8sError::Invalid(_))
        ));
        assert!(plan(&opts("coord-0"), 0).is_err());
    }

    #[tokio::test]
    async fn discovery_waits_for_dns_and_gives_up() {
        let mut o = opts("localhost-0");
        o.service = "invalid.".into();
        o.timeout = Duration::from_millis(200);
        assert!(matches!(discover(&o).await, Err(K8sError::Timeout(_))));
    }
}
