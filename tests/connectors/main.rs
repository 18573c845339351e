//! Connector integration tests (docs/connectors.md): the HTTP sink against a local axum
//! server that fails, is slow or is down; the file sink's rotation and flush on SIGTERM; the
//! console sink. Workers run in process (127.0.0.1:0) or as the real binary.

#[allow(dead_code)]
#[path = "../worker/harness.rs"]
mod harness;

mod enrich;
mod file;
mod http;
mod run;
mod target;
