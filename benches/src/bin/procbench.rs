//! Processor throughput on the embedded broker, against a bare consume → produce pass-through
//! measured in the same run: N inbound records (meter readings, 10-field mapping, 16 ordering
//! groups) are produced first; then a pass-through consumer group copies them to another topic,
//! batch by batch with awaited acknowledgements; then the processor maps them (dedup, mapping,
//! core event, monitoring span, changelog, sled commit per batch). Both include their group
//! join. Writes per event: core event + monitoring span (optional), plus one changelog record per
//! batch and partition.
//!
//! The machine is shared and noisy, so the measurement runs in rounds, each on fresh topics
//! (its own prefix), alternating which of the two goes first; it reports every round's ratio and
//! the median.
//!
//! With `--avro`, each round also runs the processor with `erp.core.events` written as Avro
//! (Confluent framing, ids from the registry kept in the round's `erp.schemas`, as standalone
//! does) on the same input, and reports its events/s against the JSON-output run.
//!
//! ```sh
//! cargo run --release -p erp-benches --bin procbench -- --events 20000 --rounds 5
//! cargo run --release -p erp-benches --bin procbench -- --events 20000 --rounds 3 --avro
//! ```

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use futures::StreamExt;
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::producer::FutureProducer;

use erp_benches::workload::{meter_reading, meter_reading_mapping};
use erp_processor::ProcessorSettings;
use erp_runtime::topics::{TopicSpec, ensure_topics, standard_topics};
use erp_runtime::{ConfigView, KafkaSettings, Metrics, Readiness, Runtime, kafka};
use erp_schemas::config::{ConfigChange, ConfigRecord, Integration, UseCase};
use erp_schemas::inbound::{InboundEventRecord, PayloadFormat};
use erp_toolkit::broker::EmbeddedBroker;

