//! The examples of the mapping specification (epilot spec §4) as a table: configuration,
//! payload, expected result. Each case names the section it comes from.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};

use erp_mapping::{CompiledConfiguration, EnvValue, FileProxyContext, MappingContext, map_payload};

fn simulate(config: Value, payload: Value) -> Value {
    run(
        config,
        payload,
        MappingContext::simulation(Duration::from_secs(1)),
    )
}

fn run(config: Value, payload: Value, context: MappingContext) -> Value {
    let compiled =
        CompiledConfiguration::compile(&config).unwrap_or_else(|e| panic!("compiles: {e}"));
    let result = map_payload(&compiled, &payload, &context).unwrap_or_else(|e| panic!("maps: {e}"));
    serde_json::to_value(result).expect("serialises")
}

fn attributes(config_fields: Value, payload: Value) -> Value {
    let result = simulate(
        json!({"entities": [{"entity_schema": "contact", "unique_ids": [], "fields": config_fields}]}),
        payload,
    );
    result["entity_updates"][0]["attributes"].clone()
}

#[test]
fn s4_3_field_value_sources() {
    let payload = json!({"firstName": "Anna", "lastName": "Muster", "address": {"street": "Hauptstr."},
        "phoneNumber": "", "emailAddress": "anna@example.com", "status": "archived",
        "meter": {"meterType": "IMS"}});
    let cases = [
        (
            json!({"attribute": "first_name", "field": "firstName"}),
            Some(json!("Anna")),
        ),
        (
            json!({"attribute": "street", "field": "$.address.street"}),
            Some(json!("Hauptstr.")),
        ),
        (
            json!({"attribute": "full_name", "jsonataExpression": "firstName & ' ' & lastName"}),
            Some(json!("Anna Muster")),
        ),
        (
            json!({"attribute": "source", "constant": "SAP"}),
            Some(json!("SAP")),
        ),
        (
            json!({"attribute": "phone", "field": "phoneNumber", "enabled": "$exists(phoneNumber) and phoneNumber != ''"}),
            None,
        ),
        (
            json!({"attribute": "email", "field": "emailAddress", "_type": "email"}),
            Some(json!([{"email": "anna@example.com"}])),
        ),
        (
            json!({"attribute": "status", "jsonataExpression": "status in ['active','inactive','pending'] ? status : 'unknown'"}),
            Some(json!("unknown")),
        ),
        (
            json!({"attribute": "type", "jsonataExpression": "$lookup({'SMART':'smart-meter','IMS':'intelligent-measuring-system'}, meter.meterType) ~> $default('analog')"}),
            Some(json!("intelligent-measuring-system")),
        ),
        (
            json!({"attribute": "type", "jsonataExpression": "$lookup({'SMART':'smart-meter'}, meter.meterType) ~> $default('analog')"}),
            Some(json!("analog")),
        ),
        // Priority when several sources are given: constant, then jsonataExpression, then field.
        (
            json!({"attribute": "p", "field": "firstName", "jsonataExpression": "lastName", "constant": "C"}),
            Some(json!("C")),
        ),
        (
            json!({"attribute": "p", "field": "firstName", "jsonataExpression": "lastName"}),
            Some(json!("Muster")),
        ),
    ];
    for (field, expected) in cases {
        let attribute = field["attribute"].as_str().expect("attribute").to_owned();
        let got = attributes(json!([field]), payload.clone());
        assert_eq!(got.get(&attribute).cloned(), expected, "{field}");
    }
}

#[test]
fn s4_2_undefined_omits_but_null_empty_zero_false_are_kept() {
    let got = attributes(
        json!([
            {"attribute": "u", "jsonataExpression": "cond ? 'x' : undefined"},
            {"attribute": "missing", "field": "nope"},
            {"attribute": "n", "constant": null},
            {"attribute": "e", "jsonataExpression": "''"},
            {"attribute": "z", "jsonataExpression": "0"},
            {"attribute": "f", "jsonataExpression": "false"},
            {"attribute": "n2", "field": "nothing_here_is_null"}
        ]),
        json!({"cond": false, "nothing_here_is_null": null}),
    );
    assert_eq!(
        got,
        json!({"n": null, "e": "", "z": 0, "f": false, "n2": null})
    );
}

