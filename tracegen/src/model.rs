//! The building blocks every trace is made of: series with a normal behaviour, per-instant
//! effects that a scenario lays on top of them, change events, label windows, and the
//! sampler that turns all of that into contract samples.

use std::collections::BTreeMap;
use std::f64::consts::PI;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Binomial, Distribution, Poisson, StandardNormal};
use serde::Serialize;

use crate::Error;

// ---------------------------------------------------------------------------------------------
// Time
// ---------------------------------------------------------------------------------------------

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
const fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Epoch seconds of a UTC wall-clock time.
pub(crate) const fn utc(y: i64, mo: i64, d: i64, h: i64, mi: i64, s: i64) -> i64 {
    days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s
}

/// RFC 3339 UTC with a `Z`, whole seconds.
pub(crate) fn rfc3339(secs: i64) -> Result<String, Error> {
    let dt = chrono::DateTime::<chrono::Utc>::from_timestamp(secs, 0).ok_or(Error::Time(secs))?;
    Ok(dt.format("%Y-%m-%dT%H:%M:%SZ").to_string())
}

// ---------------------------------------------------------------------------------------------
// Small math helpers for effect shapes
// ---------------------------------------------------------------------------------------------

/// Linear ramp from 0 at `t0` to 1 at `t0 + dur`, clamped.
pub(crate) fn ramp(t: f64, t0: f64, dur: f64) -> f64 {
    if dur <= 0.0 {
        return if t >= t0 { 1.0 } else { 0.0 };
    }
    ((t - t0) / dur).clamp(0.0, 1.0)
}

/// Smoothstep version of [`ramp`].
pub(crate) fn smooth(t: f64, t0: f64, dur: f64) -> f64 {
    let x = ramp(t, t0, dur);
    x * x * (3.0 - 2.0 * x)
}

// ---------------------------------------------------------------------------------------------
// Stable hashing (never std's DefaultHasher: its output is not promised to be stable)
// ---------------------------------------------------------------------------------------------

/// 64-bit FNV-1a.
pub(crate) fn fnv1a64(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// splitmix64 finaliser: spreads a hash into well-mixed bits.
fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A deterministic number in [0, 1) derived from a key and a salt (series parameters).
pub(crate) fn unit(key: &str, salt: u64) -> f64 {
    let v = mix64(fnv1a64(key) ^ mix64(salt));
    (v >> 11) as f64 / (1u64 << 53) as f64
}

/// Seed of a trace (stable across runs and platforms).
pub(crate) fn trace_seed(name: &str) -> u64 {
    mix64(fnv1a64(name))
}

/// Independent RNG stream for one purpose inside one trace.
pub(crate) fn stream(trace: &str, purpose: &str) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(trace_seed(trace) ^ mix64(fnv1a64(purpose)))
}

// ---------------------------------------------------------------------------------------------
// Samplers (errors instead of panics)
// ---------------------------------------------------------------------------------------------

pub(crate) fn normal(rng: &mut ChaCha8Rng) -> f64 {
    rng.sample::<f64, _>(StandardNormal)
}

pub(crate) fn poisson(rng: &mut ChaCha8Rng, lambda: f64) -> Result<u64, Error> {
    if !lambda.is_finite() || lambda < 0.0 {
        return Err(Error::Distribution(format!("poisson lambda {lambda}")));
    }
    if lambda < 1e-9 {
        return Ok(0);
    }
    let d =
        Poisson::new(lambda).map_err(|e| Error::Distribution(format!("poisson({lambda}): {e}")))?;
    let x: f64 = d.sample(rng);
    Ok(x.max(0.0).round() as u64)
}

pub(crate) fn binomial(rng: &mut ChaCha8Rng, n: u64, p: f64) -> Result<u64, Error> {
    if n == 0 || p <= 0.0 {
        return Ok(0);
    }
    if p >= 1.0 {
        return Ok(n);
    }
    let d =
        Binomial::new(n, p).map_err(|e| Error::Distribution(format!("binomial({n}, {p}): {e}")))?;
    Ok(d.sample(rng).min(n))
}

// ---------------------------------------------------------------------------------------------
// Series
// ---------------------------------------------------------------------------------------------

/// Code mix of the background errors every service has.
pub(crate) const NORMAL_CODES: &[(&str, f64)] =
    &[("500", 0.35), ("502", 0.15), ("503", 0.35), ("504", 0.15)];

