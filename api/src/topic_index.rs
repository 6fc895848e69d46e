//! The one topic-index mechanism of the API (the inbound event log, the webhook attempt log): a sled
//! tree that follows a topic from where it stopped, recording the next offset of each partition
//! under `p` + partition in the same batch as the index entries, and a reader that fetches single
//! records by their coordinates, since the index keeps coordinates rather than copies.

use std::sync::Mutex;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use tracing::warn;

use erp_runtime::Runtime;

/// The key of a partition's next offset in an index tree.
pub fn position_key(partition: i32) -> Vec<u8> {
    let mut key = vec![b'p'];
    key.extend_from_slice(&partition.to_be_bytes());
    key
}

/// Opens tree `name` of the sled database in `dir`.
pub fn open_tree(dir: &std::path::Path, name: &str) -> Result<sled::Tree, String> {
    sled::open(dir)
        .and_then(|db| db.open_tree(name))
        .map_err(|e| e.to_string())
}

/// The partitions of `topic`, as the broker's metadata lists them (blocking).
pub fn partitions<C: rdkafka::consumer::ConsumerContext>(
    consumer: &impl Consumer<C>,
    topic: &str,
    timeout: Duration,
) -> rdkafka::error::KafkaResult<Vec<i32>> {
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    Ok(metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect())
}

/// A consumer of every partition of `topic`, each starting where `tree` says the index stopped
/// (the beginning when it never started).
pub fn follower(
    runtime: &Runtime,
    tree: &sled::Tree,
    topic: &str,
    client_id: &str,
) -> Result<StreamConsumer, String> {
    let consumer: StreamConsumer = runtime.kafka.reader(client_id).map_err(|e| e.to_string())?;
    let mut assignment = TopicPartitionList::new();
    for partition in
        partitions(&consumer, topic, Duration::from_secs(10)).map_err(|e| e.to_string())?
    {
        let next = tree
            .get(position_key(partition))
            .ok()
            .flatten()
            .and_then(|v| v.get(..8).and_then(|b| b.try_into().ok()))
            .map(i64::from_be_bytes);
        assignment
            .add_partition_offset(
                topic,
                partition,
                next.map_or(Offset::Beginning, Offset::Offset),
            )
            .map_err(|e| e.to_string())?;
    }
    consumer.assign(&assignment).map_err(|e| e.to_string())?;
    Ok(consumer)
}

/// Reads messages of `consumer` for ever; `index` adds what one message contributes to the
/// batch, which is applied together with the partition's new position.
pub async fn follow(
    consumer: StreamConsumer,
    tree: &sled::Tree,
    what: &str,
    mut index: impl FnMut(&rdkafka::message::BorrowedMessage<'_>, &mut sled::Batch),
) {
    loop {
        let message = match consumer.recv().await {
            Ok(message) => message,
            Err(error) => {
                warn!(%error, what, "reading the topic for an index failed");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let mut batch = sled::Batch::default();
        index(&message, &mut batch);
        batch.insert(
            position_key(message.partition()),
            (message.offset() + 1).to_be_bytes().to_vec(),
        );
        if let Err(error) = tree.apply_batch(batch) {
            warn!(%error, what, "index write failed");
        }
    }
}

/// Fetches single records by coordinates (blocking: call it off the async threads).
pub struct Fetcher {
    consumer: Mutex<BaseConsumer>,
}

impl Fetcher {
    /// A fetcher with its own consumer.
    pub fn new(runtime: &Runtime, client_id: &str) -> Result<Self, String> {
        let consumer = runtime
            .kafka
            .reader_config(client_id)
            .create()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            consumer: Mutex::new(consumer),
        })
    }

    /// The record at `offset` of `topic`/`partition`, if it is still there.
    pub fn fetch(&self, topic: &str, partition: i32, offset: i64) -> Option<OwnedMessage> {
        let consumer = self.consumer.lock().ok()?;
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(topic, partition, Offset::Offset(offset))
            .ok()?;
        consumer.assign(&assignment).ok()?;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(message)) if message.offset() == offset => return Some(message.detach()),
                // Compacted or expired: the next record is already past it.
                Some(Ok(message)) if message.offset() > offset => return None,
                _ => {}
            }
        }
        None
    }
}
