//! The dispatcher: a main consumer of `erp.core.events` and one consumer per retry tier
//! (`erp.core.retry.<n>`), sharing per-endpoint isolation.
//!
//! - **Main path.** Each core event goes to every enabled endpoint subscribed to it (or to the one
//!   endpoint an outbound message is addressed to). A delivery gets one attempt; if it fails
//!   retryably it is written as a [`DeliveryTask`] to the retry tier its attempt count and
//!   `Retry-After` call for. A delivery whose endpoint is saturated (no free slot within
//!   `endpoint_queue_wait`) or whose circuit breaker is not closed is not attempted at all: it is
//!   deferred to the first tier. Offsets are committed only after every record a batch produced
//!   (tasks, dead letters, spans) is acknowledged by Kafka, so a crash redelivers with the same
//!   `webhook-id` and loses nothing. Several batches run at once (`batches_in_flight`) and commit
//!   in order, so one slow request holds up a commit, not the deliveries behind it.
//! - **Retry tiers.** A tier's records are written in due order, so its consumer waits until the
//!   head of each partition is due, then attempts every due task, forwarding failures to the next
//!   tier or, with the endpoint's retries used up, to `erp.dlq`. While it waits it re-reads rather
//!   than holds records, so it keeps polling and group rebalances are not stalled for hours.
//! - **Terminal answers.** 410 disables the endpoint (a configuration change through
//!   [`ConfigWriter`]) and parks the event as a dead letter; other 4xx and unusable
//!   configurations are dead letters with the status. Every attempt is a monitoring span.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::{DeliveryFuture, FutureProducer};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use erp_runtime::config_view::WebhookEntry;
use erp_runtime::{ConfigState, ConfigView, ConfigWriter, Runtime, kafka};
use erp_schemas::config::{ConfigChange, ConfigRecord};
use erp_schemas::dead_letter::{DeadLetter, SourceCoordinates};
use erp_schemas::delivery_task::{DeliveryTask, Replay};
use erp_schemas::ids::derived_uuid;
use erp_schemas::monitoring::{Level, MonitoringSpan};
use erp_schemas::timestamp::{format_millis, now_millis, now_rfc3339};
use erp_schemas::topics::Topics;

use crate::delivery::{self, Attempt, AttemptResult, Sender};
use crate::error::DispatcherError;
use crate::isolation::{Admission, BreakerState, Endpoints};
use crate::metrics::DispatcherMetrics;
use crate::ordering::{self, LaneContext, LaneEntry, Lanes, Put, Step};
use crate::schedule::Schedule;
use erp_webhooks::ConfigError;
use erp_webhooks::endpoint::{EndpointConfig, Prepared};
use erp_webhooks::safety::DestinationPolicy;
use erp_webhooks::settings::ordering::is_ordered;

pub mod batch;

/// How often a replay is deferred by an open circuit breaker before the open breaker counts as
/// its attempt: each deferral is one first-tier wait (5 s by default, so about an hour).
const REPLAY_BREAKER_WAITS: u32 = 720;

/// The `extra` field the dispatcher sets on an endpoint it disabled. Events for such an endpoint
/// are parked as dead letters instead of being skipped like those of an endpoint a user disabled,
/// so they can be recovered once the endpoint is fixed.
pub const DISABLED_REASON: &str = "disabledReason";

/// How the dispatcher runs.
#[derive(Debug, Clone)]
pub struct DispatcherSettings {
    /// Consumer group of all dispatcher instances (tier consumers use `<group>.retry.<n>`).
    pub group_id: String,
    /// Most HTTP requests in progress at once, over all endpoints.
    pub max_in_flight: usize,
    /// Time limit of one HTTP request.
    pub request_timeout: Duration,
    /// The waits of the retry tiers (1 to 5, not getting shorter). An endpoint's
    /// `retryPolicy.maxAttempts` uses the first ones.
    pub retry_schedule: Vec<Duration>,
    /// The longest `Retry-After` honoured.
    pub max_retry_after: Duration,
    /// Most records per poll batch.
    pub max_batch: usize,
    /// Main-path batches in progress at once (committed in order).
    pub batches_in_flight: usize,
    /// Most requests in flight to one endpoint.
    pub endpoint_concurrency: usize,
    /// How long a delivery waits for a free slot of its endpoint before it is deferred to a
    /// retry tier.
    pub endpoint_queue_wait: Duration,
    /// Consecutive retryable failures that open an endpoint's circuit breaker.
    pub breaker_threshold: u32,
    /// How long an open breaker refuses requests before one probe is let through.
    pub breaker_cooldown: Duration,
    /// Which destination addresses are allowed.
    pub destinations: DestinationPolicy,
    /// Most bytes of a response body read and kept in the attempt record.
    pub max_response_body: usize,
    /// Longest a tier consumer waits for the head of a partition before polling again.
    pub tier_hold: Duration,
    /// On shutdown, how long deliveries in progress may finish (and be committed) before they
    /// are abandoned uncommitted, to be redelivered after the restart.
    pub shutdown_grace: Duration,
    /// The organisation's Ed25519 key for `v1a` signatures (`None`: `v1` only).
    pub signing_key: Option<Arc<erp_webhooks::org_key::OrgKey>>,
    /// Time limit of one evaluation of an endpoint's JSONata filter or transform.
    pub jsonata_timeout: Duration,
    /// The rate limit of endpoints that set no `rateLimit` (`None`: unlimited).
    pub default_rate_limit: Option<erp_webhooks::settings::RateLimit>,
}

