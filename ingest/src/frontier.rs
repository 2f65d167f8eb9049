//! How far every input has delivered in event time, for the detector's watermark hold
//! ([`detector::Detector::set_frontier`]).
//!
//! A consumer of a topic with several partitions reads them in bursts: librdkafka hands over a
//! fetch's worth of one partition, then of the next. Live, that is harmless: every partition
//! carries the last few seconds. Catching up on a backlog (after a restart, a deploy, an
//! outage), one burst can cover many minutes of event time, so one partition is read far ahead
//! of another. A watermark driven by the newest event time alone would then call the other
//! partitions' samples too late and their series absent. The fix streaming systems use is a
//! watermark per input, and the overall one is the oldest of them: this module keeps one per
//! *lane* (a partition, numbered by the source) and gives the detector the oldest.
//!
//! Rules, all in event time except idleness:
//! - A lane's position is the newest event time it delivered into the detector. While a batch
//!   is being put together, a lane in it counts only as far as its oldest row in the batch,
//!   so none of that batch's rows is behind the watermark when the detector reads it
//!   ([`Frontier::before_batch`], then [`Frontier::after_batch`]).
//! - An assigned lane not heard from yet could deliver anything: it holds everything.
//! - A lane that delivered nothing for `idle_ms` of wall time (caught up and quiet, or its
//!   broker unreachable) stops holding until it delivers again, so a partition whose producers
//!   went dark cannot stop the fleet's ticks from closing (and its series from being reported
//!   absent).
//!
//! - With [`FrontierOptions::max_ahead_ms`] set (a live source), the frontier never runs more
//!   than that past the wall clock, lanes or none. A producer whose clock runs an hour fast
//!   would otherwise drag the watermark an hour ahead: every other series' samples too late,
//!   every other series reported absent. Its samples wait, open, until the wall clock reaches
//!   them, and meanwhile its series is the one reported absent.
//!
//! The detector bounds the memory the hold costs (open ticks are buffered): past its
//! `max_held_samples` it closes the oldest open tick anyway.
//!
//! Sans-I/O: the caller passes the wall clock.

/// Settings of a [`Frontier`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrontierOptions {
    /// A lane silent this long (wall ms) stops holding the others back. Default 5 s.
    pub idle_ms: i64,
    /// The frontier is at most this far (ms) past the wall clock; `None` (the default): no
    /// limit, for sources whose event time has nothing to do with the wall clock (replays).
    pub max_ahead_ms: Option<i64>,
}

impl Default for FrontierOptions {
    fn default() -> Self {
        Self {
            idle_ms: 5_000,
            max_ahead_ms: None,
        }
    }
}

const NOTHING: i64 = i64::MIN;
const NO_ROWS: i64 = i64::MAX;

#[derive(Debug, Clone, Copy)]
struct Lane {
    /// Newest event time delivered into the detector, or `NOTHING`.
    newest: i64,
    /// Oldest and newest event time of the lane's rows in the batch being put together, or
    /// `NO_ROWS` / `NOTHING`.
    batch_oldest: i64,
    batch_newest: i64,
    /// Wall ms of the lane's last row, or of its assignment.
    active_ms: i64,
}

impl Lane {
    fn new(now_ms: i64) -> Self {
        Self {
            newest: NOTHING,
            batch_oldest: NO_ROWS,
            batch_newest: NOTHING,
            active_ms: now_ms,
        }
    }

    /// How far the lane holds the watermark: `NOTHING` holds everything.
    fn position(&self) -> i64 {
        match (self.newest, self.batch_oldest) {
            (NOTHING, NO_ROWS) => NOTHING,
            (NOTHING, oldest) => oldest,
            (newest, oldest) => newest.min(oldest),
        }
    }
}

/// Per-lane event-time positions and the frontier they give (see the module docs).
///
/// ```
/// use ingest::frontier::{Frontier, FrontierOptions};
///
/// let mut f = Frontier::new(FrontierOptions::default());
/// f.assign(&[0, 1], 0);
/// f.note(0, 1_000, 9_000, 10);
/// // Lane 1 has not delivered yet: it could still deliver anything.
/// assert_eq!(f.before_batch(10), Some(i64::MIN));
/// f.after_batch(10);
/// f.note(1, 4_000, 5_000, 20);
/// assert_eq!(f.before_batch(20), Some(4_000));
/// assert_eq!(f.after_batch(20), Some(5_000));
/// ```
#[derive(Debug, Clone, Default)]
pub struct Frontier {
    opts: FrontierOptions,
    /// By lane number; `None`: not assigned.
    lanes: Vec<Option<Lane>>,
}

impl Frontier {
    pub fn new(opts: FrontierOptions) -> Self {
        Self {
            opts,
            lanes: Vec::new(),
        }
    }

    pub fn set_options(&mut self, opts: FrontierOptions) {
        self.opts = opts;
    }

    /// The lanes that may deliver from now on (a consumer's partition assignment). Lanes not
    /// listed are forgotten; new ones hold everything until they deliver or go idle.
    pub fn assign(&mut self, lanes: &[u32], now_ms: i64) {
        let mut listed = vec![false; self.lanes.len()];
        for &l in lanes {
            if let Some(x) = listed.get_mut(l as usize) {
                *x = true;
            }
        }
        for (slot, listed) in self.lanes.iter_mut().zip(listed) {
            if !listed {
                *slot = None;
            }
        }
        for &l in lanes {
            let i = l as usize;
            if i >= self.lanes.len() {
                self.lanes.resize(i + 1, None);
            }
            self.lanes[i].get_or_insert_with(|| Lane::new(now_ms));
        }
    }

