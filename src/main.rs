//! The `spikewatch` command line. Arguments are parsed here; the work is in the library.

use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use detector::DetectorConfig;
use spikewatch::service::config::{ServiceConfig, SourceKind, SourceSettings};
use spikewatch::{backtest, pipeline, report, service};

#[derive(Debug, Parser)]
#[command(
    name = "spikewatch",
    version,
    about = "Streaming anomaly detector for error-rate telemetry"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ReplayFormat {
    /// A table of alerts as they fire and resolve.
    Table,
    /// One alert event (CONTRACT section 5) per line, nothing else on stdout.
    Jsonl,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ScoreFormat {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Replay a trace directory or samples file (.jsonl / .jsonl.gz / .parquet) through the
    /// detector, in event time, as fast as the machine allows.
    Replay {
        /// Trace directory (with samples.jsonl.gz or samples.parquet) or a samples file.
        path: PathBuf,
        #[arg(long, value_enum, default_value_t = ReplayFormat::Table)]
        format: ReplayFormat,
        /// Detector configuration (JSON or TOML `[detector]`-less table of detector settings).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Rows per Arrow batch.
        #[arg(long, default_value_t = 1024)]
        batch_size: usize,
        /// Also write every fleet incident (its final state) to this file, one JSON object a
        /// line, in the order they opened.
        #[arg(long, value_name = "FILE")]
        incidents_out: Option<PathBuf>,
    },
    /// Replay every trace with a labels.json under a directory and print a scorecard. Exits 1
    /// if any required detection was missed.
    Backtest {
        dir: PathBuf,
        #[arg(long, value_enum, default_value_t = ScoreFormat::Table)]
        format: ScoreFormat,
        #[arg(long)]
        config: Option<PathBuf>,
        /// Also exit 1 when any trace has a false positive.
        #[arg(long)]
        fail_on_false_positives: bool,
    },
    /// Run the service: the source in the config (Kafka, or the demo when none is configured)
    /// through the detector, with the HTTP API, /metrics and the Alertmanager push.
    Run {
        /// Service configuration (TOML; see spikewatch.example.toml). Without it, the defaults:
        /// the demo on 127.0.0.1:8686.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run the service on the embedded demo: the testdata incident traces replayed in a loop,
    /// event time compressed, with the API and /metrics up.
    Demo {
        /// Service configuration to start from (TOML); the flags below override it.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Address to listen on.
        #[arg(long)]
        listen: Option<String>,
        /// Event seconds played per wall second.
        #[arg(long)]
        speed: Option<f64>,
        /// Directory of traces.
        #[arg(long)]
        traces: Option<PathBuf>,
        /// Play only this trace (repeatable); default: every trace with an incident.
        #[arg(long = "trace")]
        names: Vec<String>,
        /// Event seconds at the start of each trace played without pacing.
        #[arg(long)]
        fast_forward: Option<f64>,
        /// Alertmanager base URL to push alerts to (repeatable).
        #[arg(long = "alertmanager")]
        alertmanager: Vec<String>,
        /// Play the traces once instead of looping; the API stays up afterwards.
        #[arg(long)]
        once: bool,
    },
    /// Check a service configuration file and explain every error by field. Exits 1 if it is
    /// invalid.
    CheckConfig { file: PathBuf },
    /// Write a trace's samples (keyed cluster/service) and change events into Kafka, for
    /// demos, load tests and the compose stack. A summary goes to stderr.
    Produce(spikewatch::produce::ProduceArgs),
    /// Regenerate the incident traces (deterministic, fixed seeds) into a directory.
    GenTraces {
        #[arg(long, default_value = "testdata/incidents")]
        out: PathBuf,
    },
}

fn load_config(path: Option<&Path>) -> anyhow::Result<DetectorConfig> {
    let Some(path) = path else {
        return Ok(DetectorConfig::default());
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let cfg: DetectorConfig =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    cfg.clone()
        .check()
        .with_context(|| format!("checking {}", path.display()))?;
    Ok(cfg)
}

/// The service configuration: the file if given (else defaults), then the environment.
fn service_config(path: Option<&Path>) -> anyhow::Result<ServiceConfig> {
    let mut cfg = match path {
        Some(p) => ServiceConfig::load(p)?,
        None => ServiceConfig::default(),
    };
    cfg.apply_env(|k| std::env::var(k).ok())?;
    Ok(cfg)
}

fn start_service(cfg: ServiceConfig) -> anyhow::Result<ExitCode> {
    let settings = cfg.check()?;
    service::run(settings)?;
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        // A closed pipe (`spikewatch replay ... | head`) is the reader's choice, not a failure.
        Err(err)
            if err.chain().any(|e| {
                e.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("spikewatch: error: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Replay {
            path,
            format,
            config,
            batch_size,
            incidents_out,
        } => {
            let cfg = load_config(config.as_deref())?;
            replay(&path, format, cfg, batch_size, incidents_out.as_deref())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Backtest {
            dir,
            format,
            config,
            fail_on_false_positives,
        } => {
            let cfg = load_config(config.as_deref())?;
            let traces = ingest::trace::list_traces(&dir)
                .with_context(|| format!("listing traces in {}", dir.display()))?;
            let mut scores = Vec::new();
            for t in traces {
                let Some(labels) = t.labels.as_ref() else {
                    continue;
                };
                let res = pipeline::replay(&t.path, cfg.clone(), 1024, |_, _| {})?;
                scores.push(backtest::score_replay(labels, &res));
            }
            if scores.is_empty() {
                anyhow::bail!("no traces with labels.json under {}", dir.display());
            }
            match format {
                ScoreFormat::Table => print!("{}", report::scorecard(&scores)),
                ScoreFormat::Json => println!("{}", serde_json::to_string_pretty(&scores)?),
            }
            let failed = scores.iter().any(|s| !s.passed())
                || (fail_on_false_positives
                    && scores.iter().any(|s| !s.false_positives.is_empty()));
            Ok(if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Run { config } => {
            let cfg = service_config(config.as_deref())?;
            start_service(cfg)
        }
        Command::Demo {
            config,
            listen,
            speed,
            traces,
            names,
            fast_forward,
            alertmanager,
            once,
        } => {
            let mut cfg = service_config(config.as_deref())?;
            cfg.source.kind = Some(SourceKind::Demo);
            let demo = &mut cfg.source.demo;
            if let Some(v) = speed {
                demo.speed = v;
            }
            if let Some(v) = traces {
                demo.traces = v;
            }
            if !names.is_empty() {
                demo.names = names;
            }
            if let Some(v) = fast_forward {
                demo.fast_forward_s = v;
            }
            if once {
                demo.repeat = false;
            }
            if let Some(v) = listen {
                cfg.server.listen = v;
            }
            if !alertmanager.is_empty() {
                cfg.alertmanager.urls = alertmanager;
            }
            start_service(cfg)
        }
        Command::CheckConfig { file } => {
            let checked = ServiceConfig::load(&file).and_then(|mut c| {
                c.apply_env(|k| std::env::var(k).ok())?;
                c.check()
            });
            match checked {
                Ok(s) => {
                    println!("{}: ok", file.display());
                    println!("  listen        {}", s.listen);
                    let source = match &s.source {
                        SourceSettings::Demo(d) => format!("demo ({})", d.traces.display()),
                        SourceSettings::Kafka(k) => {
                            format!("kafka {} topic {}", k.brokers, k.metrics_topic)
                        }
                    };
                    println!("  source        {source}");
                    if let SourceSettings::Kafka(k) = &s.source {
                        let topic = service::alerts_topic::topic_of(k).unwrap_or("off");
                        println!("  alerts topic  {topic}");
                    }
                    let am = s.alertmanager.as_ref().map_or_else(
                        || "off".to_string(),
                        |a| {
                            a.urls
                                .iter()
                                .map(ToString::to_string)
                                .collect::<Vec<_>>()
                                .join(", ")
                        },
                    );
                    println!("  alertmanager  {am}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(errors) => {
                    println!("{}: invalid", file.display());
                    for e in &errors.0 {
                        println!("  {e}");
                    }
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Produce(args) => {
            spikewatch::produce::main(args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::GenTraces { out } => {
            let names = tracegen::write_all(&out).context("generating traces")?;
            for n in names {
                eprintln!("wrote {}", out.join(n).display());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn replay(
    path: &Path,
    format: ReplayFormat,
    cfg: DetectorConfig,
    batch_size: usize,
    incidents_out: Option<&Path>,
) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let progress = std::io::stderr().is_terminal().then(|| {
        let pb = indicatif::ProgressBar::new_spinner();
        pb.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        pb
    });
    if format == ReplayFormat::Table {
        writeln!(out, "{}", report::ALERT_HEADER)?;
    }
    let mut write_err = None;
    // Incident ids already announced as opened / resolved in the table.
    let mut opened = std::collections::HashSet::new();
    let mut resolved = std::collections::HashSet::new();
    let res =
        pipeline::replay_with_incidents(path, cfg, batch_size, |events, incidents, messages| {
            if let Some(pb) = &progress {
                pb.set_message(format!("{messages} samples"));
                pb.tick();
            }
            for e in events {
                let r = match format {
                    ReplayFormat::Jsonl => serde_json::to_string(e)
                        .map_err(std::io::Error::other)
                        .and_then(|line| writeln!(out, "{line}")),
                    ReplayFormat::Table => writeln!(out, "{}", report::alert_line(e)),
                };
                if let Err(err) = r {
                    write_err.get_or_insert(err);
                }
            }
            if format == ReplayFormat::Table {
                for inc in incidents {
                    // One line when an incident opens and one when it resolves; an incident
                    // first seen already resolved gets one line only.
                    let is_resolved = inc.state == detector::incident::IncidentState::Resolved;
                    let first = opened.insert(inc.id.clone());
                    let newly_resolved = is_resolved && resolved.insert(inc.id.clone());
                    let news = first || newly_resolved;
                    if news {
                        if let Err(err) = writeln!(out, "{}", report::incident_line(inc)) {
                            write_err.get_or_insert(err);
                        }
                    }
                }
            }
        })?;
    if let Some(pb) = progress {
        pb.finish_and_clear();
    }
    if let Some(err) = write_err {
        return Err(err).context("writing alerts");
    }
    if format == ReplayFormat::Table && !res.incidents.is_empty() {
        write!(out, "\n{}", report::incident_summary(&res.incidents))?;
    }
    out.flush()?;
    if let Some(file) = incidents_out {
        let mut text = String::new();
        for inc in &res.incidents {
            text.push_str(&serde_json::to_string(inc)?);
            text.push('\n');
        }
        std::fs::write(file, text).with_context(|| format!("writing {}", file.display()))?;
    }
    let st = res.stats;
    let summary = format!(
        "{} samples, {} evaluated, {} duplicates, {} too late, {} rejected, {} alert events, {} incidents ({} change events{})",
        res.messages,
        st.processed,
        st.duplicates,
        st.too_late,
        res.rejections.total(),
        res.events.len(),
        res.incidents.len(),
        res.changes,
        match res.rejected_changes.len() {
            0 => String::new(),
            n => format!(", {n} rejected"),
        }
    );
    eprintln!("spikewatch: {summary}");
    for ex in &res.rejections.examples {
        eprintln!("spikewatch: rejected {ex}");
    }
    for bad in res.rejected_changes.iter().take(5) {
        eprintln!("spikewatch: skipped {bad}");
    }
    Ok(())
}
