//! Outbound Raft RPCs over HTTP (reqwest): `POST {addr}/raft/append`, `/raft/vote`,
//! `/raft/snapshot` with JSON bodies.
//!
//! One [`reqwest::Client`] (connection pool) is shared by every peer connection. AppendEntries and
//! Vote use a short timeout (`rpc_timeout`, bounded by openraft's own TTL) so a dead peer is
//! noticed within an election timeout; snapshots use a longer one. Failures are mapped so openraft
//! backs off where it should: connection failures and non-2xx answers are `Unreachable` (openraft
//! sleeps before retrying), timeouts are `Timeout`, undecodable answers are `Network`, and an error
//! returned by the remote Raft is a `RemoteError`.

use std::future::Future;
use std::time::Duration;

use base64::Engine as _;
use openraft::error::{
    Fatal, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, ReplicationClosed,
    StreamingError, Timeout, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{OptionalSend, RPCTypes};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::types::{BasicNode, NodeId, Snapshot, SnapshotMeta, TypeConfig, Vote};

/// Header carrying the cluster API key on Raft RPCs.
pub const API_KEY_HEADER: &str = "x-api-key";

/// Body of `POST /raft/snapshot`: a whole snapshot in one request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FullSnapshotRequest {
    /// The leader's vote (the receiver rejects snapshots from stale leaders).
    pub vote: Vote,
    /// Snapshot metadata.
    pub meta: SnapshotMeta,
    /// The snapshot bytes, base64-encoded.
    pub data: String,
}

impl FullSnapshotRequest {
    /// Decodes the snapshot bytes.
    pub fn decode_data(&self) -> Result<Vec<u8>, base64::DecodeError> {
        base64::engine::general_purpose::STANDARD.decode(&self.data)
    }
}

/// Creates one [`Network`] per peer, all sharing one HTTP client.
#[derive(Clone, Debug)]
pub struct NetworkFactory {
    client: reqwest::Client,
    api_key: Option<String>,
    rpc_timeout: Duration,
    snapshot_timeout: Duration,
    id: NodeId,
}

impl NetworkFactory {
    /// A factory for node `id`; `rpc_timeout` bounds append/vote, `snapshot_timeout` snapshots.
    pub fn new(
        id: NodeId,
        api_key: Option<String>,
        rpc_timeout: Duration,
        snapshot_timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(rpc_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .build()?;
        Ok(Self {
            client,
            api_key,
            rpc_timeout,
            snapshot_timeout,
            id,
        })
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = Network;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        Network {
            factory: self.clone(),
            target,
            base: node.addr.trim_end_matches('/').to_string(),
        }
    }
}

/// The connection to one peer.
#[derive(Debug)]
pub struct Network {
    factory: NetworkFactory,
    target: NodeId,
    base: String,
}

/// How a single HTTP exchange failed, before mapping to openraft's error types.
enum HttpFailure {
    Timeout,
    Unreachable(reqwest::Error),
    Status(String),
    Decode(reqwest::Error),
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct StatusError(String);

impl Network {
    async fn post<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        path: &str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, HttpFailure> {
        let url = format!("{}{}", self.base, path);
        let mut builder = self.factory.client.post(&url).json(req).timeout(timeout);
        if let Some(key) = &self.factory.api_key {
            builder = builder.header(API_KEY_HEADER, key);
        }
        let resp = builder.send().await.map_err(|e| {
            if e.is_timeout() {
                HttpFailure::Timeout
            } else {
                HttpFailure::Unreachable(e)
            }
        })?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            return Err(HttpFailure::Status(format!(
                "POST {url}: HTTP {status}: {}",
                body.chars().take(200).collect::<String>()
            )));
        }
        resp.json::<Resp>().await.map_err(|e| {
            if e.is_timeout() {
                HttpFailure::Timeout
            } else {
                HttpFailure::Decode(e)
            }
        })
    }

    fn timeout_err(&self, action: RPCTypes, timeout: Duration) -> Timeout<NodeId> {
        Timeout {
            action,
            id: self.factory.id,
            target: self.target,
            timeout,
        }
    }

    fn map_rpc<T, E: std::error::Error>(
        &self,
        res: Result<Result<T, RaftError<NodeId, E>>, HttpFailure>,
        action: RPCTypes,
        timeout: Duration,
    ) -> Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>> {
        match res {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(remote)) => Err(RPCError::RemoteError(RemoteError::new(self.target, remote))),
            Err(HttpFailure::Timeout) => Err(RPCError::Timeout(self.timeout_err(action, timeout))),
            Err(HttpFailure::Unreachable(e)) => Err(RPCError::Unreachable(Unreachable::new(&e))),
            Err(HttpFailure::Status(s)) => {
                Err(RPCError::Unreachable(Unreachable::new(&StatusError(s))))
            }
            Err(HttpFailure::Decode(e)) => Err(RPCError::Network(NetworkError::new(&e))),
        }
    }

    fn short_timeout(&self, option: &RPCOption) -> Duration {
        self.factory.rpc_timeout.min(option.hard_ttl())
    }
}

