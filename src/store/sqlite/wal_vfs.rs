//! A VFS shim that gathers the WAL writes of one commit into a few `pwrite` calls.
//!
//! SQLite appends each WAL frame with two writes, its 24-byte header and then its page: a
//! group commit of ~20 messages is ~60 frames, so ~120 `pwrite` calls, each paying the system
//! call and the file system's per-write work (inode timestamps, page-cache lookups). On this
//! machine 124 such writes cost 134–163 µs of CPU where the same 255 KB in 124 KB pieces cost
//! 17–30 µs (`bench/wal-writes.c`, BENCHMARKS.md). The shim wraps the default VFS and, for WAL files only, holds writes that
//! continue one another in a buffer; the buffer goes to the file, in order, before anything
//! that could observe it: a sync, a read, the file's size, a truncation, a file control, the
//! close, or a write elsewhere in the file. Durability is untouched: SQLite counts a frame
//! written only after its sync, and the sync writes the buffer first — so a commit is on disk
//! exactly when it was before. Other connections never read frames before the commit that
//! holds them has synced, because the WAL index publishes them only after that.
//!
//! The claim that nobody sees the WAL without the held bytes rests on three settings, which
//! [`open`] sets and checks, refusing the shim without them:
//! * `synchronous=FULL`: the WAL is synced at every commit before SQLite publishes its frames
//!   in the WAL index (with NORMAL it publishes them unsynced);
//! * `cache_spill=OFF`: SQLite writes frames only to commit. A spill writes frames in the
//!   middle of a transaction; rolled back, they would stay held after the write lock is
//!   released, and a later flush would write them over the frames another connection (the
//!   sqlx pool writes too) committed at the same offsets meanwhile;
//! * power-safe overwrite (SQLite's default): otherwise the commit pads its last frame with a
//!   write after the sync.
//!
//! Only the hot writer's connection opens its database through this VFS ([`NAME`]); every
//! other file, and every other connection, is the default VFS's own.
//!
//! This is the crate's one module with `unsafe` code (`#![deny(unsafe_code)]` elsewhere): a
//! VFS is a C interface, and no crate wraps SQLite's own VFS while leaving its files, locks
//! and shared memory to it. Each `unsafe` block does one of three things: call SQLite's
//! registration functions, forward to the default VFS's methods with the pointers SQLite
//! gave us, or reach the held buffer this module allocated for the file.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::path::Path;
use std::ptr;
use std::sync::OnceLock;

use rusqlite::{Connection, OpenFlags, ffi};

/// The VFS's registered name.
pub(super) const NAME: &str = "cartero-wal";
const NAME_C: &CStr = c"cartero-wal";

/// Writes held beyond this go to the file at once (a commit of 1,024 ops can exceed it).
const BUFFER_LIMIT: usize = 4 * 1024 * 1024;

/// The most handed to the default VFS in one write: its `unixWrite` passes at most 0x1ffff
/// bytes to each `pwrite` (`seekAndWriteFd` masks the length), and reports a disk full when a
/// remainder masks to nothing, so the held bytes go out in pieces below that.
const MAX_WRITE: usize = 124 * 1024;

/// The default VFS this one wraps, and this one; registered once per process.
struct Registered {
    inner: *mut ffi::sqlite3_vfs,
    _vfs: Box<ffi::sqlite3_vfs>,
}

// SAFETY: both point to VFS objects that live as long as the process and that SQLite itself
// uses from any thread.
unsafe impl Send for Registered {}
unsafe impl Sync for Registered {}

static REGISTERED: OnceLock<Result<Registered, String>> = OnceLock::new();

/// Registers the VFS (once; later calls return the first outcome).
pub(super) fn register() -> Result<(), String> {
    REGISTERED
        .get_or_init(|| {
            // SAFETY: sqlite3_initialize and sqlite3_vfs_find are safe to call at any time;
            // the copy of the default VFS keeps its methods and its pAppData, which its
            // methods read, and only the name, the file size and xOpen differ.
            unsafe {
                if ffi::sqlite3_initialize() != ffi::SQLITE_OK {
                    return Err("SQLite failed to initialise".into());
                }
                let inner = ffi::sqlite3_vfs_find(ptr::null());
                if inner.is_null() {
                    return Err("SQLite has no default VFS".into());
                }
                let mut vfs = Box::new(*inner);
                vfs.pNext = ptr::null_mut();
                vfs.zName = NAME_C.as_ptr();
                vfs.szOsFile = (file_offset() + (*inner).szOsFile as usize) as c_int;
                vfs.xOpen = Some(open_file);
                let raw: *mut ffi::sqlite3_vfs = &mut *vfs;
                let rc = ffi::sqlite3_vfs_register(raw, 0);
                if rc != ffi::SQLITE_OK {
                    return Err(format!("registering the WAL VFS failed ({rc})"));
                }
                Ok(Registered { inner, _vfs: vfs })
            }
        })
        .as_ref()
        .map(|_| ())
        .map_err(Clone::clone)
}

