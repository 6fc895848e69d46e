//! End-to-end tests of per-key ordering (`"ordering": "per_key"`): a failing head blocks only its
//! own key, and held events survive a restart in order with their webhook-ids. On the embedded
//! broker with real loopback receivers; waits are bounded and nothing asserts a duration.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use common::{DispatcherProcess, Harness, read_topic, records_until};
use erp_toolkit::StandaloneOptions;
use erp_toolkit::receiver::{Delivery, Receiver};

const LIMIT: Duration = Duration::from_secs(90);

/// Five retries over 47 s: a head that keeps failing stays held (rather than being
/// dead-lettered) for as long as a test needs, and a retry is never far off once it may pass.
fn options(dir: &Path) -> StandaloneOptions {
    let mut options = common::options(dir);
    let d = &mut options.dispatcher;
    d.retry_schedule = [2, 5, 10, 10, 20].map(Duration::from_secs).to_vec();
    d.request_timeout = Duration::from_secs(5);
    d.shutdown_grace = Duration::ZERO;
    options
}

/// Creates an endpoint with per-key ordering; returns its id and signing secret.
async fn ordered_webhook(h: &Harness, url: &str) -> (String, String) {
    let body = json!({
        "name": "ordered", "eventName": "event_TestMessage", "url": url,
        "ordering": "per_key", "retryPolicy": {"enabled": true, "maxAttempts": 5}
    });
    let (status, answer) = h.post("/v1/webhooks/configs", body).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(answer["ordering"], "per_key", "{answer}");
    (
        answer["id"].as_str().expect("id").to_owned(),
        answer["signingSecret"].as_str().expect("secret").to_owned(),
    )
}

/// Writes outbound messages addressed to `webhook_id` to `erp.core.events`, each with its
/// record key (the ordering key), in this order.
async fn send_keyed(h: &Harness, webhook_id: &str, events: &[(&str, &str)]) {
    let brokers = h.standalone.broker_address.to_string();
    let producer = erp_runtime::KafkaSettings::new(brokers)
        .producer("test")
        .expect("producer");
    for (event_id, key) in events {
        let event = json!({
            "_event_id": event_id, "_event_name": "TestMessage", "_org_id": "default",
            "_delivery": {"type": "webhook", "webhook_id": webhook_id},
            "payload": {"event": event_id}
        });
        erp_runtime::kafka::send(
            &producer,
            "erp.core.events",
            key,
            event.to_string().as_bytes(),
        )
        .await
        .expect("produced");
    }
}

/// The endpoint's attempt spans once `done` holds for them.
async fn spans_until(h: &Harness, webhook_id: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    records_until(
        h,
        "erp.monitoring",
        |s| s["detail"]["stage"] == "dispatcher" && s["detail"]["webhook_config_id"] == webhook_id,
        done,
    )
    .await
}

fn count(spans: &[Value], event_id: &str, level: &str) -> usize {
    spans
        .iter()
        .filter(|s| s["detail"]["core_event_id"] == event_id && s["level"] == level)
        .count()
}

