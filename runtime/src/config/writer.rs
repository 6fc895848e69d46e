//! Appending a configuration change: seal its secrets, write it with the idempotent producer,
//! and wait until this process's own view has applied it (read-your-writes).

use std::sync::Arc;
use std::time::Duration;

use rdkafka::producer::FutureProducer;
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::fold::*;
use super::follower::ConfigView;
use crate::Runtime;
use crate::error::RuntimeError;
use crate::kafka;
use erp_schemas::config::ConfigRecord;

/// Appends configuration changes.
#[derive(Clone)]
pub struct ConfigWriter {
    producer: FutureProducer,
    topic: String,
    view: ConfigView,
    lock: Arc<Mutex<()>>,
}

impl ConfigWriter {
    /// A writer appending to the runtime's configuration log and reading back through `view`.
    pub fn new(runtime: &Runtime, producer: FutureProducer, view: ConfigView) -> Self {
        Self {
            producer,
            topic: runtime.kafka.topics.config(),
            view,
            lock: Arc::new(Mutex::new(())),
        }
    }

    /// The view this writer reads back through.
    pub fn view(&self) -> &ConfigView {
        &self.view
    }

    /// Serialises check-then-write sequences (slug uniqueness, existence) within this process.
    pub async fn exclusive(&self) -> OwnedMutexGuard<()> {
        Arc::clone(&self.lock).lock_owned().await
    }

    /// Appends a change and waits until this process's view has applied it.
    /// Webhook secrets are encrypted on the way when the process has a secrets key.
    /// A change with a `base_revision` its object no longer has is skipped by every fold and
    /// answered [`RuntimeError::Conflict`].
    pub async fn append(&self, record: &ConfigRecord) -> Result<Arc<ConfigState>, RuntimeError> {
        let bytes = match self.view.secrets() {
            Some(keyring) => {
                let mut sealed = record.clone();
                crate::config::secrets::seal(&mut sealed, keyring)?;
                erp_schemas::error::encode("configuration record", &sealed)?
            }
            None => erp_schemas::error::encode("configuration record", record)?,
        };
        let (_, offset) = kafka::send(&self.producer, &self.topic, &record.key(), &bytes).await?;
        self.view
            .wait_applied(offset, Duration::from_secs(15))
            .await?;
        let state = self.view.snapshot();
        if let Some(base) = record.base_revision
            && state.was_rejected(offset)
        {
            return Err(RuntimeError::Conflict { base });
        }
        Ok(state)
    }
}
