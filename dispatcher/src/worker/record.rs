//! Record: the outcome of an attempt: a span, a retry task, a dead letter, a disabled endpoint.

use std::time::Duration;

use serde_json::{Value, json};
use tracing::{debug, warn};

use erp_runtime::config::WebhookEntry;
use erp_runtime::kafka;
use erp_schemas::config::{ConfigChange, ConfigRecord};
use erp_schemas::dead_letter::{DeadLetter, SourceCoordinates};
use erp_schemas::delivery_task::DeliveryTask;
use erp_schemas::ids::derived_uuid;
use erp_schemas::monitoring::{Level, MonitoringSpan};
use erp_schemas::timestamp::{format_millis, now_millis, now_rfc3339};

use crate::delivery::{self, Attempt, AttemptResult};
use crate::error::DispatcherError;

use super::admit::CIRCUIT_OPEN_TOO_LONG;
use super::outputs::Outputs;
use super::pipeline::*;
use super::settings::DISABLED_REASON;

/// How often a disable is decided again when the endpoint changed under it.
const DISABLE_TRIES: usize = 3;

/// What an attempt's answer means for its delivery; the record stage acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Decision {
    /// 2xx: done.
    Delivered,
    /// 410 Gone: disable the endpoint, park the event.
    Disable,
    /// Another 4xx, or a retryable failure with the retries used up: a dead letter.
    DeadLetter,
    /// Retryable, for an endpoint with per-key order: the head waits in its lane.
    Hold { retry_after: Option<Duration> },
    /// Retryable: to the retry tier the attempt count and `Retry-After` call for.
    Retry { retry_after: Option<Duration> },
}

/// Decides what follows an answer, after `attempts` attempts of which `retries_allowed` may be
/// retries (epilot's `maxAttempts` counts retries after the first attempt).
pub(super) fn decide(
    result: &AttemptResult,
    attempts: u32,
    retries_allowed: u32,
    ordered: bool,
) -> Decision {
    match result {
        AttemptResult::Delivered { .. } => Decision::Delivered,
        AttemptResult::Gone { .. } => Decision::Disable,
        AttemptResult::Terminal { .. } => Decision::DeadLetter,
        AttemptResult::Retryable { .. } if attempts > retries_allowed => Decision::DeadLetter,
        AttemptResult::Retryable { retry_after, .. } if ordered => Decision::Hold {
            retry_after: *retry_after,
        },
        AttemptResult::Retryable { retry_after, .. } => Decision::Retry {
            retry_after: *retry_after,
        },
    }
}

/// The tier a deferred delivery goes to from `tier`. One held back by an open breaker goes to the
/// first tier, from any tier: it then comes back every first-tier wait, so once the breaker is
/// half-open a probe goes out within that wait and, after the probe succeeded, the held
/// deliveries follow at the endpoint's pace (its rate limit and cap) instead of a later tier's
/// wait. A busy endpoint's deferral stays in its tier.
pub(super) fn deferral_tier(reason: &str, tier: u32) -> u32 {
    if reason == "circuit_open" { 1 } else { tier }
}

impl Core {
    /// Records that the endpoint's filters skipped an event: a `skipped` span, no attempt.
    pub(super) async fn skip(
        &self,
        job: &Job,
        out: &mut Outputs,
    ) -> Result<Outcome, DispatcherError> {
        let head = &job.head;
        let webhook = &job.endpoint.webhook;
        let span = MonitoringSpan {
            // One per event and endpoint: a skip redone after a crash or in a tier repeats it.
            id: derived_uuid(&[
                &head.event_id,
                "dispatcher",
                &webhook.id,
                &job.span_suffix("filtered"),
            ]),
            org_id: head.org_id.clone(),
            integration_id: head.integration_id.clone(),
            event_id: head.trace_event_id.clone(),
            correlation_id: head.correlation_id.clone(),
            use_case_id: head.use_case_id.clone(),
            use_case_type: head.use_case_type.clone(),
            level: Level::Skipped,
            code: "EVENT_FILTERED".into(),
            message: format!(
                "not sent to webhook {}: the event does not pass its filter",
                webhook.name
            ),
            detail: json!({
                "stage": "dispatcher",
                "outcome": "skipped",
                "core_event_id": head.event_id,
                "event_name": head.event_name,
                "webhook_config_id": webhook.id,
                "webhook_id": delivery::webhook_id(&head.event_id),
                "url": job.shown_url(),
                "http_method": webhook.http_method,
                "attempt": job.attempts,
                "source": job.source,
                "replay_id": job.replay.as_ref().map(|r| &r.replay_id),
            }),
            created_at: now_rfc3339(),
        };
        out.span(span);
        Ok(Outcome::Skipped)
    }

