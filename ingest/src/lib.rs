//! The inbound face of erp-toolkit: ERP events (`/v1`, `/v2`, `/v3/erp/updates/events`), platform
//! events (`POST /v1/events`) and the mapping simulation. Thin and stateless: it checks, maps
//! nothing, and queues what it accepts on Kafka; the control plane is `erp-api`.

/// `POST /v{1,2,3}/erp/updates/events`: ERP events, checked and queued.
pub mod events;
/// The payload limits checked on every accepted event.
pub mod limits;
/// The ingest counters.
pub mod metrics;
/// `POST /v1/events`: platform core events, checked against the catalog's schemas.
pub mod platform;
/// Queueing accepted events on Kafka, answering per event.
pub mod queue;
/// `POST /v{1,2}/erp/updates/mapping_simulation`: the mapping run without side effects.
pub mod simulation;
/// What the handlers can reach.
pub mod state;

use actix_web::web;

pub use state::IngestState;

/// Adds the ingest routes. Needs `web::Data<IngestState>` and `web::Data<erp_http::Access>` as app
/// data.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v3/erp/updates/events", web::post().to(events::post_v3))
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
        .route("/v1/events", web::post().to(platform::post));
}
