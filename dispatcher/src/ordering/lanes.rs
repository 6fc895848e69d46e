//! The lanes of ordered endpoints: one per (input partition, endpoint, key), persisted to
//! `erp.dispatch.lanes`, each driven by one task that delivers its head.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::future::BoxFuture;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::warn;

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
    pub(super) fn lane(&self) -> LaneId {
        (
            self.source.partition,
            self.webhook_config_id.clone(),
            self.key.clone().unwrap_or_default(),
        )
    }

    pub(super) fn record_key(&self) -> String {
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
pub(super) type LaneId = (i32, String, String);

pub(super) struct Held {
    pub(super) entry: LaneEntry,
    /// Whether the lanes topic has acknowledged the entry: only then may it be attempted, so its
    /// tombstone can never precede it.
    pub(super) persisted: bool,
}

pub(super) struct Lane {
    /// Tells a driver that a revocation or restore replaced it.
    pub(super) generation: u64,
    /// By input offset.
    pub(super) entries: BTreeMap<i64, Held>,
    pub(super) wake: Arc<Notify>,
}

/// A lane record to write before the input offset is committed.
pub struct Put {
    pub(super) entry: LaneEntry,
    pub(super) key: String,
    pub(super) value: Vec<u8>,
}

/// The lanes in memory and the input partitions they may be kept for.
#[derive(Default)]
pub(super) struct State {
    pub(super) lanes: HashMap<LaneId, Lane>,
    pub(super) owned: HashSet<i32>,
    /// Per owned input partition, the highest offset the main path has admitted (or the group
    /// had committed when the partition was assigned). A head above it waits: lane records of
    /// concurrent batches are acknowledged in no fixed order, so after a crash a restored event
    /// may lack an uncommitted predecessor that the main path is about to read again.
    pub(super) admitted: HashMap<i32, i64>,
    /// Per input partition, the highest restored offset above `admitted`: until the main path
    /// has read that far, reading on may release a waiting head.
    pub(super) gated: HashMap<i32, i64>,
}

impl State {
    pub(super) fn admitted(&self, partition: i32) -> i64 {
        self.admitted.get(&partition).copied().unwrap_or(-1)
    }
}

/// The lanes of the input partitions this dispatcher owns.
pub struct Lanes {
    pub(super) topic: String,
    pub(super) group_id: String,
    pub(super) core_topic: String,
    pub(super) kafka: KafkaSettings,
    pub(super) producer: FutureProducer,
    pub(super) state: Mutex<State>,
    pub(super) deliver: OnceLock<DeliverFn>,
    pub(super) runtime: tokio::runtime::Handle,
    pub(super) shutdown: CancellationToken,
    pub(super) generation: AtomicU64,
    /// Set when the lanes of an assigned partition could not be restored: the dispatcher stops
    /// rather than deliver that partition's ordered events out of order.
    pub(super) failed: AtomicBool,
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

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
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
    pub(super) fn lane<'a>(
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
    pub(super) async fn enqueue(
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
    pub(super) async fn write(&self, partition: i32, key: &str, value: Option<&[u8]>) -> bool {
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
    pub(super) fn current(&self, id: &LaneId, generation: u64) -> bool {
        self.lock()
            .lanes
            .get(id)
            .is_some_and(|lane| lane.generation == generation)
    }

    /// Delivers a lane's events one at a time, head first, until the lane is empty, replaced
    /// (revoked or restored) or the dispatcher stops.
    pub(super) async fn drive(self: Arc<Self>, id: LaneId, generation: u64) {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn record_keys_sort_by_offset_within_a_lane() {
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
