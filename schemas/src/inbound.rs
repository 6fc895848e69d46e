//! The record on `erp.inbound.events`: one accepted ERP event exactly as received, plus what the
//! ingest added (`event_id`, `received_at`, the resolved correlation id).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Payload formats of an ERP event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadFormat {
    Json,
    Xml,
}

/// An accepted inbound ERP event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboundEventRecord {
    /// `evt_<ULID>`, minted by the ingest.
    pub event_id: String,
    pub org_id: String,
    pub integration_id: String,
    /// Which ingest endpoint accepted it (`v1`, `v2`, `v3`).
    pub api_version: String,
    /// v1: the app/component pair the request named (resolved to `integration_id` through the
    /// integration's app mapping).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component_id: Option<String>,
    /// The request's `meta` object, verbatim (epilot: "metadata to be passed along with the
    /// events"; its `correlation_id` is also applied to `correlation_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Map<String, Value>>,
    /// When the ingest accepted it (ms since the epoch).
    pub received_at: i64,
    /// Per-event, else request-level, else the event id.
    pub correlation_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_case_slug: Option<String>,
    /// v3 `event_name`, or v1/v2 `object_type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_name: Option<String>,
    /// v1/v2 `event_type` (`CREATE`, `UPDATE`, `DELETE`), kept for the event log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    /// When the change happened in the ERP (RFC 3339, as sent).
    pub timestamp: String,
    pub format: PayloadFormat,
    /// The payload as a string: sent strings verbatim, sent objects serialised.
    pub payload: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deduplication_id: Option<String>,
    /// The event this one replays (`POST …/events/replay`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_of: Option<String>,
}

impl InboundEventRecord {
    /// The Kafka record key: the integration, or `integration/group` when the sender opted into
    /// parallel groups. Records with one key stay in one partition, in order.
    pub fn key(&self) -> String {
        match &self.group_id {
            Some(group) => format!("{}/{}", self.integration_id, group),
            None => self.integration_id.clone(),
        }
    }
}
