//! What the service knows, shared between the pipeline thread (the only writer) and the HTTP
//! handlers, `/metrics` and the Alertmanager pusher (readers): alerts by id with their latest
//! state, the newest series snapshot, incidents, pipeline counters, and a broadcast of every
//! alert transition for the server-sent event stream.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use detector::{AlertEvent, AlertState, SeriesView};
use tokio::sync::broadcast;

/// One alert as the API serves it: the latest transition of its id.
#[derive(Debug, Clone)]
pub struct StoredAlert {
    pub event: AlertEvent,
    /// Order of first appearance, a tie-breaker for equal detection times.
    pub seq: u64,
}

/// Counters and gauges of the pipeline itself, kept by the pipeline thread.
#[derive(Debug, Clone, Default)]
pub struct PipelineCounters {
    pub samples: u64,
    pub rejected: Vec<(String, u64)>,
    pub batches: u64,
    pub tracked_series: u64,
    /// Newest event time seen, epoch ms.
    pub watermark_ms: Option<i64>,
    /// Wall clock (epoch ms) when the watermark was last read.
    pub watermark_wall_ms: Option<i64>,
    /// Name of the source and, for the demo, the trace playing.
    pub source: String,
    /// Kafka consumer lag: (topic, partition, messages behind).
    pub kafka_lag: Vec<(String, i32, i64)>,
}

#[derive(Debug, Default)]
pub struct HubState {
    alerts: Vec<StoredAlert>,
    by_id: HashMap<String, usize>,
    next_seq: u64,
    max_alerts: usize,
    /// Series as of the last snapshot, sorted by (cluster, service).
    pub series: Arc<Vec<SeriesView>>,
    /// Incident records as JSON objects with at least `id`, `state` and `onset`.
    pub incidents: Vec<serde_json::Value>,
    pub counters: PipelineCounters,
}

impl HubState {
    /// Records a transition; returns false for a repeat of an already stored transition.
    fn record(&mut self, ev: &AlertEvent) -> bool {
        if let Some(&i) = self.by_id.get(&ev.id) {
            let cur = &mut self.alerts[i].event;
            if cur.state == ev.state && cur.incident_id == ev.incident_id {
                return false;
            }
            *cur = ev.clone();
            return true;
        }
        self.by_id.insert(ev.id.clone(), self.alerts.len());
        self.alerts.push(StoredAlert {
            event: ev.clone(),
            seq: self.next_seq,
        });
        self.next_seq += 1;
        if self.alerts.len() > self.max_alerts {
            self.evict();
        }
        true
    }

    /// Drops the oldest resolved alerts (or, if everything is firing, the oldest) to get back
    /// to 90% of the limit, then rebuilds the index.
    fn evict(&mut self) {
        let target = self.max_alerts - self.max_alerts / 10;
        let mut excess = self.alerts.len().saturating_sub(target);
        self.alerts.retain(|a| {
            if excess > 0 && a.event.state == AlertState::Resolved {
                excess -= 1;
                false
            } else {
                true
            }
        });
        if self.alerts.len() > target {
            let cut = self.alerts.len() - target;
            self.alerts.drain(..cut);
        }
        self.by_id = self
            .alerts
            .iter()
            .enumerate()
            .map(|(i, a)| (a.event.id.clone(), i))
            .collect();
    }

    pub fn alerts(&self) -> &[StoredAlert] {
        &self.alerts
    }

    pub fn alert(&self, id: &str) -> Option<&StoredAlert> {
        self.by_id.get(id).map(|&i| &self.alerts[i])
    }

    /// Alerts currently firing.
    pub fn firing(&self) -> impl Iterator<Item = &AlertEvent> {
        self.alerts
            .iter()
            .map(|a| &a.event)
            .filter(|e| e.state == AlertState::Firing)
    }
}

/// Shared handle. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    state: RwLock<HubState>,
    events: broadcast::Sender<AlertEvent>,
    source_up: AtomicBool,
    /// Wall clock (ms) of the pipeline thread's last loop: readiness means it keeps turning.
    heartbeat_ms: AtomicI64,
    started: Instant,
}

impl Hub {
    pub fn new(max_alerts: usize) -> Self {
        let (events, _) = broadcast::channel(1024);
        Self {
            inner: Arc::new(Inner {
                state: RwLock::new(HubState {
                    max_alerts: max_alerts.max(1),
                    ..HubState::default()
                }),
                events,
                source_up: AtomicBool::new(false),
                heartbeat_ms: AtomicI64::new(0),
                started: Instant::now(),
            }),
        }
    }

    pub fn read(&self) -> RwLockReadGuard<'_, HubState> {
        // A panic while holding the lock leaves the data as it was; serve it anyway.
        self.inner
            .state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, HubState> {
        self.inner
            .state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stores alert transitions and announces the new ones on the stream.
    pub fn publish(&self, events: &[AlertEvent]) {
        if events.is_empty() {
            return;
        }
        let fresh: Vec<AlertEvent> = {
            let mut st = self.write();
            events.iter().filter(|e| st.record(e)).cloned().collect()
        };
        for ev in fresh {
            // No subscribers is fine.
            let _ = self.inner.events.send(ev);
        }
    }

    pub fn set_series(&self, series: Vec<SeriesView>) {
        self.write().series = Arc::new(series);
    }

    pub fn set_incidents(&self, incidents: Vec<serde_json::Value>) {
        self.write().incidents = incidents;
    }

    /// Stores the latest state of incidents opened or changed (in the order they opened) and
    /// returns how many of them are new. Keeps at most as many incidents as alerts, dropping
    /// the oldest resolved ones first.
    pub fn upsert_incidents(&self, updates: &[detector::Incident]) -> usize {
        if updates.is_empty() {
            return 0;
        }
        let mut st = self.write();
        let mut fresh = 0;
        for inc in updates {
            let Ok(value) = serde_json::to_value(inc) else {
                continue;
            };
            let slot = st
                .incidents
                .iter()
                .position(|v| v.get("id").and_then(serde_json::Value::as_str) == Some(&inc.id));
            match slot {
                Some(i) => st.incidents[i] = value,
                None => {
                    st.incidents.push(value);
                    fresh += 1;
                }
            }
        }
        let cap = st.max_alerts.max(1);
        while st.incidents.len() > cap {
            let oldest_resolved = st.incidents.iter().position(|v| {
                v.get("state").and_then(serde_json::Value::as_str) == Some("resolved")
            });
            st.incidents.remove(oldest_resolved.unwrap_or(0));
        }
        fresh
    }

    pub fn update_counters(&self, f: impl FnOnce(&mut PipelineCounters)) {
        f(&mut self.write().counters);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<AlertEvent> {
        self.inner.events.subscribe()
    }

    pub fn set_source_up(&self, up: bool) {
        self.inner.source_up.store(up, Ordering::Relaxed);
    }

    pub fn source_up(&self) -> bool {
        self.inner.source_up.load(Ordering::Relaxed)
    }

    pub fn heartbeat(&self, wall_ms: i64) {
        self.inner.heartbeat_ms.store(wall_ms, Ordering::Relaxed);
    }

    pub fn last_heartbeat_ms(&self) -> i64 {
        self.inner.heartbeat_ms.load(Ordering::Relaxed)
    }

    pub fn uptime_s(&self) -> f64 {
        self.inner.started.elapsed().as_secs_f64()
    }
}

/// Wall clock, epoch milliseconds (the service's clock; the detector never reads it).
pub fn wall_ms() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
