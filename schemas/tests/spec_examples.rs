//! The examples of the spec (§4.3–§4.14, §6) pass the catalog; each invalid variant is refused
//! with the path of the offending value.

mod common;

use erp_schemas::catalog::{self, Checked, EventCheckError, EventVersion, check_mapping_output};
use serde_json::{Map, Value, json};

fn attributes(value: Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap_or_default()
}

/// The violation paths of an update of `slug`.
fn update_paths(slug: &str, value: Value) -> Vec<String> {
    catalog::entities()
        .check_update(slug, &attributes(value))
        .unwrap_or_else(|| panic!("{slug} is a core entity"))
        .into_iter()
        .map(|v| v.path)
        .collect()
}

fn reading_paths(value: Value) -> Vec<String> {
    catalog::entities()
        .meter_reading()
        .check_update(&attributes(value))
        .into_iter()
        .map(|v| v.path)
        .collect()
}

#[test]
fn the_spec_mapping_outputs_pass() {
    // §4.12: the canonical extraction output.
    let simulation = json!({
        "entity_updates": [{
            "entity_slug": "contact",
            "unique_identifiers": {"customer_number": "12345"},
            "attributes": {"customer_number": "12345", "first_name": "Anna",
                "billing_account": {"$relation": {"_set": [{"$entity_unique_ids": {"external_id": "BA-98765"},
                    "_schema": "billing_account", "_tags": ["PRIMARY"]}]}}},
            "mode": "upsert"}],
        "meter_readings_updates": [{
            "meter": {"$entity_unique_ids": {"external_id": "M-001"}},
            "meter_counter": {"$entity_unique_ids": {"external_id": "T1"}},
            "attributes": {"external_id": "R-001", "timestamp": "2025-01-15T10:00:00Z", "source": "ERP", "value": 12345.6},
            "mode": "upsert"}],
        "prune_scope_updates": [], "meter_readings_prune_scope_updates": [], "warnings": []
    });
    assert_eq!(check_mapping_output(&simulation), vec![]);
    // §4.14: contract with related entities; custom attributes (contract_type, tariff_name,
    // price_per_kwh, source; initial_reading and type on meter) pass as in epilot.
    assert_eq!(
        update_paths(
            "contract",
            json!({
                "contract_number": "CTR-2024-0001", "contract_type": "electricity", "start_date": "2024-02-01",
                "end_date": "2025-01-31", "status": "active", "tariff_name": "Basic Power", "price_per_kwh": 0.32,
                "source": "ERP",
                "customer": {"$relation": {"_set": [{"$entity_unique_ids": {"customer_number": "C-10042"}, "_schema": "contact"}]}},
                "meters": {"$relation": {"_set": [{"$entity_unique_ids": {"meter_number": "M-001234"}, "_schema": "meter"},
                                                   {"$entity_unique_ids": {"meter_number": "M-001235"}, "_schema": "meter"}]}}
            })
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        update_paths(
            "meter",
            json!({"meter_number": "M-001234", "type": "electricity", "location": "Basement", "initial_reading": 10000})
        ),
        Vec::<String>::new()
    );
    // §4.3, §4.11 and the real-world idioms: repeatable email/phone with tags, addresses,
    // SEPA payment, array operations, relation_ref.
    assert_eq!(
        update_paths(
            "contact",
            json!({
                "email": [{"_tags": ["Primary"], "email": "anna@example.com"}],
                "phone": [{"phone": "+491234567890"}],
                "address": [{"_tags": ["Lieferadresse"], "street": "Hauptstraße", "street_number": "12", "postal_code": "50668", "city": "Köln", "country": "DE"}],
                "payment": [{"type": "payment_sepa", "data": {"iban": "DE89370400440532013000", "bic_number": "DEUTDEFF", "bank_name": "Deutsche Bank", "fullname": "Anna Muster"}}],
                "_tags": {"_append": ["NEW_TAG"]},
                "salutation": "Ms. / Mrs.", "birthdate": "1990-01-15", "marketing_permission": false,
                "title": null
            })
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        update_paths(
            "contract",
            json!({
                "billing_address": {"$relation_ref": {"_set": [{"$entity_unique_ids": {"billing_account_number": "BA-1"},
                    "_schema": "billing_account", "path": "billing_address",
                    "value": {"attribute": "billing_address", "operation": "_set", "value": {"street": "Ring", "city": "Bonn"}}}]}},
                "payment": {"$relation_ref": [{"entity_id": "123e4567-e89b-12d3-a456-426614174000", "path": "payment_method", "_id": "abc123"}]},
                "installment_amount": 4500, "installment_amount_decimal": "45.00", "installment_amount_currency": "EUR",
                "billing_period": "monthly", "type": "recurring"
            })
        ),
        Vec::<String>::new()
    );
    // §4.6: billing events of a billing account.
    assert_eq!(
        update_paths(
            "billing_event",
            json!({"external_id": "002800699425-2025-08-15", "billing_account_number": "002800699425"})
        ),
        Vec::<String>::new()
    );
    // §4.7: meter readings (date-only timestamps, custom datapoints, empty reason).
    assert_eq!(
        reading_paths(
            json!({"external_id": "M-001234-2025-01-15", "timestamp": "2025-01-15", "value": 12345, "source": "ERP", "unit": "kWh", "consumption": 345, "reason": ""})
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        reading_paths(json!({"timestamp": "2025-01-15T10:00:00.000+01:00", "reason": null})),
        Vec::<String>::new()
    );
}

#[test]
fn invalid_entity_updates_are_refused_at_the_offending_value() {
    let cases = [
        (
            "contact",
            json!({"email": [{"_tags": ["Primary"]}]}),
            "/email/0/email",
        ),
        (
            "contact",
            json!({"email": [{"email": "not an address"}]}),
            "/email/0/email",
        ),
        ("contact", json!({"email": "anna@example.com"}), "/email"),
        (
            "contact",
            json!({"phone": [{"phone": 491234567890_u64}]}),
            "/phone/0/phone",
        ),
        ("contact", json!({"salutation": "Sir"}), "/salutation"),
        ("contact", json!({"birthdate": "15.01.1990"}), "/birthdate"),
        (
            "contact",
            json!({"_tags": {"_append": "NEW_TAG"}}),
            "/_tags/_append",
        ),
        (
            "contact",
            json!({"address": [{"postal_code": 50668}]}),
            "/address/0/postal_code",
        ),
        (
            "contact",
            json!({"payment": [{"type": "payment_paypal"}]}),
            "/payment/0/type",
        ),
        (
            "contact",
            json!({"marketing_permission": "yes"}),
            "/marketing_permission",
        ),
        ("contract", json!({"status": "running"}), "/status"),
        (
            "contract",
            json!({"installment_amount": "45,00"}),
            "/installment_amount",
        ),
        (
            "contract",
            json!({"customer": {"$relation": {"_set": [{"$entity_unique_ids": {"customer_number": "C-1"}}]}}}),
            "/customer/$relation/_set/0/_schema",
        ),
        (
            "contract",
            json!({"customer": {"$relation": {"_set": [{"$entity_unique_ids": {}, "_schema": "contact"}]}}}),
            "/customer/$relation/_set/0/$entity_unique_ids",
        ),
        (
            "contract",
            json!({"customer": {"$relation": {"_replace": []}}}),
            "/customer/$relation",
        ),
        (
            "contract",
            json!({"customer": {"$relation": [{"entity_id": "not-a-uuid"}]}}),
            "/customer/$relation/0/entity_id",
        ),
        (
            "contract",
            json!({"billing_address": {"$relation_ref": {"_set": [{"$entity_unique_ids": {"a": 1}, "_schema": "billing_account"}]}}}),
            "/billing_address/$relation_ref/_set/0/path",
        ),
        (
            "billing_account",
            json!({"billing_address": {"postal_code": 50668}}),
            "/billing_address/postal_code",
        ),
        ("billing_event", json!({"direction": "up"}), "/direction"),
        ("meter", json!({"meter_type": "analog"}), "/meter_type"),
        (
            "meter_counter",
            json!({"tariff_type": "HT"}),
            "/tariff_type",
        ),
        ("file", json!({"language": "fr"}), "/language"),
        ("order", json!({"dates": [{"_tags": []}]}), "/dates/0/value"),
        (
            "price",
            json!({"tiers": [{"up_to": "100"}]}),
            "/tiers/0/up_to",
        ),
        ("ticket", json!({"status": "Done"}), "/status"),
        (
            "portal_user",
            json!({"last_login": "yesterday"}),
            "/last_login",
        ),
        ("product", json!({"type": "bundle"}), "/type"),
        ("account", json!({"company_size": "10"}), "/company_size"),
    ];
    for (slug, update, path) in cases {
        let paths = update_paths(slug, update.clone());
        assert_eq!(paths, vec![path.to_owned()], "{slug} {update}");
    }
}

#[test]
fn invalid_meter_readings_are_refused_at_the_offending_value() {
    for (reading, path) in [
        (json!({"source": "SAP"}), "/source"),
        (json!({"timestamp": "15.01.2025"}), "/timestamp"),
        (json!({"timestamp": 1736899200000_u64}), "/timestamp"),
        (json!({"value": "12345,6"}), "/value"),
        (json!({"reason": "monthly_billing"}), "/reason"),
        (json!({"direction": "in"}), "/direction"),
        (json!({"metadata": {"batch": 7}}), "/metadata/batch"),
    ] {
        assert_eq!(
            reading_paths(reading.clone()),
            vec![path.to_owned()],
            "{reading}"
        );
    }
}

#[test]
fn mapping_output_violations_name_the_update_and_read_as_warnings() {
    let result = json!({
        "entity_updates": [
            {"entity_slug": "contact", "unique_identifiers": {}, "attributes": {"email": [{"email": "x"}]}, "mode": "upsert"},
            // Deletes only use their unique ids; custom schemas are nobody's to check.
            {"entity_slug": "contact", "unique_identifiers": {}, "attributes": {"email": 1}, "mode": "delete"},
            {"entity_slug": "opportunity", "unique_identifiers": {}, "attributes": {"email": 1}, "mode": "upsert"}
        ],
        "meter_readings_updates": [{"meter": {}, "attributes": {"source": "SAP"}, "mode": "upsert"}]
    });
    let violations = check_mapping_output(&result);
    let paths: Vec<&str> = violations.iter().map(|v| v.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/entity_updates/0/attributes/email/0/email",
            "/meter_readings_updates/0/attributes/source"
        ]
    );
    let warning = violations[0].to_warning();
    assert_eq!(warning["entity_schema"], "contact");
    assert_eq!(warning["field"], "email");
    let message = warning["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("schema violation at /email/0/email: "),
        "{message}"
    );
    // Messages never repeat the offending value.
    assert!(!message.contains("\"x\""), "{message}");
}

fn installment_updated() -> Value {
    json!({
        "_org_id": "123", "_event_time": "2025-01-15T10:00:00.000Z", "_event_id": "01JHG7Y8Q3Z6K2M4N5P6R7S8T9",
        "_event_name": "InstallmentUpdated", "_event_version": "1.0", "_event_source": "entity-api",
        "_ack_id": "3fa85f64-5717-4562-b3fc-2c963f66afa6", "_trigger_source_type": "api",
        "operation": "updateEntity", "activity_id": "01JHG7Y8Q3Z6K2M4N5P6R7S8TA", "activity_type": "EntityUpdated",
        "trigger_entity": "3fa85f64-5717-4562-b3fc-2c963f66afa6",
        "contract": {"_schema": "contract", "_id": "3fa85f64-5717-4562-b3fc-2c963f66afa6", "contract_number": "CTR-1",
                     "installment_amount": 4500, "installment_amount_decimal": "45.00", "status": "active"},
        "customer": {"_schema": "contact", "first_name": "Anna", "email": [{"email": "anna@example.com"}]}
    })
}

fn refusal_paths(event: &Value) -> Result<Vec<String>, EventCheckError> {
    match catalog::events().check(event) {
        Ok(_) => Ok(Vec::new()),
        Err(EventCheckError::Invalid { violations, .. }) => {
            Ok(violations.into_iter().map(|v| v.path).collect())
        }
        Err(other) => Err(other),
    }
}

#[test]
fn core_events_pass_and_invalid_variants_are_refused_at_the_offending_value() {
    let events = catalog::events();
    let event = installment_updated();
    let Ok(Checked::Catalog(schema)) = events.check(&event) else {
        panic!("InstallmentUpdated passes")
    };
    assert_eq!(
        (schema.name(), schema.version()),
        ("InstallmentUpdated", EventVersion::new(1, 0))
    );
    let variants: [(&str, Value, &str); 9] = [
        ("_event_time", json!("yesterday"), "/_event_time"),
        ("_ack_id", json!("ack-1"), "/_ack_id"),
        ("_event_version", json!("1"), "/_event_version"),
        ("operation", json!("createEntity"), "/operation"),
        ("trigger_entity", json!("C-1"), "/trigger_entity"),
        (
            "contract",
            json!({"_schema": "contract", "status": "running"}),
            "/contract/status",
        ),
        ("contract", json!({"status": "active"}), "/contract/_schema"),
        (
            "customer",
            json!({"_schema": "contact", "email": [{"email": 5}]}),
            "/customer/email/0/email",
        ),
        (
            "_has_pending_changesets",
            json!("yes"),
            "/_has_pending_changesets",
        ),
    ];
    for (key, value, path) in variants {
        let mut broken = event.clone();
        broken[key] = value;
        assert_eq!(refusal_paths(&broken), Ok(vec![path.to_owned()]), "{key}");
    }
    for (missing, path) in [
        ("_event_id", "/_event_id"),
        ("_org_id", "/_org_id"),
        ("trigger_entity", "/trigger_entity"),
    ] {
        let mut broken = event.clone();
        broken.as_object_mut().map(|m| m.remove(missing));
        assert_eq!(
            refusal_paths(&broken),
            Ok(vec![path.to_owned()]),
            "without {missing}"
        );
    }
    // MeterReadingAdded's own required fields, at 2.1 (and 2.0: the highest 2.x known).
    let reading = json!({"_org_id": "1", "_event_time": "2025-01-15T10:00:00Z", "_event_id": "e", "_event_name": "MeterReadingAdded",
                         "_event_version": "2.0", "source": "ECP"});
    assert_eq!(
        refusal_paths(&reading),
        Ok(vec!["/reading_date".to_owned()])
    );
}

#[test]
fn versions_and_names_are_looked_up_precisely() {
    let events = catalog::events();
    let mut event = installment_updated();
    event["_event_version"] = json!("2.0");
    let error = events
        .check(&event)
        .map(|_| ())
        .expect_err("no 2.x of InstallmentUpdated");
    assert_eq!(error.code(), "UNKNOWN_EVENT_VERSION");
    assert_eq!(
        error.to_string(),
        "InstallmentUpdated: no schema of major version 2 (_event_version 2.0); known: 1.0"
    );
    // A newer minor is checked against the highest minor known: minors only add.
    event["_event_version"] = json!("1.7");
    assert!(
        matches!(events.check(&event), Ok(Checked::Catalog(s)) if s.version() == EventVersion::new(1, 0))
    );
    // Without a version: the latest.
    event.as_object_mut().map(|m| m.remove("_event_version"));
    assert!(matches!(events.check(&event), Ok(Checked::Catalog(_))));
    assert_eq!(
        events.lookup("InstallmentUpdated", "one").map(|_| ()),
        Err(EventCheckError::InvalidVersion {
            name: "InstallmentUpdated".into(),
            version: "one".into()
        })
    );
    assert_eq!(
        events.versions("NoSuchEvent").map(|_| ()),
        Err(EventCheckError::UnknownEvent {
            name: "NoSuchEvent".into()
        })
    );
    // Custom events pass on their envelope; a broken envelope is refused for them too.
    let custom = json!({"_org_id": "1", "_event_time": "2025-01-15T10:00:00Z", "_event_id": "e", "_event_name": "contract.updated", "x": 1});
    assert!(matches!(events.check(&custom), Ok(Checked::Custom)));
    let mut broken = custom.clone();
    broken["_event_time"] = json!("");
    assert_eq!(refusal_paths(&broken), Ok(vec!["/_event_time".to_owned()]));
    assert_eq!(
        events.check(&json!([])).map(|_| ()),
        Err(EventCheckError::NotAnObject)
    );
}

#[test]
fn our_own_inbound_event_mapped_passes_its_schema() {
    let event = common::mapped_event();
    assert_eq!(refusal_paths(&event), Ok(vec![]));
    let mut broken = event.clone();
    broken["entity_updates"][0]["mode"] = json!("merge");
    assert_eq!(
        refusal_paths(&broken),
        Ok(vec!["/entity_updates/0/mode".to_owned()])
    );
}
