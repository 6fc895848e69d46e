//! Export: one integration of an organisation as a [`Blueprint`]. Ids become names, slugs and
//! webhook keys; secrets are left out (named in `credentials` where the endpoint needs them
//! again); environment keys become declarations.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use erp_runtime::ConfigState;
use erp_schemas::config::{AUTH_SECRET_FIELDS, EnvValueType, GENERAL_PAGE, WebhookEndpoint};

use super::format::{
    Blueprint, BlueprintAppMapping, BlueprintIntegration, BlueprintPage, BlueprintUseCase,
    BlueprintWebhook, EnvDeclaration, KIND, VERSION,
};
use super::refs;
use crate::integrations::v2::slug_of;
use erp_http::ApiError;

/// The endpoint without the secrets of its `auth`, and the fields removed. A secret field that
/// names an environment variable (`passwordIsEnvVar`) is no secret and stays.
fn without_secrets(webhook: &WebhookEndpoint) -> (serde_json::Map<String, Value>, Vec<String>) {
    let mut config = webhook.extra.clone();
    let mut removed = Vec::new();
    if let Some(Value::Object(auth)) = config.get_mut("auth") {
        for (object, field) in AUTH_SECRET_FIELDS {
            if let Some(Value::Object(inner)) = auth.get_mut(object) {
                let names_variable =
                    inner.get(&format!("{field}IsEnvVar")) == Some(&Value::Bool(true));
                if !names_variable && inner.remove(field).is_some_and(|v| !v.is_null()) {
                    removed.push(format!("auth.{object}.{field}"));
                }
            }
        }
    }
    (config, removed)
}

/// The blueprint of the organisation's integration `integration_id` (404 when the
/// organisation has none of that id).
pub fn export(
    config: &ConfigState,
    org_id: &str,
    integration_id: &str,
) -> Result<Blueprint, ApiError> {
    let integration = config
        .integration(org_id, integration_id)
        .ok_or_else(|| ApiError::integration_not_found(integration_id))?;
    let use_cases: Vec<_> = config
        .use_cases(org_id, integration_id)
        .into_iter()
        .map(|e| &e.use_case)
        .collect();

    // The endpoints the use cases deliver to, each with a key unique in the blueprint.
    let mut referenced = BTreeSet::new();
    for use_case in &use_cases {
        if let Some(Value::Array(mappings)) = use_case
            .configuration
            .as_ref()
            .and_then(|c| c.get("mappings"))
        {
            for mapping in mappings {
                if let Some(id) = mapping
                    .get("delivery")
                    .and_then(|d| d.get("webhook_id"))
                    .and_then(Value::as_str)
                {
                    referenced.insert(id.to_owned());
                }
            }
        }
    }
    // The endpoints that receive what the inbound use cases map travel too: without them the
    // installed integration would map events and deliver them nowhere.
    let maps_inbound = use_cases.iter().any(|u| u.kind == "inbound");
    let mut keys: BTreeMap<String, String> = BTreeMap::new();
    let mut taken = BTreeSet::new();
    let mut webhooks = Vec::new();
    for entry in config.webhooks(org_id) {
        let webhook = &entry.webhook;
        let receives_mapped =
            maps_inbound && webhook.subscribes_to(erp_schemas::core_event::INBOUND_EVENT_MAPPED);
        if !referenced.contains(&webhook.id) && !receives_mapped {
            continue;
        }
        let base = slug_of(&webhook.name);
        let mut key = base.clone();
        let mut n = 2;
        while !taken.insert(key.clone()) {
            key = format!("{base}-{n}");
            n += 1;
        }
        keys.insert(webhook.id.clone(), key.clone());
        let (config, credentials) = without_secrets(webhook);
        webhooks.push(BlueprintWebhook {
            key,
            name: webhook.name.clone(),
            event_name: webhook.event_name.clone(),
            url: webhook.url.clone(),
            http_method: webhook.http_method.clone(),
            enabled: webhook.enabled,
            retry_policy: webhook.retry_policy,
            config,
            credentials,
        });
    }

    // Use cases by slug; one without a slug gets the slug the v2 API would derive.
    let mut slugs: BTreeMap<String, String> = BTreeMap::new();
    let mut taken_slugs: BTreeSet<String> =
        use_cases.iter().filter_map(|u| u.slug.clone()).collect();
    let mut exported = Vec::new();
    for use_case in &use_cases {
        let slug = match &use_case.slug {
            Some(slug) => slug.clone(),
            None => {
                let base = slug_of(&use_case.name);
                let mut candidate = base.clone();
                let mut n = 2;
                while !taken_slugs.insert(candidate.clone()) {
                    candidate = format!("{base}-{n}");
                    n += 1;
                }
                candidate
            }
        };
        slugs.insert(use_case.id.clone(), slug.clone());
        let configuration = match &use_case.configuration {
            Some(configuration) => {
                let mut configuration = refs::without_stamps(configuration);
                refs::export_webhook_refs(&mut configuration, &keys, &slug)?;
                Some(configuration)
            }
            None => None,
        };
        exported.push(BlueprintUseCase {
            slug,
            name: use_case.name.clone(),
            kind: use_case.kind.clone(),
            enabled: use_case.enabled,
            configuration,
        });
    }

    let documentation = config
        .documentation_pages(org_id, integration_id)
        .into_iter()
        .filter_map(|page| {
            let name = if page.id == GENERAL_PAGE {
                GENERAL_PAGE.to_owned()
            } else {
                slugs.get(&page.id)?.clone()
            };
            Some(BlueprintPage {
                page: name,
                title: page.title.clone(),
                content: page.content.clone(),
            })
        })
        .collect();
    let app_mappings = config
        .app_mappings_of(org_id, integration_id)
        .into_iter()
        .map(|m| BlueprintAppMapping {
            app_id: m.app_id.clone(),
            component_id: m.component_id.clone(),
        })
        .collect();

    let mut extra = integration.extra.clone();
    extra.remove("access_token_ids");
    let mut blueprint = Blueprint {
        blueprint_version: VERSION,
        kind: KIND,
        integration: BlueprintIntegration {
            name: integration.name.clone(),
            description: integration.description.clone(),
            extra,
        },
        use_cases: exported,
        webhooks,
        app_mappings,
        documentation,
        environment: Vec::new(),
    };
    blueprint.environment = declarations(&blueprint)
        .into_iter()
        .map(|name| EnvDeclaration {
            kind: config
                .env_entry(org_id, &name)
                .map_or(EnvValueType::String, |e| e.value_type),
            name,
            required: true,
        })
        .collect();
    Ok(blueprint)
}

/// Every environment key the blueprint's use cases and endpoints reference.
pub fn declarations(blueprint: &Blueprint) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for use_case in &blueprint.use_cases {
        if let Some(configuration) = &use_case.configuration {
            refs::env_keys(configuration, &mut keys);
        }
    }
    for webhook in &blueprint.webhooks {
        webhook_env_keys(webhook, &mut keys);
    }
    keys
}

/// The environment keys one endpoint references (its url and configuration).
pub fn webhook_env_keys(webhook: &BlueprintWebhook, keys: &mut BTreeSet<String>) {
    if let Some(url) = &webhook.url {
        refs::env_keys(&Value::String(url.clone()), keys);
    }
    refs::env_keys(&Value::Object(webhook.config.clone()), keys);
}
