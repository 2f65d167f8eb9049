//! The detector: event-time tick assembly (watermark, lateness, dedup), the kernels over each
//! closed tick, and the alert lifecycle.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use arrow_array::types::{
    ArrowPrimitiveType, Float64Type, TimestampMillisecondType, UInt32Type, UInt64Type,
};
use arrow_array::{Array, PrimitiveArray, RecordBatch};

use crate::alert::{alert_id, summary, AlertEvent, AlertKind, AlertState, Severity};
use crate::clock::FleetClock;
use crate::col::Col;
use crate::config::{ConfigError, DetectorConfig, Params};
use crate::kernels::{
    self, Common, LatencyCols, Marks, PoolCols, RatioCols, SuccessCols, SuccessParams,
};
use crate::schema;
use crate::series::{SeriesId, SeriesKey};
use crate::state::{readable, to_f, SeriesState, F};
use crate::stats::overdispersed_upper_tail;

/// Why a batch could not be read at all (individual samples are never rejected here: the
/// decoders do that, and late or duplicate samples are counted in [`DetectorStats`]).
#[derive(Debug, thiserror::Error)]
pub enum DetectorError {
    #[error("batch is missing column `{0}` or it has the wrong type")]
    Column(&'static str),
    #[error("batch refers to series id {id} but only {known} series keys were given")]
    UnknownSeries { id: SeriesId, known: usize },
}

/// Counters of what the detector did with the samples it was given.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetectorStats {
    /// Samples handed to the detector.
    pub samples: u64,
    /// Samples evaluated (in a tick, or folded in late but in order).
    pub processed: u64,
    /// Second and later copies of a (series, ts) already seen.
    pub duplicates: u64,
    /// Samples older than the watermark allows, or older than a newer sample of the same series
    /// that was already evaluated.
    pub too_late: u64,
    /// Samples that missed their tick but were still evaluated in order for their series.
    pub folded_late: u64,
    /// Ticks closed.
    pub ticks: u64,
    /// Per-cluster success drops not paged because the service's total was conserved.
    pub moves_suppressed: u64,
    /// Ticks closed before the watermark allowed, because the samples held for inputs read
    /// behind ([`Detector::set_frontier`]) passed `max_held_samples`. A sample of such a tick
    /// arriving afterwards is folded in late or counted too late. Not in snapshots (checkpoints
    /// keep their format): counted from the detector's start.
    #[serde(skip)]
    pub forced_closes: u64,
}

/// One sample as buffered while its tick is open.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Rows {
    sid: Col<u32>,
    dt: Col<F>,
    req: Col<F>,
    err: Col<F>,
    retries: Col<F>,
    p50: Col<F>,
    p99: Col<F>,
    pool_active: Col<F>,
    pool_max: Col<F>,
    pool_pending: Col<F>,
}

#[derive(Debug, Clone, Copy)]
struct Row {
    sid: u32,
    ts: i64,
    /// The interval in milliseconds (at least 1), for when the series' next sample is due.
    interval_ms: i64,
    dt: F,
    req: F,
    err: F,
    retries: F,
    p50: F,
    p99: F,
    pool_active: F,
    pool_max: F,
    pool_pending: F,
}

impl Rows {
    fn push(&mut self, r: &Row) {
        self.sid.push(r.sid);
        self.dt.push(r.dt);
        self.req.push(r.req);
        self.err.push(r.err);
        self.retries.push(r.retries);
        self.p50.push(r.p50);
        self.p99.push(r.p99);
        self.pool_active.push(r.pool_active);
        self.pool_max.push(r.pool_max);
        self.pool_pending.push(r.pool_pending);
    }

    fn clear(&mut self) {
        self.sid.clear();
        self.dt.clear();
        self.req.clear();
        self.err.clear();
        self.retries.clear();
        self.p50.clear();
        self.p99.clear();
        self.pool_active.clear();
        self.pool_max.clear();
        self.pool_pending.clear();
    }

    fn len(&self) -> usize {
        self.sid.len()
    }

    fn is_empty(&self) -> bool {
        self.sid.is_empty()
    }

    /// These rows in series order, into `out` (`order` is scratch). A tick holds at most one
    /// row per series, so the order is a scatter by series id when the ids are dense enough,
    /// and a sort otherwise.
    fn ordered_into(&self, order: &mut Vec<u32>, out: &mut Rows) {
        let n = self.len();
        let (lo, hi) = self
            .sid
            .iter()
            .fold((u32::MAX, 0), |(lo, hi), &s| (lo.min(s), hi.max(s)));
        let span = (hi - lo) as usize + 1;
        order.clear();
        let mut dense = span <= 4 * n;
        if dense {
            order.resize(span, u32::MAX);
            for (i, &s) in self.sid.iter().enumerate() {
                let slot = &mut order[(s - lo) as usize];
                dense &= *slot == u32::MAX;
                *slot = i as u32;
            }
            order.retain(|&i| i != u32::MAX);
        }
        if !dense || order.len() != n {
            // Sparse ids (or, defensively, a series twice): sort the row numbers.
            order.clear();
            order.extend(0..n as u32);
            order.sort_by_key(|&i| self.sid[i as usize]);
        }
        out.sid.clear();
        out.sid.extend(order.iter().map(|&i| self.sid[i as usize]));
        for (to, from) in [
            (&mut out.dt, &self.dt),
            (&mut out.req, &self.req),
            (&mut out.err, &self.err),
            (&mut out.retries, &self.retries),
            (&mut out.p50, &self.p50),
            (&mut out.p99, &self.p99),
            (&mut out.pool_active, &self.pool_active),
            (&mut out.pool_max, &self.pool_max),
            (&mut out.pool_pending, &self.pool_pending),
        ] {
            to.clear();
            gather(to, from, order);
        }
    }

    /// The sample columns of rows `r`, for the kernels.
    fn block(&self, r: std::ops::Range<usize>) -> Block<'_> {
        Block {
            dt: &self.dt[r.clone()],
            req: &self.req[r.clone()],
            err: &self.err[r.clone()],
            retries: &self.retries[r.clone()],
            p50: &self.p50[r.clone()],
            p99: &self.p99[r.clone()],
            pool_active: &self.pool_active[r.clone()],
            pool_max: &self.pool_max[r.clone()],
            pool_pending: &self.pool_pending[r],
        }
    }
}

/// The sample columns of a block of a tick's rows.
#[derive(Debug, Clone, Copy)]
struct Block<'a> {
    dt: &'a [F],
    req: &'a [F],
    err: &'a [F],
    retries: &'a [F],
    p50: &'a [F],
    p99: &'a [F],
    pool_active: &'a [F],
    pool_max: &'a [F],
    pool_pending: &'a [F],
}

/// Rows per block of a tick: the kernels run over a tick a block at a time, so the rows'
/// columns and the block's state stay in the core's own cache from one kernel to the next
/// (about 350 bytes per row).
const BLOCK_ROWS: usize = 2048;

/// Rows `Detector::open_run` checks at once when their series ids are consecutive.
const RUN_CHUNK: usize = 64;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Tick {
    ts: i64,
    rows: Rows,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Active {
    id: String,
    onset: i64,
    detected_at: i64,
    severity: Severity,
    baseline: f64,
    /// A latency alert paged on the p50 (its value and baseline are the p50's).
    #[serde(default)]
    p50: bool,
    /// A success drop: since when (event time) the series has stayed, every sample, further
    /// than half the drop below its level and yet at least `settled_min_ratio` of it, and the
    /// last such sample (see `Detector::settle_success_drop`).
    #[serde(default)]
    held: Option<(i64, i64)>,
}

/// A point-in-time view of one series, for APIs and dashboards.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesView {
    pub id: SeriesId,
    pub key: SeriesKey,
    pub last_sample_ms: Option<i64>,
    pub error_ratio: f64,
    pub error_baseline: f64,
    pub retry_ratio: f64,
    pub retry_baseline: f64,
    pub success_rate: f64,
    pub success_baseline: f64,
    pub latency_p99_ms: f64,
    pub latency_baseline_ms: f64,
    pub pool_utilisation: f64,
    pub pool_baseline: f64,
    /// Callers waiting for a DB connection at the last sample (NaN when not reported).
    pub pool_pending: f64,
    /// Requests, errors and retries of every sample evaluated for this series so far.
    pub totals: SeriesTotals,
    pub firing: Vec<AlertKind>,
}

/// Cumulative counts over the samples a series has had evaluated (duplicates and samples
/// dropped as too late are not counted), for counters downstream.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeriesTotals {
    pub requests: u64,
    pub errors: u64,
    pub retries: u64,
}

/// The streaming detector. Feed it sample batches in any order (within the allowed lateness);
/// it emits alert transitions in event-time order.
#[derive(Debug)]
pub struct Detector {
    p: Params,
    keys: Vec<SeriesKey>,
    service_of: Vec<u32>,
    services: HashMap<String, u32>,
    st: SeriesState,
    sc: SeriesState,
    /// Newest ts buffered (open tick) per series, for the cheap duplicate check.
    newest_buffered: Vec<i64>,
    /// Per series: when its next sample is due, the newest it has sent plus its interval
    /// (`NONE_TS` before its first). Only times after `closed_ts` count: a series whose due
    /// time passed with its tick closed without it is not waited for until it reports again.
    due: Vec<i64>,
    /// How many series are due at each time after `closed_ts` (see `Detector::outstanding`).
    due_count: BTreeMap<i64, usize>,
    /// Ticks up to this time may hold series whose due time was dropped while they had newer
    /// samples buffered (see `Detector::close`); `NONE_TS`: none.
    resync_until: i64,
    pending: VecDeque<Tick>,
    /// Rows buffered in `pending`.
    open_rows: usize,
    spare_rows: Vec<Rows>,
    /// Newest event time seen.
    max_ts: i64,
    /// The time the watermark follows, robust to a few series running ahead (see
    /// [`crate::clock`]); rebuilt from `newest_buffered` on restore.
    fleet_clock: FleetClock,
    /// Event time [`Detector::advance_to`] moved the watermark to (`NONE_TS`: never).
    advanced: i64,
    /// Event time every input has delivered up to (see [`Detector::set_frontier`]);
    /// `NO_FRONTIER` when no hold is set.
    frontier: i64,
    closed_ts: i64,
    /// Per service: total success rate was within tolerance of its baseline at the last tick.
    conserved: Vec<bool>,
    svc_rate: Vec<f64>,
    svc_lvl: Vec<f64>,
    /// Per service: EWMA of its total success rate over the clusters reporting.
    svc_base: Vec<f64>,
    /// Per service: the ticks `svc_base` first and last learnt at (`NONE_TS`: never).
    svc_from: Vec<i64>,
    svc_at: Vec<i64>,
    /// Per series: the success rate and level it adds to `svc_rate` and `svc_lvl` while those
    /// are kept as running sums over the current series (`totals_kept`), 0 when not current.
    c_rate: Vec<F>,
    c_lvl: Vec<F>,
    /// `svc_rate`/`svc_lvl` are running sums that a tick's rows update: none of the current
    /// series has stopped being current since they were summed (see `Detector::process`).
    totals_kept: bool,
    active: HashMap<(SeriesId, AlertKind), Active>,
    stats: DetectorStats,
    /// Per series not yet warm: the event time of the first of the samples it has sent
    /// since, every one too late (`NONE_TS`: none). A series whose clock lags the fleet's by
    /// more than the allowed lateness from its first sample on is never evaluated, so never
    /// warm, and absence is judged on warm series: this reports it instead.
    late_since: Vec<i64>,
    /// While `finish` closes the open ticks: the watermark when it began (`NONE_TS` otherwise).
    finishing_from: i64,
    /// Per series and kind that has resolved: when it last did, and how many times in a row
    /// it fired again within `flap_window_s` of that (see `Detector::resolve_after`).
    flaps: HashMap<(SeriesId, AlertKind), Flap>,
    /// Per series: the start of its last run of low samples counted in
    /// `DetectorStats::moves_suppressed` (in snapshots, so a restart in the middle of a move
    /// does not count it again).
    moves_counted: HashMap<SeriesId, i64>,
    /// Per tick: warm flags (scratch, reused).
    warm: Col<F>,
    /// Per tick: 1 when a kernel saw evidence worth the candidate pass (scratch, reused).
    flags: TickFlags,
    /// Per series: telemetry_absent is due (scratch, reused).
    absent_due: Vec<u8>,
    /// Late samples to fold in, all of one event time (`late_ts`), one per series (marked in
    /// `late_mark`): evaluated together, before anything else can touch their series (see
    /// `defer_late`).
    late: Rows,
    late_ts: i64,
    late_mark: Vec<u64>,
    /// A tick's rows in series order, when they did not come that way (scratch, reused).
    ordered: Rows,
    /// Row of each series in a tick, for ordering (scratch, reused).
    order: Vec<u32>,
    tick_events: Vec<AlertEvent>,
}

