-- Projects are the tenant boundary; `default` exists from the first start and `_system`
-- holds the operator's system fallback account (it never gets tokens).
CREATE TABLE projects (
    id          TEXT PRIMARY KEY,
    created_at  TEXT NOT NULL
);
INSERT INTO projects (id, created_at) VALUES ('default', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));
INSERT INTO projects (id, created_at) VALUES ('_system', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));

-- API tokens: only the SHA-256 of the token is stored.
CREATE TABLE api_tokens (
    id            TEXT PRIMARY KEY,
    project_id    TEXT NOT NULL REFERENCES projects(id),
    name          TEXT NOT NULL,
    role          TEXT NOT NULL,
    token_hash    TEXT NOT NULL UNIQUE,
    created_at    TEXT NOT NULL,
    last_used_at  TEXT,
    revoked_at    TEXT
);

-- Outgoing SMTP accounts. Secret columns hold `v1.<key id>.<AES-256-GCM sealed value>`.
CREATE TABLE accounts (
    id                  TEXT PRIMARY KEY,
    project_id          TEXT NOT NULL REFERENCES projects(id),
    name                TEXT NOT NULL,
    account_type        TEXT NOT NULL,
    priority            INTEGER NOT NULL,
    enabled             INTEGER NOT NULL,
    host                TEXT NOT NULL,
    port                INTEGER NOT NULL,
    security            TEXT NOT NULL,
    auth                TEXT NOT NULL,
    username            TEXT,
    password_enc        TEXT,
    from_email          TEXT NOT NULL,
    from_name           TEXT,
    reply_to            TEXT,
    microsoft365        INTEGER NOT NULL,
    tls_verify          INTEGER NOT NULL,
    limit_per_minute    INTEGER,
    limit_per_hour      INTEGER,
    limit_per_day       INTEGER,
    imap_host           TEXT,
    imap_port           INTEGER,
    imap_security       TEXT,
    imap_username       TEXT,
    imap_password_enc   TEXT,
    imap_folder         TEXT,
    last_test_at        TEXT,
    last_test_ok        INTEGER,
    last_test_code      TEXT,
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL,
    UNIQUE (project_id, name)
);
CREATE INDEX accounts_routing ON accounts (project_id, account_type, enabled, priority DESC);