/// One (cluster, service) series and its normal behaviour.
#[derive(Debug, Clone)]
pub(crate) struct Series {
    pub cluster: String,
    pub service: String,
    pub region: String,
    /// Mean requests per second at the diurnal mean.
    pub rate: f64,
    /// Diurnal amplitude (load swings between 1-amp and 1+amp).
    pub amp: f64,
    /// Hour (UTC, fractional) of the diurnal peak.
    pub peak_h: f64,
    /// Baseline error ratio.
    pub err: f64,
    /// Baseline retry ratio.
    pub retry: f64,
    /// Median latency at mean load, ms.
    pub p50: f64,
    /// Lognormal sigma of the latency distribution (p99 = p50 * exp(2.326 sigma)).
    pub sigma: f64,
    /// DB pool: (pool size, utilisation at mean load).
    pub db: Option<(u32, f64)>,
    /// Code mix of baseline errors.
    pub codes: &'static [(&'static str, f64)],
    /// Stationary sd of a slow logit-space wander of the error ratio (0 = plain binomial).
    pub wander: f64,
    /// Stationary sd of the slow multiplicative traffic noise.
    pub traffic_noise: f64,
}

/// AWS-style region of a cluster name like `prod-use1-a`.
pub(crate) fn region_of(cluster: &str) -> &'static str {
    let code = cluster.split('-').nth(1).unwrap_or("");
    match code {
        "use1" => "us-east-1",
        "use2" => "us-east-2",
        "usw2" => "us-west-2",
        "euw1" => "eu-west-1",
        "euc1" => "eu-central-1",
        "apne1" => "ap-northeast-1",
        "apse2" => "ap-southeast-2",
        _ => "us-east-1",
    }
}

/// Typical hour (UTC) of the daily peak of a region.
fn region_peak(region: &str) -> f64 {
    match region {
        "us-east-1" | "us-east-2" => 17.5,
        "us-west-2" => 20.0,
        "eu-west-1" => 13.5,
        "eu-central-1" => 12.5,
        "ap-northeast-1" => 4.5,
        "ap-southeast-2" => 2.5,
        _ => 17.0,
    }
}

/// (p50 ms, sigma) typical of a service.
fn service_latency(service: &str) -> (f64, f64) {
    match service {
        "conversation" | "chat" => (240.0, 0.62),
        "codex" => (310.0, 0.66),
        "assistants" => (280.0, 0.6),
        "api" => (160.0, 0.58),
        "web" => (120.0, 0.55),
        "app" => (130.0, 0.55),
        "auth" => (24.0, 0.5),
        "search" => (65.0, 0.52),
        "files" => (85.0, 0.6),
        "billing" => (55.0, 0.5),
        "embeddings" => (45.0, 0.48),
        "moderation" => (38.0, 0.47),
        _ => (90.0, 0.55),
    }
}

impl Series {
    /// A series with realistic, series-specific defaults derived from a stable hash of its key.
    pub(crate) fn new(cluster: &str, service: &str, rate: f64) -> Series {
        let key = format!("{cluster}/{service}");
        let region = region_of(cluster);
        let (p50, sigma) = service_latency(service);
        // Baseline error ratio log-uniform in [0.05%, 0.5%].
        let err = 0.0005 * 10f64.powf(unit(&key, 1));
        Series {
            cluster: cluster.to_string(),
            service: service.to_string(),
            region: region.to_string(),
            rate,
            amp: 0.22 + 0.28 * unit(&key, 2),
            peak_h: region_peak(region) + 2.0 * unit(&key, 3) - 1.0,
            err,
            retry: 0.007 + 0.006 * unit(&key, 4),
            p50: p50 * (0.85 + 0.3 * unit(&key, 5)),
            sigma: sigma * (0.92 + 0.16 * unit(&key, 6)),
            db: None,
            codes: NORMAL_CODES,
            wander: 0.0,
            traffic_noise: 0.025 + 0.02 * unit(&key, 7),
        }
    }

    pub(crate) fn db(mut self, max: u32, util: f64) -> Series {
        self.db = Some((max, util));
        self
    }

    pub(crate) fn err(mut self, err: f64) -> Series {
        self.err = err;
        self
    }