    /// Records an attempt and moves the job on: done, next tier, or dead letter.
    pub(super) async fn after_attempt(
        &self,
        mut job: Job,
        attempt: Attempt,
        out: &mut Outputs,
    ) -> Result<Outcome, DispatcherError> {
        job.attempts += 1;
        let attempted_at = now_rfc3339();
        job.first_attempt_at
            .get_or_insert_with(|| attempted_at.clone());
        let allowed = self
            .schedule
            .retries_allowed(job.endpoint.webhook.retry_policy);
        let (level, outcome, next) = match decide(
            &attempt.result,
            job.attempts,
            allowed,
            job.ordered,
        ) {
            Decision::Delivered => (Level::Success, Outcome::Delivered, None),
            Decision::Disable => {
                self.disable(&job.endpoint).await;
                let letter = dead_letter(
                    "WEBHOOK_DISABLED",
                    &format!(
                        "webhook {} answered 410 Gone: the endpoint was disabled and this event parked",
                        job.endpoint.webhook.id
                    ),
                    job.source.clone(),
                    job.key.clone(),
                    job.event.as_bytes(),
                    Some(&job.head),
                    Some(&job.endpoint.webhook.id),
                );
                self.enqueue_dead_letter(&letter, out).await?;
                (Level::Error, Outcome::Parked, None)
            }
            Decision::DeadLetter => {
                self.dead_letter_failure(&job, &attempt.result, out).await?;
                (Level::Error, Outcome::Failed, None)
            }
            Decision::Hold { retry_after } => {
                // The head stays in its lane and blocks only its key; the tier number names
                // the wait.
                let tier = self.schedule.tier_for(job.attempts, retry_after);
                let due_at_ms = self.schedule.due_at(tier, now_millis());
                let held = Outcome::Held {
                    due_at_ms,
                    attempted: true,
                };
                (Level::Warning, held, Some((tier, due_at_ms)))
            }
            Decision::Retry { retry_after } => {
                let tier = self.schedule.tier_for(job.attempts, retry_after);
                let due = self
                    .write_task(&job, tier, Some(&attempt.result), "retry", out)
                    .await?;
                (Level::Warning, Outcome::Scheduled, Some((tier, due)))
            }
        };
        self.attempt_span(&job, &attempt, level, outcome, next, out)
            .await?;
        Ok(outcome)
    }

    /// Sends a job to a retry tier without an attempt: the first tier from the main path, the
    /// same tier from a tier, the first tier whenever the breaker was open (see
    /// [`deferral_tier`]).
    pub(super) async fn defer(
        &self,
        mut job: Job,
        reason: &str,
        out: &mut Outputs,
    ) -> Result<Outcome, DispatcherError> {
        if job.ordered {
            // Saturated: the head tries again shortly, still first in its lane.
            let wait = i64::try_from(self.settings.endpoint_queue_wait.as_millis()).unwrap_or(0);
            return Ok(Outcome::Held {
                due_at_ms: now_millis() + wait,
                attempted: false,
            });
        }
        job.deferrals += 1;
        let tier = deferral_tier(reason, job.tier.max(1));
        self.write_task(&job, tier, None, reason, out).await?;
        debug!(
            event_id = job.head.event_id,
            webhook = job.endpoint.webhook.id,
            reason,
            tier,
            "delivery deferred"
        );
        Ok(Outcome::Deferred)
    }