/// Which event each request carried, in arrival order.
fn events_of(requests: &[Delivery]) -> Vec<String> {
    requests
        .iter()
        .map(|r| r.json()["event"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Asserts that every request for an event of `order` came after every request for the events
/// before it.
fn assert_in_order(requests: &[Delivery], order: &[&str]) {
    let events = events_of(requests);
    for pair in order.windows(2) {
        let last_earlier = events.iter().rposition(|e| e == pair[0]);
        let first_later = events.iter().position(|e| e == pair[1]);
        assert!(
            matches!((last_earlier, first_later), (Some(a), Some(b)) if a < b),
            "{} must be done before {} is sent: {events:?}",
            pair[0],
            pair[1]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_head_blocks_only_its_own_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let h = Harness::start_with(options(dir.path())).await;
    let receiver = Receiver::start("127.0.0.1:0", None, false)
        .await
        .expect("receiver");

    // An unknown mode is refused on save, naming the field.
    let (status, answer) = h
        .post(
            "/v1/webhooks/configs",
            json!({"name": "bad", "eventName": "event_TestMessage", "url": receiver.url(), "ordering": "fifo"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .is_some_and(|m| m.contains("ordering")),
        "{answer}"
    );

    let (webhook_id, secret) = ordered_webhook(&h, &receiver.url()).await;
    receiver.fail_matching(Some(("ordered-a-1", 503)));
    receiver.retry_after(Some("1"));
    send_keyed(
        &h,
        &webhook_id,
        &[
            ("ordered-a-1", "key-a"),
            ("ordered-a-2", "key-a"),
            ("ordered-b-1", "key-b"),
            ("ordered-a-3", "key-a"),
            ("ordered-b-2", "key-b"),
        ],
    )
    .await;

    // Key B is delivered while key A's head fails again and again.
    let spans = spans_until(&h, &webhook_id, |s| {
        count(s, "ordered-b-1", "success") == 1
            && count(s, "ordered-b-2", "success") == 1
            && count(s, "ordered-a-1", "warning") >= 2
    })
    .await;
    assert_eq!(count(&spans, "ordered-b-2", "success"), 1, "{spans:#?}");
    assert!(count(&spans, "ordered-a-1", "warning") >= 2, "{spans:#?}");
    let held: Vec<String> = events_of(&receiver.deliveries())
        .into_iter()
        .filter(|e| e == "ordered-a-2" || e == "ordered-a-3")
        .collect();
    assert!(held.is_empty(), "key A's followers were sent: {held:?}");
    let warning = spans
        .iter()
        .find(|s| s["detail"]["core_event_id"] == "ordered-a-1" && s["level"] == "warning")
        .expect("a retry span");
    assert_eq!(warning["detail"]["outcome"], "retry_scheduled");
    assert!(warning["detail"]["next_attempt_at"].is_string());

    // Once the head goes through, the rest of key A follows in order.
    receiver.fail_matching(None);
    let spans = spans_until(&h, &webhook_id, |s| {
        ["ordered-a-1", "ordered-a-2", "ordered-a-3"]
            .iter()
            .all(|e| count(s, e, "success") == 1)
    })
    .await;
    assert_eq!(count(&spans, "ordered-a-3", "success"), 1, "{spans:#?}");
    let requests = receiver.deliveries();
    assert_in_order(&requests, &["ordered-a-1", "ordered-a-2", "ordered-a-3"]);
    assert_in_order(&requests, &["ordered-b-1", "ordered-b-2"]);
    assert!(
        requests.iter().all(|r| r.verify(&secret)
            && r.webhook_id == format!("msg_{}", r.json()["event"].as_str().unwrap_or_default())),
        "{requests:?}"
    );
    // Nothing went through the shared retry tiers.
    let tasks = records_until(&h, "erp.core.retry.1", |_| true, |_| true).await;
    assert!(tasks.is_empty(), "{tasks:?}");
    h.standalone.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_lane_survives_a_restart_in_order_with_the_same_webhook_ids() {
    let dir = tempfile::tempdir().expect("temp dir");
    let receiver = Receiver::start("127.0.0.1:0", None, false)
        .await
        .expect("receiver");
    receiver.fail_matching(Some(("restart-a-1", 503)));
    let first = Harness::start_with(options(dir.path())).await;
    let (webhook_id, secret) = ordered_webhook(&first, &receiver.url()).await;
    send_keyed(
        &first,
        &webhook_id,
        &[
            ("restart-a-1", "key-r"),
            ("restart-a-2", "key-r"),
            ("restart-a-3", "key-r"),
        ],
    )
    .await;
    // The head failed and its followers are held on the lanes topic.
    spans_until(&first, &webhook_id, |s| {
        count(s, "restart-a-1", "warning") >= 1
    })
    .await;
    let held = records_until(
        &first,
        "erp.dispatch.lanes",
        |r| r["event"].is_string(),
        |r| {
            ["restart-a-2", "restart-a-3"].iter().all(|id| {
                r.iter()
                    .any(|r| r["event"].as_str().is_some_and(|e| e.contains(id)))
            })
        },
    )
    .await;
    assert!(held.len() >= 2, "{held:?}");
    assert!(
        !events_of(&receiver.deliveries())
            .iter()
            .any(|e| e != "restart-a-1"),
        "followers were sent before the head"
    );
    first.standalone.stop().await.expect("stop");

    receiver.fail_matching(None);
    let second = Harness::start_with(options(dir.path())).await;
    let spans = spans_until(&second, &webhook_id, |s| {
        ["restart-a-1", "restart-a-2", "restart-a-3"]
            .iter()
            .all(|e| count(s, e, "success") >= 1)
    })
    .await;
    assert!(count(&spans, "restart-a-3", "success") >= 1, "{spans:#?}");
    let requests = receiver.deliveries();
    assert_in_order(&requests, &["restart-a-1", "restart-a-2", "restart-a-3"]);
    assert!(
        requests.iter().all(|r| r.verify(&secret)
            && r.webhook_id == format!("msg_{}", r.json()["event"].as_str().unwrap_or_default())),
        "{requests:?}"
    );
    second.standalone.stop().await.expect("clean stop");
}

/// Waits until the receiver got a request for every event in `events`.
async fn received(receiver: &Receiver, events: &[&str]) -> bool {
    let started = Instant::now();
    loop {
        let got = events_of(&receiver.deliveries());
        if events.iter().all(|e| got.iter().any(|g| g == e)) {
            return true;
        }
        if started.elapsed() > LIMIT {
            return false;
        }
        receiver
            .wait_for(got.len() + 1, Duration::from_secs(1))
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatcher_killed_with_sigkill_keeps_held_lanes_in_order() {
    use erp_runtime::topics::{ensure_topics, standard_topics};
    use erp_schemas::config::{ConfigChange, ConfigRecord};

    common::init_logs();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut broker = erp_toolkit::broker::EmbeddedBroker::start(
        &dir.path().join("kafka"),
        "127.0.0.1:0".parse().expect("address"),
    )
    .await
    .expect("broker");
    let brokers = broker.address().to_string();
    let mut kafka = erp_runtime::KafkaSettings::new(brokers.clone());
    kafka.partitions = 3;
    ensure_topics(&kafka, &standard_topics(&kafka))
        .await
        .expect("topics");
    let producer = kafka.producer("test").expect("producer");

    let receiver = Receiver::start("127.0.0.1:0", None, false)
        .await
        .expect("receiver");
    receiver.fail_matching(Some(("kill-a-1", 503)));
    let secret = erp_toolkit::signing::new_secret();
    let webhook = serde_json::from_value(json!({
        "id": "wh-ordered", "name": "ordered", "eventName": "event_TestMessage",
        "url": receiver.url(), "ordering": "per_key",
        "retryPolicy": {"enabled": true, "maxAttempts": 5},
        "creationTime": "2025-01-01T00:00:00.000Z", "updatedTime": "2025-01-01T00:00:00.000Z"
    }))
    .expect("endpoint");
    let record = ConfigRecord {
        org_id: "default".into(),
        at: "2025-01-01T00:00:00.000Z".into(),
        actor: None,
        base_revision: None,
        change: ConfigChange::WebhookUpserted {
            webhook,
            signing_secret: secret.clone(),
            previous_secrets: Vec::new(),
        },
    };
    erp_runtime::kafka::send(
        &producer,
        "erp.config",
        "wh-ordered",
        &serde_json::to_vec(&record).expect("json"),
    )
    .await
    .expect("configured");
    for (id, key) in [
        ("kill-a-1", "key-k"),
        ("kill-a-2", "key-k"),
        ("kill-b-1", "key-b"),
        ("kill-a-3", "key-k"),
    ] {
        let event = json!({"_event_id": id, "_event_name": "TestMessage", "_org_id": "default",
            "_delivery": {"type": "webhook", "webhook_id": "wh-ordered"}, "payload": {"event": id}});
        erp_runtime::kafka::send(
            &producer,
            "erp.core.events",
            key,
            event.to_string().as_bytes(),
        )
        .await
        .expect("produced");
    }

    let mut first = DispatcherProcess::spawn(
        &brokers,
        &dir.path().join("first.log"),
        &["--retry-schedule", "2s,5s,10s,10s,20s"],
    );
    assert!(
        received(&receiver, &["kill-a-1", "kill-b-1"]).await,
        "no requests; log: {}",
        std::fs::read_to_string(dir.path().join("first.log")).unwrap_or_default()
    );
    // Key A's followers are held on the lanes topic when the process dies.
    let started = Instant::now();
    loop {
        let held: Vec<String> = read_topic(
            &brokers,
            "erp.dispatch.lanes",
            usize::MAX,
            Duration::from_secs(2),
        )
        .await
        .into_iter()
        .filter_map(|(_, v)| v["event"].as_str().map(str::to_owned))
        .collect();
        if ["kill-a-2", "kill-a-3"]
            .iter()
            .all(|id| held.iter().any(|e| e.contains(id)))
        {
            break;
        }
        assert!(started.elapsed() < LIMIT, "not held: {held:?}");
    }
    first.kill();
    assert!(
        !events_of(&receiver.deliveries())
            .iter()
            .any(|e| e.starts_with("kill-a-") && e != "kill-a-1"),
        "followers were sent before the head"
    );

    receiver.fail_matching(None);
    // A supervisor restarts after the dead member's session expired (6 s), as the other crash
    // tests do: the embedded broker drops a crashed member only then.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let second = DispatcherProcess::spawn(
        &brokers,
        &dir.path().join("second.log"),
        &["--retry-schedule", "2s,5s,10s,10s,20s"],
    );
    assert!(
        received(&receiver, &["kill-a-1", "kill-a-2", "kill-a-3"]).await,
        "held events were not delivered after the restart; log: {}",
        std::fs::read_to_string(dir.path().join("second.log")).unwrap_or_default()
    );
    let requests = receiver.deliveries();
    assert_in_order(&requests, &["kill-a-1", "kill-a-2", "kill-a-3"]);
    assert!(
        requests.iter().all(|r| r.verify(&secret)
            && r.webhook_id == format!("msg_{}", r.json()["event"].as_str().unwrap_or_default())),
        "{requests:?}"
    );
    drop(second);
    broker.stop().await;
}
