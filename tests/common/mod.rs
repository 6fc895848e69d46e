//! Test harness: a standalone erp-toolkit on a temporary data directory with a real broker, a
//! real HTTP receiver and a real HTTP client.
#![allow(dead_code)]

pub mod process;

use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use reqwest::StatusCode;
use serde_json::{Value, json};

use erp_runtime::KafkaSettings;
use erp_toolkit::{Standalone, StandaloneOptions};

/// Logs of the system under test, when `RUST_LOG` asks for them.
pub fn init_logs() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber_init();
    }
}

fn tracing_subscriber_init() -> Result<(), ()> {
    erp_runtime::telemetry::init(&erp_runtime::settings::LogArgs {
        log_format: erp_runtime::settings::LogFormat::Text,
        log: "info".into(),
    });
    Ok(())
}

/// Options for tests: free ports, three partitions, quick retries.
pub fn options(dir: &Path) -> StandaloneOptions {
    let mut options = StandaloneOptions::new(dir);
    options.partitions = 3;
    options.dispatcher.retry_schedule = vec![Duration::from_millis(100); 3];
    options
}

/// A running standalone and a client for its API.
pub struct Harness {
    pub standalone: Standalone,
    pub client: reqwest::Client,
    pub base: String,
}

impl Harness {
    /// Starts a standalone on `dir` and waits until it is ready.
    pub async fn start(dir: &Path) -> Self {
        Self::start_with(options(dir)).await
    }

    /// Starts a standalone with `options` and waits until it is ready.
    pub async fn start_with(options: StandaloneOptions) -> Self {
        init_logs();
        let standalone = Standalone::start(options, Default::default())
            .await
            .expect("standalone starts");
        standalone
            .ready(Duration::from_secs(60))
            .await
            .expect("standalone gets ready");
        let base = format!("http://{}", standalone.http_address);
        Self {
            standalone,
            client: reqwest::Client::new(),
            base,
        }
    }

