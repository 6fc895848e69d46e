//! Consume: the main consumer of `erp.core.events` and one consumer per retry tier, each a loop
//! that polls a batch, hands it to the stages (route → prepare → admit → send → record) and
//! commits once everything the batch produced is acknowledged.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use erp_runtime::{ConfigState, ConfigView, ConfigWriter, Runtime, kafka};
use erp_schemas::dead_letter::SourceCoordinates;
use erp_schemas::delivery_task::DeliveryTask;
use erp_schemas::timestamp::now_millis;

use crate::delivery::Sender;
use crate::error::DispatcherError;
use crate::isolation::Endpoints;
use crate::metrics::DispatcherMetrics;
use crate::ordering::{LaneContext, Lanes, Put};
use crate::schedule::Schedule;

use super::ordered::deliver_held;
use super::outputs::Outputs;
use super::pipeline::*;
use super::settings::DispatcherSettings;

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
    .with_signing_keys(settings.signing_keys.clone());
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
        wire: runtime.kafka.wire.clone(),
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

    let tier_failure: TierFailure = Arc::default();
    let mut tiers = Vec::new();
    for tier in 1..=core.schedule.tiers() {
        let consumer = runtime.kafka.group_consumer(
            &format!("erp-toolkit-dispatcher-retry-{tier}"),
            &format!("{}.retry.{tier}", core.settings.group_id),
        )?;
        consumer.subscribe(&[&topics.retry(tier)])?;
        let consumer = Arc::new(consumer);
        let group = format!("{}.retry.{tier}", core.settings.group_id);
        // Detached: it ends with the shutdown or when the consumer is dropped.
        drop(erp_runtime::lag::watch(&runtime, &group, &consumer));
        tiers.push(tokio::spawn(supervise_tier(
            Arc::clone(&core),
            tier,
            consumer,
            runtime.readiness.clone(),
            Arc::clone(&tier_failure),
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
    drop(erp_runtime::lag::watch(
        &runtime,
        &core.settings.group_id,
        &consumer,
    ));
    // A main consumer left without partitions while events wait is stuck in group
    // coordination: the watchdog reports it and the dispatcher stops, so the process restarts.
    // (Not on the tiers: their records wait for their due time, so waiting work is normal.)
    tokio::spawn(watch_main(
        &runtime,
        &core,
        Arc::clone(&consumer),
        Arc::clone(&tier_failure),
    ));
    runtime.readiness.flag("dispatcher").set(true);
    info!(
        topic = topics.core_events(),
        group = core.settings.group_id,
        tiers = core.schedule.tiers(),
        "dispatcher started"
    );
    let outcome = run_main(Arc::clone(&core), consumer).await;
    for tier in tiers {
        if let Err(panicked) = tier.await {
            record_tier_failure(&tier_failure, format!("a retry tier panicked: {panicked}"));
        }
    }
    info!("dispatcher stopped");
    outcome?;
    match tier_failure.lock().ok().and_then(|failed| failed.clone()) {
        Some(failure) => Err(DispatcherError::Task(failure)),
        None => Ok(()),
    }
}

/// Runs the main consumer's watchdog: a stall stops the dispatcher with an error.
fn watch_main(
    runtime: &Runtime,
    core: &Arc<Core>,
    consumer: Arc<StreamConsumer<LaneContext>>,
    failure: TierFailure,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let group = core.settings.group_id.clone();
    let shutdown = core.shutdown.clone();
    let watched = erp_runtime::watchdog::watch(
        runtime.kafka.clone(),
        group.clone(),
        vec![core.topics.core_events()],
        move || consumer.assignment().map_or(true, |a| a.count() > 0),
        runtime.readiness.flag(format!("watchdog: {group}")),
        Default::default(),
        shutdown.clone(),
    );
    async move {
        if let Some(reason) = watched.await {
            tracing::error!(
                reason,
                "dispatcher consumer stalled; stopping the dispatcher"
            );
            record_tier_failure(&failure, reason);
            shutdown.cancel();
        }
    }
}

/// The first retry tier that ended on its own (or the main consumer's stall).
type TierFailure = Arc<Mutex<Option<String>>>;

fn record_tier_failure(failure: &TierFailure, what: String) {
    if let Ok(mut first) = failure.lock()
        && first.is_none()
    {
        *first = Some(what);
    }
}

/// Runs a retry tier. A tier that ends before the stop (or panics) would leave its retries
/// undelivered while the rest looks healthy: the dispatcher reports itself not ready, stops
/// as a whole and fails, so the process exits non-zero.
async fn supervise_tier(
    core: Arc<Core>,
    tier: u32,
    consumer: Arc<StreamConsumer>,
    readiness: erp_runtime::Readiness,
    failure: TierFailure,
) {
    let shutdown = core.shutdown.clone();
    let ran = tokio::spawn(run_tier(core, tier, consumer)).await;
    if shutdown.is_cancelled() && ran.is_ok() {
        return;
    }
    let how = match ran {
        Ok(()) => "ended".to_owned(),
        Err(panicked) => format!("panicked: {panicked}"),
    };
    tracing::error!(
        tier,
        how,
        "dispatcher retry tier stopped; stopping the dispatcher"
    );
    let _ = readiness.flag(format!("task: dispatcher retry tier {tier}"));
    record_tier_failure(&failure, format!("retry tier {tier} {how}"));
    shutdown.cancel();
}

/// The main path: batches of `erp.core.events`, several in progress, committed in order.
pub(super) async fn run_main(
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
                    // Avro core events become the JSON every stage reads (both formats are
                    // read during a migration).
                    let batch = core.wire.normalise(batch).await;
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
pub(super) async fn fill_batch(
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

/// Starts a main-path batch in its own task, with a slot of the batches in flight.
pub(super) fn spawn_batch(
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
pub(super) async fn run_tier(core: Arc<Core>, tier: u32, consumer: Arc<StreamConsumer>) {
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

/// Moves a tier consumer back to `offset` of a partition, to read a record again when due.
pub(super) async fn seek(
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

impl Core {
    /// Processes a batch until everything it produced is acknowledged by Kafka, retrying the
    /// batch (with the same `webhook-id`s) when recording fails.
    pub(super) async fn process_until_recorded(
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
    pub(super) async fn process(
        &self,
        batch: &[OwnedMessage],
        tier: u32,
        config: Option<Arc<ConfigState>>,
    ) -> Result<BatchEnd, DispatcherError> {
        let config = config.unwrap_or_else(|| self.view.snapshot());
        let mut out = Outputs::default();
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
            let mut out = Outputs::default();
            let outcome = self.handle(job, &mut out).await;
            (outcome, out)
        }));
        let batched = futures::future::join_all(batches.into_iter().map(|members| async move {
            let mut out = Outputs::default();
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
        out.settle(&self.producer, &self.topics.monitoring())
            .await?;
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
}
