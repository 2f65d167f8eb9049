//! The fleet's event-time clock: the time the watermark follows, robust to a few series whose
//! clocks run ahead of everyone else's.
//!
//! Following the newest event time seen is right while every producer's clock is right. One
//! host whose clock runs five minutes fast breaks it: its samples set the newest time, the
//! watermark trails it by the allowed lateness, and every other series' samples are judged
//! too late. The detector goes blind to the whole fleet, absent alerts included (the series
//! are reporting, just "late"). So the clock follows the newest time that a *quorum* of series
//! has reached: the `q`-th newest of the series' newest event times, `q` being a third of the
//! series known, at most [`MAX_QUORUM`]. Fewer than `q` series running ahead cannot move it;
//! their samples wait, buffered, until the fleet catches up with them.
//!
//! Two cases fall back to the newest time seen (the plain rule):
//! - fewer than `q` series have reported at all (the start of a stream);
//! - the quorum time has not moved while the newest time advanced by more than [`STALL_MS`]:
//!   all but a few series stopped reporting (most of the fleet went dark), and the few left
//!   must still move the clock, or the dark ones would never be reported absent. Their
//!   absence is then reported up to [`STALL_MS`] later than it would otherwise be.

/// The largest quorum: up to `MAX_QUORUM - 1` series (say, one host's) may run ahead of the
/// fleet without moving the watermark.
pub const MAX_QUORUM: usize = 8;

/// How far the newest event time may advance while the quorum's time stands still before the
/// quorum counts as lost (see the module docs). Longer than any sampling interval in use, so
/// a fleet sampled every few minutes does not look stalled between its samples.
pub const STALL_MS: i64 = 600_000;

/// No event time yet.
const NONE: i64 = i64::MIN;

/// The quorum's state: the `q` newest series (by their newest event time) and when the
/// quorum's time last moved.
#[derive(Debug, Clone)]
pub(crate) struct FleetClock {
    q: usize,
    /// (newest event time, series) of the `q` series furthest ahead, in no order.
    top: Vec<(i64, u32)>,
    /// The quorum's time: the oldest in `top` once it holds `q` series.
    time: i64,
    /// The newest event time seen when `time` last moved.
    moved_at: i64,
}

impl Default for FleetClock {
    fn default() -> Self {
        Self {
            q: 1,
            top: Vec::new(),
            time: NONE,
            moved_at: NONE,
        }
    }
}

impl FleetClock {
    /// The quorum for a fleet of `series`: a third of it (rounded up), 1 to [`MAX_QUORUM`].
    pub(crate) fn quorum_for(series: usize) -> usize {
        series.div_ceil(3).clamp(1, MAX_QUORUM)
    }

    /// The clock of a fleet whose series' newest event times are `newest` (`i64::MIN` for
    /// none), the newest of all being `max_ts`: on restore.
    pub(crate) fn from_newest(newest: &[i64], max_ts: i64) -> Self {
        let mut c = Self::default();
        c.rebuild(Self::quorum_for(newest.len()), newest, max_ts);
        c
    }

    /// Sets the quorum for a fleet of `series` (`newest` as for [`Self::from_newest`]), as
    /// series are added: rebuilt only when the quorum changes.
    pub(crate) fn resize(&mut self, series: usize, newest: &[i64], max_ts: i64) {
        let q = Self::quorum_for(series);
        if q != self.q {
            self.rebuild(q, newest, max_ts);
        }
    }

    fn rebuild(&mut self, q: usize, newest: &[i64], max_ts: i64) {
        self.q = q;
        self.top.clear();
        self.time = NONE;
        self.moved_at = max_ts;
        for (s, &t) in newest.iter().enumerate() {
            if t != NONE {
                self.note(u32::try_from(s).unwrap_or(u32::MAX), t, max_ts);
            }
        }
    }

    /// Whether a sample at `ts` can leave the quorum as it is (every series it could come from
    /// is at or past `ts` already, or enough others are): the common case, checked first.
    #[inline]
    pub(crate) fn settled(&self, ts: i64) -> bool {
        self.top.len() == self.q && ts <= self.time
    }

    /// Series `s` reported a sample at `ts`; `max_ts` is the newest event time seen, this sample
    /// included.
    #[inline]
    pub(crate) fn note(&mut self, s: u32, ts: i64, max_ts: i64) {
        if self.settled(ts) {
            return;
        }
        if let Some(e) = self.top.iter_mut().find(|e| e.1 == s) {
            e.0 = e.0.max(ts);
        } else if self.top.len() < self.q {
            self.top.push((ts, s));
        } else if let Some(oldest) = self.top.iter_mut().min_by_key(|e| e.0) {
            *oldest = (ts, s);
        }
        if self.top.len() == self.q {
            let t = self.top.iter().map(|e| e.0).min().unwrap_or(NONE);
            if t > self.time {
                self.time = t;
                self.moved_at = max_ts;
            }
        }
    }

