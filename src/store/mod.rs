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
use crate::domain::message::{Content, MessageStatus, RecipientKind};
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
    /// An error of the embedded hot-path writer's connection (see `sqlite::hot`).
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// A write could not be committed, or the writer is gone.
    #[error("database write failed: {0}")]
    Write(String),
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

/// A person who logs in to the web admin. `password_hash` is an argon2id PHC string.
#[derive(Debug, Clone)]
pub struct UserRecord {
    pub id: String,
    pub project_id: String,
    pub email: String,
    pub role: Role,
    pub password_hash: String,
    pub created_at: OffsetDateTime,
}

/// A web session as stored: the SHA-256 of the cookie value, never the value.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub id_hash: String,
    pub user_id: String,
    /// The token every state-changing request of this session must echo.
    pub csrf: String,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
}

/// One line of the audit log.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    /// Set by the store on insert; 0 for a new entry.
    pub id: i64,
    pub at: OffsetDateTime,
    pub project_id: String,
    /// `user:<email>`, `token:<name>` or `cli`.
    pub actor: String,
    /// `ui`, `api` or `cli`.
    pub via: String,
    /// e.g. `account.update`.
    pub action: String,
    pub target: Option<String>,
    /// JSON: what changed (secrets appear as `"changed"`).
    pub detail: Option<String>,
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
    /// Throttled by the provider until this time (unix ms): routing skips the account.
    pub paused_until: Option<i64>,
    pub paused_reason: Option<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// A message to enqueue (already validated and rendered).
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: String,
    pub project_id: String,
    pub message_type: String,
    /// JSON of [`crate::domain::message::Content`].
    pub content: String,
    pub size: usize,
    pub idempotency_key: Option<String>,
    pub recipients: Vec<(String, RecipientKind)>,
    pub now_ms: i64,
    pub expires_at_ms: i64,
    /// Stored as already claimed (status `sending`) under a lease until then: the message is
    /// handed straight to this node's dispatcher once committed, without a claim.
    pub lease_until_ms: Option<i64>,
}

/// What enqueueing did with one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    /// Stored now.
    New,
    /// The idempotency key was seen before: this is the first message's id and status.
    Existing { id: String, status: MessageStatus },
}

/// One recipient as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientRow {
    pub position: i64,
    pub address: String,
    pub kind: RecipientKind,
    /// `pending`, `sent` or `failed`.
    pub status: String,
    pub reply: Option<String>,
}

/// What a claimed message sends: its content as stored (JSON), or already parsed when intake
/// handed a new message straight to delivery.
#[derive(Debug, Clone)]
pub enum ClaimedContent {
    Stored(String),
    Parsed(Content),
}

/// A message claimed for delivery (its lease is held).
#[derive(Debug, Clone)]
pub struct ClaimedMessage {
    pub id: String,
    pub project_id: String,
    pub message_type: String,
    pub content: ClaimedContent,
    pub message_id_header: Option<String>,
    pub attempt_count: i64,
    pub expires_at_ms: i64,
    pub recipients: Vec<RecipientRow>,
}

/// One delivery attempt, as kept in the message log.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub account_id: Option<String>,
    pub account_name: Option<String>,
    pub started_at: OffsetDateTime,
    pub duration_ms: i64,
    /// `sent`, `partial`, `deferred` or `failed`.
    pub outcome: String,
    pub reply: Option<String>,
    pub diagnosis_code: Option<String>,
    pub note: Option<String>,
    pub transcript: Vec<String>,
}

/// Everything one delivery round changed about a message, written in one transaction.
#[derive(Debug, Clone)]
pub struct DeliveryUpdate {
    pub message_id: String,
    pub status: MessageStatus,
    pub next_attempt_at_ms: i64,
    pub account_id: Option<String>,
    pub message_id_header: Option<String>,
    pub last_code: Option<String>,
    pub last_reply: Option<String>,
    /// (position, status, reply)
    pub recipients: Vec<(i64, String, Option<String>)>,
    pub attempts: Vec<AttemptRecord>,
    /// (kind, detail)
    pub events: Vec<(String, Option<String>)>,
    /// Successful sends to count against account limits: (account id, unix minute).
    pub sends: Vec<(String, i64)>,
}

/// A message as the log shows it.
#[derive(Debug, Clone)]
pub struct MessageRow {
    pub id: String,
    pub project_id: String,
    pub message_type: String,
    pub status: MessageStatus,
    pub idempotency_key: Option<String>,
    pub content: String,
    pub size: i64,
    pub message_id_header: Option<String>,
    pub account_id: Option<String>,
    pub attempt_count: i64,
    pub next_attempt_at_ms: i64,
    pub last_code: Option<String>,
    pub last_reply: Option<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub recipients: Vec<RecipientRow>,
}

#[derive(Debug, Clone)]
pub struct EventRow {
    pub kind: String,
    pub detail: Option<String>,
    pub at: OffsetDateTime,
}

/// Filters of the message list; `cursor` is the last id of the previous page.
#[derive(Debug, Clone, Default)]
pub struct MessageFilter {
    pub status: Option<MessageStatus>,
    pub message_type: Option<String>,
    pub to: Option<String>,
    pub since: Option<OffsetDateTime>,
    pub limit: i64,
    pub cursor: Option<String>,
}

