//! The epilot inbound mapping ("mapping v2"): an inbound use case's `configuration` turns one ERP
//! payload into core entity updates. The engine is a pure function of (compiled configuration,
//! payload): the processor and the simulation endpoint call the same code.

mod compile;
mod config;
mod engine;
mod error;
mod result;

pub use compile::{CompiledConfiguration, CompiledEntity};
pub use config::{EntityMapping, FieldMapping, InboundConfiguration, Mode, RepeatableType};
pub use engine::map_payload;
pub use error::MappingError;
pub use result::{EntityUpdate, MappingResult};
