//! The operational metrics on a real standalone: the metrics listener (`--metrics-listen`) and
//! what the API listener keeps, and the metrics the dashboard and the alert rules query, each
//! made to move: readiness, HTTP answers by service and status, consumer lag of the processor's
//! group (present while events arrive, zero once consumed) and dead letters of the dispatcher
//! by stage and code. Scraped over HTTP from the metrics listener; nothing asserts a duration.

mod common;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use common::{Harness, meter_mapping, metric_value, reading_event, records_until};
use erp_toolkit::receiver::Receiver;

const LIMIT: Duration = Duration::from_secs(120);

/// The `/metrics` page of the metrics listener, without a token.
async fn scrape(h: &Harness) -> String {
    let address = h.standalone.metrics_address.expect("a metrics listener");
    let response = h
        .client
        .get(format!("http://{address}/metrics"))
        .send()
        .await
        .expect("metrics answered");
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.expect("metrics page")
}

/// Scrapes until `done` holds for the page (or the limit passes); returns the last page.
async fn scrape_until(h: &Harness, done: impl Fn(&str) -> bool) -> String {
    let started = Instant::now();
    loop {
        let page = scrape(h).await;
        if done(&page) || started.elapsed() > LIMIT {
            return page;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The lag samples of `group` on `topic`: (partition label set, value).
fn lag_of<'a>(page: &'a str, metric: &str, group: &str, topic: &str) -> Vec<(&'a str, f64)> {
    page.lines()
        .filter(|line| line.starts_with(&format!("{metric}{{")))
        .filter(|line| {
            line.contains(&format!("group=\"{group}\""))
                && line.contains(&format!("topic=\"{topic}\""))
        })
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series, value.parse().ok()?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_listener_serves_what_the_dashboard_queries() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut options = common::options(dir.path());
    options.metrics_listen = Some("127.0.0.1:0".into());
    let h = Harness::start_with(options).await;
    let metrics_base = format!("http://{}", h.standalone.metrics_address.expect("listener"));

    // The API listener keeps the probes and has no /metrics, not even for the admin.
    let (status, _) = h.get("/metrics").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "/metrics on the API port");
    for base in [h.base.as_str(), metrics_base.as_str()] {
        for path in ["/healthz", "/readyz"] {
            let status = h
                .client
                .get(format!("{base}{path}"))
                .send()
                .await
                .expect("answered")
                .status();
            assert_eq!(status, StatusCode::OK, "{base}{path}");
        }
    }

    // Readiness, as /readyz says.
    let page = scrape(&h).await;
    assert_eq!(metric_value(&page, "erp_ready{role=\"standalone\"}"), 1.0);

    let receiver = Receiver::start("127.0.0.1:0", None, false)
        .await
        .expect("receiver");
    let (integration_id, _) = h.configure(meter_mapping(), &receiver.url()).await;

    // The processor's group has lag series for its assigned partitions from the start.
    let group = "erp-toolkit-processor";
    let topic = "erp.inbound.events";
    let page = scrape_until(&h, |page| {
        !lag_of(page, "erp_consumer_lag_records", group, topic).is_empty()
    })
    .await;
    assert!(
        !lag_of(&page, "erp_consumer_lag_records", group, topic).is_empty(),
        "no lag series of {group} on {topic}:\n{page}"
    );

    let events: Vec<_> = (0..20)
        .map(|n| reading_event(n, &format!("lag-{n}")))
        .collect();
    let (status, answer) = h
        .post(
            "/v3/erp/updates/events",
            json!({"integration_id": integration_id, "events": events}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(receiver.wait_for(20, LIMIT).await, "not delivered");

    // Everything consumed: the lag of every assigned partition comes down to zero, in records
    // and in seconds.
    let caught_up = |page: &str| {
        let records = lag_of(page, "erp_consumer_lag_records", group, topic);
        let seconds = lag_of(page, "erp_consumer_lag_seconds", group, topic);
        !records.is_empty()
            && records.iter().all(|(_, v)| *v == 0.0)
            && seconds.iter().all(|(_, v)| *v == 0.0)
    };
    let page = scrape_until(&h, caught_up).await;
    assert!(caught_up(&page), "lag never came down:\n{page}");

    // HTTP answers by service and status.
    let unauthenticated = h
        .client
        .get(format!("{}/v1/integrations", h.base))
        .send()
        .await
        .expect("answered")
        .status();
    assert_eq!(unauthenticated, StatusCode::UNAUTHORIZED);
    let page = scrape(&h).await;
    for series in [
        "erp_http_requests_total{service=\"ingest\",status=\"200\"}",
        "erp_http_requests_total{service=\"api\",status=\"201\"}",
        "erp_http_requests_total{service=\"api\",status=\"401\"}",
        "erp_http_requests_total{service=\"api\",status=\"404\"}",
    ] {
        assert!(metric_value(&page, series) >= 1.0, "{series}:\n{page}");
    }

    // A terminal answer dead-letters the delivery: counted under the letter's stage and code.
    assert_eq!(metric_value(&page, "erp_dead_letters_total"), 0.0);
    receiver.respond_with(400);
    let (status, answer) = h
        .post(
            "/v3/erp/updates/events",
            json!({"integration_id": integration_id, "events": [reading_event(99, "terminal")]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let letters = records_until(&h, "erp.dlq", |_| true, |l| !l.is_empty()).await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    let (stage, code) = (
        letters[0]["stage"].as_str().expect("stage").to_owned(),
        letters[0]["code"].as_str().expect("code").to_owned(),
    );
    assert_eq!(stage, "dispatcher");
    let series = format!("erp_dead_letters_total{{code=\"{code}\",stage=\"{stage}\"}}");
    let page = scrape_until(&h, |page| metric_value(page, &series) >= 1.0).await;
    assert_eq!(metric_value(&page, &series), 1.0, "{series}:\n{page}");
    assert_eq!(metric_value(&page, "erp_dead_letters_total"), 1.0);
    h.standalone.stop().await.expect("clean stop");
}
