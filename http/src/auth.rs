//! Bearer-token authentication, permissions and the per-organisation rate limit.
//!
//! Two kinds of token authenticate:
//!
//! - the **deployment admin token** (`--admin-token`, or the standalone `admin-token` file): the
//!   owner of the deployment's first organisation (`--org-id`), with every permission, and the
//!   only caller that may create tokens for another organisation (which is how organisations
//!   come into being);
//! - **access tokens** (`erpt_…`), created with `POST /v1/access-tokens`, each of one
//!   organisation and with roles. Only the SHA-256 of a token is stored, in the configuration
//!   log; a request's token is hashed and looked up in the configuration view.
//!
//! Why a plain SHA-256 and not a password hash (argon2, bcrypt): a token carries 256 random
//! bits, so no dictionary or brute force applies to its hash and a slow, salted hash would only
//! cost CPU on every request. An unsalted hash also makes the lookup an index hit, so no token is
//! compared byte by byte against a secret (no timing side channel on the stored values).
//!
//! # Roles
//!
//! | role | grants |
//! |---|---|
//! | `integration:view`, `erp:read`, `erp:monitoring` | view |
//! | `integration:consume` | consume |
//! | `erp:events` | events |
//! | `integration:manage`, `erp:write` | manage, view, consume, events |
//! | `integration:*`, `erp:*` | manage, view, consume, events |
//! | `owner` | all of the above and token management |
//!
//! `erp:*` are the permission names of epilot's configuration docs, `integration:*` those of its
//! grant reference (spec C5: implement `integration:*`, alias `erp:*`). `erp:events` is kept as
//! its own permission rather than folded into manage: the middleware that pushes ERP events is
//! the most widely deployed credential, and it should not be able to reconfigure integrations or
//! webhooks if it leaks.
//!
//! # Route → permission
//!
//! Every route that takes a [`Caller`] is checked here, before its handler runs, against the one
//! table [`ROUTES`] (the summary below is its digest); a route not in the table needs manage
//! whatever its method, so a new route is never open by accident. (It used to fall back to
//! "GET needs view", which opened the poll queue's DLQ listing to view tokens.)
//!
//! | route | needs |
//! |---|---|
//! | `GET` `/v1/integrations[/{id}]`, `…/use-cases[/{id}]`, `…/history`, `…/documentation[/{docId}]`, `/v2/integrations[/{id}]`, `/v1/webhooks/configs[/{id}]` | view |
//! | `POST/PUT/DELETE` of the same, `PUT/DELETE …/app-mapping`, `…/rotate-secret` | manage |
//! | `GET /v1/use-case-templates[/{slug}]` | view |
//! | `POST /v1/integrations/{id}/use-cases/from-template`, `POST /v1/blueprints/apply` | manage |
//! | `GET /v1/integrations/{id}/blueprint`, `POST /v1/blueprints/plan` (a plan changes nothing) | view |
//! | `POST /v1/erp/updates/mapping_simulation`, `/v2/…/mapping_simulation`, `POST /v1/integrations/{id}/events` (a query; they change nothing) | view |
//! | `POST /v1/integrations/{id}/events/replay` | manage |
//! | `POST /v2/webhooks/configs/{id}/events` (the attempt log: a query), `GET /v1/webhooks/configs/{id}/events/{event_id}`, `GET …/recover/{task_id}` | view |
//! | `POST /v1/webhooks/configs/{id}/events/{event_id}/replay`, `…/events/replay-batch`, `…/recover` | manage |
//! | `POST /v3/erp/updates/events`, `/v2/erp/updates/events`, `/v1/erp/updates/events`, `/v1/events` | events |
//! | `POST /v1/erp/tracking/acknowledgement` | events or consume |
//! | `POST /v1/integrations/{id}/outbound/messages/poll`, `…/ack` | consume |
//! | `GET …/outbound/messages/dlq`, `POST …/dlq/redrive`, `POST …/unblock` | manage |
//! | `GET /v1/environments` (secrets masked) | view |
//! | `GET /v1/schemas/events[/{name}]`, `GET /v1/schemas/entities[/{slug}]` (the catalog) | view |
//! | `PUT`, `DELETE /v1/environments/{key}` | manage |
//! | `GET`, `POST /v1/access-tokens`, `DELETE /v1/access-tokens/{id}` | owner |
//! | `/healthz`, `/readyz`, `GET /v1/webhooks/.well-known/public-key`, `GET /openapi.json` | none (no token, no rate limit) |
//! | `GET /metrics` on the API listener (only without `--metrics-listen`; it carries labels of every organisation) | the deployment admin token (no rate limit) |
//! | `/v1/ops/consumer-groups…` (lag and resets of the deployment's groups, every organisation's records) | the deployment admin token (no rate limit) |
//!
//! Answers: no, an unknown or a revoked token is 401; a known token without the permission is
//! 403; an object of another organisation is 404 (handlers look objects up by the caller's
//! organisation only). A request that authenticates takes one unit of its organisation's rate
//! budget (also when it then gets 403), and is answered 429 `RATE_LIMITED` with `Retry-After`
//! once the budget is spent.

