//! The end-to-end load generator: posts N meter-reading events to a standalone erp-toolkit on
//! the embedded broker and measures events/s from the first POST to the last signed delivery at
//! a local receiver. In the same run it measures a baseline - the same number of records
//! produced to and consumed back from the same broker, with no HTTP, mapping or delivery - and
//! reports the ratio, because absolute figures on a shared machine drift between runs.
//!
//! ```sh
//! cargo run --release -p erp-benches --bin loadgen -- --events 20000
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use futures::StreamExt;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};

use erp_benches::workload::{meter_reading_event, meter_reading_mapping};
use erp_runtime::KafkaSettings;
use erp_toolkit::receiver::Receiver;
use erp_toolkit::{Standalone, StandaloneOptions};

#[derive(Parser, Debug)]
#[command(about = "End-to-end load generator for erp-toolkit")]
struct Args {
    /// Meter-reading events to send.
    #[arg(long, default_value_t = 20_000)]
    events: usize,
    /// Events per ingest request (at most 100).
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Ingest requests in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Partitions of the partitioned topics.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// Spread events over this many `group_id`s (0: strict per-integration order, one key).
    #[arg(long, default_value_t = 16)]
    groups: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.batch == 0 || args.batch > 100 {
        bail!("--batch must be 1 to 100");
    }
    let dir = tempfile::tempdir()?;
    let mut options = StandaloneOptions::new(dir.path());
    options.partitions = args.partitions;
    let standalone = Standalone::start(options, Default::default()).await?;
    standalone.ready(Duration::from_secs(60)).await?;
    let receiver = Receiver::start("127.0.0.1:0", None, false).await?;
    let api = Api {
        client: reqwest::Client::new(),
        base: format!("http://{}", standalone.http_address),
        token: standalone.admin_token.clone(),
    };
    let integration_id = api.configure(&receiver.url()).await?;

    println!(
        "loadgen: {} events, {} per request, {} requests in flight, {} partitions, {} groups",
        args.events, args.batch, args.concurrency, args.partitions, args.groups
    );
    let started = Instant::now();
    let requests: Vec<Vec<usize>> = (0..args.events)
        .collect::<Vec<_>>()
        .chunks(args.batch)
        .map(<[usize]>::to_vec)
        .collect();
    let api = Arc::new(api);
    let posted = futures::stream::iter(requests)
        .map(|numbers| {
            let api = Arc::clone(&api);
            let integration_id = integration_id.clone();
            let groups = args.groups;
            async move { api.post_events(&integration_id, &numbers, groups).await }
        })
        .buffer_unordered(args.concurrency.max(1))
        .collect::<Vec<_>>()
        .await;
    for outcome in posted {
        outcome?;
    }
    let accepted = started.elapsed();
    if !receiver
        .wait_for(args.events, Duration::from_secs(1800))
        .await
    {
        bail!(
            "only {} of {} deliveries arrived",
            receiver.count(),
            args.events
        );
    }
    let deliveries = receiver.deliveries();
    let last = deliveries
        .iter()
        .map(|d| d.received_at)
        .max()
        .context("no deliveries")?;
    let pipeline = last.duration_since(started);
    let pipeline_rate = args.events as f64 / pipeline.as_secs_f64();
    let ingest_rate = args.events as f64 / accepted.as_secs_f64();

    let baseline = baseline(
        &standalone.broker_address.to_string(),
        args.events,
        args.partitions,
    )
    .await?;
    let baseline_rate = args.events as f64 / baseline.as_secs_f64();

    println!(
        "ingest accepted all events:        {:>8.2} s  {:>9.0} events/s",
        accepted.as_secs_f64(),
        ingest_rate
    );
    println!(
        "first POST -> last delivery:       {:>8.2} s  {:>9.0} events/s",
        pipeline.as_secs_f64(),
        pipeline_rate
    );
    println!(
        "baseline produce -> consume:       {:>8.2} s  {:>9.0} records/s",
        baseline.as_secs_f64(),
        baseline_rate
    );
    println!(
        "pipeline / baseline:               {:>8.3}",
        pipeline_rate / baseline_rate
    );
    receiver.stop().await;
    standalone.stop().await?;
    Ok(())
}

struct Api {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await?;
        if !status.is_success() {
            bail!("{path} answered {status}: {body}");
        }
        Ok(body)
    }

    async fn configure(&self, url: &str) -> anyhow::Result<String> {
        let integration = self
            .post("/v1/integrations", json!({"name": "loadgen"}))
            .await?;
        let id = integration["id"]
            .as_str()
            .context("integration id")?
            .to_owned();
        self.post(
            &format!("/v1/integrations/{id}/use-cases"),
            json!({"name": "Meter readings", "slug": "meter-readings", "type": "inbound",
                   "enabled": true, "configuration": meter_reading_mapping()}),
        )
        .await?;
        self.post(
            "/v1/webhooks/configs",
            json!({"name": "receiver", "eventName": "InboundEventMapped", "url": url}),
        )
        .await?;
        Ok(id)
    }

    async fn post_events(
        &self,
        integration_id: &str,
        numbers: &[usize],
        groups: usize,
    ) -> anyhow::Result<()> {
        let events: Vec<Value> = numbers
            .iter()
            .map(|&n| {
                let mut event = meter_reading_event(n);
                if groups > 0 {
                    event["group_id"] = json!(format!("meter-{}", n % groups));
                }
                event
            })
            .collect();
        let body = self
            .post(
                "/v3/erp/updates/events",
                json!({"integration_id": integration_id, "events": events}),
            )
            .await?;
        let queued = body["results"]
            .as_array()
            .map(|r| r.iter().filter(|r| r["status"] == "success").count())
            .unwrap_or(0);
        if queued != numbers.len() {
            bail!("only {queued} of {} events queued: {body}", numbers.len());
        }
        Ok(())
    }
}

/// Produces `count` records of the workload's size with the same producer settings the ingest
/// uses, and consumes them back, on the same broker: what Kafka alone costs.
async fn baseline(brokers: &str, count: usize, partitions: i32) -> anyhow::Result<Duration> {
    let mut settings = KafkaSettings::new(brokers);
    settings.partitions = partitions;
    let topic = "loadgen.baseline";
    erp_runtime::topics::ensure_topics(
        &settings,
        &[erp_runtime::topics::TopicSpec {
            name: topic.into(),
            partitions,
            configs: vec![],
        }],
    )
    .await?;
    let producer: FutureProducer = settings.producer("loadgen")?;
    let consumer: StreamConsumer = settings.group_consumer("loadgen", "loadgen-baseline")?;
    consumer.subscribe(&[topic])?;
    let payload = meter_reading_event(1).to_string();
    let started = Instant::now();
    let sends = futures::stream::iter(0..count)
        .map(|n| {
            let producer = producer.clone();
            let key = format!("meter-{}", n % 16);
            let payload = payload.clone();
            async move {
                producer
                    .send(
                        FutureRecord::to(topic).key(&key).payload(&payload),
                        Duration::from_secs(30),
                    )
                    .await
                    .map(|_| ())
                    .map_err(|(e, _)| e)
            }
        })
        .buffer_unordered(1000)
        .collect::<Vec<_>>()
        .await;
    for sent in sends {
        sent?;
    }
    let mut received = 0;
    while received < count {
        tokio::time::timeout(Duration::from_secs(60), consumer.recv()).await??;
        received += 1;
    }
    Ok(started.elapsed())
}
