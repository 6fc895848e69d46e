//! The control plane of erp-toolkit, following epilot's ERP/Integration Toolkit API path for
//! path: integrations and use cases, webhook endpoints and their attempt log, the inbound event
//! log, replay and recovery, the outbound poll queue, ACKs, environments and access tokens.
//! Organised by resource; each resource keeps its service (index, queue, tracker) apart from its
//! routes, and only routes see [`ApiState`].

/// ACK tracking of outbound messages and the acknowledgement route.
pub mod acks;
/// Alerting: notification rules evaluated on the monitoring store, delivered as webhooks.
pub mod alerts;
/// Blueprints (`/v1/blueprints…`): integrations exported and installed with a plan.
pub mod blueprints;
/// Organisation environments (`/v1/environments`): values and secrets for `{{env.*}}`.
pub mod environments;
/// The inbound event log and its replay.
pub mod events;
/// Consumer groups: lag per partition and resets with a dry run (deployment admin).
pub mod groups;
/// Integrations v1 and v2, use cases, app mappings, documentation pages, file proxy checks.
pub mod integrations;
/// Monitoring: the span store, its indexer and epilot's monitoring v2 routes.
pub mod monitoring;
/// The OpenAPI document we serve, and checks of bodies against its schemas.
pub mod openapi;
/// The outbound poll queue: streams, leases, DLQ.
pub mod poll;
/// Replay of a time window of inbound events: plan, run, progress, cancel.
pub mod replay;
/// The Confluent Schema Registry REST subset (`/schema-registry`), an extension.
pub mod schema_registry;
/// The schema catalog, read-only: core events and core entities.
pub mod schemas;
/// What the handlers can reach, and the one place that builds it.
pub mod state;
/// The standard use-case templates through the API, and use cases created from them.
pub mod templates;
/// Access tokens (`/v1/access-tokens`).
pub mod tokens;
/// The one topic-index mechanism: a sled index that follows a topic, and reads records back.
pub mod topic_index;
/// Webhook configurations, test triggers, the attempt log, replay and recovery.
pub mod webhooks;

use actix_web::web;

pub use state::{ApiSettings, ApiState, Started};

