//! The processor's state: the dedup keys and the input position, in one sled tree so that one
//! batch writes both atomically (architecture decision 2).
//!
//! Keys (one tree, prefixed):
//!
//! - `d` integration `\0` dedup id → seen at (8 bytes) | input partition (4) | first event id:
//!   the first event that carried the dedup id, for the dedup window;
//! - `o` topic `\0` partition (4) → the next input offset to process: the position, sled being
//!   its source of truth (the consumer-group commit is advisory, for lag metrics);
//! - `c` partition (4) → the next changelog offset already applied here: where a restore from
//!   `erp.processor.state` resumes;
//! - `b` partition (4) batch-record key → the newest entry of that changelog batch record, so
//!   that expiry can tombstone the record once all of its entries are past the window.
//!
//! The checkpoint advances over this instance's own changelog records only while they are
//! contiguous: a record written by another instance in between (two owners during a
//! rebalance) stops it there, so the next restore reads that record rather than skipping it.
//!
//! A dedup key is written only after the batch's outputs are acknowledged by Kafka. A record
//! re-read after a crash therefore finds either no key (processed again, same derived ids) or
//! its *own* key (same `event_id`), also processed again rather than reported as its own
//! duplicate.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::ProcessorError;
use erp_schemas::positions::{PositionMarker, fold_positions};

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

/// What one changelog partition holds, read for a restore (decoded from the changelog's
/// records by [`crate::changelog`]).
#[derive(Debug, Default)]
pub struct ChangelogContent {
    /// Dedup keys to set (`Some`) or remove (`None`), in changelog order.
    pub dedup: Vec<(Vec<u8>, Option<DedupEntry>)>,
    /// Batch records (key, newest entry) to track for expiry, or forget (`None`).
    pub batches: Vec<(Vec<u8>, Option<i64>)>,
    /// Position markers (input topic, next offset).
    pub positions: Vec<(String, PositionMarker)>,
}

/// A dedup entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DedupEntry {
    pub seen_at: i64,
    pub partition: i32,
    pub event_id: String,
}

impl DedupEntry {
    fn encode(&self) -> Vec<u8> {
        let mut value = Vec::with_capacity(12 + self.event_id.len());
        value.extend_from_slice(&self.seen_at.to_be_bytes());
        value.extend_from_slice(&self.partition.to_be_bytes());
        value.extend_from_slice(self.event_id.as_bytes());
        value
    }

    fn decode(value: &[u8]) -> Option<Self> {
        let (time, rest) = value.split_at_checked(8)?;
        let (partition, id) = rest.split_at_checked(4)?;
        Some(Self {
            seen_at: i64::from_be_bytes(time.try_into().ok()?),
            partition: i32::from_be_bytes(partition.try_into().ok()?),
            event_id: String::from_utf8_lossy(id).into_owned(),
        })
    }
}

/// The dedup key of an event (without the store's prefix): also the changelog record key.
pub fn dedup_key(integration_id: &str, dedup_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(integration_id.len() + dedup_id.len() + 1);
    key.extend_from_slice(integration_id.as_bytes());
    key.push(0);
    key.extend_from_slice(dedup_id.as_bytes());
    key
}

fn prefixed(prefix: u8, rest: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(rest.len() + 1);
    key.push(prefix);
    key.extend_from_slice(rest);
    key
}

fn offset_key(topic: &str, partition: i32) -> Vec<u8> {
    let mut key = prefixed(b'o', topic.as_bytes());
    key.push(0);
    key.extend_from_slice(&partition.to_be_bytes());
    key
}

fn checkpoint_key(partition: i32) -> Vec<u8> {
    prefixed(b'c', &partition.to_be_bytes())
}

fn batch_index_key(partition: i32, batch_key: &[u8]) -> Vec<u8> {
    let mut key = prefixed(b'b', &partition.to_be_bytes());
    key.extend_from_slice(batch_key);
    key
}

fn read_i64(value: &[u8]) -> Option<i64> {
    Some(i64::from_be_bytes(value.get(..8)?.try_into().ok()?))
}

