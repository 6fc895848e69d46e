use thiserror::Error;

/// Errors of the shared runtime.
#[derive(Debug, Error)]
pub enum RuntimeError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Schema(#[from] erp_schemas::SchemaError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("invalid setting: {0}")]
    Setting(String),
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("cannot create topic {topic}: {message}")]
    TopicCreation { topic: String, message: String },
    /// Existing topics differ from what the project needs in ways that lose data or order.
    #[error("topics need changes before this can start:\n{0}")]
    TopicMismatch(String),
    #[error("secrets: {0}")]
    Secrets(#[from] crate::secrets::SecretsError),
    /// The poison-record guard's sled tree failed.
    #[error("storage: {0}")]
    Storage(String),
    /// A schema registry refused a request (Confluent's code and message).
    #[error("schema registry: {0}")]
    Registry(#[from] erp_schemas::registry::RegistryError),
    /// A schema registry could not be asked (unreachable, unexpected answer).
    #[error("schema registry unavailable: {0}")]
    RegistryUnavailable(String),
    #[error("shutting down")]
    ShuttingDown,
    /// A configuration change was based on a revision of its object that another writer
    /// replaced first: it was not applied (read again, then decide again).
    #[error("the object changed since revision {base}: another writer came first")]
    Conflict { base: i64 },
}
