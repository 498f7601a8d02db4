//! Probar / Test against real servers on 127.0.0.1: aiosmtpd replaying real provider replies,
//! Postfix's smtp-sink with its fault options, Dovecot, a silent listener, a closed port, and
//! certificates made by a test CA. Every case checks the diagnosis code, that the fix exists in
//! both languages, and that no credential reaches the transcript.

use std::time::Duration;

use cartero::domain::account::{AccountInput, EmailAddress};
use cartero::domain::diagnosis::DiagnosisCode;
use cartero::probe::{ProbeReport, ProbeRequest, ProbeSettings, run};
use cartero::secrets::Secret;
use cartero::smtp::Timeouts;
use cartero::tls::TlsTrust;
use serde_json::{Value, json};

use crate::peers::{CertFiles, Dovecot, SmtpSink, Smtpd, SmtpdOptions, TestPki, free_port};

const PASSWORD: &str = "Pr0be-s3cret!";

fn settings(pki: &TestPki) -> ProbeSettings {
    ProbeSettings {
        timeouts: Timeouts {
            connect: Duration::from_secs(3),
            reply: Duration::from_secs(3),
        },
        total: Duration::from_secs(30),
        deny_private_destinations: false,
        trust: TlsTrust::only(&pki.ca_pem).unwrap(),
        helo_name: "cartero.test".into(),
    }
}

/// An account on 127.0.0.1:`port`; `extra` overrides fields.
fn account(port: u16, security: &str, extra: Value) -> Value {
    let mut a = json!({
        "name": "Prueba", "host": "127.0.0.1", "port": port, "security": security,
        "auth": "password", "username": "alice", "password": PASSWORD,
        "from_email": "alice@acme.example"
    });
    for (k, v) in extra.as_object().unwrap() {
        a[k] = v.clone();
    }
    a
}

async fn probe_with(settings: &ProbeSettings, account: Value, send: bool) -> ProbeReport {
    let input: AccountInput = serde_json::from_value(account).unwrap();
    let (spec, secrets) = input.parse(false).expect("valid test account");
    let secret = |c: &cartero::domain::account::SecretChange| match c {
        cartero::domain::account::SecretChange::Set(s) => Some(Secret::new(s.clone())),
        _ => None,
    };
    let request = ProbeRequest {
        send_to: EmailAddress::parse("to", "ana@example.com").unwrap(),
        send,
        password: secret(&secrets.password),
        imap_password: secret(&secrets.imap_password),
        spec,
    };
    run(&request, settings).await
}

async fn probe(pki: &TestPki, account: Value) -> ProbeReport {
    probe_with(&settings(pki), account, true).await
}

/// The common checks of a failed test, returning the report for more.
fn expect_failure(report: &ProbeReport, code: DiagnosisCode) -> &ProbeReport {
    assert!(
        !report.ok,
        "expected {code}, got success: {:#?}",
        report.stages
    );
    let d = report.diagnosis.as_ref().unwrap();
    assert_eq!(d.code, code, "{:#?}\n{:#?}", d, report.transcript);
    assert!(d.fix.en.len() > 10 && d.fix.es.len() > 10 && d.fix.en != d.fix.es);
    assert!(d.message.en.len() > 10 && d.message.es.len() > 10);
    assert_eq!(report.message, d.message);
    assert!(
        !report.stages.last().unwrap().ok,
        "the last stage is the failed one"
    );
    no_secret(report);
    report
}

fn no_secret(report: &ProbeReport) {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let text = format!("{:?}", report);
    for needle in [
        PASSWORD.to_string(),
        b64.encode(PASSWORD),
        b64.encode(format!("\0alice\0{PASSWORD}")),
    ] {
        assert!(!text.contains(&needle), "a credential leaked: {text}");
    }
}

fn stage_names(report: &ProbeReport) -> Vec<&'static str> {
    report.stages.iter().map(|s| s.name.as_str()).collect()
}

fn starttls_server(pki: &TestPki, script: Option<Value>) -> Option<Smtpd> {
    Smtpd::start(SmtpdOptions {
        mode: "starttls",
        cert: Some(pki.valid.clone()),
        auth: Some(("alice", PASSWORD)),
        auth_require_tls: true,
        script,
        ..SmtpdOptions::default()
    })
}

