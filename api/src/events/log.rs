//! The inbound event log (spec §2.5): `POST /v1/integrations/{id}/events` queries accepted ERP
//! events, `POST /v1/integrations/{id}/events/replay` re-queues them.
//!
//! Kafka holds the events (`erp.inbound.events`); this module keeps only an **index** of them in
//! sled — per integration, newest first, with each event's coordinates (partition, offset) — and
//! reads the events themselves from Kafka by those coordinates when answering. The index is
//! built by reading the topic, resumes where it stopped after a restart, and can always be
//! rebuilt by deleting it. An event whose record has left the topic (retention) is answered from
//! the index with `payload_unavailable: true`.

use std::sync::Arc;

use rdkafka::message::Message;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use erp_runtime::Runtime;
use erp_schemas::inbound::InboundEventRecord;

use crate::topic_index::{self, Fetcher};
use erp_http::ApiError;

/// Most events per query page (epilot's maximum).
pub(crate) const PAGE: usize = 25;
/// Most ids per replay request.
pub(crate) const MAX_REPLAY: usize = 100;

/// What the index keeps of an event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Entry {
    pub(crate) event_id: String,
    pub(crate) org_id: String,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) received_at: i64,
    pub(crate) correlation_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) event_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) use_case_slug: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) event_type: Option<String>,
}

pub(crate) fn time_key(integration_id: &str, received_at: i64, event_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(integration_id.len() + event_id.len() + 11);
    key.push(b't');
    key.extend_from_slice(integration_id.as_bytes());
    key.push(0);
    // Newest first in key order.
    key.extend_from_slice(&(i64::MAX - received_at.max(0)).to_be_bytes());
    key.extend_from_slice(event_id.as_bytes());
    key
}

pub(crate) fn id_key(event_id: &str) -> Vec<u8> {
    let mut key = vec![b'i'];
    key.extend_from_slice(event_id.as_bytes());
    key
}

/// The index of `erp.inbound.events`, and a reader for fetching events by coordinates.
pub struct EventLog {
    pub(crate) tree: sled::Tree,
    topic: String,
    fetcher: Fetcher,
    wire: erp_runtime::wire::Wire,
}

impl EventLog {
    /// Opens the index in `dir` and starts following the topic from where the index stopped.
    pub fn start(
        runtime: &Runtime,
        dir: &std::path::Path,
    ) -> Result<(Arc<Self>, JoinHandle<()>), ApiError> {
        let unavailable = |e: String| ApiError::unavailable("EVENT_LOG_UNAVAILABLE", e);
        let tree = topic_index::open_tree(dir, "inbound").map_err(unavailable)?;
        let topic = runtime.kafka.topics.inbound_events();
        let consumer = topic_index::follower(runtime, &tree, &topic, "erp-toolkit-event-log")
            .map_err(unavailable)?;
        let fetcher = Fetcher::new(runtime, "erp-toolkit-event-fetch").map_err(unavailable)?;
        let log = Arc::new(Self {
            tree,
            topic,
            fetcher,
            wire: runtime.kafka.wire.clone(),
        });
        let task = {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                topic_index::follow(consumer, &log.tree, "event log", |message, batch| {
                    log.index(message, batch)
                })
                .await
            })
        };
        Ok((log, task))
    }

    fn index(&self, message: &rdkafka::message::BorrowedMessage<'_>, batch: &mut sled::Batch) {
        // Either wire format: inbound events may be Avro.
        let Some(Ok(record)) = message.payload().map(|payload| {
            self.wire
                .to_json_sync(&self.topic, payload)
                .map_err(|e| e.to_string())
                .and_then(|json| {
                    serde_json::from_slice::<InboundEventRecord>(&json).map_err(|e| e.to_string())
                })
        }) else {
            return;
        };
        let entry = Entry {
            event_id: record.event_id.clone(),
            org_id: record.org_id.clone(),
            partition: message.partition(),
            offset: message.offset(),
            received_at: record.received_at,
            correlation_id: record.correlation_id.clone(),
            event_name: record.event_name.clone(),
            use_case_slug: record.use_case_slug.clone(),
            event_type: record.event_type.clone(),
        };
        let key = time_key(&record.integration_id, record.received_at, &record.event_id);
        if let Ok(value) = serde_json::to_vec(&entry) {
            batch.insert(id_key(&record.event_id), key.clone());
            batch.insert(key, value);
        }
    }

    pub(crate) fn entry_by_id(&self, event_id: &str) -> Option<(Vec<u8>, Entry)> {
        let key = self.tree.get(id_key(event_id)).ok().flatten()?;
        let value = self.tree.get(&key).ok().flatten()?;
        let entry = serde_json::from_slice(&value).ok()?;
        Some((key.to_vec(), entry))
    }

    /// Reads the records at `coordinates` from Kafka (blocking; run off the async threads).
    pub(crate) fn fetch(&self, coordinates: &[(i32, i64)]) -> Vec<Option<InboundEventRecord>> {
        coordinates
            .iter()
            .map(|&(partition, offset)| {
                let message = self.fetcher.fetch(&self.topic, partition, offset)?;
                let json = self
                    .wire
                    .to_json_sync(&self.topic, message.payload()?)
                    .ok()?;
                serde_json::from_slice(&json).ok()
            })
            .collect()
    }
}
