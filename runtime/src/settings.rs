//! Command-line flags shared by the roles. Every flag can also be set through an
//! `ERP_TOOLKIT_*` environment variable (the form Kubernetes manifests use).

use clap::{Args, ValueEnum};

use std::sync::Arc;

use crate::error::RuntimeError;
use crate::kafka::KafkaSettings;
use crate::registry_client::{ExternalRegistry, RegistryAuth};
use crate::wire::{SchemaSource, Wire};
use erp_schemas::avro::AvroRecord;
use erp_schemas::topics::{self, Topics};
use erp_schemas::wire::{TopicFormats, WireFormat};

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
    #[command(flatten)]
    pub wire: WireArgs,
}

/// The wire format of our topics and the schema registry (docs/schemas.md, "Avro and the
/// Schema Registry").
#[derive(Args, Clone, Default)]
pub struct WireArgs {
    /// Topics whose records are written as Avro in the Confluent wire format, comma-separated:
    /// `core` (erp.core.events), `inbound` (erp.inbound.events), `platform`
    /// (erp.platform.events). The others stay JSON; readers accept both formats on every topic.
    #[arg(long, env = "ERP_TOOLKIT_AVRO_TOPICS", value_delimiter = ',')]
    pub avro_topics: Vec<String>,
    /// An external Confluent-compatible schema registry (`http://registry:8081`, or another
    /// erp-toolkit's `http://api:8080/schema-registry`). Needed for `--avro-topics` outside
    /// `standalone`, which serves its own.
    #[arg(long, env = "ERP_TOOLKIT_SCHEMA_REGISTRY_URL")]
    pub schema_registry_url: Option<String>,
    /// Basic auth user of the schema registry (Confluent Cloud: the API key).
    #[arg(long, env = "ERP_TOOLKIT_SCHEMA_REGISTRY_USER")]
    pub schema_registry_user: Option<String>,
    /// Basic auth password of the schema registry (Confluent Cloud: the API secret).
    #[arg(
        long,
        env = "ERP_TOOLKIT_SCHEMA_REGISTRY_PASSWORD",
        hide_env_values = true
    )]
    pub schema_registry_password: Option<String>,
    /// Bearer token of the schema registry (an erp-toolkit registry: the admin token, which
    /// may register schemas).
    #[arg(
        long,
        env = "ERP_TOOLKIT_SCHEMA_REGISTRY_TOKEN",
        hide_env_values = true
    )]
    pub schema_registry_token: Option<String>,
}

impl std::fmt::Debug for WireArgs {
    /// Names which credentials are set, never their values.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WireArgs")
            .field("avro_topics", &self.avro_topics)
            .field("schema_registry_url", &self.schema_registry_url)
            .field("schema_registry_user", &self.schema_registry_user.is_some())
            .field(
                "schema_registry_password",
                &self.schema_registry_password.is_some(),
            )
            .field(
                "schema_registry_token",
                &self.schema_registry_token.is_some(),
            )
            .finish()
    }
}

impl WireArgs {
    /// The chosen formats: every topic named in `--avro-topics` is Avro.
    pub fn formats(&self) -> Result<TopicFormats, RuntimeError> {
        let mut formats = TopicFormats::default();
        for name in self
            .avro_topics
            .iter()
            .map(|n| n.trim())
            .filter(|n| !n.is_empty())
        {
            let suffix = match name {
                "core" => topics::CORE_EVENTS,
                "inbound" => topics::INBOUND_EVENTS,
                "platform" => topics::PLATFORM_EVENTS,
                other => other.strip_prefix("erp.").unwrap_or(other),
            };
            let record = AvroRecord::for_topic_suffix(suffix).ok_or_else(|| {
                RuntimeError::Setting(format!(
                    "--avro-topics {name:?}: one of core, inbound, platform"
                ))
            })?;
            formats.set(record, WireFormat::Avro);
        }
        Ok(formats)
    }

    /// The credentials for the registry.
    pub fn auth(&self) -> Result<RegistryAuth, RuntimeError> {
        match (
            &self.schema_registry_user,
            &self.schema_registry_password,
            &self.schema_registry_token,
        ) {
            (None, None, None) => Ok(RegistryAuth::None),
            (Some(user), password, None) => Ok(RegistryAuth::Basic {
                user: user.clone(),
                password: password.clone().unwrap_or_default(),
            }),
            (None, None, Some(token)) => Ok(RegistryAuth::Bearer(token.clone())),
            (None, Some(_), None) => Err(RuntimeError::Setting(
                "--schema-registry-password needs --schema-registry-user".into(),
            )),
            _ => Err(RuntimeError::Setting(
                "give the schema registry basic auth (user, password) or a token, not both".into(),
            )),
        }
    }

    /// The external registry, if one is given.
    pub fn external(&self) -> Result<Option<Arc<dyn SchemaSource>>, RuntimeError> {
        let Some(url) = &self.schema_registry_url else {
            return Ok(None);
        };
        let registry = ExternalRegistry::new(url, &self.auth()?)?;
        Ok(Some(Arc::new(registry)))
    }

    /// The codec of `topics`, with ids from the external registry or from `local` (the one this
    /// process serves), the external one first.
    pub fn wire(
        &self,
        topics: Topics,
        local: Option<Arc<dyn SchemaSource>>,
    ) -> Result<Wire, RuntimeError> {
        let registry = self.external()?.or(local);
        Ok(Wire::new(topics, self.formats()?, registry))
    }
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
        let topics = Topics::new(self.topic_prefix.clone());
        Ok(KafkaSettings {
            wire: self.wire.wire(topics.clone(), None)?,
            brokers: brokers.to_owned(),
            topics,
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
