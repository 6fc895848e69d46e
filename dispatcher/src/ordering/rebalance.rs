//! Lanes across rebalances: dropped from memory on revocation, rebuilt from the lanes topic on
//! assignment before the consumer returns any record of the partition.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tracing::{error, info, warn};

use crate::error::DispatcherError;

use super::lanes::*;

impl Lanes {
    /// Drops the lanes of revoked input partitions (their records stay for the next owner) and
    /// wakes their drivers so they end.
    pub(super) fn revoke(&self, partitions: &[i32]) {
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
    pub(super) fn restore(self: &Arc<Self>, partitions: &[i32]) -> Result<usize, DispatcherError> {
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
    pub(super) fn committed(&self, partitions: &[i32]) -> Vec<(i32, i64)> {
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

    pub(super) fn partitions(&self, list: &TopicPartitionList) -> Vec<i32> {
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
                // This callback runs inside the consumer's `recv()` on a tokio worker; the
                // restore (lanes topic reads, committed offsets, retry pauses) must end before
                // the assignment, so it blocks in place rather than stall that worker's tasks.
                erp_runtime::blocking::in_place(|| {
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
                });
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
