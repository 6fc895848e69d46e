//! The references a blueprint rewrites: webhook ids inside outbound configurations (ids of one
//! organisation) become `{"$ref": "webhooks/<key>"}` on export and the target's ids on
//! install, and the `{{env.*}}` keys that everything references are collected as declarations.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use erp_http::ApiError;

/// The prefix of a webhook reference.
const WEBHOOK_REF: &str = "webhooks/";

/// Every `{{env.<key>}}` key in the strings of `value`, and the key names of `*IsEnvVar` auth
/// fields (which hold a variable's name, not a template).
pub fn env_keys(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::String(text) => {
            let _ = erp_runtime::environment::render(text, |key| {
                out.insert(key.to_owned());
                Ok(String::new())
            });
        }
        Value::Array(items) => items.iter().for_each(|v| env_keys(v, out)),
        Value::Object(map) => {
            for (flag, field) in [
                ("passwordIsEnvVar", "password"),
                ("keyValueIsEnvVar", "keyValue"),
                ("clientSecretIsEnvVar", "clientSecret"),
            ] {
                if map.get(flag) == Some(&Value::Bool(true))
                    && let Some(name) = map.get(field).and_then(Value::as_str)
                {
                    out.insert(name.trim().to_owned());
                }
            }
            map.values().for_each(|v| env_keys(v, out));
        }
        _ => {}
    }
}

/// The `delivery` objects of an outbound configuration's mappings.
fn deliveries(configuration: &mut Value) -> impl Iterator<Item = &mut Map<String, Value>> {
    configuration
        .get_mut("mappings")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(|m| m.get_mut("delivery").and_then(Value::as_object_mut))
}

/// Export: each `webhook_id` replaced by a reference to its key (`keys`: id → key). An id of no
/// endpoint of the organisation cannot be made portable: 422 naming the use case.
pub fn export_webhook_refs(
    configuration: &mut Value,
    keys: &BTreeMap<String, String>,
    use_case: &str,
) -> Result<(), ApiError> {
    for delivery in deliveries(configuration) {
        if let Some(Value::String(id)) = delivery.get("webhook_id") {
            let key = keys.get(id).ok_or_else(|| {
                ApiError::unprocessable(
                    "BLUEPRINT_UNRESOLVED_REFERENCE",
                    format!(
                        "use case {use_case:?} delivers to webhook {id}, which is not an endpoint of this organisation"
                    ),
                )
            })?;
            delivery.insert(
                "webhook_id".into(),
                json!({"$ref": format!("{WEBHOOK_REF}{key}")}),
            );
        }
    }
    Ok(())
}

/// The webhook keys a configuration refers to; a `webhook_id` that is not a reference to a
/// webhook of the blueprint is `BLUEPRINT_INVALID` at `at` (a raw id would point into the
/// source organisation).
pub fn referenced_webhooks(
    configuration: &Value,
    known: &BTreeSet<&str>,
    at: &str,
) -> Result<Vec<String>, ApiError> {
    let mut keys = Vec::new();
    let mappings = configuration
        .get("mappings")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for (i, mapping) in mappings.iter().enumerate() {
        let Some(reference) = mapping.get("delivery").and_then(|d| d.get("webhook_id")) else {
            continue;
        };
        let field = format!("{at}.configuration.mappings[{i}].delivery.webhook_id");
        let key = reference
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix(WEBHOOK_REF))
            .ok_or_else(|| {
                ApiError::bad_request_code(
                    "BLUEPRINT_INVALID",
                    format!("{field} must be {{\"$ref\": \"webhooks/<key>\"}}, not {reference}"),
                )
            })?;
        if !known.contains(key) {
            return Err(ApiError::bad_request_code(
                "BLUEPRINT_INVALID",
                format!("{field} refers to webhook {key:?}, which the blueprint does not hold"),
            ));
        }
        keys.push(key.to_owned());
    }
    Ok(keys)
}