    pub(crate) fn codes(mut self, codes: &'static [(&'static str, f64)]) -> Series {
        self.codes = codes;
        self
    }

    pub(crate) fn wander(mut self, sd: f64) -> Series {
        self.wander = sd;
        self
    }

    pub(crate) fn amp(mut self, amp: f64) -> Series {
        self.amp = amp;
        self
    }

    /// Diurnal load factor at epoch second `t` (1.0 = daily mean).
    pub(crate) fn load(&self, t: f64) -> f64 {
        let h = t.rem_euclid(86_400.0) / 3600.0;
        1.0 + self.amp * (2.0 * PI * (h - self.peak_h) / 24.0).cos()
    }

    /// Expected requests per second at `t` without any effect.
    pub(crate) fn mean_rate(&self, t: f64) -> f64 {
        self.rate * self.load(t)
    }
}

// ---------------------------------------------------------------------------------------------
// Effects
// ---------------------------------------------------------------------------------------------

/// What a scenario does to one series at one instant. `Effect::NORMAL` changes nothing.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Effect {
    /// Multiplier on the request rate.
    pub traffic: f64,
    /// Extra failure probability laid on top of the baseline errors.
    pub fail: f64,
    /// Status code mix of the extra failures.
    pub fail_codes: &'static [(&'static str, f64)],
    /// Multiplier on the baseline retry ratio.
    pub retry_mult: f64,
    /// Absolute retry ratio added.
    pub retry_add: f64,
    /// Multipliers on p50 and p99 latency.
    pub p50: f64,
    pub p99: f64,
    /// Multiplier on DB connection demand.
    pub pool_demand: f64,
    /// Pool size override.
    pub pool_max: Option<u32>,
    /// The series' telemetry is dead: no sample is emitted.
    pub silent: bool,
}

pub(crate) const C503: &[(&str, f64)] = &[("503", 1.0)];

impl Effect {
    pub(crate) const NORMAL: Effect = Effect {
        traffic: 1.0,
        fail: 0.0,
        fail_codes: C503,
        retry_mult: 1.0,
        retry_add: 0.0,
        p50: 1.0,
        p99: 1.0,
        pool_demand: 1.0,
        pool_max: None,
        silent: false,
    };

    /// True when the effect would make the series look abnormal to a detector (used by tests to
    /// check that labels cover every abnormal stretch). Pure traffic increases are a healthy
    /// surge and do not count; traffic decreases do.
    #[cfg(test)]
    pub(crate) fn is_abnormal(&self) -> bool {
        self.fail > 0.003
            || self.silent
            || self.traffic < 0.7
            || self.retry_mult > 1.5
            || self.retry_add > 0.005
            || self.p99 > 1.25
            || self.p50 > 1.25
            || self.pool_demand > 1.3
    }
}

/// The scenario of a trace: effect of series `idx` at epoch second `t`.
pub(crate) type EffectFn = Box<dyn Fn(&[Series], usize, f64) -> Effect>;

// ---------------------------------------------------------------------------------------------
// Change events and label windows
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub(crate) struct Change {
    pub ts: i64,
    pub kind: &'static str,
    pub service: String,
    pub clusters: Vec<String>,
    pub id: String,
    pub description: String,
}

pub(crate) fn change(
    ts: i64,
    kind: &'static str,
    service: &str,
    clusters: &[&str],
    id: &str,
    description: &str,
) -> Change {
    Change {
        ts,
        kind,
        service: service.to_string(),
        clusters: clusters.iter().map(|c| (*c).to_string()).collect(),
        id: id.to_string(),
        description: description.to_string(),
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Window {
    pub kinds: Vec<&'static str>,
    pub service: String,
    pub clusters: Vec<String>,
    pub onset: i64,
    pub end: i64,
    pub max_delay_s: i64,
    pub trigger: Option<String>,
}

pub(crate) fn window(
    kinds: &[&'static str],
    service: &str,
    clusters: &[&str],
    onset: i64,
    end: i64,
    max_delay_s: i64,
    trigger: Option<&str>,
) -> Window {
    Window {
        kinds: kinds.to_vec(),
        service: service.to_string(),
        clusters: clusters.iter().map(|c| (*c).to_string()).collect(),
        onset,
        end,
        max_delay_s,
        trigger: trigger.map(str::to_string),
    }
}

#[derive(Serialize)]
pub(crate) struct ChangeOut<'a> {
    ts: String,
    kind: &'a str,
    service: &'a str,
    clusters: &'a [String],
    id: &'a str,
    description: &'a str,
}

impl Change {
    pub(crate) fn to_json(&self) -> Result<String, Error> {
        let out = ChangeOut {
            ts: rfc3339(self.ts)?,
            kind: self.kind,
            service: &self.service,
            clusters: &self.clusters,
            id: &self.id,
            description: &self.description,
        };
        Ok(serde_json::to_string(&out)?)
    }
}

#[derive(Serialize)]
pub(crate) struct WindowOut<'a> {
    kinds: &'a [&'static str],
    service: &'a str,
    clusters: &'a [String],
    onset: String,
    end: String,
    max_delay_s: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    trigger: Option<&'a str>,
}

