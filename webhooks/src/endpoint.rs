//! An endpoint's delivery configuration beyond url and method: `auth`, custom headers
//! (`payloadConfiguration.custom_headers`), filters and the `jsonataExpression` payload
//! transform, read from the `WebhookConfig` fields kept in `WebhookEndpoint.extra`.
//!
//! The API validates a configuration with [`EndpointConfig::parse`] when it is saved, so errors
//! reach the user as a 400 naming the field; the dispatcher parses (and compiles) it once per
//! endpoint revision and caches it, together with the endpoint's OAuth token.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::Method;
use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue};
use serde_json::{Map, Value};

use erp_mapping::jsonata::{self, Expression};

pub use crate::error::ConfigError;
use crate::filter::Filter;
use crate::oauth::{OAuthClient, OAuthSettings, ParamKind};
use crate::settings::{BatchConfig, RateLimit, ordering};

/// What the API answers in place of a stored secret.
pub const MASK: &str = "********";

/// The secrets inside `auth`: (config object, field).
pub use erp_schemas::config::AUTH_SECRET_FIELDS as SECRET_FIELDS;

/// Headers a user may not set: the request's framing and signature, what proxies and the
/// platform set, hop-by-hop and conditional headers. Lower case.
const FORBIDDEN_HEADERS: [&str; 24] = [
    "authorization",
    "proxy-authorization",
    "content-type",
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "upgrade",
    "te",
    "trailer",
    "expect",
    "forwarded",
    "via",
    "x-real-ip",
    "x-epilot-org-id",
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
    "if-range",
    "range",
];

/// Prefixes of forbidden headers (`webhook-` covers id, timestamp and signature).
const FORBIDDEN_PREFIXES: [&str; 5] = ["webhook-", "x-forwarded-", "x-amz-", "proxy-", "sec-"];

/// Whether a user may set this header (custom headers); `name` in any case.
pub fn header_allowed(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    !FORBIDDEN_HEADERS.contains(&name.as_str())
        && !FORBIDDEN_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// How requests to an endpoint authenticate.
pub enum Auth {
    None,
    /// `Authorization: Basic …`, precomputed.
    Basic(HeaderValue),
    /// `<keyName>: <keyValue>`.
    ApiKey(HeaderName, HeaderValue),
    /// `Authorization: Bearer <token>` from the client credentials flow.
    OAuth(Box<OAuthClient>),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the credentials.
        match self {
            Self::None => f.write_str("None"),
            Self::Basic(_) => f.write_str("Basic"),
            Self::ApiKey(name, _) => write!(f, "ApiKey({name})"),
            Self::OAuth(client) => write!(f, "{client:?}"),
        }
    }
}

/// An endpoint's parsed delivery configuration.
#[derive(Debug)]
pub struct EndpointConfig {
    pub auth: Auth,
    /// Custom headers, validated.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub filter: Filter,
    /// `jsonataExpression`, compiled.
    pub transform: Option<Expression>,
    /// `rateLimit` (our extension): requests per second and burst.
    pub rate_limit: Option<RateLimit>,
    /// `batch` (our extension): events per request.
    pub batch: Option<BatchConfig>,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        Self {
            auth: Auth::None,
            headers: Vec::new(),
            filter: Filter::default(),
            transform: None,
            rate_limit: None,
            batch: None,
        }
    }
}

/// What to do with an event for an endpoint, after its filters and transform.
#[derive(Debug)]
pub enum Prepared {
    /// Send this body.
    Send(Arc<[u8]>),
    /// The endpoint's filters do not let the event through.
    Filtered,
    /// A filter or the transform failed: terminal for this delivery.
    Failed { code: &'static str, message: String },
}

fn present<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.get(key).filter(|v| !v.is_null())
}

fn object<'a>(value: &'a Value, field: &str) -> Result<&'a Map<String, Value>, ConfigError> {
    value
        .as_object()
        .ok_or_else(|| ConfigError::new(field, "must be an object"))
}

