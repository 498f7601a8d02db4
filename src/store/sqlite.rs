//! The embedded default store: one SQLite file in the data directory.
//!
//! WAL journal with `synchronous=FULL`: a write that returned is on disk, and readers never
//! wait for the writer. Migrations live in `migrations/sqlite/`.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{
    AccountRecord, LastTest, Reseal, SYSTEM_PROJECT, Store, StoreError, TokenRecord, account_aad,
};
use crate::domain::account::{AccountInput, ImapInput, LimitsInput};
use crate::domain::permission::Role;

pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    pub async fn open(url: &str) -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        if let Some(dir) = options.get_filename().parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Backend(sqlx::Error::Configuration(
                    format!("creating {}: {e}", dir.display()).into(),
                ))
            })?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&pool).await?;
        Ok(SqliteStore { pool })
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

fn token_from_row(row: &SqliteRow) -> Result<TokenRecord, StoreError> {
    let role: String = row.try_get("role")?;
    Ok(TokenRecord {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        name: row.try_get("name")?,
        role: role.parse::<Role>().map_err(StoreError::Corrupt)?,
        token_hash: row.try_get("token_hash")?,
        created_at: parse_ts(&row.try_get::<String, _>("created_at")?)?,
        revoked_at: parse_opt_ts(row.try_get("revoked_at")?)?,
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
            .execute(&self.pool)
            .await
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::Conflict(id.to_string())
                } else {
                    e.into()
                }
            })?;
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
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn active_token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        sqlx::query("SELECT * FROM api_tokens WHERE token_hash = ? AND revoked_at IS NULL")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(token_from_row)
            .transpose()
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
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn insert_account(&self, account: &AccountRecord) -> Result<(), StoreError> {
        let sql: &'static str = insert_account_sql();
        bind_account(sqlx::query(sql), account)
            .execute(&self.pool)
            .await
            .map_err(|e| name_conflict(e, &account.spec.name))?;
        Ok(())
    }

    async fn update_account(&self, account: &AccountRecord) -> Result<bool, StoreError> {
        let sql: &'static str = update_account_sql();
        let done = bind_account(sqlx::query(sql), account)
            .execute(&self.pool)
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
            .execute(&self.pool)
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
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
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
        let mut tx: Transaction<'_, Sqlite> = self.pool.begin().await?;
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
