//! The epilot inbound mapping ("mapping v2"): an inbound use case's `configuration` turns one ERP
//! payload into core entity updates and meter readings. The engine is a pure function of
//! (compiled configuration, parsed payload, context): the processor and the simulation endpoints
//! call the same code.

pub mod arrays;
mod compile;
mod context;
mod engine;
mod error;
pub mod legacy;
mod readings;
mod result;
mod source;

pub use compile::{CompiledConfiguration, CompiledEntity, REQUIRED_READING_ATTRIBUTES};
pub use context::{EnvValue, FileProxyContext, MappingContext};
pub use engine::{map_document, map_payload};
pub use error::MappingError;
pub use readings::normalize_timestamp;
pub use result::{EntityUpdate, MappingResult};
