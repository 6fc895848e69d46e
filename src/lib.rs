//! erp-toolkit: one binary, many roles. The library side wires the roles together so the binary,
//! the tests and the load generator start them the same way.

pub mod api;
#[cfg(feature = "embedded-broker")]
pub mod broker;
pub mod cli;
pub mod receiver;
pub mod roles;
#[cfg(feature = "embedded-broker")]
pub mod standalone;

#[cfg(feature = "embedded-broker")]
pub use standalone::{Standalone, StandaloneOptions};

pub use erp_webhooks::signing;
