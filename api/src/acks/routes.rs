//! `POST /v1/erp/tracking/acknowledgement`: the ERP side confirms an outbound message.

use actix_web::{HttpResponse, web};
use serde_json::json;

use erp_http::ApiError;
use erp_http::auth::Caller;
use erp_http::body::{object, opt_string, read_json, req_string};

use crate::acks::tracker::Acknowledged;
use crate::state::ApiState;

/// `POST /v1/erp/tracking/acknowledgement` — body `{ack_id, status?}`; `status` is not in the
/// OpenAPI document but epilot's documented example sends it (`processed`): it is recorded.
pub async fn acknowledge(
    state: web::Data<ApiState>,
    caller: Caller,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_json(body, state.body_limit).await?;
    let fields = object(&body, "the body")?;
    let ack_id = req_string(fields, "", "ack_id", 1, 256)?.to_owned();
    let status = opt_string(fields, "", "status", 1, 64)?;
    let Some(tracker) = &state.acks else {
        return Err(ApiError::not_found(
            "ACK_NOT_FOUND",
            format!("no tracking record for ack_id {ack_id}"),
        ));
    };
    match tracker
        .acknowledge(&state.producer, &caller.org_id, &ack_id, status)
        .await?
    {
        Acknowledged::Confirmed { .. } => Ok(HttpResponse::Ok().json(json!({
            "message": format!("acknowledged {ack_id}"),
        }))),
        Acknowledged::Unknown => Err(ApiError::not_found(
            "ACK_NOT_FOUND",
            format!(
                "no tracking record for ack_id {ack_id}: unknown, already acknowledged or expired"
            ),
        )),
    }
}