#[test]
fn s4_3_real_world_idioms() {
    let got = attributes(
        json!([
            {"attribute": "email", "jsonataExpression": "$exists(email) ? [{\"_tags\":[\"Primary\"],\"email\":email}] : undefined"},
            {"attribute": "phone", "field": "tel", "_type": "phone", "_tags": ["Mobil"]},
            {"attribute": "address", "jsonataExpression": "[{\"_tags\":[\"Lieferadresse\"],\"street\":Str,\"street_number\":$string(Hnr),\"postal_code\":$string(PLZ),\"city\":Ort}]"},
            {"attribute": "birthdate", "jsonataExpression": "$fromMillis($toMillis(abldatum, \"[D01]-[M01]-[Y0001]\"), \"[Y0001]-[M01]-[D01]\")"}
        ]),
        json!({"email": "a@b.de", "tel": "+49 1", "Str": "Ring", "Hnr": 3, "PLZ": 10115, "Ort": "Berlin", "abldatum": "05-03-1980"}),
    );
    assert_eq!(
        got,
        json!({"email": [{"_tags": ["Primary"], "email": "a@b.de"}],
               "phone": [{"_tags": ["Mobil"], "phone": "+49 1"}],
               "address": [{"_tags": ["Lieferadresse"], "street": "Ring", "street_number": "3", "postal_code": "10115", "city": "Berlin"}],
               "birthdate": "1980-03-05"})
    );
}

#[test]
fn s4_2_entity_fan_out_enabled_and_root_access() {
    let result = simulate(
        json!({"entities": [{"entity_schema": "meter", "unique_ids": ["meter_number"],
            "jsonataExpression": "meters[type='electricity']", "enabled": "$count($) > 0",
            "fields": [{"attribute": "meter_number", "field": "meterId"},
                       {"attribute": "contract", "field": "$$.contractId"}]}]}),
        json!({"contractId": "K1", "meters": [{"meterId": "M1", "type": "electricity"},
               {"meterId": "G1", "type": "gas"}, {"meterId": "M2", "type": "electricity"}]}),
    );
    assert_eq!(
        result["entity_updates"],
        json!([
            {"entity_slug": "meter", "unique_identifiers": {"meter_number": "M1"}, "attributes": {"meter_number": "M1", "contract": "K1"}, "mode": "upsert"},
            {"entity_slug": "meter", "unique_identifiers": {"meter_number": "M2"}, "attributes": {"meter_number": "M2", "contract": "K1"}, "mode": "upsert"}
        ])
    );
    let none = simulate(
        json!({"entities": [{"entity_schema": "meter", "unique_ids": [], "jsonataExpression": "meters[type='water']",
            "enabled": "$count($) > 0", "fields": [{"attribute": "x", "constant": 1}]}]}),
        json!({"meters": [{"type": "gas"}]}),
    );
    assert_eq!(none["entity_updates"], json!([]));
}

#[test]
fn s4_4_unique_identifiers() {
    let result = simulate(
        json!({"entities": [{"entity_schema": "contract", "unique_ids": ["contract_number", "contract_type"],
            "fields": [{"attribute": "contract_number", "field": "nr"}, {"attribute": "contract_type", "field": "t"}]}]}),
        json!({"nr": "V-1", "t": "power"}),
    );
    assert_eq!(
        result["entity_updates"][0]["unique_identifiers"],
        json!({"contract_number": "V-1", "contract_type": "power"})
    );

    let by_id = simulate(
        json!({"entities": [{"entity_schema": "contact", "unique_ids": ["_id"], "fields": [{"attribute": "_id", "field": "id"}]}]}),
        json!({"id": "019a0c06-0000-7000-8000-000000000000"}),
    );
    assert_eq!(
        by_id["entity_updates"][0]["unique_identifiers"],
        json!({"_id": "019a0c06-0000-7000-8000-000000000000"})
    );

    for payload in [
        json!({}),
        json!({"id": ""}),
        json!({"id": null}),
        json!({"id": "  "}),
    ] {
        let compiled = CompiledConfiguration::compile(&json!({"entities": [{"entity_schema": "contact",
            "unique_ids": ["customer_number"], "fields": [{"attribute": "customer_number", "field": "id"}]}]}))
        .expect("compiles");
        let error = map_payload(
            &compiled,
            &payload,
            &MappingContext::simulation(Duration::from_secs(1)),
        )
        .unwrap_err();
        assert_eq!(error.code(), "MISSING_IDENTIFIER", "{payload}");
        assert!(
            error.to_string().contains("contact.customer_number"),
            "{error}"
        );
    }
}

