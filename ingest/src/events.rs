//! `POST /v3/erp/updates/events`, `POST /v2/erp/updates/events` and the legacy
//! `POST /v1/erp/updates/events` (epilot spec §2.3).
//!
//! The request is validated as a whole (any schema error answers 400 naming the field), the
//! integration must exist (404; v1 names an app/component pair instead, resolved through the
//! integration's app mapping, `APP_MAPPING_NOT_FOUND` when none), then every event gets an `evt_…` id and is written to
//! `erp.inbound.events` with the idempotent producer; only when Kafka has acknowledged them is
//! the per-event `results[]` answered. Events of one integration share a record key (or one per
//! `group_id`), which keeps their order through the pipeline.

use actix_web::{HttpResponse, web};
use serde_json::{Map, Value};

use erp_runtime::config::Route;
use erp_schemas::ids::new_event_id;
use erp_schemas::inbound::{InboundEventRecord, PayloadFormat};
use erp_schemas::timestamp::{now_millis, parse_rfc3339};

use crate::queue::{self, Queued};
use crate::state::IngestState;
use erp_http::ApiError;
use erp_http::Caller;
use erp_http::body::uuid_field;
use erp_http::body::{is_dedup_id, is_slug, kind, object, opt_string, read_json};

/// Most events per request (epilot's documented limit).
pub const MAX_EVENTS: usize = 100;

/// Which ingest endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `app_id` + `component_id` + `meta`, events as v2.
    V1,
    V2,
    V3,
}

impl Version {
    fn label(self) -> &'static str {
        match self {
            Version::V1 => "v1",
            Version::V2 => "v2",
            Version::V3 => "v3",
        }
    }
}

/// `POST /v3/erp/updates/events`
pub async fn post_v3(
    state: web::Data<IngestState>,
    caller: Caller,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    ingest(state, caller, body, Version::V3).await
}

/// `POST /v1/erp/updates/events` (deprecated by epilot, kept for legacy middleware)
pub async fn post_v1(
    state: web::Data<IngestState>,
    caller: Caller,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    ingest(state, caller, body, Version::V1).await
}

/// `POST /v2/erp/updates/events`
pub async fn post_v2(
    state: web::Data<IngestState>,
    caller: Caller,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    ingest(state, caller, body, Version::V2).await
}

/// One validated event, before it gets its id.
#[derive(Debug, Clone, PartialEq)]
pub struct EventInput {
    pub use_case_slug: Option<String>,
    pub event_name: Option<String>,
    pub event_type: Option<String>,
    pub timestamp: String,
    pub format: PayloadFormat,
    pub payload: String,
    pub deduplication_id: Option<String>,
    pub group_id: Option<String>,
    pub correlation_id: Option<String>,
}

/// Which integration a request is for.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// v2/v3: named directly.
    Integration(String),
    /// v1: through the app mapping of this pair (canonical UUIDs).
    App {
        app_id: String,
        component_id: String,
    },
}

/// A validated request.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestInput {
    pub target: Target,
    /// The request's `meta` object, kept with every event.
    pub meta: Option<Map<String, Value>>,
    pub correlation_id: Option<String>,
    pub events: Vec<EventInput>,
}

async fn ingest(
    state: web::Data<IngestState>,
    caller: Caller,
    body: web::Payload,
    version: Version,
) -> Result<HttpResponse, ApiError> {
    let outcome = accept(&state, &caller, body, version).await;
    if let Err(error) = &outcome {
        state
            .metrics
            .rejected
            .with_label_values(&[error.code])
            .inc();
    }
    outcome
}

