//! Checking a payload's text against [`PayloadLimits`] without building its tree: the ingest runs
//! this on every event it accepts, the processor before it maps one. Both scans are iterative
//! (a byte state machine for JSON, quick-xml's pull reader for XML), so a hostile document costs
//! one pass over its bytes and no stack.
//!
//! Only limits are judged here. A document that is malformed but within its limits passes: the
//! JSON endpoints validate JSON themselves, and malformed XML becomes `INVALID_PAYLOAD` when it is
//! mapped, as before.

use quick_xml::Reader;
use quick_xml::events::Event;

use erp_schemas::inbound::PayloadFormat;
use erp_schemas::limits::{Limit, LimitExceeded, PayloadLimits};

/// Counts nodes and depth while a document is read, failing at the first limit passed. Shared
/// by the checks below and the XML converter, so they cannot disagree.
#[derive(Debug)]
pub(crate) struct Budget<'a> {
    limits: &'a PayloadLimits,
    depth: usize,
    nodes: usize,
}

impl<'a> Budget<'a> {
    /// A budget for one document of `bytes` bytes.
    pub(crate) fn new(limits: &'a PayloadLimits, bytes: usize) -> Result<Self, LimitExceeded> {
        PayloadLimits::check(Limit::Bytes, limits.max_bytes, bytes)?;
        Ok(Self {
            limits,
            depth: 0,
            nodes: 0,
        })
    }

    /// One more node (element, attribute, value).
    pub(crate) fn node(&mut self) -> Result<(), LimitExceeded> {
        self.nodes += 1;
        PayloadLimits::check(Limit::Elements, self.limits.max_elements, self.nodes)
    }

    /// A container opens: one level deeper, and a node.
    pub(crate) fn open(&mut self) -> Result<(), LimitExceeded> {
        self.depth += 1;
        PayloadLimits::check(Limit::Depth, self.limits.max_depth, self.depth)?;
        self.node()
    }

