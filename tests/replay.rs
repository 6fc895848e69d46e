//! Replay of a time window with a real standalone: the plan covers exactly the window's
//! records of the integration (not another integration's, not earlier ones), the run
//! re-publishes each once with `replay_of` and the processor maps them again; running the same
//! plan twice maps nothing twice; progress, cancellation and bad input answer as documented.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use common::{Harness, meter_mapping, read_topic_to_end, reading_event};

async fn integration_with_use_case(h: &Harness, name: &str) -> String {
    let (status, integration) = h.post("/v1/integrations", json!({"name": name})).await;
    assert_eq!(status, StatusCode::CREATED, "{integration}");
    let id = integration["id"].as_str().expect("id").to_owned();
    let (status, use_case) = h
        .post(
            &format!("/v1/integrations/{id}/use-cases"),
            json!({"name": "Meter readings", "slug": "meter-readings", "type": "inbound",
                   "enabled": true, "configuration": meter_mapping()}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{use_case}");
    id
}

async fn post(h: &Harness, integration: &str, range: std::ops::Range<usize>) {
    let events: Vec<Value> = range
        .map(|n| reading_event(n, &format!("{integration}-d{n}")))
        .collect();
    let (status, answer) = h
        .post(
            "/v3/erp/updates/events",
            json!({"integration_id": integration, "events": events}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

/// Core events mapped so far, by `replay_of` (None for originals).
async fn mapped(h: &Harness) -> Vec<Value> {
    read_topic_to_end(&h.standalone.broker_address.to_string(), "erp.core.events")
        .await
        .into_iter()
        .map(|(_, v)| v)
        .filter(|v| v["_event_name"] == "InboundEventMapped")
        .collect()
}

async fn wait_mapped(h: &Harness, count: usize) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let events = mapped(h).await;
        if events.len() >= count {
            return events;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "{} of {count} mapped",
            events.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn now() -> String {
    erp_schemas::timestamp::format_millis(erp_schemas::timestamp::now_millis())
}

async fn wait_done(h: &Harness, integration: &str, task: &str) -> Value {
    let started = Instant::now();
    loop {
        let (status, progress) = h
            .get(&format!("/v1/integrations/{integration}/replays/{task}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{progress}");
        if progress["status"] != "running" {
            return progress;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{progress}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_is_replayed_exactly_once_per_plan() {
    let dir = tempfile::tempdir().expect("temp dir");
    let h = Harness::start(dir.path()).await;
    let a = integration_with_use_case(&h, "SAP A").await;
    let b = integration_with_use_case(&h, "SAP B").await;
    post(&h, &a, 0..20).await;
    wait_mapped(&h, 20).await;
    // Kafka timestamps have millisecond resolution: the window starts strictly after.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let from = now();
    post(&h, &a, 20..30).await;
    post(&h, &b, 0..5).await;
    wait_mapped(&h, 35).await;
    let to = now();

    // Bad input first.
    let plan_url = format!("/v1/integrations/{a}/replays/plan");
    for (body, code) in [
        (json!({}), StatusCode::BAD_REQUEST),
        (json!({"from_date": "yesterday"}), StatusCode::BAD_REQUEST),
        (
            json!({"from_date": to, "to_date": from}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"from_date": from, "offsets": {"0": {"start": 0, "end": 1}}}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"offsets": {"0": {"start": 5, "end": 1}}}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"from_date": from, "use_case_id": "nope"}),
            StatusCode::NOT_FOUND,
        ),
    ] {
        let (status, error) = h.post(&plan_url, body.clone()).await;
        assert_eq!(status, code, "{body}: {error}");
        assert!(error["code"].is_string(), "{error}");
    }
    let (status, error) = h
        .post(
            &format!("/v1/integrations/{a}/replays"),
            json!({"plan_id": "made-up"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{error}");

    // The plan: A's ten events of the window; B's five are in the ranges but not selected.
    let (status, plan) = h
        .post(&plan_url, json!({"from_date": from, "to_date": to}))
        .await;
    assert_eq!(status, StatusCode::OK, "{plan}");
    assert_eq!(plan["selected"], 10, "{plan}");
    assert_eq!(plan["records"], 15, "{plan}");
    assert_eq!(plan["selected_counted"], true);
    let listed: i64 = plan["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| p["end_offset"].as_i64().unwrap_or(0) - p["start_offset"].as_i64().unwrap_or(0))
        .sum();
    assert_eq!(listed, 15);
    // A window after everything is empty (the embedded broker's time index answers 0 there).
    let (_, empty) = h
        .post(&plan_url, json!({"from_date": "2099-01-01T00:00:00Z"}))
        .await;
    assert_eq!(
        (empty["records"].clone(), empty["selected"].clone()),
        (json!(0), json!(0))
    );

    // Run it.
    let plan_id = plan["plan_id"].as_str().expect("plan id").to_owned();
    let (status, started) = h
        .post(
            &format!("/v1/integrations/{a}/replays"),
            json!({"plan_id": plan_id}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    let task = started["task_id"].as_str().expect("task").to_owned();
    let progress = wait_done(&h, &a, &task).await;
    assert_eq!(
        (progress["status"].clone(), progress["done"].clone()),
        (json!("done"), json!(10))
    );

    // Each of the ten mapped once more, marked as a replay of its original.
    let events = wait_mapped(&h, 45).await;
    let inbound = read_topic_to_end(
        &h.standalone.broker_address.to_string(),
        "erp.inbound.events",
    )
    .await;
    let replays: Vec<&Value> = inbound
        .iter()
        .map(|(_, v)| v)
        .filter(|v| v["replay_of"].is_string())
        .collect();
    assert_eq!(replays.len(), 10);
    let originals: BTreeSet<&str> = replays
        .iter()
        .filter_map(|v| v["replay_of"].as_str())
        .collect();
    assert_eq!(originals.len(), 10, "each original once");
    assert!(replays.iter().all(|v| v["integration_id"] == a.as_str()));
    assert!(
        replays.iter().all(|v| v["deduplication_id"]
            .as_str()
            .is_some_and(|d| d.starts_with(&format!("replay/{plan_id}/")))),
        "{replays:?}"
    );

    // The same plan again: re-published, and dropped by the processor as duplicates.
    let skipped_before = h.metric("erp_processor_events_total{outcome=\"skipped\"}");
    let (status, again) = h
        .post(
            &format!("/v1/integrations/{a}/replays"),
            json!({"plan_id": plan_id}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{again}");
    let again = wait_done(&h, &a, again["task_id"].as_str().expect("task")).await;
    assert_eq!(again["done"], 10);
    assert!(
        h.eventually(Duration::from_secs(60), |h| {
            h.metric("erp_processor_events_total{outcome=\"skipped\"}") >= skipped_before + 10.0
        })
        .await,
        "the second run's events were not dropped as duplicates"
    );
    assert_eq!(mapped(&h).await.len(), events.len(), "mapped twice");

    // The audit: start and end spans with the task id as correlation id.
    let (status, trace) = h
        .get(&format!("/v2/integrations/{a}/monitoring/traces/{task}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{trace}");
    let started = Instant::now();
    let mut trace = trace;
    while trace["span_count"].as_u64() < Some(2) {
        assert!(started.elapsed() < Duration::from_secs(30), "{trace}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        trace = h
            .get(&format!("/v2/integrations/{a}/monitoring/traces/{task}"))
            .await
            .1;
    }
    let codes: Vec<&str> = trace["spans"]
        .as_array()
        .expect("spans")
        .iter()
        .filter_map(|s| s["code"].as_str())
        .collect();
    assert_eq!(codes, ["REPLAY_STARTED", "REPLAY_FINISHED"]);

    // Another integration's task is not found through A, and cancel answers for a done task.
    let (status, _) = h.get(&format!("/v1/integrations/{b}/replays/{task}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, cancelled) = h
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/integrations/{a}/replays/{task}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{cancelled}");
    assert_eq!(cancelled["status"], "done");
}

/// An inbound use case whose mapping throws for every event (its id and the integration's).
async fn failing_integration(h: &Harness, name: &str) -> (String, String) {
    let (status, integration) = h.post("/v1/integrations", json!({"name": name})).await;
    assert_eq!(status, StatusCode::CREATED, "{integration}");
    let id = integration["id"].as_str().expect("id").to_owned();
    let (status, use_case) = h
        .post(
            &format!("/v1/integrations/{id}/use-cases"),
            json!({"name": "Meter readings", "slug": "meter-readings", "type": "inbound",
                   "enabled": true, "configuration": {"entities": [{"entity_schema": "meter",
                   "unique_ids": ["meter_number"], "fields": [{"attribute": "meter_number",
                   "jsonataExpression": "$error('mapping bug')"}]}]}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{use_case}");
    (id, use_case["id"].as_str().expect("id").to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_of_an_integration_are_replayed_after_a_mapping_fix() {
    let dir = tempfile::tempdir().expect("temp dir");
    let h = Harness::start(dir.path()).await;
    let from = now();
    let (sap, use_case) = failing_integration(&h, "SAP").await;
    let (other, _) = failing_integration(&h, "Other").await;
    post(&h, &sap, 0..3).await;
    post(&h, &other, 0..2).await;
    let brokers = h.standalone.broker_address.to_string();
    let started = Instant::now();
    while read_topic_to_end(&brokers, "erp.dlq").await.len() < 5 {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "5 dead letters"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The fix, and proof that the processor maps with it.
    let (status, fixed) = h
        .call(
            reqwest::Method::PUT,
            &format!("/v1/integrations/{sap}/use-cases/{use_case}"),
            Some(
                json!({"name": "Meter readings", "slug": "meter-readings", "type": "inbound",
                        "enabled": true, "configuration": meter_mapping()}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{fixed}");
    post(&h, &sap, 100..101).await;
    wait_mapped(&h, 1).await;

    let plan_path = format!("/v1/integrations/{sap}/replays/plan");
    let (status, body) = h
        .post(
            &plan_path,
            json!({"from_date": from, "codes": ["MAPPING_EXPRESSION_FAILED"]}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "codes without source dlq: {body}"
    );
    let (status, body) = h
        .post(&plan_path, json!({"from_date": from, "source": "kafka"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, none) = h
        .post(
            &plan_path,
            json!({"from_date": from, "source": "dlq", "codes": ["POISON_RECORD"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{none}");
    assert_eq!(
        (none["records"].as_u64(), none["selected"].as_u64()),
        (Some(5), Some(0))
    );
    let (status, plan) = h
        .post(&plan_path, json!({"from_date": from, "source": "dlq"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{plan}");
    assert_eq!(plan["topic"], "erp.dlq");
    assert_eq!(plan["source"], "dlq");
    // Five dead letters in the window, three of them this integration's.
    assert_eq!(
        (plan["records"].as_u64(), plan["selected"].as_u64()),
        (Some(5), Some(3)),
        "{plan}"
    );
    let plan_id = plan["plan_id"].as_str().expect("plan id");
    let (status, task) = h
        .post(
            &format!("/v1/integrations/{sap}/replays"),
            json!({"plan_id": plan_id}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{task}");
    let done = wait_done(&h, &sap, task["task_id"].as_str().expect("task")).await;
    assert_eq!(
        (done["status"].as_str(), done["done"].as_u64()),
        (Some("done"), Some(3)),
        "{done}"
    );

    // The three events are mapped now, each once, as replays of their originals.
    let mapped = wait_mapped(&h, 4).await;
    let replayed: BTreeSet<String> = mapped
        .iter()
        .filter(|e| {
            e["deduplication_id"]
                .as_str()
                .is_some_and(|d| d.starts_with("replay/"))
        })
        .filter_map(|e| e["inbound_event_id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(replayed.len(), 3, "{mapped:?}");
    assert_eq!(
        mapped.len(),
        4,
        "the other integration's dead letters stay dead: {mapped:?}"
    );
    assert!(
        mapped.iter().all(|e| e["integration_id"] != other.as_str()),
        "another integration's event was replayed: {mapped:?}"
    );
}
