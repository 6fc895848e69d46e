//! Batched delivery: an endpoint that sets `batch: {maxEvents}` (our extension of
//! `WebhookConfig`) receives up to `maxEvents` events per request, as a JSON array of the bodies
//! it would otherwise receive one by one (each after the endpoint's filters and transform), so a
//! stream of thousands of meter readings per second needs only a fraction of the requests.
//!
//! A batch is formed from the events of one main-path poll batch for one endpoint, in the order
//! they were read; nothing waits for more events, so batching adds no delay and the main path's
//! commit order is untouched. Its `webhook-id` is derived from its members' event ids, so the
//! same members always make the same id: a batch redone after a crash, or retried from a tier,
//! carries the id it had. A batch that fails retryably goes to the retry tiers as *one* task
//! holding every member, and is sent again as the same batch; terminal outcomes (dead letters,
//! parking, a 410) apply to every member. Each member gets its own attempt span, naming the
//! batch's id in `batch_webhook_id`.

use std::sync::Arc;

use erp_runtime::ConfigState;
use erp_schemas::delivery_task::{BatchMember, DeliveryTask};
use erp_schemas::ids::derived_uuid;
use erp_schemas::monitoring::Level;
use erp_schemas::timestamp::now_rfc3339;

use super::outputs::Outputs;
use super::pipeline::{Core, Event, Job, Outcome, Ready, Sent};
use super::record::{dead_letter, deferral_tier};
use crate::delivery::{Attempt, AttemptResult};
use crate::error::DispatcherError;
use erp_webhooks::endpoint::EndpointConfig;
use erp_webhooks::settings::BatchConfig;

/// The `webhook-id` of a batch: `msg_batch_` and a UUID derived from its members' event ids in
/// order. The same members make the same id, on every attempt and after a crash.
pub fn webhook_id<'a>(event_ids: impl IntoIterator<Item = &'a str>) -> String {
    let mut parts = vec!["webhook-batch"];
    parts.extend(event_ids);
    format!("msg_batch_{}", derived_uuid(&parts))
}

/// The body of a batch: a JSON array of the members' bodies (each JSON), in order.
pub fn body<'a>(bodies: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    erp_schemas::wire::json_array(bodies)
}

