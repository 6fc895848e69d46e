//! End-to-end tests of webhook delivery: retry tiers on Kafka, per-endpoint isolation, terminal
//! answers and crash redelivery, on the embedded broker with real loopback receivers. Waits are
//! bounded by generous limits; nothing here asserts how long something took.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use common::{DispatcherProcess, Harness, meter_mapping, reading_event, records_until};
use erp_toolkit::StandaloneOptions;
use erp_toolkit::receiver::Receiver;

const LIMIT: Duration = Duration::from_secs(60);

/// Short tiers (1 s, 2 s, 3 s), a 1 s request timeout and a quickly tripping breaker, so a
/// delivery's whole way through the tiers takes seconds.
fn fast_options(dir: &Path) -> StandaloneOptions {
    let mut options = common::options(dir);
    let d = &mut options.dispatcher;
    d.retry_schedule = vec![
        Duration::from_secs(1),
        Duration::from_secs(2),
        Duration::from_secs(3),
    ];
    d.request_timeout = Duration::from_secs(1);
    d.endpoint_concurrency = 4;
    d.endpoint_queue_wait = Duration::from_millis(500);
    d.breaker_threshold = 3;
    d.breaker_cooldown = Duration::from_secs(1);
    d.tier_hold = Duration::from_millis(500);
    options
}