fn tls_server(cert: &CertFiles) -> Option<Smtpd> {
    Smtpd::start(SmtpdOptions {
        mode: "tls",
        cert: Some(cert.clone()),
        auth: Some(("alice", PASSWORD)),
        ..SmtpdOptions::default()
    })
}

#[tokio::test]
async fn starttls_auth_and_a_real_test_email() {
    let pki = TestPki::new();
    let Some(server) = starttls_server(&pki, None) else {
        return;
    };
    let report = probe(&pki, account(server.port, "starttls", json!({}))).await;
    assert!(report.ok, "{:#?}\n{:#?}", report.stages, report.diagnosis);
    assert_eq!(report.message.en, "Test email sent successfully");
    assert_eq!(report.message.es, "Correo enviado satisfactoriamente");
    assert_eq!(
        stage_names(&report),
        [
            "dns",
            "connect",
            "greeting",
            "ehlo",
            "starttls",
            "tls",
            "ehlo",
            "auth",
            "mail_from",
            "rcpt_to",
            "data"
        ]
    );
    let tls = report
        .stages
        .iter()
        .find(|s| s.name.as_str() == "tls")
        .unwrap();
    assert!(
        tls.detail.as_deref().unwrap().contains("TLSv1.3"),
        "{tls:?}"
    );
    let cert = report.certificate.as_ref().unwrap();
    assert!(cert.issuer.contains("cartero test CA"));
    assert_eq!(cert.sha256.len(), 95);
    assert!(report.transcript.iter().any(|l| l.starts_with("C: AUTH ")));
    no_secret(&report);

    let log = server.wait_for_messages(1, Duration::from_secs(5));
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["auth_user"], "alice");
    assert_eq!(log[0]["tls"], true);
    assert_eq!(log[0]["rcpt_tos"][0], "ana@example.com");
    let body = server.message_body(1);
    assert!(
        body.contains("Prueba de cartero / cartero test: Prueba"),
        "{body}"
    );
    assert!(body.contains("Este es un correo de prueba") && body.contains("This is a test email"));
    assert_eq!(
        log[0]["message_id"]
            .as_str()
            .unwrap()
            .trim_matches(['<', '>']),
        report.message_id.as_deref().unwrap()
    );
}

#[tokio::test]
async fn implicit_tls_with_auth() {
    let pki = TestPki::new();
    let Some(server) = tls_server(&pki.valid) else {
        return;
    };
    let report = probe(&pki, account(server.port, "tls", json!({}))).await;
    assert!(report.ok, "{:#?}", report.diagnosis);
    assert_eq!(
        stage_names(&report)[..4],
        ["dns", "connect", "tls", "greeting"]
    );
}

#[tokio::test]
async fn no_send_stops_after_rcpt_to() {
    let pki = TestPki::new();
    let Some(server) = starttls_server(&pki, None) else {
        return;
    };
    let report = probe_with(
        &settings(&pki),
        account(server.port, "starttls", json!({})),
        false,
    )
    .await;
    assert!(report.ok);
    assert_eq!(*stage_names(&report).last().unwrap(), "rcpt_to");
    assert!(report.message_id.is_none());
    std::thread::sleep(Duration::from_millis(200));
    assert!(server.messages().is_empty(), "nothing was sent");
}

#[tokio::test]
async fn wrong_password_is_auth_failed() {
    let pki = TestPki::new();
    let Some(server) = starttls_server(&pki, None) else {
        return;
    };
    let r = probe(
        &pki,
        account(server.port, "starttls", json!({"password": "wrong-pass"})),
    )
    .await;
    expect_failure(&r, DiagnosisCode::AuthFailed);
    assert!(!format!("{r:?}").contains("wrong-pass"));
    assert_eq!(r.stages.last().unwrap().name.as_str(), "auth");
}

#[tokio::test]
async fn gmail_app_password_required_is_web_login_required() {
    let pki = TestPki::new();
    let script = json!({"auth": ["534-5.7.9 Application-specific password required. Learn more at", "534 5.7.9  https://support.google.com/mail/?p=InvalidSecondFactor - gsmtp"]});
    let Some(server) = starttls_server(&pki, Some(script)) else {
        return;
    };
    let r = probe(&pki, account(server.port, "starttls", json!({}))).await;
    let d = expect_failure(&r, DiagnosisCode::WebLoginRequired)
        .diagnosis
        .clone()
        .unwrap();
    assert!(d.fix.es.contains("contraseña de aplicación"));
    assert!(d.reply.unwrap().contains("5.7.9"));
}

