use thiserror::Error;

/// Errors of the processor.
#[derive(Debug, Error)]
pub enum ProcessorError {
    #[error("dedup store: {0}")]
    Store(#[from] sled::Error),
    #[error("dedup store i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Runtime(#[from] erp_runtime::RuntimeError),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Schema(#[from] erp_schemas::SchemaError),
    #[error("mapping task failed: {0}")]
    Task(String),
}
