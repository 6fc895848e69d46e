//! Supervision with the real binary: a supervised task of `standalone` that fails (injected
//! with the debug-only `ERP_TOOLKIT_FAIL_TASK`) turns `/readyz` to 503 naming the task, and the
//! process then drains and exits non-zero with a log line naming the task.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::process::{Role, free_address, free_port};

/// Runs `standalone` with `task` failing 15 s after it started; returns the log.
async fn standalone_with_failing(task: &str, dir: &Path) -> String {
    let port = free_port();
    let mut child = Role::spawn(
        "standalone",
        &[
            "standalone",
            "--data-dir",
            dir.join("data").to_str().expect("utf-8"),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--broker-listen",
            &free_address(),
        ],
        &dir.join("standalone.log"),
        &[
            ("ERP_TOOLKIT_FAIL_TASK", task),
            ("ERP_TOOLKIT_FAIL_TASK_AFTER_MS", "15000"),
        ],
    );
    let client = reqwest::Client::new();
    let readyz = format!("http://127.0.0.1:{port}/readyz");
    let started = Instant::now();
    let mut was_ready = false;
    let mut unready_body = None;
    let status = loop {
        if let Some(status) = child.try_wait() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(120) {
            panic!("still running after 120 s: {}", child.log_text());
        }
        if let Ok(response) = client.get(&readyz).send().await {
            let code = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            match code {
                200 => was_ready = true,
                503 if was_ready && body.contains("task: ") => unready_body = Some(body),
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let log = child.log_text();
    assert!(was_ready, "never ready: {log}");
    let body = unready_body.unwrap_or_else(|| panic!("/readyz never said which task: {log}"));
    assert!(body.contains(&format!("task: {task}")), "{body}");
    assert!(!status.success(), "exited {status}: {log}");
    log
}

#[tokio::test]
async fn a_failing_processor_makes_standalone_unready_and_exit_non_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = standalone_with_failing("processor", dir.path()).await;
    assert!(
        log.contains("stopped because task `processor` panicked"),
        "{log}"
    );
}

#[tokio::test]
async fn a_failing_background_task_makes_standalone_unready_and_exit_non_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = standalone_with_failing("configuration view", dir.path()).await;
    assert!(
        log.contains("stopped because task `configuration view` failed"),
        "{log}"
    );
}