#[test]
fn s4_5_relations_items_and_jsonata() {
    let got = attributes(
        json!([
            {"attribute": "billing_account", "relations": {"operation": "_set", "items": [
                {"entity_schema": "billing_account", "_tags": ["PRIMARY"], "unique_ids": [{"attribute": "external_id", "field": "accountId"}]}]}},
            {"attribute": "contacts", "relations": {"operation": "_append", "jsonataExpression":
                "persons.{ \"entity_schema\": \"contact\", \"unique_ids\": [{ \"attribute\": \"email\", \"constant\": email }], \"_tags\": [role] }"}},
            {"attribute": "missing_rel", "relations": {"items": [
                {"entity_schema": "contract", "unique_ids": [{"attribute": "contract_number", "field": "nope"}]}]}}
        ]),
        json!({"accountId": "ACC-999", "persons": [{"email": "a@x.de", "role": "OWNER"}, {"email": "b@x.de", "role": "PAYER"}]}),
    );
    assert_eq!(
        got,
        json!({
            "billing_account": {"$relation": {"_set": [{"$entity_unique_ids": {"external_id": "ACC-999"}, "_schema": "billing_account", "_tags": ["PRIMARY"]}]}},
            "contacts": {"$relation": {"_append": [
                {"$entity_unique_ids": {"email": "a@x.de"}, "_schema": "contact", "_tags": ["OWNER"]},
                {"$entity_unique_ids": {"email": "b@x.de"}, "_schema": "contact", "_tags": ["PAYER"]}]}}
        })
    );
}

#[test]
fn s4_5_relation_refs() {
    let got = attributes(
        json!([{"attribute": "billing_address", "relation_refs": {"operation": "_set", "items": [{
            "entity_schema": "billing_account", "unique_ids": [{"attribute": "billing_account_number", "field": "vk"}],
            "path": "billing_address",
            "value": {"attribute": "billing_address", "operation": "_append", "jsonataExpression": "{\"street\": street, \"city\": city}"}}]}}]),
        json!({"vk": "002800699425", "street": "Ring 1", "city": "Köln"}),
    );
    assert_eq!(
        got,
        json!({"billing_address": {"$relation_ref": {"_set": [{
            "$entity_unique_ids": {"billing_account_number": "002800699425"}, "_schema": "billing_account",
            "path": "billing_address",
            "value": {"attribute": "billing_address", "operation": "_append", "value": {"street": "Ring 1", "city": "Köln"}}}]}}})
    );
}

