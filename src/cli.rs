//! The command line: one subcommand per role, every flag also readable from an `ERP_TOOLKIT_*`
//! environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use erp_dispatcher::{DispatcherSettings, Schedule};
use erp_processor::ProcessorSettings;
use erp_runtime::settings::{KafkaArgs, LogArgs};
use erp_webhooks::settings::RateLimit;
use erp_webhooks::{Cidr, DestinationPolicy};

/// erp-toolkit: a self-hosted ERP integration toolkit for energy utilities.
#[derive(Parser, Debug)]
#[command(name = "erp-toolkit", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub log: LogArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// The roles and tools.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Everything in one process on an embedded broker: for a laptop, a demo, a small site.
    #[cfg(feature = "embedded-broker")]
    Standalone(StandaloneArgs),
    /// The embedded broker alone, for multi-process setups and tests.
    #[cfg(feature = "embedded-broker")]
    Broker(BrokerArgs),
    /// The ingest service (ERP and platform events, mapping simulation) against a Kafka cluster.
    Ingest(IngestArgs),
    /// The control plane API (configuration, webhooks, logs, replay, poll queue, ACKs) against
    /// a Kafka cluster.
    Api(IngestArgs),
    /// The processor against a Kafka cluster.
    Processor(ProcessorArgs),
    /// The dispatcher against a Kafka cluster.
    Dispatcher(DispatcherArgs),
    /// A webhook receiver that prints each delivery and checks its signature: a stand-in
    /// endpoint for trying the pipeline out.
    WebhookReceiver(ReceiverArgs),
    /// Replay a window of an integration's inbound events: plan, run, watch, cancel (ops CLI).
    Replay(crate::ops::replay::ReplayArgs),
    /// Search monitoring spans and show traces (ops CLI).
    Events(crate::ops::events::EventsArgs),
    /// Consumer groups: lag per partition, reset with a dry run (ops CLI, deployment admin).
    Groups(crate::ops::groups::GroupsArgs),
    /// The dead letters of an integration's poll queue: list, redrive (ops CLI).
    Dlq(crate::ops::dlq::DlqArgs),
    /// Export an integration as a blueprint, plan and apply one (ops CLI).
    Blueprint(crate::ops::blueprint::BlueprintArgs),
}

/// `webhook-receiver`
#[derive(Args, Debug, Clone)]
pub struct ReceiverArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub listen: String,
    /// The endpoint's `whsec_…` signing secret, to verify signatures.
    #[arg(long, env = "ERP_TOOLKIT_RECEIVER_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
}

/// `standalone`
#[derive(Args, Debug, Clone)]
pub struct StandaloneArgs {
    /// Where the broker's log, the dedup store and the admin token live.
    #[arg(
        long,
        env = "ERP_TOOLKIT_DATA_DIR",
        default_value = "./erp-toolkit-data"
    )]
    pub data_dir: PathBuf,
    /// HTTP address of the API, `/healthz` and `/readyz` (and of `/metrics`, for the admin
    /// token only, when `--metrics-listen` is not given).
    #[arg(long, env = "ERP_TOOLKIT_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Address of the metrics listener: `/metrics` without a token, `/healthz`, `/readyz`.
    /// Keep it on the monitoring network: the metrics carry labels of every organisation.
    #[arg(long, env = "ERP_TOOLKIT_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// Address of the embedded Kafka broker (port 0 picks a free one).
    #[arg(
        long,
        env = "ERP_TOOLKIT_BROKER_LISTEN",
        default_value = "127.0.0.1:9092"
    )]
    pub broker_listen: SocketAddr,
    /// Partitions of the partitioned topics.
    #[arg(long, env = "ERP_TOOLKIT_PARTITIONS", default_value_t = 6)]
    pub partitions: i32,
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(flatten)]
    pub processing: ProcessingArgs,
    #[command(flatten)]
    pub delivery: DeliveryArgs,
    #[command(flatten)]
    pub wire: erp_runtime::settings::WireArgs,
}

/// `broker`
#[derive(Args, Debug, Clone)]
pub struct BrokerArgs {
    /// Where the broker's log lives.
    #[arg(
        long,
        env = "ERP_TOOLKIT_DATA_DIR",
        default_value = "./erp-toolkit-data"
    )]
    pub data_dir: PathBuf,
    /// Address to listen on.
    #[arg(
        long,
        env = "ERP_TOOLKIT_BROKER_LISTEN",
        default_value = "127.0.0.1:9092"
    )]
    pub listen: SocketAddr,
}

