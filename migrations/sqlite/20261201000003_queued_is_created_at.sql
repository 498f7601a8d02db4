-- A message's `queued` event is its creation: the list of events now derives it from
-- `messages.created_at` (which it always equalled) instead of storing one row per message.
-- Every other event stays as it was.
DELETE FROM events WHERE kind = 'queued';
