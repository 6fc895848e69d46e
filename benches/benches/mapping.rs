//! Mapping benchmarks, each against a baseline in the same run:
//!
//! - `meter_reading_batch`: the realistic meter-reading mapping of `shared/bench-data` through
//!   bare jsonata-core (parse JSON, evaluate, serialise) and through our engine (parse JSON, map
//!   as an entity-level expression plus field copies, serialise). The ratio is our overhead.
//! - `epilot_entities_30_fields`: an epilot-style configuration of 30 fields over 3 entities
//!   (contact, billing account, contract) on a customer payload: µs per event.
//! - `mapping_thread`: handing one small evaluation to a thread with the mapping stack: the
//!   pool (`on_mapping_stack`) against a fresh 512 MiB-stack thread per call, what the processor
//!   and the dispatcher did before (the baseline).
//!
//! `cargo bench -p erp-benches --bench mapping`

use std::path::PathBuf;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};

use erp_mapping::payload::parse_document;
use erp_mapping::{CompiledConfiguration, MappingContext, map_document, map_payload};
use erp_schemas::inbound::PayloadFormat;

fn bench_data(name: &str) -> String {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|d| d.join("shared/bench-data"))
        .find(|d| d.is_dir())
        .expect("shared/bench-data next to the repository");
    std::fs::read_to_string(dir.join(name)).expect("bench data file")
}

fn meter_reading_batch(c: &mut Criterion) {
    let event = bench_data("erp-event.json");
    let mapping = bench_data("erp-mapping.jsonata");
    let mut group = c.benchmark_group("meter_reading_batch");

    let ast = jsonata_core::parser::parse(&mapping).expect("mapping parses");
    group.bench_function("bare_jsonata_core", |b| {
        b.iter(|| {
            let input = jsonata_core::value::JValue::from_json_str(&event).expect("event parses");
            let mut evaluator = jsonata_core::evaluator::Evaluator::new();
            let output = evaluator.evaluate(&ast, &input).expect("evaluates");
            output.to_json_string().expect("serialises")
        })
    });

    let keys = [
        "id",
        "kind",
        "source",
        "receivedAt",
        "customer",
        "contract",
        "meter",
        "readings",
        "summary",
    ];
    let fields: Vec<Value> = keys
        .iter()
        .map(|k| json!({"attribute": k, "field": k}))
        .collect();
    let configuration = CompiledConfiguration::compile(&json!({"entities": [{
        "entity_schema": "meter_reading_batch", "unique_ids": ["id"],
        "jsonataExpression": mapping, "fields": fields}]}))
    .expect("configuration compiles");
    let context = MappingContext::processing(Duration::from_secs(1), None);
    // Sanity: both paths see the same mapping output.
    let mapped = map_payload(
        &configuration,
        &serde_json::from_str(&event).expect("json"),
        &context,
    )
    .expect("maps");
    assert_eq!(
        mapped.entity_updates[0].attributes["kind"],
        "MeterReadingBatch"
    );
    group.bench_function("erp_toolkit_engine", |b| {
        b.iter(|| {
            let document = parse_document(PayloadFormat::Json, &event, &Default::default())
                .expect("event parses");
            let result = map_document(&configuration, document, &context).expect("maps");
            serde_json::to_string(&result).expect("serialises")
        })
    });
    group.finish();
}

