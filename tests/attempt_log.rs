//! End-to-end tests of the webhook attempt log, replay and recovery: a standalone on the embedded
//! broker, real loopback receivers, the API over HTTP. Waits are bounded by generous limits;
//! nothing here asserts how long something took.

mod common;

use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use common::Harness;
use erp_toolkit::StandaloneOptions;
use erp_toolkit::receiver::Receiver;

/// Generous: the whole suite runs these beside multi-process tests on few cores.
const LIMIT: Duration = Duration::from_secs(180);

/// Retry tiers of one second each, so a delivery's way through them takes seconds.
fn fast_options(dir: &Path) -> StandaloneOptions {
    let mut options = common::options(dir);
    let d = &mut options.dispatcher;
    d.retry_schedule = vec![Duration::from_secs(1); 3];
    d.request_timeout = Duration::from_secs(2);
    d.tier_hold = Duration::from_millis(300);
    options
}

/// Creates an endpoint at `url`; returns its id and signing secret.
async fn webhook(h: &Harness, url: &str, extra: Value) -> (String, String) {
    let mut body = json!({"name": "erp", "eventName": "TestMessage", "url": url});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    let (status, answer) = h.post("/v1/webhooks/configs", body).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    (
        answer["id"].as_str().expect("id").to_owned(),
        answer["signingSecret"].as_str().expect("secret").to_owned(),
    )
}

/// Writes an outbound message addressed to `webhook_id` to `erp.core.events`.
async fn send_addressed(h: &Harness, webhook_id: &str, event_id: &str) {
    let producer = erp_runtime::KafkaSettings::new(h.standalone.broker_address.to_string())
        .producer("test")
        .expect("producer");
    let event = json!({
        "_event_id": event_id, "_event_name": "TestMessage", "_event_time": "2025-03-01T08:00:00.000Z",
        "_org_id": "default", "_delivery": {"type": "webhook", "webhook_id": webhook_id},
        "payload": {"event": event_id}
    });
    erp_runtime::kafka::send(
        &producer,
        "erp.core.events",
        event_id,
        event.to_string().as_bytes(),
    )
    .await
    .expect("produced");
}

/// Lists an endpoint's deliveries with `query`.
async fn list(h: &Harness, webhook_id: &str, query: Value) -> Value {
    let (status, page) = h
        .post(&format!("/v2/webhooks/configs/{webhook_id}/events"), query)
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page
}

