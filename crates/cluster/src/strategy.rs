//! Placement strategies, as a group spec names them (`placement`): `round_robin` (default),
//! `least_loaded` and `least_connections`. How each picks a worker is the `placement` module.

use crate::error::Error;

/// A placement strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Workers in id order, continuing from the replicated cursor.
    #[default]
    RoundRobin,
    /// The worker with the fewest placements.
    LeastLoaded,
    /// The worker with the fewest placements plus inbound (active) migrations.
    LeastConnections,
}

impl Strategy {
    /// Parses a spec's `placement` field (`None` means round-robin).
    pub fn parse(name: Option<&str>) -> Result<Strategy, Error> {
        let Some(name) = name else {
            return Ok(Strategy::RoundRobin);
        };
        match name.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "" | "round_robin" | "roundrobin" => Ok(Strategy::RoundRobin),
            "least_loaded" | "leastloaded" => Ok(Strategy::LeastLoaded),
            "least_connections" | "leastconnections" => Ok(Strategy::LeastConnections),
            _ => Err(Error::InvalidSpec(format!(
                "unknown placement strategy '{name}' \
                 (expected round_robin, least_loaded or least_connections)"
            ))),
        }
    }
}
