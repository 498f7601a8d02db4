//! Users, API tokens and the audit log: `/v1/users`, `/v1/tokens`, `/v1/audit`.
//!
//! Reading needs `settings.view`; creating and removing users and tokens needs
//! `users.manage`. A password or token is answered once, when it is created.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::AppState;
use super::auth::Caller;
use super::error::ApiError;
use super::json::ValidJson;
use super::views::rfc3339;
use crate::audit;
use crate::domain::permission::{Permission, Role};
use crate::domain::validation::FieldError;
use crate::store::{TokenRecord, UserRecord};
use crate::users::{self, UserError};

impl From<UserError> for ApiError {
    fn from(e: UserError) -> Self {
        match e {
            UserError::Invalid(fields) => ApiError::invalid(fields),
            UserError::EmailTaken(email) => ApiError {
                fields: vec![FieldError::invalid(
                    "email",
                    format!("A user with the email `{email}` already exists."),
                    format!("Ya existe un usuario con el correo «{email}»."),
                )],
                ..ApiError::new(
                    StatusCode::CONFLICT,
                    "email_taken",
                    format!("A user with the email `{email}` already exists."),
                    format!("Ya existe un usuario con el correo «{email}»."),
                )
            },
            UserError::NoProject(p) => ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("There is no project `{p}`."),
                format!("No existe el proyecto «{p}»."),
            ),
            UserError::Store(e) => e.into(),
            UserError::Hash(e) => anyhow::anyhow!("password hashing: {e}").into(),
        }
    }
}

