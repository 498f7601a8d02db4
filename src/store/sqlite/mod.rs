//! The embedded default store: one SQLite file in the data directory.
//!
//! WAL journal with `synchronous=FULL`: a write that returned is on disk, and readers never
//! wait for the writer. Migrations live in `migrations/sqlite/`.
//!
//! Two writers share the file: [`hot::HotWriter`], a thread of its own that group-commits the
//! delivery path (submissions, claims, outcomes), and one sqlx connection for everything else
//! (accounts, tokens, users, templates…), whose transactions start with `BEGIN IMMEDIATE` so
//! that they wait for the write lock up front instead of failing half-way.

mod hot;
mod inline;
mod token_cache;
#[allow(unsafe_code)] // the one exception: an FFI shim over SQLite's VFS (see its module)
mod wal_vfs;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{ConnectOptions, Row, Sqlite, Transaction};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{
    AccountRecord, AttemptRecord, AuditEntry, ClaimedMessage, DeliveryUpdate, Enqueued, EventRow,
    LastTest, MessageFilter, MessageRow, NewMessage, OnCommit, RecipientRow, Reseal,
    SYSTEM_PROJECT, SessionRecord, StatusChange, Store, StoreError, TokenRecord, UserRecord,
    account_aad,
};
use crate::domain::account::{AccountInput, ImapInput, LimitsInput};
use crate::domain::message::{MessageStatus, RecipientKind};
use crate::domain::permission::Role;

pub struct SqliteStore {
    /// Reads: several connections (WAL readers never wait for the writer).
    pool: SqlitePool,
    /// Configuration writes: one connection, so they queue in order instead of colliding on
    /// SQLite's write lock among themselves.
    writer: SqlitePool,
    /// The delivery path's writes: submissions, claims and outcomes, group-committed.
    hot: hot::HotWriter,
    /// Token lookups and the accounts' version, read on the calling thread.
    inline: inline::InlineReader,
    /// Valid tokens already looked up, until a revocation (in any process) says otherwise.
    tokens: token_cache::TokenCache,
}

impl SqliteStore {
    /// Messages being sent go back to the queue: all of them, or those whose lease ran out
    /// before `expired_before`.
    async fn requeue_leased(&self, expired_before: Option<i64>) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE messages SET status = 'queued', lease_until = NULL \
             WHERE status = 'sending' AND (?1 IS NULL OR lease_until < ?1)",
        )
        .bind(expired_before)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected())
    }

    pub async fn open(url: &str) -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            // Writers never checkpoint (it would stall the commit that crosses the threshold);
            // the checkpointer thread does, see `hot::checkpoint_in_background`.
            .pragma("wal_autocheckpoint", "0");
        if let Some(dir) = options.get_filename().parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Backend(sqlx::Error::Configuration(
                    format!("creating {}: {e}", dir.display()).into(),
                ))
            })?;
        }
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        // On their own connection, without sqlx's slow-statement warning: a step that rewrites
        // a table takes seconds on a large database, and the warning would print its whole SQL.
        // One line says how long the upgrade took instead.
        let started = std::time::Instant::now();
        let migrator = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone().disable_statement_logging())
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&migrator).await?;
        migrator.close().await;
        let took = started.elapsed();
        if took > Duration::from_secs(1) {
            tracing::info!(elapsed_ms = took.as_millis() as u64, "database upgraded");
        }
        let hot = hot::HotWriter::open(options.get_filename())?;
        let inline = inline::InlineReader::open(options.get_filename())?;
        let tokens = token_cache::TokenCache::open(options.get_filename());
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        Ok(SqliteStore {
            pool,
            writer,
            hot,
            inline,
            tokens,
        })
    }
}

fn ts(t: OffsetDateTime) -> String {
    t.format(&Rfc3339)
        .expect("RFC 3339 formatting of a valid time")
}

fn parse_ts(s: &str) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::parse(s, &Rfc3339).map_err(|e| StoreError::Corrupt(format!("time `{s}`: {e}")))
}

fn parse_opt_ts(s: Option<String>) -> Result<Option<OffsetDateTime>, StoreError> {
    s.as_deref().map(parse_ts).transpose()
}

/// An `api_tokens` row as text, whichever driver read it (sqlx here, rusqlite in `inline`).
struct TokenColumns {
    id: String,
    project_id: String,
    name: String,
    role: String,
    token_hash: String,
    created_at: String,
    revoked_at: Option<String>,
}

impl TokenColumns {
    fn into_record(self) -> Result<TokenRecord, StoreError> {
        Ok(TokenRecord {
            id: self.id,
            project_id: self.project_id,
            name: self.name,
            role: self.role.parse::<Role>().map_err(StoreError::Corrupt)?,
            token_hash: self.token_hash,
            created_at: parse_ts(&self.created_at)?,
            revoked_at: parse_opt_ts(self.revoked_at)?,
        })
    }
}

fn token_from_row(row: &SqliteRow) -> Result<TokenRecord, StoreError> {
    TokenColumns {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        name: row.try_get("name")?,
        role: row.try_get("role")?,
        token_hash: row.try_get("token_hash")?,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
    }
    .into_record()
}

fn user_from_row(row: &SqliteRow) -> Result<UserRecord, StoreError> {
    let role: String = row.try_get("role")?;
    Ok(UserRecord {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        email: row.try_get("email")?,
        role: role.parse::<Role>().map_err(StoreError::Corrupt)?,
        password_hash: row.try_get("password_hash")?,
        created_at: parse_ts(&row.try_get::<String, _>("created_at")?)?,
    })
}

fn audit_from_row(row: &SqliteRow) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry {
        id: row.try_get("id")?,
        at: parse_ts(&row.try_get::<String, _>("at")?)?,
        project_id: row.try_get("project_id")?,
        actor: row.try_get("actor")?,
        via: row.try_get("via")?,
        action: row.try_get("action")?,
        target: row.try_get("target")?,
        detail: row.try_get("detail")?,
    })
}

