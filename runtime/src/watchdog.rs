//! The consumer watchdog: a group consumer that holds no partitions while its topics have work
//! waiting and nobody makes progress on it, for longer than the session timeout plus a margin,
//! is stuck in group coordination (the embedded broker's defect B left one so for six minutes
//! with `/readyz` saying ready). It reports itself not ready, naming the group, and its role
//! stops with an error so that the supervisor exits the process and Kubernetes (or the operator)
//! starts it afresh.
//!
//! Why exit rather than recreate the consumer in place: a fresh process gets fresh librdkafka
//! state, a new member id and, for `standalone`, the group-state reset at start; recreating one
//! consumer in place would have to rebuild its rebalance context (state restores, lanes) while
//! the rest of the role keeps running around it, which is what the supervisor already does well
//! by restarting all of it, with nothing uncommitted lost.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::health::ReadyFlag;
use crate::kafka::KafkaSettings;

/// Added to the session timeout: a rebalance may take a little longer than one session.
pub const MARGIN: Duration = Duration::from_secs(30);

/// The session timeout the group consumers use (`session.timeout.ms` in [`KafkaSettings`]).
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(30);

/// How often the watchdog looks.
pub const LOOK_EVERY: Duration = Duration::from_secs(5);

/// How long a consumer may starve and how often the watchdog looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Starving longer than this is a stall.
    pub limit: Duration,
    /// Time between two looks.
    pub every: Duration,
}

impl Default for Timing {
    /// The session timeout plus [`MARGIN`], looked at every [`LOOK_EVERY`].
    fn default() -> Self {
        Self {
            limit: SESSION_TIMEOUT + MARGIN,
            every: LOOK_EVERY,
        }
    }
}

/// What the watchdog saw at one look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Look {
    /// The consumer holds at least one partition of its topics.
    pub assigned: bool,
    /// Some partition has records after the group's committed position.
    pub lag: bool,
    /// The group's committed positions moved since the previous look (another member works).
    pub progressed: bool,
}

/// The watchdog's judgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Working, idle with nothing to do, or another member is doing the work.
    Fine,
    /// Holding nothing while work waits, for this long (not yet past the limit).
    Starving(Duration),
    /// Holding nothing while work waits for longer than the limit: stuck.
    Stalled(Duration),
}

/// The pure decision, fed one look at a time.
#[derive(Debug, Clone)]
pub struct Watchdog {
    limit: Duration,
    starving_since: Option<Instant>,
}

impl Watchdog {
    /// A watchdog that calls a consumer stuck after `limit` of starving.
    pub fn new(limit: Duration) -> Self {
        Self {
            limit,
            starving_since: None,
        }
    }

    /// Judges a look taken at `now`.
    pub fn observe(&mut self, now: Instant, look: Look) -> Verdict {
        if look.assigned || !look.lag || look.progressed {
            self.starving_since = None;
            return Verdict::Fine;
        }
        let since = *self.starving_since.get_or_insert(now);
        let starving = now.saturating_duration_since(since);
        if starving > self.limit {
            Verdict::Stalled(starving)
        } else {
            Verdict::Starving(starving)
        }
    }

    /// Forgets a starving spell (the look could not be taken, e.g. the brokers are away: the
    /// broker watch reports that, and a consumer cannot be blamed for it).
    pub fn reset(&mut self) {
        self.starving_since = None;
    }
}

