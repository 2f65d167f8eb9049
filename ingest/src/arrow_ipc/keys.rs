//! Series ids for the key columns of Arrow batches, without the interner's hash maps on the
//! common path.
//!
//! [`KeyIndex`] mirrors the interner's keys in id order: every series' cluster bytes end to end
//! in one flat arena and its service bytes in another, each with Arrow-style offsets, plus a
//! seeded hash table from a key to its id. The interner hands out ids in first-seen order and
//! a producer sends its series in a stable order, so the rows of a batch mostly run through
//! consecutive ids, whatever the batch's alignment with the producer's cycle (a partition's
//! series count rarely divides a batch's rows). A stretch of rows whose keys equal the keys of
//! ids `g, g+1, ...` is found with one hash lookup for its first row, then two passes over the
//! whole stretch per key column: the value lengths (from the offsets, compared 16 at a time)
//! and the value bytes (one `memcmp`). Rows in no stable order cost one hash lookup each. Only
//! series the mirror has not seen reach the interner, plus the rare row that brings the first
//! region of a series.
//!
//! The ids are exactly the interner's, as a row-by-row decoder would get them: a key found here
//! was compared byte for byte with the key of the id it maps to (which the interner gave out and
//! never changes); new series are interned in row order, so they get the ids row order gives
//! them; and regions follow the interner's rule (the first non-empty region of a series is
//! kept): a row bringing a region to a series that has none yet goes to the interner, in row
//! order, before any later row is looked at.

use arrow_array::{Array, BinaryArray};
use detector::SeriesInterner;

use crate::json::{JsonDecoder, RejectReason, Rejection};

/// An empty slot of the hash table (and the one id never mirrored).
const EMPTY: u32 = u32::MAX;
/// Rows compared per step when looking for the end of a run (one branch per block).
const BLOCK: usize = 16;

/// Series ids of key columns through a mirror of the interner (see the module docs).
#[derive(Debug)]
pub(crate) struct KeyIndex {
    cluster: Arena,
    service: Arena,
    /// The hash of every mirrored key, by id (compared before the bytes).
    hashes: Vec<u64>,
    /// Whether the interner had a region for the id when last asked.
    has_region: Vec<bool>,
    /// Ids whose `has_region` is false; when none is left, regions need no look at all.
    regionless: usize,
    /// Open addressing with linear probing: ids, or [`EMPTY`]; at most half full.
    table: Vec<u32>,
    seed: u64,
}

impl Default for KeyIndex {
    fn default() -> Self {
        use std::hash::{BuildHasher, Hasher};
        // A random seed per decoder: which keys collide cannot be planned by a producer.
        let seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        Self {
            cluster: Arena::default(),
            service: Arena::default(),
            hashes: Vec::new(),
            has_region: Vec::new(),
            regionless: 0,
            table: Vec::new(),
            seed,
        }
    }
}

/// Byte strings end to end: string `i` is `bytes[offsets[i]..offsets[i + 1]]`.
#[derive(Debug)]
struct Arena {
    bytes: Vec<u8>,
    offsets: Vec<u32>,
}

impl Default for Arena {
    fn default() -> Self {
        Self {
            bytes: Vec::new(),
            offsets: vec![0],
        }
    }
}

