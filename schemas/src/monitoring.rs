//! Monitoring spans on `erp.monitoring`, in epilot's `MonitoringEventV2` shape: one row per
//! processing step, all rows of one inbound event sharing its `event_id`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The level of a span.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Success,
    Error,
    Skipped,
    Warning,
    Info,
}

/// A monitoring span (epilot `MonitoringEventV2`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonitoringSpan {
    pub id: String,
    pub org_id: String,
    pub integration_id: String,
    pub event_id: String,
    /// `""` when unavailable.
    pub correlation_id: String,
    /// `""` for system-level ("General") spans.
    pub use_case_id: String,
    /// `inbound`, `outbound`, …, or `""`.
    pub use_case_type: String,
    pub level: Level,
    /// `""` for success.
    pub code: String,
    pub message: String,
    pub detail: Value,
    pub created_at: String,
}
