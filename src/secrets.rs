//! Envelope encryption for stored credentials (SMTP and IMAP passwords).
//!
//! Each value is sealed with AES-256-GCM under the active master key, with a fresh random
//! 96-bit nonce and, as associated data, the record id and field name (`account:<id>:password`)
//! so a ciphertext copied to another row or field fails to open. The stored form is
//! `v1.<key id>.<base64(nonce ‖ ciphertext ‖ tag)>`; the key id (first 8 hex digits of the
//! key's SHA-256) lets [`Keyring`] hold old keys during rotation.
//!
//! The master key comes from `CARTERO_MASTER_KEY` (base64 of 32 bytes; a comma-separated list
//! puts the active key first and older keys after it) or from `master.key` in the data
//! directory, created with mode 0600 on first start.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// The name of the key file inside the data directory.
pub const KEY_FILE: &str = "master.key";

/// A secret in memory. Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(****)")
    }
}

/// Why a stored secret could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "the secret was encrypted with master key {0}, which is not loaded: restore the key file or add the old key to CARTERO_MASTER_KEY"
    )]
    UnknownKey(String),
    #[error("the stored secret is damaged or belongs to another record")]
    Corrupt,
}

struct MasterKey {
    id: String,
    cipher: Aes256Gcm,
    bytes: [u8; 32],
}

impl MasterKey {
    fn from_bytes(bytes: [u8; 32]) -> MasterKey {
        let id = hex::encode(&Sha256::digest(bytes)[..4]);
        MasterKey {
            id,
            cipher: Aes256Gcm::new_from_slice(&bytes).expect("32-byte key"),
            bytes,
        }
    }

    fn parse(text: &str) -> anyhow::Result<MasterKey> {
        let raw = B64
            .decode(text.trim())
            .context("the master key is not valid base64")?;
        let bytes: [u8; 32] = raw.try_into().map_err(|raw: Vec<u8>| {
            anyhow::anyhow!(
                "the master key must be 32 bytes (44 base64 characters), found {} bytes",
                raw.len()
            )
        })?;
        Ok(MasterKey::from_bytes(bytes))
    }

    fn generate() -> MasterKey {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        MasterKey::from_bytes(bytes)
    }

    fn encoded(&self) -> String {
        B64.encode(self.bytes)
    }
}

/// Where the keys came from, which decides how a rotation is saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Environment,
    File(PathBuf),
}

/// The active master key plus any older keys still needed to open secrets.
pub struct Keyring {
    keys: Vec<MasterKey>,
    source: KeySource,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("active", &self.active_id())
            .field("keys", &self.keys.len())
            .field("source", &self.source)
            .finish()
    }
}

