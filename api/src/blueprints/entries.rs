//! The entries of a plan and what the object computations share while building one (kept
//! apart from `plan` so the computations of `objects` and `plan` depend on it, not on each
//! other).

use std::collections::BTreeSet;

use serde::Serialize;

use erp_runtime::ConfigState;
use erp_schemas::config::ConfigChange;

/// What installing does to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Create,
    Update,
    Unchanged,
    Conflict,
}

/// One object of the plan.
#[derive(Debug, Clone, Serialize)]
pub struct PlanEntry {
    /// `integration`, `webhook`, `use_case`, `documentation`, `app_mapping`.
    pub kind: &'static str,
    /// The object's portable name: the integration's name, a webhook key, a use-case slug, a
    /// page (`general` or a use-case slug), `<app_id>/<component_id>`.
    #[serde(rename = "ref")]
    pub reference: String,
    pub action: Action,
    /// Update: the fields that change.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<String>,
    /// Conflict: why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The target's id of the object (existing objects; created ones after apply).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// A webhook endpoint that is installed (or left) disabled although the blueprint enables
    /// it; `disabled_endpoints` says why.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub installed_disabled: bool,
}

impl PlanEntry {
    pub(super) fn new(kind: &'static str, reference: impl Into<String>, action: Action) -> Self {
        Self {
            kind,
            reference: reference.into(),
            action,
            changes: Vec::new(),
            reason: None,
            id: None,
            installed_disabled: false,
        }
    }

    pub(super) fn conflict(
        kind: &'static str,
        reference: impl Into<String>,
        reason: String,
    ) -> Self {
        Self {
            reason: Some(reason),
            ..Self::new(kind, reference, Action::Conflict)
        }
    }

    /// Update when `changes` holds anything, else unchanged.
    pub(super) fn compared(
        kind: &'static str,
        reference: impl Into<String>,
        id: &str,
        changes: Vec<String>,
    ) -> Self {
        let action = if changes.is_empty() {
            Action::Unchanged
        } else {
            Action::Update
        };
        Self {
            changes,
            id: Some(id.to_owned()),
            ..Self::new(kind, reference, action)
        }
    }
}

/// An endpoint installed disabled, and why.
#[derive(Debug, Clone, Serialize)]
pub struct DisabledEndpoint {
    pub webhook: String,
    pub reasons: Vec<String>,
}

/// An endpoint whose secrets were not exported and that the target does not hold.
#[derive(Debug, Clone, Serialize)]
pub struct CredentialsRequired {
    pub webhook: String,
    pub fields: Vec<String>,
}

/// What the object computations share: the target, the time, who installs, the results.
pub(super) struct Builder<'a> {
    pub config: &'a ConfigState,
    pub org_id: &'a str,
    pub actor: &'a str,
    pub now: String,
    pub objects: Vec<PlanEntry>,
    pub changes: Vec<ConfigChange>,
    pub created: Vec<(usize, String)>,
    /// Environment keys the organisation lacks.
    pub missing_env: BTreeSet<String>,
    pub credentials: Vec<CredentialsRequired>,
    pub disabled: Vec<DisabledEndpoint>,
}

impl Builder<'_> {
    /// Adds an entry and, for create and update, its change (`new_id` for a create).
    pub(super) fn push(
        &mut self,
        entry: PlanEntry,
        change: Option<ConfigChange>,
        new_id: Option<String>,
    ) {
        if matches!(entry.action, Action::Create | Action::Update)
            && let Some(change) = change
        {
            self.changes.push(change);
        }
        if let Some(id) = new_id.filter(|_| entry.action == Action::Create) {
            self.created.push((self.objects.len(), id));
        }
        self.objects.push(entry);
    }
}