    /// Rows of `lane` from `oldest` to `newest` (event time) went into the batch being put
    /// together. A lane not assigned is assigned by this.
    pub fn note(&mut self, lane: u32, oldest: i64, newest: i64, now_ms: i64) {
        let i = lane as usize;
        if i >= self.lanes.len() {
            self.lanes.resize(i + 1, None);
        }
        let l = self.lanes[i].get_or_insert_with(|| Lane::new(now_ms));
        l.batch_oldest = l.batch_oldest.min(oldest);
        l.batch_newest = l.batch_newest.max(newest);
        l.active_ms = now_ms;
    }

    /// The frontier for the batch about to go into the detector; `None` when nothing holds.
    pub fn before_batch(&self, now_ms: i64) -> Option<i64> {
        let lanes = self
            .lanes
            .iter()
            .flatten()
            .filter(|l| now_ms.saturating_sub(l.active_ms) <= self.opts.idle_ms)
            .map(Lane::position)
            .min();
        match self.opts.max_ahead_ms {
            Some(ahead) => {
                let cap = now_ms.saturating_add(ahead);
                Some(lanes.map_or(cap, |f| f.min(cap)))
            }
            None => lanes,
        }
    }

    /// The batch went into the detector: its rows count as delivered. Returns the frontier
    /// from now on.
    pub fn after_batch(&mut self, now_ms: i64) -> Option<i64> {
        for l in self.lanes.iter_mut().flatten() {
            l.newest = l.newest.max(l.batch_newest);
            l.batch_oldest = NO_ROWS;
            l.batch_newest = NOTHING;
        }
        self.before_batch(now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;
    /// "Could still deliver anything": holds every tick.
    const ANY: i64 = i64::MIN;

    fn opts() -> FrontierOptions {
        FrontierOptions {
            idle_ms: 5_000,
            max_ahead_ms: None,
        }
    }

    /// One step of a case: what happens, at which wall ms.
    enum Step {
        Assign(&'static [u32], i64),
        /// lane, oldest, newest (minutes of event time), wall ms.
        Note(u32, i64, i64, i64),
        /// The frontier expected before the batch (minutes), at wall ms.
        Before(Option<i64>, i64),
        /// The batch went in; the frontier expected after it (minutes), at wall ms.
        After(Option<i64>, i64),
    }
    use Step::*;

    #[test]
    fn frontier_follows_the_lane_furthest_behind() {
        let cases: &[(&str, &[Step])] = &[
            ("no lanes, no hold", &[Before(None, 0), After(None, 0)]),
            (
                "one lane follows itself",
                &[Note(0, 10, 12, 0), Before(Some(10), 0), After(Some(12), 0)],
            ),
            (
                "the lane behind holds the one ahead",
                &[
                    Note(0, 10, 40, 0),
                    Note(1, 2, 5, 0),
                    Before(Some(2), 0),
                    After(Some(5), 0),
                    Note(1, 6, 30, 1),
                    // Not past its newest delivered until the batch is through.
                    Before(Some(5), 1),
                    After(Some(30), 1),
                ],
            ),
            (
                "an assigned lane not heard from holds everything",
                &[
                    Assign(&[0, 1], 0),
                    Note(0, 100, 130, 0),
                    Before(Some(ANY), 0),
                    After(Some(ANY), 0),
                    Note(1, 90, 95, 1),
                    After(Some(95), 1),
                ],
            ),
            (
                "a silent lane stops holding once idle, and holds again when it delivers",
                &[
                    Note(0, 10, 20, 0),
                    Note(1, 10, 12, 0),
                    After(Some(12), 0),
                    Note(0, 21, 25, 5_000),
                    After(Some(12), 5_000),
                    Note(0, 26, 30, 5_001),
                    After(Some(30), 5_001),
                    Note(1, 13, 14, 6_000),
                    Before(Some(12), 6_000),
                    After(Some(14), 6_000),
                ],
            ),
            (
                "every lane idle: no hold",
                &[Note(0, 10, 20, 0), After(Some(20), 0), After(None, 10_000)],
            ),
            (
                "a revoked lane no longer holds",
                &[
                    Note(0, 10, 20, 0),
                    Note(1, 1, 2, 0),
                    After(Some(2), 0),
                    Assign(&[0], 1),
                    After(Some(20), 1),
                ],
            ),
        ];
        for (name, steps) in cases {
            let mut f = Frontier::new(opts());
            let min = |m: Option<i64>| m.map(|m| if m == ANY { ANY } else { m * MIN });
            for (i, step) in steps.iter().enumerate() {
                match *step {
                    Assign(lanes, now) => f.assign(lanes, now),
                    Note(lane, a, b, now) => f.note(lane, a * MIN, b * MIN, now),
                    Before(want, now) => {
                        assert_eq!(f.before_batch(now), min(want), "{name}: step {i}");
                    }
                    After(want, now) => {
                        assert_eq!(f.after_batch(now), min(want), "{name}: step {i}");
                    }
                }
            }
        }
    }

    #[test]
    fn with_max_ahead_the_frontier_stays_within_it_of_the_wall_clock() {
        let mut f = Frontier::new(FrontierOptions {
            idle_ms: 5_000,
            max_ahead_ms: Some(MIN),
        });
        let now = 100 * MIN;
        // Nothing delivered: the wall clock alone limits.
        assert_eq!(f.before_batch(now), Some(101 * MIN));
        // A lane behind the wall clock holds as before.
        f.note(0, 90 * MIN, 99 * MIN, now);
        assert_eq!(f.after_batch(now), Some(99 * MIN));
        // A lane whose producer's clock is an hour fast does not take the frontier with it.
        f.note(0, 100 * MIN, 160 * MIN, now);
        assert_eq!(f.after_batch(now), Some(101 * MIN));
        // Nor once every lane is idle.
        assert_eq!(f.after_batch(now + 10 * MIN), Some(111 * MIN));
    }
}