fn required_string<'a>(
    map: &'a Map<String, Value>,
    at: &str,
    key: &str,
) -> Result<&'a str, ConfigError> {
    match present(map, key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(Value::String(_)) | None => {
            Err(ConfigError::new(format!("{at}.{key}"), "is required"))
        }
        Some(_) => Err(ConfigError::new(format!("{at}.{key}"), "must be a string")),
    }
}

fn optional_string<'a>(
    map: &'a Map<String, Value>,
    at: &str,
    key: &str,
) -> Result<Option<&'a str>, ConfigError> {
    match present(map, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ConfigError::new(format!("{at}.{key}"), "must be a string")),
    }
}

/// `*IsEnvVar: true` means the secret field holds the name of an environment variable (resolved
/// at send time by the dispatcher): checked to be a valid name.
fn env_var_name(
    map: &Map<String, Value>,
    at: &str,
    key: &str,
    field: &str,
) -> Result<(), ConfigError> {
    if present(map, key).and_then(Value::as_bool) != Some(true) {
        return Ok(());
    }
    match present(map, field).and_then(Value::as_str) {
        Some(name) if erp_schemas::config::valid_env_key(name.trim()) => Ok(()),
        _ => Err(ConfigError::new(
            format!("{at}.{field}"),
            format!("must name an environment variable ({key} is true)"),
        )),
    }
}

fn sensitive(text: &str, field: &str) -> Result<HeaderValue, ConfigError> {
    let mut value = HeaderValue::from_str(text)
        .map_err(|_| ConfigError::new(field, "is not a valid header value"))?;
    value.set_sensitive(true);
    Ok(value)
}

fn parse_auth(config: &Map<String, Value>) -> Result<Auth, ConfigError> {
    let Some(auth) = present(config, "auth") else {
        return Ok(Auth::None);
    };
    let auth = object(auth, "auth")?;
    let kind = required_string(auth, "auth", "authType")?;
    match kind {
        "NONE" => Ok(Auth::None),
        "BASIC" => {
            let at = "auth.basicAuthConfig";
            let basic = object(
                present(auth, "basicAuthConfig")
                    .ok_or_else(|| ConfigError::new(at, "is required for authType BASIC"))?,
                at,
            )?;
            env_var_name(basic, at, "passwordIsEnvVar", "password")?;
            let username = required_string(basic, at, "username")?;
            if username.contains(':') {
                return Err(ConfigError::new(
                    format!("{at}.username"),
                    "must not contain ':' (RFC 7617)",
                ));
            }
            let password = optional_string(basic, at, "password")?.unwrap_or_default();
            let encoded = STANDARD.encode(format!("{username}:{password}"));
            Ok(Auth::Basic(sensitive(&format!("Basic {encoded}"), at)?))
        }
        "API_KEY" => {
            let at = "auth.apiKeyConfig";
            let key = object(
                present(auth, "apiKeyConfig")
                    .ok_or_else(|| ConfigError::new(at, "is required for authType API_KEY"))?,
                at,
            )?;
            env_var_name(key, at, "keyValueIsEnvVar", "keyValue")?;
            let name = required_string(key, at, "keyName")?;
            let field = format!("{at}.keyName");
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| ConfigError::new(&field, "is not a valid header name"))?;
            // An API key may well travel in `Authorization`; the framing and signature headers
            // stay ours.
            if header != AUTHORIZATION && !header_allowed(header.as_str()) {
                return Err(ConfigError::new(
                    &field,
                    format!("{name:?} is a header the dispatcher sets itself"),
                ));
            }
            let value = required_string(key, at, "keyValue")?;
            Ok(Auth::ApiKey(
                header,
                sensitive(value, &format!("{at}.keyValue"))?,
            ))
        }
        "OAUTH_CLIENT_CREDENTIALS" => {
            let at = "auth.oauthConfig";
            let oauth = object(
                present(auth, "oauthConfig").ok_or_else(|| {
                    ConfigError::new(at, "is required for authType OAUTH_CLIENT_CREDENTIALS")
                })?,
                at,
            )?;
            env_var_name(oauth, at, "clientSecretIsEnvVar", "clientSecret")?;
            let client_id = required_string(oauth, at, "clientId")?.to_owned();
            let client_secret = required_string(oauth, at, "clientSecret")?.to_owned();
            let endpoint = required_string(oauth, at, "endpoint")?;
            let endpoint = reqwest::Url::parse(endpoint)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https"))
                .ok_or_else(|| {
                    ConfigError::new(
                        format!("{at}.endpoint"),
                        "must be an absolute http or https URL",
                    )
                })?;
            let method = optional_string(oauth, at, "httpMethod")?.unwrap_or("POST");
            let method = match method {
                "POST" => Method::POST,
                "GET" => Method::GET,
                "PUT" => Method::PUT,
                other => {
                    return Err(ConfigError::new(
                        format!("{at}.httpMethod"),
                        format!("must be POST, GET or PUT for a token request, got {other:?}"),
                    ));
                }
            };
            let mut params = Vec::new();
            let list = match present(oauth, "customParameterList") {
                None => &Vec::new(),
                Some(Value::Array(items)) => items,
                Some(_) => {
                    return Err(ConfigError::new(
                        format!("{at}.customParameterList"),
                        "must be an array",
                    ));
                }
            };
            for (i, param) in list.iter().enumerate() {
                let pat = format!("{at}.customParameterList[{i}]");
                let param = object(param, &pat)?;
                let kind = match required_string(param, &pat, "type")? {
                    "body" => ParamKind::Body,
                    "query" => ParamKind::Query,
                    "header" => ParamKind::Header,
                    other => {
                        return Err(ConfigError::new(
                            format!("{pat}.type"),
                            format!("must be body, query or header, got {other:?}"),
                        ));
                    }
                };
                let key = required_string(param, &pat, "key")?.to_owned();
                let value = optional_string(param, &pat, "value")?
                    .unwrap_or_default()
                    .to_owned();
                if kind == ParamKind::Header
                    && (HeaderName::from_bytes(key.as_bytes()).is_err()
                        || HeaderValue::from_str(&value).is_err())
                {
                    return Err(ConfigError::new(
                        pat,
                        "is not a valid header name and value",
                    ));
                }
                params.push((kind, key, value));
            }
            Ok(Auth::OAuth(Box::new(OAuthClient::new(OAuthSettings {
                client_id,
                client_secret,
                endpoint,
                method,
                params,
            }))))
        }
        other => Err(ConfigError::new(
            "auth.authType",
            format!("must be NONE, BASIC, API_KEY or OAUTH_CLIENT_CREDENTIALS, got {other:?}"),
        )),
    }
}

