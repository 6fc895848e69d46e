//! The broker side of consumer groups, blocking (call off the async threads): watermarks,
//! committed offsets, membership, the oldest unconsumed record's age, and committing a reset.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use erp_runtime::KafkaSettings;
use erp_schemas::timestamp::now_millis;

use super::{GroupSpec, Membership, PartitionLag};
use crate::replay::window::timestamp_at;

/// Longest wait for one broker answer.
const TIMEOUT: Duration = Duration::from_secs(5);

/// A broker answer that did not come.
pub type KafkaResult<T> = Result<T, String>;

fn text(error: rdkafka::error::KafkaError) -> String {
    error.to_string()
}

/// A client that speaks for `group` (reads and commits its offsets) without joining it.
pub struct GroupClient {
    group: BaseConsumer,
    kafka: KafkaSettings,
    /// Reads single records (the age of the oldest unconsumed one, a timestamp's offset);
    /// never commits. Created on first need: a group without lag needs none.
    reader: std::cell::OnceCell<Option<BaseConsumer>>,
}

impl GroupClient {
    /// Clients for `group_id`.
    pub fn new(kafka: &KafkaSettings, group_id: &str) -> KafkaResult<Self> {
        let mut config = kafka.client_config("erp-toolkit-groups");
        config
            .set("group.id", group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false");
        let group = config.create().map_err(text)?;
        Ok(Self {
            group,
            kafka: kafka.clone(),
            reader: std::cell::OnceCell::new(),
        })
    }

    fn reader(&self) -> KafkaResult<&BaseConsumer> {
        self.reader
            .get_or_init(|| {
                let mut config = self.kafka.reader_config("erp-toolkit-groups");
                config
                    .set("max.partition.fetch.bytes", "1024")
                    .set("queued.min.messages", "1");
                config
                    .create()
                    .map_err(|error| tracing::warn!(%error, "no record reader for group lag"))
                    .ok()
            })
            .as_ref()
            .ok_or_else(|| "no record reader".to_owned())
    }

    /// The partitions of `topic` and their `(log start, log end)`.
    pub fn watermarks(&self, topic: &str) -> KafkaResult<Vec<(i32, i64, i64)>> {
        let partitions =
            crate::topic_index::partitions(&self.group, topic, TIMEOUT).map_err(text)?;
        partitions
            .into_iter()
            .map(|p| {
                let (low, high) = self
                    .group
                    .fetch_watermarks(topic, p, TIMEOUT)
                    .map_err(text)?;
                Ok((p, low, high))
            })
            .collect()
    }

    /// The group's committed offsets of `partitions` (`None`: nothing committed).
    pub fn committed(&self, partitions: &[(String, i32)]) -> KafkaResult<Vec<Option<i64>>> {
        let mut query = TopicPartitionList::new();
        for (topic, partition) in partitions {
            query.add_partition(topic, *partition);
        }
        let found = self.group.committed_offsets(query, TIMEOUT).map_err(text)?;
        Ok(partitions
            .iter()
            .map(|(topic, partition)| {
                match found.find_partition(topic, *partition).map(|e| e.offset()) {
                    Some(Offset::Offset(offset)) => Some(offset),
                    _ => None,
                }
            })
            .collect())
    }

    /// The group's state and member count, when the broker can describe groups (the embedded
    /// broker cannot: docs/embedded-broker.md).
    pub fn membership(&self, group_id: &str) -> Option<Membership> {
        let list = self
            .group
            .fetch_group_list(Some(group_id), TIMEOUT)
            .map_err(|error| tracing::debug!(%error, group_id, "group not described"))
            .ok()?;
        let group = list.groups().iter().find(|g| g.name() == group_id)?;
        Some(Membership {
            state: group.state().to_owned(),
            members: group.members().len(),
        })
    }

    /// Seconds since the record at `offset` was written, if it can be read.
    pub fn age_at(&self, topic: &str, partition: i32, offset: i64) -> Option<f64> {
        let written = timestamp_at(self.reader().ok()?, topic, partition, offset)?;
        Some(((now_millis() - written).max(0) as f64) / 1000.0)
    }

    /// Commits `offsets` (topic, partition, next offset) for the group and reads them back.
    pub fn commit(&self, offsets: &[(String, i32, i64)]) -> KafkaResult<Vec<Option<i64>>> {
        let mut list = TopicPartitionList::new();
        for (topic, partition, offset) in offsets {
            list.add_partition_offset(topic, *partition, Offset::Offset(*offset))
                .map_err(text)?;
        }
        self.group.commit(&list, CommitMode::Sync).map_err(text)?;
        let partitions: Vec<(String, i32)> =
            offsets.iter().map(|(t, p, _)| (t.clone(), *p)).collect();
        self.committed(&partitions)
    }

    /// The first offset of a partition at or after `at` (ms), within `[low, high]`.
    pub fn offset_for_time(
        &self,
        topic: &str,
        partition: i32,
        at: i64,
        range: (i64, i64),
    ) -> KafkaResult<i64> {
        crate::replay::window::offset_for_time(self.reader()?, topic, partition, at, range)
    }
}

/// The lag of every partition of `spec`'s topics (of `only` when given).
pub fn partitions(
    client: &GroupClient,
    spec: &GroupSpec,
    only: Option<&[String]>,
) -> KafkaResult<Vec<PartitionLag>> {
    let mut out = Vec::new();
    for topic in &spec.topics {
        if only.is_some_and(|only| !only.contains(topic)) {
            continue;
        }
        let marks = client.watermarks(topic)?;
        let keys: Vec<(String, i32)> = marks.iter().map(|(p, _, _)| (topic.clone(), *p)).collect();
        let committed = client.committed(&keys)?;
        for ((partition, low, high), committed) in marks.into_iter().zip(committed) {
            // Without a commit the group starts at the log start (`auto.offset.reset`).
            let position = committed.unwrap_or(low).clamp(low, high);
            let lag = high - position;
            let lag_seconds = if lag == 0 {
                Some(0.0)
            } else {
                client.age_at(topic, partition, position)
            };
            out.push(PartitionLag {
                topic: topic.clone(),
                partition,
                committed_offset: committed,
                log_start_offset: low,
                log_end_offset: high,
                lag_records: lag,
                lag_seconds,
            });
        }
    }
    Ok(out)
}
