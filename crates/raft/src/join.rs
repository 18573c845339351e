//! Joining a running group: what `varpulis coordinator --join URL` does after it starts.
//!
//! A joining node starts with `auto_initialize = false` (it must not found a group of its own),
//! serves its `/raft/*` routes, then, through any member of the group (the seed):
//! 1. reads the seed's `GET /raft/metrics`; if this node is already a voter there is nothing to
//!    do (a restart after a successful join), and an id already used by another address is an
//!    error;
//! 2. `POST /raft/add-learner` with its id and advertise URL; the leader answers once the
//!    learner has caught up with the log (or a snapshot);
//! 3. `POST /raft/change-membership` with the current voters plus itself.
//!
//! Followers answer admin calls with `421` and the leader's URL: the next attempt goes there.
//! `503` (no leader), `409` (another membership change is committing), timeouts and refused
//! connections are retried every [`RETRY_PAUSE`] until it works or `cancel` fires; `400`, `401`
//! and other answers stop the join with an error, since retrying cannot fix them.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use serde::de::DeserializeOwned;
use varpulis_api::raft::{AddLearnerRequest, ChangeMembershipRequest, RaftMetricsView};

use crate::auth::Credentials;
use crate::error::Error;
use crate::types::NodeId;

/// Pause between attempts after a transient failure.
pub const RETRY_PAUSE: Duration = Duration::from_millis(500);
/// Upper bound of one admin exchange (the leader bounds its own wait at 60 s).
const ADMIN_HTTP_TIMEOUT: Duration = Duration::from_secs(75);

/// Who this node is, and how to reach the group.
#[derive(Clone)]
pub struct JoinRequest {
    /// This node's id.
    pub node_id: NodeId,
    /// This node's advertise URL (what the other members will call).
    pub address: String,
    /// Any member of the group (`http://host:port`).
    pub seed: String,
    /// Cluster key for the admin calls, if the group has one.
    pub api_key: Option<String>,
    /// Peer secret: signs the admin calls of a group that has no API key.
    pub peer_secret: Option<String>,
    /// TLS of the calls to the group (`https://` seed).
    pub tls: varpulis_tls::ClientTls,
}

impl std::fmt::Debug for JoinRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinRequest")
            .field("node_id", &self.node_id)
            .field("address", &self.address)
            .field("seed", &self.seed)
            .finish_non_exhaustive()
    }
}

/// Outcome of one HTTP exchange with a member.
enum Answer<T> {
    /// 2xx with a decoded body.
    Done(T),
    /// The member is not the leader; try the given URL next.
    Redirect(String),
    /// Worth another attempt later (why, for the log).
    Retry(String),
}

/// What the join did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Joined {
    /// This node was already a voter of the group: nothing was changed.
    AlreadyMember,
    /// This node was added as a learner, caught up, and promoted to voter.
    Promoted,
}

/// Makes this node a voter of the group `req.seed` belongs to; see the module docs.
///
/// Returns when the node is a voter, with an error on an answer retrying cannot fix, or with
/// [`Error::Raft`] when `cancel` completes first.
pub async fn join_group(
    req: &JoinRequest,
    cancel: impl Future<Output = ()>,
) -> Result<Joined, Error> {
    let client = req
        .tls
        .reqwest_builder()
        .connect_timeout(Duration::from_secs(3))
        .timeout(ADMIN_HTTP_TIMEOUT)
        .build()
        .map_err(|e| Error::Config(format!("cannot build HTTP client: {e}")))?;
    tokio::select! {
        res = run(&client, req) => res,
        _ = cancel => Err(Error::Raft("join cancelled".into())),
    }
}

async fn run(client: &reqwest::Client, req: &JoinRequest) -> Result<Joined, Error> {
    let seed = req.seed.trim_end_matches('/').to_string();
    let address = req.address.trim_end_matches('/').to_string();
    // 1. Already a voter (restart after a join)?
    let view: RaftMetricsView = until_done(client, req, &seed, |c, target| {
        let url = format!("{target}/raft/metrics");
        async move { exchange(c.get(url)).await }
    })
    .await?;
    if let Some(known) = view.nodes.get(&req.node_id) {
        if known.trim_end_matches('/') != address {
            return Err(Error::Config(format!(
                "node id {} is already used by {known} in the group; pick another --raft-node-id",
                req.node_id
            )));
        }
    }
    if view.membership.contains(&req.node_id) {
        tracing::info!(node_id = req.node_id, "already a voter of the group");
        return Ok(Joined::AlreadyMember);
    }
    // 2. Learner first: the leader answers once this node has caught up.
    tracing::info!(node_id = req.node_id, %seed, "joining: asking to be added as a learner");
    let body = AddLearnerRequest {
        node_id: req.node_id,
        address: address.clone(),
        force: false,
    };
    let view: RaftMetricsView = until_done(client, req, &seed, |c, target| {
        let url = format!("{target}/raft/add-learner");
        let body = body.clone();
        async move { exchange(c.post(url).json(&body)).await }
    })
    .await?;
    // 3. Promote: the voters the leader reported, plus this node. The leader retries while a
    //    previous membership change is still committing.
    tracing::info!(
        node_id = req.node_id,
        "joining: caught up, asking to become a voter"
    );
    let mut leader = seed.clone();
    if let Some(url) = view.nodes.get(&view.id) {
        leader = url.trim_end_matches('/').to_string();
    }
    let view: RaftMetricsView = until_done(client, req, &leader, |c, target| {
        let url = format!("{target}/raft/change-membership");
        let c = c.clone();
        async move {
            // Re-read the voters at every attempt: they may have changed since.
            let metrics = c.get(format!("{target}/raft/metrics"));
            let current = match exchange::<RaftMetricsView>(metrics).await? {
                Answer::Done(v) => v,
                Answer::Redirect(u) => return Ok(Answer::Redirect(u)),
                Answer::Retry(why) => return Ok(Answer::Retry(why)),
            };
            let mut members: BTreeSet<NodeId> = current.membership.into_iter().collect();
            members.insert(req.node_id);
            let body = ChangeMembershipRequest {
                members: members.into_iter().collect(),
                force: false,
            };
            exchange(c.post(url).json(&body)).await
        }
    })
    .await?;
    if !view.membership.contains(&req.node_id) {
        return Err(Error::Membership(format!(
            "membership change answered without node {}: voters {:?}",
            req.node_id, view.membership
        )));
    }
    tracing::info!(node_id = req.node_id, voters = ?view.membership, "joined the group as a voter");
    Ok(Joined::Promoted)
}

