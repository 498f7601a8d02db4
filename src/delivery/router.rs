//! Routing: which accounts may carry a message of type T in project P, in order.
//!
//! P's enabled accounts of type T, highest priority first, skipping accounts paused by
//! throttling; when P has no enabled account of type T, the operator's system fallback
//! account (stored through the API, else `CARTERO_FALLBACK_SMTP_URL`). The table is rebuilt
//! whenever the store's configuration version changes, so a change made through any
//! interface — API or CLI — applies to the next attempt with no restart.

use std::collections::HashMap;
use std::sync::Arc;

use crate::accounts::{Accounts, EnvFallback};
use crate::domain::account::AccountSpec;
use crate::secrets::Secret;
use crate::store::{AccountRecord, SYSTEM_PROJECT};

/// An account that may carry a message, with its credentials opened.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Stored accounts have an id; the environment's fallback has none.
    pub id: Option<String>,
    /// Pool key: changes whenever the account changes.
    pub key: String,
    pub spec: AccountSpec,
    pub password: Option<Secret>,
    pub paused_until: Option<i64>,
}

impl Candidate {
    fn stored(record: &AccountRecord, accounts: &Accounts) -> Option<Candidate> {
        let credentials = match accounts.credentials(record) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(account = %record.id, error = %e, "cannot open the account's password; skipping it");
                return None;
            }
        };
        Some(Candidate {
            id: Some(record.id.clone()),
            key: format!("{}@{}", record.id, record.updated_at.unix_timestamp_nanos()),
            spec: record.spec.clone(),
            password: credentials.password,
            paused_until: record.paused_until,
        })
    }
}

/// The routing table at one configuration version.
#[derive(Debug, Default)]
pub struct Routes {
    pub version: i64,
    by_type: HashMap<(String, String), Vec<Arc<Candidate>>>,
    fallback: Option<Arc<Candidate>>,
}

/// What routing found for one message.
#[derive(Debug)]
pub enum Route {
    /// Try these, in order.
    /// Shared with the routing table: a message's round does not copy the accounts.
    Candidates(Vec<Arc<Candidate>>),
    /// Accounts exist but all are paused (throttled) until this time.
    AllPaused { until_ms: i64 },
    /// No account of the type and no fallback.
    NoAccount,
}

impl Routes {
    /// A table that routes nothing and is replaced at the first look at the store.
    pub fn stale() -> Routes {
        Routes {
            version: -1,
            ..Routes::default()
        }
    }

    pub fn build(
        version: i64,
        records: &[AccountRecord],
        accounts: &Accounts,
        env_fallback: Option<&Arc<EnvFallback>>,
    ) -> Routes {
        let mut by_type: HashMap<(String, String), Vec<Arc<Candidate>>> = HashMap::new();
        let mut fallback = None;
        for r in records.iter().filter(|r| r.spec.enabled) {
            let Some(c) = Candidate::stored(r, accounts).map(Arc::new) else {
                continue;
            };
            if r.project_id == SYSTEM_PROJECT {
                fallback.get_or_insert(c);
            } else {
                by_type
                    .entry((
                        r.project_id.clone(),
                        r.spec.account_type.as_str().to_string(),
                    ))
                    .or_default()
                    .push(c);
            }
        }
        for list in by_type.values_mut() {
            list.sort_by(|a, b| {
                b.spec
                    .priority
                    .cmp(&a.spec.priority)
                    .then_with(|| a.spec.name.cmp(&b.spec.name))
            });
        }
        if fallback.is_none()
            && let Some(env) = env_fallback
        {
            fallback = Some(Arc::new(Candidate {
                id: None,
                key: "environment-fallback".into(),
                spec: env.spec.clone(),
                password: env.password.clone(),
                paused_until: None,
            }));
        }
        Routes {
            version,
            by_type,
            fallback,
        }
    }

    /// The accounts to try for a message of `message_type` in `project`, at `now_ms`.
    pub fn route(&self, project: &str, message_type: &str, now_ms: i64) -> Route {
        let own = self
            .by_type
            .get(&(project.to_string(), message_type.to_string()));
        let list: Vec<&Arc<Candidate>> = match own {
            Some(list) if !list.is_empty() => list.iter().collect(),
            _ => self.fallback.iter().collect(),
        };
        if list.is_empty() {
            return Route::NoAccount;
        }
        let ready: Vec<Arc<Candidate>> = list
            .iter()
            .filter(|c| c.paused_until.is_none_or(|p| p <= now_ms))
            .map(|c| Arc::clone(c))
            .collect();
        if ready.is_empty() {
            let until_ms = list
                .iter()
                .filter_map(|c| c.paused_until)
                .min()
                .unwrap_or(now_ms);
            return Route::AllPaused { until_ms };
        }
        Route::Candidates(ready)
    }
}
