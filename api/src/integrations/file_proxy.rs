//! The save-time rules of a `file_proxy` use case's configuration (epilot spec §9) that
//! `FileProxyUseCaseConfiguration` cannot express in OpenAPI 3.0: what each `direction`
//! requires or rejects, balanced Handlebars braces, and JSONata that parses.
//!
//! The shape itself (types, enums, required `steps`, …) is checked against epilot's schema with
//! the rest of the use case (see `use_cases::check_record`). Nothing here runs a file proxy: the
//! configuration is stored and answered, nothing more.

use serde_json::{Map, Value};

use erp_mapping::jsonata::Expression;

use erp_http::ApiError;

/// Fields only a download use case may carry (epilot: "rejected when `direction` is `upload`").
const DOWNLOAD_ONLY: [&str; 4] = [
    "response",
    "params",
    "allowed_origins",
    "prevent_indirect_serving",
];

/// Checks `configuration`: its shape against epilot's schema first (so a wrong type is named as
/// such, not as a missing rule), then 400 for a rule of the direction or unbalanced braces, 422
/// (like every mapping configuration) for JSONata that does not parse.
pub(crate) fn check(configuration: &Map<String, Value>) -> Result<(), ApiError> {
    crate::openapi::check(
        "FileProxyUseCaseConfiguration",
        &Value::Object(configuration.clone()),
    )
    .map_err(|e| {
        let e = e.strip_prefix('/').unwrap_or(&e);
        ApiError::bad_request(format!(
            "configuration does not match FileProxyUseCaseConfiguration: /configuration/{e}"
        ))
    })?;
    let direction = configuration
        .get("direction")
        .and_then(Value::as_str)
        .unwrap_or("download");
    if direction == "download" && !configuration.contains_key("response") {
        return Err(ApiError::bad_request(
            "configuration.response is required when direction is download",
        ));
    }
    if direction == "upload" {
        if let Some(field) = DOWNLOAD_ONLY
            .iter()
            .find(|field| configuration.contains_key(**field))
        {
            return Err(ApiError::bad_request(format!(
                "configuration.{field} is not allowed when direction is upload"
            )));
        }
        if !configuration.contains_key("upload") {
            return Err(ApiError::bad_request(
                "configuration.upload is required when direction is upload",
            ));
        }
    }
    check_auth(configuration.get("auth"))?;
    if let Some(Value::Array(steps)) = configuration.get("steps") {
        for (index, step) in steps.iter().enumerate() {
            let at = format!("configuration.steps[{index}]");
            for key in ["url", "body"] {
                braces(step.get(key), &format!("{at}.{key}"))?;
            }
            if let Some(Value::Object(headers)) = step.get("headers") {
                for (name, value) in headers {
                    braces(Some(value), &format!("{at}.headers.{name}"))?;
                }
            }
            for key in ["enabled", "body_jsonata"] {
                jsonata(step.get(key), &format!("{at}.{key}"))?;
            }
        }
    }
    if let Some(Value::Object(response)) = configuration.get("response") {
        for key in ["body", "filename", "content_type"] {
            jsonata(response.get(key), &format!("configuration.response.{key}"))?;
        }
    }
    for key in ["params_mapping", "file_source"] {
        jsonata(configuration.get(key), &format!("configuration.{key}"))?;
    }
    if let Some(Value::Object(lookups)) = configuration.get("lookups") {
        for (name, lookup) in lookups {
            jsonata(
                lookup.get("source"),
                &format!("configuration.lookups.{name}.source"),
            )?;
        }
    }
    Ok(())
}

/// `oauth2_password` needs a user and a password; every template balances its braces.
fn check_auth(auth: Option<&Value>) -> Result<(), ApiError> {
    let Some(Value::Object(auth)) = auth else {
        return Ok(());
    };
    if auth.get("type").and_then(Value::as_str) == Some("oauth2_password") {
        for key in ["username", "password"] {
            if !auth.get(key).is_some_and(Value::is_string) {
                return Err(ApiError::bad_request(format!(
                    "configuration.auth.{key} is required when auth.type is oauth2_password"
                )));
            }
        }
    }
    for (key, value) in auth {
        match value {
            Value::Object(templates) => {
                for (name, template) in templates {
                    braces(Some(template), &format!("configuration.auth.{key}.{name}"))?;
                }
            }
            value => braces(Some(value), &format!("configuration.auth.{key}"))?,
        }
    }
    Ok(())
}

