//! The trace catalogue.

use crate::model::{Series, Trace};

mod clean;
mod db_replica;
mod lb_crash;
mod release_routing;
mod routing_config;
mod telemetry;

/// Every trace, in generation order.
pub(crate) const NAMES: [&str; 8] = [
    routing_config::NAME,
    db_replica::NAME,
    lb_crash::NAME,
    release_routing::NAME,
    telemetry::NAME,
    clean::DIURNAL,
    clean::BENIGN,
    clean::LATE_DUP,
];

/// Build the definition of a trace by name.
pub(crate) fn build(name: &str) -> Option<Trace> {
    match name {
        routing_config::NAME => Some(routing_config::build()),
        db_replica::NAME => Some(db_replica::build()),
        lb_crash::NAME => Some(lb_crash::build()),
        release_routing::NAME => Some(release_routing::build()),
        telemetry::NAME => Some(telemetry::build()),
        clean::DIURNAL => Some(clean::diurnal()),
        clean::BENIGN => Some(clean::benign()),
        clean::LATE_DUP => Some(clean::late_duplicate()),
        _ => None,
    }
}

/// Round a time up to the sample grid.
pub(crate) fn ceil_to(t: i64, interval: i64) -> i64 {
    (t + interval - 1).div_euclid(interval) * interval
}

/// Index of a series by key.
pub(crate) fn find(series: &[Series], cluster: &str, service: &str) -> Option<usize> {
    series
        .iter()
        .position(|s| s.cluster == cluster && s.service == service)
}

/// Seed file path shown in READMEs.
pub(crate) fn seed_path(file: &str) -> String {
    format!("shared/seeds/{file}")
}
