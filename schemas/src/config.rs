//! Configuration objects and the events of the configuration log (`erp.config`).
//!
//! Every create, update or delete is one [`ConfigRecord`] carrying the full new snapshot of the
//! object, so the current configuration is a fold of the log and the history of an object is a
//! projection of it. The objects serialise in epilot's API shape; fields we do not interpret yet
//! are kept verbatim in `extra` so a round trip through the API loses nothing.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// An integration (epilot `Integration`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Integration {
    pub id: String,
    #[serde(rename = "orgId")]
    pub org_id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The other `IntegrationEditableFields` (`settings`, `environment_config`, …), verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
    pub created_at: String,
    pub updated_at: String,
}

/// The use-case types epilot defines.
pub const USE_CASE_TYPES: [&str; 5] = [
    "inbound",
    "outbound",
    "file_proxy",
    "managed_call",
    "secure_proxy",
];

/// A use case of an integration (epilot `UseCase`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UseCase {
    pub id: String,
    #[serde(rename = "integrationId")]
    pub integration_id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slug: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_by: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl UseCase {
    /// Whether an inbound event with this routing key belongs to this use case: the slug when the
    /// event names one, else the legacy `event_name` / `object_type` matched against the use
    /// case's name (epilot's "Event Name") or its slug.
    pub fn matches_route(&self, use_case_slug: Option<&str>, event_name: Option<&str>) -> bool {
        match (use_case_slug, event_name) {
            (Some(slug), _) => self.slug.as_deref() == Some(slug),
            (None, Some(name)) => self.name == name || self.slug.as_deref() == Some(name),
            (None, None) => false,
        }
    }
}

/// The retry policy of a webhook endpoint (epilot `retryPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryPolicy {
    pub enabled: bool,
    #[serde(default = "RetryPolicy::default_max_attempts")]
    pub max_attempts: u32,
}

impl RetryPolicy {
    fn default_max_attempts() -> u32 {
        3
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            max_attempts: 3,
        }
    }
}

/// A webhook endpoint (epilot Webhooks API `WebhookConfig`), without its signing secret: the
/// secret travels beside it in [`ConfigChange::WebhookUpserted`] so that serialising an endpoint
/// for an API response can never leak it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookEndpoint {
    pub id: String,
    pub name: String,
    pub event_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default = "WebhookEndpoint::default_method")]
    pub http_method: String,
    #[serde(default = "WebhookEndpoint::default_enabled")]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_policy: Option<RetryPolicy>,
    pub creation_time: String,
    pub updated_time: String,
    /// The other `WebhookConfig` fields (`auth`, `filterConditions`, …), verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl WebhookEndpoint {
    fn default_method() -> String {
        "POST".to_owned()
    }
    fn default_enabled() -> bool {
        true
    }

    /// Whether this endpoint subscribes to core events named `event_name`. Catalog event
    /// subscriptions carry epilot's `event_` prefix (`event_InboundEventMapped`); the bare name
    /// is accepted too.
    pub fn subscribes_to(&self, event_name: &str) -> bool {
        self.event_name == event_name
            || self
                .event_name
                .strip_prefix("event_")
                .is_some_and(|bare| bare == event_name)
    }
}

/// The secrets inside a webhook endpoint's `auth` object: (config object, field). They are
/// masked in API answers and encrypted in the configuration log like the signing secret.
pub const AUTH_SECRET_FIELDS: [(&str, &str); 3] = [
    ("basicAuthConfig", "password"),
    ("apiKeyConfig", "keyValue"),
    ("oauthConfig", "clientSecret"),
];

/// A signing secret replaced by a rotation: deliveries carry a `v1` signature with it too until
/// `valid_until`, so receivers can switch secrets without rejecting anything.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreviousSecret {
    pub secret: String,
    /// Unix milliseconds.
    pub valid_until: i64,
}

/// An API access token of an organisation (our API, not epilot's). The secret itself is never
/// stored: only its SHA-256, which identifies it at lookup (see `erp_ingest::auth`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessToken {
    pub id: String,
    pub org_id: String,
    pub name: String,
    /// Role names (`integration:view`, `integration:manage`, `integration:consume`,
    /// `integration:*`, the `erp:*` aliases, `owner`), as given.
    pub roles: Vec<String>,
    /// Hex SHA-256 of the token value.
    pub hash: String,
    pub created_at: String,
    /// Who created it (token id or `admin-token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
}

