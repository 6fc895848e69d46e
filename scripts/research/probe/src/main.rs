//! Probes the embedded broker with librdkafka the way the roles use it, one behaviour per
//! subcommand, printing one line per observation with the milliseconds since start.
//!
//! ```text
//! broker-probe join   BROKERS TOPIC GROUP [INSTANCE] [SECONDS]  subscribe; print assignments
//! broker-probe produce BROKERS TOPIC COUNT                       plain producer, COUNT records
//! broker-probe idem   BROKERS TOPIC [TIMEOUT_MS]                 idempotent producer; one record
//!                                                               per stdin line, prints outcome
//! broker-probe assign BROKERS TOPIC PARTITION OFFSET GROUP      assign(), read, commit
//! broker-probe times  BROKERS TOPIC                             offsets_for_times probe
//! broker-probe create BROKERS TOPIC PARTITIONS                 CreateTopics
//! broker-probe health BROKERS                                   Metadata round trip
//! broker-probe groups BROKERS [DELETE_GROUP]                    list groups; DeleteGroups
//! ```
//! Extra librdkafka properties come from PROBE_OPTIONS (`k=v;k=v`, `;`-separated so that
//! `debug=cgrp,protocol` works).

use std::io::BufRead;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

fn ms() -> u128 {
    START.get_or_init(Instant::now).elapsed().as_millis()
}

macro_rules! say {
    ($($arg:tt)*) => { println!("+{:>6}ms {}", ms(), format!($($arg)*)) };
}

fn config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("broker.address.family", "v4")
        .set_log_level(RDKafkaLogLevel::Debug);
    if let Ok(options) = std::env::var("PROBE_OPTIONS") {
        for option in options.split(';').filter(|o| !o.is_empty()) {
            let (k, v) = option.split_once('=').expect("PROBE_OPTIONS: k=v;k=v");
            config.set(k, v);
        }
    }
    config
}

/// Set by the rebalance callback when an assignment came with no partitions.
static EMPTY_ASSIGNMENT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

struct Logged;
impl ClientContext for Logged {
    fn log(&self, _level: RDKafkaLogLevel, fac: &str, message: &str) {
        eprintln!("+{:>6}ms rdkafka {fac}: {message}", ms());
    }
}
impl ConsumerContext for Logged {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                say!("ASSIGNED {}", describe(tpl));
                EMPTY_ASSIGNMENT.store(tpl.count() == 0, std::sync::atomic::Ordering::SeqCst);
            }
            Rebalance::Revoke(tpl) => say!("REVOKED {}", describe(tpl)),
            Rebalance::Error(e) => say!("REBALANCE ERROR {e}"),
        }
    }
}

fn describe(tpl: &TopicPartitionList) -> String {
    let parts: Vec<String> = tpl
        .elements()
        .iter()
        .map(|e| format!("{}/{}", e.topic(), e.partition()))
        .collect();
    format!("[{}] ({} partitions)", parts.join(" "), parts.len())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn main() {
    START.get_or_init(Instant::now);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
    match arg(0).as_str() {
        "join" => join(&arg(1), &arg(2), &arg(3), args.get(4), args.get(5)),
        "produce" => produce(&arg(1), &arg(2), arg(3).parse().unwrap_or(100)),
        "idem" => idem(&arg(1), &arg(2), args.get(3)),
        "assign" => assign(
            &arg(1),
            &arg(2),
            arg(3).parse().unwrap(),
            arg(4).parse().unwrap(),
            &arg(5),
        ),
        "times" => times(&arg(1), &arg(2)),
        "health" => health(&arg(1)),
        "create" => create(&arg(1), &arg(2), arg(3).parse().unwrap_or(1)),
        "groups" => groups(&arg(1), args.get(2)),
        _ => {
            eprintln!("see the doc comment in scripts/research/probe/src/main.rs");
            std::process::exit(2)
        }
    }
}

fn join(brokers: &str, topic: &str, group: &str, instance: Option<&String>, secs: Option<&String>) {
    let mut config = config(brokers);
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "30000");
    if let Some(instance) = instance.filter(|i| !i.is_empty() && *i != "-") {
        config.set("group.instance.id", instance);
    }
    let consumer: BaseConsumer<Logged> = config.create_with_context(Logged).expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    say!("subscribed group={group} instance={instance:?}");
    let deadline =
        Instant::now() + Duration::from_secs(secs.and_then(|s| s.parse().ok()).unwrap_or(60));
    let (mut first, mut count) = (true, 0u64);
    // PROBE_REJOIN_AFTER_MS: a watchdog's remedy, leave and rejoin after an empty assignment.
    let rejoin_after = std::env::var("PROBE_REJOIN_AFTER_MS")
        .ok()
        .and_then(|v| v.parse().ok());
    let mut empty_since: Option<Instant> = None;
    while Instant::now() < deadline {
        if let Some(limit) = rejoin_after {
            if EMPTY_ASSIGNMENT.load(std::sync::atomic::Ordering::SeqCst) {
                let since = *empty_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_millis(limit) {
                    say!("empty assignment for {limit} ms: unsubscribe and subscribe again");
                    consumer.unsubscribe();
                    EMPTY_ASSIGNMENT.store(false, std::sync::atomic::Ordering::SeqCst);
                    empty_since = None;
                    consumer.subscribe(&[topic]).expect("subscribe");
                }
            } else {
                empty_since = None;
            }
        }
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            match message {
                Ok(m) => {
                    count += 1;
                    if first {
                        say!(
                            "FIRST MESSAGE {}/{}@{}",
                            m.topic(),
                            m.partition(),
                            m.offset()
                        );
                        first = false;
                    }
                }
                Err(e) => say!("consume error: {e}"),
            }
        }
    }
    say!(
        "done: {count} messages; assignment {}",
        describe(&consumer.assignment().unwrap())
    );
}

