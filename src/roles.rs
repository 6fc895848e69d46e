//! Each role on its own against a Kafka cluster, until SIGINT or SIGTERM.

use actix_web::web;
use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tracing::info;

use erp_ingest::ApiState;
use erp_runtime::settings::KafkaArgs;
use erp_runtime::topics::{ensure_topics, standard_topics};
use erp_runtime::{ConfigView, ConfigWriter, Metrics, Readiness, Runtime, health};

use crate::cli::{DispatcherArgs, IngestArgs, ProcessorArgs};

async fn runtime(kafka: &KafkaArgs, shutdown: CancellationToken) -> anyhow::Result<Runtime> {
    let kafka = kafka.settings()?;
    ensure_topics(&kafka, &standard_topics(&kafka))
        .await
        .with_context(|| format!("cannot prepare topics on {}", kafka.brokers))?;
    Ok(Runtime {
        kafka,
        metrics: Metrics::new(),
        readiness: Readiness::new(),
        shutdown,
    })
}

/// `erp-toolkit ingest`
pub async fn ingest(args: IngestArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let runtime = runtime(&args.kafka, shutdown.clone()).await?;
    let secrets = crate::cli::load_secrets(args.api.secrets_key_file.as_deref())?;
    let (view, view_task) = ConfigView::start(&runtime, "ingest", secrets).await?;
    crate::cli::check_secrets(&view).await?;
    let producer = runtime.kafka.producer("erp-toolkit-ingest")?;
    let (acks, ack_tasks) =
        erp_ingest::acks::AckTracker::start(&runtime, producer.clone(), args.api.ack_settings())
            .map_err(|e| anyhow::anyhow!("ACK tracking: {e}"))?;
    let (poll, poll_tasks) = if args.api.poll_queue {
        let (queue, tasks) = erp_ingest::poll::PollQueue::start(
            &runtime,
            producer.clone(),
            args.api.poll_settings(),
        )
        .map_err(|e| anyhow::anyhow!("poll queue: {e}"))?;
        (Some(queue), tasks)
    } else {
        (None, Vec::new())
    };
    let (event_log, event_log_task) = match &args.data_dir {
        Some(dir) => {
            let (log, task) =
                erp_ingest::event_log::EventLog::start(&runtime, &dir.join("event-log"))
                    .map_err(|e| anyhow::anyhow!("event log: {e}"))?;
            (Some(log), Some(task))
        }
        None => (None, None),
    };
    let (attempt_log, attempt_log_tasks) = match &args.data_dir {
        Some(dir) => {
            let (log, tasks) = erp_ingest::attempt_log::AttemptLog::start(
                &runtime,
                &dir.join("attempt-log"),
                args.api.attempt_log_settings(),
            )
            .map_err(|e| anyhow::anyhow!("attempt log: {e}"))?;
            (Some(log), tasks)
        }
        None => (None, Vec::new()),
    };
    let state = web::Data::new(ApiState {
        org_id: args.api.org_id.clone(),
        admin_token: args.admin_token.clone(),
        rate_limit: erp_ingest::rate_limit::RateLimiter::new(args.api.rate_limit_per_minute),
        config: ConfigWriter::new(&runtime, producer.clone(), view),
        producer,
        topics: runtime.kafka.topics.clone(),
        metrics: ApiState::metrics_in(&runtime.metrics),
        body_limit: args.api.body_limit,
        mapping_timeout: std::time::Duration::from_millis(args.mapping_timeout_ms.max(1)),
        event_schemas: args.api.event_schemas()?,
        acks: Some(acks),
        event_log,
        attempt_log,
        signing_public_key: args.api.signing_public_key()?,
        poll,
    });
    let recovery_tasks = erp_ingest::recovery::resume(&state);
    let (address, server) = crate::api::server(
        &args.listen,
        state,
        runtime.metrics.clone(),
        runtime.readiness.clone(),
    )?;
    info!(%address, "ingest API listening");
    let handle = server.handle();
    let serving = tokio::spawn(server);
    shutdown.cancelled().await;
    handle.stop(true).await;
    let _ = serving.await;
    view_task.abort();
    ack_tasks
        .iter()
        .chain(&poll_tasks)
        .chain(&event_log_task)
        .chain(&attempt_log_tasks)
        .chain(&recovery_tasks)
        .for_each(|t| t.abort());
    Ok(())
}

/// `erp-toolkit processor`
pub async fn processor(args: ProcessorArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let runtime = runtime(&args.kafka, shutdown.clone()).await?;
    // The processor neither signs nor authenticates: it has no use for webhook secrets.
    let (view, view_task) = ConfigView::start(&runtime, "processor", None).await?;
    let (address, server) = health::serve_ops(
        &args.listen,
        runtime.metrics.clone(),
        runtime.readiness.clone(),
    )?;
    info!(%address, "processor metrics and health listening");
    let handle = server.handle();
    let serving = tokio::spawn(server);
    let settings = args.processing.settings(args.data_dir.join("processor"));
    let outcome = erp_processor::run(runtime, view, settings).await;
    handle.stop(true).await;
    let _ = serving.await;
    view_task.abort();
    Ok(outcome?)
}

/// `erp-toolkit dispatcher`
pub async fn dispatcher(args: DispatcherArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut settings = args.delivery.settings()?;
    if let Some(path) = &args.signing_key_file {
        settings.signing_key = Some(std::sync::Arc::new(erp_webhooks::org_key::OrgKey::load(
            path,
        )?));
    }
    let runtime = runtime(&args.kafka, shutdown.clone()).await?;
    let secrets = crate::cli::load_secrets(args.secrets_key_file.as_deref())?;
    let (view, view_task) = ConfigView::start(&runtime, "dispatcher", secrets).await?;
    crate::cli::check_secrets(&view).await?;
    let (address, server) = health::serve_ops(
        &args.listen,
        runtime.metrics.clone(),
        runtime.readiness.clone(),
    )?;
    info!(%address, "dispatcher metrics and health listening");
    let handle = server.handle();
    let serving = tokio::spawn(server);
    let outcome = erp_dispatcher::run(runtime, view, settings).await;
    handle.stop(true).await;
    let _ = serving.await;
    view_task.abort();
    Ok(outcome?)
}
