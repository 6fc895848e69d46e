//! The monitoring store, measured (issue 14, item 8): the indexer's spans/s against a raw
//! consume-and-decode of the same `erp.monitoring` records in the same run, and the latency
//! (p50, p99) of the queries behind epilot's stats, time series and a filtered event listing
//! over a store of `--query-spans` spans (28 days, 3 organisations × 5 integrations, 90 %
//! success, 5 % errors, 5 % warnings).
//!
//! ```sh
//! cargo run --release -p erp-benches --bin monbench -- --spans 100000 --query-spans 1000000
//! ```
//!
//! The machine is shared and noisy: the indexer is reported as a ratio to the baseline, in
//! rounds that alternate which of the two runs first, with the median.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::json;

use erp_api::monitoring::counts::Window;
use erp_api::monitoring::indexer::{run, spans_of};
use erp_api::monitoring::listing::SpanFilter;
use erp_api::monitoring::store::{IndexedSpan, Store};
use erp_api::monitoring::time_series;
use erp_runtime::topics::{ensure_topics, standard_topics};
use erp_runtime::{KafkaSettings, kafka};
use erp_schemas::monitoring::{Level, MonitoringSpan};
use erp_schemas::timestamp::{format_millis, now_millis};
use erp_toolkit::broker::EmbeddedBroker;

#[derive(Parser, Debug)]
#[command(about = "Monitoring indexer throughput and query latency")]
struct Args {
    /// Spans written to erp.monitoring per round.
    #[arg(long, default_value_t = 100_000)]
    spans: usize,
    /// Spans in the store the queries run on (0: skip the query part).
    #[arg(long, default_value_t = 1_000_000)]
    query_spans: usize,
    /// Partitions of erp.monitoring.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// Measurement rounds of the indexer (the median ratio is reported).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Runs of each query (p50 and p99 over them).
    #[arg(long, default_value_t = 50)]
    queries: usize,
}

const DAY_MS: i64 = 24 * 3600 * 1000;

/// Span `n` of a synthetic stream ending at `end_ms` and spread over `days`.
fn span(n: usize, end_ms: i64, days: i64) -> MonitoringSpan {
    let (level, code) = match n % 20 {
        0 => (Level::Error, "MAPPING_EXPRESSION_FAILED"),
        1 => (Level::Warning, "VALIDATION_WARNING"),
        _ => (Level::Success, ""),
    };
    let spread = (days * DAY_MS) as usize;
    let created = end_ms - ((n.wrapping_mul(7_919)) % spread) as i64;
    MonitoringSpan {
        id: format!("span-{n}"),
        org_id: format!("org-{}", n % 3),
        integration_id: format!("int-{}", n % 5),
        event_id: format!("evt-{n}"),
        correlation_id: format!("corr-{}", n / 3),
        use_case_id: format!("uc-{}", n % 4),
        use_case_type: if n % 4 == 3 { "outbound" } else { "inbound" }.into(),
        level,
        code: code.into(),
        message: "bench".into(),
        detail: json!({"n": n}),
        created_at: format_millis(created),
    }
}

/// Writes `count` spans, one per record, to `topic`.
async fn produce(producer: &FutureProducer, topic: &str, count: usize) -> anyhow::Result<()> {
    let end = now_millis();
    let mut pending = Vec::new();
    for n in 0..count {
        let bytes = serde_json::to_vec(&span(n, end, 1))?;
        pending.push(kafka::enqueue(producer, topic, &format!("int-{}", n % 5), &bytes).await?);
        if pending.len() >= 5_000 {
            kafka::await_deliveries(std::mem::take(&mut pending)).await?;
        }
    }
    kafka::await_deliveries(pending).await?;
    Ok(())
}

/// A reader of every partition of `topic` from the beginning.
fn reader(
    settings: &KafkaSettings,
    topic: &str,
    partitions: i32,
) -> anyhow::Result<StreamConsumer> {
    let consumer: StreamConsumer = settings.reader("monbench")?;
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    Ok(consumer)
}

/// The baseline: consume and decode every record (spans/s).
async fn raw(settings: &KafkaSettings, topic: &str, args: &Args) -> anyhow::Result<f64> {
    let consumer = reader(settings, topic, args.partitions)?;
    let started = Instant::now();
    let mut spans = 0;
    while spans < args.spans {
        let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .context("no record within 30 s")??;
        spans += spans_of(message.payload().unwrap_or_default())?.len();
    }
    Ok(spans as f64 / started.elapsed().as_secs_f64())
}

