//! `GET /v1/integrations/{id}/outbound-status` (epilot `getOutboundStatus`): per outbound use
//! case, the webhooks its mappings deliver to and the conflicts that keep it from delivering,
//! derived from the configuration alone.
//!
//! This deployment has no per-event switch in an event catalog, so `eventEnabled` is `null`
//! (unknown) and the `event_*` conflicts never arise.

use actix_web::{HttpResponse, web};
use serde_json::{Value, json};

use erp_http::ApiError;
use erp_http::auth::Caller;

use crate::state::ApiState;

/// The webhook ids an outbound configuration's mappings deliver to, in order, each once.
fn webhook_ids(configuration: Option<&Value>) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    let mappings = configuration
        .and_then(|c| c.get("mappings"))
        .and_then(Value::as_array);
    for mapping in mappings.into_iter().flatten() {
        let delivery = &mapping["delivery"];
        if delivery["type"] == "webhook"
            && let Some(id) = delivery["webhook_id"].as_str().filter(|id| !id.is_empty())
            && !ids.iter().any(|known| known == id)
        {
            ids.push(id.to_owned());
        }
    }
    ids
}

/// `GET /v1/integrations/{id}/outbound-status`
pub async fn status(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let integration_id = path.into_inner();
    state.caller_integration(&caller, &integration_id)?;
    let snapshot = state.view().snapshot();
    let mut use_cases = Vec::new();
    for entry in snapshot.use_cases(&caller.org_id, &integration_id) {
        let uc = &entry.use_case;
        if uc.kind != "outbound" {
            continue;
        }
        let mut conflicts = Vec::new();
        let mut webhooks = Vec::new();
        let mut enabled_webhooks = 0;
        for id in webhook_ids(uc.configuration.as_ref()) {
            let found = snapshot.webhook(&caller.org_id, &id);
            let enabled = found.map(|w| w.webhook.enabled);
            if enabled == Some(true) {
                enabled_webhooks += 1;
                if !uc.enabled {
                    conflicts.push(json!({
                        "type": "webhook_enabled_while_disabled", "webhookId": id,
                        "message": format!(
                            "webhook {id} is enabled while the use case is disabled"
                        ),
                    }));
                }
            }
            webhooks.push(json!({
                "webhookId": id,
                "webhookName": found.map_or("", |w| w.webhook.name.as_str()),
                "enabled": enabled,
            }));
        }
        if uc.enabled && !webhooks.is_empty() && enabled_webhooks == 0 {
            conflicts.push(json!({
                "type": "all_webhooks_disabled",
                "message": "every webhook of the use case is disabled (or missing): nothing is delivered",
            }));
        }
        let status = if !conflicts.is_empty() {
            "conflict"
        } else if uc.enabled {
            "ok"
        } else {
            "disabled"
        };
        let mut row = json!({
            "useCaseId": uc.id,
            "name": uc.name,
            "useCaseEnabled": uc.enabled,
            "eventEnabled": null,
            "webhooks": webhooks,
            "status": status,
            "conflicts": conflicts,
        });
        if let Some(event) = uc
            .configuration
            .as_ref()
            .and_then(|c| c.get("event_catalog_event"))
            .and_then(Value::as_str)
        {
            row["eventCatalogEvent"] = json!(event);
        }
        use_cases.push(row);
    }
    Ok(HttpResponse::Ok().json(json!({"useCases": use_cases})))
}
