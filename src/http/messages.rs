//! `/v1/messages`: submit (answered only once the message is committed), list, inspect,
//! retry, cancel; and `/v1/templates`.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;

use super::AppState;
use super::auth::Caller;
use super::error::ApiError;
use super::json::ValidJson;
use super::views::rfc3339;
use crate::delivery::intake::SubmitError;
use crate::domain::i18n::{Locale, Text};
use crate::domain::message::{Content, MessageInput, MessageStatus};
use crate::domain::permission::Permission;
use crate::domain::validation::FieldError;
use crate::store::{MessageFilter, MessageRow, StatusChange};
use crate::templates::{self, TemplateError, TemplateSet};

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> Self {
        match e {
            SubmitError::Invalid(fields) => ApiError::invalid(fields),
            SubmitError::TooLarge { size, max } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "message_too_large",
                format!(
                    "The message is {size} bytes; the limit is {max}. Send smaller attachments or a link."
                ),
                format!(
                    "El mensaje tiene {size} bytes; el límite es {max}. Envíe adjuntos más pequeños o un enlace."
                ),
            ),
            SubmitError::UnknownTemplate(name) => ApiError::invalid(vec![FieldError {
                field: "template".into(),
                code: "unknown_template",
                message: Text::new(
                    format!("There is no template `{name}`: see GET /v1/templates."),
                    format!("No existe la plantilla «{name}»: consulte GET /v1/templates."),
                ),
            }]),
            SubmitError::Template(e) => ApiError::invalid(vec![template_field_error(&e)]),
            SubmitError::Unavailable(why) => {
                tracing::error!(error = %why, "a message could not be stored");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "queue_unavailable",
                    "The message could not be stored, so it was not accepted: try again.",
                    "No se pudo guardar el mensaje, así que no se aceptó: vuelva a intentarlo.",
                )
            }
        }
    }
}

fn template_field_error(e: &TemplateError) -> FieldError {
    match e {
        TemplateError::Unknown(name) => FieldError {
            field: "template".into(),
            code: "unknown_template",
            message: Text::new(
                format!("There is no template `{name}`."),
                format!("No existe la plantilla «{name}»."),
            ),
        },
        TemplateError::Invalid {
            lang,
            part,
            line,
            reason,
        } => {
            let at = line.map(|l| format!(", line {l}")).unwrap_or_default();
            let en_linea = line.map(|l| format!(", línea {l}")).unwrap_or_default();
            FieldError {
                field: format!("{lang}.{part}"),
                code: "template_error",
                message: Text::new(
                    format!("The {lang} {part} does not render{at}: {reason}."),
                    format!("La parte {part} ({lang}) no se puede generar{en_linea}: {reason}."),
                ),
            }
        }
        TemplateError::Render { lang, part, reason } => FieldError {
            field: format!("{lang}.{part}"),
            code: "template_error",
            message: Text::new(
                format!("The {lang} {part} failed with these variables: {reason}."),
                format!("La parte {part} ({lang}) falló con estas variables: {reason}."),
            ),
        },
    }
}

/// The answer to an accepted message.
#[derive(Debug, Serialize, ToSchema)]
pub struct AcceptedView {
    pub id: String,
    pub status: MessageStatus,
}

