//! The schema catalog of erp-toolkit, written by us from spec §5 and §6 and embedded from
//! `schemas/json/`: the core entity schemas (13 entities and the meter reading) that mapping output
//! is checked against, and the core event catalog (epilot's 18 events, our `InboundEventMapped`,
//! the envelope) that platform events are checked against. Both load once, on first use.

pub mod compat;
pub mod entities;
pub mod events;
pub mod files;
pub mod violation;

use std::sync::LazyLock;

use serde::Serialize;
use serde_json::Value;

pub use entities::{EntityCatalog, EntitySchema, METER_READING};
pub use events::{Checked, EventCatalog, EventCheckError, EventSchema, EventVersion};
pub use violation::{ValidationLevel, Violation};

use crate::SchemaError;

static ENTITIES: LazyLock<Result<EntityCatalog, SchemaError>> = LazyLock::new(EntityCatalog::load);
static EVENTS: LazyLock<Result<EventCatalog, SchemaError>> = LazyLock::new(EventCatalog::load);

/// The entity catalog, or why the embedded schemas do not load (never, once the crate's tests
/// pass: call it at startup to fail early rather than on the first event).
pub fn try_entities() -> Result<&'static EntityCatalog, &'static SchemaError> {
    ENTITIES.as_ref()
}

/// The event catalog, or why the embedded schemas do not load (see [`try_entities`]).
pub fn try_events() -> Result<&'static EventCatalog, &'static SchemaError> {
    EVENTS.as_ref()
}

/// The entity catalog.
///
/// # Panics
/// When the embedded schemas are broken: a defect of the build the crate's tests catch.
pub fn entities() -> &'static EntityCatalog {
    try_entities().unwrap_or_else(|e| panic!("{e}"))
}

/// The event catalog.
///
/// # Panics
/// As [`entities`].
pub fn events() -> &'static EventCatalog {
    try_events().unwrap_or_else(|e| panic!("{e}"))
}

/// One violation in a mapping's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutputViolation {
    /// The entity schema of the update (`meter_reading` for readings).
    pub entity_schema: String,
    /// JSON pointer from the root of the mapping result, e.g.
    /// `/entity_updates/0/attributes/email/0/email`.
    pub path: String,
    /// The violation, its path relative to the update's `attributes`.
    pub violation: Violation,
}

impl OutputViolation {
    /// As an entry of the simulation answer's `warnings[]`.
    pub fn to_warning(&self) -> Value {
        self.violation.to_warning(&self.entity_schema)
    }
}

impl std::fmt::Display for OutputViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.entity_schema, self.path, self.violation.message
        )
    }
}

/// Checks a mapping result in epilot's `MappingSimulationResponse` shape (spec §4.12): the
/// attributes of every `entity_updates[]` item of a core entity schema and of every
/// `meter_readings_updates[]` item. Updates of other schemas (custom entities) and delete/purge
/// updates (only their unique ids matter) are not checked.
pub fn check_mapping_output(result: &Value) -> Vec<OutputViolation> {
    let catalog = entities();
    let mut out = Vec::new();
    let items = |key: &str| {
        result
            .get(key)
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
    };
    for (index, update) in items("entity_updates").iter().enumerate() {
        let slug = update
            .get("entity_slug")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let mode = update
            .get("mode")
            .and_then(Value::as_str)
            .unwrap_or("upsert");
        if mode != "upsert" {
            continue;
        }
        let Some(attributes) = update.get("attributes").and_then(Value::as_object) else {
            continue;
        };
        for violation in catalog.check_update(slug, attributes).unwrap_or_default() {
            out.push(OutputViolation {
                entity_schema: slug.to_owned(),
                path: format!("/entity_updates/{index}/attributes{}", violation.path),
                violation,
            });
        }
    }
    for (index, update) in items("meter_readings_updates").iter().enumerate() {
        if update.get("mode").and_then(Value::as_str) == Some("delete") {
            continue;
        }
        let Some(attributes) = update.get("attributes").and_then(Value::as_object) else {
            continue;
        };
        for violation in catalog.meter_reading().check_update(attributes) {
            out.push(OutputViolation {
                entity_schema: METER_READING.to_owned(),
                path: format!(
                    "/meter_readings_updates/{index}/attributes{}",
                    violation.path
                ),
                violation,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogs_load() {
        let entities = try_entities().expect("entity schemas load");
        assert_eq!(entities.slugs().count(), 13);
        assert!(entities.is_core("contact"));
        assert!(!entities.is_core(METER_READING));
        assert!(!entities.is_core("opportunity"));
        let events = try_events().expect("event schemas load");
        assert_eq!(events.names().count(), 19);
        assert_eq!(
            events.latest("MeterReadingAdded").expect("known").version(),
            EventVersion::new(2, 1)
        );
    }
}
