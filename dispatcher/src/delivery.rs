//! One delivery attempt: a signed HTTP request and what its answer means.

use std::time::{Duration, Instant};

use reqwest::Method;

use crate::signing;
use erp_runtime::config_view::WebhookEntry;

/// How much of a response body is kept for the attempt record.
const BODY_EXCERPT: usize = 1024;

/// What an attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptResult {
    /// 2xx.
    Delivered { status: u16 },
    /// Worth trying again later: 5xx, 408, 429, timeouts, connection errors.
    Retryable { code: String, message: String },
    /// Trying again will not help: other 4xx, an unusable configuration.
    Terminal { code: String, message: String },
}

/// The record of one attempt.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub result: AttemptResult,
    pub duration: Duration,
}

/// The stable message id of an event: the same on every retry and replay.
pub fn webhook_id(event_id: &str) -> String {
    format!("msg_{event_id}")
}

/// Sends `body` to the endpoint once.
pub async fn attempt(
    client: &reqwest::Client,
    endpoint: &WebhookEntry,
    message_id: &str,
    body: &[u8],
) -> Attempt {
    let started = Instant::now();
    let result = send(client, endpoint, message_id, body).await;
    Attempt {
        result,
        duration: started.elapsed(),
    }
}

async fn send(
    client: &reqwest::Client,
    endpoint: &WebhookEntry,
    message_id: &str,
    body: &[u8],
) -> AttemptResult {
    let Some(url) = endpoint.webhook.url.as_deref().filter(|u| !u.is_empty()) else {
        return AttemptResult::Terminal {
            code: "WEBHOOK_URL_MISSING".into(),
            message: "the endpoint has no url".into(),
        };
    };
    let Ok(method) = Method::from_bytes(endpoint.webhook.http_method.as_bytes()) else {
        return AttemptResult::Terminal {
            code: "WEBHOOK_METHOD_INVALID".into(),
            message: format!("unsupported httpMethod {:?}", endpoint.webhook.http_method),
        };
    };
    let timestamp = erp_schemas::timestamp::now_millis() / 1000;
    let signature = match signing::sign(&endpoint.signing_secret, message_id, timestamp, body) {
        Ok(signature) => signature,
        Err(error) => {
            return AttemptResult::Terminal {
                code: "WEBHOOK_SECRET_INVALID".into(),
                message: error.to_string(),
            };
        }
    };
    let request = client
        .request(method, url)
        .header("content-type", "application/json")
        .header("webhook-id", message_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body.to_vec());
    let response = match request.send().await {
        Ok(response) => response,
        Err(error) => {
            let code = if error.is_timeout() {
                "TIMEOUT"
            } else if error.is_connect() {
                "CONNECTION_FAILED"
            } else if error.is_builder() {
                return AttemptResult::Terminal {
                    code: "WEBHOOK_URL_INVALID".into(),
                    message: error.to_string(),
                };
            } else {
                "REQUEST_FAILED"
            };
            return AttemptResult::Retryable {
                code: code.into(),
                message: error.to_string(),
            };
        }
    };
    let status = response.status().as_u16();
    if response.status().is_success() {
        return AttemptResult::Delivered { status };
    }
    let excerpt = excerpt(response).await;
    let code = format!("HTTP_{status}");
    let message = format!("endpoint answered {status}: {excerpt}");
    if status >= 500 || status == 408 || status == 429 {
        AttemptResult::Retryable { code, message }
    } else {
        AttemptResult::Terminal { code, message }
    }
}

/// The start of a response body, read no further than needed.
async fn excerpt(mut response: reqwest::Response) -> String {
    let mut kept = Vec::new();
    while kept.len() < BODY_EXCERPT {
        match response.chunk().await {
            Ok(Some(chunk)) => kept.extend_from_slice(&chunk),
            _ => break,
        }
    }
    kept.truncate(BODY_EXCERPT);
    String::from_utf8_lossy(&kept).into_owned()
}
