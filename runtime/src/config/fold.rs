//! The pure fold of the configuration log: [`ConfigState`] and how one `erp.config` record
//! changes it. No Kafka here: the follower feeds records in, lookups read the result.

use std::collections::BTreeMap;

use crate::config::secrets::Unreadable;
use crate::environment::{EnvEntry, EnvError};
use crate::secrets::{Keyring, SecretsError};
use erp_schemas::config::{
    AccessToken, AppMapping, ConfigChange, ConfigRecord, DocumentationPage, GENERAL_PAGE,
    Integration, UseCase, WebhookEndpoint,
};

/// A use case with what the view knows about it beyond its API shape.
#[derive(Debug, Clone, PartialEq)]
pub struct UseCaseEntry {
    pub use_case: UseCase,
    pub org_id: String,
    /// The log offset of the change that produced this version: changes whenever the use case
    /// does, so caches of compiled mappings can key on it.
    pub revision: i64,
}

/// A webhook endpoint with its signing secret.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookEntry {
    pub webhook: WebhookEndpoint,
    pub org_id: String,
    pub signing_secret: String,
    /// Secrets of a rotation still in its grace period.
    pub previous_secrets: Vec<erp_schemas::config::PreviousSecret>,
    pub revision: i64,
    /// Why this process could not decrypt the endpoint's secrets (they are still sealed), if
    /// it could not: such an endpoint must not be used to sign or authenticate.
    pub unreadable: Option<SecretsError>,
}

impl WebhookEntry {
    /// The secrets to sign with at `now_ms`: the current one, then those of a rotation whose
    /// grace period has not ended.
    pub fn signing_secrets(&self, now_ms: i64) -> impl Iterator<Item = &str> {
        std::iter::once(self.signing_secret.as_str()).chain(
            self.previous_secrets
                .iter()
                .filter(move |p| p.valid_until > now_ms)
                .map(|p| p.secret.as_str()),
        )
    }
}

