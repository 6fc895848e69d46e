//! The dispatcher loop: poll a batch of core events, deliver each to every enabled endpoint
//! subscribed to its name (bounded concurrency across the batch), record each final outcome as a
//! monitoring span, dead-letter what could not be delivered, then commit.
//!
//! Retries in this version happen in process on a short schedule, holding the batch; once they
//! are used up the event goes to `erp.dlq` with the endpoint, so nothing is dropped. On shutdown
//! an unfinished batch is left uncommitted and redelivered later with the same `webhook-id`.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use rand::Rng;
use rdkafka::consumer::Consumer;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::FutureProducer;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use erp_runtime::config_view::WebhookEntry;
use erp_runtime::{ConfigView, Runtime, kafka};
use erp_schemas::dead_letter::{DeadLetter, SourceCoordinates};
use erp_schemas::ids::derived_uuid;
use erp_schemas::monitoring::{Level, MonitoringSpan};
use erp_schemas::timestamp::now_rfc3339;
use erp_schemas::topics::Topics;

use crate::delivery::{self, AttemptResult};
use crate::error::DispatcherError;
use crate::metrics::DispatcherMetrics;

/// How the dispatcher runs.
#[derive(Debug, Clone)]
pub struct DispatcherSettings {
    /// Consumer group of all dispatcher instances.
    pub group_id: String,
    /// Most deliveries in progress at once.
    pub max_in_flight: usize,
    /// Time limit of one HTTP request.
    pub request_timeout: Duration,
    /// Waits before each retry; an endpoint's `retryPolicy.maxAttempts` uses the first ones.
    pub retry_schedule: Vec<Duration>,
    /// Most records per poll batch.
    pub max_batch: usize,
}

impl Default for DispatcherSettings {
    fn default() -> Self {
        Self {
            group_id: "erp-toolkit-dispatcher".into(),
            max_in_flight: 64,
            request_timeout: Duration::from_secs(15),
            retry_schedule: vec![
                Duration::from_secs(1),
                Duration::from_secs(5),
                Duration::from_secs(30),
                Duration::from_secs(60),
                Duration::from_secs(120),
            ],
            max_batch: 500,
        }
    }
}

/// The fields of a core event the dispatcher routes and reports by.
#[derive(Debug, Clone, Default)]
struct EventHead {
    org_id: String,
    event_id: String,
    event_name: String,
    integration_id: String,
    use_case_id: String,
    /// The inbound event a mapped event came from: groups spans of one inbound event.
    trace_event_id: String,
    correlation_id: String,
    use_case_type: String,
}

impl EventHead {
    fn read(value: &Value) -> Option<Self> {
        let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
        let event_id = text("_event_id")?;
        Some(Self {
            org_id: text("_org_id")?,
            event_name: text("_event_name")?,
            integration_id: text("integration_id").unwrap_or_default(),
            use_case_id: text("use_case_id").unwrap_or_default(),
            trace_event_id: text("inbound_event_id")
                .or_else(|| text("source_event_id"))
                .unwrap_or_else(|| event_id.clone()),
            correlation_id: text("correlation_id").unwrap_or_default(),
            use_case_type: match (value.get("_delivery"), value.get("use_case_id")) {
                (Some(_), _) => "outbound".into(),
                (None, Some(_)) => "inbound".into(),
                _ => String::new(),
            },
            event_id,
        })
    }
}

/// One event for one endpoint.
struct Job {
    head: Arc<EventHead>,
    endpoint: WebhookEntry,
    body: Arc<[u8]>,
    source: SourceCoordinates,
    key: Option<String>,
}

/// How a job ended.
enum JobEnd {
    Delivered {
        status: u16,
        attempts: Vec<Value>,
    },
    Failed {
        code: String,
        message: String,
        attempts: Vec<Value>,
    },
    /// Shutdown interrupted it; the batch stays uncommitted.
    Interrupted,
}

