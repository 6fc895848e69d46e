use thiserror::Error;

/// Errors of the dispatcher.
#[derive(Debug, Error)]
pub enum DispatcherError {
    #[error(transparent)]
    Runtime(#[from] erp_runtime::RuntimeError),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Schema(#[from] erp_schemas::SchemaError),
    #[error("http client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("invalid setting: {0}")]
    Setting(String),
    #[error("task failed: {0}")]
    Task(String),
}
