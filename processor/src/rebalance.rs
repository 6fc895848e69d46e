//! What happens when partitions are assigned or revoked: on assignment the processor first
//! catches its state store up from the changelog, then starts each partition at the position the
//! store holds (sled is the source of truth; the group commit only where the store knows
//! nothing), or after the batch in flight when this instance keeps the partition. Revocation
//! needs no work here: records of a revoked partition are dropped from the batch being polled,
//! and the batch in flight completes (its new owner may process it again, with the same ids).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};
use tracing::{error, info, warn};

use crate::changelog;
use crate::state::StateStore;
use erp_runtime::KafkaSettings;

/// The partitions this instance owns right now.
pub type Owned = Arc<Mutex<BTreeSet<(String, i32)>>>;

/// The next offsets of the batch in flight (written, not yet committed), per partition.
pub type InFlightPositions = Arc<Mutex<BTreeMap<(String, i32), i64>>>;

/// The consumer context of the processor.
pub struct ProcessorContext {
    pub store: Arc<StateStore>,
    pub kafka: KafkaSettings,
    pub owned: Owned,
    /// A partition this instance keeps through a rebalance resumes after its batch in flight
    /// rather than reading that batch again (should the batch fail, it is retried from memory).
    pub in_flight: InFlightPositions,
    /// Set when a restore could not complete: the processor stops rather than process a
    /// partition without its dedup state.
    pub failed: Arc<AtomicBool>,
    pub restored_records: prometheus::IntCounter,
}

impl ClientContext for ProcessorContext {}

impl ProcessorContext {
    fn prepare(&self, tpl: &mut TopicPartitionList) {
        let partitions: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        // Inbound and platform partitions of one number share a changelog partition: restore
        // each once, with one consumer.
        let numbers: BTreeSet<i32> = partitions.iter().map(|(_, p)| *p).collect();
        let mut restorer = None;
        for partition in numbers {
            let mut attempt = 0;
            let restored = loop {
                let result = match &restorer {
                    Some(restorer) => Ok(restorer),
                    None => changelog::Restorer::new(&self.kafka).map(|r| &*restorer.insert(r)),
                }
                .and_then(|r| r.restore(&self.store, partition));
                match result {
                    Ok(restored) => break Some(restored),
                    Err(error) if attempt < 5 => {
                        attempt += 1;
                        restorer = None;
                        warn!(partition, %error, attempt, "restore failed; retrying");
                        // A blocking pause is right here: `prepare` runs in place (see
                        // `rebalance`), off the async workers.
                        std::thread::sleep(Duration::from_secs(1));
                    }
                    Err(error) => {
                        error!(partition, %error, "restore failed; stopping the processor");
                        self.failed.store(true, Ordering::SeqCst);
                        break None;
                    }
                }
            };
            if let Some(restored) = restored {
                self.restored_records.inc_by(restored.records);
            }
        }
        for (topic, partition) in partitions {
            let in_flight = self
                .in_flight
                .lock()
                .ok()
                .and_then(|p| p.get(&(topic.clone(), partition)).copied());
            let stored = self.store.position(&topic, partition);
            match stored.map(|stored| stored.max(in_flight)) {
                Ok(Some(position)) => {
                    if let Err(error) =
                        tpl.set_partition_offset(&topic, partition, Offset::Offset(position))
                    {
                        warn!(%error, partition, "cannot set the start position");
                    }
                    info!(
                        topic,
                        partition, position, "partition assigned; starting at the stored position"
                    );
                }
                Ok(None) => info!(
                    topic,
                    partition, "partition assigned; no stored position, starting at the group's"
                ),
                Err(error) => warn!(%error, partition, "cannot read the stored position"),
            }
            if let Ok(mut owned) = self.owned.lock() {
                owned.insert((topic, partition));
            }
        }
    }

    fn forget(&self, tpl: &TopicPartitionList) {
        if let Ok(mut owned) = self.owned.lock() {
            for element in tpl.elements() {
                owned.remove(&(element.topic().to_owned(), element.partition()));
            }
        }
    }
}

impl ConsumerContext for ProcessorContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let outcome = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                // This callback runs inside the consumer's `recv()` on a tokio worker; the
                // restore (changelog reads, sled writes, retry pauses) must end before the
                // assignment, so it blocks in place rather than stall that worker's tasks.
                erp_runtime::blocking::in_place(|| self.prepare(tpl));
                if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.forget(tpl);
                info!(partitions = tpl.count(), "partitions revoked");
                if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                }
            }
            other => {
                error!(?other, "rebalance error; dropping the assignment");
                self.forget(tpl);
                consumer.unassign()
            }
        };
        if let Err(error) = outcome {
            error!(%error, "rebalance could not be applied");
        }
    }
}