    /// Writes a job as a delivery task to `tier`; returns when it is due (ms).
    pub(super) async fn write_task(
        &self,
        job: &Job,
        tier: u32,
        last: Option<&AttemptResult>,
        reason: &str,
        out: &mut Outputs,
    ) -> Result<i64, DispatcherError> {
        self.enqueue_task(&self.task(job, tier, last), reason, out)
            .await
    }

    /// The delivery task of a job for `tier`, due after the tier's wait.
    pub(super) fn task(&self, job: &Job, tier: u32, last: Option<&AttemptResult>) -> DeliveryTask {
        let due_at_ms = self.schedule.due_at(tier, now_millis());
        DeliveryTask {
            webhook_config_id: job.endpoint.webhook.id.clone(),
            org_id: job.head.org_id.clone(),
            webhook_id: delivery::webhook_id(&job.head.event_id),
            event_id: job.head.event_id.clone(),
            attempts: job.attempts,
            deferrals: job.deferrals,
            tier,
            due_at_ms,
            due_at: format_millis(due_at_ms),
            first_attempt_at: job.first_attempt_at.clone(),
            last_code: last.map(|r| r.code().to_owned()),
            last_status: last.and_then(AttemptResult::status),
            source: job.source.clone(),
            key: job.key.clone(),
            event: job.event.to_string(),
            replay: job.replay.clone(),
            batch: Vec::new(),
        }
    }

    /// Writes a delivery task to its tier; returns when it is due (ms).
    pub(super) async fn enqueue_task(
        &self,
        task: &DeliveryTask,
        reason: &str,
        out: &mut Outputs,
    ) -> Result<i64, DispatcherError> {
        let bytes = erp_schemas::error::encode("delivery task", task)?;
        out.push(
            kafka::enqueue(
                &self.producer,
                &self.topics.retry(task.tier),
                &task.webhook_config_id,
                &bytes,
            )
            .await?,
        );
        self.metrics
            .scheduled
            .with_label_values(&[&task.tier.to_string(), reason])
            .inc();
        Ok(task.due_at_ms)
    }

    /// A failed delivery's dead letter, naming the answer that ended it.
    pub(super) async fn dead_letter_failure(
        &self,
        job: &Job,
        result: &AttemptResult,
        out: &mut Outputs,
    ) -> Result<(), DispatcherError> {
        let status = result
            .status()
            .map_or_else(|| "none".to_owned(), |s| s.to_string());
        // A delivery the breaker held back past the schedule never got its last answer: its
        // own code says so, so an operator recovers it knowing the endpoint was down.
        let code = match result.code() {
            CIRCUIT_OPEN_TOO_LONG => CIRCUIT_OPEN_TOO_LONG,
            _ => "DELIVERY_FAILED",
        };
        let reason = format!(
            "{}: {} (attempt {}, last status {status}, endpoint {})",
            result.code(),
            result.message(),
            job.attempts,
            job.shown_url().unwrap_or_default()
        );
        let letter = dead_letter(
            code,
            &job.recording.secrets.redact(&reason),
            job.source.clone(),
            job.key.clone(),
            job.event.as_bytes(),
            Some(&job.head),
            Some(&job.endpoint.webhook.id),
        );
        self.enqueue_dead_letter(&letter, out).await
    }

