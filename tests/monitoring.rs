//! The monitoring store and epilot's monitoring v2 API with a real standalone: a known mixed
//! stream (mapped events, duplicates, events for an unknown use case, unparsable payloads) is
//! posted, and the listing, stats, time series, associated events and traces must equal what
//! is on `erp.monitoring` — the ground truth, read from the topic. After a restart on the same
//! data nothing is counted twice, and later spans are added exactly once.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use common::process::{Role, free_port};
use common::{Harness, meter_mapping, options, read_topic_to_end, reading_event};

/// The spans of `integration` on `erp.monitoring` (outcomes only: `info` steps are no outcome).
async fn topic_spans(h: &Harness, integration: &str) -> Vec<Value> {
    topic_spans_at(&h.standalone.broker_address.to_string(), integration).await
}

/// A span written again after a crash repeats its id: readers keep the first copy.
async fn topic_spans_at(brokers: &str, integration: &str) -> Vec<Value> {
    let mut seen = BTreeSet::new();
    read_topic_to_end(brokers, "erp.monitoring")
        .await
        .into_iter()
        .map(|(_, span)| span)
        .filter(|span| span["integration_id"] == integration && span["level"] != "info")
        .filter(|span| seen.insert(span["id"].as_str().unwrap_or_default().to_owned()))
        .collect()
}

