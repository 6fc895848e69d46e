//! No secret ever leaves (issue 10, item 5): deliveries carry secrets in the url (through
//! `{{env.X}}` of a SecretString), in a custom header, as basic auth, as an API key and as OAuth
//! client credentials, and every one of them fails in a way that invites a leak: endpoints that
//! answer 500 or 401 echoing the request they got (our headers, the url), a token endpoint that
//! fails once echoing its request (the form with the client secret), a refused connection.
//! Then every topic, the process's log and every listing of the API are searched for each
//! secret value: none may appear. Waits are bounded by generous limits; nothing is timed.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::{Harness, options, read_topic_raw, records_until, topic_names};

const URL_SECRET: &str = "urlsecret-7d1e4b90";
const HEADER_SECRET: &str = "hdrsecret-93ac02f1";
const API_KEY_SECRET: &str = "apikeysecret-51f0aa";
const BASIC_PASSWORD: &str = "basicpass-0b6f3a77";
const OAUTH_SECRET: &str = "oauthsecret-c4d8e2b1";
const ACCESS_TOKEN: &str = "accesstoken-e5a91c3d";

/// Every log line of the process, at debug for our crates.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut buffer) = self.0.lock() {
            buffer.extend_from_slice(bytes);
        }
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogBuffer {
    fn text(&self) -> String {
        self.0
            .lock()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

fn capture_logs() -> LogBuffer {
    let buffer = LogBuffer::default();
    let writer = buffer.clone();
    let filter = tracing_subscriber::EnvFilter::new(
        "info,erp_dispatcher=debug,erp_api=debug,erp_webhooks=debug,erp_runtime=debug,\
         erp_processor=debug,erp_ingest=debug,erp_http=debug,erp_toolkit=debug,\
         tansu_broker=warn,tansu_storage=warn,tansu_sans_io=warn",
    );
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish(),
    )
    .expect("the test's subscriber is the process's only one");
    buffer
}

/// A loopback server that echoes every request it gets (request line, headers, body) in its
/// answer: `/unauthorized` with 401, `/token` with 400 the first time and a token afterwards,
/// anything else with 500.
async fn echo_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listener");
    let address = listener.local_addr().expect("address");
    let tokens = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(echo(socket, Arc::clone(&tokens)));
        }
    });
    address.to_string()
}

async fn echo(mut socket: tokio::net::TcpStream, tokens: Arc<AtomicUsize>) {
    let mut request = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let Ok(n) = socket.read(&mut chunk).await else {
            return;
        };
        if n == 0 {
            return;
        }
        request.extend_from_slice(&chunk[..n]);
        if let Some(at) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&request[..head_end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    while request.len() < head_end + length {
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => request.extend_from_slice(&chunk[..n]),
        }
    }
    let text = String::from_utf8_lossy(&request).into_owned();
    let path = text
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let (status, body) = if path.starts_with("/token") {
        if tokens.fetch_add(1, Ordering::SeqCst) == 0 {
            ("400 Bad Request", text)
        } else {
            (
                "200 OK",
                json!({"access_token": ACCESS_TOKEN, "expires_in": 3600}).to_string(),
            )
        }
    } else if path.starts_with("/unauthorized") {
        ("401 Unauthorized", text)
    } else {
        ("500 Internal Server Error", text)
    };
    let answer = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = socket.write_all(answer.as_bytes()).await;
    let _ = socket.shutdown().await;
}

