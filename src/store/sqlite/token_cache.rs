//! Validated API tokens, remembered until any process revokes one.
//!
//! Every `POST /v1/messages` presents a bearer token; reading its row was a SQLite read
//! transaction per request (~4 % of the server's CPU per message). A token's row only stops
//! being valid when it is revoked, and every revocation goes through
//! [`SqliteStore::revoke_token`](super::SqliteStore) — in `cartero serve`, or in a `cartero
//! token revoke` run from another process on the same data directory. Each revocation, once
//! committed, writes a new random value into a small file beside the database
//! (`<database>-tokens`); a lookup reads that value first (one `pread` of 8 bytes) and forgets
//! every remembered token when it changed. A revoked token therefore stops working at once,
//! in every process, as it did without the cache.
//!
//! Why this order is safe: a lookup reads the value *before* it reads the row, and a
//! revocation writes the value *after* its commit. A row read before the commit is remembered
//! under the old value, which the revocation then replaces; a row read after the commit says
//! "revoked" and is not remembered. Only valid tokens are remembered, so presenting random
//! tokens cannot fill the cache; it is bounded all the same.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::store::TokenRecord;

/// More tokens than any deployment uses; past it the cache starts over.
const MAX_ENTRIES: usize = 4096;

pub(super) struct TokenCache {
    /// The revocation stamp shared by every process on this database, or why it could not be
    /// opened (then nothing is remembered, every lookup reads the database, and a revocation
    /// says that other processes may not have heard of it).
    stamp: Result<File, String>,
    remembered: Mutex<Remembered>,
}

#[derive(Default)]
struct Remembered {
    /// The stamp the entries were read under.
    stamp: u64,
    by_hash: HashMap<String, TokenRecord>,
}

/// The stamp file of the database at `db`.
fn stamp_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-tokens");
    PathBuf::from(name)
}

impl TokenCache {
    pub(super) fn open(db: &Path) -> TokenCache {
        let path = stamp_path(db);
        let stamp = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()));
        if let Err(e) = &stamp {
            tracing::warn!(
                error = %e,
                "token lookups are not cached: the revocation stamp beside the database cannot be opened"
            );
        }
        TokenCache {
            stamp,
            remembered: Mutex::new(Remembered::default()),
        }
    }

    /// The current stamp; `None` when it cannot be read (then nothing is remembered).
    fn read_stamp(&self) -> Option<u64> {
        let file = self.stamp.as_ref().ok()?;
        let mut bytes = [0u8; 8];
        match file.read_at(&mut bytes, 0) {
            // A stamp file that was never written reads as empty: stamp 0.
            Ok(0) => Some(0),
            Ok(8) => Some(u64::from_le_bytes(bytes)),
            // A short read (a write in progress): treat it as changed.
            Ok(_) => None,
            Err(_) => None,
        }
    }

    /// Looks `hash` up, reading the database with `read` when it is not remembered under the
    /// current stamp.
    pub(super) fn get<E>(
        &self,
        hash: &str,
        read: impl FnOnce() -> Result<Option<TokenRecord>, E>,
    ) -> Result<Option<TokenRecord>, E> {
        let Some(stamp) = self.read_stamp() else {
            return read();
        };
        {
            let remembered = self.lock();
            if remembered.stamp == stamp
                && let Some(record) = remembered.by_hash.get(hash)
            {
                return Ok(Some(record.clone()));
            }
        }
        let found = read()?;
        if let Some(record) = &found {
            let mut remembered = self.lock();
            if remembered.stamp != stamp || remembered.by_hash.len() >= MAX_ENTRIES {
                remembered.by_hash.clear();
                remembered.stamp = stamp;
            }
            remembered.by_hash.insert(hash.to_string(), record.clone());
        }
        Ok(found)
    }

    /// After a revocation committed: every process forgets the tokens it remembered. An error
    /// means other processes (a running `cartero serve`) may still accept the revoked token.
    pub(super) fn revoked(&self) -> std::io::Result<()> {
        self.lock().by_hash.clear();
        let file = self
            .stamp
            .as_ref()
            .map_err(|e| std::io::Error::other(e.clone()))?;
        // Random rather than counted: two processes revoking at once cannot write the same
        // value (a read-increment-write could), and nothing needs the order.
        let value = loop {
            let v = rand::random::<u64>();
            if v != 0 {
                break v;
            }
        };
        file.write_all_at(&value.to_le_bytes(), 0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Remembered> {
        self.remembered
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::permission::Role;
    use time::OffsetDateTime;

    fn record(id: &str) -> TokenRecord {
        TokenRecord {
            id: id.into(),
            project_id: "default".into(),
            name: id.into(),
            role: Role::Sender,
            token_hash: format!("hash-{id}"),
            created_at: OffsetDateTime::UNIX_EPOCH,
            revoked_at: None,
        }
    }

    fn found(id: &str) -> impl FnOnce() -> Result<Option<TokenRecord>, ()> {
        let r = record(id);
        move || Ok(Some(r))
    }

    fn must_not_read() -> Result<Option<TokenRecord>, ()> {
        panic!("the database was read for a remembered token")
    }

    #[test]
    fn a_valid_token_is_read_once() {
        let dir = tempfile::tempdir().unwrap();
        let cache = TokenCache::open(&dir.path().join("cartero.db"));
        assert_eq!(cache.get("h", found("a")).unwrap().unwrap().id, "a");
        assert_eq!(cache.get("h", must_not_read).unwrap().unwrap().id, "a");
    }

    #[test]
    fn an_unknown_token_is_read_every_time() {
        let dir = tempfile::tempdir().unwrap();
        let cache = TokenCache::open(&dir.path().join("cartero.db"));
        let mut reads = 0;
        for _ in 0..3 {
            let got = cache.get("nope", || {
                reads += 1;
                Ok::<_, ()>(None)
            });
            assert!(got.unwrap().is_none());
        }
        assert_eq!(reads, 3);
    }

    #[test]
    fn a_revocation_in_another_process_is_seen_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("cartero.db");
        // Two caches on one database file stand for the server and a `cartero token revoke`.
        let server = TokenCache::open(&db);
        let cli = TokenCache::open(&db);
        server.get("h", found("a")).unwrap();
        cli.revoked().unwrap();
        let mut read = false;
        let got = server.get("h", || {
            read = true;
            Ok::<_, ()>(None)
        });
        assert!(read, "the remembered token was answered after a revocation");
        assert!(got.unwrap().is_none());
        // Remembered again under the new stamp.
        server.get("h", found("b")).unwrap();
        assert_eq!(server.get("h", must_not_read).unwrap().unwrap().id, "b");
    }

    #[test]
    fn a_revocation_in_this_process_is_seen_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let cache = TokenCache::open(&dir.path().join("cartero.db"));
        cache.get("h", found("a")).unwrap();
        cache.revoked().unwrap();
        assert!(cache.get("h", || Ok::<_, ()>(None)).unwrap().is_none());
    }

    #[test]
    fn without_a_stamp_file_every_lookup_reads() {
        let dir = tempfile::tempdir().unwrap();
        // A database path in a directory that does not exist: the stamp cannot be created.
        let cache = TokenCache::open(&dir.path().join("missing").join("cartero.db"));
        cache.get("h", found("a")).unwrap();
        let mut read = false;
        cache
            .get("h", || {
                read = true;
                Ok::<_, ()>(None)
            })
            .unwrap();
        assert!(read);
        // And a revocation made here says that others may not have heard of it.
        let e = cache.revoked().unwrap_err().to_string();
        assert!(e.contains("-tokens"), "{e}");
    }
}
