//! Strict per-key order for endpoints that opt in (`"ordering": "per_key"` on the
//! `WebhookConfig`, our extension: epilot's API has no such field).
//!
//! The ordering key is the Kafka record key of the core event on `erp.core.events`, and one key
//! lives in one input partition, so the owner of that partition is the single writer of every
//! lane of its keys. For an ordered endpoint the main path does not attempt a delivery itself:
//! it appends the event to the lane of (endpoint, key) in memory and persists it to the
//! compacted topic `erp.dispatch.lanes` (same partition number as the input partition, record
//! key `<endpoint>|<key>|<input offset>`), and commits the input offset once that write is
//! acknowledged. One driver task per lane delivers the lane's head: on an answer that ends the
//! delivery (delivered, dead letter, parked, filtered) the head's record is tombstoned and the
//! next event goes; on a retryable failure the head's attempt count is persisted and the head is
//! tried again after the endpoint's retry wait. A failing head therefore blocks only its own key
//! on that endpoint; retries of ordered endpoints never use the shared retry tiers.
//!
//! On assignment the new owner of an input partition reads the lanes topic partition to its end
//! and rebuilds that partition's lanes before the consumer returns any of its records, so no
//! later event can overtake a held one. On revocation the lanes of the partition are dropped
//! from memory (their records stay for the next owner).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use erp_runtime::KafkaSettings;
use erp_schemas::dead_letter::SourceCoordinates;
use erp_schemas::timestamp::{now_millis, now_rfc3339};

use crate::error::DispatcherError;

/// One held delivery: the value of a record on the lanes topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaneEntry {
    /// The endpoint (webhook configuration id).
    pub webhook_config_id: String,
    /// The organisation of the event and endpoint.
    pub org_id: String,
    /// The core event's record key: the ordering key (`None`: all keyless events of the input
    /// partition form one lane).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Where the event was read; its offset orders the lane.
    pub source: SourceCoordinates,
    /// The core event as JSON text.
    pub event: String,
    /// HTTP attempts made so far.
    pub attempts: u32,
    /// Waits for a free endpoint slot, not counted as attempts.
    #[serde(default)]
    pub deferrals: u32,
    /// When the first attempt was made, if one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_attempt_at: Option<String>,
    /// When the next attempt is due (ms since the Unix epoch).
    pub due_at_ms: i64,
}

impl LaneEntry {
    fn lane(&self) -> LaneId {
        (
            self.source.partition,
            self.webhook_config_id.clone(),
            self.key.clone().unwrap_or_default(),
        )
    }

    fn record_key(&self) -> String {
        format!(
            "{}|{}|{:020}",
            self.webhook_config_id,
            self.key.as_deref().unwrap_or_default(),
            self.source.offset
        )
    }
}

/// What the delivery of a lane's head came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Delivered, dead-lettered, parked or filtered out, and recorded: the next event may go.
    Done,
    /// Try the head again at `due_at_ms`; `attempted` tells whether a request was made.
    Retry { due_at_ms: i64, attempted: bool },
    /// Shutdown interrupted the delivery.
    Interrupted,
}

/// Delivers one held event (the worker's delivery path, with ordering's answers).
pub type DeliverFn =
    Arc<dyn Fn(LaneEntry) -> BoxFuture<'static, Result<Step, DispatcherError>> + Send + Sync>;

/// (input partition, endpoint, key).
type LaneId = (i32, String, String);

struct Held {
    entry: LaneEntry,
    /// Whether the lanes topic has acknowledged the entry: only then may it be attempted, so its
    /// tombstone can never precede it.
    persisted: bool,
}

struct Lane {
    /// Tells a driver that a revocation or restore replaced it.
    generation: u64,
    /// By input offset.
    entries: BTreeMap<i64, Held>,
    wake: Arc<Notify>,
}

/// A lane record to write before the input offset is committed.
pub struct Put {
    entry: LaneEntry,
    key: String,
    value: Vec<u8>,
}

