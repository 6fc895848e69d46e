//! `erp-toolkit standalone`: the embedded broker and every role in one process, sharing one
//! configuration view and one metrics registry.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;

use erp_api::ApiSettings;
use erp_dispatcher::DispatcherSettings;
use erp_processor::ProcessorSettings;
use erp_runtime::topics::{ensure_topics, standard_topics};
use erp_runtime::{ConfigView, Failures, KafkaSettings, Metrics, Readiness, Runtime, Supervisor};
use erp_webhooks::org_key::{OrgKey, SigningKeys};

use crate::api::Services;
use crate::broker::EmbeddedBroker;

/// How to run the standalone process.
#[derive(Debug, Clone)]
pub struct StandaloneOptions {
    /// Broker log, dedup store and admin token live here.
    pub data_dir: PathBuf,
    /// HTTP listen address (port 0 picks a free one).
    pub listen: String,
    /// Listen address of `/metrics` without a token (`None`: `/metrics` is served on `listen`
    /// to the admin token only).
    pub metrics_listen: Option<String>,
    /// Broker listen address (port 0 picks a free one).
    pub broker_listen: SocketAddr,
    /// Partitions of the partitioned topics.
    pub partitions: i32,
    /// The first organisation, owned by the admin token.
    pub org_id: String,
    /// Largest accepted request body.
    pub body_limit: usize,
    /// API requests per organisation and minute (0: no limit).
    pub rate_limit_per_minute: u32,
    /// Directory of core-event JSON Schemas for `POST /v1/events`.
    pub core_event_schemas: Option<PathBuf>,
    /// The organisation's Ed25519 signing key (`None`: one is created in `data_dir`).
    pub signing_key_file: Option<PathBuf>,
    /// The deployment's secrets keys (`None`: `secrets-key` in `data_dir`, created on first
    /// start).
    pub secrets_key_file: Option<PathBuf>,
    /// ACK tracking.
    pub acks: erp_api::acks::AckSettings,
    /// The poll queue.
    pub poll: erp_api::poll::PollSettings,
    /// The webhook attempt log: retention and the rate of recoveries.
    pub attempt_log: erp_api::webhooks::attempt_log::AttemptLogSettings,
    /// Processor settings (its data directory is placed under `data_dir`).
    pub processor: ProcessorSettings,
    /// Dispatcher settings.
    pub dispatcher: DispatcherSettings,
    /// Longest wait for Kafka's acknowledgement of an ingest request before answering 503.
    pub produce_timeout: Duration,
    /// The monitoring store (`sqlite://<path>`); `None`: `monitoring.db` in the data directory.
    pub monitoring_store: Option<String>,
    /// How long monitoring spans are kept.
    pub monitoring_retention: Duration,
    /// How often notification rules are evaluated.
    pub alert_sweep: Duration,
    /// Topics written as Avro, and an external schema registry (without one, the registry this
    /// process serves under `/schema-registry` gives the ids).
    pub wire: erp_runtime::settings::WireArgs,
}

impl StandaloneOptions {
    /// Defaults for a data directory, on free ports.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            listen: "127.0.0.1:0".into(),
            metrics_listen: None,
            broker_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            partitions: 6,
            org_id: "default".into(),
            body_limit: 10 * 1024 * 1024,
            rate_limit_per_minute: 1000,
            core_event_schemas: None,
            signing_key_file: None,
            secrets_key_file: None,
            acks: Default::default(),
            poll: Default::default(),
            attempt_log: Default::default(),
            processor: ProcessorSettings::default(),
            produce_timeout: Duration::from_secs(5),
            monitoring_store: None,
            monitoring_retention: Duration::from_secs(28 * 24 * 3600),
            alert_sweep: Duration::from_secs(300),
            wire: Default::default(),
            // Receivers of a standalone installation usually run on the same machine.
            dispatcher: DispatcherSettings {
                destinations: erp_webhooks::DestinationPolicy::loopback_allowed(),
                ..DispatcherSettings::default()
            },
        }
    }
}

/// A running standalone process.
pub struct Standalone {
    /// Where the API listens.
    pub http_address: SocketAddr,
    /// Where `/metrics` is served without a token, if a metrics listener was asked for.
    pub metrics_address: Option<SocketAddr>,
    /// Where the embedded broker listens.
    pub broker_address: SocketAddr,
    /// The deployment admin token (owner of the first organisation).
    pub admin_token: String,
    /// The shared metrics registry.
    pub metrics: Metrics,
    /// The shared readiness checks.
    pub readiness: Readiness,
    shutdown: CancellationToken,
    server: ServerHandle,
    serving: JoinHandle<std::io::Result<()>>,
    metrics_server: Option<(ServerHandle, JoinHandle<std::io::Result<()>>)>,
    processor: JoinHandle<Result<(), erp_processor::ProcessorError>>,
    dispatcher: JoinHandle<Result<(), erp_dispatcher::DispatcherError>>,
    /// The configuration fold and the control plane's background tasks.
    tasks: Supervisor,
    broker: EmbeddedBroker,
}

