//! The dispatcher's settings.

use std::sync::Arc;
use std::time::Duration;

use crate::schedule::Schedule;
use erp_webhooks::safety::DestinationPolicy;

/// The `extra` field the dispatcher sets on an endpoint it disabled. Events for such an endpoint
/// are parked as dead letters instead of being skipped like those of an endpoint a user disabled,
/// so they can be recovered once the endpoint is fixed.
pub const DISABLED_REASON: &str = "disabledReason";

/// How the dispatcher runs.
#[derive(Debug, Clone)]
pub struct DispatcherSettings {
    /// Consumer group of all dispatcher instances (tier consumers use `<group>.retry.<n>`).
    pub group_id: String,
    /// Most HTTP requests in progress at once, over all endpoints.
    pub max_in_flight: usize,
    /// Time limit of one HTTP request.
    pub request_timeout: Duration,
    /// The waits of the retry tiers (1 to 5, not getting shorter). An endpoint's
    /// `retryPolicy.maxAttempts` uses the first ones.
    pub retry_schedule: Vec<Duration>,
    /// The longest `Retry-After` honoured.
    pub max_retry_after: Duration,
    /// Most records per poll batch.
    pub max_batch: usize,
    /// Main-path batches in progress at once (committed in order).
    pub batches_in_flight: usize,
    /// Most requests in flight to one endpoint.
    pub endpoint_concurrency: usize,
    /// How long a delivery waits for a free slot of its endpoint before it is deferred to a
    /// retry tier.
    pub endpoint_queue_wait: Duration,
    /// Consecutive retryable failures that open an endpoint's circuit breaker.
    pub breaker_threshold: u32,
    /// How long an open breaker refuses requests before one probe is let through.
    pub breaker_cooldown: Duration,
    /// Which destination addresses are allowed.
    pub destinations: DestinationPolicy,
    /// Most bytes of a response body read and kept in the attempt record.
    pub max_response_body: usize,
    /// Longest a tier consumer waits for the head of a partition before polling again.
    pub tier_hold: Duration,
    /// On shutdown, how long deliveries in progress may finish (and be committed) before they
    /// are abandoned uncommitted, to be redelivered after the restart.
    pub shutdown_grace: Duration,
    /// The deployment's signing key file, from which each organisation's Ed25519 key for `v1a`
    /// signatures is derived (`None`: `v1` only).
    pub signing_keys: Option<Arc<erp_webhooks::org_key::SigningKeys>>,
    /// Time limit of one evaluation of an endpoint's JSONata filter or transform.
    pub jsonata_timeout: Duration,
    /// The rate limit of endpoints that set no `rateLimit` (`None`: unlimited).
    pub default_rate_limit: Option<erp_webhooks::settings::RateLimit>,
}

impl Default for DispatcherSettings {
    fn default() -> Self {
        let schedule = Schedule::epilot();
        Self {
            group_id: "erp-toolkit-dispatcher".into(),
            max_in_flight: 64,
            request_timeout: Duration::from_secs(15),
            retry_schedule: schedule.delays().to_vec(),
            max_retry_after: Duration::from_secs(3600),
            max_batch: 500,
            batches_in_flight: 4,
            endpoint_concurrency: 16,
            endpoint_queue_wait: Duration::from_secs(1),
            breaker_threshold: 5,
            breaker_cooldown: Duration::from_secs(30),
            destinations: DestinationPolicy::default(),
            max_response_body: 64 * 1024,
            tier_hold: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(10),
            signing_keys: None,
            jsonata_timeout: Duration::from_secs(1),
            default_rate_limit: None,
        }
    }
}
