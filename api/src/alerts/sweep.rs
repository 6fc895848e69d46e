//! The sweep: every interval, each rule of each integration with notifications enabled is
//! evaluated on the monitoring store; a change of state is recorded in the history and, unless
//! muted or debounced, delivered as an `IntegrationAlert` core event — a signed, retried,
//! recorded webhook through the dispatcher, to every endpoint subscribed to it.

use std::time::Duration;

use rdkafka::producer::FutureProducer;
use serde_json::{Value, json};
use tracing::warn;

use erp_runtime::{ConfigView, Runtime};
use erp_schemas::timestamp::{format_millis, now_millis};

use super::rules::{Finding, Rule, Settings, evaluate, settings};
use crate::monitoring::counts::Window;
use crate::monitoring::store::{Store, StoreError};

/// The name of the core event an alert is delivered as.
pub const ALERT_EVENT: &str = "IntegrationAlert";

/// Runs the sweep every `every` for ever.
pub async fn run(
    runtime: Runtime,
    store: Store,
    view: ConfigView,
    producer: FutureProducer,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let integrations: Vec<(String, String, Settings)> = view
            .snapshot()
            .all_integrations()
            .filter_map(|i| {
                settings(&i.extra)
                    .filter(|s| s.enabled)
                    .map(|s| (i.org_id.clone(), i.id.clone(), s))
            })
            .collect();
        for (org_id, integration_id, settings) in integrations {
            if let Err(error) = sweep_one(
                &runtime,
                &store,
                &producer,
                &org_id,
                &integration_id,
                &settings,
            )
            .await
            {
                warn!(%error, %integration_id, "alert evaluation failed");
            }
        }
    }
}

/// A decision: what the history keeps.
struct Decision {
    kind: String,
    transition: &'static str,
    severity: &'static str,
    title: String,
    context: Value,
}

async fn sweep_one(
    runtime: &Runtime,
    store: &Store,
    producer: &FutureProducer,
    org_id: &str,
    integration_id: &str,
    settings: &Settings,
) -> Result<(), StoreError> {
    let now = now_millis();
    let states = store.rule_states(org_id, integration_id).await?;
    let recovery = settings
        .rules
        .iter()
        .any(|r| r.kind == "recovery" && r.enabled);
    let mut cells_by_window: std::collections::HashMap<i64, Vec<crate::monitoring::counts::Cell>> =
        std::collections::HashMap::new();
    for rule in settings.rules.iter().filter(|r| r.enabled) {
        let window = Window {
            org_id: org_id.to_owned(),
            integration_id: integration_id.to_owned(),
            from: now - rule.window_ms,
            to: now + 1,
            use_case_types: Vec::new(),
        };
        // Rules of one window read the same cells: read them once per sweep.
        let cells = match cells_by_window.get(&rule.window_ms) {
            Some(cells) => cells,
            None => {
                let read = store.cells(window).await?;
                cells_by_window.entry(rule.window_ms).or_insert(read)
            }
        };
        let Some(finding) = evaluate(settings, rule, cells) else {
            continue;
        };
        let mut state = states.get(&rule.id).cloned().unwrap_or_default();
        state.last_evaluated_ms = Some(now);
        let decision = match (state.alerting, finding.firing) {
            (false, true) => {
                state.alerting = true;
                state.last_fired_ms = Some(now);
                Some(decision(rule, &finding, "OK->ALERTING", finding.severity))
            }
            (true, false) => {
                state.alerting = false;
                state.last_cleared_ms = Some(now);
                recovery.then(|| {
                    let mut d = decision(rule, &finding, "ALERTING->OK", "info");
                    d.kind = "recovery".into();
                    d.title = format!("recovered: {}", finding.title);
                    d
                })
            }
            _ => None,
        };
        let history = match decision {
            None => None,
            Some(decision) => {
                let suppressed = if settings.mute_until.is_some_and(|until| until > now) {
                    Some("muted")
                } else if state
                    .last_notified_ms
                    .is_some_and(|at| rule.quiet_period_ms > 0 && now - at < rule.quiet_period_ms)
                {
                    Some("debounced")
                } else {
                    None
                };
                let id = erp_schemas::ids::new_event_id();
                let row = json!({
                    "id": id,
                    "type": decision.kind,
                    "state_transition": decision.transition,
                    "severity": decision.severity,
                    "title": decision.title,
                    "occurred_at": format_millis(now),
                    "notified": suppressed.is_none(),
                    "suppressed_reason": suppressed,
                    "recipients": [],
                    "context": decision.context,
                    "created_at": format_millis(now),
                });
                if suppressed.is_none() {
                    state.last_notified_ms = Some(now);
                    deliver(runtime, producer, org_id, integration_id, &row).await;
                }
                Some((id, decision.kind, now, row))
            }
        };
        store
            .save_rule(org_id, integration_id, &rule.id, state, history)
            .await?;
    }
    Ok(())
}

fn decision(
    rule: &Rule,
    finding: &Finding,
    transition: &'static str,
    severity: &'static str,
) -> Decision {
    Decision {
        kind: rule.kind.clone(),
        transition,
        severity,
        title: finding.title.clone(),
        context: json!({
            "rule_id": rule.id,
            "value": finding.value,
            "threshold": finding.threshold,
            "window_minutes": rule.window_ms / 60_000,
        }),
    }
}

/// Writes `row` as an `IntegrationAlert` core event for the dispatcher. A failure is logged:
/// the history row says it was meant to be notified.
pub async fn deliver(
    runtime: &Runtime,
    producer: &FutureProducer,
    org_id: &str,
    integration_id: &str,
    row: &Value,
) {
    let event_id = erp_schemas::ids::new_event_id();
    let event = json!({
        "_org_id": org_id,
        "_event_time": erp_schemas::timestamp::now_rfc3339(),
        "_event_id": event_id,
        "_event_name": ALERT_EVENT,
        "_event_version": "1.0",
        "_event_source": "erp-toolkit",
        "_ack_id": erp_schemas::ids::derived_uuid(&[&event_id, "ack"]),
        "integration_id": integration_id,
        "alert": row,
    });
    let topic = runtime.kafka.topics.core_events();
    let written = match runtime.kafka.wire.encode("alert", &topic, &event).await {
        Ok(bytes) => erp_runtime::kafka::send(producer, &topic, integration_id, &bytes)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(error) = written {
        warn!(%error, %integration_id, "alert not delivered to the dispatcher");
    }
}
