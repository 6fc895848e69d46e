//! Reading an event's payload in its declared format into the JSON tree the mapping sees.
//!
//! XML follows one documented convention (epilot leaves it open):
//!
//! - the root element is the single top-level key: `<customer>…</customer>` → `{"customer": …}`;
//! - an element without attributes and child elements becomes its text (`""` when empty);
//! - otherwise an object: attributes as `"@name"`, child elements by name, text as `"#text"`
//!   (in JSONata these keys need backticks: ``Partner.`@id` ``);
//! - repeated child elements become an array in document order (a single one is not wrapped:
//!   JSONata paths treat one value and a one-item array alike, and `[]` forces an array);
//! - names are kept as written, namespace prefixes included (`"sap:Partner"`);
//! - every value is a string (`$number()` converts in the mapping); text is trimmed, CDATA kept
//!   verbatim; comments, processing instructions and the declaration are ignored; entity
//!   references other than XML's five and character references are an error (no DTD expansion:
//!   a `<!DOCTYPE>` with entity declarations is skipped unread, so nothing is expanded or
//!   fetched).
//!
//! Every read is bounded by [`PayloadLimits`]: the converters stop at the first element, value or
//! string past a limit, before a tree deeper than `max_depth` exists (dropping or walking such a
//! tree would recurse once per level and overflow the thread's stack).

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};
use serde_json::{Map, Value};

use crate::MappingError;
use crate::limits::{Budget, check_json};
use erp_schemas::inbound::PayloadFormat;
use erp_schemas::limits::{LimitExceeded, PayloadLimits};

/// Parses a payload within `limits`.
pub fn parse(
    format: PayloadFormat,
    text: &str,
    limits: &PayloadLimits,
) -> Result<Value, MappingError> {
    match format {
        PayloadFormat::Json => {
            check_json(text, limits)?;
            serde_json::from_str(text).map_err(|e| invalid("json", e.to_string()))
        }
        PayloadFormat::Xml => xml_to_json(text, limits),
    }
}

/// Parses a payload within `limits` straight into the mapping engine's value type (JSON without
/// an intermediate tree).
pub fn parse_document(
    format: PayloadFormat,
    text: &str,
    limits: &PayloadLimits,
) -> Result<jsonata_core::value::JValue, MappingError> {
    match format {
        PayloadFormat::Json => {
            check_json(text, limits)?;
            jsonata_core::value::JValue::from_json_str(text)
                .map_err(|e| invalid("json", e.to_string()))
        }
        PayloadFormat::Xml => xml_to_json(text, limits).map(jsonata_core::value::JValue::from),
    }
}

/// Why a conversion stopped: a limit or a syntax error.
enum Stop {
    Limit(LimitExceeded),
    Syntax(String),
}

impl From<LimitExceeded> for Stop {
    fn from(exceeded: LimitExceeded) -> Self {
        Stop::Limit(exceeded)
    }
}

impl From<String> for Stop {
    fn from(message: String) -> Self {
        Stop::Syntax(message)
    }
}

impl From<&str> for Stop {
    fn from(message: &str) -> Self {
        Stop::Syntax(message.to_owned())
    }
}

fn invalid(format: &str, message: String) -> MappingError {
    MappingError::InvalidPayload {
        format: format.into(),
        message,
    }
}

/// An element being read.
struct Element {
    name: String,
    fields: Map<String, Value>,
    text: String,
    has_children: bool,
}

impl Element {
    fn open(start: &BytesStart<'_>, budget: &mut Budget<'_>) -> Result<Self, Stop> {
        budget.open()?;
        let name = String::from_utf8_lossy(start.name().as_ref()).into_owned();
        let mut fields = Map::new();
        for attribute in start.attributes() {
            let attribute = attribute.map_err(|e| format!("in <{name}>: {e}"))?;
            budget.node()?;
            budget.string(attribute.value.len())?;
            let key = format!("@{}", String::from_utf8_lossy(attribute.key.as_ref()));
            let value = attribute
                .unescape_value()
                .map_err(|e| format!("in <{name}> attribute {key}: {e}"))?;
            fields.insert(key, Value::String(value.into_owned()));
        }
        Ok(Self {
            name,
            fields,
            text: String::new(),
            has_children: false,
        })
    }

