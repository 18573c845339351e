//! Connector commands: create, replace, upsert, delete (validation in `crate::connector`).
//!
//! A saved connector is stored once, behind an `Arc` that the [`Outcome::ConnectorSaved`] of
//! its command shares: apply runs on every replica for every write, and the leader's handler
//! answers from the outcome (issue 24, docs/benchmarks.md "write path (session 10)").

use std::collections::btree_map::Entry;
use std::sync::Arc;
use varpulis_api::cluster::ConnectorSpec;

use super::ClusterState;
use crate::command::Outcome;
use crate::connector;
use crate::error::Error;

/// How `save_connector` treats an existing name.
#[derive(Debug, Clone, Copy)]
pub(super) enum ConnectorMode {
    Create,
    Update,
    Upsert,
}

impl ClusterState {
    pub(super) fn save_connector(
        &mut self,
        spec: ConnectorSpec,
        mode: ConnectorMode,
    ) -> Result<Outcome, Error> {
        // By value: the params move out of the command instead of being copied.
        let normalized = connector::normalize_owned(spec)?;
        // One walk down the map (its keys share long prefixes: each comparison is a memcmp).
        let slot = self.connectors.entry(normalized.name.clone());
        let exists = matches!(slot, Entry::Occupied(_));
        match mode {
            ConnectorMode::Create if exists => {
                return Err(Error::DuplicateConnector(normalized.name))
            }
            ConnectorMode::Update if !exists => {
                return Err(Error::UnknownConnector(normalized.name))
            }
            _ => {}
        }
        // The spec moved out of the log entry; the map and the outcome share it.
        let spec = Arc::new(normalized);
        match slot {
            Entry::Occupied(mut slot) => {
                slot.insert(Arc::clone(&spec));
            }
            Entry::Vacant(slot) => {
                slot.insert(Arc::clone(&spec));
            }
        }
        Ok(Outcome::ConnectorSaved {
            spec,
            created: !exists,
        })
    }

    pub(super) fn delete_connector(&mut self, name: &str) -> Result<Outcome, Error> {
        match self.connectors.remove(name) {
            Some(_) => Ok(Outcome::ConnectorDeleted {
                name: name.to_string(),
            }),
            None => Err(Error::UnknownConnector(name.to_string())),
        }
    }
}
