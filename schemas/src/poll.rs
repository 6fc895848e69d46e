//! The pollable outbound queue (epilot spec §8.4). The processor appends one [`PollItem`] per
//! platform event and poll-mode use case to `erp.outbound.poll`, keyed by integration id, so one
//! integration's stream is one ordered partition. The API keeps each stream's consumer state
//! (cursor, attempts, lease, block) as a [`PollStreamSnapshot`] in the compacted topic
//! `erp.outbound.poll.state` under the integration id, and each dead-lettered message as a
//! [`PollDlqEntry`] under `<integration id>/dlq/<message id>`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Default of `delivery.retention_days`.
pub const DEFAULT_RETENTION_DAYS: u32 = 30;
/// Default of `delivery.max_delivery_attempts`.
pub const DEFAULT_MAX_DELIVERY_ATTEMPTS: u32 = 5;

/// What happens to a message that exhausts its delivery attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoisonPolicy {
    /// Move it to the DLQ; the next message becomes the head.
    #[default]
    DeadLetter,
    /// Halt the stream at it until the consumer acks it or an operator unblocks.
    Block,
}

/// One message of an integration's poll stream, as enqueued.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PollItem {
    /// `msg_…`; derived from the source event and use case, so re-processing repeats it.
    pub id: String,
    pub org_id: String,
    pub integration_id: String,
    pub use_case_id: String,
    /// The platform event's `_event_name`.
    pub event_name: String,
    /// The platform event's `_event_id`.
    pub event_id: String,
    /// The raw platform event.
    pub payload: Value,
    /// RFC 3339, milliseconds.
    pub enqueued_at: String,
    /// `enqueued_at` in Unix milliseconds (retention is computed from it).
    pub enqueued_at_ms: i64,
    pub retention_days: u32,
    pub max_delivery_attempts: u32,
    pub poison_policy: PoisonPolicy,
}

impl PollItem {
    /// When the message expires, in Unix milliseconds.
    pub fn expires_at_ms(&self) -> i64 {
        self.enqueued_at_ms
            .saturating_add(i64::from(self.retention_days) * 24 * 3600 * 1000)
    }
}

/// The lease on a run of messages at the head of a stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PollLease {
    /// `lt_…`
    pub token: String,
    /// The leased messages' offsets in `erp.outbound.poll`, in stream order.
    pub offsets: Vec<i64>,
    /// Unix milliseconds.
    pub expires_at_ms: i64,
}

/// A stream halted by a head message under `poison_policy: block`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PollBlock {
    /// Unix milliseconds.
    pub since_ms: i64,
    /// The blocked head.
    pub offset: i64,
    /// The head's last lease token: the consumer may still ack the head with it.
    pub lease_token: Option<String>,
}

/// The consumer state of one integration's stream.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PollStreamSnapshot {
    pub integration_id: String,
    pub org_id: String,
    /// The partition of `erp.outbound.poll` the stream lives in (`None` before the first item).
    pub partition: Option<i32>,
    /// Every message before this offset is done (acked, dead-lettered or expired).
    pub cursor: i64,
    /// Delivery attempts of messages at or after the cursor that were leased at least once.
    pub attempts: Vec<(i64, u32)>,
    pub lease: Option<PollLease>,
    pub blocked: Option<PollBlock>,
    /// Unix milliseconds of the last lease handed out and of the last accepted ack.
    pub last_poll_at_ms: Option<i64>,
    pub last_ack_at_ms: Option<i64>,
    /// Numbers DLQ entries so a listing has a stable order and page token.
    pub next_dlq_seq: u64,
}

/// A dead-lettered message, with everything needed to redrive it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PollDlqEntry {
    pub item: PollItem,
    /// Listing order within the stream.
    pub seq: u64,
    /// Unix milliseconds.
    pub dead_lettered_at_ms: i64,
    pub delivery_attempts: u32,
    pub reason: String,
    /// A fresh retention window from the dead-letter time, Unix milliseconds.
    pub expires_at_ms: i64,
}

/// The key of a DLQ entry in the state topic.
pub fn dlq_key(integration_id: &str, message_id: &str) -> String {
    format!("{integration_id}/dlq/{message_id}")
}
