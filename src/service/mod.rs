//! `spikewatch run` / `spikewatch demo`: the long-running service. A source (the demo replay
//! or Kafka) feeds the pipeline thread; the pipeline publishes alert transitions, series and
//! incidents to the [`hub::Hub`]; the HTTP API, `/metrics` and the Alertmanager pusher read
//! from the hub. Detection never waits on any reader.

pub mod alertmanager;
pub mod alerts_topic;
pub mod api;
pub mod config;
pub mod demo;
pub mod hub;
pub mod kafka;
pub mod metrics;
pub mod openapi;
pub mod source;
pub mod worker;

#[cfg(test)]
mod tests;

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;

use config::{Settings, SourceSettings};
use hub::Hub;
use metrics::Metrics;
use source::Source;

/// `/readyz` turns false when the pipeline thread has not looped for this long.
const STALL_AFTER: Duration = Duration::from_secs(10);

/// Builds the source the settings ask for.
fn make_source(
    settings: &Settings,
    hub: &Hub,
    metrics: &Metrics,
) -> anyhow::Result<Box<dyn Source>> {
    match &settings.source {
        SourceSettings::Demo(d) => {
            let src = demo::DemoSource::new(d.clone())?;
            eprintln!(
                "spikewatch: demo source: {} trace(s) from {} at {}x event time: {}",
                src.trace_names().len(),
                d.traces.display(),
                d.speed,
                src.trace_names().join(", ")
            );
            Ok(Box::new(src))
        }
        SourceSettings::Kafka(k) => {
            let src = kafka::KafkaServiceSource::new(
                k,
                hub.clone(),
                metrics.clone(),
                settings.checkpoint.is_some(),
            )?;
            eprintln!("spikewatch: {}", src.describe());
            Ok(Box::new(src))
        }
    }
}

/// Runs the service until SIGTERM / Ctrl-C, or until the pipeline fails.
pub fn run(settings: Settings) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(serve(settings))
}

/// The identity a Kafka source's checkpoints carry (see [`worker::SourceIdentity`]).
fn kafka_identity(k: &config::KafkaConfig) -> worker::SourceIdentity {
    let mut topics: Vec<String> = [Some(&k.metrics_topic), k.changes_topic.as_ref()]
        .into_iter()
        .flatten()
        .filter(|t| !t.is_empty())
        .cloned()
        .collect();
    topics.sort();
    worker::SourceIdentity {
        brokers: k.brokers.clone(),
        group_id: k.group_id.clone(),
        topics,
    }
}

/// The pipeline worker, resumed from the checkpoint when there is one for this source. A
/// checkpoint that cannot be read or belongs to another source stops the start, naming the
/// file: starting fresh would silently lose baselines and open alerts.
fn make_worker(
    settings: &Settings,
    hub: &Hub,
    metrics: &Metrics,
) -> anyhow::Result<worker::Worker> {
    let mut w = worker::Worker::new(settings.detector.clone(), hub.clone(), metrics.clone())?
        .with_incidents(settings.incidents.clone())?;
    let (Some(c), SourceSettings::Kafka(k)) = (&settings.checkpoint, &settings.source) else {
        return Ok(w);
    };
    let identity = kafka_identity(k);
    let file = c.file();
    std::fs::create_dir_all(&c.dir)
        .with_context(|| format!("creating checkpoint.dir {}", c.dir.display()))?;
    if let Some(cp) = worker::read_checkpoint(&file)? {
        if cp.source != identity {
            anyhow::bail!(
                "checkpoint {} was written for another source ({}), not this one ({}); \
                 move it away or set checkpoint.dir to start fresh",
                file.display(),
                cp.source,
                identity
            );
        }
        let series = cp.pipeline.series.len();
        let alerts = cp.hub.alert_count();
        let at = detector::time::format_rfc3339(cp.written_at_ms);
        w.resume(cp)
            .with_context(|| format!("resuming from checkpoint {}", file.display()))?;
        eprintln!(
            "spikewatch: resumed from checkpoint ({series} series, {alerts} alerts, written at {at}): {}",
            file.display()
        );
    } else {
        eprintln!(
            "spikewatch: no checkpoint at {}; starting fresh",
            file.display()
        );
    }
    Ok(w.with_checkpoints(worker::Checkpointing {
        file,
        interval: c.interval,
        source: identity,
    }))
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let hub = Hub::new(settings.max_alerts);
    let metrics = Metrics::new(settings.series_limit);
    let worker = make_worker(&settings, &hub, &metrics)?;
    let source = make_source(&settings, &hub, &metrics)?;
    hub.update_counters(|c| c.source = source.describe());

    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("binding server.listen = {}", settings.listen))?;
    let local = listener.local_addr().context("reading the bound address")?;
    let base = format!("http://{local}");
    eprintln!("spikewatch: listening on {base}");
    eprintln!("  alerts      {base}/api/v1/alerts");
    eprintln!("  live stream {base}/api/v1/alerts/stream");
    eprintln!("  incidents   {base}/api/v1/incidents");
    eprintln!("  series      {base}/api/v1/series");
    eprintln!("  metrics     {base}/metrics");
    eprintln!("  API docs    {base}/api/v1/openapi.json");

    // Before the pipeline starts, so that the topic misses none of its transitions.
    let alerts_topic = match &settings.source {
        SourceSettings::Kafka(k) => match alerts_topic::topic_of(k) {
            Some(topic) => {
                eprintln!("spikewatch: publishing alert transitions to topic {topic}");
                let done = Arc::new(AtomicBool::new(false));
                Some((alerts_topic::spawn(k, topic, &hub, done.clone())?, done))
            }
            None => None,
        },
        SourceSettings::Demo(_) => None,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let handle = worker::spawn(worker, source, stop.clone()).context("starting the pipeline")?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);

    // The pipeline thread, watched: an error ends the service; a finished source (demo
    // --once) leaves the API up with readiness off.
    let pipeline_done = {
        let shutdown_tx = shutdown_tx.clone();
        let stop = stop.clone();
        tokio::task::spawn_blocking(move || {
            let r = handle
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the pipeline thread panicked")));
            match &r {
                // Stopped because we are shutting down: nothing to say.
                Ok(()) if stop.load(Ordering::Relaxed) => {}
                Ok(()) => eprintln!("spikewatch: source finished; still serving the API"),
                Err(e) => {
                    eprintln!("spikewatch: pipeline stopped: {e:#}");
                    let _ = shutdown_tx.send(true);
                }
            }
            r
        })
    };

    if let Some(am) = settings.alertmanager.clone() {
        let urls: Vec<String> = am.urls.iter().map(ToString::to_string).collect();
        eprintln!("spikewatch: pushing alerts to {}", urls.join(", "));
        let pusher = alertmanager::Pusher::new(am, settings.public_url.clone(), metrics.clone());
        tokio::spawn(pusher.run(hub.clone(), shutdown_rx.clone()));
    }
    tokio::spawn(status_line(hub.clone(), shutdown_rx.clone()));

    let state = api::AppState {
        hub: hub.clone(),
        metrics,
        bearer_token: settings.bearer_token.clone(),
        stall_after: STALL_AFTER,
    };
    let app = api::app(state, settings.request_timeout);
    let mut rx = shutdown_rx.clone();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            tokio::select! {
                () = termination() => {}
                _ = rx.wait_for(|stop| *stop) => {}
            }
        })
        .await;
    let _ = shutdown_tx.send(true);
    stop.store(true, Ordering::Relaxed);
    served.context("serving HTTP")?;
    let pipeline = pipeline_done.await.context("joining the pipeline")?;
    if let Some((publisher, done)) = alerts_topic {
        // The pipeline has stopped: deliver its last transitions before going.
        done.store(true, Ordering::Relaxed);
        let _ = tokio::task::spawn_blocking(move || publisher.join()).await;
    }
    eprintln!("spikewatch: stopped");
    pipeline
}

