//! The schema catalog, read-only (`/v1/schemas/...`, our extension): the core event catalog
//! (names, versions, JSON Schemas, the envelope) and the core entity schemas, as the processor and
//! the ingest apply them. The catalog is the deployment's, the same for every organisation, and
//! needs the `view` permission like any configuration read.

use actix_web::{HttpResponse, web};
use serde_json::{Value, json};

use erp_http::ApiError;
use erp_http::auth::Caller;
use erp_schemas::catalog::{self, EntityCatalog, EventCatalog, METER_READING};

fn events() -> Result<&'static EventCatalog, ApiError> {
    catalog::try_events().map_err(|e| ApiError::internal("SCHEMA_CATALOG_BROKEN", e.to_string()))
}

fn entities() -> Result<&'static EntityCatalog, ApiError> {
    catalog::try_entities().map_err(|e| ApiError::internal("SCHEMA_CATALOG_BROKEN", e.to_string()))
}

/// `GET /v1/schemas/events`: every catalog event with its versions, and the envelope schema.
pub async fn list_events(_caller: Caller) -> Result<HttpResponse, ApiError> {
    let catalog = events()?;
    let mut items = Vec::new();
    for name in catalog.names() {
        let versions = catalog.versions(name).unwrap_or_default();
        let Some(latest) = versions.last() else {
            continue;
        };
        items.push(json!({
            "name": name,
            "title": latest.title(),
            "description": latest.description(),
            "latest_version": latest.version(),
            "versions": versions.iter().map(|v| v.version()).collect::<Vec<_>>(),
        }));
    }
    Ok(HttpResponse::Ok().json(json!({"events": items, "envelope": catalog.envelope()})))
}

/// `GET /v1/schemas/events/{name}`: one event's versions, each with its JSON Schema (oldest
/// first).
pub async fn get_event(_caller: Caller, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let name = path.into_inner();
    let catalog = events()?;
    let versions = catalog.versions(&name).map_err(|_| {
        ApiError::not_found(
            "SCHEMA_NOT_FOUND",
            format!("{name:?} is not a catalog event"),
        )
    })?;
    let latest = versions.last().map(|v| v.version());
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| {
            json!({
                "version": v.version(),
                "title": v.title(),
                "description": v.description(),
                "schema": v.schema(),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "name": name,
        "latest_version": latest,
        "versions": versions,
    })))
}

/// `GET /v1/schemas/entities`: the core entity schemas and the meter reading schema.
pub async fn list_entities(_caller: Caller) -> Result<HttpResponse, ApiError> {
    let catalog = entities()?;
    let items: Vec<Value> = catalog
        .slugs()
        .chain(std::iter::once(METER_READING))
        .filter_map(|slug| catalog.get(slug))
        .map(|schema| {
            json!({
                "slug": schema.slug(),
                "kind": if schema.slug() == METER_READING { "meter_reading" } else { "core_entity" },
                "title": schema.schema().get("title"),
                "attributes": schema.attribute_names().collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({"entities": items})))
}

/// `GET /v1/schemas/entities/{slug}`: one entity schema (bundled: every definition it uses is
/// under `$defs`).
pub async fn get_entity(
    _caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let slug = path.into_inner();
    let schema = entities()?.get(&slug).ok_or_else(|| {
        ApiError::not_found(
            "SCHEMA_NOT_FOUND",
            format!("{slug:?} is not a core entity schema"),
        )
    })?;
    Ok(HttpResponse::Ok().json(json!({
        "slug": schema.slug(),
        "kind": if slug == METER_READING { "meter_reading" } else { "core_entity" },
        "schema": schema.schema(),
    })))
}
