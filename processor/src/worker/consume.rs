//! Consume: the loop that polls a batch, sends it through the stages (plan → map → emit →
//! commit) while the previous batch completes, and redoes failed batches alone, in order.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use erp_runtime::{ConfigView, Runtime, kafka};
use erp_schemas::dead_letter::SourceCoordinates;

use crate::error::ProcessorError;
use crate::metrics::ProcessorMetrics;
use crate::rebalance::{InFlightPositions, Owned, ProcessorContext};
use crate::state::{DedupOverlay, StateStore};

use super::map::MappingCache;
use super::pipeline::*;
use super::settings::ProcessorSettings;

/// How often an idle processor checks whether its batch in flight has completed.
const IDLE_CHECK: Duration = Duration::from_millis(100);

/// Runs the processor until the runtime's shutdown token is cancelled.
pub async fn run(
    runtime: Runtime,
    view: ConfigView,
    settings: ProcessorSettings,
) -> Result<(), ProcessorError> {
    // Deciding records against a partly loaded configuration would ignore events of
    // integrations not read yet (and record their dedup keys): wait for the whole log first.
    tokio::select! {
        _ = runtime.shutdown.cancelled() => return Ok(()),
        loaded = view.wait_loaded(Duration::from_secs(300)) => loaded?,
    }
    // Our schemas are registered before the first record is read: a registry that refuses
    // them (or is missing) stops the start, not a batch.
    runtime.kafka.wire.prepare().await?;
    std::fs::create_dir_all(&settings.data_dir)?;
    let store = Arc::new(StateStore::open(
        &settings.data_dir.join("state"),
        settings.dedup_window,
    )?);
    let poison = Arc::new(store.poison_guard(settings.poison_after_crashes)?);
    let metrics = ProcessorMetrics::new(&runtime.metrics);
    metrics.dedup_keys.set(store.dedup_len() as i64);
    let topics = runtime.kafka.topics.clone();
    let producer = runtime.kafka.producer("erp-toolkit-processor")?;
    let owned: Owned = Arc::default();
    let in_flight_positions: InFlightPositions = Arc::default();
    let failed = Arc::new(AtomicBool::new(false));
    let context = ProcessorContext {
        store: Arc::clone(&store),
        kafka: runtime.kafka.clone(),
        owned: Arc::clone(&owned),
        in_flight: Arc::clone(&in_flight_positions),
        failed: Arc::clone(&failed),
        restored_records: metrics.restored_records.clone(),
    };
    let consumer: Arc<StreamConsumer<ProcessorContext>> = Arc::new(
        runtime
            .kafka
            .group_consumer_config("erp-toolkit-processor", &settings.group_id)
            .create_with_context(context)?,
    );
    consumer.subscribe(&[&topics.inbound_events(), &topics.platform_events()])?;
    let lag = erp_runtime::lag::watch(&runtime, &settings.group_id, &consumer);
    runtime.readiness.flag("processor").set(true);
    info!(
        topic = topics.inbound_events(),
        group = settings.group_id,
        "processor started"
    );

    // A consumer left without partitions while its topics have work waiting is stuck in group
    // coordination: the watchdog reports it and the processor stops, so the process restarts.
    let mut watchdog = tokio::spawn(erp_runtime::watchdog::watch(
        runtime.kafka.clone(),
        settings.group_id.clone(),
        vec![topics.inbound_events(), topics.platform_events()],
        {
            let owned = Arc::clone(&owned);
            move || owned.lock().map(|o| !o.is_empty()).unwrap_or(true)
        },
        runtime
            .readiness
            .flag(format!("watchdog: {}", settings.group_id)),
        Default::default(),
        runtime.shutdown.clone(),
    ));
    let mut watching = true;

    let mut cache = MappingCache::default();
    let mut expiry = tokio::time::interval(Duration::from_secs(600));
    let shutdown = runtime.shutdown.clone();
    let worker = Arc::new(Worker {
        producer,
        markers: Default::default(),
        store: Arc::clone(&store),
        metrics: metrics.clone(),
        settings,
        topics,
        poison,
        wire: runtime.kafka.wire.clone(),
    });
    // One batch is completing (acknowledgements, sled commit) while the next is decided,
    // mapped and written: the broker's latency and the mapping's CPU time overlap.
    let mut in_flight: Option<InFlight> = None;
    let mut idle = tokio::time::interval(IDLE_CHECK);
    idle.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Every way out of the loop (a `return` or `?` inside this block) goes through the
    // teardown below, which releases the dedup store.
    let result: Result<(), ProcessorError> = async {
    loop {
        if failed.load(Ordering::SeqCst) {
            if let Some(previous) = in_flight.take() {
                let _ = finish(previous, &consumer, &metrics, &in_flight_positions).await;
            }
            store.flush().await?;
            return Err(ProcessorError::Task(
                "state restore from the changelog failed; stopping rather than processing without dedup state".into(),
            ));
        }
        let first = tokio::select! {
            _ = shutdown.cancelled() => break,
            stalled = &mut watchdog, if watching => {
                watching = false;
                if let Ok(Some(reason)) = stalled {
                    if let Some(previous) = in_flight.take() {
                        let _ = finish(previous, &consumer, &metrics, &in_flight_positions).await;
                    }
                    store.flush().await?;
                    return Err(ProcessorError::Task(reason));
                }
                continue;
            }
            _ = expiry.tick() => {
                if let Err(error) = worker.expire(&owned).await {
                    warn!(%error, "dedup expiry failed");
                }
                metrics.dedup_keys.set(store.dedup_len() as i64);
                continue;
            }
            // Idle with a batch in flight: once it is complete, commit it now rather than
            // when the next record arrives, so the group's committed offset (lag) is current.
            _ = idle.tick(), if in_flight.is_some() => {
                if in_flight.as_ref().is_some_and(|f| f.task.is_finished())
                    && let Some(previous) = in_flight.take()
                    && let Err(failed) =
                        finish(previous, &consumer, &metrics, &in_flight_positions).await
                {
                    let batch = owned_only(failed, &owned);
                    let started = Instant::now();
                    if !worker.process_alone(&view, &mut cache, &batch, &shutdown).await {
                        info!("stopping with an unfinished batch left uncommitted");
                        store.flush().await?;
                        return Ok(());
                    }
                    done(batch, started, &consumer, &metrics).await;
                }
                continue;
            }
            // Only the wait for the first record races the other arms (it is cancel-safe);
            // the rest of the batch is collected to the end below.
            first = kafka::first_record(&*consumer) => first,
        };
        let Some(first) = first else {
            continue;
        };
        let batch = next_batch(
            &consumer,
            first,
            worker.settings.max_batch,
            &owned,
            &worker.wire,
        )
        .await;
        if batch.is_empty() {
            continue;
        }
        let written = worker
            .write_batch(
                &view,
                &mut cache,
                &batch,
                in_flight.as_ref().map(|f| &f.overlay),
            )
            .await;
        let previous = match in_flight.take() {
            Some(previous) => finish(previous, &consumer, &metrics, &in_flight_positions).await,
            None => Ok(()),
        };
        match (previous, written) {
            (Ok(()), Ok(written)) => {
                let overlay = Arc::new(written.pending.overlay_of_batch());
                if let Ok(mut positions) = in_flight_positions.lock() {
                    positions.clone_from(written.pending.offsets());
                }
                let task = {
                    let worker = Arc::clone(&worker);
                    tokio::spawn(async move { worker.complete(written).await })
                };
                in_flight = Some(InFlight {
                    task,
                    overlay,
                    batch,
                    started: Instant::now(),
                });
            }
            (previous, written) => {
                // Something failed, so what was decided on top of it cannot be trusted. Redo
                // the failed batch and this one alone, in order, each until it is done; outputs
                // already handed to the producer may be written twice, with the same ids.
                if let Err(error) = written {
                    metrics.batch_retries.inc();
                    error!(%error, records = batch.len(), "writing a batch failed; retrying it");
                }
                let mut redo = Vec::new();
                if let Err(failed) = previous {
                    redo.push(owned_only(failed, &owned));
                }
                redo.push(owned_only(batch, &owned));
                for batch in redo {
                    let started = Instant::now();
                    if !worker
                        .process_alone(&view, &mut cache, &batch, &shutdown)
                        .await
                    {
                        info!("stopping with an unfinished batch left uncommitted");
                        store.flush().await?;
                        return Ok(());
                    }
                    done(batch, started, &consumer, &metrics).await;
                }
            }
        }
    }
    if let Some(previous) = in_flight.take() {
        // A failure here leaves the batch uncommitted: its next owner processes it again.
        let _ = finish(previous, &consumer, &metrics, &in_flight_positions).await;
    }
    worker.finish_markers().await;
    store.flush().await?;
    Ok(())
    }
    .await;
    watchdog.abort();
    let teardown = Teardown {
        lag,
        in_flight,
        worker,
        consumer,
        store,
    };
    teardown.release().await;
    info!("processor stopped");
    result
}

