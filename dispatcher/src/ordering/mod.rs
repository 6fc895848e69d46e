//! Strict per-key order for endpoints that opt in (`"ordering": "per_key"` on the
//! `WebhookConfig`, our extension: epilot's API has no such field).
//!
//! The ordering key is the Kafka record key of the core event on `erp.core.events`, and one key
//! lives in one input partition, so the owner of that partition is the single writer of every
//! lane of its keys. For an ordered endpoint the main path does not attempt a delivery itself:
//! it appends the event to the lane of (endpoint, key) in memory and persists it to the
//! compacted topic `erp.dispatch.lanes` (same partition number as the input partition, record
//! key `<endpoint>|<key>|<input offset>`), and commits the input offset once that write is
//! acknowledged. One driver task per lane delivers the lane's head: on an answer that ends the
//! delivery (delivered, dead letter, parked, filtered) the head's record is tombstoned and the
//! next event goes; on a retryable failure the head's attempt count is persisted and the head is
//! tried again after the endpoint's retry wait. A failing head therefore blocks only its own key
//! on that endpoint; retries of ordered endpoints never use the shared retry tiers.
//!
//! On assignment the new owner of an input partition reads the lanes topic partition to its end
//! and rebuilds that partition's lanes before the consumer returns any of its records, so no
//! later event can overtake a held one. On revocation the lanes of the partition are dropped
//! from memory (their records stay for the next owner).

/// Lanes: held deliveries per (partition, endpoint, key), persisted, driven one head at a time.
mod lanes;
/// Revocation and restore of lanes in a consumer group rebalance.
mod rebalance;

pub use lanes::{DeliverFn, LaneEntry, Lanes, Put, Step};
pub use rebalance::LaneContext;
