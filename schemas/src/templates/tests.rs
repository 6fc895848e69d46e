use serde_json::{Map, Value, json};

use super::*;

fn values(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => panic!("values must be an object"),
    }
}

/// A small valid outbound document to break one rule at a time.
fn document() -> Value {
    json!({
        "slug": "t", "name": "T", "type": "outbound", "summary": "s", "entities": ["contract"],
        "erp_behaviour": {"description": "d", "ack": "a"},
        "placeholders": [
            {"name": "webhook_id", "description": "w", "type": "string", "required": true, "example": "wh-1"},
            {"name": "period", "description": "p", "type": "string", "required": false, "default": "monthly",
             "allowed": ["monthly", "yearly"], "example": "yearly"},
            {"name": "filter", "description": "f", "type": "string", "required": false, "default": null,
             "example": "contract.installment_amount > 0"},
            {"name": "limit", "description": "l", "type": "integer", "required": false, "default": 10, "example": 20}
        ],
        "configuration": {"event_catalog_event": "InstallmentUpdated", "event_filter": "{{filter}}",
            "mappings": [{"name": "m", "enabled": true,
                "jsonata_expression": "{\"period\": '{{period}}', \"limit\": {{limit}}, \"n\": \"{{limit}}\"}",
                "delivery": {"type": "webhook", "webhook_id": "{{webhook_id}}"}, "x_limit": "{{limit}}"}]},
        "sample": {"payload": {"contract": {}}},
        "expected": {"messages": []}
    })
}

fn parse(document: &Value) -> Result<UseCaseTemplate, TemplateError> {
    UseCaseTemplate::parse(&document.to_string())
}

#[test]
fn the_catalogue_holds_every_standard_flow() {
    let templates = catalogue().unwrap_or_else(|e| panic!("{e}"));
    let count = |kind| templates.iter().filter(|t| t.kind == kind).count();
    // spec §7.1 (billing account in three) and §7.2 (data sync for customer and contract).
    assert_eq!(count(TemplateKind::Inbound), 11);
    assert_eq!(count(TemplateKind::Outbound), 16);
    assert_eq!(
        find("sync-meter-readings").map(|t| t.sample.format),
        Ok(PayloadFormat::Xml)
    );
    assert_eq!(
        find("submit-meter-reading").map(UseCaseTemplate::event),
        Ok(Some("MeterReadingAdded"))
    );
    assert_eq!(find("nope").unwrap_err().code(), "TEMPLATE_NOT_FOUND");
    let upload = find("upload-documents").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(upload.requires, vec!["file_proxy"]);
}

#[test]
fn every_document_file_is_in_the_catalogue() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
    let mut on_disk = Vec::new();
    for kind in ["inbound", "outbound"] {
        for entry in std::fs::read_dir(root.join(kind)).unwrap_or_else(|e| panic!("{e}")) {
            let name = entry.unwrap_or_else(|e| panic!("{e}")).file_name();
            let name = name.to_string_lossy();
            let stem = name
                .strip_suffix(".json")
                .unwrap_or_else(|| panic!("{name}: not .json"));
            on_disk.push(format!("{kind}/{stem}"));
        }
    }
    on_disk.sort();
    let mut listed: Vec<String> = DOCUMENTS.iter().map(|(p, _)| (*p).to_owned()).collect();
    listed.sort();
    assert_eq!(
        on_disk, listed,
        "schemas/templates and catalogue::DOCUMENTS differ"
    );
}

#[test]
fn every_template_instantiates_with_its_examples_and_with_its_defaults() {
    for template in catalogue().unwrap_or_else(|e| panic!("{e}")) {
        let configuration = template
            .instantiate(&template.example_values())
            .unwrap_or_else(|e| panic!("{}: {e}", template.slug));
        let mut used = Vec::new();
        placeholders::markers(&configuration, &mut used, &mut Vec::new());
        assert!(used.is_empty(), "{}: markers left: {used:?}", template.slug);
        let required: Map<String, Value> = template
            .placeholders
            .iter()
            .filter(|p| p.required)
            .map(|p| (p.name.clone(), p.example.clone()))
            .collect();
        template
            .instantiate(&required)
            .unwrap_or_else(|e| panic!("{} with defaults: {e}", template.slug));
    }
}

#[test]
fn instantiation_applies_values_defaults_and_the_null_rule() {
    let template = parse(&document()).unwrap_or_else(|e| panic!("{e}"));
    let filled = template
        .instantiate(&values(json!({"webhook_id": "wh-9", "limit": 5})))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        filled,
        json!({"event_catalog_event": "InstallmentUpdated",
            "mappings": [{"name": "m", "enabled": true,
                "jsonata_expression": "{\"period\": 'monthly', \"limit\": 5, \"n\": \"5\"}",
                "delivery": {"type": "webhook", "webhook_id": "wh-9"}, "x_limit": 5}]}),
        "defaults apply, a null default removes the member, whole markers keep the type"
    );
    let filled = template
        .instantiate(&template.example_values())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(filled["event_filter"], "contract.installment_amount > 0");
    let dropped = template
        .instantiate(&values(json!({"webhook_id": "w", "filter": null})))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(dropped.get("event_filter").is_none(), "{dropped}");
}

