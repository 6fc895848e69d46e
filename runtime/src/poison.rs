//! The poison-record guard: remembers, durably, which records a process is working on, so that a
//! record that takes the whole process down (a stack overflow, an abort: nothing a
//! `catch_unwind` sees) is set aside after a few crashes instead of crashing every restart.
//!
//! How it counts (the records are identified by topic, partition and offset):
//!
//! - before a stage that runs code over untrusted records (parsing, mapping), the records are
//!   *marked* in a sled tree and the tree is flushed; after it they are unmarked (no flush: a
//!   lost unmark only costs one needless isolation, below);
//! - a process that opens the guard and finds marks left over exited abnormally while they
//!   were in flight. A record marked **alone** then has its crash count raised. Records marked
//!   **together** are only made *suspects*: a SIGKILL, an OOM kill or a power cut during a batch
//!   says nothing about which record was at fault, so no record of a batch is blamed for it;
//! - suspects are processed alone, each marked on its own; one that crashes the process again
//!   is counted; after `threshold` counted crashes ([`PoisonGuard::is_poison`]) the caller sets
//!   it aside (`POISON_RECORD` on the dead letter topic) instead of processing it;
//! - a record processed to the end is forgotten ([`PoisonGuard::forget`]).
//!
//! So a poison record alone in its batch is set aside after `threshold` crashes; one sharing a
//! batch after `threshold + 1`; a record is never blamed for crashes it merely shared a batch
//! during.

use sled::Tree;

use crate::error::RuntimeError;

/// Where a record comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordAt {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset.
    pub offset: i64,
}

/// A record's history with abnormal exits, kept until it is processed or set aside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Suspicion {
    /// Abnormal exits while it was being processed alone.
    pub crashes: u32,
}

const MARK_ALONE: &[u8] = b"1";
const MARK_TOGETHER: &[u8] = b"n";

/// The guard of one process's records: marks in `marks`, suspicions in `suspects`.
pub struct PoisonGuard {
    marks: Tree,
    suspects: Tree,
    threshold: u32,
}

fn key(at: &RecordAt) -> Vec<u8> {
    let mut key = Vec::with_capacity(at.topic.len() + 13);
    key.extend_from_slice(at.topic.as_bytes());
    key.push(0);
    key.extend_from_slice(&at.partition.to_be_bytes());
    key.extend_from_slice(&at.offset.to_be_bytes());
    key
}

fn storage(error: sled::Error) -> RuntimeError {
    RuntimeError::Storage(error.to_string())
}

impl PoisonGuard {
    /// Opens the guard on two trees of the process's sled database and takes stock of the
    /// previous run: marks left over mean it exited abnormally during them (see the module
    /// doc). `threshold` is at least 1.
    pub fn open(marks: Tree, suspects: Tree, threshold: u32) -> Result<Self, RuntimeError> {
        let guard = Self {
            marks,
            suspects,
            threshold: threshold.max(1),
        };
        let mut left_over = 0usize;
        for entry in guard.marks.iter() {
            let (key, mark) = entry.map_err(storage)?;
            left_over += 1;
            let mut suspicion = guard.suspicion_of(&key)?;
            if mark.as_ref() == MARK_ALONE {
                suspicion.crashes = suspicion.crashes.saturating_add(1);
            }
            guard
                .suspects
                .insert(&key, &suspicion.crashes.to_be_bytes())
                .map_err(storage)?;
        }
        guard.marks.clear().map_err(storage)?;
        guard.marks.flush().map_err(storage)?;
        if left_over > 0 {
            tracing::warn!(
                records = left_over,
                "the previous run exited abnormally while processing records; they are processed alone from now on and set aside as POISON_RECORD after repeated crashes"
            );
        }
        Ok(guard)
    }

    fn suspicion_of(&self, key: &[u8]) -> Result<Suspicion, RuntimeError> {
        Ok(match self.suspects.get(key).map_err(storage)? {
            Some(value) => Suspicion {
                crashes: value
                    .as_ref()
                    .try_into()
                    .map(u32::from_be_bytes)
                    .unwrap_or(0),
            },
            None => Suspicion::default(),
        })
    }

    /// The record's history, if it was in flight during an abnormal exit.
    pub fn suspicion(&self, at: &RecordAt) -> Result<Option<Suspicion>, RuntimeError> {
        let key = key(at);
        if !self.suspects.contains_key(&key).map_err(storage)? {
            return Ok(None);
        }
        self.suspicion_of(&key).map(Some)
    }

    /// Whether the record is to be processed alone (it was in flight during an abnormal exit).
    pub fn is_suspect(&self, at: &RecordAt) -> Result<bool, RuntimeError> {
        self.suspects.contains_key(key(at)).map_err(storage)
    }