/// The type of an environment value (epilot's `environment_config` types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnvValueType {
    String,
    /// Stored encrypted (`erpenc:v1:…`), never answered in clear.
    SecretString,
}

/// Whether `key` follows the pattern of environment keys (epilot's):
/// `^[a-z0-9][a-z0-9_.\-]{0,127}$`. A contract: the API validates keys with it, the mapping and
/// endpoint templates resolve only references that match it.
pub fn valid_env_key(key: &str) -> bool {
    let mut bytes = key.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'0'..=b'9'))
        && key.len() <= 128
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-'))
}

/// A legacy app/component pair routed to an integration (epilot `IntegrationAppMapping`): how
/// `POST /v1/erp/updates/events`, which names no integration, finds one. Ids are stored in
/// canonical (lower-case, hyphenated) UUID form so a lookup does not depend on the caller's
/// spelling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppMapping {
    pub app_id: String,
    pub component_id: String,
    pub integration_id: String,
    pub created_at: String,
    pub updated_at: String,
}

/// The page id of an integration's general documentation page.
pub const GENERAL_PAGE: &str = "general";

/// A markdown documentation page of an integration (epilot `DocumentationPage`): `id` is
/// [`GENERAL_PAGE`] for the integration-wide page, otherwise the id of the use case it documents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocumentationPage {
    pub id: String,
    pub integration_id: String,
    /// `integration` or `use_case`.
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_case_id: Option<String>,
    pub title: String,
    pub content: String,
    pub created_at: String,
    pub created_by: Option<String>,
    pub updated_at: String,
    pub updated_by: Option<String>,
}

/// One change to the configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ConfigChange {
    IntegrationUpserted {
        integration: Integration,
    },
    /// Removes the integration and every use case of it.
    IntegrationDeleted {
        integration_id: String,
    },
    UseCaseUpserted {
        use_case: UseCase,
    },
    UseCaseDeleted {
        integration_id: String,
        use_case_id: String,
    },
    WebhookUpserted {
        webhook: WebhookEndpoint,
        signing_secret: String,
        /// Secrets replaced by a rotation and still signed with until their time is up.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        previous_secrets: Vec<PreviousSecret>,
    },
    WebhookDeleted {
        webhook_id: String,
    },
    /// A new access token (its hash only).
    TokenCreated {
        token: AccessToken,
    },
    /// A token stops authenticating.
    TokenRevoked {
        token_id: String,
    },
    /// An organisation's environment value set (ours: epilot keeps values in its separate
    /// Environments API). A `SecretString` value is the ciphertext of
    /// `erp_runtime::secrets`, never the clear value.
    EnvironmentValueSet {
        key: String,
        value_type: EnvValueType,
        value: String,
        updated_at: String,
    },
    /// An organisation's environment value removed.
    EnvironmentValueDeleted {
        key: String,
    },
    /// An app/component pair (re)mapped to an integration. Deleting the integration removes it.
    AppMappingSet {
        mapping: AppMapping,
    },
    /// An app/component pair no longer routes anywhere.
    AppMappingDeleted {
        app_id: String,
        component_id: String,
    },
    /// A documentation page created or replaced. Deleting its integration (or, for a use-case
    /// page, its use case) removes it.
    DocumentationPageUpserted {
        page: DocumentationPage,
    },
    DocumentationPageDeleted {
        integration_id: String,
        page_id: String,
    },
    /// Several changes applied as one, so no reader sees half of them (the declarative
    /// `PUT /v2/integrations/{id}`).
    Batch {
        changes: Vec<ConfigChange>,
    },
}

