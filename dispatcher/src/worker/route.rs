//! Route: a core event (or a retry task) becomes jobs, one per endpoint that should receive it.

use std::sync::Arc;

use serde_json::Value;
use tracing::debug;

use erp_runtime::ConfigState;
use erp_runtime::config::WebhookEntry;
use erp_schemas::dead_letter::SourceCoordinates;
use erp_schemas::delivery_task::DeliveryTask;

use crate::error::DispatcherError;
use erp_webhooks::settings::ordering::is_ordered;

use super::outputs::Outputs;
use super::pipeline::*;
use super::record::dead_letter;
use super::settings::DISABLED_REASON;

/// Where a core event goes.
#[derive(Debug, Default)]
pub(super) struct Targets<'a> {
    /// Endpoints sent to now, in configuration order (an ordered endpoint's deliveries go
    /// through its lanes instead).
    pub(super) send: Vec<&'a WebhookEntry>,
    /// Deliveries parked as dead letters: the endpoint (if it exists) and the id addressed.
    pub(super) park: Vec<(Option<&'a WebhookEntry>, String)>,
}

/// Routes a core event: an outbound message to the one endpoint it is addressed to, any other
/// event to every endpoint of its organisation subscribed to its name. A disabled or missing
/// addressee parks the message; an endpoint the dispatcher disabled (410) parks its events,
/// one a user disabled does not. `None`: not a webhook delivery (poll, file), left to its
/// consumer.
pub(super) fn targets<'a>(config: &'a ConfigState, event: &Event) -> Option<Targets<'a>> {
    let head = &event.head;
    let mut targets = Targets::default();
    if let Some(delivery) = event.value.get("_delivery") {
        if delivery.get("type").and_then(Value::as_str) != Some("webhook") {
            return None;
        }
        let webhook_id = delivery
            .get("webhook_id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match config.webhook(&head.org_id, webhook_id) {
            Some(endpoint) if endpoint.webhook.enabled => {
                if !is_ordered(&endpoint.webhook.extra) {
                    targets.send.push(endpoint);
                }
            }
            found => targets.park.push((found, webhook_id.to_owned())),
        }
        return Some(targets);
    }
    for endpoint in config.webhooks(&head.org_id) {
        if !endpoint.webhook.subscribes_to(&head.event_name) {
            continue;
        }
        if endpoint.webhook.enabled {
            if !is_ordered(&endpoint.webhook.extra) {
                targets.send.push(endpoint);
            }
        } else if endpoint.webhook.extra.contains_key(DISABLED_REASON) {
            targets
                .park
                .push((Some(endpoint), endpoint.webhook.id.clone()));
        }
    }
    Some(targets)
}

impl Core {
    /// Turns a core event into jobs for its endpoints. Returns how many deliveries were parked.
    pub(super) async fn route(
        &self,
        config: &ConfigState,
        source: SourceCoordinates,
        key: Option<String>,
        payload: &[u8],
        jobs: &mut Vec<Job>,
        out: &mut Outputs,
    ) -> Result<u64, DispatcherError> {
        let Some(event) = Event::read(payload) else {
            let letter = dead_letter(
                "POISON_RECORD",
                "not a core event: JSON with _event_id, _event_name and _org_id expected",
                source,
                key,
                payload,
                None,
                None,
            );
            self.enqueue_dead_letter(&letter, out).await?;
            return Ok(0);
        };
        let Some(targets) = targets(config, &event) else {
            // The poll stream and file deliveries consume these from the topic.
            debug!(
                event_id = event.head.event_id,
                "not a webhook delivery; left to its consumer"
            );
            return Ok(0);
        };
        let mut parked = 0;
        for (found, webhook_id) in targets.park {
            self.park(found, &webhook_id, &event, source.clone(), key.clone(), out)
                .await?;
            parked += 1;
        }
        let endpoints = targets.send.into_iter().cloned();
        let body = event.body();
        for endpoint in endpoints {
            jobs.push(Job {
                head: Arc::clone(&event.head),
                endpoint,
                body: Arc::clone(&body),
                event: Arc::clone(&event.text),
                source: source.clone(),
                key: key.clone(),
                attempts: 0,
                deferrals: 0,
                first_attempt_at: None,
                tier: 0,
                replay: None,
                transformed: false,
                ordered: false,
                batch_id: None,
                recording: Default::default(),
            });
        }
        Ok(parked)
    }

