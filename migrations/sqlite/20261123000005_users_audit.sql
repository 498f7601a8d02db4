-- People who log in to the web admin. Passwords are argon2id PHC strings; an email is one
-- login across the installation, and a user belongs to one project with one role.
CREATE TABLE users (
    id             TEXT PRIMARY KEY,
    project_id     TEXT NOT NULL REFERENCES projects(id),
    email          TEXT NOT NULL UNIQUE,
    role           TEXT NOT NULL,
    password_hash  TEXT NOT NULL,
    created_at     TEXT NOT NULL
);

-- Web sessions: only the SHA-256 of the cookie value is stored, with the session's CSRF token.
CREATE TABLE sessions (
    id_hash        TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    csrf           TEXT NOT NULL,
    created_at_ms  INTEGER NOT NULL,
    expires_at_ms  INTEGER NOT NULL
);
CREATE INDEX sessions_by_user ON sessions (user_id);

-- Who changed what, from which interface (ui, api, cli). Appended, never edited. Secrets are
-- recorded as "changed", never with their value.
CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          TEXT NOT NULL,
    project_id  TEXT NOT NULL,
    actor       TEXT NOT NULL,
    via         TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT,
    detail      TEXT
);
CREATE INDEX audit_by_project ON audit_log (project_id, id DESC);
