//! The dispatcher: delivers core events from `erp.core.events` to the webhook endpoints
//! subscribed to them, signed per Standard Webhooks. Failed deliveries wait in retry tiers on
//! Kafka (`erp.core.retry.<n>`) instead of holding up the others; each endpoint is isolated by a
//! concurrency cap and a circuit breaker; what cannot be delivered becomes a dead letter, and
//! every attempt a monitoring span.

/// One HTTP attempt: signing, auth, the destination check, the answer classified.
pub mod delivery;
/// `{{env.*}}` references of an endpoint resolved at send time.
pub mod environment;
/// The crate's error type.
pub mod error;
/// Per-endpoint concurrency caps and circuit breakers.
pub mod isolation;
/// The dispatcher's metrics.
pub mod metrics;
/// Per-key ordering: lanes of held deliveries, persisted and restored.
pub mod ordering;
/// Per-endpoint token buckets.
pub mod rate_limit;
/// The retry schedule and its tiers.
pub mod schedule;
/// The delivery stages: consume → route → prepare → admit → send → record.
pub mod worker;

pub use error::DispatcherError;
pub use schedule::Schedule;
pub use worker::{DispatcherSettings, run};