async fn put_env(h: &Harness, key: &str, value: &str) {
    let (status, answer) = h
        .call(
            Method::PUT,
            &format!("/v1/environments/{key}"),
            Some(json!({"value": value, "type": "SecretString"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

/// Creates an endpoint; returns its id and signing secret.
async fn endpoint(h: &Harness, config: Value) -> (String, String) {
    let mut config = config;
    config["eventName"] = json!("event_InboundEventMapped");
    config["retryPolicy"] = json!({"enabled": true, "maxAttempts": 2});
    let (status, answer) = h.post("/v1/webhooks/configs", config).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    (
        answer["id"].as_str().expect("id").to_owned(),
        answer["signingSecret"]
            .as_str()
            .expect("signing secret")
            .to_owned(),
    )
}

/// Every place a value could surface: each topic's keys and values, the log, the listings.
async fn everything_recorded(h: &Harness, logs: &LogBuffer, endpoints: &[String]) -> Vec<String> {
    let brokers = h.standalone.broker_address.to_string();
    let mut places = Vec::new();
    let topics = topic_names(&brokers);
    assert!(
        topics.iter().any(|t| t.ends_with("monitoring"))
            && topics.iter().any(|t| t.ends_with("dlq")),
        "{topics:?}"
    );
    for topic in topics {
        for (key, value) in
            read_topic_raw(&brokers, &topic, usize::MAX, Duration::from_secs(2)).await
        {
            places.push(format!("topic {topic} key {key}: {value}"));
        }
    }
    places.push(format!("log: {}", logs.text()));
    let mut listings = vec![
        "/v1/webhooks/configs".to_owned(),
        "/v1/environments".to_owned(),
        "/v1/integrations".to_owned(),
        "/v2/integrations".to_owned(),
    ];
    for id in endpoints {
        listings.push(format!("/v1/webhooks/configs/{id}"));
        listings.push(format!("/v1/webhooks/configs/{id}/events"));
    }
    for path in &listings {
        let (status, answer) = h.get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {answer}");
        places.push(format!("GET {path}: {answer}"));
    }
    let (_, integrations) = h.get("/v1/integrations").await;
    for integration in integrations["data"]
        .as_array()
        .or(integrations.as_array())
        .into_iter()
        .flatten()
    {
        let Some(id) = integration["id"].as_str() else {
            continue;
        };
        let (_, events) = h
            .post(&format!("/v1/integrations/{id}/events"), json!({}))
            .await;
        places.push(format!("POST events of {id}: {events}"));
        let (_, dlq) = h
            .get(&format!("/v1/integrations/{id}/outbound/messages/dlq"))
            .await;
        places.push(format!("GET dlq of {id}: {dlq}"));
    }
    for id in endpoints {
        let (status, page) = h
            .post(&format!("/v2/webhooks/configs/{id}/events"), json!({}))
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        for entry in page["data"].as_array().into_iter().flatten() {
            if let Some(event) = entry["event_id"].as_str() {
                let (_, one) = h
                    .get(&format!("/v1/webhooks/configs/{id}/events/{event}"))
                    .await;
                places.push(format!("GET attempt {id}/{event}: {one}"));
            }
        }
        places.push(format!("POST attempt log of {id}: {page}"));
    }
    places
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_secret_value_is_recorded_anywhere() {
    let logs = capture_logs();
    let dir = tempfile::tempdir().expect("temp dir");
    let h = Harness::start_with(options(dir.path())).await;
    let echo = echo_server().await;
    let closed = common::process::free_port();

    put_env(&h, "url_token", URL_SECRET).await;
    put_env(&h, "header_token", HEADER_SECRET).await;
    put_env(&h, "api_key", API_KEY_SECRET).await;
    let (status, integration) = h
        .post(
            "/v1/integrations",
            json!({"name": "SAP", "description": "scan"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{integration}");
    let integration_id = integration["id"].as_str().expect("id").to_owned();
    let (status, use_case) = h
        .post(
            &format!("/v1/integrations/{integration_id}/use-cases"),
            json!({"name": "Meters", "slug": "meters", "type": "inbound", "enabled": true,
                   "configuration": {"entities": [{"entity_schema": "meter",
                     "unique_ids": ["meter_number"],
                     "fields": [{"attribute": "meter_number", "field": "meterId"}]}]}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{use_case}");

    let mut endpoints = Vec::new();
    let mut signing = Vec::new();
    for config in [
        // The url and a header from secret variables, basic auth: 500 echoing all of it.
        json!({"name": "echo", "url": format!("http://{echo}/hook/{{{{env.url_token}}}}?t={{{{env.url_token}}}}"),
               "payloadConfiguration": {"custom_headers": {"X-Erp-Token": "{{env.header_token}}"}},
               "auth": {"authType": "BASIC", "basicAuthConfig": {"username": "erp", "password": BASIC_PASSWORD}}}),
        // An API key from a secret variable: 401 echoing it.
        json!({"name": "key", "url": format!("http://{echo}/unauthorized"),
               "auth": {"authType": "API_KEY", "apiKeyConfig": {"keyName": "X-Api-Key",
                        "keyValue": "api_key", "keyValueIsEnvVar": true}}}),
        // OAuth: the token endpoint fails once echoing the form, then the endpoint answers
        // 500 echoing the bearer token.
        json!({"name": "oauth", "url": format!("http://{echo}/oauth-hook"),
               "auth": {"authType": "OAUTH_CLIENT_CREDENTIALS", "oauthConfig": {
                   "clientId": "erp-client", "clientSecret": OAUTH_SECRET,
                   "endpoint": format!("http://{echo}/token")}}}),
        // Nobody listens: the connection is refused, the url names a secret.
        json!({"name": "refused", "url": format!("http://127.0.0.1:{closed}/{{{{env.url_token}}}}"),
               "payloadConfiguration": {"custom_headers": {"X-Erp-Token": "{{env.header_token}}"}}}),
    ] {
        let (id, secret) = endpoint(&h, config).await;
        endpoints.push(id);
        signing.push(secret);
    }

    let (status, answer) = h
        .post(
            "/v3/erp/updates/events",
            json!({"integration_id": integration_id, "events": [{
                "use_case_slug": "meters", "timestamp": "2025-01-15T10:00:00Z", "format": "json",
                "payload": json!({"meterId": "M-1"}).to_string()}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    // A sync trigger answers the first attempt's outcome through the API.
    let (status, triggered) = h
        .post(
            &format!("/v1/webhooks/configs/{}/trigger?sync=true", endpoints[0]),
            json!({"metadata": {"organization_id": "default", "action": "scan"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{triggered}");

    // Every endpoint ends in a dead letter: its retries used up or a terminal answer.
    let wanted: BTreeSet<String> = endpoints.iter().cloned().collect();
    let letters = records_until(
        &h,
        "erp.dlq",
        |letter| letter["code"] == "DELIVERY_FAILED",
        |letters| {
            let seen: BTreeSet<String> = letters
                .iter()
                .filter_map(|l| l["webhook_id"].as_str().map(str::to_owned))
                .collect();
            wanted.is_subset(&seen)
        },
    )
    .await;
    let seen: BTreeSet<String> = letters
        .iter()
        .filter_map(|l| l["webhook_id"].as_str().map(str::to_owned))
        .collect();
    assert!(wanted.is_subset(&seen), "{letters:#?}");

    // The failures were real: the echoes came back, the token endpoint was asked twice, and
    // what was recorded of them is redacted, with the url in its template form.
    let spans = records_until(
        &h,
        "erp.monitoring",
        |span| span["detail"]["stage"] == "dispatcher",
        |_| true,
    )
    .await;
    let bodies: Vec<&str> = spans
        .iter()
        .filter_map(|s| s["detail"]["response_body"].as_str())
        .collect();
    assert!(
        bodies.iter().any(|b| b.contains("[redacted]")),
        "the echoes are recorded, redacted: {bodies:#?}"
    );
    assert!(
        spans.iter().any(|s| s["detail"]["url"]
            .as_str()
            .is_some_and(|u| u.contains("{{env.url_token}}"))),
        "{spans:#?}"
    );
    assert!(
        spans.iter().any(|s| s["code"] == "OAuthTokenExchangeError"),
        "the token endpoint failed once: {spans:#?}"
    );

    let basic = base64::engine::general_purpose::STANDARD.encode(format!("erp:{BASIC_PASSWORD}"));
    let mut secrets: Vec<String> = [
        URL_SECRET,
        HEADER_SECRET,
        API_KEY_SECRET,
        BASIC_PASSWORD,
        OAUTH_SECRET,
        ACCESS_TOKEN,
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    secrets.push(basic);
    secrets.extend(signing);
    let mut places = everything_recorded(&h, &logs, &endpoints).await;
    places.push(format!("sync trigger answer: {triggered}"));
    assert!(places.len() > 10, "{places:#?}");
    let mut hits = Vec::new();
    for place in &places {
        for secret in &secrets {
            if place.contains(secret.as_str()) {
                let at = place.find(secret.as_str()).unwrap_or(0);
                let from = place[..at]
                    .char_indices()
                    .rev()
                    .nth(200)
                    .map_or(0, |(i, _)| i);
                let excerpt: String = place[from..].chars().take(400).collect();
                hits.push(format!("{secret} in …{excerpt}"));
            }
        }
    }
    assert!(
        hits.is_empty(),
        "secret values recorded:\n{}",
        hits.join("\n\n")
    );
}
