//! The payload limits at the door: every event of a request is checked against the deployment's
//! [`PayloadLimits`] before anything is queued, so a document the processor would refuse (or
//! that could hurt it) never reaches Kafka. A request is validated as a whole: one violating
//! event answers 400 `PAYLOAD_LIMIT_EXCEEDED` naming the event and the limit.

use erp_http::ApiError;
use erp_schemas::limits::{LimitExceeded, PayloadLimits};

use crate::events::RequestInput;

/// Checks every event's payload of a validated request.
pub fn check_request(request: &RequestInput, limits: &PayloadLimits) -> Result<(), ApiError> {
    for (index, event) in request.events.iter().enumerate() {
        erp_mapping::limits::check(event.format, &event.payload, limits)
            .map_err(|exceeded| refused(&format!("events[{index}].payload"), &exceeded))?;
    }
    Ok(())
}

/// The answer to a payload over a limit, naming where it was found.
pub fn refused(path: &str, exceeded: &LimitExceeded) -> ApiError {
    ApiError::bad_request_code(LimitExceeded::CODE, format!("{path}: {exceeded}")).with_extra(
        serde_json::json!({"limit": exceeded.limit.name(), "allowed": exceeded.allowed}),
    )
}
