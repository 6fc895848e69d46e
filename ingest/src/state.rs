//! What every API handler can reach.

use rdkafka::producer::FutureProducer;

use erp_runtime::{ConfigView, ConfigWriter, Metrics};
use erp_schemas::topics::Topics;

use crate::metrics::IngestMetrics;

/// Shared state of the HTTP API.
pub struct ApiState {
    /// The deployment admin's organisation (the first one).
    pub org_id: String,
    /// The deployment admin token: owner of `org_id`, may create other organisations' tokens.
    pub admin_token: String,
    /// The per-organisation request budget.
    pub rate_limit: crate::rate_limit::RateLimiter,
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
    /// The inbound event log's index (`None`: the event log routes answer 503).
    pub event_log: Option<std::sync::Arc<crate::event_log::EventLog>>,
    /// The webhook attempt log's index (`None`: its routes answer 503).
    pub attempt_log: Option<std::sync::Arc<crate::attempt_log::AttemptLog>>,
    /// ACK tracking (`None`: every acknowledgement is unknown).
    pub acks: Option<std::sync::Arc<crate::acks::AckTracker>>,
    /// The PEM public key of the organisation's webhook signing key (`v1a`), if any.
    pub signing_public_key: Option<String>,
    /// The poll queue (`None`: poll endpoints answer 503).
    pub poll: Option<std::sync::Arc<crate::poll::PollQueue>>,
}

impl ApiState {
    /// Appends a configuration change made by `caller`, stamped now, and waits until this
    /// process's view has applied it.
    pub async fn record(
        &self,
        caller: &crate::auth::Caller,
        change: erp_schemas::config::ConfigChange,
    ) -> Result<(), crate::error::ApiError> {
        self.record_in(&caller.org_id, caller, change).await
    }

    /// Like [`Self::record`], for an object of organisation `org_id` (the deployment admin
    /// creating another organisation's token).
    pub async fn record_in(
        &self,
        org_id: &str,
        caller: &crate::auth::Caller,
        change: erp_schemas::config::ConfigChange,
    ) -> Result<(), crate::error::ApiError> {
        self.config
            .append(&erp_schemas::config::ConfigRecord {
                org_id: org_id.to_owned(),
                at: erp_schemas::timestamp::now_rfc3339(),
                actor: Some(caller.actor.clone()),
                change,
            })
            .await?;
        Ok(())
    }

    /// The configuration view.
    pub fn view(&self) -> &ConfigView {
        self.config.view()
    }

    /// Registers the API's metrics in a registry.
    pub fn metrics_in(metrics: &Metrics) -> IngestMetrics {
        IngestMetrics::new(metrics)
    }
}
