//! The contracts of erp-toolkit: the records on every topic, the configuration objects, the
//! identifiers and timestamps they carry, the topic names, the schema catalog (JSON Schemas of
//! core entities and events), the Avro schemas and codec of our topics, and the pure logic of a
//! Confluent-compatible schema registry. Nothing here does I/O, so every role, test and tool agrees
//! on one definition.

pub mod ack;
pub mod avro;
pub mod catalog;
pub mod config;
pub mod core_event;
pub mod dead_letter;
pub mod delivery_task;
pub mod error;
pub mod ids;
pub mod inbound;
pub mod monitoring;
pub mod poll;
pub mod registry;
pub mod release;
pub mod timestamp;
pub mod topics;
pub mod wire;

pub use error::SchemaError;