impl Arena {
    fn get(&self, i: usize) -> &[u8] {
        &self.bytes[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }

    /// Whether `extra` more bytes still fit u32 offsets.
    fn fits(&self, extra: usize) -> bool {
        self.bytes
            .len()
            .checked_add(extra)
            .is_some_and(|n| u32::try_from(n).is_ok())
    }

    fn push(&mut self, b: &[u8]) {
        self.bytes.extend_from_slice(b);
        // `fits` was asked first.
        self.offsets.push(self.bytes.len() as u32);
    }

    /// How many leading rows of a column (`offsets` into `values`, one more offset than rows)
    /// equal the strings from `first` on, comparing at most `max` rows.
    ///
    /// In windows that double from [`BLOCK`] rows: the lengths of a window are compared before
    /// its bytes, and a window is only taken when the one before matched whole, so the work is
    /// in proportion to the rows that match (a run), not to the rows left in the batch.
    fn matching(&self, first: usize, offsets: &[i32], values: &[u8], max: usize) -> usize {
        let max = max
            .min(offsets.len().saturating_sub(1))
            .min((self.offsets.len() - 1).saturating_sub(first));
        let mut done = 0;
        let mut window = BLOCK;
        while done < max {
            let w = window.min(max - done);
            let m = self.matching_window(first + done, &offsets[done..=done + w], values);
            done += m;
            if m < w {
                break;
            }
            window *= 2;
        }
        done
    }

    /// [`matching`](Self::matching) over all the rows of `rows` (which the arena has).
    fn matching_window(&self, first: usize, rows: &[i32], values: &[u8]) -> usize {
        let w = rows.len() - 1;
        let mine = &self.offsets[first..=first + w];
        // Equal lengths while the offsets, each taken from its own start, stay equal.
        let same_len = first_shift_mismatch(rows, mine).map_or(w, |k| k - 1);
        if same_len == 0 {
            return 0;
        }
        let (r0, m0) = (rows[0] as usize, mine[0] as usize);
        let theirs = &values[r0..rows[same_len] as usize];
        let ours = &self.bytes[m0..mine[same_len] as usize];
        if theirs == ours {
            return same_len;
        }
        // The rows that end before the first differing byte match.
        let at = first_difference(theirs, ours);
        rows[1..=same_len].partition_point(|&end| end as usize - r0 <= at)
    }
}

/// Whether two short byte strings are equal: a few word compares for keys up to 16 bytes
/// (most are), `memcmp` beyond.
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    match n {
        8..=16 => word(a) == word(b) && word(&a[n - 8..]) == word(&b[n - 8..]),
        4..=7 => half(a) == half(b) && half(&a[n - 4..]) == half(&b[n - 4..]),
        _ => a == b,
    }
}

/// The first `k` at which `a[k] - a[0]` and `b[k] - b[0]` differ (both slices start a run of
/// offsets), [`BLOCK`] offsets per step. Equivalently, where `a[k] - b[k]` (wrapping) stops
/// being `a[0] - b[0]`: one subtraction and one compare per offset, in vector lanes.
fn first_shift_mismatch(a: &[i32], b: &[u32]) -> Option<usize> {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let d = (a[0] as u32).wrapping_sub(b[0]);
    let differs = |x: i32, y: u32| (x as u32).wrapping_sub(y) != d;
    let mut start = 0;
    for (ca, cb) in a.chunks_exact(BLOCK).zip(b.chunks_exact(BLOCK)) {
        let mut any = false;
        for k in 0..BLOCK {
            any |= differs(ca[k], cb[k]);
        }
        if any {
            break;
        }
        start += BLOCK;
    }
    a[start..]
        .iter()
        .zip(&b[start..])
        .position(|(&x, &y)| differs(x, y))
        .map(|k| start + k)
}

/// The index of the first byte at which two slices of equal length differ (`a.len()` if none).
fn first_difference(a: &[u8], b: &[u8]) -> usize {
    const CHUNK: usize = 64;
    let mut start = 0;
    for (ca, cb) in a.chunks(CHUNK).zip(b.chunks(CHUNK)) {
        if ca != cb {
            return start + ca.iter().zip(cb).position(|(x, y)| x != y).unwrap_or(0);
        }
        start += ca.len();
    }
    a.len()
}

const K1: u64 = 0x9E37_79B9_7F4A_7C15;
const K2: u64 = 0xD6E8_FEB8_6659_FD93;

/// 64x64 -> 128-bit multiply, halves folded: the mixing step of the wyhash/foldhash family.
#[inline]
fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

#[inline]
fn word(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[..8]);
    u64::from_le_bytes(w)
}

#[inline]
fn half(b: &[u8]) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[..4]);
    u32::from_le_bytes(w)
}