/// The indexer into a fresh store, until its positions reach the log end (spans/s).
async fn indexed(
    settings: &KafkaSettings,
    topic: &str,
    args: &Args,
    path: &std::path::Path,
) -> anyhow::Result<f64> {
    let store = Store::open(path)?;
    let consumer = reader(settings, topic, args.partitions)?;
    let started = Instant::now();
    let task = tokio::spawn(run(
        consumer,
        store.clone(),
        topic.to_owned(),
        Duration::from_secs(28 * 86_400),
    ));
    loop {
        let done: i64 = store.positions(topic).await?.values().sum();
        if done as usize >= args.spans {
            break;
        }
        anyhow::ensure!(!task.is_finished(), "the indexer stopped");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rate = args.spans as f64 / started.elapsed().as_secs_f64();
    task.abort();
    Ok(rate)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// p50 and p99 of `times`, in ms.
fn percentiles(times: &mut [f64]) -> (f64, f64) {
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.99))
}

/// Loads `count` spans over 28 days straight into a store (no Kafka: the queries are measured).
async fn load(store: &Store, count: usize) -> anyhow::Result<()> {
    let end = now_millis();
    let mut batch = Vec::with_capacity(5_000);
    for n in 0..count {
        batch.push(IndexedSpan {
            partition: 0,
            offset: n as i64,
            seq: 0,
            span: span(n, end, 28),
        });
        if batch.len() == 5_000 || n + 1 == count {
            let positions = BTreeMap::from([(0, n as i64 + 1)]);
            store
                .apply("bench.monitoring", std::mem::take(&mut batch), positions)
                .await?;
        }
    }
    Ok(())
}

async fn time_queries(store: &Store, args: &Args) -> anyhow::Result<()> {
    let now = now_millis();
    let window = |days: i64| Window {
        org_id: "org-1".into(),
        integration_id: "int-1".into(),
        from: now - days * DAY_MS,
        to: now,
        use_case_types: Vec::new(),
    };
    let mut stats = Vec::new();
    let mut series = Vec::new();
    let mut listing = Vec::new();
    for _ in 0..args.queries {
        let started = Instant::now();
        let cells = store.cells(window(7)).await?;
        std::hint::black_box(cells.len());
        stats.push(started.elapsed().as_secs_f64() * 1000.0);

        let started = Instant::now();
        let (from, to) = (now - DAY_MS, now);
        let interval = time_series::interval_ms("1h").context("interval")?;
        let starts = time_series::bucket_starts(from, to, interval).context("buckets")?;
        let cells = store.cells(window(1)).await?;
        std::hint::black_box(time_series::buckets(
            &starts,
            interval,
            &cells,
            Some("use_case"),
        ));
        series.push(started.elapsed().as_secs_f64() * 1000.0);

        let started = Instant::now();
        let filter = SpanFilter {
            level: Some("error".into()),
            from: Some(now - 7 * DAY_MS),
            limit: 50,
            ..Default::default()
        };
        let page = store.page("org-1", "int-1", filter).await?;
        std::hint::black_box(page.spans.len());
        listing.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    for (name, times) in [
        ("stats (7 days)", &mut stats),
        ("time series (24 h, 1 h buckets, by use case)", &mut series),
        ("listing (errors, 7 days, 50)", &mut listing),
    ] {
        let (p50, p99) = percentiles(times);
        println!("  {name:<46} p50 {p50:>8.2} ms   p99 {p99:>8.2} ms");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let mut broker =
        EmbeddedBroker::start(&dir.path().join("kafka"), "127.0.0.1:0".parse()?).await?;
    println!(
        "monbench: {} spans per round on {} partitions, {} rounds; queries over {} spans",
        args.spans, args.partitions, args.rounds, args.query_spans
    );
    let mut ratios = Vec::new();
    for round in 0..args.rounds.max(1) {
        let mut settings = KafkaSettings::new(broker.address().to_string());
        settings.partitions = args.partitions;
        settings.topics = erp_schemas::topics::Topics::new(format!("r{round}"));
        let topic = settings.topics.monitoring();
        let specs: Vec<_> = standard_topics(&settings)
            .into_iter()
            .filter(|t| t.name == topic)
            .collect();
        ensure_topics(&settings, &specs).await?;
        let producer: FutureProducer = settings.producer("monbench")?;
        produce(&producer, &topic, args.spans).await?;
        let path = dir.path().join(format!("round-{round}.db"));
        let (mut base, mut index) = (0.0, 0.0);
        for first in [round % 2 == 0, round % 2 != 0] {
            if first {
                base = raw(&settings, &topic, &args).await?;
            } else {
                index = indexed(&settings, &topic, &args, &path).await?;
            }
        }
        let ratio = index / base;
        println!(
            "round {round}: raw consume {base:>9.0} spans/s, indexer {index:>9.0} spans/s, ratio {ratio:.3}"
        );
        ratios.push(ratio);
    }
    println!("indexer / raw consume: median {:.3}", median(&mut ratios));
    broker.stop().await;

    if args.query_spans > 0 {
        let store = Store::open(&dir.path().join("queries.db"))?;
        let started = Instant::now();
        load(&store, args.query_spans).await?;
        println!(
            "loaded {} spans in {:.1} s; queries (org-1/int-1, {} runs each):",
            args.query_spans,
            started.elapsed().as_secs_f64(),
            args.queries
        );
        time_queries(&store, &args).await?;
    }
    Ok(())
}
