-- Submissions and delivery outcomes are now written row by row with prepared statements by the
-- hot-path writer thread (src/store/sqlite/hot.rs), which group-commits them in one
-- transaction; the JSON views whose triggers did that work are no longer used.
DROP TRIGGER IF EXISTS message_intake_insert;
DROP VIEW IF EXISTS message_intake;
DROP TRIGGER IF EXISTS delivery_outcome_insert;
DROP VIEW IF EXISTS delivery_outcome;
