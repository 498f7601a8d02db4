-- One statement records a batch of delivery outcomes: each row inserted into this view is one
-- message's round as JSON and the trigger writes it everywhere (as `message_intake` does for
-- submissions). Fields: "id", "s" status, "n" next attempt, "a" account, "h" Message-ID header,
-- "c" last code, "r" last reply, "t" attempts made; "rc" recipients [{"p", "s", "r"}], "at"
-- attempts [{"a", "n", "t", "d", "o", "r", "c", "x", "l"}], "ev" events [{"k", "d"}], "sd"
-- sends [[account, unix minute]].
CREATE VIEW delivery_outcome AS SELECT NULL AS doc, NULL AS at;

CREATE TRIGGER delivery_outcome_insert INSTEAD OF INSERT ON delivery_outcome
BEGIN
    UPDATE messages SET
        status = json_extract(NEW.doc, '$.s'),
        next_attempt_at = json_extract(NEW.doc, '$.n'),
        lease_until = NULL,
        account_id = COALESCE(json_extract(NEW.doc, '$.a'), account_id),
        message_id_header = COALESCE(json_extract(NEW.doc, '$.h'), message_id_header),
        last_code = json_extract(NEW.doc, '$.c'),
        last_reply = json_extract(NEW.doc, '$.r'),
        attempt_count = attempt_count + json_extract(NEW.doc, '$.t'),
        updated_at = NEW.at
    WHERE id = json_extract(NEW.doc, '$.id') AND status = 'sending';
    UPDATE message_recipients SET
        status = (SELECT json_extract(value, '$.s') FROM json_each(NEW.doc, '$.rc')
                  WHERE json_extract(value, '$.p') = message_recipients.position),
        reply = (SELECT json_extract(value, '$.r') FROM json_each(NEW.doc, '$.rc')
                 WHERE json_extract(value, '$.p') = message_recipients.position)
    WHERE message_id = json_extract(NEW.doc, '$.id')
      AND position IN (SELECT json_extract(value, '$.p') FROM json_each(NEW.doc, '$.rc'));
    INSERT INTO attempts (message_id, account_id, account_name, started_at, duration_ms, outcome,
                          reply, diagnosis_code, note, transcript)
    SELECT json_extract(NEW.doc, '$.id'), json_extract(value, '$.a'), json_extract(value, '$.n'),
           json_extract(value, '$.t'), json_extract(value, '$.d'), json_extract(value, '$.o'),
           json_extract(value, '$.r'), json_extract(value, '$.c'), json_extract(value, '$.x'),
           json_extract(value, '$.l')
    FROM json_each(NEW.doc, '$.at');
    INSERT INTO events (message_id, kind, detail, at)
    SELECT json_extract(NEW.doc, '$.id'), json_extract(value, '$.k'), json_extract(value, '$.d'),
           NEW.at
    FROM json_each(NEW.doc, '$.ev');
    INSERT INTO account_sends (account_id, minute, count)
    SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), 1
    FROM json_each(NEW.doc, '$.sd') WHERE true
    ON CONFLICT (account_id, minute) DO UPDATE SET count = count + excluded.count;
END;
