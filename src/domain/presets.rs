//! Static catalogue of SMTP provider presets.
//!
//! When an administrator adds a sending account, they usually only know the
//! email address and the password (or API key) they were given. cartero uses
//! this catalogue to propose the rest: [`for_email`] looks at the domain of the
//! address the admin typed and returns the matching consumer providers (Gmail,
//! Outlook.com, Yahoo…), and the UI can also offer every entry of [`all`] in a
//! picker for transactional relays (SendGrid, Amazon SES, Mailgun…) and hosting
//! providers whose customers use their own domains (OVH, Gandi, IONOS…).
//!
//! Each [`Preset`] carries the SMTP endpoint, the IMAP endpoint when the
//! provider has one, how to fill in the SMTP username and a short note in
//! English and Spanish with the one thing a sysadmin usually trips over (app
//! passwords, sandbox mode, SMTP AUTH being disabled, …).
//!
//! The data is a suggestion, never a constraint: the admin can always edit the
//! proposed host, port and security before saving the account.

use super::account::Security;

/// A server address: host, port and the kind of TLS it speaks.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Endpoint {
    /// Host name or IP address.
    pub host: &'static str,
    /// TCP port.
    pub port: u16,
    /// [`Security::Starttls`] for submission ports (587, 1025…),
    /// [`Security::Tls`] for implicit TLS (465, 993).
    pub security: Security,
}

/// How the SMTP username must be filled in for a preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum UsernameRule {
    /// The full email address of the account (`ana@example.com`).
    EmailAddress,
    /// A literal value, the same for every account (`apikey` for SendGrid).
    Fixed(&'static str),
    /// A login or key issued by the provider's console (SES SMTP
    /// credentials, Mailgun SMTP login, Postmark server token…).
    ProviderCredential,
}

/// Known settings of one mail provider.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Preset {
    /// Stable slug, used in the API and in stored configuration
    /// (`"gmail"`, `"ses-eu-west-1"`, `"protonmail-bridge"`…).
    pub id: &'static str,
    /// Human-readable name shown in the UI.
    pub name: &'static str,
    /// Outgoing (submission) server.
    pub smtp: Endpoint,
    /// Incoming IMAP server, when the provider offers IMAP.
    pub imap: Option<Endpoint>,
    /// Consumer domains used by [`for_email`]. An entry ending in `.*` matches
    /// the same name under any TLD, including two-label ones (`yahoo.*`
    /// matches `yahoo.com`, `yahoo.es` and `yahoo.co.uk`). An entry starting
    /// with `!` excludes that exact domain (`!yahoo.co.jp`, a separate
    /// service).
    #[serde(skip)]
    pub domains: &'static [&'static str],
    /// How to fill in the SMTP username.
    pub username: UsernameRule,
    /// True for Microsoft services (Microsoft 365 and Outlook.com), which
    /// have their own rules for SMTP AUTH and OAuth2.
    pub microsoft365: bool,
    /// What the administrator needs to know, in English.
    pub note_en: &'static str,
    /// The same note, in Spanish.
    pub note_es: &'static str,
}

const fn starttls(host: &'static str, port: u16) -> Endpoint {
    Endpoint {
        host,
        port,
        security: Security::Starttls,
    }
}

const fn tls(host: &'static str, port: u16) -> Endpoint {
    Endpoint {
        host,
        port,
        security: Security::Tls,
    }
}

const SES_NOTE_EN: &str = "Use the SES SMTP credentials created in the SES console for this region (they are not your IAM access keys) and send from a verified identity (address or domain). New accounts start in the sandbox and can only send to verified recipients until production access is granted.";
const SES_NOTE_ES: &str = "Use las credenciales SMTP de SES creadas en la consola de SES para esta región (no son sus claves de acceso de IAM) y envíe desde una identidad verificada (dirección o dominio). Las cuentas nuevas empiezan en el entorno de pruebas (sandbox) y solo pueden enviar a destinatarios verificados hasta que se concede el acceso de producción.";

/// One Amazon SES region: `ses!("eu-west-1", "Ireland")`.
macro_rules! ses {
    ($region:literal, $place:literal) => {
        Preset {
            id: concat!("ses-", $region),
            name: concat!("Amazon SES (", $place, ", ", $region, ")"),
            smtp: starttls(concat!("email-smtp.", $region, ".amazonaws.com"), 587),
            imap: None,
            domains: &[],
            username: UsernameRule::ProviderCredential,
            microsoft365: false,
            note_en: SES_NOTE_EN,
            note_es: SES_NOTE_ES,
        }
    };
}