/// Opens the database at `path` through the shim, with the settings it depends on (see the
/// module): an error says which one is missing, and the caller opens it without the shim.
pub(super) fn open(path: &Path) -> Result<Connection, String> {
    register()?;
    let conn = Connection::open_with_flags_and_vfs(path, OpenFlags::default(), NAME)
        .map_err(|e| e.to_string())?;
    let settle = || -> rusqlite::Result<(i64, i64)> {
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "cache_spill", false)?;
        let synchronous = conn.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
        let spill = conn.query_row("PRAGMA cache_spill", [], |r| r.get(0))?;
        Ok((synchronous, spill))
    };
    match settle().map_err(|e| e.to_string())? {
        (2 | 3, 0) => {}
        (synchronous, spill) => {
            return Err(format!(
                "the WAL VFS needs synchronous=FULL and cache_spill=OFF; SQLite answered {synchronous} and {spill}"
            ));
        }
    }
    let mut psow: c_int = -1;
    // SAFETY: the handle is this open connection's; the file control writes one int.
    let rc = unsafe {
        ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            ffi::SQLITE_FCNTL_POWERSAFE_OVERWRITE,
            (&raw mut psow).cast(),
        )
    };
    if rc != ffi::SQLITE_OK || psow != 1 {
        return Err(format!(
            "the WAL VFS needs power-safe overwrite; SQLite answered {rc}, {psow}"
        ));
    }
    Ok(conn)
}

fn inner_vfs() -> *mut ffi::sqlite3_vfs {
    match REGISTERED.get() {
        Some(Ok(r)) => r.inner,
        _ => ptr::null_mut(),
    }
}

/// A WAL file: the methods SQLite calls, the held writes, and the default VFS's file after it.
#[repr(C)]
struct WalFile {
    base: ffi::sqlite3_file,
    /// Where the held bytes start in the file.
    start: i64,
    held: *mut Vec<u8>,
}

/// Where the default VFS's file lives inside ours (aligned for any of its fields).
const fn file_offset() -> usize {
    let size = std::mem::size_of::<WalFile>();
    size.div_ceil(16) * 16
}

/// # Safety
/// `file` is a `WalFile` opened by [`open`].
unsafe fn inner(file: *mut ffi::sqlite3_file) -> *mut ffi::sqlite3_file {
    unsafe { (file as *mut u8).add(file_offset()) as *mut ffi::sqlite3_file }
}

/// # Safety
/// `file` is an open file of the default VFS.
unsafe fn methods(file: *mut ffi::sqlite3_file) -> &'static ffi::sqlite3_io_methods {
    unsafe { &*(*file).pMethods }
}

/// `xOpen`: SQLite passes this VFS; the default VFS's `xOpen` gets its own.
unsafe extern "C" fn open_file(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let inner_vfs = inner_vfs();
    // SAFETY: SQLite hands us a file of szOsFile bytes; the default VFS's file fits at the
    // offset, and at the start for any file that is not a WAL.
    unsafe {
        let Some(inner_open) = inner_vfs.as_ref().and_then(|v| v.xOpen) else {
            return ffi::SQLITE_ERROR;
        };
        if flags & ffi::SQLITE_OPEN_WAL == 0 {
            return inner_open(inner_vfs, name, file, flags, out_flags);
        }
        let wal = file as *mut WalFile;
        (*wal).base.pMethods = ptr::null();
        let rc = inner_open(inner_vfs, name, inner(file), flags, out_flags);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        (*wal).start = 0;
        (*wal).held = Box::into_raw(Box::new(Vec::new()));
        (*wal).base.pMethods = &WAL_METHODS;
        ffi::SQLITE_OK
    }
}

/// Writes `bytes` at `offset` through the default VFS, in pieces of at most [`MAX_WRITE`].
///
/// # Safety
/// `file` is an open `WalFile`.
unsafe fn write_out(file: *mut ffi::sqlite3_file, bytes: &[u8], mut offset: i64) -> c_int {
    unsafe {
        let f = inner(file);
        let Some(write) = methods(f).xWrite else {
            return ffi::SQLITE_IOERR_WRITE;
        };
        for piece in bytes.chunks(MAX_WRITE) {
            let rc = write(
                f,
                piece.as_ptr() as *const c_void,
                piece.len() as c_int,
                offset,
            );
            if rc != ffi::SQLITE_OK {
                return rc;
            }
            offset += piece.len() as i64;
        }
        ffi::SQLITE_OK
    }
}

