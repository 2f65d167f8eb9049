//! The internal batch in progress, shared by every format, and the series-id lookup in front of
//! the interner.
//!
//! Rows arrive two ways: one at a time (JSON, Prometheus), appended to plain vectors, or as whole
//! Arrow columns (Arrow IPC), kept as they came when their type is already the internal one (an
//! array clone shares its buffers). [`Columns::finish`] hands a lone piece over as it is and
//! concatenates several, so the values are copied at most once on their way to the detector.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::{Arc, OnceLock};

use arrow_array::types::{Float64Type, TimestampMillisecondType, UInt32Type, UInt64Type};
use arrow_array::{Array, ArrayRef, ArrowPrimitiveType, PrimitiveArray, RecordBatch};
use arrow_buffer::{ArrowNativeType, MutableBuffer, NullBufferBuilder, ScalarBuffer};
use detector::{SeriesId, SeriesInterner};

use super::Row;

pub(crate) type U32s = PrimitiveArray<UInt32Type>;
pub(crate) type U64s = PrimitiveArray<UInt64Type>;
pub(crate) type F64s = PrimitiveArray<Float64Type>;
pub(crate) type Stamps = PrimitiveArray<TimestampMillisecondType>;

/// The time zone of the internal `ts` column, shared rather than allocated per array.
pub(crate) fn utc() -> Arc<str> {
    static UTC: OnceLock<Arc<str>> = OnceLock::new();
    UTC.get_or_init(|| Arc::from("UTC")).clone()
}

/// Rows in the internal schema ([`detector::schema::sample_schema`]), column by column, all of
/// one length. `ts` carries the `UTC` zone; a null slot holds 0.
#[derive(Debug, Clone)]
pub(crate) struct Chunk {
    pub(crate) series_id: U32s,
    pub(crate) ts: Stamps,
    pub(crate) interval_ms: U32s,
    pub(crate) requests: U64s,
    pub(crate) errors: U64s,
    pub(crate) retries: U64s,
    pub(crate) latency_p50_ms: F64s,
    pub(crate) latency_p99_ms: F64s,
    pub(crate) db_pool_active: U32s,
    pub(crate) db_pool_max: U32s,
    pub(crate) db_pool_pending: U32s,
}

impl Chunk {
    fn len(&self) -> usize {
        self.series_id.len()
    }

    fn into_batch(self) -> RecordBatch {
        // Same order as `sample_schema()`.
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.series_id),
            Arc::new(self.ts),
            Arc::new(self.interval_ms),
            Arc::new(self.requests),
            Arc::new(self.errors),
            Arc::new(self.retries),
            Arc::new(self.latency_p50_ms),
            Arc::new(self.latency_p99_ms),
            Arc::new(self.db_pool_active),
            Arc::new(self.db_pool_max),
            Arc::new(self.db_pool_pending),
        ];
        match RecordBatch::try_new(detector::schema::sample_schema(), columns) {
            Ok(batch) => batch,
            // Every constructor of `Chunk` builds the internal types with equal lengths and no
            // null in the required columns; a mismatch is a bug here, caught by every test
            // that flushes.
            Err(e) => unreachable!("sample columns do not match sample_schema(): {e}"),
        }
    }

    /// The chunks end to end, each column copied once.
    fn concat(chunks: &[Chunk]) -> Chunk {
        let total = chunks.iter().map(Chunk::len).sum();
        Chunk {
            series_id: concat(chunks, total, |c| &c.series_id),
            ts: concat(chunks, total, |c| &c.ts).with_timezone(utc()),
            interval_ms: concat(chunks, total, |c| &c.interval_ms),
            requests: concat(chunks, total, |c| &c.requests),
            errors: concat(chunks, total, |c| &c.errors),
            retries: concat(chunks, total, |c| &c.retries),
            latency_p50_ms: concat(chunks, total, |c| &c.latency_p50_ms),
            latency_p99_ms: concat(chunks, total, |c| &c.latency_p99_ms),
            db_pool_active: concat(chunks, total, |c| &c.db_pool_active),
            db_pool_max: concat(chunks, total, |c| &c.db_pool_max),
            db_pool_pending: concat(chunks, total, |c| &c.db_pool_pending),
        }
    }
}

