//! One delivery attempt: a signed HTTP request and what its answer means.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use reqwest::header::{
    AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER,
};

use erp_runtime::config::WebhookEntry;
use erp_webhooks::endpoint::{Auth, EndpointConfig};
use erp_webhooks::org_key::SigningKeys;
use erp_webhooks::redact::Redactor;
use erp_webhooks::response::read_capped;
use erp_webhooks::safety::{self, DestinationPolicy, GuardedResolver};
use erp_webhooks::signing;

/// What an attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptResult {
    /// 2xx.
    Delivered { status: u16 },
    /// Worth trying again later: 5xx, 3xx (redirects are not followed), 408, 429, timeouts,
    /// connection errors.
    Retryable {
        code: String,
        message: String,
        status: Option<u16>,
        /// The endpoint's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
    },
    /// 410 Gone: the endpoint asks not to be called again; it is disabled.
    Gone { message: String },
    /// Trying again will not help: other 4xx, an unusable configuration, a refused destination.
    Terminal {
        code: String,
        message: String,
        status: Option<u16>,
    },
}

impl AttemptResult {
    /// The result with `secrets` redacted from its message.
    pub fn redacted(self, secrets: &Redactor) -> Self {
        let clean = |message: String| secrets.redact(&message).into_owned();
        match self {
            Self::Delivered { status } => Self::Delivered { status },
            Self::Gone { message } => Self::Gone {
                message: clean(message),
            },
            Self::Retryable {
                code,
                message,
                status,
                retry_after,
            } => Self::Retryable {
                code,
                message: clean(message),
                status,
                retry_after,
            },
            Self::Terminal {
                code,
                message,
                status,
            } => Self::Terminal {
                code,
                message: clean(message),
                status,
            },
        }
    }

    /// The HTTP status, when the endpoint answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Delivered { status } => Some(*status),
            Self::Gone { .. } => Some(410),
            Self::Retryable { status, .. } | Self::Terminal { status, .. } => *status,
        }
    }

    /// The result's code (`""` for success).
    pub fn code(&self) -> &str {
        match self {
            Self::Delivered { .. } => "",
            Self::Gone { .. } => "HTTP_410",
            Self::Retryable { code, .. } | Self::Terminal { code, .. } => code,
        }
    }

    /// A one-line description.
    pub fn message(&self) -> String {
        match self {
            Self::Delivered { status } => format!("endpoint answered {status}"),
            Self::Gone { message }
            | Self::Retryable { message, .. }
            | Self::Terminal { message, .. } => message.clone(),
        }
    }
}

/// The record of one attempt.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub result: AttemptResult,
    pub duration: Duration,
    /// The start of the response body (lossy UTF-8), at most the configured cap.
    pub response_body: String,
    /// Whether the body was longer than the cap.
    pub body_truncated: bool,
}

/// The stable message id of an event: the same on every retry and replay.
pub fn webhook_id(event_id: &str) -> String {
    format!("msg_{event_id}")
}

/// Sends signed requests under the destination policy.
#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
    policy: Arc<DestinationPolicy>,
    body_cap: usize,
    signing_keys: Option<Arc<SigningKeys>>,
}

