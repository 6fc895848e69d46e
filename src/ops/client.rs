//! The API client of the ops CLI: bearer token, JSON in and out, errors in epilot's shape
//! turned into a message and an exit code.

use serde_json::Value;

use super::{Connection, Exit};

/// A failed call: what to print and the exit code.
#[derive(Debug)]
pub struct Failure {
    pub exit: Exit,
    pub message: String,
}

/// A client of one API.
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    /// A client for `connection`.
    pub fn new(connection: &Connection) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: connection.api.trim_end_matches('/').to_owned(),
            token: connection.token.clone(),
        }
    }

    /// Sends `method path` with `body`; the JSON answer of a 2xx.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, Failure> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .timeout(std::time::Duration::from_secs(300));
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| Failure {
            exit: Exit::Unavailable,
            message: format!("cannot reach {}: {e}", self.base),
        })?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(value);
        }
        let message = match (value["code"].as_str(), value["message"].as_str()) {
            (Some(code), Some(message)) => format!("{status}: {code}: {message}"),
            _ => format!("{status}: {text}"),
        };
        Err(Failure {
            exit: if status.is_server_error() {
                Exit::Unavailable
            } else {
                Exit::Refused
            },
            message,
        })
    }

    /// `POST path body`.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, Failure> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Result<Value, Failure> {
        self.call(reqwest::Method::GET, path, None).await
    }
}