/// What a stopping processor holds that keeps its dedup store open.
struct Teardown {
    lag: erp_runtime::lag::LagWatch,
    in_flight: Option<InFlight>,
    worker: Arc<Worker>,
    consumer: Arc<StreamConsumer<ProcessorContext>>,
    store: Arc<StateStore>,
}

impl Teardown {
    /// Closes everything that holds the dedup store, then the store itself, and returns only
    /// when its file lock is free: a processor started next on the same directory (a restart
    /// inside one process) must be able to open it. The lag measurement and the batch in
    /// flight are bounded by broker timeouts; the consumer's close runs its revoke callback
    /// (which uses the store) and blocks, so it runs on a blocking thread.
    async fn release(self) {
        let Self {
            lag,
            in_flight,
            worker,
            consumer,
            store,
        } = self;
        lag.stop().await;
        if let Some(in_flight) = in_flight {
            // Left uncommitted: its next owner processes it again.
            let _ = in_flight.task.await;
        }
        drop(worker);
        if let Err(error) = tokio::task::spawn_blocking(move || drop(consumer)).await {
            warn!(%error, "closing the processor's consumer failed");
        }
        match Arc::into_inner(store) {
            Some(store) => {
                if let Err(error) = tokio::task::spawn_blocking(move || drop(store)).await {
                    warn!(%error, "closing the dedup store failed");
                }
            }
            None => warn!("the dedup store is still in use after the processor stopped"),
        }
    }
}

