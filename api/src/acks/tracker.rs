//! ACK tracking (spec §2.6, §8.3): `POST /v1/erp/tracking/acknowledgement {ack_id, status?}`
//! confirms a platform event the ERP received, and a sweep reports `ACK_TIMEOUT` for events not
//! confirmed within the window.
//!
//! The tracking rows live in the compacted topic `erp.acks` (written `pending` by the
//! processor); this module folds it into memory. An acknowledgement first makes sure the fold
//! has read everything written so far (the watermarks), so an ACK that races the row's own
//! write is not answered 404; it then writes a tombstone, which is what makes a second
//! acknowledgement of the same id unknown, and an `ACK_RECEIVED` span.
//!
//! Several API instances may run the sweep at once: their timeout records and spans carry the
//! same content and derived ids, so a reader sees one timeout per event.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::json;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use erp_runtime::Runtime;
use erp_schemas::ack::{AckRecord, AckState};
use erp_schemas::ids::derived_uuid;
use erp_schemas::monitoring::{Level, MonitoringSpan};
use erp_schemas::timestamp::{now_millis, now_rfc3339};
use erp_schemas::topics::Topics;

use erp_http::ApiError;

use crate::topic_index;

/// How ACK tracking behaves.
#[derive(Debug, Clone)]
pub struct AckSettings {
    /// How long an event may stay unacknowledged before `ACK_TIMEOUT`.
    pub timeout: Duration,
    /// How long a timed-out row stays acknowledgeable before it is dropped.
    pub retention: Duration,
    /// How often the sweep runs.
    pub sweep_every: Duration,
}

impl Default for AckSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(24 * 3600),
            retention: Duration::from_secs(28 * 24 * 3600),
            sweep_every: Duration::from_secs(30),
        }
    }
}

/// A row's identity: (organisation, `_ack_id`). The id alone is chosen by the client and may be
/// sent by several organisations.
type Identity = (String, String);

#[derive(Default)]
struct Fold {
    /// Rows by identity, with the message key they were written under (a tombstone must carry
    /// the same key to remove them; older rows were keyed by the bare `_ack_id`).
    rows: HashMap<Identity, (AckRecord, String)>,
    /// Identity by message key, learned from the rows, so a tombstone (which has no body) finds
    /// its row.
    keys: HashMap<String, Identity>,
    /// Next offset read, per partition.
    read: HashMap<i32, i64>,
    /// Tombstones this instance wrote and has not read back yet: older records of the key are
    /// ignored meanwhile.
    removed: HashMap<String, (i32, i64)>,
}

/// The in-memory fold of `erp.acks`.
pub struct AckTracker {
    fold: Mutex<Fold>,
    consumer: Arc<StreamConsumer>,
    topic: String,
    topics: Topics,
    settings: AckSettings,
    /// One acknowledgement at a time per identity, so two for the same id cannot both win. Not
    /// one lock for all: an acknowledgement may wait for the broker (catch-up, writes), and one
    /// organisation's unknown `ack_id` must not stall another's.
    writing: Mutex<HashMap<Identity, Arc<tokio::sync::Mutex<()>>>>,
    /// `erp_acks_timed_out_total`.
    timed_out: prometheus::IntCounter,
}

/// The outcome of an acknowledgement.
#[derive(Debug, PartialEq)]
pub enum Acknowledged {
    /// Confirmed; it had timed out before when `late`.
    Confirmed { late: bool },
    /// Unknown, or acknowledged already.
    Unknown,
}

