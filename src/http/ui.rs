//! The web admin: a page and its script and styles embedded in the binary (no build step),
//! plus login, logout and the session endpoint. Everything else the pages do goes through
//! the same `/v1` API, with the same permission checks, authenticated by the session cookie
//! and a CSRF header (see [`super::auth`]).

use axum::Json;
use axum::extract::Request;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::auth::{Caller, SESSION_COOKIE, session_cookie};
use super::error::ApiError;
use super::json::ValidJson;
use crate::audit::{self, Actor};
use crate::delivery::now_ms;
use crate::users::SESSION_TTL_MS;

const INDEX_HTML: &str = include_str!("ui/index.html");
const APP_JS: &str = include_str!("ui/app.js");
const APP_CSS: &str = include_str!("ui/app.css");

/// Scripts and styles only from cartero itself; inline styles are allowed for the e-mail
/// preview (a sandboxed frame without scripts); nothing may frame the admin.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/", get(index))
        .route("/ui/app.js", get(app_js))
        .route("/ui/app.css", get(app_css))
        .route("/ui/session", get(session))
        .route("/ui/login", post(login))
        .route("/ui/logout", post(logout))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn app_css() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

/// Middleware: the security headers every answer carries.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // API answers (a CSRF token, a token or password shown once) are never cached.
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

fn session_view(
    email: &str,
    role: crate::domain::permission::Role,
    project: &str,
    csrf: &str,
) -> serde_json::Value {
    json!({
        "user": {"email": email, "role": role.as_str(), "project": project},
        "permissions": role.permissions().iter().map(|p| p.as_str()).collect::<Vec<_>>(),
        "csrf": csrf,
    })
}

/// Who is logged in (and the CSRF token the page must echo), or `{"user": null}` with
/// `setup_needed` when no user exists yet.
async fn session(
    State(state): State<AppState>,
    request: Request,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (parts, _) = request.into_parts();
    if let Some(cookie) = session_cookie(&parts)
        && let Some((session, user)) = state.users.session(&cookie, now_ms()).await?
    {
        return Ok(Json(session_view(
            &user.email,
            user.role,
            &user.project_id,
            &session.csrf,
        )));
    }
    let setup_needed = state.store.count_users().await? == 0;
    Ok(Json(json!({"user": null, "setup_needed": setup_needed})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    email: String,
    password: String,
}

fn cookie(state: &AppState, value: &str, max_age_secs: i64) -> HeaderValue {
    let secure = if state.config.network.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}"
    ))
    .expect("cookie characters are URL-safe base64")
}

/// Whether a request comes from a page of another site (login CSRF): by `Sec-Fetch-Site`,
/// else by `Origin` against `Host`. Requests without either (curl, scripts) are allowed.
fn cross_site(headers: &axum::http::HeaderMap) -> bool {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = get("sec-fetch-site") {
        return !matches!(site, "same-origin" | "none");
    }
    match (get("origin"), get("host")) {
        (Some(origin), Some(host)) => origin.split_once("://").map(|(_, rest)| rest) != Some(host),
        _ => false,
    }
}

async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: axum::http::HeaderMap,
    ValidJson(body): ValidJson<LoginBody>,
) -> Result<Response, ApiError> {
    if cross_site(&headers) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "csrf_failed",
            "Log in from cartero's own page.",
            "Inicie sesión desde la página de cartero.",
        ));
    }
    let key = body.email.trim().to_lowercase();
    if let Err(wait) = state.login_throttle.begin(&key, &peer.ip().to_string()) {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_logins",
            format!("Too many login attempts for this email: wait {wait} s and try again."),
            format!(
                "Demasiados intentos de acceso con este correo: espere {wait} s y vuelva a intentarlo."
            ),
        );
        e.retry_after = Some(wait);
        return Err(e);
    }
    let Some(opened) = state.users.login(&key, &body.password, now_ms()).await? else {
        tracing::info!("failed web login");
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "login_failed",
            "Wrong email or password.",
            "Correo o contraseña incorrectos.",
        ));
    };
    state.login_throttle.succeeded(&key, &peer.ip().to_string());
    let actor = Actor::user(&opened.user.email);
    audit::record(
        state.store.as_ref(),
        &opened.user.project_id,
        &actor,
        "session.login",
        None,
        None,
    )
    .await;
    let mut response = Json(session_view(
        &opened.user.email,
        opened.user.role,
        &opened.user.project_id,
        &opened.record.csrf,
    ))
    .into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        cookie(&state, &opened.cookie_value, SESSION_TTL_MS / 1000),
    );
    Ok(response)
}

async fn logout(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    if let Some(hash) = &caller.session {
        state.users.logout(hash, now_ms()).await?;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, cookie(&state, "", 0));
    Ok(response)
}
