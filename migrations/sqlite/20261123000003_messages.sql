-- The durable queue. A message is accepted only once its row is committed (group commit).
-- Times used by the dispatcher are unix milliseconds (integers index and compare cheaply).
CREATE TABLE messages (
    id                TEXT PRIMARY KEY,          -- UUIDv7: time-ordered, also the Message-ID's left part
    project_id        TEXT NOT NULL REFERENCES projects(id),
    message_type      TEXT NOT NULL,
    status            TEXT NOT NULL,             -- queued | sending | deferred | sent | partial | failed | cancelled
    idempotency_key   TEXT,
    content           TEXT NOT NULL,             -- JSON: what to send (fields, rendered template, or raw MIME)
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
);
CREATE UNIQUE INDEX messages_idempotency ON messages (project_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX messages_due ON messages (next_attempt_at) WHERE status IN ('queued', 'deferred');
CREATE INDEX messages_sending ON messages (lease_until) WHERE status = 'sending';
CREATE INDEX messages_by_project ON messages (project_id, id);

CREATE TABLE message_recipients (
    message_id  TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    position    INTEGER NOT NULL,
    address     TEXT NOT NULL,
    kind        TEXT NOT NULL,                   -- to | cc | bcc
    status      TEXT NOT NULL,                   -- pending | sent | failed
    reply       TEXT,
    PRIMARY KEY (message_id, position)
);
CREATE INDEX message_recipients_address ON message_recipients (address);

CREATE TABLE attempts (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
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
CREATE INDEX attempts_by_message ON attempts (message_id, id);

CREATE TABLE events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id  TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    kind        TEXT NOT NULL,                   -- queued | sent | deferred | failed | cancelled | retried
    detail      TEXT,
    at          TEXT NOT NULL
);
CREATE INDEX events_by_message ON events (message_id, id);

-- Successful sends per account and minute: the durable count behind per-hour / per-day limits.
CREATE TABLE account_sends (
    account_id  TEXT NOT NULL,
    minute      INTEGER NOT NULL,                -- unix minute
    count       INTEGER NOT NULL,
    PRIMARY KEY (account_id, minute)
);

ALTER TABLE accounts ADD COLUMN paused_until INTEGER;   -- unix ms; throttled until then
ALTER TABLE accounts ADD COLUMN paused_reason TEXT;

-- Bumped on every account change so the dispatcher reloads accounts with no restart, even
-- when the change comes from another process (the CLI).
CREATE TABLE config_version (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL);
INSERT INTO config_version (id, version) VALUES (1, 0);
CREATE TRIGGER accounts_changed_insert AFTER INSERT ON accounts
    BEGIN UPDATE config_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER accounts_changed_update AFTER UPDATE ON accounts
    BEGIN UPDATE config_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER accounts_changed_delete AFTER DELETE ON accounts
    BEGIN UPDATE config_version SET version = version + 1 WHERE id = 1; END;

CREATE TABLE templates (
    project_id  TEXT NOT NULL REFERENCES projects(id),
    name        TEXT NOT NULL,
    body        TEXT NOT NULL,                   -- JSON TemplateSet {"en": {...}, "es": {...}}
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (project_id, name)
);