impl Default for DispatcherSettings {
    fn default() -> Self {
        let schedule = Schedule::epilot();
        Self {
            group_id: "erp-toolkit-dispatcher".into(),
            max_in_flight: 64,
            request_timeout: Duration::from_secs(15),
            retry_schedule: schedule.delays().to_vec(),
            max_retry_after: Duration::from_secs(3600),
            max_batch: 500,
            batches_in_flight: 4,
            endpoint_concurrency: 16,
            endpoint_queue_wait: Duration::from_secs(1),
            breaker_threshold: 5,
            breaker_cooldown: Duration::from_secs(30),
            destinations: DestinationPolicy::default(),
            max_response_body: 64 * 1024,
            tier_hold: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(10),
            signing_key: None,
            jsonata_timeout: Duration::from_secs(1),
            default_rate_limit: None,
        }
    }
}

/// An endpoint's parsed configuration and the revision it was parsed from.
type ParsedConfig = (i64, Result<Arc<EndpointConfig>, ConfigError>);

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

/// A core event read from a record.
struct Event {
    head: Arc<EventHead>,
    value: Value,
    /// The record's value as text, carried by delivery tasks and dead letters.
    text: Arc<str>,
}

impl Event {
    fn read(payload: &[u8]) -> Option<Self> {
        let value = serde_json::from_slice::<Value>(payload).ok()?;
        let head = EventHead::read(&value)?;
        Some(Self {
            head: Arc::new(head),
            value,
            text: Arc::from(String::from_utf8_lossy(payload).as_ref()),
        })
    }

    /// The body sent to endpoints: an outbound message's `payload`, else the whole event.
    fn body(&self) -> Arc<[u8]> {
        if self.value.get("_delivery").is_some() {
            let payload = self.value.get("payload").unwrap_or(&Value::Null);
            Arc::from(serde_json::to_vec(payload).unwrap_or_default())
        } else {
            Arc::from(self.text.as_bytes())
        }
    }
}

/// One event for one endpoint.
struct Job {
    head: Arc<EventHead>,
    endpoint: WebhookEntry,
    body: Arc<[u8]>,
    event: Arc<str>,
    source: SourceCoordinates,
    key: Option<String>,
    attempts: u32,
    deferrals: u32,
    first_attempt_at: Option<String>,
    /// 0 on the main path, else the retry tier the job was read from.
    tier: u32,
    /// Set for a replay or recovery asked for through the API.
    replay: Option<Replay>,
    /// Whether `body` is the output of the endpoint's transform (the attempt span then keeps
    /// it, so a replay without `reapply_transform` can send the same bytes again).
    transformed: bool,
    /// Held in a lane of an endpoint with per-key ordering: a retry waits in the lane, never in
    /// a tier.
    ordered: bool,
    /// The `webhook-id` of the batch the job is sent in, for an endpoint with `batch`.
    batch_id: Option<Arc<str>>,
}

impl Job {
    /// The parts of an attempt or skip span id beyond event, stage and endpoint. A replay adds
    /// its id, so its attempts never collide with earlier ones while an automatic attempt keeps
    /// the id it always had.
    fn span_suffix(&self, tail: &str) -> String {
        match &self.replay {
            Some(replay) => format!("{tail}/replay/{}", replay.replay_id),
            None => tail.to_owned(),
        }
    }
}

/// How one job ended for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Delivered,
    /// Dead-lettered after a terminal answer or its last retry.
    Failed,
    /// Dead-lettered because its endpoint is gone, disabled or deleted.
    Parked,
    /// Written to a retry tier after a failed attempt.
    Scheduled,
    /// Written to a retry tier without an attempt.
    Deferred,
    /// Not sent: the endpoint's filters do not let the event through.
    Skipped,
    /// Shutdown interrupted it; its batch stays uncommitted.
    Interrupted,
    /// An ordered delivery stays at the head of its lane until `due_at_ms`.
    Held {
        due_at_ms: i64,
        attempted: bool,
    },
}

/// A job after its endpoint's configuration, filters and transform.
enum Ready {
    /// Send it, with the endpoint's parsed configuration.
    Send(Box<Job>, Arc<EndpointConfig>),
    /// Nothing to send: it ended so (skipped, or failed without a request).
    Ended(Outcome),
}

/// What became of a request that was asked for.
enum Sent {
    /// It went out (or, in a tier, the open breaker answered for the endpoint).
    Attempt(Attempt),
    /// Not sent: defer it, for this reason (`circuit_open`, `throttled`, `saturated`).
    Deferred(&'static str),
    /// Shutdown interrupted it.
    Interrupted,
}

/// How a batch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BatchEnd {
    Done,
    Interrupted,
    /// The batch's task panicked: a bug; the role stops so its supervisor restarts it.
    Crashed,
}

