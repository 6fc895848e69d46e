//! The processor loop: poll a batch, decide every record (dedup, routing), map in a blocking
//! task, write every output and the changelog of the batch, then commit the batch's dedup keys
//! and input positions to sled in one atomic write (decision 2), then write position markers
//! and make an advisory group commit.
//!
//! Two batches overlap: while one waits for its acknowledgements and its sled commit (in a
//! task), the next is polled, decided (seeing the first one's dedup keys), mapped and written.
//! Commits stay in batch order, since a batch is committed only after the previous one is.
//!
//! A batch is done only when all of its outputs and changelog records are acknowledged by Kafka
//! and its state is on disk; a crash anywhere before that re-processes the batch from the
//! stored position with the same derived ids. A failure to write (Kafka down) redoes the failed
//! batch and the one after it alone, in order, with backoff: the partition waits rather than
//! skipping records.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use erp_runtime::config_view::{Route, UseCaseEntry};
use erp_runtime::{ConfigView, Runtime, kafka};
use erp_schemas::dead_letter::SourceCoordinates;
use erp_schemas::inbound::InboundEventRecord;
use erp_schemas::timestamp::now_millis;

use crate::changelog;
use crate::error::ProcessorError;
use crate::metrics::ProcessorMetrics;
use crate::outcome::{self, Outcome, PlatformHead};
use crate::rebalance::{InFlightPositions, Owned, ProcessorContext};
use crate::state::{DedupEntry, DedupOverlay, PendingState, StateStore, Verdict};
use erp_mapping::outbound::CompiledOutbound;
use erp_mapping::payload;
use erp_mapping::{
    CompiledConfiguration, FileProxyContext, MappingContext, MappingError, map_document,
};

/// How the processor runs.
#[derive(Debug, Clone)]
pub struct ProcessorSettings {
    /// Where the dedup store lives.
    pub data_dir: PathBuf,
    /// Consumer group of all processor instances.
    pub group_id: String,
    /// How long a dedup id suppresses later events with the same id.
    pub dedup_window: Duration,
    /// Time limit of one JSONata evaluation.
    pub mapping_timeout: Duration,
    /// Most records per poll batch.
    pub max_batch: usize,
    /// Root URL of the file proxy that `file_proxy_url` fields point at (`None`: such fields
    /// are left out).
    pub file_proxy_base_url: Option<String>,
    /// Whether a successfully mapped event gets a `success` span too (skips and errors always
    /// do). Off halves the monitoring volume of high-volume streams; the counters remain.
    pub success_spans: bool,
}

impl Default for ProcessorSettings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data/processor"),
            group_id: "erp-toolkit-processor".into(),
            dedup_window: Duration::from_secs(24 * 3600),
            mapping_timeout: Duration::from_secs(1),
            max_batch: 500,
            file_proxy_base_url: None,
            success_spans: true,
        }
    }
}

/// A record of the batch with its coordinates.
struct Input {
    message: OwnedMessage,
    source: SourceCoordinates,
}

/// Compiled configurations by use case, valid for one revision each.
#[derive(Default)]
struct MappingCache {
    inbound: HashMap<String, (i64, Result<Arc<CompiledConfiguration>, MappingError>)>,
    outbound: HashMap<String, (i64, Result<Arc<CompiledOutbound>, MappingError>)>,
}

/// The entry's compiled configuration from `cache`, compiled with `compile` when the use case
/// changed since.
fn cached<T>(
    cache: &mut HashMap<String, (i64, Result<Arc<T>, MappingError>)>,
    entry: &UseCaseEntry,
    compile: impl FnOnce(&serde_json::Value) -> Result<T, MappingError>,
) -> Result<Arc<T>, MappingError> {
    if let Some((revision, compiled)) = cache.get(&entry.use_case.id)
        && *revision == entry.revision
    {
        return compiled.clone();
    }
    let empty = serde_json::json!({});
    let compiled = compile(entry.use_case.configuration.as_ref().unwrap_or(&empty)).map(Arc::new);
    cache.insert(
        entry.use_case.id.clone(),
        (entry.revision, compiled.clone()),
    );
    compiled
}

