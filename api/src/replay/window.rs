//! Which offsets a replay window covers: per partition of a topic, the first offset at or after
//! `from` and the first at or after `to` (exclusive end), from the broker's time index — with the
//! embedded broker's gap covered: it answers offset 0, not the log end, for a time past the
//! last record (`shared/reference/notes/kafka-brokers-here.md`), so a time after the partition's
//! last record is taken as its end here. Blocking: call it off the async threads.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

/// Offsets `[start, end)` of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Range {
    pub partition: i32,
    pub start: i64,
    pub end: i64,
}

/// Explicit ranges: partition → (start, end), end exclusive.
pub type OffsetRanges = BTreeMap<i32, (i64, i64)>;

const TIMEOUT: Duration = Duration::from_secs(10);

fn kafka(e: rdkafka::error::KafkaError) -> String {
    e.to_string()
}

/// The timestamp of the record at `offset`, if it can be read.
pub(crate) fn timestamp_at(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Option<i64> {
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, partition, Offset::Offset(offset))
        .ok()?;
    consumer.assign(&assignment).ok()?;
    let deadline = std::time::Instant::now() + TIMEOUT;
    while std::time::Instant::now() < deadline {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200))
            && message.offset() >= offset
        {
            return message.timestamp().to_millis();
        }
    }
    None
}

/// The first offset of `partition` whose record is at or after `at` (ms), within `[low, high]`.
pub(crate) fn offset_for_time(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    at: i64,
    (low, high): (i64, i64),
) -> Result<i64, String> {
    if high <= low {
        return Ok(high);
    }
    // Past the last record: the end (the embedded broker would answer 0).
    match timestamp_at(consumer, topic, partition, high - 1) {
        Some(last) if at > last => return Ok(high),
        Some(_) => {}
        None => return Err(format!("cannot read partition {partition} of {topic}")),
    }
    let mut query = TopicPartitionList::new();
    query
        .add_partition_offset(topic, partition, Offset::Offset(at))
        .map_err(kafka)?;
    let found = consumer.offsets_for_times(query, TIMEOUT).map_err(kafka)?;
    let offset = found
        .find_partition(topic, partition)
        .map(|e| e.offset())
        .unwrap_or(Offset::End);
    Ok(match offset {
        Offset::Offset(o) => o.clamp(low, high),
        _ => high,
    })
}

/// The ranges of every partition of `topic` for the window `[from, to)` (ms; `None` = from
/// the beginning / up to now), or, with `offsets`, exactly those (clamped to what is there).
pub fn ranges(
    consumer: &BaseConsumer,
    topic: &str,
    from: Option<i64>,
    to: Option<i64>,
    offsets: Option<&OffsetRanges>,
) -> Result<Vec<Range>, String> {
    let partitions = crate::topic_index::partitions(consumer, topic, TIMEOUT).map_err(kafka)?;
    let mut out = Vec::new();
    for partition in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, TIMEOUT)
            .map_err(kafka)?;
        let (start, end) = match offsets {
            Some(offsets) => match offsets.get(&partition) {
                Some(&(start, end)) => (start.clamp(low, high), end.clamp(low, high)),
                None => continue,
            },
            None => {
                let start = match from {
                    Some(at) => offset_for_time(consumer, topic, partition, at, (low, high))?,
                    None => low,
                };
                let end = match to {
                    Some(at) => offset_for_time(consumer, topic, partition, at, (low, high))?,
                    None => high,
                };
                (start, end.max(start))
            }
        };
        out.push(Range {
            partition,
            start,
            end: end.max(start),
        });
    }
    Ok(out)
}
