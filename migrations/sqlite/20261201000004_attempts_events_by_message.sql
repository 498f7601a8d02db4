-- no-transaction
-- A message's attempts and events are only ever read together, in order, by their message.
-- As rowid tables they were two B-trees each (the rows, and an index on (message_id, id)), and
-- every delivery wrote a page of both. Keyed by (message_id, seq) WITHOUT ROWID they are one
-- B-tree each, clustered by message: message ids are time-ordered (UUIDv7), so new rows land
-- at the end. `seq` numbers a message's rows from 1 in the order they were written. Their rows
-- are small (a transcript on a reused connection is ~200 bytes) as that layout wants.
-- `messages` is their parent: the rebuild runs with foreign keys off, in one transaction, and
-- checks the keys before it commits (https://sqlite.org/lang_altertable.html#otheralter).
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;

CREATE TABLE attempts_new (
    message_id      TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    seq             INTEGER NOT NULL,            -- 1, 2, … within the message
    account_id      TEXT,
    account_name    TEXT,
    started_at      TEXT NOT NULL,
    duration_ms     INTEGER NOT NULL,
    outcome         TEXT NOT NULL,               -- sent | partial | deferred | failed
    reply           TEXT,
    diagnosis_code  TEXT,
    note            TEXT,
    transcript      TEXT NOT NULL,               -- JSON array of lines, credentials masked
    PRIMARY KEY (message_id, seq)
) WITHOUT ROWID;
INSERT INTO attempts_new SELECT message_id,
    ROW_NUMBER() OVER (PARTITION BY message_id ORDER BY id), account_id, account_name,
    started_at, duration_ms, outcome, reply, diagnosis_code, note, transcript FROM attempts;
DROP TABLE attempts;
ALTER TABLE attempts_new RENAME TO attempts;

CREATE TABLE events_new (
    message_id  TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,                -- 1, 2, … within the message (0 is `queued`)
    kind        TEXT NOT NULL,                   -- sent | deferred | failed | cancelled | retried
    detail      TEXT,
    at          TEXT NOT NULL,
    PRIMARY KEY (message_id, seq)
) WITHOUT ROWID;
INSERT INTO events_new SELECT message_id,
    ROW_NUMBER() OVER (PARTITION BY message_id ORDER BY id), kind, detail, at FROM events;
DROP TABLE events;
ALTER TABLE events_new RENAME TO events;

-- A dangling key fails the CHECK and stops the migration; nothing is committed.
CREATE TEMP TABLE fk_problems (n INTEGER NOT NULL CHECK (n = 0));
INSERT INTO fk_problems SELECT COUNT(*) FROM pragma_foreign_key_check;
DROP TABLE fk_problems;

COMMIT;
PRAGMA foreign_keys = ON;
