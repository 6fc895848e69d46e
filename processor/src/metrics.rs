//! The processor's metrics.

use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts};

use erp_runtime::Metrics;

/// Counters and timings of the processor.
#[derive(Clone)]
pub struct ProcessorMetrics {
    /// Events by outcome: `success`, `skipped` (duplicate), `ignored`, `error`.
    pub events: IntCounterVec,
    /// Wall time of one poll batch, from first record to committed offsets.
    pub batch_seconds: Histogram,
    /// Records per batch.
    pub batch_records: Histogram,
    /// Keys held by the dedup store.
    pub dedup_keys: IntGauge,
    /// Batches that had to be processed again because Kafka or the store failed.
    pub batch_retries: prometheus::IntCounter,
    /// Changelog records replayed into the state store on assignment.
    pub restored_records: prometheus::IntCounter,
    /// `erp_dead_letters_total{stage,code}`, shared with every role of the process.
    pub dead_letters: IntCounterVec,
}

impl ProcessorMetrics {
    /// Creates the collectors and registers them.
    pub fn new(metrics: &Metrics) -> Self {
        let events = IntCounterVec::new(
            Opts::new(
                "erp_processor_events_total",
                "Inbound events processed, by outcome",
            ),
            &["outcome"],
        )
        .expect("static metric definition");
        let batch_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "erp_processor_batch_seconds",
                "Time to process one poll batch",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
        )
        .expect("static metric definition");
        let batch_records = Histogram::with_opts(
            HistogramOpts::new("erp_processor_batch_records", "Records per poll batch")
                .buckets(vec![1.0, 5.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0]),
        )
        .expect("static metric definition");
        let dedup_keys = IntGauge::new("erp_processor_dedup_keys", "Keys in the dedup store")
            .expect("static metric definition");
        let batch_retries = prometheus::IntCounter::new(
            "erp_processor_batch_retries_total",
            "Poll batches processed again after a Kafka or store failure",
        )
        .expect("static metric definition");
        let restored_records = prometheus::IntCounter::new(
            "erp_processor_restored_records_total",
            "Changelog records replayed into the state store when partitions were assigned",
        )
        .expect("static metric definition");
        metrics.register(&restored_records);
        metrics.register(&events);
        metrics.register(&batch_seconds);
        metrics.register(&batch_records);
        metrics.register(&dedup_keys);
        metrics.register(&batch_retries);
        Self {
            events,
            batch_seconds,
            batch_records,
            dedup_keys,
            batch_retries,
            restored_records,
            dead_letters: metrics.dead_letters(),
        }
    }
}
