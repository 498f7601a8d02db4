//! Permissions and the roles that bundle them.
//!
//! Every API route names the one permission it needs; a token carries a role. The two
//! settings permissions mirror the ERP screens cartero replaces: `settings.view` opens the
//! settings, `defaults.manage` changes the system default (fallback) account.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// One thing a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Permission {
    #[serde(rename = "settings.view")]
    SettingsView,
    #[serde(rename = "accounts.manage")]
    AccountsManage,
    #[serde(rename = "defaults.manage")]
    DefaultsManage,
    #[serde(rename = "messages.send")]
    MessagesSend,
    #[serde(rename = "messages.read")]
    MessagesRead,
    #[serde(rename = "users.manage")]
    UsersManage,
}

impl Permission {
    pub const ALL: [Permission; 6] = [
        Permission::SettingsView,
        Permission::AccountsManage,
        Permission::DefaultsManage,
        Permission::MessagesSend,
        Permission::MessagesRead,
        Permission::UsersManage,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::SettingsView => "settings.view",
            Permission::AccountsManage => "accounts.manage",
            Permission::DefaultsManage => "defaults.manage",
            Permission::MessagesSend => "messages.send",
            Permission::MessagesRead => "messages.read",
            Permission::UsersManage => "users.manage",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A named bundle of permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including the system default account and users.
    Owner,
    /// Everything but `defaults.manage` and `users.manage`.
    Admin,
    /// Only `messages.send`: what an application's token needs.
    Sender,
    /// Read-only: `settings.view` and `messages.read`.
    Viewer,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Owner, Role::Admin, Role::Sender, Role::Viewer];

    pub fn permissions(self) -> &'static [Permission] {
        use Permission::*;
        match self {
            Role::Owner => &Permission::ALL,
            Role::Admin => &[SettingsView, AccountsManage, MessagesSend, MessagesRead],
            Role::Sender => &[MessagesSend],
            Role::Viewer => &[SettingsView, MessagesRead],
        }
    }

    pub fn allows(self, permission: Permission) -> bool {
        self.permissions().contains(&permission)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Sender => "sender",
            Role::Viewer => "viewer",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s.trim().to_ascii_lowercase())
            .ok_or_else(|| format!("unknown role `{s}`: choose owner, admin, sender or viewer"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_bundle_the_documented_permissions() {
        assert!(Role::Owner.allows(Permission::DefaultsManage));
        assert!(Role::Owner.allows(Permission::UsersManage));
        assert!(Role::Admin.allows(Permission::AccountsManage));
        assert!(!Role::Admin.allows(Permission::DefaultsManage));
        assert!(!Role::Admin.allows(Permission::UsersManage));
        assert_eq!(Role::Sender.permissions(), &[Permission::MessagesSend]);
        assert!(Role::Viewer.allows(Permission::SettingsView));
        assert!(!Role::Viewer.allows(Permission::AccountsManage));
        assert_eq!("Admin".parse::<Role>(), Ok(Role::Admin));
        assert!("root".parse::<Role>().is_err());
    }
}
