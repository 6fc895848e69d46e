//! OAuth2 client credentials for endpoints with `authType: OAUTH_CLIENT_CREDENTIALS`: a token is
//! fetched from the endpoint's token URL, cached per endpoint revision until shortly before it
//! expires, shared by all deliveries to that endpoint (one exchange at a time), and replaced
//! when the endpoint answers 401.

use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::Method;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue};
use serde_json::Value;
use tokio::sync::Mutex;

use crate::redact::Redactor;

/// How much of a failed token response's body its error keeps.
const EXCERPT_CHARS: usize = 500;

/// Where a `customParameterList` entry goes in the token request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    Body,
    Query,
    Header,
}

/// The validated `oauthConfig` of an endpoint.
#[derive(Clone)]
pub struct OAuthSettings {
    pub client_id: String,
    pub client_secret: String,
    pub endpoint: reqwest::Url,
    pub method: Method,
    pub params: Vec<(ParamKind, String, String)>,
}

/// How long before `expires_in` a token is refreshed: a tenth of its lifetime, at most a minute,
/// so a request never leaves with a token that expires on the way.
fn refresh_margin(lifetime: Duration) -> Duration {
    (lifetime / 10).min(Duration::from_secs(60))
}

/// A token endpoint that gives no `expires_in`: the token is reused this long.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);

/// Why no token could be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The token URL is an address the destination policy refuses (the same policy as
    /// deliveries): terminal, retrying cannot help.
    #[error("token endpoint refused by the destination policy: {0}")]
    Forbidden(String),
    /// The exchange failed (network, status, response): retryable. The message never carries
    /// the client secret or the token URL's query.
    #[error("{0}")]
    Failed(String),
}

/// The token URL as it may be shown: scheme, host, port and path, never user info or query
/// (either can carry a secret).
fn shown(url: &reqwest::Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.set_fragment(None);
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.to_string()
}

/// URL, form body and headers of a token request.
type RequestParts = (reqwest::Url, String, Vec<(HeaderName, HeaderValue)>);

#[derive(Clone)]
struct Token {
    header: HeaderValue,
    refresh_at: Instant,
}

/// An endpoint's OAuth client with its cached token.
pub struct OAuthClient {
    settings: OAuthSettings,
    token: Mutex<Option<Token>>,
}

impl std::fmt::Debug for OAuthClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret or the token.
        f.debug_struct("OAuthClient")
            .field("client_id", &self.settings.client_id)
            .field("endpoint", &self.settings.endpoint.as_str())
            .finish_non_exhaustive()
    }
}

impl OAuthClient {
    /// A client without a token yet.
    pub fn new(settings: OAuthSettings) -> Self {
        Self {
            settings,
            token: Mutex::new(None),
        }
    }

    /// The `Authorization` value to send: the cached token while it is fresh, else a new one.
    /// `rejected` is a value the endpoint just answered 401 to: it is not reused (unless another
    /// delivery already replaced it). Returns whether a token was fetched for this call.
    ///
    /// `client` must be the delivery client (guarded resolver, no redirects, no proxy); the
    /// token URL's IP literal is checked against `policy` here, as a delivery URL is.
    pub async fn authorization(
        &self,
        client: &reqwest::Client,
        policy: &crate::safety::DestinationPolicy,
        body_cap: usize,
        rejected: Option<&HeaderValue>,
    ) -> Result<(HeaderValue, bool), TokenError> {
        crate::safety::check_literal(&self.settings.endpoint, policy)
            .map_err(TokenError::Forbidden)?;
        // Held across the exchange, so concurrent deliveries wait for one token instead of each
        // fetching their own.
        let mut cached = self.token.lock().await;
        if let Some(token) = cached.as_ref()
            && Instant::now() < token.refresh_at
            && rejected.is_none_or(|r| *r != token.header)
        {
            return Ok((token.header.clone(), false));
        }
        *cached = None;
        let token = self.exchange(client, body_cap).await?;
        *cached = Some(token.clone());
        Ok((token.header, true))
    }

