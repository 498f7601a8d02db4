//! [`ValidJson`]: a JSON body extractor whose every failure is a clear, localized 4xx.
//!
//! Unlike axum's `Json`, a type error or an unknown field names the field (via
//! `serde_path_to_error`) in the `{"error": {"code": "invalid_field", "field": …}}` shape.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::domain::validation::FieldError;

pub struct ValidJson<T>(pub T);

impl<S, T> FromRequest<S> for ValidJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                let mime = v
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                mime == "application/json" || mime.ends_with("+json")
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Send the body as JSON with `Content-Type: application/json`.",
                "Envíe el cuerpo como JSON con `Content-Type: application/json`.",
            ));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "payload_too_large",
                        "The request body is too large.",
                        "El cuerpo de la solicitud es demasiado grande.",
                    )
                } else {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_body",
                        "The request body could not be read.",
                        "No se pudo leer el cuerpo de la solicitud.",
                    )
                }
            })?;
        parse(&bytes).map(ValidJson)
    }
}

/// Deserializes `bytes`, turning serde's complaint into a field error a person can act on.
///
/// A body is first read with plain serde_json; only a body that fails is read again with
/// serde_path_to_error, whose path tracking (for the error's `field`) cost every request.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if let Ok(value) = serde_json::from_slice::<T>(bytes) {
        return Ok(value);
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: Result<T, _> = serde_path_to_error::deserialize(&mut de);
    if value.is_ok()
        && let Err(e) = de.end()
    {
        return Err(syntax_error(&e));
    }
    value.map_err(|err| {
        let path = err.path().to_string();
        let inner = err.inner();
        if inner.is_syntax() || inner.is_eof() {
            return syntax_error(inner);
        }
        ApiError::invalid(vec![describe(&path, &inner.to_string())])
    })
}

fn syntax_error(e: &serde_json::Error) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_json",
        format!(
            "The body is not valid JSON (line {}, column {}).",
            e.line(),
            e.column()
        ),
        format!(
            "El cuerpo no es JSON válido (línea {}, columna {}).",
            e.line(),
            e.column()
        ),
    )
}

fn describe(path: &str, message: &str) -> FieldError {
    let parent = if path == "." { "" } else { path };
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let name = rest.split('`').next().unwrap_or("");
        // The path already ends at the unknown key with some serde versions; not with others.
        let field = if parent == name || parent.ends_with(&format!(".{name}")) {
            parent.to_string()
        } else if parent.is_empty() {
            name.to_string()
        } else {
            format!("{parent}.{name}")
        };
        return FieldError::invalid(
            field.clone(),
            format!("Unknown field `{field}`: remove it or check its spelling."),
            format!("Campo desconocido «{field}»: quítelo o revise cómo está escrito."),
        );
    }
    let field = parent.to_string();
    let expected = message.split("expected ").nth(1).unwrap_or("");
    let (en, es) = if expected.contains("i64")
        || expected.contains("u64")
        || expected.contains("i32")
        || expected.contains("integer")
    {
        ("must be a whole number", "debe ser un número entero")
    } else if expected.contains("bool") {
        ("must be true or false", "debe ser true o false")
    } else if expected.contains("string") {
        ("must be text", "debe ser un texto")
    } else if expected.contains("struct") || expected.contains("map") {
        ("must be an object", "debe ser un objeto")
    } else if expected.contains("sequence") {
        ("must be a list", "debe ser una lista")
    } else if message.starts_with("missing field `") {
        let name = message
            .trim_start_matches("missing field `")
            .split('`')
            .next()
            .unwrap_or("");
        return FieldError::required(if parent.is_empty() {
            name.to_string()
        } else {
            format!("{parent}.{name}")
        });
    } else {
        (
            "has a value that is not accepted",
            "tiene un valor no aceptado",
        )
    };
    let shown = if field.is_empty() {
        "body".to_string()
    } else {
        format!("`{field}`")
    };
    let mostrado = if field.is_empty() {
        "El cuerpo".to_string()
    } else {
        format!("El campo «{field}»")
    };
    FieldError::invalid(
        if field.is_empty() {
            "body".to_string()
        } else {
            field.clone()
        },
        format!("{shown} {en}."),
        format!("{mostrado} {es}."),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::account::AccountInput;

    #[test]
    fn field_errors_name_the_field() {
        let e = parse::<AccountInput>(br#"{"priority": "high"}"#)
            .err()
            .unwrap();
        assert_eq!(e.fields[0].field, "priority");
        assert!(e.fields[0].message.en.contains("whole number"));
        let e = parse::<AccountInput>(br#"{"imap": {"hots": "x"}}"#)
            .err()
            .unwrap();
        assert_eq!(e.fields[0].field, "imap.hots");
        let e = parse::<AccountInput>(br#"{"name": "x""#).err().unwrap();
        assert_eq!(e.code, "invalid_json");
        let e = parse::<AccountInput>(br#"{"port": 587.5}"#).err().unwrap();
        assert_eq!(e.fields[0].field, "port");
    }
}
