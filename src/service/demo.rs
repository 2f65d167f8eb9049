//! The embedded default source: the testdata incident traces replayed through the pipeline in a
//! loop, paced by their event time compressed `speed` times, after fast-forwarding each trace's
//! first `fast_forward_s` (the quiet hour in which baselines form). Each trace is an unrelated
//! fleet, so it starts a fresh detector ([`Delivery::Restart`]); on the second and later loops
//! the timestamps are moved forward a week per loop so alert ids stay unique.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::Context;
use ingest::trace::{list_traces, ChangeEvent, SampleLines, TraceDir};

use super::config::DemoSettings;
use super::source::{Delivery, Source};

/// Most sample lines handed over in one delivery.
const MAX_DELIVERY: usize = 4096;
/// Event-time offset added per completed loop.
const LOOP_SHIFT_MS: i64 = 7 * 24 * 3600 * 1000;

#[derive(Debug)]
pub struct DemoSource {
    settings: DemoSettings,
    traces: Vec<TraceDir>,
    next_trace: usize,
    loops: i64,
    playing: Option<Playing>,
    token: u64,
}

#[derive(Debug)]
struct Playing {
    name: String,
    lines: SampleLines,
    changes: VecDeque<ChangeEvent>,
    shift_ms: i64,
    /// Samples before this event time are played without pacing.
    fast_until: Option<i64>,
    /// Wall instant and event time at which pacing started.
    anchor: Option<(Instant, i64)>,
    /// A line read but not yet due.
    pending: Option<(Vec<u8>, i64)>,
    last_ts: i64,
}

impl DemoSource {
    /// Lists the traces to play; refuses to start with none.
    pub fn new(settings: DemoSettings) -> anyhow::Result<Self> {
        let all = list_traces(&settings.traces)
            .with_context(|| format!("listing demo traces in {}", settings.traces.display()))?;
        let traces: Vec<TraceDir> = if settings.names.is_empty() {
            all.into_iter()
                .filter(|t| t.labels.as_ref().is_some_and(|l| !l.windows.is_empty()))
                .collect()
        } else {
            let mut picked = Vec::new();
            for name in &settings.names {
                let t = all
                    .iter()
                    .find(|t| &t.name == name)
                    .with_context(|| {
                        format!(
                            "no trace named `{name}` in {} (source.demo.names)",
                            settings.traces.display()
                        )
                    })?
                    .clone();
                picked.push(t);
            }
            picked
        };
        anyhow::ensure!(
            !traces.is_empty(),
            "no incident traces to play in {}",
            settings.traces.display()
        );
        for bad in traces.iter().flat_map(|t| &t.rejected_changes) {
            eprintln!("spikewatch: demo: skipped {bad}");
        }
        Ok(Self {
            settings,
            traces,
            next_trace: 0,
            loops: 0,
            playing: None,
            token: 0,
        })
    }

    pub fn trace_names(&self) -> Vec<String> {
        self.traces.iter().map(|t| t.name.clone()).collect()
    }

    fn start_next(&mut self) -> anyhow::Result<Option<Delivery>> {
        if self.next_trace >= self.traces.len() {
            if !self.settings.repeat {
                return Ok(Some(Delivery::End));
            }
            self.next_trace = 0;
            self.loops += 1;
        }
        let t = &self.traces[self.next_trace];
        self.next_trace += 1;
        let shift_ms = self.loops * LOOP_SHIFT_MS;
        let lines = t
            .sample_lines()
            .with_context(|| format!("opening samples of {}", t.path.display()))?;
        let mut changes: Vec<ChangeEvent> = t.changes.clone();
        changes.sort_by_key(|c| c.ts);
        for c in &mut changes {
            c.ts += shift_ms;
        }
        self.playing = Some(Playing {
            name: t.name.clone(),
            lines,
            changes: changes.into(),
            shift_ms,
            fast_until: None,
            anchor: None,
            pending: None,
            last_ts: i64::MIN,
        });
        Ok(Some(Delivery::Restart {
            name: t.name.clone(),
        }))
    }
}

