//! The HTTP face of erp-toolkit, following epilot's ERP/Integration Toolkit API path for path:
//! inbound event ingest, the configuration API (integrations, use cases, webhook endpoints), and
//! the operational routes every role serves.

pub mod acks;
pub mod app_mapping;
pub mod attempt_log;
pub mod auth;
pub mod body;
pub mod documentation;
pub mod environments;
pub mod error;
pub mod event_log;
pub mod event_schemas;
pub mod events;
pub mod file_proxy;
pub mod integrations;
pub mod integrations_v2;
pub mod metrics;
pub mod openapi;
pub mod platform;
pub mod poll;
pub mod queue;
pub mod rate_limit;
pub mod recovery;
pub mod simulation;
pub mod state;
pub mod tokens;
pub mod topic_index;
pub mod trigger;
pub mod use_cases;
pub mod webhooks;

use actix_web::{HttpResponse, web};

pub use error::ApiError;
pub use state::ApiState;

/// Adds every API route. Needs `web::Data<ApiState>` as app data.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/openapi.json", web::get().to(openapi::document))
        .route("/v3/erp/updates/events", web::post().to(events::post_v3))
        .route("/v2/erp/updates/events", web::post().to(events::post_v2))
        .route("/v1/erp/updates/events", web::post().to(events::post_v1))
        .route(
            "/v2/erp/updates/mapping_simulation",
            web::post().to(simulation::simulate_v2),
        )
        .route(
            "/v1/erp/updates/mapping_simulation",
            web::post().to(simulation::simulate_v1),
        )
        .route("/v1/events", web::post().to(platform::post))
        .route(
            "/v1/erp/tracking/acknowledgement",
            web::post().to(acks::acknowledge),
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
        .route("/v1/integrations", web::get().to(integrations::list))
        .route("/v1/integrations", web::post().to(integrations::create))
        .route("/v1/integrations/{id}", web::get().to(integrations::get))
        .route("/v1/integrations/{id}", web::put().to(integrations::update))
        .route(
            "/v1/integrations/{id}",
            web::delete().to(integrations::delete),
        )
        .route(
            "/v1/integrations/{id}/events",
            web::post().to(event_log::query),
        )
        .route(
            "/v1/integrations/{id}/events/replay",
            web::post().to(event_log::replay),
        )
        .route(
            "/v1/integrations/{id}/app-mapping",
            web::put().to(app_mapping::put),
        )
        .route(
            "/v1/integrations/{id}/app-mapping",
            web::delete().to(app_mapping::delete),
        )
        .route(
            "/v1/integrations/{id}/documentation",
            web::get().to(documentation::list),
        )
        .route(
            "/v1/integrations/{id}/documentation/{doc_id}",
            web::get().to(documentation::get),
        )
        .route(
            "/v1/integrations/{id}/documentation/{doc_id}",
            web::put().to(documentation::put),
        )
        .route(
            "/v1/integrations/{id}/documentation/{doc_id}",
            web::delete().to(documentation::delete),
        )
        .route(
            "/v1/integrations/{id}/use-cases",
            web::get().to(use_cases::list),
        )
        .route(
            "/v1/integrations/{id}/use-cases",
            web::post().to(use_cases::create),
        )
        .route(
            "/v1/integrations/{id}/use-cases/{use_case_id}",
            web::get().to(use_cases::get),
        )
        .route(
            "/v1/integrations/{id}/use-cases/{use_case_id}",
            web::put().to(use_cases::update),
        )
        .route(
            "/v1/integrations/{id}/use-cases/{use_case_id}",
            web::delete().to(use_cases::delete),
        )
        .route(
            "/v1/integrations/{id}/use-cases/{use_case_id}/history",
            web::get().to(use_cases::history),
        )
        .route("/v2/integrations", web::get().to(integrations_v2::list))
        .route("/v2/integrations", web::post().to(integrations_v2::create))
        .route("/v2/integrations/{id}", web::get().to(integrations_v2::get))
        .route(
            "/v2/integrations/{id}",
            web::put().to(integrations_v2::update),
        )
        .route(
            "/v2/integrations/{id}",
            web::delete().to(integrations_v2::delete),
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
            web::get().to(webhooks::public_key),
        )
        .route("/v1/webhooks/configs", web::get().to(webhooks::list))
        .route("/v1/webhooks/configs", web::post().to(webhooks::create))
        .route("/v1/webhooks/configs/{id}", web::get().to(webhooks::get))
        .route(
            "/v1/webhooks/configs/{id}/rotate-secret",
            web::post().to(webhooks::rotate_secret),
        )
        .route("/v1/webhooks/configs/{id}", web::put().to(webhooks::update))
        .route(
            "/v1/webhooks/configs/{id}",
            web::delete().to(webhooks::delete),
        )
        .route(
            "/v1/webhooks/configs/{id}/events",
            web::get().to(attempt_log::list_v1),
        )
        .route(
            "/v1/webhooks/configs/{id}/trigger",
            web::post().to(trigger::trigger),
        )
        .route(
            "/v1/webhooks/configured-events",
            web::get().to(webhooks::configured_events),
        )
        .route(
            "/v2/webhooks/configs/{id}/events",
            web::post().to(attempt_log::list),
        )
        .route(
            "/v1/webhooks/configs/{id}/events/replay-batch",
            web::post().to(attempt_log::replay_batch),
        )
        .route(
            "/v1/webhooks/configs/{id}/events/{event_id}",
            web::get().to(attempt_log::get),
        )
        .route(
            "/v1/webhooks/configs/{id}/events/{event_id}/replay",
            web::post().to(attempt_log::replay),
        )
        .route(
            "/v1/webhooks/configs/{id}/recover",
            web::post().to(recovery::recover),
        )
        .route(
            "/v1/webhooks/configs/{id}/recover/{task_id}",
            web::get().to(recovery::status),
        );
}

/// The answer for paths and methods the API does not have, in the API's error shape.
pub async fn not_found() -> HttpResponse {
    HttpResponse::NotFound().json(serde_json::json!({
        "code": "NOT_FOUND",
        "message": "no such route",
    }))
}
