//! The audit log: who changed what, when, and through which interface.
//!
//! Every state-changing path — the API (by token or by a web session) and the CLI — calls
//! [`record`] after the change is stored. Secrets never reach the log: a changed password is
//! written as `"changed"`.

use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use crate::http::views::AccountView;
use crate::store::{AccountRecord, AuditEntry, Store};

/// The interface a change came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The web admin (a logged-in person).
    Ui,
    /// The HTTP API with a bearer token.
    Api,
    /// The command line on the server.
    Cli,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Ui => "ui",
            Via::Api => "api",
            Via::Cli => "cli",
        }
    }
}

/// Who made a change.
#[derive(Debug, Clone)]
pub struct Actor {
    /// `user:<email>`, `token:<name>` or `cli:<os user>`.
    pub name: String,
    pub via: Via,
}

impl Actor {
    /// The operator at the command line (the OS user, when known).
    pub fn cli() -> Actor {
        let user = std::env::var("SUDO_USER")
            .or_else(|_| std::env::var("USER"))
            .unwrap_or_else(|_| "operator".into());
        Actor {
            name: format!("cli:{user}"),
            via: Via::Cli,
        }
    }
}

/// Appends one entry. A failure to write it is logged, not returned: the change itself is
/// already committed and the caller's answer must say so.
pub async fn record(
    store: &dyn Store,
    project_id: &str,
    actor: &Actor,
    action: &str,
    target: Option<&str>,
    detail: Option<Value>,
) {
    let entry = AuditEntry {
        id: 0,
        at: OffsetDateTime::now_utc(),
        project_id: project_id.to_string(),
        actor: actor.name.clone(),
        via: actor.via.as_str().to_string(),
        action: action.to_string(),
        target: target.map(str::to_string),
        detail: detail.map(|d| d.to_string()),
    };
    if let Err(e) = store.insert_audit(&entry).await {
        tracing::error!(error = %e, action, project = project_id, "could not write the audit log");
    }
}

/// Fields an account change is described by (identity and bookkeeping left out).
fn account_fields(record: &AccountRecord) -> Map<String, Value> {
    let mut flat = Map::new();
    let Ok(Value::Object(view)) = serde_json::to_value(AccountView::from(record)) else {
        return flat;
    };
    for (key, value) in view {
        if matches!(
            key.as_str(),
            "id" | "project" | "created_at" | "updated_at" | "last_test"
        ) {
            continue;
        }
        match value {
            Value::Object(inner) => {
                for (k, v) in inner {
                    flat.insert(format!("{key}.{k}"), v);
                }
            }
            other => {
                flat.insert(key, other);
            }
        }
    }
    flat
}

/// What changed between two versions of an account: `{"field": {"from", "to"}}`, with
/// secrets as `"changed"` (never a value). `secrets_set` names secrets the change set.
pub fn account_changes(
    before: Option<&AccountRecord>,
    after: &AccountRecord,
    secrets_set: &[&str],
) -> Value {
    let old = before.map(account_fields).unwrap_or_default();
    let new = account_fields(after);
    let mut changed = Map::new();
    for (key, value) in &new {
        if key.ends_with("password_set") {
            continue;
        }
        if before.is_none() {
            if !value.is_null() {
                changed.insert(key.clone(), json!({ "to": value }));
            }
            continue;
        }
        let was = old.get(key).cloned().unwrap_or(Value::Null);
        if &was != value {
            changed.insert(key.clone(), json!({"from": was, "to": value}));
        }
    }
    for key in old.keys() {
        if !new.contains_key(key) && !key.ends_with("password_set") {
            changed.insert(key.clone(), json!({"from": old[key], "to": null}));
        }
    }
    for secret in secrets_set {
        changed.insert((*secret).to_string(), json!("changed"));
    }
    for (key, value) in &new {
        if key.ends_with("password_set")
            && value == &json!(false)
            && old.get(key) == Some(&json!(true))
        {
            let name = key.trim_end_matches("_set");
            changed.insert(name.to_string(), json!("removed"));
        }
    }
    json!({ "name": after.spec.name, "changed": changed })
}

/// The secrets an account input sets (names as the audit log shows them).
pub fn secrets_in(input: &crate::domain::account::AccountInput) -> Vec<&'static str> {
    let mut out = Vec::new();
    if matches!(input.password, Some(Some(_))) {
        out.push("password");
    }
    if input
        .imap
        .as_ref()
        .and_then(|i| i.as_ref())
        .is_some_and(|i| matches!(i.password, Some(Some(_))))
    {
        out.push("imap.password");
    }
    out
}
