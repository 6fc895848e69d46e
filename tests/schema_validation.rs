//! The schema catalog through the real pipeline (standalone: embedded broker, ingest, processor,
//! API on loopback): mapping output checked per use case (`validation: warn | strict`), core
//! events checked by default on `POST /v1/events` and on `erp.platform.events`, unknown entity
//! schemas refused on save unless declared custom, the read-only catalog routes, and a second
//! organisation seeing only its own things.

mod common;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use common::{Harness, records_until};

/// A contact mapping whose `communication_preference` is an enum of the contact schema.
fn contact_mapping(validation: &str) -> Value {
    json!({"validation": validation, "entities": [{
        "entity_schema": "contact",
        "unique_ids": ["customer_number"],
        "fields": [
            {"attribute": "customer_number", "field": "id"},
            {"attribute": "communication_preference", "field": "pref"}
        ]
    }]})
}

fn event(slug: &str, id: &str, pref: &str) -> Value {
    json!({"use_case_slug": slug, "timestamp": "2025-01-15T10:00:00Z", "format": "json",
           "payload": json!({"id": id, "pref": pref}).to_string()})
}

/// A request with `token`.
async fn call_as(
    h: &Harness,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = h
        .client
        .request(method, format!("{}{path}", h.base))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request is answered");
    let status = response.status();
    let text = response.text().await.expect("body is read");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Records of `topic` matching `keep`, once `want` of them are there.
async fn wait_records(
    h: &Harness,
    topic: &str,
    want: usize,
    keep: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    records_until(h, topic, keep, |records| records.len() >= want).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapping_output_is_checked_per_use_case_and_unknown_schemas_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let h = Harness::start_with(common::options(dir.path())).await;
    let (status, integration) = h
        .post("/v1/integrations", json!({"name": "SAP IS-U"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{integration}");
    let integration_id = integration["id"].as_str().expect("id").to_owned();
    let use_cases = format!("/v1/integrations/{integration_id}/use-cases");

    // Saving: an unknown entity schema is refused, naming it; declared custom it is accepted.
    let (status, answer) = h
        .post(&use_cases, json!({"name": "Plants", "slug": "plants", "type": "inbound", "enabled": true,
            "configuration": {"entities": [{"entity_schema": "solar_plant", "unique_ids": ["plant_id"],
                "fields": [{"attribute": "plant_id", "field": "id"}]}]}}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["code"], "UNKNOWN_ENTITY_SCHEMA", "{answer}");
    let message = answer["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("entities[0].entity_schema \"solar_plant\""),
        "{answer}"
    );
    let (status, answer) = h
        .post(&use_cases, json!({"name": "Plants", "slug": "plants", "type": "inbound", "enabled": true,
            "configuration": {"entities": [{"entity_schema": "solar_plant", "custom_schema": true,
                "unique_ids": ["plant_id"], "fields": [{"attribute": "plant_id", "field": "id"}]}]}}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let (status, answer) = h
        .post(
            &use_cases,
            json!({"name": "Loud", "slug": "loud", "type": "inbound", "enabled": true,
            "configuration": {"validation": "loud", "entities": []}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap_or_default()
            .contains("configuration.validation"),
        "{answer}"
    );

    for (slug, level) in [("contacts-warn", "warn"), ("contacts-strict", "strict")] {
        let (status, answer) = h
            .post(
                &use_cases,
                json!({"name": slug, "slug": slug, "type": "inbound", "enabled": true,
                "configuration": contact_mapping(level)}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
        assert_eq!(
            answer["configuration"]["validation"], level,
            "stored as given"
        );
    }

    // The simulation answers each violation in warnings[], with its entity and attribute.
    let (status, simulated) = h
        .post(
            "/v2/erp/updates/mapping_simulation",
            json!({
            "event_configuration": contact_mapping("strict"),
            "payload": {"id": "C-1", "pref": "fax"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{simulated}");
    let warnings = simulated["warnings"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(warnings.len(), 1, "{simulated}");
    assert_eq!(warnings[0]["entity_schema"], "contact");
    assert_eq!(warnings[0]["field"], "communication_preference");
    assert!(
        warnings[0]["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("schema violation at /communication_preference:"),
        "{simulated}"
    );
    assert!(
        !warnings[0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("fax"),
        "no values in messages"
    );
    let (_, simulated) = h
        .post(
            "/v2/erp/updates/mapping_simulation",
            json!({
            "event_configuration": contact_mapping("off"),
            "payload": {"id": "C-1", "pref": "fax"}}),
        )
        .await;
    assert_eq!(simulated["warnings"], json!([]), "off checks nothing");

    // One request, one integration: one partition, in this order.
    let (status, answer) = h
        .post(
            "/v3/erp/updates/events",
            json!({"integration_id": integration_id, "events": [
                event("contacts-warn", "C-W1", "fax"),
                event("contacts-strict", "C-S1", "fax"),
                event("contacts-strict", "C-S2", "postal"),
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let inbound_ids: Vec<String> = answer["results"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| r["event_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(inbound_ids.len(), 3, "{answer}");

    // warn: mapped, the violation in the event's warnings[], and a warning span.
    let mapped = wait_records(&h, "erp.core.events", 2, |e| {
        e["_event_name"] == "InboundEventMapped"
    })
    .await;
    let of = |id: &str| mapped.iter().find(|e| e["inbound_event_id"] == id).cloned();
    let warned = of(&inbound_ids[0]).expect("the warn use case's event is mapped");
    assert_eq!(
        warned["entity_updates"][0]["attributes"]["communication_preference"],
        "fax"
    );
    assert_eq!(
        warned["warnings"][0]["field"], "communication_preference",
        "{warned}"
    );
    // strict: the invalid one is not mapped; the next one on the partition is.
    assert!(
        of(&inbound_ids[2]).is_some(),
        "the event after the refused one flows: {mapped:?}"
    );
    let spans = wait_records(&h, "erp.monitoring", 2, |s| s["code"] == "SCHEMA_VIOLATION").await;
    let span_of = |id: &str| spans.iter().find(|s| s["event_id"] == id).cloned();
    let warning = span_of(&inbound_ids[0]).expect("warning span");
    assert_eq!(warning["level"], "warning");
    assert_eq!(
        warning["detail"]["violations"][0]["path"],
        "/entity_updates/0/attributes/communication_preference"
    );
    let error = span_of(&inbound_ids[1]).expect("error span");
    assert_eq!(error["level"], "error");
    assert_eq!(error["integration_id"], integration_id.as_str());
    assert_eq!(error["detail"]["violations"][0]["entity_schema"], "contact");
    let letters = wait_records(&h, "erp.dlq", 1, |l| l["code"] == "SCHEMA_VIOLATION").await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["event_id"], inbound_ids[1].as_str());
    assert_eq!(letters[0]["source"]["topic"], "erp.inbound.events");
    assert!(letters[0]["source"]["offset"].is_i64(), "{letters:?}");
    assert!(
        letters[0]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("/entity_updates/0/attributes/communication_preference"),
        "{letters:?}"
    );
    assert!(
        of(&inbound_ids[1]).is_none(),
        "a strict violation is never mapped"
    );
    h.standalone.stop().await.expect("clean stop");
}

fn sync_request(id: &str) -> Value {
    json!({"_event_id": id, "_event_name": "OnDemandSyncCustomerRequested", "_event_version": "1.0",
           "_event_time": "2025-03-01T08:00:00.000Z", "external_id": "C-1", "contact_id": "c-1"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_events_are_checked_by_default_and_the_catalog_is_served() {
    let dir = tempfile::tempdir().expect("temp dir");
    let h = Harness::start_with(common::options(dir.path())).await;
    let brokers = h.standalone.broker_address.to_string();
    let (_, integration) = h.post("/v1/integrations", json!({"name": "SAP"})).await;
    let integration_id = integration["id"].as_str().expect("id").to_owned();
    let (status, webhook) = h
        .post(
            "/v1/webhooks/configs",
            json!({"name": "ERP", "eventName": "event_OnDemandSyncCustomerRequested",
            "url": "http://127.0.0.1:9/unused"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{webhook}");
    let (status, use_case) = h
        .post(&format!("/v1/integrations/{integration_id}/use-cases"), json!({"name": "Sync", "slug": "sync",
            "type": "outbound", "enabled": true, "configuration": {"event_catalog_event": "OnDemandSyncCustomerRequested",
            "mappings": [{"name": "m", "enabled": true, "jsonata_expression": "$",
                "delivery": {"type": "webhook", "webhook_id": webhook["id"]}}]}}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{use_case}");

    // POST /v1/events: an invalid event refuses the request with the path of the violation.
    let mut missing = sync_request("01JN00000000000000000000A1");
    if let Some(map) = missing.as_object_mut() {
        map.remove("contact_id");
    }
    let (status, answer) = h
        .post(
            "/v1/events",
            json!({"events": [sync_request("01JN00000000000000000000A0"), missing]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["code"], "EVENT_SCHEMA_VIOLATION", "{answer}");
    let message = answer["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("events[1] "), "{answer}");
    assert!(message.contains("/contact_id"), "{answer}");
    let mut wrong_major = sync_request("01JN00000000000000000000A2");
    wrong_major["_event_version"] = json!("7.0");
    let (status, answer) = h.post("/v1/events", json!([wrong_major])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["code"], "UNKNOWN_EVENT_VERSION", "{answer}");
    let (status, answer) = h
        .post(
            "/v1/events",
            json!([sync_request("01JN00000000000000000000A3")]),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");

    // Straight to erp.platform.events: an invalid record is an error span and a dead letter.
    let mut invalid = sync_request("01JN00000000000000000000B1");
    invalid["_org_id"] = json!("default");
    invalid["external_id"] = json!(42);
    let producer = erp_runtime::KafkaSettings::new(brokers.clone())
        .producer("test")
        .expect("producer");
    let (partition, offset) = erp_runtime::kafka::send(
        &producer,
        "erp.platform.events",
        "c-1",
        invalid.to_string().as_bytes(),
    )
    .await
    .expect("sent");
    let letters = wait_records(&h, "erp.dlq", 1, |l| l["code"] == "EVENT_SCHEMA_VIOLATION").await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["source"]["topic"], "erp.platform.events");
    assert_eq!(letters[0]["source"]["partition"], partition);
    assert_eq!(letters[0]["source"]["offset"], offset);
    assert_eq!(letters[0]["org_id"], "default");
    assert!(
        letters[0]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("/external_id"),
        "{letters:?}"
    );
    let spans = wait_records(&h, "erp.monitoring", 1, |s| {
        s["code"] == "EVENT_SCHEMA_VIOLATION"
    })
    .await;
    assert_eq!(spans[0]["level"], "error");
    assert_eq!(
        spans[0]["integration_id"],
        integration_id.as_str(),
        "in the subscribed integration's monitoring"
    );
    assert_eq!(spans[0]["detail"]["violations"][0]["path"], "/external_id");
    // The valid event went through its use case.
    let outbound = wait_records(&h, "erp.core.events", 1, |e| {
        e["source_event_id"] == "01JN00000000000000000000A3"
    })
    .await;
    assert_eq!(outbound.len(), 1, "{outbound:?}");

    // The catalog, read-only.
    let (status, events) = h.get("/v1/schemas/events").await;
    assert_eq!(status, StatusCode::OK, "{events}");
    let listed = events["events"].as_array().cloned().unwrap_or_default();
    assert_eq!(listed.len(), 19, "{events}");
    let reading = listed
        .iter()
        .find(|e| e["name"] == "MeterReadingAdded")
        .expect("listed");
    assert_eq!(reading["latest_version"], "2.1");
    assert!(
        events["envelope"]["required"].is_array() || events["envelope"]["allOf"].is_array(),
        "{}",
        events["envelope"]
    );
    let (status, one) = h
        .get("/v1/schemas/events/OnDemandSyncCustomerRequested")
        .await;
    assert_eq!(status, StatusCode::OK, "{one}");
    assert_eq!(one["versions"][0]["version"], "1.0");
    assert_eq!(
        one["versions"][0]["schema"]["x-event-name"],
        "OnDemandSyncCustomerRequested"
    );
    let (status, missing) = h.get("/v1/schemas/events/NoSuchEvent").await;
    assert_eq!(
        (status, missing["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("SCHEMA_NOT_FOUND"))
    );
    let (status, entities) = h.get("/v1/schemas/entities").await;
    assert_eq!(status, StatusCode::OK, "{entities}");
    assert_eq!(
        entities["entities"].as_array().map(Vec::len),
        Some(14),
        "13 core entities and meter_reading"
    );
    let (status, contact) = h.get("/v1/schemas/entities/contact").await;
    assert_eq!(status, StatusCode::OK, "{contact}");
    assert_eq!(contact["schema"]["x-entity-schema"], "contact");
    let (status, _) = h.get("/v1/schemas/entities/solar_plant").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = h
        .client
        .get(format!("{}/v1/schemas/events", h.base))
        .send()
        .await
        .map(|r| (r.status(), ()))
        .expect("answered");
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the catalog needs a token"
    );

    // A second organisation: the same catalog, none of the first one's things, its own rules.
    let (status, created) = h
        .post(
            "/v1/access-tokens",
            json!({"name": "beta", "roles": ["owner"], "org_id": "beta"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let beta = created["token"].as_str().expect("token").to_owned();
    let (status, beta_events) = call_as(&h, &beta, Method::GET, "/v1/schemas/events", None).await;
    assert_eq!((status, &beta_events), (StatusCode::OK, &events));
    let (status, _) = call_as(
        &h,
        &beta,
        Method::GET,
        &format!("/v1/integrations/{integration_id}"),
        None,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "another organisation's integration"
    );
    let mut foreign = sync_request("01JN00000000000000000000C1");
    foreign["_org_id"] = json!("default");
    let (status, answer) = call_as(
        &h,
        &beta,
        Method::POST,
        "/v1/events",
        Some(json!([foreign])),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let (status, answer) = call_as(
        &h,
        &beta,
        Method::POST,
        "/v1/events",
        Some(json!([sync_request("01JN00000000000000000000C2")])),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (_, beta_integration) = call_as(
        &h,
        &beta,
        Method::POST,
        "/v1/integrations",
        Some(json!({"name": "beta SAP"})),
    )
    .await;
    let beta_id = beta_integration["id"].as_str().expect("id").to_owned();
    let (status, answer) = call_as(&h, &beta, Method::POST, &format!("/v1/integrations/{beta_id}/use-cases"),
        Some(json!({"name": "x", "slug": "x", "type": "inbound", "enabled": true,
            "configuration": {"entities": [{"entity_schema": "opportunity", "unique_ids": ["n"], "fields": [{"attribute": "n", "field": "n"}]}]}}))).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("UNKNOWN_ENTITY_SCHEMA")),
        "{answer}"
    );
    // The first organisation's error span and dead letter carry its organisation only.
    assert!(
        letters
            .iter()
            .chain(spans.iter())
            .all(|r| r["org_id"] == "default")
    );
    h.standalone.stop().await.expect("clean stop");
}