impl MappingCache {
    fn get(&mut self, entry: &UseCaseEntry) -> Result<Arc<CompiledConfiguration>, MappingError> {
        cached(&mut self.inbound, entry, CompiledConfiguration::compile)
    }

    fn outbound(&mut self, entry: &UseCaseEntry) -> Result<Arc<CompiledOutbound>, MappingError> {
        cached(&mut self.outbound, entry, CompiledOutbound::compile)
    }
}

/// Finds the enabled outbound use cases of the event's organisation subscribed to its name. A
/// use case whose configuration no longer compiles is reported as failed for this event; the
/// healthy ones still run.
fn plan_outbound(
    config: &erp_runtime::ConfigState,
    cache: &mut MappingCache,
    head: PlatformHead,
    timeout: Duration,
) -> Plan {
    let mut use_cases = Vec::new();
    let mut failed = Vec::new();
    for entry in config.enabled_use_cases(&head.org_id, "outbound") {
        match cache.outbound(entry) {
            Ok(compiled) if compiled.event == head.event_name => {
                use_cases.push((Box::new(entry.clone()), compiled))
            }
            Ok(_) => {}
            Err(error) => failed.push((Box::new(entry.clone()), Err(error))),
        }
    }
    if use_cases.is_empty() && failed.is_empty() {
        return Plan::Done(Outcome::NotSubscribed);
    }
    if !failed.is_empty() {
        let mut results = failed;
        for (entry, compiled) in use_cases {
            let result = compiled.apply(&head.event, timeout);
            results.push((entry, result));
        }
        return Plan::Done(Outcome::Outbound { head, results });
    }
    Plan::Outbound { head, use_cases }
}

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
    std::fs::create_dir_all(&settings.data_dir)?;
    let store = Arc::new(StateStore::open(
        &settings.data_dir.join("state"),
        settings.dedup_window,
    )?);
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
    runtime.readiness.flag("processor").set(true);
    info!(
        topic = topics.inbound_events(),
        group = settings.group_id,
        "processor started"
    );

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
    });
    // One batch is completing (acknowledgements, sled commit) while the next is decided,
    // mapped and written: the broker's latency and the mapping's CPU time overlap.
    let mut in_flight: Option<InFlight> = None;
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
        let batch = tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = expiry.tick() => {
                if let Err(error) = worker.expire(&owned).await {
                    warn!(%error, "dedup expiry failed");
                }
                metrics.dedup_keys.set(store.dedup_len() as i64);
                continue;
            }
            batch = next_batch(&consumer, worker.settings.max_batch, &owned) => batch,
        };
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
    info!("processor stopped");
    Ok(())
}

/// A batch whose outputs are handed to the producer and whose completion runs in a task.
struct InFlight {
    task: tokio::task::JoinHandle<Result<(), ProcessorError>>,
    /// Its dedup decisions, for the batch decided meanwhile.
    overlay: Arc<DedupOverlay>,
    batch: Vec<Input>,
    started: Instant,
}

/// What [`Worker::write_batch`] handed to the producer, still to be acknowledged and committed.
struct Written {
    deliveries: Vec<rdkafka::producer::DeliveryFuture>,
    changelog: Vec<(i32, rdkafka::producer::DeliveryFuture)>,
    pending: PendingState,
    counts: Vec<&'static str>,
}

