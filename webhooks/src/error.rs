//! The error of an endpoint configuration: which field is wrong and how. The API answers it
//! as a 400 naming the field; the dispatcher treats an endpoint that fails to parse as broken.

/// A configuration error: the field (a dot path in the `WebhookConfig`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {message}")]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl ConfigError {
    /// An error about `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}
