//! The placeholder rule of template configurations.
//!
//! A marker is `{{name}}` with `name` matching `^[a-z][a-z0-9_]{0,63}$`, written inside a JSON
//! string (never in an object key), so a template stays valid JSON. `\{{name}}` is the literal
//! text `{{name}}`. Any other braces (`{{env.erp.base_url}}`, `{{ name }}`, JSONata's `{`) are
//! plain text.
//!
//! - A string that is exactly one marker is replaced by the value, which keeps its JSON type
//!   (a number stays a number, an object an object). A `null` value removes the member (or
//!   the list item) the string stood for.
//! - A marker inside a longer string is interpolation: a string is inserted as it is, a number
//!   or boolean as its JSON text, an object or list as compact JSON text (also a JSONata
//!   literal, so lookup tables can be placeholders); `null` cannot be interpolated.
//! - Inserted values are not read again for markers.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::error::TemplateError;

/// Whether `name` can be a placeholder name.
pub fn is_placeholder_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// A piece of a string: literal text or a marker.
#[derive(Debug, PartialEq)]
enum Piece<'a> {
    Text(&'a str),
    Marker(&'a str),
}

/// Splits `text` into literal text and markers.
fn pieces(text: &str) -> Vec<Piece<'_>> {
    let mut pieces = Vec::new();
    let mut rest = text;
    let mut literal_start = 0;
    let mut offset = 0;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let marker = after
            .find("}}")
            .map(|close| &after[..close])
            .filter(|name| is_placeholder_name(name));
        let at = offset + open;
        match marker {
            Some(name) => {
                let end = at + 2 + name.len() + 2;
                if text[..at].ends_with('\\') {
                    // Escaped: the backslash goes, the marker stays as text.
                    pieces.push(Piece::Text(&text[literal_start..at - 1]));
                    literal_start = at;
                } else {
                    pieces.push(Piece::Text(&text[literal_start..at]));
                    pieces.push(Piece::Marker(name));
                    literal_start = end;
                }
                offset = end;
            }
            None => offset = at + 1,
        }
        rest = &text[offset..];
    }
    pieces.push(Piece::Text(&text[literal_start..]));
    pieces.retain(|piece| *piece != Piece::Text(""));
    pieces
}

/// The placeholder names used by markers in `value`, and the object keys that hold markers
/// (which the rule does not allow).
pub(super) fn markers(value: &Value, names: &mut Vec<String>, bad_keys: &mut Vec<String>) {
    match value {
        Value::String(text) => {
            for piece in pieces(text) {
                if let Piece::Marker(name) = piece {
                    names.push(name.to_owned());
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                markers(item, names, bad_keys);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                if pieces(key).iter().any(|p| matches!(p, Piece::Marker(_))) {
                    bad_keys.push(key.clone());
                }
                markers(item, names, bad_keys);
            }
        }
        _ => {}
    }
}

/// Applies resolved placeholder values to a template configuration.
pub(super) struct Substitution<'a> {
    pub(super) template: &'a str,
    pub(super) values: &'a BTreeMap<String, Value>,
}