    /// A container closes.
    pub(crate) fn close(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    /// A string (attribute value, text, JSON string) of `bytes` bytes.
    pub(crate) fn string(&self, bytes: usize) -> Result<(), LimitExceeded> {
        PayloadLimits::check(Limit::StringBytes, self.limits.max_string_bytes, bytes)
    }
}

/// Checks a payload's text in its declared format against `limits`.
pub fn check(
    format: PayloadFormat,
    text: &str,
    limits: &PayloadLimits,
) -> Result<(), LimitExceeded> {
    match format {
        PayloadFormat::Json => check_json(text, limits),
        PayloadFormat::Xml => check_xml(text, limits),
    }
}

/// Checks JSON text. Counts every object, array and scalar value; depth counts objects and
/// arrays. Lenient about syntax (the text is validated elsewhere): it only measures.
pub fn check_json(text: &str, limits: &PayloadLimits) -> Result<(), LimitExceeded> {
    let mut budget = Budget::new(limits, text.len())?;
    // Kinds of the open containers (true: object), for telling keys from values. Bounded by
    // `max_depth`: `open` fails before it grows further.
    let mut open: Vec<bool> = Vec::new();
    let mut key_next = false;
    let mut in_string = false;
    let mut escaped = false;
    let mut string_start = 0;
    let mut in_literal = false;
    for (at, byte) in text.bytes().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
                budget.string(at - string_start)?;
            }
            continue;
        }
        let delimiter = matches!(
            byte,
            b'{' | b'}' | b'[' | b']' | b',' | b':' | b'"' | b' ' | b'\t' | b'\n' | b'\r'
        );
        if in_literal && delimiter {
            in_literal = false;
        }
        match byte {
            b'{' | b'[' => {
                budget.open()?;
                open.push(byte == b'{');
                key_next = byte == b'{';
            }
            b'}' | b']' => {
                budget.close();
                open.pop();
                key_next = false;
            }
            b',' => key_next = open.last().copied().unwrap_or(false),
            b':' => key_next = false,
            b'"' => {
                in_string = true;
                string_start = at + 1;
                if !key_next {
                    budget.node()?;
                }
            }
            _ if delimiter => {}
            _ if !in_literal => {
                in_literal = true;
                budget.node()?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks XML text: depth counts elements, nodes count elements and attributes, strings are
/// attribute values and each element's text. Stops (passing) at the first syntax error.
pub fn check_xml(text: &str, limits: &PayloadLimits) -> Result<(), LimitExceeded> {
    let mut budget = Budget::new(limits, text.len())?;
    let mut reader = Reader::from_str(text);
    // Text of the innermost open element so far (text comes in pieces around references).
    let mut element_text = 0usize;
    loop {
        let event = match reader.read_event() {
            Ok(event) => event,
            Err(_) => return Ok(()),
        };
        match event {
            Event::Start(start) => {
                if element(&mut budget, &start)?.is_none() {
                    return Ok(());
                }
                element_text = 0;
            }
            Event::Empty(start) => {
                if element(&mut budget, &start)?.is_none() {
                    return Ok(());
                }
                budget.close();
                element_text = 0;
            }
            Event::End(_) => {
                budget.close();
                element_text = 0;
            }
            Event::Text(content) => {
                element_text += content.len();
                budget.string(element_text)?;
            }
            Event::CData(content) => {
                element_text += content.len();
                budget.string(element_text)?;
            }
            Event::GeneralRef(_) => {
                element_text += 1;
                budget.string(element_text)?;
            }
            Event::Eof => return Ok(()),
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
}

/// Counts an element and its attributes. `Ok(None)` at a malformed attribute (not a limit
/// matter: the converter reports it).
fn element(
    budget: &mut Budget<'_>,
    start: &quick_xml::events::BytesStart<'_>,
) -> Result<Option<()>, LimitExceeded> {
    budget.open()?;
    for attribute in start.attributes() {
        let Ok(attribute) = attribute else {
            return Ok(None);
        };
        budget.node()?;
        budget.string(attribute.value.len())?;
    }
    Ok(Some(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_depth: usize, max_elements: usize, max_string_bytes: usize) -> PayloadLimits {
        PayloadLimits {
            max_depth,
            max_bytes: 1 << 20,
            max_elements,
            max_string_bytes,
        }
    }

    #[test]
    fn json_depth_nodes_and_strings_are_measured() {
        let text = r#"{"a": [1, {"b": "xyz"}, true, null], "c": -1.5e3}"#;
        // Nodes: {} a:[] 1 {} "xyz" true null -1.5e3 = 8; depth 3.
        assert!(check_json(text, &limits(3, 8, 3)).is_ok());
        assert_eq!(
            check_json(text, &limits(2, 8, 3)).unwrap_err().limit,
            Limit::Depth
        );
        assert_eq!(
            check_json(text, &limits(3, 7, 3)).unwrap_err().limit,
            Limit::Elements
        );
        assert_eq!(
            check_json(text, &limits(3, 8, 2)).unwrap_err().limit,
            Limit::StringBytes
        );
        // Brackets inside strings and escaped quotes do not count.
        assert!(check_json(r#"["[[[\"{{{"]"#, &limits(1, 2, 10)).is_ok());
    }

    #[test]
    fn xml_depth_nodes_and_strings_are_measured() {
        let text = r#"<a x="12"><b/><c>hello</c></a>"#;
        // Nodes: a, @x, b, c = 4; depth 2 (b is empty and closes at once).
        assert!(check_xml(text, &limits(2, 4, 5)).is_ok());
        assert_eq!(
            check_xml(text, &limits(1, 4, 5)).unwrap_err().limit,
            Limit::Depth
        );
        assert_eq!(
            check_xml(text, &limits(2, 3, 5)).unwrap_err().limit,
            Limit::Elements
        );
        assert_eq!(
            check_xml(text, &limits(2, 4, 4)).unwrap_err().limit,
            Limit::StringBytes
        );
        let siblings = "<r>".to_owned() + &"<e/>".repeat(100) + "</r>";
        assert!(check_xml(&siblings, &limits(2, 101, 5)).is_ok());
    }

    #[test]
    fn deep_documents_are_refused_without_recursion() {
        let deep_xml = "<e>".repeat(50_000) + &"</e>".repeat(50_000);
        let error = check(PayloadFormat::Xml, &deep_xml, &PayloadLimits::default()).unwrap_err();
        assert_eq!(error.limit, Limit::Depth);
        let deep_json = "[".repeat(50_000) + &"]".repeat(50_000);
        let error = check(PayloadFormat::Json, &deep_json, &PayloadLimits::default()).unwrap_err();
        assert_eq!(error.limit, Limit::Depth);
    }

    #[test]
    fn the_size_limit_is_checked_first() {
        let limits = PayloadLimits {
            max_bytes: 4,
            ..PayloadLimits::default()
        };
        let error = check_json("[1,2,3]", &limits).unwrap_err();
        assert_eq!((error.limit, error.found), (Limit::Bytes, Some(7)));
    }
}
