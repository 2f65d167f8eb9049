//! The deployment files, checked without a container engine: `docker-compose.yml` (Debian's
//! docker-compose and the compose-spec schema, plus the stack's own invariants), the Dockerfile,
//! the Prometheus config and rules (`promtool`), the Alertmanager routing (`amtool`), the Grafana
//! provisioning and the dashboards (lint rules of our own, every query parsed by promtool).
//!
//! The external tools are installed by `.ci/install-deploy-tools`; a missing one fails its test
//! with that hint rather than skipping it.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::{json, Value};
use support::{
    load_dashboards, metric_names, repo_root, substitute, variable_refs, with_builtins, Dashboard,
    QueryKind, GRAFANA_BUILTINS,
};

// ------------------------------------------------------------------------------------------
// Tools

const INSTALL_HINT: &str = "run `.ci/install-deploy-tools` (apt: prometheus, \
     prometheus-alertmanager, docker-compose; pip: check-jsonschema)";

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A command for an external tool, run from the repository root; panics with the install hint
/// when the tool is missing.
fn tool(name: &str) -> Command {
    let Some(path) = on_path(name) else {
        panic!("`{name}` is not installed: {INSTALL_HINT}");
    };
    let mut c = Command::new(path);
    c.current_dir(repo_root());
    c
}

/// Runs a command and returns its stdout; panics with everything it printed when it fails.
fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A python3 that can import PyYAML (Debian's docker-compose depends on python3-yaml).
fn python_with_yaml() -> &'static Path {
    static PY: OnceLock<Option<PathBuf>> = OnceLock::new();
    PY.get_or_init(|| {
        let mut candidates: Vec<PathBuf> = vec![PathBuf::from("/usr/bin/python3")];
        candidates.extend(on_path("python3"));
        candidates.into_iter().find(|py| {
            Command::new(py)
                .args(["-c", "import yaml"])
                .output()
                .is_ok_and(|o| o.status.success())
        })
    })
    .as_deref()
    .unwrap_or_else(|| panic!("no python3 with PyYAML to read YAML files: {INSTALL_HINT}"))
}

/// A YAML file (compose, Prometheus, Alertmanager, Grafana provisioning) as JSON.
fn yaml(rel: &str) -> Value {
    const TO_JSON: &str =
        "import json, sys, yaml; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)";
    let out = run_ok(
        Command::new(python_with_yaml())
            .args(["-c", TO_JSON])
            .arg(repo_root().join(rel)),
    );
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{rel} as JSON: {e}"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo_root().join(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
}

/// A fresh scratch directory under the system temp dir.
fn scratch_dir(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("spikewatch-{tag}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn duration_s(text: &str) -> f64 {
    let (num, unit) = text.split_at(text.find(|c: char| c.is_ascii_alphabetic()).unwrap());
    let n: f64 = num
        .parse()
        .unwrap_or_else(|_| panic!("bad duration {text}"));
    n * match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => panic!("bad duration {text}"),
    }
}

// ------------------------------------------------------------------------------------------
// docker compose

const COMPOSE: &str = "docker-compose.yml";

fn compose() -> Value {
    yaml(COMPOSE)
}

fn services(compose: &Value) -> &serde_json::Map<String, Value> {
    compose["services"].as_object().expect("services")
}

