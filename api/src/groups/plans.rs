//! Reset plans: the dry run of a group reset, kept for 15 minutes and applied at most once.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Serialize;

use erp_schemas::timestamp::now_millis;

use super::kafka::{GroupClient, KafkaResult};
use super::{GroupSpec, Membership, Positions};

/// How long a plan can be applied after it was made, in ms.
pub const PLAN_TTL_MS: i64 = 15 * 60 * 1000;

/// Where a reset moves each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "to", rename_all = "snake_case")]
pub enum Target {
    /// The log start.
    Earliest,
    /// The log end: everything not yet consumed is skipped.
    Latest,
    /// The first record written at or after `timestamp` (ms).
    Timestamp { timestamp: i64 },
    /// This offset, clamped to the log.
    Offset { offset: i64 },
}

/// One partition's move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Move {
    pub topic: String,
    pub partition: i32,
    /// Where the group is now (`None`: nothing committed; it would start at the log start).
    pub current_offset: Option<i64>,
    pub target_offset: i64,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
}

impl Move {
    fn current_or_start(&self) -> i64 {
        self.current_offset.unwrap_or(self.log_start_offset)
    }
    /// Records the group would read again.
    pub fn reread(&self) -> i64 {
        (self.current_or_start() - self.target_offset).max(0)
    }
    /// Records the group would never read.
    pub fn skipped(&self) -> i64 {
        (self.target_offset - self.current_or_start()).max(0)
    }
}

/// A dry run: what applying it would change.
#[derive(Debug, Clone, Serialize)]
pub struct ResetPlan {
    pub plan_id: String,
    pub group_id: String,
    pub role: &'static str,
    #[serde(flatten)]
    pub target: Target,
    pub positions: Positions,
    pub partitions: Vec<Move>,
    /// The broker's view of the members when planned (`None`: it cannot describe groups).
    pub membership: Option<Membership>,
    #[serde(skip)]
    pub created_at: i64,
}

impl ResetPlan {
    /// Records read again over all partitions.
    pub fn reread(&self) -> i64 {
        self.partitions.iter().map(Move::reread).sum()
    }
    /// Records skipped over all partitions.
    pub fn skipped(&self) -> i64 {
        self.partitions.iter().map(Move::skipped).sum()
    }
}

/// Plans the reset of `spec` to `target`, for `topics` and `partitions` when given (else all).
pub fn plan(
    client: &GroupClient,
    spec: &GroupSpec,
    target: Target,
    topics: Option<&[String]>,
    partitions: Option<&[i32]>,
) -> KafkaResult<ResetPlan> {
    let mut moves = Vec::new();
    for topic in &spec.topics {
        if topics.is_some_and(|only| !only.contains(topic)) {
            continue;
        }
        let marks: Vec<(i32, i64, i64)> = client
            .watermarks(topic)?
            .into_iter()
            .filter(|(p, _, _)| partitions.is_none_or(|only| only.contains(p)))
            .collect();
        let keys: Vec<(String, i32)> = marks.iter().map(|(p, _, _)| (topic.clone(), *p)).collect();
        let committed = client.committed(&keys)?;
        for ((partition, low, high), current) in marks.into_iter().zip(committed) {
            let target_offset = match target {
                Target::Earliest => low,
                Target::Latest => high,
                Target::Offset { offset } => offset.clamp(low, high),
                Target::Timestamp { timestamp } => {
                    client.offset_for_time(topic, partition, timestamp, (low, high))?
                }
            };
            moves.push(Move {
                topic: topic.clone(),
                partition,
                current_offset: current,
                target_offset,
                log_start_offset: low,
                log_end_offset: high,
            });
        }
    }
    Ok(ResetPlan {
        plan_id: erp_schemas::ids::new_event_id(),
        group_id: spec.group_id.clone(),
        role: spec.role,
        target,
        positions: spec.positions.clone(),
        partitions: moves,
        membership: client.membership(&spec.group_id),
        created_at: now_millis(),
    })
}

/// The plans of this API process, by id.
#[derive(Default)]
pub struct ResetPlans {
    plans: Mutex<HashMap<String, ResetPlan>>,
}

impl ResetPlans {
    /// Keeps `plan` for a later apply (and forgets expired ones).
    pub fn keep(&self, plan: ResetPlan) {
        if let Ok(mut plans) = self.plans.lock() {
            let now = now_millis();
            plans.retain(|_, p| now - p.created_at < PLAN_TTL_MS);
            plans.insert(plan.plan_id.clone(), plan);
        }
    }

    /// Takes the plan of `plan_id` if it has not expired: a plan is applied at most once
    /// (a refused one is put back with [`Self::keep`]).
    pub fn take(&self, plan_id: &str) -> Option<ResetPlan> {
        let plan = self.plans.lock().ok()?.remove(plan_id)?;
        (now_millis() - plan.created_at < PLAN_TTL_MS).then_some(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moved(current: Option<i64>, target: i64) -> Move {
        Move {
            topic: "t".into(),
            partition: 0,
            current_offset: current,
            target_offset: target,
            log_start_offset: 2,
            log_end_offset: 10,
        }
    }

    #[test]
    fn a_move_counts_what_is_read_again_or_skipped() {
        assert_eq!(
            (moved(Some(8), 2).reread(), moved(Some(8), 2).skipped()),
            (6, 0)
        );
        assert_eq!(
            (moved(Some(4), 10).reread(), moved(Some(4), 10).skipped()),
            (0, 6)
        );
        // Nothing committed: the group would start at the log start.
        assert_eq!(moved(None, 10).skipped(), 8);
    }

    #[test]
    fn a_plan_is_applied_once_and_expires() {
        let plans = ResetPlans::default();
        let plan = ResetPlan {
            plan_id: "p1".into(),
            group_id: "g".into(),
            role: "dispatcher",
            target: Target::Latest,
            positions: Positions::GroupCommit,
            partitions: vec![],
            membership: None,
            created_at: now_millis(),
        };
        plans.keep(plan.clone());
        assert!(plans.take("p1").is_some());
        assert!(plans.take("p1").is_none());
        plans.keep(ResetPlan {
            created_at: now_millis() - PLAN_TTL_MS - 1,
            ..plan
        });
        assert!(plans.take("p1").is_none());
    }
}