#[test]
fn s4_6_modes_and_prune_scope() {
    let result = simulate(
        json!({"entities": [{
            "entity_schema": "billing_event", "unique_ids": ["external_id"],
            "jsonataExpression": "$map(billingevents[], function($v) { $merge([$v, { \"billingaccountnumber\": billingaccountnumber }]) })",
            "mode": "upsert-prune-scope-purge",
            "scope": {"scope_mode": "relations", "schema": "billing_account",
                      "unique_ids": [{"attribute": "billing_account_number", "field": "billingaccountnumber"}]},
            "fields": [{"attribute": "external_id", "field": "billing_event_number"},
                       {"attribute": "billing_account_number", "field": "billingaccountnumber"}]}]}),
        json!({"billingaccountnumber": "002800699425", "billingevents": [
            {"billing_event_number": "002800699425-2025-08-15"}, {"billing_event_number": "002800699425-2024-08-05"}]}),
    );
    assert_eq!(result["entity_updates"].as_array().map(Vec::len), Some(2));
    assert_eq!(result["entity_updates"][0]["mode"], "upsert");
    assert_eq!(
        result["prune_scope_updates"],
        json!([{"entity_slug": "billing_event",
                "scope": {"scope_mode": "relations", "schema": "billing_account", "unique_ids": {"billing_account_number": "002800699425"}},
                "keep_unique_ids": [{"external_id": "002800699425-2025-08-15"}, {"external_id": "002800699425-2024-08-05"}],
                "deletion_mode": "purge"}])
    );

    let query = simulate(
        json!({"entities": [{"entity_schema": "billing_event", "unique_ids": ["external_id"], "jsonataExpression": "events",
            "mode": "upsert-prune-scope-delete",
            "scope": {"scope_mode": "query", "query": [{"attribute": "billing_account_number", "field": "acct"}, {"attribute": "type", "constant": "INVOICE"}]},
            "fields": [{"attribute": "external_id", "field": "id"}]}]}),
        json!({"acct": "A1", "events": []}),
    );
    assert_eq!(query["entity_updates"], json!([]));
    assert_eq!(
        query["prune_scope_updates"],
        json!([{"entity_slug": "billing_event", "scope": {"scope_mode": "query", "query": {"billing_account_number": "A1", "type": "INVOICE"}},
                "keep_unique_ids": [], "deletion_mode": "delete"}])
    );
    assert!(
        query["warnings"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("every entity in the prune scope"))
    );

    let delete = simulate(
        json!({"entities": [{"entity_schema": "contract", "unique_ids": ["contract_number"], "enabled": "status = 'TERMINATED'",
            "mode": "delete", "fields": [{"attribute": "contract_number", "field": "nr"}, {"attribute": "status", "field": "status"}]}]}),
        json!({"nr": "V-1", "status": "TERMINATED"}),
    );
    assert_eq!(delete["entity_updates"][0]["mode"], "delete");
    assert_eq!(
        delete["entity_updates"][0]["attributes"]["status"],
        "TERMINATED"
    );
}

#[test]
fn s4_7_meter_readings() {
    let config = json!({"meter_readings": [{
        "jsonataExpression": "readings",
        "meter": {"unique_ids": [{"attribute": "meter_number", "field": "meterId"}]},
        "fields": [
            {"attribute": "external_id", "jsonataExpression": "meterId & '-' & $$.readingDate"},
            {"attribute": "timestamp", "field": "$$.readingDate"},
            {"attribute": "value", "field": "currentReading"},
            {"attribute": "source", "constant": "ERP"},
            {"attribute": "unit", "field": "unit"},
            {"attribute": "consumption", "jsonataExpression": "currentReading - previousReading"}]}]});
    let result = simulate(
        config,
        json!({"readingDate": "2025-01-15", "readings": [
            {"meterId": "M-001", "currentReading": 12345.5, "previousReading": 12000, "unit": "kWh"}]}),
    );
    assert_eq!(
        result["meter_readings_updates"],
        json!([{"meter": {"$entity_unique_ids": {"meter_number": "M-001"}},
                "attributes": {"external_id": "M-001-2025-01-15", "timestamp": "2025-01-15T00:00:00.000Z",
                               "value": 12345.5, "source": "ERP", "unit": "kWh", "consumption": 345.5},
                "mode": "upsert"}])
    );
}