fn account_from_row(row: &SqliteRow) -> Result<AccountRecord, StoreError> {
    let id: String = row.try_get("id")?;
    let password_sealed: Option<String> = row.try_get("password_enc")?;
    let imap_host: Option<String> = row.try_get("imap_host")?;
    let limit = |col: &str| -> Result<Option<Option<i64>>, StoreError> {
        Ok(Some(row.try_get::<Option<i64>, _>(col)?))
    };
    // Stored rows were validated on the way in; reading them back goes through the same
    // door so a row edited by hand cannot smuggle an invalid value into the domain.
    let input = AccountInput {
        preset: None,
        name: Some(row.try_get("name")?),
        account_type: Some(row.try_get("account_type")?),
        priority: Some(row.try_get("priority")?),
        enabled: Some(row.try_get("enabled")?),
        host: Some(row.try_get("host")?),
        port: Some(row.try_get("port")?),
        security: Some(row.try_get("security")?),
        auth: Some(row.try_get("auth")?),
        username: Some(row.try_get("username")?),
        password: None,
        from_email: Some(row.try_get("from_email")?),
        from_name: Some(row.try_get("from_name")?),
        reply_to: Some(row.try_get("reply_to")?),
        microsoft365: Some(row.try_get("microsoft365")?),
        tls_verify: Some(row.try_get("tls_verify")?),
        tls_fingerprint: Some(row.try_get("tls_fingerprint")?),
        limits: Some(LimitsInput {
            per_minute: limit("limit_per_minute")?,
            per_hour: limit("limit_per_hour")?,
            per_day: limit("limit_per_day")?,
        }),
        imap: Some(match imap_host {
            None => None,
            Some(host) => Some(ImapInput {
                host: Some(host),
                port: row.try_get("imap_port")?,
                security: row.try_get("imap_security")?,
                username: Some(row.try_get("imap_username")?),
                password: None,
                folder: row.try_get("imap_folder")?,
            }),
        }),
    };
    let (spec, _) = input.parse(password_sealed.is_some()).map_err(|errors| {
        StoreError::Corrupt(format!(
            "account {id}: {}",
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        ))
    })?;
    let last_test = match row.try_get::<Option<String>, _>("last_test_at")? {
        None => None,
        Some(at) => Some(LastTest {
            at: parse_ts(&at)?,
            ok: row
                .try_get::<Option<bool>, _>("last_test_ok")?
                .unwrap_or(false),
            code: row.try_get("last_test_code")?,
        }),
    };
    Ok(AccountRecord {
        id,
        project_id: row.try_get("project_id")?,
        spec,
        password_sealed,
        imap_password_sealed: row.try_get("imap_password_enc")?,
        last_test,
        paused_until: row.try_get("paused_until")?,
        paused_reason: row.try_get("paused_reason")?,
        created_at: parse_ts(&row.try_get::<String, _>("created_at")?)?,
        updated_at: parse_ts(&row.try_get::<String, _>("updated_at")?)?,
    })
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

const ACCOUNT_COLUMNS: &str = "project_id, name, account_type, priority, enabled, host, port, \
    security, auth, username, password_enc, from_email, from_name, reply_to, microsoft365, \
    tls_verify, limit_per_minute, limit_per_hour, limit_per_day, imap_host, imap_port, \
    imap_security, imap_username, imap_password_enc, imap_folder, last_test_at, last_test_ok, \
    last_test_code, created_at, updated_at, tls_fingerprint, id";

/// Binds an account's columns in the order of [`ACCOUNT_COLUMNS`].
fn bind_account<'q>(
    query: sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments>,
    a: &'q AccountRecord,
) -> sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments> {
    let s = &a.spec;
    let imap = s.imap.as_ref();
    query
        .bind(&a.project_id)
        .bind(&s.name)
        .bind(s.account_type.as_str())
        .bind(s.priority)
        .bind(s.enabled)
        .bind(s.host.as_str())
        .bind(i64::from(s.port.get()))
        .bind(s.security.as_str())
        .bind(s.auth.as_str())
        .bind(s.username.as_deref())
        .bind(a.password_sealed.as_deref())
        .bind(s.from_email.as_str())
        .bind(s.from_name.as_deref())
        .bind(s.reply_to.as_ref().map(|r| r.as_str()))
        .bind(s.microsoft365)
        .bind(s.tls_verify)
        .bind(s.limits.per_minute.map(i64::from))
        .bind(s.limits.per_hour.map(i64::from))
        .bind(s.limits.per_day.map(i64::from))
        .bind(imap.map(|i| i.host.as_str()))
        .bind(imap.map(|i| i64::from(i.port.get())))
        .bind(imap.map(|i| i.security.as_str()))
        .bind(imap.and_then(|i| i.username.as_deref()))
        .bind(a.imap_password_sealed.as_deref())
        .bind(imap.map(|i| i.folder.as_str()))
        .bind(a.last_test.as_ref().map(|t| ts(t.at)))
        .bind(a.last_test.as_ref().map(|t| t.ok))
        .bind(a.last_test.as_ref().and_then(|t| t.code.as_deref()))
        .bind(ts(a.created_at))
        .bind(ts(a.updated_at))
        .bind(s.tls_fingerprint.as_deref())
        .bind(&a.id)
}

