//! The runtime every erp-toolkit role shares: settings from flags and `ERP_TOOLKIT_*`
//! variables, Kafka clients and topics, the metrics registry, tracing, health and readiness, the
//! shutdown signal, and the in-memory view of the configuration log.
//!
//! Roles (`ingest`, `processor`, `dispatcher`) take a [`Runtime`] and never build these pieces
//! themselves, so one deployment setting means the same thing in every role.

pub mod config;
pub mod environment;
pub mod error;
pub mod event_schemas;
pub mod health;
pub mod kafka;
pub mod metrics;
pub mod secrets;
pub mod settings;
pub mod shutdown;
pub mod supervisor;
pub mod telemetry;
pub mod topics;

pub use config::{ConfigState, ConfigView, ConfigWriter};
pub use error::RuntimeError;
pub use health::{Readiness, ReadyFlag};
pub use kafka::KafkaSettings;
pub use metrics::Metrics;
pub use supervisor::Supervisor;

use tokio_util::sync::CancellationToken;

/// What a role needs from its surroundings.
#[derive(Clone)]
pub struct Runtime {
    /// How to reach Kafka and what the topics are called.
    pub kafka: KafkaSettings,
    /// The registry every role registers its metrics in.
    pub metrics: Metrics,
    /// Readiness checks, served at `/readyz`.
    pub readiness: Readiness,
    /// Cancelled when the process should stop.
    pub shutdown: CancellationToken,
}