/// Up to 16 bytes as two words: the first and last 8 (or 4) bytes, overlapping when
/// shorter than 16 (or 8).
#[inline]
fn short(b: &[u8]) -> (u64, u64) {
    let n = b.len();
    match n {
        0 => (0, 0),
        1..=3 => (
            u64::from(b[0]) | u64::from(b[n / 2]) << 8 | u64::from(b[n - 1]) << 16,
            0,
        ),
        4..=7 => (u64::from(half(b)), u64::from(half(&b[n - 4..]))),
        _ => (word(b), word(&b[n - 8..])),
    }
}

/// `h` mixed with the length and bytes of `b`: one multiply per 16 bytes (a key of up to 16
/// bytes, most keys, costs one), the overlaps of [`short`] made harmless by the length mixed
/// in first.
#[inline]
fn mix(h: u64, b: &[u8]) -> u64 {
    let mut h = h ^ (b.len() as u64).wrapping_mul(K1);
    let mut rest = b;
    while rest.len() > 16 {
        h = fold_mul(h ^ word(rest) ^ K1, word(&rest[8..]) ^ K2);
        rest = &rest[16..];
    }
    let (lo, hi) = short(rest);
    fold_mul(h ^ lo ^ K1, hi ^ K2)
}

fn not_utf8(what: &str) -> Rejection {
    Rejection::new(RejectReason::NotUtf8, format!("{what} is not valid UTF-8"))
}

fn text<'b>(b: &'b [u8], what: &str) -> Result<&'b str, Rejection> {
    std::str::from_utf8(b).map_err(|_| not_utf8(what))
}

impl KeyIndex {
    fn hash(&self, cluster: &[u8], service: &[u8]) -> u64 {
        mix(mix(self.seed, cluster), service)
    }

    fn len(&self) -> usize {
        self.hashes.len()
    }

    /// The id of a key the mirror holds.
    fn find(&self, cluster: &[u8], service: &[u8]) -> Option<usize> {
        if self.table.is_empty() {
            return None;
        }
        let h = self.hash(cluster, service);
        let mask = self.table.len() - 1;
        let mut slot = h as usize & mask;
        loop {
            let id = self.table[slot];
            if id == EMPTY {
                return None;
            }
            let id = id as usize;
            if self.hashes[id] == h
                && same_bytes(self.cluster.get(id), cluster)
                && same_bytes(self.service.get(id), service)
            {
                return Some(id);
            }
            slot = (slot + 1) & mask;
        }
    }

    fn insert(&mut self, id: u32, h: u64) {
        if self.len() * 2 > self.table.len() {
            let slots = (self.table.len() * 2).max(64);
            self.table = vec![EMPTY; slots];
            // Every id so far but this one (whose hash is already pushed) goes back in.
            for (old, &oh) in self.hashes[..id as usize].iter().enumerate() {
                Self::place(&mut self.table, old as u32, oh);
            }
        }
        Self::place(&mut self.table, id, h);
    }

    fn place(table: &mut [u32], id: u32, h: u64) {
        let mask = table.len() - 1;
        let mut slot = h as usize & mask;
        while table[slot] != EMPTY {
            slot = (slot + 1) & mask;
        }
        table[slot] = id;
    }

    /// Mirrors the series the interner has and the mirror has not (interned by this decoder
    /// or any other format since the last call).
    fn sync(&mut self, interner: &SeriesInterner) {
        for key in interner.keys().get(self.len()..).unwrap_or_default() {
            let id = self.len();
            let (c, s) = (key.cluster.as_bytes(), key.service.as_bytes());
            if id >= EMPTY as usize || !self.cluster.fits(c.len()) || !self.service.fits(s.len()) {
                // Beyond what the mirror can address: those series always take the
                // interner's path. (Billions of series; never in practice.)
                return;
            }
            let h = self.hash(c, s);
            self.cluster.push(c);
            self.service.push(s);
            self.hashes.push(h);
            let region = key.region.is_some();
            self.has_region.push(region);
            self.regionless += usize::from(!region);
            self.insert(id as u32, h);
        }
    }