    fn close(self) -> (String, Value) {
        let text = self.text.trim().to_owned();
        let value = if self.fields.is_empty() && !self.has_children {
            Value::String(text)
        } else {
            let mut fields = self.fields;
            if !text.is_empty() {
                fields.insert("#text".into(), Value::String(text));
            }
            Value::Object(fields)
        };
        (self.name, value)
    }

    fn add_child(&mut self, name: String, value: Value) {
        self.has_children = true;
        match self.fields.get_mut(&name) {
            Some(Value::Array(items)) => items.push(value),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, value]);
            }
            None => {
                self.fields.insert(name, value);
            }
        }
    }
}

/// Converts an XML document to JSON by the convention above, within `limits`.
pub fn xml_to_json(text: &str, limits: &PayloadLimits) -> Result<Value, MappingError> {
    convert(text, limits).map_err(|stop| match stop {
        Stop::Limit(exceeded) => MappingError::PayloadLimit(exceeded),
        Stop::Syntax(message) => invalid("xml", message),
    })
}

fn convert(text: &str, limits: &PayloadLimits) -> Result<Value, Stop> {
    let mut budget = Budget::new(limits, text.len())?;
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<(String, Value)> = None;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("at byte {}: {e}", reader.buffer_position()))?;
        match event {
            Event::Start(start) => {
                if root.is_some() {
                    return Err("more than one root element".into());
                }
                // The stack holds at most `max_depth` elements: `open` refuses the next one.
                stack.push(Element::open(&start, &mut budget)?);
            }
            Event::Empty(start) => {
                let (name, value) = Element::open(&start, &mut budget)?.close();
                budget.close();
                match stack.last_mut() {
                    Some(parent) => parent.add_child(name, value),
                    None if root.is_none() => root = Some((name, value)),
                    None => return Err("more than one root element".into()),
                }
            }
            Event::End(_) => {
                let element = stack.pop().ok_or("closing tag without opening tag")?;
                budget.close();
                let (name, value) = element.close();
                match stack.last_mut() {
                    Some(parent) => parent.add_child(name, value),
                    None => root = Some((name, value)),
                }
            }
            Event::Text(content) => {
                let decoded = content.decode().map_err(|e| e.to_string())?;
                match stack.last_mut() {
                    Some(element) => {
                        element.text.push_str(&decoded);
                        budget.string(element.text.len())?;
                    }
                    None if decoded.trim().is_empty() => {}
                    None => return Err("text outside the root element".into()),
                }
            }
            Event::CData(content) => {
                let decoded = content.decode().map_err(|e| e.to_string())?;
                if let Some(element) = stack.last_mut() {
                    element.text.push_str(&decoded);
                    budget.string(element.text.len())?;
                }
            }
            Event::GeneralRef(reference) => {
                let resolved = match reference.resolve_char_ref().map_err(|e| e.to_string())? {
                    Some(c) => c,
                    None => match reference.decode().map_err(|e| e.to_string())?.as_ref() {
                        "amp" => '&',
                        "lt" => '<',
                        "gt" => '>',
                        "quot" => '"',
                        "apos" => '\'',
                        other => return Err(format!("unknown entity &{other};").into()),
                    },
                };
                if let Some(element) = stack.last_mut() {
                    element.text.push(resolved);
                }
            }
            Event::Eof => break,
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
    if !stack.is_empty() {
        return Err(Stop::Syntax(format!(
            "unclosed element <{}>",
            stack.last().map(|e| e.name.as_str()).unwrap_or("")
        )));
    }
    let (name, value) = root.ok_or("no root element")?;
    let mut document = Map::new();
    document.insert(name, value);
    Ok(Value::Object(document))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn documented_convention() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
            <!-- IS-U export -->
            <sap:Partner xmlns:sap="urn:sap" id="BP-1">
              <Name>Müller &amp; Söhne</Name>
              <Email/>
              <Meter serial="M1"><Reading>100.5</Reading></Meter>
              <Meter serial="M2"><Reading>7</Reading></Meter>
              <Note><![CDATA[ <raw> text ]]></Note>
              <Code kind="x">A&#x42;C</Code>
            </sap:Partner>"#;
        assert_eq!(
            xml_to_json(xml, &PayloadLimits::default()).expect("parses"),
            json!({"sap:Partner": {
                "@xmlns:sap": "urn:sap", "@id": "BP-1",
                "Name": "Müller & Söhne",
                "Email": "",
                "Meter": [{"@serial": "M1", "Reading": "100.5"}, {"@serial": "M2", "Reading": "7"}],
                "Note": "<raw> text",
                "Code": {"@kind": "x", "#text": "ABC"}
            }})
        );
    }

    #[test]
    fn the_spec_example_maps_by_path() {
        let value = parse(
            PayloadFormat::Xml,
            "<customer><id>C001</id><name>John Doe</name></customer>",
            &PayloadLimits::default(),
        )
        .expect("parses");
        assert_eq!(
            value,
            json!({"customer": {"id": "C001", "name": "John Doe"}})
        );
    }

    #[test]
    fn malformed_xml_is_an_invalid_payload() {
        for bad in [
            "<a><b></a>",
            "<a>",
            "",
            "<a/><b/>",
            "text",
            "<a>&custom;</a>",
        ] {
            let error = parse(PayloadFormat::Xml, bad, &PayloadLimits::default()).unwrap_err();
            assert_eq!(error.code(), "INVALID_PAYLOAD", "{bad}: {error}");
        }
    }

    #[test]
    fn a_deep_document_is_refused_before_its_tree_exists() {
        // The stack overflow of issue 12: 50,000 nested elements.
        let deep = "<e>".repeat(50_000) + &"</e>".repeat(50_000);
        let error = parse(PayloadFormat::Xml, &deep, &PayloadLimits::default()).unwrap_err();
        assert_eq!(error.code(), "PAYLOAD_LIMIT_EXCEEDED", "{error}");
        assert!(error.to_string().contains("max-depth"), "{error}");
        let at_limit = "<e>".repeat(64) + &"</e>".repeat(64);
        assert!(parse(PayloadFormat::Xml, &at_limit, &PayloadLimits::default()).is_ok());
    }

    #[test]
    fn entity_declarations_are_neither_expanded_nor_fetched() {
        let limits = PayloadLimits::default();
        // A billion-laughs document: the DTD is skipped, so `&lol9;` is an unknown entity.
        let laughs = r#"<?xml version="1.0"?>
            <!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">
              <!ENTITY lol9 "&lol2;&lol2;">]>
            <lolz>&lol9;</lolz>"#;
        let error = parse(PayloadFormat::Xml, laughs, &limits).unwrap_err();
        assert_eq!(error.code(), "INVALID_PAYLOAD");
        assert!(
            error.to_string().contains("unknown entity &lol9;"),
            "{error}"
        );
        // An external entity: nothing is fetched (the URL would fail the test by hanging or
        // succeeding); the reference is refused.
        let external = r#"<!DOCTYPE r [<!ENTITY x SYSTEM "http://127.0.0.1:9/secret">]><r>&x;</r>"#;
        let error = parse(PayloadFormat::Xml, external, &limits).unwrap_err();
        assert!(error.to_string().contains("unknown entity &x;"), "{error}");
        // Declared but unused: the document maps, the DTD ignored.
        let unused = r#"<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>ok</r>"#;
        assert_eq!(
            parse(PayloadFormat::Xml, unused, &limits).expect("parses"),
            serde_json::json!({"r": "ok"})
        );
    }

    #[test]
    fn huge_attributes_and_texts_are_refused() {
        let limits = PayloadLimits {
            max_string_bytes: 1000,
            ..PayloadLimits::default()
        };
        let attribute = format!("<r a=\"{}\"/>", "x".repeat(1001));
        let text = format!("<r>{}</r>", "x".repeat(1001));
        for document in [attribute, text] {
            let error = parse(PayloadFormat::Xml, &document, &limits).unwrap_err();
            assert!(error.to_string().contains("max-string-bytes"), "{error}");
        }
    }
}