/// Runs the dispatcher until the runtime's shutdown token is cancelled.
pub async fn run(
    runtime: Runtime,
    view: ConfigView,
    settings: DispatcherSettings,
) -> Result<(), DispatcherError> {
    let metrics = DispatcherMetrics::new(&runtime.metrics);
    let client = reqwest::Client::builder()
        .timeout(settings.request_timeout)
        .connect_timeout(settings.request_timeout.min(Duration::from_secs(5)))
        .user_agent(concat!("erp-toolkit/", env!("CARGO_PKG_VERSION")))
        .build()?;
    let producer = runtime.kafka.producer("erp-toolkit-dispatcher")?;
    let consumer = Arc::new(
        runtime
            .kafka
            .group_consumer("erp-toolkit-dispatcher", &settings.group_id)?,
    );
    let topics = runtime.kafka.topics.clone();
    consumer.subscribe(&[&topics.core_events()])?;
    runtime.readiness.flag("dispatcher").set(true);
    info!(
        topic = topics.core_events(),
        group = settings.group_id,
        "dispatcher started"
    );

    let shutdown = runtime.shutdown.clone();
    let dispatcher = Dispatcher {
        client,
        producer,
        topics,
        metrics,
        settings,
        shutdown: shutdown.clone(),
    };
    loop {
        let batch = tokio::select! {
            _ = shutdown.cancelled() => break,
            batch = kafka::poll_batch(&consumer, dispatcher.settings.max_batch) => batch,
        };
        if batch.is_empty() {
            continue;
        }
        let mut backoff = Duration::from_millis(200);
        loop {
            match dispatcher.process(&view, &batch).await {
                Ok(true) => break,
                Ok(false) => {
                    info!("stopping with an unfinished batch left uncommitted");
                    return Ok(());
                }
                Err(error) => {
                    warn!(%error, ?backoff, "recording outcomes failed; retrying the batch");
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
        kafka::commit_batch(&consumer, &batch).await;
    }
    info!("dispatcher stopped");
    Ok(())
}

struct Dispatcher {
    client: reqwest::Client,
    producer: FutureProducer,
    topics: Topics,
    metrics: DispatcherMetrics,
    settings: DispatcherSettings,
    shutdown: CancellationToken,
}

impl Dispatcher {
    /// Delivers a batch. `Ok(false)` when shutdown interrupted it.
    async fn process(
        &self,
        view: &ConfigView,
        batch: &[OwnedMessage],
    ) -> Result<bool, DispatcherError> {
        let config = view.snapshot();
        let mut jobs = Vec::new();
        let mut records = Vec::new();
        for message in batch {
            let source = SourceCoordinates {
                topic: message.topic().to_owned(),
                partition: message.partition(),
                offset: message.offset(),
            };
            let key = message
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned());
            let payload = message.payload().unwrap_or_default();
            let event = serde_json::from_slice::<Value>(payload).ok();
            let head = event.as_ref().and_then(EventHead::read);
            let (Some(event), Some(head)) = (event, head) else {
                let letter = dead_letter(
                    "POISON_RECORD",
                    "not a core event: JSON with _event_id, _event_name and _org_id expected",
                    source,
                    key,
                    payload,
                    None,
                    None,
                );
                self.enqueue_dead_letter(&letter, &mut records).await?;
                continue;
            };
            let head = Arc::new(head);
            // An outbound message is addressed to one delivery; other events go to every
            // endpoint subscribed to their name.
            if let Some(delivery) = event.get("_delivery") {
                match delivery.get("type").and_then(Value::as_str) {
                    Some("webhook") => {
                        let webhook_id = delivery
                            .get("webhook_id")
                            .and_then(Value::as_str)
                            .unwrap_or_default();
                        match config.webhook(&head.org_id, webhook_id) {
                            Some(endpoint) if endpoint.webhook.enabled => {
                                let body = serde_json::to_vec(
                                    event.get("payload").unwrap_or(&Value::Null),
                                )
                                .unwrap_or_default();
                                jobs.push(Job {
                                    head: Arc::clone(&head),
                                    endpoint: endpoint.clone(),
                                    body: Arc::from(body),
                                    source: source.clone(),
                                    key: key.clone(),
                                });
                            }
                            found => {
                                // Parked, not dropped: the dead letter names the endpoint and
                                // holds the event for recovery once the endpoint exists or is
                                // enabled again.
                                let (code, reason) = if found.is_some() {
                                    (
                                        "WEBHOOK_DISABLED",
                                        format!("webhook {webhook_id} is disabled"),
                                    )
                                } else {
                                    (
                                        "WEBHOOK_NOT_FOUND",
                                        format!("webhook {webhook_id} does not exist"),
                                    )
                                };
                                let letter = dead_letter(
                                    code,
                                    &reason,
                                    source,
                                    key,
                                    payload,
                                    Some(&head),
                                    Some(webhook_id),
                                );
                                self.enqueue_dead_letter(&letter, &mut records).await?;
                            }
                        }
                    }
                    // The poll stream and file deliveries consume these from the topic.
                    _ => debug!(
                        event_id = head.event_id,
                        "not a webhook delivery; left to its consumer"
                    ),
                }
                continue;
            }
            let body: Arc<[u8]> = Arc::from(payload);
            for endpoint in config.subscribers(&head.org_id, &head.event_name) {
                jobs.push(Job {
                    head: Arc::clone(&head),
                    endpoint: endpoint.clone(),
                    body: Arc::clone(&body),
                    source: source.clone(),
                    key: key.clone(),
                });
            }
        }

        let ends: Vec<(Job, JobEnd)> = futures::stream::iter(jobs)
            .map(|job| async move {
                let end = self.deliver(&job).await;
                (job, end)
            })
            .buffer_unordered(self.settings.max_in_flight.max(1))
            .collect()
            .await;
        if ends
            .iter()
            .any(|(_, end)| matches!(end, JobEnd::Interrupted))
        {
            return Ok(false);
        }
        for (job, end) in &ends {
            self.record(job, end, &mut records).await?;
        }
        kafka::await_deliveries(records).await?;
        for (_, end) in &ends {
            let outcome = if matches!(end, JobEnd::Delivered { .. }) {
                "delivered"
            } else {
                "failed"
            };
            self.metrics.deliveries.with_label_values(&[outcome]).inc();
        }
        Ok(true)
    }

    fn retries_allowed(&self, endpoint: &WebhookEntry) -> usize {
        let policy = endpoint.webhook.retry_policy.unwrap_or_default();
        if policy.enabled {
            (policy.max_attempts as usize).min(self.settings.retry_schedule.len())
        } else {
            0
        }
    }

    async fn deliver(&self, job: &Job) -> JobEnd {
        self.metrics.in_flight.inc();
        let end = self.deliver_with_retries(job).await;
        self.metrics.in_flight.dec();
        end
    }

    async fn deliver_with_retries(&self, job: &Job) -> JobEnd {
        let message_id = delivery::webhook_id(&job.head.event_id);
        let retries = self.retries_allowed(&job.endpoint);
        let mut attempts = Vec::new();
        for number in 0..=retries {
            if number > 0 {
                let wait = jittered(self.settings.retry_schedule[number - 1]);
                tokio::select! {
                    _ = self.shutdown.cancelled() => return JobEnd::Interrupted,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            let attempt =
                delivery::attempt(&self.client, &job.endpoint, &message_id, &job.body).await;
            self.metrics
                .attempt_seconds
                .observe(attempt.duration.as_secs_f64());
            let duration_ms = attempt.duration.as_millis() as u64;
            match attempt.result {
                AttemptResult::Delivered { status } => {
                    self.metrics
                        .attempts
                        .with_label_values(&["delivered"])
                        .inc();
                    attempts.push(json!({"attempt": number + 1, "status_code": status, "duration_ms": duration_ms}));
                    return JobEnd::Delivered { status, attempts };
                }
                AttemptResult::Terminal { code, message } => {
                    self.metrics.attempts.with_label_values(&["terminal"]).inc();
                    attempts.push(json!({"attempt": number + 1, "code": code, "message": message, "duration_ms": duration_ms}));
                    return JobEnd::Failed {
                        code,
                        message,
                        attempts,
                    };
                }
                AttemptResult::Retryable { code, message } => {
                    self.metrics
                        .attempts
                        .with_label_values(&["retryable"])
                        .inc();
                    attempts.push(json!({"attempt": number + 1, "code": code, "message": message, "duration_ms": duration_ms}));
                    if number == retries {
                        return JobEnd::Failed {
                            code,
                            message,
                            attempts,
                        };
                    }
                }
            }
        }
        JobEnd::Failed {
            code: "RETRIES_EXHAUSTED".into(),
            message: "no attempt succeeded".into(),
            attempts,
        }
    }

    async fn record(
        &self,
        job: &Job,
        end: &JobEnd,
        records: &mut Vec<rdkafka::producer::DeliveryFuture>,
    ) -> Result<(), DispatcherError> {
        let (level, code, message, attempts) = match end {
            JobEnd::Delivered { status, attempts } => (
                Level::Success,
                String::new(),
                format!(
                    "delivered to webhook {} ({status})",
                    job.endpoint.webhook.name
                ),
                attempts,
            ),
            JobEnd::Failed {
                code,
                message,
                attempts,
            } => {
                let letter = dead_letter(
                    "DELIVERY_FAILED",
                    &format!("{code}: {message}"),
                    job.source.clone(),
                    job.key.clone(),
                    &job.body,
                    Some(&job.head),
                    Some(&job.endpoint.webhook.id),
                );
                self.enqueue_dead_letter(&letter, records).await?;
                (Level::Error, code.clone(), message.clone(), attempts)
            }
            JobEnd::Interrupted => return Ok(()),
        };
        let head = &job.head;
        let span = MonitoringSpan {
            id: derived_uuid(&[&head.event_id, "dispatcher", &job.endpoint.webhook.id]),
            org_id: head.org_id.clone(),
            integration_id: head.integration_id.clone(),
            event_id: head.trace_event_id.clone(),
            correlation_id: head.correlation_id.clone(),
            use_case_id: head.use_case_id.clone(),
            use_case_type: head.use_case_type.clone(),
            level,
            code,
            message,
            detail: json!({
                "stage": "dispatcher",
                "core_event_id": head.event_id,
                "event_name": head.event_name,
                "webhook_config_id": job.endpoint.webhook.id,
                "webhook_id": delivery::webhook_id(&head.event_id),
                "url": job.endpoint.webhook.url,
                "attempts": attempts,
            }),
            created_at: now_rfc3339(),
        };
        let bytes = erp_schemas::error::encode("monitoring span", &span)?;
        records.push(
            kafka::enqueue(
                &self.producer,
                &self.topics.monitoring(),
                &span.integration_id,
                &bytes,
            )
            .await?,
        );
        Ok(())
    }

    async fn enqueue_dead_letter(
        &self,
        letter: &DeadLetter,
        records: &mut Vec<rdkafka::producer::DeliveryFuture>,
    ) -> Result<(), DispatcherError> {
        let bytes = erp_schemas::error::encode("dead letter", letter)?;
        records.push(
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

/// ±20 % around `base`, so retries of many events do not arrive in lockstep.
fn jittered(base: Duration) -> Duration {
    let factor = rand::rng().random_range(0.8..1.2);
    base.mul_f64(factor)
}

fn dead_letter(
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
