//! Who is calling: the bearer token becomes a [`Caller`] with a project and a role.
//!
//! Every handler takes a `Caller` and asks for the one permission its route needs with
//! [`Caller::require`]: no token is 401, a token without the permission is 403.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use super::AppState;
use super::error::ApiError;
use crate::domain::permission::{Permission, Role};
use crate::tokens;

#[derive(Debug, Clone)]
pub struct Caller {
    pub project_id: String,
    pub role: Role,
    pub token_id: String,
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

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .ok_or_else(ApiError::unauthorized)?;
        let record = tokens::authenticate(state.store.as_ref(), token)
            .await?
            .ok_or_else(ApiError::unauthorized)?;
        Ok(Caller {
            project_id: record.project_id,
            role: record.role,
            token_id: record.id,
        })
    }
}
