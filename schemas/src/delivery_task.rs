//! Delivery tasks on the dispatcher's retry tiers (`erp.core.retry.<n>`): one event for one
//! endpoint that has to be tried (again) once it is due. A task carries the original record, so a
//! tier consumer needs nothing but the task and the current configuration.

use serde::{Deserialize, Serialize};

use crate::dead_letter::SourceCoordinates;

/// A delivery waiting in a retry tier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryTask {
    /// The endpoint (webhook configuration id).
    pub webhook_config_id: String,
    /// The organisation of the event and endpoint.
    pub org_id: String,
    /// The Standard Webhooks message id (`msg_…`): the same on every attempt.
    pub webhook_id: String,
    /// The core event's `_event_id`.
    pub event_id: String,
    /// HTTP attempts made so far. Deferrals (saturated endpoint, open circuit) do not count.
    pub attempts: u32,
    /// How often the task was deferred without an attempt.
    #[serde(default)]
    pub deferrals: u32,
    /// The tier this record was written to (1-based).
    pub tier: u32,
    /// When the next attempt is due, in milliseconds since the Unix epoch. Records of one tier
    /// partition are written in (nearly) due order, so a tier consumer waits on its head.
    pub due_at_ms: i64,
    /// `due_at_ms` as RFC 3339, for people reading the topic.
    pub due_at: String,
    /// When the first attempt was made, if one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_attempt_at: Option<String>,
    /// The code of the last attempt (`HTTP_503`, `TIMEOUT`, …), if one was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_code: Option<String>,
    /// The HTTP status of the last attempt, when the endpoint answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status: Option<u16>,
    /// Where the event was read from (the dead letter names it if delivery fails for good).
    pub source: SourceCoordinates,
    /// The source record's key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The source record's value: the core event as JSON text.
    pub event: String,
    /// Set when the task is a replay or recovery asked for through the API (not an automatic
    /// retry): the delivery is sent again with the same `webhook-id` and a new attempt record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay: Option<Replay>,
    /// Set when the task is a batched delivery (an endpoint with `batch`): every event of the
    /// batch, in the order they were sent, so the batch is retried as a whole with the same
    /// `webhook-id`. `event_id`, `source`, `key` and `event` then repeat the first member.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub batch: Vec<BatchMember>,
}

/// One event of a batched delivery task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchMember {
    /// The core event's `_event_id`.
    pub event_id: String,
    /// Where the event was read from.
    pub source: SourceCoordinates,
    /// The source record's key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The source record's value: the core event as JSON text.
    pub event: String,
}

/// What a replayed delivery sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Replay {
    /// Names this replay: part of its attempt spans' ids, so two replays of one delivery are
    /// two attempt records while a replay redone after a crash repeats its span id.
    pub replay_id: String,
    /// The body to send verbatim (`reapply_transform: false`: the previously delivered body);
    /// `None` runs the endpoint's current filter and transform on the original event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_tolerates_missing_optional_fields() {
        let task = DeliveryTask {
            webhook_config_id: "w".into(),
            org_id: "o".into(),
            webhook_id: "msg_1".into(),
            event_id: "1".into(),
            attempts: 1,
            deferrals: 0,
            tier: 1,
            due_at_ms: 5,
            due_at: "1970-01-01T00:00:00.005Z".into(),
            first_attempt_at: None,
            last_code: Some("HTTP_503".into()),
            last_status: Some(503),
            source: SourceCoordinates {
                topic: "erp.core.events".into(),
                partition: 0,
                offset: 7,
            },
            key: None,
            event: "{}".into(),
            batch: Vec::new(),
            replay: Some(Replay {
                replay_id: "r".into(),
                body: None,
            }),
        };
        let bytes = crate::error::encode("task", &task).expect("encodes");
        assert_eq!(
            crate::error::decode::<DeliveryTask>("task", &bytes).expect("decodes"),
            task
        );
        let minimal = br#"{"webhook_config_id":"w","org_id":"o","webhook_id":"m","event_id":"e",
            "attempts":0,"tier":1,"due_at_ms":0,"due_at":"","source":{"topic":"t","partition":0,"offset":0},"event":"{}"}"#;
        assert!(crate::error::decode::<DeliveryTask>("task", minimal).is_ok());
    }
}
