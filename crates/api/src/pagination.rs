//! Pagination of list routes: `?limit=&offset=`, answered with `total` and `pagination`.

use serde::{Deserialize, Serialize};

/// Default page size of list routes.
pub const DEFAULT_LIMIT: usize = 100;
/// Largest page size a client may ask for.
pub const MAX_LIMIT: usize = 1000;

/// Query parameters of a list route.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Page {
    /// Items per page (default 100, at most 1000).
    pub limit: Option<usize>,
    /// Items to skip.
    pub offset: Option<usize>,
}

impl Page {
    /// The effective limit, clamped to `1..=MAX_LIMIT`.
    pub fn limit(&self) -> usize {
        self.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT)
    }

    /// The effective offset.
    pub fn offset(&self) -> usize {
        self.offset.unwrap_or(0)
    }

    /// Cuts one page out of `items` and describes it.
    pub fn apply<T>(&self, items: Vec<T>) -> (Vec<T>, usize, Pagination) {
        let total = items.len();
        let (limit, offset) = (self.limit(), self.offset());
        let page: Vec<T> = items.into_iter().skip(offset).take(limit).collect();
        let has_more = offset.saturating_add(page.len()) < total;
        (
            page,
            total,
            Pagination {
                limit,
                offset,
                has_more,
            },
        )
    }
}

/// The `pagination` object of a list answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pagination {
    /// Page size used.
    pub limit: usize,
    /// Items skipped.
    pub offset: usize,
    /// Whether items remain after this page.
    pub has_more: bool,
}
