//! Tiny reads of the hot path, run on the calling thread.
//!
//! Every `POST /v1/messages` looks up its bearer token, and every claim checks whether the
//! accounts changed. Each is one indexed row of a WAL database, which SQLite reads in a few
//! microseconds without waiting for any writer; through sqlx it was a round trip to a
//! connection's own thread (two wake-ups and a context switch each way), which cost more than
//! the read. These reads run inline instead, on one of a few connections of their own. A
//! token found valid is then remembered by [`super::token_cache`] until any revocation.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::TokenColumns;
use crate::store::{StoreError, TokenRecord};

/// One connection per runtime worker is enough: a read holds its lock for microseconds.
const CONNECTIONS: usize = 2;

pub(super) struct InlineReader {
    connections: Vec<Mutex<Connection>>,
}

impl InlineReader {
    pub(super) fn open(path: &Path) -> Result<InlineReader, StoreError> {
        let connections = (0..CONNECTIONS)
            .map(|_| {
                let conn = Connection::open_with_flags(
                    path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY
                        | OpenFlags::SQLITE_OPEN_NO_MUTEX
                        | OpenFlags::SQLITE_OPEN_URI,
                )?;
                conn.busy_timeout(Duration::from_secs(10))?;
                Ok(Mutex::new(conn))
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(InlineReader { connections })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        // A free connection if there is one, else wait for the first.
        let guard = self
            .connections
            .iter()
            .find_map(|c| c.try_lock().ok())
            .unwrap_or_else(|| {
                self.connections[0]
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
            });
        f(&guard)
    }

    /// A token that is not revoked, by the SHA-256 of its text.
    pub(super) fn active_token_by_hash(
        &self,
        hash: &str,
    ) -> Result<Option<TokenRecord>, StoreError> {
        self.with(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, project_id, name, role, token_hash, created_at, revoked_at \
                 FROM api_tokens WHERE token_hash = ?1 AND revoked_at IS NULL",
            )?;
            stmt.query_row(params![hash], |r| {
                Ok(TokenColumns {
                    id: r.get(0)?,
                    project_id: r.get(1)?,
                    name: r.get(2)?,
                    role: r.get(3)?,
                    token_hash: r.get(4)?,
                    created_at: r.get(5)?,
                    revoked_at: r.get(6)?,
                })
            })
            .optional()?
            .map(TokenColumns::into_record)
            .transpose()
        })
    }

    /// The number that changes whenever any account changes.
    pub(super) fn config_version(&self) -> Result<i64, StoreError> {
        self.with(|conn| {
            let mut stmt =
                conn.prepare_cached("SELECT version FROM config_version WHERE id = 1")?;
            Ok(stmt.query_row([], |r| r.get(0))?)
        })
    }
}
