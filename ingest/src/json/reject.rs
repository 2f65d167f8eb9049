//! Why a message was not turned into a row.

use std::fmt;

/// The reason a message was rejected.
///
/// [`as_str`](Self::as_str) gives a stable snake_case label, safe to use as a Prometheus label
/// value and a dead-letter header value; the set is closed and small ([`RejectReason::ALL`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    /// The message is not valid UTF-8.
    NotUtf8,
    /// The message is longer than `max_message_bytes`.
    TooLarge,
    /// The message is not one JSON object (syntax error, trailing data, another JSON type, a
    /// duplicated known field).
    MalformedJson,
    /// A required field (`ts`, `cluster`, `service`, `requests`, `errors`) is absent.
    MissingField,
    /// A field has the wrong JSON type (for example a count sent as a string, or a required
    /// field sent as `null`).
    WrongType,
    /// `cluster` or `service` is empty or longer than 128 bytes.
    InvalidKey,
    /// `ts` is not an RFC 3339 timestamp or an integer epoch-millisecond value in years 0–9999.
    InvalidTimestamp,
    /// `ts` lies further in the future than `max_future_ms` (by the decoder's clock).
    FutureTimestamp,
    /// A count (`requests`, `errors`, `retries`, a `db_pool_*` field) is negative.
    NegativeCount,
    /// `errors > requests`.
    ErrorsExceedRequests,
    /// `retries > requests`.
    RetriesExceedRequests,
    /// A number overflowed to infinity (for example `1e999`).
    NotFinite,
    /// `interval_s` is not positive, rounds to less than a millisecond, or exceeds one day.
    InvalidInterval,
    /// A value of the right type but outside its domain: a non-integer or too large count, a
    /// negative latency, a malformed `status` breakdown.
    InvalidValue,
    /// An Arrow IPC message that is not a readable IPC stream of record batches
    /// ([`crate::arrow_ipc`]); never produced by the JSON decoder.
    MalformedArrow,
}

impl RejectReason {
    /// Every reason, in declaration order.
    pub const ALL: [RejectReason; 15] = [
        RejectReason::NotUtf8,
        RejectReason::TooLarge,
        RejectReason::MalformedJson,
        RejectReason::MissingField,
        RejectReason::WrongType,
        RejectReason::InvalidKey,
        RejectReason::InvalidTimestamp,
        RejectReason::FutureTimestamp,
        RejectReason::NegativeCount,
        RejectReason::ErrorsExceedRequests,
        RejectReason::RetriesExceedRequests,
        RejectReason::NotFinite,
        RejectReason::InvalidInterval,
        RejectReason::InvalidValue,
        RejectReason::MalformedArrow,
    ];

    /// The stable snake_case label of the reason.
    pub const fn as_str(self) -> &'static str {
        match self {
            RejectReason::NotUtf8 => "not_utf8",
            RejectReason::TooLarge => "too_large",
            RejectReason::MalformedJson => "malformed_json",
            RejectReason::MissingField => "missing_field",
            RejectReason::WrongType => "wrong_type",
            RejectReason::InvalidKey => "invalid_key",
            RejectReason::InvalidTimestamp => "invalid_timestamp",
            RejectReason::FutureTimestamp => "future_timestamp",
            RejectReason::NegativeCount => "negative_count",
            RejectReason::ErrorsExceedRequests => "errors_exceed_requests",
            RejectReason::RetriesExceedRequests => "retries_exceed_requests",
            RejectReason::NotFinite => "not_finite",
            RejectReason::InvalidInterval => "invalid_interval",
            RejectReason::InvalidValue => "invalid_value",
            RejectReason::MalformedArrow => "malformed_arrow",
        }
    }

    /// Index of the reason in [`RejectReason::ALL`], handy for a fixed array of counters.
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rejected message: the reason (low cardinality, for counters) and a human-readable detail
/// that names the field and the offending value (bounded in length, for logs and DLQ headers).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct Rejection {
    pub reason: RejectReason,
    pub detail: String,
}

impl Rejection {
    pub fn new(reason: RejectReason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

/// Longest slice of user input echoed into a detail, so details stay header-sized.
const MAX_ECHO: usize = 64;

/// `s` cut to at most [`MAX_ECHO`] bytes on a char boundary, with `…` when cut.
pub(crate) fn echo(s: &str) -> String {
    if s.len() <= MAX_ECHO {
        return s.to_owned();
    }
    let mut end = MAX_ECHO;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_unique_snake_case_and_indexed() {
        let mut seen = std::collections::HashSet::new();
        for (i, r) in RejectReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
            let s = r.as_str();
            assert!(s
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit()));
            assert!(seen.insert(s), "duplicate label {s}");
            assert_eq!(r.to_string(), s);
        }
    }

    #[test]
    fn display() {
        let r = Rejection::new(
            RejectReason::ErrorsExceedRequests,
            "errors 12 > requests 10",
        );
        assert_eq!(
            r.to_string(),
            "errors_exceed_requests: errors 12 > requests 10"
        );
    }

    #[test]
    fn echo_cuts_on_char_boundary() {
        let s = "é".repeat(40);
        let e = echo(&s);
        assert!(e.len() <= MAX_ECHO + '…'.len_utf8());
        assert!(e.ends_with('…'));
        assert_eq!(echo("short"), "short");
    }
}