/// Queues a message. Answered `202` only after it is durably stored. With an
/// `Idempotency-Key` header a repeat returns the first answer and stores nothing.
#[utoipa::path(post, path = "/v1/messages", request_body = MessageInput, responses((status = 202, body = AcceptedView), (status = 413, description = "message_too_large"), (status = 422, description = "invalid field, header_injection, unknown_template, template_error")), security(("bearer" = [])))]
pub async fn send_message(
    State(state): State<AppState>,
    caller: Caller,
    Extension(locale): Extension<Locale>,
    headers: HeaderMap,
    ValidJson(input): ValidJson<MessageInput>,
) -> Result<Response, ApiError> {
    caller.require(Permission::MessagesSend)?;
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => Some(v.to_str().map_err(|_| {
            ApiError::invalid(vec![FieldError::invalid(
                "Idempotency-Key",
                "The Idempotency-Key header must be visible ASCII.",
                "La cabecera Idempotency-Key debe ser ASCII visible.",
            )])
        })?),
    };
    let accepted = state
        .intake
        .submit(&caller.project_id, &input, key, locale)
        .await?;
    let mut response = (
        StatusCode::ACCEPTED,
        Json(AcceptedView {
            id: accepted.id,
            status: if accepted.replayed {
                MessageStatus::Queued
            } else {
                accepted.status
            },
        }),
    )
        .into_response();
    if accepted.replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RecipientView {
    pub address: String,
    /// `to`, `cc` or `bcc`.
    pub kind: String,
    /// `pending`, `sent` or `failed`.
    pub status: String,
    pub reply: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptView {
    pub at: String,
    pub account_id: Option<String>,
    pub account: Option<String>,
    pub duration_ms: i64,
    /// `sent`, `partial`, `deferred` or `failed`.
    pub outcome: String,
    pub reply: Option<String>,
    pub diagnosis_code: Option<String>,
    /// What cartero changed or decided (e.g. a Microsoft 365 sender rewrite, a pause).
    pub note: Option<String>,
    pub transcript: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    pub kind: String,
    pub detail: Option<String>,
    pub at: String,
}

impl From<crate::store::AttemptRecord> for AttemptView {
    fn from(a: crate::store::AttemptRecord) -> AttemptView {
        AttemptView {
            at: rfc3339(a.started_at),
            account_id: a.account_id,
            account: a.account_name,
            duration_ms: a.duration_ms,
            outcome: a.outcome,
            reply: a.reply,
            diagnosis_code: a.diagnosis_code,
            note: a.note,
            transcript: a.transcript,
        }
    }
}

impl From<crate::store::EventRow> for EventView {
    fn from(e: crate::store::EventRow) -> EventView {
        EventView {
            kind: e.kind,
            detail: e.detail,
            at: rfc3339(e.at),
        }
    }
}

/// A message as the log shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageView {
    pub id: String,
    pub status: MessageStatus,
    #[serde(rename = "type")]
    pub message_type: String,
    pub subject: Option<String>,
    pub template: Option<String>,
    pub recipients: Vec<RecipientView>,
    pub size_bytes: i64,
    pub account_id: Option<String>,
    /// The Message-ID header, fixed at the first attempt.
    pub message_id: Option<String>,
    pub attempt_count: i64,
    /// For queued and deferred messages: when the next attempt is due.
    pub next_attempt_at: Option<String>,
    /// Diagnosis code of the latest failure, or `no_account`.
    pub last_code: Option<String>,
    pub last_reply: Option<String>,
    /// The latest failure explained, in the request's language.
    pub explanation: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<Vec<AttemptView>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<EventView>>,
}

fn millis(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map(rfc3339)
        .unwrap_or_default()
}

fn explain(code: &str, message_type: &str, locale: Locale) -> Option<String> {
    let text = match code {
        "no_account" => Text::new(
            format!(
                "Waiting: this project has no enabled account of type `{message_type}` and there is no system fallback account. Add one and the message goes out at the next attempt."
            ),
            format!(
                "En espera: este proyecto no tiene ninguna cuenta activada de tipo «{message_type}» y no hay cuenta genérica del sistema. Añada una y el mensaje saldrá en el siguiente intento."
            ),
        ),
        "rate_limited" => Text::new(
            "Sending limit reached: the message waits until the account may send again.",
            "Límite de envío alcanzado: el mensaje espera hasta que la cuenta pueda volver a enviar.",
        ),
        _ => return None,
    };
    Some(text.get(locale).to_string())
}