/// Settings of the HTTP API.
#[derive(Args, Debug, Clone)]
pub struct ApiArgs {
    /// Longest wait, in milliseconds, for Kafka to acknowledge the events of one ingest
    /// request; then the answer is 503 `QUEUE_UNAVAILABLE` with `Retry-After` (the events may
    /// still be written: clients resend with the same `deduplication_id`).
    #[arg(long, env = "ERP_TOOLKIT_PRODUCE_TIMEOUT_MS", default_value_t = 5000)]
    pub produce_timeout_ms: u64,
    /// The first organisation: the one the admin token owns. Others come into being when the
    /// admin token creates a token for them (`POST /v1/access-tokens` with `org_id`).
    #[arg(long, env = "ERP_TOOLKIT_ORG_ID", default_value = "default")]
    pub org_id: String,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "ERP_TOOLKIT_BODY_LIMIT", default_value_t = 10 * 1024 * 1024)]
    pub body_limit: usize,
    /// API requests per organisation and minute, per API instance (0: no limit). Answered 429
    /// `RATE_LIMITED` with `Retry-After` once spent; health, metrics and the public key are
    /// exempt.
    #[arg(
        long,
        env = "ERP_TOOLKIT_RATE_LIMIT_PER_MINUTE",
        default_value_t = 1000
    )]
    pub rate_limit_per_minute: u32,
    /// Directory of extra core-event JSON Schemas (`<EventName>.schema.json`, e.g. epilot's
    /// published ones) that events posted to `/v1/events` are also checked against. Optional:
    /// every event is always checked against the project's own catalog (docs/schemas.md).
    #[arg(long, env = "ERP_TOOLKIT_CORE_EVENT_SCHEMAS")]
    pub core_event_schemas: Option<PathBuf>,
    /// Seconds an ACK-tracked outbound event may stay unacknowledged before `ACK_TIMEOUT`.
    #[arg(long, env = "ERP_TOOLKIT_ACK_TIMEOUT_SECS", default_value_t = 24 * 3600)]
    pub ack_timeout_secs: u64,
    /// Days a timed-out tracking row still accepts a late acknowledgement.
    #[arg(long, env = "ERP_TOOLKIT_ACK_RETENTION_DAYS", default_value_t = 28)]
    pub ack_retention_days: u64,
    /// PEM file of the organisation's Ed25519 signing key (`openssl genpkey -algorithm
    /// ed25519`): its public key is served at `/v1/webhooks/.well-known/public-key`.
    #[arg(long, env = "ERP_TOOLKIT_SIGNING_KEY_FILE")]
    pub signing_key_file: Option<PathBuf>,
    /// File of the deployment's secrets keys (one 32-byte key per line, base64 or hex; the
    /// first encrypts): `SecretString` environment values are encrypted with it before they are
    /// written to `erp.config`. Give the dispatcher the same file.
    #[arg(long, env = "ERP_TOOLKIT_SECRETS_KEY_FILE")]
    pub secrets_key_file: Option<PathBuf>,
    /// Seconds a polled batch stays leased before it is delivered again (poll queue).
    #[arg(
        long,
        env = "ERP_TOOLKIT_POLL_VISIBILITY_TIMEOUT_SECS",
        default_value_t = 300
    )]
    pub poll_visibility_timeout_secs: u64,
    /// Whether this instance serves the poll queue. The queue state has one writer: with
    /// several API instances, set it false on all but one and route
    /// `/v1/integrations/*/outbound/messages/*` to that one (the others answer 503).
    #[arg(long, env = "ERP_TOOLKIT_POLL_QUEUE", default_value_t = true, action = clap::ArgAction::Set)]
    pub poll_queue: bool,
    /// Most deliveries a webhook recovery (`POST /v1/webhooks/configs/{id}/recover`) re-sends
    /// per second.
    #[arg(long, env = "ERP_TOOLKIT_RECOVER_RATE", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    pub recover_rate: u32,
    /// Days a delivery stays in the webhook attempt log.
    #[arg(long, env = "ERP_TOOLKIT_ATTEMPT_RETENTION_DAYS", default_value_t = 28)]
    pub attempt_retention_days: u64,
    /// Where the monitoring store lives: `sqlite://<path>`. Default: `monitoring.db` in the
    /// data directory (none without one: the monitoring routes then answer 503).
    #[arg(long, env = "ERP_TOOLKIT_MONITORING_STORE")]
    pub monitoring_store: Option<String>,
    /// Days a monitoring span stays in the monitoring store.
    #[arg(long, env = "ERP_TOOLKIT_MONITORING_RETENTION_DAYS", default_value_t = 28, value_parser = clap::value_parser!(u64).range(1..))]
    pub monitoring_retention_days: u64,
    /// How often notification rules (`settings.notifications`) are evaluated, in seconds.
    #[arg(long, env = "ERP_TOOLKIT_ALERT_SWEEP_SECS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub alert_sweep_secs: u64,
}