#[tokio::test]
async fn microsoft_smtp_auth_disabled() {
    let pki = TestPki::new();
    let script = json!({"auth": "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information."});
    let Some(server) = starttls_server(&pki, Some(script)) else {
        return;
    };
    let r = probe(
        &pki,
        account(server.port, "starttls", json!({"microsoft365": true})),
    )
    .await;
    let d = expect_failure(&r, DiagnosisCode::AuthDisabledByProvider)
        .diagnosis
        .clone()
        .unwrap();
    assert!(d.fix.en.contains("Authenticated SMTP"));
}

#[tokio::test]
async fn send_as_denied_is_sender_rejected() {
    let pki = TestPki::new();
    let script = json!({"mail": "554 5.2.252 SendAsDenied; alice@acme.example not allowed to send as ventas@acme.example; STOREDRV.Submission.Exception:SendAsDeniedException"});
    let Some(server) = starttls_server(&pki, Some(script)) else {
        return;
    };
    let r = probe(&pki, account(server.port, "starttls", json!({}))).await;
    expect_failure(&r, DiagnosisCode::SenderRejected);
    assert_eq!(r.stages.last().unwrap().name.as_str(), "mail_from");
}

#[tokio::test]
async fn unknown_recipient_is_recipient_rejected() {
    let pki = TestPki::new();
    let script = json!({"rcpt": "550 5.1.1 <ana@example.com>: Recipient address rejected: User unknown in virtual mailbox table"});
    let Some(server) = starttls_server(&pki, Some(script)) else {
        return;
    };
    let r = probe(&pki, account(server.port, "starttls", json!({}))).await;
    expect_failure(&r, DiagnosisCode::RecipientRejected);
}

#[tokio::test]
async fn daily_quota_is_rate_limited_and_transient() {
    let pki = TestPki::new();
    let script = json!({"mail": ["550-5.4.5 Daily user sending limit exceeded. For more information on Gmail", "550 5.4.5 sending limits go to https://support.google.com/a/answer/166852 - gsmtp"]});
    let Some(server) = starttls_server(&pki, Some(script)) else {
        return;
    };
    let r = probe(&pki, account(server.port, "starttls", json!({}))).await;
    let d = expect_failure(&r, DiagnosisCode::RateLimited)
        .diagnosis
        .clone()
        .unwrap();
    assert!(d.transient);
    assert!(d.message.en.contains("Sending limit reached"));
}

#[tokio::test]
async fn oversized_message_is_message_too_large() {
    let pki = TestPki::new();
    let script = json!({"data": "552 5.3.4 Message size exceeds fixed limit"});
    let Some(server) = starttls_server(&pki, Some(script)) else {
        return;
    };
    let r = probe(&pki, account(server.port, "starttls", json!({}))).await;
    expect_failure(&r, DiagnosisCode::MessageTooLarge);
    assert_eq!(r.stages.last().unwrap().name.as_str(), "data");
}

#[tokio::test]
async fn greeting_421_is_server_unavailable() {
    let pki = TestPki::new();
    let script =
        json!({"greeting": "421 4.3.2 Service not available, closing transmission channel"});
    let Some(server) = starttls_server(&pki, Some(script)) else {
        return;
    };
    let r = probe(&pki, account(server.port, "starttls", json!({}))).await;
    expect_failure(&r, DiagnosisCode::ServerUnavailable);
}

#[tokio::test]
async fn closed_port_is_connection_refused() {
    let pki = TestPki::new();
    let port = free_port();
    let r = probe(&pki, account(port, "starttls", json!({}))).await;
    expect_failure(&r, DiagnosisCode::ConnectionRefused);
    assert_eq!(r.stages.last().unwrap().name.as_str(), "connect");
}

#[tokio::test]
async fn a_server_that_never_speaks_is_connection_timeout_not_a_hang() {
    let pki = TestPki::new();
    let Some(server) = Smtpd::start(SmtpdOptions {
        mode: "silent",
        ..SmtpdOptions::default()
    }) else {
        return;
    };
    let started = std::time::Instant::now();
    let r = probe(&pki, account(server.port, "starttls", json!({}))).await;
    expect_failure(&r, DiagnosisCode::ConnectionTimeout);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "bounded by the timeouts"
    );
}