fn epilot_entities_30_fields(c: &mut Criterion) {
    let payload = json!({
        "customer": {"partnerId": "1000042", "salutation": "Frau", "title": "Dr.", "firstName": "Anna",
            "lastName": "Muster", "birthDate": "05.03.1980", "email": "Anna.Muster@Example.com", "phone": "+49 30 123456",
            "street": "Hauptstraße", "houseNumber": 12, "postalCode": "10115", "city": "Berlin", "country": "DE",
            "marketing": "X"},
        "account": {"number": "002800699425", "balance": -12345, "iban": "DE02120300000000202051", "bic": "BYLADEM1001",
            "holder": "Anna Muster", "dunningLevel": "0"},
        "contract": {"number": "V-2024-0001", "branch": "STROM", "status": "AKTIV", "start": "2024-02-01",
            "end": "2026-01-31", "installment": 8900, "billingPeriod": "MONAT", "product": "Basic Power", "malo": "51238696781"}
    });
    let configuration = json!({"entities": [
        {"entity_schema": "contact", "unique_ids": ["customer_number"], "fields": [
            {"attribute": "customer_number", "field": "$.customer.partnerId"},
            {"attribute": "salutation", "jsonataExpression": "customer.salutation = 'Frau' ? 'Ms. / Mrs.' : customer.salutation = 'Herr' ? 'Mr.' : 'Other'"},
            {"attribute": "title", "field": "$.customer.title"},
            {"attribute": "first_name", "field": "$.customer.firstName"},
            {"attribute": "last_name", "field": "$.customer.lastName"},
            {"attribute": "birthdate", "jsonataExpression": "$fromMillis($toMillis(customer.birthDate, '[D01].[M01].[Y0001]'), '[Y0001]-[M01]-[D01]')"},
            {"attribute": "email", "jsonataExpression": "$lowercase(customer.email)", "_type": "email", "_tags": ["Primary"]},
            {"attribute": "phone", "field": "$.customer.phone", "_type": "phone"},
            {"attribute": "address", "jsonataExpression": "[{\"_tags\": [\"Lieferadresse\"], \"street\": customer.street, \"street_number\": $string(customer.houseNumber), \"postal_code\": customer.postalCode, \"city\": customer.city, \"country\": customer.country}]"},
            {"attribute": "marketing_permission", "jsonataExpression": "customer.marketing = 'X'"},
            {"attribute": "_tags", "constant": ["ERP"]}
        ]},
        {"entity_schema": "billing_account", "unique_ids": ["billing_account_number"], "fields": [
            {"attribute": "billing_account_number", "field": "$.account.number"},
            {"attribute": "balance", "jsonataExpression": "account.balance"},
            {"attribute": "balance_decimal", "jsonataExpression": "$formatNumber(account.balance / 100, '0.00')"},
            {"attribute": "balance_currency", "constant": "EUR"},
            {"attribute": "payment_method", "jsonataExpression": "[{\"type\": \"payment_sepa\", \"_tags\": [\"DEBIT\"], \"data\": {\"iban\": account.iban, \"bic_number\": account.bic, \"fullname\": account.holder}}]"},
            {"attribute": "dunning_level", "jsonataExpression": "$number(account.dunningLevel)"},
            {"attribute": "billing_contact", "relations": {"operation": "_set", "items": [{"entity_schema": "contact", "unique_ids": [{"attribute": "customer_number", "field": "$.customer.partnerId"}]}]}},
            {"attribute": "source", "constant": "ERP"}
        ]},
        {"entity_schema": "contract", "unique_ids": ["contract_number"], "fields": [
            {"attribute": "contract_number", "field": "$.contract.number"},
            {"attribute": "branch", "jsonataExpression": "$lookup({'STROM': 'power', 'GAS': 'gas', 'WASSER': 'water'}, contract.branch)"},
            {"attribute": "status", "jsonataExpression": "contract.status = 'AKTIV' ? 'active' : 'terminated'"},
            {"attribute": "start_date", "field": "$.contract.start"},
            {"attribute": "end_date", "jsonataExpression": "contract.end ? contract.end : undefined"},
            {"attribute": "installment_amount", "field": "$.contract.installment"},
            {"attribute": "billing_period", "jsonataExpression": "contract.billingPeriod = 'MONAT' ? 'monthly' : 'yearly'"},
            {"attribute": "contract_name", "field": "$.contract.product"},
            {"attribute": "billing_account", "relations": {"operation": "_set", "items": [{"entity_schema": "billing_account", "unique_ids": [{"attribute": "billing_account_number", "field": "$.account.number"}]}]}},
            {"attribute": "customer", "relations": {"operation": "_set", "items": [{"entity_schema": "contact", "unique_ids": [{"attribute": "customer_number", "field": "$.customer.partnerId"}]}]}},
            {"attribute": "external_id", "jsonataExpression": "contract.malo"}
        ]}
    ]});
    let compiled = CompiledConfiguration::compile(&configuration).expect("compiles");
    let context = MappingContext::processing(Duration::from_secs(1), None);
    let text = payload.to_string();
    let result = map_payload(&compiled, &payload, &context).expect("maps");
    let fields: usize = result
        .entity_updates
        .iter()
        .map(|u| u.attributes.len())
        .sum();
    assert_eq!((result.entity_updates.len(), fields), (3, 30));
    c.bench_function("epilot_entities_30_fields", |b| {
        b.iter(|| {
            let document = parse_document(PayloadFormat::Json, &text, &Default::default())
                .expect("payload parses");
            let result = map_document(&compiled, document, &context).expect("maps");
            serde_json::to_string(&result).expect("serialises")
        })
    });
}

fn mapping_thread(c: &mut Criterion) {
    let expression =
        erp_mapping::jsonata::Expression::compile("$sum(readings.value) * 2").expect("parses");
    let expression = std::sync::Arc::new(expression);
    let document = json!({"readings": [{"value": 1}, {"value": 2}, {"value": 3}]});
    let document = std::sync::Arc::new(document);
    let evaluate = {
        let (expression, document) = (expression.clone(), document.clone());
        move || {
            erp_mapping::jsonata::evaluate_json(&expression, &document, Duration::from_secs(1))
                .ok()
                .flatten()
                .map(|v| v.to_string())
                .unwrap_or_default()
        }
    };
    let mut group = c.benchmark_group("mapping_thread");
    group.bench_function("fresh_thread_per_call", |b| {
        b.iter(|| {
            std::thread::Builder::new()
                .stack_size(erp_mapping::jsonata::MAPPING_STACK_BYTES)
                .spawn(evaluate.clone())
                .expect("spawns")
                .join()
                .expect("joins")
        })
    });
    group.bench_function("pool", |b| {
        b.iter(|| erp_mapping::jsonata::on_mapping_stack(evaluate.clone()).expect("runs"))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5)).sample_size(50);
    targets = meter_reading_batch, epilot_entities_30_fields, mapping_thread
}
criterion_main!(benches);