impl Keyring {
    /// Loads the keys from `CARTERO_MASTER_KEY` when given, else from the key file in
    /// `data_dir`, creating it (mode 0600) when it does not exist yet and `create` allows —
    /// a database that already holds secrets must never get a fresh, useless key.
    pub fn load(env_value: Option<&str>, data_dir: &Path, create: bool) -> anyhow::Result<Keyring> {
        if let Some(value) = env_value.filter(|v| !v.trim().is_empty()) {
            return Ok(Keyring {
                keys: parse_list(value).context("CARTERO_MASTER_KEY")?,
                source: KeySource::Environment,
            });
        }
        let path = data_dir.join(KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Keyring {
                keys: parse_list(
                    &text
                        .lines()
                        .filter(|l| !l.trim_start().starts_with('#'))
                        .collect::<Vec<_>>()
                        .join(","),
                )
                .with_context(|| format!("reading the key file {}", path.display()))?,
                source: KeySource::File(path),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !create => bail!(
                "the master key file {} is missing but the database holds encrypted credentials: restore the file from backup or set CARTERO_MASTER_KEY",
                path.display()
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = MasterKey::generate();
                write_key_file(&path, &[&key], true)?;
                tracing::info!(path = %path.display(), key_id = %key.id, "created a new master key file");
                Ok(Keyring {
                    keys: vec![key],
                    source: KeySource::File(path),
                })
            }
            Err(e) => Err(e).with_context(|| format!("reading the key file {}", path.display())),
        }
    }

    /// A keyring holding one given key, for tests and tools.
    pub fn from_base64(key: &str) -> anyhow::Result<Keyring> {
        Ok(Keyring {
            keys: vec![MasterKey::parse(key)?],
            source: KeySource::Environment,
        })
    }

    pub fn active_id(&self) -> &str {
        &self.keys[0].id
    }

    pub fn source(&self) -> &KeySource {
        &self.source
    }

    pub fn knows(&self, key_id: &str) -> bool {
        self.keys.iter().any(|k| k.id == key_id)
    }

    /// Seals `plaintext` under the active key, bound to `aad` (`<kind>:<id>:<field>`).
    pub fn seal(&self, aad: &str, plaintext: &str) -> String {
        let key = &self.keys[0];
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = key
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let mut out = Vec::with_capacity(12 + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        format!("v1.{}.{}", key.id, B64.encode(out))
    }

    /// Opens a value made by [`Keyring::seal`] with the same `aad`.
    pub fn open(&self, aad: &str, stored: &str) -> Result<Secret, SecretError> {
        let mut parts = stored.splitn(3, '.');
        let (Some("v1"), Some(key_id), Some(body)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(SecretError::Corrupt);
        };
        let key = self
            .keys
            .iter()
            .find(|k| k.id == key_id)
            .ok_or_else(|| SecretError::UnknownKey(key_id.to_string()))?;
        let raw = B64.decode(body).map_err(|_| SecretError::Corrupt)?;
        if raw.len() < 12 + 16 {
            return Err(SecretError::Corrupt);
        }
        let (nonce, sealed) = raw.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().expect("split at 12");
        let plain = key
            .cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: sealed,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| SecretError::Corrupt)?;
        String::from_utf8(plain)
            .map(Secret)
            .map_err(|_| SecretError::Corrupt)
    }

    /// The key id a stored value was sealed with.
    pub fn key_id_of(stored: &str) -> Option<&str> {
        stored.strip_prefix("v1.")?.split('.').next()
    }

    /// Starts a rotation: a new keyring whose active key is fresh and which still holds the
    /// current keys, so every stored value can be opened and sealed again.
    pub fn rotated(&self) -> Keyring {
        let mut keys = vec![MasterKey::generate()];
        keys.extend(self.keys.iter().map(|k| MasterKey::from_bytes(k.bytes)));
        Keyring {
            keys,
            source: self.source.clone(),
        }
    }

    /// Keeps only the active key: called once every secret is sealed under it.
    pub fn retire_old_keys(&mut self) {
        self.keys.truncate(1);
    }

    /// The active key, base64: printed once when the keys live in the environment.
    pub fn active_key_base64(&self) -> String {
        self.keys[0].encoded()
    }

    /// Writes the keyring to its key file (atomically, mode 0600).
    pub fn save(&self) -> anyhow::Result<()> {
        match &self.source {
            KeySource::File(path) => {
                write_key_file(path, &self.keys.iter().collect::<Vec<_>>(), false)
            }
            KeySource::Environment => Ok(()),
        }
    }
}

fn parse_list(value: &str) -> anyhow::Result<Vec<MasterKey>> {
    let keys = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(MasterKey::parse)
        .collect::<anyhow::Result<Vec<_>>>()?;
    if keys.is_empty() {
        bail!("no key found");
    }
    Ok(keys)
}

fn write_key_file(path: &Path, keys: &[&MasterKey], create_new: bool) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the data directory {}", dir.display()))?;
    }
    let tmp = path.with_extension("key.tmp");
    let target = if create_new { path } else { tmp.as_path() };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).mode(0o600);
    if create_new {
        options.create_new(true);
    } else {
        options.create(true).truncate(true);
    }
    let mut file = options
        .open(target)
        .with_context(|| format!("creating the key file {}", target.display()))?;
    let mut text = String::from(
        "# cartero master keys: the first is active, the others open older secrets.\n# Keep this file secret and backed up: without it the stored passwords are lost.\n",
    );
    for key in keys {
        text.push_str(&key.encoded());
        text.push('\n');
    }
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    if !create_new {
        std::fs::rename(&tmp, path)
            .with_context(|| format!("replacing the key file {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_open_round_trip_with_bound_context() {
        let ring = Keyring::from_base64(&B64.encode([7u8; 32])).unwrap();
        let sealed = ring.seal("account:1:password", "s3cret");
        assert!(!sealed.contains("s3cret"));
        assert_eq!(
            ring.open("account:1:password", &sealed).unwrap().expose(),
            "s3cret"
        );
        // Moved to another row or field: refused.
        assert!(matches!(
            ring.open("account:2:password", &sealed),
            Err(SecretError::Corrupt)
        ));
        // A fresh nonce every time.
        assert_ne!(sealed, ring.seal("account:1:password", "s3cret"));
    }

    #[test]
    fn rotation_keeps_old_secrets_readable_until_retired() {
        let ring = Keyring::from_base64(&B64.encode([1u8; 32])).unwrap();
        let old = ring.seal("a", "x");
        let mut next = ring.rotated();
        assert_ne!(next.active_id(), ring.active_id());
        let resealed = next.seal("a", next.open("a", &old).unwrap().expose());
        next.retire_old_keys();
        assert!(matches!(
            next.open("a", &old),
            Err(SecretError::UnknownKey(_))
        ));
        assert_eq!(next.open("a", &resealed).unwrap().expose(), "x");
    }

    #[test]
    fn key_file_is_created_private_and_reloaded() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let first = Keyring::load(None, dir.path(), true).unwrap();
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = Keyring::load(None, dir.path(), true).unwrap();
        assert_eq!(first.active_id(), again.active_id());
    }

    #[test]
    fn bad_keys_are_refused() {
        assert!(Keyring::load(Some("not base64!"), Path::new("/nonexistent"), true).is_err());
        assert!(
            Keyring::load(
                Some(&B64.encode([0u8; 16])),
                Path::new("/nonexistent"),
                true
            )
            .is_err()
        );
        assert_eq!(format!("{:?}", Secret::new("pw")), "Secret(****)");
    }
}
