//! The contracts of erp-toolkit: the records on every topic, the configuration objects, the
//! identifiers and timestamps they carry, and the topic names. Nothing here does I/O, so every
//! role, test and tool agrees on one definition.

pub mod ack;
pub mod config;
pub mod core_event;
pub mod dead_letter;
pub mod delivery_task;
pub mod error;
pub mod ids;
pub mod inbound;
pub mod monitoring;
pub mod poll;
pub mod templates;
pub mod timestamp;
pub mod topics;

pub use error::SchemaError;