/// SIGTERM or Ctrl-C.
async fn termination() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    eprintln!("spikewatch: shutting down");
}

/// A status line on stderr: every 2 s on a terminal (redrawn in place), every 30 s otherwise.
async fn status_line(hub: Hub, mut shutdown: watch::Receiver<bool>) {
    let tty = std::io::stderr().is_terminal();
    let every = Duration::from_secs(if tty { 2 } else { 30 });
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let line = {
            let st = hub.read();
            let firing = st.firing().count();
            let c = &st.counters;
            let wm = c
                .watermark_ms
                .map_or_else(|| "-".to_string(), detector::time::format_rfc3339);
            let open = st
                .incidents
                .iter()
                .filter(|i| i.get("state").and_then(|s| s.as_str()) == Some("open"))
                .count();
            format!(
                "{} | event time {wm} | {} series | {firing} firing | {open} open incidents | {} alerts so far",
                c.source,
                st.series.len(),
                st.alerts().len()
            )
        };
        if tty {
            eprint!("\r\x1b[2K{line}");
        } else {
            eprintln!("{line}");
        }
    }
}

#[cfg(test)]
mod checkpoint_tests {
    use super::*;

    #[test]
    fn a_checkpoint_of_another_source_is_refused_and_one_of_this_source_resumed() {
        let dir = std::env::temp_dir().join(format!(
            "spikewatch-resume-{}-{}",
            std::process::id(),
            hub::wall_ms()
        ));
        let toml = format!(
            "[source.kafka]\nbrokers = \"k:9092\"\ngroup_id = \"g\"\n[checkpoint]\ndir = {:?}\n",
            dir.display().to_string()
        );
        let settings = config::ServiceConfig::from_toml(&toml, std::path::Path::new("t.toml"))
            .unwrap()
            .check()
            .unwrap();
        let SourceSettings::Kafka(k) = &settings.source else {
            panic!("expected kafka");
        };
        let file = settings.checkpoint.as_ref().unwrap().file();
        let hub = Hub::new(10);
        let written = |identity: worker::SourceIdentity| {
            let p = crate::pipeline::Pipeline::new(settings.detector.clone(), 8).unwrap();
            worker::write_checkpoint(
                &file,
                &worker::CheckpointFile {
                    source: identity,
                    written_at_ms: 0,
                    pipeline: p.checkpoint(),
                    hub: hub.export(),
                },
            )
            .unwrap();
        };
        let metrics = Metrics::new(10);

        let mut other = kafka_identity(k);
        other.group_id = "another-group".into();
        written(other);
        let err = format!("{:#}", make_worker(&settings, &hub, &metrics).unwrap_err());
        assert!(err.contains("another source"), "{err}");
        assert!(err.contains(&file.display().to_string()), "{err}");

        written(kafka_identity(k));
        make_worker(&settings, &hub, &metrics).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