async fn accept(
    state: &IngestState,
    caller: &Caller,
    body: web::Payload,
    version: Version,
) -> Result<HttpResponse, ApiError> {
    let body = read_json(body, state.body_limit).await?;
    let request = parse_request(&body, version)?;
    crate::limits::check_events(
        request
            .events
            .iter()
            .map(|e| (e.format, e.payload.as_str())),
        &state.payload_limits,
    )?;
    let config = state.view().snapshot();
    let integration_id = match &request.target {
        Target::Integration(id) => config
            .integration(&caller.org_id, id)
            .map(|integration| integration.id.clone())
            .ok_or_else(|| ApiError::integration_not_found(id))?,
        Target::App {
            app_id,
            component_id,
        } => config
            .app_mapping(&caller.org_id, app_id, component_id)
            .filter(|m| {
                config
                    .integration(&caller.org_id, &m.integration_id)
                    .is_some()
            })
            .map(|m| m.integration_id.clone())
            .ok_or_else(|| {
                ApiError::not_found(
                    "APP_MAPPING_NOT_FOUND",
                    format!(
                        "app {app_id} component {component_id} is not mapped to an integration; \
                         map it with PUT /v1/integrations/{{integrationId}}/app-mapping"
                    ),
                )
            })?,
    };

    let (app_id, component_id) = match &request.target {
        Target::App {
            app_id,
            component_id,
        } => (Some(app_id.clone()), Some(component_id.clone())),
        Target::Integration(_) => (None, None),
    };
    let received_at = now_millis();
    let topic = state.topics.inbound_events();
    let mut pending = Vec::new();
    for event in request.events {
        let event_id = new_event_id();
        let route = config.route(
            &caller.org_id,
            &integration_id,
            event.use_case_slug.as_deref(),
            event.event_name.as_deref(),
        );
        let (status, message) = match route {
            Route::Matched(_) => ("success", "Event queued for processing".to_owned()),
            Route::Disabled(entry) => (
                "ignored",
                format!(
                    "use case {:?} is disabled; the event is stored and can be replayed",
                    entry.use_case.name
                ),
            ),
            Route::NotFound => (
                "ignored",
                "no inbound use case matches; the event is stored and can be replayed".to_owned(),
            ),
        };
        let record = InboundEventRecord {
            correlation_id: event
                .correlation_id
                .clone()
                .or_else(|| request.correlation_id.clone())
                .unwrap_or_else(|| event_id.clone()),
            event_id: event_id.clone(),
            org_id: caller.org_id.clone(),
            integration_id: integration_id.clone(),
            api_version: version.label().to_owned(),
            app_id: app_id.clone(),
            component_id: component_id.clone(),
            meta: request.meta.clone(),
            received_at,
            group_id: event.group_id,
            use_case_slug: event.use_case_slug,
            event_name: event.event_name,
            event_type: event.event_type,
            timestamp: event.timestamp,
            format: event.format,
            payload: event.payload,
            deduplication_id: event.deduplication_id,
            replay_of: None,
        };
        let bytes = erp_schemas::error::encode("inbound event", &record)
            .map_err(|e| ApiError::internal("INTERNAL_ERROR", e.to_string()))?;
        pending.push(Queued {
            event_id,
            key: record.key(),
            bytes,
            status,
            message,
        });
    }

    queue::queue(state, &topic, pending, |result| {
        let label = result["status"].as_str().unwrap_or("error");
        state.metrics.events.with_label_values(&[label]).inc();
    })
    .await
}

/// Validates an ingest request body.
pub fn parse_request(body: &Value, version: Version) -> Result<RequestInput, ApiError> {
    let map = object(body, "request body")?;
    let target = match version {
        Version::V1 => {
            // Required by epilot's v1 schema (it carries the request's correlation id).
            if map.get("meta").is_none_or(Value::is_null) {
                return Err(ApiError::bad_request("meta is required"));
            }
            Target::App {
                app_id: uuid_field(map, "app_id")?,
                component_id: uuid_field(map, "component_id")?,
            }
        }
        Version::V2 | Version::V3 => Target::Integration(match map.get("integration_id") {
            Some(Value::String(id)) if uuid::Uuid::parse_str(id).is_ok() => id.clone(),
            Some(Value::String(id)) => {
                return Err(ApiError::bad_request(format!(
                    "integration_id must be a UUID, got {id:?}"
                )));
            }
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "integration_id must be a string, not {}",
                    kind(other)
                )));
            }
            None => return Err(ApiError::bad_request("integration_id is required")),
        }),
    };
    // v3 defines `correlation_id`; epilot's own examples send `meta.correlation_id`.
    let meta = match map.get("meta") {
        Some(Value::Object(meta)) => Some(meta),
        _ => None,
    };
    let meta_correlation = match map.get("meta") {
        None | Some(Value::Null) => None,
        Some(Value::Object(meta)) => opt_string(meta, "meta.", "correlation_id", 0, 1024)?,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "meta must be an object, not {}",
                kind(other)
            )));
        }
    };
    let correlation_id = opt_string(map, "", "correlation_id", 0, 1024)?
        .or(meta_correlation)
        .filter(|c| !c.is_empty())
        .map(str::to_owned);
    let group_id = match version {
        Version::V3 => opt_string(map, "", "group_id", 1, 128)?.map(str::to_owned),
        Version::V1 | Version::V2 => None,
    };
    let events = match map.get("events") {
        Some(Value::Array(events)) => events,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "events must be an array, not {}",
                kind(other)
            )));
        }
        None => return Err(ApiError::bad_request("events is required")),
    };
    if events.len() > MAX_EVENTS {
        return Err(ApiError::bad_request_code(
            "TOO_MANY_EVENTS",
            format!(
                "events has {} items; at most {MAX_EVENTS} are accepted per request",
                events.len()
            ),
        ));
    }
    let events = events
        .iter()
        .enumerate()
        .map(|(index, event)| parse_event(index, event, version, group_id.as_deref()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RequestInput {
        target,
        meta: meta.cloned(),
        correlation_id,
        events,
    })
}

