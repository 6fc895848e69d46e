//! The dedup store: `(integration, deduplication_id)` → the first event that carried it, kept for
//! the dedup window. Backed by sled in the processor's data directory; behind a small type of
//! our own so the engine can change without touching the worker.
//!
//! A key is written only after the event's output is acknowledged by Kafka, in one sled batch
//! per poll. A record re-read after a crash therefore finds either no key (and is processed
//! again, with the same derived output ids) or its *own* key (same `event_id`), which is also
//! processed again rather than reported as its own duplicate.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use crate::error::ProcessorError;

/// What the store says about an event's dedup id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// First sighting within the window: process it.
    New,
    /// The same record again (a re-read after a crash or rebalance): process it again.
    Replayed,
    /// Another event with this dedup id was accepted within the window.
    Duplicate {
        first_event_id: String,
        first_seen_at: i64,
    },
}

/// The persistent dedup store.
pub struct DedupStore {
    tree: sled::Tree,
    db: sled::Db,
    window_ms: i64,
}

/// Keys decided in the current batch, applied together by [`DedupStore::commit`].
#[derive(Default)]
pub struct PendingKeys {
    entries: HashMap<Vec<u8>, (i64, String)>,
}

impl PendingKeys {
    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn key_of(integration_id: &str, dedup_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(integration_id.len() + dedup_id.len() + 1);
    key.extend_from_slice(integration_id.as_bytes());
    key.push(0);
    key.extend_from_slice(dedup_id.as_bytes());
    key
}

fn encode(seen_at: i64, event_id: &str) -> Vec<u8> {
    let mut value = Vec::with_capacity(8 + event_id.len());
    value.extend_from_slice(&seen_at.to_be_bytes());
    value.extend_from_slice(event_id.as_bytes());
    value
}

fn decode(value: &[u8]) -> Option<(i64, String)> {
    let (time, id) = value.split_at_checked(8)?;
    let seen_at = i64::from_be_bytes(time.try_into().ok()?);
    Some((seen_at, String::from_utf8_lossy(id).into_owned()))
}

impl DedupStore {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path, window: Duration) -> Result<Self, ProcessorError> {
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            .open()?;
        let tree = db.open_tree("dedup")?;
        Ok(Self {
            tree,
            db,
            window_ms: i64::try_from(window.as_millis()).unwrap_or(i64::MAX),
        })
    }

    /// Decides about one event, taking keys decided earlier in the same batch into account, and
    /// records a new key in `pending`.
    pub fn check(
        &self,
        pending: &mut PendingKeys,
        integration_id: &str,
        dedup_id: &str,
        event_id: &str,
        received_at: i64,
    ) -> Result<Verdict, ProcessorError> {
        let key = key_of(integration_id, dedup_id);
        let known = match pending.entries.get(&key) {
            Some(entry) => Some(entry.clone()),
            None => self.tree.get(&key)?.and_then(|v| decode(&v)),
        };
        if let Some((seen_at, first_event_id)) = known {
            if first_event_id == event_id {
                return Ok(Verdict::Replayed);
            }
            if (received_at - seen_at).abs() < self.window_ms {
                return Ok(Verdict::Duplicate {
                    first_event_id,
                    first_seen_at: seen_at,
                });
            }
        }
        pending
            .entries
            .insert(key, (received_at, event_id.to_owned()));
        Ok(Verdict::New)
    }

    /// Writes the batch's keys atomically and flushes them to disk.
    pub async fn commit(&self, pending: PendingKeys) -> Result<(), ProcessorError> {
        if pending.is_empty() {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for (key, (seen_at, event_id)) in pending.entries {
            batch.insert(key, encode(seen_at, &event_id));
        }
        self.tree.apply_batch(batch)?;
        self.db.flush_async().await?;
        Ok(())
    }

    /// Removes keys older than the window (relative to `now`). Returns how many went.
    pub fn expire(&self, now: i64) -> Result<usize, ProcessorError> {
        let mut removed = 0;
        for entry in self.tree.iter() {
            let (key, value) = entry?;
            if decode(&value).is_none_or(|(seen_at, _)| now - seen_at >= self.window_ms) {
                self.tree.remove(key)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.tree.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }

    /// Flushes everything to disk (on shutdown).
    pub async fn flush(&self) -> Result<(), ProcessorError> {
        self.db.flush_async().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(24 * 3600);

    #[tokio::test]
    async fn duplicates_within_the_window_are_caught_across_reopen() {
        let dir = tempfile::tempdir().expect("temp dir");
        {
            let store = DedupStore::open(dir.path(), DAY).expect("opens");
            let mut pending = PendingKeys::default();
            assert_eq!(
                store
                    .check(&mut pending, "i", "d1", "evt_1", 1000)
                    .expect("checks"),
                Verdict::New
            );
            // Same batch, same dedup id, another event.
            assert!(matches!(
                store
                    .check(&mut pending, "i", "d1", "evt_2", 1001)
                    .expect("checks"),
                Verdict::Duplicate { .. }
            ));
            store.commit(pending).await.expect("commits");
        }
        let store = DedupStore::open(dir.path(), DAY).expect("reopens");
        let mut pending = PendingKeys::default();
        assert!(matches!(
            store.check(&mut pending, "i", "d1", "evt_3", 5000).expect("checks"),
            Verdict::Duplicate { ref first_event_id, .. } if first_event_id == "evt_1"
        ));
        // The first event itself, re-read after a crash, is processed again.
        assert_eq!(
            store
                .check(&mut pending, "i", "d1", "evt_1", 1000)
                .expect("checks"),
            Verdict::Replayed
        );
        // Other integrations have their own keys.
        assert_eq!(
            store
                .check(&mut pending, "j", "d1", "evt_4", 5000)
                .expect("checks"),
            Verdict::New
        );
    }

    #[tokio::test]
    async fn keys_expire_after_the_window() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = DedupStore::open(dir.path(), Duration::from_millis(100)).expect("opens");
        let mut pending = PendingKeys::default();
        store
            .check(&mut pending, "i", "d", "evt_1", 0)
            .expect("checks");
        store.commit(pending).await.expect("commits");
        let mut pending = PendingKeys::default();
        assert_eq!(
            store
                .check(&mut pending, "i", "d", "evt_2", 100)
                .expect("checks"),
            Verdict::New
        );
        assert_eq!(store.expire(1000).expect("expires"), 1);
        assert!(store.is_empty());
    }
}
