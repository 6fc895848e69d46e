//! Reading a replay's ranges of `erp.inbound.events` and choosing the records it re-publishes:
//! the caller's organisation, the integration, and (optionally) one use case.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use erp_runtime::config::Route;
use erp_runtime::{ConfigView, Runtime};
use erp_schemas::inbound::InboundEventRecord;

use super::window::Range;

/// What a replay re-publishes.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Selection {
    pub org_id: String,
    pub integration_id: String,
    /// Only records routed to this use case.
    pub use_case_id: Option<String>,
}

impl Selection {
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
    /// Reads either wire format (inbound events may be Avro).
    wire: erp_runtime::wire::Wire,
}

impl RangeReader {
    /// A reader of `ranges` of `topic`.
    pub fn open(runtime: &Runtime, topic: &str, ranges: &[Range]) -> Result<Self, String> {
        let remaining: HashMap<i32, i64> = ranges
            .iter()
            .filter(|r| r.end > r.start)
            .map(|r| (r.partition, r.end))
            .collect();
        if remaining.is_empty() {
            return Ok(Self {
                consumer: None,
                remaining,
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
            wire: runtime.kafka.wire.clone(),
        })
    }

    /// The next record in the ranges (`Some(None)` for one that is no inbound event); `None`
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
            let record = self
                .wire
                .decode::<InboundEventRecord>("inbound event", message.topic(), payload)
                .await
                .ok();
            return Some(Ok(record));
        }
    }
}
