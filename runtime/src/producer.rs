//! A producer that replaces itself after a fatal error.
//!
//! An idempotent librdkafka producer that meets a fatal error (the broker fenced its producer
//! id, a sequence gap it cannot repair) refuses every later record for good: a process holding
//! it would answer 503 to every request until someone restarts it by hand. The ingest holds its
//! producer through [`RecoveringProducer`]: a failed request asks it to check, and a producer in
//! a fatal state is replaced by a new one (new producer id, fresh sequence numbers) for the
//! requests that follow. Records of the failed request are reported as not queued, so clients
//! resend them (events with a `deduplication_id` are dropped as copies by the processor).

use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use rdkafka::producer::{FutureProducer, Producer};
use tracing::{error, warn};

use crate::kafka::KafkaSettings;

/// How often [`watch_fatal`] looks at a producer.
pub const FATAL_CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Returns once `producer` is in a fatal state (checked every [`FATAL_CHECK_EVERY`]), with the
/// error. For producers that many parts of a role hold (the API's): run under the supervisor, it
/// turns a producer that would refuse every write for good into a process that stops and is
/// restarted, instead of one that answers 503 for ever.
pub async fn watch_fatal(producer: FutureProducer) -> String {
    let mut tick = tokio::time::interval(FATAL_CHECK_EVERY);
    loop {
        tick.tick().await;
        if let Some((code, reason)) = producer.client().fatal_error() {
            error!(?code, %reason, "the producer met a fatal error; the role stops to be restarted");
            return format!("{code:?}: {reason}");
        }
    }
}

/// Test builds only: makes `producer` fail fatally, as librdkafka does when the broker fences
/// it (`rd_kafka_test_fatal_error`).
#[cfg(debug_assertions)]
pub fn inject_fatal_error(producer: &FutureProducer) {
    let reason = c"injected by a test";
    // SAFETY: the pointer is the live client of `producer`, held for the call; the reason is a
    // NUL-terminated string librdkafka copies.
    unsafe {
        rdkafka::bindings::rd_kafka_test_fatal_error(
            producer.client().native_ptr(),
            rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
            reason.as_ptr(),
        );
    }
}

/// A shared producer, replaced after a fatal error.
pub struct RecoveringProducer {
    current: RwLock<FutureProducer>,
    settings: KafkaSettings,
    client_id: String,
    replaced: AtomicU64,
}

fn same(a: &FutureProducer, b: &FutureProducer) -> bool {
    std::ptr::eq(a.client().native_ptr(), b.client().native_ptr())
}

impl RecoveringProducer {
    /// Wraps `producer`, made from `settings` with `client_id` (replacements are made alike).
    pub fn new(producer: FutureProducer, settings: KafkaSettings, client_id: &str) -> Self {
        Self {
            current: RwLock::new(producer),
            settings,
            client_id: client_id.to_owned(),
            replaced: AtomicU64::new(0),
        }
    }

    /// The producer to use now (a cheap handle).
    pub fn get(&self) -> FutureProducer {
        match self.current.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// How many times the producer was replaced.
    pub fn replaced(&self) -> u64 {
        self.replaced.load(Ordering::Relaxed)
    }

    /// After a failed produce with `used`: replaces it if it is in a fatal state (once, however
    /// many requests report it). Returns whether a replacement is in place.
    pub fn recover(&self, used: &FutureProducer) -> bool {
        let Some((code, reason)) = used.client().fatal_error() else {
            return false;
        };
        let mut current = match self.current.write() {
            Ok(current) => current,
            Err(poisoned) => poisoned.into_inner(),
        };
        if !same(&current, used) {
            return true;
        }
        match self.settings.producer(&self.client_id) {
            Ok(fresh) => {
                *current = fresh;
                self.replaced.fetch_add(1, Ordering::Relaxed);
                warn!(?code, %reason, client = %self.client_id,
                      "the producer met a fatal error and was replaced");
                true
            }
            Err(err) => {
                error!(error = %err, ?code, %reason, client = %self.client_id,
                       "the producer met a fatal error and could not be replaced");
                false
            }
        }
    }

    /// Test builds only: makes the current producer fail fatally (see [`inject_fatal_error`]).
    #[cfg(debug_assertions)]
    pub fn inject_fatal_error(&self) {
        inject_fatal_error(&self.get());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_fatal_producer_is_noticed_and_replaced() {
        // No broker needed: the fatal state is the client's own.
        let settings = KafkaSettings::new("127.0.0.1:1");
        let producer = settings.producer("erp-toolkit-test").expect("producer");
        let shared = RecoveringProducer::new(producer.clone(), settings, "erp-toolkit-test");
        assert!(!shared.recover(&producer), "a healthy producer is kept");
        inject_fatal_error(&producer);
        let noticed = tokio::time::timeout(FATAL_CHECK_EVERY * 5, watch_fatal(producer.clone()))
            .await
            .expect("noticed");
        assert!(noticed.contains("injected"), "{noticed}");
        assert!(shared.recover(&producer));
        assert_eq!(shared.replaced(), 1);
        assert!(shared.get().client().fatal_error().is_none());
        // Reported again by a second request that used the old one: replaced once only.
        assert!(shared.recover(&producer));
        assert_eq!(shared.replaced(), 1);
    }
}
