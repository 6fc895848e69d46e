//! The plan of installing a blueprint into an organisation: for every object of the blueprint,
//! `create`, `update` (naming the changed fields), `unchanged` or `conflict` (with the reason),
//! the environment values the organisation lacks and the endpoints whose credentials must be
//! entered again. Computing the plan also builds the configuration changes that apply it, so
//! what `apply` writes is exactly what `plan` showed.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use sha2::{Digest, Sha256};

use erp_runtime::ConfigState;
use erp_schemas::config::{AppMapping, ConfigChange, DocumentationPage, GENERAL_PAGE, Integration};

use super::entries::Builder;
pub use super::entries::{Action, CredentialsRequired, DisabledEndpoint, PlanEntry};
use super::export::declarations;
use super::format::{Blueprint, EnvDeclaration};
use erp_http::ApiError;

/// The answer of `POST /v1/blueprints/plan` (and the body of `apply`'s).
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub objects: Vec<PlanEntry>,
    pub missing_environment: Vec<EnvDeclaration>,
    pub credentials_required: Vec<CredentialsRequired>,
    pub disabled_endpoints: Vec<DisabledEndpoint>,
    /// Counts by action.
    pub summary: BTreeMap<&'static str, usize>,
    /// SHA-256 of everything above: `apply` with it refuses to write when the organisation
    /// changed since the plan was made (`BLUEPRINT_PLAN_STALE`).
    pub fingerprint: String,
}

/// A plan and the changes that carry it out (in the order they are applied), with the index
/// into `objects` and the new id of every object to be created.
pub struct Computed {
    pub plan: Plan,
    pub changes: Vec<ConfigChange>,
    pub created: Vec<(usize, String)>,
}

impl Computed {
    pub fn conflicts(&self) -> Vec<&PlanEntry> {
        self.plan
            .objects
            .iter()
            .filter(|e| e.action == Action::Conflict)
            .collect()
    }
}

