//! The pure logic of a Confluent-compatible schema registry: subjects, versions, ids, per-subject
//! compatibility, idempotent registration, lookup and Confluent's soft/hard delete rules, as a
//! state folded from change records. Serving it over HTTP and keeping the records in a compacted
//! topic is the job of the role that hosts it; every decision and every error answer is made here.
//!
//! The flow of a change: a `decide` method (`register`, `set_config`, `delete_subject`, …) checks
//! the request against the current state and returns the answer with the records that make it
//! true; the host appends the records to its log (the compacted topic) and [`Registry::apply`]s
//! them — every instance applies every record it reads, its own included (applying twice is
//! harmless). The answer is sent once the records are stored.

mod compatibility;
mod deletes;
mod error;
mod record;
mod state;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

pub use compatibility::{CompatibilityLevel, can_read, check as check_compatibility};
pub use error::RegistryError;
pub use record::{RecordKey, RegistryRecord};
pub use state::Registry;

/// The schema types the registry serves. Confluent's default is AVRO; JSON and PROTOBUF are
/// refused (42201).
pub const SCHEMA_TYPES: [&str; 1] = ["AVRO"];

/// The mode the registry is in (`GET /mode`): always read-write.
pub const MODE: &str = "READWRITE";

/// A reference of a schema to a named type registered under another subject.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SchemaReference {
    /// The full name of the referenced type.
    pub name: String,
    pub subject: String,
    pub version: i64,
}

/// The body of `POST /subjects/{s}/versions`, `POST /subjects/{s}` and the compatibility calls.
/// Fields newer clients send (`metadata`, `ruleSet`, `id`, `version`, …) are accepted and ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemaRequest {
    pub schema: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_type: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<SchemaReference>,
}

impl SchemaRequest {
    /// A request for an Avro schema without references.
    pub fn avro(schema: impl Into<String>) -> Self {
        Self {
            schema: schema.into(),
            ..Self::default()
        }
    }
}

/// One version of a subject: the answer of `GET /subjects/{s}/versions/{v}` and of a lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectVersion {
    pub subject: String,
    pub version: u32,
    pub id: u32,
    pub schema: String,
    pub references: Vec<SchemaReference>,
}

/// Confluent's shape of a schema answer: `schemaType` only for non-Avro schemas, `references`
/// only when there are some.
fn schema_body(map: &mut Map<String, Value>, schema: &str, references: &[SchemaReference]) {
    map.insert("schema".into(), json!(schema));
    if !references.is_empty() {
        map.insert("references".into(), json!(references));
    }
}

impl SubjectVersion {
    /// `{"subject", "version", "id", "schema"}` (+ `references`).
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        map.insert("subject".into(), json!(self.subject));
        map.insert("version".into(), json!(self.version));
        map.insert("id".into(), json!(self.id));
        schema_body(&mut map, &self.schema, &self.references);
        Value::Object(map)
    }
}

/// A schema by id: the answer of `GET /schemas/ids/{id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaById {
    pub id: u32,
    pub schema: String,
    pub references: Vec<SchemaReference>,
}

impl SchemaById {
    /// `{"schema"}` (+ `references`).
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        schema_body(&mut map, &self.schema, &self.references);
        Value::Object(map)
    }
}

/// What registering a schema decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub id: u32,
    pub version: u32,
    /// The records to append; empty when the schema was already registered (idempotent).
    pub records: Vec<RegistryRecord>,
}

impl Registration {
    /// `{"id"}`, what `POST /subjects/{s}/versions` answers.
    pub fn to_json(&self) -> Value {
        json!({"id": self.id})
    }
}

/// The answer of a compatibility check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompatibilityAnswer {
    pub is_compatible: bool,
    pub messages: Vec<String>,
}

impl CompatibilityAnswer {
    /// `{"is_compatible"}`, with `messages` when `verbose` was asked.
    pub fn to_json(&self, verbose: bool) -> Value {
        if verbose {
            json!({"is_compatible": self.is_compatible, "messages": self.messages})
        } else {
            json!({"is_compatible": self.is_compatible})
        }
    }
}

/// The body of `PUT /config[/{s}]`: `compatibility` (older clients send `compatibilityLevel`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigRequest {
    #[serde(default)]
    pub compatibility: Option<String>,
    #[serde(default)]
    pub compatibility_level: Option<String>,
}

impl ConfigRequest {
    /// The level asked for (42203 when missing or unknown).
    pub fn level(&self) -> Result<CompatibilityLevel, RegistryError> {
        self.compatibility
            .as_deref()
            .or(self.compatibility_level.as_deref())
            .unwrap_or_default()
            .parse()
    }
}

/// `{"compatibilityLevel": …}`, what `GET /config[/{s}]` answers.
pub fn config_json(level: CompatibilityLevel) -> Value {
    json!({"compatibilityLevel": level})
}

/// `{"compatibility": …}`, what `PUT /config[/{s}]` answers.
pub fn config_update_json(level: CompatibilityLevel) -> Value {
    json!({"compatibility": level})
}
