//! One integration's poll stream as a pure state machine (spec §8.4): the messages after the
//! cursor, the attempts, the lease, the block and the DLQ. Every operation takes `now` and
//! returns the next consumer state and the effects to write (spans, DLQ entries, re-enqueued
//! messages) without changing the stream; [`Stream::commit`] adopts the state once it is
//! durable. That keeps a failed write from leaving memory ahead of Kafka, and keeps this module
//! testable without a broker.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Arc;

use serde_json::{Value, json};

use erp_schemas::ids::derived_ulid;
use erp_schemas::monitoring::Level;
use erp_schemas::poll::{
    PoisonPolicy, PollBlock, PollDlqEntry, PollItem, PollLease, PollStreamSnapshot,
};

/// How many message ids a stream remembers to drop re-emitted copies. A copy comes from the
/// processor re-processing a platform event after a crash, so it arrives shortly after the
/// original; a window of this many messages is plenty.
const SEEN_IDS: usize = 10_000;

/// A message in the stream and where it sits in `erp.outbound.poll`.
#[derive(Debug, Clone)]
pub struct Entry {
    pub offset: i64,
    pub item: Arc<PollItem>,
    /// Size of the payload as JSON, for the response cap.
    pub bytes: usize,
}

/// The consumer state: small, cloned for every operation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamState {
    pub integration_id: String,
    pub org_id: String,
    pub partition: Option<i32>,
    pub cursor: i64,
    pub attempts: BTreeMap<i64, u32>,
    pub lease: Option<PollLease>,
    pub blocked: Option<PollBlock>,
    pub last_poll_at_ms: Option<i64>,
    pub last_ack_at_ms: Option<i64>,
    pub next_dlq_seq: u64,
    pub dlq: BTreeMap<String, Arc<PollDlqEntry>>,
}

impl StreamState {
    /// The record written to the state topic (DLQ entries are records of their own).
    pub fn snapshot(&self) -> PollStreamSnapshot {
        PollStreamSnapshot {
            integration_id: self.integration_id.clone(),
            org_id: self.org_id.clone(),
            partition: self.partition,
            cursor: self.cursor,
            attempts: self.attempts.iter().map(|(o, n)| (*o, *n)).collect(),
            lease: self.lease.clone(),
            blocked: self.blocked.clone(),
            last_poll_at_ms: self.last_poll_at_ms,
            last_ack_at_ms: self.last_ack_at_ms,
            next_dlq_seq: self.next_dlq_seq,
        }
    }

    fn attempts_of(&self, offset: i64) -> u32 {
        self.attempts.get(&offset).copied().unwrap_or(0)
    }
}

/// A monitoring span an operation asks for, about one message.
#[derive(Debug, Clone)]
pub struct SpanSpec {
    pub item: Arc<PollItem>,
    pub level: Level,
    pub code: &'static str,
    pub message: String,
    pub detail: Value,
    /// Makes the span id unique where one message can get the same code twice.
    pub discriminator: String,
}

/// What an operation needs written besides the new state.
#[derive(Debug, Clone, Default)]
pub struct Effects {
    pub spans: Vec<SpanSpec>,
    pub dlq_put: Vec<Arc<PollDlqEntry>>,
    pub dlq_delete: Vec<String>,
    /// Redriven messages, to append to `erp.outbound.poll`.
    pub enqueue: Vec<PollItem>,
}

/// The outcome of an operation: the state to commit, what to write, and the answer.
#[derive(Debug)]
pub struct Change<T> {
    pub state: StreamState,
    pub effects: Effects,
    pub result: T,
}

impl<T> Change<T> {
    /// Whether anything needs writing.
    pub fn changed(&self, before: &StreamState) -> bool {
        self.state != *before
            || !self.effects.spans.is_empty()
            || !self.effects.dlq_put.is_empty()
            || !self.effects.dlq_delete.is_empty()
            || !self.effects.enqueue.is_empty()
    }
}

