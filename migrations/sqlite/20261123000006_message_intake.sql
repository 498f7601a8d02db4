-- One statement stores a whole group commit: each row inserted into this view is one message as
-- JSON ({"id", "p" project, "t" type, "k" idempotency key, "s" size, "n" due, "e" expires,
-- "c" content, "r" [{"a" address, "k" kind}]}) and the trigger fans it out to the tables. The
-- intake used to send four statements per batch; each statement is a round trip to SQLite's
-- thread, and those round trips were most of a group commit's time.
CREATE VIEW message_intake AS SELECT NULL AS doc, NULL AS at;

CREATE TRIGGER message_intake_insert INSTEAD OF INSERT ON message_intake
BEGIN
    INSERT INTO messages (id, project_id, message_type, status, idempotency_key, size_bytes,
                          next_attempt_at, expires_at, created_at, updated_at)
    VALUES (json_extract(NEW.doc, '$.id'), json_extract(NEW.doc, '$.p'),
            json_extract(NEW.doc, '$.t'), 'queued', json_extract(NEW.doc, '$.k'),
            json_extract(NEW.doc, '$.s'), json_extract(NEW.doc, '$.n'),
            json_extract(NEW.doc, '$.e'), NEW.at, NEW.at);
    INSERT INTO message_bodies (message_id, content)
    VALUES (json_extract(NEW.doc, '$.id'), json_extract(NEW.doc, '$.c'));
    INSERT INTO message_recipients (message_id, position, address, kind, status)
    SELECT json_extract(NEW.doc, '$.id'), key, json_extract(value, '$.a'),
           json_extract(value, '$.k'), 'pending'
    FROM json_each(NEW.doc, '$.r');
    INSERT INTO events (message_id, kind, at)
    VALUES (json_extract(NEW.doc, '$.id'), 'queued', NEW.at);
END;