impl ApiArgs {
    /// The produce timeout of ingest requests.
    pub fn produce_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.produce_timeout_ms.max(1))
    }

    /// The deployment's signing key (organisation keys derive from it), if one is configured.
    pub fn signing_keys(
        &self,
    ) -> anyhow::Result<Option<std::sync::Arc<erp_webhooks::org_key::SigningKeys>>> {
        self.signing_key_file
            .as_deref()
            .map(|path| {
                erp_webhooks::org_key::SigningKeys::load(path)
                    .map(std::sync::Arc::new)
                    .map_err(anyhow::Error::from)
            })
            .transpose()
    }

    /// ACK tracking settings (the sweep runs every 30 s, or every timeout if shorter).
    pub fn ack_settings(&self) -> erp_api::acks::AckSettings {
        let timeout = std::time::Duration::from_secs(self.ack_timeout_secs.max(1));
        erp_api::acks::AckSettings {
            timeout,
            retention: std::time::Duration::from_secs(self.ack_retention_days * 24 * 3600),
            sweep_every: timeout.min(std::time::Duration::from_secs(30)),
        }
    }

    /// How long monitoring spans are kept.
    pub fn monitoring_retention(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.monitoring_retention_days * 24 * 3600)
    }

    /// Attempt log and recovery settings.
    pub fn attempt_log_settings(&self) -> erp_api::webhooks::attempt_log::AttemptLogSettings {
        erp_api::webhooks::attempt_log::AttemptLogSettings {
            retention: std::time::Duration::from_secs(self.attempt_retention_days * 24 * 3600),
            recover_rate: self.recover_rate,
        }
    }

    /// Poll queue settings (the sweep runs every 30 s, or every visibility timeout if shorter).
    pub fn poll_settings(&self) -> erp_api::poll::PollSettings {
        let visibility = std::time::Duration::from_secs(self.poll_visibility_timeout_secs.max(1));
        erp_api::poll::PollSettings {
            visibility_timeout: visibility,
            sweep_every: visibility.min(std::time::Duration::from_secs(30)),
            ..Default::default()
        }
    }

    /// The event schemas, if a directory is configured.
    pub fn event_schemas(
        &self,
    ) -> anyhow::Result<Option<std::sync::Arc<erp_runtime::event_schemas::EventSchemas>>> {
        load_event_schemas(self.core_event_schemas.as_deref())
    }
}

/// Loads the deployment's secrets keys, if a file is given.
pub fn load_secrets(
    path: Option<&std::path::Path>,
) -> anyhow::Result<Option<std::sync::Arc<erp_runtime::secrets::Keyring>>> {
    path.map(|path| {
        erp_runtime::secrets::Keyring::load(path)
            .map(std::sync::Arc::new)
            .map_err(anyhow::Error::from)
    })
    .transpose()
}

/// Waits until `view` has folded the log present at start, then checks that its keys open every
/// encrypted value: a wrong key file stops the process at start, naming the key id.
pub async fn check_secrets(view: &erp_runtime::ConfigView) -> anyhow::Result<()> {
    view.wait_loaded(std::time::Duration::from_secs(300))
        .await
        .map_err(|e| anyhow::anyhow!("configuration not loaded: {e}"))?;
    view.snapshot()
        .check_secrets(view.secrets())
        .map_err(|e| anyhow::anyhow!("secrets key: {e}"))
}

/// Loads the core-event schemas of `dir`, if given.
pub fn load_event_schemas(
    dir: Option<&std::path::Path>,
) -> anyhow::Result<Option<std::sync::Arc<erp_runtime::event_schemas::EventSchemas>>> {
    dir.map(|dir| {
        erp_runtime::event_schemas::EventSchemas::load(dir)
            .map(std::sync::Arc::new)
            .map_err(anyhow::Error::msg)
    })
    .transpose()
}