/// Runs `attempt` against `start`, following redirects to the leader and retrying transient
/// failures; returns the first success or the first permanent error.
async fn until_done<T, F, Fut>(
    client: &reqwest::Client,
    req: &JoinRequest,
    start: &str,
    attempt: F,
) -> Result<T, Error>
where
    F: Fn(KeyedClient, String) -> Fut,
    Fut: Future<Output = Result<Answer<T>, Error>>,
{
    let mut target = start.to_string();
    let mut redirects = 0u32;
    loop {
        let client = with_key(client, req);
        match attempt(client, target.clone()).await? {
            Answer::Done(v) => return Ok(v),
            Answer::Redirect(url) if redirects < 8 => {
                redirects += 1;
                target = url.trim_end_matches('/').to_string();
                continue;
            }
            Answer::Redirect(url) => {
                tracing::info!(%url, "join: leader keeps moving, retrying from the seed");
                target = start.to_string();
            }
            Answer::Retry(why) => {
                tracing::info!(%target, "join: {why}; retrying");
                // Go back to the seed: a redirect target may be a node that has since died.
                target = start.to_string();
            }
        }
        redirects = 0;
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

/// A client wrapper that signs each request as an admin call ([`Credentials`]).
#[derive(Clone)]
struct KeyedClient {
    inner: reqwest::Client,
    credentials: Credentials,
}

impl KeyedClient {
    fn get(&self, url: String) -> reqwest::RequestBuilder {
        self.keyed(self.inner.get(url))
    }

    fn post(&self, url: String) -> reqwest::RequestBuilder {
        self.keyed(self.inner.post(url))
    }

    fn keyed(&self, b: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        self.credentials.sign_admin_request(b)
    }
}

fn with_key(client: &reqwest::Client, req: &JoinRequest) -> KeyedClient {
    KeyedClient {
        inner: client.clone(),
        credentials: Credentials::new(req.peer_secret.clone(), req.api_key.clone()),
    }
}

/// Sends `builder` and classifies the answer.
async fn exchange<T: DeserializeOwned>(
    builder: reqwest::RequestBuilder,
) -> Result<Answer<T>, Error> {
    let resp = match builder.send().await {
        Ok(r) => r,
        Err(e) => return Ok(Answer::Retry(format!("request failed: {e}"))),
    };
    let status = resp.status().as_u16();
    match status {
        200..=299 => match resp.json::<T>().await {
            Ok(v) => Ok(Answer::Done(v)),
            Err(e) => Ok(Answer::Retry(format!("unreadable answer: {e}"))),
        },
        421 => {
            let body: serde_json::Value = resp.json().await.unwrap_or_default();
            match body.get("leader_url").and_then(|v| v.as_str()) {
                Some(url) => Ok(Answer::Redirect(url.to_string())),
                None => Ok(Answer::Retry("not the leader, leader unknown".into())),
            }
        }
        408 | 409 | 429 | 500 | 502 | 503 | 504 => {
            let text = resp.text().await.unwrap_or_default();
            Ok(Answer::Retry(format!("HTTP {status}: {}", short(&text))))
        }
        _ => {
            let text = resp.text().await.unwrap_or_default();
            Err(Error::Config(format!(
                "the group refused the join: HTTP {status}: {}",
                short(&text)
            )))
        }
    }
}

fn short(text: &str) -> String {
    text.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_the_key() {
        let req = JoinRequest {
            node_id: 4,
            address: "http://127.0.0.1:1".into(),
            seed: "http://127.0.0.1:2".into(),
            api_key: Some("topsecret".into()),
            peer_secret: Some("peersecret".into()),
            tls: varpulis_tls::ClientTls::none(),
        };
        let text = format!("{req:?}");
        assert!(!text.contains("topsecret") && !text.contains("peersecret"));
    }
}
