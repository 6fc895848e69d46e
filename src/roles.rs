//! Each role on its own against a Kafka cluster, until SIGINT or SIGTERM.

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tracing::info;

use erp_runtime::settings::KafkaArgs;
use erp_runtime::topics::{ensure_topics, standard_topics};
use erp_runtime::{
    ConfigView, Failures, Metrics, Readiness, ReadyGauge, Runtime, Supervisor, health,
};

use crate::api::{MetricsRoute, Services};
use crate::cli::{DispatcherArgs, IngestArgs, ProcessorArgs};

async fn runtime(
    kafka: &KafkaArgs,
    role: &str,
    shutdown: CancellationToken,
) -> anyhow::Result<Runtime> {
    let kafka = kafka.settings()?;
    ensure_topics(&kafka, &standard_topics(&kafka))
        .await
        .with_context(|| format!("cannot prepare topics on {}", kafka.brokers))?;
    let runtime = Runtime {
        kafka,
        metrics: Metrics::new(),
        readiness: Readiness::new(),
        shutdown,
    };
    ReadyGauge::export(&runtime.metrics, &runtime.readiness, role);
    Ok(runtime)
}

/// Tracks whether the brokers answer, as the readiness check `kafka` with a reason.
fn watch_brokers(runtime: &Runtime, tasks: &mut Supervisor) {
    let flag = runtime.readiness.flag(erp_runtime::broker_watch::CHECK);
    tasks.spawn(
        "broker watch",
        erp_runtime::broker_watch::watch(runtime.kafka.clone(), flag, runtime.shutdown.clone()),
    );
}

/// The configuration view and producer every HTTP role starts from.
async fn http_role(
    runtime: &Runtime,
    args: &IngestArgs,
    name: &str,
    tasks: &mut Supervisor,
) -> anyhow::Result<(ConfigView, rdkafka::producer::FutureProducer)> {
    watch_brokers(runtime, tasks);
    let secrets = crate::cli::load_secrets(args.api.secrets_key_file.as_deref())?;
    let (view, view_task) = ConfigView::start(runtime, name, secrets).await?;
    tasks.adopt("configuration view", view_task);
    crate::cli::check_secrets(&view).await?;
    let producer = runtime.kafka.producer("erp-toolkit-ingest")?;
    Ok((view, producer))
}

/// Serves `services` on `listen` (and the metrics on `metrics_listen`, if given) until
/// shutdown, then stops the servers and `tasks`.
async fn serve(
    runtime: &Runtime,
    listen: &str,
    metrics_listen: Option<&str>,
    services: Services,
    what: &str,
    tasks: Supervisor,
) -> anyhow::Result<()> {
    let metrics_route = match metrics_listen {
        Some(_) => MetricsRoute::OwnListener,
        None => MetricsRoute::AdminOnly,
    };
    let (address, server) = crate::api::server(
        listen,
        services,
        runtime.metrics.clone(),
        runtime.readiness.clone(),
        metrics_route,
    )?;
    info!(%address, "{what} listening");
    let mut handles = vec![server.handle()];
    let mut serving = vec![tokio::spawn(tasks.watch("http server", server))];
    if let Some(metrics_listen) = metrics_listen {
        let (address, server) = crate::api::metrics_server(
            metrics_listen,
            runtime.metrics.clone(),
            runtime.readiness.clone(),
        )
        .with_context(|| format!("cannot listen on {metrics_listen}"))?;
        info!(%address, "{what} metrics listening");
        handles.push(server.handle());
        serving.push(tokio::spawn(tasks.watch("metrics server", server)));
    }
    let failures = tasks.failures();
    let failure = until_stop(&runtime.shutdown, &failures).await;
    let drain = async {
        for handle in handles {
            handle.stop(true).await;
        }
        for server in serving {
            let _ = server.await;
        }
        tasks.stop().await;
        Ok(())
    };
    stopped(drain, failure).await
}