impl Core {
    /// Separates the jobs sent in batches from the others. On the main path the jobs of an
    /// endpoint with `batch` form one group (in reading order); in a tier, the members of one
    /// batch task do. Replays are always sent on their own.
    pub(super) fn batches(&self, jobs: Vec<Job>, tier: u32) -> (Vec<Job>, Vec<Vec<Job>>) {
        let mut singles = Vec::new();
        let mut groups: Vec<(String, Vec<Job>)> = Vec::new();
        for job in jobs {
            let key = if tier == 0 {
                // Read from the stored configuration, not through `endpoint_config`: its cache
                // is for endpoints with their `{{env.*}}` references resolved, and an unresolved
                // entry of the same revision must not land in it.
                let batched = job.replay.is_none()
                    && BatchConfig::parse(&job.endpoint.webhook.extra)
                        .is_ok_and(|batch| batch.is_some());
                batched.then(|| job.endpoint.webhook.id.clone())
            } else {
                // Two endpoints may hold batches of the same events, hence of the same id.
                job.batch_id
                    .as_deref()
                    .map(|id| format!("{}/{id}", job.endpoint.webhook.id))
            };
            let Some(key) = key else {
                singles.push(job);
                continue;
            };
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, members)) => members.push(job),
                None => groups.push((key, vec![job])),
            }
        }
        (singles, groups.into_iter().map(|(_, g)| g).collect())
    }

    /// Delivers one group: each member through the endpoint's filters and transform, then the
    /// ones left in requests of at most `maxEvents`. One outcome per member.
    pub(super) async fn handle_batch(
        &self,
        members: Vec<Job>,
        out: &mut Outputs,
    ) -> Result<Vec<Outcome>, DispatcherError> {
        let mut outcomes = Vec::with_capacity(members.len());
        let prepared = futures::future::join_all(members.into_iter().map(|job| async move {
            let mut out = Outputs::default();
            let ready = self.prepare(job, &mut out).await;
            (ready, out)
        }))
        .await;
        let mut ready = Vec::new();
        let mut config = None;
        for (result, records) in prepared {
            out.extend(records);
            match result? {
                Ready::Send(job, parsed) => {
                    config = Some(parsed);
                    ready.push(*job);
                }
                Ready::Ended(outcome) => outcomes.push(outcome),
            }
        }
        let Some(config) = config else {
            return Ok(outcomes);
        };
        // An endpoint that turned batching off while a batch waited in a tier gets its members
        // one by one, as any other delivery.
        let Some(batch) = config.batch else {
            for job in ready {
                outcomes.push(self.send_prepared(job, &config, out).await?);
            }
            return Ok(outcomes);
        };
        let mut chunks = Vec::new();
        let mut rest = ready;
        while !rest.is_empty() {
            let tail = rest.split_off(rest.len().min(batch.max_events));
            chunks.push(std::mem::replace(&mut rest, tail));
        }
        let sent = futures::future::join_all(chunks.into_iter().map(|chunk| {
            let config = Arc::clone(&config);
            async move {
                let mut out = Outputs::default();
                let outcomes = self.send_batch(chunk, &config, &mut out).await;
                (outcomes, out)
            }
        }))
        .await;
        for (result, records) in sent {
            outcomes.extend(result?);
            out.extend(records);
        }
        Ok(outcomes)
    }

    /// One request carrying `chunk` (not empty), and what follows from its answer.
    async fn send_batch(
        &self,
        mut chunk: Vec<Job>,
        config: &EndpointConfig,
        out: &mut Outputs,
    ) -> Result<Vec<Outcome>, DispatcherError> {
        let Some(first) = chunk.first() else {
            return Ok(Vec::new());
        };
        let message_id: Arc<str> =
            Arc::from(webhook_id(chunk.iter().map(|j| j.head.event_id.as_str())));
        let body = body(chunk.iter().map(|j| &*j.body));
        let endpoint = first.endpoint.clone();
        let from_tier = first.tier > 0;
        let deferrals = first.deferrals;
        for job in &mut chunk {
            job.batch_id = Some(Arc::clone(&message_id));
        }
        let n = chunk.len();
        match self
            .send_once(
                &endpoint,
                config,
                &message_id,
                &body,
                from_tier,
                deferrals,
                false,
            )
            .await
        {
            Sent::Interrupted => Ok(vec![Outcome::Interrupted; n]),
            Sent::Deferred(reason) => {
                for job in &mut chunk {
                    job.deferrals += 1;
                }
                let tier = deferral_tier(reason, first_tier(&chunk));
                self.write_batch_task(&chunk, &message_id, tier, None, reason, out)
                    .await?;
                Ok(vec![Outcome::Deferred; n])
            }
            Sent::Attempt(attempt) => self.after_batch_attempt(chunk, attempt, out).await,
        }
    }

    /// Records a batch's attempt: a retryable failure with retries left sends the whole batch
    /// to a tier as one task; anything else ends each member as a single delivery would end.
    async fn after_batch_attempt(
        &self,
        mut chunk: Vec<Job>,
        attempt: Attempt,
        out: &mut Outputs,
    ) -> Result<Vec<Outcome>, DispatcherError> {
        let attempts = chunk.first().map_or(0, |j| j.attempts) + 1;
        let allowed = chunk.first().map_or(0, |j| {
            self.schedule
                .retries_allowed(j.endpoint.webhook.retry_policy)
        });
        if let AttemptResult::Retryable { retry_after, .. } = &attempt.result
            && attempts <= allowed
        {
            let attempted_at = now_rfc3339();
            for job in &mut chunk {
                job.attempts = attempts;
                job.first_attempt_at
                    .get_or_insert_with(|| attempted_at.clone());
            }
            let tier = self.schedule.tier_for(attempts, *retry_after);
            let message_id = chunk
                .first()
                .and_then(|j| j.batch_id.clone())
                .unwrap_or_default();
            let due = self
                .write_batch_task(
                    &chunk,
                    &message_id,
                    tier,
                    Some(&attempt.result),
                    "retry",
                    out,
                )
                .await?;
            for job in &chunk {
                self.attempt_span(
                    job,
                    &attempt,
                    Level::Warning,
                    Outcome::Scheduled,
                    Some((tier, due)),
                    out,
                )
                .await?;
            }
            return Ok(vec![Outcome::Scheduled; chunk.len()]);
        }
        let mut outcomes = Vec::with_capacity(chunk.len());
        for job in chunk {
            outcomes.push(self.after_attempt(job, attempt.clone(), out).await?);
        }
        Ok(outcomes)
    }

    /// Writes a batch as one delivery task holding every member.
    async fn write_batch_task(
        &self,
        chunk: &[Job],
        message_id: &str,
        tier: u32,
        last: Option<&AttemptResult>,
        reason: &str,
        out: &mut Outputs,
    ) -> Result<i64, DispatcherError> {
        let Some(first) = chunk.first() else {
            return Ok(0);
        };
        let task = DeliveryTask {
            webhook_id: message_id.to_owned(),
            batch: chunk
                .iter()
                .map(|job| BatchMember {
                    event_id: job.head.event_id.clone(),
                    source: job.source.clone(),
                    key: job.key.clone(),
                    event: job.event.to_string(),
                })
                .collect(),
            ..self.task(first, tier, last)
        };
        self.enqueue_task(&task, reason, out).await
    }

    /// Turns a batch task into one job per member (grouped again by `batch_id`), or parks the
    /// members when the endpoint is gone or disabled. Returns how many were parked.
    pub(super) async fn route_batch_task(
        &self,
        config: &ConfigState,
        tier: u32,
        task: DeliveryTask,
        jobs: &mut Vec<Job>,
        out: &mut Outputs,
    ) -> Result<u64, DispatcherError> {
        let batch_id: Arc<str> = Arc::from(task.webhook_id.as_str());
        let endpoint = config.webhook(&task.org_id, &task.webhook_config_id);
        let mut parked = 0;
        for member in task.batch {
            let Some(event) = Event::read(member.event.as_bytes()) else {
                let letter = dead_letter(
                    "POISON_RECORD",
                    "a batch member is not a core event",
                    member.source,
                    member.key,
                    member.event.as_bytes(),
                    None,
                    Some(&task.webhook_config_id),
                );
                self.enqueue_dead_letter(&letter, out).await?;
                continue;
            };
            match endpoint {
                Some(entry) if entry.webhook.enabled => jobs.push(Job {
                    head: Arc::clone(&event.head),
                    endpoint: entry.clone(),
                    body: event.body(),
                    event: Arc::clone(&event.text),
                    source: member.source,
                    key: member.key,
                    attempts: task.attempts,
                    deferrals: task.deferrals,
                    first_attempt_at: task.first_attempt_at.clone(),
                    tier,
                    replay: None,
                    transformed: false,
                    ordered: false,
                    batch_id: Some(Arc::clone(&batch_id)),
                    recording: Default::default(),
                }),
                found => {
                    self.park(
                        found,
                        &task.webhook_config_id,
                        &event,
                        member.source,
                        member.key,
                        out,
                    )
                    .await?;
                    parked += 1;
                }
            }
        }
        Ok(parked)
    }
}

/// Where a deferred batch waits: the first tier from the main path, its own tier from a tier.
fn first_tier(chunk: &[Job]) -> u32 {
    chunk.first().map_or(1, |j| j.tier.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn the_id_follows_the_members_and_the_body_is_their_array() {
        assert_eq!(webhook_id(["a", "b"]), webhook_id(["a", "b"]));
        assert_ne!(webhook_id(["a", "b"]), webhook_id(["b", "a"]));
        assert_ne!(webhook_id(["a"]), webhook_id(["a", "b"]));
        assert!(webhook_id(["a"]).starts_with("msg_batch_"));
        let bytes = body([&b"{\"a\":1}"[..], &b"2"[..]]);
        assert_eq!(
            serde_json::from_slice::<Value>(&bytes).ok(),
            Some(json!([{"a": 1}, 2]))
        );
    }
}
