use clap::Parser;

use erp_toolkit::cli::{Cli, Command};
use erp_toolkit::roles;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    erp_runtime::telemetry::init(&cli.log);
    let shutdown = erp_runtime::shutdown::on_signal();
    match cli.command {
        #[cfg(feature = "embedded-broker")]
        Command::Standalone(args) => standalone(args, shutdown).await,
        #[cfg(feature = "embedded-broker")]
        Command::Broker(args) => {
            let mut broker =
                erp_toolkit::broker::EmbeddedBroker::start(&args.data_dir, args.listen).await?;
            println!("broker listening on {}", broker.address());
            shutdown.cancelled().await;
            broker.stop().await;
            Ok(())
        }
        Command::Ingest(args) => roles::ingest(args, shutdown).await,
        Command::Api(args) => roles::api(args, shutdown).await,
        Command::Processor(args) => roles::processor(args, shutdown).await,
        Command::Dispatcher(args) => roles::dispatcher(args, shutdown).await,
        Command::Replay(args) => {
            let exit = erp_toolkit::ops::replay::run(args).await;
            std::process::exit(exit as i32)
        }
        Command::Blueprint(args) => {
            let exit = erp_toolkit::ops::blueprint::run(args).await;
            std::process::exit(exit as i32)
        }
        Command::Events(args) => {
            let exit = erp_toolkit::ops::events::run(args).await;
            std::process::exit(exit as i32)
        }
        Command::Dlq(args) => {
            let exit = erp_toolkit::ops::dlq::run(args).await;
            std::process::exit(exit as i32)
        }
        Command::Groups(args) => {
            let exit = erp_toolkit::ops::groups::run(args).await;
            std::process::exit(exit as i32)
        }
        Command::WebhookReceiver(args) => {
            let receiver =
                erp_toolkit::receiver::Receiver::start(&args.listen, args.secret, true).await?;
            println!("receiving webhooks at {}", receiver.url());
            shutdown.cancelled().await;
            receiver.stop().await;
            Ok(())
        }
    }
}

#[cfg(feature = "embedded-broker")]
async fn standalone(
    args: erp_toolkit::cli::StandaloneArgs,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    use erp_toolkit::{Standalone, StandaloneOptions};

    // Standalone runs receivers on the same machine (the walkthrough's webhook-receiver), so
    // loopback destinations are allowed on top of the flags.
    let mut dispatcher = args.delivery.settings()?;
    dispatcher.destinations.allow_loopback();
    let options = StandaloneOptions {
        wire: args.wire.clone(),
        listen: args.listen.clone(),
        metrics_listen: args.metrics_listen.clone(),
        broker_listen: args.broker_listen,
        partitions: args.partitions,
        org_id: args.api.org_id.clone(),
        body_limit: args.api.body_limit,
        rate_limit_per_minute: args.api.rate_limit_per_minute,
        core_event_schemas: args.api.core_event_schemas.clone(),
        signing_key_file: args.api.signing_key_file.clone(),
        secrets_key_file: args.api.secrets_key_file.clone(),
        acks: args.api.ack_settings(),
        poll: args.api.poll_settings(),
        attempt_log: args.api.attempt_log_settings(),
        produce_timeout: args.api.produce_timeout(),
        monitoring_store: args.api.monitoring_store.clone(),
        monitoring_retention: args.api.monitoring_retention(),
        alert_sweep: std::time::Duration::from_secs(args.api.alert_sweep_secs),
        processor: args.processing.settings(args.data_dir.join("processor")),
        dispatcher,
        ..StandaloneOptions::new(args.data_dir.clone())
    };
    let running = Standalone::start(options, shutdown.clone()).await?;
    println!("erp-toolkit standalone");
    println!("  API:         http://{}", running.http_address);
    match running.metrics_address {
        Some(address) => println!("  Metrics:     http://{address}/metrics"),
        None => println!(
            "  Metrics:     http://{}/metrics (admin token; --metrics-listen serves it without)",
            running.http_address
        ),
    }
    println!("  Kafka:       {}", running.broker_address);
    println!("  data:        {}", args.data_dir.display());
    println!("  admin token: {}", running.admin_token);
    println!("Ctrl-C stops it.");
    let failures = running.failures();
    match roles::until_stop(&shutdown, &failures).await {
        None => running.stop().await,
        Some(failure) => {
            // Bounded: a process whose task died must not hang in its drain.
            let _ = tokio::time::timeout(roles::FAILURE_DRAIN, running.stop()).await;
            Err(anyhow::anyhow!("stopped because {failure}"))
        }
    }
}