/// `ingest` and `api`: the HTTP roles take the same flags, so one set of settings serves both
/// (ingest ignores the control plane's: data directory, ACKs, poll queue, attempt log).
#[derive(Args, Debug, Clone)]
pub struct IngestArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// HTTP address of the API, `/healthz` and `/readyz` (and of `/metrics`, for the admin
    /// token only, when `--metrics-listen` is not given).
    #[arg(long, env = "ERP_TOOLKIT_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Address of the metrics listener: `/metrics` without a token, `/healthz`, `/readyz`.
    /// Keep it on the monitoring network: the metrics carry labels of every organisation.
    #[arg(long, env = "ERP_TOOLKIT_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// The deployment admin token: owner of `--org-id`, and the only token that may create
    /// tokens for other organisations. An empty (or blank) value is refused: it would make
    /// every request that sends `Bearer ` with nothing after it the deployment admin.
    #[arg(long, env = "ERP_TOOLKIT_ADMIN_TOKEN", hide_env_values = true, value_parser = non_blank_token)]
    pub admin_token: String,
    /// Time limit of one JSONata evaluation in mapping simulations, in milliseconds.
    #[arg(long, env = "ERP_TOOLKIT_MAPPING_TIMEOUT_MS", default_value_t = 1000)]
    pub mapping_timeout_ms: u64,
    /// Where the inbound event log keeps its index (of `erp.inbound.events`; rebuilt from the
    /// topic when lost). Without it, the event log routes answer 503.
    #[arg(long, env = "ERP_TOOLKIT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// `api`: serve a Confluent-compatible schema registry under `/schema-registry` on the
    /// listener, kept in the compacted topic `erp.schemas` (serve it from one replica; other
    /// processes point `--schema-registry-url` at it). `standalone` always serves it.
    #[arg(long, env = "ERP_TOOLKIT_SERVE_SCHEMA_REGISTRY")]
    pub serve_schema_registry: bool,
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(flatten)]
    pub payload_limits: PayloadLimitArgs,
}

/// Limits on ERP event payloads (`erp_schemas::limits`): the ingest refuses a violating event
/// with 400 `PAYLOAD_LIMIT_EXCEEDED`, the processor dead-letters one with that code. Give the
/// ingest and the processor the same values.
#[derive(Args, Debug, Clone)]
pub struct PayloadLimitArgs {
    /// Deepest nesting of a payload (XML elements, JSON objects and arrays; 1 to 1000). JSON
    /// text deeper than 128 levels is refused by the JSON parser whatever this says.
    #[arg(long, env = "ERP_TOOLKIT_PAYLOAD_MAX_DEPTH", default_value_t = erp_schemas::limits::DEFAULT_MAX_DEPTH, value_parser = parse_depth)]
    pub payload_max_depth: usize,
    /// Largest payload, in bytes.
    #[arg(long, env = "ERP_TOOLKIT_PAYLOAD_MAX_BYTES", default_value_t = erp_schemas::limits::DEFAULT_MAX_BYTES)]
    pub payload_max_bytes: usize,
    /// Most nodes of a payload (XML elements and attributes, JSON values).
    #[arg(long, env = "ERP_TOOLKIT_PAYLOAD_MAX_ELEMENTS", default_value_t = erp_schemas::limits::DEFAULT_MAX_ELEMENTS)]
    pub payload_max_elements: usize,
    /// Longest single string of a payload (XML attribute value or text, JSON string), in bytes.
    #[arg(long, env = "ERP_TOOLKIT_PAYLOAD_MAX_STRING_BYTES", default_value_t = erp_schemas::limits::DEFAULT_MAX_STRING_BYTES)]
    pub payload_max_string_bytes: usize,
}

/// A payload depth limit: 1 to [`erp_schemas::limits::HARD_MAX_DEPTH`].
fn parse_depth(text: &str) -> Result<usize, String> {
    let hard = erp_schemas::limits::HARD_MAX_DEPTH;
    match text.trim().parse::<usize>() {
        Ok(depth) if (1..=hard).contains(&depth) => Ok(depth),
        _ => Err(format!("{text:?} is not a depth from 1 to {hard}")),
    }
}

