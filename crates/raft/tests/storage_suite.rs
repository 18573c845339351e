//! openraft's storage conformance suite against the sled log store and state machine.
#![allow(clippy::unwrap_used)] // tests may unwrap

use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;
use varpulis_raft::log_store::LogStore;
use varpulis_raft::state_machine::StateMachine;
use varpulis_raft::TypeConfig;

struct SledBuilder;

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
        let log = LogStore::open(&db, &raft_dir.join("wal"))?;
        let sm = StateMachine::open(&db, &raft_dir)?;
        Ok((dir, log, sm))
    }
}

#[test]
fn sled_stores_pass_openraft_suite() {
    Suite::test_all(SledBuilder).unwrap();
}
