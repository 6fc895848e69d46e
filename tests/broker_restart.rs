//! The broker goes away and comes back, with the roles as separate processes (`broker`,
//! `ingest`, `api`): while the broker is down every post is answered 503 `QUEUE_UNAVAILABLE`
//! with `Retry-After` within the produce timeout (no hang); after it is back on the same data,
//! the still-running ingest writes again, the broker survives it (the idempotent producer no
//! longer times records out and bumps its epoch, docs/embedded-broker.md defect A), and every
//! event answered 200 is in `erp.inbound.events` exactly once.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::process::{Role, free_address, wait_tcp};
use common::{meter_mapping, read_topic, reading_event};

const TOKEN: &str = "erpt_broker_restart_token";
/// Longer than the 30 s message timeout the producers used to have: the old trigger.
const OUTAGE: Duration = Duration::from_secs(35);

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
    let client = reqwest::Client::new();
    let ready_within = Duration::from_secs(60);
    ingest
        .wait_ready(&format!("http://{ingest_address}/readyz"), ready_within)
        .await;
    api.wait_ready(&format!("http://{api_address}/readyz"), ready_within)
        .await;
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
    let (status, body) = readyz_until(&client, &readyz, Duration::from_secs(30), |status, _| {
        status == 200
    })
    .await;
    assert_eq!(status, 200, "/readyz after the broker is back: {body}");

    // Every event answered 200 is there exactly once.
    let records = read_topic(
        &brokers,
        "erp.inbound.events",
        usize::MAX,
        Duration::from_secs(5),
    )
    .await;
    let mut copies: BTreeMap<String, usize> = BTreeMap::new();
    for (_, record) in &records {
        if let Some(id) = record["deduplication_id"].as_str() {
            *copies.entry(id.to_owned()).or_default() += 1;
        }
    }
    for n in &accepted {
        let id = format!("outage-{n}");
        assert_eq!(copies.get(&id), Some(&1), "{id}: {copies:?}");
    }
}