/// Runs the dispatcher until the runtime's shutdown token is cancelled.
pub async fn run(
    runtime: Runtime,
    view: ConfigView,
    settings: DispatcherSettings,
) -> Result<(), DispatcherError> {
    let schedule = Schedule::new(settings.retry_schedule.clone(), settings.max_retry_after)
        .map_err(DispatcherError::Setting)?;
    // Routing on a partly folded configuration would find no subscribers for events after a
    // restart and skip them, so nothing is consumed before the view is complete.
    tokio::select! {
        _ = runtime.shutdown.cancelled() => return Ok(()),
        loaded = view.wait_loaded(Duration::from_secs(300)) => loaded?,
    }
    let metrics = DispatcherMetrics::new(&runtime.metrics);
    let sender = Sender::new(
        settings.request_timeout,
        settings.destinations.clone(),
        settings.max_response_body,
    )?
    .with_signing_key(settings.signing_key.clone());
    let producer = runtime.kafka.producer("erp-toolkit-dispatcher")?;
    let topics = runtime.kafka.topics.clone();
    let lanes = Lanes::new(
        &runtime.kafka,
        &settings.group_id,
        producer.clone(),
        runtime.shutdown.clone(),
    );
    let core = Arc::new(Core {
        sender,
        writer: ConfigWriter::new(&runtime, producer.clone(), view.clone()),
        producer,
        topics: topics.clone(),
        metrics,
        endpoints: Endpoints::new(
            settings.endpoint_concurrency,
            settings.breaker_threshold,
            settings.breaker_cooldown,
        ),
        global: Arc::new(Semaphore::new(settings.max_in_flight.max(1))),
        configs: Mutex::new(HashMap::new()),
        schedule,
        view,
        shutdown: runtime.shutdown.clone(),
        interrupt: CancellationToken::new(),
        lanes: Arc::clone(&lanes),
        settings,
    });
    lanes.set_deliver(deliver_held(&core));
    // A stop lets deliveries in progress finish for a while (a clean stop then leaves nothing
    // to redeliver), then abandons them.
    tokio::spawn({
        let core = Arc::clone(&core);
        async move {
            core.shutdown.cancelled().await;
            tokio::time::sleep(core.settings.shutdown_grace).await;
            core.interrupt.cancel();
        }
    });

    let mut tiers = Vec::new();
    for tier in 1..=core.schedule.tiers() {
        let consumer = runtime.kafka.group_consumer(
            &format!("erp-toolkit-dispatcher-retry-{tier}"),
            &format!("{}.retry.{tier}", core.settings.group_id),
        )?;
        consumer.subscribe(&[&topics.retry(tier)])?;
        tiers.push(tokio::spawn(run_tier(
            Arc::clone(&core),
            tier,
            Arc::new(consumer),
        )));
    }
    // The context restores the lanes of an assigned partition before any of its records is read.
    let consumer: Arc<StreamConsumer<LaneContext>> = Arc::new(
        runtime
            .kafka
            .group_consumer_config("erp-toolkit-dispatcher", &core.settings.group_id)
            .create_with_context(LaneContext { lanes })?,
    );
    consumer.subscribe(&[&topics.core_events()])?;
    runtime.readiness.flag("dispatcher").set(true);
    info!(
        topic = topics.core_events(),
        group = core.settings.group_id,
        tiers = core.schedule.tiers(),
        "dispatcher started"
    );
    let outcome = run_main(Arc::clone(&core), consumer).await;
    for tier in tiers {
        let _ = tier.await;
    }
    info!("dispatcher stopped");
    outcome
}

/// The main path: batches of `erp.core.events`, several in progress, committed in order.
async fn run_main(
    core: Arc<Core>,
    consumer: Arc<StreamConsumer<LaneContext>>,
) -> Result<(), DispatcherError> {
    let (tx, mut rx) = mpsc::unbounded_channel::<(u64, BatchEnd)>();
    let mut pending: BTreeMap<u64, Vec<OwnedMessage>> = BTreeMap::new();
    let mut ended: BTreeMap<u64, BatchEnd> = BTreeMap::new();
    let mut next_seq = 0u64;
    let mut stopping = false;
    // Once a batch is left uncommitted, no later batch may be committed either: a commit is a
    // position, and it would skip the unfinished records.
    let mut committing = true;
    let mut crashed = false;
    let limit = core.settings.batches_in_flight.max(1);
    loop {
        tokio::select! {
            biased;
            _ = core.shutdown.cancelled(), if !stopping => stopping = true,
            Some((seq, end)) = rx.recv() => {
                ended.insert(seq, end);
            }
            first = consumer.recv(), if !stopping && pending.len() < limit => match first {
                Ok(first) => {
                    let batch = fill_batch(&consumer, first.detach(), core.settings.max_batch).await;
                    let seq = next_seq;
                    next_seq += 1;
                    debug!(seq, records = batch.len(), "main batch started");
                    // Lanes are appended to here, in consumption order, so a key's events keep
                    // their order although batches run concurrently; routing uses the same
                    // configuration, so every delivery goes either to a lane or on this path.
                    let config = core.view.snapshot();
                    let puts = core.admit_ordered(&config, &batch)?;
                    spawn_batch(Arc::clone(&core), seq, batch.clone(), config, puts, tx.clone());
                    pending.insert(seq, batch);
                }
                Err(error) => {
                    warn!(%error, "consume failed");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            },
        }
        while let Some(seq) = pending.keys().next().copied() {
            let Some(end) = ended.remove(&seq) else {
                break;
            };
            debug!(seq, ?end, "main batch ended");
            let batch = pending.remove(&seq).unwrap_or_default();
            match end {
                BatchEnd::Done if committing => kafka::commit_batch(&consumer, &batch).await,
                BatchEnd::Done => {}
                BatchEnd::Interrupted => {
                    committing = false;
                    stopping = true;
                }
                BatchEnd::Crashed => {
                    committing = false;
                    stopping = true;
                    crashed = true;
                }
            }
        }
        if core.lanes.failed() && !crashed {
            committing = false;
            stopping = true;
            crashed = true;
        }
        if stopping && pending.is_empty() {
            break;
        }
    }
    if !committing {
        info!("stopped with unfinished deliveries left uncommitted; they are redelivered");
    }
    if crashed {
        return Err(DispatcherError::Task(
            "a delivery batch panicked; see the log".into(),
        ));
    }
    Ok(())
}

/// Takes what else arrives within a few milliseconds after `first`, up to `max` records.
async fn fill_batch(
    consumer: &StreamConsumer<LaneContext>,
    first: OwnedMessage,
    max: usize,
) -> Vec<OwnedMessage> {
    let mut batch = vec![first];
    let deadline = tokio::time::Instant::now() + Duration::from_millis(5);
    while batch.len() < max.max(1) {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(Ok(message)) => batch.push(message.detach()),
            Ok(Err(error)) => {
                warn!(%error, "consume failed");
                break;
            }
            Err(_) => break,
        }
    }
    batch
}