fn parse_headers(
    config: &Map<String, Value>,
) -> Result<Vec<(HeaderName, HeaderValue)>, ConfigError> {
    let Some(payload) = present(config, "payloadConfiguration") else {
        return Ok(Vec::new());
    };
    let payload = object(payload, "payloadConfiguration")?;
    let Some(headers) = present(payload, "custom_headers") else {
        return Ok(Vec::new());
    };
    let headers = object(headers, "payloadConfiguration.custom_headers")?;
    let mut parsed = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        let field = format!("payloadConfiguration.custom_headers.{name}");
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| ConfigError::new(&field, "is not a valid header name"))?;
        if !header_allowed(name) {
            return Err(ConfigError::new(
                &field,
                "is a forbidden header (framing, authentication, signature, proxy, hop-by-hop \
                 and conditional headers are set by the dispatcher or not at all)",
            ));
        }
        let Value::String(value) = value else {
            return Err(ConfigError::new(&field, "must be a string"));
        };
        let value = HeaderValue::from_str(value)
            .map_err(|_| ConfigError::new(&field, "is not a valid header value"))?;
        parsed.push((header, value));
    }
    Ok(parsed)
}

impl EndpointConfig {
    /// Adds the credentials of the configuration to `secrets`: the Basic header, the API key,
    /// the OAuth client secret. Custom header values are not credentials: the API shows them.
    pub fn add_secrets(&self, secrets: &mut crate::redact::Redactor) {
        match &self.auth {
            Auth::None => {}
            Auth::Basic(value) => {
                if let Ok(value) = value.to_str() {
                    secrets.add_basic(value);
                }
            }
            Auth::ApiKey(_, value) => {
                if let Ok(value) = value.to_str() {
                    secrets.add(value);
                }
            }
            Auth::OAuth(client) => client.add_secrets(secrets),
        }
    }