    /// Disables an endpoint that answered 410 Gone, through the configuration log like any
    /// other change. A failure is logged, not fatal: the event is parked either way, and the
    /// next 410 tries again.
    ///
    /// The change is based on the endpoint's revision in this process's view: if the API
    /// changed the endpoint first (a secret rotation, a new url), every fold skips the disable
    /// rather than let it restore what the API replaced, and it is decided again on the
    /// endpoint as it now is.
    pub(super) async fn disable(&self, entry: &WebhookEntry) {
        let _exclusive = self.writer.exclusive().await;
        for _ in 0..DISABLE_TRIES {
            let config = self.view.snapshot();
            let Some(current) = config.webhook(&entry.org_id, &entry.webhook.id) else {
                return;
            };
            if !current.webhook.enabled {
                return;
            }
            let mut webhook = current.webhook.clone();
            webhook.enabled = false;
            webhook.updated_time = now_rfc3339();
            webhook
                .extra
                .insert("status".into(), Value::String("inactive".into()));
            webhook.extra.insert(
                DISABLED_REASON.into(),
                Value::String("HTTP_410_GONE".into()),
            );
            let record = ConfigRecord {
                org_id: current.org_id.clone(),
                at: now_rfc3339(),
                actor: Some("erp-toolkit-dispatcher".into()),
                base_revision: Some(current.revision),
                change: ConfigChange::WebhookUpserted {
                    webhook,
                    signing_secret: current.signing_secret.clone(),
                    previous_secrets: current.previous_secrets.clone(),
                },
            };
            match self.writer.append(&record).await {
                Ok(_) => {
                    warn!(
                        webhook = entry.webhook.id,
                        "endpoint answered 410 Gone; disabled it"
                    );
                    self.metrics
                        .endpoints_disabled
                        .with_label_values(&["HTTP_410_GONE"])
                        .inc();
                    return;
                }
                // The view has applied the other writer's change by now: decide again.
                Err(erp_runtime::RuntimeError::Conflict { .. }) => {
                    debug!(
                        webhook = entry.webhook.id,
                        "endpoint changed while being disabled; deciding again"
                    );
                }
                Err(error) => {
                    warn!(webhook = entry.webhook.id, %error, "cannot disable endpoint");
                    return;
                }
            }
        }
        warn!(
            webhook = entry.webhook.id,
            "endpoint kept changing while being disabled; the next 410 tries again"
        );
    }

    /// The monitoring span of one attempt.
    pub(super) async fn attempt_span(
        &self,
        job: &Job,
        attempt: &Attempt,
        level: Level,
        outcome: Outcome,
        next: Option<(u32, i64)>,
        out: &mut Outputs,
    ) -> Result<(), DispatcherError> {
        let head = &job.head;
        let webhook = &job.endpoint.webhook;
        let number = job.attempts.to_string();
        let outcome = match outcome {
            Outcome::Delivered => "delivered",
            Outcome::Failed => "dead_lettered",
            Outcome::Parked => "parked",
            _ => "retry_scheduled",
        };
        let message = match &attempt.result {
            AttemptResult::Delivered { status } => {
                format!("delivered to webhook {} ({status})", webhook.name)
            }
            other => format!("webhook {}: {}", webhook.name, other.message()),
        };
        // Errors and echoed bodies may carry what was sent (the sender redacted what it knew;
        // the job also knows the environment's secrets).
        let secrets = &job.recording.secrets;
        let message = secrets.redact(&message).into_owned();
        let response_body = secrets.redact_excerpt(&attempt.response_body, attempt.body_truncated);
        let retry_after = match &attempt.result {
            AttemptResult::Retryable { retry_after, .. } => retry_after.map(|r| r.as_secs()),
            _ => None,
        };
        let span = MonitoringSpan {
            // Derived from the attempt, so a batch redone after a crash repeats the span id and
            // readers can drop the copy.
            id: derived_uuid(&[
                &head.event_id,
                "dispatcher",
                &webhook.id,
                &job.span_suffix(&number),
            ]),
            org_id: head.org_id.clone(),
            integration_id: head.integration_id.clone(),
            event_id: head.trace_event_id.clone(),
            correlation_id: head.correlation_id.clone(),
            use_case_id: head.use_case_id.clone(),
            use_case_type: head.use_case_type.clone(),
            level,
            code: attempt.result.code().to_owned(),
            message,
            detail: json!({
                "stage": "dispatcher",
                "outcome": outcome,
                "core_event_id": head.event_id,
                "event_name": head.event_name,
                "webhook_config_id": webhook.id,
                "webhook_id": delivery::webhook_id(&head.event_id),
                // Sent in a batch: the request's `webhook-id` (the event's own id above is what a
                // replay of this event alone carries).
                "batch_webhook_id": job.batch_id.as_deref(),
                "url": job.shown_url(),
                "attempt": job.attempts,
                "deferrals": job.deferrals,
                "status_code": attempt.result.status(),
                "response_body": response_body,
                "response_body_truncated": attempt.body_truncated,
                "duration_ms": attempt.duration.as_millis() as u64,
                "retry_after_secs": retry_after,
                "retry_tier": next.map(|(tier, _)| tier),
                "next_attempt_at": next.map(|(_, due)| format_millis(due)),
                "http_method": webhook.http_method,
                // Where the event can be read again: the attempt log's payload and replays.
                "source": job.source,
                "replay_id": job.replay.as_ref().map(|r| &r.replay_id),
                // Only a transformed body is kept (the original event is at `source`); a large
                // one is left out and a replay then runs the transform again.
                "transformed": job.transformed,
                "sent_body": (job.transformed && job.body.len() <= self.settings.max_response_body)
                    .then(|| String::from_utf8_lossy(&job.body).into_owned()),
            }),
            created_at: now_rfc3339(),
        };
        out.span(span);
        Ok(())
    }

