//! Organisation isolation, generated from the one route table (`erp_http::auth::ROUTES`): for
//! every route, organisation B uses organisation A's ids (in the path, or in the body where a
//! route takes them there) and gets 404 — 409 where it tries to create an object with A's id —
//! and every object of A reads back byte for byte as before. Plus the reproducer of the defect
//! that started issue 10: B's `POST /v2/integrations` with A's use-case id deleted A's use case.

mod common;

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use common::{Harness, meter_mapping, reading_event};
use erp_http::auth::{Need, ROUTES};

/// Upper bound for anything to happen; tests never assert how fast.
const LONG: Duration = Duration::from_secs(120);

/// A request with `token`; returns status and the body as text.
async fn call_as(
    h: &Harness,
    token: &str,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> (StatusCode, String) {
    let mut request = h
        .client
        .request(method, format!("{}{path}", h.base))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(body);
    }
    // Bounded, so a request that is never answered names itself instead of hanging the test.
    let response = request
        .timeout(LONG)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{path} is not answered: {e}"));
    let status = response.status();
    (status, response.text().await.expect("body is read"))
}

/// Organisation A's objects, created with the admin token (organisation `default`).
struct Objects {
    integration: String,
    use_case: String,
    outbound_use_case: String,
    webhook: String,
    token: String,
    env_key: String,
    ack_id: String,
}

async fn created(h: &Harness, path: &str, body: Value) -> Value {
    let (status, answer) = h.post(path, body).await;
    assert!(status.is_success(), "{path}: {status} {answer}");
    answer
}

async fn setup_a(h: &Harness) -> Objects {
    let integration = created(
        h,
        "/v2/integrations",
        json!({"name": "A's SAP", "use_cases": [
            {"name": "Meter readings", "slug": "meter-readings", "type": "inbound",
             "enabled": true, "configuration": meter_mapping()},
            {"name": "Contracts", "slug": "contracts", "type": "outbound", "enabled": true,
             "configuration": {"event_catalog_event": "ContractUpdated",
                 "mappings": [{"name": "ERP queue", "enabled": true,
                               "delivery": {"type": "poll"}}]}}]}),
    )
    .await;
    let id = |v: &Value| v["id"].as_str().expect("id").to_owned();
    let use_cases = integration["use_cases"].as_array().expect("use cases");
    let objects = Objects {
        integration: id(&integration),
        use_case: id(&use_cases[0]),
        outbound_use_case: id(&use_cases[1]),
        webhook: id(&created(
            h,
            "/v1/webhooks/configs",
            json!({"name": "A's platform", "eventName": "event_InboundEventMapped",
                   "url": "http://127.0.0.1:9/hook", "enabled": false}),
        )
        .await),
        token: id(&created(
            h,
            "/v1/access-tokens",
            json!({"name": "A's dashboard", "roles": ["integration:view"]}),
        )
        .await),
        env_key: "a_only".into(),
        ack_id: "6f1c1a52-0000-4000-8000-00000000000a".into(),
    };
    let base = format!("/v1/integrations/{}", objects.integration);
    let (status, answer) = h
        .call(
            Method::PUT,
            &format!("{base}/documentation/general"),
            Some(json!({"title": "A", "content": "A's notes"})),
        )
        .await;
    assert!(status.is_success(), "{answer}");
    let (status, answer) = h
        .call(
            Method::PUT,
            &format!("/v1/environments/{}", objects.env_key),
            Some(json!({"type": "String", "value": "a-value"})),
        )
        .await;
    assert!(status.is_success(), "{answer}");
    let (status, answer) = h
        .call(
            Method::PUT,
            &format!("{base}/app-mapping"),
            Some(json!({"app_id": "11111111-1111-4111-8111-111111111111",
                        "component_id": "22222222-2222-4222-8222-222222222222"})),
        )
        .await;
    assert!(status.is_success(), "{answer}");
    // An update, so the use case has history.
    let (status, answer) = h
        .call(
            Method::PUT,
            &format!("{base}/use-cases/{}", objects.use_case),
            Some(json!({"change_description": "second version"})),
        )
        .await;
    assert!(status.is_success(), "{answer}");
    // One ERP event, so the event log has an entry.
    let (status, answer) = h
        .post(
            "/v3/erp/updates/events",
            json!({"integration_id": objects.integration,
                   "events": [reading_event(1, "a-1")]}),
        )
        .await;
    assert!(status.is_success(), "{answer}");
    objects
}

