//! The dispatcher's metrics.

use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts};

use erp_runtime::Metrics;

/// Counters and timings of the dispatcher.
#[derive(Clone)]
pub struct DispatcherMetrics {
    /// Final outcomes per (event, endpoint): `delivered`, `failed`.
    pub deliveries: IntCounterVec,
    /// Attempts by result: `delivered`, `retryable`, `terminal`.
    pub attempts: IntCounterVec,
    /// Duration of one HTTP attempt.
    pub attempt_seconds: Histogram,
    /// Deliveries in progress (including waiting for a retry).
    pub in_flight: IntGauge,
}

impl DispatcherMetrics {
    /// Creates the collectors and registers them.
    pub fn new(metrics: &Metrics) -> Self {
        let deliveries = IntCounterVec::new(
            Opts::new(
                "erp_dispatcher_deliveries_total",
                "Deliveries by final outcome",
            ),
            &["outcome"],
        )
        .expect("static metric definition");
        let attempts = IntCounterVec::new(
            Opts::new("erp_dispatcher_attempts_total", "HTTP attempts by result"),
            &["result"],
        )
        .expect("static metric definition");
        let attempt_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "erp_dispatcher_attempt_seconds",
                "Duration of one HTTP attempt",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0,
            ]),
        )
        .expect("static metric definition");
        let in_flight = IntGauge::new("erp_dispatcher_in_flight", "Deliveries in progress")
            .expect("static metric definition");
        metrics.register(&deliveries);
        metrics.register(&attempts);
        metrics.register(&attempt_seconds);
        metrics.register(&in_flight);
        Self {
            deliveries,
            attempts,
            attempt_seconds,
            in_flight,
        }
    }
}