    /// Hands a dead letter to the producer; its delivery is awaited with the batch.
    pub(super) async fn enqueue_dead_letter(
        &self,
        letter: &DeadLetter,
        out: &mut Outputs,
    ) -> Result<(), DispatcherError> {
        let bytes = erp_schemas::error::encode("dead letter", letter)?;
        self.metrics
            .dead_letters
            .with_label_values(&[letter.stage.as_str(), letter.code.as_str()])
            .inc();
        out.push(
            kafka::enqueue(
                &self.producer,
                &self.topics.dlq(),
                letter.key.as_deref().unwrap_or_default(),
                &bytes,
            )
            .await?,
        );
        Ok(())
    }
}

/// A dead letter of a core event, with its source coordinates.
pub(super) fn dead_letter(
    code: &str,
    reason: &str,
    source: SourceCoordinates,
    key: Option<String>,
    value: &[u8],
    head: Option<&EventHead>,
    webhook_id: Option<&str>,
) -> DeadLetter {
    DeadLetter {
        stage: "dispatcher".into(),
        code: code.into(),
        reason: reason.into(),
        source,
        org_id: head.map(|h| h.org_id.clone()),
        integration_id: head
            .map(|h| h.integration_id.clone())
            .filter(|id| !id.is_empty()),
        event_id: head.map(|h| h.event_id.clone()),
        webhook_id: webhook_id.map(str::to_owned),
        key,
        value: String::from_utf8_lossy(value).into_owned(),
        failed_at: now_rfc3339(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retryable(retry_after: Option<Duration>) -> AttemptResult {
        AttemptResult::Retryable {
            code: "HTTP_503".into(),
            message: "endpoint answered 503".into(),
            status: Some(503),
            retry_after,
        }
    }

    #[test]
    fn answers_decide_the_delivery() {
        let delivered = AttemptResult::Delivered { status: 200 };
        assert_eq!(decide(&delivered, 1, 5, false), Decision::Delivered);
        let gone = AttemptResult::Gone {
            message: "gone".into(),
        };
        assert_eq!(decide(&gone, 1, 5, false), Decision::Disable);
        let terminal = AttemptResult::Terminal {
            code: "HTTP_400".into(),
            message: "bad".into(),
            status: Some(400),
        };
        assert_eq!(decide(&terminal, 1, 5, true), Decision::DeadLetter);
    }

    #[test]
    fn retries_go_to_a_tier_or_wait_in_the_lane_until_they_are_used_up() {
        let wait = Some(Duration::from_secs(30));
        assert_eq!(
            decide(&retryable(wait), 1, 5, false),
            Decision::Retry { retry_after: wait }
        );
        assert_eq!(
            decide(&retryable(None), 5, 5, true),
            Decision::Hold { retry_after: None }
        );
        // The first attempt and five retries: the sixth failure ends it.
        assert_eq!(decide(&retryable(None), 6, 5, false), Decision::DeadLetter);
        assert_eq!(decide(&retryable(None), 1, 0, true), Decision::DeadLetter);
    }
}
