//! Decoding a delivery ahead of the detector on a second thread gives exactly the batches,
//! keys, frontier holds and per-message outcomes of decoding it on one thread.
#![allow(clippy::unwrap_used)]

use ingest::ahead::{decode_delivery, Cut, Decoding};
use ingest::format::{Accepted, Format, MessageDecoder, MessageDecoderOptions, Payload};
use ingest::frontier::{Frontier, FrontierOptions};
use ingest::json::{DecoderOptions, Rejection};
use ingest::{arrow_ipc, Sample};

const T0: i64 = 1_770_000_000_000;

/// Messages of three partitions, each covering 10 ticks of its own 20 series, the partitions
/// in turn (as a consumer catching up reads them), with a broken message in the middle.
fn delivery() -> (Vec<Payload>, Vec<u32>) {
    let (mut msgs, mut lanes) = (Vec::new(), Vec::new());
    for round in 0..6i64 {
        for part in 0..3u32 {
            let rows: Vec<Sample> = (0..10i64)
                .flat_map(|t| {
                    (0..20u32).map(move |s| {
                        Sample::new(
                            T0 + (round * 10 + t) * 10_000,
                            format!("c{part}"),
                            format!("s{s}"),
                            100 + u64::from(s),
                            u64::from(s % 3),
                        )
                    })
                })
                .collect();
            msgs.push(Payload::from_vec(arrow_ipc::encode(&rows).unwrap()));
            lanes.push(part);
            if round == 1 && part == 1 {
                msgs.push(Payload::from_vec(b"not arrow".to_vec()));
                lanes.push(part);
            }
        }
    }
    (msgs, lanes)
}

type Run = (Vec<Cut>, Vec<(usize, Result<Accepted, Rejection>)>);

fn run(overlap: bool, stop_after: Option<usize>) -> (Run, Result<(), String>) {
    let (msgs, lanes) = delivery();
    let mut decoder = MessageDecoder::new(MessageDecoderOptions {
        decoder: DecoderOptions {
            now_ms: Some(T0 + 86_400_000),
            batch_size: 300,
            ..DecoderOptions::default()
        },
        ..MessageDecoderOptions::default()
    });
    let mut frontier = Frontier::new(FrontierOptions::default());
    frontier.assign(&[0, 1, 2], 0);
    let mut outcomes = Vec::new();
    let mut cuts = Vec::new();
    let result = decode_delivery(
        Decoding {
            decoder: &mut decoder,
            frontier: &mut frontier,
            lanes: Some(&lanes),
            known_keys: 0,
            now_ms: &|| 0,
        },
        &Format::ArrowIpc,
        &msgs,
        overlap,
        &mut |i, outcome| outcomes.push((i, outcome.clone())),
        &mut |cut| {
            if stop_after == Some(cuts.len()) {
                return Err("the detector failed".to_owned());
            }
            cuts.push(cut);
            Ok(())
        },
    );
    ((cuts, outcomes), result)
}

#[test]
fn decoding_ahead_gives_the_cuts_of_decoding_in_line() {
    let ((want_cuts, want_outcomes), ok) = run(false, None);
    assert_eq!(ok, Ok(()));
    assert!(want_cuts.len() >= 9, "{} cuts", want_cuts.len());
    assert_eq!(want_outcomes.len(), 19);
    assert!(
        want_outcomes[5].1.is_err(),
        "the broken message is rejected"
    );
    // The first cut holds the watermark for the partition not heard from yet.
    assert!(!want_cuts[0].new_keys.is_empty());
    assert_eq!(want_cuts[0].before, Some(i64::MIN));
    let keys: usize = want_cuts.iter().map(|c| c.new_keys.len()).sum();
    assert_eq!(keys, 60);

    let ((cuts, outcomes), ok) = run(true, None);
    assert_eq!(ok, Ok(()));
    assert_eq!(outcomes, want_outcomes);
    assert_eq!(cuts.len(), want_cuts.len());
    for (i, (a, b)) in cuts.iter().zip(&want_cuts).enumerate() {
        assert_eq!(a.batch, b.batch, "cut {i}");
        assert_eq!(a.new_keys, b.new_keys, "cut {i}");
        assert_eq!((a.before, a.after), (b.before, b.after), "cut {i}");
    }
}

#[test]
fn an_error_from_the_consumer_stops_both_sides() {
    for overlap in [false, true] {
        let ((cuts, outcomes), result) = run(overlap, Some(3));
        assert_eq!(result, Err("the detector failed".to_owned()));
        assert_eq!(cuts.len(), 3, "overlap {overlap}");
        // The decoding side stops within the few cuts it may run ahead.
        assert!(outcomes.len() < 19, "overlap {overlap}: {}", outcomes.len());
    }
}