fn produce(brokers: &str, topic: &str, count: usize) {
    // PROBE_OPTIONS may override these (e.g. enable.idempotence=true for a comparison).
    let mut producer_config = ClientConfig::new();
    producer_config
        .set("bootstrap.servers", brokers)
        .set("broker.address.family", "v4")
        .set("enable.idempotence", "false")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("compression.type", "lz4");
    for (k, v) in config(brokers).config_map().iter() {
        producer_config.set(*k, *v);
    }
    let producer: ThreadedProducer<DefaultProducerContext> =
        producer_config.create().expect("producer");
    let started = Instant::now();
    for i in 0..count {
        let key = format!("k{}", i % 16);
        let payload = format!("record {i}");
        while let Err((e, _)) = producer.send(BaseRecord::to(topic).key(&key).payload(&payload)) {
            say!("send failed: {e}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    producer.flush(Duration::from_secs(120)).expect("flush");
    let secs = started.elapsed().as_secs_f64();
    say!(
        "produced {count} to {topic} in {secs:.2} s ({:.0} records/s)",
        count as f64 / secs
    );
}

struct Deliveries;
impl ClientContext for Deliveries {
    fn log(&self, _level: RDKafkaLogLevel, fac: &str, message: &str) {
        eprintln!("+{:>6}ms rdkafka {fac}: {message}", ms());
    }
}
impl rdkafka::producer::ProducerContext for Deliveries {
    type DeliveryOpaque = Box<usize>;
    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, n: Box<usize>) {
        match result {
            Ok(m) => say!(
                "record {n} delivered to {}/{}@{}",
                m.topic(),
                m.partition(),
                m.offset()
            ),
            Err((e, _)) => say!("record {n} FAILED: {e}"),
        }
    }
}

/// One idempotent record per stdin line (the line is the key), like the roles' producer.
fn idem(brokers: &str, topic: &str, timeout_ms: Option<&String>) {
    let producer: ThreadedProducer<Deliveries> = config(brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set(
            "message.timeout.ms",
            timeout_ms.map_or("30000", |s| s.as_str()),
        )
        .create_with_context(Deliveries)
        .expect("producer");
    for (n, line) in std::io::stdin().lock().lines().enumerate() {
        let key = line.unwrap_or_default();
        let payload = format!("record {n}");
        match producer.send(
            BaseRecord::with_opaque_to(topic, Box::new(n))
                .key(&key)
                .payload(&payload),
        ) {
            Ok(()) => say!("record {n} (key {key}) enqueued"),
            Err((e, _)) => say!("record {n} not enqueued: {e}"),
        }
    }
    let _ = producer.flush(Duration::from_secs(10));
    say!("stdin closed");
}

fn assign(brokers: &str, topic: &str, partition: i32, offset: i64, group: &str) {
    let consumer: BaseConsumer = config(brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(offset))
        .unwrap();
    consumer.assign(&tpl).expect("assign");
    say!("assigned {topic}/{partition} at {offset} without joining {group}");
    let (mut read, mut last) = (0, -1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && read < 10 {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            if read == 0 {
                say!("first record at offset {}", m.offset());
            }
            read += 1;
            last = m.offset();
        }
    }
    say!("read {read} records, last offset {last}");
    let mut commit = TopicPartitionList::new();
    commit
        .add_partition_offset(topic, partition, Offset::Offset(last + 1))
        .unwrap();
    match consumer.commit(&commit, CommitMode::Sync) {
        Ok(()) => say!("committed {} for {group} (no membership)", last + 1),
        Err(e) => say!("commit FAILED: {e}"),
    }
    let committed = consumer.committed(Duration::from_secs(5)).map(|tpl| {
        tpl.elements()
            .iter()
            .map(|e| format!("{}/{}={:?}", e.topic(), e.partition(), e.offset()))
            .collect::<Vec<_>>()
    });
    say!("committed offsets read back: {committed:?}");
    let (low, high) = consumer
        .fetch_watermarks(topic, partition, Duration::from_secs(5))
        .unwrap();
    say!("watermarks {low}..{high}");
}

fn times(brokers: &str, topic: &str) {
    let producer: ThreadedProducer<DefaultProducerContext> = config(brokers)
        .set("enable.idempotence", "false")
        .create()
        .expect("producer");
    let base = now_ms() - 600_000;
    for i in 0..10 {
        let payload = format!("t{i}");
        producer
            .send(
                BaseRecord::to(topic)
                    .partition(0)
                    .key("t")
                    .payload(&payload)
                    .timestamp(base + i * 60_000),
            )
            .map_err(|(e, _)| e)
            .expect("send");
    }
    producer.flush(Duration::from_secs(10)).expect("flush");
    let consumer: BaseConsumer = config(brokers)
        .set("group.id", "probe-times")
        .create()
        .expect("consumer");
    let (low, high) = consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(5))
        .unwrap();
    say!("{topic}/0 watermarks {low}..{high}; records t0..t9 at base + i min, base = now - 10 min");
    for (label, ts) in [
        ("before the first record", base - 3_600_000),
        ("= t0", base),
        ("between t4 and t5", base + 4 * 60_000 + 30_000),
        ("= t9", base + 9 * 60_000),
        ("after the last record (now)", now_ms()),
        ("in the future", now_ms() + 3_600_000),
    ] {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Offset(ts))
            .unwrap();
        let answer = consumer
            .offsets_for_times(tpl, Duration::from_secs(5))
            .map(|tpl| format!("{:?}", tpl.elements()[0].offset()));
        say!("offsets_for_times({label}) -> {answer:?}");
    }
}

fn create(brokers: &str, topic: &str, partitions: i32) {
    use rdkafka::admin::{NewTopic, TopicReplication};
    let admin: AdminClient<DefaultClientContext> = config(brokers).create().expect("admin");
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let topics = [NewTopic::new(topic, partitions, TopicReplication::Fixed(1))];
    say!(
        "CreateTopics({topic}, {partitions}) -> {:?}",
        block_on(admin.create_topics(&topics, &options))
    );
}

fn health(brokers: &str) {
    let consumer: BaseConsumer = config(brokers).create().expect("client");
    let started = Instant::now();
    match consumer.fetch_metadata(None, Duration::from_secs(5)) {
        Ok(m) => say!(
            "metadata OK: {} topics in {} ms",
            m.topics().len(),
            started.elapsed().as_millis()
        ),
        Err(e) => {
            say!(
                "metadata FAILED after {} ms: {e}",
                started.elapsed().as_millis()
            );
            std::process::exit(1)
        }
    }
}

fn groups(brokers: &str, delete: Option<&String>) {
    let consumer: BaseConsumer = config(brokers).create().expect("client");
    match consumer.fetch_group_list(None, Duration::from_secs(5)) {
        Ok(list) => {
            for g in list.groups() {
                say!(
                    "group {} state={} members={}",
                    g.name(),
                    g.state(),
                    g.members().len()
                );
            }
        }
        Err(e) => say!("ListGroups/DescribeGroups FAILED: {e}"),
    }
    if let Some(group) = delete {
        let admin: AdminClient<DefaultClientContext> = config(brokers).create().expect("admin");
        let runtime = std::thread::spawn({
            let group = group.clone();
            move || {
                let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
                block_on(admin.delete_groups(&[group.as_str()], &options))
            }
        });
        say!("DeleteGroups({group}) -> {:?}", runtime.join().unwrap());
    }
}

/// A minimal executor for the one admin future (no async runtime in this probe).
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};
    struct Thread(std::thread::Thread);
    impl Wake for Thread {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Thread(std::thread::current())));
    let mut context = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        match future.as_mut().poll(&mut context) {
            Poll::Ready(output) => return output,
            Poll::Pending => std::thread::park(),
        }
    }
}