fn parse_role(value: &str) -> Result<Role, FieldError> {
    value.parse::<Role>().map_err(|_| {
        FieldError::invalid(
            "role",
            "The role is one of owner, admin, sender, viewer.",
            "El rol es uno de owner, admin, sender, viewer.",
        )
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    pub id: String,
    pub email: String,
    pub role: String,
    pub created_at: String,
}

impl From<&UserRecord> for UserView {
    fn from(u: &UserRecord) -> UserView {
        UserView {
            id: u.id.clone(),
            email: u.email.clone(),
            role: u.role.as_str().into(),
            created_at: rfc3339(u.created_at),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub email: String,
    pub role: String,
    /// At least 12 characters; when absent cartero generates one and answers it once.
    pub password: Option<String>,
}

/// The project's web admin users.
#[utoipa::path(get, path = "/v1/users", responses((status = 200, body = [UserView])), security(("bearer" = [])))]
pub async fn list_users(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<UserView>>, ApiError> {
    caller.require(Permission::SettingsView)?;
    let users = state.store.list_users(&caller.project_id).await?;
    Ok(Json(users.iter().map(UserView::from).collect()))
}

/// Adds a user to the caller's project. Without `password`, one is generated and shown in
/// this answer only.
#[utoipa::path(post, path = "/v1/users", request_body = NewUser, responses((status = 201, description = "`{user, password?}`"), (status = 409, description = "email_taken"), (status = 422, description = "invalid field")), security(("bearer" = [])))]
pub async fn create_user(
    State(state): State<AppState>,
    caller: Caller,
    ValidJson(body): ValidJson<NewUser>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(Permission::UsersManage)?;
    let role = parse_role(&body.role);
    let generated = body.password.is_none().then(users::generate_password);
    let password = body
        .password
        .clone()
        .or_else(|| generated.clone())
        .unwrap_or_default();
    let mut errors = users::validate(&body.email, &password)
        .err()
        .unwrap_or_default();
    if let Err(e) = &role {
        errors.push(e.clone());
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    let role = role.map_err(|e| ApiError::invalid(vec![e]))?;
    let user = state
        .users
        .create(&caller.project_id, &body.email, role, &password)
        .await?;
    audit::record(
        state.store.as_ref(),
        &caller.project_id,
        &caller.actor,
        "user.create",
        Some(&user.email),
        Some(json!({"role": role.as_str(), "password": "set"})),
    )
    .await;
    let mut answer = json!({"user": UserView::from(&user)});
    if let Some(p) = generated {
        answer["password"] = json!(p);
    }
    Ok((StatusCode::CREATED, Json(answer)))
}

/// Removes a user and ends their sessions. A user cannot remove themselves.
#[utoipa::path(delete, path = "/v1/users/{id}", responses((status = 204, description = "removed"), (status = 404, description = "not in this project"), (status = 409, description = "cannot_remove_self")), security(("bearer" = [])))]
pub async fn delete_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Permission::UsersManage)?;
    if caller.token_id == format!("user:{id}") {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "cannot_remove_self",
            "You cannot remove your own user: ask another owner.",
            "No puede eliminar su propio usuario: pídaselo a otro propietario.",
        ));
    }
    let email = state
        .store
        .list_users(&caller.project_id)
        .await?
        .into_iter()
        .find(|u| u.id == id)
        .map(|u| u.email);
    if !state.store.delete_user(&caller.project_id, &id).await? {
        return Err(ApiError::not_found("user", "ningún usuario"));
    }
    audit::record(
        state.store.as_ref(),
        &caller.project_id,
        &caller.actor,
        "user.delete",
        email.as_deref().or(Some(&id)),
        None,
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenView {
    pub id: String,
    pub name: String,
    pub role: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

impl From<&TokenRecord> for TokenView {
    fn from(t: &TokenRecord) -> TokenView {
        TokenView {
            id: t.id.clone(),
            name: t.name.clone(),
            role: t.role.as_str().into(),
            created_at: rfc3339(t.created_at),
            revoked_at: t.revoked_at.map(rfc3339),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    pub name: String,
    pub role: String,
}

/// The project's API tokens (never their text).
#[utoipa::path(get, path = "/v1/tokens", responses((status = 200, body = [TokenView])), security(("bearer" = [])))]
pub async fn list_tokens(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<TokenView>>, ApiError> {
    caller.require(Permission::SettingsView)?;
    let tokens = state.store.list_tokens(&caller.project_id).await?;
    Ok(Json(tokens.iter().map(TokenView::from).collect()))
}

/// Creates a token; its text is in this answer only.
#[utoipa::path(post, path = "/v1/tokens", request_body = NewToken, responses((status = 201, description = "`{token, …TokenView}`"), (status = 422, description = "invalid field")), security(("bearer" = [])))]
pub async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    ValidJson(body): ValidJson<NewToken>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(Permission::UsersManage)?;
    let mut errors = Vec::new();
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        errors.push(FieldError::invalid(
            "name",
            "Give the token a name of 1–100 characters (e.g. the application that uses it).",
            "Dé al token un nombre de 1 a 100 caracteres (p. ej. la aplicación que lo usa).",
        ));
    }
    let role = parse_role(&body.role);
    if let Err(e) = &role {
        errors.push(e.clone());
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    let role = role.map_err(|e| ApiError::invalid(vec![e]))?;
    let issued = crate::tokens::issue(state.store.as_ref(), &caller.project_id, name, role).await?;
    audit::record(
        state.store.as_ref(),
        &caller.project_id,
        &caller.actor,
        "token.create",
        Some(name),
        Some(json!({"role": role.as_str(), "id": issued.record.id})),
    )
    .await;
    let mut answer =
        serde_json::to_value(TokenView::from(&issued.record)).map_err(anyhow::Error::from)?;
    answer["token"] = json!(issued.token);
    Ok((StatusCode::CREATED, Json(answer)))
}

/// Revokes a token: it stops working at once.
#[utoipa::path(delete, path = "/v1/tokens/{id}", responses((status = 204, description = "revoked"), (status = 404, description = "no active token with that id")), security(("bearer" = [])))]
pub async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Permission::UsersManage)?;
    if !state.store.revoke_token(&caller.project_id, &id).await? {
        return Err(ApiError::not_found("active token", "ningún token activo"));
    }
    audit::record(
        state.store.as_ref(),
        &caller.project_id,
        &caller.actor,
        "token.revoke",
        Some(&id),
        None,
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    pub before: Option<i64>,
    pub limit: Option<i64>,
}

/// The project's audit log, newest first; `?before=<id>` pages back.
#[utoipa::path(get, path = "/v1/audit", params(("before" = Option<i64>, Query, description = "the last id of the previous page"), ("limit" = Option<i64>, Query, description = "1–500, default 100")), responses((status = 200, description = "`{entries: [{id, at, actor, via, action, target, detail}], next}`")), security(("bearer" = [])))]
pub async fn list_audit(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Permission::SettingsView)?;
    let Query(query) = query.map_err(|_| {
        ApiError::invalid(vec![FieldError::invalid(
            "query",
            "The query parameters are `before` (a number) and `limit` (1–500).",
            "Los parámetros de consulta son `before` (un número) y `limit` (1–500).",
        )])
    })?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid(vec![FieldError::invalid(
            "limit",
            "`limit` is between 1 and 500.",
            "`limit` está entre 1 y 500.",
        )]));
    }
    let entries = state
        .store
        .list_audit(&caller.project_id, limit, query.before)
        .await?;
    let next = (entries.len() as i64 == limit)
        .then(|| entries.last().map(|e| e.id))
        .flatten();
    let entries: Vec<Value> = entries
        .iter()
        .map(|e| {
            json!({
                "id": e.id,
                "at": rfc3339(e.at),
                "actor": e.actor,
                "via": e.via,
                "action": e.action,
                "target": e.target,
                "detail": e.detail.as_deref().and_then(|d| serde_json::from_str::<Value>(d).ok()),
            })
        })
        .collect();
    Ok(Json(json!({"entries": entries, "next": next})))
}