const NONE_TS: i64 = i64::MIN;
/// [`Detector::set_frontier`] with `None`: the newest event time alone moves the watermark.
const NO_FRONTIER: i64 = i64::MAX;

/// Everything a [`Detector`] remembers (baselines, open ticks, firing alerts, counters), for
/// checkpoints: [`Detector::snapshot`] and [`Detector::from_snapshot`]. Serialize it with a
/// binary serde format: the state uses NaN for "not reported", which JSON cannot carry. The
/// configuration is not part of it; a snapshot restored under another configuration keeps its
/// state and judges by the new thresholds from then on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DetectorSnapshot {
    keys: Vec<SeriesKey>,
    service_of: Vec<u32>,
    services: Vec<(String, u32)>,
    st: SeriesState,
    newest_buffered: Vec<i64>,
    due: Vec<i64>,
    pending: Vec<Tick>,
    max_ts: i64,
    closed_ts: i64,
    conserved: Vec<bool>,
    svc_rate: Vec<f64>,
    svc_lvl: Vec<f64>,
    svc_base: Vec<f64>,
    svc_from: Vec<i64>,
    svc_at: Vec<i64>,
    active: Vec<((SeriesId, AlertKind), Active)>,
    stats: DetectorStats,
    /// Sorted by series.
    moves_counted: Vec<(SeriesId, i64)>,
    late_since: Vec<i64>,
    /// Sorted by series and kind.
    flaps: Vec<((SeriesId, AlertKind), Flap)>,
}

/// An alert's history of firing again soon after resolving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Flap {
    resolved_at: i64,
    /// Times in a row it fired again within the flap window of resolving.
    count: u32,
}

impl DetectorSnapshot {
    #[cfg(test)]
    pub(crate) fn newest_buffered_truncate_for_test(&mut self) {
        self.newest_buffered.pop();
    }

    /// Series in the snapshot.
    pub fn series_count(&self) -> usize {
        self.keys.len()
    }

    /// Alerts firing in the snapshot.
    pub fn firing_count(&self) -> usize {
        self.active.len()
    }
}

impl Detector {
    pub fn new(cfg: DetectorConfig) -> Result<Self, ConfigError> {
        let p = cfg.check()?;
        Ok(Self {
            p,
            keys: Vec::new(),
            service_of: Vec::new(),
            services: HashMap::new(),
            st: SeriesState::default(),
            sc: SeriesState::default(),
            newest_buffered: Vec::new(),
            due: Vec::new(),
            due_count: BTreeMap::new(),
            resync_until: NONE_TS,
            pending: VecDeque::new(),
            open_rows: 0,
            spare_rows: Vec::new(),
            max_ts: NONE_TS,
            fleet_clock: FleetClock::default(),
            advanced: NONE_TS,
            frontier: NO_FRONTIER,
            closed_ts: NONE_TS,
            conserved: Vec::new(),
            svc_rate: Vec::new(),
            svc_lvl: Vec::new(),
            svc_base: Vec::new(),
            svc_from: Vec::new(),
            svc_at: Vec::new(),
            c_rate: Vec::new(),
            c_lvl: Vec::new(),
            totals_kept: false,
            active: HashMap::new(),
            stats: DetectorStats::default(),
            moves_counted: HashMap::new(),
            late_since: Vec::new(),
            finishing_from: NONE_TS,
            flaps: HashMap::new(),
            warm: Col::new(),
            flags: TickFlags::default(),
            absent_due: Vec::new(),
            late: Rows::default(),
            late_ts: NONE_TS,
            late_mark: Vec::new(),
            ordered: Rows::default(),
            order: Vec::new(),
            tick_events: Vec::new(),
        })
    }

    pub fn config(&self) -> &DetectorConfig {
        &self.p.cfg
    }

    /// The detector's state, for a checkpoint (see [`DetectorSnapshot`]).
    pub fn snapshot(&self) -> DetectorSnapshot {
        let mut services: Vec<(String, u32)> =
            self.services.iter().map(|(k, &v)| (k.clone(), v)).collect();
        services.sort_by_key(|&(_, v)| v);
        let mut active: Vec<((SeriesId, AlertKind), Active)> =
            self.active.iter().map(|(k, v)| (*k, v.clone())).collect();
        active.sort_by_key(|a| a.0);
        DetectorSnapshot {
            keys: self.keys.clone(),
            service_of: self.service_of.clone(),
            services,
            st: self.st.clone(),
            newest_buffered: self.newest_buffered.clone(),
            due: self.due.clone(),
            pending: self.pending.iter().cloned().collect(),
            max_ts: self.max_ts,
            closed_ts: self.closed_ts,
            conserved: self.conserved.clone(),
            svc_rate: self.svc_rate.clone(),
            svc_lvl: self.svc_lvl.clone(),
            svc_base: self.svc_base.clone(),
            svc_from: self.svc_from.clone(),
            svc_at: self.svc_at.clone(),
            active,
            stats: self.stats,
            moves_counted: {
                let mut m: Vec<_> = self.moves_counted.iter().map(|(&s, &t)| (s, t)).collect();
                m.sort_unstable();
                m
            },
            late_since: self.late_since.clone(),
            flaps: {
                let mut f: Vec<_> = self.flaps.iter().map(|(&k, &v)| (k, v)).collect();
                f.sort_unstable_by_key(|e| e.0);
                f
            },
        }
    }

    /// A detector that carries on from `snap` as if it had never stopped, judging by `cfg`.
    /// Refuses a snapshot whose per-series columns disagree in length (a damaged checkpoint).
    pub fn from_snapshot(cfg: DetectorConfig, snap: DetectorSnapshot) -> Result<Self, ConfigError> {
        let mut d = Self::new(cfg)?;
        let n = snap.keys.len();
        let consistent = snap.st.all_len(n)
            && snap.service_of.len() == n
            && snap.newest_buffered.len() == n
            && snap.due.len() == n
            && snap.late_since.len() == n
            && snap.svc_at.len() == snap.svc_base.len()
            && snap.svc_from.len() == snap.svc_base.len()
            && snap
                .service_of
                .iter()
                .all(|&s| (s as usize) < snap.services.len())
            && snap.active.iter().all(|((s, _), _)| (*s as usize) < n)
            && snap.moves_counted.iter().all(|(s, _)| (*s as usize) < n)
            && snap.flaps.iter().all(|((s, _), _)| (*s as usize) < n)
            && snap
                .pending
                .iter()
                .all(|t| t.rows.sid.iter().all(|&s| (s as usize) < n));
        if !consistent {
            return Err(ConfigError {
                field: "snapshot".into(),
                value: format!("{n} series"),
                reason: "per-series columns of different lengths: a damaged checkpoint",
            });
        }
        d.keys = snap.keys;
        d.service_of = snap.service_of;
        d.services = snap.services.into_iter().collect();
        d.st = snap.st;
        d.newest_buffered = snap.newest_buffered;
        d.due = snap.due;
        d.c_rate = vec![0.0; n];
        d.c_lvl = vec![0.0; n];
        d.due_count = BTreeMap::new();
        for &t in &d.due {
            if t > snap.closed_ts {
                *d.due_count.entry(t).or_default() += 1;
            }
        }
        d.open_rows = snap.pending.iter().map(|t| t.rows.len()).sum();
        d.pending = snap.pending.into();
        d.max_ts = snap.max_ts;
        d.closed_ts = snap.closed_ts;
        d.conserved = snap.conserved;
        d.svc_rate = snap.svc_rate;
        d.svc_lvl = snap.svc_lvl;
        d.svc_base = snap.svc_base;
        d.svc_from = snap.svc_from;
        d.svc_at = snap.svc_at;
        d.active = snap.active.into_iter().collect();
        d.stats = snap.stats;
        d.moves_counted = snap.moves_counted.into_iter().collect();
        d.late_since = snap.late_since;
        d.flaps = snap.flaps.into_iter().collect();
        d.late_mark = vec![0; n.div_ceil(64)];
        d.fleet_clock = FleetClock::from_newest(&d.newest_buffered, d.max_ts);
        Ok(d)
    }

    pub fn stats(&self) -> DetectorStats {
        self.stats
    }

    /// Number of series the detector tracks.
    pub fn series_count(&self) -> usize {
        self.keys.len()
    }

    /// Bytes of per-series state (the struct-of-arrays columns and bookkeeping vectors).
    pub fn state_bytes_per_series() -> usize {
        SeriesState::BYTES + 8 /* newest_buffered */ + 8 /* due */ + 8 /* c_rate, c_lvl */ + 4
        /* service_of */
    }

    /// Samples buffered in ticks not closed yet: within the allowed lateness, or held for
    /// inputs behind ([`set_frontier`](Self::set_frontier); at most `max_held_samples` then).
    pub fn open_samples(&self) -> usize {
        self.open_rows
    }

    /// Newest event time seen, epoch ms.
    pub fn max_event_time(&self) -> Option<i64> {
        (self.max_ts != NONE_TS).then_some(self.max_ts)
    }

    /// Holds the watermark back for inputs that are behind.
    ///
    /// The watermark is normally the newest event time seen minus the allowed lateness: a
    /// sample older than that is too late, and a tick older than that closes. That is right
    /// for one input in event-time order, and for several inputs that keep pace with each
    /// other. It is wrong for a consumer catching up on a backlog of several Kafka partitions:
    /// it reads one partition minutes of event time ahead of another, and the other's samples
    /// would all be judged late (and its series reported absent). A source that reads several
    /// inputs therefore says how far every input has delivered: `frontier`, the oldest of the
    /// inputs' newest event times. While it is set, the watermark never passes `frontier`
    /// minus the allowed lateness, so ticks wait (open, buffered) for the inputs behind.
    /// Ticks every series has reported still close at once, and once more than
    /// `max_held_samples` are buffered the oldest open tick closes anyway (bounded memory).
    ///
    /// `None` lifts the hold. Raising the frontier may close ticks; their alert transitions
    /// are appended to `out`. The frontier is not part of a snapshot: a restored detector has
    /// no hold until its source sets one.
    pub fn set_frontier(&mut self, frontier: Option<i64>, out: &mut Vec<AlertEvent>) {
        let f = frontier.unwrap_or(NO_FRONTIER);
        let raised = f > self.frontier;
        self.frontier = f;
        if raised {
            self.close_ready(out);
        }
    }

    /// The event time the watermark follows: the fleet's (the newest seen, unless only a few
    /// series are that far ahead: [`crate::clock`]), held back to the frontier.
    fn clock(&self) -> i64 {
        self.fleet_clock
            .time(self.max_ts)
            .max(self.advanced)
            .min(self.frontier)
    }

    /// Registers series keys `self.series_count()..keys.len()` (ids are positions in `keys`).
    pub fn register_series(&mut self, keys: &[SeriesKey]) {
        if let Some(new) = keys.get(self.keys.len()..) {
            self.add_series(new);
        }
    }

    /// Registers `new` as the keys of the next series ids, `series_count()..`, in order: for a
    /// caller that holds only the keys added since it last registered (see
    /// [`push_registered`](Self::push_registered)).
    pub fn add_series(&mut self, new: &[SeriesKey]) {
        let old = self.keys.len();
        if new.is_empty() {
            return;
        }
        for key in new {
            let next = u32::try_from(self.services.len()).unwrap_or(u32::MAX);
            let svc = *self.services.entry(key.service.clone()).or_insert(next);
            self.service_of.push(svc);
            self.keys.push(key.clone());
        }
        let n = self.keys.len();
        self.st.resize(n);
        for s in old..n {
            self.st.e_phi[s] = 1.0;
            self.st.r_phi[s] = 1.0;
            self.st.p_pending[s] = F::NAN;
        }
        self.newest_buffered.resize(n, NONE_TS);
        self.due.resize(n, NONE_TS);
        self.c_rate.resize(n, 0.0);
        self.c_lvl.resize(n, 0.0);
        self.late_since.resize(n, NONE_TS);
        self.late_mark.resize(n.div_ceil(64), 0);
        self.fleet_clock
            .resize(n, &self.newest_buffered, self.max_ts);
        let ns = self.services.len();
        self.conserved.resize(ns, false);
        self.svc_rate.resize(ns, 0.0);
        self.svc_lvl.resize(ns, 0.0);
        self.svc_base.resize(ns, 0.0);
        self.svc_from.resize(ns, NONE_TS);
        self.svc_at.resize(ns, NONE_TS);
    }

