//! The blueprint document (version [`VERSION`]) and how a posted one is read: every mistake is
//! `BLUEPRINT_INVALID` naming the exact place (`use_cases[1].slug`), a version this build does
//! not know `BLUEPRINT_VERSION_UNSUPPORTED`.

use serde::Serialize;
use serde_json::{Map, Value};

use erp_http::ApiError;
use erp_http::body::{is_slug, kind, only_fields, opt_bool, opt_string, req_string};
use erp_schemas::config::{EnvValueType, RetryPolicy, valid_env_key};

/// The blueprint format this build writes and reads.
pub const VERSION: u64 = 1;

/// What `kind` says: a blueprint of one integration.
pub const KIND: &str = "erp-toolkit/integration";

/// One integration with everything that hangs off it, without ids or secrets.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Blueprint {
    pub blueprint_version: u64,
    pub kind: &'static str,
    pub integration: BlueprintIntegration,
    pub use_cases: Vec<BlueprintUseCase>,
    pub webhooks: Vec<BlueprintWebhook>,
    pub app_mappings: Vec<BlueprintAppMapping>,
    pub documentation: Vec<BlueprintPage>,
    pub environment: Vec<EnvDeclaration>,
}

/// The integration: found in the target organisation by its name.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BlueprintIntegration {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The portable editable fields (`settings`, `environment_config`, …; not
    /// `access_token_ids`, which name tokens of the source organisation).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A use case, found in the target integration by its slug. Webhook ids inside the
/// configuration are references `{"$ref": "webhooks/<key>"}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BlueprintUseCase {
    pub slug: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub configuration: Option<Value>,
}

/// A webhook endpoint, found in the target organisation by its name, without its signing
/// secret and without the secrets of its `auth` (listed in `credentials`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BlueprintWebhook {
    /// How use cases of the blueprint refer to it.
    pub key: String,
    pub name: String,
    pub event_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub http_method: String,
    pub enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_policy: Option<RetryPolicy>,
    /// The other `WebhookConfig` fields, verbatim but for the removed secrets.
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub config: Map<String, Value>,
    /// The secrets that were removed (`auth.basicAuthConfig.password`): they must be entered
    /// again in the target organisation.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<String>,
}

/// An app/component pair routed to the integration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BlueprintAppMapping {
    pub app_id: String,
    pub component_id: String,
}

/// A documentation page: `page` is `general` or the slug of the use case it documents.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BlueprintPage {
    pub page: String,
    pub title: String,
    pub content: String,
}

/// An environment key the blueprint references: a declaration, never a value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EnvDeclaration {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: EnvValueType,
    pub required: bool,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::bad_request_code("BLUEPRINT_INVALID", message)
}

/// A body helper's error as `BLUEPRINT_INVALID` (the helpers already name the field).
fn relabel(error: ApiError) -> ApiError {
    invalid(error.message)
}

fn items<'a>(map: &'a Map<String, Value>, key: &str) -> Result<&'a [Value], ApiError> {
    match map.get(key) {
        None => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(other) => Err(invalid(format!(
            "{key} must be an array, not {}",
            kind(other)
        ))),
    }
}

fn entry<'a>(item: &'a Value, at: &str) -> Result<&'a Map<String, Value>, ApiError> {
    item.as_object()
        .ok_or_else(|| invalid(format!("{at} must be an object, not {}", kind(item))))
}