#[test]
fn instantiation_errors_name_the_placeholder() {
    let template = parse(&document()).unwrap_or_else(|e| panic!("{e}"));
    let cases = [
        (json!({}), "TEMPLATE_PLACEHOLDER_MISSING", "\"webhook_id\""),
        (
            json!({"webhook_id": "w", "colour": "red"}),
            "TEMPLATE_PLACEHOLDER_UNKNOWN",
            "\"colour\"",
        ),
        (
            json!({"webhook_id": 7}),
            "TEMPLATE_PLACEHOLDER_TYPE",
            "must be a string, not a number",
        ),
        (
            json!({"webhook_id": null}),
            "TEMPLATE_PLACEHOLDER_TYPE",
            "cannot be null",
        ),
        (
            json!({"webhook_id": "w", "limit": 2.5}),
            "TEMPLATE_PLACEHOLDER_TYPE",
            "must be an integer",
        ),
        (
            json!({"webhook_id": "w", "period": "daily"}),
            "TEMPLATE_PLACEHOLDER_NOT_ALLOWED",
            "\"monthly\", \"yearly\"",
        ),
        // A null optional value whose marker sits inside a longer string.
        (
            json!({"webhook_id": "w", "limit": null}),
            "TEMPLATE_PLACEHOLDER_TYPE",
            "\"limit\" is null",
        ),
    ];
    for (given, code, text) in cases {
        let error = template.instantiate(&values(given.clone())).unwrap_err();
        assert_eq!(error.code(), code, "{given}: {error}");
        assert!(error.to_string().contains(text), "{given}: {error}");
    }
    let unknown = template
        .instantiate(&values(json!({"webhook_id": "w", "colour": 1})))
        .unwrap_err();
    assert!(
        unknown
            .to_string()
            .contains("webhook_id, period, filter, limit"),
        "{unknown}"
    );
}

#[test]
fn broken_documents_are_refused_naming_the_rule() {
    type Edit = fn(&mut Value);
    let cases: [(Edit, &str); 12] = [
        (|d| d["slug"] = json!("Bad Slug"), "slug must match"),
        (
            |d| d["placeholders"][0]["default"] = json!("x"),
            "is required and has a default",
        ),
        (
            |d| {
                d["placeholders"][1]
                    .as_object_mut()
                    .map(|p| p.remove("default"));
            },
            "optional and has no default",
        ),
        (
            |d| d["placeholders"][1]["example"] = json!("daily"),
            "example",
        ),
        (
            |d| d["placeholders"][3]["default"] = json!("ten"),
            "default",
        ),
        (
            |d| d["placeholders"][2]["name"] = json!("Filter"),
            "must match ^[a-z]",
        ),
        (
            |d| d["placeholders"][2]["name"] = json!("period"),
            "declared twice",
        ),
        (
            |d| d["configuration"]["event_filter"] = json!("{{other}}"),
            "names no declared placeholder",
        ),
        (
            |d| d["configuration"]["event_filter"] = json!("true"),
            "\"filter\" is declared but never used",
        ),
        (
            |d| d["configuration"]["{{filter}}"] = json!(1),
            "object key",
        ),
        (
            |d| d["configuration"]["ack_tracking"] = json!("off"),
            "erp_behaviour.ack",
        ),
        (
            |d| d["requires"] = json!(["time_travel"]),
            "unknown capability",
        ),
    ];
    for (edit, expected) in cases {
        let mut broken = document();
        edit(&mut broken);
        let error = parse(&broken).unwrap_err();
        assert_eq!(error.code(), "TEMPLATE_INVALID", "{expected}: {error}");
        assert!(
            error.to_string().contains(expected),
            "{expected:?} not in {error}"
        );
    }
    let mut inbound = document();
    inbound["type"] = json!("inbound");
    assert!(
        parse(&inbound)
            .unwrap_err()
            .to_string()
            .contains("event_catalog_event")
    );
    let mut xml = document();
    xml["sample"] = json!({"format": "xml", "payload": {"a": 1}});
    assert!(parse(&xml).unwrap_err().to_string().contains("sample 0"));
    let mut extra = document();
    extra["colour"] = json!("red");
    assert!(parse(&extra).unwrap_err().to_string().contains("colour"));
}

#[test]
fn summaries_list_without_configuration_or_samples() {
    let summaries = summaries().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(summaries.len(), DOCUMENTS.len());
    let listed = serde_json::to_value(&summaries).unwrap_or_else(|e| panic!("{e}"));
    let readings = listed
        .as_array()
        .and_then(|all| all.iter().find(|s| s["slug"] == "submit-meter-reading"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(readings["type"], "outbound");
    assert_eq!(readings["event"], "MeterReadingAdded");
    assert_eq!(readings["placeholders"][0]["name"], "webhook_id");
    for key in ["configuration", "sample", "expected"] {
        assert!(readings.get(key).is_none(), "{key} is not listed");
    }
    assert!(
        listed[0].get("event").is_none(),
        "inbound templates have no event"
    );
}

#[test]
fn every_inbound_expected_output_matches_the_entity_schemas() {
    // Use cases built from templates run at `validation: warn` by default: their own samples must
    // map without a warning of the schema check.
    for template in catalogue().unwrap_or_else(|e| panic!("{e}")) {
        if template.kind != TemplateKind::Inbound {
            continue;
        }
        let outputs = std::iter::once(&template.expected)
            .chain(template.additional_samples.iter().map(|s| &s.expected));
        for expected in outputs {
            let violations = crate::catalog::check_mapping_output(expected);
            assert!(violations.is_empty(), "{}: {violations:?}", template.slug);
        }
    }
}

#[test]
fn every_outbound_sample_event_matches_the_event_catalog() {
    // POST /v1/events and the processor check platform events against the catalog: a sample
    // that does not pass could not be sent.
    for template in catalogue().unwrap_or_else(|e| panic!("{e}")) {
        if template.kind != TemplateKind::Outbound {
            continue;
        }
        let samples = std::iter::once(&template.sample.payload)
            .chain(template.additional_samples.iter().map(|s| &s.payload));
        for event in samples {
            let checked = crate::catalog::events().check(event);
            assert!(checked.is_ok(), "{}: {checked:?}", template.slug);
        }
    }
}
