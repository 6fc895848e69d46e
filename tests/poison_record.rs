//! The poison-record guard with a real process abort (issue 12): a standalone child process
//! (debug build) is told through `ERP_TOOLKIT_TEST_ABORT_ON` to abort while mapping any record
//! whose payload holds a marker — an abort, like the stack overflow it stands for, cannot be
//! caught. The test watches it die, restarts it on the same data directory, and checks that
//! after the configured number of crashes the record is dead-lettered as `POISON_RECORD` with
//! its source coordinates while every other event is mapped.
//!
//! Phase 1: the poison record alone in its batch: two aborts (`--poison-after-crashes 2`), set
//! aside at the third start. Phase 2: the poison record posted between two ordinary events in
//! one request: the first abort blames nobody (a batch), the records are then mapped one at a
//! time, the poison one aborts twice more and is set aside; its neighbours are mapped.

mod common;

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use common::process::{Role, free_address};
use common::{meter_mapping, read_topic, reading_event};

const MARKER: &str = "POISON-PILL-7f3a";
/// The roles' group session timeout (30 s) and a margin.
const SESSION_EXPIRY: Duration = Duration::from_secs(32);

/// A standalone child process on `dir`, killed when dropped; run `run` logs to its own file.
fn standalone(dir: &Path, listen: &str, broker: &str, run: usize) -> Role {
    Role::spawn(
        &format!("standalone run {run}"),
        &[
            "standalone",
            "--data-dir",
            &dir.join("data").to_string_lossy(),
            "--listen",
            listen,
            "--broker-listen",
            broker,
            "--partitions",
            "2",
            "--poison-after-crashes",
            "2",
        ],
        &dir.join(format!("standalone-{run}.log")),
        &[("ERP_TOOLKIT_TEST_ABORT_ON", MARKER)],
    )
}

struct Client {
    http: reqwest::Client,
    base: String,
    dir: PathBuf,
}

impl Client {
    async fn is_ready(&self) -> bool {
        self.http
            .get(format!("{}/readyz", self.base))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }

