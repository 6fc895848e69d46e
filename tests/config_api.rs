//! The configuration API against the standalone process: the declarative v2 integrations, use
//! case history, and the public signing key.

mod common;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use common::{Harness, meter_mapping};

fn slugs(integration: &Value) -> Vec<String> {
    let mut slugs: Vec<String> = integration["use_cases"]
        .as_array()
        .map(|u| {
            u.iter()
                .filter_map(|u| u["slug"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    slugs.sort();
    slugs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_integrations_are_declarative_and_use_cases_keep_their_history() {
    let dir = tempfile::tempdir().expect("temp dir");
    let h = Harness::start(dir.path()).await;

    let (status, created) = h
        .post(
            "/v2/integrations",
            json!({"name": "SAP IS-U", "description": "billing",
                   "use_cases": [
                       {"name": "Meter Readings", "type": "inbound", "enabled": true, "configuration": meter_mapping()},
                       {"name": "Meter readings", "type": "inbound", "enabled": false},
                       {"name": "Contracts", "slug": "contracts", "type": "inbound", "enabled": true}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(
        slugs(&created),
        ["contracts", "meter-readings", "meter-readings-2"],
        "slugs derived from names, made unique"
    );
    let id = created["id"].as_str().expect("id").to_owned();
    let find = |integration: &Value, slug: &str| -> Value {
        integration["use_cases"]
            .as_array()
            .and_then(|u| u.iter().find(|u| u["slug"] == slug).cloned())
            .unwrap_or(Value::Null)
    };
    let readings = find(&created, "meter-readings");
    let readings_id = readings["id"].as_str().expect("id").to_owned();

    // Declarative: keep and change one, drop two, add one with a chosen id.
    let new_id = "7d1f0a4e-4c1b-4f6e-9a0e-2b7f1c9d0e11";
    let (status, updated) = h
        .call(
            Method::PUT,
            &format!("/v2/integrations/{id}"),
            Some(json!({"name": "SAP IS-U (prod)",
                   "use_cases": [
                       {"id": readings_id, "name": "Meter Readings", "type": "inbound", "enabled": false,
                        "change_description": "paused", "configuration": meter_mapping()},
                       {"id": new_id, "name": "Customers", "type": "inbound", "enabled": true}]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["name"], "SAP IS-U (prod)");
    assert_eq!(slugs(&updated), ["customers", "meter-readings"]);
    assert_eq!(find(&updated, "customers")["id"], new_id);
    assert_eq!(find(&updated, "meter-readings")["enabled"], false);
    let (_, listed) = h.get(&format!("/v1/integrations/{id}/use-cases")).await;
    assert_eq!(listed["use_cases"].as_array().map(Vec::len), Some(2));

    // A slug is immutable; a type cannot change; an unknown integration is 404.
    let (status, answer) = h
        .call(
            Method::PUT,
            &format!("/v2/integrations/{id}"),
            Some(json!({"name": "x", "use_cases": [
                {"id": readings_id, "name": "r", "slug": "other", "type": "inbound", "enabled": true}]})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["code"], "SLUG_IMMUTABLE");
    let (status, answer) = h
        .call(
            Method::PUT,
            "/v2/integrations/00000000-0000-4000-8000-000000000000",
            Some(json!({"name": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    assert_eq!(answer["code"], "INTEGRATION_NOT_FOUND");

    // History: the version before the PUT, newest first.
    let (status, history) = h
        .get(&format!(
            "/v1/integrations/{id}/use-cases/{readings_id}/history"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{history}");
    let entries = history["history"].as_array().expect("history");
    assert_eq!(entries.len(), 1, "{history}");
    assert_eq!(entries[0]["useCaseId"], readings_id.as_str());
    assert_eq!(entries[0]["enabled"], true, "the state before the change");
    assert!(entries[0]["history_created_at"].is_string());
    assert!(history.get("next_cursor").is_none());
    let (status, answer) = h
        .get(&format!(
            "/v1/integrations/{id}/use-cases/{readings_id}/history?cursor=zzz"
        ))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");

    // GET and DELETE of v2.
    let (status, fetched) = h.get(&format!("/v2/integrations/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(slugs(&fetched), ["customers", "meter-readings"]);
    let (_, all) = h.get("/v2/integrations").await;
    assert_eq!(all["integrations"].as_array().map(Vec::len), Some(1));
    let (status, _) = h
        .call(Method::DELETE, &format!("/v2/integrations/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = h.get(&format!("/v1/integrations/{id}/use-cases")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The public key of v1a signatures, without a token.
    let response = h
        .client
        .get(format!("{}/v1/webhooks/.well-known/public-key", h.base))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), StatusCode::OK);
    let key: Value = response.json().await.expect("json");
    assert_eq!(key["algorithm"], "ed25519");
    assert!(
        key["public_key"]
            .as_str()
            .is_some_and(|k| k.starts_with("-----BEGIN PUBLIC KEY-----"))
    );
    h.standalone.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_carry_v1a_and_both_secrets_during_a_rotation() {
    let dir = tempfile::tempdir().expect("temp dir");
    let h = Harness::start(dir.path()).await;
    let receiver = erp_toolkit::receiver::Receiver::start("127.0.0.1:0", None, false)
        .await
        .expect("receiver");
    let (integration_id, old_secret) = h.configure(meter_mapping(), &receiver.url()).await;
    let (_, webhooks) = h.get("/v1/webhooks/configs").await;
    let webhook_id = webhooks[0]["id"].as_str().expect("webhook id").to_owned();
    let send = |n: usize| {
        h.post(
            "/v3/erp/updates/events",
            json!({"integration_id": integration_id, "events": [common::reading_event(n, &format!("r-{n}"))]}),
        )
    };
    let (status, answer) = send(1).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(
        receiver
            .wait_for(1, std::time::Duration::from_secs(60))
            .await
    );

    let (_, key) = h.get("/v1/webhooks/.well-known/public-key").await;
    let public_key = key["public_key"].as_str().expect("public key").to_owned();
    let first = receiver.deliveries()[0].clone();
    assert!(first.signature.starts_with("v1a,"), "{}", first.signature);
    assert!(erp_webhooks::org_key::verify_v1a(
        &public_key,
        &first.webhook_id,
        first.timestamp,
        &first.body,
        &first.signature
    ));
    assert!(first.verify(&old_secret));

    let path = format!("/v1/webhooks/configs/{webhook_id}/rotate-secret");
    let (status, answer) = h.post(&path, json!({"grace_period_hours": 1000})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let (status, rotated) = h.post(&path, json!({"grace_period_hours": 2})).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new_secret = rotated["signingSecret"]
        .as_str()
        .expect("secret")
        .to_owned();
    assert_ne!(new_secret, old_secret);
    assert!(rotated["previousSecretValidUntil"].is_string());
    let (_, config) = h.get(&format!("/v1/webhooks/configs/{webhook_id}")).await;
    assert!(
        !config.to_string().contains(&new_secret) && !config.to_string().contains(&old_secret),
        "secrets are never read back"
    );

    let (status, answer) = send(2).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(
        receiver
            .wait_for(2, std::time::Duration::from_secs(60))
            .await
    );
    let second = receiver
        .deliveries()
        .into_iter()
        .find(|d| d.webhook_id != first.webhook_id)
        .expect("second delivery");
    assert!(second.verify(&new_secret), "the new secret verifies");
    assert!(
        second.verify(&old_secret),
        "the old one too, during the grace period"
    );
    h.standalone.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_event_log_queries_pages_and_replays() {
    let dir = tempfile::tempdir().expect("temp dir");
    let h = Harness::start(dir.path()).await;
    let receiver = erp_toolkit::receiver::Receiver::start("127.0.0.1:0", None, false)
        .await
        .expect("receiver");
    let (integration_id, _) = h.configure(meter_mapping(), &receiver.url()).await;
    let mut events: Vec<Value> = (0..3)
        .map(|n| common::reading_event(n, &format!("log-{n}")))
        .collect();
    events[1]["correlation_id"] = json!("trace-1");
    let (status, answer) = h
        .post(
            "/v3/erp/updates/events",
            json!({"integration_id": integration_id, "events": events}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(
        receiver
            .wait_for(3, std::time::Duration::from_secs(60))
            .await
    );

    let path = format!("/v1/integrations/{integration_id}/events");
    // The index follows the topic: wait until it has all three.
    let mut all = Value::Null;
    for _ in 0..100 {
        let (status, answer) = h.post(&path, json!({})).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        if answer["data"].as_array().map(Vec::len) == Some(3) {
            all = answer;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let data = all["data"].as_array().expect("three events indexed");
    assert_eq!(all["has_more"], false);
    assert!(
        data.iter()
            .all(|e| e["payload"].as_str().is_some_and(|p| p.contains("reading")))
    );
    assert!(data.iter().all(|e| e["use_case_id"].is_string()));

    let (_, traced) = h.post(&path, json!({"correlation_id": "trace-1"})).await;
    assert_eq!(traced["data"].as_array().map(Vec::len), Some(1), "{traced}");
    assert_eq!(traced["data"][0]["deduplication_id"], "log-1");

    let (_, first) = h.post(&path, json!({"limit": 2})).await;
    assert_eq!(first["has_more"], true, "{first}");
    let (_, second) = h
        .post(&path, json!({"limit": 2, "cursor": first["next_cursor"]}))
        .await;
    assert_eq!(second["data"].as_array().map(Vec::len), Some(1), "{second}");
    assert_eq!(second["has_more"], false);
    let (status, answer) = h.post(&path, json!({"limit": 26})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let (status, _) = h
        .post(
            "/v1/integrations/00000000-0000-4000-8000-000000000000/events",
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Replay: processed again (its dedup id dropped), under a new id.
    let original = traced["data"][0]["event_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let (status, replay) = h
        .post(
            &format!("{path}/replay"),
            json!({"event_ids": [original, "evt_unknown"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{replay}");
    assert_eq!(replay["replayed"], 1);
    assert_eq!(replay["results"][0]["status"], "queued");
    assert_eq!(replay["results"][1]["status"], "not_found");
    let replay_id = replay["results"][0]["replay_event_id"]
        .as_str()
        .expect("replay id");
    assert_ne!(replay_id, original);
    assert!(
        receiver
            .wait_for(4, std::time::Duration::from_secs(60))
            .await,
        "the replay is delivered"
    );
    let (status, answer) = h
        .post(&format!("{path}/replay"), json!({"event_ids": []}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    h.standalone.stop().await.expect("clean stop");
}

/// A download file proxy (epilot's two-step example, shortened).
fn file_proxy_download() -> Value {
    json!({
        "auth": {"type": "oauth2_client_credentials", "token_url": "\\{{env.erp.token_url}}",
                 "client_id": "\\{{env.erp.client_id}}", "client_secret": "\\{{env.erp.client_secret}}"},
        "params": [{"name": "documentId", "required": true}],
        "steps": [{"url": "\\{{env.erp.base_url}}/documents/{{params.documentId}}", "method": "GET",
                   "headers": {"Accept": "application/json"}, "response_type": "json"}],
        "response": {"body": "steps[0].body.data", "encoding": "base64",
                     "filename": "steps[0].body.fileName"},
        "allowed_origins": ["https://portal.example.com"]
    })
}

/// Status and code of an answer, for compact assertions.
fn outcome(status: StatusCode, answer: &Value) -> (u16, String) {
    (
        status.as_u16(),
        answer["code"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_proxy_use_cases_round_trip_and_bad_shapes_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let h = Harness::start(dir.path()).await;
    let (_, integration) = h.post("/v1/integrations", json!({"name": "Archive"})).await;
    let integration_id = integration["id"].as_str().expect("id").to_owned();
    let use_cases = format!("/v1/integrations/{integration_id}/use-cases");

    // Stored and answered verbatim, by v1 and v2.
    let (status, created) = h
        .post(
            &use_cases,
            json!({"name": "Document download", "slug": "document-download", "type": "file_proxy",
                   "enabled": true, "configuration": file_proxy_download()}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["type"], "file_proxy");
    assert_eq!(created["configuration"], file_proxy_download());
    let id = created["id"].as_str().expect("id").to_owned();
    let (status, fetched) = h.get(&format!("{use_cases}/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetched, created);
    let (status, paused) = h
        .call(
            Method::PUT,
            &format!("{use_cases}/{id}"),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{paused}");
    assert_eq!(paused["configuration"], file_proxy_download());
    let upload = json!({"direction": "upload", "fan_out": {"enabled": true},
        "steps": [{"url": "{{env.DOCUMENT_API_URL}}/documents", "method": "POST", "response_type": "json"}],
        "upload": {"max_file_bytes": 26214400, "max_delivery_attempts": 8}});
    let (status, v2) = h
        .call(
            Method::PUT,
            &format!("/v2/integrations/{integration_id}"),
            Some(json!({"name": "Archive", "use_cases": [
                {"id": id, "name": "Document download", "type": "file_proxy", "enabled": true,
                 "configuration": file_proxy_download()},
                {"name": "Document upload", "type": "file_proxy", "enabled": true, "configuration": upload}]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v2}");
    let (_, listed) = h.get(&use_cases).await;
    let configurations: Vec<&Value> = listed["use_cases"]
        .as_array()
        .map(|u| u.iter().map(|u| &u["configuration"]).collect())
        .unwrap_or_default();
    assert_eq!(configurations.len(), 2, "{listed}");
    assert!(configurations.contains(&&file_proxy_download()));
    assert!(configurations.contains(&&upload));

    // Refused shapes: 400 naming the field for what epilot's schemas or rules forbid, 422 for
    // what the mapping engine reports (as before the schema check), 400
    // USE_CASE_TYPE_NOT_SUPPORTED for types not run here.
    let entity = json!({"entity_schema": "contact", "unique_ids": ["id"], "fields": [{"attribute": "id", "field": "id"}]});
    let mut no_steps = file_proxy_download();
    no_steps["steps"] = json!([]);
    let mut no_response = file_proxy_download();
    no_response.as_object_mut().map(|c| c.remove("response"));
    let mut bad_jsonata = file_proxy_download();
    bad_jsonata["response"]["body"] = json!("steps[0].(");
    let mut bad_template = file_proxy_download();
    bad_template["steps"][0]["url"] = json!("{{params.documentId");
    let mut upload_with_response = upload.clone();
    upload_with_response["response"] = json!({"body": "steps[0].body", "encoding": "binary"});
    let cases = [
        (
            "inbound",
            json!({"entities": [entity], "meter_readings": null}),
            400,
            "BAD_REQUEST",
            "/configuration/meter_readings",
        ),
        (
            "inbound",
            json!({"entities": [{"entity_schema": "contact", "fields": []}]}),
            422,
            "INVALID_CONFIGURATION",
            "unique_ids",
        ),
        (
            "file_proxy",
            no_steps,
            400,
            "BAD_REQUEST",
            "/configuration/steps",
        ),
        (
            "file_proxy",
            no_response,
            400,
            "BAD_REQUEST",
            "configuration.response is required",
        ),
        (
            "file_proxy",
            upload_with_response,
            400,
            "BAD_REQUEST",
            "configuration.response is not allowed",
        ),
        (
            "file_proxy",
            bad_template,
            400,
            "BAD_REQUEST",
            "configuration.steps[0].url",
        ),
        (
            "file_proxy",
            json!({"steps": "all of them"}),
            400,
            "BAD_REQUEST",
            "/configuration/steps",
        ),
        (
            "file_proxy",
            bad_jsonata,
            422,
            "INVALID_CONFIGURATION",
            "configuration.response.body",
        ),
        (
            "managed_call",
            json!({"operation": {"method": "GET", "path": "/x"}}),
            400,
            "USE_CASE_TYPE_NOT_SUPPORTED",
            "managed_call",
        ),
        (
            "secure_proxy",
            json!({"vpc_mode": "static_ip"}),
            400,
            "USE_CASE_TYPE_NOT_SUPPORTED",
            "secure_proxy",
        ),
        (
            "outbound",
            json!({"event_catalog_event": "X", "mappings": [{"id": "m-1", "name": "m", "enabled": true,
            "jsonata_expression": "$", "delivery": {"type": "webhook", "webhook_id": "w"}}]}),
            400,
            "BAD_REQUEST",
            "/configuration/mappings/0",
        ),
    ];
    for (index, (kind, configuration, status, code, names)) in cases.into_iter().enumerate() {
        let (got, answer) = h
            .post(
                &use_cases,
                json!({"name": "Refused", "slug": format!("refused-{index}"), "type": kind,
                       "enabled": true, "configuration": configuration}),
            )
            .await;
        assert_eq!(
            outcome(got, &answer),
            (status, code.to_owned()),
            "case {index}: {answer}"
        );
        assert!(
            answer["message"]
                .as_str()
                .is_some_and(|m| m.contains(names)),
            "case {index}: {answer}"
        );
    }
    // The same checks hold for a use case embedded in v2, named by its index, and for v2's ids.
    let (status, answer) = h
        .post(
            "/v2/integrations",
            json!({"name": "Broken", "use_cases": [
                {"name": "Fine", "type": "inbound", "enabled": true},
                {"name": "Files", "type": "file_proxy", "enabled": true, "configuration": {"steps": []}}]}),
        )
        .await;
    assert_eq!(
        outcome(status, &answer),
        (400, "BAD_REQUEST".into()),
        "{answer}"
    );
    assert!(
        answer["message"]
            .as_str()
            .is_some_and(|m| m.contains("use_cases[1]") && m.contains("/configuration/steps")),
        "{answer}"
    );
    let (status, answer) = h
        .call(
            Method::PUT,
            &format!("/v2/integrations/{integration_id}"),
            Some(json!({"name": "Archive", "use_cases": [
                {"id": "not-a-uuid", "name": "Files", "type": "inbound", "enabled": true}]})),
        )
        .await;
    assert_eq!(
        outcome(status, &answer),
        (400, "BAD_REQUEST".into()),
        "{answer}"
    );
    assert!(
        answer["message"]
            .as_str()
            .is_some_and(|m| m.contains("/id")),
        "{answer}"
    );
    let (_, listed) = h.get(&use_cases).await;
    assert_eq!(
        listed["use_cases"].as_array().map(Vec::len),
        Some(2),
        "nothing refused was stored: {listed}"
    );
    h.standalone.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_use_cases_that_predate_the_checks_are_served_and_must_be_fixed_by_the_next_write() {
    let dir = tempfile::tempdir().expect("temp dir");
    let h = Harness::start(dir.path()).await;
    let (_, integration) = h.post("/v1/integrations", json!({"name": "SAP"})).await;
    let integration_id = integration["id"].as_str().expect("id").to_owned();
    let use_cases = format!("/v1/integrations/{integration_id}/use-cases");

    // What an earlier version accepted: `meter_readings: null`, written straight to the log.
    let id = "3b0e8a51-6f0c-4d6a-9a43-0c2e5a1d7b10";
    let legacy = json!({"entities": meter_mapping()["entities"], "meter_readings": null});
    let record = erp_schemas::config::ConfigRecord {
        org_id: "default".into(),
        at: "2025-01-01T00:00:00Z".into(),
        actor: None,
        base_revision: None,
        change: erp_schemas::config::ConfigChange::UseCaseUpserted {
            use_case: erp_schemas::config::UseCase {
                id: id.into(),
                integration_id: integration_id.clone(),
                name: "Meter readings".into(),
                slug: Some("meter-readings".into()),
                kind: "inbound".into(),
                enabled: true,
                configuration: Some(legacy.clone()),
                change_description: None,
                changed_by: None,
                created_at: "2025-01-01T00:00:00Z".into(),
                updated_at: "2025-01-01T00:00:00Z".into(),
            },
        },
    };
    let producer = erp_runtime::KafkaSettings::new(h.standalone.broker_address.to_string())
        .producer("test")
        .expect("producer");
    erp_runtime::kafka::send(
        &producer,
        &erp_schemas::topics::Topics::default().config(),
        id,
        serde_json::to_string(&record).expect("json").as_bytes(),
    )
    .await
    .expect("sent");

    // Served as stored: neither dropped nor rewritten.
    let path = format!("{use_cases}/{id}");
    let mut served = Value::Null;
    for _ in 0..600 {
        let (status, answer) = h.get(&path).await;
        if status == StatusCode::OK {
            served = answer;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(served["configuration"], legacy, "{served}");
    let (_, listed) = h.get(&use_cases).await;
    assert_eq!(listed["use_cases"].as_array().map(Vec::len), Some(1));

    // A partial update validates the merged result, so it names the stored fault…
    let (status, answer) = h
        .call(Method::PUT, &path, Some(json!({"enabled": false})))
        .await;
    assert_eq!(
        outcome(status, &answer),
        (400, "BAD_REQUEST".into()),
        "{answer}"
    );
    assert!(
        answer["message"]
            .as_str()
            .is_some_and(|m| m.contains("/configuration/meter_readings")),
        "{answer}"
    );
    let (_, unchanged) = h.get(&path).await;
    assert_eq!(unchanged["enabled"], true, "nothing was written");
    // …and one that supplies a valid configuration repairs it.
    let (status, fixed) = h
        .call(
            Method::PUT,
            &path,
            Some(json!({"enabled": false, "configuration": meter_mapping()})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{fixed}");
    assert_eq!(fixed["configuration"], meter_mapping());
    assert_eq!(fixed["enabled"], false);
    h.standalone.stop().await.expect("clean stop");
}
