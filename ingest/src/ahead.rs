//! Decoding a delivery ahead of the detector: the messages of one delivery are decoded on a
//! second thread while the calling thread runs the batches already decoded through the
//! detector, so a large delivery costs about the slower of the two instead of their sum.
//!
//! The batches ("cuts") are exactly the ones decoding on one thread would give: a cut is taken
//! whenever the decoder is full and at the end of the delivery, in message order, each with the
//! keys of the series it introduced and the event-time frontier for it
//! ([`crate::frontier`]). Only the timing changes. Small deliveries are not worth a thread:
//! `overlap == false` runs everything on the calling thread.

use std::sync::mpsc;

use arrow_array::RecordBatch;
use detector::SeriesKey;

use crate::format::{Accepted, Format, MessageDecoder, Payload};
use crate::frontier::Frontier;
use crate::json::Rejection;

/// Arrow IPC deliveries with at least this many payload bytes are worth decoding on a thread
/// of their own; below it a thread costs more than it saves.
pub const OVERLAP_BYTES: usize = 256 * 1024;

/// Whether decoding `msgs` ahead on a second thread pays ([`decode_delivery`]'s `overlap`),
/// as measured by the `kafka_throughput` bench (in memory, 2000 series, a core free): Arrow
/// IPC deliveries of [`OVERLAP_BYTES`] or more, 1.3-1.5x faster decoded ahead. Not JSON or
/// Prometheus messages: there decoding is nearly all the work, so nothing overlaps, and a
/// fresh thread per delivery (and batches built on one core, read on another) made it 1.7x
/// slower.
pub fn worth_overlapping(format: &Format, msgs: &[Payload]) -> bool {
    matches!(format, Format::ArrowIpc)
        && msgs.iter().map(Payload::len).sum::<usize>() >= OVERLAP_BYTES
}

/// One batch for the detector, in order.
#[derive(Debug)]
pub struct Cut {
    pub batch: RecordBatch,
    /// Keys of the series interned since the previous cut (the next ids, in order): register
    /// them before the batch.
    pub new_keys: Vec<SeriesKey>,
    /// The watermark hold while the detector reads the batch, and after it
    /// ([`Frontier::before_batch`], [`Frontier::after_batch`]).
    pub before: Option<i64>,
    pub after: Option<i64>,
}

/// The rows `decoder` has buffered as a cut, or `None` when it has none: the keys interned
/// beyond the first `known_keys` (which the consumer holds), and the holds from `frontier`
/// (its lanes' rows in the batch count as delivered afterwards).
pub fn take_cut(
    decoder: &mut MessageDecoder,
    frontier: &mut Frontier,
    known_keys: usize,
    now_ms: i64,
) -> Option<Cut> {
    let batch = decoder.flush()?;
    let new_keys = decoder
        .interner()
        .keys()
        .get(known_keys..)
        .unwrap_or_default()
        .to_vec();
    let before = frontier.before_batch(now_ms);
    let after = frontier.after_batch(now_ms);
    Some(Cut {
        batch,
        new_keys,
        before,
        after,
    })
}

/// What [`decode_delivery`] works with, on the decoding side.
#[allow(missing_debug_implementations)]
pub struct Decoding<'a> {
    pub decoder: &'a mut MessageDecoder,
    pub frontier: &'a mut Frontier,
    /// The lane ([`Frontier::note`]) of each message, or `None` for a single input.
    pub lanes: Option<&'a [u32]>,
    /// Keys the consumer holds already: the first cut's `new_keys` start after them.
    pub known_keys: usize,
    /// Wall clock, epoch ms (lane idleness).
    pub now_ms: &'a (dyn Fn() -> i64 + Sync),
}

/// Decodes `msgs` in `format`, calling `on_message` with each message's index and outcome (on
/// the decoding side) and `consume` with each cut (on the calling thread, in order). With
/// `overlap`, decoding runs on a scoped thread of its own, at most two cuts ahead. The first
/// error from `consume` stops both sides and is returned.
pub fn decode_delivery<E: Send>(
    d: Decoding<'_>,
    format: &Format,
    msgs: &[Payload],
    overlap: bool,
    on_message: &mut (dyn FnMut(usize, &Result<Accepted, Rejection>) + Send),
    consume: &mut dyn FnMut(Cut) -> Result<(), E>,
) -> Result<(), E> {
    if !overlap {
        let mut result = Ok(());
        run_decoding(d, format, msgs, on_message, &mut |cut| {
            result = consume(cut);
            result.is_ok()
        });
        return result;
    }
    let (tx, rx) = mpsc::sync_channel::<Cut>(2);
    std::thread::scope(|scope| {
        scope.spawn(move || {
            run_decoding(d, format, msgs, on_message, &mut |cut| tx.send(cut).is_ok());
        });
        // Stops at the end of the delivery, or at the first error: dropping `rx` then makes
        // the decoding side's next send fail, and it stops too.
        rx.into_iter().try_for_each(consume)
    })
}

/// The decoding side: decodes every message, hands each cut to `emit`; stops early when `emit`
/// returns false.
fn run_decoding(
    d: Decoding<'_>,
    format: &Format,
    msgs: &[Payload],
    on_message: &mut (dyn FnMut(usize, &Result<Accepted, Rejection>) + Send),
    emit: &mut dyn FnMut(Cut) -> bool,
) {
    let Decoding {
        decoder,
        frontier,
        lanes,
        mut known_keys,
        now_ms,
    } = d;
    let mut cut = |decoder: &mut MessageDecoder, frontier: &mut Frontier| -> bool {
        let Some(cut) = take_cut(decoder, frontier, known_keys, now_ms()) else {
            return true;
        };
        known_keys += cut.new_keys.len();
        emit(cut)
    };
    for (i, msg) in msgs.iter().enumerate() {
        let outcome = decoder.decode_shared(format, msg);
        if let Some((oldest, newest)) = decoder.take_span() {
            if let Some(&lane) = lanes.and_then(|l| l.get(i)) {
                frontier.note(lane, oldest, newest, now_ms());
            }
        }
        on_message(i, &outcome);
        if decoder.is_full() && !cut(decoder, frontier) {
            return;
        }
    }
    cut(decoder, frontier);
}