impl Standalone {
    /// Starts everything. `shutdown` stops it all when cancelled (then call [`Self::stop`]).
    pub async fn start(
        options: StandaloneOptions,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        let data_dir = options.data_dir.clone();
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
        let admin_token = admin_token(&data_dir)?;
        let signing_key = match &options.signing_key_file {
            Some(path) => std::sync::Arc::new(SigningKeys::load(path)?),
            None => signing_key(&data_dir)?,
        };
        let reset = crate::broker::forget_group_members(&data_dir.join("kafka")).await?;
        if reset > 0 {
            info!(groups = reset, "consumer groups of the previous run reset");
        }
        let mut broker =
            EmbeddedBroker::start(&data_dir.join("kafka"), options.broker_listen).await?;

        let mut kafka = KafkaSettings::new(broker.address().to_string());
        kafka.partitions = options.partitions;
        ensure_topics(&kafka, &standard_topics(&kafka)).await?;
        let mut runtime = Runtime {
            kafka,
            metrics: Metrics::new(),
            readiness: Readiness::new(),
            shutdown: shutdown.clone(),
        };
        erp_runtime::ReadyGauge::export(&runtime.metrics, &runtime.readiness, "standalone");

        let secrets_key_file = match &options.secrets_key_file {
            Some(path) => path.clone(),
            None => secrets_key(&data_dir)?,
        };
        let secrets = crate::cli::load_secrets(Some(&secrets_key_file))?;
        let (view, view_task) = ConfigView::start(&runtime, "standalone", secrets).await?;
        if let Err(error) = crate::cli::check_secrets(&view).await {
            // Nothing else started yet but the fold and the broker: stop them before failing.
            view_task.abort();
            broker.stop().await;
            return Err(error);
        }
        let mut tasks = Supervisor::watching(&runtime.readiness, &shutdown);
        tasks.adopt("configuration view", view_task);
        // The registry is served from the start, also with every topic JSON: a platform team
        // can register and test its own schemas before a topic switches.
        let registry_producer = runtime.kafka.producer("erp-toolkit-schema-registry")?;
        let schema_registry =
            crate::api::schema_registry(&mut runtime, &options.wire, registry_producer, &mut tasks)
                .await?;
        runtime.kafka.wire.prepare().await?;
        let producer = runtime.kafka.producer("erp-toolkit-ingest")?;
        let event_schemas = crate::cli::load_event_schemas(options.core_event_schemas.as_deref())?;
        let settings = ApiSettings {
            org_id: options.org_id.clone(),
            body_limit: options.body_limit,
            acks: options.acks.clone(),
            poll: Some(options.poll.clone()),
            data_dir: Some(data_dir.clone()),
            attempt_log: options.attempt_log.clone(),
            signing_keys: Some(std::sync::Arc::clone(&signing_key)),
            event_schemas: event_schemas.clone(),
            monitoring_store: options.monitoring_store.clone(),
            monitoring_retention: options.monitoring_retention,
            alert_sweep: options.alert_sweep,
        };
        let api_producer = runtime.kafka.producer("erp-toolkit-api")?;
        tasks.adopt(
            "api producer",
            tokio::spawn({
                let producer = api_producer.clone();
                async move {
                    erp_runtime::producer::watch_fatal(producer).await;
                }
            }),
        );
        let api =
            crate::api::control_plane(&runtime, api_producer, view.clone(), settings, &mut tasks)?;
        let services = Services {
            access: Some(crate::api::access(
                &runtime,
                view.clone(),
                &options.org_id,
                &admin_token,
                options.rate_limit_per_minute,
            )),
            ingest: Some(crate::api::ingest(
                &runtime,
                producer,
                view.clone(),
                crate::api::IngestBounds {
                    body_limit: options.body_limit,
                    // One set of limits for the ingest and the processor of this process.
                    payload_limits: options.processor.payload_limits,
                    mapping_timeout: options.processor.mapping_timeout,
                    produce_timeout: options.produce_timeout,
                },
                event_schemas,
            )),
            api: Some(api),
            schema_registry: Some(schema_registry),
        };
        let metrics_route = match options.metrics_listen {
            Some(_) => crate::api::MetricsRoute::OwnListener,
            None => crate::api::MetricsRoute::AdminOnly,
        };
        let (http_address, server) = crate::api::server(
            &options.listen,
            services,
            runtime.metrics.clone(),
            runtime.readiness.clone(),
            metrics_route,
        )
        .with_context(|| format!("cannot listen on {}", options.listen))?;
        let server_handle = server.handle();
        let serving = tokio::spawn(tasks.watch("http server", server));
        let mut metrics_address = None;
        let mut metrics_server = None;
        if let Some(listen) = &options.metrics_listen {
            let (address, server) = crate::api::metrics_server(
                listen,
                runtime.metrics.clone(),
                runtime.readiness.clone(),
            )
            .with_context(|| format!("cannot listen on {listen}"))?;
            metrics_address = Some(address);
            let handle = server.handle();
            metrics_server = Some((handle, tokio::spawn(tasks.watch("metrics server", server))));
        }

        let processor_settings = ProcessorSettings {
            data_dir: data_dir.join("processor"),
            ..options.processor
        };
        let processor = tokio::spawn(tasks.watch(
            "processor",
            erp_processor::run(runtime.clone(), view.clone(), processor_settings),
        ));
        let dispatcher_settings = DispatcherSettings {
            signing_keys: Some(signing_key),
            ..options.dispatcher
        };
        let dispatcher = tokio::spawn(tasks.watch(
            "dispatcher",
            erp_dispatcher::run(runtime.clone(), view, dispatcher_settings),
        ));
        info!(%http_address, broker = %broker.address(), "standalone running");
        Ok(Self {
            http_address,
            metrics_address,
            broker_address: broker.address(),
            admin_token,
            metrics: runtime.metrics.clone(),
            readiness: runtime.readiness.clone(),
            shutdown,
            server: server_handle,
            serving,
            metrics_server,
            processor,
            dispatcher,
            tasks,
            broker,
        })
    }

