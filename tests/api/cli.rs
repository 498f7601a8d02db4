//! The real `cartero` binary, run as an operator would.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use reqwest::Method;
use serde_json::Value;

use cartero::domain::permission::Role;

use crate::helpers::spawn_app;

fn cartero(data_dir: &Path, args: &[&str], stdin: Option<&str>, lang: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cartero"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("CARTERO_MASTER_KEY")
        .env("LANG", lang)
        .env_remove("LC_ALL")
        .env_remove("LC_MESSAGES")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary runs");
    if let Some(input) = stdin {
        child
            .stdin
            .as_mut()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn token_and_account_lifecycle_from_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let token = ok(&cartero(
        d,
        &["token", "create", "--name", "erp", "--role", "sender"],
        None,
        "C",
    ));
    assert!(token.trim().starts_with("cartero_"));
    let listed = ok(&cartero(d, &["token", "list"], None, "C"));
    assert!(listed.contains("erp") && listed.contains("sender"));
    assert!(
        !listed.contains(token.trim()),
        "token text is never shown again"
    );

    let out = ok(&cartero(
        d,
        &[
            "account",
            "add",
            "--preset",
            "office365",
            "--name",
            "Ventas",
            "--from-email",
            "ventas@acme.example",
            "--priority",
            "10",
            "--password-stdin",
            "--json",
        ],
        Some("Cli-s3cret-pw\n"),
        "C",
    ));
    let created: Value = serde_json::from_str(&out).unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["host"], "smtp.office365.com");
    assert_eq!(created["microsoft365"], true);
    assert_eq!(created["password_set"], true);

    let list = ok(&cartero(d, &["account", "list"], None, "C"));
    assert!(list.contains("Ventas") && list.contains(&id));
    let shown = ok(&cartero(d, &["account", "show", &id], None, "C"));
    assert!(shown.contains("password       set"));
    assert!(!shown.contains("Cli-s3cret-pw"));

    let updated: Value = serde_json::from_str(&ok(&cartero(
        d,
        &[
            "account",
            "update",
            &id,
            "--priority",
            "-5",
            "--per-day",
            "500",
            "--json",
        ],
        None,
        "C",
    )))
    .unwrap();
    assert_eq!(updated["priority"], -5);
    assert_eq!(updated["limits"]["per_day"], 500);
    assert_eq!(updated["password_set"], true);

    let disabled: Value = serde_json::from_str(&ok(&cartero(
        d,
        &["account", "disable", &id, "--json"],
        None,
        "C",
    )))
    .unwrap();
    assert_eq!(disabled["enabled"], false);
    let enabled: Value = serde_json::from_str(&ok(&cartero(
        d,
        &["account", "enable", &id, "--json"],
        None,
        "C",
    )))
    .unwrap();
    assert_eq!(enabled["enabled"], true);

    // Key rotation re-encrypts and the password still opens (show works, key id changes).
    let key_before = std::fs::read_to_string(d.join("master.key")).unwrap();
    let rotated = ok(&cartero(d, &["key", "rotate"], None, "C"));
    assert!(rotated.contains("Re-encrypted 1 credential"), "{rotated}");
    let key_after = std::fs::read_to_string(d.join("master.key")).unwrap();
    assert_ne!(key_before, key_after);
    assert_eq!(
        key_after.lines().filter(|l| !l.starts_with('#')).count(),
        1,
        "the old key is retired"
    );
    ok(&cartero(d, &["account", "show", &id], None, "C"));

    ok(&cartero(d, &["account", "remove", &id], None, "C"));
    let out = cartero(d, &["account", "show", &id], None, "C");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn bad_input_exits_2_with_the_reason_in_the_users_language() {
    let dir = tempfile::tempdir().unwrap();
    let out = cartero(
        dir.path(),
        &[
            "account",
            "add",
            "--name",
            "X",
            "--host",
            "smtp.acme.example",
            "--port",
            "99999",
            "--security",
            "starttls",
            "--from-email",
            "nope",
        ],
        None,
        "es_ES.UTF-8",
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("La cuenta no es válida"), "{err}");
    assert!(err.contains("port") && err.contains("from_email"), "{err}");
    let list = ok(&cartero(
        dir.path(),
        &["account", "list", "--json"],
        None,
        "C",
    ));
    assert_eq!(list.trim(), "[]");

    let out = cartero(
        dir.path(),
        &["token", "create", "--name", "x", "--role", "root"],
        None,
        "C",
    );
    assert_eq!(out.status.code(), Some(2), "clap refuses an unknown role");
    let out = cartero(
        dir.path(),
        &[
            "token",
            "create",
            "--name",
            "x",
            "--role",
            "admin",
            "--project",
            "ghost",
        ],
        None,
        "C",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cartero project create ghost"));
}

#[test]
fn presets_from_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let out = ok(&cartero(
        dir.path(),
        &["presets", "--email", "ana@gmail.com"],
        None,
        "es_ES.UTF-8",
    ));
    assert!(out.contains("smtp.gmail.com:587 starttls"), "{out}");
    assert!(out.contains("contraseña de aplicación"), "{out}");
    let out = ok(&cartero(dir.path(), &["presets"], None, "C"));
    assert!(out.lines().count() > 20);
}

#[tokio::test]
async fn a_change_from_the_cli_is_seen_by_the_running_server() {
    let app = spawn_app().await;
    let dir = app.dir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        cartero(
            &dir,
            &[
                "account",
                "add",
                "--name",
                "Relay",
                "--host",
                "127.0.0.1",
                "--port",
                "2525",
                "--security",
                "none",
                "--from-email",
                "app@acme.example",
                "--json",
            ],
            None,
            "C",
        )
    })
    .await
    .unwrap();
    let created: Value = serde_json::from_str(&ok(&out)).unwrap();
    let (status, seen) = app
        .owner_json(
            Method::GET,
            &format!("/v1/accounts/{}", created["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(seen["name"], "Relay");
    // A second server on the same data directory is refused clearly.
    let dir = app.dir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_cartero"))
            .arg("--data-dir")
            .arg(&dir)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("another cartero process"));
}

#[tokio::test]
async fn a_token_revoked_from_the_cli_stops_working_on_the_running_server() {
    let app = spawn_app().await;
    let token = app.token("default", Role::Viewer).await;
    // Used twice first, so the server has it remembered (store/sqlite/token_cache.rs).
    for _ in 0..2 {
        let r = app
            .call(Method::GET, "/v1/accounts", Some(&token), None)
            .await;
        assert_eq!(r.status(), 200);
    }
    let id = app
        .store
        .list_tokens("default")
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.role == Role::Viewer)
        .unwrap()
        .id;
    let dir = app.dir.path().to_path_buf();
    let out =
        tokio::task::spawn_blocking(move || cartero(&dir, &["token", "revoke", &id], None, "C"))
            .await
            .unwrap();
    assert!(ok(&out).contains("Revoked token"));
    let r = app
        .call(Method::GET, "/v1/accounts", Some(&token), None)
        .await;
    assert_eq!(
        r.status(),
        401,
        "a token revoked by another process still worked"
    );
    // The owner's token, remembered too, still works.
    let r = app
        .call(Method::GET, "/v1/accounts", Some(&app.owner), None)
        .await;
    assert_eq!(r.status(), 200);
}

