//! Organisations, scoped access tokens and the per-organisation rate limit, against the
//! standalone process: isolation (another organisation's objects are 404), permissions (403),
//! revocation (401), token values shown once, and 429 with `Retry-After`.

mod common;

use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use common::{Harness, meter_mapping, reading_event};

/// Upper bound for anything to happen; tests never assert how fast.
const LONG: Duration = Duration::from_secs(120);

/// A request with `token` (`None`: no Authorization header).
async fn call_as(
    h: &Harness,
    token: Option<&str>,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value, HeaderMap) {
    let mut request = h.client.request(method, format!("{}{path}", h.base));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request is answered");
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body is read");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        headers,
    )
}

async fn get_as(h: &Harness, token: &str, path: &str) -> (StatusCode, Value) {
    let (status, body, _) = call_as(h, Some(token), Method::GET, path, None).await;
    (status, body)
}

async fn post_as(h: &Harness, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
    let (status, body, _) = call_as(h, Some(token), Method::POST, path, Some(body)).await;
    (status, body)
}

/// Creates a token with the admin token; returns (id, value).
async fn create_token(h: &Harness, body: Value) -> (String, String) {
    let (status, created) = h.post("/v1/access-tokens", body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let value = created["token"].as_str().expect("token value").to_owned();
    assert!(value.starts_with("erpt_"), "{value}");
    assert!(created.get("hash").is_none(), "{created}");
    (created["id"].as_str().expect("id").to_owned(), value)
}

fn platform_event() -> Value {
    json!({"_event_id": "01JP0000000000000000000001", "_event_name": "ContractUpdated",
           "_event_time": "2025-03-01T08:00:00.000Z", "_org_id": "default",
           "_ack_id": "6f1c1a52-0000-4000-8000-000000000001",
           "_event_version": "1.0", "_event_source": "portal", "contract": {"number": 1}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn organisations_are_isolated_and_tokens_are_scoped() {
    let dir = tempfile::tempdir().expect("temp dir");
    let h = Harness::start(dir.path()).await;

    // The deployment admin creates a second organisation's owner token and scoped tokens of its
    // own organisation (`default`).
    let (_, beta) = create_token(
        &h,
        json!({"name": "beta owner", "roles": ["owner"], "org_id": "beta"}),
    )
    .await;
    let (viewer_id, viewer) = create_token(
        &h,
        json!({"name": "dashboard", "roles": ["integration:view"]}),
    )
    .await;
    let (_, consumer) = create_token(
        &h,
        json!({"name": "middleware poller", "roles": ["integration:consume"]}),
    )
    .await;
    let (_, sender) = create_token(
        &h,
        json!({"name": "middleware push", "roles": ["erp:events"]}),
    )
    .await;
    let (_, manager) = create_token(&h, json!({"name": "ci", "roles": ["erp:write"]})).await;

    // Organisation A's configuration: an inbound use case, a poll queue, a webhook endpoint.
    let (integration, _) = h
        .configure(meter_mapping(), "http://127.0.0.1:9/hook")
        .await;
    let (status, poll_uc) = h
        .post(
            &format!("/v1/integrations/{integration}/use-cases"),
            json!({"name": "Contracts", "slug": "contracts", "type": "outbound", "enabled": true,
                   "configuration": {"event_catalog_event": "ContractUpdated",
                       "mappings": [{"name": "ERP queue", "enabled": true,
                                     "delivery": {"type": "poll"}}]}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{poll_uc}");
    let use_case = poll_uc["id"].as_str().expect("use case id").to_owned();
    let (_, webhooks) = h.get("/v1/webhooks/configs").await;
    let webhook = webhooks[0]["id"].as_str().expect("webhook id").to_owned();

    // Organisation B sees nothing of A: empty lists, 404 on every object, never 403.
    let (status, listed) = get_as(&h, &beta, "/v1/integrations").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["integrations"], json!([]));
    let (_, listed) = get_as(&h, &beta, "/v2/integrations").await;
    assert_eq!(listed["integrations"], json!([]));
    let (_, listed) = get_as(&h, &beta, "/v1/webhooks/configs").await;
    assert_eq!(listed, json!([]), "{listed}");
    let base = format!("/v1/integrations/{integration}");
    let foreign: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, base.clone(), None),
        (Method::PUT, base.clone(), Some(json!({"name": "mine"}))),
        (Method::DELETE, base.clone(), None),
        (Method::GET, format!("/v2/integrations/{integration}"), None),
        (Method::GET, format!("{base}/use-cases"), None),
        (Method::GET, format!("{base}/use-cases/{use_case}"), None),
        (
            Method::GET,
            format!("{base}/use-cases/{use_case}/history"),
            None,
        ),
        (
            Method::POST,
            format!("{base}/use-cases"),
            Some(json!({"name": "x", "slug": "x", "type": "inbound", "enabled": true})),
        ),
        (
            Method::POST,
            format!("{base}/outbound/messages/poll"),
            Some(json!({})),
        ),
        (
            Method::POST,
            format!("{base}/outbound/messages/ack"),
            Some(json!({"acks": [{"id": "msg_x", "lease_token": "lt_x"}]})),
        ),
        (Method::GET, format!("{base}/outbound/messages/dlq"), None),
        (
            Method::POST,
            format!("{base}/outbound/messages/unblock"),
            Some(json!({})),
        ),
        (Method::GET, format!("/v1/webhooks/configs/{webhook}"), None),
        (
            Method::DELETE,
            format!("/v1/webhooks/configs/{webhook}"),
            None,
        ),
        (
            Method::POST,
            "/v3/erp/updates/events".to_owned(),
            Some(json!({"integration_id": integration,
                        "events": [reading_event(1, "beta-1")]})),
        ),
        (
            Method::DELETE,
            format!("/v1/access-tokens/{viewer_id}"),
            None,
        ),
    ];
    for (method, path, body) in foreign {
        let (status, answer, _) = call_as(&h, Some(&beta), method.clone(), &path, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {answer}");
        assert!(answer["code"].is_string(), "{answer}");
    }
    let (status, answer) = post_as(
        &h,
        &beta,
        "/v1/access-tokens",
        json!({"name": "x", "roles": ["owner"], "org_id": "default"}),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "only the admin names another org: {answer}"
    );
    // A's objects survived B's attempts.
    let (status, _) = h.get(&base).await;
    assert_eq!(status, StatusCode::OK);

    // A view token reads but does not write.
    let (status, listed) = get_as(&h, &viewer, "/v1/integrations").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["integrations"].as_array().map(Vec::len), Some(1));
    let (status, _) = get_as(&h, &viewer, &format!("{base}/use-cases")).await;
    assert_eq!(status, StatusCode::OK);
    for (method, path, body) in [
        (
            Method::POST,
            "/v1/integrations".to_owned(),
            Some(json!({"name": "x"})),
        ),
        (Method::PUT, base.clone(), Some(json!({"name": "x"}))),
        (Method::DELETE, base.clone(), None),
        (
            Method::POST,
            "/v3/erp/updates/events".to_owned(),
            Some(json!({"integration_id": integration, "events": [reading_event(2, "v-2")]})),
        ),
        (Method::GET, "/v1/access-tokens".to_owned(), None),
    ] {
        let (status, answer, _) = call_as(&h, Some(&viewer), method.clone(), &path, body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {answer}");
        assert_eq!(answer["code"], "FORBIDDEN");
        assert!(answer["message"].is_string());
    }

    // An events token sends events and nothing else; `erp:write` (manage) may create.
    let (status, answer) = post_as(
        &h,
        &sender,
        "/v3/erp/updates/events",
        json!({"integration_id": integration, "events": [reading_event(3, "s-3")]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, _) = get_as(&h, &sender, "/v1/integrations").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, answer) = post_as(&h, &manager, "/v1/integrations", json!({"name": "ci"})).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let (status, _) = get_as(&h, &manager, "/v1/access-tokens").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "manage is not owner");

    // A consume token polls and acks, but neither lists the DLQ nor configures.
    let (status, answer) = h
        .post("/v1/events", json!({"events": [platform_event()]}))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let started = Instant::now();
    let batch = loop {
        let (status, batch) = post_as(
            &h,
            &consumer,
            &format!("{base}/outbound/messages/poll"),
            json!({}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{batch}");
        if batch["messages"].as_array().is_some_and(|m| !m.is_empty()) {
            break batch;
        }
        assert!(started.elapsed() < LONG, "nothing to poll");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let message = &batch["messages"][0];
    let (status, acked) = post_as(
        &h,
        &consumer,
        &format!("{base}/outbound/messages/ack"),
        json!({"acks": [{"id": message["id"], "lease_token": message["lease_token"]}]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{acked}");
    assert_eq!(acked["results"][0]["status"], "accepted", "{acked}");
    for (method, path, body) in [
        (Method::GET, format!("{base}/outbound/messages/dlq"), None),
        (
            Method::POST,
            format!("{base}/outbound/messages/dlq/redrive"),
            Some(json!({"ids": ["msg_x"]})),
        ),
        (
            Method::POST,
            format!("{base}/outbound/messages/unblock"),
            Some(json!({})),
        ),
        (
            Method::POST,
            format!("{base}/use-cases"),
            Some(json!({"name": "y", "slug": "y", "type": "inbound", "enabled": true})),
        ),
        (Method::GET, "/v1/integrations".to_owned(), None),
    ] {
        let (status, answer, _) = call_as(&h, Some(&consumer), method.clone(), &path, body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {answer}");
    }

    // The platform event's ACK: another organisation's is unknown; its own goes through.
    let ack = json!({"ack_id": "6f1c1a52-0000-4000-8000-000000000001"});
    let started = Instant::now();
    loop {
        let (status, _) = post_as(&h, &beta, "/v1/erp/tracking/acknowledgement", ack.clone()).await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "another organisation's ack_id"
        );
        let (status, answer) = post_as(
            &h,
            &consumer,
            "/v1/erp/tracking/acknowledgement",
            ack.clone(),
        )
        .await;
        if status == StatusCode::OK {
            break;
        }
        assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
        assert!(started.elapsed() < LONG, "the ACK row never arrived");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Token values are shown once: never in lists, never with their hash.
    let (status, tokens) = h.get("/v1/access-tokens").await;
    assert_eq!(status, StatusCode::OK);
    let listed = tokens["access_tokens"].as_array().expect("tokens");
    assert_eq!(listed.len(), 4, "A's four tokens, not B's: {tokens}");
    let text = tokens.to_string();
    for value in [&viewer, &consumer, &sender, &manager, &beta] {
        assert!(!text.contains(value.as_str()), "a token value in a list");
    }
    assert!(
        listed
            .iter()
            .all(|t| t.get("hash").is_none() && t.get("token").is_none())
    );
    let (_, beta_tokens) = get_as(&h, &beta, "/v1/access-tokens").await;
    assert_eq!(
        beta_tokens["access_tokens"].as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(beta_tokens["access_tokens"][0]["org_id"], "beta");

    // Refused roles and missing or unknown tokens.
    let (status, answer) = h
        .post(
            "/v1/access-tokens",
            json!({"name": "x", "roles": ["integration:everything"]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["code"], "UNKNOWN_ROLE");
    let (status, answer, _) = call_as(&h, None, Method::GET, "/v1/integrations", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert_eq!(answer["code"], "UNAUTHORIZED");
    let (status, _) = get_as(&h, "erpt_not-a-token", "/v1/integrations").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // A revoked token is 401 at once.
    let (status, answer, _) = call_as(
        &h,
        Some(&h.standalone.admin_token),
        Method::DELETE,
        &format!("/v1/access-tokens/{viewer_id}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, answer) = get_as(&h, &viewer, "/v1/integrations").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert_eq!(answer["code"], "UNAUTHORIZED");
    let (_, tokens) = h.get("/v1/access-tokens").await;
    assert_eq!(tokens["access_tokens"].as_array().map(Vec::len), Some(3));

    h.standalone.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_organisation_that_spends_its_budget_gets_429_with_retry_after() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut options = common::options(dir.path());
    options.rate_limit_per_minute = 5;
    let h = Harness::start_with(options).await;

    // One request of the budget creates the other organisation's token.
    let (status, created) = h
        .post(
            "/v1/access-tokens",
            json!({"name": "beta", "roles": ["integration:view"], "org_id": "beta"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let beta = created["token"].as_str().expect("token").to_owned();
    for _ in 0..4 {
        let (status, _) = h.get("/v1/integrations").await;
        assert_eq!(status, StatusCode::OK);
    }
    let admin = h.standalone.admin_token.clone();
    let (status, answer, headers) =
        call_as(&h, Some(&admin), Method::GET, "/v1/integrations", None).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{answer}");
    assert_eq!(answer["code"], "RATE_LIMITED");
    assert!(answer["message"].is_string());
    let retry_after: u64 = headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!(retry_after >= 1);

    // Another organisation has its own budget; operational routes have none.
    let (status, _) = get_as(&h, &beta, "/v1/integrations").await;
    assert_eq!(status, StatusCode::OK);
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/webhooks/.well-known/public-key",
    ] {
        let (status, _, _) = call_as(&h, Some(&admin), Method::GET, path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
    assert!(h.metric("erp_api_denied_requests_total{code=\"RATE_LIMITED\"}") >= 1.0);
    h.standalone.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_organisation_signs_with_its_own_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let h = Harness::start(dir.path()).await;
    let receiver = erp_toolkit::receiver::Receiver::start("127.0.0.1:0", None, false)
        .await
        .expect("receiver");
    let (_, beta) = create_token(
        &h,
        json!({"name": "beta owner", "roles": ["owner"], "org_id": "beta"}),
    )
    .await;
    let admin = h.standalone.admin_token.clone();
    for (token, org) in [(admin.as_str(), "default"), (beta.as_str(), "beta")] {
        let (status, webhook) = post_as(
            &h,
            token,
            "/v1/webhooks/configs",
            json!({"name": org, "eventName": "event_Test", "url": receiver.url()}),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{webhook}");
        let id = webhook["id"].as_str().expect("id");
        let (status, answer) = post_as(
            &h,
            token,
            &format!("/v1/webhooks/configs/{id}/trigger"),
            json!({"metadata": {"organization_id": org, "action": "test"}, "org": org}),
        )
        .await;
        assert!(status.is_success(), "{status}: {answer}");
    }
    assert!(receiver.wait_for(2, LONG).await, "both deliveries arrive");

    // The public key of each organisation, without a token; no orgId means the admin's.
    let public_key = |org: Option<&'static str>| {
        let url = match org {
            Some(org) => format!("{}/v1/webhooks/.well-known/public-key?orgId={org}", h.base),
            None => format!("{}/v1/webhooks/.well-known/public-key", h.base),
        };
        let client = h.client.clone();
        async move {
            let response = client.get(url).send().await.expect("answered");
            assert_eq!(response.status(), StatusCode::OK);
            let key: Value = response.json().await.expect("json");
            key["public_key"].as_str().expect("public key").to_owned()
        }
    };
    let default_key = public_key(Some("default")).await;
    let beta_key = public_key(Some("beta")).await;
    assert_ne!(default_key, beta_key);
    assert_eq!(public_key(None).await, default_key);
    // Stable: the same key on every read.
    assert_eq!(public_key(Some("beta")).await, beta_key);

    let deliveries = receiver.deliveries();
    for (org, own, other) in [
        ("default", &default_key, &beta_key),
        ("beta", &beta_key, &default_key),
    ] {
        let delivery = deliveries
            .iter()
            .find(|d| d.json()["org"] == org)
            .unwrap_or_else(|| panic!("{org}'s delivery in {deliveries:?}"));
        let verifies = |key: &str| {
            erp_webhooks::org_key::verify_v1a(
                key,
                &delivery.webhook_id,
                delivery.timestamp,
                &delivery.body,
                &delivery.signature,
            )
        };
        assert!(verifies(own), "{org}'s delivery verifies with its own key");
        assert!(
            !verifies(other),
            "{org}'s delivery does not verify with the other's key"
        );
    }
    h.standalone.stop().await.expect("clean stop");
}
