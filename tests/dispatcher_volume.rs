//! End-to-end tests of the dispatcher's volume controls: per-endpoint rate limits, on the
//! embedded broker with real loopback receivers. Waits are bounded by generous limits; nothing
//! here asserts how long something took.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use common::{Harness, meter_mapping, reading_event};
use erp_toolkit::StandaloneOptions;
use erp_toolkit::receiver::{Delivery, Receiver};

/// Deferred deliveries of a rate-limited endpoint come back every tier-1 wait, a few at a
/// time: give them time on a loaded machine.
const LIMIT: Duration = Duration::from_secs(180);

/// Short tiers (1 s, 2 s, 3 s), so deferred deliveries come back within seconds.
fn fast_options(dir: &Path) -> StandaloneOptions {
    let mut options = common::options(dir);
    let d = &mut options.dispatcher;
    d.retry_schedule = vec![
        Duration::from_secs(1),
        Duration::from_secs(2),
        Duration::from_secs(3),
    ];
    d.endpoint_queue_wait = Duration::from_millis(500);
    d.tier_hold = Duration::from_millis(500);
    options
}

/// Creates an endpoint subscribed to mapped events; returns its id and signing secret.
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

/// Posts `n` meter readings in one request.
async fn send_readings(h: &Harness, integration_id: &str, prefix: &str, n: usize) {
    let events: Vec<Value> = (0..n)
        .map(|i| reading_event(i, &format!("{prefix}-{i}")))
        .collect();
    let (status, body) = h
        .post(
            "/v3/erp/updates/events",
            json!({"integration_id": integration_id, "events": events}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// The most requests that arrived within any window of `window` starting at an arrival.
fn most_within(deliveries: &[Delivery], window: Duration) -> usize {
    let mut times: Vec<_> = deliveries.iter().map(|d| d.received_at).collect();
    times.sort();
    times
        .iter()
        .enumerate()
        .map(|(i, start)| {
            times[i..]
                .iter()
                .take_while(|t| t.duration_since(*start) < window)
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_endpoint_gets_every_event_at_its_rate_beside_an_unlimited_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let h = Harness::start_with(fast_options(dir.path())).await;
    let free = Receiver::start("127.0.0.1:0", None, false)
        .await
        .expect("receiver");
    let limited = Receiver::start("127.0.0.1:0", None, false)
        .await
        .expect("receiver");
    let (integration_id, free_secret) = h.configure(meter_mapping(), &free.url()).await;

    // A limit the dispatcher could not keep is refused on save, naming the field.
    for (bad, field) in [
        (
            json!({"rateLimit": {"requestsPerSecond": 0}}),
            "rateLimit.requestsPerSecond",
        ),
        (
            json!({"rateLimit": {"requestsPerSecond": 2, "burst": 0}}),
            "rateLimit.burst",
        ),
        (json!({"rateLimit": "fast"}), "rateLimit"),
    ] {
        let mut body =
            json!({"name": "bad", "eventName": "event_InboundEventMapped", "url": limited.url()});
        body.as_object_mut()
            .expect("object")
            .extend(bad.as_object().expect("object").clone());
        let (status, answer) = h.post("/v1/webhooks/configs", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert!(answer["code"].is_string(), "{answer}");
        assert!(
            answer["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(field)),
            "{answer}"
        );
    }

    const RATE: usize = 2;
    const BURST: usize = 2;
    let (_, limited_secret) = webhook(
        &h,
        "limited",
        &limited.url(),
        json!({"rateLimit": {"requestsPerSecond": RATE, "burst": BURST}}),
    )
    .await;

    const EVENTS: usize = 40;
    send_readings(&h, &integration_id, "rate", EVENTS).await;

    assert!(
        free.wait_for(EVENTS, LIMIT).await,
        "the unlimited endpoint got {} of {EVENTS}",
        free.count()
    );
    assert!(
        limited.wait_for(EVENTS, LIMIT).await,
        "the limited endpoint got {} of {EVENTS}",
        limited.count()
    );
    for (receiver, secret) in [(&free, &free_secret), (&limited, &limited_secret)] {
        let deliveries = receiver.deliveries();
        let ids: BTreeSet<&str> = deliveries.iter().map(|d| d.webhook_id.as_str()).collect();
        assert_eq!(ids.len(), EVENTS, "every event, none lost");
        assert!(deliveries.iter().all(|d| d.verify(secret)));
    }

    // Within any 2 s the limited endpoint may get the burst plus 2 s of its rate; arrival times
    // wobble on a busy machine, so a few more are tolerated. Without the limit all 40 would
    // arrive within a fraction of a second.
    let window = Duration::from_secs(2);
    let most = most_within(&limited.deliveries(), window);
    assert!(
        most <= BURST + 2 * RATE + 4,
        "{most} requests within {window:?}"
    );
    assert!(h.metric("erp_dispatcher_throttled_total") >= 1.0);
    assert!(h.metric("erp_dispatcher_scheduled_total{reason=\"throttled\",tier=\"1\"}") >= 1.0);
    free.stop().await;
    limited.stop().await;
    // Stopped before the runtime drops: a Kafka commit in flight would otherwise wait for a
    // broker that is gone, and the test would never end.
    h.standalone.stop().await.expect("clean stop");
}

/// The event ids in a batched request's body (a JSON array of core events).
fn members(delivery: &Delivery) -> Vec<String> {
    delivery
        .json()
        .as_array()
        .map(|events| {
            events
                .iter()
                .filter_map(|e| e["_event_id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until `receiver` has seen every one of `want` events in its batches.
async fn wait_for_members(receiver: &Receiver, want: usize) -> BTreeSet<String> {
    let started = std::time::Instant::now();
    loop {
        let seen: BTreeSet<String> = receiver.deliveries().iter().flat_map(members).collect();
        if seen.len() >= want || started.elapsed() > LIMIT {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batching_endpoint_gets_every_event_in_signed_batches_and_a_failed_batch_again() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut options = fast_options(dir.path());
    // One failed request must not open the breaker and hold the retry back.
    options.dispatcher.breaker_threshold = 100;
    let h = Harness::start_with(options).await;
    let single = Receiver::start("127.0.0.1:0", None, false)
        .await
        .expect("receiver");
    let batched = Receiver::start("127.0.0.1:0", None, false)
        .await
        .expect("receiver");
    let flaky = Receiver::start("127.0.0.1:0", None, false)
        .await
        .expect("receiver");
    flaky.fail_first(1, 503);
    let (integration_id, _) = h.configure(meter_mapping(), &single.url()).await;

    let (status, answer) = h
        .post(
            "/v1/webhooks/configs",
            json!({"name": "bad", "eventName": "event_InboundEventMapped", "url": batched.url(),
                   "batch": {"maxEvents": 1000}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("batch.maxEvents")),
        "{answer}"
    );

    const MAX: usize = 10;
    const EVENTS: usize = 25;
    let batch = json!({"batch": {"maxEvents": MAX}});
    let (_, batched_secret) = webhook(&h, "batched", &batched.url(), batch.clone()).await;
    let (flaky_id, flaky_secret) = webhook(&h, "flaky", &flaky.url(), batch).await;
    send_readings(&h, &integration_id, "batch", EVENTS).await;

    // Happy path: every event once, in signed arrays of at most MAX whose webhook-id is derived
    // from the members.
    let seen = wait_for_members(&batched, EVENTS).await;
    assert_eq!(
        seen.len(),
        EVENTS,
        "every event reached the batching endpoint"
    );
    let requests = batched.deliveries();
    let total: usize = requests.iter().map(|d| members(d).len()).sum();
    assert_eq!(total, EVENTS, "each event exactly once");
    assert!(requests.len() >= EVENTS.div_ceil(MAX));
    for request in &requests {
        let ids = members(request);
        assert!(!ids.is_empty() && ids.len() <= MAX, "{} members", ids.len());
        assert!(request.verify(&batched_secret), "signature over the batch");
        assert_eq!(
            request.webhook_id,
            erp_dispatcher::worker::batch::webhook_id(ids.iter().map(String::as_str))
        );
    }

    // The failed batch comes again from the retry tier, with the same webhook-id and body, and
    // nothing is lost.
    let seen = wait_for_members(&flaky, EVENTS).await;
    assert_eq!(seen.len(), EVENTS, "every event reached the flaky endpoint");
    // The failed request's members were seen in it already: wait for it to come again.
    let started = std::time::Instant::now();
    let requests = loop {
        let requests = flaky.deliveries();
        let ids: BTreeSet<&str> = requests.iter().map(|d| d.webhook_id.as_str()).collect();
        if ids.len() < requests.len() || started.elapsed() > LIMIT {
            break requests;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(requests.iter().all(|d| d.verify(&flaky_secret)));
    let mut by_id: std::collections::BTreeMap<&str, Vec<&Delivery>> = Default::default();
    for request in &requests {
        by_id.entry(&request.webhook_id).or_default().push(request);
    }
    let repeated: Vec<&str> = by_id
        .iter()
        .filter(|(_, r)| r.len() > 1)
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(repeated.len(), 1, "one failed request, sent once more");
    for copies in by_id.values() {
        assert!(copies.iter().all(|c| c.body == copies[0].body), "same body");
    }

    // Each member of the failed batch has its own attempt record: a retry, then delivered.
    let failed_id = repeated[0];
    let failed_members = members(by_id[failed_id][0]).len();
    let brokers = h.standalone.broker_address.to_string();
    let started = std::time::Instant::now();
    let spans = loop {
        let spans: Vec<Value> = common::read_topic(
            &brokers,
            "erp.monitoring",
            usize::MAX,
            Duration::from_secs(2),
        )
        .await
        .into_iter()
        .map(|(_, span)| span)
        .filter(|s| {
            s["detail"]["webhook_config_id"] == flaky_id.as_str()
                && s["detail"]["batch_webhook_id"] == failed_id
        })
        .collect();
        if spans.len() >= 2 * failed_members || started.elapsed() > LIMIT {
            break spans;
        }
    };
    let outcome = |name: &str| {
        spans
            .iter()
            .filter(|s| s["detail"]["outcome"] == name)
            .count()
    };
    assert_eq!(outcome("retry_scheduled"), failed_members, "{spans:?}");
    assert_eq!(outcome("delivered"), failed_members, "{spans:?}");
    for receiver in [&single, &batched, &flaky] {
        receiver.stop().await;
    }
    h.standalone.stop().await.expect("clean stop");
}