impl RaftNetwork<TypeConfig> for Network {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let timeout = self.short_timeout(&option);
        let res = self.post("/raft/append", &rpc, timeout).await;
        self.map_rpc(res, RPCTypes::AppendEntries, timeout)
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        let timeout = self.factory.snapshot_timeout;
        let res = self.post("/raft/install-snapshot", &rpc, timeout).await;
        self.map_rpc(res, RPCTypes::InstallSnapshot, timeout)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let timeout = self.short_timeout(&option);
        let res = self.post("/raft/vote", &rpc, timeout).await;
        self.map_rpc(res, RPCTypes::Vote, timeout)
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, Fatal<NodeId>>> {
        let timeout = self.factory.snapshot_timeout;
        let req = FullSnapshotRequest {
            vote,
            meta: snapshot.meta.clone(),
            data: base64::engine::general_purpose::STANDARD.encode(snapshot.snapshot.get_ref()),
        };
        let send = self.post::<_, Result<SnapshotResponse<NodeId>, Fatal<NodeId>>>(
            "/raft/snapshot",
            &req,
            timeout,
        );
        let res = tokio::select! {
            closed = cancel => return Err(StreamingError::Closed(closed)),
            res = send => res,
        };
        match res {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(fatal)) => Err(StreamingError::RemoteError(RemoteError::new(
                self.target,
                fatal,
            ))),
            Err(HttpFailure::Timeout) => Err(StreamingError::Timeout(
                self.timeout_err(RPCTypes::InstallSnapshot, timeout),
            )),
            Err(HttpFailure::Unreachable(e)) => {
                Err(StreamingError::Unreachable(Unreachable::new(&e)))
            }
            Err(HttpFailure::Status(s)) => Err(StreamingError::Unreachable(Unreachable::new(
                &StatusError(s),
            ))),
            Err(HttpFailure::Decode(e)) => Err(StreamingError::Network(NetworkError::new(&e))),
        }
    }

    fn backoff(&self) -> Backoff {
        // Retry an unreachable peer much faster than openraft's 500 ms default: a restarted node
        // must catch up before a second failure could make it campaign with a stale log (see
        // docs/raft.md); ten connection attempts a second to a dead peer cost nothing.
        Backoff::new(std::iter::repeat(Duration::from_millis(100)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use axum::routing::post;
    use axum::Router;
    use tokio::net::TcpListener;

    async fn serve(app: Router) -> String {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        url
    }

    async fn vote_to(
        url: &str,
        rpc_timeout: Duration,
    ) -> RPCError<NodeId, BasicNode, RaftError<NodeId>> {
        let mut factory =
            NetworkFactory::new(1, Some("k".into()), rpc_timeout, Duration::from_secs(5)).unwrap();
        let mut net = factory.new_client(2, &BasicNode::new(url)).await;
        let req = VoteRequest::new(Vote::new(1, 1), None);
        net.vote(req, RPCOption::new(Duration::from_secs(5)))
            .await
            .unwrap_err()
    }

    #[tokio::test]
    async fn refused_connection_is_unreachable() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        drop(l);
        let err = vote_to(&url, Duration::from_secs(1)).await;
        assert!(matches!(err, RPCError::Unreachable(_)), "{err:?}");
    }

    #[tokio::test]
    async fn rejected_key_is_unreachable_so_openraft_backs_off() {
        let url =
            serve(Router::new().route("/raft/vote", post(|| async { StatusCode::UNAUTHORIZED })))
                .await;
        let err = vote_to(&url, Duration::from_secs(1)).await;
        assert!(matches!(err, RPCError::Unreachable(_)), "{err:?}");
    }

    #[tokio::test]
    async fn slow_peer_is_a_timeout() {
        let url = serve(Router::new().route(
            "/raft/vote",
            post(|| async {
                // A peer that hangs: longer than the RPC timeout below.
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        ))
        .await;
        let err = vote_to(&url, Duration::from_millis(100)).await;
        assert!(matches!(err, RPCError::Timeout(_)), "{err:?}");
    }

    #[tokio::test]
    async fn undecodable_answer_is_a_network_error() {
        let url = serve(Router::new().route("/raft/vote", post(|| async { "not json" }))).await;
        let err = vote_to(&url, Duration::from_secs(1)).await;
        assert!(matches!(err, RPCError::Network(_)), "{err:?}");
    }

    #[tokio::test]
    async fn sends_the_api_key() {
        let url = serve(Router::new().route(
            "/raft/vote",
            post(|headers: axum::http::HeaderMap| async move {
                let ok = headers.get(API_KEY_HEADER).map(|v| v.as_bytes()) == Some(b"k");
                let status = if ok {
                    StatusCode::IM_A_TEAPOT
                } else {
                    StatusCode::UNAUTHORIZED
                };
                (status, "")
            }),
        ))
        .await;
        let err = vote_to(&url, Duration::from_secs(1)).await;
        assert!(err.to_string().contains("418"), "{err}");
    }
}
