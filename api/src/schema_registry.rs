//! The Confluent Schema Registry REST subset that Kafka clients call, under `/schema-registry`
//! on the API listener, backed by [`SchemaStore`] (the compacted topic `erp.schemas`). An
//! extension of ours: not part of epilot's API, so not in the OpenAPI document.
//!
//! Answers are Confluent's: `application/vnd.schemaregistry.v1+json`, errors as
//! `{"error_code", "message"}` with its codes. Bodies are read whatever their content type
//! (clients send Confluent's, `application/json` or none), unknown body fields and query
//! parameters that newer clients send are ignored. Reads take the API's bearer token (any
//! organisation's, with view) or basic auth with the token as the password; changes take the
//! deployment admin token (`erp_http::auth::ROUTES`).

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde_json::{Value, json};

use erp_http::Caller;
use erp_runtime::RuntimeError;
use erp_runtime::schema_store::SchemaStore;
use erp_schemas::registry::{
    self, ConfigRequest, RegistryError, SchemaRequest, config_json, config_update_json,
};

/// Confluent's content type of every answer.
pub const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// Where the routes live.
pub const BASE: &str = "/schema-registry";

/// The served registry, as app data of the routes.
pub struct RegistryService {
    /// The registry's state and log.
    pub store: Arc<SchemaStore>,
}

type Query = web::Query<HashMap<String, String>>;
type Store = web::Data<RegistryService>;

/// Adds the registry's routes. Needs `web::Data<RegistryService>` and `web::Data<erp_http::Access>`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/schema-registry/subjects", web::get().to(subjects))
        .route(
            "/schema-registry/subjects/{subject}",
            web::post().to(lookup),
        )
        .route(
            "/schema-registry/subjects/{subject}/versions",
            web::get().to(versions),
        )
        .route(
            "/schema-registry/subjects/{subject}/versions",
            web::post().to(register),
        )
        .route(
            "/schema-registry/subjects/{subject}/versions/{version}",
            web::get().to(version),
        )
        .route(
            "/schema-registry/subjects/{subject}/versions/{version}/schema",
            web::get().to(version_schema),
        )
        .route("/schema-registry/schemas/ids/{id}", web::get().to(by_id))
        .route(
            "/schema-registry/schemas/ids/{id}/schema",
            web::get().to(by_id_schema),
        )
        .route("/schema-registry/schemas/types", web::get().to(types))
        .route(
            "/schema-registry/compatibility/subjects/{subject}/versions",
            web::post().to(compatibility_latest),
        )
        .route(
            "/schema-registry/compatibility/subjects/{subject}/versions/{version}",
            web::post().to(compatibility_version),
        )
        .route("/schema-registry/config", web::get().to(get_global_config))
        .route("/schema-registry/config", web::put().to(put_global_config))
        .route(
            "/schema-registry/config/{subject}",
            web::get().to(get_subject_config),
        )
        .route(
            "/schema-registry/config/{subject}",
            web::put().to(put_subject_config),
        )
        .route("/schema-registry/mode", web::get().to(mode));
}

fn answer(status: StatusCode, body: &Value) -> HttpResponse {
    HttpResponse::build(status)
        .content_type(CONTENT_TYPE)
        .body(body.to_string())
}

fn ok(body: &Value) -> HttpResponse {
    answer(StatusCode::OK, body)
}

fn refused(error: &RegistryError) -> HttpResponse {
    let status =
        StatusCode::from_u16(error.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    answer(status, &error.to_json())
}

/// A failure of the store: Confluent's 50001 (store error) or 50002 (timeout).
fn failed(error: RuntimeError) -> HttpResponse {
    match error {
        RuntimeError::Registry(error) => refused(&error),
        RuntimeError::Timeout(message) => answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({"error_code": 50002, "message": message}),
        ),
        other => answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({"error_code": 50001, "message": other.to_string()}),
        ),
    }
}

