//! An outgoing SMTP account and the values it is made of.
//!
//! [`AccountInput`] is what arrives from the API, the CLI or a form: loosely typed, every field
//! optional. [`AccountInput::parse`] turns it into an [`AccountSpec`] (every value checked) plus
//! the secrets it carries, or into the list of [`FieldError`]s that say what to fix.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Deserializer, Serialize};

use super::presets::{self, Preset, UsernameRule};
use super::validation::FieldError;

/// How the TCP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// Plain SMTP, no TLS (only sensible on 127.0.0.1 or a trusted network).
    None,
    /// Plain connection upgraded with STARTTLS (RFC 3207), usually port 587 or 25.
    Starttls,
    /// Implicit TLS from the first byte (RFC 8314), usually port 465 (SMTP) or 993 (IMAP).
    Tls,
}

impl Security {
    pub fn parse(field: &str, value: &str) -> Result<Security, FieldError> {
        match value.trim().to_ascii_lowercase().as_str() {
            "none" => Ok(Security::None),
            "starttls" => Ok(Security::Starttls),
            "tls" => Ok(Security::Tls),
            other => Err(FieldError::invalid(
                field,
                format!(
                    "Unknown security `{other}`: choose `none`, `starttls` (port 587) or `tls` (SSL/TLS, port 465)."
                ),
                format!(
                    "Encriptación «{other}» desconocida: elija `none` (ninguna), `starttls` (puerto 587) o `tls` (SSL/TLS, puerto 465)."
                ),
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Security::None => "none",
            Security::Starttls => "starttls",
            Security::Tls => "tls",
        }
    }
}

/// How cartero authenticates to the SMTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethod {
    None,
    /// AUTH PLAIN or LOGIN (RFC 4954), whichever the server offers.
    Password,
    /// OAuth 2.0 bearer token (XOAUTH2).
    Xoauth2,
}

impl AuthMethod {
    pub fn parse(value: &str) -> Result<AuthMethod, FieldError> {
        match value.trim().to_ascii_lowercase().as_str() {
            "none" => Ok(AuthMethod::None),
            "password" => Ok(AuthMethod::Password),
            "xoauth2" => Ok(AuthMethod::Xoauth2),
            other => Err(FieldError::invalid(
                "auth",
                format!("Unknown auth `{other}`: choose `none`, `password` or `xoauth2`."),
                format!(
                    "Autenticación «{other}» desconocida: elija `none`, `password` o `xoauth2`."
                ),
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::None => "none",
            AuthMethod::Password => "password",
            AuthMethod::Xoauth2 => "xoauth2",
        }
    }
}

/// A mailbox address `local@domain`, checked for the shape SMTP needs (RFC 5321 §4.1.2) and
/// for characters that would allow header injection.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(field: &str, value: &str) -> Result<EmailAddress, FieldError> {
        let bad = |why_en: &str, why_es: &str| {
            FieldError::invalid(
                field,
                format!("`{}` is not a valid email address: {why_en}.", shown(value)),
                format!(
                    "«{}» no es una dirección de correo válida: {why_es}.",
                    shown(value)
                ),
            )
        };
        let value = value.trim();
        if value.is_empty() {
            return Err(FieldError::required(field));
        }
        if value.len() > 254 {
            return Err(bad(
                "longer than 254 characters",
                "tiene más de 254 caracteres",
            ));
        }
        if value
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';'))
        {
            return Err(bad(
                "it contains spaces, line breaks or one of < > , ;",
                "contiene espacios, saltos de línea o alguno de < > , ;",
            ));
        }
        let Some((local, domain)) = value.rsplit_once('@') else {
            return Err(bad("the @ is missing", "falta la @"));
        };
        if local.is_empty() || local.len() > 64 || local.contains('@') && !local.starts_with('"') {
            return Err(bad(
                "the part before the @ is empty, too long or has a second @",
                "la parte anterior a la @ está vacía, es demasiado larga o tiene otra @",
            ));
        }
        if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
            return Err(bad(
                "the part before the @ has a misplaced dot",
                "la parte anterior a la @ tiene un punto mal colocado",
            ));
        }
        if !is_dns_name(domain) || !domain.contains('.') {
            return Err(bad(
                "the domain after the @ is not a valid domain name",
                "el dominio tras la @ no es un nombre de dominio válido",
            ));
        }
        Ok(EmailAddress(format!(
            "{local}@{}",
            domain.to_ascii_lowercase()
        )))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map(|(_, d)| d).unwrap_or("")
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A server name: a DNS host name or an IP address literal, without scheme or port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Hostname(String);

