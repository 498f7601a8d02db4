//! The one classifier: what went wrong talking to a mail server, what a person should do about
//! it (in es and en), and whether a delivery should retry.
//!
//! The connection test (Probar) and delivery both call [`diagnose`]; there is no second table
//! of reply codes anywhere. Replies are read by their basic code (RFC 5321 §4.2), their
//! enhanced status code (RFC 3463) and, for the providers whose replies matter most, their
//! text (Gmail's `534-5.7.9`, Microsoft's `535 5.7.139`, SES's throttling…).

use std::fmt;

use serde::Serialize;

use super::account::{AuthMethod, Security};
use super::i18n::Text;

/// The steps of a conversation with a mail server, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Dns,
    Connect,
    Tls,
    Greeting,
    Ehlo,
    Starttls,
    Auth,
    MailFrom,
    RcptTo,
    Data,
    Imap,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Dns => "dns",
            Stage::Connect => "connect",
            Stage::Tls => "tls",
            Stage::Greeting => "greeting",
            Stage::Ehlo => "ehlo",
            Stage::Starttls => "starttls",
            Stage::Auth => "auth",
            Stage::MailFrom => "mail_from",
            Stage::RcptTo => "rcpt_to",
            Stage::Data => "data",
            Stage::Imap => "imap",
        }
    }

    pub fn parse(s: &str) -> Option<Stage> {
        [
            Stage::Dns,
            Stage::Connect,
            Stage::Tls,
            Stage::Greeting,
            Stage::Ehlo,
            Stage::Starttls,
            Stage::Auth,
            Stage::MailFrom,
            Stage::RcptTo,
            Stage::Data,
            Stage::Imap,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Stable diagnosis codes: API clients and the UI branch on these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DiagnosisCode {
    DnsNotFound,
    ConnectionRefused,
    ConnectionTimeout,
    ServerUnavailable,
    WrongSecurityForPort,
    StarttlsUnsupported,
    CertificateInvalid,
    AuthUnsupported,
    AuthRequired,
    AuthFailed,
    WebLoginRequired,
    AuthDisabledByProvider,
    SenderRejected,
    RecipientRejected,
    RateLimited,
    MessageRejected,
    MessageTooLarge,
    DestinationNotAllowed,
    TemporaryFailure,
    ImapFailed,
    ProtocolError,
}

impl DiagnosisCode {
    pub const ALL: [DiagnosisCode; 21] = [
        DiagnosisCode::DnsNotFound,
        DiagnosisCode::ConnectionRefused,
        DiagnosisCode::ConnectionTimeout,
        DiagnosisCode::ServerUnavailable,
        DiagnosisCode::WrongSecurityForPort,
        DiagnosisCode::StarttlsUnsupported,
        DiagnosisCode::CertificateInvalid,
        DiagnosisCode::AuthUnsupported,
        DiagnosisCode::AuthRequired,
        DiagnosisCode::AuthFailed,
        DiagnosisCode::WebLoginRequired,
        DiagnosisCode::AuthDisabledByProvider,
        DiagnosisCode::SenderRejected,
        DiagnosisCode::RecipientRejected,
        DiagnosisCode::RateLimited,
        DiagnosisCode::MessageRejected,
        DiagnosisCode::MessageTooLarge,
        DiagnosisCode::DestinationNotAllowed,
        DiagnosisCode::TemporaryFailure,
        DiagnosisCode::ImapFailed,
        DiagnosisCode::ProtocolError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DiagnosisCode::DnsNotFound => "dns_not_found",
            DiagnosisCode::ConnectionRefused => "connection_refused",
            DiagnosisCode::ConnectionTimeout => "connection_timeout",
            DiagnosisCode::ServerUnavailable => "server_unavailable",
            DiagnosisCode::WrongSecurityForPort => "wrong_security_for_port",
            DiagnosisCode::StarttlsUnsupported => "starttls_unsupported",
            DiagnosisCode::CertificateInvalid => "certificate_invalid",
            DiagnosisCode::AuthUnsupported => "auth_unsupported",
            DiagnosisCode::AuthRequired => "auth_required",
            DiagnosisCode::AuthFailed => "auth_failed",
            DiagnosisCode::WebLoginRequired => "web_login_required",
            DiagnosisCode::AuthDisabledByProvider => "auth_disabled_by_provider",
            DiagnosisCode::SenderRejected => "sender_rejected",
            DiagnosisCode::RecipientRejected => "recipient_rejected",
            DiagnosisCode::RateLimited => "rate_limited",
            DiagnosisCode::MessageRejected => "message_rejected",
            DiagnosisCode::MessageTooLarge => "message_too_large",
            DiagnosisCode::DestinationNotAllowed => "destination_not_allowed",
            DiagnosisCode::TemporaryFailure => "temporary_failure",
            DiagnosisCode::ImapFailed => "imap_failed",
            DiagnosisCode::ProtocolError => "protocol_error",
        }
    }

    pub fn parse(s: &str) -> Option<DiagnosisCode> {
        DiagnosisCode::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for DiagnosisCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An SMTP reply: basic code, enhanced code if any, and the text of all its lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpReply {
    pub code: u16,
    /// RFC 3463 `class.subject.detail`, e.g. (5, 7, 139).
    pub enhanced: Option<(u8, u16, u16)>,
    /// The reply lines without their code prefixes, joined with `\n`.
    pub text: String,
}

impl SmtpReply {
    pub fn new(code: u16, enhanced: Option<(u8, u16, u16)>, text: impl Into<String>) -> SmtpReply {
        SmtpReply {
            code,
            enhanced,
            text: text.into(),
        }
    }

    /// Parses a reply as sent on the wire (`534-5.7.9 …\r\n534 5.7.9 …`). Returns `None`
    /// when the first line has no three-digit code.
    pub fn parse(raw: &str) -> Option<SmtpReply> {
        let mut code = None;
        let mut enhanced = None;
        let mut texts = Vec::new();
        for line in raw.lines().map(|l| l.trim_end_matches('\r')) {
            let digits = line.get(..3)?;
            let this: u16 = digits.parse().ok().filter(|c| (200..600).contains(c))?;
            if *code.get_or_insert(this) != this {
                return None;
            }
            let rest = line.get(3..).unwrap_or("");
            let rest = rest.strip_prefix(['-', ' ']).unwrap_or(rest);
            let (esc, text) = split_enhanced(rest);
            if enhanced.is_none() {
                enhanced = esc;
            }
            texts.push(text.trim().to_string());
        }
        Some(SmtpReply {
            code: code?,
            enhanced,
            text: texts.join("\n"),
        })
    }

    pub fn enhanced_str(&self) -> Option<String> {
        self.enhanced.map(|(a, b, c)| format!("{a}.{b}.{c}"))
    }

    /// One line for people and logs: `535 5.7.8 Authentication credentials invalid`.
    pub fn summary(&self) -> String {
        let mut s = self.code.to_string();
        if let Some(e) = self.enhanced_str() {
            s.push(' ');
            s.push_str(&e);
        }
        let text = self.text.replace('\n', " ");
        if !text.is_empty() {
            s.push(' ');
            s.push_str(&text);
        }
        s
    }
}

fn split_enhanced(text: &str) -> (Option<(u8, u16, u16)>, &str) {
    let (first, rest) = text.split_once(' ').unwrap_or((text, ""));
    let mut parts = first.split('.');
    let parsed = (|| {
        let a: u8 = parts.next()?.parse().ok()?;
        let b: u16 = parts.next()?.parse().ok()?;
        let c: u16 = parts.next()?.parse().ok()?;
        if parts.next().is_some() || !(2..=5).contains(&a) {
            return None;
        }
        Some((a, b, c))
    })();
    match parsed {
        Some(e) => (Some(e), rest),
        None => (None, text),
    }
}

/// What the certificate check found wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CertificateProblem {
    Expired,
    NotYetValid,
    SelfSigned,
    UnknownIssuer,
    NameMismatch,
    FingerprintMismatch,
    Other(String),
}

/// Everything that can go wrong, as the connection code observed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    DnsNotFound,
    DnsError(String),
    ConnectionRefused,
    /// The TCP connection did not complete in time.
    ConnectTimeout,
    /// Connected, but the server never spoke (`implicit_tls` when a TLS handshake on the same
    /// port then worked: the port expects implicit TLS).
    GreetingTimeout {
        implicit_tls: bool,
    },
    /// No reply in time at a later stage.
    ReplyTimeout(Stage),
    /// The account says implicit TLS but the server answered in plain text.
    PlainTextWhereTlsExpected,
    Certificate(CertificateProblem),
    TlsError(String),
    StarttlsNotOffered,
    /// `auth: password` but no password is stored.
    MissingPassword,
    /// The server offers no AUTH mechanism cartero can use (`offered` may be empty).
    AuthNotOffered {
        offered: Vec<String>,
    },
    /// The connection closed or failed at a stage.
    ConnectionLost {
        stage: Stage,
        error: String,
    },
    Reply {
        stage: Stage,
        reply: SmtpReply,
    },
    Unparseable {
        stage: Stage,
        raw: String,
    },
    DestinationNotAllowed {
        address: String,
    },
    Imap {
        reason: String,
    },
}

/// The account facts that sharpen a diagnosis.
#[derive(Debug, Clone)]
pub struct Context {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub auth: AuthMethod,
}

impl Context {
    fn provider(&self) -> Option<Provider> {
        Provider::from_host(&self.host)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Provider {
    Google,
    Microsoft,
    Yahoo,
    Zoho,
    Icloud,
}

impl Provider {
    fn from_host(host: &str) -> Option<Provider> {
        let h = host.to_ascii_lowercase();
        if h.ends_with("gmail.com") || h.ends_with("google.com") || h.ends_with("googlemail.com") {
            Some(Provider::Google)
        } else if h.ends_with("office365.com") || h.ends_with("outlook.com") {
            Some(Provider::Microsoft)
        } else if h.contains("yahoo.") {
            Some(Provider::Yahoo)
        } else if h.contains("zoho.") {
            Some(Provider::Zoho)
        } else if h.ends_with("mail.me.com") || h.ends_with("icloud.com") {
            Some(Provider::Icloud)
        } else {
            None
        }
    }

    fn app_password_hint(self) -> Text {
        match self {
            Provider::Google => Text::new(
                "Gmail / Google Workspace: with 2-Step Verification on, create an app password (Google Account → Security → App passwords) and use it instead of the normal password.",
                "Gmail / Google Workspace: con la verificación en dos pasos activada, cree una contraseña de aplicación (Cuenta de Google → Seguridad → Contraseñas de aplicaciones) y úsela en lugar de la contraseña normal.",
            ),
            Provider::Microsoft => Text::new(
                "Microsoft 365 / Outlook: the username is the full mailbox address; with multi-factor authentication on, use an app password, and check that SMTP AUTH is enabled for the mailbox.",
                "Microsoft 365 / Outlook: el usuario es la dirección completa del buzón; con la autenticación multifactor activada, use una contraseña de aplicación y compruebe que SMTP AUTH está habilitado para el buzón.",
            ),
            Provider::Yahoo => Text::new(
                "Yahoo: generate an app password (Account Security → Generate app password) and use it.",
                "Yahoo: genere una contraseña de aplicación (Seguridad de la cuenta → Generar contraseña de aplicación) y úsela.",
            ),
            Provider::Zoho => Text::new(
                "Zoho: with two-factor authentication on, create an application-specific password; check that the data centre (.com / .eu) matches the account.",
                "Zoho: con la autenticación en dos pasos activada, cree una contraseña específica de aplicación; compruebe que el centro de datos (.com / .eu) coincide con la cuenta.",
            ),
            Provider::Icloud => Text::new(
                "iCloud: create an app-specific password at appleid.apple.com and use the full iCloud address as username.",
                "iCloud: cree una contraseña específica de app en appleid.apple.com y use la dirección completa de iCloud como usuario.",
            ),
        }
    }
}

/// The verdict on a failure: a stable code, whether to retry, and what to tell a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnosis {
    pub code: DiagnosisCode,
    /// Retrying later may succeed (4xx, timeouts, throttling, quotas that reset).
    pub transient: bool,
    pub message: Text,
    pub fix: Text,
    /// The server's reply, verbatim, when there was one.
    pub reply: Option<String>,
}

fn has(text: &str, needles: &[&str]) -> bool {
    let t = text.to_ascii_lowercase();
    needles.iter().any(|n| t.contains(n))
}

/// Decides the diagnosis code and transience of a reply (the table behind [`diagnose`]).
///
/// Rules are tried in order, most specific first: provider texts and enhanced codes that
/// mean one thing, then the basic code by stage (RFC 5321 §4.2.1: 4yz transient, 5yz
/// permanent). `tests/golden/smtp_replies.tsv` holds the real replies this is tested against.
pub fn classify_reply(stage: Stage, reply: &SmtpReply, auth: AuthMethod) -> (DiagnosisCode, bool) {
    use DiagnosisCode::*;
    let e = reply.enhanced;
    let text = reply.text.as_str();
    let code = reply.code;
    let transient = (400..500).contains(&code);
    let is = |needles: &[&str]| has(text, needles);

    // 421 at the greeting: the server will not talk now (RFC 5321 §3.8).
    if stage == Stage::Greeting && code == 421 {
        return (ServerUnavailable, true);
    }
    // Authentication: Google wants an app password or a browser sign-in.
    if stage == Stage::Auth
        && (matches!(e, Some((5, 7, 9)) | Some((5, 7, 14)))
            || is(&[
                "application-specific password required",
                "log in via your web browser",
                "invalidsecondfactor",
            ]))
    {
        return (WebLoginRequired, false);
    }
    // Microsoft's 5.7.139 and other "sign-in disabled by the provider" replies.
    if e == Some((5, 7, 139)) && is(&["credentials were incorrect"]) {
        return (AuthFailed, false);
    }
    if e == Some((5, 7, 139))
        || is(&[
            "smtpclientauthentication is disabled",
            "smtp_auth_disabled",
            "security defaults",
            "account disabled",
            "account is disabled",
            "locked by",
        ])
    {
        return (AuthDisabledByProvider, false);
    }
    if is(&[
        "must issue a starttls",
        "starttls command first",
        "encryption required",
    ]) {
        return (WrongSecurityForPort, false);
    }
    if stage == Stage::Starttls && code >= 400 {
        return (StarttlsUnsupported, transient);
    }
    // Refusals of the sending IP or host (blocklists, reverse DNS): the content never counted.
    if is(&[
        "block list",
        "blocklist",
        "black list",
        "blacklist",
        "blocked using",
        "spamhaus",
        "[bl21]",
        "permanently deferred",
        "ptr resource record",
        "administrative prohibition",
    ]) {
        return (MessageRejected, false);
    }
    if is(&["greylist"]) {
        return (TemporaryFailure, true);
    }
    if is(&["client host rejected"]) {
        return (
            if transient {
                TemporaryFailure
            } else {
                MessageRejected
            },
            transient,
        );
    }
    // Throttling and quotas: transient even when sent as 5xx (Gmail's daily quota resets).
    if is(&["unusual sending activity"]) {
        return (RateLimited, false);
    }
    if e == Some((5, 4, 5))
        || e == Some((4, 7, 28))
        || is(&[
            "throttl",
            "rate limit",
            "sending limit",
            "sending quota",
            "quota exceeded",
            "quotaexceeded",
            "daily user sending",
            "too many login attempts",
            "too many connections",
            "too many concurrent",
            "too many recipients",
            "unusual rate",
            "temporarily deferred",
            "[tss04]",
            "maximum credits exceeded",
            "maximum sending rate",
        ])
    {
        return (RateLimited, true);
    }
    // Who may send as whom.
    if matches!(e, Some((5, 2, 252)) | Some((5, 7, 60)))
        || is(&[
            "sendasdenied",
            "send as this sender",
            "not owned by user",
            "disallowed as",
            "not verified",
            "verified sender identity",
            "not authorized to perform",
            "sender verify failed",
            "verification failed for",
            "same as authorization",
        ])
    {
        return (SenderRejected, transient);
    }
    if code == 530
        || e == Some((5, 7, 57))
        || is(&[
            "authentication required",
            "not authenticated",
            "auth is required",
            "authentication is required",
            "unauthenticated senders",
            "not logged in",
        ])
    {
        return (AuthRequired, false);
    }
    if is(&[
        "relay access denied",
        "relaying denied",
        "relay not permitted",
    ]) {
        return if auth == AuthMethod::None {
            (AuthRequired, false)
        } else {
            (RecipientRejected, transient)
        };
    }
    if is(&["sender address rejected"]) {
        return (SenderRejected, transient);
    }
    if stage != Stage::MailFrom
        && is(&[
            "user unknown",
            "no such user",
            "does not exist",
            "doesn't have a",
            "recipient address rejected",
            "recipientnotfound",
            "mailbox unavailable",
            "no valid recipients",
            "rcpt commands were rejected",
        ])
    {
        return (RecipientRejected, transient);
    }
    if code == 552
        || matches!(e, Some((5, 3, 4)) | Some((5, 2, 3)))
        || is(&[
            "size exceeds",
            "message size",
            "too big",
            "too large",
            "too long",
        ])
    {
        return (MessageTooLarge, false);
    }
    if stage == Stage::Auth
        && (matches!(code, 503 | 504)
            || matches!(e, Some((5, 7, 4)) | Some((5, 5, 4)))
            || is(&[
                "when not advertised",
                "unrecognized authentication type",
                "authentication mechanism",
            ]))
    {
        return (AuthUnsupported, false);
    }
    if is(&["temporary authentication failure"]) {
        return (TemporaryFailure, true);
    }
    if code == 454 || (matches!(code, 421 | 450 | 451 | 452) && matches!(e, Some((4, 7, _)))) {
        return (RateLimited, true);
    }
    if stage == Stage::Auth
        && (code == 535
            || code == 534
            || matches!(e, Some((5, 7, 8)) | Some((5, 7, 3)) | Some((5, 7, 0))))
    {
        return (AuthFailed, false);
    }
    // Syntax and sequence errors (5.5.x, 500–504, 555): cartero or the server misspoke.
    // An enhanced code outside 5.5.x says the refusal is about something else.
    if matches!(e, Some((5, 5, _))) || e.is_none() && matches!(code, 500..=504 | 555) {
        return (ProtocolError, false);
    }

    // Then by stage and class.
    match (stage, code) {
        (Stage::Greeting, 554) => (ServerUnavailable, false),
        (_, 421) => (ServerUnavailable, true),
        (_, 400..=499) if stage != Stage::Auth || code != 432 => (TemporaryFailure, true),
        (Stage::MailFrom, 500..=599) => (SenderRejected, false),
        (Stage::RcptTo, 500..=599) => (RecipientRejected, false),
        (Stage::Data, 500..=599) => (MessageRejected, false),
        (Stage::Auth, 400..=599) => (AuthFailed, transient),
        _ => (ProtocolError, false),
    }
}

/// Explains a failure: code, transience, message and fix in both languages.
pub fn diagnose(failure: &Failure, ctx: &Context) -> Diagnosis {
    use DiagnosisCode::*;
    let host = &ctx.host;
    let port = ctx.port;
    let make = |code, transient, message: Text, fix: Text, reply: Option<String>| Diagnosis {
        code,
        transient,
        message,
        fix,
        reply,
    };
    match failure {
        Failure::DnsNotFound => make(
            DnsNotFound,
            false,
            Text::new(
                format!("The server name `{host}` does not exist in DNS."),
                format!("El nombre de servidor «{host}» no existe en el DNS."),
            ),
            Text::new(
                "Check the spelling of the SMTP server (e.g. smtp.gmail.com, smtp.office365.com) or pick a preset.",
                "Revise cómo está escrito el servidor SMTP (p. ej. smtp.gmail.com, smtp.office365.com) o elija un preajuste.",
            ),
            None,
        ),
        Failure::DnsError(why) => make(
            DnsNotFound,
            true,
            Text::new(
                format!("The name `{host}` could not be resolved: {why}."),
                format!("No se pudo resolver el nombre «{host}»: {why}."),
            ),
            Text::new(
                "Check that this machine can reach its DNS servers, then try again.",
                "Compruebe que esta máquina llega a sus servidores DNS y vuelva a intentarlo.",
            ),
            None,
        ),
        Failure::ConnectionRefused => make(
            ConnectionRefused,
            true,
            Text::new(
                format!("{host} refused the connection on port {port}: nothing listens there."),
                format!("{host} rechazó la conexión en el puerto {port}: nada escucha ahí."),
            ),
            Text::new(
                "Check the port: 587 for STARTTLS, 465 for SSL/TLS, 25 for plain relays. If the port is right, the mail server is down.",
                "Revise el puerto: 587 para STARTTLS, 465 para SSL/TLS, 25 para relés sin cifrar. Si el puerto es correcto, el servidor de correo está caído.",
            ),
            None,
        ),
        Failure::ConnectTimeout => make(
            ConnectionTimeout,
            true,
            Text::new(
                format!("No answer from {host} on port {port}: the connection timed out."),
                format!(
                    "Sin respuesta de {host} en el puerto {port}: la conexión agotó el tiempo de espera."
                ),
            ),
            Text::new(
                "A firewall is probably blocking the port (many hosting providers block 25 and 465), or the port is wrong. Try 587, or ask the network administrator to open it.",
                "Probablemente un cortafuegos bloquea el puerto (muchos proveedores de hosting bloquean el 25 y el 465), o el puerto es incorrecto. Pruebe el 587 o pida al administrador de red que lo abra.",
            ),
            None,
        ),
        Failure::GreetingTimeout { implicit_tls: true } => wrong_security(ctx, Security::Tls),
        Failure::GreetingTimeout {
            implicit_tls: false,
        } => make(
            ConnectionTimeout,
            true,
            Text::new(
                format!("{host}:{port} accepted the connection but never answered."),
                format!("{host}:{port} aceptó la conexión pero nunca respondió."),
            ),
            Text::new(
                "The port is probably wrong or filtered by a firewall that holds connections open: check the port and the encryption method with your provider.",
                "Probablemente el puerto es incorrecto o lo filtra un cortafuegos que retiene las conexiones: revise el puerto y el método de encriptación con su proveedor.",
            ),
            None,
        ),
        Failure::ReplyTimeout(stage) => make(
            ConnectionTimeout,
            true,
            Text::new(
                format!("{host} stopped answering during {stage}."),
                format!("{host} dejó de responder durante {stage}."),
            ),
            Text::new(
                "The server or the network is overloaded: try again in a few minutes.",
                "El servidor o la red están sobrecargados: vuelva a intentarlo en unos minutos.",
            ),
            None,
        ),
        Failure::PlainTextWhereTlsExpected => wrong_security(
            ctx,
            if port == 25 {
                Security::None
            } else {
                Security::Starttls
            },
        ),
        Failure::Certificate(problem) => {
            let (en, es) = match problem {
                CertificateProblem::Expired => {
                    ("has expired".to_string(), "ha caducado".to_string())
                }
                CertificateProblem::NotYetValid => (
                    "is not valid yet (check this machine's clock)".into(),
                    "aún no es válido (revise el reloj de esta máquina)".into(),
                ),
                CertificateProblem::SelfSigned => {
                    ("is self-signed".into(), "es autofirmado".into())
                }
                CertificateProblem::UnknownIssuer => (
                    "was issued by an authority this machine does not trust".into(),
                    "lo emitió una autoridad en la que esta máquina no confía".into(),
                ),
                CertificateProblem::NameMismatch => (
                    format!("is not valid for the name `{host}`"),
                    format!("no es válido para el nombre «{host}»"),
                ),
                CertificateProblem::FingerprintMismatch => (
                    "does not match the pinned SHA-256 fingerprint".into(),
                    "no coincide con la huella SHA-256 fijada".into(),
                ),
                CertificateProblem::Other(why) => (
                    format!("was refused: {why}"),
                    format!("fue rechazado: {why}"),
                ),
            };
            let fix = match problem {
                CertificateProblem::NameMismatch => Text::new(
                    "Use the host name the certificate names (shown in the TLS stage), e.g. the provider's smtp.… name rather than an IP address or an alias.",
                    "Use el nombre de servidor que figura en el certificado (se muestra en la etapa TLS), p. ej. el nombre smtp.… del proveedor en lugar de una IP o un alias.",
                ),
                CertificateProblem::Expired | CertificateProblem::NotYetValid => Text::new(
                    "The server's administrator must renew its certificate. Until then you may pin its SHA-256 fingerprint (shown in the TLS stage) — safer than turning verification off.",
                    "El administrador del servidor debe renovar su certificado. Mientras tanto puede fijar su huella SHA-256 (se muestra en la etapa TLS), más seguro que desactivar la verificación.",
                ),
                CertificateProblem::FingerprintMismatch => Text::new(
                    "The server presents a different certificate than the pinned one: if it was renewed, copy the new fingerprint from the TLS stage; if not, someone may be intercepting the connection.",
                    "El servidor presenta un certificado distinto del fijado: si se renovó, copie la nueva huella de la etapa TLS; si no, alguien podría estar interceptando la conexión.",
                ),
                _ => Text::new(
                    "For a server with an internal CA, give cartero the CA (CARTERO_TLS_CA_FILE) or pin the certificate's SHA-256 fingerprint (shown in the TLS stage); turn verification off only as a last resort.",
                    "Para un servidor con una CA interna, indique la CA a cartero (CARTERO_TLS_CA_FILE) o fije la huella SHA-256 del certificado (se muestra en la etapa TLS); desactive la verificación solo como último recurso.",
                ),
            };
            make(
                CertificateInvalid,
                false,
                Text::new(
                    format!("The TLS certificate of {host} {en}."),
                    format!("El certificado TLS de {host} {es}."),
                ),
                fix,
                None,
            )
        }
        Failure::TlsError(why) => make(
            CertificateInvalid,
            false,
            Text::new(
                format!("The TLS handshake with {host} failed: {why}."),
                format!("Falló la negociación TLS con {host}: {why}."),
            ),
            Text::new(
                "The server may only offer outdated TLS versions or ciphers; check the encryption method and port with the provider.",
                "Es posible que el servidor solo ofrezca versiones o cifrados TLS obsoletos; revise el método de encriptación y el puerto con el proveedor.",
            ),
            None,
        ),
        Failure::StarttlsNotOffered => make(
            StarttlsUnsupported,
            false,
            Text::new(
                format!("{host}:{port} does not offer STARTTLS."),
                format!("{host}:{port} no ofrece STARTTLS."),
            ),
            Text::new(
                "If the provider uses SSL/TLS, choose encryption `tls` with port 465. Choose `none` only for a relay on a trusted network: passwords would travel in clear text.",
                "Si el proveedor usa SSL/TLS, elija la encriptación `tls` con el puerto 465. Elija `none` solo para un relé en una red de confianza: las contraseñas viajarían sin cifrar.",
            ),
            None,
        ),
        Failure::MissingPassword => make(
            AuthFailed,
            false,
            Text::new(
                "The account uses password authentication but no password is stored.",
                "La cuenta usa autenticación con contraseña pero no tiene ninguna guardada.",
            ),
            Text::new(
                "Type the password and save it again.",
                "Escriba la contraseña y vuelva a guardarla.",
            ),
            None,
        ),
        Failure::AuthNotOffered { offered } => {
            let list = if offered.is_empty() {
                "none".to_string()
            } else {
                offered.join(", ")
            };
            let (en_fix, es_fix) = if ctx.security == Security::None && offered.is_empty() {
                (
                    "Many servers offer AUTH only over an encrypted connection: choose `starttls` (port 587) or `tls` (port 465). For an unauthenticated relay, set auth to `none`.",
                    "Muchos servidores solo ofrecen AUTH sobre una conexión cifrada: elija `starttls` (puerto 587) o `tls` (puerto 465). Para un relé sin autenticación, ponga la autenticación en `none`.",
                )
            } else {
                (
                    "The server offers no password mechanism cartero speaks (PLAIN, LOGIN): check the port (587 is the submission port) or set auth to `none` for an unauthenticated relay.",
                    "El servidor no ofrece ningún mecanismo de contraseña que cartero hable (PLAIN, LOGIN): revise el puerto (587 es el de envío) o ponga la autenticación en `none` para un relé sin autenticación.",
                )
            };
            make(
                AuthUnsupported,
                false,
                Text::new(
                    format!("{host} offers no usable authentication (offered: {list})."),
                    format!("{host} no ofrece una autenticación utilizable (ofrece: {list})."),
                ),
                Text::new(en_fix, es_fix),
                None,
            )
        }
        Failure::ConnectionLost { stage, error } => make(
            if *stage == Stage::Tls {
                CertificateInvalid
            } else {
                ServerUnavailable
            },
            true,
            Text::new(
                format!("The connection to {host} was lost during {stage}: {error}."),
                format!("Se perdió la conexión con {host} durante {stage}: {error}."),
            ),
            Text::new(
                "Try again; if it keeps happening, check the port and encryption method — a wrong one often makes servers hang up.",
                "Vuelva a intentarlo; si se repite, revise el puerto y el método de encriptación: uno incorrecto suele hacer que el servidor corte.",
            ),
            None,
        ),
        Failure::Unparseable { stage, raw } => make(
            ProtocolError,
            false,
            Text::new(
                format!("{host} answered something that is not SMTP during {stage}."),
                format!("{host} respondió algo que no es SMTP durante {stage}."),
            ),
            Text::new(
                "Check that host and port are those of an SMTP server (not IMAP, POP3 or a web server).",
                "Compruebe que el servidor y el puerto son los de un servidor SMTP (no IMAP, POP3 ni un servidor web).",
            ),
            Some(raw.chars().take(500).collect()),
        ),
        Failure::DestinationNotAllowed { address } => make(
            DestinationNotAllowed,
            false,
            Text::new(
                format!(
                    "{host} resolves to {address}, a private or local address, which this cartero is configured to refuse."
                ),
                format!(
                    "{host} resuelve a {address}, una dirección privada o local, que este cartero tiene configurado rechazar."
                ),
            ),
            Text::new(
                "Use the server's public name, or ask the operator to allow private destinations (network.deny_private_destinations = false).",
                "Use el nombre público del servidor, o pida al operador que permita destinos privados (network.deny_private_destinations = false).",
            ),
            None,
        ),
        Failure::Imap { reason } => make(
            ImapFailed,
            false,
            Text::new(
                format!("The IMAP check failed: {reason}."),
                format!("Falló la comprobación IMAP: {reason}."),
            ),
            Text::new(
                "Check the IMAP server, port (993 for SSL/TLS, 143 for STARTTLS), username, password and folder; sending is not affected.",
                "Revise el servidor IMAP, el puerto (993 para SSL/TLS, 143 para STARTTLS), el usuario, la contraseña y la carpeta; el envío no se ve afectado.",
            ),
            None,
        ),
        Failure::Reply { stage, reply } => diagnose_reply(*stage, reply, ctx),
    }
}

fn wrong_security(ctx: &Context, should: Security) -> Diagnosis {
    let (host, port) = (&ctx.host, ctx.port);
    let (en, es) = match should {
        Security::Tls => (
            format!(
                "{host}:{port} expects SSL/TLS from the first byte (implicit TLS), but the account is set to `{}`.",
                ctx.security.as_str()
            ),
            format!(
                "{host}:{port} espera SSL/TLS desde el primer byte (TLS implícito), pero la cuenta está configurada como `{}`.",
                ctx.security.as_str()
            ),
        ),
        _ => (
            format!(
                "{host}:{port} speaks plain SMTP (upgraded with STARTTLS), but the account is set to `{}`.",
                ctx.security.as_str()
            ),
            format!(
                "{host}:{port} habla SMTP sin cifrar (que se mejora con STARTTLS), pero la cuenta está configurada como `{}`.",
                ctx.security.as_str()
            ),
        ),
    };
    let fix = match should {
        Security::Tls => Text::new(
            format!(
                "Choose encryption `tls` (SSL/TLS) for port {port}, or keep `starttls` and use port 587."
            ),
            format!(
                "Elija la encriptación `tls` (SSL/TLS) para el puerto {port}, o mantenga `starttls` y use el puerto 587."
            ),
        ),
        _ => Text::new(
            format!(
                "Choose encryption `starttls` for port {port}, or keep `tls` and use port 465."
            ),
            format!(
                "Elija la encriptación `starttls` para el puerto {port}, o mantenga `tls` y use el puerto 465."
            ),
        ),
    };
    Diagnosis {
        code: DiagnosisCode::WrongSecurityForPort,
        transient: false,
        message: Text::new(en, es),
        fix,
        reply: None,
    }
}

fn diagnose_reply(stage: Stage, reply: &SmtpReply, ctx: &Context) -> Diagnosis {
    use DiagnosisCode::*;
    let (code, transient) = classify_reply(stage, reply, ctx.auth);
    let host = &ctx.host;
    let said = reply.summary();
    let provider = ctx.provider();
    let (message, fix) = match code {
        WebLoginRequired => (
            Text::new(
                format!(
                    "{host} refuses the normal password: it wants an app password or a sign-in in the browser ({said})."
                ),
                format!(
                    "{host} rechaza la contraseña normal: exige una contraseña de aplicación o iniciar sesión en el navegador ({said})."
                ),
            ),
            Text::new(
                "With 2-Step Verification on, create an app password in the Google Account (Security → App passwords) and use it here. If it asks to sign in via the web, sign in once at accounts.google.com from this network and allow the access.",
                "Con la verificación en dos pasos activada, cree una contraseña de aplicación en la Cuenta de Google (Seguridad → Contraseñas de aplicaciones) y úsela aquí. Si pide iniciar sesión en la web, inicie sesión una vez en accounts.google.com desde esta red y permita el acceso.",
            ),
        ),
        AuthDisabledByProvider => (
            Text::new(
                format!(
                    "The provider has disabled password sign-in over SMTP for this mailbox or organisation ({said})."
                ),
                format!(
                    "El proveedor deshabilitó el inicio de sesión SMTP con contraseña para este buzón u organización ({said})."
                ),
            ),
            Text::new(
                "Microsoft 365: an administrator must enable Authenticated SMTP for the mailbox (Microsoft 365 admin center → Users → the user → Mail → Manage email apps → Authenticated SMTP) and, if Security Defaults are on, allow it for the tenant (Set-TransportConfig -SmtpClientAuthenticationDisabled $false) — or use OAuth2 when cartero supports it.",
                "Microsoft 365: un administrador debe habilitar SMTP autenticado para el buzón (Centro de administración de Microsoft 365 → Usuarios → el usuario → Correo → Administrar aplicaciones de correo → SMTP autenticado) y, si los valores de seguridad predeterminados están activos, permitirlo para el inquilino (Set-TransportConfig -SmtpClientAuthenticationDisabled $false), o usar OAuth2 cuando cartero lo admita.",
            ),
        ),
        AuthFailed => {
            let mut fix = Text::new(
                "Check the username (usually the full email address) and the password; re-type the password, it is stored encrypted and cannot be shown.",
                "Revise el usuario (normalmente la dirección de correo completa) y la contraseña; vuelva a escribir la contraseña, se guarda cifrada y no se puede mostrar.",
            );
            if let Some(p) = provider {
                let hint = p.app_password_hint();
                fix = Text::new(
                    format!("{} {}", fix.en, hint.en),
                    format!("{} {}", fix.es, hint.es),
                );
            } else {
                fix = Text::new(
                    format!(
                        "{} Providers with 2-step verification (Gmail, Outlook, Yahoo, Zoho, iCloud) need an app password.",
                        fix.en
                    ),
                    format!(
                        "{} Los proveedores con verificación en dos pasos (Gmail, Outlook, Yahoo, Zoho, iCloud) exigen una contraseña de aplicación.",
                        fix.es
                    ),
                );
            }
            (
                Text::new(
                    format!("{host} did not accept the username and password ({said})."),
                    format!("{host} no aceptó el usuario y la contraseña ({said})."),
                ),
                fix,
            )
        }
        AuthRequired => (
            Text::new(
                format!("{host} requires authentication before it accepts mail ({said})."),
                format!("{host} exige autenticación antes de aceptar correo ({said})."),
            ),
            Text::new(
                "Set authentication to `password` and fill in the username and password.",
                "Ponga la autenticación en `password` y complete el usuario y la contraseña.",
            ),
        ),
        AuthUnsupported => (
            Text::new(
                format!("{host} does not accept the authentication cartero tried ({said})."),
                format!("{host} no acepta la autenticación que intentó cartero ({said})."),
            ),
            Text::new(
                "Check the port (587 is the submission port that accepts AUTH) or set auth to `none` for a relay that needs none.",
                "Revise el puerto (587 es el puerto de envío que acepta AUTH) o ponga la autenticación en `none` para un relé que no la necesite.",
            ),
        ),
        SenderRejected => (
            Text::new(
                format!("{host} refused the sender address ({said})."),
                format!("{host} rechazó la dirección del remitente ({said})."),
            ),
            Text::new(
                "The authenticated user may not send as this From address: use the mailbox's own address as sender (or turn on Microsoft 365 compatibility), or grant the user \"Send As\" permission / verify the address or domain with the provider.",
                "El usuario autenticado no puede enviar como esta dirección de remitente: use la dirección del propio buzón (o active la compatibilidad con Microsoft 365), o conceda al usuario el permiso «Enviar como» / verifique la dirección o el dominio con el proveedor.",
            ),
        ),
        RecipientRejected => (
            Text::new(
                format!("{host} refused the recipient ({said})."),
                format!("{host} rechazó el destinatario ({said})."),
            ),
            Text::new(
                "Check the recipient address for typos; if the server says relaying is denied, the account must authenticate to send to other domains.",
                "Revise la dirección del destinatario; si el servidor indica que no permite el reenvío (relay), la cuenta debe autenticarse para enviar a otros dominios.",
            ),
        ),
        RateLimited => (
            Text::new(
                format!("Sending limit reached: {host} is throttling this account ({said})."),
                format!("Límite de envío alcanzado: {host} está limitando esta cuenta ({said})."),
            ),
            Text::new(
                "Wait and try again: cartero retries later by itself. If it happens often, lower the account's limits to the provider's quota or add another account of the same type.",
                "Espere y vuelva a intentarlo: cartero reintenta más tarde por sí mismo. Si ocurre a menudo, ajuste los límites de la cuenta a la cuota del proveedor o añada otra cuenta del mismo tipo.",
            ),
        ),
        MessageTooLarge => (
            Text::new(
                format!("{host} refused the message as too large ({said})."),
                format!("{host} rechazó el mensaje por ser demasiado grande ({said})."),
            ),
            Text::new(
                "Send smaller attachments, or a link to the file instead.",
                "Envíe adjuntos más pequeños, o un enlace al archivo en su lugar.",
            ),
        ),
        MessageRejected => (
            Text::new(
                format!("{host} refused the message content ({said})."),
                format!("{host} rechazó el contenido del mensaje ({said})."),
            ),
            Text::new(
                "The provider's filters refused it (spam, policy, SPF/DKIM/DMARC): check the sending domain's DNS records and the content; the reply says which.",
                "Los filtros del proveedor lo rechazaron (spam, política, SPF/DKIM/DMARC): revise los registros DNS del dominio remitente y el contenido; la respuesta indica cuál.",
            ),
        ),
        ServerUnavailable => (
            Text::new(
                format!("{host} is not accepting connections right now ({said})."),
                format!("{host} no acepta conexiones en este momento ({said})."),
            ),
            Text::new(
                "The server is busy or under maintenance: try again in a few minutes. If it persists, check with the provider.",
                "El servidor está ocupado o en mantenimiento: vuelva a intentarlo en unos minutos. Si persiste, consulte con el proveedor.",
            ),
        ),
        WrongSecurityForPort => {
            let d = wrong_security(ctx, Security::Starttls);
            (
                Text::new(
                    format!("{} ({said})", d.message.en),
                    format!("{} ({said})", d.message.es),
                ),
                d.fix,
            )
        }
        StarttlsUnsupported => (
            Text::new(
                format!("{host} refused STARTTLS ({said})."),
                format!("{host} rechazó STARTTLS ({said})."),
            ),
            Text::new(
                "Choose encryption `tls` with port 465 if the provider offers it; otherwise ask the provider to fix its TLS.",
                "Elija la encriptación `tls` con el puerto 465 si el proveedor la ofrece; si no, pida al proveedor que corrija su TLS.",
            ),
        ),
        TemporaryFailure => (
            Text::new(
                format!("{host} had a temporary problem ({said})."),
                format!("{host} tuvo un problema temporal ({said})."),
            ),
            Text::new(
                "Nothing to change: try again later (cartero retries deliveries by itself).",
                "No hay nada que cambiar: vuelva a intentarlo más tarde (cartero reintenta los envíos por sí mismo).",
            ),
        ),
        _ => (
            Text::new(
                format!("{host} answered unexpectedly during {stage} ({said})."),
                format!("{host} respondió de forma inesperada durante {stage} ({said})."),
            ),
            Text::new(
                "Check that host and port are those of an SMTP submission server; the transcript shows the exchange.",
                "Compruebe que el servidor y el puerto son los de un servidor SMTP de envío; la transcripción muestra el intercambio.",
            ),
        ),
    };
    Diagnosis {
        code,
        transient,
        message,
        fix,
        reply: Some(said),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_parse_with_enhanced_codes_and_continuations() {
        let r = SmtpReply::parse("534-5.7.9 Application-specific password required. Learn more at\r\n534 5.7.9  https://support.google.com/mail/?p=InvalidSecondFactor").unwrap();
        assert_eq!(r.code, 534);
        assert_eq!(r.enhanced, Some((5, 7, 9)));
        assert!(r.text.contains("Learn more at\nhttps://"));
        let r = SmtpReply::parse("250 ").unwrap();
        assert_eq!((r.code, r.enhanced, r.text.as_str()), (250, None, ""));
        assert!(SmtpReply::parse("hello there").is_none());
        assert!(SmtpReply::parse("250-a\r\n251 b").is_none());
    }

    /// Every diagnosis says something and a fix, in both languages.
    #[test]
    fn every_failure_has_both_languages() {
        let ctx = Context {
            host: "smtp.gmail.com".into(),
            port: 587,
            security: Security::Starttls,
            auth: AuthMethod::Password,
        };
        let failures = vec![
            Failure::DnsNotFound,
            Failure::ConnectionRefused,
            Failure::ConnectTimeout,
            Failure::GreetingTimeout { implicit_tls: true },
            Failure::GreetingTimeout {
                implicit_tls: false,
            },
            Failure::PlainTextWhereTlsExpected,
            Failure::Certificate(CertificateProblem::SelfSigned),
            Failure::StarttlsNotOffered,
            Failure::AuthNotOffered { offered: vec![] },
            Failure::Reply {
                stage: Stage::Auth,
                reply: SmtpReply::new(535, Some((5, 7, 8)), "bad"),
            },
            Failure::DestinationNotAllowed {
                address: "10.0.0.1".into(),
            },
            Failure::Imap { reason: "x".into() },
        ];
        for f in failures {
            let d = diagnose(&f, &ctx);
            for t in [&d.message, &d.fix] {
                assert!(t.en.len() > 10 && t.es.len() > 10, "{f:?}");
                assert_ne!(t.en, t.es, "{f:?}");
            }
        }
    }

    /// The golden table of real provider replies (tests/golden/smtp_replies.tsv).
    #[test]
    fn golden_provider_replies() {
        let table = include_str!("../../tests/golden/smtp_replies.tsv");
        let mut checked = 0;
        let mut wrong = Vec::new();
        for (n, line) in table.lines().enumerate() {
            if line.starts_with('#') || line.trim().is_empty() || line.starts_with("provider\t") {
                continue;
            }
            let cols: Vec<&str> = line.split('\t').collect();
            assert_eq!(cols.len(), 5, "line {}: {line}", n + 1);
            let stage = Stage::parse(cols[1])
                .unwrap_or_else(|| panic!("line {}: stage {}", n + 1, cols[1]));
            let want = DiagnosisCode::parse(cols[3])
                .unwrap_or_else(|| panic!("line {}: code {}", n + 1, cols[3]));
            let want_transient = cols[4] == "true";
            let raw = cols[2].replace("\\n", "\n");
            let ctx = Context {
                host: "smtp.example.com".into(),
                port: 587,
                security: Security::Starttls,
                auth: if want == DiagnosisCode::AuthRequired {
                    AuthMethod::None
                } else {
                    AuthMethod::Password
                },
            };
            let failure = match SmtpReply::parse(&raw) {
                Some(reply) => Failure::Reply { stage, reply },
                None => Failure::Unparseable {
                    stage,
                    raw: raw.clone(),
                },
            };
            let got = diagnose(&failure, &ctx);
            if got.code != want || got.transient != want_transient {
                wrong.push(format!(
                    "line {} [{}] {}: want {want}/{want_transient}, got {}/{}",
                    n + 1,
                    cols[0],
                    cols[2],
                    got.code,
                    got.transient
                ));
            }
            checked += 1;
        }
        assert!(checked >= 60, "only {checked} golden replies");
        assert!(
            wrong.is_empty(),
            "{} of {checked} misclassified:\n{}",
            wrong.len(),
            wrong.join("\n")
        );
    }
}