impl PayloadLimitArgs {
    /// The limits.
    pub fn limits(&self) -> erp_schemas::limits::PayloadLimits {
        erp_schemas::limits::PayloadLimits {
            max_depth: self.payload_max_depth,
            max_bytes: self.payload_max_bytes,
            max_elements: self.payload_max_elements,
            max_string_bytes: self.payload_max_string_bytes,
        }
    }
}

impl IngestArgs {
    /// The control plane's settings.
    pub fn api_settings(&self) -> anyhow::Result<erp_api::ApiSettings> {
        Ok(erp_api::ApiSettings {
            org_id: self.api.org_id.clone(),
            body_limit: self.api.body_limit,
            acks: self.api.ack_settings(),
            poll: self.api.poll_queue.then(|| self.api.poll_settings()),
            data_dir: self.data_dir.clone(),
            attempt_log: self.api.attempt_log_settings(),
            signing_keys: self.api.signing_keys()?,
            event_schemas: self.api.event_schemas()?,
            monitoring_store: self.api.monitoring_store.clone(),
            monitoring_retention: self.api.monitoring_retention(),
            alert_sweep: std::time::Duration::from_secs(self.api.alert_sweep_secs),
        })
    }
}

/// Settings of the processor.
#[derive(Args, Debug, Clone)]
pub struct ProcessingArgs {
    /// How long a deduplication_id suppresses later events with the same id, in seconds.
    #[arg(long, env = "ERP_TOOLKIT_DEDUP_WINDOW_SECS", default_value_t = 24 * 3600)]
    pub dedup_window_secs: u64,
    /// Time limit of one JSONata evaluation, in milliseconds.
    #[arg(long, env = "ERP_TOOLKIT_MAPPING_TIMEOUT_MS", default_value_t = 1000)]
    pub mapping_timeout_ms: u64,
    /// Most records the processor takes per poll batch.
    #[arg(long, env = "ERP_TOOLKIT_PROCESSOR_BATCH", default_value_t = 500)]
    pub processor_batch: usize,
    /// Root URL of the file proxy that `file_proxy_url` mapping fields point at (they are left
    /// out while it is not set).
    #[arg(long, env = "ERP_TOOLKIT_FILE_PROXY_URL")]
    pub file_proxy_url: Option<String>,
    /// Whether a successfully mapped event gets a `success` span on the monitoring topic (skips
    /// and errors always do).
    #[arg(long, env = "ERP_TOOLKIT_SUCCESS_SPANS", default_value_t = true, action = clap::ArgAction::Set)]
    pub success_spans: bool,
    /// Abnormal exits (crashes, kills) a record may be in flight during before the processor
    /// sets it aside as `POISON_RECORD` on the dead letter topic instead of processing it again.
    #[arg(long, env = "ERP_TOOLKIT_POISON_AFTER_CRASHES", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub poison_after_crashes: u32,
    #[command(flatten)]
    pub payload_limits: PayloadLimitArgs,
}

impl ProcessingArgs {
    /// The processor settings, storing state under `data_dir`.
    pub fn settings(&self, data_dir: PathBuf) -> ProcessorSettings {
        ProcessorSettings {
            data_dir,
            dedup_window: Duration::from_secs(self.dedup_window_secs),
            mapping_timeout: Duration::from_millis(self.mapping_timeout_ms.max(1)),
            max_batch: self.processor_batch.max(1),
            file_proxy_base_url: self.file_proxy_url.clone(),
            success_spans: self.success_spans,
            payload_limits: self.payload_limits.limits(),
            poison_after_crashes: self.poison_after_crashes,
            ..ProcessorSettings::default()
        }
    }
}

/// `processor`
#[derive(Args, Debug, Clone)]
pub struct ProcessorArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Static group membership: each consumer group is joined with `group.instance.id`
    /// `<value>-<group id>`, so a restarted instance (same value, e.g. the pod name of a
    /// StatefulSet) gets its partitions back without a rebalance. One value per instance; see
    /// docs/operations.md for the embedded broker's limits.
    #[arg(long, env = "ERP_TOOLKIT_GROUP_INSTANCE_ID")]
    pub group_instance_id: Option<String>,
    /// Address of the operational listener: `/metrics`, `/healthz` and `/readyz` (a worker
    /// has no API, so its one listener is its metrics listener).
    #[arg(long, env = "ERP_TOOLKIT_LISTEN", default_value = "127.0.0.1:8081")]
    pub listen: String,
    /// Where the dedup store lives.
    #[arg(
        long,
        env = "ERP_TOOLKIT_DATA_DIR",
        default_value = "./erp-toolkit-data"
    )]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub processing: ProcessingArgs,
}