impl Hostname {
    pub fn parse(field: &str, value: &str) -> Result<Hostname, FieldError> {
        let value = value.trim();
        if value.is_empty() {
            return Err(FieldError::required(field));
        }
        let literal = value.trim_start_matches('[').trim_end_matches(']');
        if literal.parse::<IpAddr>().is_ok() {
            return Ok(Hostname(literal.to_string()));
        }
        if value.contains("://") || value.contains(':') || value.contains('/') {
            return Err(FieldError::invalid(
                field,
                format!(
                    "`{}` is not a host name: write only the server name (e.g. smtp.gmail.com), without `smtp://` or `:port`; the port has its own field.",
                    shown(value)
                ),
                format!(
                    "«{}» no es un nombre de servidor: escriba solo el nombre (p. ej. smtp.gmail.com), sin `smtp://` ni `:puerto`; el puerto tiene su propio campo.",
                    shown(value)
                ),
            ));
        }
        let name = value.trim_end_matches('.').to_ascii_lowercase();
        if !is_dns_name(&name) {
            return Err(FieldError::invalid(
                field,
                format!(
                    "`{}` is not a valid host name: use letters, digits, hyphens and dots (e.g. smtp.office365.com).",
                    shown(value)
                ),
                format!(
                    "«{}» no es un nombre de servidor válido: use letras, dígitos, guiones y puntos (p. ej. smtp.office365.com).",
                    shown(value)
                ),
            ));
        }
        Ok(Hostname(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Hostname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A TCP port, 1–65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Port(u16);

impl Port {
    pub fn parse(field: &str, value: i64) -> Result<Port, FieldError> {
        match u16::try_from(value) {
            Ok(p) if p >= 1 => Ok(Port(p)),
            _ => Err(FieldError::invalid(
                field,
                format!(
                    "Port {value} is out of range: use a number from 1 to 65535 (usually 587 for STARTTLS, 465 for SSL/TLS)."
                ),
                format!(
                    "El puerto {value} está fuera de rango: use un número de 1 a 65535 (normalmente 587 para STARTTLS, 465 para SSL/TLS)."
                ),
            )),
        }
    }

    pub fn get(self) -> u16 {
        self.0
    }
}

/// The purpose an account serves (`system`, `billing`, `marketing`…): a lowercase slug.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct AccountType(String);

impl AccountType {
    pub fn parse(value: &str) -> Result<AccountType, FieldError> {
        let v = value.trim().to_ascii_lowercase();
        let ok = !v.is_empty()
            && v.len() <= 64
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
        if ok {
            Ok(AccountType(v))
        } else {
            Err(FieldError::invalid(
                "type",
                format!(
                    "Type `{}` is not valid: use 1–64 letters, digits, `-`, `_` or `.` (e.g. system, billing, marketing).",
                    shown(value)
                ),
                format!(
                    "El tipo «{}» no es válido: use de 1 a 64 letras, dígitos, `-`, `_` o `.` (p. ej. system, billing, marketing).",
                    shown(value)
                ),
            ))
        }
    }

    pub fn system() -> AccountType {
        AccountType("system".into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Sending limits of an account; `None` means no limit of that kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Limits {
    pub per_minute: Option<u32>,
    pub per_hour: Option<u32>,
    pub per_day: Option<u32>,
}

/// Where cartero reads the account's mailbox for replies and bounces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImapSpec {
    pub host: Hostname,
    pub port: Port,
    pub security: Security,
    /// `None`: the SMTP username is used.
    pub username: Option<String>,
    pub folder: String,
}

/// A fully validated account, without its id, project or secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub account_type: AccountType,
    pub priority: i32,
    pub enabled: bool,
    pub host: Hostname,
    pub port: Port,
    pub security: Security,
    pub auth: AuthMethod,
    pub username: Option<String>,
    pub from_email: EmailAddress,
    pub from_name: Option<String>,
    pub reply_to: Option<EmailAddress>,
    pub microsoft365: bool,
    pub tls_verify: bool,
    /// `AB:CD:…` SHA-256 of the server certificate to accept, if pinned.
    pub tls_fingerprint: Option<String>,
    pub limits: Limits,
    pub imap: Option<ImapSpec>,
}

/// What a request says about a secret field.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SecretChange {
    /// The field was absent: keep what is stored.
    #[default]
    Keep,
    /// `null`: remove the stored secret.
    Clear,
    /// A new value to encrypt and store.
    Set(String),
}

impl SecretChange {
    fn from_input(value: &Option<Option<String>>) -> SecretChange {
        match value {
            None => SecretChange::Keep,
            Some(None) => SecretChange::Clear,
            Some(Some(s)) if s.is_empty() => SecretChange::Clear,
            Some(Some(s)) => SecretChange::Set(s.clone()),
        }
    }
}

/// The secrets carried by an account request; they never travel inside [`AccountSpec`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AccountSecrets {
    pub password: SecretChange,
    pub imap_password: SecretChange,
}

/// The sending limits as they arrive.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsInput {
    #[serde(default, deserialize_with = "nullable")]
    pub per_minute: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    pub per_hour: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    pub per_day: Option<Option<i64>>,
}

/// The IMAP settings as they arrive.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImapInput {
    pub host: Option<String>,
    pub port: Option<i64>,
    pub security: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub username: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable", skip_serializing)]
    pub password: Option<Option<String>>,
    pub folder: Option<String>,
}

/// An account as it arrives from the API, the CLI or a form. Every field is optional so that
/// the same shape serves creation (missing fields get defaults or a "required" error) and
/// `PATCH` (missing fields keep their stored value). `null` clears a nullable field.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountInput {
    /// Fill host, port, security, IMAP and username rule from a provider preset (`GET /v1/presets`).
    pub preset: Option<String>,
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub account_type: Option<String>,
    pub priority: Option<i64>,
    pub enabled: Option<bool>,
    pub host: Option<String>,
    pub port: Option<i64>,
    pub security: Option<String>,
    pub auth: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub username: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable", skip_serializing)]
    pub password: Option<Option<String>>,
    pub from_email: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub from_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub reply_to: Option<Option<String>>,
    pub microsoft365: Option<bool>,
    pub tls_verify: Option<bool>,
    /// Pin the server certificate's SHA-256 fingerprint (as the connection test shows it);
    /// the safe alternative to `tls_verify: false` for self-signed or internal certificates.
    #[serde(default, deserialize_with = "nullable")]
    pub tls_fingerprint: Option<Option<String>>,
    pub limits: Option<LimitsInput>,
    #[serde(default, deserialize_with = "nullable")]
    pub imap: Option<Option<ImapInput>>,
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

impl AccountInput {
    /// The input that reproduces a stored account; `PATCH` overlays the request on it.
    pub fn from_spec(spec: &AccountSpec) -> AccountInput {
        let opt = |v: Option<u32>| Some(v.map(i64::from));
        AccountInput {
            preset: None,
            name: Some(spec.name.clone()),
            account_type: Some(spec.account_type.as_str().to_string()),
            priority: Some(spec.priority.into()),
            enabled: Some(spec.enabled),
            host: Some(spec.host.as_str().to_string()),
            port: Some(spec.port.get().into()),
            security: Some(spec.security.as_str().to_string()),
            auth: Some(spec.auth.as_str().to_string()),
            username: Some(spec.username.clone()),
            password: None,
            from_email: Some(spec.from_email.as_str().to_string()),
            from_name: Some(spec.from_name.clone()),
            reply_to: Some(spec.reply_to.as_ref().map(|e| e.as_str().to_string())),
            microsoft365: Some(spec.microsoft365),
            tls_verify: Some(spec.tls_verify),
            tls_fingerprint: Some(spec.tls_fingerprint.clone()),
            limits: Some(LimitsInput {
                per_minute: opt(spec.limits.per_minute),
                per_hour: opt(spec.limits.per_hour),
                per_day: opt(spec.limits.per_day),
            }),
            imap: Some(spec.imap.as_ref().map(|i| ImapInput {
                host: Some(i.host.as_str().to_string()),
                port: Some(i.port.get().into()),
                security: Some(i.security.as_str().to_string()),
                username: Some(i.username.clone()),
                password: None,
                folder: Some(i.folder.clone()),
            })),
        }
    }

