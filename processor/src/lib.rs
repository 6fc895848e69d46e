//! The processor: consumes accepted ERP events, drops duplicates (sled), maps each with its use
//! case's configuration (epilot mapping on JSONata) and emits an `InboundEventMapped` core event.
//! Anything that cannot be processed becomes a monitoring span and a dead letter; nothing stops
//! a partition.

pub mod changelog;
pub mod error;
pub mod metrics;
pub mod outcome;
pub mod rebalance;
pub mod state;
pub mod worker;

pub use error::ProcessorError;
pub use worker::{ProcessorSettings, run};