#[test]
fn s4_7_meter_reading_rules() {
    let config = |mode: &str, extra: Value| {
        let mut fields = vec![
            json!({"attribute": "external_id", "field": "id"}),
            json!({"attribute": "timestamp", "field": "at"}),
            json!({"attribute": "value", "field": "v"}),
            json!({"attribute": "source", "field": "src"}),
        ];
        if let Value::Array(more) = extra {
            fields.extend(more);
        }
        json!({"meter_readings": [{"jsonataExpression": "readings", "mode": mode, "scope": {"source": "ERP"},
            "meter": {"unique_ids": [{"attribute": "meter_number", "field": "meter"}]},
            "meter_counter": {"unique_ids": [{"attribute": "obis_number", "field": "obis"}]},
            "fields": fields}]})
    };
    let reading = |id: &str, at: &str, src: &str| json!({"id": id, "at": at, "v": 1, "src": src, "meter": "M1", "obis": "1-0:1.8.0"});

    let pruned = simulate(
        config("upsert-prune-scope", json!([])),
        json!({"readings": [reading("R1", "2025-01-15T10:00:00", "ERP"), reading("R2", "2025-01-16T10:00:00+01:00", "ERP")]}),
    );
    assert_eq!(
        pruned["meter_readings_updates"][0]["attributes"]["timestamp"],
        "2025-01-15T10:00:00Z"
    );
    assert_eq!(
        pruned["meter_readings_updates"][1]["attributes"]["timestamp"],
        "2025-01-16T10:00:00+01:00"
    );
    assert_eq!(
        pruned["meter_readings_updates"][0]["meter_counter"],
        json!({"$entity_unique_ids": {"obis_number": "1-0:1.8.0"}})
    );
    assert_eq!(
        pruned["meter_readings_prune_scope_updates"],
        json!([{"meter": {"$entity_unique_ids": {"meter_number": "M1"}},
                "meter_counter": {"$entity_unique_ids": {"obis_number": "1-0:1.8.0"}},
                "keep_external_ids": ["R1", "R2"], "source": "ERP"}])
    );

    let compiled = |c: Value| CompiledConfiguration::compile(&c).expect("compiles");
    let strict = MappingContext::processing(Duration::from_secs(1), None);
    let lenient = MappingContext::simulation(Duration::from_secs(1));
    for (payload, message) in [
        (
            json!({"readings": [reading("R1", "2025-02-30", "ERP")]}),
            "timestamp",
        ),
        (
            json!({"readings": [reading("R1", "15.01.2025", "ERP")]}),
            "timestamp",
        ),
        (
            json!({"readings": [reading("R1", "2025-01-15", "SAP")]}),
            "source must be one of",
        ),
        (
            json!({"readings": [reading("", "2025-01-15", "ERP")]}),
            "external_id is empty",
        ),
    ] {
        let error =
            map_payload(&compiled(config("upsert", json!([]))), &payload, &lenient).unwrap_err();
        assert_eq!(error.code(), "METER_READING_INVALID");
        assert!(error.to_string().contains(message), "{message}: {error}");
    }
    let with_reason = config("upsert", json!([{"attribute": "reason", "field": "r"}]));
    let mut odd = reading("R1", "2025-01-15", "ERP");
    odd["r"] = json!("monthly_billing");
    let payload = json!({"readings": [odd]});
    // A simulation passes an unknown reason through with a warning; processing rejects it.
    let simulated =
        map_payload(&compiled(with_reason.clone()), &payload, &lenient).expect("simulates");
    assert_eq!(
        simulated.meter_readings_updates[0]["attributes"]["reason"],
        "monthly_billing"
    );
    assert!(
        simulated.warnings[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("reason"))
    );
    assert_eq!(
        map_payload(&compiled(with_reason), &payload, &strict)
            .unwrap_err()
            .code(),
        "METER_READING_INVALID"
    );
}