impl MessageView {
    pub fn new(m: &MessageRow, locale: Locale) -> MessageView {
        let (subject, template) = match serde_json::from_str::<Content>(&m.content) {
            Ok(Content::Fields {
                subject, template, ..
            }) => (Some(subject), template),
            _ => (None, None),
        };
        MessageView {
            id: m.id.clone(),
            status: m.status,
            message_type: m.message_type.clone(),
            subject,
            template,
            recipients: m
                .recipients
                .iter()
                .map(|r| RecipientView {
                    address: r.address.clone(),
                    kind: r.kind.as_str().to_string(),
                    status: r.status.clone(),
                    reply: r.reply.clone(),
                })
                .collect(),
            size_bytes: m.size,
            account_id: m.account_id.clone(),
            message_id: m.message_id_header.clone(),
            attempt_count: m.attempt_count,
            next_attempt_at: matches!(m.status, MessageStatus::Queued | MessageStatus::Deferred)
                .then(|| millis(m.next_attempt_at_ms)),
            last_code: m.last_code.clone(),
            last_reply: m.last_reply.clone(),
            explanation: m
                .last_code
                .as_deref()
                .and_then(|c| explain(c, &m.message_type, locale)),
            created_at: rfc3339(m.created_at),
            updated_at: rfc3339(m.updated_at),
            attempts: None,
            events: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<String>,
    #[serde(rename = "type")]
    message_type: Option<String>,
    to: Option<String>,
    since: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessageList {
    pub messages: Vec<MessageView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// The project's messages, newest first.
#[utoipa::path(get, path = "/v1/messages", params(("status" = Option<String>, Query,), ("type" = Option<String>, Query,), ("to" = Option<String>, Query,), ("since" = Option<String>, Query, description = "RFC 3339"), ("limit" = Option<i64>, Query, description = "1–200, default 50"), ("cursor" = Option<String>, Query,)), responses((status = 200, body = MessageList)), security(("bearer" = [])))]
pub async fn list_messages(
    State(state): State<AppState>,
    caller: Caller,
    Extension(locale): Extension<Locale>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<MessageList>, ApiError> {
    caller.require(Permission::MessagesRead)?;
    let Query(q) = query.map_err(|e| {
        ApiError::invalid(vec![FieldError::invalid(
            "query",
            format!("Bad query: {e}. Use status, type, to, since, limit, cursor."),
            format!("Consulta no válida: {e}. Use status, type, to, since, limit, cursor."),
        )])
    })?;
    let mut errors = Vec::new();
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(s) => MessageStatus::parse(s).or_else(|| {
            errors.push(FieldError::invalid(
                "status",
                "status must be queued, sending, deferred, sent, partial, failed or cancelled.",
                "status debe ser queued, sending, deferred, sent, partial, failed o cancelled.",
            ));
            None
        }),
    };
    let since = match q.since.as_deref() {
        None | Some("") => None,
        Some(s) => OffsetDateTime::parse(s, &Rfc3339)
            .map(Some)
            .unwrap_or_else(|_| {
                errors.push(FieldError::invalid(
                    "since",
                    "since must be an RFC 3339 time, e.g. 2026-11-23T10:00:00Z.",
                    "since debe ser una hora RFC 3339, p. ej. 2026-11-23T10:00:00Z.",
                ));
                None
            }),
    };
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        errors.push(FieldError::invalid(
            "limit",
            "limit must be 1–200.",
            "limit debe estar entre 1 y 200.",
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    let filter = MessageFilter {
        status,
        message_type: q
            .message_type
            .filter(|t| !t.is_empty())
            .map(|t| t.to_ascii_lowercase()),
        to: q
            .to
            .filter(|t| !t.is_empty())
            .map(|t| t.trim().to_ascii_lowercase()),
        since,
        limit: limit + 1,
        cursor: q.cursor.filter(|c| !c.is_empty()),
    };
    let mut rows = state
        .store
        .list_messages(&caller.project_id, &filter)
        .await?;
    let next_cursor = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|m| m.id.clone())
    } else {
        None
    };
    Ok(Json(MessageList {
        messages: rows.iter().map(|m| MessageView::new(m, locale)).collect(),
        next_cursor,
    }))
}

/// One message with every attempt (time, duration, reply, diagnosis, transcript) and event.
#[utoipa::path(get, path = "/v1/messages/{id}", responses((status = 200, body = MessageView), (status = 404, description = "not in this project")), security(("bearer" = [])))]
pub async fn get_message(
    State(state): State<AppState>,
    caller: Caller,
    Extension(locale): Extension<Locale>,
    Path(id): Path<String>,
) -> Result<Json<MessageView>, ApiError> {
    caller.require(Permission::MessagesRead)?;
    Ok(Json(
        message_detail(&state, &caller.project_id, &id, locale).await?,
    ))
}

pub async fn message_detail(
    state: &AppState,
    project: &str,
    id: &str,
    locale: Locale,
) -> Result<MessageView, ApiError> {
    let row = state
        .store
        .get_message(project, id)
        .await?
        .ok_or_else(|| ApiError::not_found("message", "ningún mensaje"))?;
    let mut view = MessageView::new(&row, locale);
    view.attempts = Some(
        state
            .store
            .message_attempts(id)
            .await?
            .into_iter()
            .map(AttemptView::from)
            .collect(),
    );
    view.events = Some(
        state
            .store
            .message_events(id)
            .await?
            .into_iter()
            .map(EventView::from)
            .collect(),
    );
    Ok(view)
}

fn status_change(change: StatusChange, verb_en: &str, verb_es: &str) -> Result<(), ApiError> {
    match change {
        StatusChange::Done => Ok(()),
        StatusChange::NotFound => Err(ApiError::not_found("message", "ningún mensaje")),
        StatusChange::NotAllowed(status) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "invalid_status",
            format!("A {} message cannot be {verb_en}.", status.as_str()),
            format!(
                "Un mensaje en estado {} no se puede {verb_es}.",
                status.as_str()
            ),
        )),
    }
}

/// Queues a failed, partial or deferred message again, now.
#[utoipa::path(post, path = "/v1/messages/{id}/retry", responses((status = 200, body = MessageView), (status = 409, description = "invalid_status")), security(("bearer" = [])))]
pub async fn retry_message(
    State(state): State<AppState>,
    caller: Caller,
    Extension(locale): Extension<Locale>,
    Path(id): Path<String>,
) -> Result<Json<MessageView>, ApiError> {
    caller.require(Permission::MessagesSend)?;
    let now = crate::delivery::now_ms();
    let expires = now + state.config.delivery.max_lifetime.as_millis() as i64;
    status_change(
        state
            .store
            .retry_message(&caller.project_id, &id, now, expires)
            .await?,
        "retried",
        "reintentar",
    )?;
    crate::audit::record(
        state.store.as_ref(),
        &caller.project_id,
        &caller.actor,
        "message.retry",
        Some(&id),
        None,
    )
    .await;
    state.intake.wake();
    Ok(Json(
        message_detail(&state, &caller.project_id, &id, locale).await?,
    ))
}

/// Cancels a queued or deferred message.
#[utoipa::path(post, path = "/v1/messages/{id}/cancel", responses((status = 200, body = MessageView), (status = 409, description = "invalid_status")), security(("bearer" = [])))]
pub async fn cancel_message(
    State(state): State<AppState>,
    caller: Caller,
    Extension(locale): Extension<Locale>,
    Path(id): Path<String>,
) -> Result<Json<MessageView>, ApiError> {
    caller.require(Permission::MessagesSend)?;
    status_change(
        state.store.cancel_message(&caller.project_id, &id).await?,
        "cancelled",
        "cancelar",
    )?;
    crate::audit::record(
        state.store.as_ref(),
        &caller.project_id,
        &caller.actor,
        "message.cancel",
        Some(&id),
        None,
    )
    .await;
    Ok(Json(
        message_detail(&state, &caller.project_id, &id, locale).await?,
    ))
}

// ----- templates ---------------------------------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
pub struct TemplateView {
    pub name: String,
    /// `builtin` or `project` (a project's own, which wins over a built-in of the same name).
    pub source: String,
    #[schema(value_type = Object)]
    pub body: TemplateSet,
}

fn template_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(vec![FieldError::invalid(
            "name",
            "A template name is 1–64 lowercase letters, digits, `_` or `-`.",
            "El nombre de una plantilla tiene de 1 a 64 minúsculas, dígitos, `_` o `-`.",
        )]))
    }
}

