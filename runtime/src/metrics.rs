//! The Prometheus registry of a process. Every role registers its collectors here and `/metrics`
//! serves them all.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prometheus::{Encoder, IntCounter, IntCounterVec, Opts, Registry, TextEncoder};

/// Collectors several roles of one process write to, by metric name.
type Shared = Arc<Mutex<HashMap<&'static str, Box<dyn Any + Send + Sync>>>>;

/// A shared metrics registry.
#[derive(Clone, Default)]
pub struct Metrics {
    registry: Registry,
    shared: Shared,
}

impl Metrics {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The registry, for registering collectors.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Registers a collector. A second registration of the same metric (two roles in one
    /// process sharing a collector) is not an error.
    pub fn register<C: prometheus::core::Collector + Clone + 'static>(&self, collector: &C) {
        match self.registry.register(Box::new(collector.clone())) {
            Ok(()) | Err(prometheus::Error::AlreadyReg) => {}
            Err(error) => tracing::warn!(%error, "metric not registered"),
        }
    }

    /// The one collector named `name` of this registry, made by `make` and registered on first
    /// use. Roles that share a metric (the processor and the dispatcher of `standalone` both
    /// count dead letters) must write to the same collector: a second one of the same name is
    /// refused by the registry and its samples would never be served.
    pub fn shared<C>(&self, name: &'static str, make: impl FnOnce() -> C) -> C
    where
        C: prometheus::core::Collector + Clone + Send + Sync + 'static,
    {
        let Ok(mut shared) = self.shared.lock() else {
            return make();
        };
        if let Some(existing) = shared.get(name).and_then(|c| c.downcast_ref::<C>()) {
            return existing.clone();
        }
        let collector = make();
        self.register(&collector);
        shared.insert(name, Box::new(collector.clone()));
        collector
    }

    /// `erp_dead_letters_total{stage,code}`: every dead letter written, by the stage that gave up
    /// (`processor`, `dispatcher`, `poll`) and its code.
    pub fn dead_letters(&self) -> IntCounterVec {
        self.shared("erp_dead_letters_total", || {
            IntCounterVec::new(
                Opts::new(
                    "erp_dead_letters_total",
                    "Dead letters written, by the stage that gave up and the code",
                ),
                &["stage", "code"],
            )
            .expect("static metric definition")
        })
    }

    /// `erp_acks_timed_out_total`: ACK-tracked events reported `ACK_TIMEOUT`.
    pub fn acks_timed_out(&self) -> IntCounter {
        self.shared("erp_acks_timed_out_total", || {
            IntCounter::new(
                "erp_acks_timed_out_total",
                "ACK-tracked outbound events that got no acknowledgement in time",
            )
            .expect("static metric definition")
        })
    }

    /// The registry in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut buffer = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            tracing::warn!(%error, "cannot encode metrics");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_collector_is_one_collector() {
        let metrics = Metrics::new();
        metrics
            .dead_letters()
            .with_label_values(&["processor", "X"])
            .inc();
        metrics
            .dead_letters()
            .with_label_values(&["dispatcher", "X"])
            .inc();
        let page = metrics.encode();
        assert!(page.contains("erp_dead_letters_total{code=\"X\",stage=\"processor\"} 1"));
        assert!(page.contains("erp_dead_letters_total{code=\"X\",stage=\"dispatcher\"} 1"));
    }
}