#[async_trait]
impl Store for SqliteStore {
    async fn health(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn project_exists(&self, id: &str) -> Result<bool, StoreError> {
        Ok(sqlx::query("SELECT 1 FROM projects WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .is_some())
    }

    async fn create_project(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO projects (id, created_at) VALUES (?, ?)")
            .bind(id)
            .bind(ts(OffsetDateTime::now_utc()))
            .execute(&self.writer)
            .await
            .map_err(|e| name_conflict(e, id))?;
        Ok(())
    }

    async fn list_projects(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT id FROM projects WHERE id <> ? ORDER BY id")
            .bind(SYSTEM_PROJECT)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| r.try_get("id").map_err(Into::into))
            .collect()
    }

    async fn insert_user(&self, u: &UserRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO users (id, project_id, email, role, password_hash, created_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&u.id)
        .bind(&u.project_id)
        .bind(&u.email)
        .bind(u.role.as_str())
        .bind(&u.password_hash)
        .bind(ts(u.created_at))
        .execute(&self.writer)
        .await
        .map_err(|e| name_conflict(e, &u.email))?;
        Ok(())
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError> {
        sqlx::query("SELECT * FROM users WHERE email = ?")
            .bind(email)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(user_from_row)
            .transpose()
    }

    async fn list_users(&self, project_id: &str) -> Result<Vec<UserRecord>, StoreError> {
        sqlx::query("SELECT * FROM users WHERE project_id = ? ORDER BY email")
            .bind(project_id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(user_from_row)
            .collect()
    }

    async fn count_users(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn delete_user(&self, project_id: &str, id: &str) -> Result<bool, StoreError> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query(
            "DELETE FROM sessions WHERE user_id IN \
             (SELECT id FROM users WHERE project_id = ? AND id = ?)",
        )
        .bind(project_id)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let done = sqlx::query("DELETE FROM users WHERE project_id = ? AND id = ?")
            .bind(project_id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn insert_session(&self, s: &SessionRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sessions (id_hash, user_id, csrf, created_at_ms, expires_at_ms) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&s.id_hash)
        .bind(&s.user_id)
        .bind(&s.csrf)
        .bind(s.created_at_ms)
        .bind(s.expires_at_ms)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn active_session(
        &self,
        id_hash: &str,
        now_ms: i64,
    ) -> Result<Option<(SessionRecord, UserRecord)>, StoreError> {
        let Some(row) = sqlx::query(
            "SELECT s.id_hash, s.user_id, s.csrf, s.created_at_ms, s.expires_at_ms, u.* \
             FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.id_hash = ? AND s.expires_at_ms > ?",
        )
        .bind(id_hash)
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let session = SessionRecord {
            id_hash: row.try_get("id_hash")?,
            user_id: row.try_get("user_id")?,
            csrf: row.try_get("csrf")?,
            created_at_ms: row.try_get("created_at_ms")?,
            expires_at_ms: row.try_get("expires_at_ms")?,
        };
        Ok(Some((session, user_from_row(&row)?)))
    }

    async fn delete_session(&self, id_hash: &str, now_ms: i64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sessions WHERE id_hash = ? OR expires_at_ms <= ?")
            .bind(id_hash)
            .bind(now_ms)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn insert_audit(&self, e: &AuditEntry) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_log (at, project_id, actor, via, action, target, detail) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(ts(e.at))
        .bind(&e.project_id)
        .bind(&e.actor)
        .bind(&e.via)
        .bind(&e.action)
        .bind(&e.target)
        .bind(&e.detail)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn list_audit(
        &self,
        project_id: &str,
        limit: i64,
        before: Option<i64>,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        sqlx::query(
            "SELECT * FROM audit_log WHERE project_id = ? AND id < ? ORDER BY id DESC LIMIT ?",
        )
        .bind(project_id)
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(audit_from_row)
        .collect()
    }

    async fn insert_token(&self, t: &TokenRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO api_tokens (id, project_id, name, role, token_hash, created_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&t.id)
        .bind(&t.project_id)
        .bind(&t.name)
        .bind(t.role.as_str())
        .bind(&t.token_hash)
        .bind(ts(t.created_at))
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn active_token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.tokens
            .get(hash, || self.inline.active_token_by_hash(hash))
    }

    async fn list_tokens(&self, project_id: &str) -> Result<Vec<TokenRecord>, StoreError> {
        sqlx::query("SELECT * FROM api_tokens WHERE project_id = ? ORDER BY created_at, id")
            .bind(project_id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(token_from_row)
            .collect()
    }

    async fn revoke_token(&self, project_id: &str, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at = ? \
             WHERE project_id = ? AND id = ? AND revoked_at IS NULL",
        )
        .bind(ts(OffsetDateTime::now_utc()))
        .bind(project_id)
        .bind(id)
        .execute(&self.writer)
        .await?;
        let revoked = done.rows_affected() == 1;
        // Committed: now every process forgets the tokens it remembered (see `token_cache`).
        // When nothing was revoked (an unknown id, or one revoked before) nothing changed.
        if revoked {
            self.tokens.revoked().map_err(|e| {
                StoreError::Write(format!(
                    "the token is revoked in the database, but a running `cartero serve` may \
                     still accept it until restarted: the revocation stamp could not be written \
                     ({e})"
                ))
            })?;
        }
        Ok(revoked)
    }

    async fn insert_account(&self, account: &AccountRecord) -> Result<(), StoreError> {
        let sql: &'static str = insert_account_sql();
        bind_account(sqlx::query(sql), account)
            .execute(&self.writer)
            .await
            .map_err(|e| name_conflict(e, &account.spec.name))?;
        Ok(())
    }

    async fn update_account(&self, account: &AccountRecord) -> Result<bool, StoreError> {
        let sql: &'static str = update_account_sql();
        let done = bind_account(sqlx::query(sql), account)
            .execute(&self.writer)
            .await
            .map_err(|e| name_conflict(e, &account.spec.name))?;
        Ok(done.rows_affected() == 1)
    }

    async fn get_account(
        &self,
        project_id: &str,
        id: &str,
    ) -> Result<Option<AccountRecord>, StoreError> {
        sqlx::query("SELECT * FROM accounts WHERE project_id = ? AND id = ?")
            .bind(project_id)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(account_from_row)
            .transpose()
    }

    async fn list_accounts(&self, project_id: &str) -> Result<Vec<AccountRecord>, StoreError> {
        sqlx::query("SELECT * FROM accounts WHERE project_id = ? ORDER BY priority DESC, name, id")
            .bind(project_id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(account_from_row)
            .collect()
    }

    async fn delete_account(&self, project_id: &str, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM accounts WHERE project_id = ? AND id = ?")
            .bind(project_id)
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn record_test(
        &self,
        project_id: &str,
        id: &str,
        test: &LastTest,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE accounts SET last_test_at = ?, last_test_ok = ?, last_test_code = ? \
             WHERE project_id = ? AND id = ?",
        )
        .bind(ts(test.at))
        .bind(test.ok)
        .bind(test.code.as_deref())
        .bind(project_id)
        .bind(id)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn all_accounts(&self) -> Result<Vec<AccountRecord>, StoreError> {
        sqlx::query("SELECT * FROM accounts ORDER BY project_id, priority DESC, name, id")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(account_from_row)
            .collect()
    }

    async fn config_version(&self) -> Result<i64, StoreError> {
        self.inline.config_version()
    }

    async fn pause_account(&self, id: &str, until_ms: i64, reason: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE accounts SET paused_until = ?, paused_reason = ? WHERE id = ?")
            .bind(until_ms)
            .bind(reason)
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn account_sends(
        &self,
        account_id: &str,
        since_minute: i64,
    ) -> Result<Vec<(i64, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT minute, count FROM account_sends WHERE account_id = ? AND minute >= ?",
        )
        .bind(account_id)
        .bind(since_minute)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("minute")?, r.try_get("count")?)))
            .collect()
    }

    async fn enqueue(
        &self,
        batch: Vec<NewMessage>,
        on_commit: Option<OnCommit>,
    ) -> Result<Vec<Enqueued>, StoreError> {
        self.hot.enqueue(batch, on_commit).await
    }

    async fn claim_due(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<ClaimedMessage>, StoreError> {
        self.hot.claim(now_ms, now_ms + lease_ms, limit).await
    }

    async fn release_leases(&self) -> Result<u64, StoreError> {
        self.requeue_leased(None).await
    }

    async fn requeue_expired_leases(&self, now_ms: i64) -> Result<u64, StoreError> {
        self.requeue_leased(Some(now_ms)).await
    }

    async fn record_deliveries(&self, updates: Arc<[DeliveryUpdate]>) -> Result<(), StoreError> {
        self.hot.record(updates).await
    }

    async fn next_due(&self) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query(
            "SELECT MIN(next_attempt_at) AS m FROM messages WHERE status IN ('queued', 'deferred')",
        )
        .fetch_one(&self.pool)
        .await?
        .try_get("m")?)
    }

    async fn get_message(
        &self,
        project_id: &str,
        id: &str,
    ) -> Result<Option<MessageRow>, StoreError> {
        sqlx::query(concat!(
            "SELECT messages.*, b.content, ",
            recipients_of_messages!(),
            " AS recipients FROM messages JOIN message_bodies b ON b.id = messages.body_id \
             WHERE messages.project_id = ? AND messages.id = ?"
        ))
        .bind(project_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(message_from_row)
        .transpose()
    }

    async fn message_attempts(&self, id: &str) -> Result<Vec<AttemptRecord>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT a.* FROM messages m JOIN attempts a ON ",
            rows_of_number!("a.id", "m.body_id"),
            " WHERE m.id = ? ORDER BY a.id"
        ))
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let transcript: String = r.try_get("transcript")?;
                Ok(AttemptRecord {
                    account_id: r.try_get("account_id")?,
                    account_name: r.try_get("account_name")?,
                    started_at: parse_ts(&r.try_get::<String, _>("started_at")?)?,
                    duration_ms: r.try_get("duration_ms")?,
                    outcome: r.try_get("outcome")?,
                    reply: r.try_get("reply")?,
                    diagnosis_code: r.try_get("diagnosis_code")?,
                    note: r.try_get("note")?,
                    transcript: serde_json::from_str(&transcript).unwrap_or_default(),
                })
            })
            .collect()
    }

    async fn message_events(&self, id: &str) -> Result<Vec<EventRow>, StoreError> {
        // The first event, `queued`, is the message's creation (not stored as a row).
        let rows = sqlx::query(concat!(
            "SELECT 'queued' AS kind, NULL AS detail, created_at AS at, 0 AS seq ",
            "FROM messages WHERE id = ?1 ",
            "UNION ALL SELECT e.kind, e.detail, e.at, e.id & 1048575 AS seq ",
            "FROM messages m JOIN events e ON ",
            rows_of_number!("e.id", "m.body_id"),
            " WHERE m.id = ?1 ORDER BY seq"
        ))
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(EventRow {
                    kind: r.try_get("kind")?,
                    detail: r.try_get("detail")?,
                    at: parse_ts(&r.try_get::<String, _>("at")?)?,
                })
            })
            .collect()
    }

    async fn list_messages(
        &self,
        project_id: &str,
        f: &MessageFilter,
    ) -> Result<Vec<MessageRow>, StoreError> {
        sqlx::query(concat!(
            "SELECT messages.*, b.content, ",
            recipients_of_messages!(),
            " AS recipients FROM messages JOIN message_bodies b ON b.id = messages.body_id \
             WHERE messages.project_id = ?1 \
             AND (?2 IS NULL OR messages.status = ?2) \
             AND (?3 IS NULL OR messages.message_type = ?3) \
             AND (?4 IS NULL OR messages.created_at >= ?4) \
             AND (?5 IS NULL OR messages.id < ?5) \
             AND (?6 IS NULL OR messages.id IN (SELECT message_id FROM message_recipients \
                                                WHERE address = ?6)) \
             ORDER BY messages.id DESC LIMIT ?7"
        ))
        .bind(project_id)
        .bind(f.status.map(|s| s.as_str()))
        .bind(f.message_type.as_deref())
        .bind(f.since.map(ts))
        .bind(f.cursor.as_deref())
        .bind(f.to.as_deref())
        .bind(f.limit)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(message_from_row)
        .collect()
    }

    async fn retry_message(
        &self,
        project_id: &str,
        id: &str,
        now_ms: i64,
        expires_at_ms: i64,
    ) -> Result<StatusChange, StoreError> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let Some(status) = status_in(&mut tx, project_id, id).await? else {
            return Ok(StatusChange::NotFound);
        };
        if !matches!(
            status,
            MessageStatus::Failed | MessageStatus::Partial | MessageStatus::Deferred
        ) {
            return Ok(StatusChange::NotAllowed(status));
        }
        sqlx::query(
            "UPDATE messages SET status = 'queued', next_attempt_at = ?, expires_at = MAX(expires_at, ?), \
             updated_at = ? WHERE id = ?",
        )
        .bind(now_ms)
        .bind(expires_at_ms)
        .bind(ts(OffsetDateTime::now_utc()))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE message_recipients SET status = 'pending' WHERE message_id = ? AND status = 'failed'")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        add_event(&mut tx, id, "retried").await?;
        tx.commit().await?;
        Ok(StatusChange::Done)
    }

    async fn cancel_message(&self, project_id: &str, id: &str) -> Result<StatusChange, StoreError> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let Some(status) = status_in(&mut tx, project_id, id).await? else {
            return Ok(StatusChange::NotFound);
        };
        if !matches!(status, MessageStatus::Queued | MessageStatus::Deferred) {
            return Ok(StatusChange::NotAllowed(status));
        }
        sqlx::query("UPDATE messages SET status = 'cancelled', updated_at = ? WHERE id = ?")
            .bind(ts(OffsetDateTime::now_utc()))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        add_event(&mut tx, id, "cancelled").await?;
        tx.commit().await?;
        Ok(StatusChange::Done)
    }

    async fn count_by_status(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM messages GROUP BY status")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("status")?, r.try_get("n")?)))
            .collect()
    }

    async fn get_template(
        &self,
        project_id: &str,
        name: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query("SELECT body FROM templates WHERE project_id = ? AND name = ?")
                .bind(project_id)
                .bind(name)
                .fetch_optional(&self.pool)
                .await?
                .map(|r| r.try_get("body"))
                .transpose()?,
        )
    }

    async fn put_template(
        &self,
        project_id: &str,
        name: &str,
        body: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO templates (project_id, name, body, updated_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (project_id, name) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
        )
        .bind(project_id)
        .bind(name)
        .bind(body)
        .bind(ts(OffsetDateTime::now_utc()))
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn delete_template(&self, project_id: &str, name: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM templates WHERE project_id = ? AND name = ?")
            .bind(project_id)
            .bind(name)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn list_templates(&self, project_id: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT name FROM templates WHERE project_id = ? ORDER BY name")
            .bind(project_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| r.try_get("name").map_err(Into::into))
            .collect()
    }

    async fn sealed_key_ids(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT password_enc AS v FROM accounts WHERE password_enc IS NOT NULL \
             UNION SELECT imap_password_enc FROM accounts WHERE imap_password_enc IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut ids: Vec<String> = rows
            .iter()
            .filter_map(|r| r.try_get::<String, _>("v").ok())
            .filter_map(|v| crate::secrets::Keyring::key_id_of(&v).map(str::to_string))
            .collect();
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    async fn reseal_all(&self, reseal: Reseal<'_>) -> Result<usize, StoreError> {
        let mut tx: Transaction<'_, Sqlite> = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let rows = sqlx::query("SELECT id, password_enc, imap_password_enc FROM accounts")
            .fetch_all(&mut *tx)
            .await?;
        let mut count = 0;
        for row in rows {
            let id: String = row.try_get("id")?;
            let mut sealed: [Option<String>; 2] = [
                row.try_get("password_enc")?,
                row.try_get("imap_password_enc")?,
            ];
            for (value, field) in sealed.iter_mut().zip(["password", "imap_password"]) {
                if let Some(old) = value.take() {
                    let new = reseal(&account_aad(&id, field), &old)
                        .map_err(|e| StoreError::Corrupt(format!("account {id} {field}: {e:#}")))?;
                    *value = Some(new);
                    count += 1;
                }
            }
            sqlx::query("UPDATE accounts SET password_enc = ?, imap_password_enc = ? WHERE id = ?")
                .bind(sealed[0].as_deref())
                .bind(sealed[1].as_deref())
                .bind(&id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(count)
    }
}

/// A message's status, read inside the transaction that will change it.
async fn status_in(
    tx: &mut Transaction<'_, Sqlite>,
    project_id: &str,
    id: &str,
) -> Result<Option<MessageStatus>, StoreError> {
    let Some(row) = sqlx::query("SELECT status FROM messages WHERE project_id = ? AND id = ?")
        .bind(project_id)
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
    else {
        return Ok(None);
    };
    let status: String = row.try_get("status")?;
    MessageStatus::parse(&status)
        .map(Some)
        .ok_or_else(|| StoreError::Corrupt(format!("status {status}")))
}

async fn add_event(
    tx: &mut Transaction<'_, Sqlite>,
    id: &str,
    kind: &str,
) -> Result<(), StoreError> {
    // Callers read the message's status in this transaction first: it exists.
    let number: Option<i64> = sqlx::query_scalar(NUMBER_OF_MESSAGE)
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .flatten();
    let number =
        number.ok_or_else(|| StoreError::Corrupt(format!("message {id} has no number")))?;
    sqlx::query(insert_next_row!("events", "?1", "kind, at", "?2, ?3"))
        .bind(number)
        .bind(kind)
        .bind(ts(OffsetDateTime::now_utc()))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// A message's recipients as one JSON value `[{"p", "a", "k", "s", "r"}]` in position order, for
/// a query over `messages`: every read of messages brings its recipients in the same statement.
macro_rules! recipients_of_messages {
    () => {
        "(SELECT json_group_array(json_object('p', position, 'a', address, 'k', kind, \
                                              's', status, 'r', reply)) \
          FROM (SELECT position, address, kind, status, reply FROM message_recipients r \
                WHERE r.message_id = messages.id ORDER BY position))"
    };
}
use recipients_of_messages;

/// A message's number (`messages.body_id`) by its id `?1`: what keys its rows in `attempts`
/// and `events`.
const NUMBER_OF_MESSAGE: &str = "SELECT body_id FROM messages WHERE id = ?1";

/// The key of a message's next row in `attempts` or `events`, which are keyed by the message's
/// number and the row's place among its rows (`number << 20 | seq`, `seq` from 1): one step
/// down the table's B-tree to the message's last row. `$number` is the SQL of the number.
/// A message holding all its 1,048,575 rows gets its last row's key again.
macro_rules! next_row_id {
    ($table:literal, $number:literal) => {
        concat!(
            "(SELECT COALESCE(MAX(id), ",
            $number,
            " << 20) + 1 FROM ",
            $table,
            " WHERE id BETWEEN ",
            $number,
            " << 20 AND (",
            $number,
            " << 20) + 1048574)"
        )
    };
}
use next_row_id;

/// `INSERT INTO $table ($columns) VALUES ($values)` as the message's next row (see
/// [`next_row_id`]; `id` comes first). A message that holds all the rows it can takes no
/// more: `OR IGNORE` skips the row whose key is taken. The number must not be NULL (a NULL
/// key would be given the table's next rowid), nor any NOT NULL value (the row would be
/// skipped): callers bind them from values that have them.
macro_rules! insert_next_row {
    ($table:literal, $number:literal, $columns:literal, $values:literal) => {
        concat!(
            "INSERT OR IGNORE INTO ",
            $table,
            " (id, ",
            $columns,
            ") VALUES (",
            $crate::store::sqlite::next_row_id!($table, $number),
            ", ",
            $values,
            ")"
        )
    };
}
use insert_next_row;

/// The rows of message number `$number` in `attempts` or `events`: the SQL of a condition on
/// their key `$id`.
macro_rules! rows_of_number {
    ($id:literal, $number:literal) => {
        concat!(
            $id,
            " BETWEEN (",
            $number,
            " << 20) + 1 AND (",
            $number,
            " << 20) + 1048575"
        )
    };
}
use rows_of_number;

/// Recipients as [`recipients_of_messages`] returns them.
fn recipients_from_json(text: &str) -> Result<Vec<RecipientRow>, StoreError> {
    #[derive(serde::Deserialize)]
    struct Row {
        p: i64,
        a: String,
        k: String,
        s: String,
        r: Option<String>,
    }
    let rows: Vec<Row> = serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("claimed recipients: {e}")))?;
    rows.into_iter()
        .map(|r| {
            Ok(RecipientRow {
                position: r.p,
                address: r.a,
                kind: RecipientKind::parse(&r.k)
                    .ok_or_else(|| StoreError::Corrupt(format!("recipient kind {}", r.k)))?,
                status: r.s,
                reply: r.r,
            })
        })
        .collect()
}

fn message_from_row(row: &SqliteRow) -> Result<MessageRow, StoreError> {
    let status: String = row.try_get("status")?;
    Ok(MessageRow {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        message_type: row.try_get("message_type")?,
        status: MessageStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("status {status}")))?,
        idempotency_key: row.try_get("idempotency_key")?,
        content: row.try_get("content")?,
        size: row.try_get("size_bytes")?,
        message_id_header: row.try_get("message_id_header")?,
        account_id: row.try_get("account_id")?,
        attempt_count: row.try_get("attempt_count")?,
        next_attempt_at_ms: row.try_get("next_attempt_at")?,
        last_code: row.try_get("last_code")?,
        last_reply: row.try_get("last_reply")?,
        created_at: parse_ts(&row.try_get::<String, _>("created_at")?)?,
        updated_at: parse_ts(&row.try_get::<String, _>("updated_at")?)?,
        recipients: recipients_from_json(&row.try_get::<String, _>("recipients")?)?,
    })
}

fn name_conflict(e: sqlx::Error, name: &str) -> StoreError {
    if is_unique_violation(&e) {
        StoreError::Conflict(name.to_string())
    } else {
        e.into()
    }
}

fn insert_account_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        let n = ACCOUNT_COLUMNS.split(',').count();
        format!(
            "INSERT INTO accounts ({ACCOUNT_COLUMNS}) VALUES ({})",
            vec!["?"; n].join(", ")
        )
    })
}