    /// Lays `patch` over `self`: every field the patch names replaces the stored one. An
    /// `imap` object in the patch is merged field by field into the stored IMAP settings.
    pub fn overlay(mut self, patch: AccountInput) -> AccountInput {
        macro_rules! take {
            ($($f:ident),*) => {$( if patch.$f.is_some() { self.$f = patch.$f; } )*};
        }
        take!(
            preset,
            name,
            account_type,
            priority,
            enabled,
            host,
            port,
            security,
            auth,
            username,
            password,
            from_email,
            from_name,
            reply_to,
            microsoft365,
            tls_verify,
            tls_fingerprint
        );
        if let Some(limits) = patch.limits {
            let mut merged = self.limits.take().unwrap_or_default();
            if limits.per_minute.is_some() {
                merged.per_minute = limits.per_minute;
            }
            if limits.per_hour.is_some() {
                merged.per_hour = limits.per_hour;
            }
            if limits.per_day.is_some() {
                merged.per_day = limits.per_day;
            }
            self.limits = Some(merged);
        }
        match patch.imap {
            None => {}
            Some(None) => self.imap = Some(None),
            Some(Some(p)) => {
                let mut merged = self.imap.take().flatten().unwrap_or_default();
                if p.host.is_some() {
                    merged.host = p.host;
                }
                if p.port.is_some() {
                    merged.port = p.port;
                }
                if p.security.is_some() {
                    merged.security = p.security;
                }
                if p.username.is_some() {
                    merged.username = p.username;
                }
                if p.password.is_some() {
                    merged.password = p.password;
                }
                if p.folder.is_some() {
                    merged.folder = p.folder;
                }
                self.imap = Some(Some(merged));
            }
        }
        self
    }

