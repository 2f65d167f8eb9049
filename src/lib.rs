//! The spikewatch application: wiring of the `ingest` sources and decoders into the `detector`,
//! and the offline tools (`replay`, `backtest`) built on that one pipeline. The binary
//! (`src/main.rs`) only parses arguments and calls into here.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod backtest;
pub mod pipeline;
pub mod produce;
pub mod report;
pub mod service;
