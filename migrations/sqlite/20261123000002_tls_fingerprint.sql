-- A pinned SHA-256 fingerprint of the SMTP server's certificate (`AB:CD:…`), the safe
-- alternative to turning verification off for self-signed or internal-CA servers.
ALTER TABLE accounts ADD COLUMN tls_fingerprint TEXT;
