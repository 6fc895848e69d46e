//! A crash-looping `standalone` (the real binary): 2,000 events posted to one integration in
//! batches of 50 while the process is killed with SIGKILL and restarted at once, three times a
//! few seconds apart — well inside the consumer groups' session timeout. After the last restart
//! the pipeline must make progress on its own: every event reaches `erp.core.events` exactly
//! once (one `_event_id` per `deduplication_id`, none missing).
//!
//! Before the fix the processor's group stayed `Formed` with an empty assignment after such a
//! restart (docs/embedded-broker.md, defect B) and nothing was processed for minutes.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::process::{Role, free_port};
use common::{meter_mapping, read_topic, reading_event};

const TOKEN: &str = "erpt_crash_loop_token";
const EVENTS: usize = 2000;
const BATCH: usize = 50;

/// One `standalone` on fixed ports and a data directory that outlives its runs.
struct Node {
    dir: PathBuf,
    http: u16,
    broker: u16,
    runs: usize,
    child: Option<Role>,
}

impl Node {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http)
    }

    /// Starts a run and waits until it answers ready.
    async fn start(&mut self) {
        self.runs += 1;
        let log = self.dir.join(format!("standalone-{}.log", self.runs));
        let role = Role::spawn(
            &format!("standalone run {}", self.runs),
            &[
                "standalone",
                "--data-dir",
                self.dir.join("data").to_str().expect("utf-8"),
                "--listen",
                &format!("127.0.0.1:{}", self.http),
                "--broker-listen",
                &format!("127.0.0.1:{}", self.broker),
            ],
            &log,
            &[],
        );
        role.wait_ready(&self.url("/readyz"), Duration::from_secs(120))
            .await;
        self.child = Some(role);
    }

    fn kill(&mut self) {
        if let Some(mut role) = self.child.take() {
            role.kill();
        }
    }
}

async fn post(client: &reqwest::Client, url: &str, body: &Value) -> Result<Value, String> {
    let response = client
        .post(url)
        .bearer_auth(TOKEN)
        .json(body)
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body: Value = response.json().await.map_err(|e| e.to_string())?;
    if status.is_success() {
        Ok(body)
    } else {
        Err(format!("{status} {body}"))
    }
}

/// Posts every batch until it is answered 200 with every event queued: a batch whose answer was
/// lost in a kill is posted again, and its deduplication ids make that harmless.
async fn post_all(http: u16, integration_id: String) {
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{http}/v3/erp/updates/events");
    for first in (0..EVENTS).step_by(BATCH) {
        let events: Vec<Value> = (first..first + BATCH)
            .map(|n| reading_event(n, &format!("crash-{n}")))
            .collect();
        let body = json!({"integration_id": integration_id, "events": events});
        let started = Instant::now();
        loop {
            match post(&client, &url, &body).await {
                Ok(answer)
                    if answer["results"]
                        .as_array()
                        .is_some_and(|r| r.iter().all(|r| r["status"] == "success")) =>
                {
                    break;
                }
                _ => {
                    assert!(
                        started.elapsed() < Duration::from_secs(180),
                        "batch {first} not accepted within 180 s"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}

fn write_token(data: &Path) {
    std::fs::create_dir_all(data).expect("data dir");
    std::fs::write(data.join("admin-token"), TOKEN).expect("token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_to_back_sigkills_do_not_stall_the_pipeline() {
    let mut dir = tempfile::tempdir().expect("temp dir");
    dir.disable_cleanup(std::env::var_os("ERP_TOOLKIT_KEEP_TEST_DIR").is_some());
    println!("test directory: {}", dir.path().display());
    write_token(&dir.path().join("data"));
    let mut node = Node {
        dir: dir.path().to_path_buf(),
        http: free_port(),
        broker: free_port(),
        runs: 0,
        child: None,
    };
    node.start().await;
    let client = reqwest::Client::new();
    let integration = post(
        &client,
        &node.url("/v1/integrations"),
        &json!({"name": "SAP"}),
    )
    .await
    .expect("integration");
    let integration_id = integration["id"].as_str().expect("id").to_owned();
    post(
        &client,
        &node.url(&format!("/v1/integrations/{integration_id}/use-cases")),
        &json!({"name": "Meter readings", "slug": "meter-readings", "type": "inbound",
                "enabled": true, "configuration": meter_mapping()}),
    )
    .await
    .expect("use case");

    let poster = tokio::spawn(post_all(node.http, integration_id));
    for _ in 0..3 {
        // Inside the session timeout (30 s) of every group: the dead members are still there.
        tokio::time::sleep(Duration::from_secs(3)).await;
        node.kill();
        node.start().await;
    }
    poster.await.expect("poster");
    let restarted = Instant::now();

    // Progress after the last restart, without any further restart: everything arrives.
    let brokers = format!("127.0.0.1:{}", node.broker);
    let records = loop {
        let records = read_topic(
            &brokers,
            "erp.core.events",
            usize::MAX,
            Duration::from_secs(3),
        )
        .await;
        let distinct: BTreeSet<&str> = records
            .iter()
            .filter_map(|(_, e)| e["deduplication_id"].as_str())
            .collect();
        if distinct.len() >= EVENTS {
            break records;
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(150),
            "stalled: {} of {EVENTS} events processed 150 s after the last restart",
            distinct.len()
        );
    };
    println!(
        "all {EVENTS} processed {:?} after the last restart",
        restarted.elapsed()
    );
    let mut ids: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (_, event) in &records {
        let Some(dedup) = event["deduplication_id"].as_str() else {
            continue;
        };
        ids.entry(dedup.to_owned())
            .or_default()
            .insert(event["_event_id"].as_str().expect("id").to_owned());
    }
    let expected: BTreeSet<String> = (0..EVENTS).map(|n| format!("crash-{n}")).collect();
    let seen: BTreeSet<String> = ids.keys().cloned().collect();
    assert_eq!(seen, expected, "missing or unexpected events");
    let doubled: Vec<_> = ids.iter().filter(|(_, e)| e.len() > 1).collect();
    assert!(doubled.is_empty(), "duplicated under a new id: {doubled:?}");
}
