//! Blueprints on a running standalone (real broker, real HTTP, a real webhook receiver): an
//! integration of organisation A — an inbound use case, an outbound one made from the
//! "Submit Meter Reading" template, two endpoints (one whose URL comes from the environment and
//! which needs a password), a documentation page and an app mapping — is exported, planned
//! into organisation B (the plan lists exactly what B lacks, and nothing for A itself),
//! applied as one configuration event, and then the same inbound event gives the same
//! delivery in both organisations. Applying again writes nothing; the endpoint whose
//! environment value and password B lacks is installed disabled and reported; malformed and
//! future-version blueprints are refused with precise errors; B cannot export A's integration.

mod common;

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use common::{Harness, meter_mapping, reading_event};
use erp_toolkit::receiver::Receiver;

/// Calls the API with `token`; status and JSON body.
async fn call(
    h: &Harness,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = h
        .client
        .request(method, format!("{}{path}", h.base))
        .bearer_auth(token)
        .timeout(Duration::from_secs(60));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("answered");
    let status = response.status();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The plan's entries as (kind, ref, action).
fn actions(plan: &Value) -> Vec<(String, String, String)> {
    let mut out: Vec<_> = plan["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .map(|o| {
            (
                o["kind"].as_str().unwrap_or_default().to_owned(),
                o["ref"].as_str().unwrap_or_default().to_owned(),
                o["action"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

fn id_of(plan: &Value, kind: &str) -> String {
    plan["objects"]
        .as_array()
        .and_then(|o| o.iter().find(|o| o["kind"] == kind))
        .and_then(|o| o["id"].as_str())
        .expect("id")
        .to_owned()
}

async fn config_records(h: &Harness) -> usize {
    common::read_topic_to_end(&h.standalone.broker_address.to_string(), "erp.config")
        .await
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_integration_moves_to_another_organisation_with_a_plan_and_an_apply() {
    let dir = tempfile::tempdir().expect("temp dir");
    let h = Harness::start(dir.path()).await;
    let admin = h.standalone.admin_token.clone();
    let receiver = Receiver::start("127.0.0.1:0", None, false)
        .await
        .expect("receiver");

    // Organisation A.
    let (status, integration) = h
        .post(
            "/v1/integrations",
            json!({"name": "SAP IS-U", "description": "meter readings both ways",
                   "settings": {"autoRefresh": {"enabled": true}}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{integration}");
    let a_integration = integration["id"].as_str().expect("id").to_owned();
    let base = format!("/v1/integrations/{a_integration}");
    let (status, inbound) = h
        .post(
            &format!("{base}/use-cases"),
            json!({"name": "Meter readings", "slug": "meter-readings", "type": "inbound",
                   "enabled": true, "configuration": meter_mapping()}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{inbound}");
    let (platform, _) = h.webhook("platform", &receiver.url(), json!({})).await;
    let (status, env) = h
        .call(
            Method::PUT,
            "/v1/environments/erp_base_url",
            Some(json!({"type": "String", "value": receiver.url()})),
        )
        .await;
    assert!(status.is_success(), "{env}");
    let (status, readings_hook) = h
        .post(
            "/v1/webhooks/configs",
            json!({"name": "ERP readings", "eventName": "event_MeterReadingAdded",
                   "url": "{{env.erp_base_url}}/readings",
                   "auth": {"authType": "BASIC",
                            "basicAuthConfig": {"username": "erp", "password": "pw-of-a"}}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{readings_hook}");
    let (status, outbound) = h
        .post(
            &format!("{base}/use-cases/from-template"),
            json!({"template": "submit-meter-reading",
                   "values": {"webhook_id": readings_hook["id"]}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{outbound}");
    let (status, page) = h
        .call(
            Method::PUT,
            &format!("{base}/documentation/general"),
            Some(json!({"title": "SAP IS-U", "content": "How the readings flow."})),
        )
        .await;
    assert!(status.is_success(), "{page}");
    let (status, mapping) = h
        .call(
            Method::PUT,
            &format!("{base}/app-mapping"),
            Some(json!({"app_id": "11111111-1111-4111-8111-111111111111",
                        "component_id": "22222222-2222-4222-8222-222222222222"})),
        )
        .await;
    assert!(status.is_success(), "{mapping}");

    // Export: portable, no secret, environment declared without its value.
    let (status, blueprint) = h.get(&format!("{base}/blueprint")).await;
    assert_eq!(status, StatusCode::OK, "{blueprint}");
    assert_eq!(blueprint["blueprint_version"], 1);
    let text = blueprint.to_string();
    for id in [
        a_integration.as_str(),
        inbound["id"].as_str().expect("id"),
        outbound["id"].as_str().expect("id"),
        platform.as_str(),
        readings_hook["id"].as_str().expect("id"),
    ] {
        assert!(!text.contains(id), "the blueprint holds the id {id}");
    }
    assert!(!text.contains("pw-of-a"), "the password travels");
    assert!(!text.contains("whsec_"), "a signing secret travels");
    assert_eq!(
        blueprint["environment"],
        json!([{"name": "erp_base_url", "type": "String", "required": true}])
    );
    let hooks = blueprint["webhooks"].as_array().expect("webhooks");
    assert_eq!(hooks.len(), 2, "{blueprint}");
    let readings_entry = hooks
        .iter()
        .find(|w| w["name"] == "ERP readings")
        .expect("readings endpoint");
    assert_eq!(
        readings_entry["credentials"],
        json!(["auth.basicAuthConfig.password"])
    );
    let submit = blueprint["use_cases"]
        .as_array()
        .and_then(|u| u.iter().find(|u| u["slug"] == "submit-meter-reading"))
        .expect("outbound use case");
    assert_eq!(
        submit["configuration"]["mappings"][0]["delivery"]["webhook_id"],
        json!({"$ref": format!("webhooks/{}", readings_entry["key"].as_str().expect("key"))})
    );

    // A plan into A itself: nothing differs.
    let (status, own) = h
        .post("/v1/blueprints/plan", json!({"blueprint": blueprint}))
        .await;
    assert_eq!(status, StatusCode::OK, "{own}");
    assert!(
        actions(&own)
            .iter()
            .all(|(_, _, action)| action == "unchanged"),
        "{own}"
    );
    assert_eq!(own["missing_environment"], json!([]));

    // Organisation B: its owner cannot see A's integration.
    let (status, beta) = h
        .post(
            "/v1/access-tokens",
            json!({"name": "beta owner", "roles": ["owner"], "org_id": "beta"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{beta}");
    let beta = beta["token"].as_str().expect("token").to_owned();
    let (status, refused) = call(&h, &beta, Method::GET, &format!("{base}/blueprint"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{refused}");
    assert!(!refused.to_string().contains("meter-readings"), "{refused}");

    // The plan lists exactly what B lacks.
    let body = json!({"blueprint": blueprint});
    let (status, plan) = call(
        &h,
        &beta,
        Method::POST,
        "/v1/blueprints/plan",
        Some(body.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{plan}");
    let readings_key = readings_entry["key"].as_str().expect("key").to_owned();
    let mut expected = vec![
        (
            "app_mapping".to_owned(),
            "11111111-1111-4111-8111-111111111111/22222222-2222-4222-8222-222222222222".to_owned(),
            "create".to_owned(),
        ),
        ("documentation".into(), "general".into(), "create".into()),
        ("integration".into(), "SAP IS-U".into(), "create".into()),
        ("use_case".into(), "meter-readings".into(), "create".into()),
        (
            "use_case".into(),
            "submit-meter-reading".into(),
            "create".into(),
        ),
        ("webhook".into(), "platform".into(), "create".into()),
        ("webhook".into(), readings_key.clone(), "create".into()),
    ];
    expected.sort();
    assert_eq!(actions(&plan), expected, "{plan}");
    assert_eq!(
        plan["missing_environment"],
        json!([{"name": "erp_base_url", "type": "String", "required": true}])
    );
    assert_eq!(
        plan["credentials_required"],
        json!([{"webhook": readings_key, "fields": ["auth.basicAuthConfig.password"]}])
    );
    assert_eq!(
        plan["disabled_endpoints"][0]["webhook"],
        readings_key.as_str()
    );

    // A stale fingerprint writes nothing; the plan's own applies, as one record.
    let (status, stale) = call(
        &h,
        &beta,
        Method::POST,
        "/v1/blueprints/apply",
        Some(json!({"blueprint": blueprint, "fingerprint": "0".repeat(64)})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{stale}");
    assert_eq!(stale["code"], "BLUEPRINT_PLAN_STALE");
    let before = config_records(&h).await;
    let (status, applied) = call(
        &h,
        &beta,
        Method::POST,
        "/v1/blueprints/apply",
        Some(json!({"blueprint": blueprint, "fingerprint": plan["fingerprint"]})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{applied}");
    assert_eq!(applied["applied"], true);
    assert_eq!(
        config_records(&h).await,
        before + 1,
        "one configuration event"
    );
    let b_integration = id_of(&applied, "integration");
    assert_ne!(b_integration, a_integration);

    // The endpoint B lacks the value and password for is installed disabled.
    let (status, b_hooks) = call(&h, &beta, Method::GET, "/v1/webhooks/configs", None).await;
    assert_eq!(status, StatusCode::OK, "{b_hooks}");
    let b_hooks = b_hooks.as_array().expect("list").clone();
    assert_eq!(b_hooks.len(), 2);
    for hook in &b_hooks {
        let expect_enabled = hook["name"] == "platform";
        assert_eq!(hook["enabled"], expect_enabled, "{hook}");
    }
    let entry = applied["objects"]
        .as_array()
        .and_then(|o| o.iter().find(|o| o["ref"] == readings_key.as_str()))
        .expect("readings entry");
    assert_eq!(entry["installed_disabled"], true, "{applied}");

    // Again: nothing to do, nothing written.
    let (status, again) = call(
        &h,
        &beta,
        Method::POST,
        "/v1/blueprints/apply",
        Some(body.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["applied"], false, "{again}");
    assert!(
        actions(&again)
            .iter()
            .all(|(_, _, action)| action == "unchanged"),
        "{again}"
    );
    assert_eq!(
        config_records(&h).await,
        before + 1,
        "re-apply writes nothing"
    );

    // One change in B: the plan names exactly it.
    let b_use_cases = format!("/v1/integrations/{b_integration}/use-cases");
    let (status, listed) = call(&h, &beta, Method::GET, &b_use_cases, None).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let b_inbound = listed["use_cases"]
        .as_array()
        .and_then(|u| u.iter().find(|u| u["slug"] == "meter-readings"))
        .and_then(|u| u["id"].as_str())
        .expect("B's inbound use case")
        .to_owned();
    let (status, renamed) = call(
        &h,
        &beta,
        Method::PUT,
        &format!("{b_use_cases}/{b_inbound}"),
        Some(json!({"name": "Readings (renamed in B)"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{renamed}");
    let (status, replan) = call(
        &h,
        &beta,
        Method::POST,
        "/v1/blueprints/plan",
        Some(body.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{replan}");
    let changed: Vec<&Value> = replan["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .filter(|o| o["action"] != "unchanged")
        .collect();
    assert_eq!(changed.len(), 1, "{replan}");
    assert_eq!(changed[0]["ref"], "meter-readings");
    assert_eq!(changed[0]["action"], "update");
    assert_eq!(changed[0]["changes"], json!(["name"]));
    let (status, restored) = call(
        &h,
        &beta,
        Method::POST,
        "/v1/blueprints/apply",
        Some(body.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{restored}");
    assert_eq!(restored["applied"], true);

    // The same inbound event, once in each organisation: the same delivery.
    for (token, integration) in [(&admin, &a_integration), (&beta, &b_integration)] {
        let (status, answer) = call(
            &h,
            token,
            Method::POST,
            "/v3/erp/updates/events",
            Some(json!({"integration_id": integration, "events": [reading_event(7, "same-7")]})),
        )
        .await;
        assert!(status.is_success(), "{answer}");
    }
    assert!(
        receiver.wait_for(2, Duration::from_secs(120)).await,
        "{} deliveries",
        receiver.count()
    );
    let deliveries: Vec<Value> = receiver.deliveries().iter().map(|d| d.json()).collect();
    assert_eq!(deliveries.len(), 2);
    for delivery in &deliveries {
        assert_eq!(delivery["_event_name"], "InboundEventMapped");
        assert_eq!(delivery["deduplication_id"], "same-7");
    }
    assert_eq!(
        deliveries[0]["entity_updates"], deliveries[1]["entity_updates"],
        "the same mapped entities in both organisations"
    );
    let texts: Vec<String> = deliveries.iter().map(Value::to_string).collect();
    assert!(texts.iter().any(|t| t.contains(&a_integration)));
    assert!(texts.iter().any(|t| t.contains(&b_integration)));

    // A name clash in B: a conflict, and nothing applied.
    let (status, twin) = call(
        &h,
        &beta,
        Method::POST,
        "/v1/integrations",
        Some(json!({"name": "SAP IS-U"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{twin}");
    let before = config_records(&h).await;
    let (status, conflict) =
        call(&h, &beta, Method::POST, "/v1/blueprints/apply", Some(body)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{conflict}");
    assert_eq!(conflict["code"], "BLUEPRINT_CONFLICT");
    assert_eq!(conflict["plan"]["summary"]["conflict"], 1, "{conflict}");
    assert_eq!(
        config_records(&h).await,
        before,
        "a conflict writes nothing"
    );
    h.standalone.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_future_blueprints_are_refused_precisely() {
    let dir = tempfile::tempdir().expect("temp dir");
    let h = Harness::start(dir.path()).await;
    let valid = json!({"blueprint_version": 1, "integration": {"name": "SAP"},
        "use_cases": [{"slug": "meter-readings", "name": "Meter readings", "type": "inbound",
                       "enabled": true, "configuration": meter_mapping()}]});
    let with = |pointer: &str, value: Value| {
        let mut blueprint = valid.clone();
        if let Some(slot) = blueprint.pointer_mut(pointer) {
            *slot = value;
        }
        blueprint
    };
    let outbound = json!({"slug": "submit", "name": "Submit", "type": "outbound", "enabled": true,
        "configuration": {"event_catalog_event": "MeterReadingAdded", "mappings": [
            {"name": "poll", "enabled": true, "delivery": {"type": "poll"}},
            {"name": "ERP", "enabled": true, "jsonata_expression": "$",
             "delivery": {"type": "webhook", "webhook_id": "7f3c1a9e-52b4-4d0e-9a61-3c8e2f5b7d10"}}]}});
    let mut raw_id = valid.clone();
    raw_id["use_cases"]
        .as_array_mut()
        .expect("use cases")
        .push(outbound);
    let cases = [
        (
            with("/blueprint_version", json!(2)),
            "BLUEPRINT_VERSION_UNSUPPORTED",
            "blueprint_version 2",
        ),
        (
            with("/blueprint_version", json!("1")),
            "BLUEPRINT_INVALID",
            "blueprint_version",
        ),
        (
            with("/use_cases/0/slug", json!(5)),
            "BLUEPRINT_INVALID",
            "use_cases[0].slug",
        ),
        (
            with("/use_cases/0/type", json!("sideways")),
            "BLUEPRINT_INVALID",
            "use_cases[0].type",
        ),
        (
            with("/use_cases/0/configuration", json!({"entities": "many"})),
            "BLUEPRINT_INVALID",
            "use_cases[0].configuration",
        ),
        (
            raw_id,
            "BLUEPRINT_INVALID",
            "use_cases[1].configuration.mappings[1].delivery.webhook_id",
        ),
        (
            json!({"blueprint_version": 1}),
            "BLUEPRINT_INVALID",
            "integration is required",
        ),
        (
            with("/integration", json!({"name": "SAP", "id": "x"})),
            "BLUEPRINT_INVALID",
            "integration must not carry id",
        ),
    ];
    for (blueprint, code, names) in cases {
        for route in ["/v1/blueprints/plan", "/v1/blueprints/apply"] {
            let (status, error) = h.post(route, json!({"blueprint": blueprint})).await;
            assert_eq!(
                status,
                StatusCode::BAD_REQUEST,
                "{route} {blueprint}: {error}"
            );
            assert_eq!(error["code"], code, "{route}: {error}");
            let message = error["message"].as_str().unwrap_or_default();
            assert!(message.contains(names), "{route}: {message} names {names}");
        }
    }
    let (status, integrations) = h.get("/v1/integrations").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        !integrations.to_string().contains("\"SAP\""),
        "nothing was installed: {integrations}"
    );
    // The valid one installs.
    let (status, applied) = h
        .post("/v1/blueprints/apply", json!({"blueprint": valid}))
        .await;
    assert_eq!(status, StatusCode::OK, "{applied}");
    assert_eq!(applied["applied"], true);
    h.standalone.stop().await.expect("clean stop");
}
