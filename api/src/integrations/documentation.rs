//! `/v1/integrations/{id}/documentation[/{docId}]` (epilot spec §2.4.4): markdown pages of an
//! integration, at most one `general` page plus one per use case (the page id is the use case's
//! id). Pages are event-sourced in `erp.config` and go with their integration (and a use-case
//! page with its use case).

use actix_web::{HttpResponse, web};
use serde_json::{Value, json};

use erp_runtime::config::ConfigState;
use erp_schemas::config::{ConfigChange, DocumentationPage, GENERAL_PAGE};
use erp_schemas::timestamp::now_rfc3339;

use crate::state::ApiState;
use erp_http::ApiError;
use erp_http::auth::Caller;
use erp_http::body::{object, only_fields, read_json, req_string};

/// Longest title (epilot `UpsertDocumentationPageRequest.title`).
pub const MAX_TITLE: usize = 150;
/// Longest markdown content, in characters (epilot `DocumentationPage.content`).
pub const MAX_CONTENT: usize = 100_000;

/// Fields a client may send back from a page it read: server-owned, so they are ignored rather
/// than refused (a read-modify-write client should not have to strip them).
const READ_ONLY: [&str; 8] = [
    "id",
    "integration_id",
    "scope",
    "use_case_id",
    "created_at",
    "created_by",
    "updated_at",
    "updated_by",
];

/// What a page id names.
enum PageId {
    General,
    /// A use case id, canonical (lower case).
    UseCase(String),
}

impl PageId {
    /// Parses `docId`: `general` or a UUID (epilot's pattern accepts either case).
    fn parse(text: &str) -> Result<Self, ApiError> {
        if text == GENERAL_PAGE {
            return Ok(Self::General);
        }
        // epilot's pattern is the hyphenated form only; `Uuid::parse_str` also takes others.
        let hyphenated = text.len() == 36 && text.matches('-').count() == 4;
        match uuid::Uuid::parse_str(text) {
            Ok(id) if hyphenated => Ok(Self::UseCase(id.to_string())),
            _ => Err(ApiError::bad_request_code(
                "INVALID_DOC_ID",
                format!("docId must be \"general\" or a use case id (UUID), got {text:?}"),
            )),
        }
    }

    /// The stored page id: `general`, or the use case's id as the use case spells it.
    fn resolve(&self, config: &ConfigState, org_id: &str, integration_id: &str) -> String {
        match self {
            Self::General => GENERAL_PAGE.to_owned(),
            Self::UseCase(id) => config
                .use_cases(org_id, integration_id)
                .into_iter()
                .map(|entry| &entry.use_case.id)
                .find(|stored| stored.eq_ignore_ascii_case(id))
                .cloned()
                .unwrap_or_else(|| id.clone()),
        }
    }
}

fn page_not_found(integration_id: &str, page_id: &str) -> ApiError {
    ApiError::not_found(
        "DOCUMENTATION_PAGE_NOT_FOUND",
        format!("integration {integration_id} has no documentation page {page_id}"),
    )
}

/// A page without its content (epilot `DocumentationPageSummary`).
fn summary(page: &DocumentationPage) -> Value {
    let mut value = json!(page);
    if let Some(map) = value.as_object_mut() {
        map.remove("content");
    }
    value
}

/// `GET /v1/integrations/{id}/documentation` → `{pages: DocumentationPageSummary[]}`, the
/// general page first.
pub async fn list(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let integration_id = path.into_inner();
    let config = state.view().snapshot();
    if config
        .integration(&caller.org_id, &integration_id)
        .is_none()
    {
        return Err(ApiError::integration_not_found(&integration_id));
    }
    let pages: Vec<Value> = config
        .documentation_pages(&caller.org_id, &integration_id)
        .into_iter()
        .map(summary)
        .collect();
    Ok(HttpResponse::Ok().json(json!({"pages": pages})))
}

