//! The poll streams in memory: a fold of `erp.outbound.poll` (the messages) and
//! `erp.outbound.poll.state` (each stream's consumer state and DLQ entries), and the writes that
//! make an operation durable before it is answered.
//!
//! The first operation waits until the fold has read both topics up to where they ended (so a
//! restarted instance answers from what is on disk, not from an empty fold). Later ones do not
//! ask the broker again: this instance is the stream's only writer, so its memory is the
//! latest state, and a new message becomes pollable as soon as the reader has it (milliseconds;
//! asking the broker for watermarks on every poll cost more than that). Every operation
//! computes its change on the pure [`Stream`], writes spans, DLQ entries, re-enqueued messages
//! and the new snapshot, and only then adopts the state in memory. A failed write leaves memory
//! as it was; whatever did land is read back.
//!
//! Single writer: one instance must own a stream's mutations (see `docs/poll-queue.md`). Two
//! instances polling the same integration could both lease the head.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::IntCounter;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use erp_runtime::Runtime;
use erp_schemas::ids::derived_uuid;
use erp_schemas::monitoring::MonitoringSpan;
use erp_schemas::poll::{PollDlqEntry, PollItem, PollStreamSnapshot, dlq_key};
use erp_schemas::timestamp::{now_millis, now_rfc3339};
use erp_schemas::topics::Topics;

use super::stream::{Change, Effects, Stream, StreamState};
use crate::topic_index;
use erp_http::ApiError;

/// How the poll queue behaves.
#[derive(Debug, Clone)]
pub struct PollSettings {
    /// How long a leased batch stays invisible to other polls.
    pub visibility_timeout: Duration,
    /// How often expiry, lease lapses and poison policies are applied without a request.
    pub sweep_every: Duration,
    /// Largest sum of payload bytes in one poll answer (epilot: about 5.5 MB).
    pub max_response_bytes: usize,
}

impl Default for PollSettings {
    fn default() -> Self {
        Self {
            visibility_timeout: Duration::from_secs(300),
            sweep_every: Duration::from_secs(30),
            max_response_bytes: 5_500_000,
        }
    }
}

#[derive(Default)]
struct Fold {
    streams: HashMap<String, Stream>,
    /// Next offset read, per (topic, partition).
    read: HashMap<(String, i32), i64>,
    /// State records this instance wrote and has not read back yet: older records of the key
    /// are stale and ignored meanwhile.
    own: HashMap<String, (i32, i64)>,
}

/// The poll streams of every integration.
pub struct PollQueue {
    fold: Mutex<Fold>,
    consumer: Arc<StreamConsumer>,
    producer: FutureProducer,
    topics: Topics,
    settings: PollSettings,
    /// One mutation at a time per stream and instance, so two polls cannot both take the
    /// lease. Per integration, not one lock for all: a mutation waits for the broker (the
    /// writes of its change), and one organisation's stream must not stall another's.
    writing: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Whether the fold has caught up with the topics once.
    loaded: AtomicBool,
    /// New messages read into the streams.
    enqueued: IntCounter,
    /// `erp_dead_letters_total{stage,code}`, shared with every role of the process.
    dead_letters: prometheus::IntCounterVec,
}

fn kafka_error(error: impl std::fmt::Display) -> ApiError {
    ApiError::unavailable("KAFKA_UNAVAILABLE", error.to_string())
}

