//! Dead letters on `erp.dlq`: a record that could not be processed or delivered, with why, where
//! it came from, and everything needed to process it again.

use serde::{Deserialize, Serialize};

/// Where a record was read from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceCoordinates {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// A dead letter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The role that gave up (`processor`, `dispatcher`).
    pub stage: String,
    /// A code such as `MAPPING_FAILED`, `POISON_RECORD`, `DELIVERY_FAILED`.
    pub code: String,
    pub reason: String,
    pub source: SourceCoordinates,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integration_id: Option<String>,
    /// The inbound or core event id, when the record could be read that far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// For delivery failures: the endpoint that failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_id: Option<String>,
    /// The original record key, as text (lossy for non-UTF-8 keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The original record value, as text (lossy for non-UTF-8 values).
    pub value: String,
    pub failed_at: String,
}