static PRESETS: &[Preset] = &[
    // --- Microsoft -------------------------------------------------------
    Preset {
        id: "office365",
        name: "Microsoft 365 / Office 365",
        smtp: starttls("smtp.office365.com", 587),
        imap: Some(tls("outlook.office365.com", 993)),
        domains: &[],
        username: UsernameRule::EmailAddress,
        microsoft365: true,
        note_en: "SMTP AUTH must be enabled for the sending mailbox (admin center → user → Mail → Manage email apps → Authenticated SMTP) and not disabled for the whole tenant; Security Defaults block it. With MFA, use an app password if the tenant allows them; Microsoft is retiring Basic authentication for SMTP AUTH, so plan for OAuth2.",
        note_es: "SMTP AUTH debe estar habilitado en el buzón que envía (Centro de administración → usuario → Correo → Administrar aplicaciones de correo → SMTP autenticado) y no deshabilitado para todo el inquilino; los valores predeterminados de seguridad lo bloquean. Con MFA, use una contraseña de aplicación si el inquilino las permite; Microsoft está retirando la autenticación básica en SMTP AUTH, así que conviene prever OAuth2.",
    },
    Preset {
        id: "outlook",
        name: "Outlook.com / Hotmail / Live",
        smtp: starttls("smtp-mail.outlook.com", 587),
        imap: Some(tls("outlook.office365.com", 993)),
        domains: &[
            "outlook.*",
            "hotmail.*",
            "live.*",
            "msn.com",
            "windowslive.com",
        ],
        username: UsernameRule::EmailAddress,
        microsoft365: true,
        note_en: "Use the full Outlook.com address as the username. Microsoft is phasing out password (Basic) sign-in for personal accounts in third-party apps; if it is rejected even with an app password (which requires two-step verification), OAuth2 is needed.",
        note_es: "Use la dirección completa de Outlook.com como usuario. Microsoft está retirando el inicio de sesión con contraseña (autenticación básica) en aplicaciones de terceros para cuentas personales; si se rechaza incluso con una contraseña de aplicación (requiere la verificación en dos pasos), hará falta OAuth2.",
    },
    // --- Consumer / hosted mailboxes ------------------------------------
    Preset {
        id: "gmail",
        name: "Gmail / Google Workspace",
        smtp: starttls("smtp.gmail.com", 587),
        imap: Some(tls("imap.gmail.com", 993)),
        domains: &["gmail.com", "googlemail.com"],
        username: UsernameRule::EmailAddress,
        microsoft365: false,
        note_en: "Turn on 2-Step Verification and create an app password (Google Account → Security → App passwords) to use instead of the normal password, which Google rejects from third-party apps. In Google Workspace the admin may have disabled app passwords for the domain.",
        note_es: "Active la verificación en dos pasos y cree una contraseña de aplicación (Cuenta de Google → Seguridad → Contraseñas de aplicaciones) para usarla en lugar de la contraseña habitual, que Google rechaza desde aplicaciones de terceros. En Google Workspace, el administrador puede haber deshabilitado las contraseñas de aplicación del dominio.",
    },
    Preset {
        id: "icloud",
        name: "iCloud Mail",
        smtp: starttls("smtp.mail.me.com", 587),
        imap: Some(tls("imap.mail.me.com", 993)),
        domains: &["icloud.com", "me.com", "mac.com"],
        username: UsernameRule::EmailAddress,
        microsoft365: false,
        note_en: "Two-factor authentication must be on: create an app-specific password in your Apple Account (Sign-In and Security → App-Specific Passwords) and use it with the full iCloud address. The From address must be that address or an alias configured in iCloud Mail.",
        note_es: "La autenticación de doble factor debe estar activada: cree una contraseña específica de app en su cuenta de Apple (Inicio de sesión y seguridad → Contraseñas específicas de apps) y úsela con la dirección completa de iCloud. El remitente debe ser esa dirección o un alias configurado en Mail de iCloud.",
    },
    Preset {
        id: "yahoo",
        name: "Yahoo Mail",
        smtp: tls("smtp.mail.yahoo.com", 465),
        imap: Some(tls("imap.mail.yahoo.com", 993)),
        domains: &["yahoo.*", "!yahoo.co.jp", "ymail.com", "rocketmail.com"],
        username: UsernameRule::EmailAddress,
        microsoft365: false,
        note_en: "Generate an app password (Account info → Account security → Generate app password) and use it with the full Yahoo address; the normal password is rejected by SMTP.",
        note_es: "Genere una contraseña de aplicación (Información de la cuenta → Seguridad de la cuenta → Generar contraseña de aplicación) y úsela con la dirección completa de Yahoo; el servidor SMTP rechaza la contraseña habitual.",
    },
    Preset {
        id: "aol",
        name: "AOL Mail",
        smtp: tls("smtp.aol.com", 465),
        imap: Some(tls("imap.aol.com", 993)),
        domains: &["aol.com", "aim.com"],
        username: UsernameRule::EmailAddress,
        microsoft365: false,
        note_en: "Generate an app password in the AOL account security settings and use it with the full AOL address; the normal password is rejected by SMTP.",
        note_es: "Genere una contraseña de aplicación en la configuración de seguridad de la cuenta de AOL y úsela con la dirección completa; el servidor SMTP rechaza la contraseña habitual.",
    },
    Preset {
        id: "fastmail",
        name: "Fastmail",
        smtp: tls("smtp.fastmail.com", 465),
        imap: Some(tls("imap.fastmail.com", 993)),
        domains: &["fastmail.com", "fastmail.fm"],
        username: UsernameRule::EmailAddress,
        microsoft365: false,
        note_en: "Create an app password with SMTP access in Fastmail's Privacy & Security settings; the normal login password does not work for SMTP. Use the full address as the username.",
        note_es: "Cree una contraseña de aplicación con acceso SMTP en la sección Privacidad y seguridad de los ajustes de Fastmail; la contraseña habitual no sirve para SMTP. Use la dirección completa como usuario.",
    },
    Preset {
        id: "zoho",
        name: "Zoho Mail (zoho.com)",
        smtp: tls("smtp.zoho.com", 465),
        imap: Some(tls("imap.zoho.com", 993)),
        domains: &["zoho.com", "zohomail.com"],
        username: UsernameRule::EmailAddress,
        microsoft365: false,
        note_en: "Use the full address; with two-factor authentication, generate an app-specific password. Organisation accounts on your own domain may need smtppro.zoho.com, and IMAP access must be enabled in the Zoho Mail settings.",
        note_es: "Use la dirección completa; si tiene la autenticación en dos pasos, genere una contraseña específica de aplicación. Las cuentas de organización con dominio propio pueden necesitar smtppro.zoho.com, y el acceso IMAP debe activarse en los ajustes de Zoho Mail.",
    },
    Preset {
        id: "zoho-eu",
        name: "Zoho Mail (zoho.eu)",
        smtp: tls("smtp.zoho.eu", 465),
        imap: Some(tls("imap.zoho.eu", 993)),
        domains: &["zoho.eu", "zohomail.eu"],
        username: UsernameRule::EmailAddress,
        microsoft365: false,
        note_en: "For accounts hosted in Zoho's EU data centre. Use the full address; with two-factor authentication, generate an app-specific password. Organisation accounts on your own domain may need smtppro.zoho.eu.",
        note_es: "Para cuentas alojadas en el centro de datos europeo de Zoho. Use la dirección completa; si tiene la autenticación en dos pasos, genere una contraseña específica de aplicación. Las cuentas de organización con dominio propio pueden necesitar smtppro.zoho.eu.",
    },
    Preset {
        id: "gmx",
        name: "GMX (gmx.net / gmx.de)",
        smtp: starttls("mail.gmx.net", 587),
        imap: Some(tls("imap.gmx.net", 993)),
        domains: &["gmx.net", "gmx.de", "gmx.at", "gmx.ch"],
        username: UsernameRule::EmailAddress,
        microsoft365: false,
        note_en: "POP3/IMAP access must first be enabled in the GMX web mail settings (E-Mail → Settings → POP3 & IMAP). Then use the full address and the normal password, or an application-specific password if two-factor authentication is on.",
        note_es: "Primero hay que activar el acceso POP3/IMAP en los ajustes del correo web de GMX (Correo → Configuración → POP3 e IMAP). Después, use la dirección completa y la contraseña habitual, o una contraseña de aplicación si tiene la autenticación en dos pasos.",
    },
    Preset {
        id: "gmx-com",
        name: "GMX (gmx.com, international)",
        smtp: starttls("mail.gmx.com", 587),
        imap: Some(tls("imap.gmx.com", 993)),
        domains: &["gmx.com", "gmx.us", "gmx.co.uk", "gmx.fr", "gmx.es"],
        username: UsernameRule::EmailAddress,
        microsoft365: false,
        note_en: "POP3/IMAP access must first be enabled in the GMX web mail settings (E-Mail → Settings → POP3 & IMAP). Then use the full address and the normal password, or an application-specific password if two-factor authentication is on.",
        note_es: "Primero hay que activar el acceso POP3/IMAP en los ajustes del correo web de GMX (Correo → Configuración → POP3 e IMAP). Después, use la dirección completa y la contraseña habitual, o una contraseña de aplicación si tiene la autenticación en dos pasos.",
    },
    Preset {
        id: "protonmail-bridge",
        name: "Proton Mail Bridge (local)",
        smtp: starttls("127.0.0.1", 1025),
        imap: Some(starttls("127.0.0.1", 1143)),
        domains: &["proton.me", "protonmail.com", "protonmail.ch", "pm.me"],
        username: UsernameRule::EmailAddress,
        microsoft365: false,
        note_en: "Proton Mail Bridge (paid plans) must be running and signed in on this machine; use the username and the generated password shown in Bridge, not your Proton password. Bridge presents a self-signed certificate: pin its fingerprint (or trust its exported certificate) rather than disabling TLS verification.",
        note_es: "Proton Mail Bridge (planes de pago) debe estar en ejecución y con la sesión iniciada en esta máquina; use el usuario y la contraseña generada que muestra Bridge, no su contraseña de Proton. Bridge presenta un certificado autofirmado: fije su huella digital (o confíe en el certificado que exporta) en lugar de desactivar la verificación TLS.",
    },
    // --- Hosting providers (own domains) --------------------------------
    Preset {
        id: "ovh",
        name: "OVHcloud (MX Plan)",
        smtp: tls("ssl0.ovh.net", 465),
        imap: Some(tls("ssl0.ovh.net", 993)),
        domains: &[],
        username: UsernameRule::EmailAddress,
        microsoft365: false,
        note_en: "Use the full email address and the mailbox password. These are the MX Plan settings; Email Pro and Exchange accounts use other hosts, shown in the OVHcloud Control Panel.",
        note_es: "Use la dirección de correo completa y la contraseña del buzón. Estos son los datos de MX Plan; las cuentas Email Pro y Exchange usan otros servidores, que se muestran en el área de cliente de OVHcloud.",
    },
    Preset {
        id: "gandi",
        name: "Gandi Mail",
        smtp: tls("mail.gandi.net", 465),
        imap: Some(tls("mail.gandi.net", 993)),
        domains: &[],
        username: UsernameRule::EmailAddress,
        microsoft365: false,
        note_en: "Use the full email address and the mailbox password set in the Gandi interface. Port 587 with STARTTLS also works.",
        note_es: "Use la dirección de correo completa y la contraseña del buzón definida en la interfaz de Gandi. También funciona el puerto 587 con STARTTLS.",
    },
    Preset {
        id: "infomaniak",
        name: "Infomaniak Mail",
        smtp: tls("mail.infomaniak.com", 465),
        imap: Some(tls("mail.infomaniak.com", 993)),
        domains: &["ik.me", "ikmail.com", "etik.com"],
        username: UsernameRule::EmailAddress,
        microsoft365: false,
        note_en: "Use the full email address and the mailbox password; if two-factor authentication is on, create an application password in the Infomaniak Manager.",
        note_es: "Use la dirección de correo completa y la contraseña del buzón; si tiene activada la autenticación en dos pasos, cree una contraseña de aplicación en el Manager de Infomaniak.",
    },
    Preset {
        id: "ionos",
        name: "IONOS (ionos.com)",
        smtp: starttls("smtp.ionos.com", 587),
        imap: Some(tls("imap.ionos.com", 993)),
        domains: &[],
        username: UsernameRule::EmailAddress,
        microsoft365: false,
        note_en: "Use the full email address and the mailbox password. Contracts from other countries use their local host (smtp.ionos.de, smtp.ionos.es, smtp.ionos.co.uk, smtp.ionos.fr…).",
        note_es: "Use la dirección de correo completa y la contraseña del buzón. Los contratos de otros países usan su servidor local (smtp.ionos.es, smtp.ionos.de, smtp.ionos.co.uk, smtp.ionos.fr…).",
    },
    Preset {
        id: "ionos-de",
        name: "IONOS (ionos.de)",
        smtp: starttls("smtp.ionos.de", 587),
        imap: Some(tls("imap.ionos.de", 993)),
        domains: &[],
        username: UsernameRule::EmailAddress,
        microsoft365: false,
        note_en: "For IONOS contracts from Germany. Use the full email address and the mailbox password.",
        note_es: "Para contratos de IONOS en Alemania. Use la dirección de correo completa y la contraseña del buzón.",
    },
    Preset {
        id: "ionos-es",
        name: "IONOS (ionos.es)",
        smtp: starttls("smtp.ionos.es", 587),
        imap: Some(tls("imap.ionos.es", 993)),
        domains: &[],
        username: UsernameRule::EmailAddress,
        microsoft365: false,
        note_en: "For IONOS contracts from Spain. Use the full email address and the mailbox password.",
        note_es: "Para contratos de IONOS en España. Use la dirección de correo completa y la contraseña del buzón.",
    },
    // --- Transactional relays -------------------------------------------
    Preset {
        id: "sendgrid",
        name: "Twilio SendGrid",
        smtp: starttls("smtp.sendgrid.net", 587),
        imap: None,
        domains: &[],
        username: UsernameRule::Fixed("apikey"),
        microsoft365: false,
        note_en: "The username is literally `apikey` and the password is a SendGrid API key with Mail Send permission. The From address must be a verified single sender or belong to an authenticated domain.",
        note_es: "El usuario es literalmente `apikey` y la contraseña es una clave de API de SendGrid con permiso Mail Send. El remitente debe estar verificado como Single Sender o pertenecer a un dominio autenticado.",
    },
    Preset {
        id: "mailgun",
        name: "Mailgun (US)",
        smtp: starttls("smtp.mailgun.org", 587),
        imap: None,
        domains: &[],
        username: UsernameRule::ProviderCredential,
        microsoft365: false,
        note_en: "Use the SMTP login of your sending domain (e.g. postmaster@mg.example.com) and the password set for it under the domain's SMTP credentials. Domains created in the EU region must use smtp.eu.mailgun.org instead.",
        note_es: "Use el usuario SMTP de su dominio de envío (p. ej., postmaster@mg.example.com) y la contraseña definida en las credenciales SMTP del dominio. Los dominios creados en la región de la UE deben usar smtp.eu.mailgun.org.",
    },
    Preset {
        id: "mailgun-eu",
        name: "Mailgun (EU)",
        smtp: starttls("smtp.eu.mailgun.org", 587),
        imap: None,
        domains: &[],
        username: UsernameRule::ProviderCredential,
        microsoft365: false,
        note_en: "For domains created in Mailgun's EU region (US-region domains use smtp.mailgun.org). Use the domain's SMTP login (e.g. postmaster@mg.example.com) and the password set for it.",
        note_es: "Para dominios creados en la región de la UE de Mailgun (los de la región de EE. UU. usan smtp.mailgun.org). Use el usuario SMTP del dominio (p. ej., postmaster@mg.example.com) y la contraseña definida para él.",
    },
    Preset {
        id: "postmark",
        name: "Postmark",
        smtp: starttls("smtp.postmarkapp.com", 587),
        imap: None,
        domains: &[],
        username: UsernameRule::ProviderCredential,
        microsoft365: false,
        note_en: "Use the Server API Token as both the username and the password. The From address must be a confirmed sender signature or belong to a verified domain.",
        note_es: "Use el Server API Token como usuario y también como contraseña. El remitente debe ser una firma de remitente confirmada o pertenecer a un dominio verificado.",
    },
    Preset {
        id: "brevo",
        name: "Brevo (Sendinblue)",
        smtp: starttls("smtp-relay.brevo.com", 587),
        imap: None,
        domains: &[],
        username: UsernameRule::ProviderCredential,
        microsoft365: false,
        note_en: "The username is the SMTP login shown under SMTP & API (not necessarily your account email) and the password is an SMTP key, not an API key. The sender address or domain must be verified in Brevo.",
        note_es: "El usuario es el login SMTP que aparece en SMTP y API (no tiene por qué ser el email de la cuenta) y la contraseña es una clave SMTP, no una clave de API. La dirección o el dominio remitente deben estar verificados en Brevo.",
    },
    Preset {
        id: "mailjet",
        name: "Mailjet",
        smtp: starttls("in-v3.mailjet.com", 587),
        imap: None,
        domains: &[],
        username: UsernameRule::ProviderCredential,
        microsoft365: false,
        note_en: "The username is your Mailjet API key and the password is the matching secret key. The From address must be a validated sender or belong to a validated domain.",
        note_es: "El usuario es su clave de API de Mailjet y la contraseña, la clave secreta correspondiente. El remitente debe ser una dirección validada o pertenecer a un dominio validado.",
    },
    Preset {
        id: "mailersend",
        name: "MailerSend",
        smtp: starttls("smtp.mailersend.net", 587),
        imap: None,
        domains: &[],
        username: UsernameRule::ProviderCredential,
        microsoft365: false,
        note_en: "Create an SMTP user in the sending domain's settings and use the username and password generated for it. The sending domain must be verified.",
        note_es: "Cree un usuario SMTP en la configuración del dominio de envío y use el usuario y la contraseña generados para él. El dominio de envío debe estar verificado.",
    },
    Preset {
        id: "sparkpost",
        name: "SparkPost (US)",
        smtp: starttls("smtp.sparkpostmail.com", 587),
        imap: None,
        domains: &[],
        username: UsernameRule::Fixed("SMTP_Injection"),
        microsoft365: false,
        note_en: "The username is literally `SMTP_Injection` and the password is an API key with the Send via SMTP permission; the sending domain must be verified. EU accounts use smtp.eu.sparkpostmail.com.",
        note_es: "El usuario es literalmente `SMTP_Injection` y la contraseña es una clave de API con el permiso Send via SMTP; el dominio de envío debe estar verificado. Las cuentas de la UE usan smtp.eu.sparkpostmail.com.",
    },
    Preset {
        id: "sparkpost-eu",
        name: "SparkPost (EU)",
        smtp: starttls("smtp.eu.sparkpostmail.com", 587),
        imap: None,
        domains: &[],
        username: UsernameRule::Fixed("SMTP_Injection"),
        microsoft365: false,
        note_en: "For SparkPost EU accounts. The username is literally `SMTP_Injection` and the password is an API key with the Send via SMTP permission; the sending domain must be verified.",
        note_es: "Para cuentas de SparkPost en la UE. El usuario es literalmente `SMTP_Injection` y la contraseña es una clave de API con el permiso Send via SMTP; el dominio de envío debe estar verificado.",
    },
    Preset {
        id: "resend",
        name: "Resend",
        smtp: tls("smtp.resend.com", 465),
        imap: None,
        domains: &[],
        username: UsernameRule::Fixed("resend"),
        microsoft365: false,
        note_en: "The username is literally `resend` and the password is a Resend API key; the sending domain must be verified. Port 587 with STARTTLS also works.",
        note_es: "El usuario es literalmente `resend` y la contraseña es una clave de API de Resend; el dominio de envío debe estar verificado. También funciona el puerto 587 con STARTTLS.",
    },
    // --- Amazon SES, one preset per region ------------------------------
    ses!("us-east-1", "N. Virginia"),
    ses!("us-east-2", "Ohio"),
    ses!("us-west-1", "N. California"),
    ses!("us-west-2", "Oregon"),
    ses!("ca-central-1", "Canada Central"),
    ses!("sa-east-1", "São Paulo"),
    ses!("eu-west-1", "Ireland"),
    ses!("eu-west-2", "London"),
    ses!("eu-west-3", "Paris"),
    ses!("eu-central-1", "Frankfurt"),
    ses!("eu-south-1", "Milan"),
    ses!("eu-south-2", "Spain"),
    ses!("eu-north-1", "Stockholm"),
    ses!("ap-south-1", "Mumbai"),
    ses!("ap-southeast-1", "Singapore"),
    ses!("ap-southeast-2", "Sydney"),
    ses!("ap-northeast-1", "Tokyo"),
    ses!("ap-northeast-2", "Seoul"),
    ses!("ap-northeast-3", "Osaka"),
];

