//! The pollable outbound queue (epilot spec §8.4): one FIFO stream per integration that the
//! ERP middleware leases from and acknowledges, with a visibility timeout, prefix-contiguous
//! acks, a poison policy, retention and a DLQ. `stream` is the state machine, `queue` folds the
//! topics and makes changes durable, `http` is the API. `docs/poll-queue.md` is the user guide.

/// The poll queue's routes: poll, ack, DLQ, redrive, unblock.
pub mod http;
/// The queue: folds its topics, makes every change durable before answering.
pub mod queue;
/// The pure state machine of one stream.
pub mod stream;

pub use queue::{PollQueue, PollSettings};