    /// Whether a batch's rows need their regions looked at: only while some mirrored series
    /// has none, and only when the batch has a region column with a value in it.
    fn regions_wanted(&self, region: Option<&BinaryArray>) -> bool {
        self.regionless > 0 && region.is_some()
    }

    /// A row with a region, for a series the mirror thinks has none: the interner decides
    /// (it keeps the first non-empty one), then the mirror asks it whether it has one now.
    fn offer_region(
        &mut self,
        out: &mut JsonDecoder,
        id: usize,
        keys: (&[u8], &[u8]),
        region: &[u8],
    ) -> Result<(), Rejection> {
        if region.is_empty() || self.has_region[id] {
            return Ok(());
        }
        let (cluster, service) = (text(keys.0, "cluster")?, text(keys.1, "service")?);
        out.series_id(cluster, service, Some(text(region, "region")?))?;
        if out
            .interner()
            .key(id as u32)
            .is_some_and(|k| k.region.is_some())
        {
            self.has_region[id] = true;
            self.regionless -= 1;
        }
        Ok(())
    }

    /// The series id of every row of a batch's key columns (no nulls: the rows are checked),
    /// interning new series in row order. `region`: `None` when the column is absent or all
    /// null.
    pub(crate) fn ids(
        &mut self,
        cluster: &BinaryArray,
        service: &BinaryArray,
        region: Option<&BinaryArray>,
        out: &mut JsonDecoder,
    ) -> Result<Vec<u32>, Rejection> {
        self.sync(out.interner());
        let n = cluster.len().min(service.len());
        let (c_off, c_val) = (cluster.value_offsets(), cluster.value_data());
        let (s_off, s_val) = (service.value_offsets(), service.value_data());
        let region_of = |i: usize| region.filter(|r| r.is_valid(i)).map(|r| r.value(i));
        let mut ids = Vec::with_capacity(n);
        let mut i = 0;
        while i < n {
            let (c, s) = (cluster.value(i), service.value(i));
            let Some(first) = self.find(c, s) else {
                // Not mirrored: a new series (or one beyond the mirror), through the interner.
                let r = region_of(i).map(|r| text(r, "region")).transpose()?;
                let id = out.series_id(text(c, "cluster")?, text(s, "service")?, r)?;
                self.sync(out.interner());
                ids.push(id);
                i += 1;
                continue;
            };
            // This row is `first`; how many after it follow on `first + 1, first + 2, ...`?
            // The next row alone first, so rows in no particular order cost one more key
            // comparison, not a search for a run.
            let next = first + 1;
            let run = if i + 1 < n
                && next < self.len()
                && same_bytes(self.cluster.get(next), cluster.value(i + 1))
                && same_bytes(self.service.get(next), service.value(i + 1))
            {
                let c_run = self
                    .cluster
                    .matching(next + 1, &c_off[i + 2..], c_val, n - i - 2);
                2 + self
                    .service
                    .matching(next + 1, &s_off[i + 2..], s_val, c_run)
            } else {
                1
            };
            if self.regions_wanted(region) {
                for k in 0..run {
                    if let Some(r) = region_of(i + k) {
                        let keys = (cluster.value(i + k), service.value(i + k));
                        self.offer_region(out, first + k, keys, r)?;
                    }
                }
            }
            // `first + run <= self.len() <= u32::MAX`.
            ids.extend(first as u32..(first + run) as u32);
            i += run;
        }
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::DecoderOptions;

    fn column(values: &[&str]) -> BinaryArray {
        BinaryArray::from_iter_values(values.iter().map(|v| v.as_bytes()))
    }

    fn decoder() -> JsonDecoder {
        JsonDecoder::new(DecoderOptions::default())
    }

    /// The ids a row-by-row interner gives the same rows, on an interner that saw `before`.
    fn reference(before: &[(&str, &str)], rows: &[(&str, &str, Option<&str>)]) -> Vec<u32> {
        let mut interner = SeriesInterner::new();
        for (c, s) in before {
            interner.intern(c, s, None);
        }
        rows.iter()
            .map(|(c, s, r)| interner.intern(c, s, *r).unwrap())
            .collect()
    }

    #[test]
    fn runs_in_any_alignment_give_the_interners_ids() {
        let series: Vec<(String, String)> = (0..13)
            .map(|i| (format!("prod-{}", i % 4), format!("svc-{i}")))
            .collect();
        let cycle = |start: usize, n: usize| -> Vec<(&str, &str, Option<&str>)> {
            (start..start + n)
                .map(|i| {
                    let (c, s) = &series[i % series.len()];
                    (c.as_str(), s.as_str(), None)
                })
                .collect()
        };
        let mut reversed = cycle(0, 13);
        reversed.reverse();
        // (name, batches decoded one after the other by one index)
        type Rows<'a> = Vec<(&'a str, &'a str, Option<&'a str>)>;
        let cases: Vec<(&str, Vec<Rows>)> = vec![
            ("one batch, one cycle", vec![cycle(0, 13)]),
            (
                "batches cutting the cycle",
                vec![cycle(0, 20), cycle(20, 20), cycle(40, 7)],
            ),
            (
                "first batch starts mid-cycle",
                vec![cycle(5, 30), cycle(35, 30)],
            ),
            (
                "reversed after in order",
                vec![cycle(0, 13), reversed.clone()],
            ),
            ("reversed first", vec![reversed, cycle(3, 40)]),
            ("one row at a time", (0..30).map(|i| cycle(i, 1)).collect()),
            (
                "a new series inside a known stretch",
                vec![
                    cycle(0, 13),
                    vec![
                        ("prod-0", "svc-0", None),
                        ("prod-1", "svc-1", None),
                        ("prod-9", "svc-new", None),
                        ("prod-2", "svc-2", None),
                        ("prod-3", "svc-3", None),
                    ],
                ],
            ),
            (
                "same lengths, other bytes",
                vec![
                    cycle(0, 13),
                    vec![
                        ("prod-0", "svc-0", None),
                        ("prod-1", "svc-7", None),
                        ("prod-2", "svc-2", None),
                    ],
                ],
            ),
        ];
        for (name, batches) in cases {
            let mut index = KeyIndex::default();
            let mut out = decoder();
            let mut got = Vec::new();
            for rows in &batches {
                let c: Vec<&str> = rows.iter().map(|r| r.0).collect();
                let s: Vec<&str> = rows.iter().map(|r| r.1).collect();
                got.extend(index.ids(&column(&c), &column(&s), None, &mut out).unwrap());
            }
            let all: Vec<_> = batches.concat();
            assert_eq!(got, reference(&[], &all), "case {name:?}");
            let keys: Vec<(String, String)> = out
                .interner()
                .keys()
                .iter()
                .map(|k| (k.cluster.clone(), k.service.clone()))
                .collect();
            let want: Vec<(String, String)> = {
                let mut seen = Vec::new();
                for (c, s, _) in &all {
                    let k = (c.to_string(), s.to_string());
                    if !seen.contains(&k) {
                        seen.push(k);
                    }
                }
                seen
            };
            assert_eq!(keys, want, "case {name:?}: interned series");
        }
    }

