//! Replay of a time window (our extension; issue 14): re-publish the inbound events of an
//! integration received in a window, or in explicit offset ranges, into the pipeline again —
//! typically after a mapping fix — while everything keeps running.
//!
//! Always two steps. A **plan** (`POST /v1/integrations/{id}/replays/plan`) resolves the window
//! to offsets per partition of `erp.inbound.events` and counts the records and the selected
//! ones; a **run** (`POST /v1/integrations/{id}/replays` with the plan's id) re-publishes exactly
//! those ranges, in the background, with progress (`GET …/replays/{taskId}`) and cancellation
//! (`DELETE …/replays/{taskId}`). Each re-published event gets a new event id, `replay_of` the
//! original, and the deduplication id `replay/<plan id>/<original event id>`: the processor
//! drops a second copy of the same plan's event (a run repeated after a crash), never the
//! replay itself. Start and end are audited as spans (`REPLAY_STARTED`, `REPLAY_FINISHED`, …)
//! with the task id as correlation id.
//!
//! Plans expire after 15 minutes; tasks live in the API process that runs them (a restart ends
//! a running replay: its spans say how far it got; running the plan again is safe).

pub mod routes;
pub mod scan;
pub mod task;
pub mod window;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use self::scan::Selection;
use self::task::Progress;
use self::window::Range;

/// How long a plan can be run after it was made, in ms.
pub const PLAN_TTL_MS: i64 = 15 * 60 * 1000;

/// A replay plan: what a run would re-publish.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub plan_id: String,
    pub selection: Selection,
    pub ranges: Vec<Range>,
    /// Records in the ranges.
    pub records: u64,
    /// Records a run would re-publish.
    pub selected: u64,
    pub created_at: i64,
}

/// The plans and tasks of this API process, by (organisation, id).
#[derive(Default)]
pub struct Replays {
    plans: Mutex<HashMap<(String, String), Plan>>,
    tasks: Mutex<HashMap<(String, String), Arc<Progress>>>,
}

impl Replays {
    /// Keeps `plan` for a later run.
    pub fn keep_plan(&self, plan: Plan) {
        if let Ok(mut plans) = self.plans.lock() {
            let now = erp_schemas::timestamp::now_millis();
            plans.retain(|_, p| now - p.created_at < PLAN_TTL_MS);
            plans.insert((plan.selection.org_id.clone(), plan.plan_id.clone()), plan);
        }
    }

    /// The plan `plan_id` of `org_id`, while it has not expired.
    pub fn plan(&self, org_id: &str, plan_id: &str) -> Option<Plan> {
        let plans = self.plans.lock().ok()?;
        plans
            .get(&(org_id.to_owned(), plan_id.to_owned()))
            .filter(|p| erp_schemas::timestamp::now_millis() - p.created_at < PLAN_TTL_MS)
            .cloned()
    }

    /// Records a started task.
    pub fn add_task(&self, org_id: &str, progress: Arc<Progress>) {
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.insert((org_id.to_owned(), progress.task_id.clone()), progress);
        }
    }

    /// The task `task_id` of `org_id`.
    pub fn task(&self, org_id: &str, task_id: &str) -> Option<Arc<Progress>> {
        let tasks = self.tasks.lock().ok()?;
        tasks.get(&(org_id.to_owned(), task_id.to_owned())).cloned()
    }
}