/// Writes the held bytes to the file; the buffer is empty afterwards, whatever the outcome.
///
/// # Safety
/// `file` is an open `WalFile`.
unsafe fn flush(file: *mut ffi::sqlite3_file) -> c_int {
    unsafe {
        let wal = file as *mut WalFile;
        let held = &mut *(*wal).held;
        if held.is_empty() {
            return ffi::SQLITE_OK;
        }
        let rc = write_out(file, held, (*wal).start);
        held.clear();
        rc
    }
}

unsafe extern "C" fn write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    unsafe {
        let wal = file as *mut WalFile;
        let held = &mut *(*wal).held;
        let data = std::slice::from_raw_parts(data as *const u8, amount.max(0) as usize);
        let amount = data.len();
        let continues = !held.is_empty() && (*wal).start + held.len() as i64 == offset;
        // A write too large to hold goes out after what is held, never before it.
        if !continues || held.len() + amount > BUFFER_LIMIT || amount >= MAX_WRITE {
            let rc = flush(file);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
        }
        if amount >= MAX_WRITE {
            return write_out(file, data, offset);
        }
        if held.is_empty() {
            (*wal).start = offset;
        }
        held.extend_from_slice(data);
        ffi::SQLITE_OK
    }
}

/// Every other method: the held bytes go first, then the default VFS's method.
macro_rules! flush_then {
    ($name:ident, $method:ident, ($($arg:ident: $ty:ty),*)) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> c_int {
            unsafe {
                let rc = flush(file);
                if rc != ffi::SQLITE_OK {
                    return rc;
                }
                let f = inner(file);
                match methods(f).$method {
                    Some(m) => m(f $(, $arg)*),
                    None => ffi::SQLITE_IOERR,
                }
            }
        }
    };
}

flush_then!(read, xRead, (data: *mut c_void, amount: c_int, offset: i64));
flush_then!(truncate, xTruncate, (size: i64));
flush_then!(sync, xSync, (flags: c_int));
flush_then!(file_size, xFileSize, (size: *mut i64));
flush_then!(lock, xLock, (level: c_int));
flush_then!(unlock, xUnlock, (level: c_int));
flush_then!(check_reserved_lock, xCheckReservedLock, (out: *mut c_int));
flush_then!(file_control, xFileControl, (op: c_int, arg: *mut c_void));

unsafe extern "C" fn sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    unsafe {
        let f = inner(file);
        methods(f).xSectorSize.map_or(4096, |m| m(f))
    }
}

unsafe extern "C" fn device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    unsafe {
        let f = inner(file);
        methods(f).xDeviceCharacteristics.map_or(0, |m| m(f))
    }
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    unsafe {
        let wal = file as *mut WalFile;
        let flushed = flush(file);
        drop(Box::from_raw((*wal).held));
        (*wal).held = ptr::null_mut();
        let f = inner(file);
        let closed = methods(f).xClose.map_or(ffi::SQLITE_OK, |m| m(f));
        if flushed != ffi::SQLITE_OK {
            flushed
        } else {
            closed
        }
    }
}

/// Version 1: a WAL file is never memory-mapped and holds no shared memory (the database
/// file does both).
static WAL_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 1,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

#[cfg(test)]
mod tests {
    use super::*;