/// Waits until the store's stats say `total` for `integration`.
async fn stats_reach(h: &Harness, integration: &str, total: usize) -> Value {
    let started = Instant::now();
    loop {
        let (status, stats) = h
            .post(
                &format!("/v2/integrations/{integration}/monitoring/stats"),
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{stats}");
        if stats["total_events"] == total {
            return stats;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "stats stay at {stats} instead of {total}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Posts the mixed stream (30 to map, 10 duplicates, 5 for an unknown use case, 5 the mapping
/// fails on); returns how many events were accepted.
async fn post_mixed(h: &Harness, integration: &str, round: usize) -> usize {
    let mut events: Vec<Value> = (0..30)
        .map(|n| reading_event(n, &format!("r{round}-d{n}")))
        .collect();
    // Duplicates of ten of them.
    events.extend((0..10).map(|n| reading_event(n, &format!("r{round}-d{n}"))));
    // A use case that does not exist.
    events.extend((0..5).map(|n| {
        let mut event = reading_event(n, &format!("r{round}-x{n}"));
        event["use_case_slug"] = json!("no-such-use-case");
        event
    }));
    // Payloads the mapping fails on (`$number` of a word).
    events.extend((0..5).map(|n| {
        let payload = json!({"meterId": "M-1", "reading": {"value": "unreadable",
                             "readAt": "2025-01-15T10:00:00Z", "obis": "1-0:1.8.0"}});
        json!({"use_case_slug": "meter-readings", "timestamp": "2025-01-15T10:00:00Z",
               "format": "json", "payload": payload.to_string(),
               "deduplication_id": format!("r{round}-b{n}")})
    }));
    let count = events.len();
    let (status, answer) = h
        .post(
            "/v3/erp/updates/events",
            json!({"integration_id": integration, "correlation_id": format!("trace-{round}"),
                   "events": events}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    count
}

fn by_level(spans: &[Value]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for span in spans {
        *counts
            .entry(span["level"].as_str().unwrap_or_default().to_owned())
            .or_default() += 1;
    }
    counts
}

/// Every span id of the listing, paging with `limit` 7.
async fn listed_ids(h: &Harness, integration: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor = Value::Null;
    loop {
        let (status, page) = h
            .post(
                &format!("/v2/integrations/{integration}/monitoring/events"),
                json!({"limit": 7, "cursor": cursor}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let data = page["data"].as_array().expect("data");
        ids.extend(
            data.iter()
                .map(|s| s["id"].as_str().expect("id").to_owned()),
        );
        if page["has_more"] != true {
            assert_eq!(page["next_cursor"], Value::Null);
            return ids;
        }
        cursor = page["next_cursor"].clone();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monitoring_api_equals_the_topic_and_survives_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let h = Harness::start(dir.path()).await;
    let (status, integration) = h
        .post("/v1/integrations", json!({"name": "SAP IS-U"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{integration}");
    let integration = integration["id"].as_str().expect("id").to_owned();
    let (status, use_case) = h
        .post(
            &format!("/v1/integrations/{integration}/use-cases"),
            json!({"name": "Meter readings", "slug": "meter-readings", "type": "inbound",
                   "enabled": true, "configuration": meter_mapping()}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{use_case}");
    let use_case_id = use_case["id"].as_str().expect("id").to_owned();

    let posted = post_mixed(&h, &integration, 1).await;
    // Every accepted event leaves at least one outcome span.
    let started = Instant::now();
    let mut spans = topic_spans(&h, &integration).await;
    while spans.len() < posted {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "{} spans",
            spans.len()
        );
        spans = topic_spans(&h, &integration).await;
    }
    let levels = by_level(&spans);
    assert!(levels.len() >= 2, "a mixed stream: {levels:?}");

    let stats = stats_reach(&h, &integration, spans.len()).await;
    for (level, count) in &levels {
        assert_eq!(stats[format!("{level}_count")], *count, "{level}: {stats}");
    }
    let expected_rate = (levels.get("success").copied().unwrap_or(0) as f64 * 10_000.0
        / spans.len() as f64)
        .round()
        / 100.0;
    assert_eq!(stats["success_rate"], expected_rate, "{stats}");

    // Grouped by level and by use case: the same numbers.
    let (_, grouped) = h
        .post(
            &format!("/v2/integrations/{integration}/monitoring/stats"),
            json!({"group_by": "level"}),
        )
        .await;
    let breakdown: BTreeMap<String, u64> = grouped["breakdown"]
        .as_array()
        .expect("breakdown")
        .iter()
        .map(|row| {
            (
                row["level"].as_str().unwrap_or_default().to_owned(),
                row["total_events"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    let levels_u64: BTreeMap<String, u64> =
        levels.iter().map(|(l, n)| (l.clone(), *n as u64)).collect();
    assert_eq!(breakdown, levels_u64);

    // The listing: every span once, newest first, paged through the cursor.
    let ids = listed_ids(&h, &integration).await;
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "a span listed twice");
    let expected: BTreeSet<String> = spans
        .iter()
        .map(|s| s["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        unique.into_iter().cloned().collect::<BTreeSet<_>>(),
        expected
    );

    // A filter: the errors of the use case.
    let (_, errors) = h
        .post(
            &format!("/v2/integrations/{integration}/monitoring/events"),
            json!({"level": "error", "use_case_id": use_case_id, "limit": 100}),
        )
        .await;
    let want = spans
        .iter()
        .filter(|s| s["level"] == "error" && s["use_case_id"] == use_case_id.as_str())
        .count();
    assert_eq!(
        errors["data"].as_array().map(Vec::len),
        Some(want),
        "{errors}"
    );

    // The time series over the last hour in 5-minute buckets sums to the same total.
    let from =
        erp_schemas::timestamp::format_millis(erp_schemas::timestamp::now_millis() - 3_600_000);
    let (status, series) = h
        .post(
            &format!("/v2/integrations/{integration}/monitoring/time-series"),
            json!({"from_date": from, "interval": "5m", "group_by": "use_case"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{series}");
    let summed: u64 = series["buckets"]
        .as_array()
        .expect("buckets")
        .iter()
        .map(|b| b["total_count"].as_u64().unwrap_or_default())
        .sum();
    assert_eq!(summed, spans.len() as u64, "{series}");

    // Associated: every span of one event, oldest first.
    let event_id = spans[0]["event_id"].as_str().expect("event id").to_owned();
    let (status, associated) = h
        .get(&format!(
            "/v2/integrations/{integration}/monitoring/events/{event_id}/associated"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{associated}");
    let want = spans
        .iter()
        .filter(|s| s["event_id"] == event_id.as_str())
        .count();
    let got = associated["monitoring_events"].as_array().expect("events");
    assert!(got.len() >= want && want > 0, "{associated}");
    assert_eq!(associated["inbound_event"]["event_id"], event_id.as_str());

    // A trace by the request's correlation id.
    let (status, trace) = h
        .get(&format!(
            "/v2/integrations/{integration}/monitoring/traces/trace-1"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{trace}");
    let want = spans
        .iter()
        .filter(|s| s["correlation_id"] == "trace-1")
        .count();
    assert!(want > 0, "the spans carry the request's correlation id");
    assert!(trace["span_count"].as_u64() >= Some(want as u64), "{trace}");
    assert_eq!(
        trace["status"],
        if levels.contains_key("error") {
            "error"
        } else {
            "success"
        }
    );

    // Partner log shipping: the middleware's spans join the trace with server-assigned codes;
    // a malformed one is refused on its own. Its clock says it came before our spans (and
    // inside the retention: older spans are pruned).
    let shipped_at =
        erp_schemas::timestamp::format_millis(erp_schemas::timestamp::now_millis() - 120_000);
    let (status, shipped) = h
        .post(
            &format!("/v2/integrations/{integration}/monitoring/external-events"),
            json!({"events": [
                {"correlation_id": "trace-1", "level": "warning", "use_case_slug": "meter-readings",
                 "occurred_at": shipped_at, "message": "IDoc 4711 received",
                 "code": "MAPPING_ERROR", "detail": {"step": "sap"}},
                {"correlation_id": "trace-1", "level": "loud", "use_case_slug": "x",
                 "occurred_at": "2025-01-15T09:59:00Z", "message": "?"}
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{shipped}");
    assert_eq!(
        (shipped["accepted"].clone(), shipped["rejected"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(
        shipped["results"][1]["reason"],
        "level must be one of success, error, warning, info"
    );
    let started = Instant::now();
    let trace = loop {
        let (_, trace) = h
            .get(&format!(
                "/v2/integrations/{integration}/monitoring/traces/trace-1"
            ))
            .await;
        if trace["spans"][0]["code"] == "EXTERNAL_WARNING" {
            break trace;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{trace}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(trace["started_at"], shipped_at.as_str());
    assert_eq!(trace["spans"][0]["use_case_id"], use_case_id.as_str());
    let spans: Vec<Value> = topic_spans(&h, &integration).await;

    // Bad input: precise 400s.
    for body in [
        json!({"limit": 0}),
        json!({"level": "fatal"}),
        json!({"cursor": "x"}),
        json!({"from_date": "yesterday"}),
    ] {
        let (status, error) = h
            .post(
                &format!("/v2/integrations/{integration}/monitoring/events"),
                body,
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
        assert!(
            error["code"].is_string() && error["message"].is_string(),
            "{error}"
        );
    }
    let (status, _) = h
        .post(
            &format!("/v2/integrations/{integration}/monitoring/time-series"),
            json!({"from_date": "2020-01-01T00:00:00Z", "interval": "5m"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "too many buckets");

    // Restart on the same data: the store resumes, nothing is counted twice.
    let total = spans.len();
    h.standalone.stop().await.expect("stops");
    let h = Harness::start_with(options(dir.path())).await;
    stats_reach(&h, &integration, total).await;
    let posted = post_mixed(&h, &integration, 2).await;
    let started = Instant::now();
    let mut spans = topic_spans(&h, &integration).await;
    while spans.len() < total + posted {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "{} spans",
            spans.len()
        );
        spans = topic_spans(&h, &integration).await;
    }
    stats_reach(&h, &integration, spans.len()).await;
    let ids = listed_ids(&h, &integration).await;
    assert_eq!(ids.len(), spans.len());
}

const TOKEN: &str = "erpt_monitoring_crash_token";

/// A standalone child process on fixed ports and a data directory that outlives it.
fn standalone(dir: &std::path::Path, http: u16, broker: u16, run: usize) -> Role {
    Role::spawn(
        &format!("standalone run {run}"),
        &[
            "standalone",
            "--data-dir",
            dir.join("data").to_str().expect("utf-8"),
            "--listen",
            &format!("127.0.0.1:{http}"),
            "--broker-listen",
            &format!("127.0.0.1:{broker}"),
        ],
        &dir.join(format!("standalone-{run}.log")),
        &[],
    )
}

async fn call(client: &reqwest::Client, url: String, body: Value) -> (StatusCode, Value) {
    match client.post(url).bearer_auth(TOKEN).json(&body).send().await {
        Ok(response) => {
            let status = response.status();
            (status, response.json().await.unwrap_or(Value::Null))
        }
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, Value::Null),
    }
}

/// The indexer killed with SIGKILL while spans stream in, three times: after the last restart
/// the store holds every span of the topic exactly once (the stages re-emit some spans after
/// the kills, with the same ids: those are one span each).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_indexer_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("data")).expect("data dir");
    std::fs::write(dir.path().join("data/admin-token"), TOKEN).expect("token");
    let (http, broker) = (free_port(), free_port());
    let base = format!("http://127.0.0.1:{http}");
    let client = reqwest::Client::new();
    let mut run = 1;
    let mut node = standalone(dir.path(), http, broker, run);
    node.wait_ready(&format!("{base}/readyz"), Duration::from_secs(120))
        .await;
    let (status, integration) = call(
        &client,
        format!("{base}/v1/integrations"),
        json!({"name": "SAP IS-U"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{integration}");
    let integration = integration["id"].as_str().expect("id").to_owned();
    let (status, use_case) = call(
        &client,
        format!("{base}/v1/integrations/{integration}/use-cases"),
        json!({"name": "Meter readings", "slug": "meter-readings", "type": "inbound",
               "enabled": true, "configuration": meter_mapping()}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{use_case}");

    let mut n = 0;
    for round in 0..3 {
        // Batches until the kill; what is refused while the process dies is simply not sent.
        let started = Instant::now();
        let kill_after = Duration::from_millis(1500 + 700 * round);
        while started.elapsed() < kill_after {
            let events: Vec<Value> = (n..n + 20)
                .map(|k| reading_event(k, &format!("k{k}")))
                .collect();
            n += 20;
            let _ = call(
                &client,
                format!("{base}/v3/erp/updates/events"),
                json!({"integration_id": integration, "events": events}),
            )
            .await;
        }
        node.kill();
        run += 1;
        node = standalone(dir.path(), http, broker, run);
        node.wait_ready(&format!("{base}/readyz"), Duration::from_secs(120))
            .await;
    }

    let brokers = format!("127.0.0.1:{broker}");
    let started = Instant::now();
    loop {
        let spans = topic_spans_at(&brokers, &integration).await;
        let (status, stats) = call(
            &client,
            format!("{base}/v2/integrations/{integration}/monitoring/stats"),
            json!({}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{stats}");
        let stored = stats["total_events"].as_u64().unwrap_or_default();
        assert!(
            stored <= spans.len() as u64,
            "the store counts {stored} spans, the topic has {}",
            spans.len()
        );
        if stored == spans.len() as u64 && !spans.is_empty() {
            // And each listed once.
            let ids: BTreeSet<String> = spans
                .iter()
                .map(|s| s["id"].as_str().unwrap_or_default().to_owned())
                .collect();
            assert_eq!(
                ids.len(),
                spans.len(),
                "the topic itself holds a span twice"
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the store stays at {stored} of {} spans",
            spans.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