#[derive(Serialize)]
pub(crate) struct LabelsOut<'a> {
    trace: &'a str,
    interval_s: i64,
    windows: Vec<WindowOut<'a>>,
}

pub(crate) fn labels_json(
    trace: &str,
    interval_s: i64,
    windows: &[Window],
) -> Result<String, Error> {
    let mut out = LabelsOut {
        trace,
        interval_s,
        windows: Vec::with_capacity(windows.len()),
    };
    for w in windows {
        out.windows.push(WindowOut {
            kinds: &w.kinds,
            service: &w.service,
            clusters: &w.clusters,
            onset: rfc3339(w.onset)?,
            end: rfc3339(w.end)?,
            max_delay_s: w.max_delay_s,
            trigger: w.trigger.as_deref(),
        });
    }
    let mut s = serde_json::to_string_pretty(&out)?;
    s.push('\n');
    Ok(s)
}

// ---------------------------------------------------------------------------------------------
// Trace definition and sample generation
// ---------------------------------------------------------------------------------------------

/// How samples reach the file.
#[derive(Debug, Clone)]
pub(crate) enum Delivery {
    /// Sorted by (ts, series).
    InOrder,
    /// In arrival order: one cluster's samples arrive late (up to `max_late_s`), and some
    /// samples of the listed clusters are written twice.
    LateAndDuplicate {
        late_cluster: &'static str,
        max_late_s: f64,
        dup_clusters: &'static [(&'static str, f64)],
    },
}

pub(crate) struct Trace {
    pub name: &'static str,
    pub interval: i64,
    /// Start of the first interval: the first sample has ts `start + interval`.
    pub start: i64,
    /// ts of the last sample.
    pub end: i64,
    pub series: Vec<Series>,
    pub changes: Vec<Change>,
    pub windows: Vec<Window>,
    pub readme: String,
    pub effect: EffectFn,
    pub delivery: Delivery,
}

/// One generated sample with its position.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub ts: i64,
    pub series: usize,
    pub line: String,
}

#[derive(Serialize)]
struct SampleOut<'a> {
    ts: String,
    cluster: &'a str,
    service: &'a str,
    region: &'a str,
    interval_s: i64,
    requests: u64,
    errors: u64,
    retries: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_p50_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_p99_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    db_pool_active: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    db_pool_max: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    db_pool_pending: Option<u64>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    status: BTreeMap<&'static str, u64>,
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Split `n` over a code mix with sequential binomials, adding into `into`.
fn split_codes(
    rng: &mut ChaCha8Rng,
    n: u64,
    codes: &'static [(&'static str, f64)],
    into: &mut BTreeMap<&'static str, u64>,
) -> Result<(), Error> {
    if n == 0 || codes.is_empty() {
        return Ok(());
    }
    let mut remaining = n;
    let mut weight_left: f64 = codes.iter().map(|c| c.1).sum();
    for (i, (code, w)) in codes.iter().enumerate() {
        let k = if i + 1 == codes.len() || weight_left <= 0.0 {
            remaining
        } else {
            binomial(rng, remaining, (w / weight_left).clamp(0.0, 1.0))?
        };
        if k > 0 {
            *into.entry(code).or_insert(0) += k;
        }
        remaining -= k;
        weight_left -= w;
        if remaining == 0 {
            break;
        }
    }
    Ok(())
}

/// Interval-averaged effect (traffic-weighted where it matters) plus the end-of-interval state.
struct Averaged {
    traffic_load: f64,
    load: f64,
    fail: f64,
    fail_codes: &'static [(&'static str, f64)],
    retry_mult: f64,
    retry_add: f64,
    p50: f64,
    p99: f64,
    end: Effect,
}

const SUBSTEPS: usize = 10;

