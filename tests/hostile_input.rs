//! Hostile input end to end (issue 12): a standalone (real broker, HTTP on loopback, sled) is
//! sent the documents that used to take it down or might, each answered with a precise error or
//! processed; the process stays alive (the test runs it in-process: a stack overflow would end
//! the test) and every ordinary event posted around them is mapped.

mod common;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use common::{Harness, meter_mapping, read_topic, reading_event};
use erp_schemas::inbound::{InboundEventRecord, PayloadFormat};

/// An event of the meter-readings use case with `payload` in `format`.
fn event(format: &str, payload: Value) -> Value {
    json!({"use_case_slug": "meter-readings", "timestamp": "2025-01-15T10:00:00Z",
           "format": format, "payload": payload})
}

fn deep_xml(levels: usize) -> String {
    format!("{}{}", "<e>".repeat(levels), "</e>".repeat(levels))
}

async fn post_events(h: &Harness, integration_id: &str, events: Vec<Value>) -> (StatusCode, Value) {
    h.post(
        "/v3/erp/updates/events",
        json!({"integration_id": integration_id, "events": events}),
    )
    .await
}

/// Posts one ordinary reading and returns its event id.
async fn ordinary(h: &Harness, integration_id: &str, n: usize) -> String {
    let (status, answer) = post_events(
        h,
        integration_id,
        vec![reading_event(n, &format!("ok-{n}"))],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer["results"][0]["event_id"]
        .as_str()
        .expect("event id")
        .to_owned()
}

fn assert_refused(status: StatusCode, answer: &Value, code: &str, mentions: &str) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["code"], code, "{answer}");
    let message = answer["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(mentions),
        "{message} should mention {mentions}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_events_are_answered_precisely_and_the_stream_flows_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let h = Harness::start(dir.path()).await;
    let (integration_id, _) = h
        .configure(meter_mapping(), "http://127.0.0.1:9/unused")
        .await;
    let brokers = h.standalone.broker_address.to_string();
    let mut expected = vec![ordinary(&h, &integration_id, 1).await];

    // The issue's reproducer: 50,000 nested elements (~350 KB), once answered 200 and then
    // crashing the processor on every start.
    let xml = deep_xml(50_000);
    assert!(xml.len() > 340_000);
    let (status, answer) = post_events(&h, &integration_id, vec![event("xml", json!(xml))]).await;
    assert_refused(status, &answer, "PAYLOAD_LIMIT_EXCEEDED", "max-depth");
    assert_eq!(answer["limit"], "max-depth", "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap_or_default()
            .contains("events[0].payload"),
        "{answer}"
    );
    // The same document in the mapping simulation.
    let (status, answer) = h
        .post(
            "/v2/erp/updates/mapping_simulation",
            json!({"event_configuration": meter_mapping(), "format": "xml", "payload": xml}),
        )
        .await;
    assert_refused(status, &answer, "PAYLOAD_LIMIT_EXCEEDED", "max-depth");

    // Deep JSON: beyond the JSON parser's own limit (128), and between the two.
    let deep_json = format!("{}{}", "[".repeat(50_000), "]".repeat(50_000));
    let (status, answer) =
        post_events(&h, &integration_id, vec![event("json", json!(deep_json))]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(answer["code"].is_string(), "{answer}");
    let deep_json = format!("{}{}", "[".repeat(100), "]".repeat(100));
    let (status, answer) =
        post_events(&h, &integration_id, vec![event("json", json!(deep_json))]).await;
    assert_refused(status, &answer, "PAYLOAD_LIMIT_EXCEEDED", "max-depth");
    // A deep object payload sent as an object, in the simulation.
    let mut nested = json!({"leaf": 1});
    for _ in 0..100 {
        nested = json!({"n": nested});
    }
    let (status, answer) = h
        .post(
            "/v2/erp/updates/mapping_simulation",
            json!({"event_configuration": meter_mapping(), "format": "json", "payload": nested}),
        )
        .await;
    assert_refused(status, &answer, "PAYLOAD_LIMIT_EXCEEDED", "max-depth");

    // A huge attribute (2 MiB; the default longest string is 1 MiB).
    let huge = format!("<r a=\"{}\"/>", "x".repeat(2 * 1024 * 1024));
    let (status, answer) = post_events(&h, &integration_id, vec![event("xml", json!(huge))]).await;
    assert_refused(
        status,
        &answer,
        "PAYLOAD_LIMIT_EXCEEDED",
        "max-string-bytes",
    );

    // Entity declarations: accepted (within the limits), never expanded or fetched; the
    // processor dead-letters the reference as an invalid payload.
    let laughs = r#"<!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY x SYSTEM "http://127.0.0.1:9/secret">]><r>&b;&x;</r>"#;
    let (status, answer) =
        post_events(&h, &integration_id, vec![event("xml", json!(laughs))]).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let entity_event = answer["results"][0]["event_id"]
        .as_str()
        .expect("event id")
        .to_owned();
    let (status, answer) = h
        .post(
            "/v2/erp/updates/mapping_simulation",
            json!({"event_configuration": meter_mapping(), "format": "xml", "payload": laughs}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["code"], "INVALID_PAYLOAD", "{answer}");

    // NUL bytes: valid JSON text, mapped (a missing identifier, here) or refused, never a crash.
    let (status, answer) = post_events(
        &h,
        &integration_id,
        vec![
            event("json", json!("{\"meterId\": \"M-\\u0000\"}")),
            event("xml", json!("<r>\u{0}</r>")),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    // Invalid UTF-8 in the body: a precise 400.
    let mut body =
        format!(r#"{{"integration_id": "{integration_id}", "events": [{{"use_case_slug": "meter-readings", "timestamp": "2025-01-15T10:00:00Z", "payload": "{{\"a\": \""#)
            .into_bytes();
    body.extend_from_slice(&[0xff, 0xfe, 0xc3]);
    body.extend_from_slice(br#"\"}"}]}"#);
    let response = h
        .client
        .post(format!("{}/v3/erp/updates/events", h.base))
        .bearer_auth(&h.standalone.admin_token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let answer: Value = response.json().await.expect("json");
    assert_eq!(answer["code"], "INVALID_JSON", "{answer}");

    // A body of nearly 10 MB with 100 events of ~100 KB: accepted whole, each event mapped.
    let filler = "x".repeat(99_000);
    let events: Vec<Value> = (0..100)
        .map(|n| {
            let payload = json!({"meterId": format!("M-big-{n}"), "reading": {"value": "1.5",
                "readAt": "2025-01-15T10:00:00Z", "obis": "1-0:1.8.0"}, "filler": filler});
            event("json", json!(payload.to_string()))
        })
        .collect();
    let (status, answer) = post_events(&h, &integration_id, events).await;
    assert_eq!(status, StatusCode::OK, "{}", answer["message"]);
    let big: Vec<String> = answer["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            assert_eq!(r["status"], "success", "{r}");
            r["event_id"].as_str().expect("id").to_owned()
        })
        .collect();
    assert_eq!(big.len(), 100);
    // Over the body limit: a precise 413, not a hang.
    let events: Vec<Value> = (0..100)
        .map(|_| {
            event(
                "json",
                json!(json!({"filler": "y".repeat(110_000)}).to_string()),
            )
        })
        .collect();
    let (status, answer) = post_events(&h, &integration_id, events).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");

    expected.push(ordinary(&h, &integration_id, 2).await);

    // A record over the limits that reached the topic another way (an older ingest, another
    // producer): the processor's own check dead-letters it.
    let record = InboundEventRecord {
        event_id: "evt_01HOSTILEDEEPXMLDIRECTLYWRITTEN".into(),
        org_id: "default".into(),
        integration_id: integration_id.clone(),
        api_version: "v3".into(),
        app_id: None,
        component_id: None,
        meta: None,
        received_at: erp_schemas::timestamp::now_millis(),
        correlation_id: "direct".into(),
        group_id: None,
        use_case_slug: Some("meter-readings".into()),
        event_name: None,
        event_type: None,
        timestamp: "2025-01-15T10:00:00Z".into(),
        format: PayloadFormat::Xml,
        payload: deep_xml(50_000),
        deduplication_id: None,
        replay_of: None,
    };
    let producer = erp_runtime::KafkaSettings::new(brokers.clone())
        .producer("hostile-test")
        .expect("producer");
    let bytes = serde_json::to_vec(&record).expect("encodes");
    erp_runtime::kafka::enqueue(&producer, "erp.inbound.events", &record.key(), &bytes)
        .await
        .expect("queued")
        .await
        .expect("delivered")
        .expect("acknowledged");
    expected.push(ordinary(&h, &integration_id, 3).await);

    // Every ordinary event, the 100 large ones included, is mapped.
    expected.extend(big);
    let wanted = expected.clone();
    let core = common::records_until(
        &h,
        "erp.core.events",
        |_| true,
        |records| {
            wanted.iter().all(|id| {
                records
                    .iter()
                    .any(|r| r.to_string().contains(&format!("\"{id}\"")))
            })
        },
    )
    .await;
    for id in &expected {
        assert!(
            core.iter()
                .any(|r| r.to_string().contains(&format!("\"{id}\""))),
            "event {id} was not mapped"
        );
    }
    // The two refused by the processor are dead letters with their source coordinates.
    let letters = read_topic(&brokers, "erp.dlq", usize::MAX, Duration::from_secs(5)).await;
    let letter_of = |event_id: &str| {
        letters
            .iter()
            .map(|(_, letter)| letter)
            .find(|letter| letter["event_id"] == event_id)
            .cloned()
    };
    let entity = letter_of(&entity_event).expect("the entity payload is dead-lettered");
    assert_eq!(entity["code"], "INVALID_PAYLOAD", "{entity}");
    assert!(
        entity["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("unknown entity"),
        "{entity}"
    );
    let deep = letter_of(&record.event_id).expect("the deep record is dead-lettered");
    assert_eq!(deep["code"], "PAYLOAD_LIMIT_EXCEEDED", "{deep}");
    assert_eq!(deep["source"]["topic"], "erp.inbound.events", "{deep}");
    assert!(deep["source"]["offset"].is_i64(), "{deep}");
    h.standalone.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_with_thousands_of_fields_is_saved_and_maps() {
    let dir = tempfile::tempdir().expect("temp dir");
    let h = Harness::start(dir.path()).await;
    let mut fields = vec![json!({"attribute": "meter_number", "field": "meterId"})];
    fields.extend(
        (0..5000).map(|i| json!({"attribute": format!("f{i}"), "field": format!("v{}", i % 10)})),
    );
    let configuration = json!({"entities": [{"entity_schema": "meter", "unique_ids": ["meter_number"], "fields": fields}]});
    let (integration_id, _) = h
        .configure(configuration, "http://127.0.0.1:9/unused")
        .await;
    let (status, answer) = post_events(
        &h,
        &integration_id,
        vec![event(
            "json",
            json!(json!({"meterId": "M-1", "v1": "one"}).to_string()),
        )],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let id = answer["results"][0]["event_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let core = common::records_until(
        &h,
        "erp.core.events",
        |r| r.to_string().contains(&id),
        |records| !records.is_empty(),
    )
    .await;
    assert_eq!(core.len(), 1, "the event is mapped once");
    assert!(
        core[0].to_string().contains("\"f1\":\"one\""),
        "{}",
        core[0]
    );
    h.standalone.stop().await.expect("clean stop");
}
