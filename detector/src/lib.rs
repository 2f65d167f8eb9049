//! spikewatch's detector core: pure, synchronous, no I/O and no clock reads.
//!
//! Arrow record batches of samples (see [`schema`]) go in; alert transitions come out. Event
//! time only: samples are grouped into ticks by their `ts`, ticks close when the watermark (the
//! newest event time the fleet has reached, minus the allowed lateness) passes them, or as soon as
//! no series is due at or before them any more (each series is due at its newest sample's time plus
//! its interval). Per-series state is a struct of arrays
//! ([`state::SeriesState`]) updated tick by tick by the kernels in [`kernels`]; exact tests run
//! only on the rare candidates the kernels flag.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod alert;
mod clock;
pub mod col;
pub mod config;
mod engine;
pub mod incident;
mod isa;
pub mod kernels;
pub mod schema;
pub mod series;
pub mod state;
pub mod stats;
pub mod time;

pub use alert::{AlertEvent, AlertKind, AlertState, Severity};
pub use config::{ConfigError, DetectorConfig};
pub use engine::{
    Detector, DetectorError, DetectorSnapshot, DetectorStats, SeriesTotals, SeriesView,
};
pub use incident::{Incident, IncidentConfig, IncidentSnapshot, IncidentTracker};
pub use series::{SeriesId, SeriesInterner, SeriesKey};
#[cfg(test)]
mod tests;