    /// Feeds one batch (schema: [`crate::schema::sample_schema`]). `keys[id]` is the key of series
    /// `id` (e.g. `SeriesInterner::keys()`). Alert transitions of ticks this batch closed are
    /// appended to `out`.
    pub fn push_batch(
        &mut self,
        batch: &RecordBatch,
        keys: &[SeriesKey],
        out: &mut Vec<AlertEvent>,
    ) -> Result<(), DetectorError> {
        self.register_series(keys);
        self.push_registered(batch, out)
    }

    /// [`push_batch`](Self::push_batch) for a batch whose series are all registered already
    /// ([`add_series`](Self::add_series)).
    pub fn push_registered(
        &mut self,
        batch: &RecordBatch,
        out: &mut Vec<AlertEvent>,
    ) -> Result<(), DetectorError> {
        let sid = schema::series_ids(batch, self.keys.len())?;
        let ts = schema::column::<TimestampMillisecondType>(batch, schema::TS)?;
        let cols = BatchCols {
            interval: schema::column::<UInt32Type>(batch, schema::INTERVAL_MS)?,
            req: schema::column::<UInt64Type>(batch, schema::REQUESTS)?,
            err: schema::column::<UInt64Type>(batch, schema::ERRORS)?,
            retries: schema::column::<UInt64Type>(batch, schema::RETRIES)?,
            p50: schema::column::<Float64Type>(batch, schema::LATENCY_P50_MS)?,
            p99: schema::column::<Float64Type>(batch, schema::LATENCY_P99_MS)?,
            pool_active: schema::column::<UInt32Type>(batch, schema::DB_POOL_ACTIVE)?,
            pool_max: schema::column::<UInt32Type>(batch, schema::DB_POOL_MAX)?,
            pool_pending: schema::column::<UInt32Type>(batch, schema::DB_POOL_PENDING)?,
        };
        let n = batch.num_rows();
        let (sids, tss) = (&sid.values()[..n], &ts.values()[..n]);
        let mut i = 0;
        while i < n {
            // Most rows join a tick that is already open, behind a row of the same tick: those
            // are converted straight into the tick a run at a time. The rest (a tick's first
            // row, late rows, possible duplicates) go one by one through `push_row`, which the
            // runs are equivalent to.
            if let Some((pos, end)) = self.open_run(sids, tss, cols.interval.values(), i) {
                self.stats.samples += (end - i) as u64;
                self.open_rows += end - i;
                let rows = &mut self.pending[pos].rows;
                rows.sid.extend_from_slice(&sids[i..end]);
                cols.append(i..end, rows);
                self.close_ready(out);
                i = end;
                continue;
            }
            self.push_row(&cols.row(sids[i], tss[i], i), out);
            i += 1;
        }
        self.flush_late(out);
        Ok(())
    }

    /// Queues a late sample to be folded in. Late samples used to be evaluated one at a time,
    /// and a source catching up on a lagging partition can make a third of its samples late:
    /// they are now evaluated a run at a time. That gives the same result as one at a time,
    /// because nothing reads a queued series' state before the run is flushed. The run is
    /// flushed before a sample of another event time joins it, before any tick closes, and at
    /// the end of every batch. A second sample of a series already in the run has the same
    /// series and time: a duplicate.
    fn defer_late(&mut self, r: &Row, out: &mut Vec<AlertEvent>) {
        if !self.late.is_empty() && self.late_ts != r.ts {
            self.flush_late(out);
        }
        let (word, bit) = (r.sid as usize / 64, 1u64 << (r.sid % 64));
        if self.late_mark[word] & bit != 0 {
            self.stats.duplicates += 1;
            return;
        }
        self.late_mark[word] |= bit;
        self.stats.folded_late += 1;
        let watermark = self.clock().saturating_sub(self.p.lateness_ms);
        self.note_due(r.sid as usize, r.ts, r.interval_ms, watermark);
        self.late_ts = r.ts;
        self.late.push(r);
    }

    /// Evaluates the queued late samples (see `defer_late`).
    fn flush_late(&mut self, out: &mut Vec<AlertEvent>) {
        if self.late.is_empty() {
            return;
        }
        let mut rows = std::mem::take(&mut self.late);
        self.process(self.late_ts, &rows, false, out);
        for &s in &rows.sid {
            self.late_mark[s as usize / 64] = 0;
        }
        rows.clear();
        self.late = rows;
    }

    /// The end of the run of rows from `start` that `push_row` would each simply append to an
    /// open tick: same `ts` as an open tick (so neither the watermark nor the newest event time
    /// moves), not possibly a duplicate, and not completing the front tick before the run's
    /// end (its closing must happen between the rows, as `push_row` would close it). Marks the
    /// run's rows as buffered and moves their series' due times on. Returns the open tick's
    /// position in `pending` and the run's end, or `None` when the row at `start` needs
    /// `push_row`.
    fn open_run(
        &mut self,
        sids: &[u32],
        tss: &[i64],
        intervals: &[u32],
        start: usize,
    ) -> Option<(usize, usize)> {
        let ts = tss[start];
        let watermark = self.clock().saturating_sub(self.p.lateness_ms);
        if self.max_ts == NONE_TS
            || !self.fleet_clock.settled(ts)
            || ts < watermark
            || ts <= self.closed_ts
        {
            return None;
        }
        // Open ticks are in time order, one per time: a source catching up on many partitions
        // can hold hundreds open, so they are searched, not scanned.
        let pos = self.pending.binary_search_by_key(&ts, |t| t.ts).ok()?;
        // The front tick closes once no series is due at or before it: count down to that.
        let mut left = if pos == 0 && self.closed_ts != NONE_TS {
            self.outstanding(ts)
        } else {
            usize::MAX
        };
        // Series due at `ts` that reported it (taken off `due_count[ts]` at the end), and the
        // due times the run's rows move to, gathered while they agree.
        let mut arrived = 0usize;
        let mut next = DueTally::default();
        let mut end = start;
        // Whole chunks of consecutive series ids (a fleet reporting in a stable order) at once:
        // their buffered times and due times are slices, and no id can repeat within the chunk.
        // Taken only when every row of the chunk was due at `ts` and has the same interval.
        while let (Some(cs), Some(ct), Some(ci)) = (
            sids.get(end..end + RUN_CHUNK),
            tss.get(end..end + RUN_CHUNK),
            intervals.get(end..end + RUN_CHUNK),
        ) {
            let first = cs[0] as usize;
            let (Some(nb), Some(due)) = (
                self.newest_buffered.get(first..first + RUN_CHUNK),
                self.due.get(first..first + RUN_CHUNK),
            ) else {
                break;
            };
            // One pass over the chunk: every row at `ts`, with the first row's interval, due at
            // `ts` and not buffered there already.
            let iv0 = ci[0];
            let fits = ct
                .iter()
                .zip(ci)
                .zip(due.iter().zip(nb))
                .fold(true, |ok, ((&t, &v), (&d, &b))| {
                    ok & (t == ts) & (v == iv0) & (d == ts) & (b < ts)
                });
            if !fits || left <= RUN_CHUNK || !consecutive_from(cs, first) {
                break; // row by row below (the front tick may complete within the chunk)
            }
            let to = ts + i64::from(iv0.max(1));
            self.newest_buffered[first..first + RUN_CHUNK].fill(ts);
            self.due[first..first + RUN_CHUNK].fill(to);
            next.add(to, RUN_CHUNK, &mut self.due_count);
            arrived += RUN_CHUNK;
            left -= RUN_CHUNK;
            end += RUN_CHUNK;
        }
        for ((&s, &t), &iv) in sids[end..].iter().zip(&tss[end..]).zip(&intervals[end..]) {
            let s = s as usize;
            if t != ts || self.newest_buffered[s] >= ts {
                break;
            }
            self.newest_buffered[s] = ts;
            end += 1;
            // As `note_due`, for a series with nothing buffered after `ts`.
            let old = self.due[s];
            let counted = old > self.closed_ts;
            if old > ts || (counted && old < ts && old >= watermark) {
                continue; // due later, or still due at `old`
            }
            let to = ts + i64::from(iv.max(1));
            self.due[s] = to;
            next.add(to, 1, &mut self.due_count);
            if counted {
                if old == ts {
                    arrived += 1;
                } else {
                    // Released from a time behind the watermark: it missed a sample.
                    take_due(&mut self.due_count, old);
                    self.totals_kept = false;
                }
                left = left.saturating_sub(1);
                if left == 0 {
                    break;
                }
            }
        }
        next.flush(&mut self.due_count);
        if arrived > 0 {
            take_due_n(&mut self.due_count, ts, arrived);
        }
        (end > start).then_some((pos, end))
    }

    /// Series due at or before `ts` that have not reported since (the front tick waits for
    /// them, up to the watermark).
    fn outstanding(&self, ts: i64) -> usize {
        self.due_count.range(..=ts).map(|(_, &c)| c).sum()
    }

    /// Moves series `s`'s due time on for its sample at `ts` (`interval_ms` apart from the
    /// next), just taken (buffered, or queued as late):
    /// - the sample it was due to send: due next at the first time after it that it has not
    ///   sent already (its own samples may come out of order);
    /// - a newer one while the one due is still counted: it stays due then. The due sample
    ///   may still come (a stalled collector flushes its backlog shuffled), so its tick waits,
    ///   up to the watermark, as it would for a series that has sent nothing. Unless that time
    ///   is already behind the watermark, where the sample would be refused as too late (a
    ///   fleet back after an idle spell the watermark moved through): then it moves on;
    /// - one older than the due time: nothing changes.
    ///
    /// A series whose due time is no longer counted (its first sample, or back after its tick
    /// closed without it) is due again at the sample's time plus its interval.
    fn note_due(&mut self, s: usize, ts: i64, interval_ms: i64, watermark: i64) {
        let old = self.due[s];
        if old > ts {
            return;
        }
        let counted = old > self.closed_ts;
        if counted {
            if old < ts && old >= watermark {
                return;
            }
            take_due(&mut self.due_count, old);
            if old < ts {
                // Released from a time behind the watermark: it missed a sample.
                self.totals_kept = false;
            }
        }
        let mut to = ts + interval_ms;
        while self.newest_buffered[s] >= to && self.in_open_tick_late(s, to) {
            to += interval_ms;
        }
        self.due[s] = to;
        if to > self.closed_ts {
            *self.due_count.entry(to).or_default() += 1;
        }
    }

    /// Whether series `s` has a sample at `ts` in an open tick, looked for from the tick's
    /// newest rows back (it is wanted for samples that came out of order, so lately).
    fn in_open_tick_late(&self, s: usize, ts: i64) -> bool {
        #[allow(clippy::cast_possible_truncation)]
        let sid = s as u32;
        self.pending
            .binary_search_by_key(&ts, |t| t.ts)
            .is_ok_and(|p| self.pending[p].rows.sid.iter().rev().any(|&x| x == sid))
    }

    /// Closes every open tick (end of a replay, or shutdown).
    pub fn finish(&mut self, out: &mut Vec<AlertEvent>) {
        self.finishing_from = self.clock().saturating_sub(self.p.lateness_ms);
        while let Some(tick) = self.pending.pop_front() {
            self.close(tick, out);
        }
        self.finishing_from = NONE_TS;
    }

    /// Moves the watermark forward without a sample (e.g. a live source idle for a while).
    pub fn advance_to(&mut self, event_time_ms: i64, out: &mut Vec<AlertEvent>) {
        if event_time_ms > self.max_ts {
            self.max_ts = event_time_ms;
            self.advanced = event_time_ms;
            self.close_ready(out);
        }
    }

