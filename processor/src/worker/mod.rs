//! The processor loop: poll a batch, decide every record (dedup, routing), map in a blocking
//! task, write every output and the changelog of the batch, then commit the batch's dedup keys
//! and input positions to sled in one atomic write (decision 2), then write position markers
//! and make an advisory group commit.
//!
//! Two batches overlap: while one waits for its acknowledgements and its sled commit (in a
//! task), the next is polled, decided (seeing the first one's dedup keys), mapped and written.
//! Commits stay in batch order, since a batch is committed only after the previous one is.
//!
//! A batch is done only when all of its outputs and changelog records are acknowledged by Kafka
//! and its state is on disk; a crash anywhere before that re-processes the batch from the
//! stored position with the same derived ids. A failure to write (Kafka down) redoes the failed
//! batch and the one after it alone, in order, with backoff: the partition waits rather than
//! skipping records.

/// Commit: changelog records, the atomic sled write of keys and positions, markers, expiry.
mod commit;
/// Consume: the batch loop, two batches overlapping, failed batches redone alone.
mod consume;
/// Emit: a batch through plan and map, every output written in record order.
mod emit;
/// The per-record guard: panics caught, payload limits, the poison-record guard.
mod guard;
/// Map: mappings and outbound use cases off the async threads; the compiled-mapping cache.
mod map;
/// What moves between the stages, and the worker they share.
mod pipeline;
/// Plan: dedup and routing decide each record's fate before mapping.
mod plan;
/// The processor's settings.
mod settings;

pub use consume::run;
pub use settings::ProcessorSettings;