/// Settings of the dispatcher.
#[derive(Args, Debug, Clone)]
pub struct DeliveryArgs {
    /// Time limit of one webhook request, in seconds.
    #[arg(long, env = "ERP_TOOLKIT_REQUEST_TIMEOUT_SECS", default_value_t = 15)]
    pub request_timeout_secs: u64,
    /// Most webhook requests in progress at once, over all endpoints.
    #[arg(long, env = "ERP_TOOLKIT_MAX_IN_FLIGHT", default_value_t = 64)]
    pub max_in_flight: usize,
    /// The waits of the retry tiers `erp.core.retry.1` … (1 to 5, comma-separated, each with a
    /// unit: `ms`, `s`, `m`, `h`). An endpoint's `retryPolicy.maxAttempts` uses the first ones.
    #[arg(
        long,
        env = "ERP_TOOLKIT_RETRY_SCHEDULE",
        value_delimiter = ',',
        default_value = "5s,5m,30m,2h,5h",
        value_parser = parse_duration
    )]
    pub retry_schedule: Vec<Duration>,
    /// The longest `Retry-After` honoured (a longer one is cut to this).
    #[arg(long, env = "ERP_TOOLKIT_MAX_RETRY_AFTER", default_value = "1h", value_parser = parse_duration)]
    pub max_retry_after: Duration,
    /// Most requests in flight to one endpoint; more deliveries for it are deferred to a retry
    /// tier.
    #[arg(long, env = "ERP_TOOLKIT_ENDPOINT_CONCURRENCY", default_value_t = 16)]
    pub endpoint_concurrency: usize,
    /// How long a delivery waits for one of its endpoint's request slots before it is deferred.
    #[arg(long, env = "ERP_TOOLKIT_ENDPOINT_QUEUE_WAIT", default_value = "1s", value_parser = parse_duration)]
    pub endpoint_queue_wait: Duration,
    /// Consecutive failures (5xx, 429, timeouts, connection errors) that open an endpoint's
    /// circuit breaker.
    #[arg(long, env = "ERP_TOOLKIT_BREAKER_THRESHOLD", default_value_t = 5)]
    pub breaker_threshold: u32,
    /// How long an open circuit breaker waits before a retry tier may send one probe.
    #[arg(long, env = "ERP_TOOLKIT_BREAKER_COOLDOWN", default_value = "30s", value_parser = parse_duration)]
    pub breaker_cooldown: Duration,
    /// Allow webhooks to private, loopback and link-local addresses (refused by default).
    #[arg(long, env = "ERP_TOOLKIT_ALLOW_PRIVATE_DESTINATIONS")]
    pub allow_private_destinations: bool,
    /// Non-public address ranges webhooks may go to anyway (CIDRs, comma-separated or
    /// repeated, e.g. `10.20.0.0/16`).
    #[arg(
        long = "allow-destination",
        env = "ERP_TOOLKIT_ALLOW_DESTINATIONS",
        value_delimiter = ','
    )]
    pub allow_destinations: Vec<String>,
    /// Most bytes of a response body read and kept in the attempt record.
    #[arg(long, env = "ERP_TOOLKIT_MAX_RESPONSE_BODY", default_value_t = 64 * 1024)]
    pub max_response_body: usize,
    /// Requests per second to each endpoint that sets no `rateLimit` of its own (0: unlimited).
    #[arg(long, env = "ERP_TOOLKIT_ENDPOINT_RATE_LIMIT", default_value_t = 0.0)]
    pub endpoint_rate_limit: f64,
    /// Burst of the default rate limit (0: one second's worth).
    #[arg(long, env = "ERP_TOOLKIT_ENDPOINT_RATE_BURST", default_value_t = 0)]
    pub endpoint_rate_burst: u32,
}