    async fn ready(&self) {
        let started = Instant::now();
        loop {
            let ready = self
                .http
                .get(format!("{}/readyz", self.base))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return;
            }
            assert!(started.elapsed() < Duration::from_secs(120), "not ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let token = std::fs::read_to_string(self.dir.join("data/admin-token")).expect("token");
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token.trim())
            .json(&body)
            .send()
            .await
            .expect("answered");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Posts events; returns their ids.
    async fn events(&self, integration_id: &str, events: Vec<Value>) -> Vec<String> {
        let (status, answer) = self
            .post(
                "/v3/erp/updates/events",
                json!({"integration_id": integration_id, "events": events}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        answer["results"]
            .as_array()
            .expect("results")
            .iter()
            .map(|r| r["event_id"].as_str().expect("id").to_owned())
            .collect()
    }
}

fn poison_event() -> Value {
    json!({"use_case_slug": "meter-readings", "timestamp": "2025-01-15T10:00:00Z", "format": "json",
           "payload": json!({"meterId": "M-X", "note": MARKER}).to_string()})
}

/// Waits until every id in `ids` is in a record of `topic`.
async fn wait_mapped(brokers: &str, ids: &[String]) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let records: Vec<Value> = read_topic(
            brokers,
            "erp.core.events",
            usize::MAX,
            Duration::from_secs(2),
        )
        .await
        .into_iter()
        .map(|(_, v)| v)
        .collect();
        let missing: Vec<&String> = ids
            .iter()
            .filter(|id| {
                !records
                    .iter()
                    .any(|r| r.to_string().contains(&format!("\"{id}\"")))
            })
            .collect();
        if missing.is_empty() {
            return records;
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "not mapped: {missing:?}"
        );
    }
}

/// The `POISON_RECORD` dead letters so far.
async fn poison_letters(brokers: &str) -> Vec<Value> {
    try_poison_letters(brokers).await.expect("the broker is up")
}

/// The `POISON_RECORD` dead letters so far; `None` when the broker went away meanwhile (the
/// process aborted: the reader's panic stays in its task).
async fn try_poison_letters(brokers: &str) -> Option<Vec<Value>> {
    let brokers = brokers.to_owned();
    let read = tokio::spawn(async move {
        read_topic(&brokers, "erp.dlq", usize::MAX, Duration::from_secs(3)).await
    });
    let records = read.await.ok()?;
    Some(
        records
            .into_iter()
            .map(|(_, v)| v)
            .filter(|letter| letter["code"] == "POISON_RECORD")
            .collect(),
    )
}

/// Restarts the process after each abort until `letters` POISON_RECORD dead letters exist;
/// returns the number of aborts.
async fn crashes_until_set_aside(
    process: &mut Role,
    run: &mut usize,
    client: &Client,
    listen: &str,
    brokers: &str,
    letters: usize,
) -> usize {
    let mut aborts = 0;
    let started = Instant::now();
    loop {
        if started.elapsed() > Duration::from_secs(300) {
            let log = std::fs::read_to_string(client.dir.join(format!("standalone-{run}.log")))
                .unwrap_or_default();
            let tail: String = log.lines().rev().take(60).collect::<Vec<_>>().join("\n");
            panic!("not set aside after {aborts} aborts; last log lines (newest first):\n{tail}");
        }
        if let Some(status) = process.try_wait() {
            assert_aborted(status);
            aborts += 1;
            assert!(aborts <= 3, "more aborts than the guard allows");
            // The embedded broker gives a group member that rejoins within the dead one's
            // session timeout no partitions (docs/embedded-broker.md, defect B): restart after
            // it, as a supervisor with a back-off does.
            tokio::time::sleep(SESSION_EXPIRY).await;
            *run += 1;
            *process = standalone(&client.dir, listen, brokers, *run);
            continue;
        }
        if !client.is_ready().await {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        if try_poison_letters(brokers)
            .await
            .is_some_and(|found| found.len() >= letters)
        {
            return aborts;
        }
    }
}

fn assert_aborted(status: ExitStatus) {
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(6), "expected SIGABRT, got {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_aborts_the_process_is_set_aside_after_two_crashes() {
    if !cfg!(debug_assertions) {
        eprintln!("the abort trigger exists in debug builds only: skipped");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let listen = free_address();
    let brokers = free_address();
    let client = Client {
        http: reqwest::Client::new(),
        base: format!("http://{listen}"),
        dir: dir.path().to_path_buf(),
    };
    let mut run = 0;
    let mut process = standalone(dir.path(), &listen, &brokers, run);
    client.ready().await;
    let (status, integration) = client
        .post("/v1/integrations", json!({"name": "SAP IS-U"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{integration}");
    let integration_id = integration["id"].as_str().expect("id").to_owned();
    let (status, use_case) = client
        .post(
            &format!("/v1/integrations/{integration_id}/use-cases"),
            json!({"name": "Meter readings", "slug": "meter-readings", "type": "inbound",
                   "enabled": true, "configuration": meter_mapping()}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{use_case}");

    let mut ordinary = client
        .events(
            &integration_id,
            (0..3).map(|n| reading_event(n, &format!("a{n}"))).collect(),
        )
        .await;
    wait_mapped(&brokers, &ordinary).await;

    // Phase 1: alone in its batch. Two aborts, then set aside.
    let poison_1 = client
        .events(&integration_id, vec![poison_event()])
        .await
        .remove(0);
    let aborts =
        crashes_until_set_aside(&mut process, &mut run, &client, &listen, &brokers, 1).await;
    assert_eq!(
        aborts, 2,
        "alone in its batch, it is set aside after two crashes"
    );
    let later = client
        .events(
            &integration_id,
            (3..6).map(|n| reading_event(n, &format!("a{n}"))).collect(),
        )
        .await;
    ordinary.extend(later);
    let core = wait_mapped(&brokers, &ordinary).await;
    assert!(
        !core.iter().any(|r| r.to_string().contains(&poison_1)),
        "the poison record was never mapped"
    );
    let letters = poison_letters(&brokers).await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["stage"], "processor");
    assert_eq!(letters[0]["source"]["topic"], "erp.inbound.events");
    assert!(letters[0]["source"]["offset"].is_i64(), "{}", letters[0]);
    assert!(
        letters[0]["value"]
            .as_str()
            .unwrap_or_default()
            .contains(&poison_1),
        "the dead letter keeps the record for a replay: {}",
        letters[0]
    );

    // Phase 2: between two ordinary events in one request (one batch): the batch crash blames
    // nobody, then two crashes of the record alone.
    let ids = client
        .events(
            &integration_id,
            vec![
                reading_event(10, "b10"),
                poison_event(),
                reading_event(11, "b11"),
            ],
        )
        .await;
    let aborts =
        crashes_until_set_aside(&mut process, &mut run, &client, &listen, &brokers, 2).await;
    // Three when the request was one batch (the usual case), two if the poll split it so that
    // the poison record came alone.
    assert!((2..=3).contains(&aborts), "{aborts} aborts");
    ordinary.push(ids[0].clone());
    ordinary.push(ids[2].clone());
    wait_mapped(&brokers, &ordinary).await;
    let letters = poison_letters(&brokers).await;
    assert_eq!(letters.len(), 2, "{letters:?}");
    assert!(
        letters[1]["value"]
            .as_str()
            .unwrap_or_default()
            .contains(&ids[1]),
        "{}",
        letters[1]
    );
    // Alive: a last event after it all.
    let last = client
        .events(&integration_id, vec![reading_event(20, "c20")])
        .await;
    wait_mapped(&brokers, &last).await;
    assert!(process.is_running(), "still running");
}
