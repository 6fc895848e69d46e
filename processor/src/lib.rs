//! The processor: consumes accepted ERP events, drops duplicates (sled), maps each with its use
//! case's configuration (epilot mapping on JSONata) and emits an `InboundEventMapped` core event.
//! Anything that cannot be processed becomes a monitoring span and a dead letter; nothing stops
//! a partition.

/// The dedup store's changelog on `erp.processor.state`: records, restore.
pub mod changelog;
/// The crate's error type.
pub mod error;
/// The processor's metrics.
pub mod metrics;
/// What each record becomes: core events, poll items, spans, dead letters.
pub mod outcome;
/// Platform events against the core event catalog: the records an invalid one yields.
pub mod platform_check;
/// Partition assignment: restore before consuming, positions of batches in flight.
pub mod rebalance;
/// The dedup store and input positions (sled), committed once per batch.
pub mod state;
/// The processing stages: consume → plan → map → emit → commit.
pub mod worker;

pub use error::ProcessorError;
pub use worker::{ProcessorSettings, run};
