//! [`Col`]: a growable column for the struct-of-arrays state, whose first element is placed
//! at a chosen offset within a 4 KiB page.
//!
//! Why: a kernel walks a dozen or more columns in step, reading and writing entry `i` of each.
//! Large allocations come straight from the operating system, page-aligned (glibc's `malloc`
//! above its mmap threshold, and most other allocators), so every column would start at the
//! same offset within a page. Entry `i` of every column then lands in the same set of the L1
//! cache (which holds eight lines per set), and every load shares the low 12 address bits of
//! the stores just issued to the other columns, which the core must check for a dependency
//! that is not there. On 100k series that halved the detector's throughput (21 M samples/s
//! against 40 M, measured with glibc made to use mmap for every large column). Whether it
//! happened depended on what the process had allocated and freed before: a column placed
//! here does not.
//!
//! Each column that grows past [`PLACE_FROM`] bytes takes the next slot of a process-wide
//! counter and keeps it: slot `k` starts [`STEP`]` * k` bytes (modulo a page) into its page,
//! so the columns allocated one after the other (a state's fields, in order) start on
//! different cache lines. Smaller columns are plain vectors: they sit in the allocator's heap
//! at whatever offsets it gives, and would waste up to a page each.
//!
//! Where a column sits changes no result, only how fast the kernels run over it.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};

const PAGE: usize = 4096;
/// Bytes between the page offsets of successive slots: nine cache lines. Nine is coprime with
/// the 64 lines of a page, so 64 slots in a row start on 64 different lines, and columns next
/// to each other in the sequence are far apart within the page (a load from one column does
/// not alias, by its low 12 bits, a store to the next one a few rows back).
const STEP: usize = 9 * 64;
/// Columns of at least this many bytes are placed; smaller ones are left where the allocator
/// puts them.
const PLACE_FROM: usize = 2048;

/// The next slot to hand out (process-wide; any order of handing out is correct).
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

/// The page offset of slot `k`.
fn slot_offset(k: usize) -> usize {
    k % (PAGE / 64) * STEP % PAGE
}

/// A growable column of `T`, dereferencing to `[T]`. Its entries live in `buf[off..]`; the
/// first `off` entries of `buf` are padding that places entry 0 at the column's slot. It
/// serializes exactly as a `Vec<T>` does, so checkpoints keep their format.
pub struct Col<T> {
    buf: Vec<T>,
    off: usize,
    /// Page offset in bytes of entry 0 once the column is placed (`usize::MAX`: not yet).
    slot: usize,
}

impl<T> Col<T> {
    /// An empty column (no allocation).
    pub const fn new() -> Self {
        Self {
            buf: Vec::new(),
            off: 0,
            slot: usize::MAX,
        }
    }
}

impl<T: Copy + Default> Col<T> {
    /// A column holding `v` (copied into a placed buffer when large).
    pub fn from_vec(v: Vec<T>) -> Self {
        let mut c = Self::new();
        c.extend_from_slice(&v);
        c
    }

    /// Room for `extra` more entries without moving the column. Grows by doubling; a large
    /// column's new buffer is over-allocated by a page so entry 0 can be put at its slot.
    #[inline]
    pub fn reserve(&mut self, extra: usize) {
        let len = self.len();
        let need = len + extra;
        if self.off + need <= self.buf.capacity() {
            return;
        }
        self.grow(need.max(2 * len).max(8));
    }

    #[cold]
    #[inline(never)]
    fn grow(&mut self, cap: usize) {
        let size = std::mem::size_of::<T>().max(1);
        let place = cap * size >= PLACE_FROM && PAGE % size == 0;
        let mut buf: Vec<T> = Vec::with_capacity(cap + if place { PAGE / size } else { 0 });
        let off = if place {
            if self.slot == usize::MAX {
                self.slot = slot_offset(NEXT_SLOT.fetch_add(1, Ordering::Relaxed));
            }
            // Entries before entry 0, so that it starts `slot` bytes into a page. The buffer
            // is aligned to `T`, and so are slots (multiples of a cache line), so this is a
            // whole number of entries.
            let at = buf.as_ptr() as usize % PAGE;
            (self.slot + PAGE - at) % PAGE / size
        } else {
            0
        };
        buf.resize(off, T::default());
        buf.extend_from_slice(self);
        self.buf = buf;
        self.off = off;
    }

    #[inline]
    pub fn push(&mut self, v: T) {
        self.reserve(1);
        self.buf.push(v);
    }

    /// Appends every item of `it`. Room for its lower size bound is made first, so an exact
    /// size iterator (a mapped slice) appends in one tight loop without moving the column.
    #[inline(always)]
    pub fn extend<I: IntoIterator<Item = T>>(&mut self, it: I) {
        let it = it.into_iter();
        self.reserve(it.size_hint().0);
        self.buf.extend(it);
    }

    #[inline]
    pub fn extend_from_slice(&mut self, v: &[T]) {
        self.reserve(v.len());
        self.buf.extend_from_slice(v);
    }

