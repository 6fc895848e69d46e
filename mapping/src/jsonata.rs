//! The one door to the JSONata engine (`jsonata-core`, pinned). Everything the rest of the
//! processor knows about JSONata goes through here:
//!
//! - an [`Expression`] is parsed once and shared across threads (the parsed tree is `Send +
//!   Sync`; the engine's evaluator and values are not, so each evaluation builds its own);
//! - every evaluation has a time limit, and a panic inside the engine becomes an error;
//! - engine errors become [`JsonataError`] with the JSONata code (`T2002`, `D1012`, …);
//! - two extensions used in epilot's published mappings are provided: `$default(value,
//!   fallback)` and `$log(value[, label])`;
//! - depth: the engine bounds its own recursion (parse depth, evaluation depth, growing its
//!   stack on the heap), but the values an expression builds are not bounded by it: `$reduce`
//!   nests one level per item without recursing. Such a value is dropped recursively, inside the
//!   engine as well as here, so evaluation runs on a thread with a large stack
//!   ([`on_mapping_stack`]); a result nested deeper than [`MAX_RESULT_DEPTH`] is refused (and
//!   taken apart without recursion) before anything converts or serialises it.

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use jsonata_core::ast::AstNode;
use jsonata_core::evaluator::{Context, EvaluatorError, EvaluatorOptions};
use jsonata_core::value::JValue;
use serde_json::Value;

pub use jsonata_core::evaluator::Evaluator;

/// Deepest result an evaluation may return. Results end up in core events that every consumer
/// reads with serde_json's recursion limit (128); real mappings nest a handful of levels.
pub const MAX_RESULT_DEPTH: usize = 100;

pub use crate::threads::{
    MAPPING_STACK_BYTES, on_mapping_stack, run_on_mapping_stack, spawn_on_mapping_stack,
};

/// Whether `value` nests deeper than `limit` (the value itself is depth 1 when a container).
/// Iterative: safe on any value.
fn deeper_than(value: &JValue, limit: usize) -> bool {
    let mut stack: Vec<(&JValue, usize)> = vec![(value, 1)];
    while let Some((value, depth)) = stack.pop() {
        match value {
            JValue::Array(items) => {
                if depth > limit {
                    return true;
                }
                stack.extend(items.iter().map(|item| (item, depth + 1)));
            }
            JValue::Object(map) => {
                if depth > limit {
                    return true;
                }
                stack.extend(map.values().map(|item| (item, depth + 1)));
            }
            _ => {}
        }
    }
    false
}

/// Drops a value without recursion: containers owned only here are emptied onto a work list.
fn dismantle(value: JValue) {
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        match value {
            JValue::Array(items) => {
                // `into_vec` clones the items of a shared array; its clones are shared in turn
                // and dropped by a count decrement.
                stack.extend(items.into_vec());
            }
            JValue::Object(map) => {
                if let Ok(map) = Rc::try_unwrap(map) {
                    stack.extend(map.into_inner().into_values());
                }
            }
            _ => {}
        }
    }
}

/// A JSONata failure: at parse time or at evaluation time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct JsonataError {
    /// The JSONata error code (`S0201`, `T2002`, `D1012` for a timeout, …), when the engine
    /// gives one. `PANIC` when the engine panicked.
    pub code: Option<String>,
    /// The engine's message, without the code.
    pub message: String,
}

impl JsonataError {
    fn describe(&self) -> String {
        match &self.code {
            Some(code) => format!("{code}: {}", self.message),
            None => self.message.clone(),
        }
    }

    fn from_message(text: &str) -> Self {
        // The engine puts the code at the start of most messages ("T2002: …"), but some parse
        // errors wrap it ("Invalid syntax: S0209: …"): take the first code-shaped word.
        match find_code(text) {
            Some(at) => {
                let before = text[..at].trim_end().trim_end_matches(':').trim_end();
                let after = text[at + 5..].trim_start_matches(':').trim();
                Self {
                    code: Some(text[at..at + 5].to_owned()),
                    message: if before.is_empty() {
                        after.to_owned()
                    } else {
                        format!("{before}: {after}")
                    },
                }
            }
            None => Self {
                code: None,
                message: text.to_owned(),
            },
        }
    }

    fn panic() -> Self {
        Self {
            code: Some("PANIC".into()),
            message: "the JSONata engine failed internally on this expression".into(),
        }
    }
}