/// Everything of A that can be read, as the bytes the API answers.
async fn snapshot(h: &Harness, a: &Objects) -> Vec<(String, String)> {
    let base = format!("/v1/integrations/{}", a.integration);
    let reads: Vec<(Method, String, Option<Value>)> = vec![
        (
            Method::GET,
            format!("/v2/integrations/{}", a.integration),
            None,
        ),
        (Method::GET, base.clone(), None),
        (Method::GET, format!("{base}/use-cases"), None),
        (
            Method::GET,
            format!("{base}/use-cases/{}/history", a.use_case),
            None,
        ),
        (Method::GET, format!("{base}/documentation"), None),
        (Method::GET, format!("{base}/outbound/messages/dlq"), None),
        (Method::POST, format!("{base}/events"), Some(json!({}))),
        (
            Method::GET,
            format!("/v1/webhooks/configs/{}", a.webhook),
            None,
        ),
        (
            Method::GET,
            format!("/v1/webhooks/configs/{}/events", a.webhook),
            None,
        ),
        (Method::GET, "/v1/environments".into(), None),
        (Method::GET, "/v1/access-tokens".into(), None),
    ];
    let mut out = Vec::new();
    for (method, path, body) in reads {
        let (status, text) = call_as(
            h,
            &h.standalone.admin_token,
            method.clone(),
            &path,
            body.as_ref(),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{method} {path}: {text}");
        out.push((format!("{method} {path}"), text));
    }
    out
}

/// The path of `pattern` with A's ids (or B's own integration where `own` says so).
fn fill(pattern: &str, a: &Objects) -> String {
    let id = if pattern.starts_with("/v1/webhooks/") || pattern.starts_with("/v2/webhooks/") {
        a.webhook.as_str()
    } else if pattern.starts_with("/v1/access-tokens/") {
        a.token.as_str()
    } else {
        a.integration.as_str()
    };
    pattern
        .replace("{id}", id)
        .replace("{use_case_id}", &a.use_case)
        .replace("{doc_id}", "general")
        .replace("{key}", &a.env_key)
        .replace("{event_id}", "01JP0000000000000000000001")
        .replace("{task_id}", "00000000-0000-4000-8000-000000000001")
        .replace("{correlation_id}", "correlation-of-a")
        .replace("{slug}", "sync-meter-readings")
}

/// A valid body for the route, naming A's ids where the route takes ids in its body.
fn body_for(method: &str, pattern: &str, a: &Objects, b_integration: &str) -> Option<Value> {
    let event = reading_event(2, "b-1");
    // v1 and v2 route by `object_type` (the use case's name).
    let old_event = json!({"event_type": "UPDATE", "object_type": "Meter readings",
        "timestamp": "2025-01-15T10:00:00Z", "format": "json",
        "payload": common::reading_payload(2).to_string(), "deduplication_id": "b-2"});
    Some(match (method, pattern) {
        ("DELETE", "/v1/integrations/{id}/app-mapping") => json!({
            "app_id": "11111111-1111-4111-8111-111111111111",
            "component_id": "22222222-2222-4222-8222-222222222222"}),
        ("GET" | "DELETE", _) => return None,
        ("POST", "/v3/erp/updates/events") => {
            json!({"integration_id": a.integration, "events": [event]})
        }
        ("POST", "/v2/erp/updates/events") => {
            json!({"integration_id": a.integration, "events": [old_event]})
        }
        ("POST", "/v1/erp/updates/events") => json!({
            "app_id": "11111111-1111-4111-8111-111111111111",
            "component_id": "22222222-2222-4222-8222-222222222222",
            "meta": {"correlation_id": "b"}, "events": [old_event]}),
        ("POST", "/v1/events") => json!({"events": [{
            "_event_id": "01JP0000000000000000000009", "_event_name": "ContractUpdated",
            "_event_time": "2025-03-01T08:00:00.000Z", "_org_id": "beta",
            "_ack_id": a.ack_id, "_event_version": "1.0", "_event_source": "portal",
            "contract": {"number": 1}}]}),
        ("POST", "/v1/erp/tracking/acknowledgement") => json!({"ack_id": a.ack_id}),
        ("POST", "/v2/integrations") => json!({"name": "B's", "use_cases": [
            {"id": a.use_case, "name": "stolen", "type": "inbound", "enabled": true,
             "configuration": meter_mapping()}]}),
        ("PUT", "/v2/integrations/{id}") => json!({"name": "B's", "use_cases": []}),
        ("POST", "/v1/integrations") => json!({"name": "B's own"}),
        ("PUT", "/v1/integrations/{id}") => json!({"name": "renamed by B"}),
        ("PUT", "/v1/integrations/{id}/use-cases/{use_case_id}") => json!({"enabled": false}),
        ("POST", "/v1/integrations/{id}/use-cases") => {
            json!({"name": "x", "slug": "x", "type": "inbound", "enabled": true,
                   "configuration": meter_mapping()})
        }
        ("POST", "/v1/integrations/{id}/use-cases/from-template") => {
            json!({"template": "sync-meter-readings", "slug": "b-readings"})
        }
        // B installing a blueprint into its own organisation, naming A's integration by name.
        ("POST", "/v1/blueprints/plan" | "/v1/blueprints/apply") => json!({"blueprint": {
            "blueprint_version": 1, "integration": {"name": "A's SAP"},
            "use_cases": [{"slug": "meter-readings", "name": "Meter readings", "type": "inbound",
                           "enabled": false, "configuration": meter_mapping()}]}}),
        ("PUT", "/v1/integrations/{id}/documentation/{doc_id}") => {
            json!({"title": "B", "content": "overwritten"})
        }
        ("PUT", "/v1/integrations/{id}/app-mapping") => json!({
            "app_id": "33333333-3333-4333-8333-333333333333",
            "component_id": "44444444-4444-4444-8444-444444444444"}),
        ("POST", "/v2/integrations/{id}/monitoring/external-events") => json!({"events": [{
            "correlation_id": "b", "level": "error", "use_case_slug": "meter-readings",
            "occurred_at": "2025-01-15T10:00:00Z", "message": "B's span"}]}),
        ("POST", "/v1/integrations/{id}/events/replay") => {
            json!({"event_ids": ["01JP0000000000000000000001"]})
        }
        ("POST", "/v1/integrations/{id}/outbound/messages/ack") => {
            json!({"acks": [{"id": "msg_x", "lease_token": "lt_x"}]})
        }
        ("POST", "/v1/integrations/{id}/outbound/messages/dlq/redrive") => {
            json!({"ids": ["msg_x"]})
        }
        ("PUT", "/v1/environments/{key}") => json!({"type": "String", "value": "b-value"}),
        ("POST", "/v1/access-tokens") => json!({"name": "B's", "roles": ["integration:view"]}),
        ("POST", "/v1/webhooks/configs") => json!({"name": "B's", "eventName":
            "event_InboundEventMapped", "url": "http://127.0.0.1:9/b", "enabled": false}),
        ("PUT", "/v1/webhooks/configs/{id}") => json!({"name": "B's", "eventName":
            "event_InboundEventMapped", "url": "http://127.0.0.1:9/b", "enabled": false}),
        ("POST", "/v1/webhooks/configs/{id}/trigger") => {
            json!({"metadata": {"organization_id": "beta", "action": "test"}, "x": 1})
        }
        ("POST", "/v1/webhooks/configs/{id}/recover") => json!({"since": "2025-01-01T00:00:00Z"}),
        ("POST", "/v1/webhooks/configs/{id}/events/replay-batch") => {
            json!({"eventIds": ["01JP0000000000000000000001"]})
        }
        _ => {
            let _ = b_integration;
            json!({})
        }
    })
}

/// What B must get for a route it calls with A's ids.
#[derive(Debug, PartialEq)]
enum Expect {
    /// An object of A is named: it does not exist for B.
    NotFound,
    /// B tries to create an object under an id of A.
    Conflict,
    /// The route names no object of A (B's own namespace, a list, a create with a new id, a
    /// pure computation): any answer but a server error, and A's objects stay as they were.
    Own,
}

fn expect_for(method: &str, pattern: &str) -> Expect {
    let names_object = [
        "{id}",
        "{use_case_id}",
        "{doc_id}",
        "{event_id}",
        "{task_id}",
        "{correlation_id}",
    ]
    .iter()
    .any(|p| pattern.contains(p));
    match (method, pattern) {
        ("POST", "/v2/integrations") => Expect::Conflict,
        // The integration of A in the body, A's app mapping, A's ack id.
        (
            "POST",
            "/v3/erp/updates/events" | "/v2/erp/updates/events" | "/v1/erp/updates/events",
        ) => Expect::NotFound,
        ("POST", "/v1/erp/tracking/acknowledgement") => Expect::NotFound,
        _ if names_object => Expect::NotFound,
        _ => Expect::Own,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_organisation_cannot_touch_anything_of_a() {
    let dir = tempfile::tempdir().expect("temp dir");
    let h = Harness::start(dir.path()).await;
    let a = setup_a(&h).await;
    let beta = created(
        &h,
        "/v1/access-tokens",
        json!({"name": "beta owner", "roles": ["owner"], "org_id": "beta"}),
    )
    .await["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let (status, b_own) = call_as(
        &h,
        &beta,
        Method::POST,
        "/v2/integrations",
        Some(&json!({"name": "B's own", "use_cases": []})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{b_own}");
    let b_integration = serde_json::from_str::<Value>(&b_own).expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let before = snapshot(&h, &a).await;
    let a_ids = [
        &a.integration,
        &a.use_case,
        &a.outbound_use_case,
        &a.webhook,
        &a.token,
    ];

    let mut cases = 0;
    // Deletes last, so a broken check would not hide the answers of the other routes.
    let mut rules: Vec<_> = ROUTES
        .iter()
        .filter(|r| matches!(r.need, Need::Any(_)))
        .collect();
    rules.sort_by_key(|r| r.method == "DELETE");
    for rule in rules {
        let path = fill(rule.pattern, &a);
        let body = body_for(rule.method, rule.pattern, &a, &b_integration);
        let method = Method::from_bytes(rule.method.as_bytes()).expect("method");
        let (status, text) = call_as(&h, &beta, method, &path, body.as_ref()).await;
        let case = format!("{} {} as B: {status} {text}", rule.method, rule.pattern);
        let expect = expect_for(rule.method, rule.pattern);
        match expect {
            Expect::NotFound => assert_eq!(status, StatusCode::NOT_FOUND, "{case}"),
            Expect::Conflict => {
                assert_eq!(status, StatusCode::CONFLICT, "{case}");
                assert!(!text.contains("default"), "409 reveals the owner: {case}");
            }
            Expect::Own => assert!(!status.is_server_error(), "{case}"),
        }
        // A 404 may echo the id B sent; anything else must not show A's ids.
        if expect == Expect::Own {
            for id in a_ids {
                assert!(
                    !text.contains(id.as_str()),
                    "B's answer shows A's id {id}: {case}"
                );
            }
        }
        assert!(!text.contains("a-value"), "B sees A's environment: {case}");
        cases += 1;
    }
    // The declarative PUT of B's own integration cannot take over A's use case either.
    let (status, text) = call_as(
        &h,
        &beta,
        Method::PUT,
        &format!("/v2/integrations/{b_integration}"),
        Some(&json!({"name": "B's own", "use_cases": [
            {"id": a.use_case, "name": "stolen", "type": "inbound", "enabled": true,
             "configuration": meter_mapping()}]})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{text}");
    assert!(cases >= 50, "only {cases} routes in the table?");

    let after = snapshot(&h, &a).await;
    for ((what, was), (_, now)) in before.iter().zip(&after) {
        assert_eq!(was, now, "{what} changed after B's requests");
    }
    // A's ACK row survived B's platform event with the same `_ack_id`: there is none for A
    // here (no pending row was written), so this only checks B's event did not create one
    // A could confirm.
    let (status, text) = call_as(
        &h,
        &h.standalone.admin_token,
        Method::POST,
        "/v1/erp/tracking/acknowledgement",
        Some(&json!({"ack_id": a.ack_id})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{text}");
}

/// The defect of issue 10, as a new user found it: B's owner creates an integration whose use
/// case carries the id of one of A's use cases. It used to replace A's use case (the fold was
/// keyed by id alone) so A's next event was answered `ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_use_case_id_on_create_is_refused_and_a_keeps_working() {
    let dir = tempfile::tempdir().expect("temp dir");
    let h = Harness::start(dir.path()).await;
    let a = setup_a(&h).await;
    let beta = created(
        &h,
        "/v1/access-tokens",
        json!({"name": "beta owner", "roles": ["owner"], "org_id": "beta"}),
    )
    .await["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let (status, text) = call_as(
        &h,
        &beta,
        Method::POST,
        "/v2/integrations",
        Some(&json!({"name": "B", "use_cases": [
            {"id": a.use_case, "name": "Meter readings", "slug": "meter-readings",
             "type": "inbound", "enabled": true, "configuration": meter_mapping()}]})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{text}");
    let answer: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(answer["code"], "USE_CASE_ID_TAKEN", "{answer}");
    let (status, listed) = call_as(&h, &beta, Method::GET, "/v2/integrations", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        !listed.contains("Meter readings"),
        "nothing of B's request was stored: {listed}"
    );

    let (status, use_case) = h
        .get(&format!(
            "/v1/integrations/{}/use-cases/{}",
            a.integration, a.use_case
        ))
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "A's use case is still there: {use_case}"
    );
    let (status, answer) = h
        .post(
            "/v3/erp/updates/events",
            json!({"integration_id": a.integration, "events": [reading_event(3, "a-3")]}),
        )
        .await;
    assert!(status.is_success(), "{answer}");
    assert_ne!(answer["results"][0]["status"], "ignored", "{answer}");

    // Issue 10 item 7 (not isolation, but found with it): an outbound mapping with
    // `file_proxy` delivery was stored, reported as success and never delivered; it is refused
    // on save until a file proxy runtime exists.
    let (status, answer) = h
        .post(
            &format!("/v1/integrations/{}/use-cases", a.integration),
            json!({"name": "Files out", "slug": "files-out", "type": "outbound", "enabled": true,
                   "configuration": {"event_catalog_event": "ContractUpdated",
                       "mappings": [{"name": "to files", "enabled": true,
                                     "delivery": {"type": "file_proxy",
                                                  "use_case_slug": "documents"}}]}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["code"], "DELIVERY_TYPE_NOT_SUPPORTED", "{answer}");
    let _ = LONG;
}
