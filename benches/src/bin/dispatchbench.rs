//! Dispatcher throughput: signed deliveries/s from `erp.core.events` to a local receiver, and
//! signed events/s when the endpoint takes batches (`batch: {maxEvents}`), against the same
//! receiver's capacity driven by a plain HTTP load loop (same body, same concurrency, no Kafka,
//! no signing) measured in the same run.
//!
//! N core events addressed to one webhook endpoint are produced first; then, per round, the
//! plain loop posts N requests with `--max-in-flight` concurrent requests, a dispatcher (in this
//! process, on the embedded broker, fresh consumer group) delivers the N events one per request,
//! and another delivers them with the endpoint switched to batches of `--batch-size`. Rounds
//! rotate which goes first; the median ratios are reported, from each dispatcher's start (its
//! group join included) and in steady state (from its first delivery on).
//!
//! ```sh
//! cargo run --release -p erp-benches --bin dispatchbench -- --events 10000 --rounds 3
//! ```

use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Parser;
use futures::StreamExt;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::json;

use erp_dispatcher::DispatcherSettings;
use erp_runtime::topics::{ensure_topics, standard_topics};
use erp_runtime::{ConfigView, KafkaSettings, Metrics, Readiness, Runtime, kafka};
use erp_schemas::config::{ConfigChange, ConfigRecord};
use erp_toolkit::broker::EmbeddedBroker;
use erp_toolkit::receiver::Receiver;
use erp_webhooks::DestinationPolicy;

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
    /// Events per request of the batched run.
    #[arg(long, default_value_t = 50)]
    batch_size: usize,
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

    configure(&settings, &producer, &receiver.url(), None).await?;
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
    let mut ratios: [Vec<f64>; 6] = Default::default();
    for round in 0..args.rounds.max(1) {
        let (mut plain, mut single, mut batched) = (0.0, Rates::default(), Rates::default());
        for step in 0..3 {
            match (step + round) % 3 {
                0 => {
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
                    if answers.iter().any(|a| a.is_err()) || receiver.count() - before < args.events
                    {
                        bail!("the plain loop lost requests");
                    }
                    plain = args.events as f64 / elapsed.as_secs_f64();
                }
                1 => {
                    configure(&settings, &producer, &url, None).await?;
                    let group = format!("dispatchbench-single-{round}");
                    single = dispatch(&settings, &receiver, &args, &group, 1).await?;
                }
                _ => {
                    configure(&settings, &producer, &url, Some(args.batch_size)).await?;
                    let group = format!("dispatchbench-batched-{round}");
                    batched =
                        dispatch(&settings, &receiver, &args, &group, args.batch_size).await?;
                }
            }
        }
        ratios[0].push(single.total / plain);
        ratios[1].push(batched.total / plain);
        ratios[2].push(batched.total / single.total);
        ratios[3].push(single.steady / plain);
        ratios[4].push(batched.steady / single.steady);
        // The ceiling of any delivery loop here: reading the events back, nothing else.
        let read = read_rate(&settings, &core, args.events).await?;
        ratios[5].push(batched.steady / read);
        println!(
            "round {round}: plain HTTP loop {plain:>7.0} requests/s, dispatcher {:>7.0} \
             signed deliveries/s (ratio {:.3}; steady {:.0}), batched {:>7.0} signed events/s \
             in requests of up to {} (ratio {:.3}; {:.1}x single; steady {:.0}); reading the \
             events alone {read:>7.0} records/s",
            single.total,
            single.total / plain,
            single.steady,
            batched.total,
            args.batch_size,
            batched.total / plain,
            batched.total / single.total,
            batched.steady,
        );
    }
    for (name, mut values) in [
        "single / plain loop",
        "batched events / plain loop",
        "batched / single",
        "single / plain loop, steady state",
        "batched / single, steady state",
        "batched steady state / reading the events alone",
    ]
    .into_iter()
    .zip(ratios)
    {
        values.sort_by(f64::total_cmp);
        println!(
            "median {name}: {:.3}  (rounds: {})",
            values[values.len() / 2],
            values
                .iter()
                .map(|r| format!("{r:.3}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    broker.stop().await;
    Ok(())
}

/// Records/s of reading the first `count` records of `topic` from the beginning with one
/// reader over every partition: what the broker gives a consumer that does nothing else.
async fn read_rate(settings: &KafkaSettings, topic: &str, count: usize) -> anyhow::Result<f64> {
    let consumer: StreamConsumer = settings.reader("dispatchbench-read")?;
    let mut assignment = TopicPartitionList::new();
    for partition in 0..settings.partitions {
        assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let started = Instant::now();
    let mut read = 0;
    while read < count {
        tokio::time::timeout(Duration::from_secs(60), consumer.recv()).await??;
        read += 1;
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

/// Writes the benchmark's endpoint, taking batches of `batch` events when set. The signing
/// secret changes with every write, which the benchmark does not check.
async fn configure(
    settings: &KafkaSettings,
    producer: &rdkafka::producer::FutureProducer,
    url: &str,
    batch: Option<usize>,
) -> anyhow::Result<()> {
    let mut webhook = json!({
        "id": "wh-bench", "name": "bench", "eventName": "event_BenchMessage", "url": url,
        "retryPolicy": {"enabled": true, "maxAttempts": 3},
        "creationTime": "2025-01-01T00:00:00.000Z", "updatedTime": "2025-01-01T00:00:00.000Z"
    });
    if let Some(max) = batch {
        webhook["batch"] = json!({"maxEvents": max});
    }
    let record = ConfigRecord {
        org_id: "bench".into(),
        at: "2025-01-01T00:00:00.000Z".into(),
        actor: None,
        base_revision: None,
        change: ConfigChange::WebhookUpserted {
            webhook: serde_json::from_value(webhook)?,
            signing_secret: erp_toolkit::signing::new_secret(),
            previous_secrets: Vec::new(),
        },
    };
    kafka::send(
        producer,
        &settings.topics.config(),
        "wh-bench",
        &serde_json::to_vec(&record)?,
    )
    .await?;
    Ok(())
}

/// Adds to `total` the events carried by the requests from index `*from` on (a batch is a JSON
/// array), and moves `*from` past them, so each body is parsed once.
fn count_events(receiver: &Receiver, from: &mut usize, total: &mut usize) {
    let deliveries = receiver.deliveries();
    for delivery in deliveries.get(*from..).unwrap_or_default() {
        *total += delivery.json().as_array().map_or(1, Vec::len);
    }
    *from = deliveries.len();
}

/// Events/s of one dispatcher run: from its start (group join included) and in steady state
/// (from its first delivery on, so the join and the first fetch are left out).
#[derive(Debug, Clone, Copy, Default)]
struct Rates {
    total: f64,
    steady: f64,
}

/// Runs a dispatcher with consumer group `group` until the receiver got every event once more
/// (in requests of up to `batch`).
async fn dispatch(
    settings: &KafkaSettings,
    receiver: &Receiver,
    args: &Args,
    group: &str,
    batch: usize,
) -> anyhow::Result<Rates> {
    let count = args.events;
    let runtime = Runtime {
        kafka: settings.clone(),
        metrics: Metrics::new(),
        readiness: Readiness::new(),
        shutdown: Default::default(),
    };
    let (view, view_task) = ConfigView::start(&runtime, "dispatchbench", None).await?;
    view.wait_loaded(Duration::from_secs(60)).await?;
    let dispatcher = DispatcherSettings {
        group_id: group.to_owned(),
        max_in_flight: args.max_in_flight,
        // One endpoint: let it use every slot, as the plain loop does.
        endpoint_concurrency: args.max_in_flight,
        destinations: DestinationPolicy::loopback_allowed(),
        ..DispatcherSettings::default()
    };
    let before = receiver.count();
    // Fewer requests than this cannot carry every event: only then are bodies counted.
    let fewest = count.div_ceil(batch.max(1));
    let (mut counted_upto, mut events) = (before, 0);
    let started = Instant::now();
    let task = tokio::spawn(erp_dispatcher::run(runtime.clone(), view, dispatcher));
    let mut first: Option<(Instant, usize)> = None;
    loop {
        let requests = receiver.count() - before;
        if first.is_none() && requests > 0 {
            let seen = if batch <= 1 {
                requests
            } else {
                count_events(receiver, &mut counted_upto, &mut events);
                events
            };
            first = Some((Instant::now(), seen));
        }
        let done = if batch <= 1 {
            requests >= count
        } else if requests >= fewest {
            count_events(receiver, &mut counted_upto, &mut events);
            events >= count
        } else {
            false
        };
        if done {
            break;
        }
        if task.is_finished() || started.elapsed() > Duration::from_secs(600) {
            bail!("dispatcher stopped at {requests} requests");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    let steady = first.map_or(0.0, |(at, seen)| {
        (count - seen.min(count)) as f64 / at.elapsed().as_secs_f64().max(1e-6)
    });
    runtime.shutdown.cancel();
    let _ = task.await;
    view_task.abort();
    Ok(Rates {
        total: count as f64 / elapsed.as_secs_f64(),
        steady,
    })
}