/// Creates an endpoint; returns its id and signing secret.
async fn webhook(h: &Harness, name: &str, url: &str, extra: Value) -> (String, String) {
    let mut body = json!({"name": name, "eventName": "event_InboundEventMapped", "url": url});
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

/// Writes an outbound message addressed to `webhook_id` straight to `erp.core.events`.
async fn send_addressed(h: &Harness, webhook_id: &str, event_id: &str) {
    let brokers = h.standalone.broker_address.to_string();
    let producer = erp_runtime::KafkaSettings::new(brokers)
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

/// The dispatcher's attempt spans for one endpoint, in attempt order.
async fn attempt_spans(h: &Harness, webhook_id: &str, want: usize) -> Vec<Value> {
    let mut spans = records_until(
        h,
        "erp.monitoring",
        |s| s["detail"]["stage"] == "dispatcher" && s["detail"]["webhook_config_id"] == webhook_id,
        |s| s.len() >= want,
    )
    .await;
    spans.sort_by_key(|s| s["detail"]["attempt"].as_u64());
    spans
}

/// Dead letters naming one endpoint.
async fn letters_for(h: &Harness, webhook_id: &str, want: usize) -> Vec<Value> {
    records_until(
        h,
        "erp.dlq",
        |l| l["webhook_id"] == webhook_id,
        |l| l.len() >= want,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_terminal_answers_and_gone_endpoints() {
    let dir = tempfile::tempdir().expect("temp dir");
    let h = Harness::start_with(fast_options(dir.path())).await;
    let receivers: Vec<Receiver> = futures::future::join_all((0..5).map(|_| async {
        Receiver::start("127.0.0.1:0", None, false)
            .await
            .expect("receiver")
    }))
    .await;
    let [flaky, throttled, refusing, gone, down] = &receivers[..] else {
        unreachable!()
    };
    flaky.fail_first(2, 503);
    throttled.fail_first(1, 429);
    throttled.retry_after(Some("2"));
    refusing.respond_with(400);
    gone.respond_with(410);
    down.respond_with(503);
    let (flaky_id, flaky_secret) = webhook(&h, "flaky", &flaky.url(), json!({})).await;
    let (throttled_id, _) = webhook(&h, "throttled", &throttled.url(), json!({})).await;
    let (refusing_id, _) = webhook(&h, "refusing", &refusing.url(), json!({})).await;
    let (gone_id, _) = webhook(&h, "gone", &gone.url(), json!({})).await;
    let (down_id, _) = webhook(
        &h,
        "down",
        &down.url(),
        json!({"retryPolicy": {"enabled": true, "maxAttempts": 1}}),
    )
    .await;
    send_addressed(&h, &flaky_id, "01JTEST00000000000000FLAKY").await;
    send_addressed(&h, &throttled_id, "01JTEST0000000000000THROTL").await;
    send_addressed(&h, &refusing_id, "01JTEST0000000000000REFUSE").await;
    send_addressed(&h, &gone_id, "01JTEST00000000000000GONE1").await;
    send_addressed(&h, &down_id, "01JTEST00000000000000DOWN1").await;

    // Failing twice, then reached from the second tier: one webhook-id, every signature valid.
    assert!(
        flaky.wait_for(3, LIMIT).await,
        "only {} requests",
        flaky.count()
    );
    let requests = flaky.deliveries();
    assert!(
        requests
            .iter()
            .all(|r| r.webhook_id == "msg_01JTEST00000000000000FLAKY" && r.verify(&flaky_secret)),
        "{requests:?}"
    );
    assert_eq!(
        requests[2].json(),
        json!({"event": "01JTEST00000000000000FLAKY"})
    );
    let spans = attempt_spans(&h, &flaky_id, 3).await;
    let summary: Vec<(Value, Value, Value)> = spans
        .iter()
        .map(|s| {
            (
                s["level"].clone(),
                s["detail"]["status_code"].clone(),
                s["detail"]["retry_tier"].clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (json!("warning"), json!(503), json!(1)),
            (json!("warning"), json!(503), json!(2)),
            (json!("success"), json!(204), Value::Null),
        ]
    );
    assert_eq!(spans[0]["code"], "HTTP_503");
    assert_eq!(spans[0]["detail"]["response_body"], "receiver answers 503");
    assert!(spans[0]["detail"]["next_attempt_at"].is_string());
    assert_eq!(
        spans[2]["detail"]["webhook_id"],
        "msg_01JTEST00000000000000FLAKY"
    );

    // 429 with Retry-After: 2 s skips the 1 s tier for the 2 s one.
    assert!(
        throttled.wait_for(2, LIMIT).await,
        "429 endpoint not retried"
    );
    let spans = attempt_spans(&h, &throttled_id, 2).await;
    assert_eq!(spans[0]["detail"]["status_code"], 429);
    assert_eq!(spans[0]["detail"]["retry_after_secs"], 2);
    assert_eq!(spans[0]["detail"]["retry_tier"], 2);
    assert_eq!(spans[1]["level"], "success");

    // 400 is terminal: one request, a dead letter with the status and the source coordinates.
    let letters = letters_for(&h, &refusing_id, 1).await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["code"], "DELIVERY_FAILED");
    assert_eq!(letters[0]["source"]["topic"], "erp.core.events");
    assert!(letters[0]["source"]["offset"].is_i64());
    assert!(
        letters[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("HTTP_400") && r.contains("last status 400")),
        "{}",
        letters[0]
    );
    assert_eq!(refusing.count(), 1);

    // Retries used up (maxAttempts 1: one retry): dead letter after the second request.
    let letters = letters_for(&h, &down_id, 1).await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert!(
        letters[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("attempt 2") && r.contains("last status 503")),
        "{}",
        letters[0]
    );
    assert_eq!(down.count(), 2);
    let spans = attempt_spans(&h, &down_id, 2).await;
    assert_eq!(spans[1]["level"], "error");
    assert_eq!(spans[1]["detail"]["outcome"], "dead_lettered");

    // 410 disables the endpoint and parks the event; later events are parked too, not sent.
    let letters = letters_for(&h, &gone_id, 1).await;
    assert_eq!(letters[0]["code"], "WEBHOOK_DISABLED", "{}", letters[0]);
    let (status, config) = h.get(&format!("/v1/webhooks/configs/{gone_id}")).await;
    assert_eq!(status, StatusCode::OK, "{config}");
    assert_eq!(config["enabled"], false, "{config}");
    send_addressed(&h, &gone_id, "01JTEST00000000000000GONE2").await;
    let letters = letters_for(&h, &gone_id, 2).await;
    assert_eq!(letters.len(), 2, "{letters:?}");
    assert_eq!(letters[1]["code"], "WEBHOOK_DISABLED");
    assert_eq!(letters[1]["event_id"], "01JTEST00000000000000GONE2");
    assert_eq!(gone.count(), 1, "a disabled endpoint gets no requests");
    assert_eq!(
        h.metric("erp_dispatcher_endpoints_disabled_total"),
        1.0,
        "disabled once"
    );
    h.standalone.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_endpoint_does_not_hold_up_a_healthy_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let h = Harness::start_with(fast_options(dir.path())).await;
    let healthy = Receiver::start("127.0.0.1:0", None, false)
        .await
        .expect("receiver");
    let hanging = Receiver::start("127.0.0.1:0", None, false)
        .await
        .expect("receiver");
    hanging.hang(true);
    let (integration_id, secret) = h.configure(meter_mapping(), &healthy.url()).await;
    let (hanging_id, _) = webhook(&h, "hanging", &hanging.url(), json!({})).await;

    const EVENTS: usize = 60;
    let started = Instant::now();
    for chunk in (0..EVENTS).collect::<Vec<_>>().chunks(20) {
        let events: Vec<Value> = chunk
            .iter()
            .map(|n| reading_event(*n, &format!("hang-{n}")))
            .collect();
        let (status, body) = h
            .post(
                "/v3/erp/updates/events",
                json!({"integration_id": integration_id, "events": events}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    assert!(
        healthy.wait_for(EVENTS, LIMIT).await,
        "the healthy endpoint got {} of {EVENTS}",
        healthy.count()
    );
    let healthy_done = started.elapsed();
    let delivered = healthy.deliveries();
    let ids: BTreeSet<&str> = delivered.iter().map(|d| d.webhook_id.as_str()).collect();
    assert_eq!(ids.len(), EVENTS, "each event once");
    assert!(delivered.iter().all(|d| d.verify(&secret)));

    // Every event for the hanging endpoint ends as a dead letter naming it: none is lost.
    let letters = letters_for(&h, &hanging_id, EVENTS).await;
    let event_ids: BTreeSet<&str> = letters
        .iter()
        .filter_map(|l| l["event_id"].as_str())
        .collect();
    assert_eq!(event_ids.len(), EVENTS, "{} dead letters", letters.len());
    let codes: BTreeMap<String, usize> = letters.iter().fold(BTreeMap::new(), |mut acc, l| {
        let reason = l["reason"].as_str().unwrap_or_default();
        let code = reason.split(':').next().unwrap_or_default().to_owned();
        *acc.entry(code).or_default() += 1;
        acc
    });
    assert!(
        codes
            .keys()
            .all(|c| c == "TIMEOUT" || c == "CIRCUIT_OPEN_TOO_LONG"),
        "{codes:?}"
    );
    assert!(h.metric("erp_dispatcher_breaker_transitions_total{state=\"open\"}") >= 1.0);
    assert!(
        hanging.count() < EVENTS,
        "the breaker spared the hanging endpoint most requests ({} of {EVENTS})",
        hanging.count()
    );
    println!(
        "healthy endpoint: {EVENTS} events delivered {:.1} s after the first POST; \
         hanging endpoint: {} requests, {} dead letters ({codes:?}) after {:.1} s",
        healthy_done.as_secs_f64(),
        hanging.count(),
        letters.len(),
        started.elapsed().as_secs_f64()
    );
    hanging.hang(false);
    h.standalone.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatcher_stopped_mid_delivery_redelivers_with_the_same_webhook_id() {
    let dir = tempfile::tempdir().expect("temp dir");
    let receiver = Receiver::start("127.0.0.1:0", None, false)
        .await
        .expect("receiver");
    receiver.hang(true);
    // A request timeout far beyond the test, so the stop lands while the request is in flight,
    // and no grace for it: the stop abandons the request like a kill would, leaving its record
    // uncommitted.
    let options = || {
        let mut options = fast_options(dir.path());
        options.dispatcher.request_timeout = Duration::from_secs(120);
        options.dispatcher.shutdown_grace = Duration::ZERO;
        options
    };
    let first = Harness::start_with(options()).await;
    let (integration_id, secret) = first.configure(meter_mapping(), &receiver.url()).await;
    let (status, _) = first
        .post(
            "/v3/erp/updates/events",
            json!({"integration_id": integration_id, "events": [reading_event(7, "crash-7")]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(receiver.wait_for(1, LIMIT).await, "no request arrived");
    first.standalone.stop().await.expect("stop");

    receiver.hang(false);
    let second = Harness::start_with(options()).await;
    assert!(
        receiver.wait_for(2, LIMIT).await,
        "not redelivered after the restart"
    );
    let requests = receiver.deliveries();
    assert_eq!(
        requests[0].webhook_id, requests[1].webhook_id,
        "the same webhook-id"
    );
    assert!(requests.iter().all(|r| r.verify(&secret)));
    assert_eq!(requests[1].json()["deduplication_id"], "crash-7");
    assert!(
        second
            .eventually(LIMIT, |h| h
                .metric("erp_dispatcher_deliveries_total{outcome=\"delivered\"}")
                >= 1.0)
            .await
    );
    second.standalone.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatcher_killed_with_sigkill_redelivers_everything_with_the_same_webhook_ids() {
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

    // Two endpoints, configured straight in the configuration log: one that holds requests, one
    // that fails once (so a delivery task may be in a retry tier at the kill).
    let hanging = Receiver::start("127.0.0.1:0", None, false)
        .await
        .expect("receiver");
    hanging.hang(true);
    let flaky = Receiver::start("127.0.0.1:0", None, false)
        .await
        .expect("receiver");
    flaky.fail_first(1, 503);
    let mut secrets = BTreeMap::new();
    for (id, receiver) in [("wh-hanging", &hanging), ("wh-flaky", &flaky)] {
        let secret = erp_toolkit::signing::new_secret();
        secrets.insert(id, secret.clone());
        let webhook = serde_json::from_value(json!({
            "id": id, "name": id, "eventName": "event_TestMessage", "url": receiver.url(),
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
                signing_secret: secret,
                previous_secrets: Vec::new(),
            },
        };
        erp_runtime::kafka::send(
            &producer,
            "erp.config",
            id,
            &serde_json::to_vec(&record).expect("json"),
        )
        .await
        .expect("configured");
    }
    for (id, webhook) in [
        ("01JKILL000000000000000HANG", "wh-hanging"),
        ("01JKILL00000000000000FLAKY", "wh-flaky"),
    ] {
        let event = json!({"_event_id": id, "_event_name": "TestMessage", "_org_id": "default",
            "_delivery": {"type": "webhook", "webhook_id": webhook}, "payload": {"event": id}});
        erp_runtime::kafka::send(
            &producer,
            "erp.core.events",
            id,
            event.to_string().as_bytes(),
        )
        .await
        .expect("produced");
    }

    let mut first = DispatcherProcess::spawn(
        &brokers,
        &dir.path().join("first.log"),
        &[
            "--retry-schedule",
            "1s,2s,3s",
            // Far beyond the test: the kill lands while the request is in flight.
            "--request-timeout-secs",
            "120",
        ],
    );
    assert!(
        hanging.wait_for(1, LIMIT).await,
        "no request to the hanging endpoint"
    );
    assert!(
        flaky.wait_for(1, LIMIT).await,
        "no request to the flaky endpoint"
    );
    first.kill();

    hanging.hang(false);
    // A supervisor restarts after the dead member's session expired (6 s), as the processor's
    // crash test does: the embedded broker drops a crashed member only then.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let second = DispatcherProcess::spawn(
        &brokers,
        &dir.path().join("second.log"),
        &[
            "--retry-schedule",
            "1s,2s,3s",
            // Far beyond the test: the kill lands while the request is in flight.
            "--request-timeout-secs",
            "120",
        ],
    );
    assert!(
        hanging.wait_for(2, LIMIT).await,
        "the hanging endpoint's event was not redelivered; log: {}",
        std::fs::read_to_string(dir.path().join("second.log")).unwrap_or_default()
    );
    assert!(
        flaky.wait_for(2, LIMIT).await,
        "the flaky endpoint's event was lost"
    );
    for (receiver, id, webhook) in [
        (&hanging, "01JKILL000000000000000HANG", "wh-hanging"),
        (&flaky, "01JKILL00000000000000FLAKY", "wh-flaky"),
    ] {
        let requests = receiver.deliveries();
        assert!(
            requests
                .iter()
                .all(|r| r.webhook_id == format!("msg_{id}") && r.verify(&secrets[webhook])),
            "{requests:?}"
        );
    }
    drop(second);
    broker.stop().await;
}

/// No lost updates (issue 10, item 7): a dispatcher read the endpoint before the API rotated
/// its secret and then disables it after a 410, its change based on the revision it read. Every
/// fold skips that change: the endpoint stays enabled and signs with the rotated secret, where
/// before the disable would have brought the old secret back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disable_based_on_the_revision_before_a_rotation_does_not_undo_it() {
    use erp_schemas::config::{ConfigChange, ConfigRecord};

    let dir = tempfile::tempdir().expect("temp dir");
    let h = Harness::start(dir.path()).await;
    let receiver = Receiver::start("127.0.0.1:0", None, false)
        .await
        .expect("receiver");
    let (status, webhook) = h
        .post(
            "/v1/webhooks/configs",
            json!({"name": "erp", "eventName": "event_Test", "url": receiver.url()}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{webhook}");
    let id = webhook["id"].as_str().expect("id").to_owned();
    let old_secret = webhook["signingSecret"]
        .as_str()
        .expect("secret")
        .to_owned();
    // The endpoint's revision is the offset of its record: the log's last one so far (one
    // partition, no transactions, so offsets count the records).
    let brokers = h.standalone.broker_address.to_string();
    let log = common::read_topic(&brokers, "erp.config", usize::MAX, Duration::from_secs(2)).await;
    assert_eq!(log.last().map(|(key, _)| key.as_str()), Some(id.as_str()));
    let read_revision = log.len() as i64 - 1;

    let (status, rotated) = h
        .post(
            &format!("/v1/webhooks/configs/{id}/rotate-secret"),
            json!({"grace_period_hours": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new_secret = rotated["signingSecret"]
        .as_str()
        .expect("secret")
        .to_owned();

    // What the dispatcher's disable writes, based on what it read before the rotation.
    let mut stale = webhook.clone();
    stale["enabled"] = json!(false);
    let record = ConfigRecord {
        org_id: "default".into(),
        at: "2025-01-01T00:00:00.000Z".into(),
        actor: Some("erp-toolkit-dispatcher".into()),
        base_revision: Some(read_revision),
        change: ConfigChange::WebhookUpserted {
            webhook: serde_json::from_value(stale).expect("endpoint"),
            signing_secret: old_secret.clone(),
            previous_secrets: Vec::new(),
        },
    };
    let producer = erp_runtime::KafkaSettings::new(&brokers)
        .producer("test")
        .expect("producer");
    erp_runtime::kafka::send(
        &producer,
        "erp.config",
        &id,
        &serde_json::to_vec(&record).expect("json"),
    )
    .await
    .expect("appended");
    // A write through the API after it: once answered, the API's view has folded the stale one.
    let (status, _) = h.post("/v1/integrations", json!({"name": "after"})).await;
    assert_eq!(status, StatusCode::CREATED);

    let (_, current) = h.get(&format!("/v1/webhooks/configs/{id}")).await;
    assert_eq!(current["enabled"], true, "{current}");
    let (status, answer) = h
        .post(
            &format!("/v1/webhooks/configs/{id}/trigger"),
            json!({"metadata": {"organization_id": "default", "action": "test"}}),
        )
        .await;
    assert!(status.is_success(), "{status}: {answer}");
    assert!(receiver.wait_for(1, LIMIT).await, "delivered");
    let delivery = receiver.deliveries()[0].clone();
    assert!(
        delivery.verify(&new_secret),
        "signed with the rotated secret: {}",
        delivery.signature
    );
    h.standalone.stop().await.expect("clean stop");
}
