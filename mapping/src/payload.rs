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
//!   references other than XML's five and character references are an error (no DTD expansion).

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};
use serde_json::{Map, Value};

use crate::MappingError;
use erp_schemas::inbound::PayloadFormat;

/// Parses a payload.
pub fn parse(format: PayloadFormat, text: &str) -> Result<Value, MappingError> {
    match format {
        PayloadFormat::Json => {
            serde_json::from_str(text).map_err(|e| invalid("json", e.to_string()))
        }
        PayloadFormat::Xml => xml_to_json(text).map_err(|message| invalid("xml", message)),
    }
}

/// Parses a payload straight into the mapping engine's value type (JSON without an
/// intermediate tree).
pub fn parse_document(
    format: PayloadFormat,
    text: &str,
) -> Result<jsonata_core::value::JValue, MappingError> {
    match format {
        PayloadFormat::Json => jsonata_core::value::JValue::from_json_str(text)
            .map_err(|e| invalid("json", e.to_string())),
        PayloadFormat::Xml => xml_to_json(text)
            .map(jsonata_core::value::JValue::from)
            .map_err(|message| invalid("xml", message)),
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
    fn open(start: &BytesStart<'_>) -> Result<Self, String> {
        let name = String::from_utf8_lossy(start.name().as_ref()).into_owned();
        let mut fields = Map::new();
        for attribute in start.attributes() {
            let attribute = attribute.map_err(|e| format!("in <{name}>: {e}"))?;
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

/// Converts an XML document to JSON by the convention above.
pub fn xml_to_json(text: &str) -> Result<Value, String> {
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
                stack.push(Element::open(&start)?);
            }
            Event::Empty(start) => {
                let (name, value) = Element::open(&start)?.close();
                match stack.last_mut() {
                    Some(parent) => parent.add_child(name, value),
                    None if root.is_none() => root = Some((name, value)),
                    None => return Err("more than one root element".into()),
                }
            }
            Event::End(_) => {
                let element = stack.pop().ok_or("closing tag without opening tag")?;
                let (name, value) = element.close();
                match stack.last_mut() {
                    Some(parent) => parent.add_child(name, value),
                    None => root = Some((name, value)),
                }
            }
            Event::Text(content) => {
                let decoded = content.decode().map_err(|e| e.to_string())?;
                match stack.last_mut() {
                    Some(element) => element.text.push_str(&decoded),
                    None if decoded.trim().is_empty() => {}
                    None => return Err("text outside the root element".into()),
                }
            }
            Event::CData(content) => {
                let decoded = content.decode().map_err(|e| e.to_string())?;
                if let Some(element) = stack.last_mut() {
                    element.text.push_str(&decoded);
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
                        other => return Err(format!("unknown entity &{other};")),
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
        return Err(format!(
            "unclosed element <{}>",
            stack.last().map(|e| e.name.as_str()).unwrap_or("")
        ));
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
            xml_to_json(xml).expect("parses"),
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
            let error = parse(PayloadFormat::Xml, bad).unwrap_err();
            assert_eq!(error.code(), "INVALID_PAYLOAD", "{bad}: {error}");
        }
    }
}