    fn push_row(&mut self, r: &Row, out: &mut Vec<AlertEvent>) {
        self.stats.samples += 1;
        let s = r.sid as usize;
        // Where this series' clock is, before judging the sample against the fleet's: a late
        // sample still says its series is reporting (or the fleet's clock could stay with a
        // series running ahead, everyone else's samples judged late).
        self.fleet_clock.note(r.sid, r.ts, self.max_ts.max(r.ts));
        let watermark = self.clock().saturating_sub(self.p.lateness_ms);
        if self.max_ts != NONE_TS && r.ts < watermark {
            self.stats.too_late += 1;
            self.late_from_the_start(r);
            return;
        }
        if r.ts <= self.closed_ts {
            // Its tick is closed. Still usable if the series has seen nothing at or after it.
            #[allow(clippy::cast_precision_loss)]
            let last = self.st.last_ts[s] as i64;
            let seen = self.st.seen[s] > 0.0;
            if seen && r.ts == last {
                self.stats.duplicates += 1;
            } else if seen && r.ts < last {
                if self.was_processed(s, r.ts) {
                    self.stats.duplicates += 1;
                } else {
                    self.stats.too_late += 1;
                }
            } else if self.newest_buffered[s] >= r.ts && self.in_open_tick(r.sid, r.ts) {
                self.stats.duplicates += 1;
            } else {
                self.defer_late(r, out);
            }
            return;
        }
        if self.newest_buffered[s] >= r.ts && self.in_open_tick(r.sid, r.ts) {
            self.stats.duplicates += 1;
            return;
        }
        self.newest_buffered[s] = self.newest_buffered[s].max(r.ts);
        let pos = match self.pending.binary_search_by_key(&r.ts, |t| t.ts) {
            Ok(p) => p,
            Err(at) => {
                let rows = self.spare_rows.pop().unwrap_or_default();
                self.pending.insert(at, Tick { ts: r.ts, rows });
                at
            }
        };
        let tick = &mut self.pending[pos];
        tick.rows.push(r);
        self.open_rows += 1;
        self.note_due(s, r.ts, r.interval_ms, watermark);
        self.max_ts = self.max_ts.max(r.ts);
        self.close_ready(out);
    }

    /// A too-late sample `r`: reports its series absent once it has sent nothing but
    /// too-late samples for a warm-up's worth of its own event time while not yet warm (see
    /// `late_since`). Its first sample to arrive in time resolves it, as for any absent
    /// series.
    fn late_from_the_start(&mut self, r: &Row) {
        let s = r.sid as usize;
        let st = &self.st;
        let warm = f64::from(st.seen[s] * st.interval_s[s]) >= self.p.cfg.warmup_s;
        if warm || st.a_firing[s] > 0.0 {
            return;
        }
        // A streak starts afresh at a sample older than its start, or once a sample at or
        // after its start was evaluated.
        let since = self.late_since[s];
        #[allow(clippy::cast_precision_loss)]
        if since == NONE_TS || r.ts < since || st.last_ts[s] >= since as f64 {
            self.late_since[s] = r.ts;
            return;
        }
        #[allow(clippy::cast_precision_loss)]
        let span_s = (r.ts - since) as f64 / 1000.0;
        if span_s < self.p.cfg.warmup_s {
            return;
        }
        let clock = self.clock();
        #[allow(clippy::cast_precision_loss)]
        let behind = (clock - r.ts) as f64 / 1000.0;
        self.fire(
            r.sid,
            AlertKind::TelemetryAbsent,
            since,
            clock,
            Severity::Critical,
            behind,
            f64::from(r.dt),
        );
    }

    /// Whether a sample of series `s` at `ts` (older than its newest) was evaluated. Only exact
    /// interval multiples back from the newest can have been; anything else never was.
    fn was_processed(&self, s: usize, ts: i64) -> bool {
        // The detector keeps no per-sample history; a sample older than the series' newest
        // evaluated one is either a re-delivery (counted as duplicate) or hopelessly late.
        // Re-deliveries are by far the common case (at-least-once sources), and for both the
        // right action is the same: do not evaluate it again.
        #[allow(clippy::cast_possible_truncation)]
        let step = (self.st.interval_s[s] * 1000.0).round() as i64;
        #[allow(clippy::cast_possible_truncation)]
        let last = self.st.last_ts[s] as i64;
        step > 0 && (last - ts) % step == 0
    }

    fn in_open_tick(&self, sid: u32, ts: i64) -> bool {
        self.pending
            .binary_search_by_key(&ts, |t| t.ts)
            .is_ok_and(|p| self.pending[p].rows.sid.contains(&sid))
    }

    fn close_ready(&mut self, out: &mut Vec<AlertEvent>) {
        loop {
            let Some(front) = self.pending.front() else {
                return;
            };
            let clock = self.clock();
            let by_watermark = front.ts < clock.saturating_sub(self.p.lateness_ms)
                || (self.p.lateness_ms == 0 && front.ts < clock);
            // Complete when no series is due at or before it any more (all due then have
            // reported it or something newer). Not before a first tick has closed: until the
            // watermark closes one, the fleet is not known.
            let complete = self.closed_ts != NONE_TS
                && self
                    .due_count
                    .first_key_value()
                    .is_none_or(|(&t, _)| t > front.ts);
            // Held (for inputs behind, `set_frontier`, or for the fleet behind a few series
            // running ahead), but buffering too much.
            let over = clock < self.max_ts && self.open_rows as u64 > self.p.cfg.max_held_samples;
            if !(by_watermark || complete || over) {
                return;
            }
            if !(by_watermark || complete) {
                self.stats.forced_closes += 1;
            }
            if let Some(tick) = self.pending.pop_front() {
                self.close(tick, out);
            }
        }
    }

    fn close(&mut self, mut tick: Tick, out: &mut Vec<AlertEvent>) {
        self.flush_late(out);
        self.open_rows -= tick.rows.len();
        self.stats.ticks += 1;
        let before = self.closed_ts;
        self.closed_ts = self.closed_ts.max(tick.ts);
        // A series due at or before this tick that has not reported it is no longer current:
        // the service totals are summed afresh.
        if self
            .due_count
            .first_key_value()
            .is_some_and(|(&t, _)| t <= tick.ts)
        {
            self.totals_kept = false;
        }
        self.process(tick.ts, &tick.rows, true, out);
        self.prune_flaps(before);
        // Series due at or before this tick that did not report it are not waited for any
        // more (until they report again).
        let dropped = self
            .due_count
            .first_key_value()
            .is_some_and(|(&t, _)| t <= self.closed_ts);
        self.due_count = self.due_count.split_off(&(self.closed_ts + 1));
        // Some of them may have reported newer samples, buffered in this tick or later ones
        // (they skipped the time they were due): those are due again after their newest.
        if dropped {
            self.resync_until = self.resync_until.max(self.max_ts);
        }
        if tick.ts <= self.resync_until {
            for (&s, &dt) in tick.rows.sid.iter().zip(tick.rows.dt.iter()) {
                let s = s as usize;
                if self.due[s] <= self.closed_ts {
                    #[allow(clippy::cast_possible_truncation)]
                    let to =
                        self.newest_buffered[s] + ((f64::from(dt) * 1000.0).round() as i64).max(1);
                    self.due[s] = to;
                    if to > self.closed_ts {
                        *self.due_count.entry(to).or_default() += 1;
                    }
                }
            }
        }
        tick.rows.clear();
        self.spare_rows.push(tick.rows);
    }

    /// Runs the kernels over one tick's rows (or one late row, `full == false`) and turns the
    /// evidence into alert transitions.
    fn process(&mut self, ts: i64, rows: &Rows, full: bool, out: &mut Vec<AlertEvent>) {
        let n = rows.len();
        if !full {
            // Late samples move their series' rates and newest times outside the service
            // totals kept: those are summed afresh at the next tick.
            self.totals_kept = false;
        }
        self.stats.processed += n as u64;
        #[allow(clippy::cast_precision_loss)]
        let tsf = ts as f64;
        // Fast path: the rows are a contiguous run of series ids (a fleet reporting in a stable
        // order), so the kernels run on the state columns in place. Otherwise put the rows in
        // series order (a source with several partitions interleaves them), so that gathering
        // their state reads it front to back; if that makes them contiguous, run in place,
        // else gather the rows' state block by block into row-dense scratch, run there, and
        // scatter back.
        let contiguous_from = |sid: &[u32]| {
            let base = sid.first().map_or(0, |&s| s as usize);
            (base, consecutive_from(sid, base))
        };
        let (mut base, mut contiguous) = contiguous_from(&rows.sid);
        let mut ordered = std::mem::take(&mut self.ordered);
        // (Late samples keep their arrival order: their alerts are reported in it.)
        let rows = if contiguous || n < 2 || !full {
            rows
        } else {
            rows.ordered_into(&mut self.order, &mut ordered);
            (base, contiguous) = contiguous_from(&ordered.sid);
            &ordered
        };
        let cfg = &self.p.cfg;
        self.flags.reset(n);
        self.warm.clear();
        self.warm.resize(n, 0.0);
        let mut b = 0;
        while b < n {
            let e = (b + BLOCK_ROWS).min(n);
            let block = rows.block(b..e);
            let (warm, attn, starts) = (
                &mut self.warm[b..e],
                &mut self.flags.attn[b..e],
                &mut self.flags.starts[b..e],
            );
            if contiguous {
                let r = base + b..base + e;
                prepare(cfg, &block, &mut self.st, r.clone(), warm);
                run_kernels(cfg, &block, warm, &mut self.st, r, attn, starts, tsf);
            } else {
                let sids = &rows.sid[b..e];
                self.st.gather(sids, &mut self.sc);
                prepare(cfg, &block, &mut self.sc, 0..e - b, warm);
                run_kernels(cfg, &block, warm, &mut self.sc, 0..e - b, attn, starts, tsf);
                self.st.scatter(sids, &self.sc);
            }
            b = e;
        }

        // The start times of the runs that started in this tick (rare: the kernels only flag
        // them, and a pass over every row's five f64 start times would cost more than they do).
        mark_run_starts(&mut self.st, &rows.sid, &rows.dt, &self.flags.starts, tsf);

        // Fleet-level view of the tick: per service, is the total success rate conserved? Taken
        // over every series current at the tick (its newest sample less than an interval old),
        // not only the tick's rows: series whose reporters do not share a clock stamp their
        // samples at other times, and each tick holds only those at its own.
        if full {
            if rows.len() == self.service_of.len() {
                // Every series is in the tick (the common case): no other is current.
                service_totals(
                    &rows.sid,
                    &self.service_of,
                    &self.st.s_rate,
                    &self.st.s_lvl,
                    &mut self.svc_rate,
                    &mut self.svc_lvl,
                );
                self.totals_kept = false;
            } else if self.totals_kept {
                // Every series current at the last tick still is (none missed the time it
                // was due, or its tick would have waited for it): the tick's rows update
                // their series' shares.
                service_totals_update(
                    &rows.sid,
                    &self.service_of,
                    &self.st.s_rate,
                    &self.st.s_lvl,
                    &mut self.c_rate,
                    &mut self.c_lvl,
                    &mut self.svc_rate,
                    &mut self.svc_lvl,
                );
                #[cfg(debug_assertions)]
                {
                    let (mut r, mut l) = (self.svc_rate.clone(), self.svc_lvl.clone());
                    let (mut cr, mut cl) = (self.c_rate.clone(), self.c_lvl.clone());
                    service_totals_current(
                        tsf,
                        &self.st,
                        &self.service_of,
                        &mut cr,
                        &mut cl,
                        &mut r,
                        &mut l,
                    );
                    for (kept, summed) in self.svc_rate.iter().zip(&r) {
                        debug_assert!(
                            (kept - summed).abs() <= 1e-6 * summed.abs().max(1.0),
                            "service total kept {kept}, summed afresh {summed}"
                        );
                    }
                }
            } else {
                service_totals_current(
                    tsf,
                    &self.st,
                    &self.service_of,
                    &mut self.c_rate,
                    &mut self.c_lvl,
                    &mut self.svc_rate,
                    &mut self.svc_lvl,
                );
                self.totals_kept = true;
            }
            // A service's own total is the reference: per-cluster baselines can be stale (frozen
            // by an incident, or raised by a long surge) while users' demand is not.
            let tol = cfg.success_drop.conserved_tolerance;
            let tick_dt = rows.dt.first().copied().map_or(10.0, f64::from);
            for svc in 0..self.conserved.len() {
                let (total, base) = (self.svc_rate[svc], self.svc_base[svc]);
                if self.svc_lvl[svc] <= 0.0 {
                    continue; // no series of this service current
                }
                // The reference learns for the time since it last did, up to the tick's
                // interval: ticks of several phases each take their share of it.
                let since = self.svc_at[svc];
                self.svc_at[svc] = ts;
                if self.svc_from[svc] == NONE_TS {
                    self.svc_from[svc] = ts;
                }
                // For its first interval the reference is the total itself: the clusters of
                // a fleet that does not share a clock become current one phase at a time.
                #[allow(clippy::cast_possible_truncation)]
                let first = ts - self.svc_from[svc] < (tick_dt * 1000.0) as i64;
                if base <= 0.0 || first {
                    self.svc_base[svc] = total;
                    self.conserved[svc] = true;
                    continue;
                }
                #[allow(clippy::cast_precision_loss)]
                let dt = if since == NONE_TS {
                    tick_dt
                } else {
                    ((ts - since) as f64 / 1000.0).clamp(0.0, tick_dt)
                };
                let a = 1.0 - (-dt / cfg.baseline_half_life_s * std::f64::consts::LN_2).exp();
                let a_short = 1.0 - (-dt / 300.0 * std::f64::consts::LN_2).exp();
                let conserved = total >= (1.0 - tol) * base;
                self.conserved[svc] = conserved;
                // Follow the service closely while it is whole; while it is not, follow only
                // slowly, so an incident is not absorbed but a long one (over a diurnal swing)
                // does not leave a stale reference behind.
                let w = if conserved { a_short } else { a };
                self.svc_base[svc] = base + w * (total.min(base * 1.2) - base);
            }
        }

        self.evaluate(ts, rows, full);
        // Alerts of a tick in a fixed order, whatever order its rows came in. (Late samples'
        // alerts stay in the order the samples came, each sample's sorted: `evaluate`.)
        if full {
            self.tick_events.sort_by(event_order);
        }
        out.append(&mut self.tick_events);
        self.ordered = ordered;
    }

