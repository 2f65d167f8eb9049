//! Series keys and their interning to dense ids.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// Dense id of a series: the index into every per-series state vector.
pub type SeriesId = u32;

/// What identifies a series, plus the labels carried on its alerts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SeriesKey {
    pub cluster: String,
    pub service: String,
    /// Carried on alerts; the first non-empty region seen for the series wins.
    pub region: Option<String>,
}

/// Interns `(cluster, service)` pairs to dense ids `0..len`.
///
/// Ids are handed out in first-seen order and never reused, so the same input in the same
/// order always gives the same ids.
#[derive(Debug, Default, Clone)]
pub struct SeriesInterner {
    /// cluster -> service -> id; nested so a lookup by `&str` needs no allocation.
    ids: HashMap<String, HashMap<String, SeriesId>>,
    keys: Vec<SeriesKey>,
}

impl SeriesInterner {
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns the id of the series, interning it if new. `None` only if more than `u32::MAX`
    /// series were interned.
    pub fn intern(
        &mut self,
        cluster: &str,
        service: &str,
        region: Option<&str>,
    ) -> Option<SeriesId> {
        // Look up without allocating: the common case is a known series.
        if let Some(&id) = self.ids.get(cluster).and_then(|m| m.get(service)) {
            let key = &mut self.keys[id as usize];
            if key.region.is_none() {
                if let Some(r) = region.filter(|r| !r.is_empty()) {
                    key.region = Some(r.to_owned());
                }
            }
            return Some(id);
        }
        let id = SeriesId::try_from(self.keys.len()).ok()?;
        self.ids
            .entry(cluster.to_owned())
            .or_default()
            .insert(service.to_owned(), id);
        self.keys.push(SeriesKey {
            cluster: cluster.to_owned(),
            service: service.to_owned(),
            region: region.filter(|r| !r.is_empty()).map(str::to_owned),
        });
        Some(id)
    }

    pub fn key(&self, id: SeriesId) -> Option<&SeriesKey> {
        self.keys.get(id as usize)
    }

    pub fn keys(&self) -> &[SeriesKey] {
        &self.keys
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}