    /// Checks every field and collects every problem, so a form can show them all at once.
    ///
    /// `password_stored` says whether a password is already stored (for `PATCH`): an account
    /// with `auth: password` must end up with a password.
    pub fn parse(
        &self,
        password_stored: bool,
    ) -> Result<(AccountSpec, AccountSecrets), Vec<FieldError>> {
        let mut errors = Vec::new();
        let preset: Option<&Preset> = match self.preset.as_deref() {
            None => None,
            Some(id) => match presets::get(id) {
                Some(p) => Some(p),
                None => {
                    errors.push(FieldError::invalid(
                        "preset",
                        format!(
                            "Unknown preset `{}`: see GET /v1/presets for the list.",
                            shown(id)
                        ),
                        format!(
                            "Preajuste «{}» desconocido: consulte la lista en GET /v1/presets.",
                            shown(id)
                        ),
                    ));
                    None
                }
            },
        };
        let mut check = |r: Result<(), FieldError>| {
            if let Err(e) = r {
                errors.push(e);
            }
        };

        let mut name = None;
        check(match self.name.as_deref().map(str::trim) {
            None | Some("") => Err(FieldError::required("name")),
            Some(n) if n.chars().count() > 100 || n.chars().any(char::is_control) => {
                Err(FieldError::invalid(
                    "name",
                    "The name must be 1–100 characters without line breaks.",
                    "El nombre debe tener de 1 a 100 caracteres y ningún salto de línea.",
                ))
            }
            Some(n) => {
                name = Some(n.to_string());
                Ok(())
            }
        });

        let mut account_type = Some(AccountType::system());
        if let Some(t) = &self.account_type {
            account_type = None;
            check(AccountType::parse(t).map(|t| account_type = Some(t)));
        }

        let mut priority = Some(0);
        if let Some(p) = self.priority {
            priority = None;
            check(match i32::try_from(p) {
                Ok(p) if (-1_000_000..=1_000_000).contains(&p) => {
                    priority = Some(p);
                    Ok(())
                }
                _ => Err(FieldError::invalid(
                    "priority",
                    "The priority must be a whole number between -1000000 and 1000000 (higher is tried first).",
                    "La prioridad debe ser un número entero entre -1000000 y 1000000 (la más alta se usa primero).",
                )),
            });
        }

        let mut host = None;
        match self.host.as_deref().or(preset.map(|p| p.smtp.host)) {
            None => check(Err(FieldError::required("host"))),
            Some(h) => check(Hostname::parse("host", h).map(|h| host = Some(h))),
        }

        let mut security = None;
        match (self.security.as_deref(), preset) {
            (Some(s), _) => check(Security::parse("security", s).map(|s| security = Some(s))),
            (None, Some(p)) => security = Some(p.smtp.security),
            (None, None) => match self.port {
                // The port alone says which security is meant when it is a standard one.
                Some(465) => security = Some(Security::Tls),
                Some(587) => security = Some(Security::Starttls),
                _ => check(Err(FieldError::required("security"))),
            },
        }

        let mut port = None;
        match (self.port, preset, security) {
            (Some(p), _, _) => check(Port::parse("port", p).map(|p| port = Some(p))),
            (None, Some(p), _) => port = Some(Port(p.smtp.port)),
            (None, None, Some(Security::Tls)) => port = Some(Port(465)),
            (None, None, Some(Security::Starttls)) => port = Some(Port(587)),
            (None, None, _) => check(Err(FieldError::required("port"))),
        }

        let mut from_email = None;
        match self.from_email.as_deref() {
            None => check(Err(FieldError::required("from_email"))),
            Some(e) => check(EmailAddress::parse("from_email", e).map(|e| from_email = Some(e))),
        }

        let username = match &self.username {
            Some(Some(u)) if !u.trim().is_empty() => Some(u.trim().to_string()),
            Some(_) => None,
            None => match preset.map(|p| p.username) {
                Some(UsernameRule::EmailAddress) => from_email.as_ref().map(|e| e.to_string()),
                Some(UsernameRule::Fixed(u)) => Some(u.to_string()),
                _ => None,
            },
        };
        if let Some(u) = &username
            && (u.len() > 320 || u.chars().any(char::is_control))
        {
            check(Err(FieldError::invalid(
                "username",
                "The username must be at most 320 characters without line breaks.",
                "El usuario debe tener como máximo 320 caracteres y ningún salto de línea.",
            )));
        }

        let secrets = AccountSecrets {
            password: SecretChange::from_input(&self.password),
            imap_password: match &self.imap {
                Some(Some(i)) => SecretChange::from_input(&i.password),
                Some(None) => SecretChange::Clear,
                None => SecretChange::Keep,
            },
        };
        let will_have_password = match &secrets.password {
            SecretChange::Set(_) => true,
            SecretChange::Clear => false,
            SecretChange::Keep => password_stored,
        };

        let mut auth = None;
        match self.auth.as_deref() {
            Some(a) => check(AuthMethod::parse(a).map(|a| auth = Some(a))),
            None if username.is_some() || will_have_password => auth = Some(AuthMethod::Password),
            None => auth = Some(AuthMethod::None),
        }
        match auth {
            Some(AuthMethod::Xoauth2) => {
                check(Err(FieldError {
                    field: "auth".into(),
                    code: "not_supported",
                    message: super::i18n::Text::new(
                        "OAuth 2.0 (xoauth2) is not supported yet: use `password` with an app password, or `none`.",
                        "OAuth 2.0 (xoauth2) aún no está disponible: use `password` con una contraseña de aplicación, o `none`.",
                    ),
                }));
            }
            Some(AuthMethod::Password) => {
                if username.is_none() {
                    check(Err(FieldError::invalid(
                        "username",
                        "`auth: password` needs a username (usually the full email address).",
                        "`auth: password` necesita un usuario (normalmente la dirección de correo completa).",
                    )));
                }
                if !will_have_password {
                    check(Err(FieldError::invalid(
                        "password",
                        "`auth: password` needs a password.",
                        "`auth: password` necesita una contraseña.",
                    )));
                }
            }
            _ => {}
        }
        if let SecretChange::Set(p) = &secrets.password
            && (p.len() > 4096 || p.contains(['\r', '\n']))
        {
            check(Err(FieldError::invalid(
                "password",
                "The password must be at most 4096 characters without line breaks.",
                "La contraseña debe tener como máximo 4096 caracteres y ningún salto de línea.",
            )));
        }

        let from_name = match &self.from_name {
            Some(Some(n)) if !n.trim().is_empty() => {
                let n = n.trim();
                if n.chars().count() > 200 || n.chars().any(char::is_control) {
                    check(Err(FieldError::invalid(
                        "from_name",
                        "The sender name must be at most 200 characters without line breaks.",
                        "El nombre del remitente debe tener como máximo 200 caracteres y ningún salto de línea.",
                    )));
                }
                Some(n.to_string())
            }
            _ => None,
        };

        let mut reply_to = None;
        if let Some(Some(r)) = &self.reply_to
            && !r.trim().is_empty()
        {
            check(EmailAddress::parse("reply_to", r).map(|r| reply_to = Some(r)));
        }

        // Microsoft 365 takes authenticated submission only over STARTTLS (port 587).
        let microsoft365 = self
            .microsoft365
            .unwrap_or_else(|| preset.is_some_and(|p| p.microsoft365));
        if microsoft365 && security.is_some_and(|s| s != Security::Starttls) {
            check(Err(FieldError::invalid(
                "security",
                "Microsoft 365 compatibility needs encryption `starttls` (port 587): Microsoft accepts authenticated SMTP only that way.",
                "La compatibilidad con Microsoft 365 necesita la encriptación `starttls` (puerto 587): Microsoft solo acepta SMTP autenticado de esa forma.",
            )));
        }

        let mut tls_fingerprint = None;
        if let Some(Some(pin)) = &self.tls_fingerprint
            && !pin.trim().is_empty()
        {
            let hex: String = pin.chars().filter(|c| !matches!(c, ':' | ' ')).collect();
            if hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
                let upper = hex.to_ascii_uppercase();
                tls_fingerprint = Some(
                    upper
                        .as_bytes()
                        .chunks(2)
                        .map(|c| String::from_utf8_lossy(c).into_owned())
                        .collect::<Vec<_>>()
                        .join(":"),
                );
            } else {
                check(Err(FieldError::invalid(
                    "tls_fingerprint",
                    "The fingerprint must be the certificate's SHA-256: 64 hexadecimal digits, colons allowed (copy it from the connection test).",
                    "La huella debe ser el SHA-256 del certificado: 64 dígitos hexadecimales, con dos puntos opcionales (cópiela de la prueba de conexión).",
                )));
            }
        }

