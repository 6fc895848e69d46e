//! Command-line flags shared by the roles. Every flag can also be set through an
//! `ERP_TOOLKIT_*` environment variable (the form Kubernetes manifests use).

use clap::{Args, ValueEnum};

use crate::error::RuntimeError;
use crate::kafka::KafkaSettings;
use erp_schemas::topics::Topics;

/// How to reach the Kafka cluster and how to lay out topics.
#[derive(Args, Debug, Clone)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers (`host:port[,host:port]`).
    #[arg(long, env = "ERP_TOOLKIT_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// Prefix of every topic name (`<prefix>.inbound.events`, …).
    #[arg(long, env = "ERP_TOOLKIT_TOPIC_PREFIX", default_value = "erp")]
    pub topic_prefix: String,
    /// Partitions of the partitioned topics when this process creates them. Choose generously:
    /// partitions bound the parallelism of every role and cannot be added on every broker.
    #[arg(long, env = "ERP_TOOLKIT_PARTITIONS", default_value_t = 6)]
    pub partitions: i32,
    /// Replication factor of topics this process creates (-1: the broker's
    /// `default.replication.factor`; set 3 on a production cluster, docs/operations.md).
    #[arg(long, env = "ERP_TOOLKIT_REPLICATION_FACTOR", default_value_t = -1, allow_negative_numbers = true)]
    pub replication_factor: i32,
    /// Extra librdkafka properties as `key=value`, repeatable or comma-separated
    /// (e.g. `security.protocol=SASL_SSL`).
    #[arg(
        long = "kafka-option",
        env = "ERP_TOOLKIT_KAFKA_OPTIONS",
        value_delimiter = ','
    )]
    pub kafka_options: Vec<String>,
}

impl KafkaArgs {
    /// The settings these flags describe, for the given bootstrap servers.
    pub fn settings_for(&self, brokers: &str) -> Result<KafkaSettings, RuntimeError> {
        let mut options = Vec::with_capacity(self.kafka_options.len());
        for option in &self.kafka_options {
            let (key, value) = option.split_once('=').ok_or_else(|| {
                RuntimeError::Setting(format!("--kafka-option {option:?} is not key=value"))
            })?;
            options.push((key.trim().to_owned(), value.trim().to_owned()));
        }
        if self.partitions < 1 {
            return Err(RuntimeError::Setting(
                "--partitions must be at least 1".into(),
            ));
        }
        Ok(KafkaSettings {
            brokers: brokers.to_owned(),
            topics: Topics::new(self.topic_prefix.clone()),
            partitions: self.partitions,
            replication_factor: self.replication_factor,
            options,
            group_instance_id: None,
        })
    }

    /// The settings these flags describe.
    pub fn settings(&self) -> Result<KafkaSettings, RuntimeError> {
        self.settings_for(&self.brokers)
    }
}

/// Log output.
#[derive(Args, Debug, Clone)]
pub struct LogArgs {
    /// Log format: `text` for people, `json` for log pipelines.
    #[arg(long, env = "ERP_TOOLKIT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter in `tracing` syntax (`info`, `erp_processor=debug,info`). `RUST_LOG` wins.
    #[arg(
        long,
        env = "ERP_TOOLKIT_LOG",
        default_value = "info,tansu_broker=warn,tansu_storage=warn,tansu_sans_io=warn,tansu_service=warn,tansu_schema=warn,actix_server=warn"
    )]
    pub log: String,
}

/// Log formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}
