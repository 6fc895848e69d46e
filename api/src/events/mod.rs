//! The inbound event log (epilot `ErpEvent`): what each integration received, and its replay.

/// The index: follows `erp.inbound.events`, keeps coordinates, reads events back from Kafka.
pub mod log;
/// The query and replay routes.
pub mod routes;
