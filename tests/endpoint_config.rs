//! End-to-end tests of an endpoint's delivery configuration: auth (basic, API key, OAuth2 client
//! credentials against a loopback token endpoint), custom headers, filters, the JSONata payload
//! transform, and what the API validates and never answers. Real loopback receivers on the
//! embedded broker; waits are bounded by generous limits, nothing asserts how long anything took.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use common::{Harness, records_until};
use erp_toolkit::receiver::Receiver;

const LIMIT: Duration = Duration::from_secs(60);
const EVENT: &str = "MeterReadingAdded";

/// Creates an endpoint subscribed to [`EVENT`]; returns its id and signing secret.
async fn endpoint(h: &Harness, name: &str, url: &str, extra: Value) -> (String, String) {
    let mut body = json!({"name": name, "eventName": format!("event_{EVENT}"), "url": url});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    let (status, answer) = h.post("/v1/webhooks/configs", body).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    (
        answer["id"].as_str().expect("id").to_owned(),
        answer["signingSecret"].as_str().expect("secret").to_owned(),
    )
}

/// Writes a core event named [`EVENT`] with `fields` straight to `erp.core.events`.
async fn publish(h: &Harness, event_id: &str, fields: Value) {
    let brokers = h.standalone.broker_address.to_string();
    let producer = erp_runtime::KafkaSettings::new(brokers)
        .producer("test")
        .expect("producer");
    let mut event = json!({
        "_event_id": event_id, "_event_name": EVENT, "_event_time": "2025-03-01T08:00:00.000Z",
        "_org_id": "default"
    });
    if let (Some(event), Some(fields)) = (event.as_object_mut(), fields.as_object()) {
        event.extend(fields.clone());
    }
    erp_runtime::kafka::send(
        &producer,
        "erp.core.events",
        event_id,
        event.to_string().as_bytes(),
    )
    .await
    .expect("produced");
}

/// The dispatcher's spans for one endpoint, once at least `want` are there.
async fn spans_for(h: &Harness, webhook_id: &str, want: usize) -> Vec<Value> {
    records_until(
        h,
        "erp.monitoring",
        |s| s["detail"]["stage"] == "dispatcher" && s["detail"]["webhook_config_id"] == webhook_id,
        |s| s.len() >= want,
    )
    .await
}

async fn receiver() -> Receiver {
    Receiver::start("127.0.0.1:0", None, false)
        .await
        .expect("receiver")
}

/// A loopback OAuth2 token endpoint issuing `tok-1`, `tok-2`, … and recording each request.
struct TokenServer {
    url: String,
    requests: Arc<Mutex<Vec<(String, String, String)>>>,
    issued: Arc<AtomicUsize>,
}

#[derive(Clone)]
struct TokenState {
    requests: Arc<Mutex<Vec<(String, String, String)>>>,
    issued: Arc<AtomicUsize>,
}

async fn issue_token(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<TokenState>,
) -> HttpResponse {
    let n = state.issued.fetch_add(1, Ordering::SeqCst) + 1;
    let tenant = req
        .headers()
        .get("x-tenant")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if let Ok(mut requests) = state.requests.lock() {
        requests.push((
            req.uri().to_string(),
            tenant,
            String::from_utf8_lossy(&body).into_owned(),
        ));
    }
    HttpResponse::Ok().json(json!({
        "access_token": format!("tok-{n}"), "token_type": "Bearer", "expires_in": 3600
    }))
}

