//! The `/v1` routes. Each handler: authenticate, require one permission, call a service,
//! answer a view.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::OpenApi;

use super::AppState;
use super::admin;
use super::auth::Caller;
use super::error::ApiError;
use super::json::ValidJson;
use super::messages;
use super::views::{AccountView, FallbackView, PresetView, TestView};
use crate::accounts::TestTarget;
use crate::audit;
use crate::domain::account::AccountInput;
use crate::domain::account::EmailAddress;
use crate::domain::i18n::Locale;
use crate::domain::permission::Permission;
use crate::domain::presets;
use crate::domain::validation::FieldError;
use crate::store::SYSTEM_PROJECT;
use axum::extract::DefaultBodyLimit;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "cartero",
        description = "Self-hosted outgoing mail: SMTP accounts with encrypted credentials, presets, the system fallback account. Authenticate with `Authorization: Bearer <token>` (`cartero token create`). Errors: `{\"error\": {\"code\", \"message\", \"field\"?}}`, in the language of `Accept-Language` (es, en)."
    ),
    paths(
        healthz,
        list_accounts,
        create_account,
        get_account,
        update_account,
        delete_account,
        test_saved_account,
        test_unsaved_account,
        list_presets,
        messages::send_message,
        messages::list_messages,
        messages::get_message,
        messages::retry_message,
        messages::cancel_message,
        messages::list_templates,
        messages::get_template,
        messages::put_template,
        messages::delete_template,
        messages::preview_template,
        admin::list_users,
        admin::create_user,
        admin::delete_user,
        admin::list_tokens,
        admin::create_token,
        admin::revoke_token,
        admin::list_audit,
        get_fallback,
        put_fallback,
        delete_fallback,
        test_fallback
    ),
    components(schemas(AccountView, PresetView, FallbackView, AccountInput, TestView, crate::domain::message::MessageInput, messages::MessageView, messages::MessageList, messages::AcceptedView)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// Room for a 25 MB message in base64 inside JSON; the size rule itself is the intake's.
const MESSAGE_BODY_LIMIT: usize = 40 * 1024 * 1024;

pub fn api() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/accounts", get(list_accounts).post(create_account))
        .route(
            "/v1/accounts/{id}",
            get(get_account)
                .patch(update_account)
                .delete(delete_account),
        )
        .route("/v1/accounts/test", post(test_unsaved_account))
        .route("/v1/accounts/{id}/test", post(test_saved_account))
        .route("/v1/presets", get(list_presets))
        .route(
            "/v1/messages",
            post(messages::send_message)
                .layer(DefaultBodyLimit::max(MESSAGE_BODY_LIMIT))
                .get(messages::list_messages),
        )
        .route("/v1/messages/{id}", get(messages::get_message))
        .route("/v1/messages/{id}/retry", post(messages::retry_message))
        .route("/v1/messages/{id}/cancel", post(messages::cancel_message))
        .route("/v1/templates", get(messages::list_templates))
        .route("/v1/templates/preview", post(messages::preview_template))
        .route("/v1/users", get(admin::list_users).post(admin::create_user))
        .route("/v1/users/{id}", axum::routing::delete(admin::delete_user))
        .route(
            "/v1/tokens",
            get(admin::list_tokens).post(admin::create_token),
        )
        .route(
            "/v1/tokens/{id}",
            axum::routing::delete(admin::revoke_token),
        )
        .route("/v1/audit", get(admin::list_audit))
        .route(
            "/v1/templates/{name}",
            get(messages::get_template)
                .put(messages::put_template)
                .delete(messages::delete_template),
        )
        .route("/metrics", get(messages::metrics))
        .route(
            "/v1/system/fallback",
            get(get_fallback).put(put_fallback).delete(delete_fallback),
        )
        .route("/v1/system/fallback/test", post(test_fallback))
}