/// `${VAR:-default}` as the default (what compose runs when VAR is unset).
fn env_default(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = start + rest[start..].find('}').unwrap();
        let inner = &rest[start + 2..end];
        if let Some((_, default)) = inner.split_once(":-") {
            out.push_str(default);
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

fn command_words(service: &Value) -> Vec<String> {
    match &service["command"] {
        Value::Array(a) => a
            .iter()
            .map(|v| env_default(v.as_str().map_or(&v.to_string(), |s| s)))
            .collect(),
        Value::String(s) => s.split_whitespace().map(env_default).collect(),
        _ => Vec::new(),
    }
}

/// `(host source, container target)` of each bind mount of a service.
fn bind_mounts(service: &Value) -> Vec<(String, String)> {
    service["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter(|v| v.starts_with("./"))
        .map(|v| {
            let mut parts = v.split(':');
            (
                parts.next().unwrap().to_string(),
                parts.next().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn has_healthcheck(service: &Value) -> bool {
    let hc = &service["healthcheck"];
    hc.is_object() && hc["disable"] != json!(true) && hc["test"].is_array()
}

#[test]
fn compose_file_is_valid_for_docker_compose() {
    run_ok(tool("docker-compose").args(["-f", COMPOSE, "config", "-q"]));
}

#[test]
fn compose_file_matches_the_compose_spec_schema() {
    run_ok(tool("check-jsonschema").args(["--builtin-schema", "vendor.compose-spec", COMPOSE]));
}

#[test]
fn compose_runs_the_whole_stack() {
    let c = compose();
    let have: BTreeSet<&str> = services(&c).keys().map(String::as_str).collect();
    for want in [
        "kafka",
        "kafka-init",
        "spikewatch",
        "replayer",
        "prometheus",
        "alertmanager",
        "grafana",
    ] {
        assert!(
            have.contains(want),
            "docker-compose.yml has no `{want}` service: {have:?}"
        );
    }
}

#[test]
fn compose_images_are_pinned_to_versions() {
    let c = compose();
    for (name, s) in services(&c) {
        let image = s["image"].as_str().unwrap_or("");
        if s.get("build").is_some() {
            // Built from this repo's Dockerfile; its base images are checked with it.
            assert!(
                !image.is_empty(),
                "{name}: a built service needs an image name to share"
            );
            continue;
        }
        let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
        assert!(
            !tag.is_empty() && tag != "latest" && tag.chars().any(|c| c.is_ascii_digit()),
            "{name}: image `{image}` is not pinned to a version"
        );
    }
}

#[test]
fn compose_services_start_in_dependency_order_with_conditions() {
    let c = compose();
    let svcs = services(&c);
    // Every dependency names a condition the dependency can meet.
    for (name, s) in svcs {
        let Some(deps) = s["depends_on"].as_object() else {
            assert!(
                s["depends_on"].is_null(),
                "{name}: depends_on must use the long form with a condition"
            );
            continue;
        };
        for (dep, spec) in deps {
            let target = svcs
                .get(dep)
                .unwrap_or_else(|| panic!("{name} depends on unknown service {dep}"));
            match spec["condition"].as_str() {
                Some("service_healthy") => assert!(
                    has_healthcheck(target),
                    "{name} waits for {dep} to be healthy, but {dep} has no healthcheck"
                ),
                Some("service_completed_successfully") => assert!(
                    matches!(target["restart"].as_str(), None | Some("no")),
                    "{name} waits for {dep} to complete, but {dep} restarts"
                ),
                other => panic!(
                    "{name} -> {dep}: condition {other:?}; want a health or completion condition"
                ),
            }
        }
    }
    // Every long-running service that serves something says when it is ready.
    for (name, s) in svcs {
        let one_shot = matches!(s["restart"].as_str(), None | Some("no"));
        let no_port = s["healthcheck"]["disable"] == json!(true);
        if !one_shot && !no_port {
            assert!(
                has_healthcheck(s),
                "{name} runs for good but has no healthcheck"
            );
        }
    }
    // And the dependencies form an order (no cycle).
    let mut started: BTreeSet<&str> = BTreeSet::new();
    while started.len() < svcs.len() {
        let ready: Vec<&str> = svcs
            .iter()
            .filter(|(n, _)| !started.contains(n.as_str()))
            .filter(|(_, s)| {
                s["depends_on"]
                    .as_object()
                    .is_none_or(|d| d.keys().all(|k| started.contains(k.as_str())))
            })
            .map(|(n, _)| n.as_str())
            .collect();
        assert!(
            !ready.is_empty(),
            "depends_on has a cycle among {:?}",
            svcs.keys()
        );
        started.extend(ready);
    }
}

#[test]
fn compose_spikewatch_is_healthy_only_when_ready() {
    let c = compose();
    let sw = &services(&c)["spikewatch"];
    let test = sw["healthcheck"]["test"].to_string();
    assert!(
        test.contains("/readyz") && test.contains(":8686"),
        "spikewatch's healthcheck must probe /readyz on 8686: {test}"
    );
    let dockerfile = read("Dockerfile");
    assert!(
        dockerfile.contains("HEALTHCHECK") && dockerfile.contains("/readyz"),
        "the image's HEALTHCHECK must probe /readyz"
    );
}

#[test]
fn compose_bind_mounts_exist_in_the_repo() {
    let c = compose();
    for (name, s) in services(&c) {
        for (src, _) in bind_mounts(s) {
            assert!(
                repo_root().join(&src).exists(),
                "{name} mounts {src}, which is not in the repository"
            );
        }
    }
}

/// `key = "value"` from deploy/spikewatch.toml (flat string keys only).
fn spikewatch_toml(key: &str) -> String {
    let text = read("deploy/spikewatch.toml");
    text.lines()
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().trim_matches('"').to_string())
        .unwrap_or_else(|| panic!("deploy/spikewatch.toml has no `{key}`"))
}

#[test]
fn compose_replayer_feeds_the_topics_spikewatch_reads() {
    let c = compose();
    let svcs = services(&c);
    let words = command_words(&svcs["replayer"]);
    let arg = |flag: &str| {
        let i = words
            .iter()
            .position(|w| w == flag)
            .unwrap_or_else(|| panic!("replayer has no {flag}: {words:?}"));
        words[i + 1].clone()
    };
    assert_eq!(
        words.first().map(String::as_str),
        Some("produce"),
        "{words:?}"
    );
    assert!(
        words.iter().any(|w| w == "--loop"),
        "the replayer must loop: {words:?}"
    );
    assert_eq!(arg("--topic"), spikewatch_toml("metrics_topic"));
    assert_eq!(arg("--changes-topic"), spikewatch_toml("changes_topic"));
    assert_eq!(arg("--brokers"), spikewatch_toml("brokers"));
    // The trace it replays is in the image (testdata/incidents is copied to /opt/spikewatch).
    let trace = words[1]
        .strip_prefix("/opt/spikewatch/")
        .unwrap_or_else(|| panic!("replayer trace {} is not under /opt/spikewatch", words[1]));
    assert!(
        repo_root().join(trace).join("samples.jsonl.gz").is_file(),
        "replayer trace {trace} does not exist"
    );
    // The one-shot init creates every topic spikewatch reads or writes.
    let script = read("deploy/kafka/create-topics.sh");
    for key in [
        "metrics_topic",
        "changes_topic",
        "dead_letter_topic",
        "alerts_topic",
    ] {
        let topic = spikewatch_toml(key);
        assert!(
            script.contains(&format!("create {topic} ")),
            "deploy/kafka/create-topics.sh does not create {topic} ({key})"
        );
    }
    let init_mounts = bind_mounts(&svcs["kafka-init"]);
    assert!(
        init_mounts
            .iter()
            .any(|(src, _)| src == "./deploy/kafka/create-topics.sh"),
        "kafka-init does not run deploy/kafka/create-topics.sh: {init_mounts:?}"
    );
    run_ok(
        Command::new("sh")
            .args(["-n", "deploy/kafka/create-topics.sh"])
            .current_dir(repo_root()),
    );
}

#[test]
fn kafka_is_a_single_kraft_node_reachable_in_network_and_from_the_host() {
    let c = compose();
    let kafka = &services(&c)["kafka"];
    let env = kafka["environment"]
        .as_object()
        .expect("kafka environment map");
    let get = |k: &str| -> String {
        match env.get(k) {
            Some(Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
            None => panic!("kafka has no {k}"),
        }
    };
    let roles = get("KAFKA_PROCESS_ROLES");
    assert!(
        roles.contains("broker") && roles.contains("controller"),
        "{roles}"
    );
    assert!(env.contains_key("KAFKA_CONTROLLER_QUORUM_VOTERS"));
    for (k, v) in env {
        if k.ends_with("_REPLICATION_FACTOR") || k.ends_with("_MIN_ISR") {
            assert_eq!(
                v.to_string().trim_matches('"'),
                "1",
                "{k} must be 1 on a single node"
            );
        }
    }
    assert!(
        env.contains_key("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"),
        "the offsets topic defaults to 3 replicas, which a single node cannot host"
    );
    let advertised = get("KAFKA_ADVERTISED_LISTENERS");
    let brokers = spikewatch_toml("brokers");
    assert!(
        advertised.contains(&format!("//{brokers}")),
        "spikewatch reads {brokers}, which Kafka does not advertise: {advertised}"
    );
    let host_listener = advertised
        .split(',')
        .find(|l| l.contains("//localhost:"))
        .unwrap_or_else(|| panic!("no listener for clients on the host: {advertised}"));
    let host_port = host_listener.rsplit(':').next().unwrap();
    let published: Vec<String> = kafka["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| p.as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        published
            .iter()
            .any(|p| p.starts_with(&format!("{host_port}:"))),
        "host listener port {host_port} is not published: {published:?}"
    );
}

// ------------------------------------------------------------------------------------------
// Dockerfile

/// `(base image, instructions)` of each stage.
fn dockerfile_stages() -> Vec<(String, Vec<String>)> {
    let text = read("Dockerfile").replace("\\\n", " ");
    let mut stages: Vec<(String, Vec<String>)> = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("FROM ") {
            stages.push((
                rest.split_whitespace().next().unwrap().to_string(),
                Vec::new(),
            ));
        } else if let Some(stage) = stages.last_mut() {
            stage.1.push(line.to_string());
        }
    }
    stages
}

#[test]
fn dockerfile_builds_in_a_rust_stage_and_runs_slim_as_non_root() {
    let stages = dockerfile_stages();
    assert!(stages.len() >= 2, "the Dockerfile must be multi-stage");
    for (base, _) in &stages {
        let tag = base.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
        assert!(
            tag.chars().any(|c| c.is_ascii_digit()) && tag != "latest",
            "base image {base} is not pinned"
        );
    }
    let (builder_base, builder) = &stages[0];
    assert!(
        builder_base.starts_with("rust:"),
        "builder stage is {builder_base}"
    );
    assert!(
        builder
            .iter()
            .any(|l| l.starts_with("RUN") && l.contains("cmake")),
        "librdkafka is built from source (rdkafka cmake-build): the builder needs cmake"
    );
    assert!(builder
        .iter()
        .any(|l| l.contains("cargo build --release --locked")));

    let (runtime_base, runtime) = stages.last().unwrap();
    assert!(
        runtime_base.contains("slim") || runtime_base.contains("distroless"),
        "the runtime image should be small, not {runtime_base}"
    );
    let user = runtime
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("the runtime stage sets USER");
    let user = user.split(':').next().unwrap().trim();
    assert!(user != "root" && user != "0", "runtime runs as {user}");
    assert!(
        runtime
            .iter()
            .any(|l| l.starts_with("COPY") && l.contains("testdata/incidents")),
        "`spikewatch demo` and the replayer need testdata/incidents in the image"
    );
    assert!(runtime.iter().any(|l| l.starts_with("HEALTHCHECK")));
}

#[test]
fn dockerfile_copies_every_path_the_workspace_manifest_needs() {
    let stages = dockerfile_stages();
    let copied: BTreeSet<String> = stages[0]
        .1
        .iter()
        .filter_map(|l| l.strip_prefix("COPY "))
        .filter(|l| !l.starts_with("--from"))
        .flat_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            words[..words.len() - 1]
                .iter()
                .map(|w| w.trim_end_matches('/').to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    let manifest = read("Cargo.toml");
    let members_line = manifest
        .lines()
        .find(|l| l.trim_start().starts_with("members"))
        .expect("workspace members");
    let members: Vec<&str> = members_line
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|m| *m != ".")
        .collect();
    let mut needed: Vec<&str> = vec!["Cargo.toml", "Cargo.lock", "src"];
    needed.extend(members);
    if manifest.contains("[[bench]]") {
        needed.push("benches");
    }
    let ignore = read(".dockerignore");
    let ignored: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
        .map(|l| l.trim_end_matches('/'))
        .collect();
    for path in needed {
        assert!(
            copied.contains(path),
            "the builder stage does not COPY {path}: {copied:?}"
        );
        assert!(
            !ignored.contains(&path),
            ".dockerignore excludes {path}, which the build needs"
        );
    }
    assert!(
        ignored.contains(&"target"),
        ".dockerignore must keep target/ out of the context"
    );
}

#[test]
fn dockerfile_rust_is_new_enough_for_every_locked_crate() {
    let (base, _) = &dockerfile_stages()[0];
    let version = base
        .strip_prefix("rust:")
        .and_then(|t| t.split('-').next())
        .unwrap();
    let parse = |v: &str| -> (u64, u64) {
        let mut it = v.split('.').map(|p| p.parse::<u64>().unwrap_or(0));
        (it.next().unwrap_or(0), it.next().unwrap_or(0))
    };
    let image = parse(version);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let meta = run_ok(
        Command::new(cargo)
            .args(["metadata", "--format-version", "1", "--locked"])
            .current_dir(repo_root()),
    );
    let meta: Value = serde_json::from_str(&meta).unwrap();
    let newest = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| {
            Some((
                parse(p["rust_version"].as_str()?),
                p["name"].as_str()?.to_string(),
            ))
        })
        .max()
        .unwrap();
    assert!(
        image >= newest.0,
        "the builder's Rust {version} is older than {} needs ({}.{})",
        newest.1,
        newest.0 .0,
        newest.0 .1
    );
}

// ------------------------------------------------------------------------------------------
// Prometheus

#[test]
fn prometheus_config_passes_promtool() {
    // Also loads and checks every rule file the config names.
    let out =
        run_ok(tool("promtool").args(["check", "config", "deploy/prometheus/prometheus.yml"]));
    assert!(out.contains("rule files found"), "{out}");
}

#[test]
fn prometheus_scrapes_spikewatch_every_5s_and_alerts_through_alertmanager() {
    let p = yaml("deploy/prometheus/prometheus.yml");
    let job = p["scrape_configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job_name"] == "spikewatch")
        .expect("a spikewatch scrape job");
    assert_eq!(duration_s(job["scrape_interval"].as_str().unwrap()), 5.0);
    let listen_port = spikewatch_toml("listen")
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    let targets = job["static_configs"][0]["targets"].to_string();
    assert!(
        targets.contains(&format!("spikewatch:{listen_port}")),
        "scrape targets {targets} do not reach spikewatch on its listen port {listen_port}"
    );
    let am = p["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"].to_string();
    assert!(am.contains("alertmanager:9093"), "{am}");
    let c = compose();
    let mounts = bind_mounts(&services(&c)["prometheus"]);
    assert!(
        mounts
            .iter()
            .any(|(s, t)| s == "./deploy/prometheus" && t == "/etc/prometheus"),
        "{mounts:?}"
    );
}

#[test]
fn health_rules_pass_promtool() {
    let rules = rule_files();
    assert!(!rules.is_empty());
    run_ok(tool("promtool").args(["check", "rules"]).args(&rules));
}

#[test]
fn health_rule_unit_tests_pass() {
    let dir = repo_root().join("deploy/prometheus/tests");
    let mut tests: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    tests.sort();
    assert!(
        !tests.is_empty(),
        "no promtool rule tests in {}",
        dir.display()
    );
    run_ok(tool("promtool").args(["test", "rules"]).args(&tests));
}

fn rule_files() -> Vec<PathBuf> {
    let dir = repo_root().join("deploy/prometheus/rules");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    files.sort();
    files
}

#[test]
fn health_rules_cover_down_lagging_and_rejecting_and_each_is_unit_tested() {
    let tests_text: String = std::fs::read_dir(repo_root().join("deploy/prometheus/tests"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    let mut names = BTreeSet::new();
    for file in rule_files() {
        let rel = file
            .strip_prefix(repo_root())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let doc = yaml(&rel);
        for group in doc["groups"].as_array().unwrap() {
            for rule in group["rules"].as_array().unwrap() {
                let Some(name) = rule["alert"].as_str() else {
                    continue;
                };
                names.insert(name.to_string());
                assert!(
                    rule["labels"]["severity"].is_string(),
                    "{name}: no severity label, Alertmanager cannot route it"
                );
                assert!(
                    rule["annotations"]["summary"].is_string(),
                    "{name}: no summary"
                );
                assert!(
                    tests_text.contains(&format!("alertname: {name}\n")),
                    "{name} has no promtool unit test in deploy/prometheus/tests"
                );
            }
        }
    }
    for (what, alert) in [
        ("down", "SpikewatchDown"),
        ("lagging behind event time", "SpikewatchEventTimeLagging"),
        ("lagging behind Kafka", "SpikewatchKafkaConsumerLagging"),
        ("rejecting input", "SpikewatchRejectingInput"),
    ] {
        assert!(
            names.contains(alert),
            "no alert for spikewatch {what} ({alert}): {names:?}"
        );
    }
}

// ------------------------------------------------------------------------------------------
// Alertmanager

const AM_CONFIG: &str = "deploy/alertmanager/alertmanager.yml";

#[test]
fn alertmanager_config_passes_amtool() {
    run_ok(tool("amtool").args(["check-config", AM_CONFIG]));
}

#[test]
fn alertmanager_routes_each_kind_of_alert_to_its_receiver() {
    struct Case {
        name: &'static str,
        labels: &'static [&'static str],
        receiver: &'static str,
    }
    let cases = [
        Case {
            name: "critical error spike pages",
            labels: &[
                "alertname=error_rate_spike",
                "kind=error_rate_spike",
                "severity=critical",
                "cluster=prod-use1-a",
                "service=conversation",
            ],
            receiver: "oncall-page",
        },
        Case {
            name: "early pool-saturation warning opens a ticket",
            labels: &[
                "alertname=db_pool_saturation",
                "severity=warning",
                "cluster=prod-use1-a",
                "service=auth",
            ],
            receiver: "oncall-ticket",
        },
        Case {
            name: "spikewatch down goes to the platform team, even when critical",
            labels: &[
                "alertname=SpikewatchDown",
                "severity=critical",
                "component=spikewatch",
            ],
            receiver: "platform",
        },
        Case {
            name: "an alert without severity still reaches someone",
            labels: &["alertname=something_new"],
            receiver: "oncall-ticket",
        },
    ];
    for case in cases {
        let out = tool("amtool")
            .args(["config", "routes", "test", "--config.file", AM_CONFIG])
            .arg(format!("--verify.receivers={}", case.receiver))
            .args(case.labels)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: routed to {} instead of {}",
            case.name,
            String::from_utf8_lossy(&out.stdout).trim(),
            case.receiver
        );
    }
}

#[test]
fn alertmanager_notifies_incident_alerts_within_seconds() {
    let am = yaml(AM_CONFIG);
    let root = &am["route"];
    let wait = duration_s(root["group_wait"].as_str().expect("route.group_wait set"));
    let interval = duration_s(
        root["group_interval"]
            .as_str()
            .expect("route.group_interval set"),
    );
    assert!(
        wait <= 5.0,
        "group_wait {wait}s delays the first page of every incident"
    );
    assert!(
        interval <= 30.0,
        "group_interval {interval}s delays clusters joining an incident"
    );
    for route in root["routes"].as_array().into_iter().flatten() {
        if route.to_string().contains("component") {
            continue; // spikewatch's own health: may wait to group
        }
        if let Some(w) = route["group_wait"].as_str() {
            assert!(duration_s(w) <= 5.0, "route {route} waits {w}");
        }
    }
}

// ------------------------------------------------------------------------------------------
// Grafana provisioning

#[test]
fn grafana_provisioning_points_at_the_compose_services_and_dashboards() {
    let c = compose();
    let svcs = services(&c);
    let mounts = bind_mounts(&svcs["grafana"]);
    let target_of = |src: &str| -> String {
        mounts
            .iter()
            .find(|(s, _)| s == src)
            .map(|(_, t)| t.clone())
            .unwrap_or_else(|| panic!("grafana does not mount {src}: {mounts:?}"))
    };
    assert_eq!(
        target_of("./deploy/grafana/provisioning"),
        "/etc/grafana/provisioning"
    );
    let dashboards_dir = target_of("./dashboards");

    let providers = yaml("deploy/grafana/provisioning/dashboards/spikewatch.yml");
    assert_eq!(providers["apiVersion"], json!(1));
    let provider = &providers["providers"][0];
    assert_eq!(provider["type"], "file");
    assert_eq!(
        provider["options"]["path"].as_str(),
        Some(dashboards_dir.as_str()),
        "the dashboard provider reads a folder the dashboards are not mounted at"
    );

    let ds = yaml("deploy/grafana/provisioning/datasources/spikewatch.yml");
    assert_eq!(ds["apiVersion"], json!(1));
    let prom = ds["datasources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["type"] == "prometheus")
        .expect("a Prometheus data source");
    assert_eq!(
        prom["isDefault"],
        json!(true),
        "dashboards default to this data source"
    );
    assert!(prom["uid"].is_string());
    let url = prom["url"].as_str().unwrap();
    let host = url.trim_start_matches("http://").split(':').next().unwrap();
    assert!(
        svcs.contains_key(host),
        "data source {url} is not a compose service"
    );
    assert_eq!(
        prom["jsonData"]["timeInterval"].as_str().map(duration_s),
        Some(5.0),
        "the data source's scrape interval should match Prometheus's spikewatch job"
    );
    if let Some(home) =
        svcs["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"].as_str()
    {
        let file = home.strip_prefix(&format!("{dashboards_dir}/")).unwrap();
        assert!(
            repo_root().join("dashboards").join(file).is_file(),
            "home dashboard {home}"
        );
    }
}

// ------------------------------------------------------------------------------------------
// Dashboards: lint rules

/// Unit ids from Grafana's value formats (packages/grafana-data/src/valueFormats/categories.ts)
/// that suit spikewatch's metrics.
const KNOWN_UNITS: &[&str] = &[
    "none",
    "short",
    "percent",
    "percentunit",
    "s",
    "ms",
    "µs",
    "ns",
    "m",
    "h",
    "d",
    "dtdurations",
    "reqps",
    "cps",
    "ops",
    "rps",
    "wps",
    "cpm",
    "opm",
    "bytes",
    "decbytes",
    "Bps",
];

/// Metrics with no series at all while nothing is happening: `spikewatch_alerts_active` has a
/// series per firing alert and none when no alert fires. A single number over them reads
/// "No data" on a quiet fleet unless the query ends in `or vector(0)`.
const EMPTY_WHEN_QUIET: &[&str] = &["spikewatch_alerts_active"];

/// Panels that show one number.
fn shows_one_number(panel: &Value) -> bool {
    matches!(panel["type"].as_str(), Some("stat" | "gauge"))
}

fn squash(expr: &str) -> String {
    expr.chars().filter(|c| !c.is_whitespace()).collect()
}

fn has_fallback(expr: &str) -> bool {
    let squashed = squash(expr);
    squashed.contains("orvector(") || squashed.contains("absent(")
}

/// A query over an [`EMPTY_WHEN_QUIET`] metric.
fn empty_when_quiet(expr: &str) -> bool {
    metric_names(expr)
        .iter()
        .any(|m| EMPTY_WHEN_QUIET.contains(&m.as_str()))
}

/// The one fallback allowed: a single number over a metric that is empty when quiet, ending in
/// `or vector(0)` (and no other fallback), so a quiet fleet reads 0.
fn is_zero_when_quiet(panel: &Value, expr: &str) -> bool {
    let squashed = squash(expr);
    shows_one_number(panel)
        && empty_when_quiet(expr)
        && squashed.ends_with("orvector(0)")
        && squashed.matches("orvector(").count() == 1
        && !squashed.contains("absent(")
}

fn is_row(panel: &Value) -> bool {
    panel["type"] == "row"
}

fn is_our_datasource(ds: &Value) -> bool {
    matches!(
        ds["uid"].as_str(),
        Some("${datasource}") | Some("$datasource")
    )
}

type Finding = (&'static str, String);

fn lint(d: &Dashboard) -> Vec<Finding> {
    let mut f: Vec<Finding> = Vec::new();
    let j = &d.json;

    // identity
    let uid = d.uid();
    if uid.is_empty()
        || uid.len() > 40
        || !uid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        f.push((
            "identity",
            format!("uid {uid:?} must be 1-40 of [A-Za-z0-9_-]"),
        ));
    }
    if j["title"].as_str().unwrap_or("").is_empty() || !j["schemaVersion"].is_u64() {
        f.push(("identity", "needs a title and a schemaVersion".into()));
    }

    // datasource variable
    let vars = d.variables();
    if !vars.iter().any(|v| {
        v["type"] == "datasource" && v["name"] == "datasource" && v["query"] == "prometheus"
    }) {
        f.push((
            "datasource-variable",
            "no `datasource` variable of type prometheus".into(),
        ));
    }
    for v in &vars {
        if v["type"] == "query" {
            let name = v["name"].as_str().unwrap_or("?");
            if !is_our_datasource(&v["datasource"]) {
                f.push((
                    "panel-datasource",
                    format!("variable ${name} does not use ${{datasource}}"),
                ));
            }
            if v["refresh"] != json!(2) {
                f.push((
                    "variable-refresh",
                    format!("variable ${name} must refresh on time range change (2)"),
                ));
            }
        }
    }

    // panels
    let mut ids = BTreeSet::new();
    let mut boxes: Vec<(String, (i64, i64, i64, i64))> = Vec::new();
    for p in d.panels() {
        let title = p["title"].as_str().unwrap_or("").to_string();
        let at = format!("panel \"{title}\"");
        match p["id"].as_u64() {
            Some(id) if !ids.insert(id) => {
                f.push(("unique-panel-ids", format!("{at}: id {id} used twice")))
            }
            Some(_) => {}
            None => f.push(("unique-panel-ids", format!("{at}: no numeric id"))),
        }
        let g = &p["gridPos"];
        let (x, y, w, h) = (
            g["x"].as_i64().unwrap_or(-1),
            g["y"].as_i64().unwrap_or(-1),
            g["w"].as_i64().unwrap_or(0),
            g["h"].as_i64().unwrap_or(0),
        );
        if x < 0 || y < 0 || w < 1 || h < 1 || x + w > 24 {
            f.push((
                "grid",
                format!("{at}: gridPos {g} is outside the 24-column grid"),
            ));
        }
        for (other, (ox, oy, ow, oh)) in &boxes {
            if x < ox + ow && *ox < x + w && y < oy + oh && *oy < y + h {
                f.push(("grid", format!("{at} overlaps panel \"{other}\"")));
            }
        }
        boxes.push((title.clone(), (x, y, w, h)));
        if is_row(p) {
            continue;
        }
        if title.is_empty() {
            f.push((
                "panel-descriptions",
                format!("panel id {} has no title", p["id"]),
            ));
        }
        if p["description"]
            .as_str()
            .is_none_or(|s| s.trim().is_empty())
        {
            f.push(("panel-descriptions", format!("{at}: no description")));
        }
        match p["fieldConfig"]["defaults"]["unit"].as_str() {
            None | Some("") => f.push(("panel-units", format!("{at}: no unit"))),
            Some(u) if !KNOWN_UNITS.contains(&u) && !u.starts_with("suffix:") => {
                f.push(("panel-units", format!("{at}: unknown unit {u:?}")))
            }
            Some(_) => {}
        }
        if !is_our_datasource(&p["datasource"]) {
            f.push((
                "panel-datasource",
                format!("{at}: datasource is not ${{datasource}}"),
            ));
        }
        let targets = p["targets"].as_array().cloned().unwrap_or_default();
        if targets.is_empty() {
            f.push(("targets", format!("{at}: no queries")));
        }
        let mut refs = BTreeSet::new();
        for t in &targets {
            let r = t["refId"].as_str().unwrap_or("");
            if r.is_empty() || !refs.insert(r.to_string()) {
                f.push(("targets", format!("{at}: refId {r:?} missing or repeated")));
            }
            if t["expr"].as_str().is_none_or(|e| e.trim().is_empty()) {
                f.push(("targets", format!("{at} {r}: empty expr")));
            }
            if t.get("datasource").is_some() && !is_our_datasource(&t["datasource"]) {
                f.push((
                    "panel-datasource",
                    format!("{at} {r}: datasource is not ${{datasource}}"),
                ));
            }
            let expr = t["expr"].as_str().unwrap_or("");
            if shows_one_number(p) && empty_when_quiet(expr) && !is_zero_when_quiet(p, expr) {
                f.push((
                    "zero-when-quiet",
                    format!(
                        "{at} {r}: reads \"No data\" when nothing fires; end the query with \
                         `or vector(0)`"
                    ),
                ));
            }
            if has_fallback(expr) && !is_zero_when_quiet(p, expr) {
                f.push((
                    "no-fallback",
                    format!(
                        "{at} {r}: a fallback series hides a renamed or missing metric (only a \
                         single number over {EMPTY_WHEN_QUIET:?} may end in `or vector(0)`)"
                    ),
                ));
            }
        }
    }

    // annotations
    let annotations = d.annotations();
    if !annotations.iter().any(|a| {
        a["enable"] == json!(true)
            && a["expr"]
                .as_str()
                .is_some_and(|e| e.contains("spikewatch_alerts_active"))
    }) {
        f.push((
            "alert-annotations",
            "no enabled annotation of spikewatch alerts".into(),
        ));
    }
    for a in &annotations {
        if !is_our_datasource(&a["datasource"]) {
            f.push((
                "panel-datasource",
                format!(
                    "annotation {}: datasource is not ${{datasource}}",
                    a["name"]
                ),
            ));
        }
    }

    // queries
    let defined: BTreeSet<String> = vars
        .iter()
        .filter_map(|v| v["name"].as_str().map(str::to_string))
        .chain(GRAFANA_BUILTINS.iter().map(|s| s.to_string()))
        .collect();
    for q in d.queries() {
        for name in variable_refs(&q.expr) {
            if !defined.contains(&name) {
                f.push((
                    "variables-defined",
                    format!("{q}: ${name} is not a dashboard variable"),
                ));
            }
        }
        if q.kind == QueryKind::Variable {
            continue;
        }
        for window in range_selectors(&q.expr) {
            if window != "$__rate_interval" {
                f.push((
                    "rate-interval",
                    format!("{q}: range [{window}], use [$__rate_interval]"),
                ));
            }
        }
        // Panel targets are checked with their panel, above.
        if q.kind != QueryKind::Panel && has_fallback(&q.expr) {
            f.push((
                "no-fallback",
                format!("{q}: a fallback series hides a renamed or missing metric"),
            ));
        }
    }
    f
}

/// The contents of every `[...]` range selector outside label matchers and strings.
fn range_selectors(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut in_braces, mut in_string) = (false, false);
    for (i, c) in expr.char_indices() {
        match c {
            '"' => in_string = !in_string,
            '{' if !in_string => in_braces = true,
            '}' if !in_string => in_braces = false,
            '[' if !in_string && !in_braces => {
                if let Some(end) = expr[i..].find(']') {
                    out.push(expr[i + 1..i + end].trim().to_string());
                }
            }
            _ => {}
        }
    }
    out
}

#[test]
fn dashboards_pass_the_lint_rules() {
    let dashboards = load_dashboards();
    let mut problems = Vec::new();
    let mut uids = BTreeSet::new();
    for d in &dashboards {
        if !uids.insert(d.uid().to_string()) {
            problems.push(format!(
                "{}: uid {} used by another dashboard",
                d.file,
                d.uid()
            ));
        }
        for (rule, msg) in lint(d) {
            problems.push(format!("{} [{rule}] {msg}", d.file));
        }
    }
    assert!(
        problems.is_empty(),
        "dashboard lint:\n{}",
        problems.join("\n")
    );
}

/// Each lint rule flags the mistake it exists for: a real dashboard with one thing broken.
#[test]
fn each_lint_rule_catches_its_mistake() {
    fn first_expr_panel<'a>(j: &'a mut Value, needle: &str) -> &'a mut Value {
        j["panels"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|p| {
                p["targets"][0]["expr"]
                    .as_str()
                    .is_some_and(|e| e.contains(needle))
            })
            .unwrap()
    }
    type Mutate = fn(&mut Value);
    let cases: &[(&str, &str, Mutate)] = &[
        ("no datasource variable", "datasource-variable", |j| {
            j["templating"]["list"]
                .as_array_mut()
                .unwrap()
                .retain(|v| v["type"] != "datasource");
        }),
        ("panel without a unit", "panel-units", |j| {
            j["panels"][0]["fieldConfig"]["defaults"]
                .as_object_mut()
                .unwrap()
                .remove("unit");
        }),
        ("panel with a misspelt unit", "panel-units", |j| {
            j["panels"][0]["fieldConfig"]["defaults"]["unit"] = json!("percentage");
        }),
        ("panel without a description", "panel-descriptions", |j| {
            j["panels"][1]["description"] = json!("");
        }),
        ("fixed rate window", "rate-interval", |j| {
            let p = first_expr_panel(j, "$__rate_interval");
            let e = p["targets"][0]["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "5m");
            p["targets"][0]["expr"] = json!(e);
        }),
        ("two panels with one id", "unique-panel-ids", |j| {
            let id = j["panels"][0]["id"].clone();
            j["panels"][1]["id"] = id;
        }),
        ("panel pinned to one data source", "panel-datasource", |j| {
            j["panels"][0]["datasource"] = json!({"type": "prometheus", "uid": "prometheus"});
        }),
        ("undefined variable", "variables-defined", |j| {
            j["panels"][0]["targets"][0]["expr"] =
                json!("sum(spikewatch_alerts_active{cluster=\"$clustr\"})");
        }),
        ("zero fallback on a graph", "no-fallback", |j| {
            let p = j["panels"]
                .as_array_mut()
                .unwrap()
                .iter_mut()
                .find(|p| p["type"] == "timeseries")
                .unwrap();
            p["targets"][0]["expr"] = json!("sum(spikewatch_alerts_active) or vector(0)");
        }),
        (
            "zero fallback on a number that is never empty",
            "no-fallback",
            |j| {
                j["panels"][0]["type"] = json!("stat");
                j["panels"][0]["targets"][0]["expr"] =
                    json!("sum(spikewatch_tracked_series) or vector(0)");
            },
        ),
        (
            "alerts firing as a number without a zero",
            "zero-when-quiet",
            |j| {
                j["panels"][0]["type"] = json!("stat");
                j["panels"][0]["targets"][0]["expr"] = json!("sum(spikewatch_alerts_active)");
            },
        ),
        (
            "clusters alerting as a gauge without a zero",
            "zero-when-quiet",
            |j| {
                j["panels"][0]["type"] = json!("gauge");
                j["panels"][0]["targets"][0]["expr"] =
                    json!("count(count by (cluster) (spikewatch_alerts_active))");
            },
        ),
        (
            "a zero fallback that is not the last word",
            "zero-when-quiet",
            |j| {
                j["panels"][0]["type"] = json!("stat");
                j["panels"][0]["targets"][0]["expr"] =
                    json!("(sum(spikewatch_alerts_active) or vector(0)) * 2");
            },
        ),
        ("no alert annotations", "alert-annotations", |j| {
            j["annotations"]["list"]
                .as_array_mut()
                .unwrap()
                .retain(|a| a["builtIn"] == json!(1));
        }),
        ("panel wider than the grid", "grid", |j| {
            j["panels"][0]["gridPos"]["w"] = json!(30);
        }),
        ("panels on top of each other", "grid", |j| {
            let pos = j["panels"][0]["gridPos"].clone();
            j["panels"][1]["gridPos"] = pos;
        }),
        ("panel without queries", "targets", |j| {
            j["panels"][0]["targets"] = json!([]);
        }),
    ];
    for d in load_dashboards() {
        let clean: BTreeSet<&str> = lint(&d).iter().map(|(r, _)| *r).collect();
        for (name, rule, mutate) in cases {
            assert!(
                !clean.contains(rule),
                "{}: {rule} fires on the clean dashboard",
                d.file
            );
            let mut broken = d.clone();
            mutate(&mut broken.json);
            let found = lint(&broken);
            assert!(
                found.iter().any(|(r, _)| r == rule),
                "{} with {name}: rule {rule} did not fire; got {found:?}",
                d.file
            );
        }
    }
}

// ------------------------------------------------------------------------------------------
// Dashboards: queries

/// The single numbers over metrics that are empty when quiet (alerts firing, clusters
/// alerting), asked of promtool's evaluator over a fleet where nothing fires and over one with
/// alerts firing: they read 0, not "No data", then the count.
#[test]
fn single_numbers_read_zero_when_no_alert_fires() {
    let mut numbers: Vec<(String, String)> = Vec::new();
    for d in load_dashboards() {
        let mut values = BTreeMap::new();
        for v in d.variables() {
            if let Some(name) = v["name"].as_str() {
                values.insert(name.to_string(), "placeholder".to_string());
            }
        }
        let values = with_builtins(values);
        for p in d.panels() {
            if !shows_one_number(p) {
                continue;
            }
            for t in p["targets"].as_array().into_iter().flatten() {
                let expr = substitute(t["expr"].as_str().unwrap_or(""), &values);
                if !empty_when_quiet(&expr) || expr.contains("placeholder") {
                    continue;
                }
                let at = format!("{} panel \"{}\"", d.file, p["title"].as_str().unwrap_or(""));
                numbers.push((at, expr));
            }
        }
    }
    let titles: Vec<&str> = numbers.iter().map(|(at, _)| at.as_str()).collect();
    for want in ["\"Alerts firing\"", "\"Clusters alerting\""] {
        assert!(
            titles.iter().any(|t| t.ends_with(want)),
            "no single-number panel {want} over spikewatch_alerts_active: {titles:?}"
        );
    }
    // Three alerts on two clusters: "Alerts firing" reads 3 and "Clusters alerting" 2.
    let want_firing = |at: &str| if at.contains("Clusters") { 2.0 } else { 3.0 };
    let case =
        |name: &str, series: Value, queries: &[(String, String)], want: &dyn Fn(&str) -> f64| {
            json!({
                "name": name,
                "interval": "15s",
                "input_series": series,
                "promql_expr_test": queries.iter().map(|(at, expr)| json!({
                    "expr": expr,
                    "eval_time": "2m",
                    "exp_samples": [{"labels": "{}", "value": want(at)}],
                })).collect::<Vec<_>>(),
            })
        };
    let quiet_series = json!([
        {"series": "up{job=\"spikewatch\", instance=\"spikewatch:8686\"}", "values": "1x10"},
        {"series": "spikewatch_tracked_series{job=\"spikewatch\", instance=\"spikewatch:8686\"}", "values": "40x10"},
    ]);
    let alert = |cluster: &str, service: &str| {
        json!({
            "series": format!(
                "spikewatch_alerts_active{{job=\"spikewatch\", instance=\"spikewatch:8686\", \
                 kind=\"error_rate_spike\", cluster=\"{cluster}\", service=\"{service}\", \
                 severity=\"critical\"}}"
            ),
            "values": "1x10",
        })
    };
    let firing_series = json!([
        alert("prod-a", "checkout"),
        alert("prod-a", "search"),
        alert("prod-b", "checkout"),
    ]);
    let tests = json!({
        "rule_files": [],
        "evaluation_interval": "15s",
        "tests": [
            case("nothing firing", quiet_series, &numbers, &|_| 0.0),
            case("three alerts on two clusters", firing_series, &numbers, &want_firing),
        ],
    });
    let dir = scratch_dir("single-numbers");
    let file = dir.join("single-numbers.test.yml"); // JSON is YAML
    std::fs::write(&file, tests.to_string()).unwrap();
    let out = tool("promtool")
        .args(["test", "rules"])
        .arg(&file)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "a single-number panel does not read as it should:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every panel and annotation query, variables filled in, through promtool's PromQL parser
/// (as recording rules named after where the query lives).
#[test]
fn dashboard_queries_parse_as_promql() {
    let mut rules = Vec::new();
    for d in load_dashboards() {
        let mut values = BTreeMap::new();
        for v in d.variables() {
            if let Some(name) = v["name"].as_str() {
                values.insert(name.to_string(), "placeholder".to_string());
            }
        }
        let values = with_builtins(values);
        for (i, q) in d.queries().into_iter().enumerate() {
            let expr = substitute(&q.expr, &values);
            let expr = match q.kind {
                QueryKind::Variable => match support::parse_label_values(&expr) {
                    Some((Some(selector), _)) => selector,
                    Some((None, _)) => continue,
                    None => panic!("{q}: unsupported variable query {}", q.expr),
                },
                _ => expr,
            };
            let record: String = format!("dashboard:{}:{i}", q.dashboard)
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == ':' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            rules.push(json!({"record": record, "expr": expr, "labels": {"where": q.to_string()}}));
        }
    }
    let dir = scratch_dir("dashboard-queries");
    let file = dir.join("queries.yml"); // JSON is YAML
    std::fs::write(
        &file,
        json!({"groups": [{"name": "dashboards", "rules": rules}]}).to_string(),
    )
    .unwrap();
    let out = tool("promtool")
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "a dashboard query does not parse:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `name -> type` from the tables in docs/metrics.md.
fn documented_metrics() -> BTreeMap<String, String> {
    read("docs/metrics.md")
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let name = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            Some((name.to_string(), cells.get(2)?.to_string()))
        })
        .collect()
}

fn is_documented(name: &str, docs: &BTreeMap<String, String>) -> bool {
    docs.contains_key(name)
        || ["_bucket", "_sum", "_count"].iter().any(|suffix| {
            name.strip_suffix(suffix)
                .is_some_and(|base| docs.get(base).is_some_and(|t| t == "histogram"))
        })
}

#[test]
fn dashboards_and_rules_use_only_documented_metrics() {
    let docs = documented_metrics();
    assert!(docs.len() > 20, "docs/metrics.md tables not found");
    let mut texts: Vec<(String, String)> = load_dashboards()
        .into_iter()
        .flat_map(|d| d.queries().into_iter().map(|q| (q.to_string(), q.expr)))
        .collect();
    for dir in ["deploy/prometheus/rules", "deploy/prometheus/tests"] {
        for e in std::fs::read_dir(repo_root().join(dir)).unwrap() {
            let p = e.unwrap().path();
            texts.push((
                p.display().to_string(),
                std::fs::read_to_string(&p).unwrap(),
            ));
        }
    }
    let mut unknown = Vec::new();
    for (place, text) in texts {
        for name in metric_names(&text) {
            if !is_documented(&name, &docs) {
                unknown.push(format!("{place}: {name}"));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "metrics not in docs/metrics.md:\n{}",
        unknown.join("\n")
    );
}

/// What the issue asks each dashboard to show, as the metric a panel must query (and, where
/// it matters, the label it must break down by).
#[test]
fn dashboards_show_what_the_issue_asks_for() {
    let by_uid: BTreeMap<String, Dashboard> = load_dashboards()
        .into_iter()
        .map(|d| (d.uid().to_string(), d))
        .collect();
    let cases: &[(&str, &str, &str, Option<&str>)] = &[
        (
            "spikewatch-fleet",
            "global error ratio",
            "spikewatch_fleet_errors_total",
            None,
        ),
        (
            "spikewatch-fleet",
            "success rate",
            "spikewatch_series_success_per_second",
            None,
        ),
        (
            "spikewatch-fleet",
            "active alerts by kind",
            "spikewatch_alerts_active",
            Some("kind"),
        ),
        (
            "spikewatch-fleet",
            "clusters alerting",
            "spikewatch_alerts_active",
            Some("cluster"),
        ),
        (
            "spikewatch-fleet",
            "blast radius",
            "spikewatch_incident_affected_traffic_ratio",
            None,
        ),
        (
            "spikewatch-fleet",
            "blast radius",
            "spikewatch_incident_affected_clusters",
            None,
        ),
        (
            "spikewatch-cluster",
            "error ratio",
            "spikewatch_series_error_ratio",
            None,
        ),
        (
            "spikewatch-cluster",
            "its baseline band",
            "spikewatch_series_error_ratio_baseline",
            None,
        ),
        (
            "spikewatch-cluster",
            "retries per request",
            "spikewatch_series_retry_ratio",
            None,
        ),
        (
            "spikewatch-cluster",
            "DB pool utilisation",
            "spikewatch_series_db_pool_utilisation_ratio",
            None,
        ),
        (
            "spikewatch-cluster",
            "DB pool pending",
            "spikewatch_series_db_pool_pending",
            None,
        ),
        (
            "spikewatch-cluster",
            "p99 latency",
            "spikewatch_series_latency_p99_seconds",
            None,
        ),
        (
            "spikewatch-health",
            "samples in",
            "spikewatch_samples_total",
            None,
        ),
        (
            "spikewatch-health",
            "rejected by reason",
            "spikewatch_samples_rejected_total",
            Some("reason"),
        ),
        (
            "spikewatch-health",
            "consumer lag",
            "spikewatch_kafka_consumer_lag_messages",
            None,
        ),
        (
            "spikewatch-health",
            "event-time lag",
            "spikewatch_event_time_lag_seconds",
            None,
        ),
        (
            "spikewatch-health",
            "batch processing latency",
            "spikewatch_batch_processing_seconds_bucket",
            None,
        ),
        (
            "spikewatch-health",
            "detection delay",
            "spikewatch_detection_delay_seconds_bucket",
            Some("kind"),
        ),
        (
            "spikewatch-health",
            "tracked series",
            "spikewatch_tracked_series",
            None,
        ),
        (
            "spikewatch-health",
            "series left out by the cap",
            "spikewatch_series_dropped",
            None,
        ),
        (
            "spikewatch-health",
            "Alertmanager pushes per Alertmanager",
            "spikewatch_alertmanager_sends_total",
            Some("alertmanager"),
        ),
    ];
    for (uid, what, metric, by) in cases {
        let d = by_uid
            .get(*uid)
            .unwrap_or_else(|| panic!("no dashboard with uid {uid}"));
        let found = d.panels().into_iter().any(|p| {
            p["targets"].as_array().into_iter().flatten().any(|t| {
                let expr = t["expr"].as_str().unwrap_or("");
                metric_names(expr).iter().any(|m| m == metric)
                    && by.is_none_or(|label| {
                        let squashed: String =
                            expr.chars().filter(|c| !c.is_whitespace()).collect();
                        squashed.contains(&format!("by({label}"))
                            || squashed.contains(&format!(",{label})"))
                            || squashed.contains(&format!(",{label},"))
                    })
            })
        });
        assert!(
            found,
            "{uid}: no panel shows {what} ({metric}{})",
            by.map(|b| format!(" by {b}")).unwrap_or_default()
        );
    }
    // The drill-down shows one series: every query filters on both of its variables.
    let drill = &by_uid["spikewatch-cluster"];
    for name in ["cluster", "service"] {
        assert!(
            drill
                .variables()
                .iter()
                .any(|v| v["name"] == name && v["type"] == "query"),
            "the drill-down has no ${name} variable"
        );
    }
    for q in drill.queries() {
        if q.kind == QueryKind::Variable {
            continue;
        }
        let refs = variable_refs(&q.expr);
        assert!(
            refs.iter().any(|r| r == "cluster") && refs.iter().any(|r| r == "service"),
            "{q}: the drill-down query does not filter on $cluster and $service"
        );
    }
}
