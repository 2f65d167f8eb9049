//! An owned sample row and its contract JSON form, for tests, generators and tools.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One sample with every field of the native format (CONTRACT section 1), `ts` as UTC epoch
/// milliseconds and the interval in milliseconds, as the decoder stores them.
///
/// Nothing is checked on construction: a `Sample` may hold values the decoder rejects, which
/// is what rejection tests need.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Sample {
    /// End of the interval, epoch ms UTC.
    pub ts_ms: i64,
    pub cluster: String,
    pub service: String,
    pub region: Option<String>,
    pub interval_ms: u32,
    pub requests: u64,
    pub errors: u64,
    pub retries: Option<u64>,
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub db_pool_active: Option<u32>,
    pub db_pool_max: Option<u32>,
    pub db_pool_pending: Option<u32>,
    /// Errors by status code; omitted from the JSON when empty.
    pub status: BTreeMap<String, u64>,
}

impl Sample {
    /// A sample with the required fields, a 10 s interval and nothing optional.
    pub fn new(
        ts_ms: i64,
        cluster: impl Into<String>,
        service: impl Into<String>,
        requests: u64,
        errors: u64,
    ) -> Self {
        Self {
            ts_ms,
            cluster: cluster.into(),
            service: service.into(),
            interval_ms: super::DEFAULT_INTERVAL_MS,
            requests,
            errors,
            ..Self::default()
        }
    }

    /// The sample as one line of contract JSON (no trailing newline).
    ///
    /// `ts` is written as RFC 3339 UTC (`…Z`, with milliseconds only when not on a whole second),
    /// or as integer epoch ms when outside the years 0000–9999. `interval_s` is written as an
    /// integer when whole, else as a decimal that reads back to the same millisecond. Absent
    /// optional fields are omitted; a non-finite latency (not representable in JSON) is written
    /// as `null`.
    pub fn to_json_line(&self) -> String {
        let mut o = String::with_capacity(320);
        o.push_str("{\"ts\":");
        let mut ts = String::with_capacity(24);
        if crate::time::write_rfc3339_ms(&mut ts, self.ts_ms) {
            o.push('"');
            o.push_str(&ts);
            o.push('"');
        } else {
            let _ = write!(o, "{}", self.ts_ms);
        }
        o.push_str(",\"cluster\":");
        push_json_str(&mut o, &self.cluster);
        o.push_str(",\"service\":");
        push_json_str(&mut o, &self.service);
        if let Some(region) = &self.region {
            o.push_str(",\"region\":");
            push_json_str(&mut o, region);
        }
        o.push_str(",\"interval_s\":");
        if self.interval_ms % 1000 == 0 {
            let _ = write!(o, "{}", self.interval_ms / 1000);
        } else {
            push_f64(&mut o, f64::from(self.interval_ms) / 1000.0);
        }
        let _ = write!(
            o,
            ",\"requests\":{},\"errors\":{}",
            self.requests, self.errors
        );
        if let Some(v) = self.retries {
            let _ = write!(o, ",\"retries\":{v}");
        }
        for (name, v) in [
            ("latency_p50_ms", self.latency_p50_ms),
            ("latency_p99_ms", self.latency_p99_ms),
        ] {
            if let Some(v) = v {
                let _ = write!(o, ",\"{name}\":");
                push_f64(&mut o, v);
            }
        }
        for (name, v) in [
            ("db_pool_active", self.db_pool_active),
            ("db_pool_max", self.db_pool_max),
            ("db_pool_pending", self.db_pool_pending),
        ] {
            if let Some(v) = v {
                let _ = write!(o, ",\"{name}\":{v}");
            }
        }
        if !self.status.is_empty() {
            o.push_str(",\"status\":{");
            for (i, (code, n)) in self.status.iter().enumerate() {
                if i > 0 {
                    o.push(',');
                }
                push_json_str(&mut o, code);
                let _ = write!(o, ":{n}");
            }
            o.push('}');
        }
        o.push('}');
        o
    }
}

/// Shortest round-tripping form (serde_json's), `null` for non-finite values.
fn push_f64(o: &mut String, x: f64) {
    match serde_json::Number::from_f64(x) {
        Some(n) => {
            let _ = write!(o, "{n}");
        }
        None => o.push_str("null"),
    }
}

fn push_json_str(o: &mut String, s: &str) {
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", u32::from(c));
            }
            c => o.push(c),
        }
    }
    o.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_example_shape() {
        let mut s = Sample::new(
            1_770_931_210_000,
            "prod-use1-a",
            "conversation",
            12000,
            4200,
        );
        s.region = Some("us-east-1".into());
        s.retries = Some(1800);
        s.latency_p50_ms = Some(85.0);
        s.latency_p99_ms = Some(950.0);
        s.db_pool_active = Some(180);
        s.db_pool_max = Some(200);
        s.db_pool_pending = Some(35);
        s.status = [("503".to_owned(), 4000), ("403".to_owned(), 200)].into();
        assert_eq!(
            s.to_json_line(),
            r#"{"ts":"2026-02-12T21:20:10Z","cluster":"prod-use1-a","service":"conversation","region":"us-east-1","interval_s":10,"requests":12000,"errors":4200,"retries":1800,"latency_p50_ms":85.0,"latency_p99_ms":950.0,"db_pool_active":180,"db_pool_max":200,"db_pool_pending":35,"status":{"403":200,"503":4000}}"#
        );
    }

    #[test]
    fn escapes_and_odd_values() {
        let mut s = Sample::new(i64::MAX, "a\"b\\c\n\u{1}", "é", 1, 0);
        s.interval_ms = 1500;
        s.latency_p99_ms = Some(f64::NAN);
        let line = s.to_json_line();
        assert_eq!(
            line,
            format!(
                r#"{{"ts":{},"cluster":"a\"b\\c\n\u0001","service":"é","interval_s":1.5,"requests":1,"errors":0,"latency_p99_ms":null}}"#,
                i64::MAX
            )
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["cluster"], "a\"b\\c\n\u{1}");
    }
}
