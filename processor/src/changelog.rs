//! The changelog of the state store on `erp.processor.state` (compacted), one changelog
//! partition per input partition number. Two kinds of records:
//!
//! - a **batch record** per input partition and batch: every dedup key the batch decided, in
//!   one record (key `\0batch\0` topic `\0` first input offset). Packing a batch into one record
//!   keeps the changelog at a few records per batch instead of one per event, which is what
//!   the broker's write rate and a restore's read time are measured in. A retried batch starts
//!   at the same offset and so replaces its earlier record under compaction. Expired batches
//!   get tombstones;
//! - a **position marker** per input topic (key `\0position\0` topic): the next input offset
//!   whose outputs, dedup keys and all before it are committed. It is written only *after* the
//!   batch's outputs are acknowledged and its state is on disk, so a marker never points past
//!   an event whose outputs could be missing; it may lag by the batches in flight, which a new
//!   owner then processes again with the same derived ids.
//!
//! A processor that gets a partition whose state it lacks (an empty or lost volume, or a
//! partition moving in a rebalance) replays that changelog partition from its checkpoint before
//! it consumes. Entries older than the dedup window are not restored.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::error::ProcessorError;
use crate::state::{ChangelogContent, DedupEntry, StateStore};
use erp_runtime::KafkaSettings;
use erp_schemas::positions::{PositionMarker, marker_topic, position_key};
use erp_schemas::timestamp::now_millis;

/// Prefix of batch records.
const BATCH_PREFIX: &[u8] = b"\0batch\0";

/// One dedup entry of a batch record: key, seen at, first event id.
type PackedEntry = (String, i64, String);

#[derive(Serialize, Deserialize)]
struct BatchValue {
    dedup: Vec<PackedEntry>,
}

/// The value of a per-key dedup record, as written before batch records existed; still read.
#[derive(Serialize, Deserialize)]
struct LegacyDedupValue {
    seen_at: i64,
    event_id: String,
}

/// The key of the batch record of the batch that starts at `first_offset` of an input
/// partition of `topic`.
pub fn batch_key(topic: &str, first_offset: i64) -> Vec<u8> {
    let mut key = BATCH_PREFIX.to_vec();
    key.extend_from_slice(topic.as_bytes());
    key.push(0);
    key.extend_from_slice(format!("{first_offset:020}").as_bytes());
    key
}

/// The value of a batch record holding `entries` (dedup key, entry).
pub fn batch_value<'a>(entries: impl Iterator<Item = (&'a Vec<u8>, &'a DedupEntry)>) -> Vec<u8> {
    let dedup = entries
        .map(|(key, entry)| {
            (
                String::from_utf8_lossy(key).into_owned(),
                entry.seen_at,
                entry.event_id.clone(),
            )
        })
        .collect();
    serde_json::to_vec(&BatchValue { dedup }).unwrap_or_default()
}

/// The key and value of a position marker.
pub fn position_record(topic: &str, next_offset: i64) -> (Vec<u8>, Vec<u8>) {
    let marker = PositionMarker {
        next_offset,
        reset: false,
    };
    let value = serde_json::to_vec(&marker).unwrap_or_default();
    (position_key(topic), value)
}

impl ChangelogContent {
    /// Applies one changelog record of partition `partition`; entries older than `window_ms`
    /// at `now` are left out.
    pub fn apply(
        &mut self,
        partition: i32,
        key: &[u8],
        value: Option<&[u8]>,
        now: i64,
        window_ms: i64,
    ) {
        let fresh = |seen_at: i64| now - seen_at < window_ms;
        if let Some(topic) = marker_topic(key) {
            if let Some(Ok(marker)) = value.map(serde_json::from_slice::<PositionMarker>) {
                self.positions.push((topic, marker));
            }
            return;
        }
        if key.starts_with(BATCH_PREFIX) {
            let Some(Ok(batch)) = value.map(serde_json::from_slice::<BatchValue>) else {
                self.batches.push((key.to_vec(), None));
                return;
            };
            // Tracked even when expired, so that expiry tombstones it.
            let newest = batch.dedup.iter().map(|(_, seen, _)| *seen).max();
            self.batches.push((key.to_vec(), newest));
            for (dedup_key, seen_at, event_id) in batch.dedup {
                if fresh(seen_at) {
                    self.dedup.push((
                        dedup_key.into_bytes(),
                        Some(DedupEntry {
                            seen_at,
                            partition,
                            event_id,
                        }),
                    ));
                }
            }
            return;
        }
        let entry = value
            .and_then(|v| serde_json::from_slice::<LegacyDedupValue>(v).ok())
            .filter(|v| fresh(v.seen_at))
            .map(|v| DedupEntry {
                seen_at: v.seen_at,
                partition,
                event_id: v.event_id,
            });
        self.dedup.push((key.to_vec(), entry));
    }
}

