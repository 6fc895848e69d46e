//! End-to-end tests of the pollable outbound queue (spec §8.4) on the standalone pipeline:
//! `POST /v1/events` → processor → `erp.outbound.poll` → poll / ack / DLQ / redrive / unblock,
//! across a restart on the same data directory.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use common::{Harness, read_topic};

/// Upper bound for anything to happen; tests never assert how fast.
const LONG: Duration = Duration::from_secs(120);

fn options(dir: &std::path::Path) -> erp_toolkit::StandaloneOptions {
    let mut options = common::options(dir);
    // Leases lapse quickly so redelivery and the poison policy can be observed.
    options.poll.visibility_timeout = Duration::from_secs(1);
    options.poll.sweep_every = Duration::from_millis(200);
    options
}

fn event(n: u32) -> Value {
    // The blocking integration subscribes to another event, so the streams stay apart.
    let name = if n == 5 {
        "ContractTerminated"
    } else {
        "ContractUpdated"
    };
    json!({"_event_id": format!("01JP00000000000000000000{n:02}"), "_event_name": name,
           "_event_time": "2025-03-01T08:00:00.000Z", "_org_id": "default",
           "_ack_id": format!("6f1c1a52-0000-4000-8000-0000000000{n:02}"),
           "_event_version": "1.0", "_event_source": "portal", "contract": {"number": n}})
}