fn update_account_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        let sets: Vec<String> = ACCOUNT_COLUMNS
            .split(',')
            .map(str::trim)
            .filter(|c| *c != "id")
            .map(|c| format!("{c} = ?"))
            .collect();
        // `id` is bound last, for the WHERE clause.
        format!("UPDATE accounts SET {} WHERE id = ?", sets.join(", "))
    })
}

#[cfg(test)]
mod migration_tests {
    //! The migrations as SQL, run with rusqlite on a database that already holds messages.

    use rusqlite::Connection;

    const REBUILD: &str = "20261201000002_fewer_btrees.sql";

    const BY_MESSAGE: &str = "20261201000004_attempts_events_by_message.sql";

    const BODIES: &str = "20261201000005_bodies_by_number.sql";

    const BY_NUMBER: &str = "20261201000006_attempts_events_by_number.sql";

    /// A project and two messages (one sent, one queued), in the columns every schema since
    /// the first has.
    const TWO_MESSAGES: &str = "INSERT INTO projects (id, created_at) VALUES ('p', 't');
        INSERT INTO messages (id, project_id, message_type, status, size_bytes,
            next_attempt_at, expires_at, created_at, updated_at)
        VALUES ('m1', 'p', 'system', 'sent', 10, 1, 2, 't', 't'),
               ('m2', 'p', 'system', 'queued', 20, 1, 2, 't', 't');";

