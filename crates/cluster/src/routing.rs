//! Event routing inside a pipeline group.
//!
//! Patterns: `*` matches every event type, a trailing `*` matches a prefix
//! (`ComputeTile0*` matches `ComputeTile00`), anything else matches exactly. Routes name
//! pipelines, not workers, so they stay valid when a placement migrates.

use varpulis_api::cluster::{RouteSpec, EXTERNAL};

use crate::group::Group;

/// Whether `pattern` matches `event_type`.
pub fn pattern_matches(pattern: &str, event_type: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => event_type.starts_with(prefix),
        None => pattern == event_type,
    }
}

/// Whether any pattern of `route` matches `event_type`.
pub fn route_matches(route: &RouteSpec, event_type: &str) -> bool {
    route
        .event_types
        .iter()
        .any(|p| pattern_matches(p, event_type))
}

/// The pipeline an injected event of `event_type` goes to: the first `_external` route (in
/// spec order) with a matching pattern, else the group's first pipeline.
pub fn route<'g>(group: &'g Group, event_type: &str) -> Option<&'g str> {
    group
        .routes
        .iter()
        .find(|r| r.from_pipeline == EXTERNAL && route_matches(r, event_type))
        .map(|r| r.to_pipeline.as_str())
        .or_else(|| group.spec.pipelines.first().map(|p| p.name.as_str()))
}

/// Routes leaving `pipeline` that carry events of `event_type`, in spec order.
pub fn routes_from<'g>(group: &'g Group, pipeline: &str, event_type: &str) -> Vec<&'g RouteSpec> {
    group
        .routes
        .iter()
        .filter(|r| r.from_pipeline == pipeline && route_matches(r, event_type))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::validate_spec;
    use varpulis_api::cluster::{PipelineGroupSpec, PipelineSpec};

    fn group(routes: Vec<(&str, &str, &[&str])>) -> Group {
        let pipe = |n: &str| PipelineSpec {
            name: n.into(),
            source: "x".into(),
            worker_affinity: None,
            replicas: None,
            labels: Default::default(),
        };
        let spec = PipelineGroupSpec {
            name: "g".into(),
            pipelines: vec![pipe("first"), pipe("a"), pipe("b")],
            routes: routes
                .into_iter()
                .map(|(f, t, ty)| RouteSpec {
                    from_pipeline: f.into(),
                    to_pipeline: t.into(),
                    event_types: ty.iter().map(|s| s.to_string()).collect(),
                    mqtt_topic: None,
                })
                .collect(),
            placement: None,
        };
        let routes = validate_spec(&spec, 1).unwrap();
        Group {
            id: "id".into(),
            name: "g".into(),
            spec,
            routes,
            placements: vec![],
            created_at_ms: 0,
            seq: 0,
            version: 1,
        }
    }

    #[test]
    fn patterns() {
        assert!(pattern_matches("*", "anything"));
        assert!(pattern_matches("*", ""));
        assert!(pattern_matches("ComputeTile0*", "ComputeTile00"));
        assert!(pattern_matches("ComputeTile0*", "ComputeTile0"));
        assert!(!pattern_matches("ComputeTile0*", "ComputeTile10"));
        assert!(pattern_matches("SensorReading", "SensorReading"));
        assert!(!pattern_matches("SensorReading", "SensorReadings"));
    }

    #[test]
    fn first_matching_external_route_wins() {
        let g = group(vec![
            (EXTERNAL, "a", &["Temp*"]),
            (EXTERNAL, "b", &["TempHigh", "Press"]),
            ("a", "b", &["Alert*"]),
        ]);
        assert_eq!(route(&g, "TempHigh"), Some("a"));
        assert_eq!(route(&g, "Press"), Some("b"));
        assert_eq!(
            route(&g, "Alert1"),
            Some("first"),
            "non-external routes do not apply"
        );
        assert_eq!(route(&g, "Other"), Some("first"));
    }

    #[test]
    fn star_matches_everything() {
        let g = group(vec![(EXTERNAL, "b", &["*"]), (EXTERNAL, "a", &["X"])]);
        assert_eq!(route(&g, "X"), Some("b"));
    }

    #[test]
    fn inter_pipeline_routes() {
        let g = group(vec![
            ("a", "b", &["Alert*"]),
            ("a", "first", &["*"]),
            ("b", "first", &["Alert*"]),
        ]);
        let r = routes_from(&g, "a", "AlertHigh");
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].to_pipeline, "b");
        assert_eq!(r[0].mqtt_topic.as_deref(), Some("varpulis/g/a/b"));
        assert_eq!(routes_from(&g, "a", "Other").len(), 1);
        assert!(routes_from(&g, "first", "AlertHigh").is_empty());
    }
}
