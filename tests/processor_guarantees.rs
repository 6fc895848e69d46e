//! The processor's guarantees with the roles as separate OS processes on the embedded broker:
//! effectively-once output ids under SIGKILL, a rebalance to a second instance, a restore after
//! the state directory is lost, and per-key order.
//!
//! Phases over one stream (10 % of events repeat an earlier `deduplication_id`):
//! 1. 12,000 events while processor A is killed with SIGKILL three times and restarted;
//! 2. 4,000 events while processor B joins and A is then stopped;
//! 3. B's data directory is deleted, B restarts and restores from `erp.processor.state`; 4,000
//!    events, a quarter of them repeating dedup ids from phases 1 and 2.
//!
//! Then `erp.core.events` must hold every distinct dedup id under exactly one `_event_id` (a
//! record emitted twice repeats its id), none missing, no duplicate under a new id, and per key
//! the first emissions in the order the events were accepted.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::process::{Role, free_address, free_port, wait_tcp};
use common::{meter_mapping, read_topic, reading_event};

const TOKEN: &str = "erpt_test_token";
const GROUPS: usize = 8;
/// How long a processor may take to get partitions after it starts.
const ASSIGNED_WITHIN: Duration = Duration::from_secs(120);
/// A little more than the processors' `session.timeout.ms`.
const SESSION_EXPIRY: Duration = Duration::from_millis(7000);

struct Cluster {
    dir: PathBuf,
    brokers: String,
    /// The ingest service: events.
    ingest: String,
    /// The control plane: integrations and use cases.
    api: String,
    client: reqwest::Client,
    _broker: Role,
    _ingest: Role,
    _api: Role,
}

impl Cluster {
    async fn start(dir: &Path) -> Self {
        let broker_port = free_port();
        let brokers = format!("127.0.0.1:{broker_port}");
        let broker = Role::spawn(
            "broker",
            &[
                "broker",
                "--data-dir",
                &dir.join("kafka").to_string_lossy(),
                "--listen",
                &brokers,
            ],
            &dir.join("broker.log"),
            &[],
        );
        wait_tcp(&brokers, Duration::from_secs(30)).await;
        let ingest_address = free_address();
        let api_address = free_address();
        let http_role = |role: &str, listen: &str| {
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
                    "--partitions",
                    "4",
                ],
                &dir.join(format!("{role}.log")),
                &[],
            )
        };
        let ingest = http_role("ingest", &ingest_address);
        let api = http_role("api", &api_address);
        let client = reqwest::Client::new();
        for (role, address) in [(&ingest, &ingest_address), (&api, &api_address)] {
            role.wait_ready(&format!("http://{address}/readyz"), Duration::from_secs(60))
                .await;
        }
        Self {
            dir: dir.to_path_buf(),
            brokers,
            ingest: format!("http://{ingest_address}"),
            api: format!("http://{api_address}"),
            client,
            _broker: broker,
            _ingest: ingest,
            _api: api,
        }
    }

    fn processor(&self, name: &str) -> Role {
        Role::spawn(
            name,
            &[
                "processor",
                "--brokers",
                &self.brokers,
                "--data-dir",
                &self.dir.join(name).to_string_lossy(),
                "--listen",
                "127.0.0.1:0",
                "--kafka-option",
                "session.timeout.ms=6000",
                "--kafka-option",
                "heartbeat.interval.ms=500",
            ],
            &self.dir.join(format!(
                "{name}-{}.log",
                Instant::now().elapsed().as_nanos()
            )),
            &[],
        )
    }

    /// Posts to the service that serves `path`: events to ingest, the rest to the control plane.
    async fn post(&self, path: &str, body: Value) -> Value {
        let service = if path.contains("/erp/updates/") {
            &self.ingest
        } else {
            &self.api
        };
        let response = self
            .client
            .post(format!("{service}{path}"))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .expect("answer");
        let status = response.status();
        let body: Value = response.json().await.expect("json");
        assert!(status.is_success(), "{path}: {status} {body}");
        body
    }
}