        let mut limits = Limits::default();
        if let Some(l) = &self.limits {
            for (field, value, slot) in [
                ("limits.per_minute", l.per_minute, &mut limits.per_minute),
                ("limits.per_hour", l.per_hour, &mut limits.per_hour),
                ("limits.per_day", l.per_day, &mut limits.per_day),
            ] {
                if let Some(Some(v)) = value {
                    match u32::try_from(v) {
                        Ok(v) if v >= 1 => *slot = Some(v),
                        _ => check(Err(FieldError::invalid(
                            field,
                            "A sending limit must be a whole number of at least 1, or null for no limit.",
                            "Un límite de envío debe ser un número entero de al menos 1, o null para no limitar.",
                        ))),
                    }
                }
            }
        }

        let imap_input = match &self.imap {
            Some(Some(i)) => Some(i.clone()),
            Some(None) => None,
            // A new account from a preset gets the provider's IMAP settings.
            None => preset.and_then(|p| p.imap.as_ref()).map(|e| ImapInput {
                host: Some(e.host.to_string()),
                port: Some(e.port.into()),
                security: Some(e.security.as_str().to_string()),
                ..ImapInput::default()
            }),
        };
        let mut imap = None;
        if let Some(i) = imap_input {
            match parse_imap(&i) {
                Ok(spec) => imap = Some(spec),
                Err(errs) => errors_extend(&mut check, errs),
            }
        }