use actix_web::dev::Payload;
use actix_web::http::Method;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::future::{Ready, ready};

use erp_runtime::ConfigView;

use crate::error::ApiError;
use crate::metrics::HttpMetrics;
use crate::rate_limit::{RateLimited, RateLimiter};

/// What authenticating a request needs, shared as app data by every service of a process (one
/// rate budget per organisation, one counter of refusals).
pub struct Access {
    /// The deployment admin's organisation (the first one).
    pub org_id: String,
    /// The deployment admin token: owner of `org_id`, may create other organisations' tokens.
    pub admin_token: String,
    /// The per-organisation request budget.
    pub rate_limit: RateLimiter,
    /// Where access tokens are looked up.
    pub view: ConfigView,
    /// Refusals by code.
    pub metrics: HttpMetrics,
}

/// What a caller may do: a set of permission bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Permissions(u8);

impl Permissions {
    /// Read configuration.
    pub const VIEW: Self = Self(1);
    /// Change configuration; operate the poll queue (DLQ, redrive, unblock).
    pub const MANAGE: Self = Self(2);
    /// Poll and acknowledge the outbound poll queue.
    pub const CONSUME: Self = Self(4);
    /// Send ERP and platform events.
    pub const EVENTS: Self = Self(8);
    /// Manage the organisation's access tokens.
    pub const OWNER: Self = Self(16);
    /// Everything but token management.
    pub const INTEGRATION_ALL: Self = Self(1 | 2 | 4 | 8);
    /// Everything.
    pub const ALL: Self = Self(1 | 2 | 4 | 8 | 16);

    /// Both sets.
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// Whether any permission of `needed` is held (a route lists the alternatives it accepts).
    pub const fn allows(self, needed: Self) -> bool {
        self.0 & needed.0 != 0
    }

    /// The permissions of a role name, `None` for an unknown one.
    pub fn of_role(role: &str) -> Option<Self> {
        Some(match role {
            "integration:view" | "erp:read" | "erp:monitoring" => Self::VIEW,
            "integration:consume" => Self::CONSUME,
            "erp:events" => Self::EVENTS,
            "integration:manage" | "erp:write" | "integration:*" | "erp:*" => Self::INTEGRATION_ALL,
            "owner" => Self::ALL,
            _ => return None,
        })
    }

    /// The union of the permissions of known roles (unknown ones grant nothing: the API refuses
    /// them at creation, so they only appear in hand-written log records).
    pub fn of_roles<'a>(roles: impl IntoIterator<Item = &'a str>) -> Self {
        roles
            .into_iter()
            .filter_map(Self::of_role)
            .fold(Self::default(), Self::union)
    }
}

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// No token, no rate limit (health, the public key, the OpenAPI document).
    Public,
    /// The deployment admin token and nothing else: `/metrics` on the API listener shows
    /// labels of every organisation, so no organisation's token (not even an owner's) reads it.
    DeploymentAdmin,
    /// A token holding any one of these permissions.
    Any(Permissions),
}

