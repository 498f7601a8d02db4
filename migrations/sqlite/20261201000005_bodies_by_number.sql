-- no-transaction
-- A message's body is found by a number the message holds (`messages.body_id`, the body's
-- rowid) instead of by the message's id. Keyed by the id, `message_bodies` was two B-trees:
-- the rows, and the index SQLite keeps for a TEXT primary key; every message wrote a page of
-- both, and the index, growing at its right edge, rewrote its last leaves on most commits.
-- Keyed by its rowid, a new body is appended to the one B-tree (SQLite opens a fresh page for
-- it instead of rebalancing its neighbours). Bodies are read only through their message, and a
-- trigger deletes a body with its message, as the foreign key's cascade did.
-- `messages` refers to the table being rebuilt: the rebuild runs with foreign keys off, in one
-- transaction, and checks that every message has its body before it commits.
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;

ALTER TABLE messages ADD COLUMN body_id INTEGER;     -- message_bodies.id
UPDATE messages SET body_id = (SELECT b.rowid FROM message_bodies b WHERE b.message_id = messages.id);

CREATE TABLE message_bodies_new (
    id       INTEGER PRIMARY KEY,                    -- messages.body_id
    content  TEXT NOT NULL
);
INSERT INTO message_bodies_new (id, content) SELECT rowid, content FROM message_bodies;
DROP TABLE message_bodies;
ALTER TABLE message_bodies_new RENAME TO message_bodies;

CREATE TRIGGER messages_delete_body AFTER DELETE ON messages
BEGIN
    DELETE FROM message_bodies WHERE id = OLD.body_id;
END;

-- A message without its body fails the CHECK and stops the migration; nothing is committed.
-- The error names the constraint: "CHECK constraint failed: every_message_has_its_body".
CREATE TEMP TABLE body_problems (
    n INTEGER NOT NULL CONSTRAINT every_message_has_its_body CHECK (n = 0)
);
INSERT INTO body_problems SELECT COUNT(*) FROM messages
    WHERE NOT EXISTS (SELECT 1 FROM message_bodies b WHERE b.id = messages.body_id);
DROP TABLE body_problems;

COMMIT;
PRAGMA foreign_keys = ON;