/// How long a process whose task failed drains before it exits anyway.
pub const FAILURE_DRAIN: std::time::Duration = std::time::Duration::from_secs(40);

/// How long a process whose task failed keeps answering (503 on `/readyz`) before it drains.
pub const FAILURE_LINGER: std::time::Duration = std::time::Duration::from_secs(2);

/// Waits for the shutdown signal or the first task failure (then cancels `shutdown`, so every
/// part of the role drains). Returns the failure.
pub async fn until_stop(shutdown: &CancellationToken, failures: &Failures) -> Option<String> {
    let failure = tokio::select! {
        () = shutdown.cancelled() => None,
        failure = failures.first() => Some(failure),
    };
    if failure.is_some() {
        // Not ready, still listening: load balancers and probes see the 503 before the
        // listener closes.
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = tokio::time::sleep(FAILURE_LINGER) => {}
        }
    }
    shutdown.cancel();
    // A failure while stopping (a task ending with an error) still counts.
    failure.or_else(|| failures.failed())
}

/// Runs the drain (bounded when a task failed) and turns a failure into the process's error.
async fn stopped(
    drain: impl std::future::Future<Output = anyhow::Result<()>>,
    failure: Option<String>,
) -> anyhow::Result<()> {
    match failure {
        None => drain.await,
        Some(failure) => {
            let _ = tokio::time::timeout(FAILURE_DRAIN, drain).await;
            Err(anyhow::anyhow!("stopped because {failure}"))
        }
    }
}

/// `erp-toolkit ingest`: the inbound events and the mapping simulation.
pub async fn ingest(args: IngestArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let runtime = runtime(&args.kafka, "ingest", shutdown.clone()).await?;
    let mut tasks = Supervisor::watching(&runtime.readiness, &runtime.shutdown);
    let (view, producer) = http_role(&runtime, &args, "ingest", &mut tasks).await?;
    runtime.kafka.wire.prepare().await?;
    let services = Services {
        access: Some(access_of(&runtime, &args, view.clone())),
        ingest: Some(crate::api::ingest(
            &runtime,
            producer,
            view,
            crate::api::IngestBounds {
                body_limit: args.api.body_limit,
                payload_limits: args.payload_limits.limits(),
                mapping_timeout: mapping_timeout(&args),
                produce_timeout: args.api.produce_timeout(),
            },
            args.api.event_schemas()?,
        )),
        api: None,
        schema_registry: None,
    };
    let metrics_listen = args.metrics_listen.as_deref();
    serve(
        &runtime,
        &args.listen,
        metrics_listen,
        services,
        "ingest",
        tasks,
    )
    .await
}

/// `erp-toolkit api`: the control plane.
pub async fn api(args: IngestArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut runtime = runtime(&args.kafka, "api", shutdown.clone()).await?;
    let mut tasks = Supervisor::watching(&runtime.readiness, &runtime.shutdown);
    let (view, producer) = http_role(&runtime, &args, "api", &mut tasks).await?;
    // Many parts of the control plane hold this producer: after a fatal error the role stops
    // and is restarted rather than refusing every write for ever.
    tasks.adopt(
        "api producer",
        tokio::spawn({
            let producer = producer.clone();
            async move {
                erp_runtime::producer::watch_fatal(producer).await;
            }
        }),
    );
    let schema_registry = match args.serve_schema_registry {
        true => Some(
            crate::api::schema_registry(
                &mut runtime,
                &args.kafka.wire,
                producer.clone(),
                &mut tasks,
            )
            .await?,
        ),
        false => None,
    };
    runtime.kafka.wire.prepare().await?;
    let settings = args.api_settings()?;
    let state = crate::api::control_plane(&runtime, producer, view.clone(), settings, &mut tasks)?;
    let services = Services {
        access: Some(access_of(&runtime, &args, view)),
        ingest: None,
        api: Some(state),
        schema_registry,
    };
    let metrics_listen = args.metrics_listen.as_deref();
    let what = "control plane API";
    serve(
        &runtime,
        &args.listen,
        metrics_listen,
        services,
        what,
        tasks,
    )
    .await
}

