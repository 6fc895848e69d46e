//! The end-to-end load generator: posts N meter-reading events to a standalone erp-toolkit on
//! the embedded broker and measures events/s from the first POST to the last signed delivery at
//! a local receiver. In the same run it measures a baseline - the same number of records
//! produced to and consumed back from the same broker, with no HTTP, mapping or delivery - and
//! reports the ratio, because absolute figures on a shared machine drift between runs.
//!
//! Every run also reports what it cost: records written per event on each topic (from the
//! brokers' high watermarks before and after) and CPU seconds per 1,000 events, for the process
//! and by thread. With `--rate` it sends at a fixed rate instead of as fast as it can, and
//! reports latency from ingest acceptance to delivery and the ingest answer's latency.
//!
//! ```sh
//! cargo run --release -p erp-benches --bin loadgen -- --events 20000
//! cargo run --release -p erp-benches --bin loadgen -- --rate 500 --duration 60 --batch 10
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use futures::StreamExt;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};

use erp_benches::counting::{
    CpuTime, cpu_time, settled_watermarks, spent, watermark_reader, written,
};
use erp_benches::latency::{Percentiles, reading_number};
use erp_benches::workload::{meter_reading_event, meter_reading_mapping};
use erp_runtime::KafkaSettings;
use erp_toolkit::receiver::{Delivery, Receiver};
use erp_toolkit::{Standalone, StandaloneOptions};

#[derive(Parser, Debug)]
#[command(about = "End-to-end load generator for erp-toolkit")]
struct Args {
    /// Meter-reading events to send (as fast as possible; ignored with `--rate`).
    #[arg(long, default_value_t = 20_000)]
    events: usize,
    /// Events per ingest request (at most 100).
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Ingest requests in flight at once (ignored with `--rate`).
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Partitions of the partitioned topics.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// Spread events over this many `group_id`s (0: strict per-integration order, one key).
    #[arg(long, default_value_t = 16)]
    groups: usize,
    /// Send at this many events per second (0: as fast as possible, then the baseline).
    #[arg(long, default_value_t = 0)]
    rate: usize,
    /// Seconds to send for at `--rate`.
    #[arg(long, default_value_t = 60)]
    duration: u64,
}

/// When each request of a run left and was answered, and which events it carried.
struct Sent {
    numbers: Vec<usize>,
    sent_at: Instant,
    answered_at: Instant,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.batch == 0 || args.batch > 100 {
        bail!("--batch must be 1 to 100");
    }
    let events = if args.rate > 0 {
        args.rate * args.duration as usize
    } else {
        args.events
    };
    if events == 0 {
        bail!("nothing to send: --events, or --rate and --duration, must be above 0");
    }
    let dir = tempfile::tempdir()?;
    let mut options = StandaloneOptions::new(dir.path());
    options.partitions = args.partitions;
    // A load test, not a test of the organisation's request budget (1,000 a minute by default,
    // which `--rate 500 --batch 10` would spend in 20 s).
    options.rate_limit_per_minute = 1_000_000;
    let standalone = Standalone::start(options, Default::default()).await?;
    standalone.ready(Duration::from_secs(60)).await?;
    let brokers = standalone.broker_address.to_string();
    let receiver = Receiver::start("127.0.0.1:0", None, false).await?;
    let api = Api {
        client: reqwest::Client::new(),
        base: format!("http://{}", standalone.http_address),
        token: standalone.admin_token.clone(),
    };
    let integration_id = api.configure(&receiver.url()).await?;
    let api = Arc::new(api);
    let counter = Arc::new(watermark_reader(&brokers)?);
    let marks_before = settled_watermarks(&counter, SETTLED, SETTLE_LIMIT).await?;
    let cpu_before = cpu_time();

    let mode = if args.rate > 0 {
        format!("{} events/s for {} s", args.rate, args.duration)
    } else {
        format!("{} requests in flight", args.concurrency)
    };
    println!(
        "loadgen: {events} events, {} per request, {mode}, {} partitions, {} groups",
        args.batch, args.partitions, args.groups
    );
    let started = Instant::now();
    let sent = if args.rate > 0 {
        send_at_rate(&api, &integration_id, events, &args).await?
    } else {
        send_all(&api, &integration_id, events, &args).await?
    };
    let accepted = started.elapsed();
    if !receiver.wait_for(events, Duration::from_secs(1800)).await {
        bail!("only {} of {events} deliveries arrived", receiver.count());
    }
    let deliveries = receiver.deliveries();
    let marks_after = settled_watermarks(&counter, SETTLED, SETTLE_LIMIT).await?;
    let cpu_after = cpu_time();

    let mut pipeline_rate = None;
    if args.rate > 0 {
        report_latency(&sent, &deliveries, events)?;
    } else {
        let last = deliveries
            .iter()
            .map(|d| d.received_at)
            .max()
            .context("no deliveries")?;
        let pipeline = last.duration_since(started);
        let rate = events as f64 / pipeline.as_secs_f64();
        pipeline_rate = Some(rate);
        let ingest_rate = events as f64 / accepted.as_secs_f64();
        println!(
            "ingest accepted all events:        {:>8.2} s  {:>9.0} events/s",
            accepted.as_secs_f64(),
            ingest_rate
        );
        println!(
            "first POST -> last delivery:       {:>8.2} s  {:>9.0} events/s",
            pipeline.as_secs_f64(),
            rate
        );
    }
    report_cost(
        events,
        &written(&marks_before, &marks_after),
        cpu_before.zip(cpu_after),
    );
    if let Some(pipeline_rate) = pipeline_rate {
        let baseline = baseline(&brokers, events, args.partitions).await?;
        let baseline_rate = events as f64 / baseline.as_secs_f64();
        println!(
            "baseline produce -> consume:       {:>8.2} s  {:>9.0} records/s",
            baseline.as_secs_f64(),
            baseline_rate
        );
        println!(
            "pipeline / baseline:               {:>8.3}",
            pipeline_rate / baseline_rate
        );
    }
    receiver.stop().await;
    standalone.stop().await?;
    Ok(())
}

