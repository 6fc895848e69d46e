//! The ops CLI against a real standalone: `replay plan` prints the API's plan, `replay run
//! --watch` follows the replay to its end, `events search` and `events trace` list what the
//! API lists; exit codes say refused (1), unreachable (3).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use common::{Harness, meter_mapping, reading_event};

const BIN: &str = env!("CARGO_BIN_EXE_erp-toolkit");

/// Runs the CLI (blocking, on a thread of its own); exit code and stdout.
async fn cli(args: Vec<String>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        let out = Command::new(BIN).args(&args).output().expect("runs");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .expect("joins")
}

fn args(h: &Harness, token: &str, command: &str, rest: &[&str]) -> Vec<String> {
    let mut all = vec![
        command.to_owned(),
        "--api".into(),
        h.base.clone(),
        "--token".into(),
        token.to_owned(),
        "--output".into(),
        "json".into(),
    ];
    all.extend(rest.iter().map(|s| (*s).to_owned()));
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_plans_runs_and_searches_like_the_api() {
    let dir = tempfile::tempdir().expect("temp dir");
    let h = Harness::start(dir.path()).await;
    let token = h.standalone.admin_token.clone();
    let (_, integration) = h.post("/v1/integrations", json!({"name": "SAP"})).await;
    let integration = integration["id"].as_str().expect("id").to_owned();
    let (status, _) = h
        .post(
            &format!("/v1/integrations/{integration}/use-cases"),
            json!({"name": "Meter readings", "slug": "meter-readings", "type": "inbound",
                   "enabled": true, "configuration": meter_mapping()}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let events: Vec<Value> = (0..8).map(|n| reading_event(n, &format!("c{n}"))).collect();
    let (status, _) = h
        .post(
            "/v3/erp/updates/events",
            json!({"integration_id": integration, "correlation_id": "cli-trace", "events": events}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // The plan, from the API and from the CLI: the same ranges and counts.
    let window = ["--from", "2000-01-01T00:00:00Z"];
    let (status, api_plan) = h
        .post(
            &format!("/v1/integrations/{integration}/replays/plan"),
            json!({"from_date": window[1]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{api_plan}");
    let (code, out, err) = cli(args(
        &h,
        &token,
        "replay",
        &["--integration", &integration, "plan", window[0], window[1]],
    ))
    .await;
    assert_eq!(code, 0, "{err}");
    let cli_plan: Value = serde_json::from_str(&out).expect("json");
    for field in [
        "partitions",
        "records",
        "selected",
        "selected_counted",
        "topic",
    ] {
        assert_eq!(cli_plan[field], api_plan[field], "{field}");
    }
    assert_eq!(cli_plan["selected"], 8);

    // Run it and follow it to the end.
    let plan_id = cli_plan["plan_id"].as_str().expect("plan").to_owned();
    let (code, out, err) = cli(args(
        &h,
        &token,
        "replay",
        &[
            "--integration",
            &integration,
            "run",
            "--plan",
            &plan_id,
            "--watch",
        ],
    ))
    .await;
    assert_eq!(code, 0, "{err}");
    let done: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        (done["status"].clone(), done["done"].clone()),
        (json!("done"), json!(8))
    );

    // Search and trace: what the API lists.
    let started = Instant::now();
    let trace = loop {
        let (code, out, err) = cli(args(
            &h,
            &token,
            "events",
            &["--integration", &integration, "trace", "cli-trace"],
        ))
        .await;
        assert_eq!(code, 0, "{err}");
        let trace: Value = serde_json::from_str(&out).expect("json");
        if trace["span_count"].as_u64() >= Some(8) {
            break trace;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{trace}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (_, api_trace) = h
        .get(&format!(
            "/v2/integrations/{integration}/monitoring/traces/cli-trace"
        ))
        .await;
    assert_eq!(
        trace["spans"].as_array().map(Vec::len),
        api_trace["spans"].as_array().map(Vec::len)
    );
    let (code, out, err) = cli(args(
        &h,
        &token,
        "events",
        &[
            "--integration",
            &integration,
            "search",
            "--level",
            "success",
            "--limit",
            "3",
        ],
    ))
    .await;
    assert_eq!(code, 0, "{err}");
    let page: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(page["data"].as_array().map(Vec::len), Some(3));

    // Refused: a wrong token (1); unreachable: nothing listening (3).
    let (code, _, err) = cli(args(
        &h,
        "erpt_wrong",
        "events",
        &["--integration", &integration, "trace", "x"],
    ))
    .await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("401"), "{err}");
    let (code, _, err) = cli(vec![
        "replay".into(),
        "--api".into(),
        "http://127.0.0.1:1".into(),
        "--token".into(),
        token.clone(),
        "--integration".into(),
        integration.clone(),
        "watch".into(),
        "t".into(),
    ])
    .await;
    assert_eq!(code, 3, "{err}");
    // And a bad command line is clap's 2.
    let (code, _, _) = cli(vec!["replay".into(), "--token".into(), "x".into()]).await;
    assert_eq!(code, 2);
}