/// Where an inbound event goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Route<'a> {
    /// An enabled inbound use case matches.
    Matched(&'a UseCaseEntry),
    /// A use case matches but is disabled.
    Disabled(&'a UseCaseEntry),
    /// No inbound use case matches.
    NotFound,
}

/// A use case as it was before a change: an entry of its history.
#[derive(Debug, Clone, PartialEq)]
pub struct UseCaseVersion {
    pub use_case: UseCase,
    /// When it was replaced (the time of the change that replaced it).
    pub replaced_at: String,
    /// The log offset of the replacing change (unique per version).
    pub revision: i64,
}

/// The configuration at one position of the log.
#[derive(Debug, Clone, Default)]
pub struct ConfigState {
    // Identity is (organisation, id) everywhere: every map of client-visible objects is keyed
    // by the organisation of the record that wrote it first, so a record of one organisation
    // can never replace, move or delete another's object, whatever ids it carries (the API also
    // refuses client-supplied ids taken in any organisation, see `id_taken`).
    /// Integrations by (organisation, id).
    integrations: BTreeMap<(String, String), Integration>,
    /// Use cases by (organisation, id).
    use_cases: BTreeMap<(String, String), UseCaseEntry>,
    /// Webhook endpoints by (organisation, id).
    webhooks: BTreeMap<(String, String), WebhookEntry>,
    /// Earlier versions per (organisation, use case id), oldest first.
    history: BTreeMap<(String, String), Vec<UseCaseVersion>>,
    /// Live (not revoked) access tokens by id.
    tokens: BTreeMap<String, AccessToken>,
    /// Token id by token hash: every authenticated request looks a token up by its hash.
    token_hashes: BTreeMap<String, String>,
    /// Environment values by organisation, then key.
    environments: BTreeMap<String, BTreeMap<String, EnvEntry>>,
    /// The log offset of the last environment change per organisation.
    environment_revisions: BTreeMap<String, i64>,
    /// App/component mappings by (organisation, app id, component id).
    app_mappings: BTreeMap<(String, String, String), AppMapping>,
    /// Documentation pages by (organisation, integration id, page id).
    documentation: BTreeMap<(String, String, String), DocumentationPage>,
    /// Offsets of records skipped because their object moved on since their base revision.
    rejected: std::collections::BTreeSet<i64>,
}

/// How many skipped records [`ConfigState::was_rejected`] remembers: far more than writers
/// wait on at once.
pub const REJECTED_KEPT: usize = 1024;

impl ConfigState {
    /// Applies one record read at `offset`, unless it was based on a revision of its object
    /// that is no longer the current one (then it is skipped and [`Self::was_rejected`] says
    /// so): every reader folds the same log, so every reader skips the same records.
    pub fn apply(&mut self, record: ConfigRecord, offset: i64) {
        if let Some(base) = record.base_revision
            && self
                .revision_of(&record.org_id, &record.change)
                .is_some_and(|now| now != base)
        {
            if self.rejected.len() >= REJECTED_KEPT {
                self.rejected.pop_first();
            }
            self.rejected.insert(offset);
            return;
        }
        self.apply_change(&record.org_id, &record.at, record.change, offset);
    }

    /// Applies one record as read from the log at `offset`: its webhook secrets decrypted with
    /// `keyring`. Endpoints whose secrets do not decrypt are marked (see
    /// [`WebhookEntry::unreadable`]) and returned.
    pub fn apply_read(
        &mut self,
        mut record: ConfigRecord,
        offset: i64,
        keyring: Option<&Keyring>,
    ) -> Vec<Unreadable> {
        let unreadable = crate::config::secrets::reveal(&mut record, keyring);
        let record_org = record.org_id.clone();
        self.apply(record, offset);
        if self.was_rejected(offset) {
            // Skipped: the endpoints keep the secrets they had.
            return Vec::new();
        }
        for u in &unreadable {
            if let Some(entry) = self
                .webhooks
                .get_mut(&(record_org.clone(), u.webhook_id.clone()))
            {
                entry.unreadable = Some(u.error.clone());
            }
        }
        unreadable
    }

    fn apply_change(&mut self, org_id: &str, at: &str, change: ConfigChange, offset: i64) {
        let org_id = org_id.to_owned();
        match change {
            ConfigChange::Batch { changes } => {
                for change in changes {
                    self.apply_change(&org_id, at, change, offset);
                }
            }
            ConfigChange::IntegrationUpserted { integration } => {
                self.integrations
                    .insert((org_id, integration.id.clone()), integration);
            }
            ConfigChange::IntegrationDeleted { integration_id } => {
                self.integrations
                    .remove(&(org_id.clone(), integration_id.clone()));
                self.app_mappings.retain(|(org, _, _), mapping| {
                    *org != org_id || mapping.integration_id != integration_id
                });
                self.documentation.retain(|(org, integration, _), _| {
                    *org != org_id || *integration != integration_id
                });
                let history = &mut self.history;
                self.use_cases.retain(|key, entry| {
                    let keep = key.0 != org_id || entry.use_case.integration_id != integration_id;
                    if !keep {
                        history.remove(key);
                    }
                    keep
                });
            }
            ConfigChange::UseCaseUpserted { use_case } => {
                let key = (org_id.clone(), use_case.id.clone());
                let entry = UseCaseEntry {
                    use_case,
                    org_id,
                    revision: offset,
                };
                if let Some(previous) = self.use_cases.insert(key.clone(), entry) {
                    self.history.entry(key).or_default().push(UseCaseVersion {
                        use_case: previous.use_case,
                        replaced_at: at.to_owned(),
                        revision: offset,
                    });
                }
            }
            ConfigChange::UseCaseDeleted {
                integration_id,
                use_case_id,
            } => {
                let key = (org_id.clone(), use_case_id.clone());
                // Only the use case of that integration: a record naming another integration's
                // id removes nothing.
                if self
                    .use_cases
                    .get(&key)
                    .is_some_and(|e| e.use_case.integration_id == integration_id)
                {
                    self.use_cases.remove(&key);
                    self.history.remove(&key);
                }
                // A use-case page documents nothing once its use case is gone (epilot: "for use
                // case pages the use case must exist").
                self.documentation
                    .remove(&(org_id, integration_id, use_case_id));
            }
            ConfigChange::AppMappingSet { mapping } => {
                self.app_mappings.insert(
                    (org_id, mapping.app_id.clone(), mapping.component_id.clone()),
                    mapping,
                );
            }
            ConfigChange::AppMappingDeleted {
                app_id,
                component_id,
            } => {
                self.app_mappings.remove(&(org_id, app_id, component_id));
            }
            ConfigChange::DocumentationPageUpserted { page } => {
                self.documentation
                    .insert((org_id, page.integration_id.clone(), page.id.clone()), page);
            }
            ConfigChange::DocumentationPageDeleted {
                integration_id,
                page_id,
            } => {
                self.documentation
                    .remove(&(org_id, integration_id, page_id));
            }
            ConfigChange::WebhookUpserted {
                webhook,
                signing_secret,
                previous_secrets,
            } => {
                let entry = WebhookEntry {
                    webhook,
                    org_id,
                    signing_secret,
                    previous_secrets,
                    revision: offset,
                    unreadable: None,
                };
                self.webhooks
                    .insert((entry.org_id.clone(), entry.webhook.id.clone()), entry);
            }
            ConfigChange::WebhookDeleted { webhook_id } => {
                self.webhooks.remove(&(org_id, webhook_id));
            }
            ConfigChange::TokenCreated { token } => {
                // A second record for the same id (not produced by the API) replaces the
                // first: its old value must stop working. Another organisation's record never
                // takes over a token.
                if self
                    .tokens
                    .get(&token.id)
                    .is_some_and(|t| t.org_id != org_id)
                {
                    return;
                }
                if let Some(replaced) = self.tokens.get(&token.id) {
                    self.token_hashes.remove(&replaced.hash);
                }
                self.token_hashes
                    .insert(token.hash.clone(), token.id.clone());
                self.tokens.insert(token.id.clone(), token);
            }
            ConfigChange::TokenRevoked { token_id } => {
                // Token ids are server-assigned; still, only a record of the token's own
                // organisation revokes it.
                if self
                    .tokens
                    .get(&token_id)
                    .is_some_and(|t| t.org_id == org_id)
                    && let Some(token) = self.tokens.remove(&token_id)
                {
                    self.token_hashes.remove(&token.hash);
                }
            }
            ConfigChange::EnvironmentValueSet {
                key,
                value_type,
                value,
                updated_at,
            } => {
                self.environments.entry(org_id.clone()).or_default().insert(
                    key,
                    EnvEntry {
                        value_type,
                        stored: value,
                        updated_at,
                    },
                );
                self.environment_revisions.insert(org_id, offset);
            }
            ConfigChange::EnvironmentValueDeleted { key } => {
                if let Some(values) = self.environments.get_mut(&org_id) {
                    values.remove(&key);
                }
                self.environment_revisions.insert(org_id, offset);
            }
        }
    }

    /// The integration an app/component pair of the organisation is mapped to.
    pub fn app_mapping(
        &self,
        org_id: &str,
        app_id: &str,
        component_id: &str,
    ) -> Option<&AppMapping> {
        self.app_mappings.get(&(
            org_id.to_owned(),
            app_id.to_owned(),
            component_id.to_owned(),
        ))
    }

    /// The documentation pages of an integration of the organisation: the general page first,
    /// then use-case pages, oldest first.
    pub fn documentation_pages(
        &self,
        org_id: &str,
        integration_id: &str,
    ) -> Vec<&DocumentationPage> {
        if self.integration(org_id, integration_id).is_none() {
            return Vec::new();
        }
        let mut pages: Vec<_> = self
            .documentation
            .iter()
            .filter(|((org, integration, _), _)| org == org_id && integration == integration_id)
            .map(|(_, page)| page)
            .collect();
        pages.sort_by(|a, b| {
            (a.id != GENERAL_PAGE, &a.created_at, &a.id).cmp(&(
                b.id != GENERAL_PAGE,
                &b.created_at,
                &b.id,
            ))
        });
        pages
    }

    /// One documentation page of an integration of the organisation.
    pub fn documentation_page(
        &self,
        org_id: &str,
        integration_id: &str,
        page_id: &str,
    ) -> Option<&DocumentationPage> {
        self.integration(org_id, integration_id)?;
        self.documentation.get(&(
            org_id.to_owned(),
            integration_id.to_owned(),
            page_id.to_owned(),
        ))
    }

    /// The organisation's environment values, by key.
    pub fn environment(&self, org_id: &str) -> Option<&BTreeMap<String, EnvEntry>> {
        self.environments.get(org_id)
    }

    /// Every stored environment value, as (organisation, key, entry).
    pub fn all_environment_values(&self) -> impl Iterator<Item = (&str, &str, &EnvEntry)> {
        self.environments.iter().flat_map(|(org, values)| {
            values
                .iter()
                .map(move |(key, entry)| (org.as_str(), key.as_str(), entry))
        })
    }

    /// The log offset of the organisation's last environment change (-1: none).
    pub fn environment_revision(&self, org_id: &str) -> i64 {
        self.environment_revisions
            .get(org_id)
            .copied()
            .unwrap_or(-1)
    }

    /// The organisation's variable `key` as stored (a secret's value encrypted).
    pub fn env_entry(&self, org_id: &str, key: &str) -> Option<&EnvEntry> {
        self.environments
            .get(org_id)
            .and_then(|values| values.get(key))
    }

    /// The clear value of the organisation's variable `key` (secrets decrypted with `keyring`).
    pub fn env_value(
        &self,
        org_id: &str,
        key: &str,
        keyring: Option<&Keyring>,
    ) -> Result<String, EnvError> {
        let entry = self
            .environments
            .get(org_id)
            .and_then(|values| values.get(key))
            .ok_or_else(|| EnvError::Unknown(key.to_owned()))?;
        crate::environment::reveal(org_id, key, entry, keyring)
    }

    /// Checks that `keyring` holds the key of every encrypted value, so a deployment started
    /// with the wrong key file fails at start, naming the key, rather than on each delivery.
    pub fn check_secrets(&self, keyring: Option<&Keyring>) -> Result<(), SecretsError> {
        if let Some(error) = self.webhooks.values().find_map(|w| w.unreadable.clone()) {
            return Err(error);
        }
        for (_, _, entry) in self.all_environment_values() {
            if entry.value_type != erp_schemas::config::EnvValueType::SecretString {
                continue;
            }
            match keyring {
                Some(keyring) => keyring.check(&entry.stored)?,
                None => {
                    return Err(SecretsError::KeyFile {
                        path: "(none)".into(),
                        message: "the configuration holds encrypted secrets; give this process \
                                  the deployment's --secrets-key-file"
                            .into(),
                    });
                }
            }
        }
        Ok(())
    }

    /// The live token whose value hashes to `hash`.
    pub fn token_by_hash(&self, hash: &str) -> Option<&AccessToken> {
        self.token_hashes
            .get(hash)
            .and_then(|id| self.tokens.get(id))
    }

    /// The organisation's live tokens, oldest first.
    pub fn tokens(&self, org_id: &str) -> Vec<&AccessToken> {
        let mut all: Vec<_> = self
            .tokens
            .values()
            .filter(|t| t.org_id == org_id)
            .collect();
        all.sort_by(|a, b| (&a.created_at, &a.id).cmp(&(&b.created_at, &b.id)));
        all
    }

    /// A live token by id, of any organisation.
    pub fn token(&self, id: &str) -> Option<&AccessToken> {
        self.tokens.get(id)
    }

    /// The earlier versions of a use case, newest first.
    pub fn use_case_history(&self, org_id: &str, use_case_id: &str) -> Vec<&UseCaseVersion> {
        self.history
            .get(&(org_id.to_owned(), use_case_id.to_owned()))
            .map(|versions| versions.iter().rev().collect())
            .unwrap_or_default()
    }

    /// An integration of the organisation.
    pub fn integration(&self, org_id: &str, id: &str) -> Option<&Integration> {
        self.integrations.get(&(org_id.to_owned(), id.to_owned()))
    }

    /// Every integration of every organisation (for sweeps that run for all of them, such as
    /// alert evaluation); each carries its organisation.
    pub fn all_integrations(&self) -> impl Iterator<Item = &Integration> {
        self.integrations.values()
    }

    /// The organisation's integrations, oldest first.
    pub fn integrations(&self, org_id: &str) -> Vec<&Integration> {
        let mut all: Vec<_> = self
            .integrations
            .iter()
            .filter(|((org, _), _)| org == org_id)
            .map(|(_, i)| i)
            .collect();
        all.sort_by(|a, b| (&a.created_at, &a.id).cmp(&(&b.created_at, &b.id)));
        all
    }

    /// The use cases of an integration, oldest first.
    pub fn use_cases(&self, org_id: &str, integration_id: &str) -> Vec<&UseCaseEntry> {
        let mut all: Vec<_> = self
            .use_cases
            .values()
            .filter(|e| e.org_id == org_id && e.use_case.integration_id == integration_id)
            .collect();
        all.sort_by(|a, b| {
            (&a.use_case.created_at, &a.use_case.id).cmp(&(&b.use_case.created_at, &b.use_case.id))
        });
        all
    }

    /// One use case of an integration.
    pub fn use_case(&self, org_id: &str, integration_id: &str, id: &str) -> Option<&UseCaseEntry> {
        self.use_cases
            .get(&(org_id.to_owned(), id.to_owned()))
            .filter(|e| e.use_case.integration_id == integration_id)
    }

    /// The organisation's enabled use cases of one type, oldest first.
    pub fn enabled_use_cases(&self, org_id: &str, kind: &str) -> Vec<&UseCaseEntry> {
        let mut all: Vec<_> = self
            .use_cases
            .values()
            .filter(|e| e.org_id == org_id && e.use_case.enabled && e.use_case.kind == kind)
            .collect();
        all.sort_by(|a, b| {
            (&a.use_case.created_at, &a.use_case.id).cmp(&(&b.use_case.created_at, &b.use_case.id))
        });
        all
    }

    /// Routes an inbound event by its slug or event name to an inbound use case. When several
    /// match, an enabled one wins, then the oldest.
    pub fn route(
        &self,
        org_id: &str,
        integration_id: &str,
        use_case_slug: Option<&str>,
        event_name: Option<&str>,
    ) -> Route<'_> {
        let mut disabled = None;
        for entry in self.use_cases(org_id, integration_id) {
            if entry.use_case.kind != "inbound"
                || !entry.use_case.matches_route(use_case_slug, event_name)
            {
                continue;
            }
            if entry.use_case.enabled {
                return Route::Matched(entry);
            }
            disabled.get_or_insert(entry);
        }
        disabled.map_or(Route::NotFound, Route::Disabled)
    }

    /// The organisation's webhook endpoints, oldest first.
    pub fn webhooks(&self, org_id: &str) -> Vec<&WebhookEntry> {
        let mut all: Vec<_> = self
            .webhooks
            .values()
            .filter(|e| e.org_id == org_id)
            .collect();
        all.sort_by(|a, b| {
            (&a.webhook.creation_time, &a.webhook.id)
                .cmp(&(&b.webhook.creation_time, &b.webhook.id))
        });
        all
    }

    /// Whether `id` names an integration, use case or webhook endpoint of **any** organisation:
    /// a client-supplied id that does is refused (409) rather than reused, and the answer says
    /// nothing more about where it exists.
    pub fn id_taken(&self, id: &str) -> bool {
        self.integrations.keys().any(|(_, i)| i == id)
            || self.use_cases.keys().any(|(_, u)| u == id)
            || self.webhooks.keys().any(|(_, w)| w == id)
    }

    /// Whether any endpoint of any organisation satisfies `test`.
    pub fn any_webhook(&self, test: impl Fn(&WebhookEntry) -> bool) -> bool {
        self.webhooks.values().any(test)
    }

    /// One webhook endpoint of the organisation.
    pub fn webhook(&self, org_id: &str, id: &str) -> Option<&WebhookEntry> {
        self.webhooks.get(&(org_id.to_owned(), id.to_owned()))
    }

    /// The enabled endpoints of the organisation subscribed to an event name.
    pub fn subscribers(&self, org_id: &str, event_name: &str) -> Vec<&WebhookEntry> {
        self.webhooks(org_id)
            .into_iter()
            .filter(|e| e.webhook.enabled && e.webhook.subscribes_to(event_name))
            .collect()
    }
}

#[path = "lookups.rs"]
mod lookups;
/// Revisions of objects, for conditional writes.
#[path = "revisions.rs"]
mod revisions;

#[cfg(test)]
#[path = "fold_tests.rs"]
mod tests;
