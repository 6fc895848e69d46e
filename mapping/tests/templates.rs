//! Keeps the standard use-case templates honest (`erp_schemas::templates`): every template,
//! filled with its placeholders' examples, maps each of its samples to exactly its `expected`
//! output through the real engine. Inbound samples take the path of
//! `POST /v2/erp/updates/mapping_simulation` (compile, parse the payload in its format, map in a
//! simulation context); outbound samples the processor's compiled outbound transform.
//!
//! Only the engine's public compile and map functions are used, so the test moves with the
//! engine by changing the `use` lines below.

use std::time::Duration;

use serde_json::{Value, json};

use erp_mapping::outbound::{CompiledOutbound, OutboundOutcome};
use erp_mapping::payload;
use erp_mapping::{CompiledConfiguration, FileProxyContext, MappingContext, map_payload};
use erp_schemas::inbound::PayloadFormat;
use erp_schemas::templates::{TemplateKind, UseCaseTemplate, catalogue};

/// Generous: the machine running the tests may be busy, and a timeout is not what is tested.
const TIMEOUT: Duration = Duration::from_secs(10);

/// What the simulation endpoint answers for `payload` (its 422 as `Err`).
fn simulate(
    configuration: &Value,
    format: PayloadFormat,
    payload: &Value,
) -> Result<Value, String> {
    let compiled = CompiledConfiguration::compile(configuration).map_err(|e| e.to_string())?;
    let parsed = match payload {
        Value::String(text) => {
            payload::parse(format, text, &Default::default()).map_err(|e| e.to_string())?
        }
        object => object.clone(),
    };
    let result = map_payload(&compiled, &parsed, &MappingContext::simulation(TIMEOUT))
        .map_err(|e| format!("{}: {e}", e.code()))?;
    serde_json::to_value(result).map_err(|e| e.to_string())
}

/// What the processor makes of `event` for this outbound use case: the messages by mapping
/// name, or that the filter said no.
fn transform(configuration: &Value, event: &Value) -> Result<Value, String> {
    let compiled = CompiledOutbound::compile(configuration).map_err(|e| e.to_string())?;
    match compiled.apply(event, TIMEOUT).map_err(|e| e.to_string())? {
        OutboundOutcome::Filtered => Ok(json!({"filtered": true})),
        OutboundOutcome::Messages(messages) => {
            let messages: Vec<Value> = messages
                .into_iter()
                .map(|message| {
                    let name = compiled
                        .mappings
                        .iter()
                        .find(|m| m.id == message.mapping_id)
                        .map(|m| m.name.clone());
                    json!({"mapping": name, "payload": message.payload})
                })
                .collect();
            Ok(json!({"messages": messages}))
        }
    }
}

/// Every sample of a template with its expected output.
fn samples(template: &UseCaseTemplate) -> Vec<(String, PayloadFormat, &Value, &Value)> {
    let mut samples = vec![(
        "sample".to_owned(),
        template.sample.format,
        &template.sample.payload,
        &template.expected,
    )];
    for (index, sample) in template.additional_samples.iter().enumerate() {
        samples.push((
            format!("additional_samples[{index}] ({})", sample.description),
            sample.format,
            &sample.payload,
            &sample.expected,
        ));
    }
    samples
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

#[test]
fn every_template_sample_gives_its_expected_output() {
    let templates = catalogue().unwrap_or_else(|e| panic!("{e}"));
    let mut failures = Vec::new();
    let mut checked = 0;
    for template in templates {
        let configuration = match template.instantiate(&template.example_values()) {
            Ok(configuration) => configuration,
            Err(error) => {
                failures.push(format!("{}: {error}", template.slug));
                continue;
            }
        };
        for (name, format, payload, expected) in samples(template) {
            let actual = match template.kind {
                TemplateKind::Inbound => simulate(&configuration, format, payload),
                TemplateKind::Outbound => transform(&configuration, payload),
            };
            checked += 1;
            match actual {
                Ok(actual) if actual == *expected => {}
                Ok(actual) => failures.push(format!(
                    "{} {name}: expected\n{}\ngot\n{}",
                    template.slug,
                    pretty(expected),
                    pretty(&actual)
                )),
                Err(error) => failures.push(format!("{} {name}: {error}", template.slug)),
            }
        }
    }
    assert!(checked > templates.len(), "only {checked} samples checked");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn inbound_samples_produce_updates_and_outbound_samples_messages() {
    // An expected output that is empty would prove nothing.
    for template in catalogue().unwrap_or_else(|e| panic!("{e}")) {
        let expected = &template.expected;
        let produced = match template.kind {
            TemplateKind::Inbound => ["entity_updates", "meter_readings_updates"]
                .iter()
                .any(|key| expected[key].as_array().is_some_and(|a| !a.is_empty())),
            TemplateKind::Outbound => expected["messages"]
                .as_array()
                .is_some_and(|a| !a.is_empty()),
        };
        assert!(
            produced,
            "{}: the main sample produces nothing",
            template.slug
        );
        if template.kind == TemplateKind::Inbound {
            assert_eq!(
                expected["warnings"],
                json!([]),
                "{}: the main sample maps without warnings",
                template.slug
            );
        }
    }
}

#[test]
fn synced_documents_get_their_file_proxy_url_when_processed() {
    // The simulation leaves `custom_download_url` out (no integration to point at); processing
    // for an integration builds it from the template's file proxy use case.
    let template = erp_schemas::templates::find("sync-documents").unwrap_or_else(|e| panic!("{e}"));
    let configuration = template
        .instantiate(&template.example_values())
        .unwrap_or_else(|e| panic!("{e}"));
    let compiled = CompiledConfiguration::compile(&configuration).unwrap_or_else(|e| panic!("{e}"));
    let context = MappingContext::processing(
        TIMEOUT,
        Some(FileProxyContext {
            base_url: "https://files.stadtwerke-example.de".into(),
            org_id: "739224".into(),
            integration_id: "int-1".into(),
            streaming_use_cases: Default::default(),
        }),
    );
    let result = map_payload(&compiled, &template.sample.payload, &context)
        .unwrap_or_else(|e| panic!("{e}"));
    let file = &result.entity_updates[0];
    assert_eq!(file.entity_slug, "file");
    let link = file
        .attributes
        .get("custom_download_url")
        .and_then(Value::as_str)
        .and_then(|link| url::Url::parse(link).ok())
        .unwrap_or_else(|| panic!("no custom_download_url in {:?}", file.attributes));
    assert_eq!(
        link.as_str().split('?').next(),
        Some("https://files.stadtwerke-example.de/download")
    );
    let mut query: Vec<(String, String)> = link.query_pairs().into_owned().collect();
    query.sort();
    let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    assert_eq!(
        query,
        vec![
            pair("archiveObject", "ISU_PRDOCH"),
            pair("documentId", "005056A1B2C31EDF9A8B7C6D5E4F3A2B"),
            pair("integrationId", "int-1"),
            pair("orgId", "739224"),
            pair("useCaseSlug", "document-download"),
        ]
    );
}
