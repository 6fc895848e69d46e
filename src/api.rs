//! The HTTP server of the roles that serve requests: `ingest`, `api` and `standalone` (both on
//! one listener), each with the operational routes.

use std::net::SocketAddr;

use actix_web::dev::{Server, Service};
use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::Context;
use rdkafka::producer::FutureProducer;

use erp_api::{ApiSettings, ApiState};
use erp_http::Access;
use erp_ingest::IngestState;
use erp_runtime::{ConfigView, Metrics, Readiness, Runtime, Supervisor, health};

/// Which services a listener serves.
#[derive(Clone, Default)]
pub struct Services {
    /// Authentication and the rate budget, shared by both services.
    pub access: Option<web::Data<Access>>,
    /// The ingest service.
    pub ingest: Option<web::Data<IngestState>>,
    /// The control plane.
    pub api: Option<web::Data<ApiState>>,
    /// The schema registry served under `/schema-registry` (standalone, or
    /// `api --serve-schema-registry`).
    pub schema_registry: Option<web::Data<erp_api::schema_registry::RegistryService>>,
}

/// Where `/metrics` is served for an HTTP role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricsRoute {
    /// On the API listener, to the deployment admin token only (no `--metrics-listen`): the
    /// page carries labels of every organisation.
    AdminOnly,
    /// On a listener of its own (`--metrics-listen`); the API listener has no `/metrics`.
    OwnListener,
}

/// The service label of a request on a listener serving `services`.
fn classifier(services: &Services) -> fn(&str) -> &'static str {
    match (services.ingest.is_some(), services.api.is_some()) {
        (true, true) => erp_http::metrics::service_of_path,
        (true, false) => |_| "ingest",
        _ => |_| "api",
    }
}

/// Binds `services` to `listen`, with `/healthz` and `/readyz` (where the probes go) and
/// `/metrics` as `metrics_route` says. Returns the bound address (useful with port 0) and the
/// server to run.
pub fn server(
    listen: &str,
    services: Services,
    metrics: Metrics,
    readiness: Readiness,
    metrics_route: MetricsRoute,
) -> std::io::Result<(SocketAddr, Server)> {
    let http_metrics = erp_http::metrics::HttpMetrics::new(&metrics);
    let service_of = classifier(&services);
    let metrics = web::Data::new(metrics);
    let readiness = web::Data::new(readiness);
    let server = HttpServer::new(move || {
        let services = services.clone();
        let http_metrics = http_metrics.clone();
        App::new()
            .app_data(metrics.clone())
            .app_data(readiness.clone())
            .wrap_fn(move |req, srv| {
                let service = service_of(req.path());
                let http_metrics = http_metrics.clone();
                let api = req.app_data::<web::Data<ApiState>>().cloned();
                let started = std::time::Instant::now();
                let answer = srv.call(req);
                async move {
                    let answer = answer.await;
                    if let (Some(api), Ok(response)) = (&api, &answer) {
                        erp_api::monitoring::access_log::record(api, response, started.elapsed());
                    }
                    let status = match &answer {
                        Ok(response) => response.status(),
                        Err(error) => error.as_response_error().status_code(),
                    };
                    http_metrics.answered(service, status);
                    answer
                }
            })
            .configure(move |cfg| {
                if let Some(access) = services.access {
                    cfg.app_data(access);
                }
                if let Some(ingest) = services.ingest {
                    cfg.app_data(ingest).configure(erp_ingest::routes);
                }
                if let Some(api) = services.api {
                    cfg.app_data(api).configure(erp_api::routes);
                }
                if let Some(registry) = services.schema_registry {
                    cfg.app_data(registry)
                        .configure(erp_api::schema_registry::routes);
                }
            })
            .configure(health::probe_routes)
            .configure(move |cfg| {
                if metrics_route == MetricsRoute::AdminOnly {
                    cfg.route("/metrics", web::get().to(admin_metrics));
                }
            })
            .default_service(web::to(erp_http::not_found))
    })
    .workers(2)
    .disable_signals()
    .shutdown_timeout(30)
    .bind(listen)?;
    let address = server
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| std::io::Error::other("listener has no address"))?;
    Ok((address, server.run()))
}

/// `/metrics` on the API listener: the `Caller` extractor admits the deployment admin token only
/// (`erp_http::auth::ROUTES`).
async fn admin_metrics(_admin: erp_http::Caller, metrics: web::Data<Metrics>) -> HttpResponse {
    health::metrics_page(&metrics)
}

/// The metrics listener of an HTTP role (`--metrics-listen`): `/metrics`, `/healthz`, `/readyz`.
pub fn metrics_server(
    listen: &str,
    metrics: Metrics,
    readiness: Readiness,
) -> std::io::Result<(SocketAddr, Server)> {
    health::serve_ops(listen, metrics, readiness)
}