#[tokio::test]
async fn tls_against_a_starttls_port_is_wrong_security() {
    let pki = TestPki::new();
    let Some(server) = starttls_server(&pki, None) else {
        return;
    };
    let r = probe(&pki, account(server.port, "tls", json!({}))).await;
    let d = expect_failure(&r, DiagnosisCode::WrongSecurityForPort)
        .diagnosis
        .clone()
        .unwrap();
    assert!(d.fix.en.contains("`starttls`"), "{}", d.fix.en);
}

#[tokio::test]
async fn starttls_against_an_implicit_tls_port_is_wrong_security() {
    let pki = TestPki::new();
    let Some(server) = tls_server(&pki.valid) else {
        return;
    };
    let r = probe(&pki, account(server.port, "starttls", json!({}))).await;
    let d = expect_failure(&r, DiagnosisCode::WrongSecurityForPort)
        .diagnosis
        .clone()
        .unwrap();
    assert!(d.fix.en.contains("`tls`"), "{}", d.fix.en);
    assert!(d.fix.es.contains("`tls`"));
}

#[tokio::test]
async fn starttls_not_offered() {
    let pki = TestPki::new();
    let Some(server) = Smtpd::start(SmtpdOptions {
        mode: "plain",
        ..SmtpdOptions::default()
    }) else {
        return;
    };
    let r = probe(&pki, account(server.port, "starttls", json!({}))).await;
    expect_failure(&r, DiagnosisCode::StarttlsUnsupported);
}

#[tokio::test]
async fn certificate_problems_are_named() {
    let pki = TestPki::new();
    let cases = [
        (&pki.expired, "expired", "caducado"),
        (&pki.self_signed, "self-signed", "autofirmado"),
        (
            &pki.wrong_name,
            "not valid for the name",
            "no es válido para el nombre",
        ),
    ];
    for (cert, en, es) in cases {
        let Some(server) = tls_server(cert) else {
            return;
        };
        let r = probe(&pki, account(server.port, "tls", json!({}))).await;
        let d = expect_failure(&r, DiagnosisCode::CertificateInvalid)
            .diagnosis
            .clone()
            .unwrap();
        assert!(d.message.en.contains(en), "{}", d.message.en);
        assert!(d.message.es.contains(es), "{}", d.message.es);
        assert!(
            r.certificate.is_some(),
            "the presented certificate is shown, ready to pin"
        );
    }
}

#[tokio::test]
async fn a_pinned_fingerprint_accepts_a_self_signed_server_and_a_wrong_pin_refuses() {
    let pki = TestPki::new();
    let Some(server) = tls_server(&pki.self_signed) else {
        return;
    };
    let first = probe(&pki, account(server.port, "tls", json!({}))).await;
    let pin = first.certificate.as_ref().unwrap().sha256.clone();
    let pinned = probe(
        &pki,
        account(server.port, "tls", json!({"tls_fingerprint": pin})),
    )
    .await;
    assert!(pinned.ok, "{:#?}", pinned.diagnosis);
    assert!(pinned.warnings.is_empty());

    let wrong = "00".repeat(32);
    let r = probe(
        &pki,
        account(server.port, "tls", json!({"tls_fingerprint": wrong})),
    )
    .await;
    let d = expect_failure(&r, DiagnosisCode::CertificateInvalid)
        .diagnosis
        .clone()
        .unwrap();
    assert!(d.message.en.contains("pinned"));
}

#[tokio::test]
async fn verification_off_works_but_is_flagged() {
    let pki = TestPki::new();
    let Some(server) = tls_server(&pki.self_signed) else {
        return;
    };
    let r = probe(
        &pki,
        account(server.port, "tls", json!({"tls_verify": false})),
    )
    .await;
    assert!(r.ok, "{:#?}", r.diagnosis);
    assert!(
        r.warnings
            .iter()
            .any(|w| w.en.contains("verification is off"))
    );
}