/// Install: each reference replaced by the target's endpoint id (`ids`: key → id; every key
/// was checked by [`referenced_webhooks`]).
pub fn resolve_webhook_refs(configuration: &mut Value, ids: &BTreeMap<String, String>) {
    for delivery in deliveries(configuration) {
        let key = delivery
            .get("webhook_id")
            .and_then(|r| r.get("$ref"))
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix(WEBHOOK_REF))
            .map(str::to_owned);
        if let Some(id) = key.and_then(|k| ids.get(&k)) {
            delivery.insert("webhook_id".into(), Value::String(id.clone()));
        }
    }
}

/// An outbound configuration without what the server stamps on each mapping (`id`,
/// `created_at`, `updated_at`): what two configurations are compared on, and what is exported.
pub fn without_stamps(configuration: &Value) -> Value {
    let mut configuration = configuration.clone();
    if let Some(mappings) = configuration
        .get_mut("mappings")
        .and_then(Value::as_array_mut)
    {
        for mapping in mappings.iter_mut().filter_map(Value::as_object_mut) {
            for stamp in ["id", "created_at", "updated_at"] {
                mapping.remove(stamp);
            }
        }
    }
    configuration
}

/// Gives the mappings of a new configuration the stamps of the current one, position by
/// position, so an update keeps its mapping ids (and their creation times).
pub fn keep_stamps(configuration: &mut Value, current: Option<&Value>) {
    let Some(current) = current
        .and_then(|c| c.get("mappings"))
        .and_then(Value::as_array)
    else {
        return;
    };
    if let Some(mappings) = configuration
        .get_mut("mappings")
        .and_then(Value::as_array_mut)
    {
        for (mapping, old) in mappings.iter_mut().zip(current) {
            if let Some(mapping) = mapping.as_object_mut() {
                for stamp in ["id", "created_at"] {
                    if let Some(value) = old.get(stamp) {
                        mapping.insert(stamp.into(), value.clone());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_keys_are_found_in_templates_and_env_var_fields() {
        let mut keys = BTreeSet::new();
        env_keys(
            &json!({"url": "https://{{ env.erp.host }}/x/{{params.id}}", "auth": {
                "basicAuthConfig": {"password": "erp_pw", "passwordIsEnvVar": true}}}),
            &mut keys,
        );
        assert_eq!(
            keys.into_iter().collect::<Vec<_>>(),
            vec!["erp.host".to_owned(), "erp_pw".to_owned()]
        );
    }

    #[test]
    fn webhook_ids_round_trip_through_references() {
        let mut configuration = json!({"mappings": [
            {"id": "m1", "delivery": {"type": "webhook", "webhook_id": "w-a"}},
            {"delivery": {"type": "poll"}}]});
        let keys = BTreeMap::from([("w-a".to_owned(), "erp".to_owned())]);
        export_webhook_refs(&mut configuration, &keys, "uc").expect("exports");
        assert_eq!(
            configuration["mappings"][0]["delivery"]["webhook_id"],
            json!({"$ref": "webhooks/erp"})
        );
        let known = BTreeSet::from(["erp"]);
        assert_eq!(
            referenced_webhooks(&configuration, &known, "use_cases[0]").expect("refs"),
            vec!["erp".to_owned()]
        );
        let error = referenced_webhooks(&configuration, &BTreeSet::new(), "use_cases[0]")
            .expect_err("unknown key");
        assert!(
            error
                .message
                .contains("use_cases[0].configuration.mappings[0].delivery.webhook_id"),
            "{}",
            error.message
        );
        resolve_webhook_refs(
            &mut configuration,
            &BTreeMap::from([("erp".to_owned(), "w-b".to_owned())]),
        );
        assert_eq!(
            configuration["mappings"][0]["delivery"]["webhook_id"],
            "w-b"
        );
        assert!(
            without_stamps(&configuration)["mappings"][0]
                .get("id")
                .is_none()
        );
    }
}
