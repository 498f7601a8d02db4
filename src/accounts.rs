//! The account service: the one path by which accounts are created, changed, read and removed,
//! for the HTTP API and the CLI alike.
//!
//! It parses input ([`AccountInput::parse`]), seals secrets with the [`Keyring`] (the row id
//! and field name as associated data), and writes through the [`Store`]. Every read goes to the
//! store, so a change made by any interface is what the next read — and the next delivery —
//! sees, with no restart.

use std::sync::Arc;

use time::OffsetDateTime;

use crate::domain::account::{
    AccountInput, AccountSecrets, AccountSpec, EmailAddress, SecretChange,
};
use crate::domain::validation::FieldError;
use crate::probe::{self, ProbeReport, ProbeRequest, ProbeSettings};
use crate::secrets::{Keyring, Secret, SecretError};
use crate::store::LastTest;
use crate::store::{AccountRecord, SYSTEM_PROJECT, Store, StoreError, account_aad};

/// Why an account operation did not happen. Nothing is written in any of these cases.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("the account is not valid: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldError>),
    #[error("no such account")]
    NotFound,
    #[error("an account named `{0}` already exists in this project")]
    NameTaken(String),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for AccountError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(name) => AccountError::NameTaken(name),
            other => AccountError::Store(other),
        }
    }
}

/// The credentials of an account, opened for use by a connection.
#[derive(Debug, Clone, Default)]
pub struct AccountCredentials {
    pub password: Option<Secret>,
    pub imap_password: Option<Secret>,
}

#[derive(Clone)]
pub struct Accounts {
    store: Arc<dyn Store>,
    keyring: Arc<Keyring>,
}

impl Accounts {
    pub fn new(store: Arc<dyn Store>, keyring: Arc<Keyring>) -> Accounts {
        Accounts { store, keyring }
    }

    pub async fn create(
        &self,
        project_id: &str,
        input: &AccountInput,
    ) -> Result<AccountRecord, AccountError> {
        let (spec, secrets) = input.parse(false).map_err(AccountError::Invalid)?;
        let now = OffsetDateTime::now_utc();
        let mut record = AccountRecord {
            id: uuid::Uuid::now_v7().to_string(),
            project_id: project_id.to_string(),
            spec,
            password_sealed: None,
            imap_password_sealed: None,
            last_test: None,
            paused_until: None,
            paused_reason: None,
            created_at: now,
            updated_at: now,
        };
        self.apply_secrets(&mut record, &secrets);
        self.store.insert_account(&record).await?;
        Ok(record)
    }

    /// Applies a partial change: fields the patch names replace the stored ones.
    pub async fn update(
        &self,
        project_id: &str,
        id: &str,
        patch: AccountInput,
    ) -> Result<AccountRecord, AccountError> {
        let mut record = self.get(project_id, id).await?;
        let merged = AccountInput::from_spec(&record.spec).overlay(patch);
        let (spec, secrets) = merged
            .parse(record.password_sealed.is_some())
            .map_err(AccountError::Invalid)?;
        record.spec = spec;
        self.apply_secrets(&mut record, &secrets);
        if record.spec.imap.is_none() {
            record.imap_password_sealed = None;
        }
        record.updated_at = OffsetDateTime::now_utc();
        if !self.store.update_account(&record).await? {
            return Err(AccountError::NotFound);
        }
        Ok(record)
    }

    pub async fn set_enabled(
        &self,
        project_id: &str,
        id: &str,
        enabled: bool,
    ) -> Result<AccountRecord, AccountError> {
        self.update(
            project_id,
            id,
            AccountInput {
                enabled: Some(enabled),
                ..AccountInput::default()
            },
        )
        .await
    }

    pub async fn get(&self, project_id: &str, id: &str) -> Result<AccountRecord, AccountError> {
        self.store
            .get_account(project_id, id)
            .await?
            .ok_or(AccountError::NotFound)
    }

    pub async fn list(&self, project_id: &str) -> Result<Vec<AccountRecord>, AccountError> {
        Ok(self.store.list_accounts(project_id).await?)
    }

    pub async fn delete(&self, project_id: &str, id: &str) -> Result<(), AccountError> {
        if self.store.delete_account(project_id, id).await? {
            Ok(())
        } else {
            Err(AccountError::NotFound)
        }
    }

    /// Opens the account's secrets, for the code that connects to its servers.
    pub fn credentials(&self, record: &AccountRecord) -> Result<AccountCredentials, AccountError> {
        let open = |field: &str, sealed: &Option<String>| {
            sealed
                .as_deref()
                .map(|s| self.keyring.open(&account_aad(&record.id, field), s))
                .transpose()
        };
        Ok(AccountCredentials {
            password: open("password", &record.password_sealed)?,
            imap_password: open("imap_password", &record.imap_password_sealed)?,
        })
    }

