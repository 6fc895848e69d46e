//! Resolution of `{{env.<key>}}` references at send time (spec §8.2): in an endpoint's `url`,
//! custom header values and auth secrets, and the `*IsEnvVar: true` auth fields (the field holds
//! the name of a variable). Values come from the organisation's environment in the configuration
//! view; secrets are decrypted with the deployment's keys (`--secrets-key-file`).
//!
//! The resolved endpoint is a copy that lives only for the delivery: API answers and the log
//! keep the references. Its revision is the later of the endpoint's and the organisation's
//! environment's last change, so the parsed configuration the worker caches per revision (and an
//! OAuth token fetched with a secret) is replaced as soon as either changes.

use std::borrow::Cow;

use serde_json::{Map, Value};

use erp_runtime::ConfigView;
use erp_runtime::config::WebhookEntry;
use erp_runtime::environment::{EnvError, has_reference, render};

use erp_schemas::config::EnvValueType;
use erp_webhooks::endpoint::SECRET_FIELDS;
use erp_webhooks::redact::Redactor;

/// The flag naming a variable for each secret field (`password` → `passwordIsEnvVar`).
fn flag_of(field: &str) -> String {
    format!("{field}IsEnvVar")
}

fn auth_uses_env(extra: &Map<String, Value>) -> bool {
    let Some(Value::Object(auth)) = extra.get("auth") else {
        return false;
    };
    SECRET_FIELDS.iter().any(|(object, field)| {
        auth.get(*object)
            .and_then(Value::as_object)
            .is_some_and(|o| {
                o.get(&flag_of(field)).and_then(Value::as_bool) == Some(true)
                    || o.get(*field)
                        .and_then(Value::as_str)
                        .is_some_and(has_reference)
            })
    })
}

fn headers_use_env(extra: &Map<String, Value>) -> bool {
    extra
        .get("payloadConfiguration")
        .and_then(|p| p.get("custom_headers"))
        .and_then(Value::as_object)
        .is_some_and(|h| h.values().filter_map(Value::as_str).any(has_reference))
}

/// Whether an endpoint refers to its organisation's environment anywhere.
pub fn uses_environment(entry: &WebhookEntry) -> bool {
    entry.webhook.url.as_deref().is_some_and(has_reference)
        || headers_use_env(&entry.webhook.extra)
        || auth_uses_env(&entry.webhook.extra)
}

/// The endpoint with every environment reference replaced by its value, or the first variable
/// that is missing or unreadable. Borrows the entry when it has no references. Every
/// `SecretString` value put into the copy is added to `secrets`, so whatever is recorded about
/// the delivery can be redacted of it.
pub fn resolve<'a>(
    view: &ConfigView,
    entry: &'a WebhookEntry,
    secrets: &mut Redactor,
) -> Result<Cow<'a, WebhookEntry>, EnvError> {
    if !uses_environment(entry) {
        return Ok(Cow::Borrowed(entry));
    }
    let config = view.snapshot();
    let org = entry.org_id.as_str();
    let secrets = std::cell::RefCell::new(secrets);
    let lookup = |key: &str| {
        let value = config.env_value(org, key, view.secrets())?;
        if config
            .env_entry(org, key)
            .is_some_and(|e| e.value_type == EnvValueType::SecretString)
        {
            secrets.borrow_mut().add(&value);
        }
        Ok(value)
    };
    let mut resolved = entry.clone();
    resolved.revision = entry.revision.max(config.environment_revision(org));
    if let Some(url) = &entry.webhook.url {
        resolved.webhook.url = Some(render(url, lookup)?);
    }
    let extra = &mut resolved.webhook.extra;
    if let Some(Value::Object(headers)) = extra
        .get_mut("payloadConfiguration")
        .and_then(|p| p.get_mut("custom_headers"))
    {
        for value in headers.values_mut() {
            if let Value::String(text) = value {
                *text = render(text, lookup)?;
            }
        }
    }
    if let Some(Value::Object(auth)) = extra.get_mut("auth") {
        for (object, field) in SECRET_FIELDS {
            let Some(Value::Object(inner)) = auth.get_mut(object) else {
                continue;
            };
            let flag = flag_of(field);
            let named = inner.get(&flag).and_then(Value::as_bool) == Some(true);
            let Some(Value::String(text)) = inner.get(field) else {
                continue;
            };
            let value = if named {
                lookup(text.trim())?
            } else {
                render(text, lookup)?
            };
            inner.insert(field.into(), Value::String(value));
            inner.remove(&flag);
        }
    }
    Ok(Cow::Owned(resolved))
}

#[cfg(test)]
mod tests {
    use super::*;
    use erp_runtime::ConfigState;
    use erp_schemas::config::{ConfigChange, ConfigRecord};
    use serde_json::json;

