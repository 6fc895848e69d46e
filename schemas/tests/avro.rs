//! The Avro codec of our records: JSON → Avro → JSON gives the record back, free-form parts as
//! JSON text, nothing dropped silently, Confluent framing, readers of both formats, and schema
//! resolution between compatible versions.

use apache_avro::Schema;
use erp_schemas::SchemaError;
use erp_schemas::avro::{AvroRecord, WriterSchemas, read_record};
use erp_schemas::core_event::CoreEvent;
use erp_schemas::inbound::{InboundEventRecord, PayloadFormat};
use erp_schemas::wire::{self, Framed};
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use std::sync::Arc;

mod common;

use common::mapped_event;

fn round_trip(record: AvroRecord, value: &Value) -> Value {
    let datum = record.encode_datum(value).unwrap_or_else(|e| panic!("{e}"));
    let writer = record.schema().expect("parses");
    record
        .decode_datum(writer, &datum)
        .unwrap_or_else(|e| panic!("{e}"))
}

fn inbound(all: bool) -> InboundEventRecord {
    let some = |s: &str| all.then(|| s.to_owned());
    InboundEventRecord {
        event_id: "evt_01JHG7Y8Q3Z6K2M4N5P6R7S8T9".into(),
        org_id: "org".into(),
        integration_id: "int".into(),
        api_version: "v3".into(),
        app_id: some("app"),
        component_id: some("component"),
        meta: all.then(|| {
            Map::from_iter([
                ("correlation_id".to_owned(), json!("c")),
                ("n".to_owned(), json!([1, 2.5, null])),
            ])
        }),
        received_at: 1_736_935_200_123,
        correlation_id: "c".into(),
        group_id: some("g"),
        use_case_slug: some("contacts"),
        event_name: some("contact.updated"),
        event_type: some("UPDATE"),
        timestamp: "2025-01-15T10:00:00+01:00".into(),
        format: if all {
            PayloadFormat::Xml
        } else {
            PayloadFormat::Json
        },
        payload: "<a>ü</a>".into(),
        deduplication_id: some("d"),
        replay_of: some("evt_0"),
    }
}

#[test]
fn every_field_of_an_inbound_record_survives() {
    for all in [true, false] {
        let record = inbound(all);
        let json = serde_json::to_value(&record).expect("serialises");
        let back = round_trip(AvroRecord::InboundEvent, &json);
        assert_eq!(back, json);
        assert_eq!(
            serde_json::from_value::<InboundEventRecord>(back).expect("a record"),
            record
        );
    }
}

#[test]
fn an_inbound_event_mapped_survives_with_its_free_form_parts() {
    let event = mapped_event();
    let back = round_trip(AvroRecord::CoreEvent, &event);
    assert_eq!(back, event);
    let typed: CoreEvent = serde_json::from_value(back).expect("a core event");
    assert_eq!(typed.envelope._event_name, "InboundEventMapped");
}

#[test]
fn outbound_messages_and_trigger_messages_survive() {
    // As the processor writes an outbound message: a JSON null payload stays a null payload.
    for payload in [
        json!({"acknowledgeId": "a", "value": "45.00"}),
        json!(null),
        json!([1, "x"]),
    ] {
        let message = json!({
            "_org_id": "o", "_event_time": "2025-01-15T10:00:00Z", "_ack_id": "3fa85f64-5717-4562-b3fc-2c963f66afa6",
            "_event_id": "01JHG7Y8Q3Z6K2M4N5P6R7S8T9", "_event_name": "InstallmentUpdated", "_event_version": "1.0",
            "_event_source": "erp-toolkit.processor",
            "integration_id": "i", "use_case_id": "u", "use_case_slug": "installments", "mapping_id": "m",
            "source_event_id": "e", "ack_tracking": true, "_delivery": {"type": "webhook", "webhook_id": "w"}, "payload": payload
        });
        assert_eq!(round_trip(AvroRecord::CoreEvent, &message), message);
    }
    // As the ingest's trigger writes one: no _ack_id, no version.
    let trigger = json!({"_event_id": "x", "_event_name": "FileCreated", "_event_time": "2025-01-15T10:00:00Z", "_org_id": "o",
        "_event_source": "erp-toolkit.trigger", "_trigger_source_type": "api", "_delivery": {"type": "webhook", "webhook_id": "w"},
        "payload": {"a": 1}});
    assert_eq!(round_trip(AvroRecord::CoreEvent, &trigger), trigger);
    // A field no typed field names travels in `extra`; a null optional field comes back absent.
    let mut open = trigger.clone();
    open["future_field"] = json!({"nested": [true]});
    open["use_case_slug"] = Value::Null;
    let back = round_trip(AvroRecord::CoreEvent, &open);
    open.as_object_mut().map(|m| m.remove("use_case_slug"));
    assert_eq!(back, open);
}

