use thiserror::Error;

/// What can go wrong when reading or writing one of our records.
#[derive(Debug, Error)]
pub enum SchemaError {
    /// The bytes are not the JSON record they should be.
    #[error("cannot decode {what}: {source}")]
    Decode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// A value could not be serialised (only possible for non-string map keys or NaN).
    #[error("cannot encode {what}: {source}")]
    Encode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// An embedded schema file is broken (a build defect the crate's tests catch).
    #[error("schema catalog: {0}")]
    Catalog(String),
    /// A record does not fit its Avro schema, or Avro bytes do not decode; `at` names the field.
    #[error("{record}: {at}: {message}")]
    Avro {
        record: String,
        at: String,
        message: String,
    },
    /// The bytes are not in the expected wire format (JSON, or Confluent-framed Avro).
    #[error("wire format: {0}")]
    Wire(String),
}

/// Decodes a JSON record, naming what was expected in the error.
pub fn decode<T: serde::de::DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
) -> Result<T, SchemaError> {
    serde_json::from_slice(bytes).map_err(|source| SchemaError::Decode { what, source })
}

/// Encodes a record as JSON bytes.
pub fn encode<T: serde::Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, SchemaError> {
    serde_json::to_vec(value).map_err(|source| SchemaError::Encode { what, source })
}

/// The JSON type of a value with its article (`a string`, `an object`, `null`), for messages.
pub fn json_kind(value: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