    /// Parses and validates the configuration kept in a `WebhookEndpoint`'s `extra`, compiling
    /// its JSONata expressions.
    pub fn parse(config: &Map<String, Value>) -> Result<Self, ConfigError> {
        let auth = parse_auth(config)?;
        let headers = parse_headers(config)?;
        let filter = Filter::parse(config)?;
        let ordered = ordering::parse_mode(config)?;
        let transform = match present(config, "jsonataExpression") {
            None => None,
            Some(Value::String(source)) if source.trim().is_empty() => None,
            Some(Value::String(source)) => Some(Expression::compile(source).map_err(|e| {
                ConfigError::new("jsonataExpression", format!("does not compile: {e}"))
            })?),
            Some(_) => return Err(ConfigError::new("jsonataExpression", "must be a string")),
        };
        let batch = BatchConfig::parse(config)?;
        if ordered && batch.is_some() {
            // A lane sends one event at a time, so its events would never be batched: refused
            // rather than silently ignored.
            return Err(ConfigError::new(
                "batch",
                "cannot be combined with ordering \"per_key\" (an ordered key is delivered one \
                 event at a time)",
            ));
        }
        Ok(Self {
            auth,
            headers,
            filter,
            transform,
            rate_limit: RateLimit::parse(config)?,
            batch,
        })
    }

    /// Whether delivering needs the payload looked at (filters or a transform).
    pub fn inspects_payload(&self) -> bool {
        self.filter.is_active() || self.transform.is_some()
    }

    /// Applies the filters, then the transform, to `body` (JSON). Runs JSONata: call it off the
    /// async threads.
    pub fn prepare(&self, body: &Arc<[u8]>, timeout: Duration) -> Prepared {
        if !self.inspects_payload() {
            return Prepared::Send(Arc::clone(body));
        }
        let payload: Value = match serde_json::from_slice(body) {
            Ok(payload) => payload,
            Err(error) => {
                return Prepared::Failed {
                    code: "PAYLOAD_NOT_JSON",
                    message: format!("the payload is not JSON: {error}"),
                };
            }
        };
        match self.filter.matches(&payload, timeout) {
            Ok(true) => {}
            Ok(false) => return Prepared::Filtered,
            Err(message) => {
                return Prepared::Failed {
                    code: "FILTER_FAILED",
                    message,
                };
            }
        }
        let Some(transform) = &self.transform else {
            return Prepared::Send(Arc::clone(body));
        };
        match jsonata::evaluate_json(transform, &payload, timeout) {
            Ok(Some(value)) => match serde_json::to_vec(&value) {
                Ok(bytes) => Prepared::Send(Arc::from(bytes)),
                Err(error) => Prepared::Failed {
                    code: "TRANSFORM_FAILED",
                    message: format!("jsonataExpression result cannot be serialised: {error}"),
                },
            },
            Ok(None) => Prepared::Failed {
                code: "TRANSFORM_FAILED",
                message: "jsonataExpression produced no value for this event".into(),
            },
            Err(error) => Prepared::Failed {
                code: "TRANSFORM_FAILED",
                message: format!("jsonataExpression failed: {error}"),
            },
        }
    }
}

/// Replaces the secrets inside `auth` with [`MASK`], for API answers.
pub fn mask_secrets(config: &mut Map<String, Value>) {
    let Some(Value::Object(auth)) = config.get_mut("auth") else {
        return;
    };
    for (object, field) in SECRET_FIELDS {
        if let Some(Value::Object(inner)) = auth.get_mut(object)
            && let Some(secret) = inner.get_mut(field)
            && !secret.is_null()
        {
            *secret = Value::String(MASK.into());
        }
    }
}

