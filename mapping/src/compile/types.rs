//! The compiled forms of a configuration's parts, as the engine runs them.

use serde_json::Value;

use crate::jsonata::Expression;
use crate::source::{Source, UniqueIds};

/// A configuration ready to map payloads.
#[derive(Debug, Clone)]
pub struct CompiledConfiguration {
    pub(crate) entities: Vec<CompiledEntity>,
    pub(crate) meter_readings: Vec<CompiledMeterReading>,
    /// What a violation of the core entity schemas does (`validation`, our extension).
    pub(crate) validation: erp_schemas::catalog::ValidationLevel,
}

/// When something applies.
#[derive(Debug, Clone)]
pub(crate) enum Condition {
    Always,
    Never,
    When(Expression),
}

/// Entity mapping modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EntityMode {
    Upsert,
    Delete,
    Purge,
    UpsertPruneScopePurge,
    UpsertPruneScopeDelete,
}

impl EntityMode {
    pub(crate) fn reported(self) -> &'static str {
        match self {
            EntityMode::Delete => "delete",
            EntityMode::Purge => "purge",
            _ => "upsert",
        }
    }

    pub(crate) fn prune_deletion(self) -> Option<&'static str> {
        match self {
            EntityMode::UpsertPruneScopePurge => Some("purge"),
            EntityMode::UpsertPruneScopeDelete => Some("delete"),
            _ => None,
        }
    }
}

/// How a prune scope is found.
#[derive(Debug, Clone)]
pub(crate) enum PruneScope {
    Relations { schema: String, ids: UniqueIds },
    Query { query: UniqueIds },
}

/// One compiled entity mapping.
#[derive(Debug, Clone)]
pub struct CompiledEntity {
    pub(crate) location: String,
    pub(crate) schema: String,
    pub(crate) unique_ids: Vec<String>,
    pub(crate) pre: Option<Expression>,
    pub(crate) enabled: Condition,
    pub(crate) mode: EntityMode,
    pub(crate) scope: Option<PruneScope>,
    pub(crate) fields: Vec<CompiledField>,
    pub(crate) pricing: Option<CompiledPricing>,
}

/// A `pricing` block: echoed with the data extracted for it.
#[derive(Debug, Clone)]
pub(crate) struct CompiledPricing {
    pub(crate) config: Value,
    pub(crate) extract: Option<Expression>,
}

/// The use case a file proxy URL points at.
#[derive(Debug, Clone)]
pub(crate) enum UseCaseRef {
    Slug(String),
    Id(String),
}

/// A relation item given in the configuration.
#[derive(Debug, Clone)]
pub(crate) struct RelationItem {
    pub(crate) schema: String,
    pub(crate) tags: Option<Value>,
    pub(crate) ids: UniqueIds,
}

/// A relation reference item given in the configuration.
#[derive(Debug, Clone)]
pub(crate) struct RelationRefItem {
    pub(crate) schema: String,
    pub(crate) ids: UniqueIds,
    pub(crate) path: String,
    pub(crate) value_attribute: String,
    pub(crate) value_operation: Option<String>,
    pub(crate) value: Option<Source>,
}

/// What produces a field's value.
#[derive(Debug, Clone)]
pub(crate) enum Producer {
    Value(Source),
    Relations {
        operation: String,
        items: Vec<RelationItem>,
        expression: Option<Expression>,
    },
    RelationRefs {
        operation: String,
        items: Vec<RelationRefItem>,
        expression: Option<Expression>,
    },
    FileProxyUrl {
        use_case: UseCaseRef,
        params: Vec<(String, Source)>,
    },
    PortalRef,
    EnvVarRef {
        key: String,
        default: Option<String>,
        expression: Option<Expression>,
    },
}

/// Repeatable attribute types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Repeatable {
    Email,
    Phone,
}

impl Repeatable {
    pub(crate) fn key(self) -> &'static str {
        match self {
            Repeatable::Email => "email",
            Repeatable::Phone => "phone",
        }
    }
}

/// One compiled field mapping.
#[derive(Debug, Clone)]
pub(crate) struct CompiledField {
    pub(crate) location: String,
    pub(crate) attribute: String,
    pub(crate) producer: Producer,
    pub(crate) enabled: Condition,
    pub(crate) repeatable: Option<Repeatable>,
    pub(crate) tags: Option<Value>,
}

/// Meter reading modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadingMode {
    Upsert,
    Delete,
    UpsertPruneScope,
}

/// One compiled meter reading mapping.
#[derive(Debug, Clone)]
pub(crate) struct CompiledMeterReading {
    pub(crate) location: String,
    pub(crate) pre: Option<Expression>,
    pub(crate) mode: ReadingMode,
    pub(crate) scope_source: Option<String>,
    pub(crate) meter: UniqueIds,
    pub(crate) counter: Option<UniqueIds>,
    pub(crate) fields: Vec<CompiledField>,
}

/// Attributes every meter reading mapping must map.
pub const REQUIRED_READING_ATTRIBUTES: [&str; 4] = ["external_id", "timestamp", "source", "value"];

pub(crate) const OPERATIONS: [&str; 3] = ["_set", "_append", "_append_all"];