    fn apply_secrets(&self, record: &mut AccountRecord, secrets: &AccountSecrets) {
        let seal = |field: &str, change: &SecretChange, slot: &mut Option<String>| match change {
            SecretChange::Keep => {}
            SecretChange::Clear => *slot = None,
            SecretChange::Set(value) => {
                *slot = Some(self.keyring.seal(&account_aad(&record.id, field), value))
            }
        };
        seal("password", &secrets.password, &mut record.password_sealed);
        seal(
            "imap_password",
            &secrets.imap_password,
            &mut record.imap_password_sealed,
        );
    }

    // ----- Probar / Test ----------------------------------------------------------------

    /// Tests a saved account. `overrides` (fields as in `PATCH`) are tried without being
    /// saved — the form's "test before saving" for an existing account; only a test of the
    /// account exactly as stored (no overrides, or overrides equal to it) is kept as its last
    /// test result.
    pub async fn test_saved(
        &self,
        project_id: &str,
        id: &str,
        overrides: Option<AccountInput>,
        target: TestTarget,
        settings: &ProbeSettings,
        observer: Option<probe::Observer>,
    ) -> Result<ProbeReport, AccountError> {
        let record = self.get(project_id, id).await?;
        let stored = self.credentials(&record)?;
        let (spec, secrets) = match &overrides {
            None => (record.spec.clone(), AccountSecrets::default()),
            Some(patch) => AccountInput::from_spec(&record.spec)
                .overlay(patch.clone())
                .parse(record.password_sealed.is_some())
                .map_err(AccountError::Invalid)?,
        };
        // Overrides that change nothing (the form sends every field) still test the account
        // as stored, so the result is kept as its last test.
        let same = |change: &SecretChange, stored: &Option<String>| match change {
            SecretChange::Keep => true,
            SecretChange::Clear => stored.is_none(),
            SecretChange::Set(_) => false,
        };
        let as_stored = spec == record.spec
            && same(&secrets.password, &record.password_sealed)
            && same(&secrets.imap_password, &record.imap_password_sealed);
        let request = probe_request(spec, &secrets, stored, target);
        let report = probe::run_observed(&request, settings, observer).await;
        if as_stored {
            let test = LastTest {
                at: OffsetDateTime::now_utc(),
                ok: report.ok,
                code: report
                    .diagnosis
                    .as_ref()
                    .map(|d| d.code.as_str().to_string()),
            };
            self.store.record_test(project_id, id, &test).await?;
        }
        Ok(report)
    }

    /// Tests an account that is not saved (the form before the first Save).
    pub async fn test_unsaved(
        &self,
        input: &AccountInput,
        target: TestTarget,
        settings: &ProbeSettings,
        observer: Option<probe::Observer>,
    ) -> Result<ProbeReport, AccountError> {
        let (spec, secrets) = input.parse(false).map_err(AccountError::Invalid)?;
        let request = probe_request(spec, &secrets, AccountCredentials::default(), target);
        Ok(probe::run_observed(&request, settings, observer).await)
    }

    /// Tests the fallback account from the environment (`CARTERO_FALLBACK_SMTP_URL`), with
    /// `overrides` tried on top as for a saved account.
    pub async fn test_env_fallback(
        &self,
        env: &EnvFallback,
        overrides: Option<AccountInput>,
        target: TestTarget,
        settings: &ProbeSettings,
        observer: Option<probe::Observer>,
    ) -> Result<ProbeReport, AccountError> {
        let (spec, secrets) = match overrides {
            None => (env.spec.clone(), AccountSecrets::default()),
            Some(patch) => AccountInput::from_spec(&env.spec)
                .overlay(patch)
                .parse(env.password.is_some())
                .map_err(AccountError::Invalid)?,
        };
        let stored = AccountCredentials {
            password: env.password.clone(),
            imap_password: None,
        };
        let request = probe_request(spec, &secrets, stored, target);
        Ok(probe::run_observed(&request, settings, observer).await)
    }

    // ----- the operator's system fallback account ---------------------------------------

    /// The fallback account stored through the API, if any (it lives in the reserved
    /// system project; there is at most one).
    pub async fn stored_fallback(&self) -> Result<Option<AccountRecord>, AccountError> {
        Ok(self.list(SYSTEM_PROJECT).await?.into_iter().next())
    }

    /// Creates or changes the stored fallback account; the password is kept when absent.
    pub async fn put_fallback(&self, input: AccountInput) -> Result<AccountRecord, AccountError> {
        let mut input = input;
        if input.name.is_none() {
            input.name = Some("System fallback".into());
        }
        match self.stored_fallback().await? {
            Some(existing) => self.update(SYSTEM_PROJECT, &existing.id, input).await,
            None => self.create(SYSTEM_PROJECT, &input).await,
        }
    }

