//! What moves between the stages (polled inputs) and the worker they share.

use std::sync::Arc;

use rdkafka::message::OwnedMessage;
use rdkafka::producer::FutureProducer;

use erp_schemas::dead_letter::SourceCoordinates;

use crate::metrics::ProcessorMetrics;
use crate::state::StateStore;

use super::settings::ProcessorSettings;
use crate::state::PendingState;

/// A record of the batch with its coordinates.
pub(super) struct Input {
    pub(super) message: OwnedMessage,
    pub(super) source: SourceCoordinates,
}

pub(super) struct Worker {
    pub(super) producer: FutureProducer,
    /// Position markers of the last committed batch, not yet acknowledged.
    pub(super) markers: std::sync::Mutex<Vec<(i32, rdkafka::producer::DeliveryFuture)>>,
    pub(super) store: Arc<StateStore>,
    pub(super) metrics: ProcessorMetrics,
    pub(super) settings: ProcessorSettings,
    pub(super) topics: erp_schemas::topics::Topics,
    /// The poison-record guard over this instance's records.
    pub(super) poison: Arc<erp_runtime::poison::PoisonGuard>,
    /// The wire format of the topics written (core events may be Avro).
    pub(super) wire: erp_runtime::wire::Wire,
}

/// What [`Worker::write_batch`] handed to the producer, still to be acknowledged and committed.
pub(super) struct Written {
    pub(super) deliveries: Vec<rdkafka::producer::DeliveryFuture>,
    pub(super) changelog: Vec<(i32, rdkafka::producer::DeliveryFuture)>,
    pub(super) pending: PendingState,
    pub(super) counts: Vec<&'static str>,
}