    fn view_with(values: &[(&str, &str)]) -> ConfigView {
        let mut state = ConfigState::default();
        for (n, (key, value)) in values.iter().enumerate() {
            state.apply(
                ConfigRecord {
                    org_id: "org".into(),
                    at: "t".into(),
                    actor: None,
                    base_revision: None,
                    change: ConfigChange::EnvironmentValueSet {
                        key: (*key).into(),
                        value_type: EnvValueType::String,
                        value: (*value).into(),
                        updated_at: "t".into(),
                    },
                },
                10 + n as i64,
            );
        }
        ConfigView::fixed(state)
    }

    fn entry(config: Value) -> WebhookEntry {
        WebhookEntry {
            webhook: serde_json::from_value(config).expect("endpoint"),
            org_id: "org".into(),
            signing_secret: "whsec_x".into(),
            previous_secrets: Vec::new(),
            revision: 3,
            unreadable: None,
        }
    }

    #[test]
    fn resolves_url_headers_and_named_secrets() {
        let view = view_with(&[("erp_host", "erp.example"), ("erp.key", "k-1")]);
        let endpoint = entry(json!({
            "id": "w", "name": "n", "eventName": "e", "creationTime": "t", "updatedTime": "t",
            "url": "https://{{ env.erp_host }}/hook",
            "payloadConfiguration": {"custom_headers": {"X-Host": "{{env.erp_host}}"}},
            "auth": {"authType": "API_KEY", "apiKeyConfig": {"keyName": "X-Key",
                     "keyValue": "erp.key", "keyValueIsEnvVar": true}}
        }));
        let resolved = resolve(&view, &endpoint, &mut Redactor::new()).expect("resolves");
        assert_eq!(
            resolved.webhook.url.as_deref(),
            Some("https://erp.example/hook")
        );
        assert_eq!(
            resolved.webhook.extra["payloadConfiguration"]["custom_headers"]["X-Host"],
            "erp.example"
        );
        assert_eq!(
            resolved.webhook.extra["auth"]["apiKeyConfig"]["keyValue"],
            "k-1"
        );
        assert_eq!(resolved.revision, 11);
    }

    #[test]
    fn the_secret_values_put_into_the_copy_are_collected() {
        let keys = erp_runtime::secrets::Keyring::from_keys(&[[7u8; 32]]).expect("keyring");
        let mut state = ConfigState::default();
        for (n, (key, value, value_type)) in [
            ("host", "erp.example", EnvValueType::String),
            ("token", "t0ken-value", EnvValueType::SecretString),
        ]
        .into_iter()
        .enumerate()
        {
            let stored = match value_type {
                EnvValueType::String => value.to_owned(),
                EnvValueType::SecretString => keys
                    .encrypt(value, &erp_runtime::environment::secret_context("org", key))
                    .expect("sealed"),
            };
            state.apply(
                ConfigRecord {
                    org_id: "org".into(),
                    at: "t".into(),
                    actor: None,
                    base_revision: None,
                    change: ConfigChange::EnvironmentValueSet {
                        key: key.into(),
                        value_type,
                        value: stored,
                        updated_at: "t".into(),
                    },
                },
                n as i64,
            );
        }
        let view = ConfigView::fixed(state).with_secrets(keys);
        let endpoint = entry(json!({
            "id": "w", "name": "n", "eventName": "e", "creationTime": "t", "updatedTime": "t",
            "url": "https://{{env.host}}/hook?t={{env.token}}"
        }));
        let mut secrets = Redactor::new();
        let resolved = resolve(&view, &endpoint, &mut secrets).expect("resolves");
        assert_eq!(
            resolved.webhook.url.as_deref(),
            Some("https://erp.example/hook?t=t0ken-value")
        );
        assert_eq!(
            secrets.redact("https://erp.example/hook?t=t0ken-value"),
            "https://erp.example/hook?t=[redacted]",
            "only the secret is redacted"
        );
    }

    #[test]
    fn an_unknown_variable_is_named() {
        let view = view_with(&[]);
        let endpoint = entry(json!({
            "id": "w", "name": "n", "eventName": "e", "creationTime": "t", "updatedTime": "t",
            "url": "https://{{env.nope}}/hook"
        }));
        assert_eq!(
            resolve(&view, &endpoint, &mut Redactor::new()).map(|_| ()),
            Err(EnvError::Unknown("nope".into()))
        );
        let plain = entry(json!({
            "id": "w", "name": "n", "eventName": "e", "creationTime": "t", "updatedTime": "t",
            "url": "https://x/hook"
        }));
        assert!(matches!(
            resolve(&view, &plain, &mut Redactor::new()),
            Ok(Cow::Borrowed(_))
        ));
    }
}
