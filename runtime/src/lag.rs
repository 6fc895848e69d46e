//! Consumer lag: `erp_consumer_lag_records{group,topic,partition}` and
//! `erp_consumer_lag_seconds{group,topic,partition}` for every partition a group consumer of
//! this process is assigned.
//!
//! Measured on a timer, on a blocking thread: the high watermark is a round trip to the broker
//! (`fetch_watermarks` blocks), and so is reading the oldest unconsumed record, whose timestamp
//! gives the lag in seconds. A partition whose lag is zero costs one watermark request per tick;
//! a lagging one also one fetch. Series of partitions the consumer no longer holds are removed,
//! so a rebalance leaves no stale lag behind.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::Duration;

use prometheus::{GaugeVec, IntGaugeVec, Opts};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{KafkaSettings, Metrics, Runtime};

/// How often the lag is measured.
pub const LAG_INTERVAL: Duration = Duration::from_secs(5);

/// Longest wait for one broker answer while measuring.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// The two lag gauges of a process (shared by every role in it).
#[derive(Clone)]
struct LagGauges {
    records: IntGaugeVec,
    seconds: GaugeVec,
}

impl LagGauges {
    fn of(metrics: &Metrics) -> Self {
        let labels = ["group", "topic", "partition"];
        let records = metrics.shared("erp_consumer_lag_records", || {
            IntGaugeVec::new(
                Opts::new(
                    "erp_consumer_lag_records",
                    "Records not yet consumed per assigned partition: high watermark minus position",
                ),
                &labels,
            )
            .expect("static metric definition")
        });
        let seconds = metrics.shared("erp_consumer_lag_seconds", || {
            GaugeVec::new(
                Opts::new(
                    "erp_consumer_lag_seconds",
                    "Age of the oldest unconsumed record per assigned partition (0 when caught up)",
                ),
                &labels,
            )
            .expect("static metric definition")
        });
        Self { records, seconds }
    }
}

/// A running lag measurement. Dropping it leaves the measurement running until the runtime
/// shuts down or the consumer is dropped; [`LagWatch::stop`] ends it and waits.
pub struct LagWatch {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl LagWatch {
    /// Ends the measurement and waits until it no longer holds the consumer: a measurement
    /// under way holds it on a blocking thread for up to a few broker round trips, and a role
    /// that closes its consumer (and the state its rebalance callbacks use) must know that
    /// nobody else still has it.
    pub async fn stop(self) {
        self.stop.cancel();
        if let Err(error) = self.task.await {
            tracing::warn!(%error, "consumer lag measurement ended abnormally");
        }
    }
}

/// Measures the lag of `consumer` (a member of `group`) every [`LAG_INTERVAL`] until the
/// runtime shuts down, the consumer is dropped or the returned watch is stopped.
pub fn watch<C>(runtime: &Runtime, group: &str, consumer: &Arc<StreamConsumer<C>>) -> LagWatch
where
    C: ConsumerContext + 'static,
{
    let gauges = LagGauges::of(&runtime.metrics);
    let consumer = Arc::downgrade(consumer);
    let stop = runtime.shutdown.child_token();
    let shutdown = stop.clone();
    let mut meter = Meter {
        group: group.to_owned(),
        kafka: runtime.kafka.clone(),
        reader: None,
        reported: HashSet::new(),
        gauges,
    };
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => {
                    // The consumer is being closed: its partitions are no longer this
                    // process's to report.
                    meter.forget_all();
                    break;
                }
                () = tokio::time::sleep(LAG_INTERVAL) => {}
            }
            let consumer: Weak<StreamConsumer<C>> = consumer.clone();
            let measured = tokio::task::spawn_blocking(move || {
                let alive = consumer.upgrade().map(|c| meter.measure(&*c)).is_some();
                (meter, alive)
            })
            .await;
            match measured {
                Ok((back, true)) => meter = back,
                Ok((mut back, false)) => {
                    back.forget_all();
                    break;
                }
                Err(error) => {
                    tracing::warn!(%error, "consumer lag measurement failed");
                    break;
                }
            }
        }
    });
    LagWatch { stop, task }
}

/// The state of one group's measurement, moved to the blocking thread and back.
struct Meter {
    group: String,
    kafka: KafkaSettings,
    /// Reads the oldest unconsumed records (created on first need).
    reader: Option<BaseConsumer>,
    /// The partitions with series, to remove the ones no longer assigned.
    reported: HashSet<(String, i32)>,
    gauges: LagGauges,
}

