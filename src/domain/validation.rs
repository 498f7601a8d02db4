//! The error a value gets when it does not pass the door.

use super::i18n::Text;

/// One field that failed to parse: which field and what to fix, in es and en.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path of the field in the request, e.g. `port` or `imap.host`.
    pub field: String,
    /// Stable machine-readable code: `invalid_field` for bad values, `not_supported` for
    /// values cartero understands but cannot honour yet.
    pub code: &'static str,
    pub message: Text,
}

impl FieldError {
    pub fn invalid(field: impl Into<String>, en: impl Into<String>, es: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            code: "invalid_field",
            message: Text::new(en, es),
        }
    }

    pub fn required(field: impl Into<String>) -> Self {
        let field = field.into();
        FieldError {
            message: Text::new(
                format!("`{field}` is required."),
                format!("El campo «{field}» es obligatorio."),
            ),
            field,
            code: "invalid_field",
        }
    }

    /// Re-roots the error under a parent field (`host` inside `imap` becomes `imap.host`).
    pub fn within(mut self, parent: &str) -> Self {
        self.field = format!("{parent}.{}", self.field);
        self
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message.en)
    }
}

impl std::error::Error for FieldError {}