/// Where the first JSONata error code (`S0201`, `T2002`, `D1012`, `U1001`) in `text` starts.
fn find_code(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    (0..bytes.len().saturating_sub(4)).find(|&i| {
        matches!(bytes[i], b'S' | b'T' | b'D' | b'U')
            && bytes[i + 1..i + 5].iter().all(u8::is_ascii_digit)
            && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric())
            && bytes.get(i + 5).is_none_or(|b| !b.is_ascii_alphanumeric())
    })
}

/// A parsed JSONata expression, cheap to clone and safe to share across threads.
#[derive(Debug, Clone)]
pub struct Expression {
    source: Arc<str>,
    ast: Arc<AstNode>,
}

impl Expression {
    /// Parses an expression.
    pub fn compile(source: &str) -> Result<Self, JsonataError> {
        let parsed = catch_unwind(|| jsonata_core::parser::parse(source))
            .map_err(|_| JsonataError::panic())?;
        match parsed {
            Ok(ast) => Ok(Self {
                source: source.into(),
                ast: Arc::new(ast),
            }),
            Err(error) => Err(JsonataError::from_message(&error.to_string())),
        }
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }
}

/// The evaluation of expressions for one input document (one event): `$$` is the document's
/// root in every expression evaluated here, whatever `$` is. Not `Send`: create one per event on
/// the thread that maps it.
pub struct Evaluation {
    evaluator: RefCell<Evaluator>,
}

impl Evaluation {
    /// An evaluation whose `$$` is `root`, each expression limited to `timeout`.
    pub fn new(root: &JValue, timeout: Duration) -> Self {
        Self::with_bindings(root, timeout, Vec::new())
    }

    /// Like [`Evaluation::new`], with variables bound (`("x", v)` is `$x`).
    pub fn with_bindings(
        root: &JValue,
        timeout: Duration,
        bindings: Vec<(String, JValue)>,
    ) -> Self {
        let mut context = Context::new();
        context.set_parent(root.clone());
        for (name, value) in bindings {
            context.bind(name, value);
        }
        let options = EvaluatorOptions {
            timeout_ms: Some(
                u64::try_from(timeout.as_millis())
                    .unwrap_or(u64::MAX)
                    .max(1),
            ),
            // Bounds memory of runaway ranges and joins; far above any real mapping.
            max_sequence_length: Some(10_000_000),
            ..EvaluatorOptions::default()
        };
        let mut evaluator = Evaluator::with_options(context, options);
        register_extensions(&mut evaluator);
        Self {
            evaluator: RefCell::new(evaluator),
        }
    }

    /// Evaluates `expression` with `input` as `$`. `Ok(JValue::Undefined)` when the expression
    /// yields nothing.
    pub fn evaluate(
        &self,
        expression: &Expression,
        input: &JValue,
    ) -> Result<JValue, JsonataError> {
        let mut evaluator = self.evaluator.borrow_mut();
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            evaluator.evaluate(&expression.ast, input)
        }));
        match outcome {
            Ok(Ok(value)) if deeper_than(&value, MAX_RESULT_DEPTH) => {
                dismantle(value);
                Err(JsonataError {
                    code: Some("U1001".into()),
                    message: format!("the result is nested deeper than {MAX_RESULT_DEPTH} levels"),
                })
            }
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(JsonataError::from_message(error.message())),
            Err(_) => Err(JsonataError::panic()),
        }
    }
}

fn register_extensions(evaluator: &mut Evaluator) {
    // `$default(value, fallback)`: `fallback` when `value` is undefined or null. Registration
    // can only fail if the engine gains a built-in of the same name; then the built-in stays.
    let _ = evaluator.register_fn("default", |args: &[JValue]| {
        let value = args.first().cloned().unwrap_or(JValue::Undefined);
        Ok(if value.is_undefined() || value.is_null() {
            args.get(1).cloned().unwrap_or(JValue::Undefined)
        } else {
            value
        })
    });
    // `$log(value[, label])`: returns `value` unchanged and logs it at debug level.
    let _ = evaluator.register_fn("log", |args: &[JValue]| {
        let value = args.first().cloned().unwrap_or(JValue::Undefined);
        let label = args.get(1).and_then(|l| l.as_str()).unwrap_or("jsonata");
        tracing::debug!(label, value = %value, "$log");
        Ok(value)
    });
}

/// Converts a JSON value into the engine's value type.
pub fn to_jvalue(value: &Value) -> JValue {
    JValue::from(value.clone())
}

