use thiserror::Error;

/// Why a template cannot be found, read or instantiated. Every variant names the template and,
/// where there is one, the placeholder at fault.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TemplateError {
    /// No template has this slug.
    #[error("no use-case template {slug:?}")]
    NotFound { slug: String },
    /// A required placeholder was given no value and has no default.
    #[error("template {template:?}: placeholder {placeholder:?} is required")]
    PlaceholderMissing {
        template: String,
        placeholder: String,
    },
    /// A value was given for a placeholder the template does not declare.
    #[error("template {template:?} has no placeholder {placeholder:?} (it has: {known})")]
    PlaceholderUnknown {
        template: String,
        placeholder: String,
        /// The declared placeholders, comma-separated.
        known: String,
    },
    /// A value does not have the placeholder's type, or cannot stand where the placeholder is
    /// written (an object inside a longer string is fine, `null` is not).
    #[error("template {template:?}: placeholder {placeholder:?} {message}")]
    PlaceholderType {
        template: String,
        placeholder: String,
        message: String,
    },
    /// A value is not one of the placeholder's allowed values.
    #[error(
        "template {template:?}: placeholder {placeholder:?} must be one of {allowed}, not {value}"
    )]
    PlaceholderNotAllowed {
        template: String,
        placeholder: String,
        allowed: String,
        value: String,
    },
    /// The template document itself is broken (a bug of the catalogue, found when it is read).
    #[error("template {template:?} is invalid: {message}")]
    Invalid { template: String, message: String },
}

impl TemplateError {
    /// The error code, in epilot's `{"code","message"}` style.
    pub fn code(&self) -> &'static str {
        match self {
            TemplateError::NotFound { .. } => "TEMPLATE_NOT_FOUND",
            TemplateError::PlaceholderMissing { .. } => "TEMPLATE_PLACEHOLDER_MISSING",
            TemplateError::PlaceholderUnknown { .. } => "TEMPLATE_PLACEHOLDER_UNKNOWN",
            TemplateError::PlaceholderType { .. } => "TEMPLATE_PLACEHOLDER_TYPE",
            TemplateError::PlaceholderNotAllowed { .. } => "TEMPLATE_PLACEHOLDER_NOT_ALLOWED",
            TemplateError::Invalid { .. } => "TEMPLATE_INVALID",
        }
    }
}