fn average(trace: &Trace, idx: usize, ts: i64) -> Averaged {
    let s = &trace.series[idx];
    let a = (ts - trace.interval) as f64;
    let dt = trace.interval as f64 / SUBSTEPS as f64;
    let (mut w_sum, mut l_sum, mut fail, mut rm, mut ra, mut p50, mut p99) =
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    let mut codes: &'static [(&'static str, f64)] = C503;
    let mut max_fail = -1.0;
    for j in 0..SUBSTEPS {
        let t = a + (j as f64 + 0.5) * dt;
        let e = (trace.effect)(&trace.series, idx, t);
        let l = s.load(t);
        let w = (e.traffic * l).max(1e-9);
        w_sum += w;
        l_sum += l;
        fail += w * e.fail;
        rm += w * e.retry_mult;
        ra += w * e.retry_add;
        p50 += w * e.p50;
        p99 += w * e.p99;
        if e.fail > max_fail {
            max_fail = e.fail;
            codes = e.fail_codes;
        }
    }
    let n = SUBSTEPS as f64;
    Averaged {
        traffic_load: w_sum / n,
        load: l_sum / n,
        fail: fail / w_sum,
        fail_codes: codes,
        retry_mult: rm / w_sum,
        retry_add: ra / w_sum,
        p50: p50 / w_sum,
        p99: p99 / w_sum,
        end: (trace.effect)(&trace.series, idx, ts as f64),
    }
}

/// Generate every sample of one series, in ts order.
fn generate_series(trace: &Trace, idx: usize) -> Result<Vec<Row>, Error> {
    let s = &trace.series[idx];
    let mut rng = stream(trace.name, &format!("series/{}/{}", s.cluster, s.service));
    let iv = trace.interval as f64;
    // AR(1) processes: traffic (5 min memory) and error-ratio wander (30 min memory).
    let phi_t = (-iv / 300.0).exp();
    let phi_w = (-iv / 1800.0).exp();
    let mut x_t = s.traffic_noise * normal(&mut rng);
    let mut x_w = s.wander * normal(&mut rng);
    let base_logit = (s.err / (1.0 - s.err)).ln();
    let p99_ratio = (2.326 * s.sigma).exp();
    let mut rows = Vec::new();
    let mut ts = trace.start + trace.interval;
    while ts <= trace.end {
        // Advance noise even for silent samples so the stream does not depend on silence.
        x_t = phi_t * x_t + s.traffic_noise * (1.0 - phi_t * phi_t).sqrt() * normal(&mut rng);
        x_w = phi_w * x_w + s.wander * (1.0 - phi_w * phi_w).sqrt() * normal(&mut rng);
        let z50 = normal(&mut rng);
        let z99 = normal(&mut rng);
        let zpool = normal(&mut rng);
        let zpend = normal(&mut rng);
        let zfail = normal(&mut rng);
        let av = average(trace, idx, ts);
        if av.end.silent {
            ts += trace.interval;
            continue;
        }
        let lambda = s.rate * iv * av.traffic_load * x_t.exp();
        let requests = poisson(&mut rng, lambda)?;

        // Errors: incident failures first, then the baseline on the rest.
        let fail_p = if av.fail > 0.0 {
            (av.fail * (0.05 * zfail).exp()).clamp(0.0, 0.995)
        } else {
            0.0
        };
        let e_fail = binomial(&mut rng, requests, fail_p)?;
        let base_p = if s.wander > 0.0 {
            let z = base_logit + x_w;
            1.0 / (1.0 + (-z).exp())
        } else {
            s.err
        };
        let e_base = binomial(&mut rng, requests - e_fail, base_p)?;
        let errors = e_fail + e_base;
        let mut status = BTreeMap::new();
        split_codes(&mut rng, e_fail, av.fail_codes, &mut status)?;
        split_codes(&mut rng, e_base, s.codes, &mut status)?;

        let retry_p = (s.retry * av.retry_mult + av.retry_add).clamp(0.0, 0.95);
        let retries = binomial(&mut rng, requests, retry_p)?;

        let (p50, p99) = if requests > 0 {
            let n = requests as f64;
            let sd50 = 0.015 + 0.25 / n.sqrt();
            let sd99 = 0.03 + 0.8 / n.sqrt();
            let p50 = s.p50 * (1.0 + 0.08 * (av.load - 1.0)) * (sd50 * z50).exp() * av.p50;
            let p99 =
                s.p50 * p99_ratio * (1.0 + 0.12 * (av.load - 1.0)) * (sd99 * z99).exp() * av.p99;
            let p99 = p99.max(p50 * 1.05);
            (Some(round1(p50)), Some(round1(p99)))
        } else {
            (None, None)
        };

        let (active, max, pending) = match s.db {
            Some((base_max, util)) => {
                let relative_load = av.traffic_load * x_t.exp();
                let demand = f64::from(base_max)
                    * util
                    * (1.0 + 0.4 * (relative_load - 1.0)).max(0.05)
                    * av.end.pool_demand
                    * (0.04 * zpool).exp();
                let max = av.end.pool_max.unwrap_or(base_max);
                let maxf = f64::from(max);
                let active = demand.min(maxf).max(0.0).round() as u64;
                let pending = if demand > maxf {
                    ((demand - maxf) * (0.12 * zpend).exp()).round() as u64
                } else {
                    0
                };
                (Some(active), Some(u64::from(max)), Some(pending))
            }
            None => (None, None, None),
        };

        let out = SampleOut {
            ts: rfc3339(ts)?,
            cluster: &s.cluster,
            service: &s.service,
            region: &s.region,
            interval_s: trace.interval,
            requests,
            errors,
            retries,
            latency_p50_ms: p50,
            latency_p99_ms: p99,
            db_pool_active: active,
            db_pool_max: max,
            db_pool_pending: pending,
            status,
        };
        rows.push(Row {
            ts,
            series: idx,
            line: serde_json::to_string(&out)?,
        });
        ts += trace.interval;
    }
    Ok(rows)
}

