//! Ordered endpoints: the lane driver's way through admission, sending and recording.

use std::collections::BTreeMap;
use std::sync::Arc;

use rdkafka::message::{Message, OwnedMessage};
use serde_json::Value;

use erp_runtime::ConfigState;
use erp_schemas::dead_letter::SourceCoordinates;

use crate::error::DispatcherError;
use crate::ordering::{self, LaneEntry, Put, Step};
use erp_webhooks::settings::ordering::is_ordered;

use super::outputs::Outputs;
use super::pipeline::*;
use super::record::dead_letter;

/// How a lane driver delivers its head: through [`Core::attempt_held`] while the dispatcher
/// runs.
pub(super) fn deliver_held(core: &Arc<Core>) -> ordering::DeliverFn {
    let core = Arc::downgrade(core);
    Arc::new(move |entry| {
        let core = core.clone();
        Box::pin(async move {
            match core.upgrade() {
                Some(core) => core.attempt_held(entry).await,
                None => Ok(Step::Interrupted),
            }
        })
    })
}

/// Per-key ordering: admission to lanes and the attempt of a lane's head (see `ordering`).
impl Core {
    /// Appends the deliveries of `batch` to endpoints with per-key ordering to their lanes;
    /// returns the lane records to persist before the batch is committed.
    pub(super) fn admit_ordered(
        &self,
        config: &ConfigState,
        batch: &[OwnedMessage],
    ) -> Result<Vec<Put>, DispatcherError> {
        let mut puts = Vec::new();
        let mut read: BTreeMap<i32, i64> = BTreeMap::new();
        for message in batch {
            let last = read.entry(message.partition()).or_insert(-1);
            *last = (*last).max(message.offset());
        }
        if !config.any_webhook(|e| e.webhook.enabled && is_ordered(&e.webhook.extra)) {
            for (partition, offset) in read {
                self.lanes.advance(partition, offset);
            }
            return Ok(puts);
        }
        for message in batch {
            let Some(event) = Event::read(message.payload().unwrap_or_default()) else {
                continue;
            };
            let head = &event.head;
            // The same endpoints `route` picks, so each delivery takes exactly one of the paths.
            let targets = match event.value.get("_delivery") {
                Some(delivery)
                    if delivery.get("type").and_then(Value::as_str) != Some("webhook") =>
                {
                    continue;
                }
                Some(delivery) => {
                    let id = delivery
                        .get("webhook_id")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    config
                        .webhook(&head.org_id, id)
                        .filter(|e| e.webhook.enabled)
                        .into_iter()
                        .collect()
                }
                None => config.subscribers(&head.org_id, &head.event_name),
            };
            for endpoint in targets {
                if !is_ordered(&endpoint.webhook.extra) {
                    continue;
                }
                let entry = LaneEntry {
                    webhook_config_id: endpoint.webhook.id.clone(),
                    org_id: head.org_id.clone(),
                    key: message
                        .key()
                        .map(|k| String::from_utf8_lossy(k).into_owned()),
                    source: SourceCoordinates {
                        topic: message.topic().to_owned(),
                        partition: message.partition(),
                        offset: message.offset(),
                    },
                    event: event.text.to_string(),
                    attempts: 0,
                    deferrals: 0,
                    first_attempt_at: None,
                    due_at_ms: 0,
                };
                puts.extend(self.lanes.admit(entry)?);
            }
        }
        for (partition, offset) in read {
            self.lanes.advance(partition, offset);
        }
        Ok(puts)
    }

    /// One attempt of a lane's head with the current configuration, recorded (span, dead letter)
    /// before it returns.
    pub(super) async fn attempt_held(&self, entry: LaneEntry) -> Result<Step, DispatcherError> {
        let config = self.view.snapshot();
        let mut out = Outputs::default();
        let Some(event) = Event::read(entry.event.as_bytes()) else {
            // Only core events are admitted; should one not read, it is still kept.
            let letter = dead_letter(
                "POISON_RECORD",
                "a held delivery does not carry a core event",
                entry.source,
                entry.key,
                entry.event.as_bytes(),
                None,
                Some(&entry.webhook_config_id),
            );
            self.enqueue_dead_letter(&letter, &mut out).await?;
            out.settle(&self.producer, &self.topics.monitoring())
                .await?;
            return Ok(Step::Done);
        };
        let outcome = match config.webhook(&entry.org_id, &entry.webhook_config_id) {
            Some(endpoint) if endpoint.webhook.enabled => {
                let job = Job {
                    head: Arc::clone(&event.head),
                    endpoint: endpoint.clone(),
                    body: event.body(),
                    event: Arc::clone(&event.text),
                    source: entry.source,
                    key: entry.key,
                    attempts: entry.attempts,
                    deferrals: entry.deferrals,
                    first_attempt_at: entry.first_attempt_at,
                    tier: 0,
                    replay: None,
                    transformed: false,
                    ordered: true,
                    batch_id: None,
                    recording: Default::default(),
                };
                self.handle(job, &mut out).await?
            }
            // Disabled or deleted while the event was held: parked like a tier task.
            found => {
                self.park(
                    found,
                    &entry.webhook_config_id,
                    &event,
                    entry.source,
                    entry.key,
                    &mut out,
                )
                .await?;
                Outcome::Parked
            }
        };
        if outcome == Outcome::Interrupted {
            return Ok(Step::Interrupted);
        }
        out.settle(&self.producer, &self.topics.monitoring())
            .await?;
        let label = match outcome {
            Outcome::Held {
                due_at_ms,
                attempted,
            } => {
                return Ok(Step::Retry {
                    due_at_ms,
                    attempted,
                });
            }
            Outcome::Delivered => "delivered",
            Outcome::Failed => "failed",
            Outcome::Parked => "parked",
            Outcome::Skipped => "skipped",
            _ => return Ok(Step::Done),
        };
        self.metrics.deliveries.with_label_values(&[label]).inc();
        Ok(Step::Done)
    }
}
