//! Structural compatibility of two JSON Schemas: does the `new` schema accept every instance the
//! `old` one describes? Used to compare our schemas with epilot's published ones and with the
//! snapshot of our previous release. It understands what these schemas use — `type` (with
//! OpenAPI's `nullable`), `enum`/`const`, `format`, `pattern`, `required`, `properties`,
//! `items`, `additionalProperties`, bounds, local `$ref`s, `allOf` and `anyOf` — and reports every
//! place where `new` is narrower, with a JSON pointer into the old schema's instance structure.

use std::fmt;

use serde::Serialize;
use serde_json::{Map, Value};

/// How `new` is narrower than `old` at one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DifferenceKind {
    /// `old` describes a property `new` does not (it is accepted as a custom attribute, but no
    /// longer typed or documented).
    MissingProperty,
    /// A type `old` accepts that `new` refuses.
    TypeNarrowed,
    /// Enum values (or a const) `old` accepts that `new` refuses.
    EnumNarrowed,
    /// `new` checks a format `old` does not (or another one).
    FormatChanged,
    /// `new` adds or changes a pattern.
    PatternChanged,
    /// `new` requires a property `old` does not.
    RequiredAdded,
    /// `new` closes an object `old` leaves open.
    PropertiesClosed,
    /// A tighter minimum/maximum/length/size bound.
    BoundTightened,
}

/// One difference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// Where, as a pointer into the instance: `/email/items/email` for the `email` property of
    /// the items of the `email` property (`items` and `additionalProperties` name the step).
    pub path: String,
    pub kind: DifferenceKind,
    pub detail: String,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = serde_json::to_value(self.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let path = if self.path.is_empty() {
            "/"
        } else {
            &self.path
        };
        write!(f, "{path}: {kind}: {}", self.detail)
    }
}

/// Every place where `new` is narrower than `old`. Both must be self-contained (local `$ref`s:
/// `#/$defs/…` or `#/definitions/…`).
pub fn compare(old: &Value, new: &Value) -> Vec<Difference> {
    let mut walk = Walk {
        old_root: old,
        new_root: new,
        out: Vec::new(),
    };
    walk.node(old, new, String::new(), 0);
    walk.out
}

struct Walk<'a> {
    old_root: &'a Value,
    new_root: &'a Value,
    out: Vec<Difference>,
}

const MAX_DEPTH: usize = 48;
const LOWER_BOUNDS: [&str; 5] = [
    "minimum",
    "minLength",
    "minItems",
    "minProperties",
    "exclusiveMinimum",
];
const UPPER_BOUNDS: [&str; 5] = [
    "maximum",
    "maxLength",
    "maxItems",
    "maxProperties",
    "exclusiveMaximum",
];

/// A schema with its `$ref` followed and its `allOf` parts merged in.
fn effective(schema: &Value, root: &Value, depth: usize) -> Map<String, Value> {
    let Some(map) = schema.as_object() else {
        return Map::new();
    };
    let mut merged = Map::new();
    if depth < MAX_DEPTH
        && let Some(target) = map
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix('#'))
            .and_then(|pointer| root.pointer(pointer))
    {
        merged = effective(target, root, depth + 1);
    }
    for part in map
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let part = effective(part, root, depth + 1);
        merge(&mut merged, part);
    }
    let mut own = map.clone();
    own.remove("$ref");
    own.remove("allOf");
    merge(&mut merged, own);
    merged
}

/// Merges `part` into `into`: properties and required lists are united, other keywords of
/// `part` win.
fn merge(into: &mut Map<String, Value>, part: Map<String, Value>) {
    for (key, value) in part {
        match (key.as_str(), into.get_mut(&key), value) {
            ("properties", Some(Value::Object(existing)), Value::Object(more)) => {
                existing.extend(more);
            }
            ("required", Some(Value::Array(existing)), Value::Array(more)) => {
                for item in more {
                    if !existing.contains(&item) {
                        existing.push(item);
                    }
                }
            }
            (_, _, value) => {
                into.insert(key, value);
            }
        }
    }
}

/// The JSON types a schema accepts; `None` for any.
fn types(schema: &Map<String, Value>) -> Option<Vec<String>> {
    let mut types: Vec<String> = match schema.get("type")? {
        Value::String(t) => vec![t.clone()],
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => return None,
    };
    if schema.get("nullable") == Some(&Value::Bool(true)) && !types.iter().any(|t| t == "null") {
        types.push("null".into());
    }
    Some(types)
}

/// The values a schema is limited to, if it is (`enum`, or `const`).
fn allowed(schema: &Map<String, Value>) -> Option<Vec<Value>> {
    if let Some(Value::Array(values)) = schema.get("enum") {
        return Some(values.clone());
    }
    schema.get("const").map(|c| vec![c.clone()])
}

fn accepts_type(new: &[String], old_type: &str) -> bool {
    new.iter()
        .any(|t| t == old_type || (t == "number" && old_type == "integer"))
}

