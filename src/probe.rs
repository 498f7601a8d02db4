//! Probar / Test: a staged check of an account's servers that names the cause and the fix of
//! any failure.
//!
//! Stages, each timed and bounded: `dns`, `connect`, `tls` (implicit TLS), `greeting`, `ehlo`,
//! `starttls` + `tls` + `ehlo` again, `auth`, `mail_from`, `rcpt_to`, `data` (a real test
//! message, unless `send` is false), then `imap` when the account has IMAP settings (connect,
//! TLS, LOGIN, SELECT). The first failure stops the SMTP part and is explained by the shared
//! classifier. The transcript never holds a credential: the recorder masks the AUTH exchange
//! and, as a second guard, every known secret is scrubbed from the final lines.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use mail_send::mail_builder::MessageBuilder;
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

use crate::domain::account::{AccountSpec, AuthMethod, EmailAddress, ImapSpec, Security};
use crate::domain::diagnosis::{self, Context, Diagnosis, Failure, Stage};
use crate::domain::i18n::Text;
use crate::secrets::Secret;
use crate::smtp::transcript::Transcript;
use crate::smtp::{self, Conn, Session, Timeouts};
use crate::tls::{CertificateInfo, TlsTrust, Verification};

/// Operator settings for connection tests.
#[derive(Debug, Clone)]
pub struct ProbeSettings {
    pub timeouts: Timeouts,
    /// Bound on the whole test, IMAP included.
    pub total: Duration,
    /// Refuse loopback, private, link-local and metadata destinations (after DNS).
    pub deny_private_destinations: bool,
    pub trust: TlsTrust,
    /// The name cartero gives in EHLO.
    pub helo_name: String,
}

/// What to test.
#[derive(Debug, Clone)]
pub struct ProbeRequest {
    pub spec: AccountSpec,
    pub password: Option<Secret>,
    pub imap_password: Option<Secret>,
    /// Where the test message goes (defaults to the account's own address upstream).
    pub send_to: EmailAddress,
    /// `false` stops after RCPT TO and sends nothing.
    pub send: bool,
}

/// One stage's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct StageReport {
    pub name: Stage,
    pub ok: bool,
    pub ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The whole test's outcome. Texts are bilingual; the interface picks the language.
#[derive(Debug, Clone)]
pub struct ProbeReport {
    pub ok: bool,
    pub stages: Vec<StageReport>,
    pub diagnosis: Option<Diagnosis>,
    /// "Correo enviado satisfactoriamente" / "Test email sent successfully", or the diagnosis.
    pub message: Text,
    pub transcript: Vec<String>,
    pub certificate: Option<CertificateInfo>,
    pub warnings: Vec<Text>,
    pub message_id: Option<String>,
}

#[derive(Default)]
struct Progress {
    stages: Vec<StageReport>,
    current: Option<(Stage, Instant)>,
    transcripts: Vec<Arc<Mutex<Transcript>>>,
    certificate: Option<CertificateInfo>,
    message_id: Option<String>,
    /// Receives each stage as it completes (the form's live progress).
    observer: Option<Observer>,
}

/// Where a running test sends each completed stage.
pub type Observer = tokio::sync::mpsc::UnboundedSender<StageReport>;

type Shared = Arc<Mutex<Progress>>;

fn begin(p: &Shared, stage: Stage) {
    p.lock().expect("not poisoned").current = Some((stage, Instant::now()));
}

fn finish(p: &Shared, ok: bool, detail: Option<String>) {
    let mut p = p.lock().expect("not poisoned");
    if let Some((name, start)) = p.current.take() {
        let report = StageReport {
            name,
            ok,
            ms: start.elapsed().as_millis() as u64,
            detail,
        };
        if let Some(observer) = &p.observer {
            let _ = observer.send(report.clone());
        }
        p.stages.push(report);
    }
}

/// Runs `fut` as stage `stage`; on success records `detail(&value)`.
async fn stage<T>(
    p: &Shared,
    stage: Stage,
    fut: impl Future<Output = Result<T, Failure>>,
    detail: impl FnOnce(&T) -> Option<String>,
) -> Result<T, Failure> {
    begin(p, stage);
    match fut.await {
        Ok(v) => {
            finish(p, true, detail(&v));
            Ok(v)
        }
        Err(f) => Err(f),
    }
}

