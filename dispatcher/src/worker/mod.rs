//! The dispatcher: a main consumer of `erp.core.events` and one consumer per retry tier
//! (`erp.core.retry.<n>`), sharing per-endpoint isolation.
//!
//! - **Main path.** Each core event goes to every enabled endpoint subscribed to it (or to the one
//!   endpoint an outbound message is addressed to). A delivery gets one attempt; if it fails
//!   retryably it is written as a [`DeliveryTask`] to the retry tier its attempt count and
//!   `Retry-After` call for. A delivery whose endpoint is saturated (no free slot within
//!   `endpoint_queue_wait`) or whose circuit breaker is not closed is not attempted at all: it is
//!   deferred to the first tier. Offsets are committed only after every record a batch produced
//!   (tasks, dead letters, spans) is acknowledged by Kafka, so a crash redelivers with the same
//!   `webhook-id` and loses nothing. Several batches run at once (`batches_in_flight`) and commit
//!   in order, so one slow request holds up a commit, not the deliveries behind it.
//! - **Retry tiers.** A tier's records are written in due order, so its consumer waits until the
//!   head of each partition is due, then attempts every due task, forwarding failures to the next
//!   tier or, with the endpoint's retries used up, to `erp.dlq`. While it waits it re-reads rather
//!   than holds records, so it keeps polling and group rebalances are not stalled for hours.
//! - **Terminal answers.** 410 disables the endpoint (a configuration change through
//!   [`ConfigWriter`]) and parks the event as a dead letter; other 4xx and unusable
//!   configurations are dead letters with the status. Every attempt is a monitoring span.
//!
//! Each stage is its own file; the consumer loops only move data between them.

/// Admit: breaker, rate limit and concurrency slots decide whether a job goes now.
mod admit;
/// Batched delivery: grouping a poll batch's jobs per endpoint, one request per group.
pub mod batch;
/// Consume: the main and tier consumer loops, batches in flight, ordered commits.
mod consume;
/// Ordered endpoints: lane heads through admission, sending and recording.
mod ordered;
/// Outputs: the records a batch produced, spans written per batch, settled before commit.
mod outputs;
/// What moves between the stages, and the core they share.
mod pipeline;
/// Prepare: parsed endpoint configuration, environment references, filters and transform.
mod prepare;
/// Record: spans, retry tasks, dead letters, disabling an endpoint; the outcome decision.
mod record;
/// Route: which endpoints a core event or retry task goes to.
mod route;
/// Send: admission (breaker, rate limit, slots), the HTTP attempt, breaker bookkeeping.
mod send;
/// The dispatcher's settings.
mod settings;

pub use consume::run;
pub use settings::{DISABLED_REASON, DispatcherSettings};
