//! Lookups of the fold that serve one feature each (kept here so the fold stays under 600
//! lines).

use super::*;

impl ConfigState {
    /// The app/component pairs of the organisation that route to `integration_id` (what a
    /// blueprint exports), ordered by app then component id.
    pub fn app_mappings_of(&self, org_id: &str, integration_id: &str) -> Vec<&AppMapping> {
        self.app_mappings
            .iter()
            .filter(|((org, _, _), mapping)| {
                org == org_id && mapping.integration_id == integration_id
            })
            .map(|(_, mapping)| mapping)
            .collect()
    }
}
