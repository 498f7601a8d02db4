#!/usr/bin/env python3
"""WAL frames per commit when every commit appends ~21 rows at the right edge of a B-tree.

SQLite has a quick path for appending to a rowid table (`balance_quick`: one new page when
the last leaf is full). A WITHOUT ROWID table or an index has none: when its last leaf
overflows, `balance_nonroot` spreads the cells over it and two siblings, leaving them all
about as full, so the next commits overflow it again and rewrite three leaves and their
parent. This measures the difference with the layouts of cartero's per-message tables
(BENCHMARKS.md, "Where the time goes"). Python's own sqlite3 module; nothing of cartero.

    python3 bench/btree-appends.py [DIRECTORY]
"""

import os
import random
import sqlite3
import sys
import tempfile
import time

COMMITS = 400
PER_COMMIT = 21  # messages per group commit in the benchmark's closed-loop round
PAGE = 4096


def frames_per_commit(directory, ddl, insert, row):
    path = os.path.join(directory, "appends.db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.unlink(path + suffix)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute(f"PRAGMA page_size={PAGE}")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA wal_autocheckpoint=0")  # the WAL keeps every frame written
    db.execute("PRAGMA synchronous=OFF")  # frames are counted, not timed
    db.executescript(ddl)
    n = 0

    def commits(count):
        nonlocal n
        for _ in range(count):
            db.execute("BEGIN")
            for _ in range(PER_COMMIT):
                db.execute(insert, row(n))
                n += 1
            db.execute("COMMIT")

    commits(100)  # a B-tree a few levels deep first
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    commits(COMMITS)
    frames = (os.path.getsize(path + "-wal") - 32) // (PAGE + 24)
    db.close()
    return frames / COMMITS


def main():
    directory = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp()
    start = int(time.time() * 1000)

    def message_id(n):
        # Time-ordered like UUIDv7: ~20 messages per millisecond, then random bits.
        return f"{start + n // 20:012x}-{n:06x}-7{random.getrandbits(60):015x}"

    transcript = "C: MAIL FROM:<…> " * 14  # ~250 bytes, as a transcript on a reused connection
    at = "2026-12-01T19:47:10.129530713Z"
    cases = [
        (
            "attempts, WITHOUT ROWID keyed (message_id, seq)",
            "CREATE TABLE t (message_id TEXT NOT NULL, seq INTEGER NOT NULL, account TEXT,"
            " started_at TEXT, outcome TEXT, transcript TEXT,"
            " PRIMARY KEY (message_id, seq)) WITHOUT ROWID;",
            "INSERT INTO t VALUES (?, 1, 'sink', ?, 'sent', ?)",
            lambda n: (message_id(n), at, transcript),
        ),
        (
            "attempts, rowid table keyed by a message number",
            "CREATE TABLE t (n INTEGER PRIMARY KEY, message_id TEXT NOT NULL, seq INTEGER,"
            " account TEXT, started_at TEXT, outcome TEXT, transcript TEXT);",
            "INSERT INTO t VALUES (?, ?, 1, 'sink', ?, 'sent', ?)",
            lambda n: (n * 16 + 1, message_id(n), at, transcript),
        ),
        (
            "events, WITHOUT ROWID keyed (message_id, seq)",
            "CREATE TABLE t (message_id TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT,"
            " detail TEXT, at TEXT, PRIMARY KEY (message_id, seq)) WITHOUT ROWID;",
            "INSERT INTO t VALUES (?, 1, 'sent', '1 recipient(s) via sink: 250 2.0.0 Ok', ?)",
            lambda n: (message_id(n), at),
        ),
        (
            "events, rowid table keyed by a message number",
            "CREATE TABLE t (n INTEGER PRIMARY KEY, message_id TEXT NOT NULL, seq INTEGER,"
            " kind TEXT, detail TEXT, at TEXT);",
            "INSERT INTO t VALUES (?, ?, 1, 'sent', '1 recipient(s) via sink: 250 2.0.0 Ok', ?)",
            lambda n: (n * 16 + 1, message_id(n), at),
        ),
        (
            "a rowid table of (project, id)",
            "CREATE TABLE t (n INTEGER PRIMARY KEY, project TEXT, id TEXT);",
            "INSERT INTO t VALUES (?, 'default', ?)",
            lambda n: (n, message_id(n)),
        ),
        (
            "the same with an index on (project, id)",
            "CREATE TABLE t (n INTEGER PRIMARY KEY, project TEXT, id TEXT);"
            " CREATE INDEX t_by_project ON t (project, id);",
            "INSERT INTO t VALUES (?, 'default', ?)",
            lambda n: (n, message_id(n)),
        ),
    ]
    print(f"SQLite {sqlite3.sqlite_version}, {PER_COMMIT} rows per commit, {COMMITS} commits")
    for name, ddl, insert, row in cases:
        print(f"{frames_per_commit(directory, ddl, insert, row):6.2f} frames/commit  {name}")


if __name__ == "__main__":
    main()
