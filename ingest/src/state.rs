//! What every API handler can reach.

use rdkafka::producer::FutureProducer;

use erp_runtime::{ConfigView, ConfigWriter, Metrics};
use erp_schemas::topics::Topics;

use crate::metrics::IngestMetrics;

/// Shared state of the HTTP API.
pub struct ApiState {
    /// The organisation of this deployment.
    pub org_id: String,
    /// The token that authorises every call.
    pub admin_token: String,
    /// Appends configuration changes and reads them back.
    pub config: ConfigWriter,
    /// Producer for accepted events.
    pub producer: FutureProducer,
    /// Topic names.
    pub topics: Topics,
    /// Ingest counters.
    pub metrics: IngestMetrics,
    /// Largest request body accepted, in bytes.
    pub body_limit: usize,
    /// Time limit of one JSONata evaluation in a simulation.
    pub mapping_timeout: std::time::Duration,
    /// Schemas platform events are checked against (`None`: envelope checks only).
    pub event_schemas: Option<std::sync::Arc<crate::event_schemas::EventSchemas>>,
}

impl ApiState {
    /// The configuration view.
    pub fn view(&self) -> &ConfigView {
        self.config.view()
    }

    /// Registers the API's metrics in a registry.
    pub fn metrics_in(metrics: &Metrics) -> IngestMetrics {
        IngestMetrics::new(metrics)
    }
}
