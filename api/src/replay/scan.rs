//! Reading a replay's ranges — of `erp.inbound.events`, or of `erp.dlq` for the dead letters of
//! inbound events — and choosing the records it re-publishes: the caller's organisation, the
//! integration, (optionally) one use case, and for dead letters (optionally) their codes.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use erp_runtime::config::Route;
use erp_runtime::{ConfigView, Runtime};
use erp_schemas::dead_letter::DeadLetter;
use erp_schemas::inbound::InboundEventRecord;
use erp_schemas::topics::Topics;

use super::window::Range;

/// The topic a replay reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// `erp.inbound.events`: accepted ERP events.
    #[default]
    Inbound,
    /// `erp.dlq`: dead letters whose source record is an inbound event (the processor's);
    /// the inbound event each carries is re-published. Dead letters of deliveries are
    /// re-sent with the webhook replay instead.
    Dlq,
}

impl Source {
    /// The topic read.
    pub fn topic(self, topics: &Topics) -> String {
        match self {
            Self::Inbound => topics.inbound_events(),
            Self::Dlq => topics.dlq(),
        }
    }
}

/// What a replay re-publishes.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Selection {
    pub org_id: String,
    pub integration_id: String,
    /// Only records routed to this use case.
    pub use_case_id: Option<String>,
    #[serde(default)]
    pub source: Source,
    /// Dead letters only: only these codes (`MAPPING_FAILED`, `POISON_RECORD`, …).
    #[serde(default)]
    pub codes: Option<Vec<String>>,
}

impl Selection {
    /// The inbound event a dead letter (JSON, on `erp.dlq`) carries, if it is one this
    /// selection re-publishes: this organisation's and integration's, of a chosen code, with an
    /// inbound event as its source.
    pub fn dead_letter_event(&self, payload: &[u8], topics: &Topics) -> Option<InboundEventRecord> {
        let letter: DeadLetter = serde_json::from_slice(payload).ok()?;
        let ours = letter.org_id.as_deref() == Some(self.org_id.as_str())
            && letter.integration_id.as_deref() == Some(self.integration_id.as_str());
        let coded = self.codes.as_ref().is_none_or(|c| c.contains(&letter.code));
        if !ours || !coded || letter.source.topic != topics.inbound_events() {
            return None;
        }
        serde_json::from_str(&letter.value).ok()
    }

    /// Whether `record` is selected (its routing as of now, for `use_case_id`).
    pub fn selects(&self, record: &InboundEventRecord, view: &ConfigView) -> bool {
        if record.org_id != self.org_id || record.integration_id != self.integration_id {
            return false;
        }
        let Some(want) = &self.use_case_id else {
            return true;
        };
        let config = view.snapshot();
        match config.route(
            &record.org_id,
            &record.integration_id,
            record.use_case_slug.as_deref(),
            record.event_name.as_deref(),
        ) {
            Route::Matched(u) | Route::Disabled(u) => &u.use_case.id == want,
            Route::NotFound => false,
        }
    }
}

/// Reads every record of some ranges of a topic, in offset order per partition.
pub struct RangeReader {
    consumer: Option<StreamConsumer>,
    remaining: HashMap<i32, i64>,
    selection: Selection,
    topics: Topics,
    /// Reads either wire format (inbound events may be Avro).
    wire: erp_runtime::wire::Wire,
}

impl RangeReader {
    /// A reader of `ranges` of the topic `selection` reads.
    pub fn open(
        runtime: &Runtime,
        selection: &Selection,
        ranges: &[Range],
    ) -> Result<Self, String> {
        let topics = runtime.kafka.topics.clone();
        let topic = selection.source.topic(&topics);
        let topic = topic.as_str();
        let remaining: HashMap<i32, i64> = ranges
            .iter()
            .filter(|r| r.end > r.start)
            .map(|r| (r.partition, r.end))
            .collect();
        if remaining.is_empty() {
            return Ok(Self {
                consumer: None,
                remaining,
                selection: selection.clone(),
                topics,
                wire: runtime.kafka.wire.clone(),
            });
        }
        let consumer: StreamConsumer = runtime
            .kafka
            .reader("erp-toolkit-replay")
            .map_err(|e| e.to_string())?;
        let mut assignment = TopicPartitionList::new();
        for range in ranges.iter().filter(|r| r.end > r.start) {
            assignment
                .add_partition_offset(topic, range.partition, Offset::Offset(range.start))
                .map_err(|e| e.to_string())?;
        }
        consumer.assign(&assignment).map_err(|e| e.to_string())?;
        Ok(Self {
            consumer: Some(consumer),
            remaining,
            selection: selection.clone(),
            topics,
            wire: runtime.kafka.wire.clone(),
        })
    }

    /// The next record in the ranges (`Some(None)` for one that carries no inbound event the
    /// selection could re-publish); `None`
    /// at the end of every range or when `cancel` fires.
    pub async fn next(
        &mut self,
        cancel: &CancellationToken,
    ) -> Option<Result<Option<InboundEventRecord>, String>> {
        let consumer = self.consumer.as_ref()?;
        loop {
            if self.remaining.is_empty() {
                return None;
            }
            let message = tokio::select! {
                () = cancel.cancelled() => return None,
                message = tokio::time::timeout(Duration::from_secs(30), consumer.recv()) => message,
            };
            let message = match message {
                Err(_) => {
                    return Some(Err(
                        "no record within 30 s while records were expected".to_owned()
                    ));
                }
                Ok(Err(error)) => return Some(Err(error.to_string())),
                Ok(Ok(message)) => message,
            };
            let Some(&end) = self.remaining.get(&message.partition()) else {
                continue;
            };
            if message.offset() + 1 >= end {
                self.remaining.remove(&message.partition());
            }
            if message.offset() >= end {
                continue;
            }
            let Some(payload) = message.payload() else {
                return Some(Ok(None));
            };
            let record = match self.selection.source {
                Source::Inbound => self
                    .wire
                    .decode::<InboundEventRecord>("inbound event", message.topic(), payload)
                    .await
                    .ok(),
                Source::Dlq => self.selection.dead_letter_event(payload, &self.topics),
            };
            return Some(Ok(record));
        }
    }
}