/// The lanes in memory and the input partitions they may be kept for.
#[derive(Default)]
struct State {
    lanes: HashMap<LaneId, Lane>,
    owned: HashSet<i32>,
    /// Per owned input partition, the highest offset the main path has admitted (or the group
    /// had committed when the partition was assigned). A head above it waits: lane records of
    /// concurrent batches are acknowledged in no fixed order, so after a crash a restored event
    /// may lack an uncommitted predecessor that the main path is about to read again.
    admitted: HashMap<i32, i64>,
    /// Per input partition, the highest restored offset above `admitted`: until the main path
    /// has read that far, reading on may release a waiting head.
    gated: HashMap<i32, i64>,
}

impl State {
    fn admitted(&self, partition: i32) -> i64 {
        self.admitted.get(&partition).copied().unwrap_or(-1)
    }
}

/// The lanes of the input partitions this dispatcher owns.
pub struct Lanes {
    topic: String,
    group_id: String,
    core_topic: String,
    kafka: KafkaSettings,
    producer: FutureProducer,
    state: Mutex<State>,
    deliver: OnceLock<DeliverFn>,
    runtime: tokio::runtime::Handle,
    shutdown: CancellationToken,
    generation: AtomicU64,
    /// Set when the lanes of an assigned partition could not be restored: the dispatcher stops
    /// rather than deliver that partition's ordered events out of order.
    failed: AtomicBool,
}

impl Lanes {
    /// Lanes persisted to the lanes topic of `kafka`. Call from within the Tokio runtime.
    pub fn new(
        kafka: &KafkaSettings,
        group_id: &str,
        producer: FutureProducer,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        Arc::new(Self {
            topic: kafka.topics.dispatch_lanes(),
            group_id: group_id.to_owned(),
            core_topic: kafka.topics.core_events(),
            kafka: kafka.clone(),
            producer,
            state: Mutex::new(State::default()),
            deliver: OnceLock::new(),
            runtime: tokio::runtime::Handle::current(),
            shutdown,
            generation: AtomicU64::new(0),
            failed: AtomicBool::new(false),
        })
    }

    /// Sets how heads are delivered (once, before the consumer starts).
    pub fn set_deliver(&self, deliver: DeliverFn) {
        let _ = self.deliver.set(deliver);
    }

    /// Whether restoring an assigned partition failed.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned state only means a panic elsewhere while it was held; it is consistent
        // between statements.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes that the main path read input partition `partition` up to `offset`, releasing
    /// restored heads waiting for their predecessors to be read again.
    pub fn advance(&self, partition: i32, offset: i64) {
        let mut state = self.lock();
        let before = state.admitted(partition);
        if offset <= before {
            return;
        }
        state.admitted.insert(partition, offset);
        let Some(&until) = state.gated.get(&partition) else {
            return;
        };
        if offset >= until {
            state.gated.remove(&partition);
        }
        for (id, lane) in &state.lanes {
            if id.0 == partition
                && lane
                    .entries
                    .first_key_value()
                    .is_some_and(|(head, _)| *head > before)
            {
                lane.wake.notify_one();
            }
        }
    }

    /// Appends an event to its lane (in offset order). Returns the record to persist, or
    /// nothing when the lane already holds that event (it was re-read after a restore).
    pub fn admit(self: &Arc<Self>, entry: LaneEntry) -> Result<Option<Put>, DispatcherError> {
        let value = erp_schemas::error::encode("lane entry", &entry)?;
        let id = entry.lane();
        let offset = entry.source.offset;
        let mut state = self.lock();
        let lane = self.lane(&mut state.lanes, id);
        if lane.entries.contains_key(&offset) {
            return Ok(None);
        }
        let put = Put {
            key: entry.record_key(),
            value,
            entry: entry.clone(),
        };
        lane.entries.insert(
            offset,
            Held {
                entry,
                persisted: false,
            },
        );
        Ok(Some(put))
    }

