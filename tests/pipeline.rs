//! End-to-end tests of the standalone pipeline: HTTP ingest → `erp.inbound.events` → processor
//! (dedup in sled, JSONata mapping) → `erp.core.events` → dispatcher → signed webhook at a real
//! receiver, all on the embedded Kafka-protocol broker.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use common::{
    Harness, expected_attributes, meter_mapping, read_topic, reading_event, records_until,
};
use erp_toolkit::receiver::{Delivery, Receiver};

const LONG: Duration = Duration::from_secs(180);

/// Event `n`'s deduplication id: every tenth event repeats the id (and payload) of the event
/// four places earlier, so 1,000 events hold 900 distinct ones.
fn dedup_of(n: usize) -> (usize, String) {
    let original = if n % 10 == 9 { n - 4 } else { n };
    (original, format!("reading-{original}"))
}

/// Posts events `range` in batches of 100 and checks every one was queued.
async fn post_readings(h: &Harness, integration_id: &str, range: std::ops::Range<usize>) {
    let all: Vec<usize> = range.collect();
    for chunk in all.chunks(100) {
        let events: Vec<Value> = chunk
            .iter()
            .map(|&n| {
                let (original, dedup) = dedup_of(n);
                reading_event(original, &dedup)
            })
            .collect();
        let (status, body) = h
            .post(
                "/v3/erp/updates/events",
                json!({"integration_id": integration_id, "events": events}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let results = body["results"].as_array().expect("results");
        assert_eq!(results.len(), chunk.len());
        for result in results {
            assert_eq!(result["status"], "success", "{result}");
            assert!(
                result["event_id"]
                    .as_str()
                    .is_some_and(|id| id.starts_with("evt_"))
            );
        }
    }
}

/// Checks deliveries: one per distinct dedup id, signed, with the mapped attributes.
fn check_deliveries(deliveries: &[Delivery], secret: &str, expected: usize) {
    let mut by_dedup: BTreeMap<String, usize> = BTreeMap::new();
    let mut webhook_ids = BTreeSet::new();
    for delivery in deliveries {
        assert!(
            delivery.verify(secret),
            "signature of {} does not verify",
            delivery.webhook_id
        );
        let event = delivery.json();
        assert_eq!(event["_event_name"], "InboundEventMapped");
        assert_eq!(
            delivery.webhook_id,
            format!("msg_{}", event["_event_id"].as_str().expect("id"))
        );
        webhook_ids.insert(delivery.webhook_id.clone());
        let dedup = event["deduplication_id"]
            .as_str()
            .expect("dedup id")
            .to_owned();
        let n: usize = dedup
            .trim_start_matches("reading-")
            .parse()
            .expect("number");
        let updates = event["entity_updates"].as_array().expect("updates");
        assert_eq!(updates.len(), 1, "{event}");
        assert_eq!(updates[0]["entity_slug"], "meter");
        assert_eq!(updates[0]["mode"], "upsert");
        assert_eq!(updates[0]["attributes"], expected_attributes(n), "{dedup}");
        assert_eq!(
            updates[0]["unique_identifiers"],
            json!({"meter_number": expected_attributes(n)["meter_number"]})
        );
        *by_dedup.entry(dedup).or_default() += 1;
    }
    assert_eq!(deliveries.len(), expected, "deliveries");
    assert_eq!(
        by_dedup.len(),
        expected,
        "distinct deduplication ids delivered"
    );
    assert_eq!(webhook_ids.len(), expected, "distinct webhook-ids");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_events_with_duplicates_arrive_once_each_signed_and_mapped() {
    let dir = tempfile::tempdir().expect("temp dir");
    let h = Harness::start(dir.path()).await;
    let receiver = Receiver::start("127.0.0.1:0", None, false)
        .await
        .expect("receiver");
    let (integration_id, secret) = h.configure(meter_mapping(), &receiver.url()).await;

    post_readings(&h, &integration_id, 0..1000).await;

    assert!(
        receiver.wait_for(900, LONG).await,
        "only {} deliveries",
        receiver.count()
    );
    assert!(
        h.eventually(LONG, |h| h.metric("erp_processor_events_total") >= 1000.0
            && h.metric("erp_dispatcher_deliveries_total") >= 900.0)
            .await,
        "processor or dispatcher did not finish"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        h.metric("erp_processor_events_total{outcome=\"success\"}"),
        900.0
    );
    assert_eq!(
        h.metric("erp_processor_events_total{outcome=\"skipped\"}"),
        100.0
    );
    check_deliveries(&receiver.deliveries(), &secret, 900);

    // Every event left a monitoring span: 900 mapped, 100 duplicates, 900 deliveries.
    // The API's own access-log spans share the topic: they are no event's span.
    let spans = records_until(&h, "erp.monitoring", not_access_log, |s| s.len() >= 1900).await;
    let levels = spans.iter().fold(BTreeMap::new(), |mut acc, span| {
        *acc.entry(span["level"].as_str().unwrap_or("?").to_owned())
            .or_insert(0) += 1;
        acc
    });
    assert_eq!(levels.get("success"), Some(&1800), "{levels:?}");
    assert_eq!(levels.get("skipped"), Some(&100), "{levels:?}");
    // Spans travel in batches: a stage writes one record per integration and poll batch, so
    // 2,000 spans (plus the access log's) take far fewer records than spans.
    let brokers = h.standalone.broker_address.to_string();
    let records = common::record_count(&brokers, "erp.monitoring");
    let all_spans = records_until(&h, "erp.monitoring", |_| true, |s| s.len() >= 1900).await;
    assert!(
        (records as usize) < all_spans.len(),
        "{records} records carry {} spans",
        all_spans.len()
    );
    h.standalone.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_configuration_events_and_dedup_state() {
    let dir = tempfile::tempdir().expect("temp dir");
    let receiver = Receiver::start("127.0.0.1:0", None, false)
        .await
        .expect("receiver");

    let first = Harness::start(dir.path()).await;
    let token = first.standalone.admin_token.clone();
    let (integration_id, secret) = first.configure(meter_mapping(), &receiver.url()).await;
    post_readings(&first, &integration_id, 0..500).await;
    assert!(
        receiver.wait_for(450, LONG).await,
        "only {} deliveries",
        receiver.count()
    );
    // Events accepted but perhaps not yet processed must survive the stop too.
    first.standalone.stop().await.expect("clean stop");

    let second = Harness::start(dir.path()).await;
    assert_eq!(
        second.standalone.admin_token, token,
        "the admin token is kept"
    );
    let (status, integration) = second
        .get(&format!("/v1/integrations/{integration_id}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{integration}");
    let (_, use_cases) = second
        .get(&format!("/v1/integrations/{integration_id}/use-cases"))
        .await;
    assert_eq!(use_cases["use_cases"][0]["slug"], "meter-readings");
    let (_, webhooks) = second.get("/v1/webhooks/configs").await;
    assert_eq!(webhooks.as_array().map(Vec::len), Some(1));
    assert!(
        webhooks[0].get("signingSecret").is_none(),
        "the secret is shown once only"
    );

    // The second half repeats dedup ids of the first half across the restart: event 500's
    // dedup id is new, 509 repeats 505; and ten events repeat ids from before the restart.
    post_readings(&second, &integration_id, 500..1000).await;
    let repeats: Vec<Value> = (0..10)
        .map(|k| reading_event(k * 40, &format!("reading-{}", k * 40)))
        .collect();
    let (status, body) = second
        .post(
            "/v3/erp/updates/events",
            json!({"integration_id": integration_id, "events": repeats}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    assert!(
        receiver.wait_for(900, LONG).await,
        "only {} deliveries",
        receiver.count()
    );
    assert!(
        second
            .eventually(LONG, |h| h.metric("erp_processor_events_total") >= 510.0)
            .await,
        "processor did not finish"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(second.metric("erp_processor_events_total{outcome=\"skipped\"}") >= 60.0);
    check_deliveries(&receiver.deliveries(), &secret, 900);
    second.standalone.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_precise_errors_and_breaks_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let h = Harness::start(dir.path()).await;
    let receiver = Receiver::start("127.0.0.1:0", None, false)
        .await
        .expect("receiver");
    let (integration_id, secret) = h.configure(meter_mapping(), &receiver.url()).await;
    let events = "/v3/erp/updates/events";

    // No token, wrong token.
    let response = h
        .client
        .post(format!("{}{events}", h.base))
        .body("{}")
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["code"], "UNAUTHORIZED");
    let response = h
        .client
        .get(format!("{}/v1/integrations", h.base))
        .bearer_auth("erpt_wrong")
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // Malformed JSON.
    let response = h
        .client
        .post(format!("{}{events}", h.base))
        .bearer_auth(&h.standalone.admin_token)
        .header("content-type", "application/json")
        .body("{\"integration_id\": ")
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["code"], "INVALID_JSON");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));

    // Missing fields and wrong types: 400 naming the field.
    let good = reading_event(1, "bad-input-1");
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"events": [good.clone()]}),
            "integration_id is required",
        ),
        (
            json!({"integration_id": integration_id}),
            "events is required",
        ),
        (
            json!({"integration_id": integration_id, "events": [{"use_case_slug": "meter-readings", "format": "json", "payload": {"a": 1}}]}),
            "events[0].timestamp is required",
        ),
        (
            json!({"integration_id": integration_id, "events": [{"use_case_slug": "meter-readings", "timestamp": 5, "payload": {"a": 1}}]}),
            "events[0].timestamp must be a string",
        ),
        (
            json!({"integration_id": integration_id, "events": [{"use_case_slug": "meter-readings", "timestamp": "2025-01-15T10:00:00Z", "payload": 7}]}),
            "events[0].payload must be a string or an object",
        ),
        (
            json!({"integration_id": integration_id, "events": [good.clone(), {"timestamp": "2025-01-15T10:00:00Z", "payload": {"a": 1}}]}),
            "events[1].use_case_slug or events[1].event_name is required",
        ),
        (
            json!({"integration_id": 42, "events": []}),
            "integration_id must be a string",
        ),
        (
            json!({"integration_id": integration_id, "events": [good.clone()], "group_id": ["g"]}),
            "group_id must be a string",
        ),
    ];
    for (body, message) in cases {
        let (status, answer) = h.post(events, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert_eq!(answer["code"], "BAD_REQUEST", "{answer}");
        assert!(
            answer["message"]
                .as_str()
                .is_some_and(|m| m.contains(message)),
            "expected {message:?} in {answer}"
        );
    }

    // Unknown integration: 404.
    let (status, answer) = h
        .post(events, json!({"integration_id": "00000000-0000-4000-8000-000000000000", "events": [good.clone()]}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    assert_eq!(answer["code"], "INTEGRATION_NOT_FOUND");

    // 101 events: 400.
    let many: Vec<Value> = (0..101)
        .map(|n| reading_event(n, &format!("many-{n}")))
        .collect();
    let (status, answer) = h
        .post(
            events,
            json!({"integration_id": integration_id, "events": many}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["code"], "TOO_MANY_EVENTS");

    // A configuration whose JSONata does not parse is refused when saved: 422 naming the place.
    let (status, answer) = h
        .post(
            &format!("/v1/integrations/{integration_id}/use-cases"),
            json!({"name": "Broken", "slug": "broken", "type": "inbound", "enabled": true,
                   "configuration": {"entities": [{"entity_schema": "contact", "unique_ids": ["id"],
                       "fields": [{"attribute": "id", "jsonataExpression": "customer.("}]}]}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["code"], "INVALID_CONFIGURATION");
    assert!(
        answer["message"]
            .as_str()
            .is_some_and(|m| m.contains("entities[0] (contact).fields[0]")),
        "{answer}"
    );

    // A mapping that throws at run time: the event is accepted, then dead-lettered with its
    // source coordinates, and the events after it still flow.
    let (status, answer) = h
        .post(
            &format!("/v1/integrations/{integration_id}/use-cases"),
            json!({"name": "Throws", "slug": "throws", "type": "inbound", "enabled": true,
                   "configuration": {"entities": [{"entity_schema": "contact", "unique_ids": ["id"],
                       "fields": [{"attribute": "id", "jsonataExpression": "$error('ERP sent garbage')"}]}]}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let throwing = json!({"use_case_slug": "throws", "timestamp": "2025-01-15T10:00:00Z", "payload": {"a": 1}});
    let unrouted = json!({"use_case_slug": "nobody-home", "timestamp": "2025-01-15T10:00:00Z", "payload": {"a": 1}});
    let (status, answer) = h
        .post(
            events,
            json!({"integration_id": integration_id, "events": [throwing, unrouted, good]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["results"][0]["status"], "success");
    assert_eq!(answer["results"][1]["status"], "ignored");
    assert_eq!(answer["results"][2]["status"], "success");

    assert!(
        receiver.wait_for(1, LONG).await,
        "the good event was not delivered"
    );
    let delivered = receiver.deliveries();
    assert!(delivered[0].verify(&secret));
    assert_eq!(delivered[0].json()["deduplication_id"], "bad-input-1");

    let brokers = h.standalone.broker_address.to_string();
    let letters = read_topic(&brokers, "erp.dlq", 1, LONG).await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    let letter = &letters[0].1;
    assert_eq!(letter["stage"], "processor");
    assert_eq!(letter["code"], "MAPPING_EXPRESSION_FAILED");
    assert!(
        letter["reason"]
            .as_str()
            .is_some_and(|r| r.contains("ERP sent garbage")),
        "{letter}"
    );
    assert_eq!(letter["source"]["topic"], "erp.inbound.events");
    assert!(letter["source"]["offset"].is_i64());
    let original: Value =
        serde_json::from_str(letter["value"].as_str().expect("value")).expect("record");
    assert_eq!(original["use_case_slug"], "throws");
    assert_eq!(answer["results"][0]["event_id"], original["event_id"]);

    assert!(
        h.eventually(LONG, |h| h.metric("erp_processor_events_total") >= 3.0)
            .await,
        "processor did not finish"
    );
    assert_eq!(
        h.metric("erp_processor_events_total{outcome=\"error\"}"),
        1.0
    );
    assert_eq!(
        h.metric("erp_processor_events_total{outcome=\"ignored\"}"),
        1.0
    );

    // A poison record written straight to the topic (not through the API) is dead-lettered with
    // its coordinates, and the partition goes on.
    let producer = erp_runtime::KafkaSettings::new(brokers.clone())
        .producer("test")
        .expect("producer");
    erp_runtime::kafka::send(
        &producer,
        "erp.inbound.events",
        &integration_id,
        b"\x00not json",
    )
    .await
    .expect("produced");
    let (status, _) = h
        .post(
            events,
            json!({"integration_id": integration_id, "events": [reading_event(2, "after-poison")]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        receiver.wait_for(2, LONG).await,
        "the event after the poison record was not delivered"
    );
    let letters = read_topic(&brokers, "erp.dlq", 2, LONG).await;
    assert_eq!(letters.len(), 2, "{letters:?}");
    assert_eq!(letters[1].1["code"], "POISON_RECORD");
    assert_eq!(letters[1].1["source"]["topic"], "erp.inbound.events");
    // Every dead letter is counted under its stage and code.
    for code in ["MAPPING_EXPRESSION_FAILED", "POISON_RECORD"] {
        let series = format!("erp_dead_letters_total{{code=\"{code}\",stage=\"processor\"}}");
        assert_eq!(h.metric(&series), 1.0, "{series}");
    }

    // Unknown routes and methods answer in the same error shape.
    let (status, answer) = h.get("/v9/nothing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(answer["code"], "NOT_FOUND");
    h.standalone.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapping_simulation_and_xml_meter_readings_through_the_pipeline() {
    let dir = tempfile::tempdir().expect("temp dir");
    let h = Harness::start(dir.path()).await;

    // v2 simulation: the configuration format of use cases.
    let readings = json!({"meter_readings": [{
        "jsonataExpression": "Zaehlerstaende.Stand",
        "meter": {"unique_ids": [{"attribute": "meter_number", "field": "$$.Zaehlerstaende.`@geraet`"}]},
        "fields": [
            {"attribute": "external_id", "jsonataExpression": "$$.Zaehlerstaende.`@geraet` & '-' & datum"},
            {"attribute": "timestamp", "field": "datum"},
            {"attribute": "value", "jsonataExpression": "$number(wert)"},
            {"attribute": "source", "constant": "ERP"}]}]});
    let xml = "<Zaehlerstaende geraet=\"1ESY1160\"><Stand><datum>2025-01-15</datum><wert>4711.5</wert></Stand>\
               <Stand><datum>2025-02-15</datum><wert>4800</wert></Stand></Zaehlerstaende>";
    let (status, result) = h
        .post(
            "/v2/erp/updates/mapping_simulation",
            json!({"event_configuration": readings, "format": "xml", "payload": xml}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{result}");
    assert_eq!(
        result["meter_readings_updates"][1]["attributes"],
        json!({"external_id": "1ESY1160-2025-02-15", "timestamp": "2025-02-15T00:00:00.000Z", "value": 4800, "source": "ERP"})
    );
    assert_eq!(result["entity_updates"], json!([]));

    // Object payloads, and errors: 400 malformed, 422 invalid configuration or payload.
    let (status, result) = h
        .post(
            "/v2/erp/updates/mapping_simulation",
            json!({"event_configuration": meter_mapping(), "format": "json", "payload": common::reading_payload(3)}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{result}");
    assert_eq!(
        result["entity_updates"][0]["attributes"],
        expected_attributes(3)
    );
    let cases = [
        (
            json!({"format": "json", "payload": "{}"}),
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
        ),
        (
            json!({"event_configuration": {}, "payload": 5}),
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
        ),
        (
            json!({"event_configuration": {"entities": [{"entity_schema": "c", "unique_ids": [], "fields": [{"attribute": "a", "jsonataExpression": "(("}]}]}, "payload": "{}"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_CONFIGURATION",
        ),
        (
            json!({"event_configuration": meter_mapping(), "payload": "{broken"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_PAYLOAD",
        ),
        (
            json!({"event_configuration": meter_mapping(), "payload": {"reading": {}}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "MISSING_IDENTIFIER",
        ),
    ];
    for (body, status, code) in cases {
        let (got, answer) = h.post("/v2/erp/updates/mapping_simulation", body).await;
        assert_eq!(
            (got, answer["code"].as_str()),
            (status, Some(code)),
            "{answer}"
        );
    }

    // v1 simulation with the legacy v1.0 object mapping.
    let (status, result) = h
        .post(
            "/v1/erp/updates/mapping_simulation",
            json!({"object_type": "business_partner", "format": "json", "payload": "{\"partnerId\":\"BP1\",\"firstName\":\"Anna\"}",
                   "mapping_configuration": {"version": "1.0", "mapping": {"objects": {"business_partner": {
                       "unique_ids": {"contact": {"partnerId": "customer_number"}},
                       "fields": [{"entity": "contact", "attribute": "first_name", "field": "firstName"}]}}}}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{result}");
    assert_eq!(
        result["entity_updates"][0]["unique_identifiers"],
        json!({"customer_number": "BP1"})
    );

    // The same XML meter-reading mapping in the running pipeline.
    let receiver = Receiver::start("127.0.0.1:0", None, false)
        .await
        .expect("receiver");
    let (integration_id, secret) = h.configure(readings, &receiver.url()).await;
    let (status, answer) = h
        .post(
            "/v3/erp/updates/events",
            json!({"integration_id": integration_id, "events": [{"use_case_slug": "meter-readings",
                   "timestamp": "2025-02-15T06:00:00Z", "format": "xml", "payload": xml}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(receiver.wait_for(1, LONG).await, "no delivery");
    let delivery = &receiver.deliveries()[0];
    assert!(delivery.verify(&secret));
    assert_eq!(
        delivery.json()["meter_readings_updates"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    h.standalone.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_platform_events_are_filtered_mapped_and_delivered_to_their_webhook() {
    let dir = tempfile::tempdir().expect("temp dir");
    let h = Harness::start_with(common::options(dir.path())).await;
    let receiver = Receiver::start("127.0.0.1:0", None, false)
        .await
        .expect("receiver");
    let (status, webhook) = h
        .post("/v1/webhooks/configs", json!({"name": "ERP middleware", "eventName": "event_InstallmentUpdated", "url": receiver.url()}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{webhook}");
    let secret = webhook["signingSecret"]
        .as_str()
        .expect("secret")
        .to_owned();
    let webhook_id = webhook["id"].as_str().expect("id").to_owned();
    let (_, integration) = h.post("/v1/integrations", json!({"name": "SAP"})).await;
    let integration_id = integration["id"].as_str().expect("id").to_owned();
    let use_cases = format!("/v1/integrations/{integration_id}/use-cases");
    let (status, use_case) = h
        .post(&use_cases, json!({"name": "Change installment", "slug": "change-installment", "type": "outbound", "enabled": true,
            "configuration": {"event_catalog_event": "InstallmentUpdated", "event_filter": "contract.installment_amount > 0",
                "mappings": [{"name": "ERP installment", "enabled": true,
                    "jsonata_expression": "{\"acknowledgeId\": _ack_id, \"contract_number\": contract.contract_number, \"event_name\": _event_name, \"value\": $string(contract.installment_amount)}",
                    "delivery": {"type": "webhook", "webhook_id": webhook_id}}]}}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{use_case}");
    assert!(
        use_case["configuration"]["mappings"][0]["id"].is_string(),
        "mapping ids are assigned"
    );
    let (status, _) = h
        .post(&use_cases, json!({"name": "Payment method", "slug": "payment-method", "type": "outbound", "enabled": true,
            "configuration": {"event_catalog_event": "PaymentMethodUpdated", "event_filter": "$error('filter bug')",
                "mappings": [{"name": "ERP", "enabled": true, "jsonata_expression": "$", "delivery": {"type": "webhook", "webhook_id": webhook_id}}]}}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, answer) = h
        .post(&use_cases, json!({"name": "Broken", "slug": "broken", "type": "outbound", "enabled": true,
            "configuration": {"event_catalog_event": "X", "mappings": [{"name": "m", "jsonata_expression": "{(", "delivery": {"type": "webhook", "webhook_id": "w"}}]}}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");

    // Minimal events the core event catalog accepts (checked on POST /v1/events).
    let event = |id: &str, name: &str, amount: i64| {
        let operation = if name == "TariffChange" {
            "createEntity"
        } else {
            "updateEntity"
        };
        let mut event = json!({"_event_version": "1.0", "_event_source": "portal", "operation": operation,
            "contract": {"_schema": "contract"}});
        event["_event_id"] = json!(id);
        event["_event_name"] = json!(name);
        event["_event_time"] = json!("2025-03-01T08:00:00.000Z");
        event["_org_id"] = json!("default");
        event["_ack_id"] = json!("3fa85f64-5717-4562-b3fc-2c963f66afa6");
        event["trigger_entity"] = json!("8d0f6f4e-0000-4000-8000-0000000000c1");
        if !event["contract"].is_object() {
            event["contract"] = json!({});
        }
        event["contract"]["contract_number"] = json!("V-2024-0001");
        event["contract"]["installment_amount"] = json!(amount);
        event
    };
    let (status, answer) = h
        .post(
            "/v1/events",
            json!({"events": [
            event("01JN0000000000000000000001", "InstallmentUpdated", 8900),
            event("01JN0000000000000000000002", "InstallmentUpdated", 0),
            event("01JN0000000000000000000003", "PaymentMethodUpdated", 1),
            event("01JN0000000000000000000004", "TariffChange", 1)]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, answer) = h
        .post(
            "/v1/events",
            json!([{"_event_name": "X", "_event_time": "2025-03-01T08:00:00Z"}]),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .is_some_and(|m| m.contains("events[0]._event_id is required")),
        "{answer}"
    );

    assert!(receiver.wait_for(1, LONG).await, "nothing delivered");
    let brokers = h.standalone.broker_address.to_string();
    let letters = read_topic(&brokers, "erp.dlq", 1, LONG).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let deliveries = receiver.deliveries();
    assert_eq!(
        deliveries.len(),
        1,
        "only the matching event is delivered, once"
    );
    assert!(deliveries[0].verify(&secret));
    assert_eq!(
        deliveries[0].json(),
        json!({"acknowledgeId": "3fa85f64-5717-4562-b3fc-2c963f66afa6", "contract_number": "V-2024-0001",
               "event_name": "InstallmentUpdated", "value": "8900"})
    );
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].1["code"], "MAPPING_EXPRESSION_FAILED");
    assert_eq!(letters[0].1["source"]["topic"], "erp.platform.events");
    assert!(
        letters[0].1["reason"]
            .as_str()
            .is_some_and(|r| r.contains("filter bug"))
    );

    let spans = records_until(&h, "erp.monitoring", not_access_log, |s| s.len() >= 4).await;
    let codes: BTreeSet<String> = spans
        .iter()
        .filter(|s| s["use_case_type"] == "outbound")
        .map(|s| {
            format!(
                "{}:{}",
                s["level"].as_str().unwrap_or(""),
                s["code"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert!(
        codes.contains("success:")
            && codes.contains("skipped:EVENT_FILTERED")
            && codes.contains("error:MAPPING_EXPRESSION_FAILED"),
        "{codes:?}"
    );
    h.standalone.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_tracking_confirms_times_out_and_accepts_late_acks() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut options = common::options(dir.path());
    options.acks.timeout = Duration::from_secs(2);
    options.acks.sweep_every = Duration::from_millis(200);
    let h = Harness::start_with(options).await;
    let receiver = Receiver::start("127.0.0.1:0", None, false)
        .await
        .expect("receiver");
    let (_, webhook) = h
        .post(
            "/v1/webhooks/configs",
            json!({"name": "ERP", "eventName": "event_InstallmentUpdated", "url": receiver.url()}),
        )
        .await;
    let webhook_id = webhook["id"].as_str().expect("id").to_owned();
    let (_, integration) = h.post("/v1/integrations", json!({"name": "SAP"})).await;
    let integration_id = integration["id"].as_str().expect("id").to_owned();
    let (status, answer) = h
        .post(&format!("/v1/integrations/{integration_id}/use-cases"), json!({"name": "Installment", "slug": "installment", "type": "outbound", "enabled": true,
            "configuration": {"event_catalog_event": "InstallmentUpdated",
                "mappings": [{"name": "ERP", "enabled": true, "jsonata_expression": "{\"acknowledgeId\": _ack_id}",
                    "delivery": {"type": "webhook", "webhook_id": webhook_id}}]}}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let event = |n: u32, ack_id: &str| {
        json!({"_event_id": format!("01JN00000000000000000000A{n}"), "_event_name": "InstallmentUpdated",
               "_event_time": "2025-03-01T08:00:00.000Z", "_org_id": "default", "_ack_id": ack_id,
               "_event_version": "1.0", "_event_source": "portal", "operation": "updateEntity",
               "trigger_entity": "8d0f6f4e-0000-4000-8000-0000000000c1"})
    };
    let (confirmed, forgotten) = (
        "6f1c1a52-0000-4000-8000-000000000001",
        "6f1c1a52-0000-4000-8000-000000000002",
    );
    let (status, answer) = h
        .post(
            "/v1/events",
            json!({"events": [event(1, confirmed), event(2, forgotten)]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(receiver.wait_for(2, LONG).await, "not delivered");
    let delivered: BTreeSet<String> = receiver
        .deliveries()
        .iter()
        .filter_map(|d| d.json()["acknowledgeId"].as_str().map(str::to_owned))
        .collect();
    assert!(delivered.contains(confirmed) && delivered.contains(forgotten));

    let ack = "/v1/erp/tracking/acknowledgement";
    let (status, answer) = h
        .post(ack, json!({"ack_id": confirmed, "status": "processed"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, answer) = h.post(ack, json!({"ack_id": confirmed})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a second ACK: {answer}");
    assert_eq!(answer["code"], "ACK_NOT_FOUND");
    let (status, answer) = h.post(ack, json!({"ack_id": "no-such-id"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    let (status, answer) = h.post(ack, json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .is_some_and(|m| m.contains("ack_id"))
    );

    // The other one times out, and is still accepted late.
    let brokers = h.standalone.broker_address.to_string();
    let started = std::time::Instant::now();
    let code_of = |spans: &[(String, Value)], code: &str, ack_id: &str| {
        spans
            .iter()
            .find(|(_, s)| s["code"] == code && s["detail"]["ack_id"] == ack_id)
            .map(|(_, s)| s.clone())
    };
    loop {
        let spans = read_topic(
            &brokers,
            "erp.monitoring",
            usize::MAX,
            Duration::from_secs(1),
        )
        .await;
        if code_of(&spans, "ACK_TIMEOUT", forgotten).is_some() {
            assert!(code_of(&spans, "ACK_PENDING", forgotten).is_some());
            break;
        }
        assert!(started.elapsed() < LONG, "no ACK_TIMEOUT: {spans:?}");
    }
    assert_eq!(
        h.metric("erp_acks_timed_out_total"),
        1.0,
        "the timeout is counted"
    );
    let (status, answer) = h.post(ack, json!({"ack_id": forgotten})).await;
    assert_eq!(status, StatusCode::OK, "a late ACK: {answer}");
    let spans = read_topic(
        &brokers,
        "erp.monitoring",
        usize::MAX,
        Duration::from_secs(2),
    )
    .await;
    let late = code_of(&spans, "ACK_RECEIVED", forgotten).expect("ACK_RECEIVED span");
    assert_eq!(late["detail"]["late"], true);
    assert_eq!(late["level"], "success");
    let first = code_of(&spans, "ACK_RECEIVED", confirmed).expect("ACK_RECEIVED span");
    assert_eq!(first["detail"]["status"], "processed");
    h.standalone.stop().await.expect("clean stop");
}

/// Whether a span on `erp.monitoring` is an event's, not the API's access log.
fn not_access_log(span: &Value) -> bool {
    span["code"] != "API_ACCESS"
}