fn spawn_batch(
    core: Arc<Core>,
    seq: u64,
    batch: Vec<OwnedMessage>,
    config: Arc<ConfigState>,
    puts: Vec<Put>,
    tx: mpsc::UnboundedSender<(u64, BatchEnd)>,
) {
    let work = tokio::spawn(async move {
        // Held deliveries are durable before the batch can be committed past them.
        if !core.lanes.persist(puts).await {
            return BatchEnd::Interrupted;
        }
        core.process_until_recorded(&batch, 0, Some(config)).await
    });
    tokio::spawn(async move {
        let end = match work.await {
            Ok(end) => end,
            Err(error) => {
                tracing::error!(%error, "delivery batch failed");
                BatchEnd::Crashed
            }
        };
        let _ = tx.send((seq, end));
    });
}

/// A retry tier: waits until tasks are due, attempts them, commits.
async fn run_tier(core: Arc<Core>, tier: u32, consumer: Arc<StreamConsumer>) {
    let topic = core.topics.retry(tier);
    let tier_label = tier.to_string();
    let mut held: Vec<OwnedMessage> = Vec::new();
    loop {
        let batch = if held.is_empty() {
            tokio::select! {
                _ = core.shutdown.cancelled() => break,
                batch = kafka::poll_batch(&consumer, core.settings.max_batch) => batch,
            }
        } else {
            std::mem::take(&mut held)
        };
        if batch.is_empty() {
            continue;
        }
        // Each partition's due prefix is taken now; the rest waits behind its first record.
        let now = now_millis();
        let mut due = Vec::new();
        let mut later: BTreeMap<i32, Vec<OwnedMessage>> = BTreeMap::new();
        let mut blocked = BTreeSet::new();
        let mut earliest = i64::MAX;
        for message in batch {
            let partition = message.partition();
            if blocked.contains(&partition) {
                later.entry(partition).or_default().push(message);
                continue;
            }
            // An unreadable task is due at once: it becomes a dead letter.
            let due_at = erp_schemas::error::decode::<DeliveryTask>(
                "delivery task",
                message.payload().unwrap_or_default(),
            )
            .map_or(i64::MIN, |task| task.due_at_ms);
            if due_at <= now {
                if due_at > i64::MIN {
                    core.metrics
                        .tier_lag_ms
                        .with_label_values(&[&tier_label])
                        .set(now - due_at);
                }
                due.push(message);
            } else {
                blocked.insert(partition);
                earliest = earliest.min(due_at);
                later.entry(partition).or_default().push(message);
            }
        }
        if !due.is_empty() {
            match core.process_until_recorded(&due, tier, None).await {
                BatchEnd::Done => kafka::commit_batch(&consumer, &due).await,
                BatchEnd::Interrupted | BatchEnd::Crashed => break,
            }
        }
        if later.is_empty() {
            continue;
        }
        // Re-read the waiting records later instead of holding them, so this consumer keeps
        // polling (a rebalance of its group is not stalled for a tier's wait). If a seek fails,
        // they are held after all.
        for (partition, messages) in later {
            let offset = messages.first().map_or(0, Message::offset);
            if let Err(error) = seek(&consumer, &topic, partition, offset).await {
                debug!(%error, partition, "seek failed; holding the waiting records");
                held.extend(messages);
            }
        }
        let wait = Duration::from_millis(u64::try_from(earliest - now_millis()).unwrap_or(0))
            .min(core.settings.tier_hold);
        tokio::select! {
            _ = core.shutdown.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
        }
    }
    debug!(tier, "retry tier stopped");
}

async fn seek(
    consumer: &Arc<StreamConsumer>,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<(), DispatcherError> {
    let consumer = Arc::clone(consumer);
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        consumer.seek(
            &topic,
            partition,
            rdkafka::Offset::Offset(offset),
            Duration::from_secs(5),
        )
    })
    .await
    .map_err(|e| DispatcherError::Task(e.to_string()))??;
    Ok(())
}

/// What the main path and the tiers share.
struct Core {
    sender: Sender,
    producer: FutureProducer,
    writer: ConfigWriter,
    topics: Topics,
    metrics: DispatcherMetrics,
    settings: DispatcherSettings,
    schedule: Schedule,
    endpoints: Endpoints,
    global: Arc<Semaphore>,
    /// Each endpoint's parsed configuration (compiled JSONata, OAuth token) by revision.
    configs: Mutex<HashMap<String, ParsedConfig>>,
    view: ConfigView,
    /// Stops polling.
    shutdown: CancellationToken,
    /// Abandons deliveries in progress: `shutdown_grace` after `shutdown`.
    interrupt: CancellationToken,
    /// Held deliveries of endpoints with per-key ordering.
    lanes: Arc<Lanes>,
}