/// Every `{{` of a Handlebars template has its `}}` before the next `{{`.
fn braces(template: Option<&Value>, at: &str) -> Result<(), ApiError> {
    let Some(Value::String(template)) = template else {
        return Ok(());
    };
    let mut open = false;
    let mut rest = template.as_str();
    while let Some(position) = rest.find(['{', '}']) {
        let tail = &rest[position..];
        if tail.starts_with("{{") {
            if open {
                break;
            }
            open = true;
            rest = tail.trim_start_matches('{');
        } else if tail.starts_with("}}") {
            if !open {
                open = true;
                break;
            }
            open = false;
            rest = tail.trim_start_matches('}');
        } else {
            rest = &tail[1..];
        }
    }
    if open {
        return Err(ApiError::bad_request(format!(
            "{at}: unbalanced {{{{ }}}} in template {template:?}"
        )));
    }
    Ok(())
}

/// The expression parses as JSONata (422, as the mapping engine answers).
fn jsonata(source: Option<&Value>, at: &str) -> Result<(), ApiError> {
    let Some(Value::String(source)) = source else {
        return Ok(());
    };
    Expression::compile(source)
        .map(|_| ())
        .map_err(|error| ApiError::unprocessable("INVALID_CONFIGURATION", format!("{at}: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check_value(value: Value) -> Result<(), ApiError> {
        check(value.as_object().expect("object"))
    }

    fn download() -> Value {
        json!({"steps": [{"url": "\\{{env.erp.base_url}}/documents/{{params.documentId}}", "method": "GET", "response_type": "binary"}],
               "params": [{"name": "documentId", "required": true}],
               "response": {"body": "steps[0].body", "encoding": "binary"}})
    }

    #[test]
    fn directions_require_and_reject_their_fields() {
        assert!(check_value(download()).is_ok());
        let mut no_response = download();
        no_response
            .as_object_mut()
            .map(|map| map.remove("response"));
        let error = check_value(no_response).expect_err("response required");
        assert!(
            error.message.contains("configuration.response"),
            "{}",
            error.message
        );
        let mut upload = download();
        upload["direction"] = json!("upload");
        let error = check_value(upload.clone()).expect_err("response rejected");
        assert!(
            error
                .message
                .contains("configuration.response is not allowed")
        );
        for key in DOWNLOAD_ONLY {
            upload.as_object_mut().map(|map| map.remove(key));
        }
        assert!(check_value(upload.clone()).is_err(), "upload is required");
        upload["upload"] = json!({"max_file_bytes": 1000});
        assert!(check_value(upload).is_ok());
    }

    #[test]
    fn templates_balance_and_expressions_parse() {
        let mut broken = download();
        broken["steps"][0]["url"] = json!("{{params.documentId}/x");
        let error = check_value(broken).expect_err("unbalanced");
        assert!(
            error.message.contains("configuration.steps[0].url"),
            "{}",
            error.message
        );
        let mut broken = download();
        broken["auth"] = json!({"type": "oauth2_password", "token_url": "t", "client_id": "c", "client_secret": "s"});
        assert!(
            check_value(broken).is_err(),
            "password grant needs credentials"
        );
        let mut broken = download();
        broken["response"]["filename"] = json!("steps[0].(");
        let error = check_value(broken).expect_err("jsonata");
        assert_eq!(error.code, "INVALID_CONFIGURATION");
        assert!(error.message.contains("configuration.response.filename"));
        for fine in [
            "plain",
            "{{a}} and {{b}}",
            "{{#if x}}{{y}}{{/if}} }",
            "{{{triple}}}",
        ] {
            assert!(braces(Some(&json!(fine)), "t").is_ok(), "{fine}");
        }
        for bad in ["{{a", "a}}", "{{a {{b}}"] {
            assert!(braces(Some(&json!(bad)), "t").is_err(), "{bad}");
        }
    }
}
