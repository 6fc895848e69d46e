//! The consumer watchdog against the embedded broker: a group whose topic has records waiting,
//! no committed progress and a consumer that holds no partition is called stalled, with a
//! readiness reason naming the group. (The decision's other cases are unit tests in
//! `runtime/src/watchdog.rs`.)

mod common;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use common::{Harness, meter_mapping, reading_event};
use erp_runtime::watchdog::{Timing, watch};
use erp_runtime::{KafkaSettings, Readiness};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_without_partitions_while_records_wait_is_reported_stalled() {
    let dir = tempfile::tempdir().expect("temp dir");
    let h = Harness::start(dir.path()).await;
    let (integration_id, _) = h
        .configure(meter_mapping(), "http://127.0.0.1:9/unused")
        .await;
    let (status, body) = h
        .post(
            "/v3/erp/updates/events",
            json!({"integration_id": integration_id, "events": [reading_event(1, "watchdog-1")]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A group nobody consumes for: the record is waiting and nothing progresses.
    let kafka = KafkaSettings::new(h.standalone.broker_address.to_string());
    let topic = kafka.topics.inbound_events();
    let readiness = Readiness::new();
    let group = "erp-toolkit-watchdog-test";
    let watched = watch(
        kafka,
        group.to_owned(),
        vec![topic],
        || false,
        readiness.flag(format!("watchdog: {group}")),
        Timing {
            limit: Duration::from_secs(1),
            every: Duration::from_millis(200),
        },
        CancellationToken::new(),
    );
    let reason = tokio::time::timeout(Duration::from_secs(60), watched)
        .await
        .expect("the watchdog decides within 60 s")
        .expect("a stall");
    assert!(reason.contains(group), "{reason}");
    assert!(!readiness.is_ready());
    assert_eq!(
        readiness
            .reasons()
            .get(&format!("watchdog: {group}"))
            .map(String::as_str),
        Some(reason.as_str())
    );
    println!("{reason}");
}
