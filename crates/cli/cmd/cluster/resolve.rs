//! Names wherever ids are: a pipeline group may be named by its id or by its (unique) name.
//!
//! The group list is read (every page); an exact id wins over a name. When nothing matches on
//! the node that answered, the list is read again with `?consistent=true` (the group may have
//! been created through another coordinator a moment ago). Still nothing: the argument is used
//! as an id, so the server answers its usual `404`.

use varpulis_api::cluster::{PipelineGroupInfo, PipelineGroupList};

use super::client::Client;

/// Path of the group routes.
pub const GROUPS: &str = "/api/v1/cluster/pipeline-groups";
/// Largest page the API serves.
pub const PAGE: usize = 1000;

/// Every pipeline group (all pages), read locally or with `?consistent=true`.
pub async fn all_groups(c: &Client, consistent: bool) -> anyhow::Result<Vec<PipelineGroupInfo>> {
    let mut all = Vec::new();
    loop {
        let mut path = format!("{GROUPS}?limit={PAGE}&offset={}", all.len());
        if consistent {
            path.push_str("&consistent=true");
        }
        let (page, _): (PipelineGroupList, _) = c.get(&path).await?;
        let n = page.pipeline_groups.len();
        all.extend(page.pipeline_groups);
        if !page.pagination.has_more || n == 0 {
            return Ok(all);
        }
    }
}

/// The group whose id, else whose name, is `key`.
pub fn find<'a>(groups: &'a [PipelineGroupInfo], key: &str) -> Option<&'a PipelineGroupInfo> {
    groups
        .iter()
        .find(|g| g.id == key)
        .or_else(|| groups.iter().find(|g| g.name == key))
}

/// The id of the group named or identified by `key` (see the module doc).
pub async fn group_id(c: &Client, key: &str) -> anyhow::Result<String> {
    let local = all_groups(c, false).await?;
    if let Some(g) = find(&local, key) {
        return Ok(g.id.clone());
    }
    if let Ok(fresh) = all_groups(c, true).await {
        if let Some(g) = find(&fresh, key) {
            return Ok(g.id.clone());
        }
    }
    Ok(key.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(id: &str, name: &str) -> PipelineGroupInfo {
        serde_json::from_value(serde_json::json!({
            "id": id, "name": name, "status": "running", "pipeline_count": 0, "placements": []
        }))
        .unwrap()
    }

    #[test]
    fn ids_win_over_names() {
        let groups = vec![group("a1", "alpha"), group("alpha", "beta")];
        assert_eq!(find(&groups, "alpha").unwrap().id, "alpha");
        assert_eq!(find(&groups, "a1").unwrap().name, "alpha");
        assert_eq!(find(&groups, "beta").unwrap().id, "alpha");
        assert!(find(&groups, "gamma").is_none());
    }
}