/// Liveness and database reachability.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "healthy"), (status = 503, description = "the database is unreachable")))]
async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    match state.store.health().await {
        Ok(()) => (StatusCode::OK, Json(json!({"status": "ok"}))),
        Err(e) => {
            tracing::error!(error = %e, "health check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unavailable", "error": {"code": "database_unavailable"}})),
            )
        }
    }
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// The caller's project's accounts, highest priority first.
#[utoipa::path(get, path = "/v1/accounts", responses((status = 200, body = [AccountView])), security(("bearer" = [])))]
async fn list_accounts(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<AccountView>>, ApiError> {
    caller.require(Permission::SettingsView)?;
    let accounts = state.accounts.list(&caller.project_id).await?;
    let mut views = Vec::with_capacity(accounts.len());
    for record in &accounts {
        views.push(account_view(&state, record).await?);
    }
    Ok(Json(views))
}

/// The view of an account with today's sent count.
async fn account_view(
    state: &AppState,
    record: &crate::store::AccountRecord,
) -> Result<AccountView, ApiError> {
    let midnight_minute = time::OffsetDateTime::now_utc()
        .replace_time(time::Time::MIDNIGHT)
        .unix_timestamp()
        / 60;
    let sent: i64 = state
        .store
        .account_sends(&record.id, midnight_minute)
        .await?
        .iter()
        .map(|(_, n)| n)
        .sum();
    Ok(AccountView {
        sent_today: Some(sent),
        ..AccountView::from(record)
    })
}

/// Creates an account (`"preset": "gmail"` fills the provider's server settings).
#[utoipa::path(post, path = "/v1/accounts", request_body = AccountInput, responses((status = 201, body = AccountView), (status = 422, description = "invalid field"), (status = 409, description = "name taken")), security(("bearer" = [])))]
async fn create_account(
    State(state): State<AppState>,
    caller: Caller,
    ValidJson(input): ValidJson<AccountInput>,
) -> Result<(StatusCode, Json<AccountView>), ApiError> {
    caller.require(Permission::AccountsManage)?;
    let record = state.accounts.create(&caller.project_id, &input).await?;
    tracing::info!(account = %record.id, project = %record.project_id, "account created");
    audit::account(
        state.store.as_ref(),
        &caller.actor,
        "account.create",
        None,
        &record,
    )
    .await;
    Ok((StatusCode::CREATED, Json(AccountView::from(&record))))
}

#[utoipa::path(get, path = "/v1/accounts/{id}", responses((status = 200, body = AccountView), (status = 404, description = "not in this project")), security(("bearer" = [])))]
async fn get_account(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<AccountView>, ApiError> {
    caller.require(Permission::SettingsView)?;
    let record = state.accounts.get(&caller.project_id, &id).await?;
    Ok(Json(account_view(&state, &record).await?))
}

/// Changes the fields the body names; `null` clears a nullable field; an absent password is kept.
#[utoipa::path(patch, path = "/v1/accounts/{id}", request_body = AccountInput, responses((status = 200, body = AccountView), (status = 404, description = "not in this project"), (status = 422, description = "invalid field")), security(("bearer" = [])))]
async fn update_account(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ValidJson(patch): ValidJson<AccountInput>,
) -> Result<Json<AccountView>, ApiError> {
    caller.require(Permission::AccountsManage)?;
    let before = state.accounts.get(&caller.project_id, &id).await?;
    let record = state
        .accounts
        .update(&caller.project_id, &id, patch)
        .await?;
    tracing::info!(account = %record.id, project = %record.project_id, "account updated");
    audit::account(
        state.store.as_ref(),
        &caller.actor,
        "account.update",
        Some(&before),
        &record,
    )
    .await;
    Ok(Json(AccountView::from(&record)))
}

#[utoipa::path(delete, path = "/v1/accounts/{id}", responses((status = 204, description = "deleted"), (status = 404, description = "not in this project")), security(("bearer" = [])))]
async fn delete_account(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Permission::AccountsManage)?;
    let before = state.accounts.get(&caller.project_id, &id).await?;
    state.accounts.delete(&caller.project_id, &id).await?;
    tracing::info!(account = %id, project = %caller.project_id, "account deleted");
    crate::audit::record(
        state.store.as_ref(),
        &caller.project_id,
        &caller.actor,
        "account.delete",
        Some(&id),
        Some(json!({"name": before.spec.name})),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PresetQuery {
    email: Option<String>,
}

/// Provider presets; `?email=ana@gmail.com` keeps the ones for that address's provider.
#[utoipa::path(get, path = "/v1/presets", params(("email" = Option<String>, Query, description = "an address whose provider to look up")), responses((status = 200, body = [PresetView])), security(("bearer" = [])))]
async fn list_presets(
    caller: Caller,
    Extension(locale): Extension<Locale>,
    query: Result<Query<PresetQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<PresetView>>, ApiError> {
    caller.require(Permission::SettingsView)?;
    let Query(query) = query.map_err(|_| {
        ApiError::invalid(vec![crate::domain::validation::FieldError::invalid(
            "query",
            "The only query parameter is `email`.",
            "El único parámetro de consulta es `email`.",
        )])
    })?;
    let list: Vec<&presets::Preset> = match query.email.as_deref() {
        Some(email) => presets::for_email(email),
        None => presets::all().iter().collect(),
    };
    Ok(Json(
        list.into_iter()
            .map(|p| PresetView::new(p, locale))
            .collect(),
    ))
}

/// The operator's system fallback account, used when a project has no account of a
/// message's type.
#[utoipa::path(get, path = "/v1/system/fallback", responses((status = 200, body = FallbackView)), security(("bearer" = [])))]
async fn get_fallback(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<FallbackView>, ApiError> {
    caller.require(Permission::SettingsView)?;
    Ok(Json(fallback_view(&state).await?))
}

async fn fallback_view(state: &AppState) -> Result<FallbackView, ApiError> {
    if let Some(record) = state.accounts.stored_fallback().await? {
        return Ok(FallbackView {
            source: "api".into(),
            account: Some(AccountView::from(&record)),
        });
    }
    Ok(match &state.env_fallback {
        Some(env) => FallbackView {
            source: "environment".into(),
            account: Some(AccountView::from_spec(
                SYSTEM_PROJECT,
                &env.spec,
                env.password.is_some(),
                false,
            )),
        },
        None => FallbackView {
            source: "none".into(),
            account: None,
        },
    })
}

/// Sets the fallback account (overrides `CARTERO_FALLBACK_SMTP_URL`); fields absent from the
/// body keep their stored value, as with `PATCH`.
#[utoipa::path(put, path = "/v1/system/fallback", request_body = AccountInput, responses((status = 200, body = FallbackView), (status = 403, description = "needs defaults.manage")), security(("bearer" = [])))]
async fn put_fallback(
    State(state): State<AppState>,
    caller: Caller,
    ValidJson(input): ValidJson<AccountInput>,
) -> Result<Json<FallbackView>, ApiError> {
    caller.require(Permission::DefaultsManage)?;
    let before = state.accounts.stored_fallback().await?;
    let record = state.accounts.put_fallback(input).await?;
    tracing::info!(by_token = %caller.token_id, "system fallback account set");
    crate::audit::record(
        state.store.as_ref(),
        &caller.project_id,
        &caller.actor,
        "fallback.set",
        Some(&record.id),
        Some(audit::account_changes(before.as_ref(), &record)),
    )
    .await;
    Ok(Json(fallback_view(&state).await?))
}

/// Removes the fallback set through the API (the environment's, if any, applies again).
#[utoipa::path(delete, path = "/v1/system/fallback", responses((status = 200, body = FallbackView)), security(("bearer" = [])))]
async fn delete_fallback(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require(Permission::DefaultsManage)?;
    let removed = state.accounts.delete_fallback().await?;
    tracing::info!(by_token = %caller.token_id, removed, "system fallback account removed");
    if removed {
        crate::audit::record(
            state.store.as_ref(),
            &caller.project_id,
            &caller.actor,
            "fallback.remove",
            None,
            None,
        )
        .await;
    }
    let view = fallback_view(&state).await?;
    Ok(Json(
        json!({"removed": removed, "source": view.source, "account": view.account}),
    ))
}

/// Splits a test request body into the test's own fields (`send_to`, `send`) and the
/// account fields, which are parsed strictly like an account body.
fn test_body(body: Option<&[u8]>) -> Result<(TestTarget, Option<AccountInput>), ApiError> {
    let mut map = match body {
        None => serde_json::Map::new(),
        Some(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => serde_json::Map::new(),
        Some(bytes) => match super::json::parse::<Value>(bytes)? {
            Value::Object(map) => map,
            _ => {
                return Err(ApiError::invalid(vec![FieldError::invalid(
                    "body",
                    "The body must be a JSON object.",
                    "El cuerpo debe ser un objeto JSON.",
                )]));
            }
        },
    };
    let send_to = match map.remove("send_to") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            Some(EmailAddress::parse("send_to", &s).map_err(|e| ApiError::invalid(vec![e]))?)
        }
        Some(_) => {
            return Err(ApiError::invalid(vec![FieldError::invalid(
                "send_to",
                "`send_to` must be an email address.",
                "`send_to` debe ser una dirección de correo.",
            )]));
        }
    };
    let send = match map.remove("send") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => b,
        Some(_) => {
            return Err(ApiError::invalid(vec![FieldError::invalid(
                "send",
                "`send` must be true or false.",
                "`send` debe ser true o false.",
            )]));
        }
    };
    let account = if map.is_empty() {
        None
    } else {
        let bytes = serde_json::to_vec(&Value::Object(map)).map_err(anyhow::Error::from)?;
        Some(super::json::parse::<AccountInput>(&bytes)?)
    };
    Ok((TestTarget { send_to, send }, account))
}

fn check_test_rate(state: &AppState, caller: &Caller) -> Result<(), ApiError> {
    state.test_limiter.check(&caller.project_id).map_err(|wait| {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_tests",
            format!("Too many connection tests for this project: wait {wait} s and try again."),
            format!("Demasiadas pruebas de conexión para este proyecto: espere {wait} s y vuelva a intentarlo."),
        );
        e.retry_after = Some(wait);
        e
    })
}

/// Probar / Test a saved account: DNS, TCP, TLS, EHLO, STARTTLS, AUTH, MAIL FROM, RCPT TO and a
/// real test message (unless `"send": false`), then IMAP if configured. Body (optional):
/// `{"send_to": "addr", "send": true}` plus any account fields to try without saving them.
#[utoipa::path(post, path = "/v1/accounts/{id}/test", request_body(content = Option<AccountInput>, description = "optional: `send_to`, `send`, and account fields to try unsaved"), responses((status = 200, body = TestView, description = "the test ran; `ok` says whether it passed"), (status = 404, description = "not in this project"), (status = 429, description = "too many tests")), security(("bearer" = [])))]
async fn test_saved_account(
    State(state): State<AppState>,
    caller: Caller,
    Extension(locale): Extension<Locale>,
    Path(id): Path<String>,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    caller.require(Permission::AccountsManage)?;
    let (stream, target, overrides) = saved_test_request(&state, request).await?;
    // Check the account exists before spending the project's test budget on it.
    state.accounts.get(&caller.project_id, &id).await?;
    check_test_rate(&state, &caller)?;
    let project = caller.project_id.clone();
    answer_test(locale, stream, move |observer| async move {
        let report = state
            .accounts
            .test_saved(&project, &id, overrides, target, &state.probe, observer)
            .await?;
        tracing::info!(account = %id, ok = report.ok, code = ?report.diagnosis.as_ref().map(|d| d.code), "connection test");
        Ok(report)
    })
    .await
}

/// A test request for an account that exists (saved or fallback): whether to stream, where to
/// send, and the fields to try unsaved. The body is optional, so it is read by hand.
async fn saved_test_request(
    state: &AppState,
    request: axum::extract::Request,
) -> Result<(bool, TestTarget, Option<AccountInput>), ApiError> {
    let stream = wants_stream(request.headers());
    let body = axum::body::to_bytes(request.into_body(), state.config.max_body_bytes)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "The request body is too large.",
                "El cuerpo de la solicitud es demasiado grande.",
            )
        })?;
    let (target, overrides) = test_body(Some(&body))?;
    Ok((stream, target, overrides))
}