/// One row of the route table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteRule {
    /// The HTTP method.
    pub method: &'static str,
    /// The route pattern as registered (`{id}` for path parameters).
    pub pattern: &'static str,
    /// What a caller needs.
    pub need: Need,
}

const fn rule(method: &'static str, pattern: &'static str, need: Permissions) -> RouteRule {
    RouteRule {
        method,
        pattern,
        need: Need::Any(need),
    }
}

const fn public(method: &'static str, pattern: &'static str) -> RouteRule {
    RouteRule {
        method,
        pattern,
        need: Need::Public,
    }
}

/// A deployment-wide operation (consumer groups span every organisation).
const fn admin(method: &'static str, pattern: &'static str) -> RouteRule {
    RouteRule {
        method,
        pattern,
        need: Need::DeploymentAdmin,
    }
}

const V: Permissions = Permissions::VIEW;
const M: Permissions = Permissions::MANAGE;
const C: Permissions = Permissions::CONSUME;
const E: Permissions = Permissions::EVENTS;
const O: Permissions = Permissions::OWNER;

/// **The** route table: every route of both services (ingest and the control plane) with what
/// it needs. The extractor checks it before a handler runs; `tests/role_matrix.rs` derives a
/// request per role and route from it, `tests/isolation.rs` the cross-organisation cases, and a
/// test checks it lists exactly the registered routes. A route missing here needs manage
/// whatever its method (never view, never open).
pub const ROUTES: &[RouteRule] = &[
    // Health, metrics and documents.
    public("GET", "/healthz"),
    public("GET", "/readyz"),
    RouteRule {
        method: "GET",
        pattern: "/metrics",
        need: Need::DeploymentAdmin,
    },
    public("GET", "/openapi.json"),
    public("GET", "/v1/webhooks/.well-known/public-key"),
    // Ingest.
    rule("POST", "/v3/erp/updates/events", E),
    rule("POST", "/v2/erp/updates/events", E),
    rule("POST", "/v1/erp/updates/events", E),
    rule("POST", "/v1/events", E),
    rule("POST", "/v1/erp/updates/mapping_simulation", V),
    rule("POST", "/v2/erp/updates/mapping_simulation", V),
    rule(
        "POST",
        "/v1/erp/tracking/acknowledgement",
        Permissions::EVENTS.union(Permissions::CONSUME),
    ),
    // The outbound poll queue: consumers poll and ack; operating the DLQ is manage (README).
    rule("POST", "/v1/integrations/{id}/outbound/messages/poll", C),
    rule("POST", "/v1/integrations/{id}/outbound/messages/ack", C),
    rule("GET", "/v1/integrations/{id}/outbound/messages/dlq", M),
    rule(
        "POST",
        "/v1/integrations/{id}/outbound/messages/dlq/redrive",
        M,
    ),
    rule("POST", "/v1/integrations/{id}/outbound/messages/unblock", M),
    // The schema catalog (read-only, the same for every organisation).
    rule("GET", "/v1/schemas/events", V),
    rule("GET", "/v1/schemas/events/{name}", V),
    rule("GET", "/v1/schemas/entities", V),
    rule("GET", "/v1/schemas/entities/{slug}", V),
    // Integrations v1.
    rule("GET", "/v1/integrations", V),
    rule("POST", "/v1/integrations", M),
    rule("GET", "/v1/integrations/{id}", V),
    rule("PUT", "/v1/integrations/{id}", M),
    rule("DELETE", "/v1/integrations/{id}", M),
    rule("POST", "/v1/integrations/{id}/events", V),
    rule("POST", "/v1/integrations/{id}/events/replay", M),
    // Alerting: history and status are views; a test notification is manage (spec §2).
    rule("GET", "/v2/integrations/{id}/notifications/history", V),
    rule("GET", "/v2/integrations/{id}/notifications/status", V),
    rule("POST", "/v2/integrations/{id}/notifications/test", M),
    // Replay of a window: planning reads, running and cancelling change the pipeline.
    admin("GET", "/v1/ops/consumer-groups"),
    admin("GET", "/v1/ops/consumer-groups/{group_id}"),
    admin("POST", "/v1/ops/consumer-groups/{group_id}/reset/plan"),
    admin("POST", "/v1/ops/consumer-groups/{group_id}/reset"),
    rule("POST", "/v1/integrations/{id}/replays/plan", M),
    rule("POST", "/v1/integrations/{id}/replays", M),
    rule("GET", "/v1/integrations/{id}/replays/{task_id}", V),
    rule("DELETE", "/v1/integrations/{id}/replays/{task_id}", M),
    // Monitoring v2: queries, they change nothing.
    rule("POST", "/v1/integrations/{id}/monitoring/inbound-events", V),
    rule(
        "POST",
        "/v1/integrations/{id}/monitoring/outbound-events",
        V,
    ),
    rule("POST", "/v1/integrations/{id}/monitoring/stats", V),
    rule("POST", "/v1/integrations/{id}/monitoring/timeseries", V),
    rule("POST", "/v1/integrations/{id}/monitoring/access-logs", V),
    rule("GET", "/v1/integrations/{id}/outbound-status", V),
    rule("POST", "/v2/integrations/{id}/monitoring/events", V),
    rule("POST", "/v2/integrations/{id}/monitoring/stats", V),
    rule("POST", "/v2/integrations/{id}/monitoring/time-series", V),
    // Partner log shipping writes spans: manage (spec §2.10).
    rule(
        "POST",
        "/v2/integrations/{id}/monitoring/external-events",
        M,
    ),
    rule(
        "GET",
        "/v2/integrations/{id}/monitoring/events/{event_id}/associated",
        V,
    ),
    rule(
        "GET",
        "/v2/integrations/{id}/monitoring/traces/{correlation_id}",
        V,
    ),
    rule("PUT", "/v1/integrations/{id}/app-mapping", M),
    rule("DELETE", "/v1/integrations/{id}/app-mapping", M),
    rule("GET", "/v1/integrations/{id}/documentation", V),
    rule("GET", "/v1/integrations/{id}/documentation/{doc_id}", V),
    rule("PUT", "/v1/integrations/{id}/documentation/{doc_id}", M),
    rule("DELETE", "/v1/integrations/{id}/documentation/{doc_id}", M),
    rule("GET", "/v1/integrations/{id}/use-cases", V),
    rule("POST", "/v1/integrations/{id}/use-cases", M),
    rule("POST", "/v1/integrations/{id}/use-cases/from-template", M),
    // The template catalogue is the same for everyone; reading it still takes a token.
    rule("GET", "/v1/use-case-templates", V),
    rule("GET", "/v1/use-case-templates/{slug}", V),
    // Blueprints: exporting and planning read; applying writes the configuration.
    rule("GET", "/v1/integrations/{id}/blueprint", V),
    rule("POST", "/v1/blueprints/plan", V),
    rule("POST", "/v1/blueprints/apply", M),
    rule("GET", "/v1/integrations/{id}/use-cases/{use_case_id}", V),
    rule("PUT", "/v1/integrations/{id}/use-cases/{use_case_id}", M),
    rule("DELETE", "/v1/integrations/{id}/use-cases/{use_case_id}", M),
    rule(
        "GET",
        "/v1/integrations/{id}/use-cases/{use_case_id}/history",
        V,
    ),
    // Integrations v2.
    rule("GET", "/v2/integrations", V),
    rule("POST", "/v2/integrations", M),
    rule("GET", "/v2/integrations/{id}", V),
    rule("PUT", "/v2/integrations/{id}", M),
    rule("DELETE", "/v2/integrations/{id}", M),
    // Environments (secrets masked on read) and access tokens.
    rule("GET", "/v1/environments", V),
    rule("PUT", "/v1/environments/{key}", M),
    rule("DELETE", "/v1/environments/{key}", M),
    rule("GET", "/v1/access-tokens", O),
    rule("POST", "/v1/access-tokens", O),
    rule("DELETE", "/v1/access-tokens/{id}", O),
    // Webhook endpoints, the attempt log, replay and recovery.
    rule("GET", "/v1/webhooks/configs", V),
    rule("POST", "/v1/webhooks/configs", M),
    rule("GET", "/v1/webhooks/configs/{id}", V),
    rule("PUT", "/v1/webhooks/configs/{id}", M),
    rule("DELETE", "/v1/webhooks/configs/{id}", M),
    rule("POST", "/v1/webhooks/configs/{id}/rotate-secret", M),
    rule("POST", "/v1/webhooks/configs/{id}/trigger", M),
    rule("GET", "/v1/webhooks/configured-events", V),
    rule("GET", "/v1/webhooks/configs/{id}/events", V),
    rule("POST", "/v2/webhooks/configs/{id}/events", V),
    rule("GET", "/v1/webhooks/configs/{id}/events/{event_id}", V),
    rule(
        "POST",
        "/v1/webhooks/configs/{id}/events/{event_id}/replay",
        M,
    ),
    rule("POST", "/v1/webhooks/configs/{id}/events/replay-batch", M),
    rule("POST", "/v1/webhooks/configs/{id}/recover", M),
    rule("GET", "/v1/webhooks/configs/{id}/recover/{task_id}", V),
    // The schema registry (an extension, `api/src/schema_registry.rs`): reads with view (any
    // organisation's token: the schemas are the deployment's, not an organisation's data);
    // registering and setting compatibility change every consumer's contract, so only the
    // deployment admin token does.
    rule("GET", "/schema-registry/subjects", V),
    rule("POST", "/schema-registry/subjects/{subject}", V),
    rule("GET", "/schema-registry/subjects/{subject}/versions", V),
    admin("POST", "/schema-registry/subjects/{subject}/versions"),
    rule(
        "GET",
        "/schema-registry/subjects/{subject}/versions/{version}",
        V,
    ),
    rule(
        "GET",
        "/schema-registry/subjects/{subject}/versions/{version}/schema",
        V,
    ),
    rule("GET", "/schema-registry/schemas/ids/{id}", V),
    rule("GET", "/schema-registry/schemas/ids/{id}/schema", V),
    rule("GET", "/schema-registry/schemas/types", V),
    rule(
        "POST",
        "/schema-registry/compatibility/subjects/{subject}/versions",
        V,
    ),
    rule(
        "POST",
        "/schema-registry/compatibility/subjects/{subject}/versions/{version}",
        V,
    ),
    rule("GET", "/schema-registry/config", V),
    admin("PUT", "/schema-registry/config"),
    rule("GET", "/schema-registry/config/{subject}", V),
    admin("PUT", "/schema-registry/config/{subject}"),
    rule("GET", "/schema-registry/mode", V),
];

