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
    /// A person logged in to the web admin.
    pub fn user(email: &str) -> Actor {
        Actor {
            name: format!("user:{email}"),
            via: Via::Ui,
        }
    }

    /// An application with an API token.
    pub fn token(name: &str) -> Actor {
        Actor {
            name: format!("token:{name}"),
            via: Via::Api,
        }
    }

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

/// Records a change of an account (created when `before` is `None`) with what changed.
pub async fn account(
    store: &dyn Store,
    actor: &Actor,
    action: &str,
    before: Option<&AccountRecord>,
    after: &AccountRecord,
) {
    record(
        store,
        &after.project_id,
        actor,
        action,
        Some(&after.id),
        Some(account_changes(before, after)),
    )
    .await;
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
            // No IMAP section: its fields are simply absent (so adding or removing one shows
            // as its fields appearing or going).
            Value::Null if key == "imap" => {}
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
/// secrets as `"changed"` or `"removed"`, never a value. A secret is sealed with a fresh nonce
/// every time it is set, so a different sealed value is a secret that was set.
pub fn account_changes(before: Option<&AccountRecord>, after: &AccountRecord) -> Value {
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
    let sealed = |r: Option<&AccountRecord>| {
        r.map(|r| (r.password_sealed.clone(), r.imap_password_sealed.clone()))
            .unwrap_or_default()
    };
    let (was, now) = (sealed(before), sealed(Some(after)));
    for (name, was, now) in [("password", was.0, now.0), ("imap.password", was.1, now.1)] {
        match (was, now) {
            (Some(_), None) => {
                changed.insert(name.into(), json!("removed"));
            }
            (was, Some(now)) if was.as_ref() != Some(&now) => {
                changed.insert(name.into(), json!("changed"));
            }
            _ => {}
        }
    }
    json!({ "name": after.spec.name, "changed": changed })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::account::AccountInput;

    fn record(json: Value, password: bool, imap_password: bool) -> AccountRecord {
        let input: AccountInput = serde_json::from_value(json).unwrap();
        let (spec, _) = input.parse(false).unwrap();
        let now = OffsetDateTime::now_utc();
        AccountRecord {
            id: "a1".into(),
            project_id: "default".into(),
            spec,
            password_sealed: password.then(|| "v1.k.sealed".into()),
            imap_password_sealed: imap_password.then(|| "v1.k.sealed".into()),
            last_test: None,
            paused_until: None,
            paused_reason: None,
            created_at: now,
            updated_at: now,
        }
    }

    fn base() -> Value {
        json!({"name": "Ventas", "host": "smtp.example.com", "port": 587, "security": "starttls",
               "username": "u", "password": "p", "from_email": "v@example.com"})
    }

    #[test]
    fn adding_and_removing_imap_shows_its_fields_and_the_password_removal() {
        let without = record(base(), true, false);
        let mut with_imap = base();
        with_imap["imap"] = json!({"host": "imap.example.com", "port": 993, "security": "tls",
                                   "password": "ip", "folder": "INBOX"});
        let with = record(with_imap, true, true);

        let added = account_changes(Some(&without), &with);
        let changed = added["changed"].as_object().unwrap();
        assert!(!changed.contains_key("imap"), "{added}");
        assert_eq!(
            changed["imap.host"],
            json!({"from": null, "to": "imap.example.com"})
        );
        assert_eq!(changed["imap.password"], "changed");

        let removed = account_changes(Some(&with), &without);
        let changed = removed["changed"].as_object().unwrap();
        assert_eq!(
            changed["imap.host"],
            json!({"from": "imap.example.com", "to": null})
        );
        assert_eq!(changed["imap.password"], "removed");
        assert!(!removed.to_string().contains("\"ip\""));
    }

    #[test]
    fn an_unchanged_account_has_no_changes_and_a_new_one_lists_only_what_is_set() {
        let a = record(base(), true, false);
        assert_eq!(account_changes(Some(&a), &a)["changed"], json!({}));
        let created = account_changes(None, &a);
        assert_eq!(
            created["changed"]["host"],
            json!({"to": "smtp.example.com"})
        );
        assert_eq!(created["changed"]["password"], "changed");
        assert!(created["changed"].get("reply_to").is_none());
    }
}
