//! The one error answer of the API: `{"error": {"code", "message", "field"?, "fields"?}}`.
//!
//! Handlers return [`ApiError`]; its `IntoResponse` stores the error in the response's
//! extensions, and the [`localize`] middleware — which knows the request's language — renders
//! the body in Spanish or English. The code is stable; the message says what to fix.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppState;
use crate::accounts::AccountError;
use crate::domain::i18n::{Locale, Text};
use crate::domain::permission::Permission;
use crate::domain::validation::FieldError;
use crate::store::StoreError;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: Text,
    /// For `invalid_field`: every field that failed, the first also shown at the top level.
    pub fields: Vec<FieldError>,
    /// Seconds for a `Retry-After` header (429, 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: &'static str,
        en: impl Into<String>,
        es: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            code,
            message: Text::new(en, es),
            fields: Vec::new(),
            retry_after: None,
        }
    }

    pub fn unauthorized() -> Self {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Send a valid API token as `Authorization: Bearer <token>` (create one with `cartero token create`).",
            "Envíe un token de API válido como `Authorization: Bearer <token>` (créelo con `cartero token create`).",
        )
    }

    pub fn forbidden(permission: Permission) -> Self {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "These credentials lack the `{permission}` permission: use a token or user whose role includes it."
            ),
            format!(
                "Estas credenciales no tienen el permiso `{permission}`: use un token o usuario con un rol que lo incluya."
            ),
        )
    }

    pub fn not_found(what_en: &str, what_es: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("No {what_en} with that id exists in this project."),
            format!("No existe {what_es} con ese id en este proyecto."),
        )
    }

    pub fn invalid(fields: Vec<FieldError>) -> Self {
        let first = fields
            .first()
            .cloned()
            .unwrap_or_else(|| FieldError::invalid("", "Invalid request.", "Solicitud no válida."));
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: first.code,
            message: first.message.clone(),
            fields,
            retry_after: None,
        }
    }

    pub fn internal() -> Self {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "cartero hit an internal error; it is in the server log. Nothing was changed.",
            "cartero tuvo un error interno; está en el registro del servidor. No se cambió nada.",
        )
    }

    /// The error's JSON body in `locale`.
    pub fn body(&self, locale: Locale) -> Value {
        let mut error = json!({"code": self.code, "message": self.message.get(locale)});
        if let Some(first) = self.fields.first() {
            error["field"] = json!(first.field);
            error["fields"] = self
                .fields
                .iter()
                .map(
                    |f| json!({"field": f.field, "code": f.code, "message": f.message.get(locale)}),
                )
                .collect();
        }
        json!({ "error": error })
    }

    fn render(&self, locale: Locale) -> Response {
        let mut response = (self.status, Json(self.body(locale))).into_response();
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.render(Locale::En);
        response.extensions_mut().insert(self);
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(value) => ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("`{value}` already exists."),
                format!("«{value}» ya existe."),
            ),
            other => {
                tracing::error!(error = %other, "store error");
                ApiError::internal()
            }
        }
    }
}

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::Invalid(fields) => ApiError::invalid(fields),
            AccountError::NotFound => ApiError::not_found("account", "ninguna cuenta"),
            AccountError::NameTaken(name) => ApiError {
                fields: vec![FieldError::invalid(
                    "name",
                    format!(
                        "An account named `{name}` already exists in this project: choose another name."
                    ),
                    format!(
                        "Ya existe una cuenta llamada «{name}» en este proyecto: elija otro nombre."
                    ),
                )],
                ..ApiError::new(
                    StatusCode::CONFLICT,
                    "name_taken",
                    format!(
                        "An account named `{name}` already exists in this project: choose another name."
                    ),
                    format!(
                        "Ya existe una cuenta llamada «{name}» en este proyecto: elija otro nombre."
                    ),
                )
            },
            AccountError::Secret(e) => {
                tracing::error!(error = %e, "cannot open a stored secret");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "secret_unavailable",
                    "A stored credential cannot be decrypted with the loaded master key; the operator must restore the key (see the server log).",
                    "Una credencial guardada no se puede descifrar con la clave maestra cargada; el operador debe restaurar la clave (ver el registro del servidor).",
                )
            }
            AccountError::Store(e) => e.into(),
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        tracing::error!(error = format!("{e:#}"), "internal error");
        ApiError::internal()
    }
}

/// The language of this request: `Accept-Language`, else the configured default.
pub fn request_locale(state: &AppState, request: &Request) -> Locale {
    request
        .headers()
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .and_then(Locale::from_accept_language)
        .unwrap_or(state.config.default_locale)
}

/// Middleware: records the request's language for handlers and renders errors in it.
pub async fn localize(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let locale = request_locale(&state, &request);
    request.extensions_mut().insert(locale);
    let mut response = next.run(request).await;
    if let Some(error) = response.extensions_mut().remove::<ApiError>() {
        response = error.render(locale);
    } else if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        response = ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "The request body is too large.",
            "El cuerpo de la solicitud es demasiado grande.",
        )
        .render(locale);
    }
    let _ = response.headers_mut().insert(
        header::CONTENT_LANGUAGE,
        HeaderValue::from_static(locale.as_str()),
    );
    response
}

/// Answers any unknown route with the JSON error shape.
pub async fn no_route() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "There is no such route: see /v1/openapi.json for the API.",
        "No existe esa ruta: consulte /v1/openapi.json para ver la API.",
    )
}
