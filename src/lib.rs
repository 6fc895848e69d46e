//! erp-toolkit: one binary, many roles. The library side wires the roles together so the binary,
//! the tests and the load generator start them the same way.

/// The HTTP listener of `ingest`, `api` and `standalone`.
pub mod api;
/// The embedded Tansu broker.
#[cfg(feature = "embedded-broker")]
pub mod broker;
/// The command line: one subcommand per role.
pub mod cli;
/// The ops CLI: replay and event search against the API.
pub mod ops;
/// A webhook receiver that checks signatures, for trying endpoints out.
pub mod receiver;
/// Each role on its own against a Kafka cluster.
pub mod roles;
/// Every role and the broker in one process.
#[cfg(feature = "embedded-broker")]
pub mod standalone;

#[cfg(feature = "embedded-broker")]
pub use standalone::{Standalone, StandaloneOptions};

pub use erp_webhooks::signing;
