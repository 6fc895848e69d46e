//! epilot's monitoring v1 through the real pipeline (standalone, embedded broker, a loopback
//! receiver): a known mixed stream — five mapped events, one duplicate, one the mapping fails
//! on, and one delivery the receiver refuses — must give exactly those counts in v1 stats, time
//! series and listings; cursors page without gaps or repeats; bad parameters get precise 400s in
//! epilot's error shape; the access log lists this test's own calls without a token value; a
//! second organisation's token gets 404 everywhere.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use common::{Harness, meter_mapping, reading_event};
use erp_schemas::timestamp::{format_millis, now_millis};
use erp_toolkit::receiver::Receiver;

const LIMIT: Duration = Duration::from_secs(90);

async fn create_token(h: &Harness, body: Value) -> (String, String) {
    let (status, created) = h.post("/v1/access-tokens", body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    (
        created["id"].as_str().expect("id").to_owned(),
        created["token"].as_str().expect("token").to_owned(),
    )
}

/// Every row of a v1 listing, paged with `limit` 2 through `cursor`; each page's cursor must be
/// built from its last row (`at_key`, `id_key`).
async fn page_all(h: &Harness, path: &str, filter: Value, keys: (&str, &str)) -> Vec<Value> {
    let mut rows = Vec::new();
    let mut cursor = Value::Null;
    loop {
        let mut body = filter.clone();
        body["limit"] = json!(2);
        body["cursor"] = cursor;
        let (status, page) = h.post(path, body).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let data = page["data"].as_array().expect("data").clone();
        assert!(data.len() <= 2, "{page}");
        if page["has_more"] != true {
            assert_eq!(page["next_cursor"], Value::Null);
            rows.extend(data);
            return rows;
        }
        let last = data.last().expect("a full page");
        let time_key = if keys.0 == "timestamp" {
            "timestamp"
        } else if keys.0 == "completed_at" {
            "completed_at"
        } else {
            "created_at"
        };
        assert_eq!(page["next_cursor"][keys.0], last[time_key], "{page}");
        assert_eq!(page["next_cursor"][keys.1], last[keys.1], "{page}");
        cursor = page["next_cursor"].clone();
        rows.extend(data);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitoring_v1_counts_a_known_stream_exactly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let h = Harness::start(dir.path()).await;
    let receiver = Receiver::start("127.0.0.1:0", None, false)
        .await
        .expect("receiver");
    // The mapped event of reading 3 is refused for good: one failed delivery.
    receiver.fail_matching(Some(("M-0003", 400)));
    let (integration, _) = h.configure(meter_mapping(), &receiver.url()).await;
    let v1 = |route: &str| format!("/v1/integrations/{integration}/{route}");

    let mut events: Vec<Value> = (0..5).map(|n| reading_event(n, &format!("d{n}"))).collect();
    events.push(reading_event(0, "d0"));
    let broken = json!({"meterId": "M-9", "reading": {"value": "unreadable",
                        "readAt": "2025-01-15T10:00:00Z", "obis": "1-0:1.8.0"}});
    events.push(
        json!({"use_case_slug": "meter-readings", "timestamp": "2025-01-15T10:00:00Z",
                       "format": "json", "payload": broken.to_string(),
                       "deduplication_id": "broken"}),
    );
    let (status, answer) = h
        .post(
            "/v3/erp/updates/events",
            json!({"integration_id": integration, "correlation_id": "v1-trace", "events": events}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");

    // Stats: 5 successes, 1 mapping error, 1 duplicate in; 4 delivered, 1 failed out.
    let started = Instant::now();
    let stats = loop {
        let (status, stats) = h.post(&v1("monitoring/stats"), json!({})).await;
        assert_eq!(status, StatusCode::OK, "{stats}");
        if stats["inbound"]["total_events"] == 7 && stats["outbound"]["total_events"] == 5 {
            break stats;
        }
        assert!(started.elapsed() < LIMIT, "stats stay at {stats}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let inbound = &stats["inbound"];
    assert_eq!(
        [
            &inbound["success_count"],
            &inbound["error_count"],
            &inbound["skipped_count"],
            &inbound["warning_count"]
        ],
        [&json!(5), &json!(1), &json!(1), &json!(0)],
        "{stats}"
    );
    assert_eq!(inbound["success_rate"], json!(71.43), "{stats}");
    assert!(inbound["last_error_at"].is_string(), "{stats}");
    let outbound = &stats["outbound"];
    assert_eq!(
        [
            &outbound["success_count"],
            &outbound["error_count"],
            &outbound["pending_count"]
        ],
        [&json!(4), &json!(1), &json!(0)],
        "{stats}"
    );
    assert_eq!(outbound["success_rate"], json!(80.0), "{stats}");

    // Grouped: the error is a validation error; the deliveries are one webhook's.
    let (_, grouped) = h
        .post(
            &v1("monitoring/stats"),
            json!({"inbound_group_by": ["status", "error_category"],
                   "outbound_group_by": ["status", "webhook_config_id"]}),
        )
        .await;
    let rows: BTreeSet<String> = grouped["inbound"]["breakdown"]
        .as_array()
        .expect("breakdown")
        .iter()
        .map(|r| {
            format!(
                "{}/{}/{}",
                r["status"], r["error_category"], r["total_events"]
            )
        })
        .collect();
    let want: BTreeSet<String> = [
        "\"error\"/\"validation\"/1",
        "\"skipped\"/null/1",
        "\"success\"/null/5",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(rows, want, "{grouped}");
    let out_rows = grouped["outbound"]["breakdown"].as_array().expect("rows");
    assert_eq!(out_rows.len(), 2, "{grouped}");

    // Time series over the last hour: the buckets sum to the same counts.
    let from = format_millis(now_millis() - 3_600_000);
    let (status, series) = h
        .post(
            &v1("monitoring/timeseries"),
            json!({"from_date": from, "interval": "5m"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{series}");
    let buckets = series["buckets"].as_array().expect("buckets");
    assert!((12..=13).contains(&buckets.len()), "{series}");
    let sum = |direction: &str, key: &str| -> u64 {
        buckets
            .iter()
            .map(|b| b[direction][key].as_u64().unwrap_or_default())
            .sum()
    };
    assert_eq!(
        (sum("inbound", "total_count"), sum("inbound", "error_count")),
        (7, 1)
    );
    assert_eq!(
        (
            sum("outbound", "total_count"),
            sum("outbound", "error_count")
        ),
        (5, 1)
    );
    let (_, only_in) = h
        .post(
            &v1("monitoring/timeseries"),
            json!({"from_date": from, "interval": "1h", "direction": "inbound"}),
        )
        .await;
    assert!(only_in["buckets"][0]["outbound"].is_null(), "{only_in}");

    // Listings, paged two by two: every event once.
    let inbound_rows = page_all(
        &h,
        &v1("monitoring/inbound-events"),
        json!({}),
        ("completed_at", "event_id"),
    )
    .await;
    let ids: BTreeSet<&str> = inbound_rows
        .iter()
        .filter_map(|r| r["event_id"].as_str())
        .collect();
    assert_eq!((inbound_rows.len(), ids.len()), (7, 7), "{inbound_rows:?}");
    let errors: Vec<&Value> = inbound_rows
        .iter()
        .filter(|r| r["status"] == "error")
        .collect();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["error_category"], "validation");
    assert_eq!(errors[0]["object_type"], "meter-readings");
    assert_eq!(errors[0]["sync_type"], "entity");
    let (_, skipped) = h
        .post(
            &v1("monitoring/inbound-events"),
            json!({"status": "skipped"}),
        )
        .await;
    assert!(skipped["data"][0]["event_id"].is_string(), "{skipped}");
    assert_eq!(skipped["data"].as_array().map(Vec::len), Some(1));

    let outbound_rows = page_all(
        &h,
        &v1("monitoring/outbound-events"),
        json!({}),
        ("created_at", "event_id"),
    )
    .await;
    let ids: BTreeSet<&str> = outbound_rows
        .iter()
        .filter_map(|r| r["event_id"].as_str())
        .collect();
    assert_eq!(
        (outbound_rows.len(), ids.len()),
        (5, 5),
        "{outbound_rows:?}"
    );
    let (_, failed) = h
        .post(
            &v1("monitoring/outbound-events"),
            json!({"status": "failed"}),
        )
        .await;
    let failed = failed["data"].as_array().expect("data").clone();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["http_response"]["status_code"], 400);
    assert_eq!(failed[0]["event_name"], "InboundEventMapped");

    // Bad parameters: precise 400s, epilot's shape.
    let old = format_millis(now_millis() - 2 * 86_400_000);
    for (route, body, message) in [
        (
            "monitoring/timeseries",
            json!({"from_date": old, "interval": "5m"}),
            "the window holds more than 200 buckets of 5m",
        ),
        (
            "monitoring/timeseries",
            json!({"from_date": "yesterday", "interval": "1h"}),
            "from_date must be an RFC 3339 date-time",
        ),
        (
            "monitoring/stats",
            json!({"inbound_group_by": ["colour"]}),
            "inbound_group_by items must be one of use_case_id, sync_type, status, \
             error_category, object_type, event_name, date",
        ),
        (
            "monitoring/inbound-events",
            json!({"cursor": {"completed_at": "x", "event_id": "e"}}),
            "cursor.completed_at must be a date-time",
        ),
        (
            "monitoring/outbound-events",
            json!({"cursor": {"created_at": from}}),
            "cursor.event_id is required",
        ),
        (
            "monitoring/access-logs",
            json!({"limit": 101}),
            "limit must be an integer from 1 to 100",
        ),
    ] {
        let (status, error) = h.post(&v1(route), body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{route}: {error}");
        assert_eq!(
            error,
            json!({"code": "BAD_REQUEST", "message": message}),
            "{route}"
        );
    }

    // The access log: this test's calls, by the admin and by a viewer token, never a value.
    let (viewer_id, viewer) = create_token(
        &h,
        json!({"name": "dashboard", "roles": ["integration:view"]}),
    )
    .await;
    let (status, _) = h
        .call_as(&viewer, Method::GET, &v1("outbound-status"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    // Refused for its permission: logged too, with who tried.
    let path = format!("/v1/integrations/{integration}");
    let (status, _) = h.call_as(&viewer, Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let started = Instant::now();
    let logs = loop {
        let (status, logs) = h
            .post(
                &v1("monitoring/access-logs"),
                json!({"token_id": viewer_id, "limit": 100}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{logs}");
        if logs["data"].as_array().is_some_and(|d| d.len() == 2) {
            break logs;
        }
        assert!(started.elapsed() < LIMIT, "{logs}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Newest first: the refused call, then the answered one.
    let refused = &logs["data"][0];
    assert_eq!(
        (&refused["method"], &refused["path"], &refused["status"]),
        (
            &json!("DELETE"),
            &json!("/v1/integrations/{id}"),
            &json!(403)
        ),
        "{logs}"
    );
    let entry = &logs["data"][1];
    assert_eq!(entry["method"], "GET");
    assert_eq!(entry["path"], "/v1/integrations/{id}/outbound-status");
    assert_eq!(entry["status"], 200);
    assert_eq!(entry["token_id"], viewer_id.as_str());
    assert_eq!(entry["org_id"], "default");
    let (_, bad_requests) = h
        .post(
            &v1("monitoring/access-logs"),
            json!({"status": 400, "path": "timeseries", "method": "POST"}),
        )
        .await;
    assert_eq!(
        bad_requests["data"].as_array().map(Vec::len),
        Some(2),
        "{bad_requests}"
    );
    let all = page_all(
        &h,
        &v1("monitoring/access-logs"),
        json!({}),
        ("timestamp", "request_id"),
    )
    .await;
    let text = Value::Array(all.clone()).to_string();
    assert!(!text.contains(&viewer), "a token value in the access log");
    assert!(
        !text.contains(h.standalone.admin_token.as_str()),
        "the admin token in the access log"
    );
    let ids: BTreeSet<&str> = all
        .iter()
        .filter_map(|r| r["request_id"].as_str())
        .collect();
    assert_eq!(ids.len(), all.len(), "an access-log row listed twice");

    // Outbound status: the inbound use case has none.
    let (status, outbound_status) = h.get(&v1("outbound-status")).await;
    assert_eq!(status, StatusCode::OK, "{outbound_status}");
    assert_eq!(outbound_status, json!({"useCases": []}));

    // Another organisation sees none of it.
    let (_, beta) = create_token(
        &h,
        json!({"name": "beta owner", "roles": ["owner"], "org_id": "beta"}),
    )
    .await;
    for route in [
        "monitoring/inbound-events",
        "monitoring/outbound-events",
        "monitoring/stats",
        "monitoring/timeseries",
        "monitoring/access-logs",
    ] {
        let body = json!({"from_date": from, "interval": "1h"});
        let (status, error) = h.call_as(&beta, Method::POST, &v1(route), Some(body)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{route}: {error}");
        assert!(error["code"].is_string() && error["message"].is_string());
    }
    let (status, _) = h
        .call_as(&beta, Method::GET, &v1("outbound-status"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_status_shows_conflicts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let h = Harness::start(dir.path()).await;
    let (status, integration) = h.post("/v1/integrations", json!({"name": "ERP"})).await;
    assert_eq!(status, StatusCode::CREATED, "{integration}");
    let integration = integration["id"].as_str().expect("id").to_owned();
    let (webhook, _) = h
        .webhook("erp", "http://127.0.0.1:9/", json!({"enabled": false}))
        .await;
    let configuration = json!({"event_catalog_event": "ContractUpdated", "mappings": [
        {"name": "to erp", "delivery": {"type": "webhook", "webhook_id": webhook},
         "jsonata_expression": "$", "enabled": true}]});
    let (status, use_case) = h
        .post(
            &format!("/v1/integrations/{integration}/use-cases"),
            json!({"name": "Contracts", "slug": "contracts", "type": "outbound",
                   "enabled": true, "configuration": configuration}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{use_case}");
    let (status, answer) = h
        .get(&format!("/v1/integrations/{integration}/outbound-status"))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let row = &answer["useCases"][0];
    assert_eq!(row["useCaseId"], use_case["id"]);
    assert_eq!(row["status"], "conflict");
    assert_eq!(row["eventCatalogEvent"], "ContractUpdated");
    assert_eq!(row["webhooks"][0]["webhookId"], webhook.as_str());
    assert_eq!(row["webhooks"][0]["enabled"], false);
    assert_eq!(row["conflicts"][0]["type"], "all_webhooks_disabled");
}
