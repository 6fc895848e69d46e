//! Commit: the batch's changelog records, then its dedup keys and positions in one sled write
//! once every output is acknowledged, then the position markers; and dedup expiry.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use rdkafka::producer::FutureRecord;
use tracing::{info, warn};

use erp_runtime::kafka;
use erp_schemas::timestamp::now_millis;

use crate::changelog;
use crate::error::ProcessorError;
use crate::rebalance::Owned;
use crate::state::{DedupEntry, PendingState};

use super::emit::send_now;
use super::pipeline::*;

impl Worker {
    /// Finishes a written batch: waits for its acknowledgements (and the previous batch's
    /// position markers), commits its state to sled in one atomic write, then writes its
    /// position markers.
    pub(super) async fn complete(&self, written: Written) -> Result<(), ProcessorError> {
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

    /// Writes the batch's new dedup keys to the changelog: one batch record per input
    /// partition, to the changelog partition of the same number.
    pub(super) async fn write_changelog(
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
    pub(super) async fn write_markers(
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
    pub(super) async fn finish_markers(&self) {
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
    pub(super) async fn expire(&self, owned: &Owned) -> Result<(), ProcessorError> {
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
}