/// `n` copies of `value`, filled in place (a generic `vec![value; n]` goes element by element).
pub(crate) fn filled<T: ArrowNativeType>(value: T, n: usize) -> ScalarBuffer<T> {
    let mut buf = MutableBuffer::from_len_zeroed(n * std::mem::size_of::<T>());
    if value != T::default() {
        buf.typed_data_mut::<T>().fill(value);
    }
    ScalarBuffer::new(buf.into(), 0, n)
}

/// One column of every chunk, end to end. The result has a validity bitmap only if a part has
/// a null.
fn concat<T: ArrowPrimitiveType>(
    chunks: &[Chunk],
    total: usize,
    col: impl Fn(&Chunk) -> &PrimitiveArray<T>,
) -> PrimitiveArray<T> {
    let mut values = Vec::with_capacity(total);
    let mut nulls = NullBufferBuilder::new(total);
    for c in chunks {
        let a = col(c);
        values.extend_from_slice(a.values());
        match a.nulls() {
            Some(n) => nulls.append_buffer(n),
            None => nulls.append_n_non_nulls(a.len()),
        }
    }
    PrimitiveArray::new(ScalarBuffer::from(values), nulls.finish())
}

/// A nullable column being filled row by row.
#[derive(Debug)]
struct Nullable<T> {
    values: Vec<T>,
    nulls: NullBufferBuilder,
}

impl<T: ArrowNativeType> Nullable<T> {
    fn with_capacity(n: usize) -> Self {
        Self {
            values: Vec::with_capacity(n),
            nulls: NullBufferBuilder::new(n),
        }
    }

    #[inline]
    fn push(&mut self, v: Option<T>) {
        match v {
            Some(v) => {
                self.values.push(v);
                self.nulls.append_non_null();
            }
            None => {
                self.values.push(T::default());
                self.nulls.append_null();
            }
        }
    }

    fn finish<A: ArrowPrimitiveType<Native = T>>(mut self) -> PrimitiveArray<A> {
        PrimitiveArray::new(ScalarBuffer::from(self.values), self.nulls.finish())
    }
}

/// Rows appended one at a time, as plain vectors (no per-value builder bookkeeping).
#[derive(Debug)]
struct RowColumns {
    series_id: Vec<u32>,
    ts: Vec<i64>,
    interval_ms: Vec<u32>,
    requests: Vec<u64>,
    errors: Vec<u64>,
    retries: Nullable<u64>,
    latency_p50_ms: Nullable<f64>,
    latency_p99_ms: Nullable<f64>,
    db_pool_active: Nullable<u32>,
    db_pool_max: Nullable<u32>,
    db_pool_pending: Nullable<u32>,
}

impl RowColumns {
    fn with_capacity(n: usize) -> Self {
        Self {
            series_id: Vec::with_capacity(n),
            ts: Vec::with_capacity(n),
            interval_ms: Vec::with_capacity(n),
            requests: Vec::with_capacity(n),
            errors: Vec::with_capacity(n),
            retries: Nullable::with_capacity(n),
            latency_p50_ms: Nullable::with_capacity(n),
            latency_p99_ms: Nullable::with_capacity(n),
            db_pool_active: Nullable::with_capacity(n),
            db_pool_max: Nullable::with_capacity(n),
            db_pool_pending: Nullable::with_capacity(n),
        }
    }

    fn len(&self) -> usize {
        self.series_id.len()
    }

    #[inline]
    fn push(&mut self, id: SeriesId, row: &Row<'_>) {
        self.series_id.push(id);
        self.ts.push(row.ts_ms);
        self.interval_ms.push(row.interval_ms);
        self.requests.push(row.requests);
        self.errors.push(row.errors);
        self.retries.push(row.retries);
        self.latency_p50_ms.push(row.latency_p50_ms);
        self.latency_p99_ms.push(row.latency_p99_ms);
        self.db_pool_active.push(row.db_pool_active);
        self.db_pool_max.push(row.db_pool_max);
        self.db_pool_pending.push(row.db_pool_pending);
    }

    fn finish(self) -> Chunk {
        Chunk {
            series_id: PrimitiveArray::from(self.series_id),
            ts: Stamps::from(self.ts).with_timezone(utc()),
            interval_ms: PrimitiveArray::from(self.interval_ms),
            requests: PrimitiveArray::from(self.requests),
            errors: PrimitiveArray::from(self.errors),
            retries: self.retries.finish(),
            latency_p50_ms: self.latency_p50_ms.finish(),
            latency_p99_ms: self.latency_p99_ms.finish(),
            db_pool_active: self.db_pool_active.finish(),
            db_pool_max: self.db_pool_max.finish(),
            db_pool_pending: self.db_pool_pending.finish(),
        }
    }
}

