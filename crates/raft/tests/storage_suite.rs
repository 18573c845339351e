//! openraft's storage conformance suite against the sled log store and state machine.
#![allow(clippy::unwrap_used)] // tests may unwrap

use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;
use varpulis_raft::log_store::LogStore;
use varpulis_raft::state_machine::StateMachine;
use varpulis_raft::TypeConfig;

/// Builds the stores; `overlap_for`: the node whose own appends return before their sync
/// ([`LogStore::with_leader_flush_overlap`]; the suite's entries are node 0's).
struct SledBuilder {
    overlap_for: Option<u64>,
}

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for SledBuilder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<u64>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let raft_dir = dir.path().join("raft");
        let db = sled::Config::new()
            .path(&raft_dir)
            .open()
            .expect("open sled");
        let log =
            LogStore::open(&db, &raft_dir.join("wal"))?.with_leader_flush_overlap(self.overlap_for);
        let sm = StateMachine::open(&db, &raft_dir)?;
        Ok((dir, log, sm))
    }
}

#[test]
fn sled_stores_pass_openraft_suite() {
    Suite::test_all(SledBuilder { overlap_for: None }).unwrap();
}

#[test]
fn sled_stores_pass_openraft_suite_with_the_leader_flush_overlap() {
    Suite::test_all(SledBuilder {
        overlap_for: Some(0),
    })
    .unwrap();
}