#[tokio::test]
async fn no_auth_offered_is_auth_unsupported() {
    let pki = TestPki::new();
    let Some(server) = Smtpd::start(SmtpdOptions {
        mode: "plain",
        ..SmtpdOptions::default()
    }) else {
        return;
    };
    let r = probe(&pki, account(server.port, "none", json!({}))).await;
    expect_failure(&r, DiagnosisCode::AuthUnsupported);
    assert!(r.warnings.iter().any(|w| w.en.contains("unencrypted")));
}

#[tokio::test]
async fn a_server_that_requires_auth_is_auth_required() {
    let pki = TestPki::new();
    let Some(server) = starttls_server(&pki, None) else {
        return;
    };
    let r = probe(
        &pki,
        account(
            server.port,
            "starttls",
            json!({"auth": "none", "username": null, "password": null}),
        ),
    )
    .await;
    expect_failure(&r, DiagnosisCode::AuthRequired);
}

#[tokio::test]
async fn private_destinations_can_be_refused() {
    let pki = TestPki::new();
    let mut s = settings(&pki);
    s.deny_private_destinations = true;
    let r = probe_with(&s, account(2, "starttls", json!({})), true).await;
    expect_failure(&r, DiagnosisCode::DestinationNotAllowed);
    assert_eq!(r.stages.last().unwrap().name.as_str(), "dns");
}

#[tokio::test]
async fn smtp_sink_accepts_and_its_fault_options_are_diagnosed() {
    let pki = TestPki::new();
    let plain = |port| {
        account(
            port,
            "none",
            json!({"auth": "none", "username": null, "password": null}),
        )
    };
    let Some(sink) = SmtpSink::start(&[]) else {
        return;
    };
    let r = probe(&pki, plain(sink.port)).await;
    assert!(
        r.ok,
        "smtp-sink (bare `250 ` EHLO line) accepts: {:#?}",
        r.diagnosis
    );
    drop(sink);

    let cases: [(&[&str], DiagnosisCode); 3] = [
        (&["-f", "mail"], DiagnosisCode::SenderRejected),
        (&["-r", "rcpt"], DiagnosisCode::TemporaryFailure),
        (&["-f", "data"], DiagnosisCode::MessageRejected),
    ];
    for (args, code) in cases {
        let Some(sink) = SmtpSink::start(args) else {
            return;
        };
        let r = probe(&pki, plain(sink.port)).await;
        expect_failure(&r, code);
    }
    let Some(sink) = SmtpSink::start(&["-Q", "rcpt"]) else {
        return;
    };
    let r = probe(&pki, plain(sink.port)).await;
    let d = r.diagnosis.as_ref().expect("a dropped connection fails");
    assert!(d.transient, "{d:?}");
}

#[tokio::test]
async fn imap_is_checked_with_dovecot() {
    let pki = TestPki::new();
    let Some(server) = starttls_server(&pki, None) else {
        return;
    };
    let Some(dovecot) = Dovecot::start(&pki.valid, "alice", PASSWORD) else {
        return;
    };
    for (port, security) in [(dovecot.imaps_port, "tls"), (dovecot.imap_port, "starttls")] {
        let r = probe(
            &pki,
            account(
                server.port,
                "starttls",
                json!({"imap": {"host": "127.0.0.1", "port": port, "security": security}}),
            ),
        )
        .await;
        assert!(r.ok, "{security}: {:#?}", r.diagnosis);
        let imap = r.stages.last().unwrap();
        assert_eq!(imap.name.as_str(), "imap");
        assert!(
            imap.detail.as_deref().unwrap().contains("INBOX"),
            "{imap:?}"
        );
    }
    let r = probe(&pki, account(server.port, "starttls", json!({"imap": {"host": "127.0.0.1", "port": dovecot.imaps_port, "security": "tls", "password": "bad-imap-pw"}}))).await;
    let d = expect_failure(&r, DiagnosisCode::ImapFailed)
        .diagnosis
        .clone()
        .unwrap();
    assert!(d.message.en.contains("LOGIN"), "{}", d.message.en);
    assert!(!format!("{r:?}").contains("bad-imap-pw"));
    let r = probe(&pki, account(server.port, "starttls", json!({"imap": {"host": "127.0.0.1", "port": dovecot.imaps_port, "security": "tls", "folder": "Nope"}}))).await;
    expect_failure(&r, DiagnosisCode::ImapFailed);
}