impl ConfigChange {
    /// The id of the changed object (of the first one, for a batch).
    pub fn key(&self) -> Cow<'_, str> {
        let id: &str = match self {
            ConfigChange::IntegrationUpserted { integration } => &integration.id,
            ConfigChange::IntegrationDeleted { integration_id } => integration_id,
            ConfigChange::UseCaseUpserted { use_case } => &use_case.id,
            ConfigChange::UseCaseDeleted { use_case_id, .. } => use_case_id,
            ConfigChange::WebhookUpserted { webhook, .. } => &webhook.id,
            ConfigChange::WebhookDeleted { webhook_id } => webhook_id,
            ConfigChange::TokenCreated { token } => &token.id,
            ConfigChange::TokenRevoked { token_id } => token_id,
            ConfigChange::EnvironmentValueSet { key, .. }
            | ConfigChange::EnvironmentValueDeleted { key } => key,
            // Derived keys: these objects have no id of their own, and sharing the id of the
            // integration or use case they belong to would let compaction drop one for the other.
            ConfigChange::AppMappingSet { mapping } => {
                return Cow::Owned(format!(
                    "app-mapping/{}/{}",
                    mapping.app_id, mapping.component_id
                ));
            }
            ConfigChange::AppMappingDeleted {
                app_id,
                component_id,
            } => return Cow::Owned(format!("app-mapping/{app_id}/{component_id}")),
            ConfigChange::DocumentationPageUpserted { page } => {
                return Cow::Owned(format!("documentation/{}/{}", page.integration_id, page.id));
            }
            ConfigChange::DocumentationPageDeleted {
                integration_id,
                page_id,
            } => return Cow::Owned(format!("documentation/{integration_id}/{page_id}")),
            ConfigChange::Batch { changes } => {
                return changes.first().map_or(Cow::Borrowed(""), ConfigChange::key);
            }
        };
        Cow::Borrowed(id)
    }
}

/// A record of the configuration log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigRecord {
    /// The organisation the object belongs to.
    pub org_id: String,
    /// When the change was made.
    pub at: String,
    /// Who made it (token or user id), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// The revision (log offset of the last change; `-1`: absent) of the changed object the
    /// writer based this change on. Every reader's fold skips a change whose object has moved
    /// on since, so a writer that read a stale view never undoes another's change (a disable
    /// after a 410 replacing a rotated secret with the old one). `None`: applied regardless.
    /// Only objects with a revision honour it: webhook endpoints, use cases, an organisation's
    /// environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_revision: Option<i64>,
    pub change: ConfigChange,
}

impl ConfigRecord {
    /// The record key: the id of the changed object, so compaction (if ever enabled) keeps the
    /// latest snapshot of each.
    pub fn key(&self) -> Cow<'_, str> {
        self.change.key()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn env_keys_follow_the_pattern() {
        assert!(valid_env_key("erp_host"));
        assert!(valid_env_key("erp.token-url"));
        assert!(valid_env_key("0abc"));
        assert!(!valid_env_key(""));
        assert!(!valid_env_key("_x"));
        assert!(!valid_env_key("Upper"));
        assert!(!valid_env_key(&"a".repeat(129)));
        assert!(valid_env_key(&"a".repeat(128)));
    }

    #[test]
    fn integration_keeps_unknown_editable_fields() {
        let body = json!({
            "id": "i", "orgId": "o", "name": "SAP", "created_at": "t", "updated_at": "t",
            "settings": {"autoRefresh": {"enabled": true}}, "protected": true
        });
        let integration: Integration = serde_json::from_value(body.clone()).expect("decodes");
        assert_eq!(integration.extra.len(), 2);
        assert_eq!(serde_json::to_value(&integration).expect("encodes"), body);
    }

    #[test]
    fn routing_prefers_the_slug() {
        let uc = UseCase {
            id: "u".into(),
            integration_id: "i".into(),
            name: "Zaehlerstaende".into(),
            slug: Some("meter-readings".into()),
            kind: "inbound".into(),
            enabled: true,
            configuration: None,
            change_description: None,
            changed_by: None,
            created_at: "t".into(),
            updated_at: "t".into(),
        };
        assert!(uc.matches_route(Some("meter-readings"), Some("other")));
        assert!(!uc.matches_route(Some("other"), Some("Zaehlerstaende")));
        assert!(uc.matches_route(None, Some("Zaehlerstaende")));
        assert!(uc.matches_route(None, Some("meter-readings")));
        assert!(!uc.matches_route(None, None));
    }

    #[test]
    fn webhook_subscription_accepts_the_event_prefix() {
        let wh: WebhookEndpoint = serde_json::from_value(json!({
            "id": "w", "name": "n", "eventName": "event_InboundEventMapped",
            "creationTime": "t", "updatedTime": "t"
        }))
        .expect("decodes");
        assert!(wh.subscribes_to("InboundEventMapped"));
        assert!(!wh.subscribes_to("MeterReadingAdded"));
        assert_eq!(wh.http_method, "POST");
        assert!(wh.enabled);
    }
}