impl PollQueue {
    /// Starts reading both topics from the beginning, and the sweep.
    pub fn start(
        runtime: &Runtime,
        producer: FutureProducer,
        settings: PollSettings,
    ) -> Result<(Arc<Self>, Vec<JoinHandle<()>>), ApiError> {
        let topics = runtime.kafka.topics.clone();
        let consumer = Arc::new(
            runtime
                .kafka
                .reader("erp-toolkit-poll")
                .map_err(kafka_error)?,
        );
        let mut assignment = TopicPartitionList::new();
        for topic in [topics.outbound_poll(), topics.outbound_poll_state()] {
            for partition in topic_index::partitions(&*consumer, &topic, Duration::from_secs(10))
                .map_err(kafka_error)?
            {
                assignment
                    .add_partition_offset(&topic, partition, Offset::Beginning)
                    .map_err(|e| ApiError::internal("INTERNAL_ERROR", e.to_string()))?;
            }
        }
        consumer.assign(&assignment).map_err(kafka_error)?;
        let enqueued = IntCounter::new(
            "erp_poll_messages_enqueued_total",
            "Messages read into the poll streams (copies and already consumed ones excluded)",
        )
        .map_err(|e| ApiError::internal("INTERNAL_ERROR", e.to_string()))?;
        runtime.metrics.register(&enqueued);
        let queue = Arc::new(Self {
            fold: Mutex::default(),
            consumer,
            producer,
            topics,
            settings,
            writing: Mutex::default(),
            loaded: AtomicBool::new(false),
            enqueued,
            dead_letters: runtime.metrics.dead_letters(),
        });
        let reader = {
            let queue = Arc::clone(&queue);
            tokio::spawn(async move { queue.read().await })
        };
        let sweeper = {
            let queue = Arc::clone(&queue);
            let shutdown = runtime.shutdown.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(queue.settings.sweep_every);
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = every.tick() => {}
                    }
                    if let Err(error) = queue.sweep().await {
                        warn!(%error, "poll queue sweep failed");
                    }
                }
            })
        };
        Ok((queue, vec![reader, sweeper]))
    }

    /// The settings in force.
    pub fn settings(&self) -> &PollSettings {
        &self.settings
    }

    async fn read(&self) {
        let poll_topic = self.topics.outbound_poll();
        loop {
            match self.consumer.recv().await {
                Ok(message) => {
                    let topic = message.topic().to_owned();
                    let (partition, offset) = (message.partition(), message.offset());
                    let key = String::from_utf8_lossy(message.key().unwrap_or_default());
                    if topic == poll_topic {
                        self.apply_item(partition, offset, message.payload());
                    } else {
                        self.apply_state(partition, offset, &key, message.payload());
                    }
                    if let Ok(mut fold) = self.fold.lock() {
                        fold.read.insert((topic, partition), offset + 1);
                    }
                }
                Err(error) => {
                    warn!(%error, "reading the poll topics failed");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    fn apply_item(&self, partition: i32, offset: i64, value: Option<&[u8]>) {
        let item = match value.map(serde_json::from_slice::<PollItem>) {
            Some(Ok(item)) => item,
            Some(Err(error)) => {
                warn!(%error, partition, offset, "unreadable poll item ignored");
                return;
            }
            None => return,
        };
        if let Ok(mut fold) = self.fold.lock() {
            let integration_id = item.integration_id.clone();
            let new = fold
                .streams
                .entry(integration_id.clone())
                .or_insert_with(|| Stream::new(&integration_id))
                .enqueue(partition, offset, item);
            if new {
                self.enqueued.inc();
            }
        }
    }

    fn apply_state(&self, partition: i32, offset: i64, key: &str, value: Option<&[u8]>) {
        let Ok(mut fold) = self.fold.lock() else {
            return;
        };
        if let Some(&(p, written)) = fold.own.get(key) {
            if p == partition && offset < written {
                return;
            }
            fold.own.remove(key);
        }
        let (integration_id, dlq_id) = match key.split_once("/dlq/") {
            Some((integration, id)) => (integration.to_owned(), Some(id.to_owned())),
            None => (key.to_owned(), None),
        };
        let stream = fold
            .streams
            .entry(integration_id.clone())
            .or_insert_with(|| Stream::new(&integration_id));
        match dlq_id {
            Some(id) => match value.map(serde_json::from_slice::<PollDlqEntry>) {
                Some(Ok(entry)) => stream.apply_dlq(&id, Some(entry)),
                Some(Err(error)) => warn!(%error, partition, offset, "unreadable DLQ entry"),
                None => stream.apply_dlq(&id, None),
            },
            None => match value.map(serde_json::from_slice::<PollStreamSnapshot>) {
                Some(Ok(snapshot)) => stream.apply_snapshot(snapshot),
                Some(Err(error)) => warn!(%error, partition, offset, "unreadable poll state"),
                None => {}
            },
        }
    }

    /// Makes sure the fold has read what the topics held when this instance started.
    async fn loaded(&self) -> Result<(), ApiError> {
        if self.loaded.load(Ordering::Acquire) {
            return Ok(());
        }
        self.catch_up(Duration::from_secs(30)).await?;
        self.loaded.store(true, Ordering::Release);
        Ok(())
    }

    /// Waits (up to `wait`) until the fold has read everything written before this call.
    async fn catch_up(&self, wait: Duration) -> Result<(), ApiError> {
        let consumer = Arc::clone(&self.consumer);
        let topics = [
            self.topics.outbound_poll(),
            self.topics.outbound_poll_state(),
        ];
        let highs = tokio::task::spawn_blocking(move || {
            let mut highs = Vec::new();
            for topic in topics {
                let partitions =
                    topic_index::partitions(&*consumer, &topic, Duration::from_secs(5))?;
                for partition in partitions {
                    let (_, high) =
                        consumer.fetch_watermarks(&topic, partition, Duration::from_secs(5))?;
                    highs.push(((topic.clone(), partition), high));
                }
            }
            Ok::<_, rdkafka::error::KafkaError>(highs)
        })
        .await
        .map_err(|e| ApiError::internal("INTERNAL_ERROR", e.to_string()))?
        .map_err(kafka_error)?;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let behind = self
                .fold
                .lock()
                .map(|f| {
                    highs
                        .iter()
                        .any(|(at, high)| *high > 0 && f.read.get(at).copied().unwrap_or(0) < *high)
                })
                .unwrap_or(true);
            if !behind {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ApiError::unavailable(
                    "POLL_QUEUE_BEHIND",
                    "the poll queue has not caught up with its topics; retry",
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Runs `operation` on the integration's stream and makes its change durable; answers its
    /// result.
    pub async fn change<T>(
        &self,
        integration_id: &str,
        operation: impl FnOnce(&Stream, i64) -> Change<T>,
    ) -> Result<T, ApiError> {
        self.loaded().await?;
        let lock = self.lock_of(integration_id);
        let outcome = {
            let _one_at_a_time = lock.lock().await;
            self.apply_change(integration_id, operation).await
        };
        drop(lock);
        self.release(integration_id);
        Ok(outcome?.0)
    }

    /// The lock of one stream (created on first use).
    fn lock_of(&self, integration_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        match self.writing.lock() {
            Ok(mut locks) => Arc::clone(locks.entry(integration_id.to_owned()).or_default()),
            // A poisoned map only loses the serialisation of this call; the state machine's
            // checks on the persisted snapshot still hold.
            Err(_) => Arc::default(),
        }
    }

    /// Drops the lock of a stream nobody else holds or waits for.
    fn release(&self, integration_id: &str) {
        if let Ok(mut locks) = self.writing.lock()
            && locks
                .get(integration_id)
                .is_some_and(|l| Arc::strong_count(l) == 1)
        {
            locks.remove(integration_id);
        }
    }

    /// [`Self::change`] without the lock and the catch-up; also says whether anything changed.
    async fn apply_change<T>(
        &self,
        integration_id: &str,
        operation: impl FnOnce(&Stream, i64) -> Change<T>,
    ) -> Result<(T, bool), ApiError> {
        let (before, change) = {
            let fold = self
                .fold
                .lock()
                .map_err(|_| ApiError::internal("INTERNAL_ERROR", "poll queue state poisoned"))?;
            let empty = Stream::new(integration_id);
            let stream = fold.streams.get(integration_id).unwrap_or(&empty);
            (stream.state.clone(), operation(stream, now_millis()))
        };
        let changed = change.changed(&before);
        if changed {
            self.persist(&change.state, &change.effects).await?;
            if let Ok(mut fold) = self.fold.lock() {
                fold.streams
                    .entry(integration_id.to_owned())
                    .or_insert_with(|| Stream::new(integration_id))
                    .commit(change.state);
            }
        }
        Ok((change.result, changed))
    }

    /// Reads the integration's stream without changing it (after catching up).
    pub async fn read_stream<T>(
        &self,
        integration_id: &str,
        read: impl FnOnce(&Stream) -> T,
    ) -> Result<T, ApiError> {
        self.loaded().await?;
        let fold = self
            .fold
            .lock()
            .map_err(|_| ApiError::internal("INTERNAL_ERROR", "poll queue state poisoned"))?;
        let empty = Stream::new(integration_id);
        Ok(read(fold.streams.get(integration_id).unwrap_or(&empty)))
    }

    /// Writes an operation's effects and the new snapshot. Order matters for a crash between
    /// writes: a message reaches the DLQ (or its redriven copy the stream) before the snapshot
    /// or tombstone that removes the original, so nothing is lost; a repeat produces the same
    /// ids, which the fold drops.
    async fn persist(&self, state: &StreamState, effects: &Effects) -> Result<(), ApiError> {
        for item in &effects.enqueue {
            let bytes = encode("poll item", item)?;
            erp_runtime::kafka::send(
                &self.producer,
                &self.topics.outbound_poll(),
                &item.integration_id,
                &bytes,
            )
            .await
            .map_err(kafka_error)?;
        }
        let state_topic = self.topics.outbound_poll_state();
        let mut own = Vec::new();
        for entry in &effects.dlq_put {
            let key = dlq_key(&state.integration_id, &entry.item.id);
            let bytes = encode("DLQ entry", entry.as_ref())?;
            let at = erp_runtime::kafka::send(&self.producer, &state_topic, &key, &bytes)
                .await
                .map_err(kafka_error)?;
            own.push((key, at));
            // The poll queue's DLQ entries are its dead letters: counted with the others, under
            // the code of their monitoring span.
            self.dead_letters
                .with_label_values(&["poll", "MSG_DEAD_LETTERED"])
                .inc();
        }
        let mut spans = Vec::new();
        for spec in &effects.spans {
            let span = MonitoringSpan {
                id: derived_uuid(&[&spec.item.id, spec.code, &spec.discriminator]),
                org_id: spec.item.org_id.clone(),
                integration_id: spec.item.integration_id.clone(),
                event_id: spec.item.event_id.clone(),
                correlation_id: String::new(),
                use_case_id: spec.item.use_case_id.clone(),
                use_case_type: "outbound".into(),
                level: spec.level,
                code: spec.code.to_owned(),
                message: spec.message.clone(),
                detail: spec.detail.clone(),
                created_at: now_rfc3339(),
            };
            let bytes = encode("monitoring span", &span)?;
            spans.push(
                erp_runtime::kafka::enqueue(
                    &self.producer,
                    &self.topics.monitoring(),
                    &span.integration_id,
                    &bytes,
                )
                .await
                .map_err(kafka_error)?,
            );
        }
        erp_runtime::kafka::await_deliveries(spans)
            .await
            .map_err(kafka_error)?;
        let bytes = encode("poll state", &state.snapshot())?;
        let at =
            erp_runtime::kafka::send(&self.producer, &state_topic, &state.integration_id, &bytes)
                .await
                .map_err(kafka_error)?;
        own.push((state.integration_id.clone(), at));
        for id in &effects.dlq_delete {
            let key = dlq_key(&state.integration_id, id);
            let tombstone = FutureRecord::<[u8], [u8]>::to(&state_topic).key(key.as_bytes());
            let at = self
                .producer
                .send(tombstone, Timeout::After(Duration::from_secs(30)))
                .await
                .map(|d| (d.partition, d.offset))
                .map_err(|(e, _)| kafka_error(e))?;
            own.push((key, at));
            // The poll queue's DLQ entries are its dead letters: counted with the others, under
            // the code of their monitoring span.
            self.dead_letters
                .with_label_values(&["poll", "MSG_DEAD_LETTERED"])
                .inc();
        }
        if let Ok(mut fold) = self.fold.lock() {
            for (key, at) in own {
                // Only if the reader has not passed it already (then it applied it).
                let read = fold
                    .read
                    .get(&(state_topic.clone(), at.0))
                    .copied()
                    .unwrap_or(0);
                if read <= at.1 {
                    fold.own.insert(key, at);
                }
            }
        }
        Ok(())
    }

    /// Applies expiry, lease lapses and poison policies to every stream.
    pub async fn sweep(&self) -> Result<(), ApiError> {
        self.loaded().await?;
        let ids: Vec<String> = self
            .fold
            .lock()
            .map(|f| f.streams.keys().cloned().collect())
            .unwrap_or_default();
        let mut changed = 0;
        for id in ids {
            // Each stream under its own lock, one at a time: the sweep never holds every
            // organisation's streams while it writes.
            let lock = self.lock_of(&id);
            let outcome = {
                let _one_at_a_time = lock.lock().await;
                self.apply_change(&id, |stream, now| stream.tick(now)).await
            };
            drop(lock);
            self.release(&id);
            if outcome?.1 {
                changed += 1;
            }
        }
        if changed > 0 {
            info!(streams = changed, "poll queue sweep");
        }
        Ok(())
    }
}

fn encode<T: serde::Serialize>(what: &str, value: &T) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(value)
        .map_err(|e| ApiError::internal("INTERNAL_ERROR", format!("{what}: {e}")))
}
