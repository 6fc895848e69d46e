//! The dispatcher's metrics.

use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, IntGaugeVec, Opts};

use erp_runtime::Metrics;

/// Counters and timings of the dispatcher.
#[derive(Clone)]
pub struct DispatcherMetrics {
    /// `erp_dead_letters_total{stage,code}`, shared with every role of the process.
    pub dead_letters: IntCounterVec,
    /// Final outcomes per (event, endpoint): `delivered`, `failed` (dead-lettered after its
    /// retries or a terminal answer), `parked` (endpoint gone, disabled or deleted).
    pub deliveries: IntCounterVec,
    /// Attempts by result: `delivered`, `retryable`, `terminal`, `gone`, `circuit_open`.
    pub attempts: IntCounterVec,
    /// Deliveries put into a retry tier, by `tier` and `reason` (`retry`, `saturated`,
    /// `circuit_open`, `throttled`).
    pub scheduled: IntCounterVec,
    /// Duration of one HTTP attempt.
    pub attempt_seconds: Histogram,
    /// HTTP requests in progress.
    pub in_flight: IntGauge,
    /// Circuit breaker state per endpoint: 0 closed, 1 open, 2 half-open.
    pub breaker_state: IntGaugeVec,
    /// Breaker transitions by the state entered.
    pub breaker_transitions: IntCounterVec,
    /// How late the last task a tier consumer took was, in milliseconds past its due time: a
    /// growing value means the tier falls behind.
    pub tier_lag_ms: IntGaugeVec,
    /// Endpoints the dispatcher disabled (410 Gone).
    pub endpoints_disabled: IntCounterVec,
    /// Deliveries held back by their endpoint's rate limit, by `result`: `waited` (sent after
    /// waiting for a token), `deferred` (no token within the queue wait: written to a tier).
    pub throttled: IntCounterVec,
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("static metric definition")
}

fn gauge(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), labels).expect("static metric definition")
}

impl DispatcherMetrics {
    /// Creates the collectors and registers them.
    pub fn new(metrics: &Metrics) -> Self {
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
        let in_flight = IntGauge::new("erp_dispatcher_in_flight", "HTTP requests in progress")
            .expect("static metric definition");
        let this = Self {
            dead_letters: metrics.dead_letters(),
            deliveries: counter(
                "erp_dispatcher_deliveries_total",
                "Deliveries by final outcome",
                &["outcome"],
            ),
            attempts: counter(
                "erp_dispatcher_attempts_total",
                "Delivery attempts by result",
                &["result"],
            ),
            scheduled: counter(
                "erp_dispatcher_scheduled_total",
                "Deliveries written to a retry tier, by tier and reason",
                &["tier", "reason"],
            ),
            attempt_seconds,
            in_flight,
            breaker_state: gauge(
                "erp_dispatcher_breaker_state",
                "Circuit breaker per endpoint: 0 closed, 1 open, 2 half-open",
                &["webhook_config_id"],
            ),
            breaker_transitions: counter(
                "erp_dispatcher_breaker_transitions_total",
                "Circuit breaker transitions by the state entered",
                &["state"],
            ),
            tier_lag_ms: gauge(
                "erp_dispatcher_tier_lag_ms",
                "Milliseconds past its due time of the last task taken from each retry tier",
                &["tier"],
            ),
            endpoints_disabled: counter(
                "erp_dispatcher_endpoints_disabled_total",
                "Endpoints disabled by the dispatcher, by reason",
                &["reason"],
            ),
            throttled: counter(
                "erp_dispatcher_throttled_total",
                "Deliveries held back by their endpoint's rate limit, by result",
                &["result"],
            ),
        };
        metrics.register(&this.deliveries);
        metrics.register(&this.attempts);
        metrics.register(&this.scheduled);
        metrics.register(&this.attempt_seconds);
        metrics.register(&this.in_flight);
        metrics.register(&this.breaker_state);
        metrics.register(&this.breaker_transitions);
        metrics.register(&this.tier_lag_ms);
        metrics.register(&this.endpoints_disabled);
        metrics.register(&this.throttled);
        this
    }
}
