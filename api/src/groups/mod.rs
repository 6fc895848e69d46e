//! Consumer groups of the deployment (our extension; issue 14): their lag per partition and
//! a reset to the earliest or latest offset, a timestamp or an offset — for the processor,
//! the dispatcher and each of its retry tiers.
//!
//! A reset is always two steps, like a replay: a **plan** (dry run: per partition the current
//! position, the target and how many records would be read again or skipped) and an **apply**
//! of that plan, refused while the group has active members. Where the broker cannot tell
//! (the embedded broker cannot describe groups, docs/embedded-broker.md), the apply needs the
//! operator's `assume_stopped: true`, and it is still refused if the group committed since the
//! plan: a running member would move on from where it is and undo the reset.
//!
//! The processor resumes from the positions its state store holds, not from the group's
//! commit (which is advisory, for lag): its reset is written as *reset markers* to its
//! changelog, which the processor applies when it next gets the partition, and committed to
//! the group as well so that the lag shown agrees.

pub mod kafka;
pub mod plans;
pub mod routes;

use serde::Serialize;

use erp_schemas::topics::{RETRY_TIERS, Topics};

/// The processor's consumer group.
pub const PROCESSOR_GROUP: &str = "erp-toolkit-processor";
/// The dispatcher's consumer group (its retry tiers are `<this>.retry.<n>`).
pub const DISPATCHER_GROUP: &str = "erp-toolkit-dispatcher";

/// Where a group's members resume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Positions {
    /// The group's committed offsets.
    GroupCommit,
    /// The position markers on this changelog topic (partition = input partition).
    Changelog(String),
}

/// One consumer group of the deployment.
#[derive(Debug, Clone, Serialize)]
pub struct GroupSpec {
    pub group_id: String,
    /// The role whose members form the group.
    pub role: &'static str,
    /// The topics it consumes.
    pub topics: Vec<String>,
    pub positions: Positions,
}

/// The deployment's consumer groups.
pub fn catalogue(topics: &Topics) -> Vec<GroupSpec> {
    let mut groups = vec![
        GroupSpec {
            group_id: PROCESSOR_GROUP.into(),
            role: "processor",
            topics: vec![topics.inbound_events(), topics.platform_events()],
            positions: Positions::Changelog(topics.processor_state()),
        },
        GroupSpec {
            group_id: DISPATCHER_GROUP.into(),
            role: "dispatcher",
            topics: vec![topics.core_events()],
            positions: Positions::GroupCommit,
        },
    ];
    groups.extend((1..=RETRY_TIERS).map(|tier| GroupSpec {
        group_id: format!("{DISPATCHER_GROUP}.retry.{tier}"),
        role: "dispatcher",
        topics: vec![topics.retry(tier)],
        positions: Positions::GroupCommit,
    }));
    groups
}

/// The group of `group_id`, if the deployment has it.
pub fn find(topics: &Topics, group_id: &str) -> Option<GroupSpec> {
    catalogue(topics)
        .into_iter()
        .find(|g| g.group_id == group_id)
}

/// What the broker says about a group's members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Membership {
    /// Kafka's group state (`Empty`, `Stable`, `PreparingRebalance`, …).
    pub state: String,
    pub members: usize,
}

impl Membership {
    /// Whether a member may be consuming.
    pub fn active(&self) -> bool {
        self.members > 0 || !matches!(self.state.as_str(), "Empty" | "Dead")
    }
}

/// The lag of one partition. `lag_seconds` is `None` when the oldest unconsumed record could
/// not be read: unknown, never 0.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// `None`: the group has committed nothing here (it starts at the log start).
    pub committed_offset: Option<i64>,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    pub lag_records: i64,
    pub lag_seconds: Option<f64>,
}

/// The sum of the records behind and the oldest age; `None` when any partition's is unknown.
pub fn totals(partitions: &[PartitionLag]) -> (i64, Option<f64>) {
    let records = partitions.iter().map(|p| p.lag_records).sum();
    let seconds = partitions
        .iter()
        .map(|p| p.lag_seconds)
        .try_fold(0.0_f64, |max, s| s.map(|s| max.max(s)));
    (records, seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_names_every_stage_and_tier() {
        let groups = catalogue(&Topics::default());
        assert_eq!(groups.len(), 2 + RETRY_TIERS as usize);
        let processor = find(&Topics::default(), PROCESSOR_GROUP).expect("processor");
        assert_eq!(
            processor.positions,
            Positions::Changelog("erp.processor.state".into())
        );
        let tier = find(&Topics::default(), "erp-toolkit-dispatcher.retry.3").expect("tier");
        assert_eq!(tier.topics, vec!["erp.core.retry.3".to_owned()]);
        assert!(find(&Topics::default(), "someone-else").is_none());
    }

    #[test]
    fn an_unknown_age_makes_the_group_age_unknown() {
        let lag = |s: Option<f64>| PartitionLag {
            topic: "t".into(),
            partition: 0,
            committed_offset: Some(1),
            log_start_offset: 0,
            log_end_offset: 3,
            lag_records: 2,
            lag_seconds: s,
        };
        assert_eq!(totals(&[lag(Some(1.0)), lag(Some(4.0))]), (4, Some(4.0)));
        assert_eq!(totals(&[lag(Some(1.0)), lag(None)]), (4, None));
        let empty = Membership {
            state: "Empty".into(),
            members: 0,
        };
        assert!(!empty.active());
        let stable = Membership {
            state: "Stable".into(),
            members: 1,
        };
        assert!(stable.active());
    }
}