#[test]
fn platform_events_keep_their_body_as_json_text() {
    let event = json!({
        "_org_id": "123", "_event_time": "2025-01-15T10:00:00.000Z", "_event_id": "01JHG", "_event_name": "InstallmentUpdated",
        "_event_version": "1.0", "_ack_id": "3fa85f64-5717-4562-b3fc-2c963f66afa6", "_has_pending_changesets": true,
        "_changeset_edit_modes": ["approval"], "_changeset_attributes": ["installment_amount"],
        "_changeset_edit_modes_by_attribute": {"installment_amount": "approval"},
        "operation": "updateEntity", "trigger_entity": "3fa85f64-5717-4562-b3fc-2c963f66afa6",
        "contract": {"_schema": "contract", "installment_amount": 4500}, "customer": {"_schema": "contact"}
    });
    let record = AvroRecord::PlatformEvent;
    assert_eq!(round_trip(record, &event), event);
    let avro = record.avro_value(&event).expect("converts");
    let apache_avro::types::Value::Record(fields) = avro else {
        panic!("a record")
    };
    let body = fields
        .iter()
        .find(|(name, _)| name == "body")
        .map(|(_, v)| v.clone());
    let Some(apache_avro::types::Value::Union(_, text)) = body else {
        panic!("body is set")
    };
    let apache_avro::types::Value::String(text) = *text else {
        panic!("JSON text")
    };
    let parsed: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(
        parsed,
        json!({"contract": {"_schema": "contract", "installment_amount": 4500}, "customer": {"_schema": "contact"}})
    );
}

#[test]
fn what_does_not_fit_is_refused_with_its_place() {
    let mut record = serde_json::to_value(inbound(false)).expect("serialises");
    record["unknown"] = json!(1);
    let error = AvroRecord::InboundEvent
        .encode_datum(&record)
        .expect_err("no field for it");
    assert_eq!(
        error.to_string(),
        "erp_toolkit.InboundEvent: /unknown: erp_toolkit.InboundEvent has no field \"unknown\""
    );
    let mut record = serde_json::to_value(inbound(false)).expect("serialises");
    record["received_at"] = json!("yesterday");
    let error = AvroRecord::InboundEvent
        .encode_datum(&record)
        .expect_err("not a number");
    assert!(error.to_string().contains("/received_at"), "{error}");
    record.as_object_mut().map(|m| m.remove("received_at"));
    let error = AvroRecord::InboundEvent
        .encode_datum(&record)
        .expect_err("required");
    assert_eq!(
        error.to_string(),
        "erp_toolkit.InboundEvent: /received_at: is required"
    );
    let mut record = serde_json::to_value(inbound(false)).expect("serialises");
    record["format"] = json!("csv");
    assert!(AvroRecord::InboundEvent.encode_datum(&record).is_err());
    let mut event = mapped_event();
    event["entity_updates"][0]["extra_key"] = json!(1);
    let error = AvroRecord::CoreEvent
        .encode_datum(&event)
        .expect_err("closed record");
    assert!(
        error.to_string().contains("/entity_updates/0/extra_key"),
        "{error}"
    );
    // Bytes that are not a datum of the writer schema.
    let writer = AvroRecord::InboundEvent.schema().expect("parses");
    assert!(
        AvroRecord::InboundEvent
            .decode_datum(writer, &[0xff, 0xff])
            .is_err()
    );
}