    /// Sends a request with the admin token; returns status and JSON body (`Null` if none).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call_as(&self.standalone.admin_token, method, path, body)
            .await
    }

    /// Sends a request with `token`; returns status and JSON body (`Null` if none).
    pub async fn call_as(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request is answered");
        let status = response.status();
        let text = response.text().await.expect("body is read");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// A metric's value (summed over label sets matching `selector`), from `/metrics`.
    pub fn metric(&self, selector: &str) -> f64 {
        metric_value(&self.standalone.metrics.encode(), selector)
    }

    /// Waits until `condition` holds; false on timeout.
    pub async fn eventually(
        &self,
        limit: Duration,
        mut condition: impl FnMut(&Self) -> bool,
    ) -> bool {
        let started = Instant::now();
        while started.elapsed() < limit {
            if condition(self) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        condition(self)
    }

    /// Creates an integration, an inbound use case with `configuration` and an endpoint at `url`
    /// subscribed to `InboundEventMapped`. Returns the integration id and the signing secret.
    pub async fn configure(&self, configuration: Value, url: &str) -> (String, String) {
        let (status, integration) = self
            .post(
                "/v1/integrations",
                json!({"name": "SAP IS-U", "description": "test"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{integration}");
        let integration_id = integration["id"].as_str().expect("id").to_owned();
        let (status, use_case) = self
            .post(
                &format!("/v1/integrations/{integration_id}/use-cases"),
                json!({"name": "Meter readings", "slug": "meter-readings", "type": "inbound",
                       "enabled": true, "configuration": configuration}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{use_case}");
        let (status, webhook) = self
            .post(
                "/v1/webhooks/configs",
                json!({"name": "platform", "eventName": "event_InboundEventMapped", "url": url}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{webhook}");
        let secret = webhook["signingSecret"]
            .as_str()
            .expect("secret")
            .to_owned();
        (integration_id, secret)
    }

    /// Creates an endpoint at `url` subscribed to `InboundEventMapped`, with `extra` fields;
    /// returns its id and signing secret.
    pub async fn webhook(&self, name: &str, url: &str, extra: Value) -> (String, String) {
        let mut body = json!({"name": name, "eventName": "event_InboundEventMapped", "url": url});
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        let (status, answer) = self.post("/v1/webhooks/configs", body).await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
        (
            answer["id"].as_str().expect("id").to_owned(),
            answer["signingSecret"].as_str().expect("secret").to_owned(),
        )
    }
}

/// Sums the samples of `selector` (`name` or `name{label="value",…}`) in a Prometheus text page:
/// every sample of `name` whose labels include the selector's.
pub fn metric_value(page: &str, selector: &str) -> f64 {
    let (wanted_name, wanted_labels) = match selector.split_once('{') {
        Some((name, labels)) => (name, labels.trim_end_matches('}')),
        None => (selector, ""),
    };
    page.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (sample, value) = line.rsplit_once(' ')?;
            let (name, labels) = match sample.split_once('{') {
                Some((name, labels)) => (name, labels.trim_end_matches('}')),
                None => (sample, ""),
            };
            let have: Vec<&str> = labels.split(',').collect();
            let matches = name == wanted_name
                && wanted_labels
                    .split(',')
                    .filter(|l| !l.is_empty())
                    .all(|l| have.contains(&l));
            matches.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// The mapping the pipeline tests use: a meter-reading payload onto a `meter` entity.
pub fn meter_mapping() -> Value {
    json!({"entities": [{
        "entity_schema": "meter",
        "unique_ids": ["meter_number"],
        "fields": [
            {"attribute": "meter_number", "field": "meterId"},
            {"attribute": "last_reading", "jsonataExpression": "$number(reading.value)"},
            {"attribute": "reading_date", "field": "$.reading.readAt"},
            {"attribute": "obis", "field": "$.reading.obis"},
            {"attribute": "source", "constant": "ERP"}
        ]
    }]})
}

/// The payload of reading `n`.
pub fn reading_payload(n: usize) -> Value {
    json!({"meterId": format!("M-{:04}", n % 97), "reading": {
        "value": format!("{}.5", 1000 + n), "readAt": "2025-01-15T10:00:00Z", "obis": "1-0:1.8.0"}})
}

/// An ingest event for reading `n` under `dedup`.
pub fn reading_event(n: usize, dedup: &str) -> Value {
    json!({"use_case_slug": "meter-readings", "timestamp": "2025-01-15T10:00:00Z",
           "format": "json", "payload": reading_payload(n).to_string(), "deduplication_id": dedup})
}

/// What the mapping must produce for reading `n`.
pub fn expected_attributes(n: usize) -> Value {
    json!({"meter_number": format!("M-{:04}", n % 97), "last_reading": 1000.5 + n as f64,
           "reading_date": "2025-01-15T10:00:00Z", "obis": "1-0:1.8.0", "source": "ERP"})
}

/// Reads `topic` until `done` holds for the records `keep` selects, or a generous limit passes
/// (then the records so far, for the caller's assertion to show).
pub async fn records_until(
    h: &Harness,
    topic: &str,
    keep: impl Fn(&Value) -> bool,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let brokers = h.standalone.broker_address.to_string();
    let started = Instant::now();
    loop {
        let records: Vec<Value> = read_topic(&brokers, topic, usize::MAX, Duration::from_secs(2))
            .await
            .into_iter()
            .map(|(_, value)| value)
            .filter(|value| keep(value))
            .collect();
        if done(&records) || started.elapsed() > Duration::from_secs(180) {
            return records;
        }
    }
}

/// Reads every record of `topic` from the beginning until at least `want` arrived or `limit`
/// passed. Returns (key, JSON value) pairs.
pub async fn read_topic(
    brokers: &str,
    topic: &str,
    want: usize,
    limit: Duration,
) -> Vec<(String, Value)> {
    read_topic_raw(brokers, topic, want, limit)
        .await
        .into_iter()
        .map(|(key, value)| (key, serde_json::from_str(&value).unwrap_or(Value::Null)))
        .collect()
}

/// The names of every topic on the broker.
pub fn topic_names(brokers: &str) -> Vec<String> {
    let settings = KafkaSettings::new(brokers);
    let consumer: StreamConsumer = settings.reader("erp-toolkit-test").expect("reader");
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata");
    metadata
        .topics()
        .iter()
        .map(|t| t.name().to_owned())
        .collect()
}

/// Like [`read_topic`], with each value as (lossy) text rather than JSON.
pub async fn read_topic_raw(
    brokers: &str,
    topic: &str,
    want: usize,
    limit: Duration,
) -> Vec<(String, String)> {
    let settings = KafkaSettings::new(brokers);
    let consumer: StreamConsumer = settings.reader("erp-toolkit-test").expect("reader");
    // Generous: on a loaded machine (two cores, several brokers and builds) a metadata request
    // to the embedded broker has taken longer than 10 s.
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(30))
        .expect("metadata");
    let partitions = metadata
        .topics()
        .first()
        .map(|t| t.partitions().len())
        .unwrap_or(0);
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment
            .add_partition_offset(topic, partition as i32, Offset::Beginning)
            .expect("assignment");
    }
    consumer.assign(&assignment).expect("assign");
    drop(assignment);
    let mut records = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    while records.len() < want {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(Ok(message)) => {
                let key = message
                    .key()
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .unwrap_or_default();
                let payload = message.payload().unwrap_or_default();
                match serde_json::from_slice::<Value>(payload) {
                    // One entry per span of a span batch, as its own JSON text.
                    Ok(Value::Array(spans)) if topic.ends_with("monitoring") => {
                        records.extend(spans.iter().map(|span| (key.clone(), span.to_string())))
                    }
                    _ => records.push((key, String::from_utf8_lossy(payload).into_owned())),
                }
            }
            Ok(Err(error)) => panic!("consume failed: {error}"),
            Err(_) => break,
        }
    }
    records
}

/// Each partition of `topic` with its low and high watermark, as of now.
fn partition_watermarks(consumer: &StreamConsumer, topic: &str) -> Vec<(i32, i64, i64)> {
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(30))
        .expect("metadata");
    let partitions = metadata
        .topics()
        .first()
        .map(|t| t.partitions().len())
        .unwrap_or(0) as i32;
    (0..partitions)
        .map(|partition| {
            let (low, high) = consumer
                .fetch_watermarks(topic, partition, Duration::from_secs(30))
                .expect("watermarks");
            (partition, low, high)
        })
        .collect()
}

/// How many records `topic` holds now (the sum of its partitions' high watermarks minus their
/// starts): records, not spans, on the monitoring topic.
pub fn record_count(brokers: &str, topic: &str) -> i64 {
    let settings = KafkaSettings::new(brokers);
    let consumer: StreamConsumer = settings.reader("erp-toolkit-test").expect("reader");
    partition_watermarks(&consumer, topic)
        .into_iter()
        .map(|(_, low, high)| high - low)
        .sum()
}

/// Every record of `topic` up to its end as of now (the high watermark of each partition, read
/// first), as (key, JSON value): complete however many there are, unlike a read with a deadline.
pub async fn read_topic_to_end(brokers: &str, topic: &str) -> Vec<(String, Value)> {
    let settings = KafkaSettings::new(brokers);
    let consumer: StreamConsumer = settings.reader("erp-toolkit-test").expect("reader");
    let mut assignment = TopicPartitionList::new();
    let mut remaining = std::collections::HashMap::new();
    for (partition, low, high) in partition_watermarks(&consumer, topic) {
        if high > low {
            remaining.insert(partition, high);
            assignment
                .add_partition_offset(topic, partition, Offset::Beginning)
                .expect("assignment");
        }
    }
    let mut records = Vec::new();
    if remaining.is_empty() {
        return records;
    }
    consumer.assign(&assignment).expect("assign");
    while !remaining.is_empty() {
        let message = tokio::time::timeout(Duration::from_secs(60), consumer.recv())
            .await
            .expect("the topic is read to its end within 60 s")
            .expect("consume");
        if let Some(high) = remaining.get(&message.partition())
            && message.offset() + 1 >= *high
        {
            remaining.remove(&message.partition());
        }
        let key = message
            .key()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .unwrap_or_default();
        let value =
            serde_json::from_slice(message.payload().unwrap_or_default()).unwrap_or(Value::Null);
        push_flattened(&mut records, topic, key, value);
    }
    records
}

/// Adds a record's value, or on the monitoring topic each span of a span batch (an array, see
/// `docs/monitoring.md`, "Record format"), so tests see one value per span.
fn push_flattened(records: &mut Vec<(String, Value)>, topic: &str, key: String, value: Value) {
    match value {
        Value::Array(spans) if topic.ends_with("monitoring") => {
            records.extend(spans.into_iter().map(|span| (key.clone(), span)));
        }
        value => records.push((key, value)),
    }
}

/// A dispatcher role in a child process on `brokers` (3 partitions, loopback destinations
/// allowed, a short session so a killed member leaves the group soon), logging to `log`, with
/// `extra` flags; killed (SIGKILL) when dropped.
pub struct DispatcherProcess(process::Role);

impl DispatcherProcess {
    pub fn spawn(brokers: &str, log: &Path, extra: &[&str]) -> Self {
        let mut args = vec![
            "dispatcher",
            "--brokers",
            brokers,
            "--listen",
            "127.0.0.1:0",
            "--partitions",
            "3",
            "--allow-destination",
            "127.0.0.1/32",
            "--kafka-option",
            "session.timeout.ms=6000",
            "--kafka-option",
            "heartbeat.interval.ms=500",
        ];
        args.extend_from_slice(extra);
        Self(process::Role::spawn(
            "dispatcher",
            &args,
            log,
            &[("RUST_LOG", "info,erp_dispatcher=debug")],
        ))
    }

    pub fn kill(&mut self) {
        self.0.kill();
    }
}