    /// Turns a delivery task into a job, or parks it when its endpoint is gone or disabled.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn route_task(
        &self,
        config: &ConfigState,
        tier: u32,
        coordinates: SourceCoordinates,
        key: Option<String>,
        payload: &[u8],
        jobs: &mut Vec<Job>,
        out: &mut Outputs,
    ) -> Result<u64, DispatcherError> {
        let task = match erp_schemas::error::decode::<DeliveryTask>("delivery task", payload) {
            Ok(task) if !task.batch.is_empty() => {
                return self.route_batch_task(config, tier, task, jobs, out).await;
            }
            decoded => decoded.ok(),
        };
        let Some((task, event)) =
            task.and_then(|t| Event::read(t.event.as_bytes()).map(|e| (t, e)))
        else {
            let letter = dead_letter(
                "POISON_RECORD",
                "not a delivery task carrying a core event",
                coordinates,
                key,
                payload,
                None,
                None,
            );
            self.enqueue_dead_letter(&letter, out).await?;
            return Ok(0);
        };
        match config.webhook(&task.org_id, &task.webhook_config_id) {
            Some(endpoint) if endpoint.webhook.enabled => {
                // A replay without `reapply_transform` sends the previously delivered bytes.
                let verbatim = task
                    .replay
                    .as_ref()
                    .and_then(|r| r.body.as_deref())
                    .map(|b| Arc::<[u8]>::from(b.as_bytes()));
                jobs.push(Job {
                    head: Arc::clone(&event.head),
                    endpoint: endpoint.clone(),
                    transformed: verbatim.is_some(),
                    body: verbatim.unwrap_or_else(|| event.body()),
                    event: Arc::clone(&event.text),
                    source: task.source,
                    key: task.key,
                    attempts: task.attempts,
                    deferrals: task.deferrals,
                    first_attempt_at: task.first_attempt_at,
                    tier,
                    replay: task.replay,
                    ordered: false,
                    batch_id: None,
                    recording: Default::default(),
                });
                Ok(0)
            }
            found => {
                self.park(
                    found,
                    &task.webhook_config_id,
                    &event,
                    task.source,
                    task.key,
                    out,
                )
                .await?;
                Ok(1)
            }
        }
    }

    /// Parks an event whose endpoint is disabled or does not exist: the dead letter names the
    /// endpoint and holds the event for recovery.
    pub(super) async fn park(
        &self,
        found: Option<&WebhookEntry>,
        webhook_id: &str,
        event: &Event,
        source: SourceCoordinates,
        key: Option<String>,
        out: &mut Outputs,
    ) -> Result<(), DispatcherError> {
        let (code, reason) = match found {
            Some(entry) => (
                "WEBHOOK_DISABLED",
                match entry
                    .webhook
                    .extra
                    .get(DISABLED_REASON)
                    .and_then(Value::as_str)
                {
                    Some(why) => {
                        format!("webhook {webhook_id} was disabled by the dispatcher ({why})")
                    }
                    None => format!("webhook {webhook_id} is disabled"),
                },
            ),
            None => (
                "WEBHOOK_NOT_FOUND",
                format!("webhook {webhook_id} does not exist"),
            ),
        };
        let letter = dead_letter(
            code,
            &reason,
            source,
            key,
            event.text.as_bytes(),
            Some(&event.head),
            Some(webhook_id),
        );
        self.enqueue_dead_letter(&letter, out).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use erp_schemas::config::{ConfigChange, ConfigRecord, WebhookEndpoint};
    use serde_json::json;

    fn endpoint(id: &str, event_name: &str, enabled: bool, extra: Value) -> ConfigRecord {
        ConfigRecord {
            org_id: "org".into(),
            at: "t".into(),
            actor: None,
            base_revision: None,
            change: ConfigChange::WebhookUpserted {
                webhook: WebhookEndpoint {
                    id: id.into(),
                    name: id.into(),
                    event_name: event_name.into(),
                    url: Some("https://erp.example/hook".into()),
                    http_method: "POST".into(),
                    enabled,
                    retry_policy: None,
                    creation_time: "t".into(),
                    updated_time: "t".into(),
                    extra: extra.as_object().cloned().unwrap_or_default(),
                },
                signing_secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
                previous_secrets: Vec::new(),
            },
        }
    }

    fn config(records: Vec<ConfigRecord>) -> ConfigState {
        let mut state = ConfigState::default();
        for (offset, record) in records.into_iter().enumerate() {
            state.apply(record, offset as i64);
        }
        state
    }

    fn event(value: Value) -> Event {
        Event::read(value.to_string().as_bytes()).unwrap_or_else(|| panic!("{value}"))
    }

    fn ids(endpoints: &[&WebhookEntry]) -> Vec<String> {
        endpoints.iter().map(|e| e.webhook.id.clone()).collect()
    }

    #[test]
    fn an_event_goes_to_its_subscribers_and_parks_for_endpoints_the_dispatcher_disabled() {
        let state = config(vec![
            endpoint("a", "InboundEventMapped", true, json!({})),
            endpoint(
                "ordered",
                "InboundEventMapped",
                true,
                json!({"ordering": "per_key"}),
            ),
            endpoint("off", "InboundEventMapped", false, json!({})),
            endpoint(
                "gone",
                "InboundEventMapped",
                false,
                json!({"disabledReason": "HTTP_410_GONE"}),
            ),
            endpoint("other", "SomethingElse", true, json!({})),
        ]);
        let mapped = event(json!({
            "_event_id": "e1", "_event_name": "InboundEventMapped", "_org_id": "org",
        }));
        let to_subscribers = targets(&state, &mapped).unwrap_or_default();
        assert_eq!(ids(&to_subscribers.send), vec!["a"]);
        let parked: Vec<_> = to_subscribers
            .park
            .iter()
            .map(|(_, id)| id.as_str())
            .collect();
        assert_eq!(parked, vec!["gone"]);
        let elsewhere = event(json!({
            "_event_id": "e2", "_event_name": "InboundEventMapped", "_org_id": "another",
        }));
        let to_nobody = targets(&state, &elsewhere).unwrap_or_default();
        assert!(to_nobody.send.is_empty() && to_nobody.park.is_empty());
    }

    #[test]
    fn an_outbound_message_goes_to_its_addressee_only() {
        let state = config(vec![
            endpoint("a", "InboundEventMapped", true, json!({})),
            endpoint("off", "InboundEventMapped", false, json!({})),
        ]);
        let message = |webhook_id: &str, kind: &str| {
            event(json!({
                "_event_id": "e1", "_event_name": "InboundEventMapped", "_org_id": "org",
                "_delivery": {"type": kind, "webhook_id": webhook_id},
            }))
        };
        let to_a = targets(&state, &message("a", "webhook")).unwrap_or_default();
        assert_eq!(ids(&to_a.send), vec!["a"]);
        let to_off = targets(&state, &message("off", "webhook")).unwrap_or_default();
        assert!(to_off.send.is_empty());
        assert!(matches!(to_off.park.as_slice(), [(Some(_), id)] if id == "off"));
        let to_nobody = targets(&state, &message("nope", "webhook")).unwrap_or_default();
        assert!(matches!(to_nobody.park.as_slice(), [(None, id)] if id == "nope"));
        assert!(targets(&state, &message("a", "poll")).is_none());
    }
}
