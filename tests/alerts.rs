//! Alerting with a real standalone, a real receiver and a short sweep: an integration whose
//! mapping keeps failing crosses its error threshold, the rule fires, the alert arrives as a
//! signed `IntegrationAlert` webhook and is in the history; when the errors leave the window
//! the rule clears and the recovery arrives; status, mute and the test send answer as
//! documented.

mod common;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use common::{Harness, meter_mapping, options};
use erp_toolkit::receiver::Receiver;

const LIMIT: Duration = Duration::from_secs(60);

fn failing_event(n: usize) -> Value {
    let payload = json!({"meterId": "M-1", "reading": {"value": "unreadable",
                         "readAt": "2025-01-15T10:00:00Z", "obis": "1-0:1.8.0"}});
    json!({"use_case_slug": "meter-readings", "timestamp": "2025-01-15T10:00:00Z",
           "format": "json", "payload": payload.to_string(), "deduplication_id": format!("f{n}")})
}

fn notifications(window: &str, mute_until: Option<&str>) -> Value {
    let mut config = json!({
        "enabled": true,
        "recipients": [],
        "defaultChannels": {"email": false, "in_app": false},
        "rules": [
            {"id": "errors", "type": "error_threshold", "enabled": true, "threshold": 3, "window": window},
            {"id": "recovered", "type": "recovery", "enabled": true}
        ],
        "digest": {"enabled": false, "frequency": "daily", "timeOfDay": "08:00",
                   "timezone": "Europe/Berlin", "channels": {"email": false, "in_app": false},
                   "includeHealthy": false, "skipIfEmpty": true}
    });
    if let Some(until) = mute_until {
        config["muteUntil"] = json!(until);
    }
    config
}

async fn history(h: &Harness, integration: &str) -> Vec<Value> {
    let (status, body) = h
        .get(&format!(
            "/v2/integrations/{integration}/notifications/history"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["history"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_threshold_fires_delivers_and_recovers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut opts = options(dir.path());
    opts.alert_sweep = Duration::from_millis(500);
    let h = Harness::start_with(opts).await;
    let receiver = Receiver::start("127.0.0.1:0", None, false)
        .await
        .expect("receiver");
    let (status, hook) = h
        .post(
            "/v1/webhooks/configs",
            json!({"name": "ops alerts", "eventName": "event_IntegrationAlert", "url": receiver.url()}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{hook}");
    let secret = hook["signingSecret"].as_str().expect("secret").to_owned();
    let (status, integration) = h
        .post(
            "/v1/integrations",
            json!({"name": "SAP IS-U", "settings": {"notifications": notifications("8s", None)}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{integration}");
    let integration = integration["id"].as_str().expect("id").to_owned();
    let (status, _) = h
        .post(
            &format!("/v1/integrations/{integration}/use-cases"),
            json!({"name": "Meter readings", "slug": "meter-readings", "type": "inbound",
                   "enabled": true, "configuration": meter_mapping()}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);

    // Healthy before anything happened.
    let (status, health) = h
        .get(&format!(
            "/v2/integrations/{integration}/notifications/status"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{health}");
    assert_eq!(health["health"], "healthy");
    assert_eq!(health["rules"][0]["state"], "ok");

    // Three mapping errors: the threshold.
    let (status, _) = h
        .post(
            "/v3/erp/updates/events",
            json!({"integration_id": integration,
                   "events": (0..3).map(failing_event).collect::<Vec<_>>()}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(receiver.wait_for(1, LIMIT).await, "no alert delivered");
    let alert = &receiver.deliveries()[0];
    assert!(
        alert.verify(&secret),
        "the alert is signed with the endpoint's secret"
    );
    let body = alert.json();
    assert_eq!(body["_event_name"], "IntegrationAlert");
    assert_eq!(body["integration_id"], integration.as_str());
    assert_eq!(body["alert"]["type"], "error_threshold");
    assert_eq!(body["alert"]["state_transition"], "OK->ALERTING");
    assert_eq!(body["alert"]["severity"], "error");
    assert_eq!(body["alert"]["context"]["value"], 3.0);
    let (_, health) = h
        .get(&format!(
            "/v2/integrations/{integration}/notifications/status"
        ))
        .await;
    assert_eq!(health["health"], "alerting", "{health}");
    assert!(health["rules"][0]["last_fired_at"].is_string());
    assert!(health["evaluated_at"].is_string());

    // The errors leave the 8 s window: cleared, and the recovery is delivered.
    assert!(receiver.wait_for(2, LIMIT).await, "no recovery delivered");
    let recovery = receiver.deliveries()[1].json();
    assert_eq!(recovery["alert"]["type"], "recovery");
    assert_eq!(recovery["alert"]["state_transition"], "ALERTING->OK");
    let rows = history(&h, &integration).await;
    let kinds: Vec<&str> = rows.iter().filter_map(|r| r["type"].as_str()).collect();
    assert_eq!(
        kinds,
        ["recovery", "error_threshold"],
        "newest first: {rows:?}"
    );
    assert!(rows.iter().all(|r| r["notified"] == true));
    // Paged one by one through the cursor.
    let (_, first) = h
        .get(&format!(
            "/v2/integrations/{integration}/notifications/history?limit=1"
        ))
        .await;
    let cursor = first["next_cursor"].as_str().expect("cursor").to_owned();
    let (_, second) = h
        .get(&format!(
            "/v2/integrations/{integration}/notifications/history?limit=1&cursor={cursor}"
        ))
        .await;
    assert_eq!(second["history"][0]["type"], "error_threshold");
    assert_eq!(second["next_cursor"], Value::Null);

    // Muted: the next firing is recorded but not sent.
    let until =
        erp_schemas::timestamp::format_millis(erp_schemas::timestamp::now_millis() + 3_600_000);
    let (status, updated) = h
        .call(
            reqwest::Method::PUT,
            &format!("/v1/integrations/{integration}"),
            Some(json!({"name": "SAP IS-U",
                        "settings": {"notifications": notifications("8s", Some(&until))}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    let (status, _) = h
        .post(
            "/v3/erp/updates/events",
            json!({"integration_id": integration,
                   "events": (3..6).map(failing_event).collect::<Vec<_>>()}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let started = Instant::now();
    loop {
        let rows = history(&h, &integration).await;
        if rows.len() == 3 {
            assert_eq!(rows[0]["notified"], false);
            assert_eq!(rows[0]["suppressed_reason"], "muted");
            break;
        }
        assert!(started.elapsed() < LIMIT, "{rows:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(receiver.count(), 2, "a muted alert was sent");
    let (_, health) = h
        .get(&format!(
            "/v2/integrations/{integration}/notifications/status"
        ))
        .await;
    assert_eq!(health["health"], "muted");

    // A test send goes out at once, to the same endpoints, without touching the history.
    let (status, sent) = h
        .post(
            &format!("/v2/integrations/{integration}/notifications/test"),
            json!({"kind": "alert", "type": "critical_error"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{sent}");
    assert_eq!(sent["sent"], true);
    assert!(receiver.wait_for(3, LIMIT).await, "no test alert");
    assert_eq!(
        receiver.deliveries()[2].json()["alert"]["context"]["test"],
        true
    );
    assert_eq!(history(&h, &integration).await.len(), 3);
    let (status, _) = h
        .post(
            &format!("/v2/integrations/{integration}/notifications/test"),
            json!({"kind": "page"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