impl Walk<'_> {
    fn push(&mut self, path: &str, kind: DifferenceKind, detail: String) {
        self.out.push(Difference {
            path: path.to_owned(),
            kind,
            detail,
        });
    }

    fn node(&mut self, old: &Value, new: &Value, path: String, depth: usize) {
        if depth > MAX_DEPTH || new == &Value::Bool(true) || accepts_nothing(old) {
            return;
        }
        let old = effective(old, self.old_root, 0);
        let new = effective(new, self.new_root, 0);
        // Each alternative `old` accepts must be accepted by `new`.
        if let Some(Value::Array(alternatives)) = old.get("anyOf") {
            for alternative in alternatives {
                self.node(
                    alternative,
                    &Value::Object(new.clone()),
                    path.clone(),
                    depth + 1,
                );
            }
            return;
        }
        if let Some(Value::Array(alternatives)) = new.get("anyOf") {
            // Compatible when one alternative of `new` takes what `old` describes.
            let mut best: Option<Vec<Difference>> = None;
            for alternative in alternatives {
                let mut inner = Walk {
                    old_root: self.old_root,
                    new_root: self.new_root,
                    out: Vec::new(),
                };
                inner.node(
                    &Value::Object(old.clone()),
                    alternative,
                    path.clone(),
                    depth + 1,
                );
                if best.as_ref().is_none_or(|b| inner.out.len() < b.len()) {
                    best = Some(inner.out);
                }
            }
            self.out.extend(best.unwrap_or_default());
            return;
        }
        self.scalars(&old, &new, &path);
        self.object(&old, &new, &path, depth);
        if let (Some(old_items), Some(new_items)) = (old.get("items"), new.get("items")) {
            self.node(old_items, new_items, format!("{path}/items"), depth + 1);
        }
    }

    fn scalars(&mut self, old: &Map<String, Value>, new: &Map<String, Value>, path: &str) {
        let old_allowed = allowed(old);
        if let Some(new_types) = types(new) {
            let old_types = match (types(old), &old_allowed) {
                (Some(types), _) => types,
                // An enum without a type: the types of its values.
                (None, Some(values)) => values.iter().map(json_type).collect(),
                (None, None) => vec!["any".into()],
            };
            let refused: Vec<&String> = old_types
                .iter()
                .filter(|t| !accepts_type(&new_types, t))
                .collect();
            if !refused.is_empty() {
                self.push(
                    path,
                    DifferenceKind::TypeNarrowed,
                    format!("old accepts {refused:?}, new only {new_types:?}"),
                );
            }
        }
        if let Some(new_allowed) = allowed(new) {
            match &old_allowed {
                None => self.push(
                    path,
                    DifferenceKind::EnumNarrowed,
                    format!(
                        "new limits the values to {}",
                        Value::Array(new_allowed.clone())
                    ),
                ),
                Some(old_values) => {
                    let missing: Vec<&Value> = old_values
                        .iter()
                        .filter(|v| !new_allowed.contains(v))
                        .filter(|v| {
                            !(v.is_null()
                                && types(new).is_some_and(|t| t.iter().any(|t| t == "null")))
                        })
                        .collect();
                    if !missing.is_empty() {
                        self.push(
                            path,
                            DifferenceKind::EnumNarrowed,
                            format!(
                                "new refuses {}",
                                serde_json::to_string(&missing).unwrap_or_default()
                            ),
                        );
                    }
                }
            }
        }
        if let Some(format) = new.get("format")
            && old.get("format") != Some(format)
        {
            self.push(
                path,
                DifferenceKind::FormatChanged,
                format!(
                    "new checks format {format}, old {}",
                    old.get("format").unwrap_or(&Value::Null)
                ),
            );
        }
        if let Some(pattern) = new.get("pattern")
            && old.get("pattern") != Some(pattern)
        {
            self.push(
                path,
                DifferenceKind::PatternChanged,
                format!("new pattern {pattern}"),
            );
        }
        for (bounds, tighter) in [(LOWER_BOUNDS, 1.0), (UPPER_BOUNDS, -1.0)] {
            for bound in bounds {
                let Some(new_bound) = new.get(bound).and_then(Value::as_f64) else {
                    continue;
                };
                let old_bound = old.get(bound).and_then(Value::as_f64);
                if old_bound.is_none_or(|o| (new_bound - o) * tighter > 0.0) {
                    self.push(
                        path,
                        DifferenceKind::BoundTightened,
                        format!("{bound} {new_bound}, old {old_bound:?}"),
                    );
                }
            }
        }
    }

    fn object(
        &mut self,
        old: &Map<String, Value>,
        new: &Map<String, Value>,
        path: &str,
        depth: usize,
    ) {
        let names = |schema: &Map<String, Value>| -> Vec<String> {
            schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        };
        let old_required = names(old);
        for name in names(new) {
            if !old_required.contains(&name) {
                self.push(
                    path,
                    DifferenceKind::RequiredAdded,
                    format!("new requires {name:?}"),
                );
            }
        }
        if new.get("additionalProperties") == Some(&Value::Bool(false))
            && old.get("additionalProperties") != Some(&Value::Bool(false))
        {
            self.push(
                path,
                DifferenceKind::PropertiesClosed,
                "new allows no other properties".into(),
            );
        }
        let empty = Map::new();
        let new_properties = new
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let old_properties = old
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        for (name, old_property) in old_properties {
            let here = format!("{path}/{}", name.replace('~', "~0").replace('/', "~1"));
            match new_properties.get(name) {
                Some(new_property) => self.node(old_property, new_property, here, depth + 1),
                None => match new.get("additionalProperties") {
                    Some(Value::Bool(false)) => {} // reported as PropertiesClosed
                    Some(schema @ Value::Object(_)) => {
                        self.node(old_property, schema, here, depth + 1)
                    }
                    _ => self.push(
                        &here,
                        DifferenceKind::MissingProperty,
                        "not described by new".into(),
                    ),
                },
            }
        }
        if let (Some(old_extra @ Value::Object(_)), Some(new_extra @ Value::Object(_))) = (
            old.get("additionalProperties"),
            new.get("additionalProperties"),
        ) {
            self.node(
                old_extra,
                new_extra,
                format!("{path}/additionalProperties"),
                depth + 1,
            );
        }
    }
}