impl DeliveryArgs {
    /// The dispatcher settings.
    pub fn settings(&self) -> anyhow::Result<DispatcherSettings> {
        let allowed = self
            .allow_destinations
            .iter()
            .filter(|c| !c.trim().is_empty())
            .map(|c| c.parse::<Cidr>().map_err(anyhow::Error::msg))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let default_rate_limit = if self.endpoint_rate_limit == 0.0 {
            None
        } else {
            let burst = (self.endpoint_rate_burst > 0).then_some(self.endpoint_rate_burst);
            Some(
                RateLimit::new(self.endpoint_rate_limit, burst)
                    .map_err(|e| anyhow::anyhow!("--endpoint-rate-limit {e}"))?,
            )
        };
        let settings = DispatcherSettings {
            request_timeout: Duration::from_secs(self.request_timeout_secs.max(1)),
            max_in_flight: self.max_in_flight.max(1),
            retry_schedule: self.retry_schedule.clone(),
            max_retry_after: self.max_retry_after,
            endpoint_concurrency: self.endpoint_concurrency.max(1),
            endpoint_queue_wait: self.endpoint_queue_wait,
            breaker_threshold: self.breaker_threshold.max(1),
            breaker_cooldown: self.breaker_cooldown,
            destinations: DestinationPolicy {
                allow_private: self.allow_private_destinations,
                allowed,
            },
            max_response_body: self.max_response_body,
            default_rate_limit,
            ..DispatcherSettings::default()
        };
        // Refuse a bad schedule at start, with the flag's name, rather than in the role.
        Schedule::new(settings.retry_schedule.clone(), settings.max_retry_after)
            .map_err(|e| anyhow::anyhow!("--retry-schedule: {e}"))?;
        Ok(settings)
    }
}

/// A duration with a unit: `250ms`, `5s`, `5m`, `2h` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 5s, 5m or 2h"))?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("unknown unit {other:?} in {text:?} (ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

/// `dispatcher`
#[derive(Args, Debug, Clone)]
pub struct DispatcherArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Static group membership: each consumer group is joined with `group.instance.id`
    /// `<value>-<group id>`, so a restarted instance (same value, e.g. the pod name of a
    /// StatefulSet) gets its partitions back without a rebalance. One value per instance; see
    /// docs/operations.md for the embedded broker's limits.
    #[arg(long, env = "ERP_TOOLKIT_GROUP_INSTANCE_ID")]
    pub group_instance_id: Option<String>,
    /// Address of the operational listener: `/metrics`, `/healthz` and `/readyz` (a worker
    /// has no API, so its one listener is its metrics listener).
    #[arg(long, env = "ERP_TOOLKIT_LISTEN", default_value = "127.0.0.1:8082")]
    pub listen: String,
    /// PEM file of the organisation's Ed25519 signing key: deliveries also carry a `v1a`
    /// signature receivers check with the public key the API serves.
    #[arg(long, env = "ERP_TOOLKIT_SIGNING_KEY_FILE")]
    pub signing_key_file: Option<PathBuf>,
    /// File of the deployment's secrets keys (as the API's): decrypts `SecretString` values that
    /// `{{env.*}}` references in endpoints resolve to.
    #[arg(long, env = "ERP_TOOLKIT_SECRETS_KEY_FILE")]
    pub secrets_key_file: Option<PathBuf>,
    #[command(flatten)]
    pub delivery: DeliveryArgs,
}

/// `--admin-token`: refused when empty or only whitespace.
fn non_blank_token(value: &str) -> Result<String, String> {
    let token = value.trim();
    if token.is_empty() {
        return Err("the admin token must not be empty".into());
    }
    Ok(token.to_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_empty_admin_token_is_refused() {
        assert!(super::non_blank_token("").is_err());
        assert!(super::non_blank_token("   ").is_err());
        assert_eq!(super::non_blank_token(" t0k ").as_deref(), Ok("t0k"));
    }

    use super::*;

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn the_dispatcher_flags_make_settings() {
        let cli = Cli::try_parse_from([
            "erp-toolkit",
            "dispatcher",
            "--retry-schedule",
            "1s,2s,3s",
            "--allow-destination",
            "10.1.0.0/16",
        ])
        .expect("parses");
        let Command::Dispatcher(args) = cli.command else {
            panic!("not the dispatcher");
        };
        let settings = args.delivery.settings().expect("valid");
        assert_eq!(settings.retry_schedule.len(), 3);
        assert_eq!(settings.destinations.allowed.len(), 1);
        assert!(!settings.destinations.allow_private);
        let bad = Cli::try_parse_from(["erp-toolkit", "dispatcher", "--retry-schedule", "5s,1s"])
            .expect("parses");
        let Command::Dispatcher(args) = bad.command else {
            panic!("not the dispatcher");
        };
        assert!(
            args.delivery.settings().is_err(),
            "waits must not get shorter"
        );
    }
}
