//! What the API answers: plain JSON shapes built from stored records. A secret never has a
//! field here — only `password_set`.

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;

use crate::domain::account::AccountSpec;
use crate::domain::i18n::Locale;
use crate::domain::presets::{Preset, UsernameRule};
use crate::store::AccountRecord;

pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LimitsView {
    pub per_minute: Option<u32>,
    pub per_hour: Option<u32>,
    pub per_day: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImapView {
    pub host: String,
    pub port: u16,
    /// `none`, `starttls` or `tls`.
    pub security: String,
    pub username: Option<String>,
    pub password_set: bool,
    pub folder: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LastTestView {
    pub at: String,
    pub ok: bool,
    pub code: Option<String>,
}

/// An SMTP account as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountView {
    /// Absent for the fallback account that comes from the environment.
    pub id: Option<String>,
    pub project: String,
    pub name: String,
    #[serde(rename = "type")]
    pub account_type: String,
    pub priority: i32,
    pub enabled: bool,
    pub host: String,
    pub port: u16,
    /// `none`, `starttls` or `tls` (implicit TLS).
    pub security: String,
    /// `none`, `password` or `xoauth2`.
    pub auth: String,
    pub username: Option<String>,
    /// Whether a password is stored. The password itself is never returned.
    pub password_set: bool,
    pub from_email: String,
    pub from_name: Option<String>,
    pub reply_to: Option<String>,
    pub microsoft365: bool,
    pub tls_verify: bool,
    /// The pinned SHA-256 fingerprint of the server certificate, if any.
    pub tls_fingerprint: Option<String>,
    pub limits: LimitsView,
    pub imap: Option<ImapView>,
    pub last_test: Option<LastTestView>,
    /// Messages sent through the account since 00:00 UTC (counted against `limits.per_day`).
    pub sent_today: Option<i64>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
}

impl AccountView {
    pub fn from_spec(
        project: &str,
        spec: &AccountSpec,
        password_set: bool,
        imap_password_set: bool,
    ) -> AccountView {
        AccountView {
            id: None,
            project: project.to_string(),
            name: spec.name.clone(),
            account_type: spec.account_type.as_str().to_string(),
            priority: spec.priority,
            enabled: spec.enabled,
            host: spec.host.to_string(),
            port: spec.port.get(),
            security: spec.security.as_str().to_string(),
            auth: spec.auth.as_str().to_string(),
            username: spec.username.clone(),
            password_set,
            from_email: spec.from_email.to_string(),
            from_name: spec.from_name.clone(),
            reply_to: spec.reply_to.as_ref().map(ToString::to_string),
            microsoft365: spec.microsoft365,
            tls_verify: spec.tls_verify,
            tls_fingerprint: spec.tls_fingerprint.clone(),
            limits: LimitsView {
                per_minute: spec.limits.per_minute,
                per_hour: spec.limits.per_hour,
                per_day: spec.limits.per_day,
            },
            imap: spec.imap.as_ref().map(|i| ImapView {
                host: i.host.to_string(),
                port: i.port.get(),
                security: i.security.as_str().to_string(),
                username: i.username.clone(),
                password_set: imap_password_set,
                folder: i.folder.clone(),
            }),
            last_test: None,
            sent_today: None,
            created_at: None,
            updated_at: None,
        }
    }
}

impl From<&AccountRecord> for AccountView {
    fn from(r: &AccountRecord) -> AccountView {
        AccountView {
            id: Some(r.id.clone()),
            last_test: r.last_test.as_ref().map(|t| LastTestView {
                at: rfc3339(t.at),
                ok: t.ok,
                code: t.code.clone(),
            }),
            created_at: Some(rfc3339(r.created_at)),
            updated_at: Some(rfc3339(r.updated_at)),
            ..AccountView::from_spec(
                &r.project_id,
                &r.spec,
                r.password_sealed.is_some(),
                r.imap_password_sealed.is_some(),
            )
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointView {
    pub host: String,
    pub port: u16,
    pub security: String,
}

/// A provider's settings, ready to fill an account form (`"preset": id` on creation).
#[derive(Debug, Serialize, ToSchema)]
pub struct PresetView {
    pub id: String,
    pub name: String,
    pub smtp: EndpointView,
    pub imap: Option<EndpointView>,
    /// `email_address` (the full address), `fixed` (see `username`) or `provider_credential`.
    pub username_rule: String,
    /// The username to use when the rule is `fixed` (SendGrid: `apikey`).
    pub username: Option<String>,
    pub microsoft365: bool,
    /// The note in the request's language.
    pub note: String,
    pub note_en: String,
    pub note_es: String,
}

impl PresetView {
    pub fn new(p: &Preset, locale: Locale) -> PresetView {
        let endpoint = |e: &crate::domain::presets::Endpoint| EndpointView {
            host: e.host.to_string(),
            port: e.port,
            security: e.security.as_str().to_string(),
        };
        let (rule, username) = match p.username {
            UsernameRule::EmailAddress => ("email_address", None),
            UsernameRule::Fixed(u) => ("fixed", Some(u.to_string())),
            UsernameRule::ProviderCredential => ("provider_credential", None),
        };
        PresetView {
            id: p.id.to_string(),
            name: p.name.to_string(),
            smtp: endpoint(&p.smtp),
            imap: p.imap.as_ref().map(endpoint),
            username_rule: rule.to_string(),
            username,
            microsoft365: p.microsoft365,
            note: match locale {
                Locale::En => p.note_en,
                Locale::Es => p.note_es,
            }
            .to_string(),
            note_en: p.note_en.to_string(),
            note_es: p.note_es.to_string(),
        }
    }
}

/// The system fallback account in effect, and where it comes from.
#[derive(Debug, Serialize, ToSchema)]
pub struct FallbackView {
    /// `api` (stored through `/v1/system/fallback`, wins), `environment`
    /// (`CARTERO_FALLBACK_SMTP_URL`) or `none`.
    pub source: String,
    pub account: Option<AccountView>,
}

/// A diagnosis in the request's language.
#[derive(Debug, Serialize, ToSchema)]
pub struct DiagnosisView {
    /// Stable code, e.g. `auth_failed`, `wrong_security_for_port`, `rate_limited`.
    pub code: String,
    pub message: String,
    pub fix: String,
    /// Whether retrying later may succeed.
    pub transient: bool,
    /// The server's reply, verbatim, when there was one.
    pub reply: Option<String>,
}

impl DiagnosisView {
    pub fn new(d: &crate::domain::diagnosis::Diagnosis, locale: Locale) -> DiagnosisView {
        DiagnosisView {
            code: d.code.as_str().to_string(),
            message: d.message.get(locale).to_string(),
            fix: d.fix.get(locale).to_string(),
            transient: d.transient,
            reply: d.reply.clone(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StageView {
    /// `dns`, `connect`, `tls`, `greeting`, `ehlo`, `starttls`, `auth`, `mail_from`,
    /// `rcpt_to`, `data` or `imap`.
    pub name: String,
    pub ok: bool,
    pub ms: u64,
    pub detail: Option<String>,
}

impl StageView {
    pub fn new(s: &crate::probe::StageReport) -> StageView {
        StageView {
            name: s.name.as_str().to_string(),
            ok: s.ok,
            ms: s.ms,
            detail: s.detail.clone(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CertificateView {
    pub subject: String,
    pub issuer: String,
    pub not_after: String,
    /// Ready to copy into `tls_fingerprint` to pin this certificate.
    pub sha256: String,
    pub self_signed: bool,
}

/// The result of Probar / Test.
#[derive(Debug, Serialize, ToSchema)]
pub struct TestView {
    pub ok: bool,
    pub stages: Vec<StageView>,
    pub diagnosis: Option<DiagnosisView>,
    /// "Correo enviado satisfactoriamente" / "Test email sent successfully", or what failed.
    pub message: String,
    /// The SMTP conversation, credentials masked.
    pub transcript: Vec<String>,
    pub certificate: Option<CertificateView>,
    pub warnings: Vec<String>,
    /// The Message-ID of the test email, when one was sent.
    pub message_id: Option<String>,
}

impl TestView {
    pub fn new(r: &crate::probe::ProbeReport, locale: Locale) -> TestView {
        TestView {
            ok: r.ok,
            stages: r.stages.iter().map(StageView::new).collect(),
            diagnosis: r.diagnosis.as_ref().map(|d| DiagnosisView::new(d, locale)),
            message: r.message.get(locale).to_string(),
            transcript: r.transcript.clone(),
            certificate: r.certificate.as_ref().map(|c| CertificateView {
                subject: c.subject.clone(),
                issuer: c.issuer.clone(),
                not_after: c.not_after.clone(),
                sha256: c.sha256.clone(),
                self_signed: c.self_signed,
            }),
            warnings: r
                .warnings
                .iter()
                .map(|w| w.get(locale).to_string())
                .collect(),
            message_id: r.message_id.clone(),
        }
    }
}