/// Every preset, in display order (Microsoft, consumer mailboxes, hosting
/// providers, transactional relays, Amazon SES regions).
pub fn all() -> &'static [Preset] {
    PRESETS
}

/// The preset with this id, if any.
pub fn get(id: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.id == id)
}

/// Presets whose consumer domains match the domain of `email`.
///
/// The domain is the text after the last `@`, compared case-insensitively
/// (a trailing dot is ignored). Returns an empty list when there is no `@`,
/// the domain is empty or no provider claims it — which is the normal case
/// for a company domain; the admin then picks a preset from [`all`] or types
/// the settings by hand.
pub fn for_email(email: &str) -> Vec<&'static Preset> {
    let Some((_, domain)) = email.rsplit_once('@') else {
        return Vec::new();
    };
    let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    if domain.is_empty() {
        return Vec::new();
    }
    PRESETS
        .iter()
        .filter(|p| preset_matches(p, &domain))
        .collect()
}

/// Whether `domain` (already lowercase) is one of the preset's domains.
fn preset_matches(preset: &Preset, domain: &str) -> bool {
    let excluded = preset
        .domains
        .iter()
        .any(|d| d.strip_prefix('!') == Some(domain));
    !excluded
        && preset
            .domains
            .iter()
            .filter(|d| !d.starts_with('!'))
            .any(|pattern| pattern_matches(pattern, domain))
}