/// Every sample line of a trace, in file order.
pub(crate) fn generate(trace: &Trace) -> Result<Vec<String>, Error> {
    let mut rows = Vec::new();
    for idx in 0..trace.series.len() {
        rows.extend(generate_series(trace, idx)?);
    }
    match &trace.delivery {
        Delivery::InOrder => {
            rows.sort_by_key(|r| (r.ts, r.series));
            Ok(rows.into_iter().map(|r| r.line).collect())
        }
        Delivery::LateAndDuplicate {
            late_cluster,
            max_late_s,
            dup_clusters,
        } => Ok(arrival_order(
            trace,
            rows,
            late_cluster,
            *max_late_s,
            dup_clusters,
        )),
    }
}

/// Reorder rows into arrival order for a trace with late and duplicated samples.
///
/// Normal series arrive 0.2-0.9 s after their ts (so they stay in ts order). The late cluster's
/// collector usually lags 1-4 s, and now and then stalls: everything produced during a stall is
/// buffered and flushed, shuffled, when the stall ends, so those samples arrive up to
/// `max_late_s` late and out of order even within one series. Duplicates are exact copies that
/// arrive again 0.5-20 s after the first copy.
fn arrival_order(
    trace: &Trace,
    rows: Vec<Row>,
    late_cluster: &str,
    max_late_s: f64,
    dup_clusters: &[(&str, f64)],
) -> Vec<String> {
    let mut rng = stream(trace.name, "delivery");
    // Stalls of the late collector: (start, end) in epoch ms, each at most max_late_s long.
    let mut stalls: Vec<(i64, i64)> = Vec::new();
    let mut t = trace.start * 1000 + 90_000;
    let end_ms = trace.end * 1000;
    while t < end_ms {
        let gap = 120_000 + (rng.random::<f64>() * 420_000.0) as i64;
        let start = t + gap;
        let len = 8_000 + (rng.random::<f64>() * (max_late_s - 10.0) * 1000.0) as i64;
        if start + len < end_ms {
            stalls.push((start, start + len));
        }
        t = start + len;
    }
    let mut keyed: Vec<(i64, usize, i64, String)> =
        Vec::with_capacity(rows.len() + rows.len() / 50);
    for r in rows {
        let s = &trace.series[r.series];
        let ts_ms = r.ts * 1000;
        let arrival = if s.cluster == late_cluster {
            match stalls.iter().find(|(a, b)| ts_ms >= *a && ts_ms < *b) {
                Some((_, b)) => *b + (rng.random::<f64>() * 1500.0) as i64,
                None => ts_ms + 1000 + (rng.random::<f64>() * 3000.0) as i64,
            }
        } else {
            ts_ms + 200 + (rng.random::<f64>() * 700.0) as i64
        };
        let dup_p = dup_clusters
            .iter()
            .find(|(c, _)| *c == s.cluster)
            .map_or(0.0, |(_, p)| *p);
        if dup_p > 0.0 && rng.random::<f64>() < dup_p {
            let again = arrival + 500 + (rng.random::<f64>() * 19_500.0) as i64;
            keyed.push((again, r.series, r.ts, r.line.clone()));
        }
        keyed.push((arrival, r.series, r.ts, r.line));
    }
    keyed.sort_by_key(|a| (a.0, a.1, a.2));
    keyed.into_iter().map(|k| k.3).collect()
}