#[test]
fn records_are_framed_for_confluent_and_read_in_either_format() {
    let record = AvroRecord::InboundEvent;
    let schemas = One(Arc::new(record.schema().expect("parses").clone()));
    let json = serde_json::to_value(inbound(true)).expect("serialises");
    let framed = record.encode(0x0102_0304, &json).expect("encodes");
    assert_eq!(&framed[..5], &[wire::MAGIC, 1, 2, 3, 4]);
    assert!(matches!(
        wire::sniff(&framed),
        Ok(Framed::Confluent {
            schema_id: 0x0102_0304,
            ..
        })
    ));
    assert_eq!(
        read_record(record, &framed, &schemas).expect("reads Avro"),
        json
    );
    let text = serde_json::to_vec(&json).expect("JSON");
    assert_eq!(
        read_record(record, &text, &schemas).expect("reads JSON"),
        json
    );
    assert!(matches!(
        read_record(record, &framed, &Nothing),
        Err(SchemaError::Wire(_))
    ));
    // Trailing bytes after the datum are an error, not ignored.
    let mut longer = framed.clone();
    longer.push(0);
    assert!(read_record(record, &longer, &schemas).is_err());
}

/// A registry that knows no id.
struct Nothing;
impl WriterSchemas for Nothing {
    fn writer_schema(&self, _id: u32) -> Option<Arc<Schema>> {
        None
    }
}

/// A writer schema of another version, served by "the registry".
struct One(Arc<Schema>);
impl WriterSchemas for One {
    fn writer_schema(&self, _id: u32) -> Option<Arc<Schema>> {
        Some(self.0.clone())
    }
}

#[test]
fn records_of_older_and_newer_compatible_schemas_are_read() {
    let current: Value =
        serde_json::from_str(AvroRecord::InboundEvent.schema_text()).expect("JSON");
    // An older writer without replay_of; a newer one with a field we do not know.
    let mut older = current.clone();
    if let Some(fields) = older["fields"].as_array_mut() {
        fields.retain(|f| f["name"] != "replay_of");
    }
    let mut newer = current.clone();
    if let Some(fields) = newer["fields"].as_array_mut() {
        fields.push(json!({"name": "priority", "type": ["null", "long"], "default": null}));
    }
    for (writer_json, drop_replay) in [(older, true), (newer, false)] {
        let writer = Schema::parse(&writer_json).expect("parses");
        let mut record = serde_json::to_value(inbound(true)).expect("serialises");
        if drop_replay {
            record.as_object_mut().map(|m| m.remove("replay_of"));
        }
        let mut avro = AvroRecord::InboundEvent
            .avro_value(&record)
            .expect("converts");
        // Re-shape the value for the writer schema: fields by name, the new one null.
        if let apache_avro::types::Value::Record(fields) = &mut avro {
            fields.retain(|(name, _)| !(drop_replay && name == "replay_of"));
            if !drop_replay {
                fields.push((
                    "priority".into(),
                    apache_avro::types::Value::Union(0, Box::new(apache_avro::types::Value::Null)),
                ));
            }
        }
        let datum = apache_avro::writer::datum::GenericDatumWriter::builder(&writer)
            .build()
            .and_then(|w| w.write_value_to_vec(avro))
            .expect("writes");
        let framed = wire::frame(7, &datum);
        let read = read_record(AvroRecord::InboundEvent, &framed, &One(Arc::new(writer)))
            .expect("resolves");
        assert_eq!(read, record);
    }
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1.0e12f64..1.0e12)
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map("[a-z$_]{1,6}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn any_json_in_free_form_parts_round_trips(attributes in prop::collection::btree_map("[a-z_]{1,8}", arbitrary_json(), 0..6),
                                               payload in arbitrary_json(), extra in arbitrary_json()) {
        let mut event = mapped_event();
        event["entity_updates"][0]["attributes"] = Value::Object(attributes.into_iter().collect());
        event["payload"] = payload;
        event["zz_extra"] = extra;
        prop_assert_eq!(round_trip(AvroRecord::CoreEvent, &event), event);
    }
}
