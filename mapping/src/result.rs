//! The mapping result, in epilot's `MappingSimulationResponse` shape.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One entity to create, update or delete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityUpdate {
    pub entity_slug: String,
    pub unique_identifiers: Map<String, Value>,
    pub attributes: Map<String, Value>,
    pub mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing: Option<Value>,
}

/// Everything one payload maps to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MappingResult {
    pub entity_updates: Vec<EntityUpdate>,
    pub meter_readings_updates: Vec<Value>,
    pub prune_scope_updates: Vec<Value>,
    pub meter_readings_prune_scope_updates: Vec<Value>,
    pub warnings: Vec<Value>,
}