/// A leased batch.
#[derive(Debug, Clone, Default)]
pub struct Polled {
    pub messages: Vec<Arc<PollItem>>,
    pub lease_token: String,
    pub has_more: bool,
}

/// Why an ack was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    StaleLease,
    OutOfOrder,
    NotFound,
}

impl Rejection {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::StaleLease => "stale_lease",
            Rejection::OutOfOrder => "out_of_order",
            Rejection::NotFound => "not_found",
        }
    }
}

/// Limits of one poll.
#[derive(Debug, Clone, Copy)]
pub struct PollLimits {
    /// Most messages.
    pub limit: usize,
    /// Most payload bytes (the first message is always included).
    pub max_bytes: usize,
    /// How long the lease lasts, in milliseconds.
    pub visibility_ms: i64,
}

/// One integration's stream.
#[derive(Debug, Default)]
pub struct Stream {
    pub state: StreamState,
    /// Messages at or after the cursor, by offset (older ones are pruned on commit).
    items: VecDeque<Entry>,
    seen: HashSet<String>,
    seen_order: VecDeque<String>,
}

impl Stream {
    /// An empty stream of an integration.
    pub fn new(integration_id: &str) -> Self {
        Self {
            state: StreamState {
                integration_id: integration_id.to_owned(),
                ..StreamState::default()
            },
            ..Self::default()
        }
    }

    /// Adds a message read from `erp.outbound.poll`. Returns false for a copy of a message
    /// already seen or one before the cursor.
    pub fn enqueue(&mut self, partition: i32, offset: i64, item: PollItem) -> bool {
        if !self.seen.insert(item.id.clone()) {
            return false;
        }
        self.seen_order.push_back(item.id.clone());
        if self.seen_order.len() > SEEN_IDS
            && let Some(old) = self.seen_order.pop_front()
        {
            self.seen.remove(&old);
        }
        if self.state.org_id.is_empty() {
            self.state.org_id = item.org_id.clone();
        }
        self.state.partition.get_or_insert(partition);
        if offset < self.state.cursor {
            return false;
        }
        let bytes = serde_json::to_vec(&item.payload).map_or(0, |b| b.len());
        let entry = Entry {
            offset,
            item: Arc::new(item),
            bytes,
        };
        match self.items.back() {
            Some(last) if last.offset > offset => {
                let at = self.items.partition_point(|e| e.offset < offset);
                self.items.insert(at, entry);
            }
            _ => self.items.push_back(entry),
        }
        true
    }

    /// Applies a snapshot read from the state topic (DLQ entries stay as they are).
    pub fn apply_snapshot(&mut self, snapshot: PollStreamSnapshot) {
        let dlq = std::mem::take(&mut self.state.dlq);
        self.state = StreamState {
            integration_id: snapshot.integration_id,
            org_id: snapshot.org_id,
            partition: snapshot.partition.or(self.state.partition),
            cursor: snapshot.cursor,
            attempts: snapshot.attempts.into_iter().collect(),
            lease: snapshot.lease,
            blocked: snapshot.blocked,
            last_poll_at_ms: snapshot.last_poll_at_ms,
            last_ack_at_ms: snapshot.last_ack_at_ms,
            next_dlq_seq: snapshot.next_dlq_seq,
            dlq,
        };
        self.prune();
    }

    /// Applies a DLQ record read from the state topic (`None`: a tombstone).
    pub fn apply_dlq(&mut self, message_id: &str, entry: Option<PollDlqEntry>) {
        match entry {
            Some(entry) => {
                self.state.next_dlq_seq = self.state.next_dlq_seq.max(entry.seq + 1);
                self.state
                    .dlq
                    .insert(message_id.to_owned(), Arc::new(entry));
            }
            None => {
                self.state.dlq.remove(message_id);
            }
        }
    }

    /// Adopts a state an operation produced, once it is written.
    pub fn commit(&mut self, state: StreamState) {
        self.state = state;
        self.prune();
    }