fn context(spec: &AccountSpec) -> Context {
    Context {
        host: spec.host.to_string(),
        port: spec.port.get(),
        security: spec.security,
        auth: spec.auth,
    }
}

/// Runs the test; never panics, always answers within `settings.total` (plus a moment).
pub async fn run(request: &ProbeRequest, settings: &ProbeSettings) -> ProbeReport {
    run_observed(request, settings, None).await
}

/// [`run`], sending each stage to `observer` as soon as it completes.
pub async fn run_observed(
    request: &ProbeRequest,
    settings: &ProbeSettings,
    observer: Option<Observer>,
) -> ProbeReport {
    let progress: Shared = Arc::new(Mutex::new(Progress {
        observer,
        ..Progress::default()
    }));
    let spec = &request.spec;
    let smtp_ctx = context(spec);
    let mut warnings = Vec::new();
    if !spec.tls_verify && spec.security != Security::None {
        warnings.push(Text::new(
            "Certificate verification is off: the connection is encrypted but nobody checks it reaches the real server. Pin the certificate's SHA-256 fingerprint instead.",
            "La verificación del certificado está desactivada: la conexión va cifrada pero nadie comprueba que llegue al servidor real. Fije en su lugar la huella SHA-256 del certificado.",
        ));
    }
    if spec.security == Security::None && spec.auth == AuthMethod::Password {
        warnings.push(Text::new(
            "The password travels unencrypted (security `none`): use `starttls` or `tls` unless the server is on a trusted network.",
            "La contraseña viaja sin cifrar (encriptación `none`): use `starttls` o `tls` salvo que el servidor esté en una red de confianza.",
        ));
    }

    let outcome = tokio::time::timeout(settings.total, async {
        let smtp = run_smtp(request, settings, &progress, &mut warnings).await;
        if let Err(f) = smtp {
            return Err((f, smtp_ctx.clone()));
        }
        if let Some(imap) = &spec.imap {
            let imap_ctx = Context {
                host: imap.host.to_string(),
                port: imap.port.get(),
                security: imap.security,
                auth: AuthMethod::Password,
            };
            begin(&progress, Stage::Imap);
            match run_imap(imap, spec, request, settings).await {
                Ok(detail) => finish(&progress, true, Some(detail)),
                Err(f) => return Err((f, imap_ctx)),
            }
        }
        Ok(())
    })
    .await;

    let failure = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(f)) => Some(f),
        Err(_) => {
            let current = progress
                .lock()
                .expect("not poisoned")
                .current
                .map(|(s, _)| s)
                .unwrap_or(Stage::Connect);
            Some((
                if current == Stage::Greeting {
                    Failure::GreetingTimeout {
                        implicit_tls: false,
                    }
                } else {
                    Failure::ReplyTimeout(current)
                },
                smtp_ctx.clone(),
            ))
        }
    };

    let diagnosis = failure.map(|(f, ctx)| diagnosis::diagnose(&f, &ctx));
    if let Some(d) = &diagnosis {
        // The server's own words, or the stable code: the explanation, in the reader's
        // language, is the diagnosis.
        let detail = d
            .reply
            .clone()
            .unwrap_or_else(|| d.code.as_str().to_string());
        finish(&progress, false, Some(detail));
    }
    let p = progress.lock().expect("not poisoned");
    let mut transcript: Vec<String> = p
        .transcripts
        .iter()
        .flat_map(|t| t.lock().expect("not poisoned").lines())
        .collect();
    scrub(&mut transcript, request);
    let ok = diagnosis.is_none();
    let message = match (&diagnosis, request.send) {
        (None, true) => Text::new(
            "Test email sent successfully",
            "Correo enviado satisfactoriamente",
        ),
        (None, false) => Text::new(
            "Connection test passed: the server accepted the sender and the recipient (no email was sent).",
            "Prueba de conexión correcta: el servidor aceptó el remitente y el destinatario (no se envió ningún correo).",
        ),
        (Some(d), _) => d.message.clone(),
    };
    ProbeReport {
        ok,
        stages: p.stages.clone(),
        diagnosis,
        message,
        transcript,
        certificate: p.certificate.clone(),
        warnings,
        message_id: p.message_id.clone(),
    }
}

