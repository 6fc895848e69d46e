//! The Prometheus registry of a process. Every role registers its collectors here and `/metrics`
//! serves them all.

use prometheus::{Encoder, Registry, TextEncoder};

/// A shared metrics registry.
#[derive(Clone, Default)]
pub struct Metrics {
    registry: Registry,
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

    /// The registry in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut buffer = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            tracing::warn!(%error, "cannot encode metrics");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}