/// Whether the client asked for the test's stages as they complete (`application/x-ndjson`).
fn wants_stream(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/x-ndjson"))
}

/// Runs a test and answers its report: as one JSON object, or — streamed — one line
/// `{"stage": …}` per completed stage, then `{"result": TestView}` (or `{"error": …}`).
async fn answer_test<F, Fut>(locale: Locale, stream: bool, test: F) -> Result<Response, ApiError>
where
    F: FnOnce(Option<crate::probe::Observer>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<crate::probe::ProbeReport, crate::accounts::AccountError>>
        + Send
        + 'static,
{
    if !stream {
        let report = test(None).await?;
        return Ok(Json(TestView::new(&report, locale)).into_response());
    }
    let (lines, rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        let (stages, mut stage_rx) = tokio::sync::mpsc::unbounded_channel();
        let forward = {
            let lines = lines.clone();
            tokio::spawn(async move {
                while let Some(stage) = stage_rx.recv().await {
                    let view = super::views::StageView::new(&stage);
                    let _ = lines.send(format!("{}\n", json!({ "stage": view })));
                }
            })
        };
        let outcome = test(Some(stages)).await;
        let _ = forward.await;
        let last = match outcome {
            Ok(report) => json!({ "result": TestView::new(&report, locale) }),
            Err(e) => ApiError::from(e).body(locale),
        };
        let _ = lines.send(format!("{last}\n"));
    });
    let body = axum::body::Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async {
        rx.recv()
            .await
            .map(|line| (Ok::<_, std::convert::Infallible>(line), rx))
    }));
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "application/x-ndjson"),
            (axum::http::header::CACHE_CONTROL, "no-store"),
            // Proxies must pass each stage on as it comes.
            (
                axum::http::HeaderName::from_static("x-accel-buffering"),
                "no",
            ),
        ],
        body,
    )
        .into_response())
}