    /// The rare-candidate pass: reads the evidence the kernels left and fires or resolves.
    fn evaluate(&mut self, ts: i64, rows: &Rows, full: bool) {
        // The kernels flagged the rows whose evidence warrants a look (thresholds crossed,
        // streaks confirmed, or already firing, telemetry_absent included).
        #[cfg(debug_assertions)]
        for (i, &sid) in rows.sid.iter().enumerate() {
            debug_assert_eq!(self.flags.attn[i], self.needs_attention(sid as usize));
        }
        // (Taken out for the loop: `evaluate_row` needs the detector, and never reads them.)
        let attn = std::mem::take(&mut self.flags.attn);
        for (i, a) in flagged(&attn) {
            let from = self.tick_events.len();
            self.evaluate_row(i, rows.sid[i], a, ts, rows);
            if !full {
                // Late samples, evaluated together but reported one by one in arrival order.
                self.tick_events[from..].sort_by(event_order);
            }
        }
        self.flags.attn = attn;
        if full {
            // Against the fleet's clock: a tick ahead of it (only a few series were that far,
            // closed at the end of a stream) says nothing of the others' absence. Nor does a
            // tick the end of a stream closes before the watermark reached it say anything of
            // a series that was still within the allowed lateness of it: a series whose samples
            // always arrive a minute late would be reported absent on the last ticks of every
            // finished stream. Such a tick judges absence as of the allowed lateness before it.
            let at = if self.finishing_from != NONE_TS && ts > self.finishing_from {
                ts.saturating_sub(self.p.lateness_ms)
            } else {
                ts
            };
            self.check_absent(at.min(self.clock()), &rows.sid);
        }
    }

    /// The candidate pass for row `i` (series `sid`) of `rows`, for the kinds the kernels
    /// flagged in `attn`.
    fn evaluate_row(&mut self, i: usize, sid: u32, attn: u32, ts: i64, rows: &Rows) {
        let s = sid as usize;
        let warm = self.warm[i] > 0.0;
        let req = f64::from(rows.req[i]);
        // Telemetry is back.
        if attn & KIND_A != 0 {
            self.resolve(sid, AlertKind::TelemetryAbsent, ts, 0.0);
        }
        for (kind, bit) in [
            (AlertKind::ErrorRateSpike, KIND_E),
            (AlertKind::RetryAmplification, KIND_R),
        ] {
            if attn & bit == 0 {
                continue;
            }
            let (cfg, x) = if kind == AlertKind::ErrorRateSpike {
                (&self.p.cfg.error_rate, rows.err[i])
            } else {
                (&self.p.cfg.retry, rows.retries[i])
            };
            let x = f64::from(x);
            let st = &self.st;
            let (cus, firing, clear, rune, runn, runstart, phi, be, bn) =
                if kind == AlertKind::ErrorRateSpike {
                    (
                        st.e_cus[s],
                        st.e_firing[s],
                        st.e_clear[s],
                        st.e_rune[s],
                        st.e_runn[s],
                        st.e_runstart[s],
                        st.e_phi[s],
                        st.e_be[s],
                        st.e_bn[s],
                    )
                } else {
                    (
                        st.r_cus[s],
                        st.r_firing[s],
                        st.r_clear[s],
                        st.r_rune[s],
                        st.r_runn[s],
                        st.r_runstart[s],
                        st.r_phi[s],
                        st.r_be[s],
                        st.r_bn[s],
                    )
                };
            // A candidate's baseline did not learn from this sample (its CUSUM is over
            // the threshold or it is firing), so these are the levels the kernel used.
            let (p0, p1) = kernels::RatioParams::new(cfg).levels(be, bn);
            let (p0, p1) = (f64::from(p0), f64::from(p1));
            let (clear, rune, runn, phi) = (
                f64::from(clear),
                f64::from(rune),
                f64::from(runn),
                f64::from(phi),
            );
            let now_ratio = if req > 0.0 && x.is_finite() {
                x / req
            } else {
                0.0
            };
            if firing <= 0.0 {
                if !(warm && cus > to_f(cfg.cusum_threshold) && runn > 0.0) {
                    continue;
                }
                let run_ratio = rune / runn;
                // Practical floor on the run or, for a ramp still diluted by its first
                // samples, on the latest sample when that sample alone is clearly above
                // baseline (so one noisy sample of a quiet series cannot carry it) and above
                // the floor (so one noisy sample of a series settled just under the floor
                // cannot either).
                let recent_ok = now_ratio >= p1
                    && x.is_finite()
                    && overdispersed_upper_tail(x, req, p1, phi) < cfg.floor_alpha
                    && overdispersed_upper_tail(x, req, p0, phi) < cfg.sample_alpha;
                if (run_ratio < p1 && !recent_ok)
                    || rune < cfg.min_count
                    || overdispersed_upper_tail(rune, runn, p0, phi) >= cfg.alpha
                {
                    continue;
                }
                let value = now_ratio.max(run_ratio);
                let sev = if value >= cfg.critical_ratio {
                    Severity::Critical
                } else {
                    Severity::Warning
                };
                #[allow(clippy::cast_possible_truncation)]
                let onset = runstart as i64;
                self.fire(sid, kind, onset, ts, sev, value, p0);
            } else if clear >= self.resolve_after(sid, kind) {
                self.resolve(sid, kind, ts, now_ratio);
            }
        }
        // success_drop
        if attn & KIND_S != 0 {
            let st = &self.st;
            let (low, firing, clear, rate, lvl) = (
                st.s_low[s],
                st.s_firing[s],
                f64::from(st.s_clear[s]),
                f64::from(st.s_rate[s]),
                f64::from(st.s_lvl[s]),
            );
            let (run_s, run_mu, var) = (st.s_run[s], st.s_runmu[s], st.s_var[s]);
            let cfg = &self.p.cfg.success_drop;
            let k = SuccessParams::new(cfg);
            if firing <= 0.0 {
                if warm && k.significant(low, run_s, run_mu, var) {
                    let svc = self.service_of[s] as usize;
                    if self.conserved[svc] {
                        // Traffic moved to sibling clusters: not a loss. Counted once per run
                        // of low samples (known by its start), however often its pooled
                        // significance comes and goes.
                        #[allow(clippy::cast_possible_truncation)]
                        let run = st.s_runstart[s] as i64;
                        if self.moves_counted.insert(sid, run) != Some(run) {
                            self.stats.moves_suppressed += 1;
                        }
                    } else {
                        #[allow(clippy::cast_possible_truncation)]
                        let onset = st.s_runstart[s] as i64;
                        self.fire(
                            sid,
                            AlertKind::SuccessDrop,
                            onset,
                            ts,
                            Severity::Critical,
                            rate,
                            lvl,
                        );
                    }
                }
            } else if clear >= self.resolve_after(sid, AlertKind::SuccessDrop) {
                self.resolve(sid, AlertKind::SuccessDrop, ts, rate);
            } else {
                self.settle_success_drop(sid, ts);
            }
        }
        // latency_spike
        if attn & KIND_L != 0 {
            let st = &self.st;
            let lc = &self.p.cfg.latency;
            let (cus, firing, clear, last, m) = (
                st.l_cus[s],
                st.l_firing[s],
                f64::from(st.l_clear[s]),
                f64::from(st.l_last[s]),
                f64::from(st.l_m[s]),
            );
            let h = to_f(lc.cusum_h);
            let valid_now = rows.p99[i].is_finite() && rows.req[i] >= to_f(lc.min_requests);
            let p50_now = f64::from(rows.p50[i]);
            let has50_now = p50_now.is_finite() && p50_now > 0.0 && rows.req[i] >= 1.0;
            let base50 = f64::from(st.l_m50[s]).exp();
            let floors = |value: f64, base: f64| {
                value >= base * lc.min_factor && value - base >= lc.min_abs_ms
            };
            if firing <= 0.0 {
                let base = m.exp();
                #[allow(clippy::cast_possible_truncation)]
                let onset = st.l_runstart[s] as i64;
                let sev = |value: f64, base: f64| {
                    if value >= 3.0 * base {
                        Severity::Critical
                    } else {
                        Severity::Warning
                    }
                };
                if warm
                    && valid_now
                    && f64::from(st.l_n[s]) >= lc.min_samples
                    && (cus > h || st.l_z[s] >= to_f(lc.spike_z))
                    && floors(last, base)
                {
                    self.fire(
                        sid,
                        AlertKind::LatencySpike,
                        onset,
                        ts,
                        sev(last, base),
                        last,
                        base,
                    );
                } else if warm
                    && has50_now
                    && f64::from(st.l_n50[s]) >= lc.min_samples
                    && st.l_c50[s] > h
                    && floors(p50_now, base50)
                {
                    // The body of the distribution slowed: judged on the p50, and reported
                    // as the p50 (a quiet series has no p99 worth quoting).
                    self.fire_on(
                        sid,
                        AlertKind::LatencySpike,
                        onset,
                        ts,
                        sev(p50_now, base50),
                        p50_now,
                        base50,
                        true,
                    );
                }
            } else if clear >= self.resolve_after(sid, AlertKind::LatencySpike) {
                let on_p50 = self
                    .active
                    .get(&(sid, AlertKind::LatencySpike))
                    .is_some_and(|a| a.p50);
                // The value at resolution is the sample's own (a p99 under `min_requests` is
                // still the latest there is; the last judged one can be minutes old).
                let p99_now = f64::from(rows.p99[i]);
                let value = match (on_p50, has50_now, p99_now.is_finite()) {
                    (true, true, _) => p50_now,
                    (true, false, _) => base50,
                    (false, _, true) => p99_now,
                    (false, _, false) => last,
                };
                self.resolve(sid, AlertKind::LatencySpike, ts, value);
            }
        }
        // db_pool_saturation
        if attn & KIND_P != 0 {
            let st = &self.st;
            let pc = &self.p.cfg.db_pool;
            let (warn, sat, firing, clear, last, base) = (
                f64::from(st.p_warn[s]),
                f64::from(st.p_sat[s]),
                st.p_firing[s],
                f64::from(st.p_clear[s]),
                f64::from(st.p_last[s]),
                f64::from(st.p_base[s]),
            );
            let confirm = f64::from(pc.confirm_samples);
            if firing <= 0.0 {
                if warm && (warn >= confirm || sat >= confirm) {
                    #[allow(clippy::cast_possible_truncation)]
                    let onset = st.p_runstart[s] as i64;
                    let sev = if sat >= confirm {
                        Severity::Critical
                    } else {
                        Severity::Warning
                    };
                    self.fire(sid, AlertKind::DbPoolSaturation, onset, ts, sev, last, base);
                }
            } else if clear >= self.resolve_after(sid, AlertKind::DbPoolSaturation) {
                self.resolve(sid, AlertKind::DbPoolSaturation, ts, last);
            }
        }
    }

    /// Cheap screen: which kinds' evidence of series `s` warrants the candidate pass (`KIND_*`
    /// bits)? The kernels compute the same per row as they go (`attn`); this is the reference
    /// for it.
    #[cfg(debug_assertions)]
    fn needs_attention(&self, s: usize) -> u32 {
        let st = &self.st;
        let c = &self.p.cfg;
        let confirm_p = to_f(f64::from(c.db_pool.confirm_samples));
        let bit = |on: bool, b: u32| if on { b } else { 0 };
        bit(
            st.e_cus[s] > to_f(c.error_rate.cusum_threshold) || st.e_firing[s] > 0.0,
            KIND_E,
        ) | bit(
            st.r_cus[s] > to_f(c.retry.cusum_threshold) || st.r_firing[s] > 0.0,
            KIND_R,
        ) | bit(
            SuccessParams::new(&c.success_drop).significant(
                st.s_low[s],
                st.s_run[s],
                st.s_runmu[s],
                st.s_var[s],
            ) || st.s_firing[s] > 0.0,
            KIND_S,
        ) | bit(
            st.l_cus[s] > to_f(c.latency.cusum_h)
                || st.l_c50[s] > to_f(c.latency.cusum_h)
                || st.l_z[s] >= to_f(c.latency.spike_z)
                || st.l_firing[s] > 0.0,
            KIND_L,
        ) | bit(
            st.p_warn[s] >= confirm_p || st.p_sat[s] >= confirm_p || st.p_firing[s] > 0.0,
            KIND_P,
        ) | bit(st.a_firing[s] > 0.0, KIND_A)
    }