/// Event `n` of the stream: every tenth repeats the event seven places earlier (same dedup id,
/// same payload, same group).
fn original_of(n: usize) -> usize {
    if n % 10 == 9 { n - 7 } else { n }
}

fn event(n: usize) -> Value {
    let original = original_of(n);
    let mut event = reading_event(original, &format!("reading-{original}"));
    event["group_id"] = json!(format!("g{}", original % GROUPS));
    event
}

async fn post_range(cluster: &Cluster, integration_id: &str, numbers: Vec<usize>) {
    for chunk in numbers.chunks(100) {
        let events: Vec<Value> = chunk.iter().map(|&n| event(n)).collect();
        let body = cluster
            .post(
                "/v3/erp/updates/events",
                json!({"integration_id": integration_id, "events": events}),
            )
            .await;
        let queued = body["results"]
            .as_array()
            .map_or(0, |r| r.iter().filter(|r| r["status"] == "success").count());
        assert_eq!(queued, chunk.len(), "{body}");
    }
}

/// Reads `erp.core.events` until `expected` distinct dedup ids are there and nothing new came
/// for two seconds.
async fn drain_core_events(brokers: &str, expected: usize) -> Vec<(String, Value)> {
    let started = Instant::now();
    let mut last = (0, Instant::now());
    loop {
        let records = read_topic(
            brokers,
            "erp.core.events",
            usize::MAX,
            Duration::from_secs(3),
        )
        .await;
        let distinct: BTreeSet<&str> = records
            .iter()
            .filter_map(|(_, e)| e["deduplication_id"].as_str())
            .collect();
        if distinct.len() >= expected
            && records.len() == last.0
            && last.1.elapsed() > Duration::from_secs(2)
        {
            return records;
        }
        if records.len() != last.0 {
            last = (records.len(), Instant::now());
        }
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "only {} of {expected} dedup ids after 240 s ({} records)",
            distinct.len(),
            records.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_rebalance_and_restore_keep_ids_stable_and_nothing_lost() {
    let mut dir = tempfile::tempdir().expect("temp dir");
    // The logs of every process stay behind when asked, for post-mortems.
    dir.disable_cleanup(std::env::var_os("ERP_TOOLKIT_KEEP_TEST_DIR").is_some());
    println!("test directory: {}", dir.path().display());
    let cluster = Cluster::start(dir.path()).await;
    let integration = cluster
        .post("/v1/integrations", json!({"name": "SAP"}))
        .await;
    let integration_id = integration["id"].as_str().expect("id").to_owned();
    cluster
        .post(
            &format!("/v1/integrations/{integration_id}/use-cases"),
            json!({"name": "Meter readings", "slug": "meter-readings", "type": "inbound", "enabled": true,
                   "configuration": meter_mapping()}),
        )
        .await;

    // Phase 1: SIGKILL processor A three times at random points while events stream in; each
    // replacement is given the time the broker needs to expire the dead member.
    let mut a = cluster.processor("processor-a");
    a.wait_log("partition assigned", ASSIGNED_WITHIN).await;
    let mut seed = std::process::id() as usize;
    for round in 0..4 {
        let range: Vec<usize> = (round * 3000..(round + 1) * 3000).collect();
        let poster = post_range(&cluster, &integration_id, range);
        if round < 3 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let delay = Duration::from_millis(300 + (seed >> 33) as u64 % 2500);
            let killer = async {
                tokio::time::sleep(delay).await;
                a.kill();
            };
            tokio::join!(poster, killer);
            // The broker drops a crashed member only when a group request arrives after its
            // session timeout; a replacement joining earlier can leave the dead member's
            // partitions idle until the next rebalance. Restart after the timeout, as a
            // supervisor with a back-off does.
            tokio::time::sleep(SESSION_EXPIRY).await;
            a = cluster.processor("processor-a");
            a.wait_log("partition assigned", ASSIGNED_WITHIN).await;
        } else {
            poster.await;
        }
    }

    // Phase 2: B joins mid-stream, then A stops; B takes every partition over.
    let b = cluster.processor("processor-b");
    post_range(&cluster, &integration_id, (12_000..14_000).collect()).await;
    b.wait_log("partition assigned", ASSIGNED_WITHIN).await;
    a.terminate().await;
    post_range(&cluster, &integration_id, (14_000..16_000).collect()).await;

    // Let B finish what is there, then lose its volume and restart it.
    let expected_so_far: BTreeSet<usize> = (0..16_000).map(original_of).collect();
    drain_core_events(&cluster.brokers, expected_so_far.len()).await;
    let mut b = b;
    b.kill();
    std::fs::remove_dir_all(dir.path().join("processor-b")).expect("state directory deleted");
    tokio::time::sleep(SESSION_EXPIRY).await;
    let b = cluster.processor("processor-b");
    b.wait_log("partition assigned", ASSIGNED_WITHIN).await;

    // Phase 3: new events mixed with repeats of dedup ids from before the loss.
    let mut phase3: Vec<usize> = (16_000..19_000).collect();
    phase3.extend((0..1000).map(|k| k * 16));
    post_range(&cluster, &integration_id, phase3.clone()).await;

    let expected: BTreeSet<usize> = (0..19_000).map(original_of).collect();
    let records = drain_core_events(&cluster.brokers, expected.len()).await;

    // One _event_id per dedup id; none missing; none extra.
    let mut ids: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (_, event) in &records {
        let dedup = event["deduplication_id"]
            .as_str()
            .expect("dedup id")
            .to_owned();
        ids.entry(dedup)
            .or_default()
            .insert(event["_event_id"].as_str().expect("id").to_owned());
    }
    let expected_ids: BTreeSet<String> = expected.iter().map(|n| format!("reading-{n}")).collect();
    let got_ids: BTreeSet<String> = ids.keys().cloned().collect();
    assert_eq!(got_ids, expected_ids, "dedup ids delivered");
    assert!(
        ids.values().all(|event_ids| event_ids.len() == 1),
        "a dedup id got more than one _event_id"
    );
    let distinct_event_ids: BTreeSet<&String> = ids.values().flatten().collect();
    assert_eq!(distinct_event_ids.len(), expected.len());
    let summary = format!(
        "core events: {} records, {} distinct (re-emitted after crashes and moves: {})\n",
        records.len(),
        expected.len(),
        records.len() - expected.len()
    );
    print!("{summary}");

    // The processors did resume from stored positions and B did restore its lost state.
    let logs: String = std::fs::read_dir(dir.path())
        .expect("test directory")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("processor-"))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .collect();
    let resumed = logs.matches("starting at the stored position").count();
    let restored = logs
        .matches("restored processor state from the changelog")
        .count();
    let starts = format!(
        "partition starts at a stored position: {resumed}; changelog restores: {restored}\n"
    );
    print!("{starts}");
    let summary = format!("{summary}{starts}");
    // CI prints this after the (captured) test run.
    let _ = std::fs::write(
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("processor-guarantees.txt"),
        &summary,
    );
    assert!(
        resumed > 0 && restored > 0,
        "no resume or no restore happened"
    );

    // Per key, first emissions follow the order in which the events were accepted.
    let inbound = read_topic(
        &cluster.brokers,
        "erp.inbound.events",
        20_000,
        Duration::from_secs(60),
    )
    .await;
    let position: HashMap<String, usize> = inbound
        .iter()
        .enumerate()
        .filter_map(|(i, (_, e))| e["event_id"].as_str().map(|id| (id.to_owned(), i)))
        .collect();
    let mut seen = BTreeSet::new();
    let mut last_per_key: HashMap<String, usize> = HashMap::new();
    for (key, event) in &records {
        let inbound_id = event["inbound_event_id"]
            .as_str()
            .expect("inbound id")
            .to_owned();
        if !seen.insert(inbound_id.clone()) {
            continue;
        }
        let at = position[&inbound_id];
        if let Some(previous) = last_per_key.insert(key.clone(), at) {
            assert!(
                previous < at,
                "key {key}: event accepted at {at} emitted after one accepted at {previous}"
            );
        }
    }
}