/// `false` or `{"not": {}}`: nothing to stay compatible with.
fn accepts_nothing(schema: &Value) -> bool {
    match schema {
        Value::Bool(false) => true,
        Value::Object(map) => map.get("not").is_some_and(|not| {
            not == &Value::Bool(true) || not.as_object().is_some_and(Map::is_empty)
        }),
        _ => false,
    }
}

fn json_type(value: &Value) -> String {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
    .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kinds(old: Value, new: Value) -> Vec<DifferenceKind> {
        compare(&old, &new).into_iter().map(|d| d.kind).collect()
    }

    #[test]
    fn wider_is_compatible_and_narrower_is_reported_where_it_is() {
        let old = json!({"type": "object", "required": ["a"], "properties": {
            "a": {"type": "integer"}, "b": {"type": "string", "enum": ["x", "y"]},
            "c": {"type": "string", "nullable": true}, "d": {"type": "array", "items": {"$ref": "#/definitions/D"}}},
            "definitions": {"D": {"type": "object", "properties": {"e": {"type": "string"}}}}});
        let wider = json!({"type": "object", "properties": {
            "a": {"type": ["number", "null"]}, "b": {"enum": ["x", "y", "z"]},
            "c": {"type": ["string", "null"]}, "d": {"type": "array", "items": {"$ref": "#/$defs/D"}}},
            "$defs": {"D": {"allOf": [{"$ref": "#/$defs/base"}]}, "base": {"properties": {"e": {"type": "string"}}}}});
        assert_eq!(compare(&old, &wider), vec![]);
        let narrower = json!({"type": "object", "required": ["a", "b"], "properties": {
            "a": {"type": "string"}, "b": {"type": "string", "enum": ["x"]},
            "c": {"type": "string"}, "d": {"type": "array", "items": {"properties": {"e": {"type": "string", "format": "date"}}}}}});
        let differences = compare(&old, &narrower);
        let at: Vec<(&str, DifferenceKind)> = differences
            .iter()
            .map(|d| (d.path.as_str(), d.kind))
            .collect();
        assert_eq!(
            at,
            vec![
                ("", DifferenceKind::RequiredAdded),
                ("/a", DifferenceKind::TypeNarrowed),
                ("/b", DifferenceKind::EnumNarrowed),
                ("/c", DifferenceKind::TypeNarrowed),
                ("/d/items/e", DifferenceKind::FormatChanged),
            ]
        );
    }

    #[test]
    fn missing_closed_bounds_and_alternatives() {
        assert_eq!(
            kinds(json!({"properties": {"a": {}}}), json!({"properties": {}})),
            vec![DifferenceKind::MissingProperty]
        );
        assert_eq!(
            kinds(
                json!({"properties": {"a": {}}}),
                json!({"additionalProperties": false})
            ),
            vec![DifferenceKind::PropertiesClosed]
        );
        assert_eq!(
            kinds(
                json!({"type": "string", "maxLength": 10}),
                json!({"type": "string", "maxLength": 5})
            ),
            vec![DifferenceKind::BoundTightened]
        );
        assert_eq!(
            kinds(
                json!({"type": "object"}),
                json!({"anyOf": [{"type": "array"}, {"type": "object"}]})
            ),
            vec![]
        );
        assert_eq!(
            kinds(
                json!({"anyOf": [{"type": "object"}, {"type": "string"}]}),
                json!({"type": "object"})
            ),
            vec![DifferenceKind::TypeNarrowed]
        );
    }
}
