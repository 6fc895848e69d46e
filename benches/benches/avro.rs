//! The wire formats of `erp.core.events`, per core event, against JSON in the same run:
//!
//! - `json`: what the processor writes today (`serde_json::to_vec`) and what a consumer reads
//!   (`serde_json::from_slice`): the baseline;
//! - `avro`: Confluent-framed Avro (`AvroRecord::encode`) and a consumer that reads it through
//!   the writer schema its id names (`avro::read_record`);
//! - `avro_to_json_text`: as `avro`, then the JSON text our own consumers hand to their stages
//!   (`erp_runtime::wire::Wire::normalise` does this during a migration).
//!
//! The events are the meter-reading workload as the processor maps it (10 attributes), and the
//! rich `InboundEventMapped` of every kind of update. Record sizes are printed once.
//!
//! `cargo bench -p erp-benches --bench avro`

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};

use erp_schemas::avro::{AvroRecord, read_record};
use erp_schemas::registry::{Registry, SchemaRequest};

/// A core event of the meter-reading workload, as the processor writes it.
fn meter_reading_event(n: usize) -> Value {
    json!({
        "_org_id": "utility-1", "_event_time": "2025-01-15T10:00:00.123Z",
        "_event_id": "01JHG7Y8Q3Z6K2M4N5P6R7S8T9", "_event_name": "InboundEventMapped",
        "_event_version": "1.0", "_event_source": "erp-toolkit.processor",
        "_ack_id": "3fa85f64-5717-4562-b3fc-2c963f66afa6", "_trigger_source_type": "api",
        "_trigger_source": "integration-1",
        "integration_id": "integration-1", "use_case_id": "use-case-1",
        "use_case_slug": "meter-readings", "inbound_event_id": format!("evt_{n:012}"),
        "correlation_id": "2b1c7a4e-8f3d-4e21-9a6b-5c0d1e2f3a4b",
        "deduplication_id": format!("reading-{n}"), "event_timestamp": "2025-01-15T00:00:00Z",
        "entity_updates": [{
            "entity_slug": "meter",
            "unique_identifiers": {"meter_number": format!("1ESY{:08}", n % 5000)},
            "attributes": {
                "meter_number": format!("1ESY{:08}", n % 5000), "ma_lo_id": format!("5{:010}", n % 5000),
                "me_lo_id": format!("DE00{:029}", n % 5000), "last_reading": 10_000.5 + n as f64,
                "last_reading_at": "2025-01-15T00:00:00Z", "obis_number": "1-1:1.8.0",
                "unit": "kWh", "status": "valid", "sector": "power", "source": "ERP"
            },
            "mode": "upsert"
        }],
        "meter_readings_updates": [], "prune_scope_updates": [],
        "meter_readings_prune_scope_updates": [], "warnings": []
    })
}

/// A registry holding the core event schema, and its id.
fn registry() -> (Registry, u32) {
    let mut registry = Registry::new();
    let registration = registry
        .register(
            "erp.core.events-value",
            &SchemaRequest::avro(AvroRecord::CoreEvent.schema_text()),
        )
        .expect("registers");
    for record in &registration.records {
        registry.apply(record);
    }
    (registry, registration.id)
}

fn codec(c: &mut Criterion) {
    let record = AvroRecord::CoreEvent;
    let (registry, id) = registry();
    let event = meter_reading_event(42);
    let json_bytes = serde_json::to_vec(&event).expect("JSON");
    let avro_bytes = record.encode(id, &event).expect("Avro");
    assert_eq!(
        read_record(record, &avro_bytes, &registry).expect("reads"),
        event,
        "Avro round-trips the event"
    );
    println!(
        "core event (meter reading): JSON {} bytes, Avro {} bytes ({:.2} of JSON)",
        json_bytes.len(),
        avro_bytes.len(),
        avro_bytes.len() as f64 / json_bytes.len() as f64
    );

    let mut group = c.benchmark_group("core_event_encode_decode");
    group.bench_function("json", |b| {
        b.iter(|| {
            let bytes = serde_json::to_vec(&event).expect("encodes");
            serde_json::from_slice::<Value>(&bytes).expect("decodes")
        })
    });
    group.bench_function("avro", |b| {
        b.iter(|| {
            let bytes = record.encode(id, &event).expect("encodes");
            read_record(record, &bytes, &registry).expect("decodes")
        })
    });
    group.bench_function("avro_to_json_text", |b| {
        b.iter(|| {
            let bytes = record.encode(id, &event).expect("encodes");
            let value = read_record(record, &bytes, &registry).expect("decodes");
            serde_json::to_vec(&value).expect("JSON text")
        })
    });
    group.finish();

    let mut group = c.benchmark_group("core_event_encode");
    group.bench_function("json", |b| {
        b.iter(|| serde_json::to_vec(&event).expect("encodes"))
    });
    group.bench_function("avro", |b| {
        b.iter(|| record.encode(id, &event).expect("encodes"))
    });
    group.finish();

    let mut group = c.benchmark_group("core_event_decode");
    group.bench_function("json", |b| {
        b.iter(|| serde_json::from_slice::<Value>(&json_bytes).expect("decodes"))
    });
    group.bench_function("avro", |b| {
        b.iter(|| read_record(record, &avro_bytes, &registry).expect("decodes"))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).sample_size(50);
    targets = codec
}
criterion_main!(benches);