    /// Adds the values a token request carries that must never be recorded: the client secret
    /// and the Basic credentials of a `GET` request.
    pub fn add_secrets(&self, secrets: &mut Redactor) {
        secrets.add(&self.settings.client_secret);
        if let Ok((_, _, headers)) = self.request_parts() {
            for (name, value) in headers {
                if name == AUTHORIZATION
                    && let Ok(value) = value.to_str()
                {
                    secrets.add_basic(value);
                }
            }
        }
    }

    /// The token request's URL, form body and extra headers. Synchronous: the form serialiser
    /// is not `Send`, so it must not live across an await.
    ///
    /// A `GET` token request sends the client credentials in an `Authorization: Basic` header
    /// (RFC 6749 §2.3.1), never in the query: URLs end up in proxy and server logs.
    fn request_parts(&self) -> Result<RequestParts, String> {
        let s = &self.settings;
        let mut url = s.endpoint.clone();
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "client_credentials");
        let mut headers = Vec::new();
        if s.method == Method::GET {
            let encode =
                |v: &str| url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
            let pair = format!("{}:{}", encode(&s.client_id), encode(&s.client_secret));
            let mut value = HeaderValue::from_str(&format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            ))
            .map_err(|_| "client credentials are not a valid header value".to_owned())?;
            value.set_sensitive(true);
            headers.push((AUTHORIZATION, value));
        } else {
            form.append_pair("client_id", &s.client_id);
            form.append_pair("client_secret", &s.client_secret);
        }
        for (kind, key, value) in &s.params {
            match kind {
                ParamKind::Body => {
                    form.append_pair(key, value);
                }
                ParamKind::Query => {
                    url.query_pairs_mut().append_pair(key, value);
                }
                ParamKind::Header => {
                    let name = HeaderName::from_bytes(key.as_bytes())
                        .map_err(|e| format!("custom header parameter {key:?}: {e}"))?;
                    let value = HeaderValue::from_str(value)
                        .map_err(|e| format!("custom header parameter {key:?}: {e}"))?;
                    headers.push((name, value));
                }
            }
        }
        Ok((url, form.finish(), headers))
    }

    async fn exchange(
        &self,
        client: &reqwest::Client,
        body_cap: usize,
    ) -> Result<Token, TokenError> {
        let s = &self.settings;
        let (mut url, form, headers) = self.request_parts().map_err(TokenError::Failed)?;
        let mut request = if s.method == Method::GET {
            // A GET has no body: the parameters go into the query.
            let query = match url.query() {
                Some(existing) if !existing.is_empty() => format!("{existing}&{form}"),
                _ => form,
            };
            url.set_query(Some(&query));
            client.request(Method::GET, url)
        } else {
            client
                .request(s.method.clone(), url)
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(form)
        };
        request = request.header(ACCEPT, "application/json");
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let endpoint = shown(&s.endpoint);
        let response = request.send().await.map_err(|e| {
            if crate::safety::is_forbidden(&e) {
                return TokenError::Forbidden(format!(
                    "{endpoint} resolves only to addresses that are not allowed"
                ));
            }
            // reqwest's message names the URL, query included: drop it, name ours.
            let e = e.without_url();
            let mut text = e.to_string();
            let mut cause = std::error::Error::source(&e);
            while let Some(inner) = cause {
                text.push_str(": ");
                text.push_str(&inner.to_string());
                cause = inner.source();
            }
            TokenError::Failed(format!("token request to {endpoint} failed: {text}"))
        })?;
        let status = response.status();
        let (body, truncated) = crate::response::read_capped(response, body_cap).await;
        if !status.is_success() {
            // A token endpoint may echo the request (the form with our client secret, the
            // Basic header): kept for diagnosis only with those values redacted.
            let mut secrets = Redactor::new();
            self.add_secrets(&mut secrets);
            let excerpt: String = body.chars().take(EXCERPT_CHARS).collect();
            let cut = truncated || excerpt.len() < body.len();
            return Err(TokenError::Failed(format!(
                "token endpoint {endpoint} answered {}: {}",
                status.as_u16(),
                secrets.redact_excerpt(&excerpt, cut)
            )));
        }
        parse_token(&body, Instant::now()).map_err(TokenError::Failed)
    }
}