#[derive(Parser, Debug)]
#[command(about = "Processor throughput against a pass-through baseline")]
struct Args {
    /// Inbound records to process.
    #[arg(long, default_value_t = 20_000)]
    events: usize,
    /// Partitions of the topics.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// Most records per processor poll batch.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Whether the processor writes a success span per mapped event.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    success_spans: bool,
    /// Measurement rounds (the median ratio is reported).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Also run the processor with `erp.core.events` written as Avro (ids from the registry
    /// standalone serves, kept in the round's `erp.schemas`), and report Avro / JSON output.
    #[arg(long)]
    avro: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let mut broker =
        EmbeddedBroker::start(&dir.path().join("kafka"), "127.0.0.1:0".parse()?).await?;
    println!(
        "procbench: {} records, {} partitions, processor batch ≤ {}, success spans {}, {} rounds",
        args.events, args.partitions, args.batch, args.success_spans, args.rounds
    );
    let (mut ratios, mut steady) = (Vec::new(), Vec::new());
    let (mut avro_ratios, mut avro_steady) = (Vec::new(), Vec::new());
    for round in 0..args.rounds.max(1) {
        let mut settings = KafkaSettings::new(broker.address().to_string());
        settings.partitions = args.partitions;
        settings.topics = erp_schemas::topics::Topics::new(format!("r{round}"));
        let producer: FutureProducer = settings.producer("procbench")?;
        prepare(&settings, &producer, args.events).await?;
        let round_dir = dir.path().join(format!("round-{round}"));
        let mut base = None;
        let mut processed = None;
        let mut avro = None;
        // Rotate the order, so that a drift in the machine's load favours none.
        let mut order = vec![Run::PassThrough, Run::Processor];
        if args.avro {
            order.push(Run::AvroProcessor);
        }
        let turn = round % order.len();
        order.rotate_left(turn);
        for run in order {
            match run {
                Run::PassThrough => {
                    base = Some(passthrough(&settings, &producer, args.events).await?);
                }
                Run::Processor | Run::AvroProcessor => {
                    let with_avro = run == Run::AvroProcessor;
                    let measured = processor(
                        &settings,
                        &round_dir.join(if with_avro { "avro" } else { "json" }),
                        args.events,
                        args.batch,
                        args.success_spans,
                        with_avro,
                    )
                    .await?;
                    if with_avro {
                        avro = Some(measured);
                    } else {
                        processed = Some(measured);
                    }
                }
            }
        }
        let (Some(base), Some((timing, mean_batch))) = (base, processed) else {
            bail!("round {round} did not measure both");
        };
        if let Some((avro, _)) = &avro {
            let ratio = timing.total.as_secs_f64() / avro.total.as_secs_f64();
            let steady_ratio = avro.steady_rate / timing.steady_rate;
            avro_ratios.push(ratio);
            avro_steady.push(steady_ratio);
            println!(
                "round {round}: processor with Avro core events {:>6.0} events/s ({:>6.0} \
                 steady), Avro / JSON output {ratio:.3} ({steady_ratio:.3} steady)",
                args.events as f64 / avro.total.as_secs_f64(),
                avro.steady_rate
            );
        }
        let base_rate = args.events as f64 / base.total.as_secs_f64();
        let rate = args.events as f64 / timing.total.as_secs_f64();
        ratios.push(rate / base_rate);
        steady.push(timing.steady_rate / base.steady_rate);
        println!(
            "round {round}: pass-through {base_rate:>6.0} records/s ({:>6.0} steady), \
             processor {rate:>6.0} events/s ({:>6.0} steady), ratio {:.3} ({:.3} steady), \
             mean batch {mean_batch:.0}",
            base.steady_rate,
            timing.steady_rate,
            rate / base_rate,
            timing.steady_rate / base.steady_rate
        );
    }
    let mut medians = vec![
        ("processor / pass-through, start to end", ratios),
        ("processor / pass-through, steady state", steady),
    ];
    if args.avro {
        medians.push(("Avro / JSON core events, start to end", avro_ratios));
        medians.push(("Avro / JSON core events, steady state", avro_steady));
    }
    for (what, mut ratios) in medians {
        ratios.sort_by(f64::total_cmp);
        println!(
            "median {what}: {:.3}  (rounds: {})",
            ratios[ratios.len() / 2],
            ratios
                .iter()
                .map(|r| format!("{r:.3}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    broker.stop().await;
    Ok(())
}

/// Topics, configuration (one integration, one inbound use case) and the input records of one
/// installation, produced before any measurement.
async fn prepare(
    settings: &KafkaSettings,
    producer: &FutureProducer,
    events: usize,
) -> anyhow::Result<()> {
    let mut topics = standard_topics(settings);
    topics.push(TopicSpec {
        name: settings.topics.name("passthrough"),
        partitions: settings.partitions,
        configs: vec![],
    });
    ensure_topics(settings, &topics).await?;
    let now = erp_schemas::timestamp::now_rfc3339();
    let integration = Integration {
        id: "00000000-0000-4000-8000-000000000001".into(),
        org_id: "bench".into(),
        name: "bench".into(),
        description: None,
        extra: Default::default(),
        created_at: now.clone(),
        updated_at: now.clone(),
    };
    let use_case = UseCase {
        id: "00000000-0000-4000-8000-000000000002".into(),
        integration_id: integration.id.clone(),
        name: "Meter readings".into(),
        slug: Some("meter-readings".into()),
        kind: "inbound".into(),
        enabled: true,
        configuration: Some(meter_reading_mapping()),
        change_description: None,
        changed_by: None,
        created_at: now.clone(),
        updated_at: now.clone(),
    };
    for change in [
        ConfigChange::IntegrationUpserted {
            integration: integration.clone(),
        },
        ConfigChange::UseCaseUpserted { use_case },
    ] {
        let record = ConfigRecord {
            org_id: "bench".into(),
            at: now.clone(),
            actor: None,
            base_revision: None,
            change,
        };
        kafka::send(
            producer,
            &settings.topics.config(),
            &record.key(),
            &serde_json::to_vec(&record)?,
        )
        .await?;
    }
    let received_at = erp_schemas::timestamp::now_millis();
    let records: Vec<(String, Vec<u8>)> = (0..events)
        .map(|n| {
            let record = InboundEventRecord {
                event_id: erp_schemas::ids::new_event_id(),
                org_id: "bench".into(),
                integration_id: integration.id.clone(),
                api_version: "v3".into(),
                app_id: None,
                component_id: None,
                meta: None,
                received_at,
                correlation_id: format!("bench-{n}"),
                group_id: Some(format!("meter-{}", n % 16)),
                use_case_slug: Some("meter-readings".into()),
                event_name: None,
                event_type: None,
                timestamp: "2025-01-15T00:00:00Z".into(),
                format: PayloadFormat::Json,
                payload: meter_reading(n).to_string(),
                deduplication_id: Some(format!("reading-{n}")),
                replay_of: None,
            };
            (
                record.key(),
                serde_json::to_vec(&record).unwrap_or_default(),
            )
        })
        .collect();
    let inbound = settings.topics.inbound_events();
    let sent = futures::stream::iter(records.iter())
        .map(|(key, value)| kafka::send(producer, &inbound, key, value))
        .buffer_unordered(1000)
        .collect::<Vec<_>>()
        .await;
    for outcome in sent {
        outcome?;
    }
    Ok(())
}

async fn passthrough(
    settings: &KafkaSettings,
    producer: &FutureProducer,
    count: usize,
) -> anyhow::Result<Timing> {
    let inbound = settings.topics.inbound_events();
    let output = settings.topics.name("passthrough");
    let consumer =
        std::sync::Arc::new(settings.group_consumer("procbench", "procbench-passthrough")?);
    consumer.subscribe(&[&inbound])?;
    let started = Instant::now();
    let mut copied = 0;
    let mut first = None;
    while copied < count {
        let batch = kafka::poll_batch(&consumer, 500).await;
        let mut deliveries = Vec::with_capacity(batch.len());
        for message in &batch {
            let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
            deliveries.push(
                kafka::enqueue(
                    producer,
                    &output,
                    &key,
                    message.payload().unwrap_or_default(),
                )
                .await?,
            );
        }
        kafka::await_deliveries(deliveries).await?;
        kafka::commit_batch(&consumer, &batch).await;
        copied += batch.len();
        if first.is_none() && copied > 0 {
            first = Some((Instant::now(), copied));
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("pass-through stalled at {copied}");
        }
    }
    Ok(Timing::of(started, first, count))
}

/// One measurement of a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Run {
    PassThrough,
    Processor,
    AvroProcessor,
}

/// How long a run took in all, and its rate after its first batch (group join, restore and
/// start-up excluded).
struct Timing {
    total: Duration,
    steady_rate: f64,
}

impl Timing {
    fn of(started: Instant, first: Option<(Instant, usize)>, count: usize) -> Self {
        let total = started.elapsed();
        let steady_rate = match first {
            Some((at, done)) if count > done => {
                (count - done) as f64 / at.elapsed().as_secs_f64().max(1e-9)
            }
            _ => count as f64 / total.as_secs_f64(),
        };
        Self { total, steady_rate }
    }
}

async fn processor(
    settings: &KafkaSettings,
    dir: &std::path::Path,
    count: usize,
    batch: usize,
    success_spans: bool,
    avro: bool,
) -> anyhow::Result<(Timing, f64)> {
    let mut runtime = Runtime {
        kafka: settings.clone(),
        metrics: Metrics::new(),
        readiness: Readiness::new(),
        shutdown: Default::default(),
    };
    if avro {
        // As standalone: ids from the registry this process serves, kept in `erp.schemas`.
        let (store, _store_task) = erp_runtime::schema_store::SchemaStore::start(
            &runtime,
            settings.producer("procbench-registry")?,
        )
        .await?;
        let mut formats = erp_schemas::wire::TopicFormats::default();
        formats.set(
            erp_schemas::avro::AvroRecord::CoreEvent,
            erp_schemas::wire::WireFormat::Avro,
        );
        runtime.kafka.wire =
            erp_runtime::wire::Wire::new(settings.topics.clone(), formats, Some(store));
    }
    let (view, _view_task) = ConfigView::start(&runtime, "procbench", None).await?;
    while !runtime.readiness.is_ready() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let settings = ProcessorSettings {
        data_dir: dir.join("processor"),
        group_id: if avro {
            "procbench-processor-avro".into()
        } else {
            "procbench-processor".into()
        },
        max_batch: batch,
        success_spans,
        ..ProcessorSettings::default()
    };
    let started = Instant::now();
    let task = tokio::spawn(erp_processor::run(runtime.clone(), view, settings));
    let metric = |name: &str| -> f64 {
        runtime
            .metrics
            .encode()
            .lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
            .sum()
    };
    let mut first = None;
    loop {
        let done = metric("erp_processor_events_total");
        if first.is_none() && done > 0.0 {
            first = Some((Instant::now(), done as usize));
        }
        if done >= count as f64 {
            break;
        }
        if task.is_finished() || started.elapsed() > Duration::from_secs(600) {
            bail!(
                "processor stopped at {}",
                metric("erp_processor_events_total")
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let timing = Timing::of(started, first, count);
    let mean_batch = metric("erp_processor_batch_records_sum")
        / metric("erp_processor_batch_records_count").max(1.0);
    runtime.shutdown.cancel();
    task.await.context("processor task")??;
    Ok((timing, mean_batch))
}