async fn token_server() -> TokenServer {
    let state = TokenState {
        requests: Arc::default(),
        issued: Arc::default(),
    };
    let data = web::Data::new(state.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .default_service(web::to(issue_token))
    })
    .workers(1)
    .disable_signals()
    .bind("127.0.0.1:0")
    .expect("token server binds");
    let address = server.addrs()[0];
    tokio::spawn(server.run());
    TokenServer {
        url: format!("http://{address}/oauth/token"),
        requests: state.requests,
        issued: state.issued,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_and_custom_headers_arrive_and_secrets_stay_hidden() {
    let dir = tempfile::tempdir().expect("temp dir");
    let h = Harness::start(dir.path()).await;
    let (basic_rx, key_rx) = (receiver().await, receiver().await);

    // What is refused on save, naming the field.
    let refused = [
        (
            json!({"payloadConfiguration": {"custom_headers": {"Authorization": "Bearer x"}}}),
            "payloadConfiguration.custom_headers.Authorization",
        ),
        (
            json!({"payloadConfiguration": {"custom_headers": {"X-Forwarded-For": "1.2.3.4"}}}),
            "payloadConfiguration.custom_headers.X-Forwarded-For",
        ),
        (
            json!({"auth": {"authType": "API_KEY", "apiKeyConfig": {"keyName": "X-API-Key"}}}),
            "auth.apiKeyConfig.keyValue",
        ),
        (
            json!({"auth": {"authType": "BASIC", "basicAuthConfig": {"username": "u",
            "password": "{{ env.pw }}", "passwordIsEnvVar": true}}}),
            // With the flag the field holds a variable's name, not a template.
            "auth.basicAuthConfig.password must name an environment variable",
        ),
        (
            json!({"jsonataExpression": "{ \"a\": "}),
            "jsonataExpression",
        ),
        (
            json!({"filterConditions": {"conditions": [{"jsonata_expression": "value >"}]}}),
            "filterConditions.conditions[0].jsonata_expression",
        ),
    ];
    for (extra, field) in refused {
        let mut body = json!({"name": "bad", "eventName": "event_X", "url": basic_rx.url()});
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        let (status, answer) = h.post("/v1/webhooks/configs", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{extra}: {answer}");
        assert!(answer.to_string().contains(field), "{field}: {answer}");
    }

    let (basic_id, _) = endpoint(
        &h,
        "basic",
        &basic_rx.url(),
        json!({
            "auth": {"authType": "BASIC", "basicAuthConfig": {"username": "erp", "password": "pw-basic-1"}},
            "payloadConfiguration": {"custom_headers": {"X-Tenant": "north", "X-Source": "erp-toolkit"}}
        }),
    )
    .await;
    let (key_id, _) = endpoint(
        &h,
        "api key",
        &key_rx.url(),
        json!({"auth": {"authType": "API_KEY", "apiKeyConfig": {"keyName": "X-API-Key", "keyValue": "key-value-1"}}}),
    )
    .await;

    // Secrets are never answered, in a single read or the list.
    for path in [
        format!("/v1/webhooks/configs/{basic_id}"),
        format!("/v1/webhooks/configs/{key_id}"),
        "/v1/webhooks/configs".to_owned(),
    ] {
        let (status, answer) = h.get(&path).await;
        assert_eq!(status, StatusCode::OK);
        let text = answer.to_string();
        assert!(
            !text.contains("pw-basic-1") && !text.contains("key-value-1"),
            "{text}"
        );
        assert!(text.contains("********"), "{text}");
    }

    publish(
        &h,
        "01JEVT0000000000000000AUTH",
        json!({"reading": {"value": 1}}),
    )
    .await;
    assert!(basic_rx.wait_for(1, LIMIT).await, "basic endpoint receives");
    assert!(key_rx.wait_for(1, LIMIT).await, "api key endpoint receives");
    let basic = &basic_rx.deliveries()[0];
    assert_eq!(
        basic.header("authorization"),
        Some("Basic ZXJwOnB3LWJhc2ljLTE=")
    );
    assert_eq!(basic.header("x-tenant"), Some("north"));
    assert_eq!(basic.header("x-source"), Some("erp-toolkit"));
    let keyed = &key_rx.deliveries()[0];
    assert_eq!(keyed.header("x-api-key"), Some("key-value-1"));
    assert_eq!(keyed.header("authorization"), None);

    // A PUT that omits the password (or sends the mask back) keeps it.
    let (status, answer) = h
        .call(
            Method::PUT,
            &format!("/v1/webhooks/configs/{basic_id}"),
            Some(json!({"name": "basic", "eventName": format!("event_{EVENT}"), "url": basic_rx.url(),
                "auth": {"authType": "BASIC", "basicAuthConfig": {"username": "erp", "password": "********"}},
                "payloadConfiguration": {"custom_headers": {"X-Tenant": "south"}}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(!answer.to_string().contains("pw-basic-1"), "{answer}");
    publish(
        &h,
        "01JEVT0000000000000000AUT2",
        json!({"reading": {"value": 2}}),
    )
    .await;
    assert!(
        basic_rx.wait_for(2, LIMIT).await,
        "basic endpoint receives again"
    );
    let again = &basic_rx.deliveries()[1];
    assert_eq!(
        again.header("authorization"),
        Some("Basic ZXJwOnB3LWJhc2ljLTE=")
    );
    assert_eq!(again.header("x-tenant"), Some("south"));
    assert_eq!(again.header("x-source"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_tokens_are_cached_and_replaced_after_a_401() {
    let dir = tempfile::tempdir().expect("temp dir");
    let h = Harness::start(dir.path()).await;
    let rx = receiver().await;
    let tokens = token_server().await;
    let (id, _) = endpoint(
        &h,
        "oauth",
        &rx.url(),
        json!({"auth": {"authType": "OAUTH_CLIENT_CREDENTIALS", "oauthConfig": {
        "clientId": "toolkit", "clientSecret": "client-secret-1", "endpoint": tokens.url,
        "httpMethod": "POST", "customParameterList": [
            {"type": "body", "key": "scope", "value": "erp.write"},
            {"type": "query", "key": "audience", "value": "sap"},
            {"type": "header", "key": "X-Tenant", "value": "north"}
        ]}}}),
    )
    .await;
    let (_, answer) = h.get(&format!("/v1/webhooks/configs/{id}")).await;
    assert!(!answer.to_string().contains("client-secret-1"), "{answer}");

    for n in 0..3 {
        publish(
            &h,
            &format!("01JEVT00000000000000OAUTH{n}"),
            json!({"n": n}),
        )
        .await;
    }
    assert!(rx.wait_for(3, LIMIT).await, "three deliveries");
    assert_eq!(
        tokens.issued.load(Ordering::SeqCst),
        1,
        "one token for several deliveries"
    );
    for delivery in rx.deliveries() {
        assert_eq!(delivery.header("authorization"), Some("Bearer tok-1"));
    }
    let (uri, tenant, body) = tokens.requests.lock().expect("requests")[0].clone();
    assert!(uri.contains("audience=sap"), "{uri}");
    assert_eq!(tenant, "north");
    for part in [
        "grant_type=client_credentials",
        "client_id=toolkit",
        "client_secret=client-secret-1",
        "scope=erp.write",
    ] {
        assert!(body.contains(part), "{part} in {body}");
    }

    // The endpoint refuses the cached token once: a new token, and the same attempt succeeds.
    rx.fail_first(1, 401);
    publish(&h, "01JEVT00000000000000OAUTH9", json!({"n": 9})).await;
    assert!(
        rx.wait_for(5, LIMIT).await,
        "the refused request and its repeat"
    );
    assert_eq!(tokens.issued.load(Ordering::SeqCst), 2);
    // Which request met the 401 depends on arrival order on a loaded machine; what must hold:
    // one request more with the old token (the refused one), the event's last request with the
    // new token, same webhook-id.
    let deliveries = rx.deliveries();
    let seen: Vec<(String, Option<String>)> = deliveries
        .iter()
        .map(|d| {
            (
                d.webhook_id.clone(),
                d.header("authorization").map(str::to_owned),
            )
        })
        .collect();
    let with = |token: &str| {
        deliveries
            .iter()
            .filter(|d| d.header("authorization") == Some(token))
            .count()
    };
    assert_eq!(with("Bearer tok-1"), 4, "{seen:?}");
    let ninth: Vec<_> = deliveries
        .iter()
        .filter(|d| d.webhook_id == "msg_01JEVT00000000000000OAUTH9")
        .collect();
    assert_eq!(
        ninth.last().and_then(|d| d.header("authorization")),
        Some("Bearer tok-2"),
        "{seen:?}"
    );
    let spans = spans_for(&h, &id, 4).await;
    let last: Vec<&Value> = spans
        .iter()
        .filter(|s| s["detail"]["core_event_id"] == "01JEVT00000000000000OAUTH9")
        .collect();
    assert_eq!(last.len(), 1, "one attempt: {last:?}");
    assert_eq!(last[0]["level"], "success", "{:?}", last[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_skip_and_the_transform_shapes_the_signed_body() {
    let dir = tempfile::tempdir().expect("temp dir");
    let h = Harness::start(dir.path()).await;
    let (field_rx, jsonata_rx, transform_rx, broken_rx) = (
        receiver().await,
        receiver().await,
        receiver().await,
        receiver().await,
    );
    let (field_id, _) = endpoint(
        &h,
        "obis filter",
        &field_rx.url(),
        json!({"filterConditions": {"conditions": [
            {"field": "reading.obis", "operation": "equals", "values": ["1-0:1.8.0"]},
            {"field": "reading.meter", "operation": "starts_with", "values": ["M-"]}
        ]}}),
    )
    .await;
    let (jsonata_id, _) = endpoint(
        &h,
        "jsonata filter",
        &jsonata_rx.url(),
        json!({"filterConditions": {"conditions": [{"jsonata_expression": "reading.value > 100"}]}}),
    )
    .await;
    let (transform_id, transform_secret) = endpoint(
        &h,
        "transform",
        &transform_rx.url(),
        json!({"jsonataExpression": "{\"meter\": reading.meter, \"kwh\": reading.value, \"id\": _event_id}"}),
    )
    .await;
    let (broken_id, _) = endpoint(
        &h,
        "broken transform",
        &broken_rx.url(),
        json!({"jsonataExpression": "$error('no mapping for ' & reading.meter)"}),
    )
    .await;

    let low = "01JEVT0000000000000FILTLOW";
    let high = "01JEVT000000000000FILTHIGH";
    publish(
        &h,
        low,
        json!({"reading": {"meter": "M-1", "obis": "1-0:1.8.0", "value": 50}}),
    )
    .await;
    publish(
        &h,
        high,
        json!({"reading": {"meter": "M-2", "obis": "1-0:2.8.0", "value": 500}}),
    )
    .await;

    // Each filter skips one event (a skipped span, no attempt) and lets the other through.
    for (id, skipped, passed) in [(&field_id, high, low), (&jsonata_id, low, high)] {
        let spans = spans_for(&h, id, 2).await;
        let of = |event: &str| -> Vec<&Value> {
            spans
                .iter()
                .filter(|s| s["detail"]["core_event_id"] == event)
                .collect()
        };
        let skips = of(skipped);
        assert_eq!(skips.len(), 1, "{spans:?}");
        assert_eq!(skips[0]["level"], "skipped");
        assert_eq!(skips[0]["code"], "EVENT_FILTERED");
        assert_eq!(skips[0]["detail"]["outcome"], "skipped");
        let sent = of(passed);
        assert_eq!(sent.len(), 1, "{spans:?}");
        assert_eq!(sent[0]["level"], "success");
    }
    for (rx, event) in [(&field_rx, low), (&jsonata_rx, high)] {
        assert!(rx.wait_for(1, LIMIT).await);
        let ids: Vec<Value> = rx
            .deliveries()
            .iter()
            .map(|d| d.json()["_event_id"].clone())
            .collect();
        assert_eq!(ids, vec![json!(event)]);
    }

    // The transform shapes the body, and the signature covers the transformed body.
    assert!(transform_rx.wait_for(2, LIMIT).await);
    let mut bodies: Vec<Value> = transform_rx.deliveries().iter().map(|d| d.json()).collect();
    bodies.sort_by_key(|b| b["kwh"].as_i64());
    assert_eq!(
        bodies,
        vec![
            json!({"meter": "M-1", "kwh": 50, "id": low}),
            json!({"meter": "M-2", "kwh": 500, "id": high})
        ]
    );
    for delivery in transform_rx.deliveries() {
        assert!(
            delivery.verify(&transform_secret),
            "signature over the transformed body"
        );
    }
    let spans = spans_for(&h, &transform_id, 2).await;
    assert!(spans.iter().all(|s| s["level"] == "success"), "{spans:?}");

    // A transform that throws is terminal: dead letter and error span naming the endpoint.
    let letters = records_until(
        &h,
        "erp.dlq",
        |l| l["webhook_id"] == broken_id.as_str(),
        |l| l.len() >= 2,
    )
    .await;
    assert_eq!(letters.len(), 2, "{letters:?}");
    assert!(
        letters.iter().all(|l| l["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("TRANSFORM_FAILED")),
        "{letters:?}"
    );
    let spans = spans_for(&h, &broken_id, 2).await;
    assert!(
        spans.iter().all(|s| s["level"] == "error"
            && s["code"] == "TRANSFORM_FAILED"
            && s["message"]
                .as_str()
                .unwrap_or_default()
                .contains("broken transform")),
        "{spans:?}"
    );
    assert_eq!(broken_rx.count(), 0, "nothing sent");
}