    /// The event time the watermark follows, given the newest seen (`max_ts`): the quorum's,
    /// or `max_ts` while there is no quorum yet or it has stalled (see the module docs).
    pub(crate) fn time(&self, max_ts: i64) -> i64 {
        if self.top.len() < self.q || max_ts.saturating_sub(self.moved_at) > STALL_MS {
            max_ts
        } else {
            self.time
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds (series, ts) in order, keeping the newest time as the detector does, and returns
    /// the clock after each sample.
    fn run(series: usize, samples: &[(u32, i64)]) -> Vec<i64> {
        let mut c = FleetClock::default();
        c.resize(series, &vec![NONE; series], NONE);
        let mut max_ts = NONE;
        samples
            .iter()
            .map(|&(s, t)| {
                max_ts = max_ts.max(t);
                c.note(s, t, max_ts);
                c.time(max_ts)
            })
            .collect()
    }

    /// Six series sampled every 10 s for `ticks` ticks, each tick's samples in series order,
    /// series `fast` (if any) `skew` ms ahead.
    fn fleet(
        ticks: i64,
        fast: &[u32],
        skew: i64,
        dark_from: Option<(i64, u32)>,
    ) -> Vec<(u32, i64)> {
        let mut out = Vec::new();
        for k in 0..ticks {
            for s in 0..6u32 {
                if dark_from.is_some_and(|(t, alive)| k >= t && s >= alive) {
                    continue;
                }
                let t = k * 10_000 + if fast.contains(&s) { skew } else { 0 };
                out.push((s, t));
            }
        }
        out
    }

    #[test]
    fn quorum_is_a_third_of_the_fleet_up_to_eight() {
        for (series, q) in [
            (0, 1),
            (1, 1),
            (3, 1),
            (4, 2),
            (6, 2),
            (7, 3),
            (22, 8),
            (100_000, 8),
        ] {
            assert_eq!(FleetClock::quorum_for(series), q, "{series} series");
        }
    }

    #[test]
    fn the_clock_follows_the_fleet_not_one_series_running_ahead() {
        // A 6-series fleet (quorum 2); series 5's clock 5 minutes fast.
        let clock = run(6, &fleet(100, &[5], 300_000, None));
        // After each whole tick the clock is that tick's time, not five minutes on.
        for (k, c) in clock.chunks(6).enumerate() {
            assert_eq!(*c.last().unwrap(), k as i64 * 10_000, "tick {k}");
        }
    }

    #[test]
    fn in_step_fleets_see_the_newest_time_as_before() {
        let samples = fleet(30, &[], 0, None);
        let clock = run(6, &samples);
        // Once two series have reported a tick, the clock is at it (the plain rule moves on
        // the first): one sample later than the newest time, never further behind.
        for (i, (&c, &(s, t))) in clock.iter().zip(&samples).enumerate().skip(6) {
            let expect = if s == 0 { t - 10_000 } else { t };
            assert_eq!(c, expect, "sample {i}");
        }
    }

    #[test]
    fn a_fleet_mostly_gone_dark_moves_the_clock_after_the_stall() {
        // From tick 10, only series 0 reports: the quorum (2) stands still at tick 9.
        let samples = fleet(200, &[], 0, Some((10, 1)));
        let clock = run(6, &samples);
        let last = |k: i64| {
            let i = samples.iter().rposition(|&(_, t)| t == k * 10_000).unwrap();
            clock[i]
        };
        assert_eq!(last(9), 90_000);
        // Stalled: held at tick 9 while the newest time is within STALL_MS of it...
        assert_eq!(last(9 + STALL_MS / 10_000), 90_000);
        // ...then following the series still reporting.
        assert_eq!(
            last(10 + STALL_MS / 10_000),
            (10 + STALL_MS / 10_000) * 10_000
        );
        assert_eq!(last(199), 1_990_000);
    }

    #[test]
    fn growing_fleets_rebuild_the_quorum_from_what_each_series_reported() {
        let mut c = FleetClock::default();
        let mut newest = vec![NONE; 3];
        for (s, t) in [(0u32, 50_000i64), (1, 10_000), (2, 10_000)] {
            newest[s as usize] = t;
            c.note(s, t, 50_000);
        }
        assert_eq!(c.time(50_000), 50_000, "quorum 1 in a fleet of three");
        newest.extend([10_000, 10_000, 10_000]);
        c.resize(6, &newest, 50_000);
        assert_eq!(c.time(50_000), 10_000, "quorum 2: the second newest");
    }
}
