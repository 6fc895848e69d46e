//! Array attribute operations (epilot spec §4.11) as the platform applies them: a plain array or
//! `{"_set": [...]}` replaces, `{"_append": [...]}` adds the values not yet present (in order,
//! without repeating), `{"_append_all": [...]}` adds all. When the entity does not exist yet,
//! every operation behaves like `_set`. The mapping emits these forms unchanged; this is the
//! reference of what they mean, for consumers of `InboundEventMapped` and for the tests.

use serde_json::Value;

/// An array operation as written in an attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum ArrayOperation {
    Set(Vec<Value>),
    Append(Vec<Value>),
    AppendAll(Vec<Value>),
}

impl ArrayOperation {
    /// Reads an attribute value: a plain array is `_set`; an object with exactly one of
    /// `_set`, `_append`, `_append_all` holding an array is that operation.
    pub fn read(value: &Value) -> Option<Self> {
        match value {
            Value::Array(items) => Some(Self::Set(items.clone())),
            Value::Object(map) if map.len() == 1 => {
                let (key, items) = map.iter().next()?;
                let items = items.as_array()?.clone();
                match key.as_str() {
                    "_set" => Some(Self::Set(items)),
                    "_append" => Some(Self::Append(items)),
                    "_append_all" => Some(Self::AppendAll(items)),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// The attribute after applying the operation to `existing` (`None`: the entity does not
    /// exist yet).
    pub fn apply(&self, existing: Option<&[Value]>) -> Vec<Value> {
        match (self, existing) {
            (Self::Set(items), _) | (Self::Append(items) | Self::AppendAll(items), None) => {
                items.clone()
            }
            (Self::Append(items), Some(existing)) => {
                let mut result = existing.to_vec();
                for item in items {
                    if !result.contains(item) {
                        result.push(item.clone());
                    }
                }
                result
            }
            (Self::AppendAll(items), Some(existing)) => {
                existing.iter().chain(items).cloned().collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn documented_example() {
        let existing = vec![json!("EXISTING"), json!("CUSTOMER")];
        let append =
            ArrayOperation::read(&json!({"_append": ["CUSTOMER", "NEW_TAG"]})).expect("reads");
        assert_eq!(
            append.apply(Some(&existing)),
            vec![json!("EXISTING"), json!("CUSTOMER"), json!("NEW_TAG")]
        );
        let all =
            ArrayOperation::read(&json!({"_append_all": ["CUSTOMER", "NEW_TAG"]})).expect("reads");
        assert_eq!(
            all.apply(Some(&existing)),
            vec![
                json!("EXISTING"),
                json!("CUSTOMER"),
                json!("CUSTOMER"),
                json!("NEW_TAG")
            ]
        );
        assert_eq!(
            append.apply(None),
            vec![json!("CUSTOMER"), json!("NEW_TAG")]
        );
        assert_eq!(ArrayOperation::read(&json!({"_merge": []})), None);
    }
}
