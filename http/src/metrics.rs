//! The metrics every HTTP service of a process shares.

use prometheus::{IntCounterVec, Opts};

use erp_runtime::Metrics;

/// Counters of the HTTP conventions: requests refused before their handler.
#[derive(Clone)]
pub struct HttpMetrics {
    /// API requests refused before their handler, by code (`UNAUTHORIZED`, `FORBIDDEN`,
    /// `RATE_LIMITED`).
    pub denied: IntCounterVec,
}

impl HttpMetrics {
    /// Creates the collectors and registers them.
    pub fn new(metrics: &Metrics) -> Self {
        let denied = IntCounterVec::new(
            Opts::new(
                "erp_api_denied_requests_total",
                "API requests refused by authentication, permission or rate limit, by code",
            ),
            &["code"],
        )
        .expect("static metric definition");
        metrics.register(&denied);
        Self { denied }
    }
}
