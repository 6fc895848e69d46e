//! Avro on the wire: with `erp.core.events` and `erp.inbound.events` written as Avro in the
//! Confluent wire format, the pipeline still delivers signed, mapped webhooks; the records carry
//! the magic byte and the id of the schema registered under `<topic>-value`; a JSON record
//! written to the same topic (a migration) is delivered too; a consumer through a registry
//! client reads the mixed topic; and a Kafka client outside the project (confluent-kafka for
//! Python, when installed) decodes `erp.core.events` through our registry.

mod common;

use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use reqwest::StatusCode;
use serde_json::{Value, json};

use common::{Harness, expected_attributes, meter_mapping, options, reading_event};
use erp_runtime::KafkaSettings;
use erp_runtime::registry_client::{ExternalRegistry, RegistryAuth};
use erp_runtime::wire::Wire;
use erp_schemas::topics::Topics;
use erp_schemas::wire::TopicFormats;
use erp_toolkit::receiver::Receiver;

const LONG: Duration = Duration::from_secs(180);
const EVENTS: usize = 10;

/// Every record value of `topic` up to its end as of now, as bytes.
async fn raw_values(brokers: &str, topic: &str) -> Vec<Vec<u8>> {
    let settings = KafkaSettings::new(brokers);
    let consumer: std::sync::Arc<StreamConsumer> =
        std::sync::Arc::new(settings.reader("erp-toolkit-test-raw").expect("reader"));
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(30))
        .expect("metadata");
    let partitions = metadata
        .topics()
        .first()
        .map_or(0, |t| t.partitions().len());
    let mut ends = Vec::new();
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions as i32 {
        let end = erp_runtime::kafka::high_watermark(
            std::sync::Arc::clone(&consumer),
            topic.to_owned(),
            partition,
        )
        .await
        .expect("watermark");
        if end > 0 {
            ends.push((partition, end));
            assignment
                .add_partition_offset(topic, partition, Offset::Beginning)
                .expect("assignment");
        }
    }
    let mut values = Vec::new();
    if ends.is_empty() {
        return values;
    }
    consumer.assign(&assignment).expect("assign");
    let mut left: std::collections::BTreeMap<i32, i64> = ends.into_iter().collect();
    while !left.is_empty() {
        let message = tokio::time::timeout(LONG, consumer.recv())
            .await
            .expect("records until the end")
            .expect("consumed");
        if let Some(end) = left.get(&message.partition()).copied() {
            values.push(message.payload().unwrap_or_default().to_vec());
            if message.offset() + 1 >= end {
                left.remove(&message.partition());
            }
        }
    }
    values
}

