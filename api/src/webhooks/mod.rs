//! Webhook endpoints: their configuration, test triggers, the attempt log and recovery. Parsing
//! and validating a configuration is `erp-webhooks`, the code the dispatcher delivers with.

/// The attempt log's index: one row per delivery, folded from the dispatcher's spans.
pub mod attempt_log;
/// The attempt log's routes: list, show, replay, replay a batch.
pub mod attempt_routes;
/// `/v1/webhooks/configs`: endpoint CRUD, secrets, the public key, configured events.
pub mod configs;
/// Recoveries: re-sending an endpoint's failed deliveries in the background.
pub mod recovery;
/// The recovery routes: start one, show its progress.
pub mod recovery_routes;
/// `POST /v1/webhooks/configs/{id}/trigger`: a test event through the real delivery path.
pub mod trigger;