#[test]
fn master_key_from_the_environment_makes_no_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // 32 bytes
    let run = |args: &[&str], stdin: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cartero"));
        c.arg("--data-dir")
            .arg(dir.path())
            .args(args)
            .env("CARTERO_MASTER_KEY", key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        if let Some(s) = stdin {
            child
                .stdin
                .as_mut()
                .unwrap()
                .write_all(s.as_bytes())
                .unwrap();
        }
        drop(child.stdin.take());
        child.wait_with_output().unwrap()
    };
    ok(&run(
        &[
            "account",
            "add",
            "--name",
            "A",
            "--host",
            "smtp.acme.example",
            "--port",
            "587",
            "--from-email",
            "a@acme.example",
            "--username",
            "a",
            "--password-stdin",
        ],
        Some("pw-env-key\n"),
    ));
    assert!(!dir.path().join("master.key").exists());
    // Without the key the data cannot be opened, and cartero says why instead of failing later.
    let out = cartero(dir.path(), &["account", "list"], None, "C");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("master key file"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !dir.path().join("master.key").exists(),
        "no useless new key was made"
    );
    // With another key, cartero names the key it needs.
    let out = Command::new(env!("CARGO_BIN_EXE_cartero"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["account", "list"])
        .env(
            "CARTERO_MASTER_KEY",
            "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY=",
        )
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not loaded"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// Multi-threaded: the peer is polled with blocking waits while the server delivers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_a_message_and_a_csv_batch_from_the_terminal() {
    use crate::peers::{Smtpd, SmtpdOptions};
    let Some(peer) = Smtpd::start(SmtpdOptions {
        mode: "plain",
        ..SmtpdOptions::default()
    }) else {
        return;
    };
    let app = crate::helpers::spawn_app_with(|c| {
        c.delivery.poll_interval = std::time::Duration::from_millis(200)
    })
    .await;
    app.owner_json(
        Method::POST,
        "/v1/accounts",
        Some(&serde_json::json!({"name": "Relay", "host": "127.0.0.1", "port": peer.port, "security": "none", "auth": "none", "from_email": "app@acme.example"})),
    )
    .await;
    let dir = app.dir.path().to_path_buf();
    let run = move |args: Vec<String>| {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || {
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            cartero(&dir, &a, None, "es_ES.UTF-8")
        })
    };
    let out = run([
        "send",
        "--to",
        "ana@example.com",
        "--template",
        "system_alert",
        "--var",
        "title=Disco lleno",
        "--var",
        "message=Queda 1 %",
        "--var",
        "severity=critical",
        "--locale",
        "es",
    ]
    .map(String::from)
    .to_vec())
    .await
    .unwrap();
    let id = ok(&out).trim().to_string();
    let csv = app.dir.path().join("invitaciones.csv");
    std::fs::write(&csv, "to,name,product,link\nbeto@example.com,Beto,Gaio,https://gaio.example/i/1\nno-es-correo,Nadie,Gaio,https://x.example\ncarla@example.com,Carla,Gaio,https://gaio.example/i/2\n").unwrap();
    let batch = vec![
        "send".to_string(),
        "--csv".into(),
        csv.display().to_string(),
        "--template".into(),
        "user_invitation".into(),
        "--locale".into(),
        "es".into(),
    ];
    let out = run(batch.clone()).await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "a refused row makes the batch exit 1"
    );
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary.contains("2 en cola, 0 ya estaban en cola, 1 rechazados (de 3 filas)"),
        "{summary}"
    );
    assert!(summary.contains("fila 3"), "{summary}");
    // Running the same file again sends nothing twice.
    let out = run(batch).await.unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("0 en cola, 2 ya estaban en cola"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let arrived = peer.wait_for_messages(3, std::time::Duration::from_secs(15));
    assert_eq!(
        arrived.len(),
        3,
        "the running server delivered what the CLI queued"
    );
    // The outcome is recorded a moment after the peer has the message (outcomes are written
    // in batches): look until it says so.
    let mut shown = Value::Null;
    for _ in 0..100 {
        let out = run(vec![
            "messages".into(),
            "show".into(),
            id.clone(),
            "--json".into(),
        ])
        .await
        .unwrap();
        shown = serde_json::from_str(&ok(&out)).unwrap();
        if shown["status"] == "sent" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(shown["status"], "sent");
    assert!(
        shown["subject"].as_str().unwrap().contains("CRÍTICO"),
        "{}",
        shown["subject"]
    );
    let mut listed = String::new();
    for _ in 0..100 {
        let out = run(vec![
            "messages".into(),
            "list".into(),
            "--status".into(),
            "sent".into(),
        ])
        .await
        .unwrap();
        listed = ok(&out);
        if listed.lines().count() == 4 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(listed.lines().count(), 4, "a header and three messages");
}

// Multi-threaded: the server must keep running (and finish any transaction it has open)
// while this thread waits for the CLI process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_add_generates_or_reads_a_password_and_is_audited() {
    let app = spawn_app().await;
    let dir = app.dir.path();
    // Generated: printed once on stdout, the explanation on stderr.
    let out = cartero(
        dir,
        &[
            "user",
            "add",
            "--email",
            "Ana@Example.com",
            "--role",
            "owner",
        ],
        None,
        "es_ES.UTF-8",
    );
    let password = ok(&out).trim().to_string();
    assert_eq!(password.len(), 24);
    assert!(String::from_utf8_lossy(&out.stderr).contains("se muestra solo ahora"));
    // From stdin: validated like the API, nothing created when refused.
    let out = cartero(
        dir,
        &[
            "user",
            "add",
            "--email",
            "luis@example.com",
            "--role",
            "viewer",
            "--password-stdin",
        ],
        Some("corta\n"),
        "es_ES.UTF-8",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("al menos 12 caracteres"));
    let out = cartero(
        dir,
        &[
            "user",
            "add",
            "--email",
            "ana@example.com",
            "--role",
            "viewer",
        ],
        None,
        "en_US.UTF-8",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    let out = cartero(
        dir,
        &[
            "user",
            "add",
            "--email",
            "luis@example.com",
            "--role",
            "viewer",
            "--password-stdin",
        ],
        Some("una contraseña larga\n"),
        "en_US.UTF-8",
    );
    assert!(ok(&out).is_empty(), "nothing secret printed");
    let list = ok(&cartero(dir, &["user", "list"], None, "en_US.UTF-8"));
    assert!(list.contains("ana@example.com") && list.contains("luis@example.com"));

    // Both can log in with their passwords.
    for (email, pw) in [
        ("ana@example.com", password.as_str()),
        ("luis@example.com", "una contraseña larga"),
    ] {
        let r = app
            .client
            .post(format!("{}/ui/login", app.base))
            .json(&serde_json::json!({"email": email, "password": pw}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{email}");
    }
    ok(&cartero(
        dir,
        &["user", "remove", "luis@example.com"],
        None,
        "en_US.UTF-8",
    ));
    let (_, log) = app.owner_json(Method::GET, "/v1/audit", None).await;
    let actions: Vec<(&str, &str)> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["via"] == "cli")
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["target"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("user.delete", "luis@example.com"),
            ("user.create", "luis@example.com"),
            ("user.create", "ana@example.com"),
        ]
    );
    assert!(!log.to_string().contains(&password));
}
