//! The dispatcher: delivers core events from `erp.core.events` to the webhook endpoints
//! subscribed to them, signed per Standard Webhooks, with retries; what cannot be delivered
//! becomes a dead letter and a monitoring span.

pub mod delivery;
pub mod error;
pub mod metrics;
pub mod org_key;
pub mod signing;
pub mod worker;

pub use error::DispatcherError;
pub use worker::{DispatcherSettings, run};
