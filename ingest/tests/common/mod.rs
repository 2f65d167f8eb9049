//! Helpers shared by the format and Kafka tests.
#![allow(dead_code, clippy::unwrap_used)]

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, TimestampMillisecondType, UInt32Type, UInt64Type};
use arrow_array::{Array, RecordBatch};
use detector::SeriesInterner;
use ingest::Sample;

/// The rows of internal-schema batches as `Sample`s (series keys looked up in the interner;
/// `status` is not stored by the decoders).
pub fn samples_of(batches: &[RecordBatch], interner: &SeriesInterner) -> Vec<Sample> {
    let mut out = Vec::new();
    for b in batches {
        assert_eq!(b.schema(), detector::schema::sample_schema());
        let col = |n: &str| b.column_by_name(n).unwrap().clone();
        let ids = col("series_id");
        let ts = col("ts");
        let interval = col("interval_ms");
        let [requests, errors, retries] = ["requests", "errors", "retries"].map(&col);
        let [p50, p99] = ["latency_p50_ms", "latency_p99_ms"].map(&col);
        let [active, max, pending] = ["db_pool_active", "db_pool_max", "db_pool_pending"].map(&col);
        let u32o = |a: &dyn Array, i: usize| {
            let a = a.as_primitive::<UInt32Type>();
            a.is_valid(i).then(|| a.value(i))
        };
        let u64o = |a: &dyn Array, i: usize| {
            let a = a.as_primitive::<UInt64Type>();
            a.is_valid(i).then(|| a.value(i))
        };
        let f64o = |a: &dyn Array, i: usize| {
            let a = a.as_primitive::<Float64Type>();
            a.is_valid(i).then(|| a.value(i))
        };
        for i in 0..b.num_rows() {
            let id = ids.as_primitive::<UInt32Type>().value(i);
            let key = interner.key(id).unwrap();
            out.push(Sample {
                ts_ms: ts.as_primitive::<TimestampMillisecondType>().value(i),
                cluster: key.cluster.clone(),
                service: key.service.clone(),
                region: key.region.clone(),
                interval_ms: interval.as_primitive::<UInt32Type>().value(i),
                requests: u64o(&requests, i).unwrap(),
                errors: u64o(&errors, i).unwrap(),
                retries: u64o(&retries, i),
                latency_p50_ms: f64o(&p50, i),
                latency_p99_ms: f64o(&p99, i),
                db_pool_active: u32o(&active, i),
                db_pool_max: u32o(&max, i),
                db_pool_pending: u32o(&pending, i),
                status: Default::default(),
            });
        }
    }
    out
}

/// `s` without its status breakdown (which no decoder stores).
pub fn stored(s: &Sample) -> Sample {
    Sample {
        status: Default::default(),
        ..s.clone()
    }
}

/// Epoch ms of an RFC 3339 timestamp.
pub fn ms(rfc3339: &str) -> i64 {
    ingest::time::parse_rfc3339_ms(rfc3339).unwrap()
}
