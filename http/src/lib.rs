//! The HTTP conventions of erp-toolkit's services (ingest and the control plane), in one place
//! so both answer the same way: who may call what, how errors look (epilot's `{code, message}`),
//! how much an organisation may send, how request bodies are read.

/// Bearer tokens, permissions and the one route → permission table of every service.
pub mod auth;
/// Reading and checking request bodies.
pub mod body;
/// The crate's error type: epilot's error shape with its status.
pub mod error;
/// Counters of refused requests.
pub mod metrics;
/// The per-organisation request budget.
pub mod rate_limit;

use actix_web::HttpResponse;

pub use auth::{Access, Caller};
pub use error::ApiError;

/// The answer for paths and methods no service has, in the API's error shape.
pub async fn not_found() -> HttpResponse {
    HttpResponse::NotFound().json(serde_json::json!({
        "code": "NOT_FOUND",
        "message": "no such route",
    }))
}