    #[test]
    fn series_interned_elsewhere_are_found_and_regions_follow_the_interner() {
        let mut out = decoder();
        // Interned by another format first, one with a region, one without.
        out.series_id("a", "x", Some("eu")).unwrap();
        out.series_id("b", "x", None).unwrap();
        let mut index = KeyIndex::default();
        let c = column(&["b", "a", "c", "b", "c"]);
        let s = column(&["x", "x", "y", "x", "y"]);
        let r = BinaryArray::from(vec![
            Some("us".as_bytes()),
            Some("us".as_bytes()),
            None,
            Some("ap".as_bytes()),
            Some("".as_bytes()),
        ]);
        let got = index.ids(&c, &s, Some(&r), &mut out).unwrap();
        assert_eq!(got, vec![1, 0, 2, 1, 2]);
        let regions: Vec<Option<&str>> = out
            .interner()
            .keys()
            .iter()
            .map(|k| k.region.as_deref())
            .collect();
        // `a` keeps its first region, `b` takes its first one in row order, `c` none (an
        // empty region is no region).
        assert_eq!(regions, vec![Some("eu"), Some("us"), None]);
        // Only `c` is still without a region.
        assert_eq!(index.regionless, 1);
        // A later batch brings `c` one.
        let got = index
            .ids(
                &column(&["c"]),
                &column(&["y"]),
                Some(&column(&["sa"])),
                &mut out,
            )
            .unwrap();
        assert_eq!(got, vec![2]);
        assert_eq!(out.interner().keys()[2].region.as_deref(), Some("sa"));
        assert_eq!(index.regionless, 0);
    }