/// Exact match, or `name.*` matching `name.<tld>`.
fn pattern_matches(pattern: &str, domain: &str) -> bool {
    match pattern.strip_suffix(".*") {
        Some(base) => domain
            .strip_prefix(base)
            .and_then(|rest| rest.strip_prefix('.'))
            .is_some_and(looks_like_tld),
        None => pattern == domain,
    }
}

/// Whether `suffix` looks like a public TLD rather than a longer name:
/// a single alphabetic label (`com`, `es`), or a short second-level label
/// under a two-letter country code (`co.uk`, `com.mx`, `com.ar`). This keeps
/// `live.*` from claiming `live.acme.com`.
fn looks_like_tld(suffix: &str) -> bool {
    let is_label = |l: &str| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphabetic());
    match suffix.split_once('.') {
        None => is_label(suffix),
        Some((second, cc)) => {
            is_label(second) && second.len() <= 3 && is_label(cc) && cc.len() == 2
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    const SES_REGIONS: &[&str] = &[
        "us-east-1",
        "us-east-2",
        "us-west-2",
        "eu-west-1",
        "eu-west-2",
        "eu-central-1",
        "eu-south-2",
        "sa-east-1",
        "ap-southeast-1",
        "ap-southeast-2",
        "ap-northeast-1",
        "ap-south-1",
        "ca-central-1",
    ];

    fn ids(presets: &[&Preset]) -> Vec<&'static str> {
        presets.iter().map(|p| p.id).collect()
    }

    fn is_slug(s: &str) -> bool {
        !s.is_empty()
            && !s.starts_with('-')
            && !s.ends_with('-')
            && !s.contains("--")
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    }

    #[test]
    fn ids_are_unique_lowercase_slugs() {
        let mut seen = HashSet::new();
        for p in all() {
            assert!(is_slug(p.id), "bad id {:?}", p.id);
            assert!(seen.insert(p.id), "duplicate id {:?}", p.id);
        }
    }

    #[test]
    fn every_preset_is_complete() {
        for p in all() {
            assert!(!p.name.trim().is_empty(), "{}: empty name", p.id);
            assert!(!p.note_en.trim().is_empty(), "{}: empty note_en", p.id);
            assert!(!p.note_es.trim().is_empty(), "{}: empty note_es", p.id);
            assert_ne!(p.note_en, p.note_es, "{}: note not translated", p.id);
            assert!(!p.smtp.host.is_empty(), "{}: empty smtp host", p.id);
            assert!(p.smtp.port > 0, "{}: smtp port 0", p.id);
            assert_ne!(p.smtp.security, Security::None, "{}: plaintext", p.id);
            if let Some(imap) = &p.imap {
                assert!(!imap.host.is_empty(), "{}: empty imap host", p.id);
                assert!(imap.port > 0, "{}: imap port 0", p.id);
            }
            if let UsernameRule::Fixed(user) = p.username {
                assert!(!user.is_empty(), "{}: empty fixed username", p.id);
            }
        }
    }

    #[test]
    fn ports_agree_with_security() {
        for p in all() {
            for ep in std::iter::once(&p.smtp).chain(p.imap.as_ref()) {
                match ep.port {
                    465 | 993 => assert_eq!(ep.security, Security::Tls, "{}", p.id),
                    587 | 1025 | 1143 => {
                        assert_eq!(ep.security, Security::Starttls, "{}", p.id)
                    }
                    _ => {}
                }
            }
        }
    }

    #[test]
    fn domain_patterns_are_well_formed() {
        for p in all() {
            for d in p.domains {
                let d = d.strip_prefix('!').unwrap_or(d);
                assert_eq!(d, d.to_ascii_lowercase(), "{}: {d}", p.id);
                assert!(!d.contains('@') && d.contains('.'), "{}: {d}", p.id);
                assert!(!d[..d.len() - 1].contains('*'), "{}: {d}", p.id);
            }
        }
    }

    #[test]
    fn no_domain_is_claimed_twice() {
        let mut seen = HashSet::new();
        for p in all() {
            for d in p.domains.iter().filter(|d| !d.starts_with('!')) {
                assert!(seen.insert(*d), "{d} claimed twice");
            }
        }
    }

    #[test]
    fn get_by_id() {
        let gmail = get("gmail").expect("gmail preset");
        assert_eq!(gmail.smtp.host, "smtp.gmail.com");
        assert_eq!(gmail.smtp.port, 587);
        assert_eq!(gmail.smtp.security, Security::Starttls);
        assert_eq!(gmail.imap.as_ref().map(|e| e.host), Some("imap.gmail.com"));
        assert!(get("GMAIL").is_none());
        assert!(get("nope").is_none());
    }

    #[test]
    fn microsoft_presets() {
        let o365 = get("office365").unwrap();
        assert!(o365.microsoft365);
        assert_eq!(
            (o365.smtp.host, o365.smtp.port, o365.smtp.security),
            ("smtp.office365.com", 587, Security::Starttls)
        );
        let imap = o365.imap.as_ref().unwrap();
        assert_eq!((imap.host, imap.port), ("outlook.office365.com", 993));
        assert_eq!(imap.security, Security::Tls);
        assert!(get("outlook").unwrap().microsoft365);
        let others = all().iter().filter(|p| p.microsoft365).count();
        assert_eq!(others, 2);
    }

    #[test]
    fn lookup_by_email() {
        assert_eq!(ids(&for_email("Ana@GMAIL.com")), ["gmail"]);
        assert_eq!(ids(&for_email("x@googlemail.com")), ["gmail"]);
        assert_eq!(ids(&for_email("x@hotmail.es")), ["outlook"]);
        assert_eq!(ids(&for_email("x@live.com.mx")), ["outlook"]);
        assert_eq!(ids(&for_email("x@hotmail.com.ar")), ["outlook"]);
        assert_eq!(ids(&for_email("x@outlook.com")), ["outlook"]);
        assert_eq!(ids(&for_email("x@msn.com")), ["outlook"]);
        assert_eq!(ids(&for_email("x@yahoo.co.uk")), ["yahoo"]);
        assert_eq!(ids(&for_email("x@yahoo.es")), ["yahoo"]);
        assert_eq!(ids(&for_email("x@ymail.com")), ["yahoo"]);
        assert_eq!(ids(&for_email("x@me.com")), ["icloud"]);
        assert_eq!(ids(&for_email("x@zohomail.eu")), ["zoho-eu"]);
        assert_eq!(ids(&for_email("x@zoho.com")), ["zoho"]);
        assert_eq!(ids(&for_email("x@gmx.de")), ["gmx"]);
        assert_eq!(ids(&for_email("x@ik.me")), ["infomaniak"]);
        assert_eq!(ids(&for_email("x@proton.me")), ["protonmail-bridge"]);
        assert_eq!(ids(&for_email("x@fastmail.fm")), ["fastmail"]);
    }

    #[test]
    fn lookup_edge_cases() {
        assert!(for_email("x@acme.example").is_empty());
        assert!(for_email("no-at-sign").is_empty());
        assert!(for_email("x@").is_empty());
        assert!(for_email("").is_empty());
        // The domain is taken after the last '@'.
        assert_eq!(ids(&for_email("\"a@b\"@gmail.com")), ["gmail"]);
        assert!(for_email("gmail.com@acme.example").is_empty());
        // Trailing dot and surrounding whitespace are tolerated.
        assert_eq!(ids(&for_email("x@gmail.com. ")), ["gmail"]);
        // Wildcards only cover TLDs, not arbitrary subdomains.
        assert!(for_email("x@live.acme.com").is_empty());
        assert!(for_email("x@livemail.com").is_empty());
        assert!(for_email("x@mail.hotmail.com").is_empty());
        assert!(for_email("x@live.").is_empty());
        // Yahoo Japan is a separate service.
        assert!(for_email("x@yahoo.co.jp").is_empty());
    }

    #[test]
    fn sendgrid_username_is_apikey() {
        let sg = get("sendgrid").unwrap();
        assert_eq!(sg.username, UsernameRule::Fixed("apikey"));
        assert_eq!((sg.smtp.host, sg.smtp.port), ("smtp.sendgrid.net", 587));
        assert!(sg.imap.is_none());
    }

    #[test]
    fn protonmail_bridge_is_local() {
        let pb = get("protonmail-bridge").unwrap();
        assert_eq!((pb.smtp.host, pb.smtp.port), ("127.0.0.1", 1025));
        assert_eq!(pb.smtp.security, Security::Starttls);
        let imap = pb.imap.as_ref().unwrap();
        assert_eq!((imap.host, imap.port), ("127.0.0.1", 1143));
    }

    #[test]
    fn ses_regions_are_present() {
        for region in SES_REGIONS {
            let id = format!("ses-{region}");
            let p = get(&id).unwrap_or_else(|| panic!("missing {id}"));
            assert_eq!(p.smtp.host, format!("email-smtp.{region}.amazonaws.com"));
            assert_eq!(p.smtp.port, 587);
            assert_eq!(p.smtp.security, Security::Starttls);
            assert_eq!(p.username, UsernameRule::ProviderCredential);
            assert!(p.imap.is_none());
            assert!(p.name.contains(region));
        }
    }
}