/// Reads a posted blueprint. The version is checked first, so a future document is refused as
/// such and not for fields this build does not know.
pub fn parse(value: &Value) -> Result<Blueprint, ApiError> {
    let map = entry(value, "blueprint")?;
    match map.get("blueprint_version") {
        Some(Value::Number(n)) if n.as_u64() == Some(VERSION) => {}
        Some(Value::Number(n)) if n.as_u64().is_some_and(|v| v > VERSION) => {
            return Err(ApiError::bad_request_code(
                "BLUEPRINT_VERSION_UNSUPPORTED",
                format!(
                    "blueprint_version {n} is newer than this build reads (it reads {VERSION})"
                ),
            ));
        }
        Some(other) => {
            return Err(invalid(format!(
                "blueprint_version must be the integer {VERSION}, not {other}"
            )));
        }
        None => return Err(invalid("blueprint_version is required")),
    }
    only_fields(
        map,
        "",
        &[
            "blueprint_version",
            "kind",
            "exported_at",
            "integration",
            "use_cases",
            "webhooks",
            "app_mappings",
            "documentation",
            "environment",
        ],
    )
    .map_err(relabel)?;
    if let Some(kind_of) = map.get("kind")
        && kind_of.as_str() != Some(KIND)
    {
        return Err(invalid(format!("kind must be {KIND:?}, not {kind_of}")));
    }
    let integration = parse_integration(
        map.get("integration")
            .ok_or_else(|| invalid("integration is required"))?,
    )?;
    let mut use_cases: Vec<BlueprintUseCase> = Vec::new();
    for (i, item) in items(map, "use_cases")?.iter().enumerate() {
        let at = format!("use_cases[{i}]");
        let use_case = parse_use_case(item, &at)?;
        if use_cases.iter().any(|u| u.slug == use_case.slug) {
            return Err(invalid(format!(
                "{at}.slug {:?} appears twice",
                use_case.slug
            )));
        }
        use_cases.push(use_case);
    }
    let mut webhooks: Vec<BlueprintWebhook> = Vec::new();
    for (i, item) in items(map, "webhooks")?.iter().enumerate() {
        let at = format!("webhooks[{i}]");
        let webhook = parse_webhook(item, &at)?;
        if webhooks.iter().any(|w| w.key == webhook.key) {
            return Err(invalid(format!("{at}.key {:?} appears twice", webhook.key)));
        }
        webhooks.push(webhook);
    }
    let mut app_mappings = Vec::new();
    for (i, item) in items(map, "app_mappings")?.iter().enumerate() {
        let at = format!("app_mappings[{i}].");
        let m = entry(item, &at)?;
        only_fields(m, &at, &["app_id", "component_id"]).map_err(relabel)?;
        app_mappings.push(BlueprintAppMapping {
            app_id: uuid_of(m, &at, "app_id")?,
            component_id: uuid_of(m, &at, "component_id")?,
        });
    }
    let mut documentation: Vec<BlueprintPage> = Vec::new();
    for (i, item) in items(map, "documentation")?.iter().enumerate() {
        let at = format!("documentation[{i}].");
        let m = entry(item, &at)?;
        only_fields(m, &at, &["page", "title", "content"]).map_err(relabel)?;
        let page = req_string(m, &at, "page", 1, 255)
            .map_err(relabel)?
            .to_owned();
        if page != erp_schemas::config::GENERAL_PAGE && !use_cases.iter().any(|u| u.slug == page) {
            return Err(invalid(format!(
                "{at}page {page:?} is neither \"general\" nor the slug of a use case of the blueprint"
            )));
        }
        documentation.push(BlueprintPage {
            page,
            title: req_string(m, &at, "title", 1, 255)
                .map_err(relabel)?
                .to_owned(),
            content: req_string(m, &at, "content", 0, 100_000)
                .map_err(relabel)?
                .to_owned(),
        });
    }
    let mut environment = Vec::new();
    for (i, item) in items(map, "environment")?.iter().enumerate() {
        let at = format!("environment[{i}].");
        let m = entry(item, &at)?;
        only_fields(m, &at, &["name", "type", "required"]).map_err(relabel)?;
        let name = req_string(m, &at, "name", 1, 128).map_err(relabel)?;
        if !valid_env_key(name) {
            return Err(invalid(format!(
                "{at}name {name:?} is not an environment key"
            )));
        }
        let kind = match opt_string(m, &at, "type", 1, 32).map_err(relabel)? {
            None | Some("String") => EnvValueType::String,
            Some("SecretString") => EnvValueType::SecretString,
            Some(other) => {
                return Err(invalid(format!(
                    "{at}type must be String or SecretString, not {other:?}"
                )));
            }
        };
        environment.push(EnvDeclaration {
            name: name.to_owned(),
            kind,
            required: opt_bool(m, &at, "required")
                .map_err(relabel)?
                .unwrap_or(true),
        });
    }
    Ok(Blueprint {
        blueprint_version: VERSION,
        kind: KIND,
        integration,
        use_cases,
        webhooks,
        app_mappings,
        documentation,
        environment,
    })
}

fn uuid_of(map: &Map<String, Value>, at: &str, key: &str) -> Result<String, ApiError> {
    let text = req_string(map, at, key, 1, 64).map_err(relabel)?;
    uuid::Uuid::parse_str(text)
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| invalid(format!("{at}{key} {text:?} is not a UUID")))
}

