//! The payload limits at the door: every event of a request is checked against the deployment's
//! [`PayloadLimits`] before anything is queued, so a document the processor would refuse (or
//! that could hurt it) never reaches Kafka. A request is validated as a whole: one violating
//! event answers 400 `PAYLOAD_LIMIT_EXCEEDED` naming the event and the limit.

use erp_http::ApiError;
use erp_schemas::limits::{LimitExceeded, PayloadLimits};

use erp_schemas::inbound::PayloadFormat;

/// Checks the payload of every event of a validated request, in request order.
pub fn check_events<'a>(
    events: impl IntoIterator<Item = (PayloadFormat, &'a str)>,
    limits: &PayloadLimits,
) -> Result<(), ApiError> {
    for (index, (format, payload)) in events.into_iter().enumerate() {
        erp_mapping::limits::check(format, payload, limits)
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
