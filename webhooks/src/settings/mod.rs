//! The delivery settings of our `WebhookConfig` extensions, parsed and validated the same way by
//! the API (on save) and the dispatcher (on delivery).

/// `batch`: events per request.
pub mod batch;
/// `ordering`: strict order per record key, or none.
pub mod ordering;
/// `rateLimit`: requests per second and burst.
pub mod rate_limit;

pub use batch::BatchConfig;
pub use rate_limit::RateLimit;