/// Authentication for the services of one process.
pub fn access(
    runtime: &Runtime,
    view: ConfigView,
    org_id: &str,
    admin_token: &str,
    rate_limit_per_minute: u32,
) -> web::Data<Access> {
    web::Data::new(Access {
        org_id: org_id.to_owned(),
        admin_token: admin_token.to_owned(),
        rate_limit: erp_http::rate_limit::RateLimiter::new(rate_limit_per_minute),
        view,
        metrics: erp_http::metrics::HttpMetrics::new(&runtime.metrics),
    })
}

/// The bounds an ingest tier applies to each request: sizes, evaluation time, Kafka's answer.
pub struct IngestBounds {
    /// Largest request body accepted, in bytes.
    pub body_limit: usize,
    /// Limits every accepted payload is checked against (the processor's, too).
    pub payload_limits: erp_schemas::limits::PayloadLimits,
    /// Time limit of one JSONata evaluation in a simulation.
    pub mapping_timeout: std::time::Duration,
    /// Longest wait for Kafka's acknowledgement before answering 503.
    pub produce_timeout: std::time::Duration,
}

/// The ingest service's state.
pub fn ingest(
    runtime: &Runtime,
    producer: FutureProducer,
    view: ConfigView,
    bounds: IngestBounds,
    event_schemas: Option<std::sync::Arc<erp_runtime::event_schemas::EventSchemas>>,
) -> web::Data<IngestState> {
    let producer = std::sync::Arc::new(erp_runtime::producer::RecoveringProducer::new(
        producer,
        runtime.kafka.clone(),
        "erp-toolkit-ingest",
    ));
    #[cfg(debug_assertions)]
    inject_fatal_producer_error(&producer);
    web::Data::new(IngestState {
        view,
        producer,
        topics: runtime.kafka.topics.clone(),
        wire: runtime.kafka.wire.clone(),
        metrics: erp_ingest::metrics::IngestMetrics::new(&runtime.metrics),
        body_limit: bounds.body_limit,
        payload_limits: bounds.payload_limits,
        mapping_timeout: bounds.mapping_timeout,
        event_schemas,
        produce_timeout: bounds.produce_timeout,
    })
}

/// Test builds only: `ERP_TOOLKIT_TEST_FATAL_PRODUCER_AFTER_MS=<ms>` makes the ingest's producer
/// fail fatally that long after start, as a broker that fences it would.
#[cfg(debug_assertions)]
fn inject_fatal_producer_error(
    producer: &std::sync::Arc<erp_runtime::producer::RecoveringProducer>,
) {
    let Some(after) = std::env::var("ERP_TOOLKIT_TEST_FATAL_PRODUCER_AFTER_MS")
        .ok()
        .and_then(|ms| ms.parse::<u64>().ok())
    else {
        return;
    };
    let producer = std::sync::Arc::clone(producer);
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(after)).await;
        tracing::warn!("injecting a fatal error into the ingest's producer (test build)");
        producer.inject_fatal_error();
    });
}

/// The control plane's state, its background tasks handed to `tasks`.
pub fn control_plane(
    runtime: &Runtime,
    producer: FutureProducer,
    view: ConfigView,
    settings: ApiSettings,
    tasks: &mut Supervisor,
) -> anyhow::Result<web::Data<ApiState>> {
    let started = ApiState::start(runtime, producer, view, settings)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("cannot start the control plane")?;
    for (name, task) in started.tasks {
        tasks.adopt(name, task);
    }
    Ok(started.state)
}

/// Starts the schema registry this process serves (kept in `erp.schemas`) and makes it the
/// source of schema ids of this process's own Avro topics, unless an external registry is given
/// (`--schema-registry-url` wins: then that one is where ids come from).
pub async fn schema_registry(
    runtime: &mut Runtime,
    wire: &erp_runtime::settings::WireArgs,
    producer: FutureProducer,
    tasks: &mut Supervisor,
) -> anyhow::Result<web::Data<erp_api::schema_registry::RegistryService>> {
    let (store, task) = erp_runtime::schema_store::SchemaStore::start(runtime, producer)
        .await
        .context("cannot load the schema registry")?;
    tasks.adopt("schema registry", task);
    let local: std::sync::Arc<dyn erp_runtime::wire::SchemaSource> = store.clone();
    runtime.kafka.wire = wire.wire(runtime.kafka.topics.clone(), Some(local))?;
    Ok(web::Data::new(erp_api::schema_registry::RegistryService {
        store,
    }))
}
