//! End-to-end tests of organisation environments: values through `/v1/environments`, secrets
//! encrypted at rest in `erp.config`, `{{env.*}}` resolved at send time in an endpoint's url and
//! API key, an unknown variable dead-lettered by name, `env_var_ref` in an inbound mapping,
//! webhook signing secrets and auth credentials encrypted in `erp.config` too, a restart on the
//! same data directory, and a wrong secrets key refused at start. Waits are
//! bounded by generous limits; nothing asserts how long anything took.

mod common;

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use common::{Harness, options, read_topic, records_until};
use erp_toolkit::Standalone;
use erp_toolkit::receiver::Receiver;

const LIMIT: Duration = Duration::from_secs(60);
const SECRET: &str = "k3y-of-the-erp-9f2c";
/// The basic-auth password of an endpoint that holds its credential directly.
const PASSWORD: &str = "pa55-of-the-erp-71d0";

/// An endpoint with its credential in its own configuration (no environment); returns its
/// signing secret.
async fn direct_endpoint(h: &Harness, receiver: &Receiver) -> String {
    let (status, answer) = h
        .post(
            "/v1/webhooks/configs",
            json!({"name": "direct", "eventName": "event_InboundEventMapped",
                   "url": format!("{}", receiver.url()),
                   "auth": {"authType": "BASIC",
                            "basicAuthConfig": {"username": "erp", "password": PASSWORD}}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert!(!answer.to_string().contains(PASSWORD), "{answer}");
    answer["signingSecret"]
        .as_str()
        .expect("signing secret shown once")
        .to_owned()
}

/// The basic credentials the endpoint of [`direct_endpoint`] must send.
fn basic_header() -> String {
    use base64::Engine;
    let pair = format!("erp:{PASSWORD}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

async fn put_env(h: &Harness, key: &str, value: &str, kind: &str) -> (StatusCode, Value) {
    h.call(
        Method::PUT,
        &format!("/v1/environments/{key}"),
        Some(json!({"value": value, "type": kind})),
    )
    .await
}

/// Configures an inbound use case mapping `env_var_ref`s and two endpoints: one resolving its
/// url and API key from the environment, one naming a variable that does not exist.
async fn configure(h: &Harness, receiver: &Receiver) -> (String, String) {
    let (status, answer) = put_env(h, "erp_host", &receiver.address.to_string(), "String").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, answer) = put_env(h, "erp.api-key", SECRET, "SecretString").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["value"], "********");
    let (status, _) = put_env(h, "erp_system", "SAP-P01", "String").await;
    assert_eq!(status, StatusCode::OK);

    let (status, integration) = h
        .post(
            "/v1/integrations",
            json!({"name": "SAP", "environment_config": [
                {"key": "erp_host", "label": "Host", "type": "String", "required": true},
                {"key": "erp_password", "label": "Password", "type": "SecretString", "required": true}
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{integration}");
    let integration_id = integration["id"].as_str().expect("id").to_owned();
    let (status, use_case) = h
        .post(
            &format!("/v1/integrations/{integration_id}/use-cases"),
            json!({"name": "Meters", "slug": "meters", "type": "inbound", "enabled": true,
                   "configuration": {"entities": [{"entity_schema": "meter", "unique_ids": ["meter_number"],
                     "fields": [{"attribute": "meter_number", "field": "meterId"},
                                {"attribute": "erp_system", "env_var_ref": {"key": "erp_system"}},
                                {"attribute": "leaked", "env_var_ref": {"key": "erp.api-key", "default": "none"}}]}]}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{use_case}");

    let (status, good) = h
        .post(
            "/v1/webhooks/configs",
            json!({"name": "erp", "eventName": "event_InboundEventMapped",
                   "url": "http://{{ env.erp_host }}/hook",
                   "auth": {"authType": "API_KEY", "apiKeyConfig": {"keyName": "X-Api-Key",
                            "keyValue": "erp.api-key", "keyValueIsEnvVar": true}}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{good}");
    let (status, bad) = h
        .post(
            "/v1/webhooks/configs",
            json!({"name": "broken", "eventName": "event_InboundEventMapped",
                   "url": "http://{{env.erp_host}}/other",
                   "payloadConfiguration": {"custom_headers": {"X-Tenant": "{{env.tenant_missing}}"}}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{bad}");
    (integration_id, bad["id"].as_str().expect("id").to_owned())
}

async fn send(h: &Harness, integration_id: &str, meter: &str) {
    let (status, answer) = h
        .post(
            "/v3/erp/updates/events",
            json!({"integration_id": integration_id, "events": [{
                "use_case_slug": "meters", "timestamp": "2025-01-15T10:00:00Z", "format": "json",
                "payload": json!({"meterId": meter}).to_string()}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

async fn delivered(receiver: &Receiver, meter: &str) -> Option<receiver_delivery::Delivery> {
    let started = Instant::now();
    while started.elapsed() < LIMIT {
        let found = receiver
            .deliveries()
            .into_iter()
            .find(|d| d.json()["entity_updates"][0]["unique_identifiers"]["meter_number"] == meter);
        if found.is_some() {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

mod receiver_delivery {
    pub use erp_toolkit::receiver::Delivery;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn environments_resolve_everywhere_and_secrets_stay_encrypted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let receiver = Receiver::start("127.0.0.1:0", None, false)
        .await
        .expect("receiver");
    let direct_receiver = Receiver::start("127.0.0.1:0", None, false)
        .await
        .expect("receiver");
    let h = Harness::start(&dir.path().join("data")).await;
    let (integration_id, bad_webhook) = configure(&h, &receiver).await;
    let signing_secret = direct_endpoint(&h, &direct_receiver).await;

    // Reads mask secrets and list required declarations without a value.
    let (status, listed) = h.get("/v1/environments").await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let values = listed["environments"].as_array().expect("array");
    assert_eq!(values.len(), 3, "{listed}");
    let secret = values
        .iter()
        .find(|v| v["key"] == "erp.api-key")
        .expect("secret listed");
    assert_eq!(
        (&secret["value"], &secret["type"]),
        (&json!("********"), &json!("SecretString"))
    );
    assert_eq!(
        listed["missing_required"],
        json!([{"integration_id": integration_id, "key": "erp_password"}])
    );
    assert!(!listed.to_string().contains(SECRET));
    let (status, _) = put_env(&h, "Bad Key", "x", "String").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = put_env(&h, "k", "x", "Password").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // The configuration log holds the ciphertext only.
    let brokers = h.standalone.broker_address.to_string();
    let log = read_topic(&brokers, "erp.config", usize::MAX, Duration::from_secs(3)).await;
    let raw = log
        .iter()
        .map(|(_, v)| v.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(raw.contains("erpenc:v1:"), "secret stored encrypted");
    assert!(!raw.contains(SECRET), "no clear-text secret in erp.config");
    assert!(
        !raw.contains(PASSWORD),
        "no clear-text auth credential in erp.config"
    );
    assert!(
        !raw.contains(&signing_secret),
        "no clear-text signing secret in erp.config"
    );

    // Delivery: url and API key from the environment; the mapping reads `env_var_ref`, and a
    // secret reads as missing there.
    send(&h, &integration_id, "M-1").await;
    let delivery = delivered(&receiver, "M-1").await.expect("delivered");
    assert_eq!(delivery.header("x-api-key"), Some(SECRET));
    let attributes = &delivery.json()["entity_updates"][0]["attributes"];
    assert_eq!(attributes["erp_system"], "SAP-P01", "{attributes}");
    assert_eq!(attributes["leaked"], "none", "{attributes}");

    // The endpoint naming an unknown variable: dead letter naming it.
    let letters = records_until(
        &h,
        "erp.dlq",
        |l| l.to_string().contains(&bad_webhook),
        |l| !l.is_empty(),
    )
    .await;
    let letter = letters.first().expect("dead letter").to_string();
    assert!(letter.contains("ENV_VAR_NOT_FOUND"), "{letter}");
    assert!(letter.contains("tenant_missing"), "{letter}");
    assert!(!letter.contains(SECRET), "{letter}");

    // A changed value takes effect with the next delivery.
    let (status, _) = put_env(&h, "erp.api-key", "rotated-key", "SecretString").await;
    assert_eq!(status, StatusCode::OK);
    send(&h, &integration_id, "M-2").await;
    let delivery = delivered(&receiver, "M-2").await.expect("delivered");
    assert_eq!(delivery.header("x-api-key"), Some("rotated-key"));

    // Restart on the same data directory (same key file): secrets still resolve.
    h.standalone.stop().await.expect("stops");
    let h = Harness::start(&dir.path().join("data")).await;
    send(&h, &integration_id, "M-3").await;
    let delivery = delivered(&receiver, "M-3")
        .await
        .expect("delivered after restart");
    assert_eq!(delivery.header("x-api-key"), Some("rotated-key"));
    // The endpoint with its own credential: decrypted from the log again, it signs with the
    // secret shown at creation and authenticates with its password.
    let direct = delivered(&direct_receiver, "M-3")
        .await
        .expect("delivered to the direct endpoint after restart");
    assert!(direct.verify(&signing_secret), "signature verifies");
    assert_eq!(
        direct.header("authorization"),
        Some(basic_header().as_str())
    );
    h.standalone.stop().await.expect("stops");

    // Another key: refused at start, naming the key ids.
    let other = dir.path().join("other-key");
    std::fs::write(&other, format!("{}\n", "ab".repeat(32))).expect("key written");
    let mut wrong = options(&dir.path().join("data"));
    wrong.secrets_key_file = Some(other);
    let error = match Standalone::start(wrong, Default::default()).await {
        Ok(_) => panic!("a wrong secrets key must be refused"),
        Err(error) => format!("{error:#}"),
    };
    assert!(error.contains("secrets key"), "{error}");
    assert!(error.contains("does not hold"), "{error}");
}