/// What `retry` / `cancel` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusChange {
    Done,
    NotFound,
    /// The message is in a status that does not allow it.
    NotAllowed(MessageStatus),
}

/// A function that opens a sealed value and seals it again (used by key rotation).
pub type Reseal<'a> = &'a (dyn Fn(&str, &str) -> anyhow::Result<String> + Send + Sync);

/// What to do with the outcome of [`Store::enqueue`] once it is committed (or failed).
pub type OnCommit = Box<dyn FnOnce(&Result<Vec<Enqueued>, StoreError>) + Send>;

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

    /// Fails with `Conflict(email)` when the email is taken.
    async fn insert_user(&self, user: &UserRecord) -> Result<(), StoreError>;
    async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError>;
    async fn list_users(&self, project_id: &str) -> Result<Vec<UserRecord>, StoreError>;
    async fn count_users(&self) -> Result<i64, StoreError>;
    /// Removes the user and every session of theirs; false when no such user is in the project.
    async fn delete_user(&self, project_id: &str, id: &str) -> Result<bool, StoreError>;
    async fn insert_session(&self, session: &SessionRecord) -> Result<(), StoreError>;
    /// The unexpired session with this hash, and its user.
    async fn active_session(
        &self,
        id_hash: &str,
        now_ms: i64,
    ) -> Result<Option<(SessionRecord, UserRecord)>, StoreError>;
    /// Ends a session; expired sessions are swept along the way.
    async fn delete_session(&self, id_hash: &str, now_ms: i64) -> Result<(), StoreError>;

    async fn insert_audit(&self, entry: &AuditEntry) -> Result<(), StoreError>;
    /// A project's audit log, newest first; `before` is the last id of the previous page.
    async fn list_audit(
        &self,
        project_id: &str,
        limit: i64,
        before: Option<i64>,
    ) -> Result<Vec<AuditEntry>, StoreError>;

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

    /// Every account of every project (the system project included), for routing.
    async fn all_accounts(&self) -> Result<Vec<AccountRecord>, StoreError>;
    /// A number that changes whenever any account changes, from any process.
    async fn config_version(&self) -> Result<i64, StoreError>;
    async fn pause_account(&self, id: &str, until_ms: i64, reason: &str) -> Result<(), StoreError>;
    /// Successful sends of an account per unix minute, from `since_minute` on.
    async fn account_sends(
        &self,
        account_id: &str,
        since_minute: i64,
    ) -> Result<Vec<(i64, i64)>, StoreError>;

    /// Stores messages in one transaction (group commit); answers per message, in order.
    /// `on_commit` runs with the outcome as soon as it is known, on the store's side: also when
    /// the caller has stopped waiting for the answer (a client that hung up).
    async fn enqueue(
        &self,
        batch: Vec<NewMessage>,
        on_commit: Option<OnCommit>,
    ) -> Result<Vec<Enqueued>, StoreError>;
    /// Claims up to `limit` due messages under a lease until `now_ms + lease_ms`.
    async fn claim_due(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<ClaimedMessage>, StoreError>;
    /// Returns every claimed message to the queue (at start: a previous run died holding them).
    async fn release_leases(&self) -> Result<u64, StoreError>;
    /// Returns to the queue the messages whose lease ended before `now_ms` (a claim whose
    /// delivery never reported back): the dispatcher sweeps for them now and then.
    async fn requeue_expired_leases(&self, now_ms: i64) -> Result<u64, StoreError>;
    /// Writes delivery outcomes in one transaction.
    async fn record_deliveries(&self, updates: Arc<[DeliveryUpdate]>) -> Result<(), StoreError>;
    /// The earliest next attempt among queued or deferred messages.
    async fn next_due(&self) -> Result<Option<i64>, StoreError>;
    async fn get_message(
        &self,
        project_id: &str,
        id: &str,
    ) -> Result<Option<MessageRow>, StoreError>;
    async fn message_attempts(&self, id: &str) -> Result<Vec<AttemptRecord>, StoreError>;
    async fn message_events(&self, id: &str) -> Result<Vec<EventRow>, StoreError>;
    async fn list_messages(
        &self,
        project_id: &str,
        filter: &MessageFilter,
    ) -> Result<Vec<MessageRow>, StoreError>;
    /// Failed, partial or deferred → queued now (pending recipients only, failed ones reset).
    async fn retry_message(
        &self,
        project_id: &str,
        id: &str,
        now_ms: i64,
        expires_at_ms: i64,
    ) -> Result<StatusChange, StoreError>;
    /// Queued or deferred → cancelled.
    async fn cancel_message(&self, project_id: &str, id: &str) -> Result<StatusChange, StoreError>;
    /// Messages per status, for metrics.
    async fn count_by_status(&self) -> Result<Vec<(String, i64)>, StoreError>;

    async fn get_template(
        &self,
        project_id: &str,
        name: &str,
    ) -> Result<Option<String>, StoreError>;
    async fn put_template(
        &self,
        project_id: &str,
        name: &str,
        body: &str,
    ) -> Result<(), StoreError>;
    async fn delete_template(&self, project_id: &str, name: &str) -> Result<bool, StoreError>;
    async fn list_templates(&self, project_id: &str) -> Result<Vec<String>, StoreError>;

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
