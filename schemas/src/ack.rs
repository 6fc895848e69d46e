//! ACK tracking records on `erp.acks` (compacted, keyed by [`AckRecord::key`]: organisation and
//! `_ack_id`, since the id is chosen by the client): one per platform event
//! delivered to the ERP by at least one use case with `ack_tracking: on` (spec §8.3). The
//! processor writes it `pending`; a timeout sweep rewrites it `timed_out`; an acknowledgement
//! removes it (a tombstone), so a second acknowledgement of the same id is unknown.

use serde::{Deserialize, Serialize};

/// Where an ACK-tracked event stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckState {
    /// Delivered (or being delivered); no acknowledgement yet.
    Pending,
    /// No acknowledgement within the window (`ACK_TIMEOUT` was reported); a late one is still
    /// accepted.
    TimedOut,
}

/// The tracking record of one platform event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AckRecord {
    pub ack_id: String,
    pub org_id: String,
    /// The platform event's `_event_id`.
    pub event_id: String,
    pub event_name: String,
    /// The tracking use cases that produced messages for it.
    pub integration_ids: Vec<String>,
    pub use_case_ids: Vec<String>,
    /// The outbound core events (one per delivered mapping).
    pub core_event_ids: Vec<String>,
    pub state: AckState,
    /// When tracking started (RFC 3339, milliseconds).
    pub created_at: String,
    /// When tracking started, in Unix milliseconds (for the timeout).
    pub created_at_ms: i64,
}

impl AckRecord {
    /// The record's key on `erp.acks`: `<org>/<ack_id>`. `_ack_id` is chosen by the platform
    /// client, so two organisations may send the same one; keyed by it alone, one
    /// organisation's row would replace (compact away) the other's. Readers take the identity
    /// from the record's body, never from the key (rows written before were keyed by the bare
    /// `_ack_id`).
    pub fn key(&self) -> String {
        format!("{}/{}", self.org_id, self.ack_id)
    }
}
