//! The broker goes away for 60 s under a steady event stream and comes back, with every role as
//! a separate process (`broker`, `ingest`, `api`, `processor`, `dispatcher`) and a real
//! receiver: while the broker is down every post is answered 503 `QUEUE_UNAVAILABLE` with
//! `Retry-After` within the produce timeout (no hang) and `/readyz` says why; after it is back on
//! the same data, nothing is restarted: the running ingest writes again, the broker survives it
//! (the idempotent producer no longer times records out and bumps its epoch,
//! docs/embedded-broker.md defect A), every event answered 200 is in `erp.inbound.events`
//! exactly once and is delivered to the receiver exactly once, signed.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::process::{Role, free_address, wait_tcp};
use common::{meter_mapping, read_topic_to_end, reading_event};
use erp_toolkit::receiver::Receiver;

const TOKEN: &str = "erpt_broker_restart_token";
/// Twice the 30 s message timeout the producers used to have (the old trigger), and longer
/// than the groups' session timeout.
const OUTAGE: Duration = Duration::from_secs(60);

/// Asks `/readyz` until `wanted` holds for its status and body, for at most `limit`; the last
/// answer.
async fn readyz_until(
    client: &reqwest::Client,
    url: &str,
    limit: Duration,
    wanted: impl Fn(u16, &Value) -> bool,
) -> (u16, Value) {
    let started = Instant::now();
    loop {
        let answer = match client.get(url).timeout(Duration::from_secs(5)).send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                (status, response.json::<Value>().await.unwrap_or_default())
            }
            Err(error) => (0, json!({"error": error.to_string()})),
        };
        if wanted(answer.0, &answer.1) || started.elapsed() > limit {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Creates an integration with the meter-reading use case through the API at `api_address`.
async fn meter_integration(client: &reqwest::Client, api_address: &str) -> String {
    let integration: Value = client
        .post(format!("http://{api_address}/v1/integrations"))
        .bearer_auth(TOKEN)
        .json(&json!({"name": "SAP"}))
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("json");
    let integration = integration["id"].as_str().expect("id").to_owned();
    let created = client
        .post(format!(
            "http://{api_address}/v1/integrations/{integration}/use-cases"
        ))
        .bearer_auth(TOKEN)
        .json(
            &json!({"name": "Meter readings", "slug": "meter-readings", "type": "inbound",
                      "enabled": true, "configuration": meter_mapping()}),
        )
        .send()
        .await
        .expect("answer");
    assert!(created.status().is_success());
    integration
}

/// Every event of `accepted` (answered 200) is in `erp.inbound.events` exactly once.
async fn assert_once_in_topic(brokers: &str, accepted: &[usize]) {
    let records = read_topic_to_end(brokers, "erp.inbound.events").await;
    let mut copies: BTreeMap<String, usize> = BTreeMap::new();
    for (_, record) in &records {
        if let Some(id) = record["deduplication_id"].as_str() {
            *copies.entry(id.to_owned()).or_default() += 1;
        }
    }
    for n in accepted {
        let id = format!("outage-{n}");
        assert_eq!(copies.get(&id), Some(&1), "{id}");
    }
}

/// Posts one event; the status and whether `Retry-After` was set.
async fn post_one(client: &reqwest::Client, url: &str, integration: &str, n: usize) -> (u16, bool) {
    let body = json!({"integration_id": integration,
                      "events": [reading_event(n, &format!("outage-{n}"))]});
    match client
        .post(url)
        .bearer_auth(TOKEN)
        .json(&body)
        .timeout(Duration::from_secs(20))
        .send()
        .await
    {
        Ok(response) => (
            response.status().as_u16(),
            response.headers().contains_key("retry-after"),
        ),
        Err(error) => panic!("post {n} got no answer within 20 s: {error}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_answers_503_with_retry_after_while_the_broker_is_down_and_resumes() {
    let mut dir = tempfile::tempdir().expect("temp dir");
    dir.disable_cleanup(std::env::var_os("ERP_TOOLKIT_KEEP_TEST_DIR").is_some());
    let dir = dir.path();
    let brokers = free_address();
    let kafka_dir = dir.join("kafka");
    let broker_args = [
        "broker",
        "--data-dir",
        kafka_dir.to_str().expect("utf-8"),
        "--listen",
        &brokers,
    ];
    let mut broker = Role::spawn("broker", &broker_args, &dir.join("broker-1.log"), &[]);
    wait_tcp(&brokers, Duration::from_secs(30)).await;
    let ingest_address = free_address();
    let api_address = free_address();
    let role = |role: &str, listen: &str| {
        Role::spawn(
            role,
            &[
                role,
                "--brokers",
                &brokers,
                "--admin-token",
                TOKEN,
                "--listen",
                listen,
                "--produce-timeout-ms",
                "3000",
            ],
            &dir.join(format!("{role}.log")),
            &[],
        )
    };
    let mut ingest = role("ingest", &ingest_address);
    let api = role("api", &api_address);
    let (processor_address, dispatcher_address) = (free_address(), free_address());
    let processor_data = dir.join("processor");
    let mut processor = Role::spawn(
        "processor",
        &[
            "processor",
            "--brokers",
            &brokers,
            "--listen",
            &processor_address,
            "--data-dir",
            processor_data.to_str().expect("utf-8"),
        ],
        &dir.join("processor.log"),
        &[],
    );
    let mut dispatcher = Role::spawn(
        "dispatcher",
        &[
            "dispatcher",
            "--brokers",
            &brokers,
            "--listen",
            &dispatcher_address,
            "--allow-destination",
            "127.0.0.1/32",
        ],
        &dir.join("dispatcher.log"),
        &[],
    );
    let client = reqwest::Client::new();
    let ready_within = Duration::from_secs(60);
    ingest
        .wait_ready(&format!("http://{ingest_address}/readyz"), ready_within)
        .await;
    api.wait_ready(&format!("http://{api_address}/readyz"), ready_within)
        .await;
    processor
        .wait_ready(&format!("http://{processor_address}/readyz"), ready_within)
        .await;
    dispatcher
        .wait_ready(&format!("http://{dispatcher_address}/readyz"), ready_within)
        .await;
    let integration = meter_integration(&client, &api_address).await;
    let receiver = Receiver::start("127.0.0.1:0", None, false)
        .await
        .expect("receiver");
    let hook: Value = client
        .post(format!("http://{api_address}/v1/webhooks/configs"))
        .bearer_auth(TOKEN)
        .json(
            &json!({"name": "platform", "eventName": "event_InboundEventMapped",
                      "url": receiver.url()}),
        )
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("json");
    let secret = hook["signingSecret"].as_str().expect("secret").to_owned();
    let events = format!("http://{ingest_address}/v3/erp/updates/events");
    // The ingest's configuration view must know the integration first.
    let started = Instant::now();
    let mut n = 0;
    let mut accepted = Vec::new();
    loop {
        let (status, _) = post_one(&client, &events, &integration, n).await;
        if status == 200 {
            accepted.push(n);
            n += 1;
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "first post: {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The broker goes away.
    broker.kill();
    let down = Instant::now();
    let mut refused = 0;
    while down.elapsed() < OUTAGE {
        let (status, retry_after) = post_one(&client, &events, &integration, n).await;
        n += 1;
        assert_eq!(status, 503, "post {n} while the broker is down");
        assert!(retry_after, "503 without Retry-After");
        refused += 1;
    }
    assert!(refused > 0);
    // Readiness says why while the broker is gone.
    let readyz = format!("http://{ingest_address}/readyz");
    let unreachable = |status: u16, body: &Value| {
        status == 503
            && body["reasons"]["kafka"]
                .as_str()
                .is_some_and(|r| r.starts_with("kafka: broker unreachable for"))
    };
    let (status, body) = readyz_until(&client, &readyz, Duration::from_secs(20), unreachable).await;
    assert!(
        unreachable(status, &body),
        "/readyz during the outage: {status} {body}"
    );
    println!("ingest /readyz during the outage: {status} {body}");

    // Back on the same data and address: the running ingest resumes by itself.
    broker = Role::spawn("broker", &broker_args, &dir.join("broker-2.log"), &[]);
    wait_tcp(&brokers, Duration::from_secs(30)).await;
    let back = Instant::now();
    let mut resumed = 0;
    while resumed < 20 {
        let (status, retry_after) = post_one(&client, &events, &integration, n).await;
        match status {
            200 => {
                accepted.push(n);
                resumed += 1;
            }
            503 => assert!(retry_after, "503 without Retry-After"),
            other => panic!("unexpected {other}"),
        }
        n += 1;
        assert!(
            back.elapsed() < Duration::from_secs(90),
            "ingest did not resume within 90 s ({resumed} accepted)"
        );
    }
    assert!(
        broker.is_running(),
        "the broker died after the restart: {}",
        std::fs::read_to_string(dir.join("broker-2.log")).unwrap_or_default()
    );
    assert!(ingest.is_running(), "ingest died");

    // Delivered, each exactly once, by the processor and dispatcher that kept running.
    let started = Instant::now();
    let delivered = loop {
        let mut delivered: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for delivery in receiver.deliveries() {
            assert!(delivery.verify(&secret), "unsigned delivery");
            let body = delivery.json();
            if let Some(dedup) = body["deduplication_id"].as_str() {
                delivered
                    .entry(dedup.to_owned())
                    .or_default()
                    .push(delivery.header("webhook-id").unwrap_or_default().to_owned());
            }
        }
        if accepted
            .iter()
            .all(|n| delivered.contains_key(&format!("outage-{n}")))
        {
            break delivered;
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "{} of {} accepted events delivered",
            delivered.len(),
            accepted.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    for n in &accepted {
        let id = format!("outage-{n}");
        assert_eq!(
            delivered[&id].len(),
            1,
            "{id} delivered {:?}",
            delivered[&id]
        );
    }
    for (name, role) in [
        ("processor", &mut processor),
        ("dispatcher", &mut dispatcher),
    ] {
        assert!(role.is_running(), "{name} stopped: {}", role.log_text());
    }
    let (status, body) = readyz_until(&client, &readyz, Duration::from_secs(30), |status, _| {
        status == 200
    })
    .await;
    assert_eq!(status, 200, "/readyz after the broker is back: {body}");

    // Every event answered 200 is there exactly once.
    assert_once_in_topic(&brokers, &accepted).await;
}

/// A producer fenced by the broker fails for good; the ingest replaces it: the requests around
/// the fatal error are answered 503 with `Retry-After`, later ones 200 again without any restart,
/// and every event answered 200 is in `erp.inbound.events` exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fatal_producer_error_is_recovered_without_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dir = dir.path();
    let brokers = free_address();
    let kafka_dir = dir.join("kafka");
    let _broker = Role::spawn(
        "broker",
        &[
            "broker",
            "--data-dir",
            kafka_dir.to_str().expect("utf-8"),
            "--listen",
            &brokers,
        ],
        &dir.join("broker.log"),
        &[],
    );
    wait_tcp(&brokers, Duration::from_secs(30)).await;
    let (ingest_address, api_address) = (free_address(), free_address());
    let common = |role: &str, listen: &str| -> Vec<String> {
        [
            role,
            "--brokers",
            &brokers,
            "--admin-token",
            TOKEN,
            "--listen",
            listen,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
    };
    let ingest_args = common("ingest", &ingest_address);
    let mut ingest = Role::spawn(
        "ingest",
        &ingest_args.iter().map(String::as_str).collect::<Vec<_>>(),
        &dir.join("ingest.log"),
        &[("ERP_TOOLKIT_TEST_FATAL_PRODUCER_AFTER_MS", "8000")],
    );
    let api_args = common("api", &api_address);
    let api = Role::spawn(
        "api",
        &api_args.iter().map(String::as_str).collect::<Vec<_>>(),
        &dir.join("api.log"),
        &[],
    );
    let within = Duration::from_secs(60);
    ingest
        .wait_ready(&format!("http://{ingest_address}/readyz"), within)
        .await;
    api.wait_ready(&format!("http://{api_address}/readyz"), within)
        .await;
    let client = reqwest::Client::new();
    let integration = meter_integration(&client, &api_address).await;
    let events = format!("http://{ingest_address}/v3/erp/updates/events");
    let started = Instant::now();
    let (mut n, mut accepted, mut refused, mut after_refusal) = (0, Vec::new(), 0, 0);
    // Until the injected error has come and gone: 20 events accepted after the first refusal.
    while after_refusal < 20 {
        let (status, retry_after) = post_one(&client, &events, &integration, n).await;
        match status {
            200 => {
                accepted.push(n);
                if refused > 0 {
                    after_refusal += 1;
                }
            }
            503 => {
                assert!(retry_after, "503 without Retry-After");
                refused += 1;
            }
            // The configuration view has not seen the integration yet.
            404 if refused == 0 && accepted.is_empty() => {}
            other => panic!("post {n}: unexpected {other}"),
        }
        n += 1;
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no recovery: {refused} refused, {after_refusal} accepted after ({})",
            ingest.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ingest.is_running(), "ingest died");
    assert!(
        ingest.log_text().contains("was replaced"),
        "{}",
        ingest.log_text()
    );
    assert_once_in_topic(&brokers, &accepted).await;
}