fn access_of(
    runtime: &Runtime,
    args: &IngestArgs,
    view: ConfigView,
) -> actix_web::web::Data<erp_http::Access> {
    crate::api::access(
        runtime,
        view,
        &args.api.org_id,
        &args.admin_token,
        args.api.rate_limit_per_minute,
    )
}

fn mapping_timeout(args: &IngestArgs) -> std::time::Duration {
    std::time::Duration::from_millis(args.mapping_timeout_ms.max(1))
}

/// `erp-toolkit processor`
pub async fn processor(args: ProcessorArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut runtime = runtime(&args.kafka, "processor", shutdown.clone()).await?;
    runtime.kafka.group_instance_id = args.group_instance_id.clone();
    // The processor neither signs nor authenticates: it has no use for webhook secrets.
    let mut tasks = Supervisor::watching(&runtime.readiness, &runtime.shutdown);
    watch_brokers(&runtime, &mut tasks);
    let (view, view_task) = ConfigView::start(&runtime, "processor", None).await?;
    tasks.adopt("configuration view", view_task);
    let settings = args.processing.settings(args.data_dir.join("processor"));
    serve_worker(runtime, &args.listen, tasks, "processor", move |runtime| {
        erp_processor::run(runtime, view, settings)
    })
    .await
}

/// `erp-toolkit dispatcher`
pub async fn dispatcher(args: DispatcherArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut settings = args.delivery.settings()?;
    if let Some(path) = &args.signing_key_file {
        settings.signing_keys = Some(std::sync::Arc::new(
            erp_webhooks::org_key::SigningKeys::load(path)?,
        ));
    }
    let mut runtime = runtime(&args.kafka, "dispatcher", shutdown.clone()).await?;
    runtime.kafka.group_instance_id = args.group_instance_id.clone();
    let secrets = crate::cli::load_secrets(args.secrets_key_file.as_deref())?;
    let mut tasks = Supervisor::watching(&runtime.readiness, &runtime.shutdown);
    watch_brokers(&runtime, &mut tasks);
    let (view, view_task) = ConfigView::start(&runtime, "dispatcher", secrets).await?;
    tasks.adopt("configuration view", view_task);
    crate::cli::check_secrets(&view).await?;
    serve_worker(runtime, &args.listen, tasks, "dispatcher", move |runtime| {
        erp_dispatcher::run(runtime, view, settings)
    })
    .await
}

/// The tail every worker role (processor, dispatcher) shares: the ops listener (`/metrics`,
/// `/healthz`, `/readyz`), the role's main task under the supervisor, and the drain — the main
/// task first (it commits its positions), then the listener, then the other tasks.
async fn serve_worker<F, E>(
    runtime: Runtime,
    listen: &str,
    tasks: Supervisor,
    name: &'static str,
    main: impl FnOnce(Runtime) -> F,
) -> anyhow::Result<()>
where
    F: std::future::Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display + Send + Sync + 'static,
    anyhow::Error: From<E>,
{
    let (address, server) =
        health::serve_ops(listen, runtime.metrics.clone(), runtime.readiness.clone())?;
    info!(%address, "{name} metrics and health listening");
    let handle = server.handle();
    let serving = tokio::spawn(tasks.watch("http server", server));
    let shutdown = runtime.shutdown.clone();
    let main = tokio::spawn(tasks.watch(name, main(runtime)));
    let failure = until_stop(&shutdown, &tasks.failures()).await;
    stopped(
        async {
            let outcome = main.await;
            handle.stop(true).await;
            let _ = serving.await;
            tasks.stop().await;
            Ok(outcome??)
        },
        failure,
    )
    .await
}
