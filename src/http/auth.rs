//! Who is calling: a bearer token or a web session becomes a [`Caller`] with a project, a
//! role and an [`Actor`] for the audit log.
//!
//! Every handler takes a `Caller` and asks for the one permission its route needs with
//! [`Caller::require`]: no credentials is 401, credentials without the permission is 403. The
//! web admin calls the same routes with its session cookie; for a session, every request
//! that is not GET/HEAD must carry the session's CSRF token in `X-CSRF-Token` (the cookie is
//! also `SameSite=Strict`).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};

use super::AppState;
use super::error::ApiError;
use crate::audit::Actor;
use crate::delivery::now_ms;
use crate::domain::permission::{Permission, Role};
use crate::tokens;

/// The name of the web session cookie.
pub const SESSION_COOKIE: &str = "cartero_session";
/// The header a session's state-changing requests carry.
pub const CSRF_HEADER: &str = "x-csrf-token";

#[derive(Debug, Clone)]
pub struct Caller {
    pub project_id: String,
    pub role: Role,
    /// The token id, or `user:<id>` for a web session.
    pub token_id: String,
    pub actor: Actor,
    /// The stored hash of the session, for a web session.
    pub session: Option<String>,
}

impl Caller {
    pub fn require(&self, permission: Permission) -> Result<(), ApiError> {
        if self.role.allows(permission) {
            Ok(())
        } else {
            Err(ApiError::forbidden(permission))
        }
    }
}

/// The value of the session cookie, if the request has one.
pub fn session_cookie(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn csrf_failed() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "csrf_failed",
        "This form is out of date or did not come from cartero's own pages: reload the page and try again.",
        "Este formulario está caducado o no viene de las páginas de cartero: recargue la página y vuelva a intentarlo.",
    )
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            });
        if let Some(token) = bearer {
            let record = tokens::authenticate(state.store.as_ref(), token)
                .await?
                .ok_or_else(ApiError::unauthorized)?;
            return Ok(Caller {
                project_id: record.project_id,
                role: record.role,
                actor: Actor::token(&record.name),
                token_id: record.id,
                session: None,
            });
        }
        let cookie = session_cookie(parts).ok_or_else(ApiError::unauthorized)?;
        let (session, user) = state
            .users
            .session(&cookie, now_ms())
            .await?
            .ok_or_else(ApiError::unauthorized)?;
        if !matches!(parts.method, Method::GET | Method::HEAD) {
            let sent = parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !constant_time_eq(sent.as_bytes(), session.csrf.as_bytes()) {
                return Err(csrf_failed());
            }
        }
        Ok(Caller {
            project_id: user.project_id,
            role: user.role,
            token_id: format!("user:{}", user.id),
            actor: Actor::user(&user.email),
            session: Some(session.id_hash),
        })
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