        if !errors.is_empty() {
            return Err(errors);
        }
        let spec = AccountSpec {
            name: name.expect("checked"),
            account_type: account_type.expect("checked"),
            priority: priority.expect("checked"),
            enabled: self.enabled.unwrap_or(true),
            host: host.expect("checked"),
            port: port.expect("checked"),
            security: security.expect("checked"),
            auth: auth.expect("checked"),
            username,
            from_email: from_email.expect("checked"),
            from_name,
            reply_to,
            microsoft365,
            tls_verify: self.tls_verify.unwrap_or(true),
            tls_fingerprint,
            limits,
            imap,
        };
        Ok((spec, secrets))
    }
}

fn errors_extend(check: &mut impl FnMut(Result<(), FieldError>), errs: Vec<FieldError>) {
    for e in errs {
        check(Err(e));
    }
}

fn parse_imap(input: &ImapInput) -> Result<ImapSpec, Vec<FieldError>> {
    let mut errors = Vec::new();
    let host = match input.host.as_deref() {
        None => Err(FieldError::required("host")),
        Some(h) => Hostname::parse("host", h),
    };
    let security = match input.security.as_deref() {
        Some(s) => Security::parse("security", s),
        None => match input.port {
            Some(993) | None => Ok(Security::Tls),
            Some(143) => Ok(Security::Starttls),
            Some(_) => Err(FieldError::required("security")),
        },
    };
    let port = match (input.port, &security) {
        (Some(p), _) => Port::parse("port", p),
        (None, Ok(Security::Tls)) => Ok(Port(993)),
        (None, _) => Ok(Port(143)),
    };
    let folder = input
        .folder
        .as_deref()
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .unwrap_or("INBOX");
    if folder.len() > 200 || folder.chars().any(char::is_control) {
        errors.push(FieldError::invalid(
            "folder",
            "The folder name must be at most 200 characters without line breaks.",
            "El nombre de la carpeta debe tener como máximo 200 caracteres y ningún salto de línea.",
        ));
    }
    let username = match &input.username {
        Some(Some(u)) if !u.trim().is_empty() => Some(u.trim().to_string()),
        _ => None,
    };
    if let Some(p) = input.password.as_ref().and_then(|p| p.as_deref())
        && (p.len() > 4096 || p.contains(['\r', '\n']))
    {
        errors.push(FieldError::invalid(
            "password",
            "The password must be at most 4096 characters without line breaks.",
            "La contraseña debe tener como máximo 4096 caracteres y ningún salto de línea.",
        ));
    }
    let (host, port, security) = match (host, port, security) {
        (Ok(h), Ok(p), Ok(s)) => (h, p, s),
        (h, p, s) => {
            errors.extend(h.err());
            errors.extend(p.err());
            errors.extend(s.err());
            return Err(errors.into_iter().map(|e| e.within("imap")).collect());
        }
    };
    if !errors.is_empty() {
        return Err(errors.into_iter().map(|e| e.within("imap")).collect());
    }
    Ok(ImapSpec {
        host,
        port,
        security,
        username,
        folder: folder.to_string(),
    })
}