impl Sender {
    /// A sender whose requests time out after `timeout`, go only where `policy` allows, and read
    /// at most `body_cap` bytes of a response.
    pub fn new(
        timeout: Duration,
        policy: DestinationPolicy,
        body_cap: usize,
    ) -> Result<Self, reqwest::Error> {
        let policy = Arc::new(policy);
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("erp-toolkit/", env!("CARGO_PKG_VERSION")))
            // Standard Webhooks: a redirect is a failure, not something to follow (following
            // one could also lead to an address the policy refuses).
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would resolve names itself and bypass the destination check.
            .no_proxy()
            .dns_resolver(GuardedResolver::new(Arc::clone(&policy)))
            .build()?;
        Ok(Self {
            client,
            policy,
            body_cap,
            signing_keys: None,
        })
    }

    /// Also signs with each organisation's own Ed25519 key (`v1a`), derived from the
    /// deployment's signing key file.
    pub fn with_signing_keys(mut self, keys: Option<Arc<SigningKeys>>) -> Self {
        self.signing_keys = keys;
        self
    }

    /// The `webhook-signature` value: `v1a` with the endpoint's organisation's key when there
    /// is one, then `v1` with the endpoint's secret and with each secret of a rotation in its
    /// grace period.
    fn signature(
        &self,
        endpoint: &WebhookEntry,
        message_id: &str,
        timestamp: i64,
        body: &[u8],
    ) -> Result<String, String> {
        let mut parts = Vec::new();
        if let Some(keys) = &self.signing_keys {
            let key = keys.for_org(&endpoint.org_id).map_err(|e| e.to_string())?;
            parts.push(key.sign(message_id, timestamp, body));
        }
        for secret in endpoint.signing_secrets(timestamp.saturating_mul(1000)) {
            parts.push(
                signing::sign(secret, message_id, timestamp, body).map_err(|e| e.to_string())?,
            );
        }
        Ok(parts.join(" "))
    }

    /// Sends `body` to the endpoint once, authenticated and with the custom headers of `config`.
    /// With OAuth, a 401 answer replaces the token and sends once more within the attempt.
    pub async fn attempt(
        &self,
        endpoint: &WebhookEntry,
        config: &EndpointConfig,
        message_id: &str,
        body: &[u8],
    ) -> Attempt {
        let started = Instant::now();
        // What the request carries that its record must not: a receiver may echo our headers
        // in its answer, an error may quote what was sent.
        let mut secrets = Redactor::new();
        config.add_secrets(&mut secrets);
        secrets.add(&endpoint.signing_secret);
        for previous in &endpoint.previous_secrets {
            secrets.add(&previous.secret);
        }
        let (result, response_body, body_truncated) = self
            .send(endpoint, config, message_id, body, &mut secrets)
            .await;
        Attempt {
            result: result.redacted(&secrets),
            duration: started.elapsed(),
            response_body: secrets.redact_excerpt(&response_body, body_truncated),
            body_truncated,
        }
    }

    /// The credentials header of a request: fixed for basic and API key; for OAuth the cached
    /// token, or a new one (`rejected` is the value the endpoint just refused).
    async fn credentials(
        &self,
        config: &EndpointConfig,
        rejected: Option<&HeaderValue>,
    ) -> Result<Option<(HeaderName, HeaderValue, bool)>, erp_webhooks::oauth::TokenError> {
        Ok(match &config.auth {
            Auth::None => None,
            Auth::Basic(value) => Some((AUTHORIZATION, value.clone(), false)),
            Auth::ApiKey(name, value) => Some((name.clone(), value.clone(), false)),
            Auth::OAuth(client) => {
                let (value, fresh) = client
                    .authorization(&self.client, &self.policy, self.body_cap, rejected)
                    .await?;
                Some((AUTHORIZATION, value, fresh))
            }
        })
    }

    /// One request; every credentials value it sends (an OAuth token too) is added to
    /// `secrets`.
    async fn send(
        &self,
        endpoint: &WebhookEntry,
        config: &EndpointConfig,
        message_id: &str,
        body: &[u8],
        secrets: &mut Redactor,
    ) -> (AttemptResult, String, bool) {
        let terminal = |code: &str, message: String| {
            (
                AttemptResult::Terminal {
                    code: code.into(),
                    message,
                    status: None,
                },
                String::new(),
                false,
            )
        };
        let Some(url) = endpoint.webhook.url.as_deref().filter(|u| !u.is_empty()) else {
            return terminal("WEBHOOK_URL_MISSING", "the endpoint has no url".into());
        };
        let url = match reqwest::Url::parse(url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => url,
            Ok(url) => {
                return terminal(
                    "WEBHOOK_URL_INVALID",
                    format!("unsupported scheme {:?}", url.scheme()),
                );
            }
            Err(error) => return terminal("WEBHOOK_URL_INVALID", error.to_string()),
        };
        if let Err(message) = safety::check_literal(&url, &self.policy) {
            return terminal("DESTINATION_FORBIDDEN", message);
        }
        let Ok(method) = Method::from_bytes(endpoint.webhook.http_method.as_bytes()) else {
            return terminal(
                "WEBHOOK_METHOD_INVALID",
                format!("unsupported httpMethod {:?}", endpoint.webhook.http_method),
            );
        };
        let timestamp = erp_schemas::timestamp::now_millis() / 1000;
        let signature = match self.signature(endpoint, message_id, timestamp, body) {
            Ok(signature) => signature,
            Err(error) => return terminal("WEBHOOK_SECRET_INVALID", error),
        };
        let token_failure = |error: erp_webhooks::oauth::TokenError| match error {
            // The same policy as deliveries, and as terminal: the token URL will not change
            // its address by waiting.
            erp_webhooks::oauth::TokenError::Forbidden(message) => {
                terminal("OAUTH_DESTINATION_FORBIDDEN", message)
            }
            erp_webhooks::oauth::TokenError::Failed(message) => (
                AttemptResult::Retryable {
                    code: "OAuthTokenExchangeError".into(),
                    message,
                    status: None,
                    retry_after: None,
                },
                String::new(),
                false,
            ),
        };
        let mut credentials = match self.credentials(config, None).await {
            Ok(credentials) => credentials,
            Err(message) => return token_failure(message),
        };
        // Custom headers first: the signature, framing and credentials headers are ours (the
        // API refuses custom headers of those names anyway).
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            headers.append(name.clone(), value.clone());
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let signed = [
            ("webhook-id", message_id.to_owned()),
            ("webhook-timestamp", timestamp.to_string()),
            ("webhook-signature", signature),
        ];
        for (name, value) in signed {
            match HeaderValue::from_str(&value) {
                Ok(value) => {
                    headers.insert(name, value);
                }
                Err(_) => {
                    return terminal(
                        "WEBHOOK_HEADER_INVALID",
                        format!("{name} is not a valid header value"),
                    );
                }
            }
        }
        let mut retried_after_401 = false;
        let response = loop {
            let mut request_headers = headers.clone();
            if let Some((name, value, _)) = &credentials {
                if let Ok(text) = value.to_str() {
                    secrets.add(text);
                    if let Some(token) = text.strip_prefix("Bearer ") {
                        secrets.add(token);
                    }
                }
                request_headers.insert(name.clone(), value.clone());
            }
            let request = self
                .client
                .request(method.clone(), url.clone())
                .headers(request_headers)
                .body(body.to_vec());
            let sent = request.send().await;
            // An OAuth endpoint that refuses a cached token gets one new token and one more
            // try; a token fetched for this very request is not fetched again.
            if let (Ok(response), Auth::OAuth(_), Some((_, value, fresh))) =
                (&sent, &config.auth, &credentials)
                && response.status() == reqwest::StatusCode::UNAUTHORIZED
                && !*fresh
                && !retried_after_401
            {
                retried_after_401 = true;
                credentials = match self.credentials(config, Some(value)).await {
                    Ok(credentials) => credentials,
                    Err(message) => return token_failure(message),
                };
                continue;
            }
            break sent;
        };
        let response = match response {
            Ok(response) => response,
            Err(error) => {
                // reqwest's message names the URL, which is the resolved one: its query, user
                // info or path may hold `{{env.X}}` secrets. The attempt log names the endpoint.
                let error = error.without_url();
                if safety::is_forbidden(&error) {
                    return terminal("DESTINATION_FORBIDDEN", error_chain(&error));
                }
                if error.is_builder() {
                    return terminal("WEBHOOK_URL_INVALID", error_chain(&error));
                }
                let code = if error.is_timeout() {
                    "TIMEOUT"
                } else if error.is_connect() {
                    "CONNECTION_FAILED"
                } else {
                    "REQUEST_FAILED"
                };
                return (
                    AttemptResult::Retryable {
                        code: code.into(),
                        message: error_chain(&error),
                        status: None,
                        retry_after: None,
                    },
                    String::new(),
                    false,
                );
            }
        };
        let status = response.status().as_u16();
        let retry_after = retry_after(response.headers(), erp_schemas::timestamp::now_millis());
        let (excerpt, truncated) = read_capped(response, self.body_cap).await;
        let code = format!("HTTP_{status}");
        let message = format!("endpoint answered {status}");
        let result = match status {
            200..=299 => AttemptResult::Delivered { status },
            410 => AttemptResult::Gone {
                message: "endpoint answered 410 Gone".into(),
            },
            300..=399 | 408 | 429 | 500.. => AttemptResult::Retryable {
                code,
                message,
                status: Some(status),
                retry_after,
            },
            _ => AttemptResult::Terminal {
                code,
                message,
                status: Some(status),
            },
        };
        (result, excerpt, truncated)
    }
}

