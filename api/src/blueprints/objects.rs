//! The plan of a blueprint's webhook endpoints (found by name) and use cases (found by slug in
//! the target integration). Endpoints come first: use cases need their target ids.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use erp_schemas::config::{ConfigChange, UseCase, WebhookEndpoint};
use erp_webhooks::endpoint::{self, EndpointConfig};

use super::entries::{Action, Builder, CredentialsRequired, DisabledEndpoint, PlanEntry};
use super::export::webhook_env_keys;
use super::format::Blueprint;
use super::refs;
use crate::integrations::use_cases::{check_configuration, check_record};
use erp_http::ApiError;

fn invalid(at: &str, error: ApiError) -> ApiError {
    ApiError::bad_request_code(
        "BLUEPRINT_INVALID",
        format!("{at}: {}: {}", error.code, error.message),
    )
}

/// Whether `config` holds a value at `auth.<object>.<field>`.
fn has_secret(config: &Map<String, Value>, path: &str) -> bool {
    let mut parts = path.split('.');
    let (Some("auth"), Some(object), Some(field)) = (parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    config
        .get("auth")
        .and_then(|a| a.get(object))
        .and_then(|o| o.get(field))
        .is_some_and(|v| v.as_str().is_some_and(|s| !s.is_empty()))
}

/// Fills the secret at `path` with `value` (to validate an endpoint whose secret is missing).
fn fill_secret(config: &mut Map<String, Value>, path: &str, value: &str) {
    let mut parts = path.split('.').skip(1);
    if let (Some(object), Some(field)) = (parts.next(), parts.next())
        && let Some(Value::Object(inner)) = config.get_mut("auth").and_then(|a| a.get_mut(object))
    {
        inner.insert(field.to_owned(), Value::String(value.to_owned()));
    }
}

/// The endpoints: the target id of every key that is not in conflict.
pub(super) fn webhooks(
    b: &mut Builder<'_>,
    blueprint: &Blueprint,
) -> Result<BTreeMap<String, String>, ApiError> {
    let mut ids = BTreeMap::new();
    for (i, wanted) in blueprint.webhooks.iter().enumerate() {
        let at = format!("webhooks[{i}]");
        let candidates: Vec<_> = b
            .config
            .webhooks(b.org_id)
            .into_iter()
            .filter(|e| e.webhook.name == wanted.name)
            .collect();
        let current = match candidates.as_slice() {
            [] => None,
            [one] if one.unreadable.is_some() => {
                b.push(
                    PlanEntry::conflict(
                        "webhook",
                        &wanted.key,
                        "the endpoint's secrets cannot be read by this process".to_owned(),
                    ),
                    None,
                    None,
                );
                continue;
            }
            [one] => Some(*one),
            several => {
                b.push(
                    PlanEntry::conflict(
                        "webhook",
                        &wanted.key,
                        format!(
                            "{} endpoints of this organisation are named {:?}; rename all but one",
                            several.len(),
                            wanted.name
                        ),
                    ),
                    None,
                    None,
                );
                continue;
            }
        };
        let stored = current.map(|e| e.webhook.extra.clone()).unwrap_or_default();
        let mut extra = wanted.config.clone();
        endpoint::keep_secrets(&mut extra, &stored);
        let missing: Vec<String> = wanted
            .credentials
            .iter()
            .filter(|path| !has_secret(&extra, path))
            .cloned()
            .collect();
        // Validated as the webhook API validates, with a stand-in for a missing secret.
        let mut check = extra.clone();
        for path in &missing {
            fill_secret(&mut check, path, "missing");
        }
        EndpointConfig::parse(&check).map_err(|e| {
            ApiError::bad_request_code("BLUEPRINT_INVALID", format!("{at}.config: {e}"))
        })?;

        let mut reasons = Vec::new();
        let mut keys = BTreeSet::new();
        webhook_env_keys(wanted, &mut keys);
        for key in keys.iter().filter(|k| b.missing_env.contains(*k)) {
            reasons.push(format!("environment value {key:?} is missing"));
        }
        if !missing.is_empty() {
            reasons.push(format!(
                "credentials must be entered: {}",
                missing.join(", ")
            ));
            b.credentials.push(CredentialsRequired {
                webhook: wanted.key.clone(),
                fields: missing,
            });
        }
        let enabled = wanted.enabled && reasons.is_empty();
        let desired = WebhookEndpoint {
            id: current.map_or_else(
                || uuid::Uuid::new_v4().to_string(),
                |e| e.webhook.id.clone(),
            ),
            name: wanted.name.clone(),
            event_name: wanted.event_name.clone(),
            url: wanted.url.clone(),
            http_method: wanted.http_method.clone(),
            enabled,
            retry_policy: wanted.retry_policy,
            creation_time: current
                .map_or_else(|| b.now.clone(), |e| e.webhook.creation_time.clone()),
            updated_time: b.now.clone(),
            extra,
        };
        let mut entry = match current {
            None => PlanEntry::new("webhook", &wanted.key, Action::Create),
            Some(current) => {
                let was = &current.webhook;
                let mut changes = Vec::new();
                for (field, differs) in [
                    ("eventName", was.event_name != desired.event_name),
                    ("url", was.url != desired.url),
                    ("httpMethod", was.http_method != desired.http_method),
                    ("enabled", was.enabled != desired.enabled),
                    ("retryPolicy", was.retry_policy != desired.retry_policy),
                ] {
                    if differs {
                        changes.push(field.to_owned());
                    }
                }
                let keys: BTreeSet<&String> =
                    was.extra.keys().chain(desired.extra.keys()).collect();
                for key in keys {
                    if was.extra.get(key) != desired.extra.get(key) {
                        changes.push(key.clone());
                    }
                }
                PlanEntry::compared("webhook", &wanted.key, &was.id, changes)
            }
        };
        if wanted.enabled && !enabled {
            entry.installed_disabled = true;
            b.disabled.push(DisabledEndpoint {
                webhook: wanted.key.clone(),
                reasons,
            });
        }
        ids.insert(wanted.key.clone(), desired.id.clone());
        let change = ConfigChange::WebhookUpserted {
            signing_secret: current.map_or_else(erp_webhooks::signing::new_secret, |e| {
                e.signing_secret.clone()
            }),
            previous_secrets: current
                .map(|e| e.previous_secrets.clone())
                .unwrap_or_default(),
            webhook: desired.clone(),
        };
        b.push(entry, Some(change), Some(desired.id));
    }
    Ok(ids)
}

/// The use cases of the target integration: slug → target id of every one not in conflict.
pub(super) fn use_cases(
    b: &mut Builder<'_>,
    blueprint: &Blueprint,
    integration_id: &str,
    existed: bool,
    webhook_ids: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, ApiError> {
    let known: BTreeSet<&str> = blueprint.webhooks.iter().map(|w| w.key.as_str()).collect();
    let current: Vec<UseCase> = if existed {
        b.config
            .use_cases(b.org_id, integration_id)
            .into_iter()
            .map(|e| e.use_case.clone())
            .collect()
    } else {
        Vec::new()
    };
    let mut slugs = BTreeMap::new();
    for (i, wanted) in blueprint.use_cases.iter().enumerate() {
        let at = format!("use_cases[{i}]");
        let referenced = match &wanted.configuration {
            Some(configuration) => refs::referenced_webhooks(configuration, &known, &at)?,
            None => Vec::new(),
        };
        if let Some(key) = referenced.iter().find(|k| !webhook_ids.contains_key(*k)) {
            b.push(
                PlanEntry::conflict(
                    "use_case",
                    &wanted.slug,
                    format!("it delivers to webhook {key:?}, which is in conflict"),
                ),
                None,
                None,
            );
            continue;
        }
        let mut configuration = wanted.configuration.clone();
        if let Some(configuration) = &mut configuration {
            refs::resolve_webhook_refs(configuration, webhook_ids);
        }
        let existing = current
            .iter()
            .find(|u| u.slug.as_deref() == Some(wanted.slug.as_str()));
        if let Some(existing) = existing
            && existing.kind != wanted.kind
        {
            b.push(
                PlanEntry::conflict(
                    "use_case",
                    &wanted.slug,
                    format!(
                        "the integration has a {} use case with this slug; the blueprint's is {}",
                        existing.kind, wanted.kind
                    ),
                ),
                None,
                None,
            );
            continue;
        }
        let mut changes = Vec::new();
        if let Some(existing) = existing {
            if existing.name != wanted.name {
                changes.push("name".to_owned());
            }
            if existing.enabled != wanted.enabled {
                changes.push("enabled".to_owned());
            }
            if existing.configuration.as_ref().map(refs::without_stamps)
                != configuration.as_ref().map(refs::without_stamps)
            {
                changes.push("configuration".to_owned());
            }
            slugs.insert(wanted.slug.clone(), existing.id.clone());
            if changes.is_empty() {
                b.push(
                    PlanEntry::compared("use_case", &wanted.slug, &existing.id, changes),
                    None,
                    None,
                );
                continue;
            }
        }
        if let Some(configuration) = &mut configuration {
            refs::keep_stamps(
                configuration,
                existing.and_then(|e| e.configuration.as_ref()),
            );
            check_configuration(&wanted.kind, configuration)
                .map_err(|e| invalid(&format!("{at}.configuration"), e))?;
        }
        let use_case = match existing {
            Some(existing) => UseCase {
                name: wanted.name.clone(),
                enabled: wanted.enabled,
                configuration,
                change_description: Some("installed from a blueprint".into()),
                changed_by: Some(b.actor.to_owned()),
                updated_at: b.now.clone(),
                ..existing.clone()
            },
            None => UseCase {
                id: uuid::Uuid::new_v4().to_string(),
                integration_id: integration_id.to_owned(),
                name: wanted.name.clone(),
                slug: Some(wanted.slug.clone()),
                kind: wanted.kind.clone(),
                enabled: wanted.enabled,
                configuration,
                change_description: Some("installed from a blueprint".into()),
                changed_by: Some(b.actor.to_owned()),
                created_at: b.now.clone(),
                updated_at: b.now.clone(),
            },
        };
        check_record(&use_case, &at).map_err(|e| invalid(&at, e))?;
        let entry = match existing {
            Some(existing) => PlanEntry::compared("use_case", &wanted.slug, &existing.id, changes),
            None => PlanEntry::new("use_case", &wanted.slug, Action::Create),
        };
        slugs.insert(wanted.slug.clone(), use_case.id.clone());
        let id = use_case.id.clone();
        b.push(
            entry,
            Some(ConfigChange::UseCaseUpserted { use_case }),
            Some(id),
        );
    }
    Ok(slugs)
}
