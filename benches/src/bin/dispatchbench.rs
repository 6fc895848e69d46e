//! Dispatcher throughput: signed deliveries/s from `erp.core.events` to a local receiver, against
//! the same receiver's capacity driven by a plain HTTP load loop (same body, same concurrency,
//! no Kafka, no signing) measured in the same run.
//!
//! N core events addressed to one webhook endpoint are produced first; then, per round, the
//! plain loop posts N requests with `--max-in-flight` concurrent requests, and a dispatcher (in
//! this process, on the embedded broker, fresh consumer group) delivers the N events. Rounds
//! alternate which goes first; the median ratio is reported.
//!
//! ```sh
//! cargo run --release -p erp-benches --bin dispatchbench -- --events 10000 --rounds 3
//! ```

use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Parser;
use futures::StreamExt;
use serde_json::json;

use erp_dispatcher::{DestinationPolicy, DispatcherSettings};
use erp_runtime::topics::{ensure_topics, standard_topics};
use erp_runtime::{ConfigView, KafkaSettings, Metrics, Readiness, Runtime, kafka};
use erp_schemas::config::{ConfigChange, ConfigRecord};
use erp_toolkit::broker::EmbeddedBroker;
use erp_toolkit::receiver::Receiver;

#[derive(Parser, Debug)]
#[command(about = "Dispatcher throughput against a plain HTTP loop")]
struct Args {
    /// Core events to deliver per round.
    #[arg(long, default_value_t = 10_000)]
    events: usize,
    /// Partitions of the partitioned topics.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// Requests in flight at once (the dispatcher's `--max-in-flight` and the loop's).
    #[arg(long, default_value_t = 64)]
    max_in_flight: usize,
    /// Measurement rounds (the median ratio is reported).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

/// A core event of about the size of a mapped meter reading.
fn body(n: usize) -> serde_json::Value {
    json!({"_event_id": format!("01JBENCH{n:018}"), "_event_name": "BenchMessage",
           "_event_time": "2025-03-01T08:00:00.000Z", "_org_id": "bench",
           "_delivery": {"type": "webhook", "webhook_id": "wh-bench"},
           "payload": {"meter_number": format!("M-{:04}", n % 97), "reading": {"value": 1000.5 + n as f64,
                       "obis": "1-0:1.8.0", "read_at": "2025-01-15T10:00:00Z", "unit": "kWh", "source": "ERP"},
                       "contract_number": format!("V-{n:08}"), "customer_number": format!("C-{:06}", n % 5000)}})
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let mut broker =
        EmbeddedBroker::start(&dir.path().join("kafka"), "127.0.0.1:0".parse()?).await?;
    let mut settings = KafkaSettings::new(broker.address().to_string());
    settings.partitions = args.partitions;
    ensure_topics(&settings, &standard_topics(&settings)).await?;
    let producer = settings.producer("dispatchbench")?;
    let receiver = Receiver::start("127.0.0.1:0", None, false).await?;

    let webhook = serde_json::from_value(json!({
        "id": "wh-bench", "name": "bench", "eventName": "event_BenchMessage", "url": receiver.url(),
        "retryPolicy": {"enabled": true, "maxAttempts": 3},
        "creationTime": "2025-01-01T00:00:00.000Z", "updatedTime": "2025-01-01T00:00:00.000Z"
    }))?;
    let record = ConfigRecord {
        org_id: "bench".into(),
        at: "2025-01-01T00:00:00.000Z".into(),
        actor: None,
        change: ConfigChange::WebhookUpserted {
            webhook,
            signing_secret: erp_toolkit::signing::new_secret(),
            previous_secrets: Vec::new(),
        },
    };
    kafka::send(
        &producer,
        &settings.topics.config(),
        "wh-bench",
        &serde_json::to_vec(&record)?,
    )
    .await?;
    let core = settings.topics.core_events();
    let bodies: Vec<(String, Vec<u8>)> = (0..args.events)
        .map(|n| (format!("k{}", n % 64), body(n).to_string().into_bytes()))
        .collect();
    let sent = futures::stream::iter(bodies.iter())
        .map(|(key, value)| kafka::send(&producer, &core, key, value))
        .buffer_unordered(1000)
        .collect::<Vec<_>>()
        .await;
    for outcome in sent {
        outcome?;
    }
    println!(
        "dispatchbench: {} events, {} partitions, {} in flight, {} rounds",
        args.events, args.partitions, args.max_in_flight, args.rounds
    );

    let client = reqwest::Client::new();
    let url = receiver.url();
    let mut ratios = Vec::new();
    for round in 0..args.rounds.max(1) {
        let (mut plain, mut dispatched) = (None, None);
        for plain_first in [round % 2 == 0, round % 2 != 0] {
            if plain_first {
                let before = receiver.count();
                let started = Instant::now();
                let answers = futures::stream::iter(bodies.iter())
                    .map(|(_, value)| {
                        client
                            .post(&url)
                            .header("content-type", "application/json")
                            .body(value.clone())
                            .send()
                    })
                    .buffer_unordered(args.max_in_flight)
                    .collect::<Vec<_>>()
                    .await;
                let elapsed = started.elapsed();
                if answers.iter().any(|a| a.is_err()) || receiver.count() - before < args.events {
                    bail!("the plain loop lost requests");
                }
                plain = Some(args.events as f64 / elapsed.as_secs_f64());
            } else {
                dispatched = Some(
                    dispatch(&settings, &receiver, args.events, args.max_in_flight, round).await?,
                );
            }
        }
        let (Some(plain), Some(dispatched)) = (plain, dispatched) else {
            bail!("round {round} did not measure both");
        };
        ratios.push(dispatched / plain);
        println!(
            "round {round}: plain HTTP loop {plain:>7.0} requests/s, dispatcher {dispatched:>7.0} \
             signed deliveries/s, ratio {:.3}",
            dispatched / plain
        );
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "median dispatcher / plain loop: {:.3}  (rounds: {})",
        ratios[ratios.len() / 2],
        ratios
            .iter()
            .map(|r| format!("{r:.3}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    broker.stop().await;
    Ok(())
}

/// Runs a dispatcher with a fresh consumer group until the receiver got `count` more requests;
/// returns deliveries/s (group join included).
async fn dispatch(
    settings: &KafkaSettings,
    receiver: &Receiver,
    count: usize,
    max_in_flight: usize,
    round: usize,
) -> anyhow::Result<f64> {
    let runtime = Runtime {
        kafka: settings.clone(),
        metrics: Metrics::new(),
        readiness: Readiness::new(),
        shutdown: Default::default(),
    };
    let (view, view_task) = ConfigView::start(&runtime, "dispatchbench", None).await?;
    view.wait_loaded(Duration::from_secs(60)).await?;
    let dispatcher = DispatcherSettings {
        group_id: format!("dispatchbench-{round}"),
        max_in_flight,
        // One endpoint: let it use every slot, as the plain loop does.
        endpoint_concurrency: max_in_flight,
        destinations: DestinationPolicy::loopback_allowed(),
        ..DispatcherSettings::default()
    };
    let before = receiver.count();
    let started = Instant::now();
    let task = tokio::spawn(erp_dispatcher::run(runtime.clone(), view, dispatcher));
    while receiver.count() - before < count {
        if task.is_finished() || started.elapsed() > Duration::from_secs(600) {
            bail!("dispatcher stopped at {}", receiver.count() - before);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    runtime.shutdown.cancel();
    let _ = task.await;
    view_task.abort();
    Ok(count as f64 / elapsed.as_secs_f64())
}
