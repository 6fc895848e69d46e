//! Value sources: the `field` / `jsonataExpression` / `constant` triple that fields, relation
//! unique ids, file proxy parameters, prune scopes, meter ids and pricing values all share.

use jsonata_core::value::JValue;
use serde_json::{Map, Value};

use crate::error::MappingError;
use crate::jsonata::{Evaluation, Expression, to_json};

/// Where a value comes from, compiled.
#[derive(Debug, Clone)]
pub(super) enum Source {
    Constant(Value),
    Expression(Expression),
    /// A plain key of the current item.
    Key(String),
    /// A `$`-path (`$.address.street`, `$$.readingDate`), evaluated as JSONata.
    Path(Expression),
}

/// Parses a JSONata expression of the configuration, naming where it is.
pub(super) fn compile_expression(location: &str, source: &str) -> Result<Expression, MappingError> {
    Expression::compile(source).map_err(|error| MappingError::InvalidExpression {
        location: location.to_owned(),
        expression: source.to_owned(),
        error,
    })
}

/// An invalid-configuration error at `location`.
pub(super) fn invalid(location: &str, message: impl Into<String>) -> MappingError {
    MappingError::InvalidConfiguration {
        location: location.to_owned(),
        message: message.into(),
    }
}

impl Source {
    /// The source an object declares, by the documented priority: `constant`, then
    /// `jsonataExpression`, then `field`. `None` when it declares none.
    pub(super) fn compile(
        location: &str,
        object: &Map<String, Value>,
    ) -> Result<Option<Self>, MappingError> {
        if let Some(constant) = object.get("constant") {
            return Ok(Some(Source::Constant(constant.clone())));
        }
        if let Some(expression) = object.get("jsonataExpression") {
            let text = expression
                .as_str()
                .ok_or_else(|| invalid(location, "jsonataExpression must be a string"))?;
            return Ok(Some(Source::Expression(compile_expression(
                &format!("{location}.jsonataExpression"),
                text,
            )?)));
        }
        if let Some(field) = object.get("field") {
            let key = field
                .as_str()
                .ok_or_else(|| invalid(location, "field must be a string"))?;
            return Ok(Some(if key.starts_with('$') {
                Source::Path(compile_expression(&format!("{location}.field"), key)?)
            } else {
                Source::Key(key.to_owned())
            }));
        }
        Ok(None)
    }

    /// The source an object must declare.
    pub(super) fn require(
        location: &str,
        object: &Map<String, Value>,
    ) -> Result<Self, MappingError> {
        Self::compile(location, object)?
            .ok_or_else(|| invalid(location, "needs one of field, jsonataExpression, constant"))
    }

    /// Evaluates against the current item. `None` is JSONata's undefined (the attribute is
    /// omitted); `null`, `""`, `0` and `false` are values.
    pub(super) fn eval(
        &self,
        evaluation: &Evaluation,
        location: &str,
        item: &JValue,
    ) -> Result<Option<Value>, MappingError> {
        Ok(match self {
            Source::Constant(value) => Some(value.clone()),
            Source::Key(key) => item.get(key).and_then(to_json),
            Source::Expression(expression) | Source::Path(expression) => {
                to_json(&run(evaluation, location, expression, item)?)
            }
        })
    }
}

/// Evaluates an expression of the configuration, turning a failure into a mapping error that
/// names where it is.
pub(super) fn run(
    evaluation: &Evaluation,
    location: &str,
    expression: &Expression,
    input: &JValue,
) -> Result<JValue, MappingError> {
    evaluation
        .evaluate(expression, input)
        .map_err(|error| MappingError::ExpressionFailed {
            location: location.to_owned(),
            expression: expression.source().to_owned(),
            error,
        })
}

/// JSONata's `$boolean` semantics.
pub(super) fn truthy(value: &JValue) -> bool {
    match value {
        JValue::Bool(b) => *b,
        JValue::Number(n) => *n != 0.0,
        JValue::String(s) => !s.is_empty(),
        JValue::Array(items) => items.iter().any(truthy),
        JValue::Object(map) => !map.is_empty(),
        _ => false,
    }
}

/// Whether an identifier value is missing: null, empty or blank string, empty list.
pub(super) fn is_empty_identifier(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

/// `{attribute: value}` from a list of unique-id fields (`RelationUniqueIdField`), each evaluated
/// against `item`. Fails naming the first one that is empty.
#[derive(Debug, Clone)]
pub(super) struct UniqueIds {
    pub(super) fields: Vec<(String, Source)>,
    pub(super) location: String,
}

impl UniqueIds {
    pub(super) fn compile(
        location: &str,
        value: Option<&Value>,
        at_least_one: bool,
    ) -> Result<Self, MappingError> {
        let list = match value {
            Some(Value::Array(list)) => list,
            None if !at_least_one => {
                return Ok(Self {
                    fields: Vec::new(),
                    location: location.to_owned(),
                });
            }
            _ => {
                return Err(invalid(
                    location,
                    "unique_ids must be a list of {attribute, field|jsonataExpression|constant}",
                ));
            }
        };
        if at_least_one && list.is_empty() {
            return Err(invalid(location, "unique_ids needs at least one entry"));
        }
        let mut fields = Vec::with_capacity(list.len());
        for (i, entry) in list.iter().enumerate() {
            let here = format!("{location}.unique_ids[{i}]");
            let object = entry
                .as_object()
                .ok_or_else(|| invalid(&here, "must be an object"))?;
            let attribute = object
                .get("attribute")
                .and_then(Value::as_str)
                .filter(|a| !a.is_empty())
                .ok_or_else(|| invalid(&here, "attribute is required"))?;
            fields.push((attribute.to_owned(), Source::require(&here, object)?));
        }
        Ok(Self {
            fields,
            location: location.to_owned(),
        })
    }

    /// The identifiers, or `Err(attribute)` naming the first empty one.
    pub(super) fn eval(
        &self,
        evaluation: &Evaluation,
        item: &JValue,
    ) -> Result<Result<Map<String, Value>, String>, MappingError> {
        let mut ids = Map::new();
        for (attribute, source) in &self.fields {
            match source.eval(
                evaluation,
                &format!("{}.unique_ids({attribute})", self.location),
                item,
            )? {
                Some(value) if !is_empty_identifier(&value) => {
                    ids.insert(attribute.clone(), value);
                }
                _ => return Ok(Err(attribute.clone())),
            }
        }
        Ok(Ok(ids))
    }
}
