//! The error answers of the registry, with Confluent's codes, statuses and messages.

use std::fmt;

use serde_json::{Value, json};

/// A refused registry request, as Confluent answers it: `{"error_code": …, "message": …}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryError {
    /// 40401
    SubjectNotFound { subject: String },
    /// 40402
    VersionNotFound { subject: String, version: u32 },
    /// 40403: no schema with this id, or (lookup) not under this subject.
    SchemaNotFound { id: Option<u32> },
    /// 40404: a permanent delete of a subject that is soft-deleted… asked as a soft delete again.
    SubjectSoftDeleted { subject: String },
    /// 40405
    SubjectNotSoftDeleted { subject: String },
    /// 40406
    VersionSoftDeleted { subject: String, version: u32 },
    /// 40407
    VersionNotSoftDeleted { subject: String, version: u32 },
    /// 40408
    SubjectCompatibilityNotConfigured { subject: String },
    /// 409: the schema breaks the subject's compatibility level.
    Incompatible {
        subject: String,
        messages: Vec<String>,
    },
    /// 42201
    InvalidSchema { reason: String },
    /// 42202
    InvalidVersion { version: String },
    /// 42203
    InvalidCompatibilityLevel { level: String },
}

impl RegistryError {
    /// Confluent's `error_code`.
    pub fn error_code(&self) -> u32 {
        match self {
            Self::SubjectNotFound { .. } => 40401,
            Self::VersionNotFound { .. } => 40402,
            Self::SchemaNotFound { .. } => 40403,
            Self::SubjectSoftDeleted { .. } => 40404,
            Self::SubjectNotSoftDeleted { .. } => 40405,
            Self::VersionSoftDeleted { .. } => 40406,
            Self::VersionNotSoftDeleted { .. } => 40407,
            Self::SubjectCompatibilityNotConfigured { .. } => 40408,
            Self::Incompatible { .. } => 409,
            Self::InvalidSchema { .. } => 42201,
            Self::InvalidVersion { .. } => 42202,
            Self::InvalidCompatibilityLevel { .. } => 42203,
        }
    }

    /// The HTTP status: the first three digits of the code.
    pub fn http_status(&self) -> u16 {
        let code = self.error_code();
        let status = if code >= 10_000 { code / 100 } else { code };
        u16::try_from(status).unwrap_or(500)
    }

    /// The answer body.
    pub fn to_json(&self) -> Value {
        json!({"error_code": self.error_code(), "message": self.to_string()})
    }
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SubjectNotFound { subject } => write!(f, "Subject '{subject}' not found."),
            Self::VersionNotFound { version, .. } => write!(f, "Version {version} not found."),
            Self::SchemaNotFound { id: Some(id) } => write!(f, "Schema {id} not found"),
            Self::SchemaNotFound { id: None } => f.write_str("Schema not found"),
            Self::SubjectSoftDeleted { subject } => write!(
                f,
                "Subject '{subject}' was soft deleted. Set permanent=true to delete permanently"
            ),
            Self::SubjectNotSoftDeleted { subject } => write!(
                f,
                "Subject '{subject}' was not deleted first before being permanently deleted"
            ),
            Self::VersionSoftDeleted { subject, version } => write!(
                f,
                "Subject '{subject}' Version {version} was soft deleted. Set permanent=true to delete permanently"
            ),
            Self::VersionNotSoftDeleted { subject, version } => write!(
                f,
                "Subject '{subject}' Version {version} was not deleted first before being permanently deleted"
            ),
            Self::SubjectCompatibilityNotConfigured { subject } => write!(
                f,
                "Subject '{subject}' does not have subject-level compatibility configured"
            ),
            Self::Incompatible { subject, messages } => write!(
                f,
                "Schema being registered is incompatible with an earlier schema for subject \"{subject}\", details: [{}]",
                messages.join(", ")
            ),
            Self::InvalidSchema { reason } => write!(f, "Invalid schema {reason}"),
            Self::InvalidVersion { version } => write!(
                f,
                "The specified version '{version}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\""
            ),
            Self::InvalidCompatibilityLevel { level } => write!(
                f,
                "Invalid compatibility level {level:?}. Valid values are none, backward, forward, full, backward_transitive, forward_transitive, and full_transitive"
            ),
        }
    }
}

impl std::error::Error for RegistryError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_statuses_are_confluents() {
        let cases = [
            (
                RegistryError::SubjectNotFound {
                    subject: "s".into(),
                },
                40401,
                404,
            ),
            (
                RegistryError::VersionNotFound {
                    subject: "s".into(),
                    version: 2,
                },
                40402,
                404,
            ),
            (RegistryError::SchemaNotFound { id: Some(9) }, 40403, 404),
            (
                RegistryError::Incompatible {
                    subject: "s".into(),
                    messages: vec![],
                },
                409,
                409,
            ),
            (
                RegistryError::InvalidSchema { reason: "x".into() },
                42201,
                422,
            ),
            (
                RegistryError::InvalidVersion {
                    version: "0".into(),
                },
                42202,
                422,
            ),
            (
                RegistryError::InvalidCompatibilityLevel {
                    level: "SOME".into(),
                },
                42203,
                422,
            ),
        ];
        for (error, code, status) in cases {
            assert_eq!(
                (error.error_code(), error.http_status()),
                (code, status),
                "{error}"
            );
            assert_eq!(error.to_json()["error_code"], code);
        }
        assert_eq!(
            RegistryError::SubjectNotFound {
                subject: "a-value".into()
            }
            .to_string(),
            "Subject 'a-value' not found."
        );
    }
}