impl Core {
    /// Processes a batch until everything it produced is acknowledged by Kafka, retrying the
    /// batch (with the same `webhook-id`s) when recording fails.
    async fn process_until_recorded(
        &self,
        batch: &[OwnedMessage],
        tier: u32,
        config: Option<Arc<ConfigState>>,
    ) -> BatchEnd {
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.process(batch, tier, config.clone()).await {
                Ok(end) => return end,
                Err(error) => {
                    warn!(%error, ?backoff, tier, "recording outcomes failed; retrying the batch");
                    tokio::select! {
                        _ = self.shutdown.cancelled() => return BatchEnd::Interrupted,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    /// Delivers a batch of the main topic (`tier` 0) or of a retry tier, routed with `config`
    /// (default: the current configuration).
    async fn process(
        &self,
        batch: &[OwnedMessage],
        tier: u32,
        config: Option<Arc<ConfigState>>,
    ) -> Result<BatchEnd, DispatcherError> {
        let config = config.unwrap_or_else(|| self.view.snapshot());
        let mut out = Vec::new();
        let mut jobs = Vec::new();
        let mut parked = 0u64;
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
            if tier == 0 {
                parked += self
                    .route(&config, source, key, payload, &mut jobs, &mut out)
                    .await?;
            } else {
                parked += self
                    .route_task(&config, tier, source, key, payload, &mut jobs, &mut out)
                    .await?;
            }
        }
        let (jobs, batches) = self.batches(jobs, tier);
        let singles = futures::future::join_all(jobs.into_iter().map(|job| async move {
            let mut out = Vec::new();
            let outcome = self.handle(job, &mut out).await;
            (outcome, out)
        }));
        let batched = futures::future::join_all(batches.into_iter().map(|members| async move {
            let mut out = Vec::new();
            let outcomes = self.handle_batch(members, &mut out).await;
            (outcomes, out)
        }));
        let (singles, batched) = futures::future::join(singles, batched).await;
        let mut outcomes = Vec::with_capacity(singles.len());
        for (outcome, records) in singles {
            outcomes.push(outcome?);
            out.extend(records);
        }
        for (batch, records) in batched {
            outcomes.extend(batch?);
            out.extend(records);
        }
        if outcomes.contains(&Outcome::Interrupted) {
            return Ok(BatchEnd::Interrupted);
        }
        kafka::await_deliveries(out).await?;
        let count = |label: &str, n: u64| {
            self.metrics
                .deliveries
                .with_label_values(&[label])
                .inc_by(n)
        };
        count("parked", parked);
        for outcome in outcomes {
            match outcome {
                Outcome::Delivered => count("delivered", 1),
                Outcome::Failed => count("failed", 1),
                Outcome::Parked => count("parked", 1),
                Outcome::Skipped => count("skipped", 1),
                _ => {}
            }
        }
        Ok(BatchEnd::Done)
    }

    /// Turns a core event into jobs for its endpoints. Returns how many deliveries were parked.
    async fn route(
        &self,
        config: &ConfigState,
        source: SourceCoordinates,
        key: Option<String>,
        payload: &[u8],
        jobs: &mut Vec<Job>,
        out: &mut Vec<DeliveryFuture>,
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
        let head = &event.head;
        let mut endpoints = Vec::new();
        let mut parked = 0;
        // An outbound message is addressed to one delivery; other events go to every endpoint
        // subscribed to their name.
        if let Some(delivery) = event.value.get("_delivery") {
            if delivery.get("type").and_then(Value::as_str) != Some("webhook") {
                // The poll stream and file deliveries consume these from the topic.
                debug!(
                    event_id = head.event_id,
                    "not a webhook delivery; left to its consumer"
                );
                return Ok(0);
            }
            let webhook_id = delivery
                .get("webhook_id")
                .and_then(Value::as_str)
                .unwrap_or_default();
            match config.webhook(&head.org_id, webhook_id) {
                // An ordered endpoint's deliveries were appended to its lanes.
                Some(endpoint) if endpoint.webhook.enabled => {
                    if !is_ordered(&endpoint.webhook.extra) {
                        endpoints.push(endpoint.clone());
                    }
                }
                found => {
                    self.park(found, webhook_id, &event, source.clone(), key.clone(), out)
                        .await?;
                    parked += 1;
                }
            }
        } else {
            for endpoint in config.webhooks(&head.org_id) {
                if !endpoint.webhook.subscribes_to(&head.event_name) {
                    continue;
                }
                if endpoint.webhook.enabled {
                    if !is_ordered(&endpoint.webhook.extra) {
                        endpoints.push(endpoint.clone());
                    }
                } else if endpoint.webhook.extra.contains_key(DISABLED_REASON) {
                    // Disabled by the dispatcher (410), not by a user: keep its events.
                    let id = endpoint.webhook.id.clone();
                    self.park(
                        Some(endpoint),
                        &id,
                        &event,
                        source.clone(),
                        key.clone(),
                        out,
                    )
                    .await?;
                    parked += 1;
                }
            }
        }
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
            });
        }
        Ok(parked)
    }

