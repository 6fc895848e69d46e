//! Records read from `erp.platform.events` are checked against the core event catalog
//! (`erp_schemas::catalog::events()`) before any outbound use case sees them, so a platform that
//! writes to the topic directly gets the same contract as `POST /v1/events`. An invalid event
//! becomes error spans (one per outbound use case of its organisation subscribed to its name, so
//! each integration's monitoring shows it; one for the organisation when none is) and one dead
//! letter with its source coordinates; the partition moves on.

use serde_json::json;

use erp_runtime::config::UseCaseEntry;
use erp_schemas::catalog::EventCheckError;
use erp_schemas::dead_letter::{DeadLetter, SourceCoordinates};
use erp_schemas::ids::derived_uuid;
use erp_schemas::monitoring::{Level, MonitoringSpan};
use erp_schemas::timestamp::now_rfc3339;

use crate::outcome::PlatformHead;

/// The spans and the dead letter of an invalid platform event.
pub fn invalid_event_records(
    head: &PlatformHead,
    error: &EventCheckError,
    use_cases: &[Box<UseCaseEntry>],
    source: &SourceCoordinates,
    key: Option<&str>,
    value: &str,
) -> (Vec<MonitoringSpan>, DeadLetter) {
    let message = format!("platform event {}: {error}", head.event_name);
    let detail = json!({
        "event_name": head.event_name,
        "event_version": head.event_version,
        "violations": error.violations(),
        "source": source,
    });
    let span = |integration_id: &str, use_case_id: &str| MonitoringSpan {
        id: derived_uuid(&[&head.event_id, "processor", error.code(), use_case_id]),
        org_id: head.org_id.clone(),
        integration_id: integration_id.to_owned(),
        event_id: head.event_id.clone(),
        correlation_id: String::new(),
        use_case_id: use_case_id.to_owned(),
        use_case_type: "outbound".into(),
        level: Level::Error,
        code: error.code().to_owned(),
        message: message.clone(),
        detail: detail.clone(),
        created_at: now_rfc3339(),
    };
    let mut spans: Vec<MonitoringSpan> = use_cases
        .iter()
        .map(|entry| span(&entry.use_case.integration_id, &entry.use_case.id))
        .collect();
    if spans.is_empty() {
        spans.push(span("", ""));
    }
    let letter = DeadLetter {
        stage: "processor".into(),
        code: error.code().into(),
        reason: message,
        source: source.clone(),
        org_id: Some(head.org_id.clone()),
        integration_id: use_cases
            .first()
            .map(|entry| entry.use_case.integration_id.clone()),
        event_id: Some(head.event_id.clone()),
        webhook_id: None,
        key: key.map(str::to_owned),
        value: value.to_owned(),
        failed_at: now_rfc3339(),
    };
    (spans, letter)
}
