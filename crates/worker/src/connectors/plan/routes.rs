//! What a pipeline's inter-pipeline routes (docs/dataplane.md) do: the broker, the outbound
//! routes (output events whose type matches a pattern go to the route's topic) and the inbound
//! ones (the pipeline subscribes to the topic).
//!
//! Broker precedence: the worker's own `mqtt_url` (`varpulis server --mqtt-url`), else the one
//! the coordinator ships in the deploy. Without either, the pipeline runs `degraded`.

use crate::config::{parse_mqtt_url, BrokerAddr, ClientTlsFiles};
use crate::error::WorkerError;
use varpulis_api::worker::{PipelineRoutes, RouteTopic};

/// Whether `pattern` matches `event_type`: `*` matches all, a trailing `*` a prefix, else exact.
pub fn pattern_matches(pattern: &str, event_type: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => event_type.starts_with(prefix),
        None => pattern == event_type,
    }
}

/// A pipeline's resolved routes, computed before it is registered so bad input changes nothing.
#[derive(Debug, Clone)]
pub struct RoutePlan {
    /// The broker, or why there is none (the pipeline then runs degraded).
    pub broker: Result<BrokerAddr, String>,
    /// Routes this pipeline publishes to.
    pub outbound: Vec<RouteTopic>,
    /// Routes this pipeline subscribes to.
    pub inbound: Vec<RouteTopic>,
    /// Persistent session name of the inbound subscription (keyed by placement).
    pub session: Option<String>,
    /// TLS of the broker connection (`mqtts://`: the worker's `--tls-ca`, and its certificate
    /// under mutual TLS).
    pub tls: ClientTlsFiles,
}

/// Resolves a deploy's routes; `Ok(None)` when there is nothing to do.
pub fn plan(
    worker_url: Option<&str>,
    routes: Option<&PipelineRoutes>,
    worker_tls: &varpulis_tls::TlsSettings,
) -> Result<Option<RoutePlan>, WorkerError> {
    let Some(r) = routes else { return Ok(None) };
    if r.outbound.is_empty() && r.inbound.is_empty() {
        return Ok(None);
    }
    for t in r.outbound.iter().chain(&r.inbound) {
        if !rumqttc::valid_topic(&t.topic) {
            return Err(WorkerError::Connector(format!(
                "route with `{}`: bad MQTT topic `{}`",
                t.pipeline, t.topic
            )));
        }
    }
    let broker = match (worker_url, r.mqtt_url.as_deref()) {
        (Some(u), _) => Ok(parse_mqtt_url(u)?),
        (None, Some(u)) => {
            Ok(parse_mqtt_url(u).map_err(|e| WorkerError::Connector(format!("routes: {e}")))?)
        }
        (None, None) => Err(
            "routes need an MQTT broker: start the worker or the coordinator with --mqtt-url"
                .to_owned(),
        ),
    };
    let tls = ClientTlsFiles::for_worker(broker.as_ref().is_ok_and(|b| b.tls), worker_tls);
    tls.check()
        .map_err(|e| WorkerError::Connector(format!("routes: {e}")))?;
    Ok(Some(RoutePlan {
        broker,
        outbound: r.outbound.clone(),
        inbound: r.inbound.clone(),
        session: r.session.clone(),
        tls,
    }))
}

impl RoutePlan {
    /// Splits into the outbound-only and the inbound-only plan (each `None` when empty).
    pub fn split(self) -> (Option<RoutePlan>, Option<RoutePlan>) {
        let out = (!self.outbound.is_empty()).then(|| RoutePlan {
            inbound: Vec::new(),
            ..self.clone()
        });
        let inp = (!self.inbound.is_empty()).then(|| RoutePlan {
            outbound: Vec::new(),
            ..self
        });
        (out, inp)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn patterns_follow_the_routing_rules() {
        assert!(pattern_matches("*", "X"));
        assert!(pattern_matches("Temp*", "TempAlerts"));
        assert!(!pattern_matches("Temp*", "PressureAlerts"));
        assert!(pattern_matches("Hot", "Hot"));
        assert!(!pattern_matches("Hot", "Hotter"));
    }

    #[test]
    fn plan_precedence_worker_url_then_deploy_url_then_degraded() {
        let routes = PipelineRoutes {
            outbound: vec![RouteTopic {
                pipeline: "b".into(),
                topic: "varpulis/g/a/b".into(),
                event_types: vec!["*".into()],
            }],
            mqtt_url: Some("mqtt://coord-broker:1884".into()),
            ..PipelineRoutes::default()
        };
        let p = plan(
            Some("mqtt://worker-broker"),
            Some(&routes),
            &Default::default(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(p.broker.unwrap().host, "worker-broker");
        let p = plan(None, Some(&routes), &Default::default())
            .unwrap()
            .unwrap();
        assert_eq!(p.broker.unwrap().port, 1884);
        let none = PipelineRoutes {
            mqtt_url: None,
            ..routes.clone()
        };
        assert!(plan(None, Some(&none), &Default::default())
            .unwrap()
            .unwrap()
            .broker
            .is_err());
        assert!(plan(None, None, &Default::default()).unwrap().is_none());
        let bad = PipelineRoutes {
            outbound: vec![RouteTopic {
                pipeline: "b".into(),
                topic: "a/#".into(),
                event_types: vec![],
            }],
            ..routes
        };
        assert!(plan(None, Some(&bad), &Default::default()).is_err());
    }
}