/// Where the schema registry's routes live: there a token may also come as the password of
/// basic auth, the one credential most Kafka clients' registry settings can send.
const REGISTRY_PREFIX: &str = "/schema-registry/";

/// The row of a route, if the table has one (`HEAD` is answered like `GET`).
pub fn rule_of(method: &Method, pattern: &str) -> Option<&'static RouteRule> {
    let method = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    ROUTES
        .iter()
        .find(|r| r.method == method && r.pattern == pattern)
}

/// The permission a route needs (any one of the returned bits), from [`ROUTES`]. A route not
/// in the table needs manage, whatever its method. A public route needs nothing; it never
/// takes a [`Caller`], so this answers manage for it too (a token is then still checked).
pub fn required(method: &Method, pattern: &str) -> Permissions {
    match rule_of(method, pattern).map(|r| r.need) {
        Some(Need::Any(needed)) => needed,
        // Owner passes the permission check; `check` then insists on the deployment admin.
        Some(Need::DeploymentAdmin) => Permissions::OWNER,
        Some(Need::Public) | None => Permissions::MANAGE,
    }
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The organisation the caller acts for.
    pub org_id: String,
    /// How the caller is recorded in the configuration log.
    pub actor: String,
    /// What the caller may do.
    pub permissions: Permissions,
    /// Whether this is the deployment admin token (may create tokens for other organisations).
    pub deployment_admin: bool,
}