/// Removes any credential that reached the transcript despite the recorder's masking.
fn scrub(lines: &mut [String], request: &ProbeRequest) {
    let mut needles = Vec::new();
    for secret in [&request.password, &request.imap_password]
        .into_iter()
        .flatten()
    {
        let s = secret.expose();
        if s.len() >= 3 {
            needles.push(s.to_string());
            needles.push(B64.encode(s));
            if let Some(user) = &request.spec.username {
                needles.push(B64.encode(format!("\0{user}\0{s}")));
            }
        }
    }
    for line in lines.iter_mut() {
        for n in &needles {
            if line.contains(n.as_str()) {
                *line = line.replace(n.as_str(), "****");
            }
        }
    }
}

async fn run_smtp(
    request: &ProbeRequest,
    settings: &ProbeSettings,
    p: &Shared,
    warnings: &mut Vec<Text>,
) -> Result<(), Failure> {
    let spec = &request.spec;
    let host = spec.host.as_str();
    let port = spec.port.get();
    let t = settings.timeouts;

    let addrs = stage(
        p,
        Stage::Dns,
        smtp::resolve(host, port, t.connect, settings.deny_private_destinations),
        |a| {
            Some(
                a.iter()
                    .map(|a| a.ip().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            )
        },
    )
    .await?;
    let tcp = stage(p, Stage::Connect, smtp::connect(&addrs, t.connect), |s| {
        s.peer_addr().ok().map(|a| a.to_string())
    })
    .await?;

    let conn = if spec.security == Security::Tls {
        begin(p, Stage::Tls);
        match smtp::handshake(tcp, host, &settings.trust, Verification::of(spec), t.reply).await {
            Ok((tls, details)) => {
                p.lock().expect("not poisoned").certificate = details.certificate.clone();
                finish(p, true, Some(details.summary()));
                Conn::Tls(Box::new(tls))
            }
            Err((failure, cert)) => {
                p.lock().expect("not poisoned").certificate = cert;
                return Err(failure);
            }
        }
    } else {
        Conn::Plain(tcp)
    };

    let mut session = Session::new(conn, host, t.reply);
    p.lock()
        .expect("not poisoned")
        .transcripts
        .push(session.transcript());
    let greeting = stage(p, Stage::Greeting, session.greeting(), |r| {
        Some(r.summary())
    })
    .await;
    if let Err(Failure::GreetingTimeout { .. }) = greeting {
        // A silent server on a non-TLS account: is it an implicit-TLS port?
        if spec.security != Security::Tls && speaks_implicit_tls(&addrs, host, settings).await {
            return Err(Failure::GreetingTimeout { implicit_tls: true });
        }
    }
    greeting?;

    let describe = |lines: &Vec<String>| Some(lines.join(", "));
    let (mut caps, mut lines) = stage(
        p,
        Stage::Ehlo,
        session.ehlo(&settings.helo_name),
        |(_, l)| describe(l),
    )
    .await?;

    if spec.security == Security::Starttls {
        let offers = lines.iter().any(|l| l.eq_ignore_ascii_case("STARTTLS"));
        begin(p, Stage::Starttls);
        if !offers {
            return Err(Failure::StarttlsNotOffered);
        }
        finish(p, true, None);
        begin(p, Stage::Tls);
        match session
            .starttls(&settings.trust, Verification::of(spec))
            .await
        {
            Ok(details) => {
                p.lock().expect("not poisoned").certificate = details.certificate.clone();
                finish(p, true, Some(details.summary()));
            }
            Err((failure, cert)) => {
                p.lock().expect("not poisoned").certificate = cert;
                // The STARTTLS command itself was refused: that is the starttls stage's fault.
                if let Failure::Reply {
                    stage: Stage::Starttls,
                    ..
                } = failure
                {
                    let mut g = p.lock().expect("not poisoned");
                    g.current = Some((Stage::Starttls, Instant::now()));
                }
                return Err(failure);
            }
        }
        (caps, lines) = stage(
            p,
            Stage::Ehlo,
            session.ehlo(&settings.helo_name),
            |(_, l)| describe(l),
        )
        .await?;
    }

    if spec.auth == AuthMethod::Password {
        let username = spec.username.clone().unwrap_or_default();
        begin(p, Stage::Auth);
        let Some(password) = &request.password else {
            return Err(Failure::MissingPassword);
        };
        session
            .authenticate(
                &caps,
                &lines,
                &username,
                password.expose(),
                spec.microsoft365,
            )
            .await?;
        finish(p, true, Some(format!("authenticated as {username}")));
    }

    // Microsoft 365 refuses a sender other than the mailbox (SendAsDenied): compatibility
    // mode sends as the mailbox and keeps the intended address in Reply-To, as delivery does.
    let mut envelope_from = spec.from_email.to_string();
    if spec.microsoft365
        && let Some(user) = spec.username.as_deref().filter(|u| u.contains('@'))
        && !user.eq_ignore_ascii_case(spec.from_email.as_str())
    {
        warnings.push(Text::new(
            format!("Microsoft 365 compatibility: the sender {} is replaced by the mailbox {user}; the original address goes in Reply-To.", spec.from_email),
            format!("Compatibilidad con Microsoft 365: el remitente {} se sustituye por el buzón {user}; la dirección original va en Responder a.", spec.from_email),
        ));
        envelope_from = user.to_string();
    }

    let message = test_message(spec, &envelope_from, &request.send_to);
    let size = caps.size;
    if size > 0 && message.len() > size {
        return Err(Failure::Reply {
            stage: Stage::MailFrom,
            reply: crate::domain::diagnosis::SmtpReply::new(
                552,
                Some((5, 3, 4)),
                format!(
                    "message of {} bytes exceeds the server's SIZE {size}",
                    message.len()
                ),
            ),
        });
    }
    stage(
        p,
        Stage::MailFrom,
        session.mail_from(&envelope_from, (size > 0).then_some(message.len())),
        |r| Some(r.summary()),
    )
    .await?;
    stage(
        p,
        Stage::RcptTo,
        session.rcpt_to(request.send_to.as_str()),
        |r| Some(r.summary()),
    )
    .await?;
    if request.send {
        stage(p, Stage::Data, session.data(&message), |r| {
            Some(r.summary())
        })
        .await?;
        p.lock().expect("not poisoned").message_id = message_id_of(&message);
    } else {
        session.rset().await;
    }
    session.quit().await;
    Ok(())
}

/// Tries a TLS handshake on a fresh connection: does this port expect implicit TLS?
async fn speaks_implicit_tls(
    addrs: &[std::net::SocketAddr],
    host: &str,
    settings: &ProbeSettings,
) -> bool {
    let wait = settings.timeouts.reply.min(Duration::from_secs(5));
    let Ok(tcp) = smtp::connect(addrs, settings.timeouts.connect).await else {
        return false;
    };
    smtp::handshake(tcp, host, &settings.trust, Verification::Insecure, wait)
        .await
        .is_ok()
}

fn message_id_of(message: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(message);
    text.lines().take_while(|l| !l.is_empty()).find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("message-id")
            .then(|| value.trim().trim_matches(['<', '>']).to_string())
    })
}