/// Polls the list until `done` holds for the page of `query`; returns the last page.
async fn list_until(
    h: &Harness,
    webhook_id: &str,
    query: Value,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let started = std::time::Instant::now();
    loop {
        let page = list(h, webhook_id, query.clone()).await;
        let data = page["data"].as_array().cloned().unwrap_or_default();
        if done(&data) || started.elapsed() > LIMIT {
            return data;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn ids(data: &[Value]) -> Vec<String> {
    let mut ids: Vec<String> = data
        .iter()
        .filter_map(|e| e["event_id"].as_str().map(str::to_owned))
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn attempt_log_lists_filters_pages_and_replays() {
    let dir = tempfile::tempdir().expect("temp dir");
    let h = Harness::start_with(fast_options(dir.path())).await;
    let receiver = Receiver::start("127.0.0.1:0", None, false)
        .await
        .expect("receiver");
    let (hook, secret) = webhook(&h, &receiver.url(), json!({})).await;

    // e1 fails twice, then succeeds from the retry tiers.
    receiver.fail_first(2, 503);
    send_addressed(&h, &hook, "e1").await;
    assert!(
        receiver.wait_for(3, LIMIT).await,
        "e1 delivered on its third attempt"
    );
    for id in ["e2", "e3", "e4"] {
        send_addressed(&h, &hook, id).await;
    }
    // Wait for the log, not a request count: a redelivery (at-least-once) also counts as a
    // request, and e4 must not meet the 400 meant for e5.
    let delivered = list_until(&h, &hook, json!({"status": "succeeded"}), |d| d.len() == 4).await;
    assert_eq!(ids(&delivered), ["e1", "e2", "e3", "e4"], "{delivered:?}");
    // e5 meets a terminal answer.
    receiver.respond_with(400);
    send_addressed(&h, &hook, "e5").await;
    assert!(receiver.wait_for(7, LIMIT).await, "e5 attempted");
    // The endpoint keeps refusing until the log shows e5 failed: on a loaded machine a
    // redelivery of e5 (at-least-once) must meet the same answer, or its row would end succeeded.
    let data = list_until(&h, &hook, json!({}), |d| {
        d.len() == 5
            && d.iter().all(|e| e["status"] != "in_progress")
            && d.iter()
                .any(|e| e["event_id"] == "e5" && e["status"] == "failed")
    })
    .await;
    receiver.respond_with(200);
    assert_eq!(ids(&data), ["e1", "e2", "e3", "e4", "e5"], "{data:?}");
    let e1 = data.iter().find(|e| e["event_id"] == "e1").expect("e1");
    assert_eq!(e1["status"], "succeeded");
    assert_eq!(e1["http_response"]["status_code"], 204);
    assert_eq!(e1["retry_attempt"], 2);
    assert_eq!(e1["webhook_config_id"], hook.as_str());
    assert_eq!(
        serde_json::from_str::<Value>(e1["payload"].as_str().expect("payload text"))
            .expect("payload JSON"),
        json!({"event": "e1"})
    );

    // One delivery with its attempts.
    let (status, one) = h
        .get(&format!("/v1/webhooks/configs/{hook}/events/e1"))
        .await;
    assert_eq!(status, StatusCode::OK, "{one}");
    let attempts = one["attempts"].as_array().expect("attempts");
    let codes: Vec<_> = attempts.iter().map(|a| a["status_code"].clone()).collect();
    assert_eq!(codes, [json!(503), json!(503), json!(204)], "{one}");
    let statuses: Vec<_> = attempts.iter().map(|a| a["status"].clone()).collect();
    assert_eq!(
        statuses,
        [
            json!("in_progress"),
            json!("in_progress"),
            json!("succeeded")
        ]
    );

    // Filters.
    let failed = list_until(&h, &hook, json!({"status": "failed"}), |d| d.len() == 1).await;
    assert_eq!(ids(&failed), ["e5"], "{data:?}");
    assert_eq!(failed[0]["http_response"]["status_code"], 400);
    let by_id = list(&h, &hook, json!({"event_id": "e3"})).await;
    assert_eq!(ids(by_id["data"].as_array().expect("data")), ["e3"]);
    let none = list(
        &h,
        &hook,
        json!({"timestamp": {"to": "2000-01-01T00:00:00Z"}}),
    )
    .await;
    assert_eq!(none["data"], json!([]));

    // Paging with the cursor: 2 + 2 + 1, no duplicates.
    let mut seen = Vec::new();
    let mut cursor = Value::Null;
    for _ in 0..5 {
        let page = list(&h, &hook, json!({"limit": 2, "cursor": cursor})).await;
        seen.extend(page["data"].as_array().cloned().unwrap_or_default());
        if page["has_more"] != true {
            assert_eq!(page["next_cursor"], Value::Null);
            break;
        }
        cursor = page["next_cursor"].clone();
    }
    assert_eq!(seen.len(), 5);
    assert_eq!(ids(&seen), ["e1", "e2", "e3", "e4", "e5"]);

    // The deprecated v1 listing: the same rows, its status filter and an opaque cursor.
    let (status, v1) = h.get(&format!("/v1/webhooks/configs/{hook}/events")).await;
    assert_eq!(status, StatusCode::OK, "{v1}");
    assert_eq!(ids(v1["data"].as_array().expect("data")), ids(&seen));
    assert!(v1.get("cursor").is_none(), "one page: {v1}");
    let (status, v1) = h
        .get(&format!("/v1/webhooks/configs/{hook}/events?status=failed"))
        .await;
    assert_eq!(status, StatusCode::OK, "{v1}");
    assert_eq!(ids(v1["data"].as_array().expect("data")), ["e5"]);
    let (status, _) = h
        .get(&format!(
            "/v1/webhooks/configs/{hook}/events?cursor=not-ours"
        ))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = h.get("/v1/webhooks/configs/no-such-hook/events").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Events an endpoint can subscribe to, with this endpoint's.
    let (status, events) = h.get("/v1/webhooks/configured-events").await;
    assert_eq!(status, StatusCode::OK, "{events}");
    let names: Vec<&str> = events
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|e| e["eventName"].as_str())
        .collect();
    assert!(names.contains(&"event_InboundEventMapped"), "{events}");
    assert!(names.contains(&"TestMessage"), "{events}");

    // Single replay: the same webhook-id, a valid signature, one more attempt.
    let before = receiver.count();
    let (status, answer) = h
        .post(
            &format!("/v1/webhooks/configs/{hook}/events/e5/replay"),
            json!({"reapply_transform": false}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{answer}");
    assert!(receiver.wait_for(before + 1, LIMIT).await, "replay sent");
    let replayed = receiver
        .deliveries()
        .into_iter()
        .nth(before)
        .expect("replayed delivery");
    assert_eq!(replayed.webhook_id, "msg_e5");
    assert!(replayed.verify(&secret), "replay signature verifies");
    assert_eq!(replayed.json(), json!({"event": "e5"}));
    let data = list_until(&h, &hook, json!({"event_id": "e5"}), |d| {
        d.first().is_some_and(|e| e["status"] == "succeeded")
    })
    .await;
    assert_eq!(data[0]["status"], "succeeded", "{data:?}");
    let (_, one) = h
        .get(&format!("/v1/webhooks/configs/{hook}/events/e5"))
        .await;
    assert_eq!(one["attempts"].as_array().map(Vec::len), Some(2), "{one}");

    // Batch replay: 202, unknown ids left out, both re-sent.
    let before = receiver.count();
    let (status, answer) = h
        .post(
            &format!("/v1/webhooks/configs/{hook}/events/replay-batch"),
            json!({"eventIds": ["e2", "e3", "nope"], "reapply_transform": true}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["replayed_event_ids"], json!(["e2", "e3"]));
    assert!(receiver.wait_for(before + 2, LIMIT).await, "batch sent");
    let again: Vec<String> = receiver
        .deliveries()
        .into_iter()
        .skip(before)
        .map(|d| d.webhook_id)
        .collect();
    assert!(again.contains(&"msg_e2".to_owned()) && again.contains(&"msg_e3".to_owned()));

    // Unknown endpoint or delivery: 404; bad input: 400.
    let (status, _) = h.get("/v1/webhooks/configs/no-such-hook/events/e1").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = h
        .get(&format!("/v1/webhooks/configs/{hook}/events/nope"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = h
        .post(
            &format!("/v2/webhooks/configs/{hook}/events"),
            json!({"limit": 26}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    receiver.stop().await;
    h.standalone.stop().await.expect("stops");
}

/// Polls a recovery's progress until `done` holds for it; returns the last answer.
async fn progress_until(
    h: &Harness,
    hook: &str,
    task: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let started = std::time::Instant::now();
    loop {
        let (status, progress) = h
            .get(&format!("/v1/webhooks/configs/{hook}/recover/{task}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{progress}");
        if done(&progress) || started.elapsed() > LIMIT {
            return progress;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recover_resends_the_failed_deliveries_of_a_window() {
    const IDS: [&str; 8] = ["r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8"];
    let dir = tempfile::tempdir().expect("temp dir");
    // One delivery per second, so the recovery is still running when the API stops.
    let slow = || {
        let mut options = fast_options(dir.path());
        options.attempt_log.recover_rate = 1;
        options
    };
    let h = Harness::start_with(slow()).await;
    let receiver = Receiver::start("127.0.0.1:0", None, false)
        .await
        .expect("receiver");
    let (hook, secret) = webhook(
        &h,
        &receiver.url(),
        json!({"retryPolicy": {"enabled": false, "maxAttempts": 1}}),
    )
    .await;
    let since = erp_schemas::timestamp::now_rfc3339();
    receiver.respond_with(503);
    for id in IDS {
        send_addressed(&h, &hook, id).await;
    }
    let failed = list_until(&h, &hook, json!({"status": "failed"}), |d| {
        d.len() == IDS.len()
    })
    .await;
    assert_eq!(ids(&failed), IDS);

    receiver.respond_with(200);
    let (status, answer) = h
        .post(
            &format!("/v1/webhooks/configs/{hook}/recover"),
            json!({"since": since}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let task = answer["task_id"].as_str().expect("task id").to_owned();

    // Stop the whole standalone mid-way; the recovery resumes after the restart.
    let midway = progress_until(&h, &hook, &task, |p| p["sent"].as_u64() >= Some(1)).await;
    assert_eq!(midway["status"], "running", "{midway}");
    h.standalone.stop().await.expect("stops");
    let h = Harness::start_with(slow()).await;
    let progress = progress_until(&h, &hook, &task, |p| p["status"] == "done").await;
    assert_eq!(
        progress,
        json!({"task_id": task, "status": "done", "total": IDS.len(), "sent": IDS.len(), "failed": 0})
    );
    // Every failed delivery succeeds, re-sent with its webhook-id and a valid signature (one
    // written just before the stop may have been re-sent twice).
    let healed = list_until(&h, &hook, json!({"status": "succeeded"}), |d| {
        d.len() == IDS.len()
    })
    .await;
    let all = list(&h, &hook, json!({})).await;
    assert_eq!(ids(&healed), IDS, "{all}");
    let resent: Vec<_> = receiver
        .deliveries()
        .into_iter()
        .filter(|d| d.verify(&secret))
        .map(|d| d.webhook_id)
        .collect();
    for id in IDS {
        assert!(
            resent.contains(&format!("msg_{id}")),
            "{id} re-sent: {resent:?}"
        );
    }

    let (status, _) = h
        .get(&format!("/v1/webhooks/configs/{hook}/recover/unknown"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    receiver.stop().await;
    h.standalone.stop().await.expect("stops");
}

/// (status, status_code) of a synchronous trigger's answer. On a machine so loaded that the
/// first attempt took longer than the API waits, the answer has only the event id: then the
/// attempt log tells the same.
async fn trigger_outcome(h: &Harness, hook: &str, answer: &Value) -> (Value, Value) {
    if answer.get("status").is_some() {
        return (answer["status"].clone(), answer["status_code"].clone());
    }
    let event_id = answer["event_id"].as_str().expect("event id");
    let data = list_until(h, hook, json!({"event_id": event_id}), |d| {
        d.first().is_some_and(|e| e["status"] != "in_progress")
    })
    .await;
    let row = data.first().expect("logged");
    let code = row["http_response"]["status_code"].to_string();
    (row["status"].clone(), json!(code))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trigger_goes_through_the_dispatcher_and_sync_answers_the_first_attempt() {
    let dir = tempfile::tempdir().expect("temp dir");
    let h = Harness::start_with(fast_options(dir.path())).await;
    let receiver = Receiver::start("127.0.0.1:0", None, false)
        .await
        .expect("receiver");
    let (hook, secret) = webhook(&h, &receiver.url(), json!({})).await;
    let payload = json!({"metadata": {"organization_id": "default", "action": "test"}, "x": 1});

    // Sync: the outcome of the first attempt, signed like any delivery.
    let (status, answer) = h
        .post(
            &format!("/v1/webhooks/configs/{hook}/trigger?sync=true"),
            payload.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        trigger_outcome(&h, &hook, &answer).await,
        (json!("succeeded"), json!("204")),
        "{answer}"
    );
    let event_id = answer["event_id"].as_str().expect("event id").to_owned();
    let delivered = receiver
        .deliveries()
        .into_iter()
        .find(|d| d.webhook_id == format!("msg_{event_id}"))
        .expect("delivered");
    assert!(delivered.verify(&secret));
    assert_eq!(delivered.json(), payload);

    // A refusing endpoint: sync answers failed with its status; async answers the event id.
    receiver.respond_with(400);
    let (status, answer) = h
        .post(
            &format!("/v1/webhooks/configs/{hook}/trigger?sync=true"),
            payload.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        trigger_outcome(&h, &hook, &answer).await,
        (json!("failed"), json!("400")),
        "{answer}"
    );
    receiver.respond_with(200);
    let (status, answer) = h
        .post(&format!("/v1/webhooks/configs/{hook}/trigger"), payload)
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let event_id = answer["event_id"].as_str().expect("event id").to_owned();
    let logged = list_until(&h, &hook, json!({"event_id": event_id}), |d| {
        d.first().is_some_and(|e| e["status"] == "succeeded")
    })
    .await;
    assert_eq!(logged.len(), 1, "{logged:?}");

    // Bad input and unknown endpoints.
    let (status, _) = h
        .post(
            &format!("/v1/webhooks/configs/{hook}/trigger"),
            json!({"x": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "metadata is required");
    let (status, _) = h
        .post(
            &format!("/v1/webhooks/configs/{hook}/trigger?sync=maybe"),
            json!({"metadata": {"organization_id": "default"}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = h
        .post(
            "/v1/webhooks/configs/no-such-hook/trigger",
            json!({"metadata": {"organization_id": "default"}}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    receiver.stop().await;
    h.standalone.stop().await.expect("stops");
}
