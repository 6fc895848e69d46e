//! What the ingest handlers can reach. Nothing here keeps state between requests: any number of
//! ingest instances can serve behind a load balancer.

use std::sync::Arc;
use std::time::Duration;

use erp_runtime::ConfigView;
use erp_runtime::event_schemas::EventSchemas;
use erp_schemas::topics::Topics;

use crate::metrics::IngestMetrics;

/// Shared state of the ingest service.
pub struct IngestState {
    /// The configuration view: integrations, use cases, app mappings.
    pub view: ConfigView,
    /// Producer for accepted events, replaced after a fatal error.
    pub producer: std::sync::Arc<erp_runtime::producer::RecoveringProducer>,
    /// Topic names.
    pub topics: Topics,
    /// The wire format of the topics written (inbound and platform events may be Avro).
    pub wire: erp_runtime::wire::Wire,
    /// Ingest counters.
    pub metrics: IngestMetrics,
    /// Largest request body accepted, in bytes.
    pub body_limit: usize,
    /// Limits every accepted payload is checked against (the processor's, too).
    pub payload_limits: erp_schemas::limits::PayloadLimits,
    /// Time limit of one JSONata evaluation in a simulation.
    pub mapping_timeout: Duration,
    /// Schemas platform events are checked against (`None`: envelope checks only).
    pub event_schemas: Option<Arc<EventSchemas>>,
    /// Longest wait for Kafka's acknowledgement of a request's events before answering 503.
    pub produce_timeout: Duration,
}

impl IngestState {
    /// The configuration view.
    pub fn view(&self) -> &ConfigView {
        &self.view
    }
}