    fn open_with_shim(path: &std::path::Path) -> Connection {
        let conn = open(path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn
    }

    /// SQLite finds the database whole.
    fn assert_whole(conn: &Connection) {
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
    }

    /// A transaction larger than the page cache, rolled back, while another connection (on
    /// the default VFS, as the sqlx pool) writes the same database: what the other one
    /// committed stays whole. With cache spills on, this fails (checked): the update spills
    /// frames mid-transaction while reading its pages from the database file, the rollback
    /// drops them without reading the WAL, the frames stay held after the write lock is
    /// released, and the read that follows flushes them over the frames the other connection
    /// committed at those offsets.
    #[test]
    fn a_rolled_back_transaction_leaves_nothing_to_write_over_another_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let shim = open_with_shim(&path);
        shim.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        shim.execute_batch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT NOT NULL);
             CREATE TABLE theirs (id INTEGER PRIMARY KEY, body TEXT NOT NULL);",
        )
        .unwrap();
        {
            let tx = shim.unchecked_transaction().unwrap();
            for i in 0..2000 {
                tx.execute(
                    "INSERT INTO t VALUES (?1, ?2)",
                    rusqlite::params![i, "a".repeat(1000)],
                )
                .unwrap();
            }
            tx.commit().unwrap();
        }
        // In the database file, not the WAL: the update reads its pages from there.
        shim.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
        shim.pragma_update(None, "cache_size", 10).unwrap();
        let other = Connection::open(&path).unwrap();
        other.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        let theirs = "o".repeat(3000);
        for round in 0..5i64 {
            // Rows of the same size, rewritten in place: no page is allocated or freed.
            let tx = shim.unchecked_transaction().unwrap();
            tx.execute("UPDATE t SET body = ?1", ["b".repeat(1000)])
                .unwrap();
            tx.rollback().unwrap();
            let tx = other.unchecked_transaction().unwrap();
            for i in 0..20 {
                tx.execute(
                    "INSERT INTO theirs VALUES (?1, ?2)",
                    rusqlite::params![round * 100 + i, theirs],
                )
                .unwrap();
            }
            tx.commit().unwrap();
            // The shim's connection reads, then commits a row of its own.
            let seen: i64 = shim
                .query_row("SELECT COUNT(*) FROM theirs", [], |r| r.get(0))
                .unwrap();
            assert_eq!(seen, (round + 1) * 20);
            shim.execute("INSERT INTO t VALUES (?1, 'mine')", [10_000 + round])
                .unwrap();
        }
        drop(shim);
        drop(other);
        let again = Connection::open(&path).unwrap();
        assert_whole(&again);
        let count = |sql: &str| -> i64 { again.query_row(sql, [], |r| r.get(0)).unwrap() };
        assert_eq!(
            count("SELECT COUNT(*) FROM theirs WHERE body = 'o' || substr(body, 2)"),
            100
        );
        assert_eq!(count("SELECT COUNT(*) FROM t WHERE body = 'mine'"), 5);
        assert_eq!(count("SELECT COUNT(*) FROM t WHERE body LIKE 'b%'"), 0);
    }

    /// The settings the shim depends on are what the connection it opens has.
    #[test]
    fn the_shim_opens_with_the_settings_it_needs() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open_with_shim(&dir.path().join("t.db"));
        let get = |p: &str| -> i64 {
            conn.query_row(&format!("PRAGMA {p}"), [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!((get("synchronous"), get("cache_spill")), (2, 0));
    }

    /// What one connection commits through the shim, another (on the default VFS) reads at
    /// once, and the WAL it left behind is whole when the database is opened again.
    #[test]
    fn commits_through_the_shim_are_read_by_others_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let writer = open_with_shim(&path);
        writer.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        writer
            .execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
            .unwrap();
        let reader = Connection::open(&path).unwrap();
        // Commits of every size: from one frame to more than SQLite's unix VFS writes at once.
        let body = "x".repeat(5000);
        let mut total = 0;
        for (round, rows) in [1i64, 20, 30, 100, 1, 300, 2, 200, 5, 341]
            .into_iter()
            .enumerate()
        {
            let tx = writer.unchecked_transaction().unwrap();
            for i in 0..rows {
                tx.execute(
                    "INSERT INTO t (id, body) VALUES (?1, ?2)",
                    rusqlite::params![round as i64 * 1000 + i, body],
                )
                .unwrap();
            }
            tx.commit().unwrap();
            total += rows;
            let seen: i64 = reader
                .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
                .unwrap();
            assert_eq!(seen, total);
        }
        assert_eq!(total, 1000);
        // Every frame is in the WAL file once its commit returned: a copy of the two files
        // taken now (as a machine losing power would leave them; nothing was checkpointed)
        // opens with all the rows.
        let wal = std::fs::metadata(dir.path().join("t.db-wal"))
            .unwrap()
            .len();
        assert!(wal > 1000 * 5000, "the WAL holds the bodies ({wal} bytes)");
        for ext in ["", "-wal"] {
            std::fs::copy(
                dir.path().join(format!("t.db{ext}")),
                dir.path().join(format!("copy.db{ext}")),
            )
            .unwrap();
        }
        let copy = Connection::open(dir.path().join("copy.db")).unwrap();
        let (n, len): (i64, i64) = copy
            .query_row("SELECT COUNT(*), SUM(length(body)) FROM t", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((n, len), (1000, 1000 * 5000));
        assert_whole(&copy);
    }

    /// A checkpoint run by the shim's own connection reads the WAL through it; a rolled-back
    /// transaction larger than the page cache leaves nothing behind.
    #[test]
    fn checkpoints_and_rollbacks_through_the_shim() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let conn = open_with_shim(&path);
        conn.pragma_update(None, "cache_size", 10).unwrap(); // the cache outgrows it (no spill)
        conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
            .unwrap();
        let body = "y".repeat(3000);
        let tx = conn.unchecked_transaction().unwrap();
        for i in 0..200 {
            tx.execute("INSERT INTO t VALUES (?1, ?2)", rusqlite::params![i, body])
                .unwrap();
        }
        tx.rollback().unwrap();
        for i in 0..200 {
            conn.execute("INSERT INTO t VALUES (?1, ?2)", rusqlite::params![i, body])
                .unwrap();
        }
        let (busy, log, copied): (i64, i64, i64) = conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!((busy, log, copied), (0, 0, 0));
        drop(conn);
        let again = Connection::open(&path).unwrap();
        let n: i64 = again
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 200);
        assert_whole(&again);
    }
}
