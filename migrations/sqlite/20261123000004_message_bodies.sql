-- Message content moves to its own table: it is written once, and the status changes of a
-- delivery (claim, outcome) no longer rewrite kilobytes of content each time.
CREATE TABLE message_bodies (
    message_id  TEXT PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
    content     TEXT NOT NULL
);
INSERT INTO message_bodies (message_id, content) SELECT id, content FROM messages;
ALTER TABLE messages DROP COLUMN content;
