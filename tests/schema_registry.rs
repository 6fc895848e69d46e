//! The Confluent Schema Registry subset standalone serves under `/schema-registry`, over HTTP:
//! idempotent registration, lookup, versions, 409 on an incompatible schema, Confluent's error
//! codes and content type, compatibility levels, who may read and who may change, tolerance of
//! what newer clients send, and a restart that finds everything again (the state is folded from
//! the compacted topic `erp.schemas`).

mod common;

use reqwest::StatusCode;
use serde_json::{Value, json};

use common::{Harness, options};

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

fn schema(fields: Value) -> String {
    json!({"type": "record", "name": "Reading", "namespace": "test", "fields": fields}).to_string()
}

fn v1() -> String {
    schema(json!([{"name": "meter", "type": "string"}]))
}

/// v1 with an optional field: BACKWARD-compatible.
fn v2() -> String {
    schema(json!([{"name": "meter", "type": "string"},
                  {"name": "value", "type": ["null", "double"], "default": null}]))
}

/// A new required field without a default: not BACKWARD-compatible.
fn breaking() -> String {
    schema(json!([{"name": "meter", "type": "string"}, {"name": "unit", "type": "string"}]))
}

struct Registry<'a> {
    h: &'a Harness,
    auth: Auth<'a>,
}

#[derive(Clone, Copy)]
enum Auth<'a> {
    Bearer(&'a str),
    Basic(&'a str),
}

impl Registry<'_> {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let url = format!("{}/schema-registry{path}", self.h.base);
        let mut request = self.h.client.request(method, url);
        request = match self.auth {
            Auth::Bearer(token) => request.bearer_auth(token),
            Auth::Basic(token) => request.basic_auth("any-user", Some(token)),
        };
        if let Some(body) = body {
            // What Confluent's clients send.
            request = request
                .header("content-type", CONTENT_TYPE)
                .body(body.to_string());
        }
        let response = request.send().await.expect("answered");
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let text = response.text().await.expect("body");
        if status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN {
            assert_eq!(content_type, CONTENT_TYPE, "{path}: {text}");
        }
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }
}

