//! Kafka client configuration. The choices here are the ones every role relies on:
//! idempotent producers with `acks=all` (nothing acknowledged is lost or duplicated by the
//! producer), manual offset commits (a record counts as done only when its effects are
//! durable), and no snappy (the embedded broker cannot serve it).

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;

use crate::error::RuntimeError;
use erp_schemas::topics::Topics;

/// Where the cluster is and how topics are laid out.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// Bootstrap servers.
    pub brokers: String,
    /// Topic names.
    pub topics: Topics,
    /// Partitions of partitioned topics created by us.
    pub partitions: i32,
    /// Replication factor of topics created by us (-1: the broker's default).
    pub replication_factor: i32,
    /// Extra librdkafka properties, applied last.
    pub options: Vec<(String, String)>,
    /// Static membership: group consumers join with `group.instance.id` `<this>-<group id>`.
    pub group_instance_id: Option<String>,
    /// The wire format of our topics (JSON unless `--avro-topics`) and its schema registry.
    pub wire: crate::wire::Wire,
}

impl KafkaSettings {
    /// Settings for a broker at `brokers` with the default topic layout.
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            wire: crate::wire::Wire::json(Topics::default()),
            topics: Topics::default(),
            partitions: 6,
            replication_factor: -1,
            options: Vec::new(),
            group_instance_id: None,
        }
    }

    /// Configuration shared by every client.
    pub fn client_config(&self, client_id: &str) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", client_id)
            // librdkafka may resolve `localhost` to ::1 while a broker listens on 127.0.0.1.
            .set("broker.address.family", "v4");
        config
    }

    fn finish(&self, mut config: ClientConfig) -> ClientConfig {
        for (key, value) in &self.options {
            config.set(key, value);
        }
        config
    }

    /// An idempotent producer with `acks=all`.
    pub fn producer(&self, client_id: &str) -> Result<FutureProducer, RuntimeError> {
        let mut config = self.client_config(client_id);
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("compression.type", "lz4")
            // Never time a record out locally: an idempotent librdkafka producer whose record
            // times out bumps its epoch without asking the broker, and the embedded broker
            // (Tansu 0.6) panics on the next produce (docs/embedded-broker.md, defect A).
            // Whoever awaits a delivery bounds its own wait (ingest: the produce timeout).
            .set("message.timeout.ms", "0")
            // The Java client's partitioner, so keys land where Kafka Streams or Connect expect.
            .set("partitioner", "murmur2_random");
        Ok(self.finish(config).create()?)
    }

    /// A group member that commits its offsets itself.
    pub fn group_consumer(
        &self,
        client_id: &str,
        group_id: &str,
    ) -> Result<StreamConsumer, RuntimeError> {
        Ok(self.group_consumer_config(client_id, group_id).create()?)
    }

    /// The configuration of [`Self::group_consumer`], for consumers with a context of their own.
    pub fn group_consumer_config(&self, client_id: &str, group_id: &str) -> ClientConfig {
        let mut config = self.client_config(client_id);
        config
            .set("group.id", group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("session.timeout.ms", "30000")
            .set("fetch.wait.max.ms", "100");
        if let Some(instance) = &self.group_instance_id {
            // One instance id per group: the dispatcher joins several groups.
            config.set("group.instance.id", format!("{instance}-{group_id}"));
        }
        self.finish(config)
    }

    /// A consumer that reads partitions it assigns itself, outside any group.
    pub fn reader(&self, client_id: &str) -> Result<StreamConsumer, RuntimeError> {
        Ok(self.reader_config(client_id).create()?)
    }

    /// The configuration of [`Self::reader`], for blocking readers.
    pub fn reader_config(&self, client_id: &str) -> ClientConfig {
        let mut config = self.client_config(client_id);
        config
            // librdkafka wants a group id even when nothing is committed.
            .set("group.id", format!("{client_id}-reader"))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("fetch.wait.max.ms", "50");
        self.finish(config)
    }
}