/// `GET /v1/integrations/{id}/documentation/{docId}` → `DocumentationPage`.
pub async fn get(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (integration_id, doc_id) = path.into_inner();
    // No page can have such an id: epilot lists only 404 for a read.
    let doc_id = PageId::parse(&doc_id).map_err(|_| page_not_found(&integration_id, &doc_id))?;
    let config = state.view().snapshot();
    if config
        .integration(&caller.org_id, &integration_id)
        .is_none()
    {
        return Err(ApiError::integration_not_found(&integration_id));
    }
    let page_id = doc_id.resolve(&config, &caller.org_id, &integration_id);
    let page = config
        .documentation_page(&caller.org_id, &integration_id, &page_id)
        .ok_or_else(|| page_not_found(&integration_id, &page_id))?;
    Ok(HttpResponse::Ok().json(page))
}

/// `PUT /v1/integrations/{id}/documentation/{docId}` with `{title, content}`: creates or
/// replaces the page. A use-case page needs its use case to exist in the integration.
pub async fn put(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<(String, String)>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (integration_id, doc_id) = path.into_inner();
    let doc_id = PageId::parse(&doc_id)?;
    let body = read_json(body, state.body_limit).await?;
    let map = object(&body, "request body")?;
    let mut allowed = vec!["title", "content"];
    allowed.extend(READ_ONLY);
    only_fields(map, "", &allowed)?;
    let title = req_string(map, "", "title", 1, MAX_TITLE)?.to_owned();
    let content = req_string(map, "", "content", 0, MAX_CONTENT)?.to_owned();

    let _guard = state.config.exclusive().await;
    let config = state.view().snapshot();
    if config
        .integration(&caller.org_id, &integration_id)
        .is_none()
    {
        return Err(ApiError::integration_not_found(&integration_id));
    }
    let page_id = doc_id.resolve(&config, &caller.org_id, &integration_id);
    let (scope, use_case_id) = match doc_id {
        PageId::General => ("integration", None),
        PageId::UseCase(_) => {
            if config
                .use_case(&caller.org_id, &integration_id, &page_id)
                .is_none()
            {
                return Err(ApiError::not_found(
                    "USE_CASE_NOT_FOUND",
                    format!("integration {integration_id} has no use case {page_id}"),
                ));
            }
            ("use_case", Some(page_id.clone()))
        }
    };
    let now = now_rfc3339();
    let existing = config.documentation_page(&caller.org_id, &integration_id, &page_id);
    let page = DocumentationPage {
        id: page_id,
        integration_id,
        scope: scope.to_owned(),
        use_case_id,
        title,
        content,
        created_at: existing.map_or_else(|| now.clone(), |p| p.created_at.clone()),
        created_by: existing.map_or_else(|| Some(caller.actor.clone()), |p| p.created_by.clone()),
        updated_at: now,
        updated_by: Some(caller.actor.clone()),
    };
    state
        .record(
            &caller,
            ConfigChange::DocumentationPageUpserted { page: page.clone() },
        )
        .await?;
    Ok(HttpResponse::Ok().json(page))
}

/// `DELETE /v1/integrations/{id}/documentation/{docId}` → `{message}`.
pub async fn delete(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (integration_id, doc_id) = path.into_inner();
    // As for a read: epilot lists only 404 for a page that cannot exist.
    let doc_id = PageId::parse(&doc_id).map_err(|_| page_not_found(&integration_id, &doc_id))?;
    let _guard = state.config.exclusive().await;
    let config = state.view().snapshot();
    if config
        .integration(&caller.org_id, &integration_id)
        .is_none()
    {
        return Err(ApiError::integration_not_found(&integration_id));
    }
    let page_id = doc_id.resolve(&config, &caller.org_id, &integration_id);
    if config
        .documentation_page(&caller.org_id, &integration_id, &page_id)
        .is_none()
    {
        return Err(page_not_found(&integration_id, &page_id));
    }
    state
        .record(
            &caller,
            ConfigChange::DocumentationPageDeleted {
                integration_id: integration_id.clone(),
                page_id: page_id.clone(),
            },
        )
        .await?;
    Ok(HttpResponse::Ok().json(json!({
        "message": format!("documentation page {page_id} of integration {integration_id} deleted")
    })))
}