impl Source for DemoSource {
    fn describe(&self) -> String {
        match &self.playing {
            Some(p) => format!("demo: {}", p.name),
            None => "demo".into(),
        }
    }

    fn next(&mut self, max_wait: Duration) -> anyhow::Result<Option<Delivery>> {
        let Some(p) = self.playing.as_mut() else {
            return self.start_next();
        };
        let deadline = Instant::now() + max_wait;
        let mut samples = Vec::new();
        let mut changes = Vec::new();
        let mut ended = false;
        while samples.len() < MAX_DELIVERY {
            let (line, ts) = match p.pending.take() {
                Some(x) => x,
                None => {
                    let mut buf = Vec::new();
                    if !p.lines.read_line(&mut buf)? {
                        ended = true;
                        break;
                    }
                    let ts = event_time(&buf).unwrap_or(p.last_ts);
                    let line = if p.shift_ms != 0 {
                        shift_line(&buf, ts + p.shift_ms).unwrap_or(buf)
                    } else {
                        buf
                    };
                    (line, ts.saturating_add(p.shift_ms))
                }
            };
            let fast_until = *p
                .fast_until
                .get_or_insert(ts.saturating_add(self.settings.fast_forward_ms));
            if ts >= fast_until {
                let (wall0, ev0) = *p.anchor.get_or_insert((Instant::now(), ts));
                #[allow(clippy::cast_precision_loss)]
                let due_s = (ts - ev0).max(0) as f64 / 1000.0 / self.settings.speed;
                let due = wall0 + Duration::from_secs_f64(due_s);
                let now = Instant::now();
                if due > now {
                    if !samples.is_empty() || due > deadline {
                        p.pending = Some((line, ts));
                        if samples.is_empty() {
                            std::thread::sleep(deadline.saturating_duration_since(now));
                        }
                        break;
                    }
                    std::thread::sleep(due - now);
                }
            }
            p.last_ts = p.last_ts.max(ts);
            while p.changes.front().is_some_and(|c| c.ts <= p.last_ts) {
                changes.extend(p.changes.pop_front());
            }
            samples.push(ingest::format::Payload::from_vec(line));
        }
        if ended {
            changes.extend(p.changes.drain(..));
            self.playing = None;
        }
        if samples.is_empty() && changes.is_empty() {
            return Ok(None);
        }
        self.token += 1;
        Ok(Some(Delivery::Messages {
            samples,
            changes,
            token: self.token,
            format: ingest::format::Format::Json,
            lanes: None,
        }))
    }
}

#[derive(serde::Deserialize)]
struct TsOnly {
    ts: serde_json::Value,
}

/// The event time of a sample line, if it has a readable one (bad lines are the pipeline's to
/// reject; the demo only needs the time to pace them).
fn event_time(line: &[u8]) -> Option<i64> {
    let t: TsOnly = serde_json::from_slice(line).ok()?;
    match t.ts {
        serde_json::Value::String(s) => ingest::time::parse_rfc3339_ms(&s),
        serde_json::Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

/// The line with its `ts` replaced by epoch milliseconds `ts_ms`.
fn shift_line(line: &[u8], ts_ms: i64) -> Option<Vec<u8>> {
    let mut v: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(line).ok()?;
    v.insert("ts".into(), serde_json::Value::from(ts_ms));
    serde_json::to_vec(&v).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_shifts_event_time() {
        let line =
            br#"{"ts":"2026-02-12T21:20:10Z","cluster":"a","service":"s","requests":1,"errors":0}"#;
        let ts = event_time(line).unwrap();
        assert_eq!(ts, 1_770_931_210_000);
        let shifted = shift_line(line, ts + LOOP_SHIFT_MS).unwrap();
        assert_eq!(event_time(&shifted), Some(ts + LOOP_SHIFT_MS));
        let v: serde_json::Value = serde_json::from_slice(&shifted).unwrap();
        assert_eq!(v["cluster"], "a");
        assert_eq!(event_time(b"{\"ts\":1000}"), Some(1000));
        assert_eq!(event_time(b"not json"), None);
    }
}