    /// Sets a kind's firing flag and restarts its clear time (telemetry has none).
    fn set_flag(&mut self, s: usize, kind: AlertKind, firing: bool) {
        let st = &mut self.st;
        let (flag, clear) = match kind {
            AlertKind::ErrorRateSpike => (&mut st.e_firing, Some(&mut st.e_clear)),
            AlertKind::RetryAmplification => (&mut st.r_firing, Some(&mut st.r_clear)),
            AlertKind::SuccessDrop => (&mut st.s_firing, Some(&mut st.s_clear)),
            AlertKind::LatencySpike => (&mut st.l_firing, Some(&mut st.l_clear)),
            AlertKind::DbPoolSaturation => (&mut st.p_firing, Some(&mut st.p_clear)),
            AlertKind::TelemetryAbsent => (&mut st.a_firing, None),
        };
        flag[s] = if firing { 1.0 } else { 0.0 };
        if let Some(clear) = clear {
            clear[s] = 0.0;
        }
    }

    /// After a resolution, accumulated evidence starts afresh.
    fn reset_evidence(&mut self, s: usize, kind: AlertKind) {
        let st = &mut self.st;
        match kind {
            AlertKind::ErrorRateSpike => {
                st.e_cus[s] = 0.0;
                st.e_rune[s] = 0.0;
                st.e_runn[s] = 0.0;
            }
            AlertKind::RetryAmplification => {
                st.r_cus[s] = 0.0;
                st.r_rune[s] = 0.0;
                st.r_runn[s] = 0.0;
            }
            AlertKind::LatencySpike => {
                st.l_cus[s] = 0.0;
                st.l_c50[s] = 0.0;
            }
            AlertKind::SuccessDrop | AlertKind::DbPoolSaturation | AlertKind::TelemetryAbsent => {}
        }
    }

    /// A warm series that has missed `absent_after_intervals` of its intervals, judged against
    /// the tick being closed (the fleet's event time), is absent. `reported` are the series of
    /// the tick's rows: their newest sample is the tick's own, at or after `ts`, so only the
    /// other series are looked at (when `reported` is in series order, as a whole tick's rows
    /// are; otherwise every series is).
    fn check_absent(&mut self, ts: i64, reported: &[u32]) {
        #[allow(clippy::cast_precision_loss)]
        let tsf = ts as f64;
        let k = self.p.cfg.telemetry.absent_after_intervals;
        let warmup = self.p.cfg.warmup_s;
        let st = &self.st;
        let n = st.len();
        let mut due = std::mem::take(&mut self.absent_due);
        let mut hits = Vec::new();
        let mut judge = |r: std::ops::Range<usize>| {
            due.clear();
            due.resize(r.len(), 0);
            absent_due(
                tsf,
                k,
                warmup,
                &st.interval_s[r.clone()],
                &st.seen[r.clone()],
                &st.a_firing[r.clone()],
                &st.last_ts[r.clone()],
                &mut due,
            );
            if due.iter().fold(0, |acc, &d| acc | d) != 0 {
                let from = r.start;
                hits.extend(r.filter(|&s| due[s - from] != 0));
            }
        };
        let ordered = reported.windows(2).fold(true, |ok, w| ok & (w[0] < w[1]));
        if ordered && reported.last().is_none_or(|&s| (s as usize) < n) {
            // The gaps between the reported series, in order.
            let mut from = 0;
            for &s in reported {
                let s = s as usize;
                if s > from {
                    judge(from..s);
                }
                from = s + 1;
            }
            if from < n {
                judge(from..n);
            }
        } else {
            judge(0..n);
        }
        self.absent_due = due;
        for s in hits {
            #[allow(clippy::cast_possible_truncation)]
            let last = self.st.last_ts[s] as i64;
            let interval = f64::from(self.st.interval_s[s]);
            #[allow(clippy::cast_precision_loss)]
            let gap = (ts - last) as f64 / 1000.0;
            #[allow(clippy::cast_possible_truncation)]
            self.fire(
                s as u32,
                AlertKind::TelemetryAbsent,
                last,
                ts,
                Severity::Critical,
                gap,
                interval,
            );
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn fire(
        &mut self,
        sid: SeriesId,
        kind: AlertKind,
        onset: i64,
        ts: i64,
        severity: Severity,
        value: f64,
        baseline: f64,
    ) {
        self.fire_on(sid, kind, onset, ts, severity, value, baseline, false);
    }

    /// [`Self::fire`], saying whether a latency alert's value and baseline are the p50's.
    #[allow(clippy::too_many_arguments)]
    fn fire_on(
        &mut self,
        sid: SeriesId,
        kind: AlertKind,
        onset: i64,
        ts: i64,
        severity: Severity,
        value: f64,
        baseline: f64,
        p50: bool,
    ) {
        // The statistics are f32: report them at that precision.
        let (value, baseline) = (readable(value), readable(baseline));
        self.set_flag(sid as usize, kind, true);
        let window = self.p.flap_window_ms;
        if let Some(f) = self.flaps.get_mut(&(sid, kind)) {
            f.count = if ts - f.resolved_at <= window {
                f.count + 1
            } else {
                0
            };
        }
        let key = &self.keys[sid as usize];
        let onset = onset.min(ts);
        let id = alert_id(&key.cluster, &key.service, kind, onset);
        self.active.insert(
            (sid, kind),
            Active {
                id: id.clone(),
                onset,
                detected_at: ts,
                severity,
                baseline,
                p50,
                held: None,
            },
        );
        self.tick_events.push(AlertEvent {
            id,
            kind,
            state: AlertState::Firing,
            severity,
            cluster: key.cluster.clone(),
            service: key.service.clone(),
            region: key.region.clone(),
            onset,
            detected_at: ts,
            resolved_at: None,
            value,
            baseline,
            summary: summary(kind, value, baseline, p50),
            incident_id: None,
        });
    }

    /// Forgets the flap history of alerts that are not firing and resolved longer than
    /// `flap_window_s` ago: firing again would start their count afresh anyway, so the history
    /// holds only what can still matter. Runs once per flap window of event time (when the
    /// closed ticks cross into the next one, `before` being the newest closed tick before
    /// this one), so the map stays bounded by the alerts resolved within about two windows,
    /// and a detector restored from a snapshot prunes at the same ticks as the original.
    fn prune_flaps(&mut self, before: i64) {
        let window = self.p.flap_window_ms;
        if self.flaps.is_empty()
            || window <= 0
            || before.div_euclid(window) == self.closed_ts.div_euclid(window)
        {
            return;
        }
        let (now, active) = (self.closed_ts, &self.active);
        self.flaps
            .retain(|key, f| active.contains_key(key) || now - f.resolved_at <= window);
    }

    #[cfg(test)]
    pub(crate) fn flap_history_len(&self) -> usize {
        self.flaps.len()
    }

    /// A paged success drop that has held for `settled_after_s` (every sample since further
    /// than half the drop below the level, and the fast EWMA at least `settled_min_ratio` of
    /// it: not a near-total loss, nor the climb out of one) has settled. The level moves to the
    /// fast EWMA's (the level times the fast ratio of successes to expected), the fast expected
    /// count with it, so from the next sample on the series is back and the alert resolves as
    /// for a recovery. Kept here, on the firing series only, rather than in the kernel: a state
    /// column read and written on every row cost the steady fleet 4-5%.
    fn settle_success_drop(&mut self, sid: SeriesId, ts: i64) {
        let s = sid as usize;
        let cfg = &self.p.cfg.success_drop;
        let st = &mut self.st;
        let (fs, fmu) = (f64::from(st.s_fs[s]), f64::from(st.s_fmu[s]));
        // `s_off` is the time in a row further than half the drop below the level: positive
        // exactly when this sample is.
        let in_band = st.s_off[s] > 0.0 && fmu > 0.0 && fs >= cfg.settled_min_ratio * fmu;
        #[allow(clippy::cast_possible_truncation)]
        let gap = (f64::from(st.interval_s[s]) * 1500.0) as i64;
        let Some(a) = self.active.get_mut(&(sid, AlertKind::SuccessDrop)) else {
            return;
        };
        // Held afresh after a sample out of band, or after samples missing (a series gone
        // quiet has not shown where it settled).
        let from = match a.held {
            Some((from, last)) if in_band && ts - last <= gap => from,
            _ => ts,
        };
        a.held = in_band.then_some((from, ts));
        #[allow(clippy::cast_possible_truncation)]
        if !in_band || ts - from < (cfg.settled_after_s * 1000.0) as i64 {
            return;
        }
        a.held = None;
        let ratio = to_f(fs / fmu);
        st.s_sum[s] *= ratio;
        st.s_fmu[s] = st.s_fs[s];
        st.s_off[s] = 0.0;
    }

    /// How long a firing alert's condition must stay clear for it to resolve: the configured
    /// time, doubled for each time in a row it fired again within `flap_window_s` of
    /// resolving, up to `flap_max_resolve_after_s`. A config flapping on and off every few
    /// minutes is then one alert that stays open, not a page per cycle.
    fn resolve_after(&self, sid: SeriesId, kind: AlertKind) -> f64 {
        let cfg = &self.p.cfg;
        let count = self.flaps.get(&(sid, kind)).map_or(0, |f| f.count.min(16));
        (cfg.resolve_after_s * f64::from(1u32 << count)).min(cfg.flap_max_resolve_after_s)
    }

    fn resolve(&mut self, sid: SeriesId, kind: AlertKind, ts: i64, value: f64) {
        let value = readable(value);
        self.set_flag(sid as usize, kind, false);
        self.reset_evidence(sid as usize, kind);
        let Some(a) = self.active.remove(&(sid, kind)) else {
            return;
        };
        self.flaps
            .entry((sid, kind))
            .and_modify(|f| f.resolved_at = ts)
            .or_insert(Flap {
                resolved_at: ts,
                count: 0,
            });
        let key = &self.keys[sid as usize];
        self.tick_events.push(AlertEvent {
            id: a.id,
            kind,
            state: AlertState::Resolved,
            severity: a.severity,
            cluster: key.cluster.clone(),
            service: key.service.clone(),
            region: key.region.clone(),
            onset: a.onset,
            detected_at: a.detected_at,
            resolved_at: Some(ts),
            value,
            baseline: a.baseline,
            summary: format!("resolved: {}", summary(kind, value, a.baseline, a.p50)),
            incident_id: None,
        });
    }

    /// Current view of a series (None for an unknown id).
    pub fn series_view(&self, id: SeriesId) -> Option<SeriesView> {
        let s = id as usize;
        let key = self.keys.get(s)?.clone();
        let st = &self.st;
        let seen = st.seen[s] > 0.0;
        let ratio = |a: F, b: F| {
            if b > 0.0 {
                f64::from(a) / f64::from(b)
            } else {
                0.0
            }
        };
        let baseline = |cfg, be, bn| f64::from(kernels::RatioParams::new(cfg).levels(be, bn).0);
        let firing = AlertKind::ALL
            .into_iter()
            .filter(|k| self.active.contains_key(&(id, *k)))
            .collect();
        #[allow(clippy::cast_possible_truncation)]
        Some(SeriesView {
            id,
            key,
            last_sample_ms: seen.then_some(st.last_ts[s] as i64),
            error_ratio: ratio(st.e_fe[s], st.e_fn[s]),
            error_baseline: baseline(&self.p.cfg.error_rate, st.e_be[s], st.e_bn[s]),
            retry_ratio: ratio(st.r_fe[s], st.r_fn[s]),
            retry_baseline: baseline(&self.p.cfg.retry, st.r_be[s], st.r_bn[s]),
            success_rate: f64::from(st.s_rate[s]),
            success_baseline: ratio(st.s_sum[s], st.s_w[s]),
            latency_p99_ms: f64::from(st.l_last[s]),
            latency_baseline_ms: if st.l_n[s] > 0.0 {
                f64::from(st.l_m[s]).exp()
            } else {
                0.0
            },
            pool_utilisation: f64::from(st.p_last[s]),
            pool_baseline: f64::from(st.p_base[s]),
            pool_pending: f64::from(st.p_pending[s]),
            totals: SeriesTotals {
                requests: st.t_req[s] as u64,
                errors: st.t_err[s] as u64,
                retries: st.t_retries[s] as u64,
            },
            firing,
        })
    }
}

/// The sample columns of a batch being pushed.
struct BatchCols<'a> {
    interval: &'a PrimitiveArray<UInt32Type>,
    req: &'a PrimitiveArray<UInt64Type>,
    err: &'a PrimitiveArray<UInt64Type>,
    retries: &'a PrimitiveArray<UInt64Type>,
    p50: &'a PrimitiveArray<Float64Type>,
    p99: &'a PrimitiveArray<Float64Type>,
    pool_active: &'a PrimitiveArray<UInt32Type>,
    pool_max: &'a PrimitiveArray<UInt32Type>,
    pool_pending: &'a PrimitiveArray<UInt32Type>,
}

// Counts become F here: above 2^24 they round to seven significant digits (and totals of such
// samples are not exact).
#[allow(clippy::cast_precision_loss)]
impl BatchCols<'_> {
    /// Row `i` (series `sid`, time `ts`) as a [`Row`].
    fn row(&self, sid: u32, ts: i64, i: usize) -> Row {
        let or = |valid: bool, v: F, null: F| if valid { v } else { null };
        Row {
            sid,
            ts,
            interval_ms: i64::from(self.interval.value(i).max(1)),
            dt: (self.interval.value(i) as F / 1000.0).max(0.001),
            req: convert::count(self.req.value(i)),
            err: convert::count(self.err.value(i)),
            retries: or(
                self.retries.is_valid(i),
                convert::count(self.retries.value(i)),
                F::NAN,
            ),
            p50: or(self.p50.is_valid(i), to_f(self.p50.value(i)), F::NAN),
            p99: or(self.p99.is_valid(i), to_f(self.p99.value(i)), F::NAN),
            pool_active: or(
                self.pool_active.is_valid(i),
                self.pool_active.value(i) as F,
                F::NAN,
            ),
            pool_max: or(
                self.pool_max.is_valid(i),
                self.pool_max.value(i) as F,
                F::NAN,
            ),
            pool_pending: or(
                self.pool_pending.is_valid(i),
                self.pool_pending.value(i) as F,
                0.0,
            ),
        }
    }