/// Applies epilot's update rule for secrets to a new configuration, given the stored one: an
/// omitted secret (or [`MASK`], as sent back by a client that read the configuration) keeps the
/// stored value of the same field, `null` clears it, a string sets it.
pub fn keep_secrets(new: &mut Map<String, Value>, stored: &Map<String, Value>) {
    let Some(Value::Object(auth)) = new.get_mut("auth") else {
        return;
    };
    for (object, field) in SECRET_FIELDS {
        let Some(Value::Object(inner)) = auth.get_mut(object) else {
            continue;
        };
        match inner.get(field) {
            Some(Value::Null) => {
                inner.remove(field);
            }
            Some(Value::String(s)) if s != MASK => {}
            _ => {
                let kept = stored
                    .get("auth")
                    .and_then(|a| a.get(object))
                    .and_then(|o| o.get(field))
                    .filter(|v| v.is_string())
                    .cloned();
                match kept {
                    Some(value) => {
                        inner.insert(field.into(), value);
                    }
                    None => {
                        inner.remove(field);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(config: Value) -> Result<EndpointConfig, ConfigError> {
        EndpointConfig::parse(config.as_object().expect("object"))
    }

    fn field_of(config: Value) -> String {
        match parse(config.clone()) {
            Err(error) => error.field,
            Ok(_) => panic!("{config} should be refused"),
        }
    }

    #[test]
    fn per_key_order_and_batches_exclude_each_other() {
        assert_eq!(
            field_of(json!({"ordering": "per_key", "batch": {"maxEvents": 10}})),
            "batch"
        );
        assert!(parse(json!({"ordering": "none", "batch": {"maxEvents": 10}})).is_ok());
        assert!(parse(json!({"ordering": "per_key"})).is_ok());
    }

    #[test]
    fn auth_kinds() {
        let basic = parse(json!({"auth": {"authType": "BASIC",
            "basicAuthConfig": {"username": "erp", "password": "pw"}}}))
        .expect("valid");
        match basic.auth {
            Auth::Basic(value) => assert_eq!(value, "Basic ZXJwOnB3"),
            other => panic!("{other:?}"),
        }
        let key = parse(json!({"auth": {"authType": "API_KEY",
            "apiKeyConfig": {"keyName": "X-API-Key", "keyValue": "k"}}}))
        .expect("valid");
        match key.auth {
            Auth::ApiKey(name, value) => assert_eq!(
                (name.as_str(), value),
                ("x-api-key", "k".parse().expect("value"))
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(json!({"auth": {"authType": "NONE"}}))
                .expect("valid")
                .auth,
            Auth::None
        ));
        let oauth = parse(json!({"auth": {"authType": "OAUTH_CLIENT_CREDENTIALS", "oauthConfig": {
            "clientId": "c", "clientSecret": "s3cr3t", "endpoint": "https://idp.example/token",
            "httpMethod": "POST", "customParameterList": [{"type": "body", "key": "scope", "value": "erp"}]}}}))
        .expect("valid");
        assert!(matches!(oauth.auth, Auth::OAuth(_)));
        assert!(!format!("{:?}", oauth.auth).contains("s3cr3t"));
    }

    #[test]
    fn invalid_auth_names_the_field() {
        let cases = [
            (json!({"auth": {}}), "auth.authType"),
            (json!({"auth": {"authType": "KERBEROS"}}), "auth.authType"),
            (
                json!({"auth": {"authType": "BASIC"}}),
                "auth.basicAuthConfig",
            ),
            (
                json!({"auth": {"authType": "BASIC", "basicAuthConfig": {"password": "x"}}}),
                "auth.basicAuthConfig.username",
            ),
            (
                json!({"auth": {"authType": "BASIC", "basicAuthConfig": {"username": "u", "passwordIsEnvVar": true}}}),
                "auth.basicAuthConfig.password",
            ),
            (
                json!({"auth": {"authType": "API_KEY", "apiKeyConfig": {"keyName": "X-Key"}}}),
                "auth.apiKeyConfig.keyValue",
            ),
            (
                json!({"auth": {"authType": "API_KEY", "apiKeyConfig": {"keyName": "Content-Type", "keyValue": "v"}}}),
                "auth.apiKeyConfig.keyName",
            ),
            (
                json!({"auth": {"authType": "OAUTH_CLIENT_CREDENTIALS", "oauthConfig": {
                "clientId": "c", "clientSecret": "s", "endpoint": "ftp://x"}}}),
                "auth.oauthConfig.endpoint",
            ),
            (
                json!({"auth": {"authType": "OAUTH_CLIENT_CREDENTIALS", "oauthConfig": {
                "clientId": "c", "endpoint": "https://x/token"}}}),
                "auth.oauthConfig.clientSecret",
            ),
            (
                json!({"auth": {"authType": "OAUTH_CLIENT_CREDENTIALS", "oauthConfig": {
                "clientId": "c", "clientSecret": "s", "endpoint": "https://x/token",
                "customParameterList": [{"type": "cookie", "key": "a", "value": "b"}]}}}),
                "auth.oauthConfig.customParameterList[0].type",
            ),
            (json!({"jsonataExpression": "$foo("}), "jsonataExpression"),
        ];
        for (config, field) in cases {
            assert_eq!(field_of(config.clone()), field, "{config}");
        }
    }

    #[test]
    fn custom_headers_refuse_the_forbidden_list() {
        let ok = parse(json!({"payloadConfiguration": {"custom_headers": {"X-Tenant": "north"}}}))
            .expect("valid");
        assert_eq!(ok.headers.len(), 1);
        for name in [
            "Authorization",
            "content-type",
            "Content-Length",
            "Host",
            "x-epilot-org-id",
            "webhook-id",
            "webhook-signature",
            "X-Forwarded-For",
            "x-amz-date",
            "Connection",
            "Transfer-Encoding",
            "If-None-Match",
        ] {
            let config = json!({"payloadConfiguration": {"custom_headers": {name: "v"}}});
            assert_eq!(
                field_of(config),
                format!("payloadConfiguration.custom_headers.{name}")
            );
        }
    }

    #[test]
    fn transform_and_filter_prepare_the_body() {
        let config = parse(json!({
            "filterConditions": {"conditions": [{"field": "kind", "operation": "equals", "values": ["meter"]}]},
            "jsonataExpression": "{\"id\": id}"
        }))
        .expect("valid");
        let timeout = Duration::from_millis(500);
        let body: Arc<[u8]> = Arc::from(br#"{"kind":"meter","id":7}"#.as_slice());
        match config.prepare(&body, timeout) {
            Prepared::Send(out) => assert_eq!(&*out, br#"{"id":7}"#),
            other => panic!("{other:?}"),
        }
        let other: Arc<[u8]> = Arc::from(br#"{"kind":"contract","id":7}"#.as_slice());
        assert!(matches!(
            config.prepare(&other, timeout),
            Prepared::Filtered
        ));
        let failing = parse(json!({"jsonataExpression": "$error('no')"})).expect("valid");
        assert!(matches!(
            failing.prepare(&body, timeout),
            Prepared::Failed {
                code: "TRANSFORM_FAILED",
                ..
            }
        ));
    }

    #[test]
    fn secrets_are_masked_and_kept() {
        let stored = json!({"auth": {"authType": "BASIC",
            "basicAuthConfig": {"username": "u", "password": "secret"}}});
        let stored = stored.as_object().expect("object");
        let mut shown = stored.clone();
        mask_secrets(&mut shown);
        assert_eq!(shown["auth"]["basicAuthConfig"]["password"], MASK);

        for sent in [
            json!({"username": "v"}),
            json!({"username": "v", "password": MASK}),
        ] {
            let mut new = json!({"auth": {"authType": "BASIC", "basicAuthConfig": sent}});
            let new = new.as_object_mut().expect("object");
            keep_secrets(new, stored);
            assert_eq!(new["auth"]["basicAuthConfig"]["password"], "secret");
        }
        let mut cleared = json!({"auth": {"authType": "BASIC",
            "basicAuthConfig": {"username": "v", "password": null}}});
        let cleared = cleared.as_object_mut().expect("object");
        keep_secrets(cleared, stored);
        assert!(cleared["auth"]["basicAuthConfig"].get("password").is_none());
        let mut set = json!({"auth": {"authType": "BASIC",
            "basicAuthConfig": {"username": "v", "password": "new"}}});
        let set = set.as_object_mut().expect("object");
        keep_secrets(set, stored);
        assert_eq!(set["auth"]["basicAuthConfig"]["password"], "new");
    }
}
