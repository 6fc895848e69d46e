//! The meter-reading workload: what a utility's middleware sends most.

use serde_json::{Value, json};

/// A 10-field inbound mapping of a meter reading onto a `meter` entity.
pub fn meter_reading_mapping() -> Value {
    json!({"entities": [{
        "entity_schema": "meter",
        "unique_ids": ["meter_number"],
        "fields": [
            {"attribute": "meter_number", "field": "meterId"},
            {"attribute": "ma_lo_id", "field": "$.location.maLo"},
            {"attribute": "me_lo_id", "field": "$.location.meLo"},
            {"attribute": "last_reading", "jsonataExpression": "$number(reading.value)"},
            {"attribute": "last_reading_at", "field": "$.reading.readAt"},
            {"attribute": "obis_number", "field": "$.reading.obis"},
            {"attribute": "unit", "jsonataExpression": "$lowercase(reading.unit) = 'kwh' ? 'kWh' : reading.unit"},
            {"attribute": "status", "jsonataExpression": "reading.status = '00' ? 'valid' : 'implausible'"},
            {"attribute": "sector", "constant": "power"},
            {"attribute": "source", "constant": "ERP"}
        ]
    }]})
}

/// The payload of reading `n`.
pub fn meter_reading(n: usize) -> Value {
    json!({
        "meterId": format!("1ESY{:08}", n % 5000),
        "location": {"maLo": format!("5{:010}", n % 5000), "meLo": format!("DE00{:029}", n % 5000)},
        "reading": {"value": format!("{}.{}", 10_000 + n, n % 10), "readAt": "2025-01-15T00:00:00Z",
                    "obis": "1-1:1.8.0", "unit": "KWH", "status": if n.is_multiple_of(50) { "99" } else { "00" }}
    })
}

/// An ingest event of reading `n`, deduplicated by its number.
pub fn meter_reading_event(n: usize) -> Value {
    json!({"use_case_slug": "meter-readings", "timestamp": "2025-01-15T00:00:00Z", "format": "json",
           "payload": meter_reading(n).to_string(), "deduplication_id": format!("reading-{n}")})
}