/// An integration with one outbound use case whose only mapping is a poll delivery.
async fn poll_integration(
    h: &Harness,
    name: &str,
    event_name: &str,
    delivery: Value,
) -> (String, String) {
    let (status, integration) = h.post("/v1/integrations", json!({"name": name})).await;
    assert_eq!(status, StatusCode::CREATED, "{integration}");
    let id = integration["id"].as_str().expect("id").to_owned();
    let (status, use_case) = h
        .post(
            &format!("/v1/integrations/{id}/use-cases"),
            json!({"name": "Contracts", "slug": "contracts",
            "type": "outbound", "enabled": true,
            "configuration": {"event_catalog_event": event_name,
                "mappings": [{"name": "ERP queue", "enabled": true, "delivery": delivery}]}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{use_case}");
    (id, use_case["id"].as_str().expect("id").to_owned())
}

async fn poll(h: &Harness, integration: &str, body: Value) -> Value {
    let (status, answer) = h
        .post(
            &format!("/v1/integrations/{integration}/outbound/messages/poll"),
            body,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer
}

/// Polls until a batch comes back (a lease lapses, the sweep applies a policy).
async fn poll_until_some(h: &Harness, integration: &str) -> Value {
    let started = Instant::now();
    loop {
        let answer = poll(h, integration, json!({})).await;
        if answer["messages"].as_array().is_some_and(|m| !m.is_empty()) {
            return answer;
        }
        assert!(started.elapsed() < LONG, "nothing redelivered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn ack(h: &Harness, integration: &str, acks: &[(&str, &str)]) -> Vec<(String, String)> {
    let acks: Vec<Value> = acks
        .iter()
        .map(|(id, token)| json!({"id": id, "lease_token": token}))
        .collect();
    let (status, answer) = h
        .post(
            &format!("/v1/integrations/{integration}/outbound/messages/ack"),
            json!({"acks": acks}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            let status = r["status"].as_str().unwrap_or_default();
            let verdict = r["reason"].as_str().unwrap_or(status);
            (
                r["id"].as_str().unwrap_or_default().to_owned(),
                verdict.to_owned(),
            )
        })
        .collect()
}

fn ids(batch: &Value) -> Vec<String> {
    batch["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["id"].as_str().expect("id").to_owned())
        .collect()
}

fn token(batch: &Value) -> String {
    batch["messages"][0]["lease_token"]
        .as_str()
        .expect("lease token")
        .to_owned()
}

/// `erp-toolkit dlq --integration <integration> <args…> --output json`: exit code and answer.
async fn dlq_cli(h: &Harness, integration: &str, args: &[&str]) -> (i32, Value) {
    let mut all: Vec<String> = [
        "dlq",
        "--api",
        &h.base,
        "--token",
        &h.standalone.admin_token,
        "--output",
        "json",
        "--integration",
        integration,
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    all.extend(args.iter().map(|s| (*s).to_owned()));
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_erp-toolkit"))
            .args(&all)
            .output()
            .expect("runs")
    })
    .await
    .expect("joins");
    let answer = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), answer)
}

async fn dlq(h: &Harness, integration: &str) -> Value {
    let (status, answer) = h
        .get(&format!(
            "/v1/integrations/{integration}/outbound/messages/dlq"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_ack_redelivery_dead_letters_and_a_restart_keep_their_promises() {
    let dir = tempfile::tempdir().expect("temp dir");
    let h = Harness::start_with(options(dir.path())).await;
    let (queue, use_case_id) = poll_integration(
        &h,
        "SAP",
        "ContractUpdated",
        json!({"type": "poll", "max_delivery_attempts": 2, "poison_policy": "dead_letter"}),
    )
    .await;
    let (blocking, _) = poll_integration(
        &h,
        "Wilken",
        "ContractTerminated",
        json!({"type": "poll", "max_delivery_attempts": 1, "poison_policy": "block"}),
    )
    .await;

    // Contract errors first.
    let (status, answer) = h
        .post(
            "/v1/integrations/00000000-0000-4000-8000-000000000000/outbound/messages/poll",
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    assert_eq!(answer["code"], "INTEGRATION_NOT_FOUND");
    let path = format!("/v1/integrations/{queue}/outbound/messages/poll");
    for body in [
        json!({"limit": 0}),
        json!({"limit": 101}),
        json!({"max": 1}),
    ] {
        let (status, answer) = h.post(&path, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    }
    let (status, answer) = h
        .post(
            &format!("/v1/integrations/{queue}/outbound/messages/ack"),
            json!({"acks": []}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let (status, empty) = h.call(reqwest::Method::POST, &path, None).await;
    assert_eq!(status, StatusCode::OK, "{empty}");
    assert_eq!(
        empty,
        json!({"messages": [], "visibility_timeout_seconds": 1, "has_more": false}),
        "a body is optional"
    );

    // Three events reach the stream, in order.
    let (status, answer) = h
        .post(
            "/v1/events",
            json!({"events": [event(1), event(2), event(3)]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    // Items reach the API's fold asynchronously: wait for them rather than race the lease.
    assert!(
        h.eventually(LONG, |h| h.metric("erp_poll_messages_enqueued_total")
            >= 3.0)
            .await,
        "not enqueued"
    );
    let first = poll(&h, &queue, json!({"limit": 2})).await;
    assert_eq!(first["has_more"], true);
    assert_eq!(first["visibility_timeout_seconds"], 1);
    let message = &first["messages"][0];
    assert_eq!(message["event_id"], "01JP0000000000000000000001");
    assert_eq!(message["event_name"], "ContractUpdated");
    assert_eq!(message["use_case_id"], use_case_id.as_str());
    assert_eq!(message["group"], "0");
    assert_eq!(message["payload"], event(1), "the raw event");
    assert!(message["enqueued_at"].is_string());
    let [m1, m2] = <[String; 2]>::try_from(ids(&first)).expect("two messages");
    assert!(m1.starts_with("msg_") && token(&first).starts_with("lt_"));
    let lease = token(&first);
    assert_eq!(
        ids(&poll(&h, &queue, json!({})).await),
        Vec::<String>::new(),
        "one lease per stream"
    );
    assert_eq!(
        ack(&h, &queue, &[(&m2, &lease)]).await,
        [(m2.clone(), "out_of_order".to_owned())]
    );
    assert_eq!(
        ack(
            &h,
            &queue,
            &[(&m2, &lease), (&m1, &lease), ("msg_x", &lease)]
        )
        .await,
        [
            (m2.clone(), "accepted".to_owned()),
            (m1.clone(), "accepted".to_owned()),
            ("msg_x".to_owned(), "not_found".to_owned())
        ]
    );

    // The third is redelivered after its lease lapses: same id, new token.
    let third = poll(&h, &queue, json!({})).await;
    let [m3] = <[String; 1]>::try_from(ids(&third)).expect("one message");
    assert_eq!(third["has_more"], false);
    let again = poll_until_some(&h, &queue).await;
    assert_eq!(ids(&again), std::slice::from_ref(&m3));
    assert_ne!(token(&again), token(&third));
    assert_eq!(
        ack(&h, &queue, &[(&m3, &token(&third))]).await,
        [(m3.clone(), "stale_lease".to_owned())]
    );
    assert_eq!(
        ack(&h, &queue, &[(&m3, &token(&again))]).await,
        [(m3.clone(), "accepted".to_owned())]
    );

    // A fourth is never acked: after two attempts it is dead-lettered.
    let (status, _) = h.post("/v1/events", json!({"events": [event(4)]})).await;
    assert_eq!(status, StatusCode::OK);
    let fourth = poll_until_some(&h, &queue).await;
    let [m4] = <[String; 1]>::try_from(ids(&fourth)).expect("one message");
    assert_eq!(
        ids(&poll_until_some(&h, &queue).await),
        std::slice::from_ref(&m4)
    );
    let started = Instant::now();
    let listed = loop {
        let listed = dlq(&h, &queue).await;
        if listed["items"].as_array().is_some_and(|i| !i.is_empty()) {
            break listed;
        }
        assert!(started.elapsed() < LONG, "never dead-lettered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(listed["items"][0]["id"], m4.as_str());
    assert_eq!(listed["items"][0]["delivery_attempts"], 2);
    assert_eq!(listed["items"][0]["event_id"], "01JP0000000000000000000004");
    assert!(listed["items"][0]["expires_at"].is_string());
    assert!(listed["items"][0].get("payload").is_none(), "no payloads");

    // Block policy: the head halts the stream until an operator unblocks it.
    let (status, _) = h.post("/v1/events", json!({"events": [event(5)]})).await;
    assert_eq!(status, StatusCode::OK);
    let blocked = poll_until_some(&h, &blocking).await;
    let [m5] = <[String; 1]>::try_from(ids(&blocked)).expect("one message");
    let unblock = format!("/v1/integrations/{blocking}/outbound/messages/unblock");
    let started = Instant::now();
    loop {
        let (status, answer) = h.post(&unblock, json!({"reason": "bad contract"})).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        if answer["unblocked"] == true {
            assert_eq!(answer["dead_lettered_id"], m5.as_str());
            break;
        }
        assert_eq!(answer, json!({"unblocked": false}));
        assert!(started.elapsed() < LONG, "never blocked");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        dlq(&h, &blocking).await["items"][0]["reason"],
        "bad contract"
    );

    // The platform sends the first event again: the processor re-emits the same message id,
    // which the stream drops (checked after the restart, which re-reads the whole topic).
    let (status, _) = h.post("/v1/events", json!({"events": [event(1)]})).await;
    assert_eq!(status, StatusCode::OK);
    let brokers = h.standalone.broker_address.to_string();
    let items = read_topic(&brokers, "erp.outbound.poll", 6, LONG).await;
    assert_eq!(items.len(), 6, "the copy is on the topic");

    // A restart on the same data directory keeps the cursor and the DLQ.
    h.standalone.stop().await.expect("clean stop");
    let h = Harness::start_with(options(dir.path())).await;
    assert_eq!(
        ids(&poll(&h, &queue, json!({})).await),
        Vec::<String>::new(),
        "acked, dead-lettered and copied messages are not delivered"
    );
    assert_eq!(dlq(&h, &queue).await["items"][0]["id"], m4.as_str());
    // The ops CLI lists what the API lists, and redrives through it (exit 1: an id was unknown).
    let (code, listed) = dlq_cli(&h, &queue, &["list", "--all"]).await;
    assert_eq!(code, 0);
    assert_eq!(listed["items"], dlq(&h, &queue).await["items"]);
    let (code, answer) = dlq_cli(
        &h,
        &queue,
        &["redrive", "--id", m4.as_str(), "--id", "msg_unknown"],
    )
    .await;
    assert_eq!(code, 1, "{answer}");
    assert_eq!(
        answer,
        json!({"results": [{"id": m4, "status": "redriven"}, {"id": "msg_unknown", "status": "not_found"}]})
    );
    let redriven = poll_until_some(&h, &queue).await;
    let [copy] = <[String; 1]>::try_from(ids(&redriven)).expect("one message");
    assert_ne!(copy, m4, "a redriven message gets a new id");
    assert_eq!(redriven["messages"][0]["payload"], event(4));
    assert_eq!(
        ack(&h, &queue, &[(&copy, &token(&redriven))]).await,
        [(copy.clone(), "accepted".to_owned())]
    );
    assert_eq!(dlq(&h, &queue).await["items"], json!([]));

    let brokers = h.standalone.broker_address.to_string();
    let spans = read_topic(
        &brokers,
        "erp.monitoring",
        usize::MAX,
        Duration::from_secs(2),
    )
    .await;
    let codes: BTreeSet<String> = spans
        .iter()
        .filter_map(|(_, s)| s["code"].as_str().map(str::to_owned))
        .filter(|c| c.starts_with("MSG_"))
        .collect();
    for code in [
        "MSG_ENQUEUED",
        "MSG_ACKED",
        "MSG_DEAD_LETTERED",
        "MSG_HEAD_BLOCKED",
    ] {
        assert!(codes.contains(code), "{code} missing: {codes:?}");
    }
    h.standalone.stop().await.expect("clean stop");
}

/// No silent success (issue 10, item 7): an outbound mapping with `file_proxy` delivery stored
/// before the API refused it on save. Its events are dead-lettered with an error span: never a
/// success span, a message for delivery or a pending ACK.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_file_proxy_mapping_dead_letters_its_events() {
    let dir = tempfile::tempdir().expect("temp dir");
    let h = Harness::start_with(options(dir.path())).await;
    let (integration, use_case_id) =
        poll_integration(&h, "Documents", "ContractUpdated", json!({"type": "poll"})).await;
    let path = format!("/v1/integrations/{integration}/use-cases/{use_case_id}");
    let (status, stored) = h.get(&path).await;
    assert_eq!(status, StatusCode::OK, "{stored}");

    // What an earlier version accepted, written straight to the log.
    let file_proxy = json!({"type": "file_proxy", "use_case_slug": "upload-documents"});
    let configuration = json!({"event_catalog_event": "ContractUpdated",
        "mappings": [{"name": "Upload", "enabled": true, "delivery": file_proxy}]});
    let record = erp_schemas::config::ConfigRecord {
        org_id: "default".into(),
        at: "2025-01-01T00:00:00Z".into(),
        actor: None,
        base_revision: None,
        change: erp_schemas::config::ConfigChange::UseCaseUpserted {
            use_case: erp_schemas::config::UseCase {
                id: use_case_id.clone(),
                integration_id: integration.clone(),
                name: "Contracts".into(),
                slug: Some("contracts".into()),
                kind: "outbound".into(),
                enabled: true,
                configuration: Some(configuration),
                change_description: None,
                changed_by: None,
                created_at: "2025-01-01T00:00:00Z".into(),
                updated_at: "2025-01-01T00:00:00Z".into(),
            },
        },
    };
    let brokers = h.standalone.broker_address.to_string();
    let producer = erp_runtime::KafkaSettings::new(&brokers)
        .producer("test")
        .expect("producer");
    erp_runtime::kafka::send(
        &producer,
        "erp.config",
        &use_case_id,
        serde_json::to_string(&record).expect("json").as_bytes(),
    )
    .await
    .expect("sent");
    // Once the API serves it, the processor (same log, same fold) has it too, or will before
    // the event below: it reads the configuration log before routing.
    let started = Instant::now();
    loop {
        let (_, served) = h.get(&path).await;
        if served["configuration"]["mappings"][0]["delivery"]["type"] == "file_proxy" {
            break;
        }
        assert!(started.elapsed() < LONG, "never served: {served}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let sent = event(7);
    let (status, answer) = h.post("/v1/events", json!({"events": [sent]})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let event_id = sent["_event_id"].as_str().expect("id");
    let letters = common::records_until(
        &h,
        "erp.dlq",
        |l| l["event_id"] == event_id,
        |letters| !letters.is_empty(),
    )
    .await;
    assert_eq!(
        letters.first().map(|l| l["code"].clone()),
        Some(json!("DELIVERY_TYPE_NOT_SUPPORTED")),
        "{letters:#?}"
    );
    let spans = common::records_until(
        &h,
        "erp.monitoring",
        |s| s["event_id"] == event_id && s["use_case_id"] == use_case_id.as_str(),
        |spans| !spans.is_empty(),
    )
    .await;
    assert!(
        spans.iter().all(|s| s["level"] == "error"),
        "only error spans: {spans:#?}"
    );
    assert!(!spans.is_empty());
    let ack_id = sent["_ack_id"].as_str().expect("ack id");
    let acks = read_topic(&brokers, "erp.acks", usize::MAX, Duration::from_secs(2)).await;
    assert!(
        acks.iter()
            .all(|(key, value)| !key.contains(ack_id) && !value.to_string().contains(ack_id)),
        "no pending ACK: {acks:?}"
    );
    let core = read_topic(
        &brokers,
        "erp.core.events",
        usize::MAX,
        Duration::from_secs(2),
    )
    .await;
    assert!(
        core.iter()
            .all(|(_, value)| value["source_event_id"] != event_id),
        "nothing for delivery: {core:?}"
    );
    h.standalone.stop().await.expect("clean stop");
}