fn schema_id(value: &[u8]) -> Option<u32> {
    match value {
        [0, a, b, c, d, ..] => Some(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avro_topics_carry_confluent_framing_and_the_pipeline_still_delivers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut options = options(dir.path());
    options.wire.avro_topics = vec!["core".into(), "inbound".into()];
    let h = Harness::start_with(options).await;
    let receiver = Receiver::start("127.0.0.1:0", None, false)
        .await
        .expect("receiver");
    let (integration_id, secret) = h.configure(meter_mapping(), &receiver.url()).await;
    let events: Vec<Value> = (0..EVENTS)
        .map(|n| reading_event(n, &format!("reading-{n}")))
        .collect();
    let (status, body) = h
        .post(
            "/v3/erp/updates/events",
            json!({"integration_id": integration_id, "events": events}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Delivered as ever: signed, mapped, in JSON (webhooks are JSON whatever the topic carries).
    assert!(
        receiver.wait_for(EVENTS, LONG).await,
        "only {} deliveries",
        receiver.count()
    );
    for delivery in receiver.deliveries() {
        assert!(delivery.verify(&secret), "signature");
        let event = delivery.json();
        assert_eq!(event["_event_name"], "InboundEventMapped", "{event}");
        let dedup = event["deduplication_id"].as_str().expect("dedup id");
        let n: usize = dedup.trim_start_matches("reading-").parse().expect("n");
        assert_eq!(
            event["entity_updates"][0]["attributes"],
            expected_attributes(n),
            "{event}"
        );
    }

    // On the topics: the magic byte and the id registered under `<topic>-value`.
    let token = h.standalone.admin_token.clone();
    let brokers = h.standalone.broker_address.to_string();
    for (topic, want) in [("erp.core.events", EVENTS), ("erp.inbound.events", EVENTS)] {
        let (status, latest) = h
            .get(&format!(
                "/schema-registry/subjects/{topic}-value/versions/latest"
            ))
            .await;
        assert_eq!(status, StatusCode::OK, "{latest}");
        let id = latest["id"].as_u64().expect("id") as u32;
        let values = raw_values(&brokers, topic).await;
        assert_eq!(values.len(), want, "{topic}");
        for value in &values {
            assert_eq!(
                schema_id(value),
                Some(id),
                "{topic}: magic byte and schema id"
            );
        }
    }

    // A JSON record on the Avro topic (a producer not switched yet) is delivered as well.
    let (_, webhooks) = h.get("/v1/webhooks/configs").await;
    let list = webhooks
        .as_array()
        .or_else(|| webhooks["results"].as_array())
        .or_else(|| webhooks["configs"].as_array())
        .cloned()
        .unwrap_or_default();
    let webhook_id = list
        .first()
        .and_then(|w| w["id"].as_str())
        .unwrap_or_else(|| panic!("a webhook in {webhooks}"))
        .to_owned();
    let producer = KafkaSettings::new(brokers.clone())
        .producer("test")
        .expect("producer");
    let json_event = json!({
        "_event_id": "evt-json-during-migration", "_event_name": "TestMessage",
        "_event_time": "2025-03-01T08:00:00.000Z", "_org_id": "default",
        "_delivery": {"type": "webhook", "webhook_id": webhook_id},
        "payload": {"written": "as JSON"}
    });
    erp_runtime::kafka::send(
        &producer,
        "erp.core.events",
        "evt-json-during-migration",
        json_event.to_string().as_bytes(),
    )
    .await
    .expect("produced");
    assert!(
        receiver.wait_for(EVENTS + 1, LONG).await,
        "the JSON record was not delivered: {} deliveries",
        receiver.count()
    );

    // A consumer of the mixed topic, with a registry client (schema_registry_converter) asking
    // our registry over HTTP, the token as the basic-auth password.
    let registry = ExternalRegistry::new(
        &format!("{}/schema-registry", h.base),
        &RegistryAuth::Basic {
            user: "platform".into(),
            password: token.clone(),
        },
    )
    .expect("client");
    let reader = Wire::new(
        Topics::default(),
        TopicFormats::default(),
        Some(std::sync::Arc::new(registry)),
    );
    let values = raw_values(&brokers, "erp.core.events").await;
    let (mut avro, mut plain) = (0, 0);
    for value in &values {
        let decoded: Value = reader
            .decode("core event", "erp.core.events", value)
            .await
            .expect("decodes");
        assert_eq!(decoded["_org_id"], "default", "{decoded}");
        match schema_id(value) {
            Some(_) => {
                avro += 1;
                assert_eq!(decoded["_event_name"], "InboundEventMapped", "{decoded}");
            }
            None => {
                plain += 1;
                assert_eq!(decoded, json_event);
            }
        }
    }
    assert_eq!((avro, plain), (EVENTS, 1));

    python_consumer_decodes(&h, &brokers, &token).await;
    h.standalone.stop().await.expect("clean stop");
}

/// The interpreter with confluent-kafka: `ERP_TOOLKIT_PYTHON` (then it must have it: CI sets
/// it), else the venv `.ci/run` installs, else `python3`; `None` when none has it.
fn python() -> Option<String> {
    let has = |python: &str| {
        std::process::Command::new(python)
            .args(["-c", "import confluent_kafka, fastavro"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if let Ok(python) = std::env::var("ERP_TOOLKIT_PYTHON") {
        assert!(
            has(&python),
            "ERP_TOOLKIT_PYTHON={python} lacks confluent_kafka"
        );
        return Some(python);
    }
    let venv = std::env::var("HOME")
        .map(|home| format!("{home}/.cache/erp-toolkit/confluent-venv/bin/python"))
        .unwrap_or_default();
    [venv, "python3".to_owned()].into_iter().find(|p| has(p))
}

/// confluent-kafka's Consumer and AvroDeserializer decode `erp.core.events` through our
/// registry (`scripts/avro-consumer.py`).
async fn python_consumer_decodes(h: &Harness, brokers: &str, token: &str) {
    let Some(python) = python() else {
        eprintln!("confluent-kafka for Python not installed: the foreign-client check is skipped");
        return;
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/avro-consumer.py");
    let registry = format!("{}/schema-registry", h.base);
    let output = tokio::process::Command::new(&python)
        .args([script, brokers, &registry, token, "erp.core.events"])
        .arg(EVENTS.to_string())
        .output()
        .await
        .expect("the script runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "avro-consumer.py failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    let decoded: Vec<Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    assert_eq!(decoded.len(), EVENTS, "{stdout}");
    for record in &decoded {
        let value = &record["value"];
        assert_eq!(value["_event_name"], "InboundEventMapped", "{record}");
        assert_eq!(value["_org_id"], "default", "{record}");
        let updates = value["entity_updates"].as_array().expect("updates");
        assert_eq!(updates[0]["entity_slug"], "meter", "{record}");
        // Free-form parts travel as JSON text in the Avro record (docs/schemas.md).
        let attributes: Value =
            serde_json::from_str(updates[0]["attributes"].as_str().expect("JSON text"))
                .expect("JSON");
        assert!(attributes["meter_number"].is_string(), "{record}");
    }
}