/// A new random access token: `erpt_` and 32 random bytes, URL-safe base64.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("erpt_{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// The stored form of a token: hex SHA-256 (why not a password hash: see the module docs).
pub fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Compares in time independent of where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Who presents `token`, if anyone.
fn authenticate(state: &Access, token: &str) -> Option<Caller> {
    // An empty admin token never matches (the CLI refuses one; this keeps an empty bearer
    // value from ever being the deployment admin).
    if !state.admin_token.is_empty()
        && constant_time_eq(token.as_bytes(), state.admin_token.as_bytes())
    {
        return Some(Caller {
            org_id: state.org_id.clone(),
            actor: "admin-token".into(),
            permissions: Permissions::ALL,
            deployment_admin: true,
        });
    }
    let config = state.view.snapshot();
    let found = config.token_by_hash(&token_hash(token))?;
    Some(Caller {
        org_id: found.org_id.clone(),
        actor: format!("token:{}", found.id),
        permissions: Permissions::of_roles(found.roles.iter().map(String::as_str)),
        deployment_admin: false,
    })
}

/// Authenticates, takes a unit of the organisation's rate budget, checks the route's
/// permission; counts refusals by code.
fn admit(req: &HttpRequest) -> Result<Caller, actix_web::Error> {
    let state = req.app_data::<web::Data<Access>>();
    let outcome = check(req);
    if let (Err(refusal), Some(state)) = (&outcome, state) {
        let code = match refusal {
            Refusal::Api(error) => error.code,
            Refusal::RateLimited(_) => "RATE_LIMITED",
        };
        state.metrics.denied.with_label_values(&[code]).inc();
    }
    outcome.map_err(|refusal| match refusal {
        Refusal::Api(error) => error.into(),
        Refusal::RateLimited(limited) => limited.into(),
    })
}

