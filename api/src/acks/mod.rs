//! ACK tracking (epilot spec): outbound messages that ask for an acknowledgement, and the ERP
//! side's answers.

/// The acknowledgement route.
pub mod routes;
/// The tracker: pending acknowledgements folded from Kafka, their timeouts.
pub mod tracker;

pub use tracker::{AckSettings, AckTracker};