    /// The migration files in order; those before `name` and `name` itself.
    fn migrations_up_to(name: &str) -> (Vec<String>, String) {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite");
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        let at = names.iter().position(|n| n == name).expect("the migration");
        let read = |n: &String| std::fs::read_to_string(format!("{dir}/{n}")).unwrap();
        (names[..at].iter().map(read).collect(), read(&names[at]))
    }

    /// A database at the schema just before migration `name`, and that migration's SQL.
    fn database_before(name: &str) -> (tempfile::TempDir, Connection, String) {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("cartero.db")).unwrap();
        conn.pragma_update(None, "foreign_keys", "ON").unwrap();
        let (before, it) = migrations_up_to(name);
        for sql in before {
            conn.execute_batch(&sql).unwrap();
        }
        (dir, conn, it)
    }

    /// The `CREATE` statement of table `t`.
    fn schema(conn: &Connection, t: &str) -> String {
        conn.query_row("SELECT sql FROM sqlite_master WHERE name = ?1", [t], |r| {
            r.get(0)
        })
        .unwrap()
    }

    /// A database at the schema before the rebuild, holding two messages with their rows, and
    /// the rebuild's SQL.
    fn before_rebuild() -> (tempfile::TempDir, Connection, String) {
        let (dir, conn, rebuild) = database_before(REBUILD);
        conn.execute_batch(TWO_MESSAGES).unwrap();
        conn.execute_batch(
            "INSERT INTO message_bodies (message_id, content) VALUES ('m1', '{}'), ('m2', '{}');
             INSERT INTO message_recipients (message_id, position, address, kind, status)
             VALUES ('m1', 0, 'ana@example.com', 'to', 'sent'),
                    ('m2', 0, 'ana@example.com', 'to', 'pending'),
                    ('m2', 1, 'luis@example.com', 'cc', 'pending');
             INSERT INTO attempts (message_id, started_at, duration_ms, outcome, transcript)
             VALUES ('m1', 't', 5, 'sent', '[]');
             INSERT INTO events (message_id, kind, at)
             VALUES ('m1', 'queued', 't'), ('m1', 'sent', 't'), ('m2', 'queued', 't');",
        )
        .unwrap();
        (dir, conn, rebuild)
    }

    fn count(conn: &Connection, sql: &str) -> i64 {
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// The first column of every row of `sql`, as text.
    fn texts(conn: &Connection, sql: &str) -> Vec<String> {
        let mut stmt = conn.prepare(sql).unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn the_rebuild_keeps_every_row_and_the_cascade() {
        let (_dir, conn, rebuild) = before_rebuild();
        conn.execute_batch(&rebuild).unwrap();
        assert!(schema(&conn, "messages").contains("WITHOUT ROWID"));
        assert!(schema(&conn, "message_recipients").contains("WITHOUT ROWID"));
        assert!(!schema(&conn, "events").contains("AUTOINCREMENT"));
        assert!(!schema(&conn, "attempts").contains("AUTOINCREMENT"));
        assert_eq!(count(&conn, "SELECT COUNT(*) FROM messages"), 2);
        assert_eq!(count(&conn, "SELECT COUNT(*) FROM message_recipients"), 3);
        assert_eq!(count(&conn, "SELECT COUNT(*) FROM events"), 3);
        assert_eq!(count(&conn, "SELECT COUNT(*) FROM attempts"), 1);
        assert_eq!(count(&conn, "PRAGMA foreign_keys"), 1);
        // Ids go on from where they were.
        conn.execute(
            "INSERT INTO events (message_id, kind, at) VALUES ('m2', 'sent', 't')",
            [],
        )
        .unwrap();
        assert_eq!(count(&conn, "SELECT MAX(id) FROM events"), 4);
        // The children still belong to their message.
        conn.execute("DELETE FROM messages WHERE id = 'm1'", [])
            .unwrap();
        assert_eq!(count(&conn, "SELECT COUNT(*) FROM message_recipients"), 2);
        assert_eq!(count(&conn, "SELECT COUNT(*) FROM events"), 2);
        assert_eq!(count(&conn, "SELECT COUNT(*) FROM attempts"), 0);
        assert_eq!(count(&conn, "SELECT COUNT(*) FROM message_bodies"), 1);
        let dangling = conn.execute(
            "INSERT INTO message_recipients (message_id, position, address, kind, status) \
             VALUES ('nope', 0, 'x@example.com', 'to', 'pending')",
            [],
        );
        assert!(dangling.is_err(), "foreign keys are enforced again");
    }

    #[test]
    fn a_dangling_key_stops_the_rebuild_and_changes_nothing() {
        let (_dir, conn, rebuild) = before_rebuild();
        conn.execute_batch(
            "PRAGMA foreign_keys = OFF;
             INSERT INTO events (message_id, kind, at) VALUES ('gone', 'queued', 't');",
        )
        .unwrap();
        let failed = conn.execute_batch(&rebuild);
        assert!(failed.is_err());
        // What the caller does with a failed migration: the connection is dropped, and with it
        // the open transaction.
        drop(conn);
        let conn = Connection::open(_dir.path().join("cartero.db")).unwrap();
        let messages: String = conn
            .query_row(
                "SELECT sql FROM sqlite_master WHERE name = 'messages'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(!messages.contains("WITHOUT ROWID"));
        assert_eq!(count(&conn, "SELECT COUNT(*) FROM events"), 4);
    }

    /// After the rebuild: the stored `queued` rows go (the list of events derives them from
    /// `created_at`), every other event stays.
    #[test]
    fn the_stored_queued_events_go_and_the_others_stay() {
        let (_dir, conn, rebuild) = before_rebuild();
        conn.execute_batch(&rebuild).unwrap();
        let (_, queued) = migrations_up_to("20261201000003_queued_is_created_at.sql");
        conn.execute_batch(&queued).unwrap();
        assert_eq!(
            count(&conn, "SELECT COUNT(*) FROM events WHERE kind = 'queued'"),
            0
        );
        assert_eq!(
            count(&conn, "SELECT COUNT(*) FROM events WHERE kind = 'sent'"),
            1
        );
    }

    /// Attempts and events keyed by message: every row stays, numbered within its message in
    /// the order it was written, and still goes with its message.
    #[test]
    fn attempts_and_events_keep_their_order_within_each_message() {
        let (_dir, conn, by_message) = database_before(BY_MESSAGE);
        // Rows of two messages, interleaved, as deliveries write them.
        conn.execute_batch(
            "INSERT INTO projects (id, created_at) VALUES ('p', 't');
             INSERT INTO messages (id, project_id, message_type, status, size_bytes,
                 next_attempt_at, expires_at, created_at, updated_at)
             VALUES ('m1', 'p', 'system', 'sent', 10, 1, 2, 't', 't'),
                    ('m2', 'p', 'system', 'failed', 20, 1, 2, 't', 't');
             INSERT INTO attempts (message_id, started_at, duration_ms, outcome, transcript)
             VALUES ('m1', 't1', 5, 'deferred', '[]'), ('m2', 't2', 5, 'deferred', '[]'),
                    ('m1', 't3', 5, 'sent', '[]'), ('m2', 't4', 5, 'failed', '[]');
             INSERT INTO events (message_id, kind, at)
             VALUES ('m1', 'deferred', 'a'), ('m2', 'deferred', 'b'), ('m2', 'retried', 'c'),
                    ('m1', 'sent', 'd'), ('m2', 'failed', 'e');",
        )
        .unwrap();
        conn.execute_batch(&by_message).unwrap();

        assert!(schema(&conn, "attempts").contains("WITHOUT ROWID"));
        assert!(schema(&conn, "events").contains("WITHOUT ROWID"));
        assert_eq!(
            count(
                &conn,
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND tbl_name IN ('attempts', 'events') AND sql IS NOT NULL"
            ),
            0,
            "no index beside the primary keys"
        );
        let rows = |sql: &str| texts(&conn, sql);
        assert_eq!(
            rows("SELECT message_id || seq || started_at FROM attempts ORDER BY message_id, seq"),
            ["m11t1", "m12t3", "m21t2", "m22t4"]
        );
        assert_eq!(
            rows("SELECT message_id || seq || kind FROM events ORDER BY message_id, seq"),
            [
                "m11deferred",
                "m12sent",
                "m21deferred",
                "m22retried",
                "m23failed"
            ]
        );
        assert_eq!(count(&conn, "PRAGMA foreign_keys"), 1);
        // The next row of a message follows its last one.
        conn.execute(
            "INSERT INTO events (message_id, seq, kind, at) VALUES (?1, \
             (SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE message_id = ?1), 'cancelled', 'f')",
            ["m1"],
        )
        .unwrap();
        assert_eq!(
            count(&conn, "SELECT seq FROM events WHERE kind = 'cancelled'"),
            3
        );
        // The rows still belong to their message.
        conn.execute("DELETE FROM messages WHERE id = 'm2'", [])
            .unwrap();
        assert_eq!(count(&conn, "SELECT COUNT(*) FROM attempts"), 2);
        assert_eq!(count(&conn, "SELECT COUNT(*) FROM events"), 3);
        let dangling = conn.execute(
            "INSERT INTO events (message_id, seq, kind, at) VALUES ('nope', 1, 'sent', 't')",
            [],
        );
        assert!(dangling.is_err(), "foreign keys are enforced again");
    }

    /// A database before bodies are numbered, holding two messages with their bodies (written
    /// in the other order than their ids), and that migration's SQL.
    fn before_bodies() -> (tempfile::TempDir, Connection, String) {
        let (dir, conn, bodies) = database_before(BODIES);
        conn.execute_batch(TWO_MESSAGES).unwrap();
        conn.execute_batch(
            "INSERT INTO message_bodies (message_id, content)
             VALUES ('m2', '{\"two\"}'), ('m1', '{\"one\"}');",
        )
        .unwrap();
        (dir, conn, bodies)
    }

    /// Every message keeps its own body, found by its number; a body still goes with its
    /// message, and a new one is appended after the others.
    #[test]
    fn numbered_bodies_stay_with_their_messages() {
        let (_dir, conn, bodies) = before_bodies();
        conn.execute_batch(&bodies).unwrap();

        let body = |id: &str| -> String {
            conn.query_row(
                "SELECT b.content FROM messages m JOIN message_bodies b ON b.id = m.body_id \
                 WHERE m.id = ?1",
                [id],
                |r| r.get(0),
            )
            .unwrap()
        };
        assert_eq!(body("m1"), r#"{"one"}"#);
        assert_eq!(body("m2"), r#"{"two"}"#);
        assert!(!schema(&conn, "message_bodies").contains("message_id"));
        assert_eq!(
            count(
                &conn,
                "SELECT COUNT(*) FROM sqlite_master WHERE tbl_name = 'message_bodies' AND type = 'index'"
            ),
            0,
            "one B-tree: no index beside the rowid"
        );
        assert_eq!(count(&conn, "PRAGMA foreign_keys"), 1);
        conn.execute("INSERT INTO message_bodies (content) VALUES ('{}')", [])
            .unwrap();
        assert_eq!(count(&conn, "SELECT MAX(id) FROM message_bodies"), 3);
        // A deleted message takes its body along, and only its own.
        conn.execute("DELETE FROM messages WHERE id = 'm2'", [])
            .unwrap();
        assert_eq!(count(&conn, "SELECT COUNT(*) FROM message_bodies"), 2);
        assert_eq!(body("m1"), r#"{"one"}"#);
    }

    #[test]
    fn a_message_without_a_body_stops_the_numbering_and_changes_nothing() {
        let (dir, conn, bodies) = before_bodies();
        conn.execute_batch("DELETE FROM message_bodies WHERE message_id = 'm2'")
            .unwrap();
        let refused = conn.execute_batch(&bodies).unwrap_err().to_string();
        assert!(refused.contains("every_message_has_its_body"), "{refused}");
        drop(conn);
        let conn = Connection::open(dir.path().join("cartero.db")).unwrap();
        assert!(schema(&conn, "message_bodies").contains("message_id"));
        assert!(!schema(&conn, "messages").contains("body_id"));
        assert_eq!(count(&conn, "SELECT COUNT(*) FROM message_bodies"), 1);
    }

    /// A database before attempts and events are keyed by number: two messages (numbers 1
    /// and 2) with their bodies, attempts and events, written interleaved as deliveries do.
    fn before_by_number() -> (tempfile::TempDir, Connection, String) {
        let (dir, conn, by_number) = database_before(BY_NUMBER);
        conn.execute_batch(
            "INSERT INTO projects (id, created_at) VALUES ('p', 't');
             INSERT INTO message_bodies (content) VALUES ('{}'), ('{}');
             INSERT INTO messages (id, project_id, message_type, status, size_bytes,
                 next_attempt_at, expires_at, created_at, updated_at, body_id)
             VALUES ('m1', 'p', 'system', 'sent', 10, 1, 2, 't', 't', 1),
                    ('m2', 'p', 'system', 'failed', 20, 1, 2, 't', 't', 2);
             INSERT INTO attempts (message_id, seq, started_at, duration_ms, outcome, transcript)
             VALUES ('m1', 1, 't1', 5, 'deferred', '[]'), ('m2', 1, 't2', 5, 'deferred', '[]'),
                    ('m1', 2, 't3', 5, 'sent', '[]'), ('m2', 2, 't4', 5, 'failed', '[]');
             INSERT INTO events (message_id, seq, kind, at)
             VALUES ('m1', 1, 'deferred', 'a'), ('m2', 1, 'deferred', 'b'),
                    ('m2', 2, 'retried', 'c'), ('m1', 2, 'sent', 'd'), ('m2', 3, 'failed', 'e');",
        )
        .unwrap();
        (dir, conn, by_number)
    }

    /// Keyed by number, every attempt and event stays with its message and in its place; the
    /// next row of a message follows its last one, a full message takes no more, and a deleted
    /// message takes its rows along.
    #[test]
    fn attempts_and_events_keyed_by_number_stay_with_their_messages() {
        let (_dir, conn, by_number) = before_by_number();
        conn.execute_batch(&by_number).unwrap();

        assert!(!schema(&conn, "attempts").contains("message_id"));
        assert!(!schema(&conn, "events").contains("WITHOUT ROWID"));
        assert_eq!(
            count(
                &conn,
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND tbl_name IN ('attempts', 'events')"
            ),
            0,
            "one B-tree each: no index beside the rowid"
        );
        assert_eq!(count(&conn, "PRAGMA foreign_keys"), 1);
        let rows = |sql: &str| texts(&conn, sql);
        assert_eq!(
            rows(
                "SELECT (id >> 20) || ':' || (id & 1048575) || started_at FROM attempts ORDER BY id"
            ),
            ["1:1t1", "1:2t3", "2:1t2", "2:2t4"]
        );
        assert_eq!(
            rows("SELECT (id >> 20) || ':' || (id & 1048575) || kind FROM events ORDER BY id"),
            [
                "1:1deferred",
                "1:2sent",
                "2:1deferred",
                "2:2retried",
                "2:3failed"
            ]
        );

        let next_event = |number: i64| {
            conn.execute(
                super::insert_next_row!("events", "?1", "kind, at", "'cancelled', 'f'"),
                [number],
            )
            .unwrap()
        };
        assert_eq!(next_event(1), 1);
        assert_eq!(
            count(
                &conn,
                "SELECT id & 1048575 FROM events WHERE kind = 'cancelled'"
            ),
            3
        );
        // Message 3 has no rows yet: its first is seq 1.
        assert_eq!(next_event(3), 1);
        assert_eq!(count(&conn, "SELECT MAX(id) FROM events"), (3 << 20) + 1);
        // A message holding its last possible rows takes no more (and spills into no other).
        conn.execute_batch(
            "INSERT INTO events (id, kind, at) VALUES ((2 << 20) + 1048574, 'retried', 'g'),
                                                      ((2 << 20) + 1048575, 'retried', 'h');",
        )
        .unwrap();
        assert_eq!(next_event(2), 0);
        assert_eq!(
            count(&conn, "SELECT COUNT(*) FROM events WHERE id >> 20 = 3"),
            1
        );

        // A deleted message takes its rows and its body along, and only its own.
        conn.execute("DELETE FROM messages WHERE id = 'm2'", [])
            .unwrap();
        assert_eq!(
            rows("SELECT started_at FROM attempts ORDER BY id"),
            ["t1", "t3"]
        );
        assert_eq!(
            count(&conn, "SELECT COUNT(*) FROM events WHERE id >> 20 = 1"),
            3
        );
        assert_eq!(
            count(&conn, "SELECT COUNT(*) FROM events WHERE id >> 20 = 2"),
            0
        );
        assert_eq!(count(&conn, "SELECT COUNT(*) FROM message_bodies"), 1);
    }

    #[test]
    fn a_row_without_its_message_stops_the_keying_and_changes_nothing() {
        let (dir, conn, by_number) = before_by_number();
        conn.execute_batch(
            "PRAGMA foreign_keys = OFF;
             INSERT INTO events (message_id, seq, kind, at) VALUES ('gone', 1, 'sent', 't');",
        )
        .unwrap();
        let refused = conn.execute_batch(&by_number).unwrap_err().to_string();
        assert!(refused.contains("every_row_has_its_message"), "{refused}");
        drop(conn);
        let conn = Connection::open(dir.path().join("cartero.db")).unwrap();
        assert!(schema(&conn, "events").contains("message_id"));
        assert!(schema(&conn, "attempts").contains("message_id"));
        assert_eq!(count(&conn, "SELECT COUNT(*) FROM events"), 6);
        assert_eq!(count(&conn, "SELECT COUNT(*) FROM attempts"), 4);
    }
}
