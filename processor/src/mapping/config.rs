//! The mapping grammar (epilot `InboundIntegrationEventConfiguration`), as written by users.
//! Unknown keys are tolerated: real configurations carry comments and legacy keys.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// An inbound use case's configuration.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct InboundConfiguration {
    #[serde(default)]
    pub entities: Vec<Value>,
    #[serde(default)]
    pub meter_readings: Vec<Value>,
}

/// `enabled`: a boolean, or a JSONata expression that yields one.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Enabled {
    Flag(bool),
    Expression(String),
}

/// What an entity mapping does with the matched entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    #[default]
    Upsert,
    Delete,
    Purge,
    UpsertPruneScopePurge,
    UpsertPruneScopeDelete,
}

impl Mode {
    /// The mode reported on an entity update: prune-scope modes upsert the listed entities (the
    /// pruning is a separate prune-scope update).
    pub fn as_update_mode(self) -> &'static str {
        match self {
            Mode::Upsert | Mode::UpsertPruneScopePurge | Mode::UpsertPruneScopeDelete => "upsert",
            Mode::Delete => "delete",
            Mode::Purge => "purge",
        }
    }
}

/// One entity mapping.
#[derive(Debug, Clone, Deserialize)]
pub struct EntityMapping {
    pub entity_schema: String,
    pub unique_ids: Vec<String>,
    #[serde(rename = "jsonataExpression", default)]
    pub jsonata_expression: Option<String>,
    #[serde(default)]
    pub enabled: Option<Enabled>,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub scope: Option<Value>,
    pub fields: Vec<Value>,
    #[serde(default)]
    pub pricing: Option<Value>,
}

/// Repeatable attribute types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RepeatableType {
    Email,
    Phone,
}

impl RepeatableType {
    /// The key of the value inside a repeatable item.
    pub fn key(self) -> &'static str {
        match self {
            RepeatableType::Email => "email",
            RepeatableType::Phone => "phone",
        }
    }
}

/// One field mapping.
#[derive(Debug, Clone, Deserialize)]
pub struct FieldMapping {
    pub attribute: String,
    #[serde(default)]
    pub field: Option<String>,
    #[serde(rename = "jsonataExpression", default)]
    pub jsonata_expression: Option<String>,
    /// `Some(Value::Null)` for `"constant": null`, `None` when the key is absent.
    #[serde(default, deserialize_with = "present")]
    pub constant: Option<Value>,
    #[serde(rename = "_type", default)]
    pub repeatable: Option<RepeatableType>,
    #[serde(rename = "_tags", default)]
    pub tags: Option<Vec<String>>,
    #[serde(default)]
    pub enabled: Option<Enabled>,
    #[serde(default)]
    pub relations: Option<Value>,
    #[serde(default)]
    pub relation_refs: Option<Value>,
    #[serde(default)]
    pub file_proxy_url: Option<Value>,
    #[serde(default)]
    pub portal_ref: Option<Value>,
    #[serde(default)]
    pub env_var_ref: Option<Value>,
}

/// Keeps an explicit `null` apart from an absent key.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}
