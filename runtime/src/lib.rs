//! The runtime every erp-toolkit role shares: settings from flags and `ERP_TOOLKIT_*`
//! variables, Kafka clients and topics, the metrics registry, tracing, health and readiness, the
//! shutdown signal, and the in-memory view of the configuration log.
//!
//! Roles (`ingest`, `api`, `processor`, `dispatcher`) take a [`Runtime`] and never build these
//! pieces themselves, so one deployment setting means the same thing in every role.

/// Blocking work in synchronous callbacks that run on tokio workers.
pub mod blocking;
/// Broker reachability as a readiness check.
pub mod broker_watch;
/// The configuration log: pure fold, follower (the view), writer, secret sealing.
pub mod config;
/// Organisation environments: entries, `{{env.*}}` rendering, secret values.
pub mod environment;
/// The crate's error type.
pub mod error;
/// The catalog's core-event JSON Schemas, loaded from a directory.
pub mod event_schemas;
/// `/healthz`, `/readyz`, `/metrics` and readiness flags.
pub mod health;
/// Kafka client settings, producers, consumers, batch helpers.
pub mod kafka;
/// Consumer lag of the group consumers, measured on a timer.
pub mod lag;
/// The Prometheus registry every role registers in.
pub mod metrics;
/// The poison-record guard: records in flight during repeated crashes are set aside.
pub mod poison;
/// A producer that replaces itself after a fatal error (the ingest's).
pub mod producer;
/// The client of an external Confluent-compatible schema registry.
pub mod registry_client;
/// The schema registry this installation serves, kept in `erp.schemas`.
pub mod schema_store;
/// The deployment's secrets keys: AES-256-GCM sealing.
pub mod secrets;
/// Flags and `ERP_TOOLKIT_*` variables shared by every role.
pub mod settings;
/// The shutdown signal (SIGINT, SIGTERM).
pub mod shutdown;
/// One supervisor for a role's background tasks.
pub mod supervisor;
/// Tracing: text or JSON logs.
pub mod telemetry;
/// The check of existing topics against what the project needs.
pub mod topic_check;
/// Topic creation with the retention each topic needs.
pub mod topics;
/// The consumer watchdog: a consumer stuck without partitions while work waits.
pub mod watchdog;
/// The wire format of our topics (JSON or Avro) and the codec producers and consumers share.
pub mod wire;

pub use config::{ConfigState, ConfigView, ConfigWriter};
pub use error::RuntimeError;
pub use health::{Readiness, ReadyFlag, ReadyGauge};
pub use kafka::KafkaSettings;
pub use metrics::Metrics;
pub use supervisor::{Failures, Supervisor};

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
