//! The change records the registry state is folded from, keyed for a compacted topic: the latest
//! record of a key is its state; a tombstone (no value) removes it.

use serde::{Deserialize, Serialize};

use super::SchemaReference;
use super::compatibility::CompatibilityLevel;

/// The key of a record.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "keytype", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RecordKey {
    /// One version of one subject.
    Schema { subject: String, version: u32 },
    /// The compatibility level of a subject, or the global one (`subject: null`).
    Config { subject: Option<String> },
    /// The lowest id a new schema may get: kept when versions holding the highest ids are
    /// deleted for good, so an id is never given to a second schema.
    IdFloor,
}

impl RecordKey {
    /// The key as the bytes of a Kafka record key (JSON).
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// One change of the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RegistryRecord {
    /// A version of a subject (registered, or soft-deleted when `deleted`).
    Schema {
        subject: String,
        version: u32,
        id: u32,
        schema_type: String,
        /// The schema in its normalised text.
        schema: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        references: Vec<SchemaReference>,
        deleted: bool,
    },
    /// A version deleted for good (a tombstone of its key).
    Purged { subject: String, version: u32 },
    /// A compatibility level set (`Some`) or removed (`None`, a tombstone of its key).
    Config {
        subject: Option<String>,
        compatibility: Option<CompatibilityLevel>,
    },
    /// See [`RecordKey::IdFloor`].
    IdFloor { next_id: u32 },
}

impl RegistryRecord {
    /// The record's key.
    pub fn key(&self) -> RecordKey {
        match self {
            Self::Schema {
                subject, version, ..
            }
            | Self::Purged { subject, version } => RecordKey::Schema {
                subject: subject.clone(),
                version: *version,
            },
            Self::Config { subject, .. } => RecordKey::Config {
                subject: subject.clone(),
            },
            Self::IdFloor { .. } => RecordKey::IdFloor,
        }
    }

    /// Whether the record is written as a tombstone (the key without a value).
    pub fn is_tombstone(&self) -> bool {
        matches!(
            self,
            Self::Purged { .. }
                | Self::Config {
                    compatibility: None,
                    ..
                }
        )
    }

    /// The record a tombstone of `key` stands for.
    pub fn from_tombstone(key: RecordKey) -> Option<Self> {
        match key {
            RecordKey::Schema { subject, version } => Some(Self::Purged { subject, version }),
            RecordKey::Config { subject } => Some(Self::Config {
                subject,
                compatibility: None,
            }),
            RecordKey::IdFloor => None,
        }
    }

    /// The record value as the bytes of a Kafka record value (JSON); `None` for a tombstone.
    pub fn to_value_bytes(&self) -> Option<Vec<u8>> {
        if self.is_tombstone() {
            None
        } else {
            serde_json::to_vec(self).ok()
        }
    }

    /// The record of a Kafka record: its value, or, for a tombstone, what its key stands for.
    pub fn from_kafka(key: &[u8], value: Option<&[u8]>) -> Result<Option<Self>, serde_json::Error> {
        match value {
            Some(value) => serde_json::from_slice(value).map(Some),
            None => serde_json::from_slice::<RecordKey>(key).map(Self::from_tombstone),
        }
    }
}
