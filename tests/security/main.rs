//! Security suite: the attacks of issue 18 replayed against real processes on loopback
//! (`varpulis coordinator` ensembles started by the cluster harness), one module per area.
//!
//! - [`raft_rpcs`]: who may call `/raft/*` (peer secret vs API key), forged appends, term bombs.
//! - [`log_limits`]: oversized registrations and specs are refused before they reach the log,
//!   and writes keep committing while they arrive.
//! - [`tls`]: HTTPS, mutual TLS, peer certificates, SIGHUP reload, a TLS ensemble.
//! - [`worker_identity`]: worker ids bound to their keys (takeover, stranger drains, SSRF
//!   addresses, path-unsafe ids, the join token, self-deregistration at SIGTERM).
//! - [`deploys`]: only the connectors a pipeline uses are shipped; a 300-pipeline group deploys
//!   a few calls at a time in bounded leader memory; 10,000 pipelines are refused.
//! - [`failed_pipelines`]: a toxic program deployed through the coordinator ends `Failed` in
//!   place (not redeployed, not moved), its worker healthy, the other pipeline running.
//! - [`secrets`]: connector secrets redacted in answers, owner-only Raft files, a client-set
//!   `x-varpulis-forwarded-by` header.
//! - [`connections`]: 1,100 idle connections under a 1,024-descriptor limit (coordinator and
//!   worker), a worker out of descriptors (EMFILE), a slowloris client, per-client rate
//!   limits (429 then recovery).
//! - [`snapshots`]: a state grown large through allowed writes reaches a lagging follower in
//!   chunks while writes keep committing.
//!
//! See docs/security.md for the threat model these tests check.

#[path = "../cluster/harness.rs"]
mod harness;

mod common;
mod connections;
mod deploys;
mod failed_pipelines;
mod log_limits;
mod raft_rpcs;
mod secrets;
mod snapshots;
mod tls;
mod worker_identity;
