//! The configuration view: follows `erp.config` from offset 0, folds every record into a new
//! immutable snapshot and answers lookups from the latest one; reports readiness once the log
//! present at start is folded.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus::IntCounter;
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use super::fold::*;
use crate::Runtime;
use crate::error::RuntimeError;
use crate::kafka;
use crate::secrets::Keyring;
use erp_schemas::config::ConfigRecord;

/// A live view of the configuration log.
#[derive(Clone)]
pub struct ConfigView {
    state: Arc<RwLock<Arc<ConfigState>>>,
    applied: watch::Receiver<i64>,
    /// The end of the log when the view started: the fold is complete once it got there.
    end_at_start: i64,
    /// The deployment's secrets keys, for the roles that resolve `{{env.*}}` references.
    secrets: Option<Arc<Keyring>>,
}

impl ConfigView {
    /// A view that is not fed by Kafka, for tests and tools.
    pub fn fixed(state: ConfigState) -> Self {
        let (_, applied) = watch::channel(i64::MAX);
        Self {
            state: Arc::new(RwLock::new(Arc::new(state))),
            applied,
            end_at_start: 0,
            secrets: None,
        }
    }

    /// The view with the deployment's secrets keys, for tests and tools that resolve secrets.
    pub fn with_secrets(mut self, keyring: Keyring) -> Self {
        self.secrets = Some(Arc::new(keyring));
        self
    }

    /// The deployment's secrets keys, if this process was given them.
    pub fn secrets(&self) -> Option<&Keyring> {
        self.secrets.as_deref()
    }

    /// The current configuration. Cheap: the state is shared, not copied.
    pub fn snapshot(&self) -> Arc<ConfigState> {
        match self.state.read() {
            Ok(state) => Arc::clone(&state),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Waits until the record at `offset` has been applied.
    pub async fn wait_applied(&self, offset: i64, timeout: Duration) -> Result<(), RuntimeError> {
        let mut applied = self.applied.clone();
        match tokio::time::timeout(timeout, applied.wait_for(|next| *next > offset)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(RuntimeError::ShuttingDown),
            Err(_) => Err(RuntimeError::Timeout(format!(
                "configuration change at offset {offset} not applied within {timeout:?}"
            ))),
        }
    }

    /// Waits until the view has applied everything that was in the log when it started, so a
    /// consumer acting on the configuration (routing events to endpoints) does not act on a
    /// partial one after a restart.
    pub async fn wait_loaded(&self, timeout: Duration) -> Result<(), RuntimeError> {
        if self.end_at_start == 0 {
            return Ok(());
        }
        self.wait_applied(self.end_at_start - 1, timeout).await
    }

    /// Starts folding the configuration log from its beginning. The view reports ready (check
    /// `config`) once it has applied everything that was in the log at start.
    pub async fn start(
        runtime: &Runtime,
        role: &str,
        secrets: Option<Arc<Keyring>>,
    ) -> Result<(Self, JoinHandle<()>), RuntimeError> {
        let topic = runtime.kafka.topics.config();
        let consumer = Arc::new(
            runtime
                .kafka
                .reader(&format!("erp-toolkit-{role}-config"))?,
        );
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(&topic, 0, Offset::Beginning)?;
        consumer.assign(&assignment)?;
        drop(assignment);
        let end_at_start = kafka::high_watermark(Arc::clone(&consumer), topic.clone(), 0).await?;

        let applied_counter = IntCounter::new(
            "erp_config_records_applied_total",
            "Configuration log records folded into this process's view",
        )
        .map_err(|e| RuntimeError::Setting(e.to_string()))?;
        let rejected_counter = IntCounter::new(
            "erp_config_records_rejected_total",
            "Configuration log records this process could not decode (skipped)",
        )
        .map_err(|e| RuntimeError::Setting(e.to_string()))?;
        runtime.metrics.register(&applied_counter);
        runtime.metrics.register(&rejected_counter);

        let (applied_tx, applied) = watch::channel(0i64);
        let view = Self {
            state: Arc::new(RwLock::new(Arc::new(ConfigState::default()))),
            applied,
            end_at_start,
            secrets: secrets.clone(),
        };
        let ready = runtime.readiness.flag(format!("{role}.config"));
        ready.set(end_at_start == 0);
        info!(topic, records = end_at_start, "loading configuration");

        let state = Arc::clone(&view.state);
        let shutdown = runtime.shutdown.clone();
        let task = tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    message = consumer.recv() => message,
                };
                let message = match message {
                    Ok(message) => message,
                    Err(error) => {
                        warn!(%error, "configuration log read failed; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                };
                let offset = message.offset();
                match erp_schemas::error::decode::<ConfigRecord>(
                    "configuration record",
                    message.payload().unwrap_or_default(),
                ) {
                    Ok(record) => {
                        debug!(offset, key = %record.key(), "configuration change");
                        let mut guard = match state.write() {
                            Ok(guard) => guard,
                            Err(poisoned) => poisoned.into_inner(),
                        };
                        let unreadable = Arc::make_mut(&mut guard).apply_read(
                            record,
                            offset,
                            secrets.as_deref(),
                        );
                        for u in unreadable {
                            // Names the endpoint and the key id, never a value.
                            error!(offset, webhook_id = %u.webhook_id, error = %u.error,
                                "webhook secrets do not decrypt; the endpoint cannot be used");
                        }
                        applied_counter.inc();
                    }
                    Err(error) => {
                        // A record we cannot read must not stop the fold: later changes still
                        // apply. It stays in the log for inspection.
                        error!(offset, %error, "skipping unreadable configuration record");
                        rejected_counter.inc();
                    }
                }
                let _ = applied_tx.send(offset + 1);
                if offset + 1 >= end_at_start {
                    ready.set(true);
                }
            }
        });
        Ok((view, task))
    }
}
