//! Revisions of configuration objects: what a conditional write (`ConfigRecord.base_revision`)
//! is compared with, and which records the fold skipped because another writer came first.

use super::*;

impl ConfigState {
    /// The current revision of the object a change is about (`-1`: it does not exist), for
    /// the objects that have one; `None` for the others.
    pub fn revision_of(&self, org_id: &str, change: &ConfigChange) -> Option<i64> {
        let org = org_id.to_owned();
        match change {
            ConfigChange::WebhookUpserted { webhook, .. } => Some(
                self.webhooks
                    .get(&(org, webhook.id.clone()))
                    .map_or(-1, |e| e.revision),
            ),
            ConfigChange::WebhookDeleted { webhook_id } => Some(
                self.webhooks
                    .get(&(org, webhook_id.clone()))
                    .map_or(-1, |e| e.revision),
            ),
            ConfigChange::UseCaseUpserted { use_case } => Some(
                self.use_cases
                    .get(&(org, use_case.id.clone()))
                    .map_or(-1, |e| e.revision),
            ),
            ConfigChange::UseCaseDeleted { use_case_id, .. } => Some(
                self.use_cases
                    .get(&(org, use_case_id.clone()))
                    .map_or(-1, |e| e.revision),
            ),
            ConfigChange::EnvironmentValueSet { .. }
            | ConfigChange::EnvironmentValueDeleted { .. } => {
                Some(self.environment_revision(org_id))
            }
            _ => None,
        }
    }

    /// Whether the record at `offset` was skipped because another writer came first (among
    /// the last [`REJECTED_KEPT`] such records).
    pub fn was_rejected(&self, offset: i64) -> bool {
        self.rejected.contains(&offset)
    }
}
