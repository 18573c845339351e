//! All pipelines of this worker, by id. The lock is held only to clone an `Arc` out.

use super::Pipeline;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// The pipelines of this worker.
#[derive(Debug, Default)]
pub struct Registry {
    inner: RwLock<HashMap<String, Arc<Pipeline>>>,
}

impl Registry {
    /// The pipeline with this id.
    pub fn get(&self, id: &str) -> Option<Arc<Pipeline>> {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Inserts unless the id is taken (returns the existing pipeline) or `max` pipelines
    /// already run (returns `Ok(false)`).
    pub fn insert(&self, p: Arc<Pipeline>, max: usize) -> Result<bool, Arc<Pipeline>> {
        let mut map = self.inner.write().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = map.get(&p.id) {
            return Err(existing.clone());
        }
        if map.len() >= max {
            return Ok(false);
        }
        map.insert(p.id.clone(), p);
        Ok(true)
    }

    /// Removes and returns the pipeline.
    pub fn remove(&self, id: &str) -> Option<Arc<Pipeline>> {
        self.inner
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id)
    }

    /// Every pipeline, sorted by name then id.
    pub fn all(&self) -> Vec<Arc<Pipeline>> {
        let mut v: Vec<_> = self
            .inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
        v
    }

    /// Number of pipelines.
    pub fn len(&self) -> usize {
        self.inner.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
