//! People who log in to the web admin, and their sessions.
//!
//! Passwords are hashed with argon2id (PHC strings, random salt). A login that names an
//! unknown email still runs one verification, so the answer time does not tell which emails
//! exist. A session is a random 256-bit cookie value; only its SHA-256 is stored, next to the
//! CSRF token every state-changing request of that session must echo.

use std::sync::{Arc, LazyLock};

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use time::OffsetDateTime;

use crate::domain::account::EmailAddress;
use crate::domain::permission::Role;
use crate::domain::validation::FieldError;
use crate::store::{SessionRecord, Store, StoreError, UserRecord};

/// Shortest password a user may choose.
pub const MIN_PASSWORD_LEN: usize = 12;
/// How long a session lasts from login.
pub const SESSION_TTL_MS: i64 = 12 * 60 * 60 * 1000;

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("the user is not valid: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldError>),
    #[error("a user with the email `{0}` already exists")]
    EmailTaken(String),
    #[error("no such project `{0}`")]
    NoProject(String),
    #[error(transparent)]
    Store(StoreError),
    #[error("password hashing failed: {0}")]
    Hash(String),
}

impl From<StoreError> for UserError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(email) => UserError::EmailTaken(email),
            other => UserError::Store(other),
        }
    }
}

/// 24 random characters from an alphabet without look-alikes: about 138 bits.
pub fn generate_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..24)
        .map(|_| ALPHABET[(rng.next_u32() as usize) % ALPHABET.len()] as char)
        .collect()
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// An argon2id PHC string for `password`.
pub fn hash_password(password: &str) -> Result<String, UserError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| UserError::Hash(e.to_string()))
}

fn verify_password(password: &str, phc: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), phc)
        .is_ok()
}

/// A hash to verify against when the email is unknown, so both paths cost the same.
static DUMMY_HASH: LazyLock<String> =
    LazyLock::new(|| hash_password("cartero-dummy-password").unwrap_or_default());

/// Checks an email and a password typed by a person; every problem at once, es/en.
pub fn validate(email: &str, password: &str) -> Result<String, Vec<FieldError>> {
    let mut errors = Vec::new();
    let email = match EmailAddress::parse("email", email.trim()) {
        Ok(e) => Some(e.to_string().to_lowercase()),
        Err(e) => {
            errors.push(e);
            None
        }
    };
    if password.chars().count() < MIN_PASSWORD_LEN {
        errors.push(FieldError::invalid(
            "password",
            format!("The password needs at least {MIN_PASSWORD_LEN} characters."),
            format!("La contraseña necesita al menos {MIN_PASSWORD_LEN} caracteres."),
        ));
    }
    match (email, errors.is_empty()) {
        (Some(email), true) => Ok(email),
        _ => Err(errors),
    }
}

/// The one path by which users are created, listed, removed and logged in.
#[derive(Clone)]
pub struct Users {
    store: Arc<dyn Store>,
    /// Each argon2 run takes ~19 MiB and a core for a moment: a few at a time, so a flood of
    /// logins queues instead of exhausting memory.
    hashing: Arc<tokio::sync::Semaphore>,
}

/// argon2 computations allowed at once.
const HASHING_SLOTS: usize = 2;

/// A session just opened: the cookie value exists only here and in the browser.
pub struct OpenedSession {
    pub cookie_value: String,
    pub record: SessionRecord,
    pub user: UserRecord,
}

impl Users {
    pub fn new(store: Arc<dyn Store>) -> Users {
        Users {
            store,
            hashing: Arc::new(tokio::sync::Semaphore::new(HASHING_SLOTS)),
        }
    }

    /// Runs an argon2 computation on the blocking pool, at most [`HASHING_SLOTS`] at once.
    async fn hashing<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, UserError> {
        let _slot = self
            .hashing
            .acquire()
            .await
            .map_err(|e| UserError::Hash(e.to_string()))?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| UserError::Hash(e.to_string()))
    }

    pub async fn create(
        &self,
        project_id: &str,
        email: &str,
        role: Role,
        password: &str,
    ) -> Result<UserRecord, UserError> {
        let email = validate(email, password).map_err(UserError::Invalid)?;
        if !self.store.project_exists(project_id).await? {
            return Err(UserError::NoProject(project_id.to_string()));
        }
        let password = password.to_string();
        let hash = self.hashing(move || hash_password(&password)).await??;
        let user = UserRecord {
            id: uuid::Uuid::now_v7().to_string(),
            project_id: project_id.to_string(),
            email,
            role,
            password_hash: hash,
            created_at: OffsetDateTime::now_utc(),
        };
        self.store.insert_user(&user).await?;
        Ok(user)
    }

    /// Checks the email and password; on success opens a session.
    pub async fn login(
        &self,
        email: &str,
        password: &str,
        now_ms: i64,
    ) -> Result<Option<OpenedSession>, UserError> {
        let user = self
            .store
            .user_by_email(&email.trim().to_lowercase())
            .await?;
        let phc = user
            .as_ref()
            .map(|u| u.password_hash.clone())
            .unwrap_or_else(|| DUMMY_HASH.clone());
        let password = password.to_string();
        let matches = self
            .hashing(move || verify_password(&password, &phc))
            .await?;
        let Some(user) = user.filter(|_| matches) else {
            return Ok(None);
        };
        let cookie_value = random_token();
        let record = SessionRecord {
            id_hash: crate::tokens::hash(&cookie_value),
            user_id: user.id.clone(),
            csrf: random_token(),
            created_at_ms: now_ms,
            expires_at_ms: now_ms + SESSION_TTL_MS,
        };
        self.store.insert_session(&record).await?;
        Ok(Some(OpenedSession {
            cookie_value,
            record,
            user,
        }))
    }

    /// The session and user behind a cookie value, if it is current.
    pub async fn session(
        &self,
        cookie_value: &str,
        now_ms: i64,
    ) -> Result<Option<(SessionRecord, UserRecord)>, StoreError> {
        self.store
            .active_session(&crate::tokens::hash(cookie_value), now_ms)
            .await
    }

    pub async fn logout(&self, id_hash: &str, now_ms: i64) -> Result<(), StoreError> {
        self.store.delete_session(id_hash, now_ms).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_and_verify() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("correct horse batterY", &h));
        assert_ne!(h, hash_password("correct horse battery").unwrap(), "salted");
    }

    #[test]
    fn validation_reports_every_problem() {
        let errors = validate("not-an-email", "short").unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["email", "password"]);
        assert_eq!(
            validate(" Ana@Example.COM ", "twelve chars!").unwrap(),
            "ana@example.com"
        );
    }

    #[test]
    fn generated_passwords_are_long_and_different() {
        let a = generate_password();
        assert_eq!(a.len(), 24);
        assert!(validate("a@b.example", &a).is_ok());
        assert_ne!(a, generate_password());
    }
}
