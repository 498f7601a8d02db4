-- no-transaction
-- Fewer B-trees written per message. Every B-tree a commit touches costs at least one page in
-- the WAL, and a message touches most of them twice (stored, then its outcome):
--  * `messages` and `message_recipients` had a TEXT / composite primary key on a rowid table,
--    that is the table plus a separate index holding the key. WITHOUT ROWID keeps the rows in
--    the primary key's B-tree itself (their rows are small, as that layout wants). Message
--    bodies stay a rowid table: WITHOUT ROWID would move any body over ~1 KB to overflow pages.
--  * `events` and `attempts` lose AUTOINCREMENT: its `sqlite_sequence` row was rewritten on
--    every insert. Ids still grow (max + 1); rows are only ever deleted oldest first.
-- `messages` is the parent of the other tables, so the rebuild runs with foreign keys off (the
-- procedure of https://sqlite.org/lang_altertable.html#otheralter), in one transaction, and
-- checks the keys before it commits.
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;

CREATE TABLE messages_new (
    id                TEXT PRIMARY KEY,          -- UUIDv7: time-ordered, also the Message-ID's left part
    project_id        TEXT NOT NULL REFERENCES projects(id),
    message_type      TEXT NOT NULL,
    status            TEXT NOT NULL,             -- queued | sending | deferred | sent | partial | failed | cancelled
    idempotency_key   TEXT,
    size_bytes        INTEGER NOT NULL,
    message_id_header TEXT,                      -- fixed at the first attempt, reused by every retry
    account_id        TEXT,                      -- the account of the latest attempt
    attempt_count     INTEGER NOT NULL DEFAULT 0,
    next_attempt_at   INTEGER NOT NULL,
    lease_until       INTEGER,
    expires_at        INTEGER NOT NULL,
    last_code         TEXT,                      -- diagnosis code of the latest failure (or no_account)
    last_reply        TEXT,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL
) WITHOUT ROWID;
INSERT INTO messages_new SELECT id, project_id, message_type, status, idempotency_key, size_bytes,
    message_id_header, account_id, attempt_count, next_attempt_at, lease_until, expires_at,
    last_code, last_reply, created_at, updated_at FROM messages;
DROP TABLE messages;
ALTER TABLE messages_new RENAME TO messages;
CREATE UNIQUE INDEX messages_idempotency ON messages (project_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX messages_due ON messages (next_attempt_at) WHERE status IN ('queued', 'deferred');
CREATE INDEX messages_sending ON messages (lease_until) WHERE status = 'sending';
CREATE INDEX messages_by_project ON messages (project_id, id);

CREATE TABLE message_recipients_new (
    message_id  TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    position    INTEGER NOT NULL,
    address     TEXT NOT NULL,
    kind        TEXT NOT NULL,                   -- to | cc | bcc
    status      TEXT NOT NULL,                   -- pending | sent | failed
    reply       TEXT,
    PRIMARY KEY (message_id, position)
) WITHOUT ROWID;
INSERT INTO message_recipients_new SELECT message_id, position, address, kind, status, reply
    FROM message_recipients;
DROP TABLE message_recipients;
ALTER TABLE message_recipients_new RENAME TO message_recipients;
CREATE INDEX message_recipients_address ON message_recipients (address);

CREATE TABLE attempts_new (
    id              INTEGER PRIMARY KEY,
    message_id      TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    account_id      TEXT,
    account_name    TEXT,
    started_at      TEXT NOT NULL,
    duration_ms     INTEGER NOT NULL,
    outcome         TEXT NOT NULL,               -- sent | partial | deferred | failed
    reply           TEXT,
    diagnosis_code  TEXT,
    note            TEXT,
    transcript      TEXT NOT NULL                -- JSON array of lines, credentials masked
);
INSERT INTO attempts_new SELECT id, message_id, account_id, account_name, started_at, duration_ms,
    outcome, reply, diagnosis_code, note, transcript FROM attempts;
DROP TABLE attempts;
ALTER TABLE attempts_new RENAME TO attempts;
CREATE INDEX attempts_by_message ON attempts (message_id, id);

CREATE TABLE events_new (
    id          INTEGER PRIMARY KEY,
    message_id  TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    kind        TEXT NOT NULL,                   -- queued | sent | deferred | failed | cancelled | retried
    detail      TEXT,
    at          TEXT NOT NULL
);
INSERT INTO events_new SELECT id, message_id, kind, detail, at FROM events;
DROP TABLE events;
ALTER TABLE events_new RENAME TO events;
CREATE INDEX events_by_message ON events (message_id, id);

DELETE FROM sqlite_sequence WHERE name IN ('attempts', 'events');

-- A dangling key fails the CHECK and stops the migration; nothing is committed.
CREATE TEMP TABLE fk_problems (n INTEGER NOT NULL CHECK (n = 0));
INSERT INTO fk_problems SELECT COUNT(*) FROM pragma_foreign_key_check;
DROP TABLE fk_problems;

COMMIT;
PRAGMA foreign_keys = ON;