impl AckTracker {
    /// Starts reading `erp.acks` from the beginning, and the timeout sweep.
    pub fn start(
        runtime: &Runtime,
        producer: FutureProducer,
        settings: AckSettings,
    ) -> Result<(Arc<Self>, Vec<JoinHandle<()>>), ApiError> {
        let topics = runtime.kafka.topics.clone();
        let topic = topics.acks();
        let consumer = Arc::new(
            runtime
                .kafka
                .reader("erp-toolkit-acks")
                .map_err(|e| ApiError::unavailable("KAFKA_UNAVAILABLE", e.to_string()))?,
        );
        let mut assignment = TopicPartitionList::new();
        for partition in topic_index::partitions(&*consumer, &topic, Duration::from_secs(10))
            .map_err(|e| ApiError::unavailable("KAFKA_UNAVAILABLE", e.to_string()))?
        {
            assignment
                .add_partition_offset(&topic, partition, Offset::Beginning)
                .map_err(|e| ApiError::internal("INTERNAL_ERROR", e.to_string()))?;
        }
        consumer
            .assign(&assignment)
            .map_err(|e| ApiError::unavailable("KAFKA_UNAVAILABLE", e.to_string()))?;
        let tracker = Arc::new(Self {
            fold: Mutex::default(),
            consumer,
            topic,
            topics,
            settings,
            writing: Mutex::default(),
            timed_out: runtime.metrics.acks_timed_out(),
        });
        let reader = {
            let tracker = Arc::clone(&tracker);
            tokio::spawn(async move { tracker.read().await })
        };
        let sweeper = {
            let tracker = Arc::clone(&tracker);
            let shutdown = runtime.shutdown.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(tracker.settings.sweep_every);
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = every.tick() => {}
                    }
                    if let Err(error) = tracker.sweep(&producer, now_millis()).await {
                        warn!(%error, "ACK timeout sweep failed");
                    }
                }
            })
        };
        Ok((tracker, vec![reader, sweeper]))
    }

    async fn read(&self) {
        loop {
            match self.consumer.recv().await {
                Ok(message) => self.apply(
                    message.partition(),
                    message.offset(),
                    message.key().unwrap_or_default(),
                    message.payload(),
                ),
                Err(error) => {
                    warn!(%error, "reading erp.acks failed");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    fn apply(&self, partition: i32, offset: i64, key: &[u8], value: Option<&[u8]>) {
        let Ok(mut fold) = self.fold.lock() else {
            return;
        };
        fold.read.insert(partition, offset + 1);
        let key = String::from_utf8_lossy(key).into_owned();
        if let Some(&(p, tombstone)) = fold.removed.get(&key) {
            if p == partition && offset < tombstone {
                return;
            }
            fold.removed.remove(&key);
        }
        match value.map(serde_json::from_slice::<AckRecord>) {
            Some(Ok(record)) => {
                let identity = (record.org_id.clone(), record.ack_id.clone());
                fold.keys.insert(key.clone(), identity.clone());
                fold.rows.insert(identity, (record, key));
            }
            Some(Err(error)) => warn!(%error, partition, offset, "unreadable ACK record ignored"),
            None => {
                if let Some(identity) = fold.keys.remove(&key) {
                    fold.rows.remove(&identity);
                }
            }
        }
    }

    /// Waits (up to `wait`) until the fold has read everything written before this call.
    async fn catch_up(&self, wait: Duration) -> Result<(), ApiError> {
        let consumer = Arc::clone(&self.consumer);
        let topic = self.topic.clone();
        let partitions: Vec<i32> = self
            .fold
            .lock()
            .map(|f| f.read.keys().copied().collect())
            .unwrap_or_default();
        let highs = tokio::task::spawn_blocking(move || {
            let mut highs = Vec::new();
            for partition in topic_index::partitions(&*consumer, &topic, Duration::from_secs(5))?
                .into_iter()
                .chain(partitions)
            {
                let (_, high) =
                    consumer.fetch_watermarks(&topic, partition, Duration::from_secs(5))?;
                highs.push((partition, high));
            }
            Ok::<_, rdkafka::error::KafkaError>(highs)
        })
        .await
        .map_err(|e| ApiError::internal("INTERNAL_ERROR", e.to_string()))?
        .map_err(|e| ApiError::unavailable("KAFKA_UNAVAILABLE", e.to_string()))?;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let behind = self
                .fold
                .lock()
                .map(|f| {
                    highs
                        .iter()
                        .any(|(p, high)| *high > 0 && f.read.get(p).copied().unwrap_or(0) < *high)
                })
                .unwrap_or(true);
            if !behind {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ApiError::unavailable(
                    "ACK_TRACKING_BEHIND",
                    "ACK tracking has not caught up with erp.acks; retry",
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The organisation's tracking row of `ack_id`, if any, with its message key.
    fn entry(&self, org_id: &str, ack_id: &str) -> Option<(AckRecord, String)> {
        self.fold
            .lock()
            .ok()
            .and_then(|f| f.rows.get(&(org_id.to_owned(), ack_id.to_owned())).cloned())
    }

    /// The organisation's tracking row of `ack_id`, if any.
    pub fn row(&self, org_id: &str, ack_id: &str) -> Option<AckRecord> {
        self.entry(org_id, ack_id).map(|(row, _)| row)
    }

    /// The lock of one identity (created on first use).
    fn lock_of(&self, identity: &Identity) -> Arc<tokio::sync::Mutex<()>> {
        match self.writing.lock() {
            Ok(mut locks) => Arc::clone(locks.entry(identity.clone()).or_default()),
            // A poisoned map only loses the serialisation of this call, never a row.
            Err(_) => Arc::default(),
        }
    }

    /// Drops the lock of an identity nobody else holds or waits for.
    fn release(&self, identity: &Identity) {
        if let Ok(mut locks) = self.writing.lock()
            && locks
                .get(identity)
                .is_some_and(|l| Arc::strong_count(l) == 1)
        {
            locks.remove(identity);
        }
    }

    /// Confirms `ack_id` for organisation `org_id`: removes its row and reports
    /// `ACK_RECEIVED`. Another organisation's id is unknown, exactly like a missing one, so an
    /// id cannot be probed across organisations.
    pub async fn acknowledge(
        &self,
        producer: &FutureProducer,
        org_id: &str,
        ack_id: &str,
        status: Option<&str>,
    ) -> Result<Acknowledged, ApiError> {
        let identity = (org_id.to_owned(), ack_id.to_owned());
        let lock = self.lock_of(&identity);
        let outcome = {
            let _one_at_a_time = lock.lock().await;
            self.acknowledge_locked(producer, org_id, ack_id, status)
                .await
        };
        drop(lock);
        self.release(&identity);
        outcome
    }

    async fn acknowledge_locked(
        &self,
        producer: &FutureProducer,
        org_id: &str,
        ack_id: &str,
        status: Option<&str>,
    ) -> Result<Acknowledged, ApiError> {
        if self.entry(org_id, ack_id).is_none() {
            self.catch_up(Duration::from_secs(5)).await?;
        }
        let Some((row, key)) = self.entry(org_id, ack_id) else {
            return Ok(Acknowledged::Unknown);
        };
        let late = row.state == AckState::TimedOut;
        let now = now_millis();
        let waited_ms = now - row.created_at_ms;
        let detail = json!({
            "ack_id": ack_id,
            "status": status,
            "late": late,
            "waited_ms": waited_ms,
            "core_event_ids": row.core_event_ids,
        });
        let message = match status {
            Some(status) => format!("acknowledged by the ERP ({status})"),
            None => "acknowledged by the ERP".to_owned(),
        };
        self.write_spans(
            producer,
            &row,
            Level::Success,
            "ACK_RECEIVED",
            &message,
            &detail,
        )
        .await?;
        let tombstone = FutureRecord::<[u8], [u8]>::to(&self.topic).key(key.as_bytes());
        let (partition, offset) = producer
            .send(tombstone, Timeout::After(Duration::from_secs(30)))
            .await
            .map(|d| (d.partition, d.offset))
            .map_err(|(e, _)| ApiError::unavailable("KAFKA_UNAVAILABLE", e.to_string()))?;
        if let Ok(mut fold) = self.fold.lock() {
            fold.rows.remove(&(org_id.to_owned(), ack_id.to_owned()));
            fold.keys.remove(&key);
            fold.removed.insert(key, (partition, offset));
        }
        Ok(Acknowledged::Confirmed { late })
    }

    /// Reports `ACK_TIMEOUT` for rows pending past the window and drops timed-out rows past
    /// the retention.
    pub async fn sweep(&self, producer: &FutureProducer, now: i64) -> Result<(), ApiError> {
        let timeout = i64::try_from(self.settings.timeout.as_millis()).unwrap_or(i64::MAX);
        let retention = i64::try_from(self.settings.retention.as_millis()).unwrap_or(i64::MAX);
        let rows: Vec<(AckRecord, String)> = self
            .fold
            .lock()
            .map(|f| f.rows.values().cloned().collect())
            .unwrap_or_default();
        let (mut timed_out, mut dropped) = (0, 0);
        for (row, key) in rows {
            let age = now - row.created_at_ms;
            match row.state {
                AckState::Pending if age >= timeout => {
                    let detail = json!({"ack_id": row.ack_id, "timeout_ms": timeout, "core_event_ids": row.core_event_ids});
                    let message = format!(
                        "no acknowledgement within {} s",
                        self.settings.timeout.as_secs()
                    );
                    self.write_spans(
                        producer,
                        &row,
                        Level::Warning,
                        "ACK_TIMEOUT",
                        &message,
                        &detail,
                    )
                    .await?;
                    let updated = AckRecord {
                        state: AckState::TimedOut,
                        ..row
                    };
                    let value = serde_json::to_vec(&updated)
                        .map_err(|e| ApiError::internal("INTERNAL_ERROR", e.to_string()))?;
                    erp_runtime::kafka::send(producer, &self.topic, &key, &value)
                        .await
                        .map_err(|e| ApiError::unavailable("KAFKA_UNAVAILABLE", e.to_string()))?;
                    // Into the fold at once (as an acknowledgement does): a sweep before the
                    // reader has read the record back would report the same timeout again.
                    if let Ok(mut fold) = self.fold.lock() {
                        let identity = (updated.org_id.clone(), updated.ack_id.clone());
                        if let Some(entry) = fold.rows.get_mut(&identity)
                            && entry.0.state == AckState::Pending
                        {
                            entry.0 = updated;
                        }
                    }
                    timed_out += 1;
                    self.timed_out.inc();
                }
                AckState::TimedOut if age >= timeout.saturating_add(retention) => {
                    let tombstone = FutureRecord::<[u8], [u8]>::to(&self.topic).key(key.as_bytes());
                    producer
                        .send(tombstone, Timeout::After(Duration::from_secs(30)))
                        .await
                        .map_err(|(e, _)| {
                            ApiError::unavailable("KAFKA_UNAVAILABLE", e.to_string())
                        })?;
                    dropped += 1;
                }
                _ => {}
            }
        }
        if timed_out + dropped > 0 {
            info!(timed_out, dropped, "ACK timeout sweep");
        }
        Ok(())
    }

    /// One span per tracking use case of the row.
    async fn write_spans(
        &self,
        producer: &FutureProducer,
        row: &AckRecord,
        level: Level,
        code: &str,
        message: &str,
        detail: &serde_json::Value,
    ) -> Result<(), ApiError> {
        let monitoring = self.topics.monitoring();
        for (integration_id, use_case_id) in row.integration_ids.iter().zip(&row.use_case_ids) {
            let span = MonitoringSpan {
                id: derived_uuid(&[&row.ack_id, code, use_case_id]),
                org_id: row.org_id.clone(),
                integration_id: integration_id.clone(),
                event_id: row.event_id.clone(),
                correlation_id: String::new(),
                use_case_id: use_case_id.clone(),
                use_case_type: "outbound".into(),
                level,
                code: code.to_owned(),
                message: message.to_owned(),
                detail: detail.clone(),
                created_at: now_rfc3339(),
            };
            let value = serde_json::to_vec(&span)
                .map_err(|e| ApiError::internal("INTERNAL_ERROR", e.to_string()))?;
            erp_runtime::kafka::send(producer, &monitoring, &row.event_id, &value)
                .await
                .map_err(|e| ApiError::unavailable("KAFKA_UNAVAILABLE", e.to_string()))?;
        }
        Ok(())
    }
}