    /// Appends rows `range` to `rows` (all columns but `sid`), a column at a time: tight
    /// conversion loops over the value buffers, nulls patched afterwards.
    fn append(&self, range: std::ops::Range<usize>, rows: &mut Rows) {
        let r = range.clone();
        let start = rows.dt.len();
        convert::interval_s(&mut rows.dt, &self.interval.values()[r.clone()]);
        convert::u64s(&mut rows.req, &self.req.values()[r.clone()]);
        convert::u64s(&mut rows.err, &self.err.values()[r.clone()]);
        convert::u64s(&mut rows.retries, &self.retries.values()[r.clone()]);
        patch_nulls(&mut rows.retries[start..], self.retries, r.clone(), F::NAN);
        for (out, a) in [(&mut rows.p50, self.p50), (&mut rows.p99, self.p99)] {
            convert::f64s(out, &a.values()[r.clone()]);
            patch_nulls(&mut out[start..], a, r.clone(), F::NAN);
        }
        for (out, a, null) in [
            (&mut rows.pool_active, self.pool_active, F::NAN),
            (&mut rows.pool_max, self.pool_max, F::NAN),
            (&mut rows.pool_pending, self.pool_pending, 0.0),
        ] {
            convert::u32s(out, &a.values()[r.clone()]);
            patch_nulls(&mut out[start..], a, r.clone(), null);
        }
    }
}

/// Column conversions to [`F`], compiled for AVX2 and AVX-512 too (`crate::isa`): the baseline
/// has no packed conversion from unsigned integers.
mod convert {
    use super::{Col, F};

    /// 2^52 as the bits of an f64: OR-ing an integer below 2^52 into its mantissa and
    /// subtracting 2^52 converts it exactly, in plain vector instructions.
    const TWO52: u64 = 0x4330_0000_0000_0000;

    /// A count as [`F`] (saturating at 2^52, far beyond any real interval's requests).
    #[inline(always)]
    pub(super) fn count(x: u64) -> F {
        super::to_f(f64::from_bits(TWO52 | x.min((1 << 52) - 1)) - 4_503_599_627_370_496.0)
    }

    // Each appends to `out` (no zero-filling first: the conversion writes every entry once).

    crate::isa::multiversion! {
    /// Counts, by [`count`].
    pub(super) fn u64s(out: &mut Col<F>, v: &[u64]) {
        out.extend(v.iter().map(|&x| count(x)));
    }
    }

    crate::isa::multiversion! {
    pub(super) fn u32s(out: &mut Col<F>, v: &[u32]) {
        out.extend(v.iter().map(|&x| super::to_f(f64::from(x))));
    }
    }

    crate::isa::multiversion! {
    pub(super) fn f64s(out: &mut Col<F>, v: &[f64]) {
        out.extend(v.iter().map(|&x| super::to_f(x)));
    }
    }

    crate::isa::multiversion! {
    /// Interval lengths: milliseconds to seconds, at least a millisecond.
    pub(super) fn interval_s(out: &mut Col<F>, v: &[u32]) {
        out.extend(
            v.iter()
                .map(|&x| (super::to_f(f64::from(x)) / 1000.0).max(0.001)),
        );
    }
    }
}

/// Whether `ids` are `first`, `first + 1`, ... in that order. (A fold, not `all`: without the
/// early exit the comparison vectorises.)
/// Takes one series off the count due at `t`.
fn take_due(due_count: &mut BTreeMap<i64, usize>, t: i64) {
    take_due_n(due_count, t, 1);
}

/// Takes `n` series off the count due at `t`.
fn take_due_n(due_count: &mut BTreeMap<i64, usize>, t: i64, n: usize) {
    if let std::collections::btree_map::Entry::Occupied(mut e) = due_count.entry(t) {
        debug_assert!(*e.get() >= n, "more series reported at {t} than were due");
        if *e.get() <= n {
            e.remove();
        } else {
            *e.get_mut() -= n;
        }
    } else {
        debug_assert!(false, "no series due at {t}");
    }
}

/// Due times being added to `Detector::due_count`, gathered while they agree (a run of rows
/// with one interval adds one count).
#[derive(Debug, Default)]
struct DueTally {
    at: i64,
    n: usize,
}

impl DueTally {
    fn add(&mut self, at: i64, n: usize, due_count: &mut BTreeMap<i64, usize>) {
        if self.n > 0 && self.at != at {
            self.flush(due_count);
        }
        self.at = at;
        self.n += n;
    }

    fn flush(&mut self, due_count: &mut BTreeMap<i64, usize>) {
        if self.n > 0 {
            *due_count.entry(self.at).or_default() += self.n;
            self.n = 0;
        }
    }
}

fn consecutive_from(ids: &[u32], first: usize) -> bool {
    ids.iter()
        .zip(first..)
        .fold(true, |ok, (&s, want)| ok & (s as usize == want))
}

/// Sets `out[i]` to `null` where row `range.start + i` of `a` is null. The bitmap is read 64
/// rows at a time, and a chunk with no nulls is skipped.
fn patch_nulls<T: ArrowPrimitiveType>(
    out: &mut [F],
    a: &PrimitiveArray<T>,
    range: std::ops::Range<usize>,
    null: F,
) {
    let Some(nulls) = a.nulls().filter(|n| n.null_count() > 0) else {
        return;
    };
    // The validity bits of the range, 64 rows to a word (the last word partly).
    let bits = nulls.inner().slice(range.start, range.len());
    let chunks = bits.bit_chunks();
    let words: Vec<u64> = chunks
        .iter()
        .chain(std::iter::once(chunks.remainder_bits()))
        .collect();
    apply_validity(out, &words, null);
}

crate::isa::multiversion! {
/// Appends `from[order[k]]` for each `k` to `out` (vector gathers where the CPU has them).
fn gather(out: &mut Col<F>, from: &[F], order: &[u32]) {
    let Some(last) = from.len().checked_sub(1) else {
        return;
    };
    // The indices are in range; clamping says so to the compiler, which then drops the
    // bounds check that would keep the loop scalar.
    out.extend(order.iter().map(|&i| from[(i as usize).min(last)]));
}
}

crate::isa::multiversion! {
/// Sets `out[i]` to `null` where bit `i` of `valid` (64 rows to a word) is clear. Bit
/// arithmetic rather than a branch per row: validity can be any pattern (rows of several
/// producers interleaved), and this way the loop vectorises.
fn apply_validity(out: &mut [F], valid: &[u64], null: F) {
    let nb = null.to_bits();
    for (o, &w) in out.chunks_mut(64).zip(valid) {
        if w == u64::MAX {
            continue;
        }
        for (j, v) in o.iter_mut().enumerate() {
            #[allow(clippy::cast_possible_truncation)]
            let keep = 0u32.wrapping_sub(((w >> j) & 1) as u32);
            *v = F::from_bits((v.to_bits() & keep) | (nb & !keep));
        }
    }
}
}

/// Per-row interval bookkeeping and warm-up flags, ahead of the kernels.
fn prepare(
    cfg: &DetectorConfig,
    rows: &Block<'_>,
    sc: &mut SeriesState,
    r: std::ops::Range<usize>,
    warm: &mut [F],
) {
    let hl = cfg.baseline_half_life_s;
    let warmup = to_f(cfg.warmup_s);
    let (interval, alpha, fast_a, seen) = (
        &mut sc.interval_s[r.clone()],
        &mut sc.alpha[r.clone()],
        &mut sc.fast_a[r.clone()],
        &sc.seen[r],
    );
    let n = warm.len();
    let (dt, interval, seen) = (&rows.dt[..n], &mut interval[..n], &seen[..n]);
    // Warm-up flags, and whether any row's interval changed, in one loop that vectorises; the
    // rare change (a series' first sample, or a new interval) is applied after it.
    let mut changed = false;
    for i in 0..n {
        changed |= interval[i] != dt[i];
        warm[i] = if seen[i] * dt[i] >= warmup { 1.0 } else { 0.0 };
    }
    if changed {
        for i in 0..n {
            if interval[i] != dt[i] {
                // New EWMA weights for the interval.
                interval[i] = dt[i];
                alpha[i] = to_f(1.0 - (-f64::from(dt[i]) / hl * std::f64::consts::LN_2).exp());
                fast_a[i] = kernels::fast_alpha(dt[i]);
            }
        }
    }
}

crate::isa::multiversion! {
/// `due[s] = 1` where warm series `s`, not already absent, has missed `k` of its intervals by
/// event time `ts` (a tight loop over every series; the alerts are raised by the caller).
#[allow(clippy::too_many_arguments)]
fn absent_due(
    ts: f64,
    k: f64,
    warmup: f64,
    interval_s: &[F],
    seen: &[F],
    a_firing: &[F],
    last_ts: &[f64],
    due: &mut [u8],
) {
    let n = due.len();
    let (interval_s, seen, a_firing, last_ts) =
        (&interval_s[..n], &seen[..n], &a_firing[..n], &last_ts[..n]);
    for s in 0..n {
        let interval = f64::from(interval_s[s]);
        // Event times are whole milliseconds: half a millisecond of slack absorbs the
        // rounding of an interval that f32 cannot hold exactly (0.1 s, say).
        due[s] = u8::from(
            (f64::from(seen[s]) * interval >= warmup)
                & (a_firing[s] <= 0.0)
                & (ts - last_ts[s] >= k * interval * 1000.0 - 0.5),
        );
    }
}
}

/// The order alerts of one tick (or one late sample) are reported in.
fn event_order(a: &AlertEvent, b: &AlertEvent) -> std::cmp::Ordering {
    (
        a.kind,
        &a.cluster,
        &a.service,
        &a.region,
        a.state == AlertState::Firing,
    )
        .cmp(&(
            b.kind,
            &b.cluster,
            &b.service,
            &b.region,
            b.state == AlertState::Firing,
        ))
}

/// What the kernels flagged per row of a tick (scratch, reused).
#[derive(Debug, Default)]
struct TickFlags {
    /// `KIND_*` bits: the candidate pass must look at the kind for the row.
    attn: Col<u32>,
    /// `KIND_*` bits: the kind's run started in this tick.
    starts: Col<u32>,
}

impl TickFlags {
    fn reset(&mut self, n: usize) {
        self.attn.clear();
        self.attn.resize(n, 0);
        self.starts.clear();
        self.starts.resize(n, 0);
    }
}

