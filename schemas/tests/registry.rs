//! The registry state machine: Confluent's answers and error codes, idempotence, compatibility
//! levels, soft and hard deletes, and a state rebuilt from its records answering the same.

use erp_schemas::registry::{
    CompatibilityLevel, ConfigRequest, Registry, RegistryError, RegistryRecord, SchemaReference,
    SchemaRequest,
};
use serde_json::json;

const V1: &str = r#"{"type": "record", "name": "Reading", "namespace": "t", "fields": [{"name": "value", "type": "double"}]}"#;
/// V1 plus an optional field: BACKWARD and FORWARD compatible.
const V2: &str = r#"{"type": "record", "name": "Reading", "namespace": "t", "fields": [{"name": "value", "type": "double"}, {"name": "unit", "type": ["null", "string"], "default": null}]}"#;
/// V1 plus a field without a default: new readers cannot read old data.
const BREAKING: &str = r#"{"type": "record", "name": "Reading", "namespace": "t", "fields": [{"name": "value", "type": "double"}, {"name": "meter", "type": "string"}]}"#;

/// Applies records the way a host does: through their Kafka key/value bytes, tombstones included.
fn apply(registry: &mut Registry, records: &[RegistryRecord]) {
    for record in records {
        let key = record.key().to_bytes();
        let value = record.to_value_bytes();
        let read = RegistryRecord::from_kafka(&key, value.as_deref()).expect("reads back");
        if let Some(read) = read {
            registry.apply(&read);
        }
    }
}

/// Registers and applies; the id and version.
fn register(
    registry: &mut Registry,
    subject: &str,
    schema: &str,
) -> Result<(u32, u32), RegistryError> {
    let registration = registry.register(subject, &SchemaRequest::avro(schema))?;
    apply(registry, &registration.records);
    Ok((registration.id, registration.version))
}

fn code<T>(result: Result<T, RegistryError>) -> u32 {
    match result {
        Ok(_) => 0,
        Err(e) => e.error_code(),
    }
}

#[test]
fn registration_is_idempotent_and_ids_are_shared_across_subjects() {
    let mut registry = Registry::new();
    assert_eq!(register(&mut registry, "a-value", V1), Ok((1, 1)));
    let again = registry
        .register("a-value", &SchemaRequest::avro(V1))
        .expect("registers");
    assert_eq!((again.id, again.version, again.records.len()), (1, 1, 0));
    // Whitespace and key order do not make another schema.
    let reformatted = r#"{ "namespace": "t", "name": "Reading", "type": "record",
        "fields": [ { "type": "double", "name": "value" } ] }"#;
    assert_eq!(register(&mut registry, "a-value", reformatted), Ok((1, 1)));
    assert_eq!(register(&mut registry, "b-value", V1), Ok((1, 1)));
    assert_eq!(register(&mut registry, "a-value", V2), Ok((2, 2)));
    assert_eq!(registry.subjects(false, None), ["a-value", "b-value"]);
    assert_eq!(registry.subjects(false, Some("b")), ["b-value"]);
    assert_eq!(registry.versions("a-value", false), Ok(vec![1, 2]));
    let latest = registry
        .version("a-value", "latest", false)
        .expect("latest");
    assert_eq!((latest.version, latest.id), (2, 2));
    assert_eq!(
        registry.version("a-value", "-1", false).map(|v| v.version),
        Ok(2)
    );
    assert_eq!(
        latest.to_json(),
        json!({"subject": "a-value", "version": 2, "id": 2, "schema": latest.schema})
    );
    assert_eq!(
        registry
            .schema_by_id(1)
            .map(|s| s.to_json()["schema"].is_string()),
        Ok(true)
    );
    assert_eq!(
        registry.versions_of_id(1),
        [("a-value".to_owned(), 1), ("b-value".to_owned(), 1)]
    );
    assert_eq!(again.to_json(), json!({"id": 1}));
}

