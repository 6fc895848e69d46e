//! Alerting (spec §2.4.5): the rules of an integration's `settings.notifications` evaluated on
//! the monitoring store every sweep, state transitions kept in the store and served by
//! `…/notifications/history` and `…/notifications/status`.
//!
//! Email and in-app channels do not exist in a self-hosted deployment: an alert is an
//! **operational webhook** — an `IntegrationAlert` core event on `erp.core.events`, delivered
//! by the dispatcher (signed, retried, in the attempt log) to every endpoint of the
//! organisation subscribed to `event_IntegrationAlert`.
//!
//! - [`rules`]: reading the settings, evaluating one rule (pure).
//! - [`state`]: the `alert_state` and `alert_history` tables.
//! - [`sweep`]: the evaluation loop and delivery.
//! - [`routes`]: history, status, test.

pub mod routes;
pub mod rules;
pub mod state;
pub mod sweep;
