//! The schema registry this installation serves, kept in the compacted topic `erp.schemas`: the
//! state ([`erp_schemas::registry::Registry`]) is folded from the topic from its beginning, so a
//! restart finds every subject, version and id again. A change is decided on the current state,
//! appended, and answered once this process has read it back (read-your-writes).
//!
//! One process decides at a time (a lock): serve the registry from one instance (`standalone`,
//! or one `api` replica with `--serve-schema-registry`); other instances and roles reach it over
//! HTTP like any client.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::Runtime;
use crate::error::RuntimeError;
use crate::kafka;
use crate::wire::SchemaSource;
use erp_schemas::registry::{Registry, RegistryError, RegistryRecord, SchemaRequest};

/// The served registry.
pub struct SchemaStore {
    state: Arc<RwLock<Registry>>,
    applied: watch::Receiver<i64>,
    producer: FutureProducer,
    topic: String,
    lock: Mutex<()>,
}

impl SchemaStore {
    /// Folds `erp.schemas` up to its end, then follows it. Returns once the log present at
    /// start is folded.
    pub async fn start(
        runtime: &Runtime,
        producer: FutureProducer,
    ) -> Result<(Arc<Self>, JoinHandle<()>), RuntimeError> {
        let topic = runtime.kafka.topics.schemas();
        let consumer = Arc::new(runtime.kafka.reader("erp-toolkit-schema-registry")?);
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(&topic, 0, Offset::Beginning)?;
        consumer.assign(&assignment)?;
        let end_at_start = kafka::high_watermark(Arc::clone(&consumer), topic.clone(), 0).await?;
        let (applied_tx, applied) = watch::channel(0i64);
        let store = Arc::new(Self {
            state: Arc::new(RwLock::new(Registry::new())),
            applied,
            producer,
            topic: topic.clone(),
            lock: Mutex::new(()),
        });
        let state = Arc::clone(&store.state);
        let shutdown = runtime.shutdown.clone();
        info!(topic, records = end_at_start, "loading the schema registry");
        let task = tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    message = consumer.recv() => message,
                };
                let message = match message {
                    Ok(message) => message,
                    Err(error) => {
                        warn!(%error, "schema registry log read failed; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                };
                let offset = message.offset();
                match RegistryRecord::from_kafka(
                    message.key().unwrap_or_default(),
                    message.payload(),
                ) {
                    Ok(Some(record)) => match state.write() {
                        Ok(mut registry) => registry.apply(&record),
                        Err(poisoned) => poisoned.into_inner().apply(&record),
                    },
                    Ok(None) => {}
                    // Skipped, not fatal: later records still apply; it stays for inspection.
                    Err(error) => {
                        error!(offset, %error, "skipping unreadable schema registry record")
                    }
                }
                let _ = applied_tx.send(offset + 1);
            }
        });
        store.wait_applied(end_at_start - 1).await?;
        Ok((store, task))
    }

    async fn wait_applied(&self, offset: i64) -> Result<(), RuntimeError> {
        if offset < 0 {
            return Ok(());
        }
        let mut applied = self.applied.clone();
        let timeout = Duration::from_secs(30);
        match tokio::time::timeout(timeout, applied.wait_for(|next| *next > offset)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(RuntimeError::ShuttingDown),
            Err(_) => Err(RuntimeError::Timeout(format!(
                "schema registry record at offset {offset} not read back within {timeout:?}"
            ))),
        }
    }

    /// A read of the current state.
    pub fn read<R>(&self, read: impl FnOnce(&Registry) -> R) -> R {
        match self.state.read() {
            Ok(registry) => read(&registry),
            Err(poisoned) => read(&poisoned.into_inner()),
        }
    }

    /// A change: `decide` answers from the current state with the records that make the answer
    /// true; they are appended and read back before the answer is returned.
    pub async fn change<T>(
        &self,
        decide: impl FnOnce(&Registry) -> Result<(T, Vec<RegistryRecord>), RegistryError>,
    ) -> Result<T, RuntimeError> {
        let _exclusive = self.lock.lock().await;
        let (answer, records) = self.read(decide)?;
        let mut last = None;
        for record in &records {
            let key = serde_json::to_vec(&record.key()).map_err(|source| {
                erp_schemas::SchemaError::Encode {
                    what: "registry key",
                    source,
                }
            })?;
            let value = record.to_value_bytes();
            let mut produced = FutureRecord::to(&self.topic).key(&key);
            if let Some(value) = &value {
                produced = produced.payload(value);
            }
            let (_, offset) = tokio::time::timeout(
                kafka::SEND_TIMEOUT,
                self.producer
                    .send(produced, Timeout::After(kafka::SEND_TIMEOUT)),
            )
            .await
            .map_err(|_| RuntimeError::Timeout("schema registry record not acknowledged".into()))?
            .map(|delivery| (delivery.partition, delivery.offset))
            .map_err(|(error, _)| RuntimeError::Kafka(error))?;
            last = Some(offset);
        }
        if let Some(offset) = last {
            self.wait_applied(offset).await?;
        }
        Ok(answer)
    }
}

impl SchemaSource for SchemaStore {
    fn register<'a>(
        &'a self,
        subject: &'a str,
        schema: &'a str,
    ) -> BoxFuture<'a, Result<u32, RuntimeError>> {
        async move {
            self.change(|registry| {
                registry
                    .register(subject, &SchemaRequest::avro(schema))
                    .map(|registration| (registration.id, registration.records))
            })
            .await
        }
        .boxed()
    }

    fn schema_by_id(&self, id: u32) -> BoxFuture<'_, Result<String, RuntimeError>> {
        let found = self.read(|registry| registry.schema_by_id(id).map(|s| s.schema));
        async move { found.map_err(|e| erp_schemas::SchemaError::Wire(e.to_string()).into()) }
            .boxed()
    }
}