/// Produces one record and waits for the broker's acknowledgement. Returns where it landed.
pub async fn send(
    producer: &FutureProducer,
    topic: &str,
    key: &str,
    value: &[u8],
) -> Result<(i32, i64), RuntimeError> {
    let record = FutureRecord::to(topic).key(key).payload(value);
    // Records never time out in the producer (see `producer`): the wait is bounded here.
    tokio::time::timeout(
        SEND_TIMEOUT,
        producer.send(record, Timeout::After(SEND_TIMEOUT)),
    )
    .await
    .map_err(|_| {
        RuntimeError::Timeout(format!(
            "no acknowledgement from Kafka within {SEND_TIMEOUT:?}"
        ))
    })?
    .map(|delivery| (delivery.partition, delivery.offset))
    .map_err(|(error, _)| RuntimeError::Kafka(error))
}

/// How long [`send`] waits for the broker's acknowledgement.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// The high watermark (next offset) of a partition, asked of the broker without blocking the
/// async runtime.
pub async fn high_watermark(
    consumer: std::sync::Arc<StreamConsumer>,
    topic: String,
    partition: i32,
) -> Result<i64, RuntimeError> {
    tokio::task::spawn_blocking(move || {
        consumer
            .fetch_watermarks(&topic, partition, Duration::from_secs(10))
            .map(|(_, high)| high)
            .map_err(RuntimeError::from)
    })
    .await
    .map_err(|e| RuntimeError::Setting(format!("watermark task failed: {e}")))?
}

/// Hands one record to the producer without waiting for the broker, in call order (so records
/// enqueued one after another keep their order per partition). Waits while the producer's
/// queue is full: a slow broker slows the caller instead of growing memory.
pub async fn enqueue(
    producer: &FutureProducer,
    topic: &str,
    key: &str,
    value: &[u8],
) -> Result<rdkafka::producer::DeliveryFuture, RuntimeError> {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};
    let mut record = FutureRecord::to(topic).key(key).payload(value);
    loop {
        match producer.send_result(record) {
            Ok(delivery) => return Ok(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                record = returned;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err((error, _)) => return Err(RuntimeError::Kafka(error)),
        }
    }
}

/// Waits for every enqueued record's acknowledgement; the first failure wins.
pub async fn await_deliveries(
    deliveries: Vec<rdkafka::producer::DeliveryFuture>,
) -> Result<(), RuntimeError> {
    use rdkafka::error::KafkaError;
    let mut first_error = None;
    for delivery in deliveries {
        let outcome = match delivery.await {
            Ok(Ok(_)) => continue,
            Ok(Err((error, _))) => RuntimeError::Kafka(error),
            Err(_) => RuntimeError::Kafka(KafkaError::Canceled),
        };
        first_error.get_or_insert(outcome);
    }
    first_error.map_or(Ok(()), Err)
}

/// Waits for the first record of a batch (`None` after a consume error, with a short pause).
/// Cancel-safe: nothing is taken from the consumer unless it returns, so it can race other
/// work in a `select!`; then [`fill_batch`] collects the rest.
pub async fn first_record<C: rdkafka::consumer::ConsumerContext + 'static>(
    consumer: &StreamConsumer<C>,
) -> Option<rdkafka::message::OwnedMessage> {
    match consumer.recv().await {
        Ok(message) => Some(message.detach()),
        Err(error) => {
            tracing::warn!(%error, "consume failed");
            tokio::time::sleep(Duration::from_millis(200)).await;
            None
        }
    }
}

/// A batch of up to `max` records starting with `first`: what arrives within 5 ms. Not
/// cancel-safe (records already received would be dropped): await it to the end.
pub async fn fill_batch<C: rdkafka::consumer::ConsumerContext + 'static>(
    consumer: &StreamConsumer<C>,
    first: rdkafka::message::OwnedMessage,
    max: usize,
) -> Vec<rdkafka::message::OwnedMessage> {
    let mut batch = vec![first];
    let deadline = tokio::time::Instant::now() + Duration::from_millis(5);
    while batch.len() < max {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(Ok(message)) => batch.push(message.detach()),
            Ok(Err(error)) => {
                tracing::warn!(%error, "consume failed");
                break;
            }
            Err(_) => break,
        }
    }
    batch
}

