//! The mapping engine, shared by the processor (which runs it on every event) and the API
//! (which validates configurations and simulates mappings with it), so both run exactly the same
//! code. Pure: no Kafka, no storage, no network.
//!
//! The epilot inbound mapping ("mapping v2") turns one ERP payload into core entity updates and
//! meter readings; it is a pure function of (compiled configuration, parsed payload, context).
//! Outbound use cases turn a platform core event into messages for the ERP side.

/// Array operations of an attribute (`_append`, `_merge`, …).
pub mod arrays;
/// Compiling an inbound use case's `configuration` (validated once, evaluated many times).
mod compile;
/// What a mapping run may read besides the payload (environment values, file proxy).
mod context;
/// Running a compiled configuration over one payload.
mod engine;
/// The crate's one error type.
mod error;
/// The one door to the JSONata engine: time limits, panics, error codes, extensions.
pub mod jsonata;
/// Mapping v1 (`integration.configuration`) translated into v2.
pub mod legacy;
/// Checking a payload against the payload limits without building its tree.
pub mod limits;
/// Outbound use cases: event matching, filters and per-mapping messages.
pub mod outbound;
/// Reading a payload in its declared format (JSON, XML) into the JSON tree the mapping sees.
pub mod payload;
/// Meter readings: the `meter_readings` part of a configuration.
mod readings;
/// What a mapping run produces.
mod result;
/// One mapping run: payload, evaluation, context.
mod run;
/// Field sources (`field`, `jsonataExpression`, `constant`) and unique identifiers.
mod source;
/// The pool of large-stack threads evaluations run on.
pub mod threads;
/// Mapping output against the core entity schemas: the `validation` level, custom schemas.
pub mod validation;

pub use compile::{CompiledConfiguration, CompiledEntity, REQUIRED_READING_ATTRIBUTES};
pub use context::{EnvValue, FileProxyContext, MappingContext};
pub use engine::{map_document, map_payload};
pub use error::MappingError;
pub use readings::normalize_timestamp;
pub use result::{EntityUpdate, MappingResult};
