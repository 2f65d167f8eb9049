//! The Arrow schema of a batch of samples, shared by every producer (`ingest`) and the detector.
//!
//! One row is one sample: one series over one interval (CONTRACT section 1). Series keys are not
//! carried in the batch; they are interned to dense `u32` ids and registered with the detector
//! once (see [`crate::SeriesKey`]).

use std::sync::{Arc, OnceLock};

use arrow_array::cast::AsArray;
use arrow_array::types::UInt32Type;
use arrow_array::{ArrowPrimitiveType, PrimitiveArray, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::engine::DetectorError;

/// Dense series id (index into the detector's struct-of-arrays state).
pub const SERIES_ID: &str = "series_id";
/// End of the interval the counts cover, event time, milliseconds since the epoch, UTC.
pub const TS: &str = "ts";
/// Length of the interval in milliseconds (> 0).
pub const INTERVAL_MS: &str = "interval_ms";
/// Requests received in the interval, retries included.
pub const REQUESTS: &str = "requests";
/// Failed requests, `errors <= requests`.
pub const ERRORS: &str = "errors";
/// Requests that were retries; null when the producer does not report retries.
pub const RETRIES: &str = "retries";
/// Median latency in milliseconds; null when not reported.
pub const LATENCY_P50_MS: &str = "latency_p50_ms";
/// 99th percentile latency in milliseconds; null when not reported.
pub const LATENCY_P99_MS: &str = "latency_p99_ms";
/// DB connections in use at interval end; null when not reported.
pub const DB_POOL_ACTIVE: &str = "db_pool_active";
/// DB pool size at interval end; null when not reported.
pub const DB_POOL_MAX: &str = "db_pool_max";
/// Callers waiting for a DB connection at interval end; null when not reported.
pub const DB_POOL_PENDING: &str = "db_pool_pending";

/// The sample batch schema. Column order is fixed; the detector looks columns up by name.
///
/// | column | type | nullable |
/// |---|---|---|
/// | series_id | UInt32 | no |
/// | ts | Timestamp(ms, UTC) | no |
/// | interval_ms | UInt32 | no |
/// | requests, errors | UInt64 | no |
/// | retries | UInt64 | yes |
/// | latency_p50_ms, latency_p99_ms | Float64 | yes |
/// | db_pool_active, db_pool_max, db_pool_pending | UInt32 | yes |
pub fn sample_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(Schema::new(vec![
                Field::new(SERIES_ID, DataType::UInt32, false),
                Field::new(
                    TS,
                    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                    false,
                ),
                Field::new(INTERVAL_MS, DataType::UInt32, false),
                Field::new(REQUESTS, DataType::UInt64, false),
                Field::new(ERRORS, DataType::UInt64, false),
                Field::new(RETRIES, DataType::UInt64, true),
                Field::new(LATENCY_P50_MS, DataType::Float64, true),
                Field::new(LATENCY_P99_MS, DataType::Float64, true),
                Field::new(DB_POOL_ACTIVE, DataType::UInt32, true),
                Field::new(DB_POOL_MAX, DataType::UInt32, true),
                Field::new(DB_POOL_PENDING, DataType::UInt32, true),
            ]))
        })
        .clone()
}

/// Column `name` of a sample batch as the primitive array the schema says it is.
pub(crate) fn column<'a, T: ArrowPrimitiveType>(
    batch: &'a RecordBatch,
    name: &'static str,
) -> Result<&'a PrimitiveArray<T>, DetectorError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_primitive_opt::<T>())
        .ok_or(DetectorError::Column(name))
}

/// The batch's series ids, refused if any is not below `known` (registered series).
pub(crate) fn series_ids(
    batch: &RecordBatch,
    known: usize,
) -> Result<&PrimitiveArray<UInt32Type>, DetectorError> {
    let sid = column::<UInt32Type>(batch, SERIES_ID)?;
    // The largest id first (a fold vectorises; a search for the first bad one does not).
    let top = sid.values().iter().fold(0, |m: u32, &s| m.max(s));
    if !sid.values().is_empty() && top as usize >= known {
        let bad = sid.values().iter().find(|&&s| s as usize >= known);
        return Err(DetectorError::UnknownSeries {
            id: bad.copied().unwrap_or(top),
            known,
        });
    }
    Ok(sid)
}
