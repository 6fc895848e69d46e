//! `/v1/use-case-templates[/{slug}]` and `POST /v1/integrations/{id}/use-cases/from-template`
//! (our extension): the standard use cases of `erp_schemas::templates` through the API, and a
//! use case created from one by filling its placeholders. The create goes through
//! [`create_use_case`], the path of `POST …/use-cases`, so validation, slug clashes, history and
//! the configuration event are the same whichever way a use case was made.

use actix_web::{HttpResponse, web};
use serde_json::{Map, Value, json};

use erp_schemas::templates::{self, TemplateError, TemplateKind, UseCaseTemplate};

use crate::integrations::use_cases::{NewUseCase, create_use_case};
use crate::state::ApiState;
use erp_http::ApiError;
use erp_http::auth::Caller;
use erp_http::body::{kind, object, only_fields, opt_bool, opt_string, read_json, req_string};

/// A template error as the API answers it: 404 for an unknown template, 400 with the template's
/// own code for a placeholder at fault, 500 for a broken catalogue (a bug of this build).
fn answer(error: TemplateError) -> ApiError {
    let code = error.code();
    match error {
        TemplateError::NotFound { .. } => ApiError::not_found(code, error.to_string()),
        TemplateError::Invalid { .. } => ApiError::internal(code, error.to_string()),
        _ => ApiError::bad_request_code(code, error.to_string()),
    }
}

fn catalogue() -> Result<&'static [UseCaseTemplate], ApiError> {
    templates::catalogue().map_err(answer)
}

fn find(slug: &str) -> Result<&'static UseCaseTemplate, ApiError> {
    catalogue()?;
    templates::find(slug).map_err(answer)
}

/// The query of `GET /v1/use-case-templates`.
#[derive(Debug, serde::Deserialize)]
pub struct ListQuery {
    /// `inbound` or `outbound`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

/// `GET /v1/use-case-templates[?type=inbound|outbound]`: the catalogue without configurations
/// and samples.
pub async fn list(_caller: Caller, query: web::Query<ListQuery>) -> Result<HttpResponse, ApiError> {
    let wanted = match query.kind.as_deref() {
        None => None,
        Some("inbound") => Some(TemplateKind::Inbound),
        Some("outbound") => Some(TemplateKind::Outbound),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "type must be inbound or outbound, got {other:?}"
            )));
        }
    };
    let listed: Vec<_> = catalogue()?
        .iter()
        .filter(|t| wanted.is_none_or(|k| t.kind == k))
        .map(UseCaseTemplate::summary)
        .collect();
    Ok(HttpResponse::Ok().json(json!({"templates": listed})))
}

/// `GET /v1/use-case-templates/{slug}`: the whole template, with its configuration, samples and
/// expected outputs.
pub async fn get(_caller: Caller, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let template = find(&path.into_inner())?;
    Ok(HttpResponse::Ok().json(template))
}

/// `POST /v1/integrations/{id}/use-cases/from-template`: `{template, slug?, name?, enabled?,
/// change_description?, values: {placeholder: value}}`. The slug and name default to the
/// template's; the answer is the created use case (201), as `POST …/use-cases` answers it.
pub async fn create(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let integration_id = path.into_inner();
    // Another organisation's integration is 404 whatever the body says.
    state.caller_integration(&caller, &integration_id)?;
    let body = read_json(body, state.body_limit).await?;
    let map = object(&body, "request body")?;
    only_fields(
        map,
        "",
        &[
            "template",
            "slug",
            "name",
            "enabled",
            "change_description",
            "values",
        ],
    )?;
    let template = find(req_string(map, "", "template", 1, 255)?)?;
    let values = match map.get("values") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(values)) => values.clone(),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "values must be an object, not {}",
                kind(other)
            )));
        }
    };
    let configuration = template.instantiate(&values).map_err(answer)?;
    let new = NewUseCase {
        name: opt_string(map, "", "name", 1, 255)?
            .unwrap_or(&template.name)
            .to_owned(),
        slug: opt_string(map, "", "slug", 1, 255)?
            .unwrap_or(&template.slug)
            .to_owned(),
        kind: template.kind.as_str().to_owned(),
        enabled: opt_bool(map, "", "enabled")?.unwrap_or(true),
        configuration: Some(configuration),
        change_description: Some(
            opt_string(map, "", "change_description", 0, 2000)?
                .map(str::to_owned)
                .unwrap_or_else(|| format!("created from template {}", template.slug)),
        ),
    };
    let use_case = create_use_case(&state, &caller, integration_id, new).await?;
    Ok(HttpResponse::Created().json(use_case))
}