/// Per-row flag bits, one per kind (see [`TickFlags`]).
const KIND_E: u32 = 1;
const KIND_R: u32 = 2;
const KIND_S: u32 = 4;
const KIND_L: u32 = 8;
const KIND_P: u32 = 16;
/// telemetry_absent is firing and the series reported (only ever in `attn`).
const KIND_A: u32 = 32;

/// Runs every kernel over a block of rows whose state lives at `sc[r]`, and marks in `attn`
/// the rows the candidate pass must look at and in `starts` the runs that started.
#[allow(clippy::too_many_arguments)]
fn run_kernels(
    cfg: &DetectorConfig,
    rows: &Block<'_>,
    warm: &[F],
    sc: &mut SeriesState,
    r: std::ops::Range<usize>,
    attn: &mut [u32],
    starts: &mut [u32],
    tsf: f64,
) {
    let common = Common {
        dt: rows.dt,
        alpha: &sc.alpha[r.clone()],
        fast_a: &sc.fast_a[r.clone()],
        warm,
        seen: &sc.seen[r.clone()],
    };
    kernels::ratio(
        &cfg.error_rate,
        &common,
        rows.err,
        rows.req,
        RatioCols {
            be: &mut sc.e_be[r.clone()],
            bn: &mut sc.e_bn[r.clone()],
            phi: &mut sc.e_phi[r.clone()],
            cus: &mut sc.e_cus[r.clone()],
            rune: &mut sc.e_rune[r.clone()],
            runn: &mut sc.e_runn[r.clone()],
            fe: &mut sc.e_fe[r.clone()],
            fnn: &mut sc.e_fn[r.clone()],
            firing: &sc.e_firing[r.clone()],
            clear: &mut sc.e_clear[r.clone()],
        },
        Marks {
            attn: &mut *attn,
            starts: &mut *starts,
            bit: KIND_E,
        },
    );
    kernels::ratio(
        &cfg.retry,
        &common,
        rows.retries,
        rows.req,
        RatioCols {
            be: &mut sc.r_be[r.clone()],
            bn: &mut sc.r_bn[r.clone()],
            phi: &mut sc.r_phi[r.clone()],
            cus: &mut sc.r_cus[r.clone()],
            rune: &mut sc.r_rune[r.clone()],
            runn: &mut sc.r_runn[r.clone()],
            fe: &mut sc.r_fe[r.clone()],
            fnn: &mut sc.r_fn[r.clone()],
            firing: &sc.r_firing[r.clone()],
            clear: &mut sc.r_clear[r.clone()],
        },
        Marks {
            attn: &mut *attn,
            starts: &mut *starts,
            bit: KIND_R,
        },
    );
    kernels::success(
        &cfg.success_drop,
        &common,
        rows.req,
        rows.err,
        SuccessCols {
            sum: &mut sc.s_sum[r.clone()],
            w: &mut sc.s_w[r.clone()],
            var: &mut sc.s_var[r.clone()],
            off: &mut sc.s_off[r.clone()],
            low: &mut sc.s_low[r.clone()],
            run_s: &mut sc.s_run[r.clone()],
            run_mu: &mut sc.s_runmu[r.clone()],
            fs: &mut sc.s_fs[r.clone()],
            fmu: &mut sc.s_fmu[r.clone()],
            rate: &mut sc.s_rate[r.clone()],
            lvl: &mut sc.s_lvl[r.clone()],
            firing: &sc.s_firing[r.clone()],
            clear: &mut sc.s_clear[r.clone()],
        },
        Marks {
            attn: &mut *attn,
            starts: &mut *starts,
            bit: KIND_S,
        },
    );
    kernels::latency(
        &cfg.latency,
        &common,
        rows.p99,
        rows.p50,
        rows.req,
        LatencyCols {
            m: &mut sc.l_m[r.clone()],
            m50: &mut sc.l_m50[r.clone()],
            v50: &mut sc.l_v50[r.clone()],
            n50: &mut sc.l_n50[r.clone()],
            c50: &mut sc.l_c50[r.clone()],
            v: &mut sc.l_v[r.clone()],
            n: &mut sc.l_n[r.clone()],
            cus: &mut sc.l_cus[r.clone()],
            last: &mut sc.l_last[r.clone()],
            firing: &sc.l_firing[r.clone()],
            clear: &mut sc.l_clear[r.clone()],
            z: &mut sc.l_z[r.clone()],
        },
        Marks {
            attn: &mut *attn,
            starts: &mut *starts,
            bit: KIND_L,
        },
    );
    kernels::pool(
        &cfg.db_pool,
        &common,
        rows.pool_active,
        rows.pool_max,
        rows.pool_pending,
        PoolCols {
            lvl: &mut sc.p_lvl[r.clone()],
            tr: &mut sc.p_tr[r.clone()],
            base: &mut sc.p_base[r.clone()],
            var: &mut sc.p_var[r.clone()],
            n: &mut sc.p_n[r.clone()],
            last: &mut sc.p_last[r.clone()],
            warn: &mut sc.p_warn[r.clone()],
            sat: &mut sc.p_sat[r.clone()],
            hold: &mut sc.p_hold[r.clone()],
            from: &mut sc.p_from[r.clone()],
            firing: &sc.p_firing[r.clone()],
            clear: &mut sc.p_clear[r.clone()],
        },
        Marks {
            attn: &mut *attn,
            starts: &mut *starts,
            bit: KIND_P,
        },
    );
    tally(
        tsf,
        rows.req,
        rows.err,
        rows.retries,
        rows.pool_pending,
        &mut *attn,
        &sc.a_firing[r.clone()],
        &mut sc.t_req[r.clone()],
        &mut sc.t_err[r.clone()],
        &mut sc.t_retries[r.clone()],
        &mut sc.p_pending[r.clone()],
        &mut sc.seen[r.clone()],
        &mut sc.last_ts[r],
    );
}

crate::isa::multiversion! {
/// The per-row bookkeeping after the kernels, in one pass: attention for a series marked
/// absent that reported (the candidate pass resolves it), the cumulative counts (f64 sums of
/// whole numbers: exact up to 2^53), the pool's waiters, samples seen and the newest event
/// time.
#[allow(clippy::too_many_arguments)]
fn tally(
    ts: f64,
    req: &[F],
    err: &[F],
    retries: &[F],
    pending: &[F],
    attn: &mut [u32],
    a_firing: &[F],
    t_req: &mut [f64],
    t_err: &mut [f64],
    t_retries: &mut [f64],
    p_pending: &mut [F],
    seen: &mut [F],
    last_ts: &mut [f64],
) {
    let n = req.len();
    let (err, retries, pending) = (&err[..n], &retries[..n], &pending[..n]);
    let (attn, a_firing) = (&mut attn[..n], &a_firing[..n]);
    let (t_req, t_err, t_retries) = (&mut t_req[..n], &mut t_err[..n], &mut t_retries[..n]);
    let (p_pending, seen, last_ts) = (&mut p_pending[..n], &mut seen[..n], &mut last_ts[..n]);
    for i in 0..n {
        attn[i] |= if a_firing[i] > 0.0 { KIND_A } else { 0 };
        t_req[i] += f64::from(req[i]);
        t_err[i] += f64::from(err[i]);
        t_retries[i] += if retries[i].is_finite() {
            f64::from(retries[i])
        } else {
            0.0
        };
        p_pending[i] = pending[i];
        // Saturates where an f32 stops counting whole numbers; only "past warm-up" is read.
        seen[i] = (seen[i] + 1.0).min(16_000_000.0);
        last_ts[i] = ts;
    }
}
}

/// The rows with a flag set in `flags`, with their flags, in order. Most rows have none: they
/// are skipped 64 at a time.
fn flagged(flags: &[u32]) -> impl Iterator<Item = (usize, u32)> + '_ {
    const SCAN: usize = 64;
    flags
        .chunks(SCAN)
        .enumerate()
        .filter(|(_, chunk)| chunk.iter().fold(0, |acc, &f| acc | f) != 0)
        .flat_map(|(c, chunk)| {
            chunk
                .iter()
                .enumerate()
                .filter(|&(_, &f)| f != 0)
                .map(move |(j, &f)| (c * SCAN + j, f))
        })
}

/// Writes the start time of each run that started in a tick (the start of the row's interval)
/// where `starts` flags one.
fn mark_run_starts(st: &mut SeriesState, sids: &[u32], dt: &[F], starts: &[u32], ts: f64) {
    for (i, f) in flagged(starts) {
        let s = sids[i] as usize;
        let t0 = ts - f64::from(dt[i]) * 1000.0;
        for (bit, col) in [
            (KIND_E, &mut st.e_runstart),
            (KIND_R, &mut st.r_runstart),
            (KIND_S, &mut st.s_runstart),
            (KIND_L, &mut st.l_runstart),
            (KIND_P, &mut st.p_runstart),
        ] {
            if f & bit != 0 {
                col[s] = t0;
            }
        }
    }
}

/// Sums the success rate and its level per service over a tick's rows into `svc_rate` and
/// `svc_lvl` (overwritten). Each service's sums are kept in four partial sums, row `i` adding
/// to partial `i % 4`, so consecutive rows of a service do not wait on one running sum. Its own
/// function so the columns are slices the compiler knows apart, rather than fields it would
/// reload on every row.
#[inline(never)]
fn service_totals(
    sids: &[u32],
    service_of: &[u32],
    rate: &[F],
    lvl: &[F],
    svc_rate: &mut [f64],
    svc_lvl: &mut [f64],
) {
    const LANES: usize = 4;
    let mut acc = vec![[0.0f64; 2 * LANES]; svc_rate.len()];
    let mut add = |l: usize, s: u32| {
        let s = s as usize;
        let a = &mut acc[service_of[s] as usize];
        a[l] += f64::from(rate[s]);
        a[LANES + l] += f64::from(lvl[s]);
    };
    let chunks = sids.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for (l, &s) in c.iter().enumerate() {
            add(l, s);
        }
    }
    for (l, &s) in rest.iter().enumerate() {
        add(l, s);
    }
    for ((r, v), a) in svc_rate.iter_mut().zip(svc_lvl.iter_mut()).zip(&acc) {
        *r = (a[0] + a[1]) + (a[2] + a[3]);
        *v = (a[4] + a[5]) + (a[6] + a[7]);
    }
}

/// Per service, the sums of the success rates (`svc_rate`) and levels (`svc_lvl`) of its
/// series current at `ts`: whose newest sample evaluated (`st.last_ts`) is less than one
/// interval older (half a millisecond's tolerance for intervals f32 does not hold exactly).
/// Each series' share (its rate and level, or 0 when not current) is kept in `c_rate`, `c_lvl`.
#[inline(never)]
fn service_totals_current(
    ts: f64,
    st: &SeriesState,
    service_of: &[u32],
    c_rate: &mut [F],
    c_lvl: &mut [F],
    svc_rate: &mut [f64],
    svc_lvl: &mut [f64],
) {
    let n = service_of.len();
    let (last_ts, interval_s) = (&st.last_ts[..n], &st.interval_s[..n]);
    let (rate, lvl) = (&st.s_rate[..n], &st.s_lvl[..n]);
    let (c_rate, c_lvl) = (&mut c_rate[..n], &mut c_lvl[..n]);
    for s in 0..n {
        let current = last_ts[s] + f64::from(interval_s[s]) * 1000.0 - 0.5 > ts && last_ts[s] <= ts;
        let w: F = if current { 1.0 } else { 0.0 };
        c_rate[s] = rate[s] * w;
        c_lvl[s] = lvl[s] * w;
    }
    let all: Vec<u32> = (0..u32::try_from(n).unwrap_or(u32::MAX)).collect();
    service_totals(&all, service_of, c_rate, c_lvl, svc_rate, svc_lvl);
}

/// Updates the running service sums `svc_rate`, `svc_lvl` for the series `sids` just
/// evaluated: each adds the change from its kept share (`c_rate`, `c_lvl`) to its rate and level
/// now, which become its share.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn service_totals_update(
    sids: &[u32],
    service_of: &[u32],
    rate: &[F],
    lvl: &[F],
    c_rate: &mut [F],
    c_lvl: &mut [F],
    svc_rate: &mut [f64],
    svc_lvl: &mut [f64],
) {
    for &s in sids {
        let s = s as usize;
        let svc = service_of[s] as usize;
        svc_rate[svc] += f64::from(rate[s]) - f64::from(c_rate[s]);
        svc_lvl[svc] += f64::from(lvl[s]) - f64::from(c_lvl[s]);
        c_rate[s] = rate[s];
        c_lvl[s] = lvl[s];
    }
}
