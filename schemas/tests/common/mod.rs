//! Records shared by the crate's tests.

use erp_schemas::core_event::{
    CoreEvent, Envelope, INBOUND_EVENT_MAPPED, INBOUND_EVENT_MAPPED_VERSION, InboundEventMapped,
};
use serde_json::{Value, json};

/// An `InboundEventMapped` core event as the processor writes it, with every part of a mapping
/// result filled: relations, pricing, a delete, readings, prune scopes, a warning.
pub fn mapped_event() -> Value {
    let body = InboundEventMapped {
        integration_id: "i".into(),
        use_case_id: "u".into(),
        use_case_slug: Some("contacts".into()),
        inbound_event_id: "evt_1".into(),
        correlation_id: "c".into(),
        deduplication_id: Some("d".into()),
        event_timestamp: "2025-01-15T10:00:00Z".into(),
        entity_updates: vec![
            json!({"entity_slug": "contact", "unique_identifiers": {"customer_number": "1"},
                   "attributes": {"email": [{"email": "a@b.de", "_tags": ["Primary"]}], "n": 1.5, "big": 12345678901234_i64, "x": null,
                                  "billing_account": {"$relation": {"_set": [{"$entity_unique_ids": {"external_id": "BA"}, "_schema": "billing_account"}]}}},
                   "mode": "upsert", "pricing": {"config": {}, "data": [{"q": 1}]}}),
            json!({"entity_slug": "meter", "unique_identifiers": {"meter_number": "M"}, "attributes": {}, "mode": "delete"}),
        ],
        meter_readings_updates: vec![
            json!({"meter": {"$entity_unique_ids": {"meter_number": "M"}}, "meter_counter": {"$entity_unique_ids": {"obis_number": "1.8.0"}},
            "attributes": {"external_id": "R", "timestamp": "2025-01-15", "source": "ERP", "value": 12345.6}, "mode": "upsert"}),
        ],
        prune_scope_updates: vec![
            json!({"entity_slug": "billing_event", "scope": {"scope_mode": "query", "query": {"type": "INVOICE"}},
            "keep_unique_ids": [{"external_id": "a"}], "deletion_mode": "purge"}),
        ],
        meter_readings_prune_scope_updates: vec![
            json!({"meter": {"$entity_unique_ids": {"meter_number": "M"}}, "keep_external_ids": ["R"], "source": "ERP"}),
        ],
        warnings: vec![json!({"entity_schema": "contact", "field": "email", "message": "m"})],
    };
    let event = CoreEvent {
        envelope: Envelope {
            _org_id: "o".into(),
            _event_time: "2025-01-15T10:00:00.000Z".into(),
            _event_id: "01JHG7Y8Q3Z6K2M4N5P6R7S8T9".into(),
            _event_name: INBOUND_EVENT_MAPPED.into(),
            _event_version: INBOUND_EVENT_MAPPED_VERSION.into(),
            _event_source: Some("erp-toolkit.processor".into()),
            _ack_id: "3fa85f64-5717-4562-b3fc-2c963f66afa6".into(),
            _trigger_source_type: Some("api".into()),
            _trigger_source: Some("i".into()),
        },
        body: serde_json::to_value(body)
            .ok()
            .and_then(|v| v.as_object().cloned())
            .unwrap_or_default(),
    };
    serde_json::to_value(event).expect("serialises")
}