fn parse_event(
    index: usize,
    value: &Value,
    version: Version,
    request_group: Option<&str>,
) -> Result<EventInput, ApiError> {
    let path = format!("events[{index}].");
    let event = value
        .as_object()
        .ok_or_else(|| ApiError::bad_request(format!("events[{index}] must be an object")))?;
    let (use_case_slug, event_name, event_type) = match version {
        Version::V3 => {
            let slug = opt_string(event, &path, "use_case_slug", 1, 255)?;
            if let Some(slug) = slug
                && !is_slug(slug)
            {
                return Err(ApiError::bad_request(format!(
                    "{path}use_case_slug {slug:?} must match ^[a-z0-9][a-z0-9_-]*$"
                )));
            }
            let name = opt_string(event, &path, "event_name", 1, 255)?;
            if slug.is_none() && name.is_none() {
                return Err(ApiError::bad_request(format!(
                    "{path}use_case_slug or {path}event_name is required"
                )));
            }
            // `event_type` is unused on v3 but epilot's examples still send it: accepted and
            // ignored.
            (slug.map(str::to_owned), name.map(str::to_owned), None)
        }
        Version::V1 | Version::V2 => {
            let object_type = opt_string(event, &path, "object_type", 1, 255)?
                .ok_or_else(|| ApiError::bad_request(format!("{path}object_type is required")))?;
            let event_type = match event.get("event_type") {
                Some(Value::String(t)) if ["CREATE", "UPDATE", "DELETE"].contains(&t.as_str()) => {
                    t.clone()
                }
                Some(other) => {
                    return Err(ApiError::bad_request(format!(
                        "{path}event_type must be CREATE, UPDATE or DELETE, got {other}"
                    )));
                }
                None => {
                    return Err(ApiError::bad_request(format!(
                        "{path}event_type is required"
                    )));
                }
            };
            (None, Some(object_type.to_owned()), Some(event_type))
        }
    };
    let timestamp = match event.get("timestamp") {
        Some(Value::String(t)) if parse_rfc3339(t).is_some() => t.clone(),
        Some(Value::String(t)) => {
            return Err(ApiError::bad_request(format!(
                "{path}timestamp {t:?} is not an RFC 3339 date-time (e.g. 2025-05-01T08:30:00Z)"
            )));
        }
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "{path}timestamp must be a string, not {}",
                kind(other)
            )));
        }
        None => {
            return Err(ApiError::bad_request(format!(
                "{path}timestamp is required"
            )));
        }
    };
    let format = match event.get("format") {
        None => PayloadFormat::Json,
        Some(Value::String(f)) if f == "json" => PayloadFormat::Json,
        Some(Value::String(f)) if f == "xml" => PayloadFormat::Xml,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "{path}format must be \"json\" or \"xml\", got {other}"
            )));
        }
    };
    let payload = parse_payload(&path, event, format)?;
    let deduplication_id = opt_string(event, &path, "deduplication_id", 1, 255)?;
    if let Some(id) = deduplication_id
        && !is_dedup_id(id)
    {
        return Err(ApiError::bad_request(format!(
            "{path}deduplication_id {id:?} must match ^[a-zA-Z0-9_-]+$"
        )));
    }
    let group_id = match version {
        Version::V3 => opt_string(event, &path, "group_id", 1, 128)?
            .or(request_group)
            .map(str::to_owned),
        Version::V1 | Version::V2 => None,
    };
    let correlation_id = opt_string(event, &path, "correlation_id", 0, 1024)?
        .filter(|c| !c.is_empty())
        .map(str::to_owned);
    Ok(EventInput {
        use_case_slug,
        event_name,
        event_type,
        timestamp,
        format,
        payload,
        deduplication_id: deduplication_id.map(str::to_owned),
        group_id,
        correlation_id,
    })
}