/// Adds the control plane's routes. Needs `web::Data<ApiState>` and `web::Data<erp_http::Access>`
/// as app data.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/openapi.json", web::get().to(openapi::document))
        .route(
            "/v1/erp/tracking/acknowledgement",
            web::post().to(acks::routes::acknowledge),
        )
        .route(
            "/v1/integrations/{id}/outbound/messages/poll",
            web::post().to(poll::http::poll),
        )
        .route(
            "/v1/integrations/{id}/outbound/messages/ack",
            web::post().to(poll::http::ack),
        )
        .route(
            "/v1/integrations/{id}/outbound/messages/dlq",
            web::get().to(poll::http::dlq),
        )
        .route(
            "/v1/integrations/{id}/outbound/messages/dlq/redrive",
            web::post().to(poll::http::redrive),
        )
        .route(
            "/v1/integrations/{id}/outbound/messages/unblock",
            web::post().to(poll::http::unblock),
        )
        .route("/v1/integrations", web::get().to(integrations::v1::list))
        .route("/v1/integrations", web::post().to(integrations::v1::create))
        .route(
            "/v1/integrations/{id}",
            web::get().to(integrations::v1::get),
        )
        .route(
            "/v1/integrations/{id}",
            web::put().to(integrations::v1::update),
        )
        .route(
            "/v1/integrations/{id}",
            web::delete().to(integrations::v1::delete),
        )
        .route(
            "/v1/integrations/{id}/events",
            web::post().to(events::routes::query),
        )
        .route(
            "/v1/integrations/{id}/events/replay",
            web::post().to(events::routes::replay),
        )
        .route(
            "/v1/integrations/{id}/app-mapping",
            web::put().to(integrations::app_mapping::put),
        )
        .route(
            "/v1/integrations/{id}/app-mapping",
            web::delete().to(integrations::app_mapping::delete),
        )
        .route(
            "/v1/integrations/{id}/documentation",
            web::get().to(integrations::documentation::list),
        )
        .route(
            "/v1/integrations/{id}/documentation/{doc_id}",
            web::get().to(integrations::documentation::get),
        )
        .route(
            "/v1/integrations/{id}/documentation/{doc_id}",
            web::put().to(integrations::documentation::put),
        )
        .route(
            "/v1/integrations/{id}/documentation/{doc_id}",
            web::delete().to(integrations::documentation::delete),
        )
        .route(
            "/v1/integrations/{id}/use-cases",
            web::get().to(integrations::use_cases::list),
        )
        .route(
            "/v1/integrations/{id}/use-cases",
            web::post().to(integrations::use_cases::create),
        )
        .route(
            "/v1/integrations/{id}/use-cases/from-template",
            web::post().to(templates::create),
        )
        .route("/v1/use-case-templates", web::get().to(templates::list))
        .route(
            "/v1/integrations/{id}/blueprint",
            web::get().to(blueprints::export_route),
        )
        .route(
            "/v1/blueprints/plan",
            web::post().to(blueprints::plan_route),
        )
        .route(
            "/v1/blueprints/apply",
            web::post().to(blueprints::apply_route),
        )
        .route(
            "/v1/use-case-templates/{slug}",
            web::get().to(templates::get),
        )
        .route(
            "/v1/integrations/{id}/use-cases/{use_case_id}",
            web::get().to(integrations::use_cases::get),
        )
        .route(
            "/v1/integrations/{id}/use-cases/{use_case_id}",
            web::put().to(integrations::use_cases::update),
        )
        .route(
            "/v1/integrations/{id}/use-cases/{use_case_id}",
            web::delete().to(integrations::use_cases::delete),
        )
        .route(
            "/v1/integrations/{id}/use-cases/{use_case_id}/history",
            web::get().to(integrations::use_cases::history),
        )
        .route("/v2/integrations", web::get().to(integrations::v2::list))
        .route("/v2/integrations", web::post().to(integrations::v2::create))
        .route(
            "/v2/integrations/{id}",
            web::get().to(integrations::v2::get),
        )
        .route(
            "/v2/integrations/{id}",
            web::put().to(integrations::v2::update),
        )
        .route(
            "/v2/integrations/{id}",
            web::delete().to(integrations::v2::delete),
        )
        .route(
            "/v1/integrations/{id}/monitoring/inbound-events",
            web::post().to(monitoring::v1::inbound_events),
        )
        .route(
            "/v1/integrations/{id}/monitoring/outbound-events",
            web::post().to(monitoring::v1::outbound_events),
        )
        .route(
            "/v1/integrations/{id}/monitoring/stats",
            web::post().to(monitoring::v1_counts::stats),
        )
        .route(
            "/v1/integrations/{id}/monitoring/timeseries",
            web::post().to(monitoring::v1_counts::series),
        )
        .route(
            "/v1/integrations/{id}/monitoring/access-logs",
            web::post().to(monitoring::v1::access_logs),
        )
        .route(
            "/v1/integrations/{id}/outbound-status",
            web::get().to(integrations::outbound_status::status),
        )
        .route(
            "/v2/integrations/{id}/monitoring/events",
            web::post().to(monitoring::routes::events),
        )
        .route(
            "/v2/integrations/{id}/monitoring/stats",
            web::post().to(monitoring::routes::stats),
        )
        .route(
            "/v2/integrations/{id}/monitoring/time-series",
            web::post().to(monitoring::routes::series),
        )
        .route(
            "/v2/integrations/{id}/monitoring/external-events",
            web::post().to(monitoring::external::ingest),
        )
        .route(
            "/v2/integrations/{id}/monitoring/events/{event_id}/associated",
            web::get().to(monitoring::routes::associated),
        )
        .route(
            "/v2/integrations/{id}/monitoring/traces/{correlation_id}",
            web::get().to(monitoring::routes::trace),
        )
        .route(
            "/v2/integrations/{id}/notifications/history",
            web::get().to(alerts::routes::history),
        )
        .route(
            "/v2/integrations/{id}/notifications/status",
            web::get().to(alerts::routes::status),
        )
        .route(
            "/v2/integrations/{id}/notifications/test",
            web::post().to(alerts::routes::test),
        )
        .route(
            "/v1/integrations/{id}/replays/plan",
            web::post().to(replay::routes::plan),
        )
        .route(
            "/v1/integrations/{id}/replays",
            web::post().to(replay::routes::run),
        )
        .route(
            "/v1/integrations/{id}/replays/{task_id}",
            web::get().to(replay::routes::status),
        )
        .route(
            "/v1/integrations/{id}/replays/{task_id}",
            web::delete().to(replay::routes::cancel),
        )
        .route(
            "/v1/ops/consumer-groups",
            web::get().to(groups::routes::list),
        )
        .route(
            "/v1/ops/consumer-groups/{group_id}",
            web::get().to(groups::routes::show),
        )
        .route(
            "/v1/ops/consumer-groups/{group_id}/reset/plan",
            web::post().to(groups::routes::plan_reset),
        )
        .route(
            "/v1/ops/consumer-groups/{group_id}/reset",
            web::post().to(groups::routes::apply_reset),
        )
        .route("/v1/schemas/events", web::get().to(schemas::list_events))
        .route(
            "/v1/schemas/events/{name}",
            web::get().to(schemas::get_event),
        )
        .route(
            "/v1/schemas/entities",
            web::get().to(schemas::list_entities),
        )
        .route(
            "/v1/schemas/entities/{slug}",
            web::get().to(schemas::get_entity),
        )
        .route("/v1/environments", web::get().to(environments::list))
        .route("/v1/environments/{key}", web::put().to(environments::put))
        .route(
            "/v1/environments/{key}",
            web::delete().to(environments::delete),
        )
        .route("/v1/access-tokens", web::get().to(tokens::list))
        .route("/v1/access-tokens", web::post().to(tokens::create))
        .route("/v1/access-tokens/{id}", web::delete().to(tokens::revoke))
        .route(
            "/v1/webhooks/.well-known/public-key",
            web::get().to(webhooks::configs::public_key),
        )
        .route(
            "/v1/webhooks/configs",
            web::get().to(webhooks::configs::list),
        )
        .route(
            "/v1/webhooks/configs",
            web::post().to(webhooks::configs::create),
        )
        .route(
            "/v1/webhooks/configs/{id}",
            web::get().to(webhooks::configs::get),
        )
        .route(
            "/v1/webhooks/configs/{id}/rotate-secret",
            web::post().to(webhooks::configs::rotate_secret),
        )
        .route(
            "/v1/webhooks/configs/{id}",
            web::put().to(webhooks::configs::update),
        )
        .route(
            "/v1/webhooks/configs/{id}",
            web::delete().to(webhooks::configs::delete),
        )
        .route(
            "/v1/webhooks/configs/{id}/events",
            web::get().to(webhooks::attempt_routes::list_v1),
        )
        .route(
            "/v1/webhooks/configs/{id}/trigger",
            web::post().to(webhooks::trigger::trigger),
        )
        .route(
            "/v1/webhooks/configured-events",
            web::get().to(webhooks::configs::configured_events),
        )
        .route(
            "/v2/webhooks/configs/{id}/events",
            web::post().to(webhooks::attempt_routes::list),
        )
        .route(
            "/v1/webhooks/configs/{id}/events/replay-batch",
            web::post().to(webhooks::attempt_routes::replay_batch),
        )
        .route(
            "/v1/webhooks/configs/{id}/events/{event_id}",
            web::get().to(webhooks::attempt_routes::get),
        )
        .route(
            "/v1/webhooks/configs/{id}/events/{event_id}/replay",
            web::post().to(webhooks::attempt_routes::replay),
        )
        .route(
            "/v1/webhooks/configs/{id}/recover",
            web::post().to(webhooks::recovery_routes::recover),
        )
        .route(
            "/v1/webhooks/configs/{id}/recover/{task_id}",
            web::get().to(webhooks::recovery_routes::status),
        );
}
