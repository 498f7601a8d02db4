//! Probar / Test through the API and the CLI, against aiosmtpd with STARTTLS + AUTH.

use cartero::domain::permission::Role;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::spawn_app_with;
use crate::peers::{Smtpd, SmtpdOptions, TestPki};

const PASSWORD: &str = "Api-pr0be-s3cret";

fn server(pki: &TestPki) -> Option<Smtpd> {
    Smtpd::start(SmtpdOptions {
        mode: "starttls",
        cert: Some(pki.valid.clone()),
        auth: Some(("alice", PASSWORD)),
        auth_require_tls: true,
        ..SmtpdOptions::default()
    })
}

fn account(port: u16) -> Value {
    json!({"name": "Soporte", "host": "127.0.0.1", "port": port, "security": "starttls",
           "username": "alice", "password": PASSWORD, "from_email": "soporte@acme.example"})
}

async fn post(
    app: &crate::helpers::TestApp,
    path: &str,
    token: &str,
    lang: &str,
    body: &Value,
) -> (u16, Value) {
    let r = app
        .client
        .post(format!("{}{}", app.base, path))
        .bearer_auth(token)
        .header("Accept-Language", lang)
        .json(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn test_a_saved_account_then_break_its_password() {
    let pki = TestPki::new();
    let Some(smtp) = server(&pki) else { return };
    let ca = pki.ca_pem.clone();
    let app = spawn_app_with(move |c| c.network.tls_ca_file = Some(ca)).await;
    let (_, created) = app
        .owner_json(Method::POST, "/v1/accounts", Some(&account(smtp.port)))
        .await;
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["last_test"], Value::Null);

    let (status, report) = post(
        &app,
        &format!("/v1/accounts/{id}/test"),
        &app.owner,
        "es",
        &json!({"send_to": "ana@example.com"}),
    )
    .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(report["message"], "Correo enviado satisfactoriamente");
    assert_eq!(report["diagnosis"], Value::Null);
    assert!(
        report["stages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["ok"] == true)
    );
    assert!(!report.to_string().contains(PASSWORD));
    assert_eq!(
        smtp.wait_for_messages(1, std::time::Duration::from_secs(5))[0]["rcpt_tos"][0],
        "ana@example.com"
    );

    let (_, after) = app
        .owner_json(Method::GET, &format!("/v1/accounts/{id}"), None)
        .await;
    assert_eq!(after["last_test"]["ok"], true);

    // Try a wrong password without saving it: the stored account is untouched.
    let (_, report) = post(
        &app,
        &format!("/v1/accounts/{id}/test"),
        &app.owner,
        "es",
        &json!({"password": "nope-wrong", "send": false}),
    )
    .await;
    assert_eq!(report["ok"], false);
    assert_eq!(report["diagnosis"]["code"], "auth_failed");
    assert!(
        report["diagnosis"]["fix"]
            .as_str()
            .unwrap()
            .contains("contraseña")
    );
    let (_, after) = app
        .owner_json(Method::GET, &format!("/v1/accounts/{id}"), None)
        .await;
    assert_eq!(
        after["last_test"]["ok"], true,
        "an unsaved variation is not the account's result"
    );

    // Break it for real: the last test result says so.
    app.owner_json(
        Method::PATCH,
        &format!("/v1/accounts/{id}"),
        Some(&json!({"password": "nope-wrong"})),
    )
    .await;
    let (_, report) = post(
        &app,
        &format!("/v1/accounts/{id}/test"),
        &app.owner,
        "en",
        &json!({}),
    )
    .await;
    assert_eq!(report["diagnosis"]["code"], "auth_failed");
    assert!(
        report["diagnosis"]["fix"]
            .as_str()
            .unwrap()
            .contains("password")
    );
    assert!(
        report["transcript"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().starts_with("C: AUTH"))
    );
    assert!(!report.to_string().contains("nope-wrong"));
    let (_, after) = app
        .owner_json(Method::GET, &format!("/v1/accounts/{id}"), None)
        .await;
    assert_eq!(after["last_test"]["ok"], false);
    assert_eq!(after["last_test"]["code"], "auth_failed");

    // Mend it in the stored account; a test whose fields equal the stored ones (what the web
    // form sends) is the account's own test, so its result is kept.
    app.owner_json(
        Method::PATCH,
        &format!("/v1/accounts/{id}"),
        Some(&json!({"password": PASSWORD})),
    )
    .await;
    let (_, report) = post(
        &app,
        &format!("/v1/accounts/{id}/test"),
        &app.owner,
        "en",
        &json!({"host": "127.0.0.1", "port": smtp.port, "send": false}),
    )
    .await;
    assert_eq!(report["ok"], true, "{report:#}");
    let (_, after) = app
        .owner_json(Method::GET, &format!("/v1/accounts/{id}"), None)
        .await;
    assert_eq!(after["last_test"]["ok"], true);
}

#[tokio::test]
async fn test_before_saving_and_the_rules_around_it() {
    let pki = TestPki::new();
    let Some(smtp) = server(&pki) else { return };
    let ca = pki.ca_pem.clone();
    let app = spawn_app_with(move |c| {
        c.network.tls_ca_file = Some(ca);
        c.network.tests_per_minute = 2;
    })
    .await;
    let mut body = account(smtp.port);
    body["send"] = json!(false);
    let (status, report) = post(&app, "/v1/accounts/test", &app.owner, "en", &body).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["ok"], true, "{report:#}");
    assert!(
        report["message"]
            .as_str()
            .unwrap()
            .contains("no email was sent")
    );
    let (_, list) = app.owner_json(Method::GET, "/v1/accounts", None).await;
    assert_eq!(list, json!([]), "testing saves nothing");

    // Bad input is refused before any connection, and does not use the test budget.
    body["send_to"] = json!("not an address");
    let (status, answer) = post(&app, "/v1/accounts/test", &app.owner, "es", &body).await;
    assert_eq!(status, 422);
    assert_eq!(answer["error"]["field"], "send_to");
    let (status, answer) = post(
        &app,
        "/v1/accounts/test",
        &app.owner,
        "en",
        &json!({"name": "x", "port": 0}),
    )
    .await;
    assert_eq!(status, 422, "{answer}");

    // Only accounts.manage may run tests.
    let viewer = app.token("default", Role::Viewer).await;
    let (status, _) = post(
        &app,
        "/v1/accounts/test",
        &viewer,
        "en",
        &account(smtp.port),
    )
    .await;
    assert_eq!(status, 403);

    // Rate limited per project: the second allowed, the third refused with Retry-After.
    let mut quiet = account(smtp.port);
    quiet["send"] = json!(false);
    let (status, _) = post(&app, "/v1/accounts/test", &app.owner, "en", &quiet).await;
    assert_eq!(status, 200);
    let r = app
        .client
        .post(format!("{}/v1/accounts/test", app.base))
        .bearer_auth(&app.owner)
        .json(&quiet)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_some());
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "too_many_tests"
    );
    // Another project has its own budget.
    let other = app.token("acme", Role::Admin).await;
    let (status, _) = post(&app, "/v1/accounts/test", &other, "en", &quiet).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn account_test_from_the_terminal() {
    let pki = TestPki::new();
    let Some(smtp) = server(&pki) else { return };
    let ca = pki.ca_pem.clone();
    let app = spawn_app_with(move |c| c.network.tls_ca_file = Some(ca)).await;
    let (_, created) = app
        .owner_json(Method::POST, "/v1/accounts", Some(&account(smtp.port)))
        .await;
    let id = created["id"].as_str().unwrap().to_string();
    let dir = app.dir.path().to_path_buf();
    let ca = pki.ca_pem.clone();
    let run = move |args: Vec<String>| {
        let dir = dir.clone();
        let ca = ca.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_cartero"))
                .arg("--data-dir")
                .arg(&dir)
                .args(&args)
                .env("CARTERO_TLS_CA_FILE", &ca)
                .env("LANG", "es_ES.UTF-8")
                .output()
                .unwrap()
        })
    };
    let out = run(vec![
        "account".into(),
        "test".into(),
        id.clone(),
        "--to".into(),
        "ana@example.com".into(),
    ])
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("✔ auth") && stdout.contains("✔ data"),
        "{stdout}"
    );
    assert!(stdout.contains("Correo enviado satisfactoriamente"));
    assert!(!stdout.contains(PASSWORD));

    app.owner_json(
        Method::PATCH,
        &format!("/v1/accounts/{id}"),
        Some(&json!({"password": "wrong-one"})),
    )
    .await;
    let out = run(vec![
        "account".into(),
        "test".into(),
        id.clone(),
        "--no-send".into(),
        "--json".into(),
    ])
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["diagnosis"]["code"], "auth_failed");
}
