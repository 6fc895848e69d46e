//! Outputs: what handling a batch produces (retry tasks, dead letters, configuration changes
//! already handed to the producer, and spans still to be written), settled together before the
//! batch's offsets are committed.

use rdkafka::producer::{DeliveryFuture, FutureProducer};

use erp_runtime::kafka;
use erp_schemas::monitoring::{MonitoringSpan, batch_records};

use crate::error::DispatcherError;

/// The records one batch (or one lane head) produced.
#[derive(Default)]
pub(super) struct Outputs {
    /// Records handed to the producer, their acknowledgements outstanding.
    deliveries: Vec<DeliveryFuture>,
    /// Spans of the batch, written together by [`Outputs::settle`]: one record per
    /// integration instead of one per attempt, since each record costs a broker write.
    spans: Vec<MonitoringSpan>,
}

impl Outputs {
    /// A record handed to the producer.
    pub(super) fn push(&mut self, delivery: DeliveryFuture) {
        self.deliveries.push(delivery);
    }

    /// A span, written when the batch settles.
    pub(super) fn span(&mut self, span: MonitoringSpan) {
        self.spans.push(span);
    }

    /// Takes over what another part of the batch produced.
    pub(super) fn extend(&mut self, other: Outputs) {
        self.deliveries.extend(other.deliveries);
        self.spans.extend(other.spans);
    }

    /// Writes the spans and waits until Kafka acknowledged every record.
    pub(super) async fn settle(
        mut self,
        producer: &FutureProducer,
        topic: &str,
    ) -> Result<(), DispatcherError> {
        for record in batch_records(&self.spans)? {
            self.deliveries
                .push(kafka::enqueue(producer, topic, &record.key, &record.value).await?);
        }
        kafka::await_deliveries(self.deliveries).await?;
        Ok(())
    }
}
