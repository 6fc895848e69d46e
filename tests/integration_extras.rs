//! The rest of epilot's integration API against the standalone process: app mappings and the
//! legacy v1 ingest they route (through to a signed `InboundEventMapped` delivery),
//! documentation pages, and both under organisation isolation and token scopes.

mod common;

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use common::{Harness, expected_attributes, meter_mapping, read_topic, reading_payload};
use erp_toolkit::receiver::Receiver;

/// Upper bound for anything to happen; tests never assert how fast.
const LONG: Duration = Duration::from_secs(180);

const APP: &str = "123e4567-e89b-12d3-a456-426614174000";
const COMPONENT: &str = "123e4567-e89b-12d3-a456-426614174001";

/// A request with `token`; returns status and JSON body (`Null` if none).
async fn call_as(
    h: &Harness,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    h.call_as(token, method, path, body).await
}

/// Creates a token with the admin token; returns its value.
async fn create_token(h: &Harness, body: Value) -> String {
    let (status, created) = h.post("/v1/access-tokens", body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created["token"].as_str().expect("token value").to_owned()
}

async fn create_integration(h: &Harness, token: &str, name: &str) -> String {
    let (status, created) = call_as(
        h,
        token,
        Method::POST,
        "/v1/integrations",
        Some(json!({"name": name})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created["id"].as_str().expect("id").to_owned()
}

/// A v1 ingest body for reading `n` of the `Meter readings` use case (routed by its name, the
/// v1/v2 "object_type").
fn v1_body(app_id: &str, n: usize, dedup: &str) -> Value {
    json!({"app_id": app_id, "component_id": COMPONENT,
           "meta": {"correlation_id": format!("req-{dedup}")},
           "events": [{"event_type": "UPDATE", "object_type": "Meter readings",
                       "timestamp": "2025-01-15T10:00:00Z", "format": "json",
                       "payload": reading_payload(n).to_string(), "deduplication_id": dedup}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_mapping_routes_v1_events_through_the_pipeline() {
    let dir = tempfile::tempdir().expect("temp dir");
    let h = Harness::start(dir.path()).await;
    let admin = h.standalone.admin_token.clone();
    let receiver = Receiver::start("127.0.0.1:0", None, false)
        .await
        .expect("receiver");
    let (integration, secret) = h.configure(meter_mapping(), &receiver.url()).await;
    let other = create_integration(&h, &admin, "Other ERP").await;
    let mapping = format!("/v1/integrations/{integration}/app-mapping");
    let other_mapping = format!("/v1/integrations/{other}/app-mapping");

    // Before a mapping, v1 ingest cannot find an integration.
    let (status, answer) = h
        .post("/v1/erp/updates/events", v1_body(APP, 1, "v1-1"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    assert_eq!(answer["code"], "APP_MAPPING_NOT_FOUND");

    // Set, set again (idempotent), conflict on another integration, overwrite, and back.
    let pair = json!({"app_id": APP, "component_id": COMPONENT});
    for _ in 0..2 {
        let (status, answer) = h.call(Method::PUT, &mapping, Some(pair.clone())).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer, json!({"integration_id": integration}));
    }
    let (status, answer) = h
        .call(Method::PUT, &other_mapping, Some(pair.clone()))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(answer["code"], "APP_MAPPING_EXISTS");
    let mut overwrite = pair.clone();
    overwrite["overwrite"] = json!(true);
    let (status, answer) = h
        .call(Method::PUT, &other_mapping, Some(overwrite.clone()))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer, json!({"integration_id": other}));
    let (status, answer) = h.call(Method::PUT, &mapping, Some(overwrite)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");

    // Bad mapping requests.
    let bad: Vec<(Value, &str)> = vec![
        (json!({"app_id": APP}), "component_id is required"),
        (
            json!({"app_id": "app-1", "component_id": COMPONENT}),
            "app_id must be a UUID",
        ),
        (
            json!({"app_id": APP, "component_id": 7}),
            "component_id must be a string",
        ),
        (
            json!({"app_id": APP, "component_id": COMPONENT, "overwrite": "yes"}),
            "overwrite must be a boolean",
        ),
    ];
    for (body, message) in bad {
        let (status, answer) = h.call(Method::PUT, &mapping, Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert!(
            answer["message"]
                .as_str()
                .is_some_and(|m| m.contains(message)),
            "{answer} should say {message}"
        );
    }
    let (status, answer) = h
        .call(
            Method::PUT,
            "/v1/integrations/00000000-0000-4000-8000-000000000000/app-mapping",
            Some(pair.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    assert_eq!(answer["code"], "INTEGRATION_NOT_FOUND");

    // Bad v1 requests: 400 naming the field, as v2/v3.
    let mut no_meta = v1_body(APP, 1, "v1-1");
    no_meta.as_object_mut().map(|m| m.remove("meta"));
    let mut v2_shaped = v1_body(APP, 1, "v1-1");
    v2_shaped.as_object_mut().map(|m| m.remove("app_id"));
    v2_shaped["integration_id"] = json!(integration);
    let mut bad_type = v1_body(APP, 1, "v1-1");
    bad_type["events"][0]["event_type"] = json!("UPSERT");
    for (body, message) in [
        (no_meta, "meta is required"),
        (v2_shaped, "app_id is required"),
        (
            bad_type,
            "events[0].event_type must be CREATE, UPDATE or DELETE",
        ),
    ] {
        let (status, answer) = h.post("/v1/erp/updates/events", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert!(
            answer["message"]
                .as_str()
                .is_some_and(|m| m.contains(message)),
            "{answer} should say {message}"
        );
    }

    // A v1 event (the app id in upper case: ids are compared as UUIDs) reaches the pipeline.
    let (status, answer) = h
        .post(
            "/v1/erp/updates/events",
            v1_body(&APP.to_uppercase(), 1, "v1-1"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let result = &answer["results"][0];
    assert_eq!(result["status"], "success", "{answer}");
    let event_id = result["event_id"].as_str().expect("event id").to_owned();
    assert!(event_id.starts_with("evt_"), "{event_id}");
    assert!(receiver.wait_for(1, LONG).await, "no delivery");
    let delivery = &receiver.deliveries()[0];
    assert!(delivery.verify(&secret), "signature");
    let event = delivery.json();
    assert_eq!(event["_event_name"], "InboundEventMapped");
    assert_eq!(event["integration_id"], integration.as_str());
    assert_eq!(event["inbound_event_id"], event_id.as_str());
    assert_eq!(event["correlation_id"], "req-v1-1", "meta.correlation_id");
    assert_eq!(event["deduplication_id"], "v1-1");
    assert_eq!(
        event["entity_updates"][0]["attributes"],
        expected_attributes(1)
    );
    // The record on erp.inbound.events is a v2-shaped record of the resolved integration that
    // also keeps what only v1 sends.
    let brokers = h.standalone.broker_address.to_string();
    let records = read_topic(&brokers, "erp.inbound.events", 1, LONG).await;
    let (key, record) = records
        .iter()
        .find(|(_, r)| r["event_id"] == event_id.as_str())
        .expect("the v1 record");
    assert_eq!(key, &integration, "keyed by the integration, as v2/v3");
    assert_eq!(record["api_version"], "v1");
    assert_eq!(record["integration_id"], integration.as_str());
    assert_eq!(record["app_id"], APP, "canonical form");
    assert_eq!(record["component_id"], COMPONENT);
    assert_eq!(record["meta"], json!({"correlation_id": "req-v1-1"}));
    assert_eq!(record["event_type"], "UPDATE");

    // The event log of the integration holds it like any other ingest (the index follows the
    // topic: wait for it).
    let deadline = tokio::time::Instant::now() + LONG;
    let log = loop {
        let (status, log) = h
            .post(
                &format!("/v1/integrations/{integration}/events"),
                json!({"event_id": event_id}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{log}");
        if log["data"].as_array().is_some_and(|d| !d.is_empty()) {
            break log;
        }
        assert!(tokio::time::Instant::now() < deadline, "event not indexed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(log["data"][0]["object_type"], "Meter readings", "{log}");
    assert_eq!(log["data"][0]["event_type"], "UPDATE", "{log}");

    // Delete: only through the integration it maps to, once.
    let (status, answer) = h
        .call(Method::DELETE, &other_mapping, Some(pair.clone()))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    assert_eq!(answer["code"], "APP_MAPPING_NOT_FOUND");
    let (status, answer) = h.call(Method::DELETE, &mapping, Some(pair.clone())).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(answer["message"].is_string());
    let (status, answer) = h.call(Method::DELETE, &mapping, Some(pair.clone())).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    let (status, answer) = h
        .post("/v1/erp/updates/events", v1_body(APP, 2, "v1-2"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    assert_eq!(answer["code"], "APP_MAPPING_NOT_FOUND");

    // A mapping goes with its integration: afterwards the pair is free again.
    let (status, _) = h
        .call(Method::PUT, &other_mapping, Some(pair.clone()))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = h
        .call(Method::DELETE, &format!("/v1/integrations/{other}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, answer) = h
        .post("/v1/erp/updates/events", v1_body(APP, 2, "v1-2"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    let (status, answer) = h.call(Method::PUT, &mapping, Some(pair)).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "no conflict with a deleted integration: {answer}"
    );

    h.standalone.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documentation_pages_round_trip_and_go_with_their_objects() {
    let dir = tempfile::tempdir().expect("temp dir");
    let h = Harness::start(dir.path()).await;
    let (status, created) = h
        .post(
            "/v2/integrations",
            json!({"name": "SAP IS-U", "use_cases": [
                {"name": "Meter readings", "type": "inbound", "enabled": true},
                {"name": "Contracts", "type": "inbound", "enabled": true}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let use_case = |slug: &str| -> String {
        created["use_cases"]
            .as_array()
            .and_then(|u| u.iter().find(|u| u["slug"] == slug))
            .and_then(|u| u["id"].as_str())
            .expect("use case")
            .to_owned()
    };
    let (readings, contracts) = (use_case("meter-readings"), use_case("contracts"));
    let docs = format!("/v1/integrations/{id}/documentation");

    let (status, listed) = h.get(&docs).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(listed, json!({"pages": []}));
    for path in [format!("{docs}/general"), format!("{docs}/intro")] {
        let (status, answer) = h.get(&path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
        assert_eq!(answer["code"], "DOCUMENTATION_PAGE_NOT_FOUND");
        let (status, answer) = h.call(Method::DELETE, &path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    }

    // Create the general page and a use-case page (docId in upper case: a UUID is a UUID).
    let (status, general) = h
        .call(
            Method::PUT,
            &format!("{docs}/general"),
            Some(json!({"title": "Overview", "content": "# SAP IS-U\n\nNightly sync."})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{general}");
    assert_eq!(general["id"], "general");
    assert_eq!(general["scope"], "integration");
    assert_eq!(general["integration_id"], id.as_str());
    assert!(general.get("use_case_id").is_none(), "{general}");
    assert_eq!(general["created_by"], "admin-token");
    let (status, page) = h
        .call(
            Method::PUT,
            &format!("{docs}/{}", readings.to_uppercase()),
            Some(json!({"title": "Meter readings", "content": ""})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["id"], readings.as_str());
    assert_eq!(page["scope"], "use_case");
    assert_eq!(page["use_case_id"], readings.as_str());

    // Update keeps the creation stamp.
    let (status, updated) = h
        .call(
            Method::PUT,
            &format!("{docs}/general"),
            Some(json!({"title": "Overview v2", "content": "changed", "created_at": "ignored"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["created_at"], general["created_at"]);
    assert_eq!(updated["title"], "Overview v2");

    // Validation.
    let missing = "00000000-0000-4000-8000-000000000000";
    let long_title = "t".repeat(151);
    let long_content = "c".repeat(100_001);
    let cases: Vec<(String, Value, StatusCode, &str)> = vec![
        (
            format!("{docs}/intro"),
            json!({"title": "t", "content": "c"}),
            StatusCode::BAD_REQUEST,
            "INVALID_DOC_ID",
        ),
        (
            format!("{docs}/general"),
            json!({"title": "", "content": "c"}),
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
        ),
        (
            format!("{docs}/general"),
            json!({"title": long_title, "content": "c"}),
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
        ),
        (
            format!("{docs}/general"),
            json!({"title": "t", "content": long_content}),
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
        ),
        (
            format!("{docs}/general"),
            json!({"title": "t"}),
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
        ),
        (
            format!("{docs}/general"),
            json!({"title": "t", "content": "c", "markdown": "x"}),
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
        ),
        (
            format!("{docs}/{missing}"),
            json!({"title": "t", "content": "c"}),
            StatusCode::NOT_FOUND,
            "USE_CASE_NOT_FOUND",
        ),
        (
            format!("/v1/integrations/{missing}/documentation/general"),
            json!({"title": "t", "content": "c"}),
            StatusCode::NOT_FOUND,
            "INTEGRATION_NOT_FOUND",
        ),
    ];
    for (path, body, expected, code) in cases {
        let (status, answer) = h.call(Method::PUT, &path, Some(body)).await;
        assert_eq!(status, expected, "{path}: {answer}");
        assert_eq!(answer["code"], code, "{path}: {answer}");
        assert!(answer["message"].as_str().is_some_and(|m| !m.is_empty()));
    }

    // The list: general first, no content.
    let (_, listed) = h.get(&docs).await;
    let pages = listed["pages"].as_array().expect("pages");
    assert_eq!(pages.len(), 2, "{listed}");
    assert_eq!(pages[0]["id"], "general");
    assert_eq!(pages[1]["id"], readings.as_str());
    assert!(pages.iter().all(|p| p.get("content").is_none()), "{listed}");
    let (status, fetched) = h.get(&format!("{docs}/general")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetched, updated);

    // Delete a page; a use-case page goes with its use case.
    let (status, answer) = h
        .call(Method::DELETE, &format!("{docs}/{readings}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(answer["message"].is_string());
    let (status, _) = h.get(&format!("{docs}/{readings}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = h
        .call(Method::DELETE, &format!("{docs}/{readings}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = h
        .call(
            Method::PUT,
            &format!("{docs}/{contracts}"),
            Some(json!({"title": "Contracts", "content": "c"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = h
        .call(
            Method::DELETE,
            &format!("/v1/integrations/{id}/use-cases/{contracts}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = h.get(&format!("{docs}/{contracts}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // And every page goes with the integration.
    let (status, _) = h
        .call(Method::DELETE, &format!("/v1/integrations/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, answer) = h.get(&docs).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    assert_eq!(answer["code"], "INTEGRATION_NOT_FOUND");

    h.standalone.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mappings_and_pages_are_isolated_and_scoped() {
    let dir = tempfile::tempdir().expect("temp dir");
    let h = Harness::start(dir.path()).await;
    let admin = h.standalone.admin_token.clone();
    let beta = create_token(
        &h,
        json!({"name": "beta owner", "roles": ["owner"], "org_id": "beta"}),
    )
    .await;
    let viewer = create_token(&h, json!({"name": "view", "roles": ["integration:view"]})).await;
    let sender = create_token(&h, json!({"name": "push", "roles": ["erp:events"]})).await;
    let consumer = create_token(
        &h,
        json!({"name": "poll", "roles": ["integration:consume"]}),
    )
    .await;
    let manager = create_token(&h, json!({"name": "ci", "roles": ["integration:manage"]})).await;

    let integration = create_integration(&h, &admin, "SAP").await;
    let (status, use_case) = h
        .post(
            &format!("/v1/integrations/{integration}/use-cases"),
            json!({"name": "Meter readings", "slug": "meter-readings", "type": "inbound",
                   "enabled": true, "configuration": meter_mapping()}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{use_case}");
    let mapping = format!("/v1/integrations/{integration}/app-mapping");
    let docs = format!("/v1/integrations/{integration}/documentation");
    let pair = json!({"app_id": APP, "component_id": COMPONENT});
    let page = json!({"title": "Overview", "content": "text"});
    let (status, _) = h.call(Method::PUT, &mapping, Some(pair.clone())).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = h
        .call(Method::PUT, &format!("{docs}/general"), Some(page.clone()))
        .await;
    assert_eq!(status, StatusCode::OK);

    // Another organisation: 404 on every object of this one, never 403.
    let foreign: Vec<(Method, String, Option<Value>)> = vec![
        (Method::PUT, mapping.clone(), Some(pair.clone())),
        (Method::DELETE, mapping.clone(), Some(pair.clone())),
        (Method::GET, docs.clone(), None),
        (Method::GET, format!("{docs}/general"), None),
        (Method::PUT, format!("{docs}/general"), Some(page.clone())),
        (Method::DELETE, format!("{docs}/general"), None),
    ];
    for (method, path, body) in foreign {
        let (status, answer) = call_as(&h, &beta, method.clone(), &path, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {answer}");
    }
    // The pair is mapped in this organisation only: beta's v1 events do not reach it, and beta
    // may map the same pair to its own integration.
    let (status, answer) = call_as(
        &h,
        &beta,
        Method::POST,
        "/v1/erp/updates/events",
        Some(v1_body(APP, 1, "beta-1")),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    assert_eq!(answer["code"], "APP_MAPPING_NOT_FOUND");
    let beta_integration = create_integration(&h, &beta, "Beta ERP").await;
    let (status, answer) = call_as(
        &h,
        &beta,
        Method::PUT,
        &format!("/v1/integrations/{beta_integration}/app-mapping"),
        Some(pair.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, answer) = call_as(
        &h,
        &beta,
        Method::POST,
        "/v1/erp/updates/events",
        Some(v1_body(APP, 1, "beta-1")),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    // No use case in beta's integration: stored, answered `ignored`.
    assert_eq!(answer["results"][0]["status"], "ignored", "{answer}");
    let (_, still) = h.get(&format!("{docs}/general")).await;
    assert_eq!(still["title"], "Overview", "beta changed nothing here");

    // Scopes: view reads pages; manage changes mappings and pages; ingest needs erp:events
    // (or manage).
    let v1 = |dedup: &str| Some(v1_body(APP, 2, dedup));
    let cases: Vec<(&str, Method, String, Option<Value>, StatusCode)> = vec![
        (
            viewer.as_str(),
            Method::GET,
            docs.clone(),
            None,
            StatusCode::OK,
        ),
        (
            viewer.as_str(),
            Method::GET,
            format!("{docs}/general"),
            None,
            StatusCode::OK,
        ),
        (
            viewer.as_str(),
            Method::PUT,
            format!("{docs}/general"),
            Some(page.clone()),
            StatusCode::FORBIDDEN,
        ),
        (
            viewer.as_str(),
            Method::DELETE,
            format!("{docs}/general"),
            None,
            StatusCode::FORBIDDEN,
        ),
        (
            viewer.as_str(),
            Method::PUT,
            mapping.clone(),
            Some(pair.clone()),
            StatusCode::FORBIDDEN,
        ),
        (
            viewer.as_str(),
            Method::POST,
            "/v1/erp/updates/events".into(),
            v1("s-1"),
            StatusCode::FORBIDDEN,
        ),
        (
            consumer.as_str(),
            Method::POST,
            "/v1/erp/updates/events".into(),
            v1("s-2"),
            StatusCode::FORBIDDEN,
        ),
        (
            sender.as_str(),
            Method::GET,
            docs.clone(),
            None,
            StatusCode::FORBIDDEN,
        ),
        (
            sender.as_str(),
            Method::DELETE,
            mapping.clone(),
            Some(pair.clone()),
            StatusCode::FORBIDDEN,
        ),
        (
            sender.as_str(),
            Method::POST,
            "/v1/erp/updates/events".into(),
            v1("s-3"),
            StatusCode::OK,
        ),
        (
            manager.as_str(),
            Method::PUT,
            format!("{docs}/general"),
            Some(page.clone()),
            StatusCode::OK,
        ),
        (
            manager.as_str(),
            Method::PUT,
            mapping.clone(),
            Some(pair.clone()),
            StatusCode::OK,
        ),
        (
            manager.as_str(),
            Method::POST,
            "/v1/erp/updates/events".into(),
            v1("s-4"),
            StatusCode::OK,
        ),
    ];
    for (token, method, path, body, expected) in cases {
        let (status, answer) = call_as(&h, token, method.clone(), &path, body).await;
        assert_eq!(status, expected, "{method} {path}: {answer}");
        if expected == StatusCode::FORBIDDEN {
            assert_eq!(answer["code"], "FORBIDDEN");
        }
    }

    h.standalone.stop().await.expect("clean stop");
}