/// What a restore did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Restored {
    pub records: u64,
    pub from: i64,
    pub to: i64,
}

/// Replays changelog partitions into the store, with one consumer for all partitions of an
/// assignment (creating one per partition cost about 100 ms each on the embedded broker).
pub struct Restorer {
    consumer: BaseConsumer,
    topic: String,
}

impl Restorer {
    /// A restorer for the installation's changelog topic.
    pub fn new(kafka: &KafkaSettings) -> Result<Self, ProcessorError> {
        Ok(Self {
            consumer: kafka
                .reader_config("erp-toolkit-processor-restore")
                .create()?,
            topic: kafka.topics.processor_state(),
        })
    }

    /// Replays changelog partition `partition` from the store's checkpoint to its end into
    /// the store. Blocking: runs inside the rebalance callback, before the partition is
    /// consumed.
    pub fn restore(&self, store: &StateStore, partition: i32) -> Result<Restored, ProcessorError> {
        let topic = &self.topic;
        let consumer = &self.consumer;
        let from = store.checkpoint(partition)?;
        let (low, high) = consumer.fetch_watermarks(topic, partition, Duration::from_secs(10))?;
        let from = from.max(low);
        if from >= high {
            return Ok(Restored {
                records: 0,
                from,
                to: high,
            });
        }
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(topic, partition, Offset::Offset(from))?;
        consumer.assign(&assignment)?;
        drop(assignment);
        let started = Instant::now();
        let now = now_millis();
        let mut content = ChangelogContent::default();
        let (mut records, mut next) = (0u64, from);
        while next < high {
            if started.elapsed() > Duration::from_secs(300) {
                return Err(ProcessorError::Task(format!(
                    "restore of {topic}/{partition} stalled at {next} of {high}"
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
            records += 1;
            content.apply(
                partition,
                message.key().unwrap_or_default(),
                message.payload(),
                now,
                store.window_ms(),
            );
        }
        consumer.unassign()?;
        store.restore(partition, content, high)?;
        info!(
            partition,
            records,
            from,
            to = high,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "restored processor state from the changelog"
        );
        Ok(Restored {
            records,
            from,
            to: high,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_records_restore_fresh_entries_and_skip_expired_ones() {
        let fresh = DedupEntry {
            seen_at: 9_000,
            partition: 3,
            event_id: "evt_1".into(),
        };
        let old = DedupEntry {
            seen_at: 1_000,
            partition: 3,
            event_id: "evt_0".into(),
        };
        let (k1, k2) = (b"i\0fresh".to_vec(), b"i\0old".to_vec());
        let value = batch_value([(&k1, &fresh), (&k2, &old)].into_iter());
        let key = batch_key("erp.inbound.events", 42);
        let mut content = ChangelogContent::default();
        content.apply(3, &key, Some(&value), 10_000, 5_000);
        assert_eq!(content.dedup, vec![(k1, Some(fresh))]);
        assert_eq!(content.batches, vec![(key.clone(), Some(9_000))]);
        content.apply(3, &key, None, 10_000, 5_000);
        assert_eq!(content.batches.last(), Some(&(key, None)));
    }

    #[test]
    fn markers_and_legacy_records_are_read() {
        let mut content = ChangelogContent::default();
        let (key, value) = position_record("erp.inbound.events", 77);
        content.apply(0, &key, Some(&value), 0, 1);
        assert_eq!(
            content.positions,
            vec![(
                "erp.inbound.events".to_owned(),
                PositionMarker {
                    next_offset: 77,
                    reset: false
                }
            )]
        );
        content.apply(
            0,
            b"i\0d",
            Some(br#"{"seen_at":5,"event_id":"evt_5"}"#),
            6,
            10,
        );
        content.apply(0, b"i\0d", None, 6, 10);
        assert_eq!(content.dedup.len(), 2);
        assert_eq!(content.dedup[1], (b"i\0d".to_vec(), None));
    }
}
