//! The contracts of erp-toolkit: the records on every topic, the configuration objects, the
//! identifiers and timestamps they carry, the topic names, the schema catalog (JSON Schemas of
//! core entities and events), the Avro schemas and codec of our topics, and the pure logic of a
//! Confluent-compatible schema registry. Nothing here does I/O, so every role, test and tool agrees
//! on one definition.

/// ACK tracking rows on `erp.acks`.
pub mod ack;
/// Avro schemas of our topics and the codec in Confluent's wire format.
pub mod avro;
/// The schema catalog: JSON Schemas of core entities and core events, with their checks.
pub mod catalog;
/// Configuration objects and the changes recorded on `erp.config`.
pub mod config;
/// Core events: the envelope and `InboundEventMapped`.
pub mod core_event;
/// Dead letters with their source coordinates.
pub mod dead_letter;
/// Delivery tasks on the retry tiers.
pub mod delivery_task;
/// The crate's error type: encoding and decoding records.
pub mod error;
/// Event, span and derived ids.
pub mod ids;
/// Accepted ERP events on `erp.inbound.events`.
pub mod inbound;
/// Limits on untrusted payloads (depth, size, nodes), shared by the ingest and the processor.
pub mod limits;
/// Monitoring spans (epilot MonitoringEventV2).
pub mod monitoring;
/// Poll items and poll-stream state.
pub mod poll;
/// Position markers on the processor's changelog, written by the processor and by group resets.
pub mod positions;
/// The pure logic of a Confluent-compatible schema registry.
pub mod registry;
/// Versioning rules checked against the snapshot of the last release.
pub mod release;
/// Standard use cases as templates: documents with placeholders, samples and expected output.
pub mod templates;
/// RFC 3339 and millisecond timestamps.
pub mod timestamp;
/// Topic names, with the deployment's prefix.
pub mod topics;
/// The wire formats of our topics: JSON and Avro (Confluent framing).
pub mod wire;

pub use error::SchemaError;