/// Reads a token response (RFC 6749 §5.1).
fn parse_token(body: &str, now: Instant) -> Result<Token, String> {
    let json: Value =
        serde_json::from_str(body).map_err(|e| format!("token response is not JSON: {e}"))?;
    let access_token = json
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or("token response has no access_token")?;
    let lifetime = match json.get("expires_in") {
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|secs| secs.is_finite() && *secs > 0.0)
    .map_or(DEFAULT_LIFETIME, Duration::from_secs_f64);
    let mut header = HeaderValue::from_str(&format!("Bearer {access_token}"))
        .map_err(|_| "access_token is not a valid header value".to_owned())?;
    header.set_sensitive(true);
    Ok(Token {
        header,
        refresh_at: now + lifetime - refresh_margin(lifetime),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_refreshed_shortly_before_they_expire() {
        let now = Instant::now();
        let token = parse_token(r#"{"access_token":"t","expires_in":3600}"#, now).expect("token");
        assert_eq!(token.header, "Bearer t");
        assert_eq!(token.refresh_at, now + Duration::from_secs(3540));
        let token = parse_token(r#"{"access_token":"t","expires_in":"20"}"#, now).expect("token");
        assert_eq!(token.refresh_at, now + Duration::from_secs(18));
        let token = parse_token(r#"{"access_token":"t"}"#, now).expect("token");
        assert_eq!(token.refresh_at, now + Duration::from_secs(270));
        assert!(parse_token(r#"{"token":"t"}"#, now).is_err());
        assert!(parse_token("<html>", now).is_err());
    }

    fn client(method: Method, endpoint: &str) -> OAuthClient {
        OAuthClient::new(OAuthSettings {
            client_id: "id".into(),
            client_secret: "s3cr3t&x".into(),
            endpoint: endpoint.parse().expect("url"),
            method,
            params: vec![(ParamKind::Query, "audience".into(), "erp".into())],
        })
    }

    #[test]
    fn a_get_token_request_keeps_the_secret_out_of_the_url() {
        let (url, form, headers) = client(Method::GET, "https://auth.example/token")
            .request_parts()
            .expect("parts");
        assert!(!url.as_str().contains("s3cr3t"), "{url}");
        assert!(
            !form.contains("s3cr3t") && !form.contains("client_id"),
            "{form}"
        );
        let basic = headers
            .iter()
            .find(|(n, _)| *n == AUTHORIZATION)
            .expect("basic credentials");
        assert!(basic.1.is_sensitive());
        let (_, form, headers) = client(Method::POST, "https://auth.example/token")
            .request_parts()
            .expect("parts");
        assert!(form.contains("client_secret=s3cr3t%26x"), "{form}");
        assert!(headers.iter().all(|(n, _)| *n != AUTHORIZATION));
    }

    #[tokio::test]
    async fn the_token_url_goes_through_the_destination_policy() {
        let policy = crate::safety::DestinationPolicy::default();
        let http = reqwest::Client::new();
        for url in ["http://127.0.0.1:9/token", "http://169.254.169.254/token"] {
            let error = client(Method::POST, url)
                .authorization(&http, &policy, 1024, None)
                .await
                .expect_err("refused");
            assert!(matches!(error, TokenError::Forbidden(_)), "{error:?}");
        }
    }

    #[test]
    fn shown_urls_carry_no_credentials() {
        let url: reqwest::Url = "https://u:p@auth.example/t?key=k#f".parse().expect("url");
        assert_eq!(shown(&url), "https://auth.example/t");
    }
}
