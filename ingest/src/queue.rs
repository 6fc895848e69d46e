//! Writing accepted events to Kafka and answering with per-event results, shared by the ERP
//! ingest and the platform events endpoint: every event is handed to the producer in request
//! order, the answer waits for each acknowledgement, and if any event could not be queued the
//! answer is 503 `QUEUE_UNAVAILABLE` with all results (events with a `deduplication_id` can be
//! resent safely; the processor drops the copies) and `Retry-After`. The answer never waits
//! longer than the produce timeout: with the broker unreachable a client hears 503 within
//! seconds instead of hanging on the producer.

use actix_web::http::header::{HeaderValue, RETRY_AFTER};
use actix_web::{HttpResponse, ResponseError};
use serde_json::{Value, json};

use erp_runtime::kafka;

use crate::state::IngestState;
use erp_http::ApiError;

/// What a client is asked to wait before resending after `QUEUE_UNAVAILABLE`.
pub const RETRY_AFTER_SECS: u64 = 5;

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
    let deadline = tokio::time::Instant::now() + state.produce_timeout;
    let timed_out = || {
        erp_runtime::RuntimeError::Timeout(format!(
            "not acknowledged by Kafka within {} ms (it may still be written: resend with the \
             same deduplication_id)",
            state.produce_timeout.as_millis()
        ))
    };
    let producer = state.producer.get();
    let mut pending = Vec::with_capacity(events.len());
    for mut event in events {
        // JSON unless the topic is written as Avro (then framed with our schema's id).
        let encoded = match state.wire.encode_json("event", topic, &event.bytes).await {
            Ok(std::borrow::Cow::Borrowed(_)) => None,
            Ok(std::borrow::Cow::Owned(bytes)) => Some(bytes),
            Err(error) => {
                return Err(ApiError::unavailable(
                    "QUEUE_UNAVAILABLE",
                    error.to_string(),
                ));
            }
        };
        if let Some(bytes) = encoded {
            event.bytes = bytes;
        }
        // A full producer queue (broker away) waits inside `enqueue`: bounded here.
        let delivery = tokio::time::timeout_at(
            deadline,
            kafka::enqueue(&producer, topic, &event.key, &event.bytes),
        )
        .await
        .unwrap_or_else(|_| Err(timed_out()));
        pending.push((event, delivery));
    }
    let mut results = Vec::with_capacity(pending.len());
    let mut failed = 0usize;
    for (event, delivery) in pending {
        let outcome = match delivery {
            Ok(delivery) => {
                tokio::time::timeout_at(deadline, kafka::await_deliveries(vec![delivery]))
                    .await
                    .unwrap_or_else(|_| Err(timed_out()))
            }
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
        // A producer in a fatal state refuses every record for good: the next request gets a
        // new one (these events are answered as not queued, so clients resend them).
        if state.producer.recover(&producer) {
            tracing::warn!("the ingest's producer was replaced after a fatal error");
        }
        let error = ApiError::unavailable(
            "QUEUE_UNAVAILABLE",
            format!("{failed} of {} events could not be queued", results.len()),
        )
        .with_extra(json!({"results": results}));
        let mut response = error.error_response();
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        return Ok(response);
    }
    Ok(HttpResponse::Ok().json(json!({"results": results})))
}