    /// The lane `id`, created with its driver when there is none.
    fn lane<'a>(
        self: &Arc<Self>,
        lanes: &'a mut HashMap<LaneId, Lane>,
        id: LaneId,
    ) -> &'a mut Lane {
        lanes.entry(id).or_insert_with_key(|id| {
            let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
            self.runtime
                .spawn(Arc::clone(self).drive(id.clone(), generation));
            Lane {
                generation,
                entries: BTreeMap::new(),
                wake: Arc::new(Notify::new()),
            }
        })
    }

    /// Writes admitted entries until the lanes topic acknowledges them all, then lets their
    /// drivers attempt them. False when a shutdown came first (the batch stays uncommitted).
    pub async fn persist(self: &Arc<Self>, puts: Vec<Put>) -> bool {
        if puts.is_empty() {
            return true;
        }
        let mut backoff = Duration::from_millis(200);
        loop {
            let mut deliveries = Vec::with_capacity(puts.len());
            let mut failed = None;
            for put in &puts {
                let partition = put.entry.source.partition;
                match self.enqueue(partition, &put.key, Some(&put.value)).await {
                    Ok(delivery) => deliveries.push(delivery),
                    Err(error) => {
                        failed = Some(error);
                        break;
                    }
                }
            }
            let awaited = erp_runtime::kafka::await_deliveries(deliveries).await;
            match failed.map_or(awaited.map_err(DispatcherError::from), Err) {
                Ok(()) => break,
                Err(error) => {
                    warn!(%error, ?backoff, "persisting held deliveries failed; retrying");
                    tokio::select! {
                        _ = self.shutdown.cancelled() => return false,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
        let mut state = self.lock();
        for put in puts {
            let id = put.entry.lane();
            let offset = put.entry.source.offset;
            if !state.owned.contains(&id.0) {
                // Revoked meanwhile: the new owner restores the record or reads the event again.
                continue;
            }
            // A rebalance that gave this partition back may have rebuilt the lane before the
            // write was acknowledged; the entry then joins the rebuilt lane. It sorts after
            // everything restored, since writes to one partition are acknowledged in order.
            let lane = self.lane(&mut state.lanes, id);
            lane.entries
                .entry(offset)
                .or_insert(Held {
                    entry: put.entry,
                    persisted: true,
                })
                .persisted = true;
            lane.wake.notify_one();
        }
        true
    }

    /// Hands one record to the producer, to the lanes partition of its input partition.
    async fn enqueue(
        &self,
        partition: i32,
        key: &str,
        value: Option<&[u8]>,
    ) -> Result<DeliveryFuture, DispatcherError> {
        use rdkafka::error::{KafkaError, RDKafkaErrorCode};
        let mut record = FutureRecord::<str, [u8]>::to(&self.topic)
            .key(key)
            .partition(partition);
        if let Some(value) = value {
            record = record.payload(value);
        }
        loop {
            match self.producer.send_result(record) {
                Ok(delivery) => return Ok(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    record = returned;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((error, _)) => return Err(error.into()),
            }
        }
    }

    /// Writes one lane record until it is acknowledged; false on shutdown.
    async fn write(&self, partition: i32, key: &str, value: Option<&[u8]>) -> bool {
        let mut backoff = Duration::from_millis(200);
        loop {
            let written = match self.enqueue(partition, key, value).await {
                Ok(delivery) => erp_runtime::kafka::await_deliveries(vec![delivery])
                    .await
                    .map_err(DispatcherError::from),
                Err(error) => Err(error),
            };
            match written {
                Ok(()) => return true,
                Err(error) => {
                    warn!(%error, ?backoff, "writing a lane record failed; retrying");
                    tokio::select! {
                        _ = self.shutdown.cancelled() => return false,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    /// Whether the lane is still the one this driver was started for.
    fn current(&self, id: &LaneId, generation: u64) -> bool {
        self.lock()
            .lanes
            .get(id)
            .is_some_and(|lane| lane.generation == generation)
    }

    /// Delivers a lane's events one at a time, head first, until the lane is empty, replaced
    /// (revoked or restored) or the dispatcher stops.
    async fn drive(self: Arc<Self>, id: LaneId, generation: u64) {
        let mut backoff = Duration::from_millis(200);
        loop {
            let (head, wake) = {
                let mut state = self.lock();
                let Some(lane) = state.lanes.get(&id) else {
                    return;
                };
                if lane.generation != generation {
                    return;
                }
                match lane.entries.first_key_value() {
                    None => {
                        state.lanes.remove(&id);
                        return;
                    }
                    Some((offset, held)) => (
                        (held.persisted && *offset <= state.admitted(id.0))
                            .then(|| held.entry.clone()),
                        Arc::clone(&lane.wake),
                    ),
                }
            };
            let Some(head) = head else {
                tokio::select! {
                    _ = self.shutdown.cancelled() => return,
                    _ = wake.notified() => continue,
                }
            };
            let wait = head.due_at_ms - now_millis();
            if wait > 0 {
                tokio::select! {
                    _ = self.shutdown.cancelled() => return,
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(wait.unsigned_abs())) => {}
                }
                continue;
            }
            let Some(deliver) = self.deliver.get() else {
                return;
            };
            let step = deliver(head.clone()).await;
            // A revoked lane belongs to the partition's new owner now: write nothing more.
            if !self.current(&id, generation) {
                return;
            }
            let offset = head.source.offset;
            match step {
                Ok(Step::Interrupted) => return,
                Err(error) => {
                    warn!(%error, ?backoff, webhook = id.1, "recording a held delivery failed; trying again");
                    tokio::select! {
                        _ = self.shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    continue;
                }
                Ok(Step::Done) => {
                    if !self.write(id.0, &head.record_key(), None).await {
                        return;
                    }
                    if let Some(lane) = self.lock().lanes.get_mut(&id)
                        && lane.generation == generation
                    {
                        lane.entries.remove(&offset);
                    }
                }
                Ok(Step::Retry {
                    due_at_ms,
                    attempted,
                }) => {
                    let mut next = head;
                    next.due_at_ms = due_at_ms;
                    if attempted {
                        next.attempts += 1;
                        next.first_attempt_at.get_or_insert_with(now_rfc3339);
                        // The attempt count survives a restart, so the retry budget does too.
                        let Ok(value) = erp_schemas::error::encode("lane entry", &next) else {
                            return;
                        };
                        if !self.write(id.0, &next.record_key(), Some(&value)).await {
                            return;
                        }
                    } else {
                        next.deferrals += 1;
                    }
                    if let Some(lane) = self.lock().lanes.get_mut(&id)
                        && lane.generation == generation
                        && let Some(held) = lane.entries.get_mut(&offset)
                    {
                        held.entry = next;
                    }
                }
            }
            backoff = Duration::from_millis(200);
        }
    }

    /// Drops the lanes of revoked input partitions (their records stay for the next owner) and
    /// wakes their drivers so they end.
    fn revoke(&self, partitions: &[i32]) {
        let mut state = self.lock();
        state.owned.retain(|p| !partitions.contains(p));
        state.admitted.retain(|p, _| !partitions.contains(p));
        state.gated.retain(|p, _| !partitions.contains(p));
        state.lanes.retain(|id, lane| {
            let keep = !partitions.contains(&id.0);
            if !keep {
                lane.wake.notify_one();
            }
            keep
        });
    }

    /// Rebuilds the lanes of assigned input partitions from the lanes topic. Blocking: runs in
    /// the rebalance callback, before the consumer returns records of these partitions.
    fn restore(self: &Arc<Self>, partitions: &[i32]) -> Result<usize, DispatcherError> {
        let started = Instant::now();
        let consumer: BaseConsumer = self
            .kafka
            .reader_config("erp-toolkit-dispatcher-lanes")
            .create()?;
        let mut found: BTreeMap<String, LaneEntry> = BTreeMap::new();
        for &partition in partitions {
            let (low, high) =
                consumer.fetch_watermarks(&self.topic, partition, Duration::from_secs(10))?;
            if low >= high {
                continue;
            }
            let mut assignment = TopicPartitionList::new();
            assignment.add_partition_offset(&self.topic, partition, Offset::Offset(low))?;
            consumer.assign(&assignment)?;
            let mut next = low;
            while next < high {
                if started.elapsed() > Duration::from_secs(300) {
                    return Err(DispatcherError::Task(format!(
                        "restore of {}/{partition} stalled at {next} of {high}",
                        self.topic
                    )));
                }
                let Some(message) = consumer.poll(Duration::from_millis(500)) else {
                    continue;
                };
                let message = message?;
                if message.partition() != partition {
                    continue;
                }
                next = message.offset() + 1;
                let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
                match message.payload() {
                    None => {
                        found.remove(&key);
                    }
                    Some(value) => match serde_json::from_slice::<LaneEntry>(value) {
                        Ok(entry) => {
                            found.insert(key, entry);
                        }
                        Err(error) => {
                            // Written by this code: only a bug gets here, and the record stays.
                            error!(%error, key, partition, "unreadable lane record skipped");
                        }
                    },
                }
            }
            consumer.unassign()?;
        }
        let committed = self.committed(partitions);
        let restored = found.len();
        self.revoke(partitions);
        let mut state = self.lock();
        state.owned.extend(partitions.iter().copied());
        state.admitted.extend(committed);
        for entry in found.into_values() {
            let partition = entry.source.partition;
            if entry.source.offset > state.admitted(partition) {
                let until = state.gated.entry(partition).or_insert(entry.source.offset);
                *until = (*until).max(entry.source.offset);
            }
            let lane = self.lane(&mut state.lanes, entry.lane());
            lane.entries.insert(
                entry.source.offset,
                Held {
                    entry,
                    persisted: true,
                },
            );
        }
        if restored > 0 {
            info!(
                ?partitions,
                restored,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "restored held ordered deliveries"
            );
        }
        Ok(restored)
    }

    /// The group's committed position minus one per input partition: every event before the
    /// position was admitted, and its lane record acknowledged, before that commit. Unknown
    /// (no commit, or the broker did not answer) leaves the partition out: its restored heads
    /// then wait until the main path reads the partition again from where it starts.
    fn committed(&self, partitions: &[i32]) -> Vec<(i32, i64)> {
        let consumer: Result<BaseConsumer, _> = self
            .kafka
            .reader_config("erp-toolkit-dispatcher-lanes-position")
            .set("group.id", &self.group_id)
            .create();
        let mut list = TopicPartitionList::new();
        for &partition in partitions {
            list.add_partition(&self.core_topic, partition);
        }
        let answer = consumer.and_then(|c| c.committed_offsets(list, Duration::from_secs(10)));
        match answer {
            Ok(list) => list
                .elements()
                .iter()
                .filter_map(|e| match e.offset() {
                    Offset::Offset(next) => Some((e.partition(), next - 1)),
                    _ => None,
                })
                .collect(),
            Err(error) => {
                warn!(%error, "cannot read the committed positions; held deliveries wait for the partitions to be read");
                Vec::new()
            }
        }
    }

    fn partitions(&self, list: &TopicPartitionList) -> Vec<i32> {
        list.elements()
            .iter()
            .filter(|e| e.topic() == self.core_topic)
            .map(|e| e.partition())
            .collect()
    }
}

/// The main consumer's context: restores lanes on assignment, drops them on revocation.
pub struct LaneContext {
    pub lanes: Arc<Lanes>,
}

impl ClientContext for LaneContext {}

impl ConsumerContext for LaneContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                let partitions = self.lanes.partitions(list);
                let mut attempt = 0;
                while let Err(error) = self.lanes.restore(&partitions) {
                    attempt += 1;
                    if attempt >= 5 {
                        error!(%error, ?partitions, "cannot restore held ordered deliveries; stopping");
                        self.lanes.failed.store(true, Ordering::SeqCst);
                        return;
                    }
                    warn!(%error, attempt, "restoring held ordered deliveries failed; retrying");
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
            Rebalance::Revoke(list) => {
                let partitions = self.lanes.partitions(list);
                self.lanes.revoke(&partitions);
            }
            Rebalance::Error(error) => {
                warn!(%error, "rebalance error; dropping every lane");
                let mut state = self.lanes.lock();
                state.lanes.clear();
                state.owned.clear();
                state.admitted.clear();
                state.gated.clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_keys_sort_by_offset_within_a_lane() {
        let entry = |offset| LaneEntry {
            webhook_config_id: "wh".into(),
            org_id: "o".into(),
            key: Some("k".into()),
            source: SourceCoordinates {
                topic: "erp.core.events".into(),
                partition: 2,
                offset,
            },
            event: "{}".into(),
            attempts: 0,
            deferrals: 0,
            first_attempt_at: None,
            due_at_ms: 0,
        };
        assert!(entry(9).record_key() < entry(10).record_key());
        assert_eq!(entry(9).lane(), (2, "wh".into(), "k".into()));
        let text = serde_json::to_string(&entry(3)).unwrap_or_default();
        assert_eq!(
            serde_json::from_str::<LaneEntry>(&text).ok(),
            Some(entry(3))
        );
    }
}