/// Converts an engine value into JSON. `None` for undefined; functions and regexes, which have
/// no JSON form, also give `None`. Inside containers the engine's own serialisation rules apply
/// (undefined and non-finite numbers become null, functions ""), built directly rather than
/// through serde, because mapping results convert large values on the hot path.
pub fn to_json(value: &JValue) -> Option<Value> {
    if value.is_undefined() || value.is_function() || value.is_regex() {
        return None;
    }
    Some(convert(value))
}

fn convert(value: &JValue) -> Value {
    match value {
        JValue::Null | JValue::Undefined => Value::Null,
        JValue::Bool(b) => Value::Bool(*b),
        JValue::Number(n) => {
            if !n.is_finite() {
                Value::Null
            } else if n.fract() == 0.0 && *n >= i64::MIN as f64 && *n <= i64::MAX as f64 {
                Value::from(*n as i64)
            } else {
                serde_json::Number::from_f64(*n).map_or(Value::Null, Value::Number)
            }
        }
        JValue::String(s) => Value::String(s.to_string()),
        JValue::Array(items) => Value::Array(items.iter().map(convert).collect()),
        JValue::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), convert(v))).collect())
        }
        JValue::Lambda(_) | JValue::Builtin { .. } | JValue::Regex { .. } => {
            Value::String(String::new())
        }
        #[allow(unreachable_patterns)]
        _ => serde_json::to_value(value).unwrap_or(Value::Null),
    }
}

/// Evaluates a standalone expression against a JSON document (`$` = `$$` = the document).
pub fn evaluate_json(
    expression: &Expression,
    document: &Value,
    timeout: Duration,
) -> Result<Option<Value>, JsonataError> {
    let input = to_jvalue(document);
    let evaluation = Evaluation::new(&input, timeout);
    evaluation.evaluate(expression, &input).map(|v| to_json(&v))
}

impl From<&EvaluatorError> for JsonataError {
    fn from(error: &EvaluatorError) -> Self {
        Self::from_message(error.message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const T: Duration = Duration::from_millis(500);

    fn eval(expr: &str, doc: Value) -> Result<Option<Value>, JsonataError> {
        evaluate_json(&Expression::compile(expr)?, &doc, T)
    }

    #[test]
    fn evaluates_paths_and_functions() {
        assert_eq!(
            eval(
                "firstName & ' ' & lastName",
                json!({"firstName": "Anna", "lastName": "Muster"})
            ),
            Ok(Some(json!("Anna Muster")))
        );
        assert_eq!(eval("missing", json!({"a": 1})), Ok(None));
    }

    #[test]
    fn parse_errors_carry_their_code() {
        let error = Expression::compile("orders[price > ").unwrap_err();
        assert!(error.code.is_some(), "{error:?}");
    }

    #[test]
    fn evaluation_errors_carry_their_code() {
        let error = eval("a * 2", json!({"a": "x"})).unwrap_err();
        assert_eq!(error.code.as_deref(), Some("T2001"), "{error}");
    }

    #[test]
    fn runaway_expressions_time_out() {
        let expr =
            Expression::compile("($f := function($n){ $f($n + 1) }; $f(0))").expect("parses");
        let error = evaluate_json(&expr, &json!({}), Duration::from_millis(50)).unwrap_err();
        assert_eq!(error.code.as_deref(), Some("D1012"), "{error}");
    }

    #[test]
    fn dollar_dollar_is_the_document_root_inside_items() {
        let root = to_jvalue(&json!({"date": "2025-01-01", "items": [{"v": 1}]}));
        let evaluation = Evaluation::new(&root, T);
        let item = to_jvalue(&json!({"v": 1}));
        let expr = Expression::compile("$string(v) & '@' & $$.date").expect("parses");
        let value = evaluation.evaluate(&expr, &item).expect("evaluates");
        assert_eq!(to_json(&value), Some(json!("1@2025-01-01")));
    }

    #[test]
    fn extensions_default_and_log() {
        assert_eq!(
            eval("missing ~> $default('analog')", json!({})),
            Ok(Some(json!("analog")))
        );
        assert_eq!(
            eval("$default(v, 'x')", json!({"v": 0})),
            Ok(Some(json!(0)))
        );
        assert_eq!(
            eval("$log(v, 'label')", json!({"v": [1, 2]})),
            Ok(Some(json!([1, 2])))
        );
    }
}