/// How long the watermarks must stand still before a count is taken, and the longest wait.
const SETTLED: Duration = Duration::from_secs(2);
const SETTLE_LIMIT: Duration = Duration::from_secs(60);

/// The event numbers of each request of `args.batch` events.
fn requests(events: usize, batch: usize) -> Vec<Vec<usize>> {
    (0..events)
        .collect::<Vec<_>>()
        .chunks(batch)
        .map(<[usize]>::to_vec)
        .collect()
}

/// Posts one request's events and notes when it left and when it was answered.
async fn post_timed(
    api: Arc<Api>,
    integration_id: String,
    numbers: Vec<usize>,
    groups: usize,
) -> anyhow::Result<Sent> {
    let sent_at = Instant::now();
    api.post_events(&integration_id, &numbers, groups).await?;
    Ok(Sent {
        numbers,
        sent_at,
        answered_at: Instant::now(),
    })
}

/// Sends `events` as fast as `args.concurrency` requests in flight allow.
async fn send_all(
    api: &Arc<Api>,
    integration_id: &str,
    events: usize,
    args: &Args,
) -> anyhow::Result<Vec<Sent>> {
    let posted = futures::stream::iter(requests(events, args.batch))
        .map(|numbers| {
            post_timed(
                Arc::clone(api),
                integration_id.to_owned(),
                numbers,
                args.groups,
            )
        })
        .buffer_unordered(args.concurrency.max(1))
        .collect::<Vec<_>>()
        .await;
    posted.into_iter().collect()
}

/// Sends `events` at `args.rate` events per second: each request leaves at its scheduled time
/// whether or not earlier ones were answered, so a slow answer shows as latency instead of
/// lowering the rate (no coordinated omission).
async fn send_at_rate(
    api: &Arc<Api>,
    integration_id: &str,
    events: usize,
    args: &Args,
) -> anyhow::Result<Vec<Sent>> {
    let interval = Duration::from_secs_f64(args.batch as f64 / args.rate as f64);
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    for (i, numbers) in requests(events, args.batch).into_iter().enumerate() {
        tokio::time::sleep_until(start + interval * i as u32).await;
        tasks.push(tokio::spawn(post_timed(
            Arc::clone(api),
            integration_id.to_owned(),
            numbers,
            args.groups,
        )));
    }
    let mut sent = Vec::with_capacity(tasks.len());
    for task in tasks {
        sent.push(task.await??);
    }
    Ok(sent)
}

/// Latency from the ingest answer that accepted an event to its first delivery, and of the
/// ingest answers themselves.
fn report_latency(sent: &[Sent], deliveries: &[Delivery], events: usize) -> anyhow::Result<()> {
    let mut accepted_at = vec![None; events];
    for request in sent {
        for &n in &request.numbers {
            accepted_at[n] = Some(request.answered_at);
        }
    }
    let mut delivered_at: Vec<Option<Instant>> = vec![None; events];
    for delivery in deliveries {
        let Some(n) = reading_number(&delivery.json()).filter(|n| *n < events) else {
            continue;
        };
        let first = delivered_at[n].get_or_insert(delivery.received_at);
        *first = (*first).min(delivery.received_at);
    }
    let end_to_end: Vec<Duration> = accepted_at
        .iter()
        .zip(&delivered_at)
        .filter_map(|(accepted, delivered)| {
            Some(delivered.as_ref()?.duration_since(*accepted.as_ref()?))
        })
        .collect();
    if end_to_end.len() < events {
        bail!(
            "only {} of {events} deliveries could be matched to their events",
            end_to_end.len()
        );
    }
    let answers: Vec<Duration> = sent
        .iter()
        .map(|r| r.answered_at.duration_since(r.sent_at))
        .collect();
    let end_to_end = Percentiles::of(end_to_end).context("no deliveries")?;
    let answers = Percentiles::of(answers).context("no requests")?;
    println!("accepted -> delivered:  {}", end_to_end.line());
    println!("ingest answer:          {}", answers.line());
    Ok(())
}

/// Records per event on each topic, and CPU seconds per 1,000 events.
fn report_cost(
    events: usize,
    written: &std::collections::BTreeMap<String, i64>,
    cpu: Option<(CpuTime, CpuTime)>,
) {
    let total: i64 = written.values().sum();
    println!(
        "records written per event:         {:>8.2}  ({total} records)",
        total as f64 / events as f64
    );
    for (topic, records) in written {
        println!(
            "  {topic:<32} {:>8.2}  ({records})",
            *records as f64 / events as f64
        );
    }
    let Some((before, after)) = cpu else {
        println!("CPU time: not available (no /proc)");
        return;
    };
    let (process, threads) = spent(&before, &after);
    let per_thousand = |seconds: f64| seconds * 1000.0 / events as f64;
    println!(
        "CPU seconds per 1,000 events:      {:>8.3}  (process, {process:.1} s in all)",
        per_thousand(process)
    );
    for (name, seconds) in threads.iter().take(8) {
        println!("  {name:<32} {:>8.3}", per_thousand(*seconds));
    }
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