fn flag(query: &Query, name: &str) -> bool {
    query
        .get(name)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

fn respond<T>(result: Result<T, RegistryError>, body: impl FnOnce(T) -> Value) -> HttpResponse {
    match result {
        Ok(value) => ok(&body(value)),
        Err(error) => refused(&error),
    }
}

/// The body as `T`, whatever the content type; unknown fields ignored. A body that is no JSON
/// (or misses a required field) is 422 42201 for schemas, as Confluent answers unparsable input.
fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, RegistryError> {
    serde_json::from_slice(bytes).map_err(|e| RegistryError::InvalidSchema {
        reason: format!("request body: {e}"),
    })
}

async fn subjects(_: Caller, store: Store, query: Query) -> HttpResponse {
    let prefix = query.get("subjectPrefix").map(String::as_str);
    let found = store
        .store
        .read(|r| r.subjects(flag(&query, "deleted"), prefix));
    ok(&json!(found))
}

async fn versions(_: Caller, store: Store, path: web::Path<String>, query: Query) -> HttpResponse {
    let found = store
        .store
        .read(|r| r.versions(&path, flag(&query, "deleted")));
    respond(found, |v| json!(v))
}

async fn version(
    _: Caller,
    store: Store,
    path: web::Path<(String, String)>,
    query: Query,
) -> HttpResponse {
    let (subject, version) = path.into_inner();
    let found = store
        .store
        .read(|r| r.version(&subject, &version, flag(&query, "deleted")));
    respond(found, |v| v.to_json())
}

/// The schema text itself (as JSON, not wrapped in a string).
async fn version_schema(
    _: Caller,
    store: Store,
    path: web::Path<(String, String)>,
    query: Query,
) -> HttpResponse {
    let (subject, version) = path.into_inner();
    let found = store
        .store
        .read(|r| r.version(&subject, &version, flag(&query, "deleted")));
    match found {
        Ok(found) => raw_schema(&found.schema),
        Err(error) => refused(&error),
    }
}

fn raw_schema(text: &str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(CONTENT_TYPE)
        .body(text.to_owned())
}

async fn by_id(_: Caller, store: Store, path: web::Path<String>) -> HttpResponse {
    match parse_id(&path) {
        Ok(id) => respond(store.store.read(|r| r.schema_by_id(id)), |s| s.to_json()),
        Err(error) => refused(&error),
    }
}

async fn by_id_schema(_: Caller, store: Store, path: web::Path<String>) -> HttpResponse {
    match parse_id(&path).and_then(|id| store.store.read(|r| r.schema_by_id(id))) {
        Ok(found) => raw_schema(&found.schema),
        Err(error) => refused(&error),
    }
}

/// An id that is no number names no schema (40403).
fn parse_id(text: &str) -> Result<u32, RegistryError> {
    text.parse()
        .map_err(|_| RegistryError::SchemaNotFound { id: None })
}

async fn types(_: Caller) -> HttpResponse {
    ok(&json!(registry::SCHEMA_TYPES))
}

async fn mode(_: Caller) -> HttpResponse {
    ok(&json!({"mode": registry::MODE}))
}

async fn lookup(
    _: Caller,
    store: Store,
    path: web::Path<String>,
    query: Query,
    bytes: web::Bytes,
) -> HttpResponse {
    let request: SchemaRequest = match body(&bytes) {
        Ok(request) => request,
        Err(error) => return refused(&error),
    };
    let found = store
        .store
        .read(|r| r.lookup(&path, &request, flag(&query, "deleted")));
    respond(found, |v| v.to_json())
}

/// Idempotent: a schema already registered under the subject answers its id again.
async fn register(
    _admin: Caller,
    store: Store,
    path: web::Path<String>,
    bytes: web::Bytes,
) -> HttpResponse {
    let request: SchemaRequest = match body(&bytes) {
        Ok(request) => request,
        Err(error) => return refused(&error),
    };
    let subject = path.into_inner();
    let registered = store
        .store
        .change(|r| {
            r.register(&subject, &request)
                .map(|registration| (registration.to_json(), registration.records))
        })
        .await;
    match registered {
        Ok(body) => ok(&body),
        Err(error) => failed(error),
    }
}

async fn compatibility(
    store: &Store,
    subject: &str,
    version: Option<&str>,
    query: &Query,
    bytes: &[u8],
) -> HttpResponse {
    let request: SchemaRequest = match body(bytes) {
        Ok(request) => request,
        Err(error) => return refused(&error),
    };
    let verbose = flag(query, "verbose");
    let tested = store
        .store
        .read(|r| r.test_compatibility(subject, version, &request));
    respond(tested, |answer| answer.to_json(verbose))
}

async fn compatibility_latest(
    _: Caller,
    store: Store,
    path: web::Path<String>,
    query: Query,
    bytes: web::Bytes,
) -> HttpResponse {
    compatibility(&store, &path, None, &query, &bytes).await
}

async fn compatibility_version(
    _: Caller,
    store: Store,
    path: web::Path<(String, String)>,
    query: Query,
    bytes: web::Bytes,
) -> HttpResponse {
    let (subject, version) = path.into_inner();
    compatibility(&store, &subject, Some(&version), &query, &bytes).await
}

async fn get_global_config(_: Caller, store: Store) -> HttpResponse {
    respond(store.store.read(|r| r.config(None, true)), config_json)
}

async fn get_subject_config(
    _: Caller,
    store: Store,
    path: web::Path<String>,
    query: Query,
) -> HttpResponse {
    let default_to_global = flag(&query, "defaultToGlobal");
    respond(
        store
            .store
            .read(|r| r.config(Some(&path), default_to_global)),
        config_json,
    )
}

async fn put_config(store: &Store, subject: Option<&str>, bytes: &[u8]) -> HttpResponse {
    let request: ConfigRequest = match serde_json::from_slice(bytes) {
        Ok(request) => request,
        Err(e) => {
            return refused(&RegistryError::InvalidCompatibilityLevel {
                level: format!("(request body: {e})"),
            });
        }
    };
    let changed = store
        .store
        .change(|r| {
            let level = request.level()?;
            Ok((
                config_update_json(level),
                vec![r.set_config(subject, level)],
            ))
        })
        .await;
    match changed {
        Ok(body) => ok(&body),
        Err(error) => failed(error),
    }
}

async fn put_global_config(_admin: Caller, store: Store, bytes: web::Bytes) -> HttpResponse {
    put_config(&store, None, &bytes).await
}

async fn put_subject_config(
    _admin: Caller,
    store: Store,
    path: web::Path<String>,
    bytes: web::Bytes,
) -> HttpResponse {
    put_config(&store, Some(&path), &bytes).await
}