/// The plan of installing `blueprint` into organisation `org_id` as `actor`.
pub fn compute(
    config: &ConfigState,
    org_id: &str,
    actor: &str,
    blueprint: &Blueprint,
) -> Result<Computed, ApiError> {
    let mut b = Builder {
        config,
        org_id,
        actor,
        now: erp_schemas::timestamp::now_rfc3339(),
        objects: Vec::new(),
        changes: Vec::new(),
        created: Vec::new(),
        missing_env: BTreeSet::new(),
        credentials: Vec::new(),
        disabled: Vec::new(),
    };
    // Declared keys, and any the blueprint references without declaring them (required).
    let mut declared: BTreeMap<String, EnvDeclaration> = declarations(blueprint)
        .into_iter()
        .map(|name| {
            let declaration = EnvDeclaration {
                name: name.clone(),
                kind: erp_schemas::config::EnvValueType::String,
                required: true,
            };
            (name, declaration)
        })
        .collect();
    for declaration in &blueprint.environment {
        declared.insert(declaration.name.clone(), declaration.clone());
    }
    let missing_environment: Vec<EnvDeclaration> = declared
        .into_values()
        .filter(|d| d.required && config.env_entry(org_id, &d.name).is_none())
        .collect();
    b.missing_env = missing_environment.iter().map(|d| d.name.clone()).collect();

    let integration = integration(&mut b, blueprint);
    let webhook_ids = super::objects::webhooks(&mut b, blueprint)?;
    if let Some((integration_id, existed)) = integration {
        let slugs =
            super::objects::use_cases(&mut b, blueprint, &integration_id, existed, &webhook_ids)?;
        documentation(&mut b, blueprint, &integration_id, existed, &slugs);
        app_mappings(&mut b, blueprint, &integration_id);
    }

    let mut summary = BTreeMap::new();
    for entry in &b.objects {
        let name = match entry.action {
            Action::Create => "create",
            Action::Update => "update",
            Action::Unchanged => "unchanged",
            Action::Conflict => "conflict",
        };
        *summary.entry(name).or_insert(0) += 1;
    }
    let mut plan = Plan {
        objects: b.objects,
        missing_environment,
        credentials_required: b.credentials,
        disabled_endpoints: b.disabled,
        summary,
        fingerprint: String::new(),
    };
    let text = serde_json::to_string(&plan)
        .map_err(|e| ApiError::internal("ENCODING_FAILED", e.to_string()))?;
    plan.fingerprint = Sha256::digest(text.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    Ok(Computed {
        plan,
        changes: b.changes,
        created: b.created,
    })
}

/// The integration, found by name: its target id and whether it exists already; `None` when
/// the name is ambiguous (then nothing under it can be planned).
fn integration(b: &mut Builder<'_>, blueprint: &Blueprint) -> Option<(String, bool)> {
    let wanted = &blueprint.integration;
    let candidates: Vec<&Integration> = b
        .config
        .integrations(b.org_id)
        .into_iter()
        .filter(|i| i.name == wanted.name)
        .collect();
    match candidates.as_slice() {
        [] => {
            let id = uuid::Uuid::new_v4().to_string();
            let integration = Integration {
                id: id.clone(),
                org_id: b.org_id.to_owned(),
                name: wanted.name.clone(),
                description: wanted.description.clone(),
                extra: wanted.extra.clone(),
                created_at: b.now.clone(),
                updated_at: b.now.clone(),
            };
            b.push(
                PlanEntry::new("integration", &wanted.name, Action::Create),
                Some(ConfigChange::IntegrationUpserted { integration }),
                Some(id.clone()),
            );
            Some((id, false))
        }
        [current] => {
            let mut portable = current.extra.clone();
            let tokens = portable.remove("access_token_ids");
            let mut changes = Vec::new();
            if current.description != wanted.description {
                changes.push("description".to_owned());
            }
            let keys: BTreeSet<&String> = portable.keys().chain(wanted.extra.keys()).collect();
            for key in keys {
                if portable.get(key) != wanted.extra.get(key) {
                    changes.push(key.clone());
                }
            }
            let mut extra = wanted.extra.clone();
            if let Some(tokens) = tokens {
                extra.insert("access_token_ids".into(), tokens);
            }
            let updated = Integration {
                description: wanted.description.clone(),
                extra,
                updated_at: b.now.clone(),
                ..(*current).clone()
            };
            let id = current.id.clone();
            b.push(
                PlanEntry::compared("integration", &wanted.name, &id, changes),
                Some(ConfigChange::IntegrationUpserted {
                    integration: updated,
                }),
                None,
            );
            Some((id, true))
        }
        several => {
            b.push(
                PlanEntry::conflict(
                    "integration",
                    &wanted.name,
                    format!(
                        "{} integrations of this organisation are named {:?}; rename all but one",
                        several.len(),
                        wanted.name
                    ),
                ),
                None,
                None,
            );
            None
        }
    }
}

/// Documentation pages: `general`, or the page of a use case (by slug → target id).
fn documentation(
    b: &mut Builder<'_>,
    blueprint: &Blueprint,
    integration_id: &str,
    existed: bool,
    slugs: &BTreeMap<String, String>,
) {
    for page in &blueprint.documentation {
        let (page_id, scope, use_case_id) = if page.page == GENERAL_PAGE {
            (GENERAL_PAGE.to_owned(), "integration", None)
        } else {
            match slugs.get(&page.page) {
                Some(id) => (id.clone(), "use_case", Some(id.clone())),
                // Its use case is in conflict: so is the page.
                None => {
                    b.push(
                        PlanEntry::conflict(
                            "documentation",
                            &page.page,
                            format!("the use case {:?} it documents is in conflict", page.page),
                        ),
                        None,
                        None,
                    );
                    continue;
                }
            }
        };
        let current = existed
            .then(|| {
                b.config
                    .documentation_page(b.org_id, integration_id, &page_id)
            })
            .flatten();
        let desired = DocumentationPage {
            id: page_id.clone(),
            integration_id: integration_id.to_owned(),
            scope: scope.to_owned(),
            use_case_id,
            title: page.title.clone(),
            content: page.content.clone(),
            created_at: current.map_or_else(|| b.now.clone(), |p| p.created_at.clone()),
            created_by: current.map_or_else(|| Some(b.actor.to_owned()), |p| p.created_by.clone()),
            updated_at: b.now.clone(),
            updated_by: Some(b.actor.to_owned()),
        };
        let entry = match current {
            None => PlanEntry::new("documentation", &page.page, Action::Create),
            Some(current) => {
                let mut changes = Vec::new();
                if current.title != page.title {
                    changes.push("title".to_owned());
                }
                if current.content != page.content {
                    changes.push("content".to_owned());
                }
                PlanEntry::compared("documentation", &page.page, &page_id, changes)
            }
        };
        b.push(
            entry,
            Some(ConfigChange::DocumentationPageUpserted { page: desired }),
            None,
        );
    }
}

/// App/component pairs: a pair the organisation routes to another integration is a conflict.
fn app_mappings(b: &mut Builder<'_>, blueprint: &Blueprint, integration_id: &str) {
    for pair in &blueprint.app_mappings {
        let reference = format!("{}/{}", pair.app_id, pair.component_id);
        match b
            .config
            .app_mapping(b.org_id, &pair.app_id, &pair.component_id)
        {
            Some(current) if current.integration_id == integration_id => {
                b.push(
                    PlanEntry::compared("app_mapping", reference, integration_id, Vec::new()),
                    None,
                    None,
                );
            }
            Some(_) => b.push(
                PlanEntry::conflict(
                    "app_mapping",
                    reference,
                    "this app/component pair routes to another integration of the organisation"
                        .to_owned(),
                ),
                None,
                None,
            ),
            None => {
                let mapping = AppMapping {
                    app_id: pair.app_id.clone(),
                    component_id: pair.component_id.clone(),
                    integration_id: integration_id.to_owned(),
                    created_at: b.now.clone(),
                    updated_at: b.now.clone(),
                };
                b.push(
                    PlanEntry::new("app_mapping", reference, Action::Create),
                    Some(ConfigChange::AppMappingSet { mapping }),
                    None,
                );
            }
        }
    }
}