impl Substitution<'_> {
    /// `value` with every marker replaced; `None` when `value` was a whole-string marker whose
    /// value is `null` (the caller drops it).
    pub(super) fn apply(&self, value: &Value) -> Result<Option<Value>, TemplateError> {
        Ok(Some(match value {
            Value::String(text) => return self.string(text),
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    out.extend(self.apply(item)?);
                }
                Value::Array(out)
            }
            Value::Object(map) => {
                let mut out = Map::new();
                for (key, item) in map {
                    if let Some(item) = self.apply(item)? {
                        out.insert(key.clone(), item);
                    }
                }
                Value::Object(out)
            }
            other => other.clone(),
        }))
    }

    fn string(&self, text: &str) -> Result<Option<Value>, TemplateError> {
        let pieces = pieces(text);
        if let [Piece::Marker(name)] = pieces.as_slice() {
            let value = self.value(name)?;
            return Ok((!value.is_null()).then(|| value.clone()));
        }
        let mut out = String::with_capacity(text.len());
        for piece in pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Marker(name) => match self.value(name)? {
                    Value::String(s) => out.push_str(s),
                    Value::Null => {
                        return Err(TemplateError::PlaceholderType {
                            template: self.template.to_owned(),
                            placeholder: name.to_owned(),
                            message: format!(
                                "is null, which cannot be written inside the string {text:?}"
                            ),
                        });
                    }
                    other => out.push_str(&other.to_string()),
                },
            }
        }
        Ok(Some(Value::String(out)))
    }

    fn value(&self, name: &str) -> Result<&Value, TemplateError> {
        self.values.get(name).ok_or_else(|| TemplateError::Invalid {
            template: self.template.to_owned(),
            message: format!("marker {{{{{name}}}}} names no declared placeholder"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn apply(value: Value, values: Value) -> Result<Option<Value>, TemplateError> {
        let values: BTreeMap<String, Value> = serde_json::from_value(values).expect("map");
        Substitution {
            template: "t",
            values: &values,
        }
        .apply(&value)
    }

    #[test]
    fn splits_markers_escapes_and_other_braces() {
        assert_eq!(
            pieces("a {{x}} b"),
            vec![Piece::Text("a "), Piece::Marker("x"), Piece::Text(" b")]
        );
        assert_eq!(
            pieces("{{x}}{{y_2}}"),
            vec![Piece::Marker("x"), Piece::Marker("y_2")]
        );
        assert_eq!(
            pieces(r"\{{x}} {{x}}"),
            vec![Piece::Text("{{x}} "), Piece::Marker("x")]
        );
        for text in [
            "{{env.erp.base_url}}",
            "{{ x }}",
            "{{X}}",
            "{{1x}}",
            "{ {x} }",
            "{{x}",
            "{{",
        ] {
            assert_eq!(pieces(text), vec![Piece::Text(text)], "{text}");
        }
        assert_eq!(
            pieces("{{{x}}}"),
            vec![Piece::Text("{"), Piece::Marker("x"), Piece::Text("}")]
        );
        assert_eq!(pieces(""), vec![]);
    }

    #[test]
    fn whole_strings_keep_the_type_and_partial_ones_interpolate() {
        let values =
            json!({"n": 3, "b": true, "s": "x'y", "o": {"01": "power"}, "l": [1, 2], "z": null});
        let config = json!({
            "number": "{{n}}", "boolean": "{{b}}", "object": "{{o}}", "list": "{{l}}",
            "text": "n={{n}} b={{b}} s={{s}}", "lookup": "$lookup({{o}}, SPARTE) in {{l}}",
            "dropped": "{{z}}", "items": ["{{z}}", "{{s}}", 4], "escaped": r"\{{n}}",
            "other": "{{env.key}}"
        });
        assert_eq!(
            apply(config, values).expect("applies"),
            Some(json!({
                "number": 3, "boolean": true, "object": {"01": "power"}, "list": [1, 2],
                "text": "n=3 b=true s=x'y", "lookup": "$lookup({\"01\":\"power\"}, SPARTE) in [1,2]",
                "items": ["x'y", 4], "escaped": "{{n}}", "other": "{{env.key}}"
            }))
        );
    }

    #[test]
    fn null_cannot_be_interpolated_and_undeclared_markers_are_bugs() {
        let error = apply(json!("a {{z}}"), json!({"z": null})).unwrap_err();
        assert_eq!(error.code(), "TEMPLATE_PLACEHOLDER_TYPE");
        assert!(error.to_string().contains("\"z\""), "{error}");
        let error = apply(json!(["{{nope}}"]), json!({})).unwrap_err();
        assert_eq!(error.code(), "TEMPLATE_INVALID");
        assert!(error.to_string().contains("{{nope}}"), "{error}");
    }

    #[test]
    fn finds_markers_and_marker_keys() {
        let (mut names, mut keys) = (Vec::new(), Vec::new());
        markers(
            &json!({"a": ["{{x}}", {"{{k}}": "y {{y}}"}], "b": r"\{{w}}"}),
            &mut names,
            &mut keys,
        );
        assert_eq!(names, vec!["x", "y"]);
        assert_eq!(keys, vec!["{{k}}"]);
    }

    #[test]
    fn placeholder_names() {
        for good in ["a", "webhook_id", "obis_ht2"] {
            assert!(is_placeholder_name(good), "{good}");
        }
        for bad in ["", "A", "_a", "1a", "a-b", "a.b", &"a".repeat(65)] {
            assert!(!is_placeholder_name(bad), "{bad}");
        }
    }
}
