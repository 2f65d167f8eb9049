//! What the service knows, shared between the pipeline thread (the only writer) and the HTTP
//! handlers, `/metrics` and the Alertmanager pusher (readers): alerts by id with their latest
//! state, the newest series snapshot, incidents, pipeline counters, a broadcast of every
//! alert transition for the server-sent event stream, and a bounded queue of them for the
//! alerts topic ([`Hub::tap`]), which must not miss one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use detector::{AlertEvent, AlertState, SeriesView};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// One alert as the API serves it: the latest transition of its id.
#[derive(Debug, Clone)]
pub struct StoredAlert {
    pub event: AlertEvent,
    /// Order of first appearance, a tie-breaker for equal detection times.
    pub seq: u64,
}

/// One stored alert in a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SavedAlert {
    seq: u64,
    event: AlertEvent,
}

impl SavedAlert {
    fn of(a: &StoredAlert) -> Self {
        Self {
            seq: a.seq,
            event: a.event.clone(),
        }
    }

    fn into_stored(self) -> StoredAlert {
        StoredAlert {
            seq: self.seq,
            event: self.event,
        }
    }
}

/// The hub's alert history and incidents, for a checkpoint ([`Hub::export`], [`Hub::restore`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HubExport {
    /// Alerts in the order they first appeared, each with its latest transition.
    alerts: Vec<SavedAlert>,
    next_seq: u64,
    /// Incident records as JSON text (they hold arbitrary JSON, which bincode cannot carry).
    incidents: Vec<String>,
}

impl HubExport {
    pub fn alert_count(&self) -> usize {
        self.alerts.len()
    }

    pub fn incident_count(&self) -> usize {
        self.incidents.len()
    }
}