/// Waits for the batch in flight. Done: the advisory group commit and the batch metrics. Failed:
/// the batch back, for a retry.
async fn finish(
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
async fn done(
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
fn owned_only(batch: Vec<Input>, owned: &Owned) -> Vec<Input> {
    let owned = owned.lock().map(|o| o.clone()).unwrap_or_default();
    batch
        .into_iter()
        .filter(|i| owned.contains(&(i.source.topic.clone(), i.source.partition)))
        .collect()
}

/// Polls a batch and notes where each record came from. Records of partitions revoked while
/// the batch was being collected are left to their new owner.
async fn next_batch(
    consumer: &Arc<StreamConsumer<ProcessorContext>>,
    max: usize,
    owned: &Owned,
) -> Vec<Input> {
    let messages = kafka::poll_batch(consumer, max).await;
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

/// Hands a record to the producer, waiting while its queue is full.
async fn send_now<'a>(
    producer: &FutureProducer,
    mut record: FutureRecord<'a, [u8], [u8]>,
) -> Result<rdkafka::producer::DeliveryFuture, ProcessorError> {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};
    loop {
        match producer.send_result(record) {
            Ok(delivery) => return Ok(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                record = returned;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err((error, _)) => return Err(ProcessorError::Kafka(error)),
        }
    }
}

struct Worker {
    producer: FutureProducer,
    /// Position markers of the last committed batch, not yet acknowledged.
    markers: std::sync::Mutex<Vec<(i32, rdkafka::producer::DeliveryFuture)>>,
    store: Arc<StateStore>,
    metrics: ProcessorMetrics,
    settings: ProcessorSettings,
    topics: erp_schemas::topics::Topics,
}

/// A record's fate before mapping.
enum Plan {
    Done(Outcome),
    Map {
        record: Box<InboundEventRecord>,
        use_case: Box<UseCaseEntry>,
        compiled: Arc<CompiledConfiguration>,
    },
    Outbound {
        head: PlatformHead,
        use_cases: Vec<(Box<UseCaseEntry>, Arc<CompiledOutbound>)>,
    },
}

/// The organisation's environment as `env_var_ref` mappings see it: `SecretString` values are
/// marked secret and never decrypted here (a mapping reads a secret as missing, spec §4), so the
/// processor needs no secrets key.
fn mapping_environment(
    config: &erp_runtime::ConfigState,
    org_id: &str,
) -> std::collections::HashMap<String, erp_mapping::EnvValue> {
    config
        .environment(org_id)
        .into_iter()
        .flatten()
        .map(|(key, entry)| {
            let secret = entry.value_type == erp_schemas::config::EnvValueType::SecretString;
            let value = if secret {
                String::new()
            } else {
                entry.stored.clone()
            };
            (key.clone(), erp_mapping::EnvValue { value, secret })
        })
        .collect()
}

/// The CPU work of a batch, done off the async threads.
enum Work {
    Inbound(
        Box<InboundEventRecord>,
        Box<UseCaseEntry>,
        Arc<CompiledConfiguration>,
    ),
    Outbound(
        Box<PlatformHead>,
        Vec<(Box<UseCaseEntry>, Arc<CompiledOutbound>)>,
    ),
}

impl Worker {
    /// Decides, maps and hands to the producer everything a batch writes (outputs, then the
    /// changelog batch records), taking the dedup keys of the batch still in flight into account.
    async fn write_batch(
        &self,
        view: &ConfigView,
        cache: &mut MappingCache,
        batch: &[Input],
        in_flight: Option<&Arc<DedupOverlay>>,
    ) -> Result<Written, ProcessorError> {
        let config = view.snapshot();
        let mut pending = PendingState::with_overlay(in_flight.cloned());
        let mut plans = Vec::with_capacity(batch.len());
        let platform_topic = self.topics.platform_events();
        for input in batch {
            if input.source.topic == platform_topic {
                let head = serde_json::from_slice::<serde_json::Value>(
                    input.message.payload().unwrap_or_default(),
                )
                .ok()
                .and_then(PlatformHead::read);
                plans.push(match head {
                    Some(head) => plan_outbound(&config, cache, head, self.settings.mapping_timeout),
                    None => Plan::Done(Outcome::Poison {
                        reason: "not a core event: JSON with _event_id, _event_name and _org_id expected".into(),
                    }),
                });
                continue;
            }
            let record: InboundEventRecord = match erp_schemas::error::decode(
                "inbound event",
                input.message.payload().unwrap_or_default(),
            ) {
                Ok(record) => record,
                Err(error) => {
                    plans.push(Plan::Done(Outcome::Poison {
                        reason: error.to_string(),
                    }));
                    continue;
                }
            };
            plans.push(self.plan(&config, cache, &mut pending, record, input.source.partition)?);
        }

        // Mapping is CPU work: run it off the async threads, all of the batch in one task.
        let mut work = Vec::new();
        let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(plans.len());
        for (index, plan) in plans.into_iter().enumerate() {
            match plan {
                Plan::Done(outcome) => outcomes.push(Some(outcome)),
                Plan::Map {
                    record,
                    use_case,
                    compiled,
                } => {
                    work.push((index, Work::Inbound(record, use_case, compiled)));
                    outcomes.push(None);
                }
                Plan::Outbound { head, use_cases } => {
                    work.push((index, Work::Outbound(Box::new(head), use_cases)));
                    outcomes.push(None);
                }
            }
        }
        let timeout = self.settings.mapping_timeout;
        let file_proxy_base_url = self.settings.file_proxy_base_url.clone();
        let environments = Arc::clone(&config);
        let mapped = tokio::task::spawn_blocking(move || {
            work.into_iter()
                .map(|(index, work)| {
                    let (record, use_case, compiled) = match work {
                        Work::Inbound(record, use_case, compiled) => (record, use_case, compiled),
                        Work::Outbound(head, use_cases) => {
                            let results = use_cases
                                .into_iter()
                                .map(|(use_case, compiled)| {
                                    let result = compiled.apply(&head.event, timeout);
                                    (use_case, result)
                                })
                                .collect();
                            return (
                                index,
                                Outcome::Outbound {
                                    head: *head,
                                    results,
                                },
                            );
                        }
                    };
                    let file_proxy =
                        file_proxy_base_url
                            .as_ref()
                            .map(|base_url| FileProxyContext {
                                base_url: base_url.clone(),
                                org_id: record.org_id.clone(),
                                integration_id: record.integration_id.clone(),
                                streaming_use_cases: Default::default(),
                            });
                    let mut context = MappingContext::processing(timeout, file_proxy);
                    context.environment = Some(mapping_environment(&environments, &record.org_id));
                    let result = payload::parse_document(record.format, &record.payload)
                        .and_then(|document| map_document(&compiled, document, &context));
                    let outcome = match result {
                        Ok(result) => Outcome::Mapped {
                            record,
                            use_case,
                            result,
                        },
                        Err(error) => Outcome::Failed {
                            record,
                            use_case,
                            error,
                        },
                    };
                    (index, outcome)
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| ProcessorError::Task(e.to_string()))?;
        for (index, outcome) in mapped {
            if let Some(slot) = outcomes.get_mut(index) {
                *slot = Some(outcome);
            }
        }

        // Write every output in record order, then wait for all acknowledgements.
        let mut deliveries = Vec::new();
        let mut counts: Vec<&'static str> = Vec::with_capacity(outcomes.len());
        for (input, outcome) in batch.iter().zip(outcomes.iter()) {
            let Some(outcome) = outcome else { continue };
            counts.push(outcome.label());
            self.write(input, outcome, &mut deliveries).await?;
        }
        let mut firsts: HashMap<i32, i64> = HashMap::new();
        for input in batch {
            pending.advance(
                &input.source.topic,
                input.source.partition,
                input.source.offset + 1,
            );
            if input.source.topic != platform_topic {
                let first = firsts
                    .entry(input.source.partition)
                    .or_insert(input.source.offset);
                *first = (*first).min(input.source.offset);
            }
        }
        let changelog = self.write_changelog(&mut pending, &firsts).await?;
        Ok(Written {
            deliveries,
            changelog,
            pending,
            counts,
        })
    }

    /// Finishes a written batch: waits for its acknowledgements (and the previous batch's
    /// position markers), commits its state to sled in one atomic write, then writes its
    /// position markers.
    async fn complete(&self, written: Written) -> Result<(), ProcessorError> {
        let Written {
            deliveries,
            changelog,
            mut pending,
            counts,
        } = written;
        let markers = self
            .markers
            .lock()
            .map(|mut m| std::mem::take(&mut *m))
            .unwrap_or_default();
        kafka::await_deliveries(deliveries).await?;
        let mut own: HashMap<i32, Vec<i64>> = HashMap::new();
        for (partition, delivery) in changelog {
            match delivery.await {
                Ok(Ok(delivered)) => own.entry(partition).or_default().push(delivered.offset),
                Ok(Err((error, _))) => return Err(ProcessorError::Kafka(error)),
                Err(_) => return Err(ProcessorError::Kafka(rdkafka::error::KafkaError::Canceled)),
            }
        }
        // The previous batch's markers: a lost one only makes a new owner start earlier.
        for (partition, delivery) in markers {
            match delivery.await {
                Ok(Ok(delivered)) => own.entry(partition).or_default().push(delivered.offset),
                _ => warn!(partition, "a position marker was not written"),
            }
        }
        for (partition, offsets) in own {
            if let Some(next) = self.store.note_own_records(partition, offsets)? {
                pending.checkpoint(partition, next);
            }
        }
        let positions = pending.offsets().clone();
        self.store.commit(pending).await?;
        self.write_markers(&positions).await?;
        for label in counts {
            self.metrics.events.with_label_values(&[label]).inc();
        }
        self.metrics.dedup_keys.set(self.store.dedup_len() as i64);
        Ok(())
    }

    /// Writes and completes a batch on its own (no other batch in flight), retrying with
    /// backoff until it is done. `false` when shutdown interrupted it, uncommitted.
    async fn process_alone(
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

    fn plan(
        &self,
        config: &erp_runtime::ConfigState,
        cache: &mut MappingCache,
        pending: &mut PendingState,
        record: InboundEventRecord,
        partition: i32,
    ) -> Result<Plan, ProcessorError> {
        let record = Box::new(record);
        if config
            .integration(&record.org_id, &record.integration_id)
            .is_none()
        {
            return Ok(Plan::Done(Outcome::Ignored {
                message: format!(
                    "integration {} does not exist (any more)",
                    record.integration_id
                ),
                record,
                code: "INTEGRATION_NOT_FOUND",
                use_case: None,
            }));
        }
        if let Some(dedup_id) = &record.deduplication_id {
            let verdict = self.store.check(
                pending,
                &record.integration_id,
                dedup_id,
                &record.event_id,
                record.received_at,
                partition,
            )?;
            if let Verdict::Duplicate { first_event_id, .. } = verdict {
                return Ok(Plan::Done(Outcome::Duplicate {
                    record,
                    first_event_id,
                }));
            }
        }
        let route = config.route(
            &record.org_id,
            &record.integration_id,
            record.use_case_slug.as_deref(),
            record.event_name.as_deref(),
        );
        let routing_key = record
            .use_case_slug
            .clone()
            .or_else(|| record.event_name.clone())
            .unwrap_or_default();
        Ok(match route {
            Route::NotFound => Plan::Done(Outcome::Ignored {
                message: format!("no inbound use case matches {routing_key:?}"),
                record,
                code: "USE_CASE_NOT_FOUND",
                use_case: None,
            }),
            Route::Disabled(entry) => Plan::Done(Outcome::Ignored {
                message: format!("use case {:?} is disabled", entry.use_case.name),
                record,
                code: "USE_CASE_DISABLED",
                use_case: Some(Box::new(entry.clone())),
            }),
            Route::Matched(entry) => match cache.get(entry) {
                Ok(compiled) => Plan::Map {
                    record,
                    use_case: Box::new(entry.clone()),
                    compiled,
                },
                Err(error) => Plan::Done(Outcome::Failed {
                    record,
                    use_case: Box::new(entry.clone()),
                    error,
                }),
            },
        })
    }

    /// Writes the batch's new dedup keys to the changelog: one batch record per input
    /// partition, to the changelog partition of the same number.
    async fn write_changelog(
        &self,
        pending: &mut PendingState,
        firsts: &HashMap<i32, i64>,
    ) -> Result<Vec<(i32, rdkafka::producer::DeliveryFuture)>, ProcessorError> {
        let topic = self.topics.processor_state();
        let inbound = self.topics.inbound_events();
        let mut by_partition: BTreeMap<i32, Vec<(&Vec<u8>, &DedupEntry)>> = BTreeMap::new();
        for (key, entry) in pending.dedup_entries() {
            by_partition
                .entry(entry.partition)
                .or_default()
                .push((key, entry));
        }
        let mut records = Vec::new();
        for (partition, entries) in by_partition {
            let first = firsts.get(&partition).copied().unwrap_or_default();
            let key = changelog::batch_key(&inbound, first);
            let newest = entries.iter().map(|(_, e)| e.seen_at).max().unwrap_or(0);
            let value = changelog::batch_value(entries.into_iter());
            records.push((partition, key, value, newest));
        }
        let mut deliveries = Vec::new();
        for (partition, key, value, newest) in records {
            let record = FutureRecord::to(&topic)
                .partition(partition)
                .key(key.as_slice())
                .payload(value.as_slice());
            deliveries.push((partition, send_now(&self.producer, record).await?));
            pending.batch_record(partition, key, newest);
        }
        Ok(deliveries)
    }

    /// Writes position markers for a committed batch. They are awaited with the next batch
    /// (or at shutdown), not here: a marker only has to be correct, never current.
    async fn write_markers(
        &self,
        positions: &BTreeMap<(String, i32), i64>,
    ) -> Result<(), ProcessorError> {
        let topic = self.topics.processor_state();
        let mut written = Vec::new();
        for ((input_topic, partition), next) in positions {
            let (key, value) = changelog::position_record(input_topic, *next);
            let record = FutureRecord::to(&topic)
                .partition(*partition)
                .key(key.as_slice())
                .payload(value.as_slice());
            written.push((*partition, send_now(&self.producer, record).await?));
        }
        if let Ok(mut markers) = self.markers.lock() {
            markers.extend(written);
        }
        Ok(())
    }

    /// Waits for the position markers still in flight (at shutdown), so that the next owner
    /// of each partition starts exactly where this one stopped.
    async fn finish_markers(&self) {
        let markers = self
            .markers
            .lock()
            .map(|mut m| std::mem::take(&mut *m))
            .unwrap_or_default();
        for (partition, delivery) in markers {
            if !matches!(delivery.await, Ok(Ok(_))) {
                warn!(partition, "a position marker was not written");
            }
        }
    }

    /// Removes expired dedup keys; for partitions this instance owns, tombstones the changelog
    /// batch records whose entries all expired, so compaction can drop them (a restore skips
    /// expired entries either way).
    async fn expire(&self, owned: &Owned) -> Result<(), ProcessorError> {
        let store = Arc::clone(&self.store);
        let removed = tokio::task::spawn_blocking(move || store.expire(now_millis()))
            .await
            .map_err(|e| ProcessorError::Task(e.to_string()))??;
        let owned: Vec<i32> = owned
            .lock()
            .map(|o| o.iter().map(|(_, p)| *p).collect())
            .unwrap_or_default();
        let topic = self.topics.processor_state();
        let mut tombstones = Vec::new();
        for (key, partition) in &removed {
            if owned.contains(partition) {
                let record = FutureRecord::<[u8], [u8]>::to(&topic)
                    .partition(*partition)
                    .key(key.as_slice());
                tombstones.push(send_now(&self.producer, record).await?);
            }
        }
        kafka::await_deliveries(tombstones).await?;
        if !removed.is_empty() {
            info!(
                batch_records = removed.len(),
                "expired dedup keys of whole changelog batches"
            );
        }
        Ok(())
    }

    /// Encodes `value` as JSON and hands it to the producer; its delivery is awaited with the
    /// rest of the batch.
    async fn enqueue<T: serde::Serialize>(
        &self,
        what: &'static str,
        topic: &str,
        key: &str,
        value: &T,
        deliveries: &mut Vec<rdkafka::producer::DeliveryFuture>,
    ) -> Result<(), ProcessorError> {
        let bytes = erp_schemas::error::encode(what, value)?;
        deliveries.push(kafka::enqueue(&self.producer, topic, key, &bytes).await?);
        Ok(())
    }

    async fn write(
        &self,
        input: &Input,
        outcome: &Outcome,
        deliveries: &mut Vec<rdkafka::producer::DeliveryFuture>,
    ) -> Result<(), ProcessorError> {
        let key = input
            .message
            .key()
            .map(|k| String::from_utf8_lossy(k).into_owned());
        if let Outcome::Mapped {
            record,
            use_case,
            result,
        } = outcome
        {
            let event = outcome::core_event(record, use_case, result, &input.source);
            self.enqueue(
                "core event",
                &self.topics.core_events(),
                &record.key(),
                &event,
                deliveries,
            )
            .await?;
        }
        if let Outcome::Outbound { head, results } = outcome {
            let value = String::from_utf8_lossy(input.message.payload().unwrap_or_default());
            let outcome::OutboundRecords {
                events,
                poll_items,
                spans,
                letters,
                ack,
            } = outcome::outbound_records(head, results, &input.source, key.as_deref(), &value);
            if let Some(ack) = ack {
                self.enqueue(
                    "ACK tracking record",
                    &self.topics.acks(),
                    &ack.ack_id,
                    &ack,
                    deliveries,
                )
                .await?;
            }
            // Keyed like the platform event (its trigger entity), so per-entity order holds.
            let event_key = key.clone().unwrap_or_else(|| head.event_id.clone());
            for event in events {
                self.enqueue(
                    "core event",
                    &self.topics.core_events(),
                    &event_key,
                    &event,
                    deliveries,
                )
                .await?;
            }
            // Keyed by integration: one integration's stream is one ordered partition.
            for item in poll_items {
                self.enqueue(
                    "poll item",
                    &self.topics.outbound_poll(),
                    &item.integration_id,
                    &item,
                    deliveries,
                )
                .await?;
            }
            for span in spans {
                self.enqueue(
                    "monitoring span",
                    &self.topics.monitoring(),
                    &span.integration_id,
                    &span,
                    deliveries,
                )
                .await?;
            }
            for letter in letters {
                self.enqueue(
                    "dead letter",
                    &self.topics.dlq(),
                    &event_key,
                    &letter,
                    deliveries,
                )
                .await?;
            }
            return Ok(());
        }
        let wanted = self.settings.success_spans || !matches!(outcome, Outcome::Mapped { .. });
        if let Some(span) = outcome::span(outcome, &input.source).filter(|_| wanted) {
            self.enqueue(
                "monitoring span",
                &self.topics.monitoring(),
                &span.integration_id,
                &span,
                deliveries,
            )
            .await?;
        }
        let value =
            String::from_utf8_lossy(input.message.payload().unwrap_or_default()).into_owned();
        if let Some(letter) =
            outcome::dead_letter(outcome, input.source.clone(), key.clone(), value)
        {
            self.enqueue(
                "dead letter",
                &self.topics.dlq(),
                key.as_deref().unwrap_or_default(),
                &letter,
                deliveries,
            )
            .await?;
        }
        Ok(())
    }
}