/// The dedup keys decided by a batch not yet committed.
pub type DedupOverlay = HashMap<Vec<u8>, DedupEntry>;

/// Changes decided in the current batch, applied together by [`StateStore::commit`].
#[derive(Default, Debug)]
pub struct PendingState {
    dedup: HashMap<Vec<u8>, DedupEntry>,
    /// Keys of the batch in flight: seen, but not in the store yet.
    overlay: Option<Arc<DedupOverlay>>,
    offsets: BTreeMap<(String, i32), i64>,
    checkpoints: BTreeMap<i32, i64>,
    batches: Vec<(i32, Vec<u8>, i64)>,
}

impl PendingState {
    /// Pending state for a batch decided while `overlay`'s batch is still being committed.
    pub fn with_overlay(overlay: Option<Arc<DedupOverlay>>) -> Self {
        Self {
            overlay,
            ..Self::default()
        }
    }

    /// This batch's dedup decisions, as the overlay of the next batch.
    pub fn overlay_of_batch(&self) -> DedupOverlay {
        self.dedup.clone()
    }

    /// The new dedup keys of the batch (changelog records to write).
    pub fn dedup_entries(&self) -> impl Iterator<Item = (&Vec<u8>, &DedupEntry)> {
        self.dedup.iter()
    }

    /// Notes that the batch wrote changelog batch record `key` to `partition`, with `newest`
    /// its newest entry.
    pub fn batch_record(&mut self, partition: i32, key: Vec<u8>, newest: i64) {
        self.batches.push((partition, key, newest));
    }

    /// The next input offset of each partition of the batch.
    pub fn offsets(&self) -> &BTreeMap<(String, i32), i64> {
        &self.offsets
    }

    /// Records that the batch's input reached `next_offset` on a partition.
    pub fn advance(&mut self, topic: &str, partition: i32, next_offset: i64) {
        let entry = self
            .offsets
            .entry((topic.to_owned(), partition))
            .or_insert(next_offset);
        *entry = (*entry).max(next_offset);
    }

    /// Records that changelog partition `partition` is applied up to `next_offset`.
    pub fn checkpoint(&mut self, partition: i32, next_offset: i64) {
        let entry = self.checkpoints.entry(partition).or_insert(next_offset);
        *entry = (*entry).max(next_offset);
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.dedup.is_empty()
            && self.offsets.is_empty()
            && self.checkpoints.is_empty()
            && self.batches.is_empty()
    }
}

/// This instance's own changelog records per partition, acknowledged but not yet contiguous
/// with the checkpoint.
#[derive(Debug, Default)]
struct OwnRecords {
    next: i64,
    ahead: BTreeSet<i64>,
}

/// The persistent state store.
pub struct StateStore {
    tree: sled::Tree,
    db: sled::Db,
    window_ms: i64,
    dedup_count: AtomicI64,
    own: Mutex<HashMap<i32, OwnRecords>>,
}