/// Probar / Test the system fallback account in effect (the one set here, else the
/// environment's). The body is as for testing a saved account: `send_to`, `send`, and account
/// fields to try without saving them.
#[utoipa::path(post, path = "/v1/system/fallback/test", request_body(content = Option<AccountInput>, description = "optional: `send_to`, `send`, and account fields to try unsaved"), responses((status = 200, body = TestView), (status = 404, description = "no fallback account"), (status = 429, description = "too many tests")), security(("bearer" = [])))]
async fn test_fallback(
    State(state): State<AppState>,
    caller: Caller,
    Extension(locale): Extension<Locale>,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    caller.require(Permission::DefaultsManage)?;
    let (stream, target, overrides) = saved_test_request(&state, request).await?;
    let stored = state.accounts.stored_fallback().await?;
    if stored.is_none() && state.env_fallback.is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "There is no system fallback account to test: set one first.",
            "No hay cuenta genérica del sistema que probar: defina una primero.",
        ));
    }
    check_test_rate(&state, &caller)?;
    answer_test(locale, stream, move |observer| async move {
        let report = if let Some(record) = &stored {
            state
                .accounts
                .test_saved(
                    SYSTEM_PROJECT,
                    &record.id,
                    overrides,
                    target,
                    &state.probe,
                    observer,
                )
                .await?
        } else if let Some(env) = &state.env_fallback {
            state
                .accounts
                .test_env_fallback(env, overrides, target, &state.probe, observer)
                .await?
        } else {
            // Checked before the test started; removed meanwhile.
            return Err(crate::accounts::AccountError::NotFound);
        };
        tracing::info!(ok = report.ok, code = ?report.diagnosis.as_ref().map(|d| d.code), "connection test (system fallback)");
        Ok(report)
    })
    .await
}