    /// Turns a delivery task into a job, or parks it when its endpoint is gone or disabled.
    #[allow(clippy::too_many_arguments)]
    async fn route_task(
        &self,
        config: &ConfigState,
        tier: u32,
        coordinates: SourceCoordinates,
        key: Option<String>,
        payload: &[u8],
        jobs: &mut Vec<Job>,
        out: &mut Vec<DeliveryFuture>,
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
    async fn park(
        &self,
        found: Option<&WebhookEntry>,
        webhook_id: &str,
        event: &Event,
        source: SourceCoordinates,
        key: Option<String>,
        out: &mut Vec<DeliveryFuture>,
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

    /// The parsed configuration of an endpoint revision, from the cache or parsed now. Only for
    /// entries that went through `environment::resolve`: the cache key is the revision, which
    /// does not tell a resolved entry from the stored one.
    fn endpoint_config(&self, entry: &WebhookEntry) -> ParsedConfig {
        let Ok(mut configs) = self.configs.lock() else {
            // A poisoned cache only means a panic elsewhere; parse without caching.
            return (
                entry.revision,
                EndpointConfig::parse(&entry.webhook.extra).map(Arc::new),
            );
        };
        if let Some(cached) = configs.get(&entry.webhook.id)
            && cached.0 == entry.revision
        {
            return cached.clone();
        }
        let parsed = (
            entry.revision,
            EndpointConfig::parse(&entry.webhook.extra).map(Arc::new),
        );
        configs.insert(entry.webhook.id.clone(), parsed.clone());
        parsed
    }

    /// The endpoint's environment, configuration, filters and transform applied to a job: ready
    /// to send, or ended (skipped, or failed without a request).
    async fn prepare(
        &self,
        mut job: Job,
        out: &mut Vec<DeliveryFuture>,
    ) -> Result<Ready, DispatcherError> {
        // Secrets this process cannot decrypt (a key file without the key they were sealed
        // with) would sign with ciphertext: dead-lettered, recoverable once the key is given.
        if let Some(error) = &job.endpoint.unreadable {
            let message = error.to_string();
            return Ok(Ready::Ended(
                self.fail_unsent(job, "WEBHOOK_SECRET_UNREADABLE", message, out)
                    .await?,
            ));
        }
        // Integration environments: `{{env.*}}` references resolved at send time; a missing
        // variable fails the delivery, naming it (spec §8.2).
        match crate::environment::resolve(&self.view, &job.endpoint) {
            Ok(std::borrow::Cow::Owned(resolved)) => job.endpoint = resolved,
            Ok(std::borrow::Cow::Borrowed(_)) => {}
            Err(error) => {
                let code = error.code();
                return Ok(Ready::Ended(
                    self.fail_unsent(job, code, error.to_string(), out).await?,
                ));
            }
        }
        let config = match self.endpoint_config(&job.endpoint).1 {
            Ok(config) => config,
            // Stored before the API validated it: nothing can be sent until it is fixed.
            Err(error) => {
                return Ok(Ready::Ended(
                    self.fail_unsent(job, "WEBHOOK_CONFIG_INVALID", error.to_string(), out)
                        .await?,
                ));
            }
        };
        let verbatim = job.replay.as_ref().is_some_and(|r| r.body.is_some());
        if config.inspects_payload() && !verbatim {
            let body = Arc::clone(&job.body);
            let timeout = self.settings.jsonata_timeout;
            let prepare = Arc::clone(&config);
            // JSONata is CPU work bounded only by its time limit: off the async threads.
            let prepared =
                tokio::task::spawn_blocking(move || prepare.prepare(&body, timeout)).await;
            match prepared {
                Ok(Prepared::Send(body)) => {
                    job.transformed = body != job.body;
                    job.body = body;
                }
                Ok(Prepared::Filtered) => return Ok(Ready::Ended(self.skip(&job, out).await?)),
                Ok(Prepared::Failed { code, message }) => {
                    return Ok(Ready::Ended(
                        self.fail_unsent(job, code, message, out).await?,
                    ));
                }
                Err(error) => {
                    return Ok(Ready::Ended(
                        self.fail_unsent(job, "TRANSFORM_FAILED", error.to_string(), out)
                            .await?,
                    ));
                }
            }
        }
        Ok(Ready::Send(Box::new(job), config))
    }

    /// One job: the endpoint's filters and transform, admission (breaker, endpoint slot), one
    /// attempt, and what follows from it.
    async fn handle(
        &self,
        job: Job,
        out: &mut Vec<DeliveryFuture>,
    ) -> Result<Outcome, DispatcherError> {
        match self.prepare(job, out).await? {
            Ready::Send(job, config) => self.send_prepared(*job, &config, out).await,
            Ready::Ended(outcome) => Ok(outcome),
        }
    }

    /// Sends a prepared job on its own, and what follows from it.
    async fn send_prepared(
        &self,
        job: Job,
        config: &EndpointConfig,
        out: &mut Vec<DeliveryFuture>,
    ) -> Result<Outcome, DispatcherError> {
        let message_id = delivery::webhook_id(&job.head.event_id);
        // A lane's head waits for the endpoint like a tier task does: an open breaker counts as
        // an attempt, and the head may be the half-open probe.
        let from_tier = job.tier > 0 || job.ordered;
        // A replay was asked for (by a person or a recovery), usually right after the endpoint
        // was fixed, while its breaker may still be cooling down: an open breaker holds it back
        // instead of counting as its attempt, for a bounded number of tier-1 waits.
        let wait_out_breaker = job.replay.is_some() && job.deferrals < REPLAY_BREAKER_WAITS;
        match self
            .send_once(
                &job.endpoint,
                config,
                &message_id,
                &job.body,
                from_tier,
                wait_out_breaker,
            )
            .await
        {
            Sent::Attempt(attempt) => self.after_attempt(job, attempt, out).await,
            Sent::Deferred(reason) => self.defer(job, reason, out).await,
            Sent::Interrupted => Ok(Outcome::Interrupted),
        }
    }

    /// Admission (breaker, rate limit, endpoint slot, global slot) and one request: what the
    /// main path and the tiers do for a single delivery and for a batch alike.
    async fn send_once(
        &self,
        endpoint: &WebhookEntry,
        config: &EndpointConfig,
        message_id: &str,
        body: &[u8],
        from_tier: bool,
        wait_out_breaker: bool,
    ) -> Sent {
        let endpoint_id = endpoint.webhook.id.clone();
        let state = self.endpoints.get(&endpoint_id);
        let probe = match state.admit(from_tier) {
            Admission::Allowed { probe } => probe,
            Admission::Refused if !from_tier || wait_out_breaker => {
                return Sent::Deferred("circuit_open");
            }
            Admission::Refused => {
                // In a tier the open breaker answers for the endpoint: the endpoint failed often
                // enough in a row that a request would most likely fail too, and counting it as
                // an attempt keeps every task's way through the tiers finite.
                self.metrics
                    .attempts
                    .with_label_values(&["circuit_open"])
                    .inc();
                let attempt = Attempt {
                    result: AttemptResult::Retryable {
                        code: "CIRCUIT_OPEN".into(),
                        message: "not sent: the endpoint's circuit breaker is open after consecutive failures".into(),
                        status: None,
                        retry_after: None,
                    },
                    duration: Duration::ZERO,
                    response_body: String::new(),
                    body_truncated: false,
                };
                return Sent::Attempt(attempt);
            }
        };
        // The rate limit before the slot: a delivery waiting for its turn holds no slot.
        let limit = config.rate_limit.or(self.settings.default_rate_limit);
        match state
            .throttle
            .reserve(limit, self.settings.endpoint_queue_wait)
        {
            Some(wait) if wait.is_zero() => {}
            Some(wait) => {
                self.metrics.throttled.with_label_values(&["waited"]).inc();
                tokio::select! {
                    _ = self.interrupt.cancelled() => {
                        if probe {
                            state.abandon_probe();
                        }
                        return Sent::Interrupted;
                    }
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            None => {
                if probe {
                    state.abandon_probe();
                }
                self.metrics
                    .throttled
                    .with_label_values(&["deferred"])
                    .inc();
                return Sent::Deferred("throttled");
            }
        }
        let permit = tokio::time::timeout(
            self.settings.endpoint_queue_wait,
            Arc::clone(&state.permits).acquire_owned(),
        )
        .await;
        let Ok(Ok(permit)) = permit else {
            if probe {
                state.abandon_probe();
            }
            return Sent::Deferred("saturated");
        };
        let global = tokio::select! {
            _ = self.interrupt.cancelled() => {
                if probe {
                    state.abandon_probe();
                }
                return Sent::Interrupted;
            }
            global = Arc::clone(&self.global).acquire_owned() => global,
        };
        self.metrics.in_flight.inc();
        let attempt = tokio::select! {
            _ = self.interrupt.cancelled() => None,
            attempt = self.sender.attempt(endpoint, config, message_id, body) => Some(attempt),
        };
        self.metrics.in_flight.dec();
        drop(global);
        drop(permit);
        let Some(attempt) = attempt else {
            if probe {
                state.abandon_probe();
            }
            return Sent::Interrupted;
        };
        self.metrics
            .attempt_seconds
            .observe(attempt.duration.as_secs_f64());
        let label = match attempt.result {
            AttemptResult::Delivered { .. } => "delivered",
            AttemptResult::Retryable { .. } => "retryable",
            AttemptResult::Gone { .. } => "gone",
            AttemptResult::Terminal { .. } => "terminal",
        };
        self.metrics.attempts.with_label_values(&[label]).inc();
        let failed = matches!(attempt.result, AttemptResult::Retryable { .. });
        let (before, after) = state.record(failed);
        if before != after {
            let name = match after {
                BreakerState::Closed => "closed",
                BreakerState::Open => "open",
                BreakerState::HalfOpen => "half_open",
            };
            info!(
                webhook = endpoint_id,
                state = name,
                "circuit breaker changed"
            );
            self.metrics
                .breaker_transitions
                .with_label_values(&[name])
                .inc();
        }
        self.metrics
            .breaker_state
            .with_label_values(&[&endpoint_id])
            .set(after.gauge());
        Sent::Attempt(attempt)
    }

    /// Ends a job that cannot be sent (its configuration is unusable, a filter or the transform
    /// failed): a dead letter and an error span, like a terminal answer, without a request.
    async fn fail_unsent(
        &self,
        job: Job,
        code: &str,
        message: String,
        out: &mut Vec<DeliveryFuture>,
    ) -> Result<Outcome, DispatcherError> {
        self.metrics.attempts.with_label_values(&["terminal"]).inc();
        let attempt = Attempt {
            result: AttemptResult::Terminal {
                code: code.into(),
                message,
                status: None,
            },
            duration: Duration::ZERO,
            response_body: String::new(),
            body_truncated: false,
        };
        self.after_attempt(job, attempt, out).await
    }

    /// Records that the endpoint's filters skipped an event: a `skipped` span, no attempt.
    async fn skip(
        &self,
        job: &Job,
        out: &mut Vec<DeliveryFuture>,
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
                "url": webhook.url,
                "http_method": webhook.http_method,
                "attempt": job.attempts,
                "source": job.source,
                "replay_id": job.replay.as_ref().map(|r| &r.replay_id),
            }),
            created_at: now_rfc3339(),
        };
        let bytes = erp_schemas::error::encode("monitoring span", &span)?;
        out.push(
            kafka::enqueue(
                &self.producer,
                &self.topics.monitoring(),
                &span.integration_id,
                &bytes,
            )
            .await?,
        );
        Ok(Outcome::Skipped)
    }

    /// Records an attempt and moves the job on: done, next tier, or dead letter.
    async fn after_attempt(
        &self,
        mut job: Job,
        attempt: Attempt,
        out: &mut Vec<DeliveryFuture>,
    ) -> Result<Outcome, DispatcherError> {
        job.attempts += 1;
        let attempted_at = now_rfc3339();
        job.first_attempt_at
            .get_or_insert_with(|| attempted_at.clone());
        let (level, outcome, next) = match &attempt.result {
            AttemptResult::Delivered { .. } => (Level::Success, Outcome::Delivered, None),
            AttemptResult::Gone { .. } => {
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
            AttemptResult::Terminal { .. } => {
                self.dead_letter_failure(&job, &attempt.result, out).await?;
                (Level::Error, Outcome::Failed, None)
            }
            AttemptResult::Retryable { retry_after, .. } => {
                let allowed = self
                    .schedule
                    .retries_allowed(job.endpoint.webhook.retry_policy);
                if job.attempts > allowed {
                    self.dead_letter_failure(&job, &attempt.result, out).await?;
                    (Level::Error, Outcome::Failed, None)
                } else if job.ordered {
                    // The head stays in its lane and blocks only its key; the tier number names
                    // the wait.
                    let tier = self.schedule.tier_for(job.attempts, *retry_after);
                    let due_at_ms = self.schedule.due_at(tier, now_millis());
                    let held = Outcome::Held {
                        due_at_ms,
                        attempted: true,
                    };
                    (Level::Warning, held, Some((tier, due_at_ms)))
                } else {
                    let tier = self.schedule.tier_for(job.attempts, *retry_after);
                    let due = self
                        .write_task(&job, tier, Some(&attempt.result), "retry", out)
                        .await?;
                    (Level::Warning, Outcome::Scheduled, Some((tier, due)))
                }
            }
        };
        self.attempt_span(&job, &attempt, level, outcome, next, out)
            .await?;
        Ok(outcome)
    }

    /// Sends a job to a retry tier without an attempt: the first tier from the main path, the
    /// same tier from a tier.
    async fn defer(
        &self,
        mut job: Job,
        reason: &str,
        out: &mut Vec<DeliveryFuture>,
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
        let tier = job.tier.max(1);
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
    async fn write_task(
        &self,
        job: &Job,
        tier: u32,
        last: Option<&AttemptResult>,
        reason: &str,
        out: &mut Vec<DeliveryFuture>,
    ) -> Result<i64, DispatcherError> {
        self.enqueue_task(&self.task(job, tier, last), reason, out)
            .await
    }

    /// The delivery task of a job for `tier`, due after the tier's wait.
    fn task(&self, job: &Job, tier: u32, last: Option<&AttemptResult>) -> DeliveryTask {
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
    async fn enqueue_task(
        &self,
        task: &DeliveryTask,
        reason: &str,
        out: &mut Vec<DeliveryFuture>,
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

    async fn dead_letter_failure(
        &self,
        job: &Job,
        result: &AttemptResult,
        out: &mut Vec<DeliveryFuture>,
    ) -> Result<(), DispatcherError> {
        let status = result
            .status()
            .map_or_else(|| "none".to_owned(), |s| s.to_string());
        let letter = dead_letter(
            "DELIVERY_FAILED",
            &format!(
                "{}: {} (attempt {}, last status {status}, endpoint {})",
                result.code(),
                result.message(),
                job.attempts,
                job.endpoint.webhook.url.as_deref().unwrap_or_default()
            ),
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
    async fn disable(&self, entry: &WebhookEntry) {
        let _exclusive = self.writer.exclusive().await;
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
            }
            Err(error) => warn!(webhook = entry.webhook.id, %error, "cannot disable endpoint"),
        }
    }

    /// The monitoring span of one attempt.
    async fn attempt_span(
        &self,
        job: &Job,
        attempt: &Attempt,
        level: Level,
        outcome: Outcome,
        next: Option<(u32, i64)>,
        out: &mut Vec<DeliveryFuture>,
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
                "url": webhook.url,
                "attempt": job.attempts,
                "deferrals": job.deferrals,
                "status_code": attempt.result.status(),
                "response_body": attempt.response_body,
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
        let bytes = erp_schemas::error::encode("monitoring span", &span)?;
        out.push(
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
        out: &mut Vec<DeliveryFuture>,
    ) -> Result<(), DispatcherError> {
        let bytes = erp_schemas::error::encode("dead letter", letter)?;
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

/// How a lane driver delivers its head: through [`Core::attempt_held`] while the dispatcher
/// runs.
fn deliver_held(core: &Arc<Core>) -> ordering::DeliverFn {
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
    fn admit_ordered(
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
    async fn attempt_held(&self, entry: LaneEntry) -> Result<Step, DispatcherError> {
        let config = self.view.snapshot();
        let mut out = Vec::new();
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
            kafka::await_deliveries(out).await?;
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
        kafka::await_deliveries(out).await?;
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
