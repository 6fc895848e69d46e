//! The broker goes away and comes back, with the roles as separate processes (`broker`,
//! `ingest`, `api`): while the broker is down every post is answered 503 `QUEUE_UNAVAILABLE`
//! with `Retry-After` within the produce timeout (no hang); after it is back on the same data,
//! the still-running ingest writes again, the broker survives it (the idempotent producer no
//! longer times records out and bumps its epoch, docs/embedded-broker.md defect A), and every
//! event answered 200 is in `erp.inbound.events` exactly once.

mod common;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::{meter_mapping, read_topic, reading_event};

const BIN: &str = env!("CARGO_BIN_EXE_erp-toolkit");
const TOKEN: &str = "erpt_broker_restart_token";
/// Longer than the 30 s message timeout the producers used to have: the old trigger.
const OUTAGE: Duration = Duration::from_secs(35);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[&str], log: &Path) -> Killed {
    let out = std::fs::File::create(log).expect("log");
    let err = out.try_clone().expect("log");
    Killed(
        Command::new(BIN)
            .args(args)
            .env("RUST_LOG", "info,tansu_broker=warn,tansu_storage=warn")
            .env("NO_COLOR", "1")
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("spawns"),
    )
}

async fn wait_ready(client: &reqwest::Client, url: &str) {
    let started = Instant::now();
    while !client
        .get(url)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{url} not ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_tcp(address: &str) {
    let started = Instant::now();
    while tokio::net::TcpStream::connect(address).await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{address} down"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
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
    let brokers = format!("127.0.0.1:{}", free_port());
    let kafka_dir = dir.join("kafka");
    let broker_args = [
        "broker",
        "--data-dir",
        kafka_dir.to_str().expect("utf-8"),
        "--listen",
        &brokers,
    ];
    let mut broker = spawn(&broker_args, &dir.join("broker-1.log"));
    wait_tcp(&brokers).await;
    let ingest_address = format!("127.0.0.1:{}", free_port());
    let api_address = format!("127.0.0.1:{}", free_port());
    let role = |role: &str, listen: &str| {
        spawn(
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
        )
    };
    let mut ingest = role("ingest", &ingest_address);
    let _api = role("api", &api_address);
    let client = reqwest::Client::new();
    wait_ready(&client, &format!("http://{ingest_address}/readyz")).await;
    wait_ready(&client, &format!("http://{api_address}/readyz")).await;
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
    let _ = broker.0.kill();
    let _ = broker.0.wait();
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

    // Back on the same data and address: the running ingest resumes by itself.
    broker = spawn(&broker_args, &dir.join("broker-2.log"));
    wait_tcp(&brokers).await;
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
        broker.0.try_wait().expect("status").is_none(),
        "the broker died after the restart: {}",
        std::fs::read_to_string(dir.join("broker-2.log")).unwrap_or_default()
    );
    assert!(
        ingest.0.try_wait().expect("status").is_none(),
        "ingest died"
    );

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
