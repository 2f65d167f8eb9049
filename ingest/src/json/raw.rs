//! The first stage of decoding: JSON text to a borrowed, untyped view of the known fields.
//!
//! Nothing here judges values. Every known field is captured as a [`Raw`] scalar whatever its
//! JSON type, so the second stage (`validate`) can say precisely what was wrong with it
//! (`wrong_type` vs `negative_count` vs `invalid_value`) instead of parsing serde's error text.
//! Strings borrow from the message unless they contain escapes, unknown fields are skipped
//! without being materialised, and the field being read is recorded in [`Ctx`] so that a
//! failure deep inside the parser (a number overflowing to infinity) can still name it.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserializer;

/// A known field of the native sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldId {
    Ts,
    Cluster,
    Service,
    Region,
    IntervalS,
    Requests,
    Errors,
    Retries,
    LatencyP50,
    LatencyP99,
    PoolActive,
    PoolMax,
    PoolPending,
    Status,
}

impl FieldId {
    pub(crate) const fn name(self) -> &'static str {
        match self {
            FieldId::Ts => "ts",
            FieldId::Cluster => "cluster",
            FieldId::Service => "service",
            FieldId::Region => "region",
            FieldId::IntervalS => "interval_s",
            FieldId::Requests => "requests",
            FieldId::Errors => "errors",
            FieldId::Retries => "retries",
            FieldId::LatencyP50 => "latency_p50_ms",
            FieldId::LatencyP99 => "latency_p99_ms",
            FieldId::PoolActive => "db_pool_active",
            FieldId::PoolMax => "db_pool_max",
            FieldId::PoolPending => "db_pool_pending",
            FieldId::Status => "status",
        }
    }

    /// The field after this one in the contract's order.
    pub(super) const fn next(self) -> Option<Self> {
        Some(match self {
            FieldId::Ts => FieldId::Cluster,
            FieldId::Cluster => FieldId::Service,
            FieldId::Service => FieldId::Region,
            FieldId::Region => FieldId::IntervalS,
            FieldId::IntervalS => FieldId::Requests,
            FieldId::Requests => FieldId::Errors,
            FieldId::Errors => FieldId::Retries,
            FieldId::Retries => FieldId::LatencyP50,
            FieldId::LatencyP50 => FieldId::LatencyP99,
            FieldId::LatencyP99 => FieldId::PoolActive,
            FieldId::PoolActive => FieldId::PoolMax,
            FieldId::PoolMax => FieldId::PoolPending,
            FieldId::PoolPending => FieldId::Status,
            FieldId::Status => return None,
        })
    }

    pub(super) fn from_key(key: &str) -> Option<Self> {
        Some(match key {
            "ts" => FieldId::Ts,
            "cluster" => FieldId::Cluster,
            "service" => FieldId::Service,
            "region" => FieldId::Region,
            "interval_s" => FieldId::IntervalS,
            "requests" => FieldId::Requests,
            "errors" => FieldId::Errors,
            "retries" => FieldId::Retries,
            "latency_p50_ms" => FieldId::LatencyP50,
            "latency_p99_ms" => FieldId::LatencyP99,
            "db_pool_active" => FieldId::PoolActive,
            "db_pool_max" => FieldId::PoolMax,
            "db_pool_pending" => FieldId::PoolPending,
            "status" => FieldId::Status,
            _ => return None,
        })
    }
}

/// Any JSON value, reduced to what validation needs. Containers are consumed, not kept.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Raw<'a> {
    Null,
    Bool,
    /// Non-negative integer that fits u64.
    U64(u64),
    /// Negative integer that fits i64.
    I64(i64),
    /// Any other number (fractional, exponent, or an integer too large for 64 bits).
    F64(f64),
    Str(Cow<'a, str>),
    Array,
    Object,
}

impl Raw<'_> {
    /// The JSON type, for "expected X, found Y" details.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Raw::Null => "null",
            Raw::Bool => "a boolean",
            Raw::U64(_) | Raw::I64(_) | Raw::F64(_) => "a number",
            Raw::Str(_) => "a string",
            Raw::Array => "an array",
            Raw::Object => "an object",
        }
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Raw::Bool)
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(match u64::try_from(v) {
            Ok(u) => Raw::U64(u),
            Err(_) => Raw::I64(v),
        })
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Raw::U64(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Raw::F64(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Raw::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Raw::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Raw::Str(Cow::Owned(v)))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Raw::Null)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Raw::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Raw::Array)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Raw::Object)
    }
}

impl<'de> de::Deserialize<'de> for Raw<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RawVisitor)
    }
}

/// The `status` breakdown, checked while it is read and then dropped (it is not stored).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Status {
    /// An object whose entries are all `"code": non-negative integer`.
    Valid,
    /// An object with a bad entry; the detail names it.
    BadEntry(String),
    /// Not an object (null counts as absent).
    NotObject(&'static str),
}

struct StatusSeed;

impl<'de> DeserializeSeed<'de> for StatusSeed {
    type Value = Option<Status>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(StatusVisitor)
    }
}

struct StatusVisitor;