    /// Whether the record crashed the process often enough to be set aside.
    pub fn is_poison(&self, at: &RecordAt) -> Result<bool, RuntimeError> {
        Ok(self
            .suspicion(at)?
            .is_some_and(|s| s.crashes >= self.threshold))
    }

    /// The crash count that makes a record poison.
    pub fn threshold(&self) -> u32 {
        self.threshold
    }

    /// Marks records as in flight, durably (flushed before it returns). One record is marked
    /// alone: an abnormal exit before [`Self::unmark`] counts against it.
    pub fn mark(&self, records: &[RecordAt]) -> Result<(), RuntimeError> {
        if records.is_empty() {
            return Ok(());
        }
        let mark = if records.len() == 1 {
            MARK_ALONE
        } else {
            MARK_TOGETHER
        };
        let mut batch = sled::Batch::default();
        for at in records {
            batch.insert(key(at), mark);
        }
        self.marks.apply_batch(batch).map_err(storage)?;
        self.marks.flush().map_err(storage)?;
        Ok(())
    }

    /// The records are no longer in flight (the stage returned, well or with an error).
    pub fn unmark(&self, records: &[RecordAt]) -> Result<(), RuntimeError> {
        let mut batch = sled::Batch::default();
        for at in records {
            batch.remove(key(at));
        }
        self.marks.apply_batch(batch).map_err(storage)
    }

    /// The record was processed (or set aside): its history is dropped.
    pub fn forget(&self, records: &[RecordAt]) -> Result<(), RuntimeError> {
        if self.suspects.is_empty() {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for at in records {
            batch.remove(key(at));
        }
        self.suspects.apply_batch(batch).map_err(storage)
    }
}

/// Test-only crash trigger: in debug builds, aborts the process when `payload` contains the
/// value of `ERP_TOOLKIT_TEST_ABORT_ON` (an abort is what a stack overflow ends in, and like it
/// cannot be caught). Release builds compile this to nothing.
pub fn test_abort_on(payload: &[u8]) {
    #[cfg(debug_assertions)]
    {
        use std::sync::OnceLock;
        static NEEDLE: OnceLock<Option<Vec<u8>>> = OnceLock::new();
        let needle = NEEDLE.get_or_init(|| {
            std::env::var_os("ERP_TOOLKIT_TEST_ABORT_ON")
                .filter(|n| !n.is_empty())
                .map(|n| n.into_encoded_bytes())
        });
        if let Some(needle) = needle
            && payload
                .windows(needle.len())
                .any(|w| w == needle.as_slice())
        {
            eprintln!("ERP_TOOLKIT_TEST_ABORT_ON matched a record: aborting (test trigger)");
            std::process::abort();
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = payload;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(offset: i64) -> RecordAt {
        RecordAt {
            topic: "erp.inbound.events".into(),
            partition: 3,
            offset,
        }
    }

    fn reopen(db: &sled::Db, threshold: u32) -> PoisonGuard {
        PoisonGuard::open(
            db.open_tree("marks").expect("tree"),
            db.open_tree("suspects").expect("tree"),
            threshold,
        )
        .expect("opens")
    }

    #[test]
    fn a_record_alone_at_two_crashes_is_poison_a_batch_blames_nobody() {
        let dir = tempfile::tempdir().expect("dir");
        let db = sled::open(dir.path()).expect("db");
        let guard = reopen(&db, 2);
        // Crash 1 during a batch of three: all suspects, none counted.
        guard.mark(&[at(1), at(2), at(3)]).expect("marks");
        let guard = reopen(&db, 2);
        for offset in 1..=3 {
            assert!(guard.is_suspect(&at(offset)).expect("reads"));
            assert!(!guard.is_poison(&at(offset)).expect("reads"));
        }
        // Processed alone: 1 goes through, 2 crashes twice.
        guard.mark(&[at(1)]).expect("marks");
        guard.unmark(&[at(1)]).expect("unmarks");
        guard.forget(&[at(1)]).expect("forgets");
        guard.mark(&[at(2)]).expect("marks");
        let guard = reopen(&db, 2);
        assert_eq!(
            guard.suspicion(&at(2)).expect("reads"),
            Some(Suspicion { crashes: 1 })
        );
        assert!(!guard.is_poison(&at(2)).expect("reads"));
        guard.mark(&[at(2)]).expect("marks");
        let guard = reopen(&db, 2);
        assert!(guard.is_poison(&at(2)).expect("reads"));
        assert!(!guard.is_suspect(&at(1)).expect("reads"));
        assert!(guard.is_suspect(&at(3)).expect("reads"));
        assert!(!guard.is_poison(&at(3)).expect("reads"));
        // A clean run leaves nothing behind.
        guard.forget(&[at(2), at(3)]).expect("forgets");
        let guard = reopen(&db, 2);
        assert!(!guard.is_suspect(&at(2)).expect("reads"));
    }
}