fn assert_error(answer: &(StatusCode, Value), status: u16, code: u64) {
    assert_eq!(answer.0.as_u16(), status, "{}", answer.1);
    assert_eq!(answer.1["error_code"], code, "{}", answer.1);
    assert!(answer.1["message"].is_string(), "{}", answer.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_speaks_confluents_rest_subset_and_survives_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let h = Harness::start_with(options(dir.path())).await;
    let admin_token = h.standalone.admin_token.clone();
    let admin = Registry {
        h: &h,
        auth: Auth::Bearer(&admin_token),
    };
    let subject = "/subjects/readings-value";

    // Register: an id; again: the same id, no new version (idempotent), whatever newer
    // clients add to the body or the query.
    let first = admin
        .post(
            &format!("{subject}/versions"),
            json!({"schema": v1(), "schemaType": "AVRO", "metadata": null, "ruleSet": null}),
        )
        .await;
    assert_eq!(first.0, StatusCode::OK, "{}", first.1);
    let id1 = first.1["id"].as_u64().expect("id");
    let again = admin
        .post(
            &format!("{subject}/versions?normalize=false"),
            json!({"schema": v1()}),
        )
        .await;
    assert_eq!(again.1, json!({"id": id1}));
    assert_eq!(
        admin.get(&format!("{subject}/versions")).await.1,
        json!([1])
    );

    // A compatible change is version 2 with a new id; the breaking one is 409.
    let second = admin
        .post(&format!("{subject}/versions"), json!({"schema": v2()}))
        .await;
    let id2 = second.1["id"].as_u64().expect("id");
    assert_ne!(id1, id2);
    assert_error(
        &admin
            .post(
                &format!("{subject}/versions"),
                json!({"schema": breaking()}),
            )
            .await,
        409,
        409,
    );
    let tested = admin
        .post(
            &format!("/compatibility{subject}/versions/latest?verbose=true"),
            json!({"schema": breaking()}),
        )
        .await;
    assert_eq!(tested.1["is_compatible"], false, "{}", tested.1);
    assert!(
        tested.1["messages"]
            .as_array()
            .is_some_and(|m| !m.is_empty())
    );
    let tested = admin
        .post(
            &format!("/compatibility{subject}/versions"),
            json!({"schema": v2()}),
        )
        .await;
    assert_eq!(tested.1, json!({"is_compatible": true}));

    // Reads.
    assert_eq!(
        admin
            .get("/subjects")
            .await
            .1
            .as_array()
            .map(|s| s.contains(&json!("readings-value"))),
        Some(true)
    );
    let latest = admin.get(&format!("{subject}/versions/latest")).await.1;
    assert_eq!(
        (&latest["subject"], &latest["version"], &latest["id"]),
        (&json!("readings-value"), &json!(2), &json!(id2))
    );
    let one = admin.get(&format!("{subject}/versions/1/schema")).await.1;
    assert_eq!(one["name"], "Reading", "the schema itself: {one}");
    let by_id = admin
        .get(&format!("/schemas/ids/{id1}?deleted=true"))
        .await
        .1;
    let text = by_id["schema"].as_str().expect("schema text");
    assert_eq!(
        serde_json::from_str::<Value>(text).expect("JSON")["fields"][0]["name"],
        "meter"
    );
    assert_eq!(
        admin.get(&format!("/schemas/ids/{id2}/schema")).await.1["type"],
        "record"
    );
    assert_eq!(admin.get("/schemas/types").await.1, json!(["AVRO"]));
    assert_eq!(admin.get("/mode").await.1, json!({"mode": "READWRITE"}));
    let found = admin.post(subject, json!({"schema": v1()})).await;
    assert_eq!(
        (&found.1["version"], &found.1["id"]),
        (&json!(1), &json!(id1)),
        "{}",
        found.1
    );

    // Confluent's error codes.
    assert_error(&admin.get("/subjects/nobody/versions").await, 404, 40401);
    assert_error(
        &admin.get(&format!("{subject}/versions/9")).await,
        404,
        40402,
    );
    assert_error(&admin.get("/schemas/ids/999").await, 404, 40403);
    assert_error(
        &admin.post(subject, json!({"schema": breaking()})).await,
        404,
        40403,
    );
    assert_error(
        &admin.get(&format!("{subject}/versions/0")).await,
        422,
        42202,
    );
    assert_error(
        &admin
            .post(
                &format!("{subject}/versions"),
                json!({"schema": "{not avro"}),
            )
            .await,
        422,
        42201,
    );
    assert_error(
        &admin
            .post(
                &format!("{subject}/versions"),
                json!({"schema": v1(), "schemaType": "PROTOBUF"}),
            )
            .await,
        422,
        42201,
    );
    assert_error(
        &admin
            .put("/config", json!({"compatibility": "SIDEWAYS"}))
            .await,
        422,
        42203,
    );
    assert_error(&admin.get("/config/readings-value").await, 404, 40408);

    // Compatibility levels: BACKWARD by default; a subject of its own; NONE lets anything in.
    assert_eq!(
        admin.get("/config").await.1,
        json!({"compatibilityLevel": "BACKWARD"})
    );
    assert_eq!(
        admin
            .put("/config/readings-value", json!({"compatibility": "NONE"}))
            .await
            .1,
        json!({"compatibility": "NONE"})
    );
    assert_eq!(
        admin.get("/config/readings-value").await.1,
        json!({"compatibilityLevel": "NONE"})
    );
    assert_eq!(
        admin
            .get("/config/other-value?defaultToGlobal=true")
            .await
            .1,
        json!({"compatibilityLevel": "BACKWARD"})
    );
    let third = admin
        .post(
            &format!("{subject}/versions"),
            json!({"schema": breaking()}),
        )
        .await;
    assert_eq!(third.0, StatusCode::OK, "NONE takes it: {}", third.1);
    let id3 = third.1["id"].as_u64().expect("id");
    assert_eq!(
        admin
            .put("/config", json!({"compatibilityLevel": "FULL_TRANSITIVE"}))
            .await
            .1,
        json!({"compatibility": "FULL_TRANSITIVE"})
    );

    // Who: an organisation's view token reads, as bearer or as the basic-auth password;
    // changes need the deployment admin token.
    let (status, token) = h
        .post(
            "/v1/access-tokens",
            json!({"name": "platform reader", "roles": ["integration:view"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{token}");
    let view_token = token["token"].as_str().expect("token").to_owned();
    for auth in [Auth::Bearer(&view_token), Auth::Basic(&view_token)] {
        let reader = Registry { h: &h, auth };
        assert_eq!(
            reader.get(&format!("{subject}/versions")).await.1,
            json!([1, 2, 3])
        );
        let refused = reader
            .post(&format!("{subject}/versions"), json!({"schema": v1()}))
            .await;
        assert_eq!(refused.0, StatusCode::FORBIDDEN, "{}", refused.1);
        let refused = reader
            .put("/config", json!({"compatibility": "NONE"}))
            .await;
        assert_eq!(refused.0, StatusCode::FORBIDDEN, "{}", refused.1);
    }
    let nobody = Registry {
        h: &h,
        auth: Auth::Basic("erpt_not-a-token"),
    };
    assert_eq!(nobody.get("/subjects").await.0, StatusCode::UNAUTHORIZED);
    let basic_admin = Registry {
        h: &h,
        auth: Auth::Basic(&admin_token),
    };
    assert_eq!(
        basic_admin
            .post(&format!("{subject}/versions"), json!({"schema": v1()}))
            .await
            .1,
        json!({"id": id1}),
        "the admin token as the basic-auth password registers"
    );

    // A restart folds erp.schemas again: the same subjects, versions, ids and levels.
    h.standalone.stop().await.expect("clean stop");
    let h = Harness::start_with(options(dir.path())).await;
    let admin_token = h.standalone.admin_token.clone();
    let admin = Registry {
        h: &h,
        auth: Auth::Bearer(&admin_token),
    };
    assert_eq!(
        admin.get(&format!("{subject}/versions")).await.1,
        json!([1, 2, 3])
    );
    assert_eq!(
        admin.get(&format!("{subject}/versions/3")).await.1["id"],
        json!(id3)
    );
    assert_eq!(
        admin.get("/config").await.1,
        json!({"compatibilityLevel": "FULL_TRANSITIVE"})
    );
    assert_eq!(
        admin.get("/config/readings-value").await.1,
        json!({"compatibilityLevel": "NONE"})
    );
    let again = admin
        .post(&format!("{subject}/versions"), json!({"schema": v2()}))
        .await;
    assert_eq!(
        again.1,
        json!({"id": id2}),
        "still idempotent after the restart"
    );
    let fresh = admin
        .post(
            "/subjects/meters-value/versions",
            json!({"schema": schema(json!([{"name": "n", "type": "long"}]))}),
        )
        .await;
    let fresh_id = fresh.1["id"].as_u64().expect("id");
    assert!(
        fresh_id > id3,
        "ids are never given out twice: {fresh_id} after {id3}"
    );
    h.standalone.stop().await.expect("clean stop");
}
