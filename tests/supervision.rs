//! Supervision with the real binary: a supervised task of `standalone` that fails (injected
//! with the debug-only `ERP_TOOLKIT_FAIL_TASK`) turns `/readyz` to 503 naming the task, and the
//! process then drains and exits non-zero with a log line naming the task.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_erp-toolkit");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Runs `standalone` with `task` failing 15 s after it started; returns the log.
async fn standalone_with_failing(task: &str, dir: &Path) -> String {
    let port = free_port();
    let log_path = dir.join("standalone.log");
    let out = std::fs::File::create(&log_path).expect("log file");
    let err = out.try_clone().expect("log file");
    let mut child = Command::new(BIN)
        .args([
            "standalone",
            "--data-dir",
            dir.join("data").to_str().expect("utf-8"),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--broker-listen",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .env("ERP_TOOLKIT_FAIL_TASK", task)
        .env("ERP_TOOLKIT_FAIL_TASK_AFTER_MS", "15000")
        .env("RUST_LOG", "info,tansu_broker=warn,tansu_storage=warn")
        .env("NO_COLOR", "1")
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .expect("spawns");
    let client = reqwest::Client::new();
    let readyz = format!("http://127.0.0.1:{port}/readyz");
    let started = Instant::now();
    let mut was_ready = false;
    let mut unready_body = None;
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!(
                "still running after 120 s: {}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
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
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
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