/// Counters and gauges of the pipeline itself, kept by the pipeline thread.
#[derive(Debug, Clone, Default)]
pub struct PipelineCounters {
    pub samples: u64,
    pub rejected: Vec<(String, u64)>,
    pub batches: u64,
    pub tracked_series: u64,
    /// Samples in ticks the detector has not closed yet.
    pub open_samples: u64,
    /// Newest event time seen, epoch ms.
    pub watermark_ms: Option<i64>,
    /// Wall clock (epoch ms) when the watermark was last read.
    pub watermark_wall_ms: Option<i64>,
    /// Name of the source and, for the demo, the trace playing.
    pub source: String,
    /// Kafka consumer lag: (topic, partition, messages behind).
    pub kafka_lag: Vec<(String, i32, i64)>,
    /// Kafka topics consumed: (topic, partitions, partitions assigned to this instance).
    pub kafka_partitions: Vec<(String, usize, usize)>,
    /// Wall clock (epoch ms) at which the last checkpoint was written (or the one resumed
    /// from had been written).
    pub checkpoint_ms: Option<i64>,
    /// The alerts topic, when one is configured: transitions delivered, and failed (queued
    /// but not delivered, or not even queued).
    pub alerts_published: Option<(u64, u64)>,
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
    /// Every new transition, for one reader that must see them all (the alerts topic). The
    /// broadcast above drops what a slow subscriber has not read; this queue instead counts
    /// what did not fit in `tap_dropped`, and the pipeline never waits on it.
    tap: OnceLock<SyncSender<AlertEvent>>,
    tap_dropped: AtomicU64,
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
                tap: OnceLock::new(),
                tap_dropped: AtomicU64::new(0),
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
        if let Some(tap) = self.inner.tap.get() {
            for ev in &fresh {
                match tap.try_send(ev.clone()) {
                    Ok(()) | Err(TrySendError::Disconnected(_)) => {}
                    Err(TrySendError::Full(_)) => {
                        self.inner.tap_dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        for ev in fresh {
            // No subscribers is fine.
            let _ = self.inner.events.send(ev);
        }
    }

    /// Every alert transition published from now on, in order, for one reader that must not
    /// miss any (the alerts topic): up to `capacity` may wait unread; beyond that they are
    /// dropped and counted ([`tap_dropped`](Self::tap_dropped)) rather than stall the
    /// pipeline. `None` if the tap was taken already.
    pub fn tap(&self, capacity: usize) -> Option<Receiver<AlertEvent>> {
        let (tx, rx) = mpsc::sync_channel(capacity.max(1));
        self.inner.tap.set(tx).ok()?;
        Some(rx)
    }

    /// Transitions the tap had no room for.
    pub fn tap_dropped(&self) -> u64 {
        self.inner.tap_dropped.load(Ordering::Relaxed)
    }

    /// The alert history (with its order) and incidents, for a checkpoint.
    pub fn export(&self) -> HubExport {
        let st = self.read();
        HubExport {
            alerts: st.alerts.iter().map(SavedAlert::of).collect(),
            next_seq: st.next_seq,
            incidents: st.incidents.iter().map(ToString::to_string).collect(),
        }
    }

    /// Replaces the alert history and incidents with a checkpoint's (nothing is announced on
    /// the stream: these are not new transitions). Refuses an incident that is not JSON.
    pub fn restore(&self, saved: HubExport) -> Result<(), serde_json::Error> {
        let incidents = saved
            .incidents
            .iter()
            .map(|t| serde_json::from_str(t))
            .collect::<Result<Vec<serde_json::Value>, _>>()?;
        let mut st = self.write();
        st.alerts = saved
            .alerts
            .into_iter()
            .map(SavedAlert::into_stored)
            .collect();
        st.by_id = st
            .alerts
            .iter()
            .enumerate()
            .map(|(i, a)| (a.event.id.clone(), i))
            .collect();
        let after_last = st.alerts.iter().map(|a| a.seq + 1).max().unwrap_or(0);
        st.next_seq = saved.next_seq.max(after_last);
        st.incidents = incidents;
        if st.alerts.len() > st.max_alerts {
            st.evict();
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use detector::{AlertKind, Severity};

    fn event(id: &str, state: AlertState, incident: Option<&str>) -> AlertEvent {
        AlertEvent {
            id: id.into(),
            kind: AlertKind::ErrorRateSpike,
            state,
            severity: Severity::Critical,
            cluster: "c1".into(),
            service: "s1".into(),
            region: Some("r1".into()),
            onset: 1_000,
            detected_at: 2_000,
            resolved_at: (state == AlertState::Resolved).then_some(3_000),
            value: f64::NAN,
            baseline: 0.01,
            summary: format!("alert {id}"),
            incident_id: incident.map(str::to_owned),
        }
    }

    fn listing(hub: &Hub) -> Vec<(u64, String)> {
        hub.read()
            .alerts()
            .iter()
            .map(|a| (a.seq, serde_json::to_string(&a.event).unwrap()))
            .collect()
    }

    #[test]
    fn export_and_restore_keep_alerts_in_order_with_their_latest_state() {
        let hub = Hub::new(100);
        hub.publish(&[
            event("a", AlertState::Firing, None),
            event("b", AlertState::Firing, Some("i-1")),
            event("a", AlertState::Resolved, None),
            event("c", AlertState::Firing, None),
        ]);
        hub.set_incidents(vec![
            serde_json::json!({"id": "i-1", "state": "open", "onset": 1}),
        ]);
        let bytes = bincode::serialize(&hub.export()).unwrap();

        let restored = Hub::new(100);
        let saved: HubExport = bincode::deserialize(&bytes).unwrap();
        assert_eq!((saved.alert_count(), saved.incident_count()), (3, 1));
        restored.restore(saved).unwrap();
        assert_eq!(listing(&restored), listing(&hub));
        assert_eq!(restored.read().incidents, hub.read().incidents);
        // The index works, and a repeat of a stored transition is still not news.
        let mut stream = restored.subscribe();
        restored.publish(&[event("b", AlertState::Firing, Some("i-1"))]);
        assert!(stream.try_recv().is_err(), "a repeat was announced again");
        restored.publish(&[
            event("b", AlertState::Resolved, Some("i-1")),
            event("d", AlertState::Firing, None),
        ]);
        let st = restored.read();
        assert_eq!(st.alert("b").unwrap().event.state, AlertState::Resolved);
        // New alerts continue the order after the restored ones.
        assert_eq!(st.alert("d").unwrap().seq, 3);
    }
}