/// Every template the project can use: built-ins and its own.
#[utoipa::path(get, path = "/v1/templates", responses((status = 200, body = [TemplateView])), security(("bearer" = [])))]
pub async fn list_templates(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<TemplateView>>, ApiError> {
    caller.require(Permission::SettingsView)?;
    let own = state.store.list_templates(&caller.project_id).await?;
    let mut names: Vec<String> = templates::BUILTIN_NAMES
        .iter()
        .map(|s| s.to_string())
        .collect();
    for n in own {
        if !names.contains(&n) {
            names.push(n);
        }
    }
    let mut out = Vec::new();
    for name in names {
        out.push(template_view(&state, &caller.project_id, &name).await?);
    }
    Ok(Json(out))
}

async fn template_view(
    state: &AppState,
    project: &str,
    name: &str,
) -> Result<TemplateView, ApiError> {
    match state.store.get_template(project, name).await? {
        Some(json) => Ok(TemplateView {
            name: name.to_string(),
            source: "project".into(),
            body: serde_json::from_str(&json).map_err(anyhow::Error::from)?,
        }),
        None => templates::builtin(name)
            .map(|body| TemplateView {
                name: name.to_string(),
                source: "builtin".into(),
                body,
            })
            .ok_or_else(|| ApiError::not_found("template", "ninguna plantilla")),
    }
}

#[utoipa::path(get, path = "/v1/templates/{name}", responses((status = 200, body = TemplateView), (status = 404, description = "no such template")), security(("bearer" = [])))]
pub async fn get_template(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<TemplateView>, ApiError> {
    caller.require(Permission::SettingsView)?;
    Ok(Json(
        template_view(&state, &caller.project_id, &name).await?,
    ))
}

/// Adds or overrides a template: `{"en": {"subject", "text", "html"}, "es": {…}}`. A template
/// that does not render is refused with the part, the line and the reason.
#[utoipa::path(put, path = "/v1/templates/{name}", request_body(content = Object), responses((status = 200, body = TemplateView), (status = 422, description = "template_error")), security(("bearer" = [])))]
pub async fn put_template(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ValidJson(body): ValidJson<TemplateSet>,
) -> Result<Json<TemplateView>, ApiError> {
    caller.require(Permission::AccountsManage)?;
    template_name(&name)?;
    if body.en.is_none() && body.es.is_none() {
        return Err(ApiError::invalid(vec![FieldError::invalid(
            "en",
            "Give the template in `en`, `es` or both.",
            "Indique la plantilla en `en`, `es` o ambos.",
        )]));
    }
    templates::validate(&body).map_err(|e| ApiError::invalid(vec![template_field_error(&e)]))?;
    let json = serde_json::to_string(&body).map_err(anyhow::Error::from)?;
    state
        .store
        .put_template(&caller.project_id, &name, &json)
        .await?;
    crate::audit::record(
        state.store.as_ref(),
        &caller.project_id,
        &caller.actor,
        "template.save",
        Some(&name),
        None,
    )
    .await;
    Ok(Json(
        template_view(&state, &caller.project_id, &name).await?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviewRequest {
    pub template: TemplateSet,
    #[serde(default)]
    pub vars: serde_json::Value,
}

/// Renders a template that is not saved, in both languages, with example variables: the
/// editor's live preview. A template that does not render is a 422 naming the part and line.
#[utoipa::path(post, path = "/v1/templates/preview", request_body(content = Object), responses((status = 200, description = "`{\"en\": {subject, text, html}, \"es\": …}`"), (status = 422, description = "template_error")), security(("bearer" = [])))]
pub async fn preview_template(
    caller: Caller,
    ValidJson(body): ValidJson<PreviewRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Permission::SettingsView)?;
    if body.template.en.is_none() && body.template.es.is_none() {
        return Err(ApiError::invalid(vec![FieldError::invalid(
            "en",
            "Give the template in `en`, `es` or both.",
            "Indique la plantilla en `en`, `es` o ambos.",
        )]));
    }
    templates::validate(&body.template)
        .map_err(|e| ApiError::invalid(vec![template_field_error(&e)]))?;
    let mut out = serde_json::Map::new();
    for (code, lang) in [("en", templates::Lang::En), ("es", templates::Lang::Es)] {
        let rendered = templates::render(&body.template, lang, &body.vars)
            .map_err(|e| ApiError::invalid(vec![template_field_error(&e)]))?;
        out.insert(
            code.into(),
            serde_json::to_value(rendered).map_err(anyhow::Error::from)?,
        );
    }
    Ok(Json(serde_json::Value::Object(out)))
}

/// Removes a project's template (a built-in of that name applies again).
#[utoipa::path(delete, path = "/v1/templates/{name}", responses((status = 204, description = "removed"), (status = 404, description = "the project has no such template")), security(("bearer" = [])))]
pub async fn delete_template(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Permission::AccountsManage)?;
    if state
        .store
        .delete_template(&caller.project_id, &name)
        .await?
    {
        crate::audit::record(
            state.store.as_ref(),
            &caller.project_id,
            &caller.actor,
            "template.delete",
            Some(&name),
            None,
        )
        .await;
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("template", "ninguna plantilla"))
    }
}

/// Prometheus metrics: messages by status, attempts by account and outcome, attempt latency,
/// queue depth, errors by diagnosis code.
pub async fn metrics(State(state): State<AppState>) -> Response {
    if let Ok(counts) = state.store.count_by_status().await {
        for status in MessageStatus::ALL {
            let n = counts
                .iter()
                .find(|(s, _)| s == status.as_str())
                .map_or(0, |(_, n)| *n);
            metrics::gauge!("cartero_queue_messages", "status" => status.as_str()).set(n as f64);
        }
        let depth: i64 = counts
            .iter()
            .filter(|(s, _)| matches!(s.as_str(), "queued" | "deferred" | "sending"))
            .map(|(_, n)| n)
            .sum();
        metrics::gauge!("cartero_queue_depth").set(depth as f64);
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.metrics.render(),
    )
        .into_response()
}