/// An error with its causes, so "error sending request" says why.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut current = error.source();
    while let Some(cause) = current {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        current = cause.source();
    }
    text
}

/// `Retry-After` as a wait: delay-seconds or an HTTP date (RFC 9110 §10.2.3).
pub fn retry_after(headers: &HeaderMap, now_millis: i64) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at =
        time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc2822).ok()?;
    let millis = erp_schemas::timestamp::millis_of(at) - now_millis;
    Some(Duration::from_millis(u64::try_from(millis).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn endpoint(url: &str) -> WebhookEntry {
        WebhookEntry {
            webhook: serde_json::from_value(serde_json::json!({
                "id": "w", "name": "n", "eventName": "event_X", "url": url,
                "creationTime": "t", "updatedTime": "t"
            }))
            .expect("endpoint"),
            org_id: "o".into(),
            signing_secret: signing::new_secret(),
            previous_secrets: Vec::new(),
            revision: 0,
            unreadable: None,
        }
    }

    /// A one-shot HTTP server on loopback answering `response` verbatim.
    async fn answer_once(response: String) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("listener");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move {
            if let Ok((mut socket, _)) = listener.accept().await {
                let mut buffer = vec![0u8; 64 * 1024];
                let _ = socket.read(&mut buffer).await;
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            }
        });
        format!("http://{address}/hook")
    }

    fn sender(policy: DestinationPolicy, cap: usize) -> Sender {
        Sender::new(Duration::from_secs(5), policy, cap).expect("client")
    }

    #[tokio::test]
    async fn refuses_private_destinations_by_literal_and_by_name() {
        let sender = sender(DestinationPolicy::default(), 1024);
        for url in ["http://127.0.0.1:9/hook", "http://localhost:9/hook"] {
            let attempt = sender
                .attempt(&endpoint(url), &EndpointConfig::default(), "msg_1", b"{}")
                .await;
            assert!(
                matches!(&attempt.result, AttemptResult::Terminal { code, .. } if code == "DESTINATION_FORBIDDEN"),
                "{url}: {:?}",
                attempt.result
            );
        }
    }

    #[tokio::test]
    async fn classifies_answers_and_caps_the_body() {
        let allowed = || DestinationPolicy::loopback_allowed();
        let body = "x".repeat(100);
        let url = answer_once(format!(
            "HTTP/1.1 503 Service Unavailable\r\nretry-after: 7\r\ncontent-length: 100\r\nconnection: close\r\n\r\n{body}"
        ))
        .await;
        let attempt = sender(allowed(), 10)
            .attempt(&endpoint(&url), &EndpointConfig::default(), "msg_1", b"{}")
            .await;
        assert_eq!(
            attempt.result,
            AttemptResult::Retryable {
                code: "HTTP_503".into(),
                message: "endpoint answered 503".into(),
                status: Some(503),
                retry_after: Some(Duration::from_secs(7)),
            }
        );
        assert_eq!(attempt.response_body, "x".repeat(10));
        assert!(attempt.body_truncated);

        let url = answer_once(
            "HTTP/1.1 410 Gone\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".into(),
        )
        .await;
        let attempt = sender(allowed(), 10)
            .attempt(&endpoint(&url), &EndpointConfig::default(), "msg_1", b"{}")
            .await;
        assert!(matches!(attempt.result, AttemptResult::Gone { .. }));

        let url = answer_once(
            "HTTP/1.1 302 Found\r\nlocation: http://169.254.169.254/\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                .into(),
        )
        .await;
        let attempt = sender(allowed(), 10)
            .attempt(&endpoint(&url), &EndpointConfig::default(), "msg_1", b"{}")
            .await;
        assert_eq!(
            attempt.result.status(),
            Some(302),
            "redirects are not followed"
        );
        assert!(matches!(attempt.result, AttemptResult::Retryable { .. }));

        let url = answer_once(
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 3\r\nconnection: close\r\n\r\nbad".into(),
        )
        .await;
        let attempt = sender(allowed(), 10)
            .attempt(&endpoint(&url), &EndpointConfig::default(), "msg_1", b"{}")
            .await;
        assert!(
            matches!(
                &attempt.result,
                AttemptResult::Terminal {
                    status: Some(400),
                    ..
                }
            ),
            "{:?}",
            attempt.result
        );
        assert_eq!(attempt.response_body, "bad");
        assert!(!attempt.body_truncated);
    }

    #[test]
    fn reads_retry_after_in_both_forms() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers, 0), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static("120"));
        assert_eq!(retry_after(&headers, 0), Some(Duration::from_secs(120)));
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        let at = 1_445_412_480_000;
        assert_eq!(
            retry_after(&headers, at - 30_000),
            Some(Duration::from_secs(30))
        );
        assert_eq!(retry_after(&headers, at + 5_000), Some(Duration::ZERO));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers, 0), None);
    }
}