/// Why a request was refused before its handler.
enum Refusal {
    Api(ApiError),
    RateLimited(RateLimited),
}

impl From<ApiError> for Refusal {
    fn from(error: ApiError) -> Self {
        Refusal::Api(error)
    }
}

fn check(req: &HttpRequest) -> Result<Caller, Refusal> {
    let Some(state) = req.app_data::<web::Data<Access>>() else {
        return Err(ApiError::internal("INTERNAL_ERROR", "API access state missing").into());
    };
    let header = req
        .headers()
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let basic = req
        .path()
        .starts_with(REGISTRY_PREFIX)
        .then(|| basic_password(header))
        .flatten();
    let Some(token) = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .map(str::trim)
        .map(str::to_owned)
        .or(basic)
    else {
        return Err(
            ApiError::unauthorized("missing `Authorization: Bearer <token>` header").into(),
        );
    };
    let caller = authenticate(state, &token)
        .ok_or_else(|| ApiError::unauthorized("invalid or revoked token"))?;
    // For the access log, which reads who called once the answer is made (refused or not).
    req.extensions_mut().insert(caller.clone());
    let pattern = req.match_pattern().unwrap_or_else(|| req.path().to_owned());
    let admin_only =
        rule_of(req.method(), &pattern).is_some_and(|rule| rule.need == Need::DeploymentAdmin);
    if admin_only {
        // Operational like the probes: no rate budget, so a scrape is never refused because
        // the admin's organisation spent its budget (nor spends it).
        if !caller.deployment_admin {
            return Err(ApiError::forbidden(format!(
                "{} {pattern} needs the deployment admin token",
                req.method()
            ))
            .into());
        }
        return Ok(caller);
    }
    state
        .rate_limit
        .check(&caller.org_id)
        .map_err(Refusal::RateLimited)?;
    let needed = required(req.method(), &pattern);
    if !caller.permissions.allows(needed) {
        return Err(ApiError::forbidden(format!(
            "the token lacks the permission for {} {pattern}",
            req.method()
        ))
        .into());
    }
    Ok(caller)
}

/// The password of `Authorization: Basic base64(user:password)` (the user is ignored).
fn basic_password(header: &str) -> Option<String> {
    use base64::engine::general_purpose::STANDARD;
    let encoded = header
        .strip_prefix("Basic ")
        .or_else(|| header.strip_prefix("basic "))?;
    let decoded = STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (_, password) = text.split_once(':')?;
    Some(password.to_owned())
}

impl FromRequest for Caller {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(admit(req))
    }
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;
