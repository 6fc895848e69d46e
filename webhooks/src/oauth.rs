//! OAuth2 client credentials for endpoints with `authType: OAUTH_CLIENT_CREDENTIALS`: a token is
//! fetched from the endpoint's token URL, cached per endpoint revision until shortly before it
//! expires, shared by all deliveries to that endpoint (one exchange at a time), and replaced
//! when the endpoint answers 401.

use std::time::{Duration, Instant};

use reqwest::Method;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderName, HeaderValue};
use serde_json::Value;
use tokio::sync::Mutex;

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
    pub async fn authorization(
        &self,
        client: &reqwest::Client,
        body_cap: usize,
        rejected: Option<&HeaderValue>,
    ) -> Result<(HeaderValue, bool), String> {
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

    /// The token request's URL, form body and extra headers. Synchronous: the form serialiser
    /// is not `Send`, so it must not live across an await.
    fn request_parts(&self) -> Result<RequestParts, String> {
        let s = &self.settings;
        let mut url = s.endpoint.clone();
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "client_credentials");
        form.append_pair("client_id", &s.client_id);
        form.append_pair("client_secret", &s.client_secret);
        let mut headers = Vec::new();
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

    async fn exchange(&self, client: &reqwest::Client, body_cap: usize) -> Result<Token, String> {
        let s = &self.settings;
        let (mut url, form, headers) = self.request_parts()?;
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
        let response = request
            .send()
            .await
            .map_err(|e| format!("token request to {} failed: {e}", s.endpoint))?;
        let status = response.status();
        let (body, _) = crate::response::read_capped(response, body_cap).await;
        if !status.is_success() {
            return Err(format!(
                "token endpoint {} answered {}: {}",
                s.endpoint,
                status.as_u16(),
                body.chars().take(500).collect::<String>()
            ));
        }
        parse_token(&body, Instant::now())
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
}