/// The batch in progress: whole chunks in arrival order, then the rows appended one by one
/// since the last chunk.
#[derive(Debug)]
pub(crate) struct Columns {
    len: usize,
    /// Rows the row vectors are sized for when first used.
    prealloc: usize,
    chunks: Vec<Chunk>,
    /// Allocated on the first row, so a decoder fed only whole chunks never sizes it.
    rows: Option<RowColumns>,
    /// Oldest and newest `ts` appended since the last [`take_span`](Self::take_span).
    span: (i64, i64),
}

const NO_SPAN: (i64, i64) = (i64::MAX, i64::MIN);

impl Columns {
    pub(crate) fn new(prealloc: usize) -> Self {
        Self {
            len: 0,
            prealloc,
            chunks: Vec::new(),
            rows: None,
            span: NO_SPAN,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Appends one row; it must already be valid.
    #[inline]
    pub(crate) fn push_row(&mut self, id: SeriesId, row: &Row<'_>) {
        let prealloc = self.prealloc;
        self.rows
            .get_or_insert_with(|| RowColumns::with_capacity(prealloc))
            .push(id, row);
        self.len += 1;
        self.span = (self.span.0.min(row.ts_ms), self.span.1.max(row.ts_ms));
    }

    /// Appends whole columns; they must already be valid.
    pub(crate) fn push_chunk(&mut self, chunk: Chunk) {
        // Rows appended one by one before this chunk came before it.
        self.seal_rows();
        self.len += chunk.len();
        let (lo, hi) = chunk
            .ts
            .values()
            .iter()
            .fold(self.span, |(lo, hi), &t| (lo.min(t), hi.max(t)));
        self.span = (lo, hi);
        self.chunks.push(chunk);
    }

    /// The oldest and newest `ts` appended since the last call, if any.
    pub(crate) fn take_span(&mut self) -> Option<(i64, i64)> {
        let span = std::mem::replace(&mut self.span, NO_SPAN);
        (span != NO_SPAN).then_some(span)
    }

    fn seal_rows(&mut self) {
        if let Some(rows) = self.rows.take_if(|r| r.len() > 0) {
            self.chunks.push(rows.finish());
        }
    }

    /// Everything appended, as one batch in the internal schema, or `None` when empty. The
    /// columns are empty again afterwards.
    pub(crate) fn take_batch(&mut self) -> Option<RecordBatch> {
        if self.len == 0 {
            return None;
        }
        self.seal_rows();
        self.len = 0;
        let mut chunks = std::mem::take(&mut self.chunks);
        let chunk = if chunks.len() == 1 {
            chunks.pop()?
        } else {
            Chunk::concat(&chunks)
        };
        Some(chunk.into_batch())
    }
}

const NO_SERIES: SeriesId = SeriesId::MAX;

/// Series ids for keys, through the interner, but rarely through its hash maps.
///
/// Producers report their series in the same order interval after interval (and an Arrow
/// message often holds one interval of one producer), so the series that comes after series
/// `p` is very likely the one that came after `p` last time. Checking that guess costs two short
/// string comparisons. A wrong guess looks the key up in an index of one fast hash per key
/// (the interner hashes the cluster and the service separately, with SipHash); only new series
/// and the rare hash collision reach the interner.
#[derive(Debug)]
pub(crate) struct SeriesCache {
    /// `next[id]`: the series that followed `id` the last time `id` was seen.
    next: Vec<SeriesId>,
    /// The series of the previous row.
    prev: Option<SeriesId>,
    /// Key hash -> the first series seen with that hash.
    index: HashMap<u64, SeriesId, BuildHasherDefault<Prehashed>>,
    hasher: KeyHasher,
}

impl Default for SeriesCache {
    fn default() -> Self {
        Self {
            next: Vec::new(),
            prev: None,
            index: HashMap::default(),
            hasher: KeyHasher::random(),
        }
    }
}

impl SeriesCache {
    /// The id of the series, interning it if new; exactly what [`SeriesInterner::intern`]
    /// returns, and the interner ends up in the same state (the first non-empty region of a
    /// series is kept). `None` when no id is left.
    #[inline]
    pub(crate) fn id(
        &mut self,
        interner: &mut SeriesInterner,
        cluster: &str,
        service: &str,
        region: Option<&str>,
    ) -> Option<SeriesId> {
        let is = |id: SeriesId| {
            interner
                .key(id)
                .is_some_and(|k| k.cluster == cluster && k.service == service)
        };
        let mut known = self
            .prev
            .and_then(|p| self.next.get(p as usize).copied())
            .filter(|&g| is(g));
        if known.is_none() {
            let hash = self.hasher.key(cluster.as_bytes(), service.as_bytes());
            known = match self.index.get(&hash) {
                Some(&id) if is(id) => Some(id),
                // A collision: this key always goes to the interner.
                Some(_) => None,
                None => {
                    let id = interner.intern(cluster, service, region)?;
                    self.index.insert(hash, id);
                    Some(id)
                }
            };
        }
        let id = match known {
            // The interner only has something to do for a series without a region yet, when
            // this row brings one.
            Some(g) if !needs_region(interner, g, region) => g,
            _ => interner.intern(cluster, service, region)?,
        };
        if self.next.len() < interner.len() {
            self.next.resize(interner.len(), NO_SERIES);
        }
        if let Some(slot) = self.prev.and_then(|p| self.next.get_mut(p as usize)) {
            *slot = id;
        }
        self.prev = Some(id);
        Some(id)
    }
}

/// A seeded hash of a series key, 8 bytes at a time with folded 64x64->128-bit multiplies (the
/// mixing step of the wyhash/foldhash family). The seed is random per decoder, so which keys
/// collide cannot be planned; a collision only costs the interner's lookup anyway.
#[derive(Debug, Clone, Copy)]
struct KeyHasher {
    seed: u64,
}

const MIX: u64 = 0x9E37_79B9_7F4A_7C15;
const MIX2: u64 = 0xD6E8_FEB8_6659_FD93;

#[inline]
fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

impl KeyHasher {
    fn random() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        Self { seed }
    }

    #[inline]
    fn bytes(h: u64, b: &[u8]) -> u64 {
        let mut h = fold_mul(h ^ b.len() as u64, MIX);
        let mut words = b.chunks_exact(8);
        for w in words.by_ref() {
            let mut lanes = [0u8; 8];
            lanes.copy_from_slice(w);
            h = fold_mul(h ^ u64::from_le_bytes(lanes), MIX2);
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut lanes = [0u8; 8];
            lanes[..rest.len()].copy_from_slice(rest);
            h = fold_mul(h ^ u64::from_le_bytes(lanes), MIX2);
        }
        h
    }

    #[inline]
    fn key(self, cluster: &[u8], service: &[u8]) -> u64 {
        let h = Self::bytes(self.seed, cluster);
        fold_mul(Self::bytes(h, service), MIX)
    }
}

/// A `Hasher` for keys that are already hashes.
#[derive(Debug, Default)]
struct Prehashed(u64);

impl std::hash::Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed with this; fold anything else in, just in case.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[inline]
fn needs_region(interner: &SeriesInterner, id: SeriesId, region: Option<&str>) -> bool {
    region.is_some_and(|r| !r.is_empty()) && interner.key(id).is_some_and(|k| k.region.is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_gives_the_interners_ids_and_regions() {
        // (name, keys in order as (cluster, service, region))
        type Key<'a> = (&'a str, &'a str, Option<&'a str>);
        let cases: Vec<(&str, Vec<Key>)> = vec![
            (
                "same order twice",
                vec![
                    ("a", "x", None),
                    ("b", "x", None),
                    ("a", "x", None),
                    ("b", "x", None),
                ],
            ),
            (
                "order changes",
                vec![
                    ("a", "x", None),
                    ("b", "x", None),
                    ("c", "x", None),
                    ("c", "x", None),
                    ("a", "x", None),
                    ("b", "x", None),
                    ("a", "x", None),
                ],
            ),
            (
                "region arrives on a guessed series",
                vec![
                    ("a", "x", None),
                    ("b", "x", None),
                    ("a", "x", None),
                    ("b", "x", Some("")),
                    ("a", "x", None),
                    ("b", "x", Some("eu-west-1")),
                    ("a", "x", None),
                    ("b", "x", Some("us-east-1")),
                ],
            ),
            (
                "cluster and service swapped",
                vec![
                    ("a", "b", None),
                    ("b", "a", None),
                    ("a", "b", None),
                    ("b", "a", None),
                ],
            ),
        ];
        for (name, keys) in cases {
            let mut plain = SeriesInterner::new();
            let mut cached = SeriesInterner::new();
            let mut cache = SeriesCache::default();
            for (i, (c, s, r)) in keys.iter().enumerate() {
                let want = plain.intern(c, s, *r);
                let got = cache.id(&mut cached, c, s, *r);
                assert_eq!(got, want, "case {name:?}, key {i}");
            }
            assert_eq!(cached.keys(), plain.keys(), "case {name:?}");
        }
    }

    #[test]
    fn cache_survives_hash_collisions_and_a_continued_interner() {
        // An interner that already knows two series, as after a restart from a checkpoint.
        let mut interner = SeriesInterner::new();
        interner.intern("a", "x", None);
        interner.intern("b", "x", Some("eu"));
        let mut plain = interner.clone();
        let mut cache = SeriesCache::default();
        // Make "c/x" collide with "a/x": its index slot already names another series.
        let forged = cache.hasher.key(b"c", b"x");
        cache.index.insert(forged, 0);
        for (c, s, r) in [
            ("b", "x", None),
            ("c", "x", Some("us")),
            ("a", "x", Some("us")),
            ("c", "x", None),
            ("a", "x", None),
            ("c", "x", None),
        ] {
            let want = plain.intern(c, s, r);
            assert_eq!(cache.id(&mut interner, c, s, r), want, "{c}/{s}");
        }
        assert_eq!(interner.keys(), plain.keys());
        // Keys differing only in where the cluster ends hash apart (not required, but cheap).
        let h = cache.hasher;
        assert_ne!(h.key(b"ab", b"c"), h.key(b"a", b"bc"));
        assert_ne!(h.key(b"a", b""), h.key(b"a\0", b""));
    }

    #[test]
    fn one_chunk_is_handed_over_and_several_are_joined_in_order() {
        let row = |ts: i64, retries: Option<u64>| Row {
            cluster: "c".into(),
            service: "s".into(),
            region: None,
            ts_ms: ts,
            interval_ms: 10_000,
            requests: 10,
            errors: 1,
            retries,
            latency_p50_ms: None,
            latency_p99_ms: Some(2.5),
            db_pool_active: None,
            db_pool_max: None,
            db_pool_pending: None,
        };
        let mut cols = Columns::new(4);
        assert!(cols.take_batch().is_none());

        // Rows only: no validity bitmap where every value is present.
        cols.push_row(0, &row(1, Some(1)));
        cols.push_row(0, &row(2, Some(2)));
        let b = cols.take_batch().unwrap();
        assert_eq!(b.num_rows(), 2);
        assert!(b.column(5).nulls().is_none());
        assert_eq!(b.column(6).null_count(), 2);
        assert!(cols.take_batch().is_none());

        // Rows, a chunk, rows: kept in arrival order.
        let chunk = {
            let mut r = RowColumns::with_capacity(1);
            r.push(7, &row(3, None));
            r.finish()
        };
        cols.push_row(1, &row(2, Some(5)));
        cols.push_chunk(chunk.clone());
        cols.push_row(2, &row(4, Some(6)));
        assert_eq!(cols.len(), 3);
        let b = cols.take_batch().unwrap();
        let ids = b.column(0).as_any().downcast_ref::<U32s>().unwrap();
        assert_eq!(ids.values().as_ref(), &[1, 7, 2]);
        let retries = b.column(5).as_any().downcast_ref::<U64s>().unwrap();
        assert_eq!(
            retries.iter().collect::<Vec<_>>(),
            vec![Some(5), None, Some(6)]
        );
        // A null slot holds 0.
        assert_eq!(retries.values()[1], 0);

        // A lone chunk comes back without a copy.
        cols.push_chunk(chunk.clone());
        let b = cols.take_batch().unwrap();
        let ids = b.column(0).as_any().downcast_ref::<U32s>().unwrap();
        assert_eq!(ids.values().as_ptr(), chunk.series_id.values().as_ptr());
    }
}
