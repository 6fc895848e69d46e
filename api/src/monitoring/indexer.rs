//! The indexer: follows `erp.monitoring` from where the store says it stopped and applies the
//! spans in batches, each batch with its partitions' new positions in one transaction.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tracing::{info, warn};

use erp_runtime::Runtime;
use erp_schemas::timestamp::now_millis;

use super::store::{IndexedSpan, Store, StoreError};

/// Records applied in one transaction at most.
const BATCH: usize = 1000;
/// How long a batch waits for more records before it is applied.
const LINGER: Duration = Duration::from_millis(100);
/// How often spans past the retention are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(600);
/// Attempts of one batch before the indexer gives up (and the supervisor takes over).
const APPLY_ATTEMPTS: u32 = 5;

/// The spans one record carries (one span, or the array one stage wrote for a batch).
pub use erp_schemas::monitoring::spans_of;

/// A consumer of every partition of `topic`, each from the store's position (the beginning
/// when it never started).
pub async fn follower(
    runtime: &Runtime,
    store: &Store,
    topic: &str,
) -> Result<StreamConsumer, StoreError> {
    let consumer: StreamConsumer = runtime
        .kafka
        .reader("erp-toolkit-monitoring-indexer")
        .map_err(|e| StoreError::Task(e.to_string()))?;
    let positions = store.positions(topic).await?;
    let metadata_consumer = runtime
        .kafka
        .reader_config("erp-toolkit-monitoring-metadata")
        .create::<rdkafka::consumer::BaseConsumer>()
        .map_err(|e| StoreError::Task(e.to_string()))?;
    let name = topic.to_owned();
    let partitions = tokio::task::spawn_blocking(move || {
        crate::topic_index::partitions(&metadata_consumer, &name, Duration::from_secs(10))
    })
    .await
    .map_err(|e| StoreError::Task(e.to_string()))?
    .map_err(|e| StoreError::Task(e.to_string()))?;
    let mut assignment = TopicPartitionList::new();
    for partition in partitions {
        let offset = positions
            .get(&partition)
            .map_or(Offset::Beginning, |next| Offset::Offset(*next));
        assignment
            .add_partition_offset(topic, partition, offset)
            .map_err(|e| StoreError::Task(e.to_string()))?;
    }
    consumer
        .assign(&assignment)
        .map_err(|e| StoreError::Task(e.to_string()))?;
    Ok(consumer)
}

/// Starts indexing the runtime's `erp.monitoring` into `store`: the task ends only when the
/// store keeps failing or the topic cannot be followed (the supervisor then takes over).
pub fn spawn(runtime: &Runtime, store: Store, retention: Duration) -> tokio::task::JoinHandle<()> {
    let runtime = runtime.clone();
    tokio::spawn(async move {
        let topic = runtime.kafka.topics.monitoring();
        match follower(&runtime, &store, &topic).await {
            Ok(consumer) => run(consumer, store, topic, retention).await,
            Err(error) => warn!(%error, "cannot follow erp.monitoring for the monitoring store"),
        }
    })
}

/// Indexes `topic` for ever, pruning what is older than `retention`. Returns only when the
/// store keeps failing: the caller's supervisor then makes the process unready.
pub async fn run(consumer: StreamConsumer, store: Store, topic: String, retention: Duration) {
    let mut last_prune: Option<Instant> = None;
    loop {
        if last_prune.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
            let before = now_millis() - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
            match store.prune(before).await {
                Ok(0) => {}
                Ok(pruned) => info!(pruned, "monitoring spans past the retention deleted"),
                Err(error) => warn!(%error, "pruning the monitoring store failed"),
            }
            last_prune = Some(Instant::now());
        }
        let (spans, positions) = next_batch(&consumer).await;
        if positions.is_empty() {
            continue;
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            match store.apply(&topic, spans.clone(), positions.clone()).await {
                Ok(()) => break,
                Err(error) if attempt < APPLY_ATTEMPTS => {
                    warn!(%error, attempt, "applying monitoring spans failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                }
                Err(error) => {
                    warn!(%error, "the monitoring store keeps failing; the indexer stops");
                    return;
                }
            }
        }
    }
}

/// Reads up to [`BATCH`] records, waiting at most [`LINGER`] for each after the first.
async fn next_batch(consumer: &StreamConsumer) -> (Vec<IndexedSpan>, BTreeMap<i32, i64>) {
    let mut spans = Vec::new();
    let mut positions = BTreeMap::new();
    for n in 0..BATCH {
        let message = if n == 0 {
            match tokio::time::timeout(Duration::from_secs(1), consumer.recv()).await {
                Ok(message) => message,
                Err(_) => break,
            }
        } else {
            match tokio::time::timeout(LINGER, consumer.recv()).await {
                Ok(message) => message,
                Err(_) => break,
            }
        };
        let message = match message {
            Ok(message) => message,
            Err(error) => {
                warn!(%error, "reading erp.monitoring failed");
                tokio::time::sleep(Duration::from_millis(500)).await;
                break;
            }
        };
        positions.insert(message.partition(), message.offset() + 1);
        match spans_of(message.payload().unwrap_or_default()) {
            Ok(found) => {
                spans.extend(
                    found
                        .into_iter()
                        .enumerate()
                        .map(|(seq, span)| IndexedSpan {
                            partition: message.partition(),
                            offset: message.offset(),
                            seq: seq as i64,
                            span,
                        }),
                )
            }
            Err(error) => warn!(
                %error,
                partition = message.partition(),
                offset = message.offset(),
                "a record on erp.monitoring is no span; not indexed"
            ),
        }
    }
    (spans, positions)
}