/// Labels of letters, digits and hyphens, 1–63 each, 253 in all (RFC 1123 §2.1).
fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

/// A value as it may be quoted back in an error: bounded and without control characters.
fn shown(value: &str) -> String {
    let mut s: String = value
        .chars()
        .map(|c| if c.is_control() { '·' } else { c })
        .take(80)
        .collect();
    if value.chars().count() > 80 {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(json: &str) -> AccountInput {
        serde_json::from_str(json).unwrap()
    }

    fn fields(errs: Vec<FieldError>) -> Vec<String> {
        errs.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn full_account_parses() {
        let (spec, secrets) = input(
            r#"{"name": "Ventas", "type": "System", "priority": 10, "host": "SMTP.office365.com",
                "port": 587, "security": "starttls", "auth": "password",
                "username": "ventas@acme.example", "password": "pw",
                "from_email": "ventas@ACME.example", "from_name": "Acme Ventas",
                "microsoft365": true, "limits": {"per_minute": 30, "per_day": 10000},
                "imap": {"host": "outlook.office365.com", "port": 993, "security": "tls"}}"#,
        )
        .parse(false)
        .unwrap();
        assert_eq!(spec.host.as_str(), "smtp.office365.com");
        assert_eq!(spec.account_type.as_str(), "system");
        assert_eq!(spec.from_email.as_str(), "ventas@acme.example");
        assert_eq!(spec.limits.per_minute, Some(30));
        assert_eq!(spec.imap.unwrap().folder, "INBOX");
        assert_eq!(secrets.password, SecretChange::Set("pw".into()));
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let errs = input(
            r#"{"name": "", "port": 70000, "security": "ssl", "host": "smtp://x:25",
                "from_email": "nope", "priority": 5000000, "reply_to": "a b@c.d"}"#,
        )
        .parse(false)
        .unwrap_err();
        let f = fields(errs);
        for want in [
            "name",
            "port",
            "security",
            "host",
            "from_email",
            "priority",
            "reply_to",
        ] {
            assert!(f.contains(&want.to_string()), "{want} missing from {f:?}");
        }
    }

    #[test]
    fn preset_fills_server_settings_and_username() {
        let (spec, _) = input(
            r#"{"preset": "gmail", "name": "G", "from_email": "ana@gmail.com", "password": "app"}"#,
        )
        .parse(false)
        .unwrap();
        assert_eq!(spec.host.as_str(), "smtp.gmail.com");
        assert_eq!(spec.port.get(), 587);
        assert_eq!(spec.security, Security::Starttls);
        assert_eq!(spec.auth, AuthMethod::Password);
        assert_eq!(spec.username.as_deref(), Some("ana@gmail.com"));
        assert_eq!(spec.imap.unwrap().host.as_str(), "imap.gmail.com");
    }

    #[test]
    fn password_auth_needs_a_password() {
        let errs = input(
            r#"{"name": "x", "host": "h.example", "port": 587, "from_email": "a@b.example",
                "username": "u"}"#,
        )
        .parse(false)
        .unwrap_err();
        assert_eq!(fields(errs), vec!["password"]);
        // …unless one is already stored.
        assert!(
            input(
                r#"{"name": "x", "host": "h.example", "port": 587, "from_email": "a@b.example",
                    "username": "u"}"#
            )
            .parse(true)
            .is_ok()
        );
    }

    #[test]
    fn microsoft365_requires_starttls() {
        let errs = input(
            r#"{"name": "x", "host": "smtp.office365.com", "port": 465, "security": "tls",
                "from_email": "a@b.example", "microsoft365": true}"#,
        )
        .parse(false)
        .unwrap_err();
        assert_eq!(fields(errs), vec!["security"]);
    }

    #[test]
    fn xoauth2_is_refused_clearly() {
        let errs = input(
            r#"{"name": "x", "host": "h.example", "port": 587, "from_email": "a@b.example",
                "auth": "xoauth2"}"#,
        )
        .parse(false)
        .unwrap_err();
        assert_eq!(errs[0].code, "not_supported");
    }

    #[test]
    fn overlay_keeps_unnamed_fields_and_merges_imap() {
        let (spec, _) = input(
            r#"{"name": "A", "host": "h.example", "port": 465, "from_email": "a@b.example",
                "imap": {"host": "i.example", "folder": "Replies"}}"#,
        )
        .parse(false)
        .unwrap();
        let patched = AccountInput::from_spec(&spec).overlay(input(
            r#"{"priority": 3, "imap": {"port": 143}, "reply_to": null}"#,
        ));
        let (after, _) = patched.parse(false).unwrap();
        assert_eq!(after.priority, 3);
        assert_eq!(after.security, Security::Tls);
        let imap = after.imap.unwrap();
        assert_eq!((imap.port.get(), imap.folder.as_str()), (143, "Replies"));
    }

    #[test]
    fn email_addresses() {
        assert!(EmailAddress::parse("f", "ana.perez+x@acme.example").is_ok());
        for bad in [
            "ana",
            "@acme.example",
            "ana@",
            "ana@acme",
            "a b@c.example",
            "ana@acme.example\r\nBcc: x@y.z",
            "ana..p@acme.example",
        ] {
            assert!(EmailAddress::parse("f", bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn hosts_and_ports() {
        assert!(Hostname::parse("h", "127.0.0.1").is_ok());
        assert!(Hostname::parse("h", "[::1]").is_ok());
        assert!(Hostname::parse("h", "smtp.gmail.com.").is_ok());
        assert!(Hostname::parse("h", "smtp gmail").is_err());
        assert!(Hostname::parse("h", "-bad.example").is_err());
        assert!(Port::parse("p", 0).is_err());
        assert!(Port::parse("p", 65536).is_err());
        assert!(Port::parse("p", 65535).is_ok());
    }
}