    /// Grows (with `v`) or shrinks to `n` entries.
    pub fn resize(&mut self, n: usize, v: T) {
        self.reserve(n.saturating_sub(self.len()));
        self.buf.resize(self.off + n, v);
    }

    /// Empties the column, keeping its buffer (and place).
    pub fn clear(&mut self) {
        self.buf.truncate(self.off);
    }
}

impl<T> Deref for Col<T> {
    type Target = [T];
    #[inline(always)]
    fn deref(&self) -> &[T] {
        // `off <= buf.len()` always holds: padding is written before any entry.
        &self.buf[self.off..]
    }
}

impl<T> DerefMut for Col<T> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.buf[self.off..]
    }
}

impl<'a, T> IntoIterator for &'a Col<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<'a, T> IntoIterator for &'a mut Col<T> {
    type Item = &'a mut T;
    type IntoIter = std::slice::IterMut<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter_mut()
    }
}

impl<T> Default for Col<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Copy + Default> Clone for Col<T> {
    /// A copy with the same slot (it is laid out as the original was).
    fn clone(&self) -> Self {
        let mut c = Self {
            buf: Vec::new(),
            off: 0,
            slot: self.slot,
        };
        c.extend_from_slice(self);
        c
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Col<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<T: PartialEq> PartialEq for Col<T> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl<T: serde::Serialize> serde::Serialize for Col<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de, T: serde::Deserialize<'de> + Copy + Default> serde::Deserialize<'de> for Col<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<T>::deserialize(d).map(Self::from_vec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page_offset<T>(c: &Col<T>) -> usize {
        c.as_ptr() as usize % PAGE
    }

    #[test]
    fn behaves_as_a_vector() {
        let mut c: Col<u32> = Col::new();
        let mut v: Vec<u32> = Vec::new();
        // Through the placing threshold and several doublings, with every operation.
        for round in 0..3u32 {
            for i in 0..1500 {
                c.push(i * round);
                v.push(i * round);
            }
            c.extend((0..700).map(|x| x + round));
            v.extend((0..700).map(|x| x + round));
            c.extend_from_slice(&[7, 8, 9]);
            v.extend_from_slice(&[7, 8, 9]);
            c.resize(c.len() + 300, 5);
            v.resize(v.len() + 300, 5);
            assert_eq!(&c[..], &v[..]);
            c.resize(c.len() - 10, 0);
            v.resize(v.len() - 10, 0);
            assert_eq!(&c[..], &v[..]);
        }
        c[3] = 42;
        v[3] = 42;
        assert_eq!(c.clone(), Col::from_vec(v.clone()));
        c.clear();
        assert!(c.is_empty());
        c.resize(10, 1);
        assert_eq!(&c[..], &[1; 10]);
    }

    #[test]
    fn large_columns_start_at_their_slot_and_keep_it_as_they_grow() {
        let mut cols: Vec<Col<f32>> = (0..4).map(|_| Col::new()).collect();
        for c in &mut cols {
            c.resize(100_000, 1.0);
        }
        let offsets: Vec<usize> = cols.iter().map(page_offset).collect();
        for (c, &at) in cols.iter().zip(&offsets) {
            assert_eq!(at % 64, 0, "a slot starts a cache line");
            assert_eq!(at, c.slot);
        }
        // Slots handed out one after the other start on different lines. (Other tests place
        // columns concurrently, so these four need not have consecutive slots.)
        let mut lines: Vec<usize> = (0..PAGE / 64).map(|k| slot_offset(k) / 64).collect();
        lines.sort_unstable();
        lines.dedup();
        assert_eq!(lines.len(), PAGE / 64);
        // Growing moves a column to a new buffer, at the same offset.
        let before = offsets[0];
        cols[0].resize(400_000, 2.0);
        assert_eq!(page_offset(&cols[0]), before);
        assert_eq!(cols[0][99_999], 1.0);
        assert_eq!(cols[0][100_000], 2.0);
        // A copy is laid out as the original.
        assert_eq!(page_offset(&cols[1].clone()), offsets[1]);
    }

    #[test]
    fn small_columns_are_not_padded() {
        let mut c: Col<f64> = Col::new();
        c.extend([1.0, 2.0, 3.0]);
        assert_eq!(c.off, 0);
        assert_eq!(c.slot, usize::MAX);
    }

    #[test]
    fn serializes_as_a_vector_does() {
        let v: Vec<f32> = (0..5000).map(|x| x as f32 * 0.5).collect();
        let c = Col::from_vec(v.clone());
        let (bc, bv) = (
            bincode::serialize(&c).expect("col"),
            bincode::serialize(&v).expect("vec"),
        );
        assert_eq!(bc, bv);
        let back: Col<f32> = bincode::deserialize(&bv).expect("decode");
        assert_eq!(&back[..], &v[..]);
        assert_eq!(
            serde_json::to_string(&c.clone()).expect("json"),
            serde_json::to_string(&v).expect("json")
        );
    }
}