#[test]
fn not_found_and_invalid_requests_answer_confluents_codes() {
    let mut registry = Registry::new();
    register(&mut registry, "a-value", V1).expect("registers");
    assert_eq!(code(registry.versions("nope", false)), 40401);
    assert_eq!(code(registry.version("nope", "1", false)), 40401);
    assert_eq!(code(registry.version("a-value", "7", false)), 40402);
    assert_eq!(code(registry.schema_by_id(99)), 40403);
    for bad in ["0", "x", "1.5", "-2", "2147483648"] {
        assert_eq!(
            code(registry.version("a-value", bad, false)),
            42202,
            "{bad}"
        );
    }
    assert_eq!(
        code(registry.register("a-value", &SchemaRequest::avro("{not json"))),
        42201
    );
    assert_eq!(
        code(registry.register("a-value", &SchemaRequest::avro(r#"{"type": "recrod"}"#))),
        42201
    );
    let json_schema = SchemaRequest {
        schema: "{}".into(),
        schema_type: Some("JSON".into()),
        references: vec![],
    };
    assert_eq!(code(registry.register("a-value", &json_schema)), 42201);
    assert_eq!(
        code(registry.lookup("a-value", &SchemaRequest::avro(V2), false)),
        40403
    );
    assert_eq!(
        code(registry.lookup("nope", &SchemaRequest::avro(V1), false)),
        40401
    );
    let found = registry
        .lookup("a-value", &SchemaRequest::avro(V1), false)
        .expect("found");
    assert_eq!((found.id, found.version), (1, 1));
    let unresolved = SchemaRequest {
        schema: V1.into(),
        schema_type: Some("AVRO".into()),
        references: vec![SchemaReference {
            name: "t.Unit".into(),
            subject: "units".into(),
            version: 1,
        }],
    };
    assert_eq!(code(registry.register("a-value", &unresolved)), 42201);
}

#[test]
fn an_incompatible_schema_answers_409_under_the_subjects_level() {
    let mut registry = Registry::new();
    register(&mut registry, "a-value", V1).expect("registers");
    let refused = registry.register("a-value", &SchemaRequest::avro(BREAKING));
    assert_eq!(code(refused.clone()), 409);
    let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.starts_with(
            "Schema being registered is incompatible with an earlier schema for subject \"a-value\""
        ),
        "{message}"
    );
    assert!(message.contains("meter"), "{message}");
    let answer = registry
        .test_compatibility("a-value", None, &SchemaRequest::avro(BREAKING))
        .expect("answers");
    assert!(!answer.is_compatible);
    assert_eq!(answer.to_json(false), json!({"is_compatible": false}));
    assert_eq!(
        answer.to_json(true)["messages"].as_array().map(Vec::len),
        Some(1)
    );
    let against_one = registry
        .test_compatibility("a-value", Some("latest"), &SchemaRequest::avro(V2))
        .expect("answers");
    assert!(against_one.is_compatible);
    assert_eq!(
        code(registry.test_compatibility("a-value", Some("3"), &SchemaRequest::avro(V2))),
        40402
    );
    assert_eq!(
        code(registry.test_compatibility("nope", Some("1"), &SchemaRequest::avro(V2))),
        40401
    );
    assert!(
        registry
            .test_compatibility("nope", None, &SchemaRequest::avro(V2))
            .expect("answers")
            .is_compatible
    );
    // FORWARD takes what BACKWARD refuses here; NONE takes anything.
    let record = registry.set_config(Some("a-value"), CompatibilityLevel::Forward);
    apply(&mut registry, &[record]);
    assert_eq!(register(&mut registry, "a-value", BREAKING), Ok((2, 2)));
    let record = registry.set_config(Some("a-value"), CompatibilityLevel::None);
    apply(&mut registry, &[record]);
    let unrelated = r#"{"type": "record", "name": "Reading", "namespace": "t", "fields": [{"name": "value", "type": "string"}]}"#;
    assert_eq!(register(&mut registry, "a-value", unrelated), Ok((3, 3)));
}

#[test]
fn transitive_levels_check_every_live_version() {
    let x1 = r#"{"type": "record", "name": "X", "fields": [{"name": "x", "type": "string"}]}"#;
    let x2 = r#"{"type": "record", "name": "X", "fields": []}"#;
    let x3 = r#"{"type": "record", "name": "X", "fields": [{"name": "x", "type": "long", "default": 0}]}"#;
    for (level, accepted) in [
        (CompatibilityLevel::Backward, true),
        (CompatibilityLevel::BackwardTransitive, false),
    ] {
        let mut registry = Registry::new();
        let record = registry.set_config(None, level);
        apply(&mut registry, &[record]);
        register(&mut registry, "x", x1).expect("v1");
        register(&mut registry, "x", x2).expect("v2");
        assert_eq!(
            register(&mut registry, "x", x3).is_ok(),
            accepted,
            "{level}"
        );
    }
}

#[test]
fn configuration_follows_confluent() {
    let mut registry = Registry::new();
    assert_eq!(
        registry.config(None, false),
        Ok(CompatibilityLevel::Backward)
    );
    assert_eq!(code(registry.config(Some("a-value"), false)), 40408);
    assert_eq!(
        registry.config(Some("a-value"), true),
        Ok(CompatibilityLevel::Backward)
    );
    let request: ConfigRequest =
        serde_json::from_value(json!({"compatibility": "full_transitive", "normalize": true}))
            .expect("parses");
    let level = request.level().expect("valid");
    let record = registry.set_config(Some("a-value"), level);
    apply(&mut registry, &[record]);
    assert_eq!(
        registry.config(Some("a-value"), false),
        Ok(CompatibilityLevel::FullTransitive)
    );
    assert_eq!(
        registry.level_of("a-value"),
        CompatibilityLevel::FullTransitive
    );
    let older: ConfigRequest =
        serde_json::from_value(json!({"compatibilityLevel": "NONE"})).expect("parses");
    let record = registry.set_config(None, older.level().expect("valid"));
    apply(&mut registry, &[record]);
    assert_eq!(registry.level_of("b-value"), CompatibilityLevel::None);
    let bad: ConfigRequest =
        serde_json::from_value(json!({"compatibility": "SOMETIMES"})).expect("parses");
    assert_eq!(code(bad.level()), 42203);
    assert_eq!(code(ConfigRequest::default().level()), 42203);
    let (previous, record) = registry.delete_config(Some("a-value")).expect("deletes");
    assert_eq!(previous, CompatibilityLevel::FullTransitive);
    assert!(record.is_tombstone());
    apply(&mut registry, &[record]);
    assert_eq!(code(registry.config(Some("a-value"), false)), 40408);
    assert_eq!(code(registry.delete_config(Some("a-value"))), 40408);
    assert_eq!(
        erp_schemas::registry::config_json(CompatibilityLevel::Full),
        json!({"compatibilityLevel": "FULL"})
    );
    assert_eq!(
        erp_schemas::registry::config_update_json(CompatibilityLevel::Full),
        json!({"compatibility": "FULL"})
    );
}

#[test]
fn deletes_are_soft_first_then_permanent() {
    let mut registry = Registry::new();
    register(&mut registry, "a-value", V1).expect("v1");
    register(&mut registry, "a-value", V2).expect("v2");
    // A version: soft, then permanent; not permanent first, not soft twice.
    assert_eq!(code(registry.delete_version("a-value", "1", true)), 40407);
    let (deleted, records) = registry
        .delete_version("a-value", "1", false)
        .expect("soft");
    assert_eq!(deleted, 1);
    apply(&mut registry, &records);
    assert_eq!(registry.versions("a-value", false), Ok(vec![2]));
    assert_eq!(registry.versions("a-value", true), Ok(vec![1, 2]));
    assert_eq!(code(registry.version("a-value", "1", false)), 40402);
    assert_eq!(registry.version("a-value", "1", true).map(|v| v.id), Ok(1));
    // A soft-deleted schema still resolves by id: records written with it stay readable.
    assert!(registry.schema_by_id(1).is_ok());
    assert_eq!(
        code(registry.lookup("a-value", &SchemaRequest::avro(V1), false)),
        40403
    );
    assert_eq!(
        registry
            .lookup("a-value", &SchemaRequest::avro(V1), true)
            .map(|v| v.version),
        Ok(1)
    );
    assert_eq!(code(registry.delete_version("a-value", "1", false)), 40406);
    let (_, records) = registry
        .delete_version("a-value", "1", true)
        .expect("permanent");
    apply(&mut registry, &records);
    assert_eq!(registry.versions("a-value", true), Ok(vec![2]));
    assert_eq!(code(registry.schema_by_id(1)), 40403);
    // Registering V1 again: a new version after the highest, a new id (1 is never given again).
    assert_eq!(register(&mut registry, "a-value", V1), Ok((3, 3)));
    // The subject: soft, then permanent.
    assert_eq!(code(registry.delete_subject("a-value", true)), 40405);
    let (versions, records) = registry.delete_subject("a-value", false).expect("soft");
    assert_eq!(versions, [2, 3]);
    apply(&mut registry, &records);
    assert_eq!(registry.subjects(false, None), Vec::<String>::new());
    assert_eq!(registry.subjects(true, None), ["a-value"]);
    assert_eq!(code(registry.versions("a-value", false)), 40401);
    assert_eq!(code(registry.delete_subject("a-value", false)), 40404);
    // A soft-deleted subject takes a new registration, without compatibility with the deleted.
    let (_, records) = registry.delete_subject("a-value", true).expect("permanent");
    apply(&mut registry, &records);
    assert_eq!(code(registry.versions("a-value", true)), 40401);
    assert_eq!(registry.subjects(true, None), Vec::<String>::new());
    assert_eq!(register(&mut registry, "a-value", BREAKING), Ok((4, 1)));
}

#[test]
fn a_state_rebuilt_from_the_records_answers_the_same() {
    let mut registry = Registry::new();
    let mut log: Vec<RegistryRecord> = Vec::new();
    let mut run = |registry: &mut Registry, records: Vec<RegistryRecord>| {
        apply(registry, &records);
        log.extend(records);
    };
    let r = registry
        .register("a-value", &SchemaRequest::avro(V1))
        .expect("v1")
        .records;
    run(&mut registry, r);
    let r = registry
        .register("a-value", &SchemaRequest::avro(V2))
        .expect("v2")
        .records;
    run(&mut registry, r);
    let r = vec![registry.set_config(Some("a-value"), CompatibilityLevel::Full)];
    run(&mut registry, r);
    let r = registry
        .delete_version("a-value", "1", false)
        .expect("soft")
        .1;
    run(&mut registry, r);
    let r = registry
        .register("b-value", &SchemaRequest::avro(BREAKING))
        .expect("b")
        .records;
    run(&mut registry, r);
    // Compaction keeps the last record per key; a replica folds what is left, twice over.
    let mut compacted: Vec<RegistryRecord> = Vec::new();
    for record in &log {
        compacted.retain(|r| r.key() != record.key());
        compacted.push(record.clone());
    }
    let mut replica = Registry::new();
    apply(&mut replica, &compacted);
    apply(&mut replica, &compacted);
    for subject in ["a-value", "b-value"] {
        assert_eq!(
            replica.versions(subject, true),
            registry.versions(subject, true)
        );
        assert_eq!(
            replica.version(subject, "latest", false),
            registry.version(subject, "latest", false)
        );
        assert_eq!(replica.level_of(subject), registry.level_of(subject));
    }
    assert_eq!(replica.subjects(true, None), registry.subjects(true, None));
    assert_eq!(replica.schema_by_id(3), registry.schema_by_id(3));
    assert_eq!(
        replica
            .register(
                "c-value",
                &SchemaRequest::avro(r#"{"type": "record", "name": "C", "fields": []}"#)
            )
            .map(|r| r.id),
        Ok(4)
    );
}

#[test]
fn references_resolve_named_types_of_other_subjects() {
    let mut registry = Registry::new();
    let unit = r#"{"type": "enum", "name": "Unit", "namespace": "t", "symbols": ["kWh", "m3"]}"#;
    register(&mut registry, "t.Unit", unit).expect("enum");
    let reading = SchemaRequest {
        schema: r#"{"type": "record", "name": "R", "namespace": "t", "fields": [{"name": "unit", "type": "t.Unit"}]}"#.into(),
        schema_type: None,
        references: vec![SchemaReference { name: "t.Unit".into(), subject: "t.Unit".into(), version: 1 }],
    };
    let registration = registry.register("r-value", &reading).expect("registers");
    apply(&mut registry, &registration.records);
    let stored = registry.version("r-value", "1", false).expect("stored");
    assert_eq!(stored.references.len(), 1);
    assert_eq!(stored.to_json()["references"][0]["subject"], "t.Unit");
    assert_eq!(
        registry.lookup("r-value", &reading, false).map(|v| v.id),
        Ok(registration.id)
    );
}

#[test]
fn our_record_schemas_register_and_evolve_under_the_default_level() {
    use erp_schemas::avro::AvroRecord;
    use erp_schemas::topics::Topics;
    let mut registry = Registry::new();
    let topics = Topics::default();
    for (index, record) in AvroRecord::ALL.into_iter().enumerate() {
        let subject = record.subject(&topics);
        let text = record.schema_text();
        assert_eq!(
            register(&mut registry, &subject, text),
            Ok((index as u32 + 1, 1)),
            "{subject}"
        );
    }
    assert_eq!(
        registry.subjects(false, None),
        [
            "erp.core.events-value",
            "erp.inbound.events-value",
            "erp.platform.events-value"
        ]
    );
    // The stored text keeps our JSON-text markers, so a reader of the registry's schema knows them.
    let stored = registry
        .version("erp.core.events-value", "1", false)
        .expect("stored");
    assert!(
        stored.schema.contains("\"erp.json\":true"),
        "{}",
        stored.schema
    );
}
