//! Proves the SMTP peer set-up: a message over STARTTLS + AUTH PLAIN to aiosmtpd, verified
//! against the test CA, arrives and is logged as authenticated and encrypted.

use std::sync::Arc;
use std::time::Duration;

use mail_send::SmtpClientBuilder;
use mail_send::mail_builder::MessageBuilder;

use crate::peers::{Smtpd, SmtpdOptions, TestPki};

#[tokio::test]
async fn a_message_over_starttls_and_auth_reaches_aiosmtpd() {
    let pki = TestPki::new();
    let Some(server) = Smtpd::start(SmtpdOptions {
        mode: "starttls",
        cert: Some(pki.valid.clone()),
        auth: Some(("alice", "s3cret")),
        auth_require_tls: true,
        ..SmtpdOptions::default()
    }) else {
        return;
    };

    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::pem::PemObject::pem_file_iter(&pki.ca_pem).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));

    let message = MessageBuilder::new()
        .from(("Acme", "app@acme.example"))
        .to("ana@example.com")
        .subject("Prueba de cartero")
        .message_id("peer-proof@acme.example")
        .text_body("Hola");
    SmtpClientBuilder::new_with_tls_connector("localhost", server.port, connector)
        .implicit_tls(false)
        .credentials(("alice", "s3cret"))
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .expect("STARTTLS + AUTH connect")
        .send(message)
        .await
        .expect("message accepted");

    let log = server.wait_for_messages(1, Duration::from_secs(5));
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["auth_user"], "alice");
    assert_eq!(log[0]["tls"], true);
    assert_eq!(log[0]["rcpt_tos"][0], "ana@example.com");
    assert!(server.message_body(1).contains("Prueba de cartero"));
}