    /// Removes the stored fallback account; false when there was none.
    pub async fn delete_fallback(&self) -> Result<bool, AccountError> {
        match self.stored_fallback().await? {
            Some(existing) => {
                self.delete(SYSTEM_PROJECT, &existing.id).await?;
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

/// Where a connection test sends, and whether it sends at all.
#[derive(Debug, Clone)]
pub struct TestTarget {
    /// Defaults to the account's own sender address.
    pub send_to: Option<EmailAddress>,
    /// `false` stops after RCPT TO.
    pub send: bool,
}

fn probe_request(
    spec: AccountSpec,
    secrets: &AccountSecrets,
    stored: AccountCredentials,
    target: TestTarget,
) -> ProbeRequest {
    let pick = |change: &SecretChange, stored: Option<Secret>| match change {
        SecretChange::Keep => stored,
        SecretChange::Clear => None,
        SecretChange::Set(v) => Some(Secret::new(v.clone())),
    };
    ProbeRequest {
        send_to: target.send_to.unwrap_or_else(|| spec.from_email.clone()),
        send: target.send,
        password: pick(&secrets.password, stored.password),
        imap_password: pick(&secrets.imap_password, stored.imap_password),
        spec,
    }
}

/// The fallback account the operator set with `CARTERO_FALLBACK_SMTP_URL`, held in memory.
#[derive(Debug, Clone)]
pub struct EnvFallback {
    pub spec: AccountSpec,
    pub password: Option<Secret>,
}

impl EnvFallback {
    /// Parses `smtp://`, `smtp+starttls://` or `smtps://user:pass@host:port?from=…&from_name=…`.
    /// The sender defaults to the username when that is an email address.
    pub fn parse(url: &str) -> anyhow::Result<EnvFallback> {
        use anyhow::Context;
        let parsed = url::Url::parse(url).context(
            "CARTERO_FALLBACK_SMTP_URL is not a URL: write smtps://user:password@host:465?from=noreply@example.com",
        )?;
        let (security, default_port) = match parsed.scheme() {
            "smtp" => ("none", 25),
            "smtp+starttls" => ("starttls", 587),
            "smtps" => ("tls", 465),
            other => anyhow::bail!(
                "CARTERO_FALLBACK_SMTP_URL scheme `{other}` is unknown: use smtp://, smtp+starttls:// or smtps://"
            ),
        };
        let decode =
            |s: &str| percent_decode(s).context("CARTERO_FALLBACK_SMTP_URL has a bad %-escape");
        let username = match parsed.username() {
            "" => None,
            u => Some(decode(u)?),
        };
        let password = parsed.password().map(decode).transpose()?;
        let query = |key: &str| {
            parsed
                .query_pairs()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.into_owned())
        };
        let from_email = query("from").or_else(|| username.clone().filter(|u| u.contains('@')));
        let input = AccountInput {
            name: Some("System fallback (environment)".into()),
            host: parsed.host_str().map(str::to_string),
            port: Some(parsed.port().unwrap_or(default_port).into()),
            security: Some(security.into()),
            auth: Some(
                if username.is_some() {
                    "password"
                } else {
                    "none"
                }
                .into(),
            ),
            username: Some(username),
            password: Some(password.clone()),
            from_email,
            from_name: Some(query("from_name")),
            ..AccountInput::default()
        };
        let (spec, _) = input.parse(false).map_err(|errors| {
            anyhow::anyhow!(
                "CARTERO_FALLBACK_SMTP_URL is not usable: {}",
                errors
                    .iter()
                    .map(|e| match e.field.as_str() {
                        "from_email" =>
                            "add ?from=sender@example.com (the username is not an email address)"
                                .to_string(),
                        _ => e.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        })?;
        Ok(EnvFallback {
            spec,
            password: password.map(Secret::new),
        })
    }
}

fn percent_decode(s: &str) -> anyhow::Result<String> {
    Ok(percent_encoding::percent_decode_str(s)
        .decode_utf8()?
        .into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::account::Security;

    #[test]
    fn fallback_url_forms() {
        let f = EnvFallback::parse("smtps://ops%40acme.example:p%40ss@mail.acme.example").unwrap();
        assert_eq!(f.spec.security, Security::Tls);
        assert_eq!(f.spec.port.get(), 465);
        assert_eq!(f.spec.username.as_deref(), Some("ops@acme.example"));
        assert_eq!(f.spec.from_email.as_str(), "ops@acme.example");
        assert_eq!(f.password.unwrap().expose(), "p@ss");

        let f = EnvFallback::parse(
            "smtp+starttls://apikey:k@smtp.sendgrid.net?from=noreply@acme.example&from_name=Acme",
        )
        .unwrap();
        assert_eq!(f.spec.port.get(), 587);
        assert_eq!(f.spec.from_name.as_deref(), Some("Acme"));

        let err = EnvFallback::parse("smtp://apikey:k@smtp.sendgrid.net").unwrap_err();
        assert!(err.to_string().contains("?from="), "{err}");
        assert!(!err.to_string().contains(":k@"), "no secret in the error");
        assert!(EnvFallback::parse("http://x").is_err());
    }
}