    #[test]
    fn keys_hash_apart_and_compare_by_every_byte() {
        let index = KeyIndex::default();
        let long = |first: char, n: usize| format!("{first}{}", "a".repeat(n - 1));
        // (name, one key, another): every pair must hash apart and compare unequal.
        type Key<'a> = (String, &'a str);
        let cases: Vec<(&str, Key, Key)> = vec![
            ("split moved", ("ab".into(), "c"), ("a".into(), "bc")),
            ("swapped", ("a".into(), "b"), ("b".into(), "a")),
            (
                "long, last byte",
                ("abcdefghijk".into(), "s"),
                ("abcdefghijl".into(), "s"),
            ),
            (
                "eight bytes",
                ("abcdefgh".into(), "s"),
                ("abcdefgi".into(), "s"),
            ),
            (
                "five bytes, middle",
                ("abcde".into(), "s"),
                ("abxde".into(), "s"),
            ),
            (
                "three bytes, middle",
                ("abc".into(), "s"),
                ("axc".into(), "s"),
            ),
            (
                "over 16 bytes, length",
                (long('a', 20), "s"),
                (long('a', 19), "s"),
            ),
            (
                "over 16 bytes, first byte",
                (long('x', 40), "s"),
                (long('y', 40), "s"),
            ),
            (
                "33 bytes, middle",
                (long('a', 33), "s"),
                (long('a', 33).replacen("aaa", "aba", 5), "s"),
            ),
        ];
        for (name, a, b) in cases {
            let (a0, b0) = (a.0.as_bytes(), b.0.as_bytes());
            assert_ne!(
                index.hash(a0, a.1.as_bytes()),
                index.hash(b0, b.1.as_bytes()),
                "case {name:?}"
            );
            assert!(!same_bytes(a0, b0) || a.1 != b.1, "case {name:?}");
            assert!(same_bytes(a0, a0), "case {name:?}");
            assert_eq!(same_bytes(a0, b0), a0 == b0, "case {name:?}");
        }
    }

    #[test]
    fn matching_stops_at_the_first_different_row() {
        let mut arena = Arena::default();
        for k in ["aa", "bbb", "c", "dd"] {
            arena.push(k.as_bytes());
        }
        // (name, rows, first id, max, expected)
        let cases: [(&str, &[&str], usize, usize, usize); 7] = [
            ("all", &["aa", "bbb", "c", "dd"], 0, 9, 4),
            ("from the second id", &["bbb", "c", "dd", "zz"], 1, 9, 3),
            ("capped", &["aa", "bbb", "c"], 0, 2, 2),
            ("length differs", &["aa", "bb", "c"], 0, 9, 1),
            ("byte differs", &["aa", "bbx", "c"], 0, 9, 1),
            ("first row differs", &["ab", "bbb"], 0, 9, 0),
            ("past the last id", &["dd", "ee"], 3, 9, 1),
        ];
        for (name, rows, first, max, want) in cases {
            let col = column(rows);
            let got = arena.matching(first, col.value_offsets(), col.value_data(), max);
            assert_eq!(got, want, "case {name:?}");
        }
        // Offsets that do not start at zero (a sliced column).
        let col = column(&["zz", "bbb", "c", "q"]).slice(1, 3);
        assert_eq!(
            arena.matching(1, col.value_offsets(), col.value_data(), 9),
            2
        );
    }
}