    /// The failures of the supervised tasks: the first one should stop the process.
    pub fn failures(&self) -> Failures {
        self.tasks.failures()
    }

    /// Waits until every readiness check passes.
    pub async fn ready(&self, limit: Duration) -> anyhow::Result<()> {
        let started = std::time::Instant::now();
        while !self.readiness.is_ready() {
            if started.elapsed() > limit {
                anyhow::bail!("not ready after {limit:?}: {:?}", self.readiness.checks());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Stops accepting requests, lets the processor finish its batch and flush its store, lets
    /// the dispatcher finish or abandon (uncommitted) its deliveries, then stops the broker.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.server.stop(true).await;
        let _ = join_within("http", self.serving, Duration::from_secs(35)).await;
        if let Some((handle, serving)) = self.metrics_server {
            handle.stop(true).await;
            let _ = join_within("metrics http", serving, Duration::from_secs(35)).await;
        }
        let processed = join_within("processor", self.processor, Duration::from_secs(30)).await;
        let dispatched = join_within("dispatcher", self.dispatcher, Duration::from_secs(30)).await;
        self.tasks.stop().await;
        self.broker.stop().await;
        if let Some(Err(error)) = processed {
            return Err(error.into());
        }
        if let Some(Err(error)) = dispatched {
            return Err(error.into());
        }
        Ok(())
    }
}

/// The deployment's Ed25519 webhook signing key (each organisation's key is derived from it),
/// created in the data directory on first start.
fn signing_key(data_dir: &Path) -> anyhow::Result<std::sync::Arc<SigningKeys>> {
    let path = data_dir.join("signing-key.pem");
    if !path.exists() {
        write_private(&path, &OrgKey::generate_pem()?)
            .with_context(|| format!("cannot store the signing key in {}", path.display()))?;
    }
    Ok(std::sync::Arc::new(SigningKeys::load(&path)?))
}

/// The deployment's secrets key file, created (one random key) in the data directory on first
/// start, owner-readable only, like the admin token.
fn secrets_key(data_dir: &Path) -> anyhow::Result<PathBuf> {
    let path = data_dir.join("secrets-key");
    if !path.exists() {
        let line = erp_runtime::secrets::Keyring::generate_key_line()?;
        write_private(&path, &format!("{line}\n"))
            .with_context(|| format!("cannot store the secrets key in {}", path.display()))?;
    }
    Ok(path)
}

/// The deployment admin token: generated on first start and kept (owner-readable only) in the
/// data directory, so restarts keep it.
fn admin_token(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("admin-token");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let token = existing.trim();
        if !token.is_empty() {
            return Ok(token.to_owned());
        }
    }
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = format!("erpt_{}", URL_SAFE_NO_PAD.encode(bytes));
    write_private(&path, &token)
        .with_context(|| format!("cannot store the admin token in {}", path.display()))?;
    Ok(token)
}

#[cfg(unix)]
fn write_private(path: &Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(content.as_bytes())?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, content: &str) -> std::io::Result<()> {
    std::fs::write(path, content)
}

/// Waits for `task` up to `limit`; a task that does not finish in time is abandoned (its work
/// is uncommitted and will be redone).
async fn join_within<T>(
    name: &str,
    task: tokio::task::JoinHandle<T>,
    limit: Duration,
) -> Option<T> {
    match tokio::time::timeout(limit, task).await {
        Ok(Ok(value)) => Some(value),
        Ok(Err(error)) => {
            tracing::error!(name, %error, "task failed");
            None
        }
        Err(_) => {
            tracing::warn!(name, ?limit, "task did not stop in time");
            None
        }
    }
}