#[test]
fn s4_9_pricing_is_echoed_with_its_data() {
    let result = simulate(
        json!({"entities": [{"entity_schema": "order", "unique_ids": ["external_id"],
            "fields": [{"attribute": "external_id", "field": "id"}],
            "pricing": {"jsonataExpression": "lineItems", "items": [{"product": {"entity_schema": "product", "unique_ids": [{"attribute": "code", "field": "sku"}]}, "quantity": {"field": "qty"}}], "on_error": "warn"}}]}),
        json!({"id": "O-1", "lineItems": [{"sku": "POWER-BASIC", "qty": 1}, {"sku": "METER-RENT", "qty": 2}]}),
    );
    assert_eq!(
        result["entity_updates"][0]["pricing"]["data"],
        json!([{"sku": "POWER-BASIC", "qty": 1}, {"sku": "METER-RENT", "qty": 2}])
    );
    assert_eq!(
        result["entity_updates"][0]["pricing"]["config"]["on_error"],
        "warn"
    );
}

#[test]
fn s4_10_special_producers() {
    let config = json!({"entities": [{"entity_schema": "file", "unique_ids": ["external_id"], "fields": [
        {"attribute": "external_id", "field": "documentId"},
        {"attribute": "custom_download_url", "file_proxy_url": {"use_case_slug": "document-download",
            "params": {"documentId": {"field": "documentId"}, "tenantId": {"constant": "ACME"}}}},
        {"attribute": "portal", "portal_ref": {"filter": {"origin": "END_CUSTOMER_PORTAL"}}},
        {"attribute": "prefix", "env_var_ref": {"key": "erp.prefix"}},
        {"attribute": "prefix_lower", "env_var_ref": {"key": "erp.prefix", "return": "jsonata", "jsonataExpression": "$lowercase($)"}},
        {"attribute": "secret", "env_var_ref": {"key": "erp.password"}},
        {"attribute": "defaulted", "env_var_ref": {"key": "missing.key", "default": "EPL"}}
    ]}]});
    let payload = json!({"documentId": "DOC-00034157"});

    // In a simulation without integration the URL is skipped silently, env vars are missing.
    let simulated = simulate(config.clone(), payload.clone());
    let attributes = &simulated["entity_updates"][0]["attributes"];
    assert_eq!(
        attributes,
        &json!({"external_id": "DOC-00034157", "defaulted": "EPL"})
    );
    let warnings: Vec<&str> = simulated["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .filter_map(|w| w["message"].as_str())
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("PORTAL_REF_NO_MATCH")),
        "{warnings:?}"
    );
    assert_eq!(
        warnings
            .iter()
            .filter(|w| w.starts_with("ENV_VAR_REF_NOT_FOUND"))
            .count(),
        3,
        "{warnings:?}"
    );

    let mut context = MappingContext::processing(
        Duration::from_secs(1),
        Some(FileProxyContext {
            base_url: "https://erp-file-proxy.sls.epilot.io".into(),
            org_id: "123".into(),
            integration_id: "abc".into(),
            streaming_use_cases: Default::default(),
        }),
    );
    context.environment = Some(HashMap::from([
        (
            "erp.prefix".to_owned(),
            EnvValue {
                value: "SWK".into(),
                secret: false,
            },
        ),
        (
            "erp.password".to_owned(),
            EnvValue {
                value: "hunter2".into(),
                secret: true,
            },
        ),
    ]));
    let processed = run(config, payload, context);
    let attributes = &processed["entity_updates"][0]["attributes"];
    assert_eq!(
        attributes["custom_download_url"],
        "https://erp-file-proxy.sls.epilot.io/download?orgId=123&integrationId=abc&useCaseSlug=document-download&documentId=DOC-00034157&tenantId=ACME"
    );
    assert_eq!(attributes["prefix"], "SWK");
    assert_eq!(attributes["prefix_lower"], "swk");
    assert!(
        attributes.get("secret").is_none(),
        "secrets are never exposed"
    );
    assert!(!processed.to_string().contains("hunter2"));
}

