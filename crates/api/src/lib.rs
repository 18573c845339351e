//! Request and response types shared by the coordinator, the workers, the CLI and the tests.
//!
//! Every JSON shape that crosses HTTP lives here exactly once, so field names cannot drift
//! between the server that produces them and the client that reads them. Field names follow
//! `shared/spec/cluster-mode.txt`, `shared/spec/tutorial-cluster.txt` and `shared/DESIGN.md`.

pub mod cluster;
pub mod console;
pub mod error;
pub mod events;
pub mod nats;
pub mod pagination;
pub mod raft;
pub mod redact;
pub mod session;
pub mod worker;

pub use error::{Code, ErrorBody};
pub use pagination::{Page, Pagination};

/// Header carrying the API key (coordinator and worker alike).
pub const API_KEY_HEADER: &str = "x-api-key";
/// Header carrying the worker join token when the coordinator requires one.
pub const WORKER_TOKEN_HEADER: &str = "x-worker-token";
/// Header a client sets to make a retried write apply at most once.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
/// Header set by a follower on a request it proxies to the leader (prevents proxy loops).
pub const FORWARDED_BY_HEADER: &str = "x-varpulis-forwarded-by";
/// Header the leader sets on write answers: its applied log index after the write. A follower
/// that proxied the write waits until it has applied that index before answering, so a client
/// reads its own writes from the node it wrote through.
pub const APPLIED_INDEX_HEADER: &str = "x-varpulis-applied-index";
/// Version string reported by `/health` on every node.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