/// Probar / Test an account before saving it: the body is an account (as for creation) plus
/// the optional `send_to` and `send`.
#[utoipa::path(post, path = "/v1/accounts/test", request_body = AccountInput, responses((status = 200, body = TestView), (status = 422, description = "invalid field"), (status = 429, description = "too many tests")), security(("bearer" = [])))]
async fn test_unsaved_account(
    State(state): State<AppState>,
    caller: Caller,
    Extension(locale): Extension<Locale>,
    headers: axum::http::HeaderMap,
    ValidJson(body): ValidJson<Value>,
) -> Result<Response, ApiError> {
    caller.require(Permission::AccountsManage)?;
    let bytes = serde_json::to_vec(&body).map_err(anyhow::Error::from)?;
    let (target, account) = test_body(Some(&bytes))?;
    let account = account.unwrap_or_default();
    // Validate before spending the test budget: a typo is not a test.
    account.parse(false).map_err(ApiError::invalid)?;
    check_test_rate(&state, &caller)?;
    answer_test(locale, wants_stream(&headers), move |observer| async move {
        let report = state
            .accounts
            .test_unsaved(&account, target, &state.probe, observer)
            .await?;
        tracing::info!(ok = report.ok, code = ?report.diagnosis.as_ref().map(|d| d.code), "connection test (unsaved account)");
        Ok(report)
    })
    .await
}