#[test]
fn s4_14_contract_with_related_entities() {
    let config = json!({ "entities": [
      { "entity_schema": "meter", "jsonataExpression": "meters", "unique_ids": ["meter_number"],
        "fields": [ { "attribute": "meter_number", "field": "meterId" }, { "attribute": "type", "field": "type" },
                    { "attribute": "location", "field": "location" }, { "attribute": "initial_reading", "field": "initialReading" } ] },
      { "entity_schema": "contract", "unique_ids": ["contract_number"],
        "fields": [
          { "attribute": "contract_number", "field": "contractId" }, { "attribute": "contract_type", "field": "contractType" },
          { "attribute": "start_date", "field": "startDate" }, { "attribute": "end_date", "field": "endDate" },
          { "attribute": "status", "field": "status" }, { "attribute": "tariff_name", "field": "$.tariff.name" },
          { "attribute": "price_per_kwh", "field": "$.tariff.pricePerKwh" }, { "attribute": "source", "constant": "ERP" },
          { "attribute": "customer", "relations": { "operation": "_set", "items": [ { "entity_schema": "contact", "unique_ids": [ { "attribute": "customer_number", "field": "customerId" } ] } ] } },
          { "attribute": "meters", "relations": { "operation": "_set", "jsonataExpression": "meters.{ \"entity_schema\": \"meter\", \"unique_ids\": [{ \"attribute\": \"meter_number\", \"constant\": meterId }] }" } } ] } ] });
    let payload: Value = serde_json::from_str(r#"{"contractId":"CTR-2024-0001","customerId":"C-10042","contractType":"electricity","startDate":"2024-02-01","endDate":"2025-01-31","status":"active","tariff":{"name":"Basic Power","pricePerKwh":0.32},"meters":[{"meterId":"M-001234","type":"electricity","location":"Basement","initialReading":10000},{"meterId":"M-001235","type":"electricity","location":"Garage","initialReading":500}]}"#).expect("json");
    let result = simulate(config, payload);
    assert_eq!(
        result["entity_updates"],
        json!([
            {"entity_slug": "meter", "unique_identifiers": {"meter_number": "M-001234"}, "mode": "upsert",
             "attributes": {"meter_number": "M-001234", "type": "electricity", "location": "Basement", "initial_reading": 10000}},
            {"entity_slug": "meter", "unique_identifiers": {"meter_number": "M-001235"}, "mode": "upsert",
             "attributes": {"meter_number": "M-001235", "type": "electricity", "location": "Garage", "initial_reading": 500}},
            {"entity_slug": "contract", "unique_identifiers": {"contract_number": "CTR-2024-0001"}, "mode": "upsert",
             "attributes": {"contract_number": "CTR-2024-0001", "contract_type": "electricity", "start_date": "2024-02-01",
                            "end_date": "2025-01-31", "status": "active", "tariff_name": "Basic Power", "price_per_kwh": 0.32,
                            "source": "ERP",
                            "customer": {"$relation": {"_set": [{"$entity_unique_ids": {"customer_number": "C-10042"}, "_schema": "contact"}]}},
                            "meters": {"$relation": {"_set": [
                                {"$entity_unique_ids": {"meter_number": "M-001234"}, "_schema": "meter"},
                                {"$entity_unique_ids": {"meter_number": "M-001235"}, "_schema": "meter"}]}}}}
        ])
    );
    assert_eq!(result["meter_readings_updates"], json!([]));
    assert_eq!(result["prune_scope_updates"], json!([]));
}

#[test]
fn s4_13_legacy_v1_mapping() {
    let v1 = json!({"version": "1.0", "mapping": {"objects": {"business_partner": {
        "unique_ids": {"contact": ["customer_number"]},
        "fields": [{"entity": "contact", "attribute": "customer_number", "field": "partnerId"},
                   {"entity": "contact", "attribute": "last_name", "jsonataExpression": "$uppercase(lastName)"},
                   {"entity": "account", "attribute": "name", "field": "company"}]}}}});
    let config = erp_mapping::legacy::configuration_for(&v1, "business_partner").expect("converts");
    let result = simulate(
        config,
        json!({"partnerId": "BP1", "lastName": "doe", "company": "ACME"}),
    );
    assert_eq!(
        result["entity_updates"][0]["attributes"],
        json!({"customer_number": "BP1", "last_name": "DOE"})
    );
    assert_eq!(result["entity_updates"][1]["entity_slug"], "account");
}