fn parse_payload(
    path: &str,
    event: &Map<String, Value>,
    format: PayloadFormat,
) -> Result<String, ApiError> {
    match event.get("payload") {
        Some(Value::String(text)) => {
            if text.chars().count() < 2 {
                return Err(ApiError::bad_request(format!(
                    "{path}payload must be a serialized payload of at least 2 characters"
                )));
            }
            if format == PayloadFormat::Json
                && let Err(error) = serde_json::from_str::<serde::de::IgnoredAny>(text)
            {
                return Err(ApiError::bad_request(format!(
                    "{path}payload is not valid JSON (format is \"json\"): {error}"
                )));
            }
            Ok(text.clone())
        }
        Some(Value::Object(object)) => {
            if object.is_empty() {
                return Err(ApiError::bad_request(format!(
                    "{path}payload must not be an empty object"
                )));
            }
            if format == PayloadFormat::Xml {
                return Err(ApiError::bad_request(format!(
                    "{path}payload must be a string when format is \"xml\""
                )));
            }
            serde_json::to_string(object)
                .map_err(|e| ApiError::bad_request(format!("{path}payload: {e}")))
        }
        Some(other) => Err(ApiError::bad_request(format!(
            "{path}payload must be a string or an object, not {}",
            kind(other)
        ))),
        None => Err(ApiError::bad_request(format!("{path}payload is required"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ID: &str = "a1b2c3d4-e5f6-7890-abcd-ef1234567890";

    fn event() -> Value {
        json!({"use_case_slug": "customer-sync", "timestamp": "2024-01-15T10:35:00Z",
               "format": "json", "payload": "{\"id\":1}"})
    }

    fn error_of(body: Value, version: Version) -> String {
        parse_request(&body, version).unwrap_err().message
    }

    #[test]
    fn accepts_the_documented_v3_example_with_meta_and_event_type() {
        let body = json!({"integration_id": ID, "meta": {"correlation_id": "c-1"}, "events": [{
            "event_type": "UPDATE", "use_case_slug": "customer-sync",
            "timestamp": "2024-01-15T10:35:00Z", "format": "json",
            "payload": "{\"customerId\":\"C001\"}", "deduplication_id": "customer-C001-update-1"}]});
        let request = parse_request(&body, Version::V3).expect("valid");
        assert_eq!(request.correlation_id.as_deref(), Some("c-1"));
        assert_eq!(
            request.events[0].deduplication_id.as_deref(),
            Some("customer-C001-update-1")
        );
    }

    #[test]
    fn object_payloads_are_serialised_and_groups_inherited() {
        let body = json!({"integration_id": ID, "group_id": "g1", "events": [
            {"event_name": "business_partner", "timestamp": "2024-01-15T10:35:00+01:00",
             "payload": {"a": 1}},
            {"event_name": "x", "timestamp": "2024-01-15T10:35:00Z", "payload": {"a": 1}, "group_id": "g2"}]});
        let request = parse_request(&body, Version::V3).expect("valid");
        assert_eq!(request.events[0].payload, "{\"a\":1}");
        assert_eq!(request.events[0].group_id.as_deref(), Some("g1"));
        assert_eq!(request.events[1].group_id.as_deref(), Some("g2"));
        assert_eq!(request.events[0].format, PayloadFormat::Json);
    }

    #[test]
    fn names_the_field_at_fault() {
        let mut bad = event();
        bad["timestamp"] = json!("15.01.2024");
        let text = error_of(
            json!({"integration_id": ID, "events": [event(), bad]}),
            Version::V3,
        );
        assert!(text.contains("events[1].timestamp"), "{text}");

        let mut bad = event();
        bad["deduplication_id"] = json!("has space");
        assert!(
            error_of(json!({"integration_id": ID, "events": [bad]}), Version::V3)
                .contains("deduplication_id")
        );

        let mut bad = event();
        bad.as_object_mut().map(|e| e.remove("use_case_slug"));
        assert!(
            error_of(json!({"integration_id": ID, "events": [bad]}), Version::V3)
                .contains("event_name")
        );

        let mut bad = event();
        bad["payload"] = json!({});
        assert!(
            error_of(json!({"integration_id": ID, "events": [bad]}), Version::V3)
                .contains("empty object")
        );

        let mut bad = event();
        bad["payload"] = json!("{not json");
        assert!(
            error_of(json!({"integration_id": ID, "events": [bad]}), Version::V3)
                .contains("not valid JSON")
        );

        assert!(
            error_of(json!({"integration_id": "nope", "events": []}), Version::V3).contains("UUID")
        );
        assert!(
            error_of(json!({"events": []}), Version::V3).contains("integration_id is required")
        );
        assert!(
            error_of(json!({"integration_id": ID, "events": {}}), Version::V3).contains("array")
        );
        assert!(error_of(json!([]), Version::V3).contains("object"));
    }

    #[test]
    fn more_than_100_events_is_rejected() {
        let events: Vec<Value> = (0..101).map(|_| event()).collect();
        let error = parse_request(
            &json!({"integration_id": ID, "events": events}),
            Version::V3,
        )
        .unwrap_err();
        assert_eq!(error.code, "TOO_MANY_EVENTS");
        assert_eq!(error.status.as_u16(), 400);
    }

    #[test]
    fn v1_names_an_app_component_pair_and_needs_meta() {
        let event = json!({"object_type": "bp", "event_type": "CREATE",
            "timestamp": "2025-05-01T08:30:00Z", "format": "json", "payload": "{\"id\":1}"});
        let body = json!({"app_id": "123E4567-E89B-12D3-A456-426614174000",
            "component_id": "123e4567-e89b-12d3-a456-426614174001",
            "meta": {"correlation_id": "req-1"}, "events": [event.clone()]});
        let request = parse_request(&body, Version::V1).expect("valid");
        assert_eq!(
            request.target,
            Target::App {
                app_id: "123e4567-e89b-12d3-a456-426614174000".into(),
                component_id: "123e4567-e89b-12d3-a456-426614174001".into(),
            },
            "ids in canonical form"
        );
        assert_eq!(request.correlation_id.as_deref(), Some("req-1"));
        assert_eq!(request.events[0].event_type.as_deref(), Some("CREATE"));
        assert_eq!(request.events[0].event_name.as_deref(), Some("bp"));

        let mut no_meta = body.clone();
        no_meta.as_object_mut().map(|m| m.remove("meta"));
        assert!(error_of(no_meta, Version::V1).contains("meta is required"));
        let mut bad_app = body.clone();
        bad_app["app_id"] = json!("app-1");
        assert!(error_of(bad_app, Version::V1).contains("app_id must be a UUID"));
        let mut no_component = body.clone();
        no_component
            .as_object_mut()
            .map(|m| m.remove("component_id"));
        assert!(error_of(no_component, Version::V1).contains("component_id is required"));
        let mut v3_event = body;
        v3_event["events"] = json!([{"use_case_slug": "x", "timestamp": "2025-05-01T08:30:00Z",
            "payload": {"a": 1}}]);
        assert!(error_of(v3_event, Version::V1).contains("events[0].object_type is required"));
    }

    #[test]
    fn v2_needs_object_type_and_event_type() {
        let body = json!({"integration_id": ID, "events": [{"object_type": "bp", "event_type": "UPDATE",
            "timestamp": "2024-01-15T10:35:00Z", "format": "json", "payload": "{}x"}]});
        assert!(error_of(body, Version::V2).contains("not valid JSON"));
        let body = json!({"integration_id": ID, "events": [{"object_type": "bp",
            "timestamp": "2024-01-15T10:35:00Z", "format": "json", "payload": {"a": 1}}]});
        assert!(error_of(body, Version::V2).contains("event_type"));
        let body = json!({"integration_id": ID, "events": [{"object_type": "bp", "event_type": "DELETE",
            "timestamp": "2024-01-15T10:35:00Z", "format": "json", "payload": {"a": 1}}]});
        let request = parse_request(&body, Version::V2).expect("valid");
        assert_eq!(request.events[0].event_name.as_deref(), Some("bp"));
        assert_eq!(request.events[0].event_type.as_deref(), Some("DELETE"));
    }
}
