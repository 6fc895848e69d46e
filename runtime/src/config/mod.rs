//! The configuration every role folds from `erp.config`: the pure fold, the follower that feeds
//! it, the writer that appends to it, and the sealing of secrets at the log's boundary.

/// The pure fold: [`ConfigState`] and how a record changes it.
pub mod fold;
/// Following the log into a view with read-your-writes waits.
pub mod follower;
/// Sealing and opening secrets at the log's boundary.
pub mod secrets;
/// Appending a change and waiting until the view applied it.
pub mod writer;

pub use fold::*;
pub use follower::ConfigView;
pub use writer::ConfigWriter;
