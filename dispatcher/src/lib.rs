//! The dispatcher: delivers core events from `erp.core.events` to the webhook endpoints
//! subscribed to them, signed per Standard Webhooks. Failed deliveries wait in retry tiers on
//! Kafka (`erp.core.retry.<n>`) instead of holding up the others; each endpoint is isolated by a
//! concurrency cap and a circuit breaker; what cannot be delivered becomes a dead letter, and
//! every attempt a monitoring span.

pub mod delivery;
pub mod environment;
pub mod error;
pub mod isolation;
pub mod metrics;
pub mod ordering;
pub mod rate_limit;
pub mod schedule;
pub mod worker;

pub use error::DispatcherError;
pub use schedule::Schedule;
pub use worker::{DispatcherSettings, run};
