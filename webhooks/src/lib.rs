//! What the API and the dispatcher must agree on about webhook endpoints, in one place so the
//! API validates a configuration with exactly the code that delivers to it: parsing an
//! endpoint's configuration, its filters and settings, Standard Webhooks signing, the
//! organisation's signing key and the destination policy. No Kafka, no storage.

/// An endpoint's delivery configuration: auth, custom headers, filters, transform, settings.
pub mod endpoint;
/// The crate's configuration error: the field and what is wrong with it.
pub mod error;
/// Endpoint filters: the legacy `filter` and `filterConditions`.
pub mod filter;
/// OAuth2 client credentials: token exchange and cache per endpoint revision.
pub mod oauth;
/// The organisation's Ed25519 key: `v1a` signatures and the public key the API serves.
pub mod org_key;
/// The one redaction helper: secret values replaced by `[redacted]` in what is recorded.
pub mod redact;
/// Reading a receiver's answer up to a size cap.
pub mod response;
/// Where webhooks may go: the destination policy against SSRF.
pub mod safety;
/// Our `WebhookConfig` extensions: `batch`, `ordering`, `rateLimit`.
pub mod settings;
/// Standard Webhooks HMAC signatures (`v1`).
pub mod signing;

pub use error::ConfigError;
pub use safety::{Cidr, DestinationPolicy};