/// The test email: names the account and the time, in both languages.
fn test_message(spec: &AccountSpec, envelope_from: &str, to: &EmailAddress) -> Vec<u8> {
    let now = OffsetDateTime::now_utc();
    let when = now.format(&Rfc2822).unwrap_or_default();
    let domain = envelope_from
        .rsplit_once('@')
        .map(|(_, d)| d)
        .unwrap_or("cartero.invalid");
    let id = format!("{}.test@{domain}", uuid::Uuid::now_v7().simple());
    let body = format!(
        "Este es un correo de prueba enviado por cartero desde la cuenta «{name}» ({host}:{port}) el {when}.\n\
         Si lo recibe, la configuración SMTP funciona.\n\n\
         This is a test email sent by cartero from the account “{name}” ({host}:{port}) at {when}.\n\
         If you received it, the SMTP settings work.\n",
        name = spec.name,
        host = spec.host,
        port = spec.port.get(),
    );
    let from_name = spec.from_name.clone().unwrap_or_else(|| spec.name.clone());
    let mut builder = MessageBuilder::new()
        .from((from_name, envelope_from.to_string()))
        .to(to.as_str().to_string())
        .subject(format!("Prueba de cartero / cartero test: {}", spec.name))
        .message_id(id)
        .text_body(body);
    let reply_to = spec.reply_to.as_ref().map(|r| r.to_string()).or_else(|| {
        (envelope_from != spec.from_email.as_str()).then(|| spec.from_email.to_string())
    });
    if let Some(r) = reply_to {
        builder = builder.reply_to(r);
    }
    builder.write_to_vec().unwrap_or_default()
}