/// Watches the consumer of `group` on `topics`, every `timing.every`; `assigned` tells whether
/// it holds a partition of them (a local, non-blocking question). Returns, with the reason, once the consumer is
/// stalled (after reporting `flag` not ready with that reason); returns `None` at `shutdown`.
pub async fn watch(
    kafka: KafkaSettings,
    group: String,
    topics: Vec<String>,
    assigned: impl Fn() -> bool + Send + 'static,
    flag: ReadyFlag,
    timing: Timing,
    shutdown: CancellationToken,
) -> Option<String> {
    flag.set(true);
    let mut watchdog = Watchdog::new(timing.limit);
    let client: Option<std::sync::Arc<BaseConsumer>> = kafka
        .reader_config("erp-toolkit-watchdog")
        .set("group.id", &group)
        .create()
        .map(std::sync::Arc::new)
        .map_err(|error| warn!(%error, group, "cannot create the consumer watchdog's client"))
        .ok();
    let mut previous: Option<i64> = None;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return None,
            () = tokio::time::sleep(timing.every) => {}
        }
        let Some(client) = &client else { continue };
        if assigned() {
            watchdog.reset();
            previous = None;
            continue;
        }
        let asking = std::sync::Arc::clone(client);
        let wanted = topics.clone();
        let positions = tokio::task::spawn_blocking(move || positions(&asking, &wanted)).await;
        let Ok(Ok((lag, committed))) = positions else {
            watchdog.reset();
            continue;
        };
        let progressed = previous.is_some_and(|p| p != committed);
        previous = Some(committed);
        let look = Look {
            assigned: assigned(),
            lag,
            progressed,
        };
        if let Verdict::Stalled(starving) = watchdog.observe(Instant::now(), look) {
            let reason = format!(
                "consumer group {group}: no partitions of {} for {} s while it has records waiting",
                topics.join(", "),
                starving.as_secs()
            );
            flag.unready(reason.clone());
            return Some(reason);
        }
    }
}

/// Whether any partition of `topics` has records after the group's committed position, and the
/// sum of the committed positions (to see progress). Blocking.
fn positions(client: &BaseConsumer, topics: &[String]) -> rdkafka::error::KafkaResult<(bool, i64)> {
    let timeout = Duration::from_secs(5);
    let mut list = TopicPartitionList::new();
    let mut ranges = Vec::new();
    for topic in topics {
        let metadata = client.fetch_metadata(Some(topic), timeout)?;
        for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
            let (low, high) = client.fetch_watermarks(topic, partition.id(), timeout)?;
            list.add_partition(topic, partition.id());
            ranges.push(((topic.clone(), partition.id()), (low, high)));
        }
    }
    let committed = client.committed_offsets(list, timeout)?;
    let mut lag = false;
    let mut sum = 0i64;
    for ((topic, partition), (low, high)) in ranges {
        let position = match committed
            .find_partition(&topic, partition)
            .map(|e| e.offset())
        {
            Some(Offset::Offset(next)) => next,
            _ => low,
        };
        lag |= high > position;
        sum = sum.saturating_add(position);
    }
    Ok((lag, sum))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_secs(60);

    fn look(assigned: bool, lag: bool, progressed: bool) -> Look {
        Look {
            assigned,
            lag,
            progressed,
        }
    }

    #[test]
    fn holding_nothing_while_work_waits_is_a_stall_after_the_limit() {
        let start = Instant::now();
        let mut dog = Watchdog::new(LIMIT);
        let starved = look(false, true, false);
        assert_eq!(
            dog.observe(start, starved),
            Verdict::Starving(Duration::ZERO)
        );
        assert_eq!(
            dog.observe(start + LIMIT, starved),
            Verdict::Starving(LIMIT)
        );
        assert_eq!(
            dog.observe(start + LIMIT + Duration::from_secs(1), starved),
            Verdict::Stalled(LIMIT + Duration::from_secs(1))
        );
    }

    #[test]
    fn an_assignment_no_work_or_another_members_progress_is_fine_and_restarts_the_clock() {
        let start = Instant::now();
        let later = start + 2 * LIMIT;
        for fine in [
            look(true, true, false),
            look(false, false, false),
            look(false, true, true),
        ] {
            let mut dog = Watchdog::new(LIMIT);
            assert!(matches!(
                dog.observe(start, look(false, true, false)),
                Verdict::Starving(_)
            ));
            assert_eq!(
                dog.observe(start + LIMIT / 2, fine),
                Verdict::Fine,
                "{fine:?}"
            );
            assert_eq!(
                dog.observe(later, look(false, true, false)),
                Verdict::Starving(Duration::ZERO),
                "the clock starts again"
            );
        }
        let mut dog = Watchdog::new(LIMIT);
        dog.observe(start, look(false, true, false));
        dog.reset();
        assert_eq!(
            dog.observe(later, look(false, true, false)),
            Verdict::Starving(Duration::ZERO)
        );
    }
}