impl Meter {
    fn measure<C: ConsumerContext>(&mut self, consumer: &StreamConsumer<C>) {
        let Ok(positions) = consumer.position() else {
            return;
        };
        let mut committed: Option<TopicPartitionList> = None;
        let mut lagging = Vec::new();
        let mut current = HashSet::new();
        for element in positions.elements() {
            let (topic, partition) = (element.topic().to_owned(), element.partition());
            let Ok((low, high)) = consumer.fetch_watermarks(&topic, partition, REQUEST_TIMEOUT)
            else {
                continue;
            };
            // Before the first record of an assignment the position is not known yet: the
            // committed offset is where consumption resumes, else the start of the log.
            let position = match element.offset() {
                Offset::Offset(offset) => offset,
                _ => {
                    let committed = committed.get_or_insert_with(|| {
                        consumer.committed(REQUEST_TIMEOUT).unwrap_or_default()
                    });
                    match committed
                        .find_partition(&topic, partition)
                        .map(|e| e.offset())
                    {
                        Some(Offset::Offset(offset)) => offset,
                        _ => low,
                    }
                }
            };
            let lag = (high - position.max(low)).max(0);
            let labels = [self.group.as_str(), topic.as_str(), &partition.to_string()];
            self.gauges.records.with_label_values(&labels).set(lag);
            if lag == 0 {
                self.gauges.seconds.with_label_values(&labels).set(0.0);
            } else {
                lagging.push((topic.clone(), partition, position.max(low)));
            }
            current.insert((topic, partition));
        }
        for (topic, partition, age) in self.oldest_ages(&lagging) {
            let labels = [self.group.as_str(), topic.as_str(), &partition.to_string()];
            self.gauges.seconds.with_label_values(&labels).set(age);
        }
        let gone: Vec<_> = self.reported.difference(&current).cloned().collect();
        for (topic, partition) in gone {
            self.forget(&topic, partition);
        }
        self.reported = current;
    }

    /// The age in seconds of the record at each `(topic, partition, offset)`, for those read in
    /// time (the others keep their last value).
    fn oldest_ages(&mut self, at: &[(String, i32, i64)]) -> Vec<(String, i32, f64)> {
        if at.is_empty() {
            return Vec::new();
        }
        if self.reader.is_none() {
            let mut config = self
                .kafka
                .reader_config(&format!("erp-toolkit-lag-{}", self.group));
            // One record per partition is wanted: fetch as little as the broker allows (it
            // still returns the first record batch whole) and prefetch nothing beyond it, so
            // a lagging partition of large records costs no megabytes per tick.
            config
                .set("max.partition.fetch.bytes", "1024")
                .set("queued.min.messages", "1")
                .set("queued.max.messages.kbytes", "64");
            self.reader = config
                .create()
                .map_err(|error| tracing::warn!(%error, "no consumer lag reader"))
                .ok();
        }
        let Some(reader) = &self.reader else {
            return Vec::new();
        };
        let mut assignment = TopicPartitionList::new();
        for (topic, partition, offset) in at {
            if assignment
                .add_partition_offset(topic, *partition, Offset::Offset(*offset))
                .is_err()
            {
                return Vec::new();
            }
        }
        if reader.assign(&assignment).is_err() {
            return Vec::new();
        }
        let mut found: HashMap<(String, i32), f64> = HashMap::new();
        let now = now_ms();
        let deadline = std::time::Instant::now() + REQUEST_TIMEOUT;
        while found.len() < at.len() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            // An error or nothing in time: the partition keeps its last age.
            if let Some(Ok(message)) = reader.poll(left) {
                let key = (message.topic().to_owned(), message.partition());
                if let Some(at_ms) = message.timestamp().to_millis() {
                    found
                        .entry(key)
                        .or_insert_with(|| (now - at_ms).max(0) as f64 / 1000.0);
                }
            }
        }
        let _ = reader.unassign();
        found.into_iter().map(|((t, p), age)| (t, p, age)).collect()
    }

    fn forget(&self, topic: &str, partition: i32) {
        let labels = [self.group.as_str(), topic, &partition.to_string()];
        let _ = self.gauges.records.remove_label_values(&labels);
        let _ = self.gauges.seconds.remove_label_values(&labels);
    }

    fn forget_all(&mut self) {
        for (topic, partition) in std::mem::take(&mut self.reported) {
            self.forget(&topic, partition);
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}
