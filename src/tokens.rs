//! API tokens: random bearer strings shown once; only their SHA-256 is stored.
//!
//! A token has 256 bits of randomness, so a fast hash is enough to make a stolen database
//! useless for authentication (no password-style stretching is needed).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::domain::permission::Role;
use crate::store::{Store, StoreError, TokenRecord};

/// Every token starts with this, so leaked tokens are easy to recognise and scan for.
pub const PREFIX: &str = "cartero_";

/// A token just created: the only moment its text exists.
pub struct IssuedToken {
    pub record: TokenRecord,
    pub token: String,
}

/// The stored form of a token.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.trim().as_bytes()))
}

/// Creates a token for `project_id` with `role` and stores its hash.
pub async fn issue(
    store: &dyn Store,
    project_id: &str,
    name: &str,
    role: Role,
) -> Result<IssuedToken, StoreError> {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    let record = TokenRecord {
        id: uuid::Uuid::now_v7().to_string(),
        project_id: project_id.to_string(),
        name: name.to_string(),
        role,
        token_hash: hash(&token),
        created_at: OffsetDateTime::now_utc(),
        revoked_at: None,
    };
    store.insert_token(&record).await?;
    Ok(IssuedToken { record, token })
}

/// The active token record for a presented bearer token, if any.
pub async fn authenticate(
    store: &dyn Store,
    token: &str,
) -> Result<Option<TokenRecord>, StoreError> {
    if !token.starts_with(PREFIX) {
        return Ok(None);
    }
    store.active_token_by_hash(&hash(token)).await
}