impl StateStore {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path, window: Duration) -> Result<Self, ProcessorError> {
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            .open()?;
        let tree = db.open_tree("state")?;
        let store = Self {
            tree,
            db,
            window_ms: i64::try_from(window.as_millis()).unwrap_or(i64::MAX),
            dedup_count: AtomicI64::new(0),
            own: Mutex::default(),
        };
        store.recount();
        Ok(store)
    }

    fn recount(&self) {
        let count = self.tree.scan_prefix([b'd']).count();
        self.dedup_count
            .store(i64::try_from(count).unwrap_or(i64::MAX), Ordering::Relaxed);
    }

    /// Notes this instance's own changelog records at `offsets` of `partition`, acknowledged
    /// and part of a committed batch; returns the checkpoint they advance it to, if they do.
    pub fn note_own_records(
        &self,
        partition: i32,
        offsets: impl IntoIterator<Item = i64>,
    ) -> Result<Option<i64>, ProcessorError> {
        let stored = self.checkpoint(partition)?;
        let Ok(mut own) = self.own.lock() else {
            return Ok(None);
        };
        let records = own.entry(partition).or_insert_with(|| OwnRecords {
            next: stored,
            ahead: BTreeSet::new(),
        });
        let before = records.next;
        records.ahead.extend(offsets);
        while records.ahead.remove(&records.next) {
            records.next += 1;
        }
        let next = records.next;
        records.ahead.retain(|offset| *offset >= next);
        Ok((next > before).then_some(next))
    }

    /// The dedup window in milliseconds.
    pub fn window_ms(&self) -> i64 {
        self.window_ms
    }

    /// Decides about one event, taking keys decided earlier in the same batch into account, and
    /// records a new key in `pending`.
    pub fn check(
        &self,
        pending: &mut PendingState,
        integration_id: &str,
        dedup_id: &str,
        event_id: &str,
        received_at: i64,
        partition: i32,
    ) -> Result<Verdict, ProcessorError> {
        let key = dedup_key(integration_id, dedup_id);
        let in_batch = pending
            .dedup
            .get(&key)
            .or_else(|| pending.overlay.as_ref().and_then(|o| o.get(&key)));
        let known = match in_batch {
            Some(entry) => Some(entry.clone()),
            None => self
                .tree
                .get(prefixed(b'd', &key))?
                .and_then(|v| DedupEntry::decode(&v)),
        };
        if let Some(entry) = known {
            if entry.event_id == event_id {
                return Ok(Verdict::Replayed);
            }
            if (received_at - entry.seen_at).abs() < self.window_ms {
                return Ok(Verdict::Duplicate {
                    first_event_id: entry.event_id,
                    first_seen_at: entry.seen_at,
                });
            }
        }
        pending.dedup.insert(
            key,
            DedupEntry {
                seen_at: received_at,
                partition,
                event_id: event_id.to_owned(),
            },
        );
        Ok(Verdict::New)
    }

    /// Writes the batch's dedup keys, positions and checkpoints in one atomic batch and flushes.
    pub async fn commit(&self, pending: PendingState) -> Result<(), ProcessorError> {
        if pending.is_empty() {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        let new_keys = i64::try_from(pending.dedup.len()).unwrap_or(0);
        for (key, entry) in pending.dedup {
            batch.insert(prefixed(b'd', &key), entry.encode());
        }
        for ((topic, partition), next) in pending.offsets {
            batch.insert(offset_key(&topic, partition), next.to_be_bytes().to_vec());
        }
        for (partition, next) in pending.checkpoints {
            batch.insert(checkpoint_key(partition), next.to_be_bytes().to_vec());
        }
        for (partition, key, newest) in pending.batches {
            batch.insert(
                batch_index_key(partition, &key),
                newest.to_be_bytes().to_vec(),
            );
        }
        self.tree.apply_batch(batch)?;
        self.dedup_count.fetch_add(new_keys, Ordering::Relaxed);
        self.db.flush_async().await?;
        Ok(())
    }

    /// The next input offset of a partition, if this store knows it.
    pub fn position(&self, topic: &str, partition: i32) -> Result<Option<i64>, ProcessorError> {
        Ok(self
            .tree
            .get(offset_key(topic, partition))?
            .and_then(|v| read_i64(&v)))
    }

    /// The next changelog offset already applied for a partition (0 when never restored).
    pub fn checkpoint(&self, partition: i32) -> Result<i64, ProcessorError> {
        Ok(self
            .tree
            .get(checkpoint_key(partition))?
            .and_then(|v| read_i64(&v))
            .unwrap_or(0))
    }

    /// Applies what a restore read from changelog partition `partition` up to `checkpoint`:
    /// upserts and removals of dedup keys, batch records to track, positions (the furthest
    /// wins) and the new checkpoint, atomically, then flushes.
    pub fn restore(
        &self,
        partition: i32,
        content: ChangelogContent,
        checkpoint: i64,
    ) -> Result<(), ProcessorError> {
        let mut batch = sled::Batch::default();
        for (key, entry) in content.dedup {
            match entry {
                Some(entry) => batch.insert(prefixed(b'd', &key), entry.encode()),
                None => batch.remove(prefixed(b'd', &key)),
            }
        }
        for (key, newest) in content.batches {
            match newest {
                Some(newest) => batch.insert(
                    batch_index_key(partition, &key),
                    newest.to_be_bytes().to_vec(),
                ),
                None => batch.remove(batch_index_key(partition, &key)),
            }
        }
        // In log order per topic: the furthest ordinary marker wins, a group reset replaces.
        let mut markers: BTreeMap<String, Vec<PositionMarker>> = BTreeMap::new();
        for (topic, marker) in content.positions {
            markers.entry(topic).or_default().push(marker);
        }
        for (topic, markers) in markers {
            let stored = self.position(&topic, partition)?;
            if let Some(next) = fold_positions(stored, markers) {
                batch.insert(offset_key(&topic, partition), next.to_be_bytes().to_vec());
            }
        }
        batch.insert(checkpoint_key(partition), checkpoint.to_be_bytes().to_vec());
        self.tree.apply_batch(batch)?;
        self.db.flush()?;
        if let Ok(mut own) = self.own.lock() {
            own.insert(
                partition,
                OwnRecords {
                    next: checkpoint,
                    ahead: BTreeSet::new(),
                },
            );
        }
        self.recount();
        Ok(())
    }

    /// Removes dedup keys older than the window (relative to `now`) and forgets changelog
    /// batch records whose entries are all that old. Returns those batch records' keys with
    /// their changelog partition, for tombstones.
    pub fn expire(&self, now: i64) -> Result<Vec<(Vec<u8>, i32)>, ProcessorError> {
        for entry in self.tree.scan_prefix([b'd']) {
            let (key, value) = entry?;
            if DedupEntry::decode(&value).is_none_or(|e| now - e.seen_at >= self.window_ms) {
                self.tree.remove(&key)?;
            }
        }
        let mut expired = Vec::new();
        for entry in self.tree.scan_prefix([b'b']) {
            let (key, value) = entry?;
            if read_i64(&value).is_none_or(|newest| now - newest >= self.window_ms) {
                self.tree.remove(&key)?;
                if let Some((partition, batch_key)) = key.get(1..5).zip(key.get(5..)) {
                    let partition = i32::from_be_bytes(partition.try_into().unwrap_or_default());
                    expired.push((batch_key.to_vec(), partition));
                }
            }
        }
        self.recount();
        Ok(expired)
    }

    /// Number of dedup keys held.
    pub fn dedup_len(&self) -> usize {
        usize::try_from(self.dedup_count.load(Ordering::Relaxed)).unwrap_or(0)
    }

    /// The poison-record guard, on two trees of this store's database (one flush covers all).
    pub fn poison_guard(
        &self,
        threshold: u32,
    ) -> Result<erp_runtime::poison::PoisonGuard, ProcessorError> {
        let marks = self.db.open_tree("in-flight")?;
        let suspects = self.db.open_tree("suspects")?;
        Ok(erp_runtime::poison::PoisonGuard::open(
            marks, suspects, threshold,
        )?)
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
    async fn dedup_keys_and_positions_commit_together_and_survive_reopen() {
        let dir = tempfile::tempdir().expect("temp dir");
        {
            let store = StateStore::open(dir.path(), DAY).expect("opens");
            let mut pending = PendingState::default();
            assert_eq!(
                store
                    .check(&mut pending, "i", "d1", "evt_1", 1000, 0)
                    .expect("checks"),
                Verdict::New
            );
            assert!(matches!(
                store
                    .check(&mut pending, "i", "d1", "evt_2", 1001, 0)
                    .expect("checks"),
                Verdict::Duplicate { .. }
            ));
            pending.advance("in", 0, 42);
            pending.checkpoint(0, 7);
            store.commit(pending).await.expect("commits");
        }
        let store = StateStore::open(dir.path(), DAY).expect("reopens");
        assert_eq!(store.position("in", 0).expect("reads"), Some(42));
        assert_eq!(store.position("in", 1).expect("reads"), None);
        assert_eq!(store.checkpoint(0).expect("reads"), 7);
        let mut pending = PendingState::default();
        assert!(matches!(
            store.check(&mut pending, "i", "d1", "evt_3", 5000, 0).expect("checks"),
            Verdict::Duplicate { ref first_event_id, .. } if first_event_id == "evt_1"
        ));
        assert_eq!(
            store
                .check(&mut pending, "i", "d1", "evt_1", 1000, 0)
                .expect("checks"),
            Verdict::Replayed
        );
        assert_eq!(
            store
                .check(&mut pending, "j", "d1", "evt_4", 5000, 1)
                .expect("checks"),
            Verdict::New
        );
    }

    fn marker(next_offset: i64, reset: bool) -> PositionMarker {
        PositionMarker { next_offset, reset }
    }

    #[tokio::test]
    async fn restore_applies_upserts_tombstones_and_the_later_position() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = StateStore::open(dir.path(), DAY).expect("opens");
        let entry = DedupEntry {
            seen_at: 10,
            partition: 2,
            event_id: "evt_9".into(),
        };
        let content = ChangelogContent {
            dedup: vec![
                (dedup_key("i", "a"), Some(entry.clone())),
                (dedup_key("i", "b"), None),
            ],
            positions: vec![
                ("in".into(), marker(99, false)),
                ("in".into(), marker(98, false)),
            ],
            ..Default::default()
        };
        store.restore(2, content, 5).expect("restores");
        let content = ChangelogContent {
            positions: vec![("in".into(), marker(50, false))],
            ..Default::default()
        };
        store.restore(2, content, 6).expect("restores");
        assert_eq!(store.position("in", 2).expect("reads"), Some(99));
        assert_eq!(store.checkpoint(2).expect("reads"), 6);
        // A group reset moves the position back (or on), whatever the store held.
        let content = ChangelogContent {
            positions: vec![("in".into(), marker(40, true))],
            ..Default::default()
        };
        store.restore(2, content, 7).expect("restores");
        assert_eq!(store.position("in", 2).expect("reads"), Some(40));
        let mut pending = PendingState::default();
        assert!(matches!(
            store
                .check(&mut pending, "i", "a", "evt_x", 20, 2)
                .expect("checks"),
            Verdict::Duplicate { .. }
        ));
        let content = ChangelogContent {
            dedup: vec![(dedup_key("i", "a"), None)],
            ..Default::default()
        };
        store.restore(2, content, 7).expect("restores");
        assert_eq!(
            store
                .check(&mut pending, "i", "a", "evt_x", 20, 2)
                .expect("checks"),
            Verdict::New
        );
    }

    #[tokio::test]
    async fn keys_expire_after_the_window() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = StateStore::open(dir.path(), Duration::from_millis(100)).expect("opens");
        let mut pending = PendingState::default();
        store
            .check(&mut pending, "i", "d", "evt_1", 0, 3)
            .expect("checks");
        pending.batch_record(3, b"batch-0".to_vec(), 0);
        store.commit(pending).await.expect("commits");
        assert_eq!(store.dedup_len(), 1);
        let mut pending = PendingState::default();
        assert_eq!(
            store
                .check(&mut pending, "i", "d", "evt_2", 100, 3)
                .expect("checks"),
            Verdict::New
        );
        assert_eq!(
            store.expire(1000).expect("expires"),
            vec![(b"batch-0".to_vec(), 3)]
        );
        assert_eq!(store.dedup_len(), 0);
    }

    #[tokio::test]
    async fn the_checkpoint_advances_only_over_contiguous_own_records() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = StateStore::open(dir.path(), DAY).expect("opens");
        assert_eq!(store.note_own_records(1, [0, 1]).expect("notes"), Some(2));
        // Offset 2 was written by another instance: it stays unread until a restore.
        assert_eq!(store.note_own_records(1, [3, 4]).expect("notes"), None);
        store
            .restore(1, ChangelogContent::default(), 5)
            .expect("restores");
        assert_eq!(store.note_own_records(1, [5]).expect("notes"), Some(6));
        assert_eq!(store.note_own_records(2, [0]).expect("notes"), Some(1));
    }
}
