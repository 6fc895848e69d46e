//! The changelog of the state store on `erp.processor.state` (compacted): every new dedup key,
//! every expired key (as a tombstone) and the input position of each batch are written to the
//! changelog partition with the input partition's number. A processor that gets a partition
//! whose state it lacks (an empty or lost volume, or a partition moving in a rebalance) replays
//! that changelog partition from its checkpoint before it consumes.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::error::ProcessorError;
use crate::state::{DedupEntry, StateStore};
use erp_runtime::KafkaSettings;

/// Prefix of position markers (a dedup key never starts with a NUL byte).
const POSITION_PREFIX: &[u8] = b"\0position\0";

#[derive(Serialize, Deserialize)]
struct DedupValue {
    seen_at: i64,
    event_id: String,
}

#[derive(Serialize, Deserialize)]
struct PositionValue {
    next_offset: i64,
}

/// The changelog record of a new dedup key.
pub fn dedup_record(entry: &DedupEntry) -> Vec<u8> {
    serde_json::to_vec(&DedupValue {
        seen_at: entry.seen_at,
        event_id: entry.event_id.clone(),
    })
    .unwrap_or_default()
}

/// The key and value of a position marker.
pub fn position_record(topic: &str, next_offset: i64) -> (Vec<u8>, Vec<u8>) {
    let mut key = POSITION_PREFIX.to_vec();
    key.extend_from_slice(topic.as_bytes());
    let value = serde_json::to_vec(&PositionValue { next_offset }).unwrap_or_default();
    (key, value)
}

/// What a restore did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Restored {
    pub records: u64,
    pub from: i64,
    pub to: i64,
}

/// Replays changelog partition `partition` from the store's checkpoint to its end into the
/// store. Blocking: runs inside the rebalance callback, before the partition is consumed.
pub fn restore(
    kafka: &KafkaSettings,
    store: &StateStore,
    partition: i32,
) -> Result<Restored, ProcessorError> {
    let topic = kafka.topics.processor_state();
    let from = store.checkpoint(partition)?;
    let consumer: BaseConsumer = kafka
        .reader_config("erp-toolkit-processor-restore")
        .create()?;
    let (low, high) = consumer.fetch_watermarks(&topic, partition, Duration::from_secs(10))?;
    let from = from.max(low);
    if from >= high {
        return Ok(Restored {
            records: 0,
            from,
            to: high,
        });
    }
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(&topic, partition, Offset::Offset(from))?;
    consumer.assign(&assignment)?;
    drop(assignment);
    let started = Instant::now();
    let (mut dedup, mut positions, mut records, mut next) = (Vec::new(), Vec::new(), 0u64, from);
    while next < high {
        if started.elapsed() > Duration::from_secs(120) {
            return Err(ProcessorError::Task(format!(
                "restore of {topic}/{partition} stalled at {next} of {high}"
            )));
        }
        let Some(message) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let message = message?;
        next = message.offset() + 1;
        records += 1;
        let key = message.key().unwrap_or_default();
        if let Some(topic) = key.strip_prefix(POSITION_PREFIX) {
            if let Some(Ok(value)) = message
                .payload()
                .map(serde_json::from_slice::<PositionValue>)
            {
                positions.push((
                    String::from_utf8_lossy(topic).into_owned(),
                    value.next_offset,
                ));
            }
            continue;
        }
        let entry = message
            .payload()
            .and_then(|p| serde_json::from_slice::<DedupValue>(p).ok())
            .map(|v| DedupEntry {
                seen_at: v.seen_at,
                partition,
                event_id: v.event_id,
            });
        dedup.push((key.to_vec(), entry));
    }
    store.restore(partition, dedup, positions, high)?;
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