/// A batch whose outputs are handed to the producer and whose completion runs in a task.
pub(super) struct InFlight {
    pub(super) task: tokio::task::JoinHandle<Result<(), ProcessorError>>,
    /// Its dedup decisions, for the batch decided meanwhile.
    pub(super) overlay: Arc<DedupOverlay>,
    pub(super) batch: Vec<Input>,
    pub(super) started: Instant,
}

/// Waits for the batch in flight. Done: the advisory group commit and the batch metrics. Failed:
/// the batch back, for a retry.
pub(super) async fn finish(
    in_flight: InFlight,
    consumer: &Arc<StreamConsumer<ProcessorContext>>,
    metrics: &ProcessorMetrics,
    positions: &InFlightPositions,
) -> Result<(), Vec<Input>> {
    let result = in_flight
        .task
        .await
        .map_err(|e| ProcessorError::Task(e.to_string()))
        .and_then(|r| r);
    if let Ok(mut positions) = positions.lock() {
        positions.clear();
    }
    match result {
        Ok(()) => {
            done(in_flight.batch, in_flight.started, consumer, metrics).await;
            Ok(())
        }
        Err(error) => {
            metrics.batch_retries.inc();
            error!(%error, records = in_flight.batch.len(), "batch failed; retrying it");
            Err(in_flight.batch)
        }
    }
}

/// After a batch is committed: the advisory group commit (the stored position is what counts;
/// the group offset feeds lag metrics) and the batch metrics.
pub(super) async fn done(
    batch: Vec<Input>,
    started: Instant,
    consumer: &Arc<StreamConsumer<ProcessorContext>>,
    metrics: &ProcessorMetrics,
) {
    let messages: Vec<OwnedMessage> = batch.into_iter().map(|input| input.message).collect();
    kafka::commit_batch_with(consumer, &messages, false).await;
    metrics
        .batch_seconds
        .observe(started.elapsed().as_secs_f64());
    metrics.batch_records.observe(messages.len() as f64);
}

/// The records of `batch` from partitions this instance still owns.
pub(super) fn owned_only(batch: Vec<Input>, owned: &Owned) -> Vec<Input> {
    let owned = owned.lock().map(|o| o.clone()).unwrap_or_default();
    batch
        .into_iter()
        .filter(|i| owned.contains(&(i.source.topic.clone(), i.source.partition)))
        .collect()
}

/// Collects a batch after its first record and notes where each record came from. Records of partitions revoked while
/// the batch was being collected are left to their new owner.
pub(super) async fn next_batch(
    consumer: &Arc<StreamConsumer<ProcessorContext>>,
    first: OwnedMessage,
    max: usize,
    owned: &Owned,
    wire: &erp_runtime::wire::Wire,
) -> Vec<Input> {
    // Avro records become the JSON the stages read (both formats are read during a migration).
    let messages = wire
        .normalise(kafka::fill_batch(consumer, first, max).await)
        .await;
    let owned = owned.lock().map(|o| o.clone()).unwrap_or_default();
    messages
        .into_iter()
        .filter(|m| owned.contains(&(m.topic().to_owned(), m.partition())))
        .map(|message| Input {
            source: SourceCoordinates {
                topic: message.topic().to_owned(),
                partition: message.partition(),
                offset: message.offset(),
            },
            message,
        })
        .collect()
}

impl Worker {
    /// Writes and completes a batch on its own (no other batch in flight), retrying with
    /// backoff until it is done. `false` when shutdown interrupted it, uncommitted.
    pub(super) async fn process_alone(
        &self,
        view: &ConfigView,
        cache: &mut MappingCache,
        batch: &[Input],
        shutdown: &CancellationToken,
    ) -> bool {
        let mut backoff = Duration::from_millis(200);
        loop {
            let result = match self.write_batch(view, cache, batch, None).await {
                Ok(written) => self.complete(written).await,
                Err(error) => Err(error),
            };
            let Err(error) = result else { return true };
            self.metrics.batch_retries.inc();
            error!(%error, records = batch.len(), ?backoff, "batch failed; retrying it");
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }
}
