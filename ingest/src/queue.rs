//! Writing accepted events to Kafka and answering with per-event results, shared by the ERP
//! ingest and the platform events endpoint: every event is handed to the producer in request
//! order, the answer waits for each acknowledgement, and if any event could not be queued the
//! answer is 503 `QUEUE_UNAVAILABLE` with all results (events with a `deduplication_id` can be
//! resent safely; the processor drops the copies).

use actix_web::HttpResponse;
use serde_json::{Value, json};

use erp_runtime::kafka;

use crate::state::IngestState;
use erp_http::ApiError;

/// One event to write, with the result to answer once Kafka has it.
pub struct Queued {
    pub event_id: String,
    pub key: String,
    pub bytes: Vec<u8>,
    pub status: &'static str,
    pub message: String,
}

/// Writes `events` to `topic` and answers `{"results": [...]}`. `on_result` sees every result.
pub async fn queue(
    state: &IngestState,
    topic: &str,
    events: Vec<Queued>,
    mut on_result: impl FnMut(&Value),
) -> Result<HttpResponse, ApiError> {
    let mut pending = Vec::with_capacity(events.len());
    for event in events {
        let delivery = kafka::enqueue(&state.producer, topic, &event.key, &event.bytes).await;
        pending.push((event, delivery));
    }
    let mut results = Vec::with_capacity(pending.len());
    let mut failed = 0usize;
    for (event, delivery) in pending {
        let outcome = match delivery {
            Ok(delivery) => kafka::await_deliveries(vec![delivery]).await,
            Err(error) => Err(error),
        };
        let result = match outcome {
            Ok(()) => {
                json!({"event_id": event.event_id, "status": event.status, "message": event.message})
            }
            Err(error) => {
                failed += 1;
                tracing::error!(%error, event_id = event.event_id, "event could not be queued");
                json!({"event_id": event.event_id, "status": "error",
                       "message": format!("could not be queued: {error}")})
            }
        };
        on_result(&result);
        results.push(result);
    }
    if failed > 0 {
        return Err(ApiError::unavailable(
            "QUEUE_UNAVAILABLE",
            format!("{failed} of {} events could not be queued", results.len()),
        )
        .with_extra(json!({"results": results})));
    }
    Ok(HttpResponse::Ok().json(json!({"results": results})))
}