impl<'de> Visitor<'de> for StatusVisitor {
    type Value = Option<Status>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut bad = None;
        while let Some(code) = map.next_key::<Raw<'de>>()? {
            let count = map.next_value::<Raw<'de>>()?;
            if bad.is_some() {
                continue;
            }
            let code = match code {
                Raw::Str(s) => s,
                _ => Cow::Borrowed(""),
            };
            if code.is_empty() {
                bad = Some("status has an empty code".to_owned());
                continue;
            }
            let ok = match count {
                Raw::U64(_) => true,
                Raw::F64(x) => x.is_finite() && x >= 0.0 && x.fract() == 0.0,
                _ => false,
            };
            if !ok {
                bad = Some(format!(
                    "status[{}] must be a non-negative integer count, found {}",
                    super::reject::echo(&code),
                    describe(&count),
                ));
            }
        }
        Ok(Some(bad.map_or(Status::Valid, Status::BadEntry)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        RawVisitor.visit_seq(seq)?;
        Ok(Some(Status::NotObject("an array")))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Some(Status::NotObject("a boolean")))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Some(Status::NotObject("a number")))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Some(Status::NotObject("a number")))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Some(Status::NotObject("a number")))
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Some(Status::NotObject("a string")))
    }
}

/// A short description of a value for details: numbers and strings are echoed.
pub(crate) fn describe(v: &Raw<'_>) -> String {
    match v {
        Raw::U64(n) => n.to_string(),
        Raw::I64(n) => n.to_string(),
        Raw::F64(x) => fmt_f64(*x),
        Raw::Str(s) => format!("string {:?}", super::reject::echo(s)),
        other => other.kind().to_owned(),
    }
}

/// `x` in plain notation when short, scientific otherwise (`1e300`, not 301 digits).
pub(crate) fn fmt_f64(x: f64) -> String {
    let a = x.abs();
    if a == 0.0 || (1e-5..1e16).contains(&a) || !a.is_finite() {
        x.to_string()
    } else {
        format!("{x:e}")
    }
}

/// Every known field as read from the message; `None` when absent.
#[derive(Debug, Default)]
pub(crate) struct RawSample<'a> {
    pub ts: Option<Raw<'a>>,
    pub cluster: Option<Raw<'a>>,
    pub service: Option<Raw<'a>>,
    pub region: Option<Raw<'a>>,
    pub interval_s: Option<Raw<'a>>,
    pub requests: Option<Raw<'a>>,
    pub errors: Option<Raw<'a>>,
    pub retries: Option<Raw<'a>>,
    pub latency_p50_ms: Option<Raw<'a>>,
    pub latency_p99_ms: Option<Raw<'a>>,
    pub db_pool_active: Option<Raw<'a>>,
    pub db_pool_max: Option<Raw<'a>>,
    pub db_pool_pending: Option<Raw<'a>>,
    /// `None` when absent or null.
    pub status: Option<Status>,
}

impl<'a> RawSample<'a> {
    /// The slot of a scalar field; `None` for `status`, which has its own type.
    fn slot(&mut self, f: FieldId) -> Option<&mut Option<Raw<'a>>> {
        Some(match f {
            FieldId::Ts => &mut self.ts,
            FieldId::Cluster => &mut self.cluster,
            FieldId::Service => &mut self.service,
            FieldId::Region => &mut self.region,
            FieldId::IntervalS => &mut self.interval_s,
            FieldId::Requests => &mut self.requests,
            FieldId::Errors => &mut self.errors,
            FieldId::Retries => &mut self.retries,
            FieldId::LatencyP50 => &mut self.latency_p50_ms,
            FieldId::LatencyP99 => &mut self.latency_p99_ms,
            FieldId::PoolActive => &mut self.db_pool_active,
            FieldId::PoolMax => &mut self.db_pool_max,
            FieldId::PoolPending => &mut self.db_pool_pending,
            FieldId::Status => return None,
        })
    }
}

/// Side channel out of the parser: which field was being read, which was repeated.
#[derive(Debug, Default)]
pub(crate) struct Ctx {
    /// The known field whose value was being read when parsing stopped, if any.
    pub reading: Option<FieldId>,
    /// The first known field that appeared twice.
    pub duplicate: Option<FieldId>,
}

/// Parses one message into a [`RawSample`], recording progress in the [`Ctx`].
pub(crate) struct SampleSeed<'c> {
    pub ctx: &'c mut Ctx,
}

impl<'de> DeserializeSeed<'de> for SampleSeed<'_> {
    type Value = RawSample<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for SampleSeed<'_> {
    type Value = RawSample<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = RawSample::default();
        let mut seen: u16 = 0;
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let Some(field) = key else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let bit = 1u16 << (field as u16);
            if seen & bit != 0 && self.ctx.duplicate.is_none() {
                self.ctx.duplicate = Some(field);
            }
            seen |= bit;
            self.ctx.reading = Some(field);
            match out.slot(field) {
                Some(slot) => *slot = Some(map.next_value::<Raw<'de>>()?),
                None => out.status = map.next_value_seed(StatusSeed)?,
            }
            self.ctx.reading = None;
        }
        Ok(out)
    }
}

/// Maps an object key to a known field without allocating.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Option<FieldId>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Option<FieldId>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(FieldId::from_key(v))
    }
}
