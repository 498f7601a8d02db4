//! Durable storage behind one trait, [`Store`].
//!
//! The backend is chosen once, from the database URL ([`open`]): `sqlite://` is the embedded
//! default. Callers only see the trait, so a PostgreSQL implementation (for several nodes) slots
//! in without changing them. The store keeps secrets exactly as it receives them — sealed by
//! [`crate::secrets::Keyring`]; it never sees a plaintext credential.

pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::domain::account::AccountSpec;
use crate::domain::permission::Role;

/// Errors a caller may branch on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was broken; carries the value that already exists (an account
    /// name within its project, a project id).
    #[error("`{0}` already exists")]
    Conflict(String),
    /// A stored row could not be read back into domain types.
    #[error("stored data is not valid: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Backend(#[from] sqlx::Error),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// The reserved project that holds the operator's system fallback account.
pub const SYSTEM_PROJECT: &str = "_system";
/// The project that exists from the first start.
pub const DEFAULT_PROJECT: &str = "default";

/// An API token as stored: its SHA-256, never the token.
#[derive(Debug, Clone)]
pub struct TokenRecord {
    pub id: String,
    pub project_id: String,
    pub name: String,
    pub role: Role,
    pub token_hash: String,
    pub created_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
}

/// The outcome of the last connection test, kept on the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastTest {
    pub at: OffsetDateTime,
    pub ok: bool,
    pub code: Option<String>,
}

/// An account as stored: validated settings plus sealed secrets.
#[derive(Debug, Clone)]
pub struct AccountRecord {
    pub id: String,
    pub project_id: String,
    pub spec: AccountSpec,
    pub password_sealed: Option<String>,
    pub imap_password_sealed: Option<String>,
    pub last_test: Option<LastTest>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// A function that opens a sealed value and seals it again (used by key rotation).
pub type Reseal<'a> = &'a (dyn Fn(&str, &str) -> anyhow::Result<String> + Send + Sync);

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Cheap round trip to the database, for `/healthz`.
    async fn health(&self) -> Result<(), StoreError>;

    async fn project_exists(&self, id: &str) -> Result<bool, StoreError>;
    async fn create_project(&self, id: &str) -> Result<(), StoreError>;
    /// Every project a person can use (the reserved system project is left out).
    async fn list_projects(&self) -> Result<Vec<String>, StoreError>;

    async fn insert_token(&self, token: &TokenRecord) -> Result<(), StoreError>;
    /// A token that is not revoked, by the SHA-256 of its text.
    async fn active_token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError>;
    async fn list_tokens(&self, project_id: &str) -> Result<Vec<TokenRecord>, StoreError>;
    /// Returns false when no active token of that project has this id.
    async fn revoke_token(&self, project_id: &str, id: &str) -> Result<bool, StoreError>;

    async fn insert_account(&self, account: &AccountRecord) -> Result<(), StoreError>;
    /// Replaces a stored account (same id and project); false when it does not exist.
    async fn update_account(&self, account: &AccountRecord) -> Result<bool, StoreError>;
    async fn get_account(
        &self,
        project_id: &str,
        id: &str,
    ) -> Result<Option<AccountRecord>, StoreError>;
    /// A project's accounts, highest priority first, then by name.
    async fn list_accounts(&self, project_id: &str) -> Result<Vec<AccountRecord>, StoreError>;
    async fn delete_account(&self, project_id: &str, id: &str) -> Result<bool, StoreError>;
    /// Keeps the outcome of the latest connection test on the account.
    async fn record_test(
        &self,
        project_id: &str,
        id: &str,
        test: &LastTest,
    ) -> Result<bool, StoreError>;

    /// Key ids of every sealed value stored, to catch a missing master key at start.
    async fn sealed_key_ids(&self) -> Result<Vec<String>, StoreError>;
    /// Opens and reseals every stored secret in one transaction: all or nothing.
    /// `reseal(aad, sealed)` returns the new sealed value. Returns how many were resealed.
    async fn reseal_all(&self, reseal: Reseal<'_>) -> Result<usize, StoreError>;
}

/// Opens the store named by `url`, creating and migrating it as needed.
pub async fn open(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::SqliteStore::open(url).await?))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        anyhow::bail!(
            "the PostgreSQL backend is not available in this version of cartero: use a sqlite:// URL (the default)"
        )
    } else {
        anyhow::bail!("database URL `{url}` must start with sqlite:// or postgres://")
    }
}

/// The associated data that binds a sealed account secret to its row and field.
pub fn account_aad(account_id: &str, field: &str) -> String {
    format!("account:{account_id}:{field}")
}