fn parse_integration(value: &Value) -> Result<BlueprintIntegration, ApiError> {
    let map = entry(value, "integration")?;
    if map.contains_key("id") || map.contains_key("orgId") {
        return Err(invalid(
            "integration must not carry id or orgId: a blueprint names objects by name and slug",
        ));
    }
    let name = req_string(map, "integration.", "name", 1, 255)
        .map_err(relabel)?
        .to_owned();
    let description = opt_string(map, "integration.", "description", 0, 1000)
        .map_err(relabel)?
        .map(str::to_owned);
    // The editable fields are checked like the integration API checks them.
    let mut rest = map.clone();
    rest.remove("name");
    rest.remove("description");
    if rest.contains_key("access_token_ids") {
        return Err(invalid(
            "integration.access_token_ids names tokens of one organisation and cannot travel",
        ));
    }
    let fields = crate::integrations::v1::editable(&Value::Object(rest.clone()))
        .map_err(|e| invalid(format!("integration: {}", e.message)))?;
    if let Some(unknown) = rest.keys().find(|k| !fields.extra.contains_key(*k)) {
        return Err(invalid(format!(
            "integration.{unknown} is not an editable field of an integration"
        )));
    }
    Ok(BlueprintIntegration {
        name,
        description,
        extra: fields.extra,
    })
}

fn parse_use_case(value: &Value, at: &str) -> Result<BlueprintUseCase, ApiError> {
    let map = entry(value, at)?;
    let path = format!("{at}.");
    only_fields(
        map,
        &path,
        &["slug", "name", "type", "enabled", "configuration"],
    )
    .map_err(relabel)?;
    let slug = req_string(map, &path, "slug", 1, 255).map_err(relabel)?;
    if !is_slug(slug) {
        return Err(invalid(format!(
            "{path}slug {slug:?} must match ^[a-z0-9][a-z0-9_-]*$"
        )));
    }
    let kind_of = req_string(map, &path, "type", 1, 64).map_err(relabel)?;
    crate::integrations::use_cases::check_type(kind_of)
        .map_err(|e| invalid(format!("{path}type: {}", e.message)))?;
    Ok(BlueprintUseCase {
        slug: slug.to_owned(),
        name: req_string(map, &path, "name", 1, 255)
            .map_err(relabel)?
            .to_owned(),
        kind: kind_of.to_owned(),
        enabled: opt_bool(map, &path, "enabled")
            .map_err(relabel)?
            .ok_or_else(|| invalid(format!("{path}enabled is required")))?,
        configuration: map.get("configuration").cloned(),
    })
}

fn parse_webhook(value: &Value, at: &str) -> Result<BlueprintWebhook, ApiError> {
    let map = entry(value, at)?;
    let path = format!("{at}.");
    only_fields(
        map,
        &path,
        &[
            "key",
            "name",
            "eventName",
            "url",
            "httpMethod",
            "enabled",
            "retryPolicy",
            "config",
            "credentials",
        ],
    )
    .map_err(relabel)?;
    let key = req_string(map, &path, "key", 1, 255).map_err(relabel)?;
    if !is_slug(key) {
        return Err(invalid(format!(
            "{path}key {key:?} must match ^[a-z0-9][a-z0-9_-]*$"
        )));
    }
    let retry_policy = match map.get("retryPolicy") {
        None | Some(Value::Null) => None,
        Some(policy) => Some(
            serde_json::from_value::<RetryPolicy>(policy.clone())
                .map_err(|e| invalid(format!("{path}retryPolicy: {e}")))?,
        ),
    };
    let config = match map.get("config") {
        None => Map::new(),
        Some(Value::Object(config)) => config.clone(),
        Some(other) => {
            return Err(invalid(format!(
                "{path}config must be an object, not {}",
                kind(other)
            )));
        }
    };
    let credentials = match map.get("credentials") {
        None => Vec::new(),
        Some(Value::Array(list)) => list
            .iter()
            .map(|c| {
                c.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| invalid(format!("{path}credentials must hold strings")))
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(invalid(format!(
                "{path}credentials must be an array, not {}",
                kind(other)
            )));
        }
    };
    Ok(BlueprintWebhook {
        key: key.to_owned(),
        name: req_string(map, &path, "name", 1, 255)
            .map_err(relabel)?
            .to_owned(),
        event_name: req_string(map, &path, "eventName", 1, 255)
            .map_err(relabel)?
            .to_owned(),
        url: opt_string(map, &path, "url", 1, 2048)
            .map_err(relabel)?
            .map(str::to_owned),
        http_method: opt_string(map, &path, "httpMethod", 1, 16)
            .map_err(relabel)?
            .unwrap_or("POST")
            .to_owned(),
        enabled: opt_bool(map, &path, "enabled")
            .map_err(relabel)?
            .unwrap_or(true),
        retry_policy,
        config,
        credentials,
    })
}
