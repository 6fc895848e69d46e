//! Core events on `erp.core.events`: epilot's core-event envelope (`_event_id`, `_event_name`, …)
//! followed by the event's own fields.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The name of the event every processed inbound event yields.
pub const INBOUND_EVENT_MAPPED: &str = "InboundEventMapped";
/// Its schema version.
pub const INBOUND_EVENT_MAPPED_VERSION: &str = "1.0";

/// The envelope fields every core event carries (epilot spec §6.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub _org_id: String,
    pub _event_time: String,
    /// A ULID. For events the processor emits it is derived from the input, so re-processing
    /// yields the same id.
    pub _event_id: String,
    pub _event_name: String,
    pub _event_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub _event_source: Option<String>,
    pub _ack_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub _trigger_source_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub _trigger_source: Option<String>,
}

/// A core event: the envelope plus the event's own fields, flattened into one JSON object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CoreEvent {
    #[serde(flatten)]
    pub envelope: Envelope,
    #[serde(flatten)]
    pub body: Map<String, Value>,
}

/// The body of an `InboundEventMapped` event: where it came from and the mapping result in
/// epilot's `MappingSimulationResponse` shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboundEventMapped {
    pub integration_id: String,
    pub use_case_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_case_slug: Option<String>,
    pub inbound_event_id: String,
    pub correlation_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deduplication_id: Option<String>,
    /// When the change happened in the ERP, as sent.
    pub event_timestamp: String,
    pub entity_updates: Vec<Value>,
    pub meter_readings_updates: Vec<Value>,
    pub prune_scope_updates: Vec<Value>,
    pub meter_readings_prune_scope_updates: Vec<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<Value>,
}
