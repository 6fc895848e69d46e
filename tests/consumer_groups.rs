//! Consumer groups through the API and the ops CLI, with every role as a separate process: the
//! lag per partition after a delivered stream; a reset plan (dry run) and its apply, refused
//! while the group's role runs; a dispatcher reset to the earliest offset of one partition
//! re-delivers exactly that partition's events; a processor reset to the latest offset skips
//! exactly the events that waited while it was stopped (its position lives in its changelog,
//! not in the group commit); the CLI's plan equals the API's; an organisation token without
//! the deployment admin is refused.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::meter_mapping;
use common::process::{BIN, Role, free_address, wait_tcp};
use common::reading_event;
use erp_toolkit::receiver::Receiver;

const TOKEN: &str = "erpt_consumer_groups_token";
const PROCESSOR: &str = "erp-toolkit-processor";
const DISPATCHER: &str = "erp-toolkit-dispatcher";

struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    async fn call(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
            .timeout(Duration::from_secs(60));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("answer");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(TOKEN, reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(TOKEN, reqwest::Method::POST, path, Some(body))
            .await
    }

    /// The report of `group`, asked until `wanted` holds (at most 90 s); the last one.
    async fn group_until(&self, group: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        let started = Instant::now();
        loop {
            let (status, report) = self.get(&format!("/v1/ops/consumer-groups/{group}")).await;
            assert_eq!(status, 200, "{report}");
            if wanted(&report) || started.elapsed() > Duration::from_secs(90) {
                return report;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

/// Lag of `topic`'s partitions in a group report.
fn lag_of(report: &Value, topic: &str) -> i64 {
    report["partitions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["topic"] == topic)
        .map(|p| p["lag_records"].as_i64().expect("lag"))
        .sum()
}

/// Deliveries per deduplication id.
fn delivered(receiver: &Receiver) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for delivery in receiver.deliveries() {
        if let Some(dedup) = delivery.json()["deduplication_id"].as_str() {
            out.entry(dedup.to_owned())
                .or_default()
                .push(delivery.header("webhook-id").unwrap_or_default().to_owned());
        }
    }
    out
}

fn spawn_role(role: &str, brokers: &str, listen: &str, dir: &std::path::Path, n: usize) -> Role {
    let data = dir.join(role);
    let mut args = vec![role, "--brokers", brokers, "--listen", listen];
    match role {
        "processor" => args.extend(["--data-dir", data.to_str().expect("utf-8")]),
        "dispatcher" => args.extend(["--allow-destination", "127.0.0.1/32"]),
        _ => args.extend(["--admin-token", TOKEN]),
    }
    Role::spawn(role, &args, &dir.join(format!("{role}-{n}.log")), &[])
}

/// `erp-toolkit groups …` against the API; exit code and stdout.
fn cli(api: &str, args: &[&str]) -> (i32, String) {
    let output = Command::new(BIN)
        .arg("groups")
        .args(["--api", &format!("http://{api}"), "--output", "json"])
        .args(args)
        .env("ERP_TOOLKIT_TOKEN", TOKEN)
        .output()
        .expect("runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_lag_and_resets_move_exactly_the_planned_partitions() {
    let mut dir = tempfile::tempdir().expect("temp dir");
    dir.disable_cleanup(std::env::var_os("ERP_TOOLKIT_KEEP_TEST_DIR").is_some());
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
    let (processor_address, dispatcher_address) = (free_address(), free_address());
    let ingest = spawn_role("ingest", &brokers, &ingest_address, dir, 1);
    let api_role = spawn_role("api", &brokers, &api_address, dir, 1);
    let mut processor = spawn_role("processor", &brokers, &processor_address, dir, 1);
    let mut dispatcher = spawn_role("dispatcher", &brokers, &dispatcher_address, dir, 1);
    let within = Duration::from_secs(60);
    for (role, address) in [
        (&ingest, &ingest_address),
        (&api_role, &api_address),
        (&processor, &processor_address),
        (&dispatcher, &dispatcher_address),
    ] {
        role.wait_ready(&format!("http://{address}/readyz"), within)
            .await;
    }
    let api = Api {
        client: reqwest::Client::new(),
        base: format!("http://{api_address}"),
    };
    let (_, integration) = api.post("/v1/integrations", json!({"name": "SAP"})).await;
    let integration = integration["id"].as_str().expect("id").to_owned();
    let (status, _) = api
        .post(
            &format!("/v1/integrations/{integration}/use-cases"),
            json!({"name": "Meter readings", "slug": "meter-readings", "type": "inbound",
                   "enabled": true, "configuration": meter_mapping()}),
        )
        .await;
    assert_eq!(status, 201);
    let receiver = Receiver::start("127.0.0.1:0", None, false)
        .await
        .expect("receiver");
    let (status, _) = api
        .post(
            "/v1/webhooks/configs",
            json!({"name": "platform", "eventName": "event_InboundEventMapped", "url": receiver.url()}),
        )
        .await;
    assert!(status < 300);
    let events = format!("http://{ingest_address}/v3/erp/updates/events");
    let post = |n: usize| {
        let body =
            json!({"integration_id": integration, "events": [reading_event(n, &format!("g-{n}"))]});
        let (client, events) = (api.client.clone(), events.clone());
        async move {
            let started = Instant::now();
            loop {
                let status = client
                    .post(&events)
                    .bearer_auth(TOKEN)
                    .json(&body)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0);
                // The ingest's configuration view learns the use case shortly after it is saved.
                if status == 200 {
                    return;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "post {n}: {status}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    for n in 0..12 {
        post(n).await;
    }
    assert!(
        receiver.wait_for(12, Duration::from_secs(120)).await,
        "12 deliveries"
    );

    // Lag: the dispatcher's and the processor's commits reach the log end.
    let core = "erp.core.events";
    let report = api.group_until(DISPATCHER, |r| r["lag_records"] == 0).await;
    assert_eq!(report["lag_records"], 0, "{report}");
    assert_eq!(report["lag_seconds"], 0.0, "{report}");
    let with_records: Vec<&Value> = report["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .filter(|p| p["log_end_offset"].as_i64() > p["log_start_offset"].as_i64())
        .collect();
    assert!(!with_records.is_empty());
    for p in &with_records {
        assert_eq!(p["committed_offset"], p["log_end_offset"], "{p}");
    }
    let processor_report = api
        .group_until(PROCESSOR, |r| lag_of(r, "erp.inbound.events") == 0)
        .await;
    assert_eq!(
        lag_of(&processor_report, "erp.inbound.events"),
        0,
        "{processor_report}"
    );
    let (status, list) = api.get("/v1/ops/consumer-groups").await;
    assert_eq!(status, 200);
    let names: Vec<&str> = list["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .filter_map(|g| g["group_id"].as_str())
        .collect();
    assert!(
        names.contains(&PROCESSOR) && names.contains(&"erp-toolkit-dispatcher.retry.5"),
        "{list}"
    );

    // Only the deployment admin; precise errors.
    let (status, org_token) = api
        .post(
            "/v1/access-tokens",
            json!({"name": "ops", "roles": ["integration:manage"]}),
        )
        .await;
    assert_eq!(status, 201, "{org_token}");
    let org_token = org_token["token"].as_str().expect("token").to_owned();
    let (status, _) = api
        .call(
            &org_token,
            reqwest::Method::GET,
            "/v1/ops/consumer-groups",
            None,
        )
        .await;
    assert_eq!(status, 403);
    let (status, body) = api.get("/v1/ops/consumer-groups/someone-else").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("GROUP_NOT_FOUND"))
    );
    let (status, body) = api
        .post(
            &format!("/v1/ops/consumer-groups/{DISPATCHER}/reset/plan"),
            json!({"to": "yesterday"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = api
        .post(
            &format!("/v1/ops/consumer-groups/{DISPATCHER}/reset/plan"),
            json!({"to": "offset"}),
        )
        .await;
    assert_eq!(status, 400);

    // The dispatcher, one partition back to its start.
    let chosen = with_records[0]["partition"].as_i64().expect("partition");
    let (status, plan) = api
        .post(
            &format!("/v1/ops/consumer-groups/{DISPATCHER}/reset/plan"),
            json!({"to": "earliest", "partitions": [chosen]}),
        )
        .await;
    assert_eq!(status, 200, "{plan}");
    let moves = plan["partitions"].as_array().expect("moves");
    assert_eq!(moves.len(), 1, "{plan}");
    assert_eq!(moves[0]["topic"], core);
    let reread = plan["records_to_reread"].as_i64().expect("count");
    assert_eq!(
        reread,
        with_records[0]["log_end_offset"].as_i64().expect("end")
            - with_records[0]["log_start_offset"].as_i64().expect("start")
    );
    let plan_id = plan["plan_id"].as_str().expect("plan id").to_owned();
    let reset = format!("/v1/ops/consumer-groups/{DISPATCHER}/reset");
    // While the dispatcher runs: refused (the embedded broker cannot describe groups).
    let (status, body) = api.post(&reset, json!({"plan_id": plan_id})).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        matches!(
            body["code"].as_str(),
            Some("GROUP_ACTIVE" | "GROUP_STATE_UNKNOWN")
        ),
        "{body}"
    );
    dispatcher.terminate().await;
    let before = delivered(&receiver);
    let (status, applied) = api
        .post(&reset, json!({"plan_id": plan_id, "assume_stopped": true}))
        .await;
    assert_eq!(status, 200, "{applied}");
    assert_eq!(
        applied["partitions"][0]["committed_offset"],
        moves[0]["target_offset"]
    );
    // A plan is applied once.
    let (status, body) = api
        .post(&reset, json!({"plan_id": plan_id, "assume_stopped": true}))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("PLAN_NOT_FOUND"))
    );
    let report = api.group_until(DISPATCHER, |_| true).await;
    assert_eq!(report["lag_records"].as_i64(), Some(reread), "{report}");
    dispatcher = spawn_role("dispatcher", &brokers, &dispatcher_address, dir, 2);
    dispatcher
        .wait_ready(&format!("http://{dispatcher_address}/readyz"), within)
        .await;
    assert!(
        receiver
            .wait_for(12 + reread as usize, Duration::from_secs(120))
            .await,
        "the reset partition is delivered again"
    );
    let report = api.group_until(DISPATCHER, |r| r["lag_records"] == 0).await;
    assert_eq!(report["lag_records"], 0, "{report}");
    let after = delivered(&receiver);
    assert_eq!(
        receiver.count(),
        12 + reread as usize,
        "exactly the partition's events again"
    );
    let again: Vec<&String> = after.keys().filter(|k| after[*k].len() == 2).collect();
    assert_eq!(again.len() as i64, reread, "{after:?}");
    for key in again {
        // The same event: the same webhook-id, so a receiver deduplicates it.
        assert_eq!(after[key][0], after[key][1]);
        assert_eq!(before[key].len(), 1);
    }

    // The processor: stopped, five events wait, a reset to the latest skips exactly them.
    processor.terminate().await;
    for n in 12..17 {
        post(n).await;
    }
    let inbound = "erp.inbound.events";
    let report = api
        .group_until(PROCESSOR, |r| lag_of(r, inbound) == 5)
        .await;
    assert_eq!(lag_of(&report, inbound), 5, "{report}");
    let body = json!({"to": "latest", "topics": [inbound]});
    let (status, api_plan) = api
        .post(
            &format!("/v1/ops/consumer-groups/{PROCESSOR}/reset/plan"),
            body,
        )
        .await;
    assert_eq!(status, 200, "{api_plan}");
    assert_eq!(api_plan["records_to_skip"], 5);
    let (code, text) = cli(
        &api_address,
        &[
            "plan-reset",
            PROCESSOR,
            "--to",
            "latest",
            "--topic",
            inbound,
        ],
    );
    assert_eq!(code, 0, "{text}");
    let cli_plan: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(
        cli_plan["partitions"], api_plan["partitions"],
        "the CLI's plan is the API's"
    );
    let cli_plan_id = cli_plan["plan_id"].as_str().expect("plan id");
    let (code, text) = cli(&api_address, &["reset", PROCESSOR, "--plan", cli_plan_id]);
    assert_eq!(code, 1, "refused without --assume-stopped: {text}");
    let (code, text) = cli(
        &api_address,
        &[
            "reset",
            PROCESSOR,
            "--plan",
            cli_plan_id,
            "--assume-stopped",
        ],
    );
    assert_eq!(code, 0, "{text}");
    let report = api.group_until(PROCESSOR, |_| true).await;
    assert_eq!(lag_of(&report, inbound), 0, "{report}");
    processor = spawn_role("processor", &brokers, &processor_address, dir, 2);
    processor
        .wait_ready(&format!("http://{processor_address}/readyz"), within)
        .await;
    post(17).await;
    let started = Instant::now();
    while !delivered(&receiver).contains_key("g-17") {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "g-17 not delivered"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Everything the processor had to do is done and delivered before skipped events are
    // looked for: its lag first, then the dispatcher's.
    let report = api
        .group_until(PROCESSOR, |r| lag_of(r, inbound) == 0)
        .await;
    assert_eq!(lag_of(&report, inbound), 0, "{report}");
    let report = api.group_until(DISPATCHER, |r| r["lag_records"] == 0).await;
    assert_eq!(report["lag_records"], 0, "{report}");
    let after = delivered(&receiver);
    for n in 12..17 {
        assert!(
            !after.contains_key(&format!("g-{n}")),
            "g-{n} was skipped by the reset"
        );
    }
    assert!(processor.is_running() && dispatcher.is_running());
}