    fn prune(&mut self) {
        while self
            .items
            .front()
            .is_some_and(|e| e.offset < self.state.cursor)
        {
            self.items.pop_front();
        }
    }

    /// Messages not yet done, in stream order, under `state`.
    fn pending<'a>(&'a self, state: &'a StreamState) -> impl Iterator<Item = &'a Entry> + 'a {
        self.items.iter().filter(move |e| e.offset >= state.cursor)
    }

    /// How many messages are waiting (leased or not).
    pub fn depth(&self) -> usize {
        self.pending(&self.state).count()
    }

    /// Lapses an expired lease, drops expired messages at the head, applies the poison policy
    /// to an exhausted head, and drops expired DLQ entries.
    fn settle(&self, state: &mut StreamState, effects: &mut Effects, now: i64) {
        let mut lapsed_token = None;
        if state.lease.as_ref().is_some_and(|l| l.expires_at_ms <= now) {
            lapsed_token = state.lease.take().map(|l| l.token);
        }
        loop {
            let Some(head) = self.pending(state).next().cloned() else {
                break;
            };
            let attempts = state.attempts_of(head.offset);
            if state.lease.is_none() && head.item.expires_at_ms() <= now {
                if attempts == 0 {
                    effects.spans.push(SpanSpec {
                        item: Arc::clone(&head.item),
                        level: Level::Error,
                        code: "MSG_EXPIRED_UNPOLLED",
                        message: format!(
                            "expired after {} day(s) without being polled",
                            head.item.retention_days
                        ),
                        detail: json!({"message_id": head.item.id, "retention_days": head.item.retention_days}),
                        discriminator: String::new(),
                    });
                }
                state.attempts.remove(&head.offset);
                state.cursor = head.offset + 1;
                state.blocked = None;
                continue;
            }
            if state.lease.is_some() || attempts < head.item.max_delivery_attempts {
                break;
            }
            match head.item.poison_policy {
                PoisonPolicy::DeadLetter => {
                    let reason = format!(
                        "max_delivery_attempts ({}) reached",
                        head.item.max_delivery_attempts
                    );
                    dead_letter(state, effects, &head, reason, now);
                }
                PoisonPolicy::Block => {
                    if state.blocked.is_none() {
                        state.blocked = Some(PollBlock {
                            since_ms: now,
                            offset: head.offset,
                            lease_token: lapsed_token.take(),
                        });
                        effects.spans.push(SpanSpec {
                            item: Arc::clone(&head.item),
                            level: Level::Error,
                            code: "MSG_HEAD_BLOCKED",
                            message: format!(
                                "stream blocked: the head message reached max_delivery_attempts ({})",
                                head.item.max_delivery_attempts
                            ),
                            detail: json!({"message_id": head.item.id, "delivery_attempts": attempts}),
                            discriminator: now.to_string(),
                        });
                    }
                    break;
                }
            }
        }
        let expired: Vec<String> = state
            .dlq
            .iter()
            .filter(|(_, e)| e.expires_at_ms <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            state.dlq.remove(&id);
            effects.dlq_delete.push(id);
        }
    }

    /// Housekeeping without a request: see `settle`.
    pub fn tick(&self, now: i64) -> Change<()> {
        let mut state = self.state.clone();
        let mut effects = Effects::default();
        self.settle(&mut state, &mut effects, now);
        Change {
            state,
            effects,
            result: (),
        }
    }

    /// Leases the head-of-line run, unless a lease is active or the stream is blocked.
    pub fn poll(&self, now: i64, limits: PollLimits, lease_token: &str) -> Change<Polled> {
        let mut state = self.state.clone();
        let mut effects = Effects::default();
        self.settle(&mut state, &mut effects, now);
        let mut polled = Polled::default();
        if state.lease.is_some() || state.blocked.is_some() {
            return Change {
                state,
                effects,
                result: polled,
            };
        }
        let (mut offsets, mut bytes) = (Vec::new(), 0usize);
        let mut pending = self.pending(&state).peekable();
        while let Some(entry) = pending.peek() {
            let over_budget = !offsets.is_empty() && bytes + entry.bytes > limits.max_bytes;
            // An expired or exhausted message further down waits until it is the head, where
            // `settle` deals with it.
            let not_leasable = entry.item.expires_at_ms() <= now
                || state.attempts_of(entry.offset) >= entry.item.max_delivery_attempts;
            if offsets.len() >= limits.limit || over_budget || not_leasable {
                break;
            }
            bytes += entry.bytes;
            offsets.push(entry.offset);
            polled.messages.push(Arc::clone(&entry.item));
            pending.next();
        }
        polled.has_more = pending.peek().is_some();
        drop(pending);
        if offsets.is_empty() {
            return Change {
                state,
                effects,
                result: polled,
            };
        }
        for offset in &offsets {
            *state.attempts.entry(*offset).or_insert(0) += 1;
        }
        state.lease = Some(PollLease {
            token: lease_token.to_owned(),
            offsets,
            expires_at_ms: now.saturating_add(limits.visibility_ms),
        });
        state.last_poll_at_ms = Some(now);
        polled.lease_token = lease_token.to_owned();
        Change {
            state,
            effects,
            result: polled,
        }
    }

    /// Acknowledges `(id, lease_token)` pairs: the leased run's prefix they cover without a gap
    /// is accepted and the cursor moves past it; the answer is per pair, in input order.
    pub fn ack(&self, now: i64, acks: &[(String, String)]) -> Change<Vec<Result<(), Rejection>>> {
        let mut state = self.state.clone();
        let mut effects = Effects::default();
        self.settle(&mut state, &mut effects, now);
        // The run acks may cover: the active lease, or a blocked head under its last lease.
        let (run, run_token): (Vec<i64>, Option<String>) = match (&state.lease, &state.blocked) {
            (Some(lease), _) => (lease.offsets.clone(), Some(lease.token.clone())),
            (None, Some(block)) => (vec![block.offset], block.lease_token.clone()),
            (None, None) => (Vec::new(), None),
        };
        let by_id: BTreeMap<&str, &Entry> = self
            .pending(&state)
            .map(|e| (e.item.id.as_str(), e))
            .collect();
        let mut verdicts: Vec<Result<i64, Rejection>> = acks
            .iter()
            .map(|(id, token)| {
                let entry = by_id.get(id.as_str()).ok_or(Rejection::NotFound)?;
                if run_token.as_deref() != Some(token.as_str()) {
                    return Err(Rejection::StaleLease);
                }
                if run.contains(&entry.offset) {
                    Ok(entry.offset)
                } else {
                    Err(Rejection::OutOfOrder)
                }
            })
            .collect();
        let candidates: HashSet<i64> = verdicts.iter().filter_map(|v| v.ok()).collect();
        let accepted: Vec<i64> = run
            .iter()
            .copied()
            .take_while(|o| candidates.contains(o))
            .collect();
        for verdict in &mut verdicts {
            if let Ok(offset) = verdict
                && !accepted.contains(offset)
            {
                *verdict = Err(Rejection::OutOfOrder);
            }
        }
        if let Some(&last) = accepted.last() {
            for offset in &accepted {
                state.attempts.remove(offset);
                if let Some(entry) = self.pending(&self.state).find(|e| e.offset == *offset) {
                    effects.spans.push(SpanSpec {
                        item: Arc::clone(&entry.item),
                        level: Level::Success,
                        code: "MSG_ACKED",
                        message: "acknowledged by the consumer".into(),
                        detail: json!({"message_id": entry.item.id, "delivery_attempts": self.state.attempts_of(*offset)}),
                        discriminator: String::new(),
                    });
                }
            }
            state.cursor = last + 1;
            state.last_ack_at_ms = Some(now);
            if let Some(lease) = &mut state.lease {
                lease.offsets.retain(|o| *o > last);
                if lease.offsets.is_empty() {
                    state.lease = None;
                }
            }
            if state.blocked.as_ref().is_some_and(|b| b.offset <= last) {
                state.blocked = None;
            }
        }
        let result = verdicts.into_iter().map(|v| v.map(|_| ())).collect();
        Change {
            state,
            effects,
            result,
        }
    }

    /// Dead-letters a blocked head with the operator's reason. Answers the message id, or
    /// `None` when the stream was not blocked.
    pub fn unblock(&self, now: i64, reason: Option<&str>) -> Change<Option<String>> {
        let mut state = self.state.clone();
        let mut effects = Effects::default();
        self.settle(&mut state, &mut effects, now);
        let head = state
            .blocked
            .as_ref()
            .and_then(|b| self.pending(&state).find(|e| e.offset == b.offset).cloned());
        let result = head.map(|head| {
            let reason =
                reason.map_or_else(|| "unblocked by an operator".to_owned(), str::to_owned);
            dead_letter(&mut state, &mut effects, &head, reason, now);
            state.blocked = None;
            head.item.id.clone()
        });
        Change {
            state,
            effects,
            result,
        }
    }

    /// Re-enqueues DLQ entries at the tail with a new id, zero attempts and a fresh retention.
    /// Answers, per id, whether it was in the DLQ.
    pub fn redrive(&self, now: i64, ids: &[String]) -> Change<Vec<bool>> {
        let mut state = self.state.clone();
        let mut effects = Effects::default();
        self.settle(&mut state, &mut effects, now);
        let result = ids
            .iter()
            .map(|id| {
                let Some(entry) = state.dlq.remove(id) else {
                    return false;
                };
                effects.dlq_delete.push(id.clone());
                // Derived from the entry, so a redrive repeated after a failed write yields
                // the same id and the stream drops the copy.
                let seq = entry.seq.to_string();
                let new_id = derived_ulid(entry.dead_lettered_at_ms, &[id, "redrive", &seq]);
                effects.enqueue.push(PollItem {
                    id: format!("msg_{new_id}"),
                    enqueued_at: erp_schemas::timestamp::format_millis(now),
                    enqueued_at_ms: now,
                    ..entry.item.clone()
                });
                true
            })
            .collect();
        Change {
            state,
            effects,
            result,
        }
    }

    /// DLQ entries in dead-letter order after `after` (a `seq`), at most `limit`; and whether
    /// more follow.
    pub fn dlq_page(&self, after: Option<u64>, limit: usize) -> (Vec<Arc<PollDlqEntry>>, bool) {
        let mut entries: Vec<&Arc<PollDlqEntry>> = self
            .state
            .dlq
            .values()
            .filter(|e| after.is_none_or(|a| e.seq > a))
            .collect();
        entries.sort_by_key(|e| e.seq);
        let more = entries.len() > limit;
        (entries.into_iter().take(limit).cloned().collect(), more)
    }
}

fn dead_letter(
    state: &mut StreamState,
    effects: &mut Effects,
    head: &Entry,
    reason: String,
    now: i64,
) {
    let attempts = state.attempts.remove(&head.offset).unwrap_or(0);
    let entry = Arc::new(PollDlqEntry {
        item: (*head.item).clone(),
        seq: state.next_dlq_seq,
        dead_lettered_at_ms: now,
        delivery_attempts: attempts,
        reason: reason.clone(),
        expires_at_ms: now.saturating_add(i64::from(head.item.retention_days) * 24 * 3600 * 1000),
    });
    state.next_dlq_seq += 1;
    state.dlq.insert(head.item.id.clone(), Arc::clone(&entry));
    state.cursor = state.cursor.max(head.offset + 1);
    effects.dlq_put.push(entry);
    effects.spans.push(SpanSpec {
        item: Arc::clone(&head.item),
        level: Level::Error,
        code: "MSG_DEAD_LETTERED",
        message: format!("dead-lettered: {reason}"),
        detail: json!({"message_id": head.item.id, "delivery_attempts": attempts, "reason": reason}),
        discriminator: now.to_string(),
    });
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
