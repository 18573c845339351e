//! Pagination of `GET /api/v1/cluster/workers`: `limit`, `offset`, `total`, `has_more`,
//! with 30 fake workers registered over HTTP.

use crate::failover::quiet_opts;
use crate::harness::{fake_worker, Ensemble};
use serde_json::{json, Value};
use std::collections::BTreeSet;

fn ids(page: &Value) -> Vec<String> {
    page["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_list_paginates() {
    let ens = Ensemble::start(1, 0, quiet_opts()).await;
    let api = &ens.api;
    let mut all = BTreeSet::new();
    for n in 0..30 {
        let id = format!("page-{n:02}");
        api.post(&ens.cluster_url(0, "/workers/register"), &fake_worker(&id))
            .await
            .unwrap()
            .expect_ok();
        all.insert(id);
    }
    let get = |q: &str| {
        let url = ens.cluster_url(0, &format!("/workers{q}"));
        async move {
            let r = api.get(&url).await.unwrap();
            r.expect_status(200);
            r.body
        }
    };

    let page = get("").await;
    assert_eq!(page["total"], 30);
    assert_eq!(
        page["pagination"],
        json!({"limit": 100, "offset": 0, "has_more": false})
    );
    assert_eq!(ids(&page).len(), 30);

    let mut seen = Vec::new();
    for (offset, more) in [(0, true), (10, true), (20, false)] {
        let page = get(&format!("?limit=10&offset={offset}")).await;
        assert_eq!(page["total"], 30, "{page}");
        assert_eq!(
            page["pagination"],
            json!({"limit": 10, "offset": offset, "has_more": more}),
            "{page}"
        );
        assert_eq!(ids(&page).len(), 10, "{page}");
        // The same page twice is the same (stable order).
        assert_eq!(
            ids(&get(&format!("?limit=10&offset={offset}")).await),
            ids(&page)
        );
        seen.extend(ids(&page));
    }
    let distinct: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(seen.len(), 30, "pages overlap: {seen:?}");
    assert_eq!(distinct, all);

    let page = get("?limit=10&offset=25").await;
    assert_eq!(ids(&page).len(), 5);
    assert_eq!(page["pagination"]["has_more"], false);
    let page = get("?offset=40").await;
    assert_eq!(ids(&page).len(), 0);
    assert_eq!(page["total"], 30);
    assert_eq!(page["pagination"]["has_more"], false);
    let page = get("?limit=5000").await;
    assert_eq!(
        page["pagination"]["limit"], 1000,
        "limit is capped at 1000: {page}"
    );

    // The other list routes answer the same shape.
    let r = api
        .get(&ens.cluster_url(0, "/pipeline-groups?limit=5"))
        .await
        .unwrap();
    r.expect_status(200);
    assert_eq!(r.body["total"], 0, "{}", r.text);
    assert_eq!(
        r.body["pagination"],
        json!({"limit": 5, "offset": 0, "has_more": false}),
        "{}",
        r.text
    );
}
