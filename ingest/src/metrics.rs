//! The ingest service's metrics.

use prometheus::{IntCounterVec, Opts};

use erp_runtime::Metrics;

/// Counters of the ingest API.
#[derive(Clone)]
pub struct IngestMetrics {
    /// Events answered, by per-event status (`success`, `ignored`, `error`).
    pub events: IntCounterVec,
    /// Requests rejected as a whole, by error code.
    pub rejected: IntCounterVec,
}

impl IngestMetrics {
    /// Creates the collectors and registers them.
    pub fn new(metrics: &Metrics) -> Self {
        let events = IntCounterVec::new(
            Opts::new(
                "erp_ingest_events_total",
                "Inbound events answered, by status",
            ),
            &["status"],
        )
        .expect("static metric definition");
        let rejected = IntCounterVec::new(
            Opts::new(
                "erp_ingest_rejected_requests_total",
                "Ingest requests rejected, by code",
            ),
            &["code"],
        )
        .expect("static metric definition");
        metrics.register(&events);
        metrics.register(&rejected);
        Self { events, rejected }
    }
}
