//! The template API on a running standalone: `GET /v1/use-case-templates[?type=]`,
//! `GET /v1/use-case-templates/{slug}` and `POST /v1/integrations/{id}/use-cases/from-template`.
//! A new user's path of issue 18: pick "Sync Meter Readings" and "Submit Meter Reading" from the
//! list, create both from the template with the placeholders filled, and see the template's own
//! sample give its expected output — inbound through the mapping simulation with the stored
//! configuration, outbound delivered to a real webhook receiver. Placeholder mistakes are
//! answered with the template's error codes, and the create is the normal use-case create
//! (a slug clash is `SLUG_TAKEN`).

mod common;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Map, Value, json};

use common::Harness;
use erp_toolkit::receiver::Receiver;

/// Every placeholder of a template (as the API answers it) at its example.
fn examples(template: &Value) -> Map<String, Value> {
    template["placeholders"]
        .as_array()
        .expect("placeholders")
        .iter()
        .map(|p| {
            (
                p["name"].as_str().expect("name").to_owned(),
                p["example"].clone(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_are_listed_and_use_cases_made_from_them_work() {
    let dir = tempfile::tempdir().expect("temp dir");
    let h = Harness::start(dir.path()).await;
    let receiver = Receiver::start("127.0.0.1:0", None, false)
        .await
        .expect("receiver");

    // The list: every flow, filterable by type, without configurations or samples.
    let (status, all) = h.get("/v1/use-case-templates").await;
    assert_eq!(status, StatusCode::OK, "{all}");
    let all = all["templates"].as_array().expect("templates").clone();
    assert_eq!(all.len(), 27, "11 inbound and 16 outbound templates");
    let names: Vec<&str> = all.iter().filter_map(|t| t["name"].as_str()).collect();
    assert!(names.contains(&"Sync Meter Readings"), "{names:?}");
    assert!(names.contains(&"Submit Meter Reading"), "{names:?}");
    for entry in &all {
        for field in [
            "slug",
            "name",
            "type",
            "summary",
            "entities",
            "placeholders",
        ] {
            assert!(entry.get(field).is_some(), "{field} listed: {entry}");
        }
        assert!(entry.get("configuration").is_none(), "{entry}");
        assert!(entry.get("sample").is_none(), "{entry}");
    }
    let (status, inbound) = h.get("/v1/use-case-templates?type=inbound").await;
    assert_eq!(status, StatusCode::OK, "{inbound}");
    let inbound = inbound["templates"].as_array().expect("templates");
    assert_eq!(inbound.len(), 11);
    assert!(inbound.iter().all(|t| t["type"] == "inbound"));
    let (status, wrong) = h.get("/v1/use-case-templates?type=sideways").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{wrong}");
    let (status, missing) = h.get("/v1/use-case-templates/no-such-flow").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");
    assert_eq!(missing["code"], "TEMPLATE_NOT_FOUND");

    // The whole template: configuration, sample and expected output.
    let (status, readings) = h.get("/v1/use-case-templates/sync-meter-readings").await;
    assert_eq!(status, StatusCode::OK, "{readings}");
    assert_eq!(readings["name"], "Sync Meter Readings");
    assert_eq!(readings["sample"]["format"], "xml");
    assert!(readings["expected"]["meter_readings_updates"].is_array());
    let (status, submit) = h.get("/v1/use-case-templates/submit-meter-reading").await;
    assert_eq!(status, StatusCode::OK, "{submit}");

    let (status, integration) = h
        .post("/v1/integrations", json!({"name": "SAP IS-U"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{integration}");
    let id = integration["id"].as_str().expect("id").to_owned();
    let from_template = format!("/v1/integrations/{id}/use-cases/from-template");

    // Inbound: created with the examples, its sample gives the expected simulation.
    let (status, inbound_uc) = h
        .post(
            &from_template,
            json!({"template": "sync-meter-readings", "values": examples(&readings)}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{inbound_uc}");
    assert_eq!(inbound_uc["slug"], "sync-meter-readings");
    assert_eq!(inbound_uc["name"], "Sync Meter Readings");
    assert_eq!(inbound_uc["type"], "inbound");
    assert_eq!(inbound_uc["enabled"], true);
    let (status, simulated) = h
        .post(
            "/v2/erp/updates/mapping_simulation",
            json!({"event_configuration": inbound_uc["configuration"],
                   "format": readings["sample"]["format"],
                   "payload": readings["sample"]["payload"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{simulated}");
    assert_eq!(
        simulated, readings["expected"],
        "the template's expected output"
    );

    // The same slug again: the normal create's conflict.
    let (status, clash) = h
        .post(&from_template, json!({"template": "sync-meter-readings"}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{clash}");
    assert_eq!(clash["code"], "SLUG_TAKEN");

    // Placeholder mistakes, each with its code and the placeholder named.
    let cases = [
        (
            json!({"template": "submit-meter-reading"}),
            "TEMPLATE_PLACEHOLDER_MISSING",
            "webhook_id",
        ),
        (
            json!({"template": "submit-meter-reading", "values": {"webhook_id": 42}}),
            "TEMPLATE_PLACEHOLDER_TYPE",
            "webhook_id",
        ),
        (
            json!({"template": "sync-meter-readings", "slug": "readings-2",
                   "values": {"reading_matching": "by-phase-of-the-moon"}}),
            "TEMPLATE_PLACEHOLDER_NOT_ALLOWED",
            "reading_matching",
        ),
        (
            json!({"template": "sync-meter-readings", "slug": "readings-3",
                   "values": {"no_such_thing": 1}}),
            "TEMPLATE_PLACEHOLDER_UNKNOWN",
            "no_such_thing",
        ),
    ];
    for (body, code, placeholder) in cases {
        let (status, error) = h.post(&from_template, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {error}");
        assert_eq!(error["code"], code, "{body}: {error}");
        let message = error["message"].as_str().unwrap_or_default();
        assert!(message.contains(placeholder), "{body}: {error}");
    }
    let (status, error) = h
        .post(&from_template, json!({"template": "no-such-flow"}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{error}");
    assert_eq!(error["code"], "TEMPLATE_NOT_FOUND");

    // Outbound: the sample event reaches the webhook as the expected message.
    let (status, webhook) = h
        .post(
            "/v1/webhooks/configs",
            json!({"name": "ERP middleware", "eventName": "event_MeterReadingAdded",
                   "url": receiver.url()}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{webhook}");
    let mut values = examples(&submit);
    values.insert("webhook_id".into(), webhook["id"].clone());
    let (status, outbound_uc) = h
        .post(
            &from_template,
            json!({"template": "submit-meter-reading", "values": values}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{outbound_uc}");
    assert_eq!(
        outbound_uc["configuration"]["mappings"][0]["delivery"]["webhook_id"],
        webhook["id"]
    );
    let (status, listed) = h.get(&format!("/v1/integrations/{id}/use-cases")).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(listed["use_cases"].as_array().map(Vec::len), Some(2));

    let mut event = submit["sample"]["payload"].clone();
    event.as_object_mut().map(|e| e.remove("_org_id"));
    let (status, answer) = h.post("/v1/events", json!({"events": [event]})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(
        receiver.wait_for(1, Duration::from_secs(120)).await,
        "the message is delivered"
    );
    let delivered = receiver.deliveries()[0].json();
    assert_eq!(
        delivered, submit["expected"]["messages"][0]["payload"],
        "the template's expected message"
    );
    h.standalone.stop().await.expect("clean stop");
}