async fn run_imap(
    imap: &ImapSpec,
    spec: &AccountSpec,
    request: &ProbeRequest,
    settings: &ProbeSettings,
) -> Result<String, Failure> {
    let fail = |reason: String| Failure::Imap { reason };
    let host = imap.host.as_str();
    let port = imap.port.get();
    let t = settings.timeouts;
    let addrs = smtp::resolve(host, port, t.connect, settings.deny_private_destinations)
        .await
        .map_err(|f| fail(format!("{host}: {}", short(&f))))?;
    let tcp = smtp::connect(&addrs, t.connect)
        .await
        .map_err(|f| fail(format!("{host}:{port}: {}", short(&f))))?;
    let verify = if spec.tls_verify {
        Verification::Verify
    } else {
        Verification::Insecure
    };
    let username = imap
        .username
        .clone()
        .or_else(|| spec.username.clone())
        .unwrap_or_default();
    let password = request
        .imap_password
        .as_ref()
        .or(request.password.as_ref())
        .map(|s| s.expose().to_string())
        .ok_or_else(|| fail("no IMAP password is stored".into()))?;

    let conn = match imap.security {
        Security::Tls => {
            let (tls, _) = smtp::handshake(tcp, host, &settings.trust, verify, t.reply)
                .await
                .map_err(|(f, _)| fail(format!("TLS: {}", short(&f))))?;
            Conn::Tls(Box::new(tls))
        }
        Security::Starttls => {
            let mut client = async_imap::Client::new(tcp);
            within(t.reply, client.read_response())
                .await
                .map_err(|e| fail(format!("greeting: {e}")))?;
            within(t.reply, client.run_command_and_check_ok("STARTTLS", None))
                .await
                .map_err(|e| fail(format!("STARTTLS: {e}")))?;
            let tcp = client.into_inner();
            let (tls, _) = smtp::handshake(tcp, host, &settings.trust, verify, t.reply)
                .await
                .map_err(|(f, _)| fail(format!("TLS: {}", short(&f))))?;
            Conn::Tls(Box::new(tls))
        }
        Security::None => Conn::Plain(tcp),
    };
    let mut client = async_imap::Client::new(conn);
    if imap.security != Security::Starttls {
        within(t.reply, client.read_response())
            .await
            .map_err(|e| fail(format!("greeting: {e}")))?;
    }
    let mut session = match tokio::time::timeout(t.reply, client.login(&username, &password)).await
    {
        Err(_) => return Err(fail("LOGIN timed out".into())),
        Ok(Err((e, _))) => {
            return Err(fail(format!(
                "LOGIN as {username} refused: {}",
                scrub_text(&e.to_string(), &password)
            )));
        }
        Ok(Ok(s)) => s,
    };
    let mailbox = match tokio::time::timeout(t.reply, session.select(&imap.folder)).await {
        Err(_) => return Err(fail("SELECT timed out".into())),
        Ok(Err(e)) => {
            return Err(fail(format!(
                "folder `{}` cannot be opened: {e}",
                imap.folder
            )));
        }
        Ok(Ok(m)) => m,
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), session.logout()).await;
    Ok(format!(
        "{host}:{port} {}: logged in as {username}, folder {} has {} message(s)",
        imap.security.as_str(),
        imap.folder,
        mailbox.exists
    ))
}

async fn within<T, E: std::fmt::Display>(
    limit: Duration,
    fut: impl Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, fut).await {
        Err(_) => Err("timed out".into()),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(v)) => Ok(v),
    }
}

fn scrub_text(text: &str, secret: &str) -> String {
    if secret.len() >= 3 {
        text.replace(secret, "****")
    } else {
        text.to_string()
    }
}

fn short(f: &Failure) -> String {
    match f {
        Failure::DnsNotFound => "the name does not exist".into(),
        Failure::ConnectionRefused => "connection refused".into(),
        Failure::ConnectTimeout => "connection timed out".into(),
        Failure::Certificate(p) => format!("certificate refused ({p:?})"),
        Failure::DestinationNotAllowed { address } => {
            format!("{address} is a private address, which is not allowed")
        }
        other => format!("{other:?}"),
    }
}