/// [`first_record`] then [`fill_batch`]. Not cancel-safe: race only a shutdown against it.
pub async fn poll_batch<C: rdkafka::consumer::ConsumerContext + 'static>(
    consumer: &StreamConsumer<C>,
    max: usize,
) -> Vec<rdkafka::message::OwnedMessage> {
    match first_record(consumer).await {
        Some(first) => fill_batch(consumer, first, max).await,
        None => Vec::new(),
    }
}

/// Commits, for every partition in `batch`, the offset after its last record, and waits for
/// the broker to confirm (on a thread of its own, at most [`SYNC_COMMIT_LIMIT`]), so a clean stop
/// leaves nothing to redo. A commit
/// for a partition lost in a rebalance fails quietly: its new owner re-reads from the last
/// commit, which every role here tolerates by design.
pub async fn commit_batch<C: rdkafka::consumer::ConsumerContext + 'static>(
    consumer: &std::sync::Arc<StreamConsumer<C>>,
    batch: &[rdkafka::message::OwnedMessage],
) {
    commit_batch_with(consumer, batch, true).await;
}

/// Like [`commit_batch`]; with `wait` false the commit is handed to librdkafka without waiting
/// (for roles whose position lives elsewhere and for which the group offset is advisory).
pub async fn commit_batch_with<C: rdkafka::consumer::ConsumerContext + 'static>(
    consumer: &std::sync::Arc<StreamConsumer<C>>,
    batch: &[rdkafka::message::OwnedMessage],
    wait: bool,
) {
    use rdkafka::consumer::CommitMode;
    use rdkafka::message::Message;
    use rdkafka::{Offset, TopicPartitionList};
    use std::collections::BTreeMap;

    let mut next: BTreeMap<(&str, i32), i64> = BTreeMap::new();
    for message in batch {
        let entry = next
            .entry((message.topic(), message.partition()))
            .or_insert(0);
        *entry = (*entry).max(message.offset() + 1);
    }
    let mut list = TopicPartitionList::new();
    for ((topic, partition), offset) in next {
        if let Err(error) = list.add_partition_offset(topic, partition, Offset::Offset(offset)) {
            tracing::warn!(%error, "cannot build offset commit");
        }
    }
    if !wait {
        if let Err(error) = consumer.commit(&list, CommitMode::Async) {
            tracing::debug!(%error, "offset commit not accepted");
        }
        return;
    }
    // librdkafka's synchronous commit waits without a limit while the group coordinator is
    // unreachable. On a thread of its own, not tokio's blocking pool: a runtime that shuts down
    // waits for its blocking threads, so one commit to a broker that has gone would hold the
    // process's shutdown forever; and the caller goes on after SYNC_COMMIT_LIMIT as after any
    // failed commit (the next batch's commit covers these offsets).
    let consumer = std::sync::Arc::clone(consumer);
    let (done, outcome) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("kafka-commit".into())
        .spawn(move || {
            let _ = done.send(consumer.commit(&list, CommitMode::Sync));
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "offset commit thread cannot start");
        return;
    }
    match tokio::time::timeout(SYNC_COMMIT_LIMIT, outcome).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(error))) => tracing::debug!(%error, "offset commit not accepted"),
        Ok(Err(_)) => tracing::warn!("offset commit thread ended without an answer"),
        Err(_) => tracing::warn!(
            limit_secs = SYNC_COMMIT_LIMIT.as_secs(),
            "offset commit not confirmed in time; the next commit covers it"
        ),
    }
}

/// The longest a waiting commit holds its caller: longer than any broker answers a healthy
/// commit, short enough that an unreachable coordinator does not stop a delivery loop for good.
pub const SYNC_COMMIT_LIMIT: Duration = Duration::from_secs(30);
