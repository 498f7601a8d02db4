//! The web admin's server side: login, sessions, CSRF, throttling, users, tokens, the audit
//! log, the streamed connection test and the template preview. (The pages themselves are
//! driven in a real browser by tests/e2e/admin.mjs.)

use cartero::domain::permission::Role;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, account_json, spawn_app};

const PASSWORD: &str = "una contraseña larga";

async fn add_user(app: &TestApp, email: &str, role: Role) {
    cartero::users::Users::new(app.store.clone())
        .create("default", email, role, PASSWORD)
        .await
        .expect("user created");
}

/// A logged-in browser: the session cookie and the CSRF token.
struct Session {
    cookie: String,
    csrf: String,
}

async fn login(app: &TestApp, email: &str, password: &str) -> reqwest::Response {
    app.client
        .post(format!("{}/ui/login", app.base))
        .header("accept-language", "es")
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
}

async fn session(app: &TestApp, email: &str) -> Session {
    session_with(app, email, PASSWORD).await
}

async fn with_session(
    app: &TestApp,
    s: &Session,
    method: Method,
    path: &str,
    csrf: bool,
    body: Option<&Value>,
) -> (StatusCode, Value) {
    let mut req = app
        .client
        .request(method, format!("{}{}", app.base, path))
        .header("cookie", &s.cookie);
    if csrf {
        req = req.header("x-csrf-token", &s.csrf);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn login_sets_a_strict_http_only_cookie_and_writes_need_the_csrf_token() {
    let app = spawn_app().await;
    let (_, s) = app.owner_json(Method::GET, "/ui/session", None).await;
    assert_eq!(s, json!({"user": null, "setup_needed": true}));
    add_user(&app, "Ana@Example.com", Role::Admin).await;
    let (_, s) = app.owner_json(Method::GET, "/ui/session", None).await;
    assert_eq!(s["setup_needed"], false);

    let r = login(&app, "ana@example.com", "otra contraseña").await;
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("set-cookie").is_none());
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "login_failed");
    assert_eq!(body["error"]["message"], "Correo o contraseña incorrectos.");
    // An unknown email gets the same answer.
    let body: Value = login(&app, "nadie@example.com", PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["error"]["code"], "login_failed");

    let r = login(&app, " ANA@example.com ", PASSWORD).await;
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    for attr in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
        assert!(cookie.contains(attr), "{attr} in {cookie}");
    }
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["user"]["role"], "admin");
    assert!(
        body["permissions"]
            .as_array()
            .unwrap()
            .contains(&json!("accounts.manage"))
    );
    let s = Session {
        cookie: cookie.split(';').next().unwrap().to_string(),
        csrf: body["csrf"].as_str().unwrap().to_string(),
    };
    // Only the hash of the cookie value is stored.
    let value = s.cookie.split_once('=').unwrap().1.to_string();
    let db = std::fs::read(app.dir.path().join("cartero.db")).unwrap_or_default();
    let wal = std::fs::read(app.dir.path().join("cartero.db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        assert!(!bytes.windows(value.len()).any(|w| w == value.as_bytes()));
    }

    // Reads need no CSRF token; writes do.
    let (status, _) = with_session(&app, &s, Method::GET, "/v1/accounts", false, None).await;
    assert_eq!(status, 200);
    let body = account_json("Ventas");
    let (status, answer) =
        with_session(&app, &s, Method::POST, "/v1/accounts", false, Some(&body)).await;
    assert_eq!(status, 403);
    assert_eq!(answer["error"]["code"], "csrf_failed");
    assert!(app.store.list_accounts("default").await.unwrap().is_empty());
    let wrong = Session {
        cookie: s.cookie.clone(),
        csrf: "x".repeat(s.csrf.len()),
    };
    let (status, _) = with_session(
        &app,
        &wrong,
        Method::POST,
        "/v1/accounts",
        true,
        Some(&body),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = with_session(&app, &s, Method::POST, "/v1/accounts", true, Some(&body)).await;
    assert_eq!(status, 201);

    // Logging out ends the session at once.
    let (status, _) = with_session(&app, &s, Method::POST, "/ui/logout", true, None).await;
    assert_eq!(status, 204);
    let (status, _) = with_session(&app, &s, Method::GET, "/v1/accounts", false, None).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn failed_logins_are_throttled_per_email_and_a_success_clears_them() {
    let app = spawn_app().await;
    add_user(&app, "ana@example.com", Role::Owner).await;
    add_user(&app, "luis@example.com", Role::Owner).await;
    for _ in 0..4 {
        assert_eq!(login(&app, "ana@example.com", "mal").await.status(), 401);
    }
    assert_eq!(login(&app, "ana@example.com", PASSWORD).await.status(), 200);
    for _ in 0..5 {
        assert_eq!(login(&app, "ana@example.com", "mal").await.status(), 401);
    }
    // Now even the right password waits: the guessing stops here.
    let r = login(&app, "ana@example.com", PASSWORD).await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_logins");
    // Another email is not affected.
    assert_eq!(
        login(&app, "luis@example.com", PASSWORD).await.status(),
        200
    );

    // Parallel guesses are counted as they start, not when they fail: at most 5 get through.
    add_user(&app, "eva@example.com", Role::Viewer).await;
    let guesses = (0..12).map(|_| login(&app, "eva@example.com", "mal"));
    let statuses: Vec<u16> = futures_util::future::join_all(guesses)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s != 429).count(),
        5,
        "{statuses:?}"
    );
}

#[tokio::test]
async fn a_login_from_another_site_is_refused() {
    let app = spawn_app().await;
    add_user(&app, "ana@example.com", Role::Owner).await;
    let body = json!({"email": "ana@example.com", "password": PASSWORD});
    let host = app.base.trim_start_matches("http://").to_string();
    for (header, value, status) in [
        ("sec-fetch-site", "cross-site".to_string(), 403),
        ("origin", "http://evil.example".to_string(), 403),
        ("sec-fetch-site", "same-origin".to_string(), 200),
        ("origin", format!("http://{host}"), 200),
    ] {
        let r = app
            .client
            .post(format!("{}/ui/login", app.base))
            .header(header, &value)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{header}: {value}");
        if status == 403 {
            assert!(r.headers().get("set-cookie").is_none());
        }
    }
}

#[tokio::test]
async fn users_and_tokens_through_the_api() {
    let app = spawn_app().await;
    // Every problem at once, in the request's language.
    let (status, body) = app
        .owner_json(
            Method::POST,
            "/v1/users",
            Some(&json!({"email": "no", "role": "jefe", "password": "corta"})),
        )
        .await;
    assert_eq!(status, 422);
    let fields: Vec<&str> = body["error"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["email", "password", "role"]);
    assert_eq!(app.store.count_users().await.unwrap(), 0);

    let (status, body) = app
        .owner_json(
            Method::POST,
            "/v1/users",
            Some(&json!({"email": "luis@example.com", "role": "viewer"})),
        )
        .await;
    assert_eq!(status, 201);
    let generated = body["password"].as_str().unwrap().to_string();
    assert_eq!(generated.len(), 24);
    assert_eq!(
        login(&app, "luis@example.com", &generated).await.status(),
        200
    );
    let (status, body) = app
        .owner_json(
            Method::POST,
            "/v1/users",
            Some(&json!({"email": "LUIS@example.com", "role": "admin", "password": PASSWORD})),
        )
        .await;
    assert_eq!(status, 409);
    assert_eq!(body["error"]["code"], "email_taken");
    let (_, list) = app.owner_json(Method::GET, "/v1/users", None).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(
        list[0].get("password").is_none() && list[0].get("password_hash").is_none(),
        "{list}"
    );

    // A user cannot remove themselves; removing another ends their sessions.
    add_user(&app, "ana@example.com", Role::Owner).await;
    let ana = session(&app, "ana@example.com").await;
    let luis = session_with(&app, "luis@example.com", &generated).await;
    let users = app.store.list_users("default").await.unwrap();
    let ana_id = &users
        .iter()
        .find(|u| u.email == "ana@example.com")
        .unwrap()
        .id;
    let luis_id = &users
        .iter()
        .find(|u| u.email == "luis@example.com")
        .unwrap()
        .id;
    let (status, body) = with_session(
        &app,
        &ana,
        Method::DELETE,
        &format!("/v1/users/{ana_id}"),
        true,
        None,
    )
    .await;
    assert_eq!(status, 409);
    assert_eq!(body["error"]["code"], "cannot_remove_self");
    let (status, _) = with_session(
        &app,
        &ana,
        Method::DELETE,
        &format!("/v1/users/{luis_id}"),
        true,
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = with_session(&app, &luis, Method::GET, "/v1/accounts", false, None).await;
    assert_eq!(status, 401);

    // Tokens: the text once, then only the metadata; revoking stops it.
    let (status, token) = app
        .owner_json(
            Method::POST,
            "/v1/tokens",
            Some(&json!({"name": "erp", "role": "sender"})),
        )
        .await;
    assert_eq!(status, 201);
    let text = token["token"].as_str().unwrap().to_string();
    let (_, list) = app.owner_json(Method::GET, "/v1/tokens", None).await;
    assert!(!list.to_string().contains(&text));
    let id = token["id"].as_str().unwrap();
    let (status, _) = app
        .owner_json(Method::DELETE, &format!("/v1/tokens/{id}"), None)
        .await;
    assert_eq!(status, 204);
    assert_eq!(
        app.call(Method::GET, "/v1/messages", Some(&text), None)
            .await
            .status(),
        401
    );
}

async fn session_with(app: &TestApp, email: &str, password: &str) -> Session {
    let r = login(app, email, password).await;
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    let body: Value = r.json().await.unwrap();
    Session {
        cookie: cookie.split(';').next().unwrap().to_string(),
        csrf: body["csrf"].as_str().unwrap().to_string(),
    }
}

#[tokio::test]
async fn the_audit_log_names_who_changed_what_and_never_a_secret() {
    let app = spawn_app().await;
    add_user(&app, "ana@example.com", Role::Owner).await;
    let (_, created) = app
        .owner_json(Method::POST, "/v1/accounts", Some(&account_json("Ventas")))
        .await;
    let id = created["id"].as_str().unwrap().to_string();
    let ana = session(&app, "ana@example.com").await;
    let (status, _) = with_session(
        &app,
        &ana,
        Method::PATCH,
        &format!("/v1/accounts/{id}"),
        true,
        Some(&json!({"port": 2525, "password": "N3w-s3cret-pw"})),
    )
    .await;
    assert_eq!(status, 200);
    // A refused change is not a change.
    let (status, _) = with_session(
        &app,
        &ana,
        Method::PATCH,
        &format!("/v1/accounts/{id}"),
        true,
        Some(&json!({"port": 0})),
    )
    .await;
    assert_eq!(status, 422);
    app.owner_json(Method::DELETE, &format!("/v1/accounts/{id}"), None)
        .await;

    let (status, log) = app.owner_json(Method::GET, "/v1/audit", None).await;
    assert_eq!(status, 200);
    let entries = log["entries"].as_array().unwrap();
    let actions: Vec<(&str, &str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["via"].as_str().unwrap(),
                e["actor"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("account.delete", "api", "token:test owner"),
            ("account.update", "ui", "user:ana@example.com"),
            ("session.login", "ui", "user:ana@example.com"),
            ("account.create", "api", "token:test owner"),
        ]
    );
    let update = &entries[1]["detail"]["changed"];
    assert_eq!(update["port"], json!({"from": 587, "to": 2525}));
    assert_eq!(update["password"], "changed");
    assert_eq!(update.as_object().unwrap().len(), 2, "{update}");
    assert_eq!(entries[3]["detail"]["changed"]["password"], "changed");
    assert_eq!(entries[3]["detail"]["changed"]["imap.password"], "changed");
    let text = log.to_string();
    for secret in ["Sup3r-s3cret-pw", "Imap-s3cret-pw", "N3w-s3cret-pw"] {
        assert!(!text.contains(secret), "{secret} in the audit log");
    }
    // Paging.
    let (_, page) = app.owner_json(Method::GET, "/v1/audit?limit=2", None).await;
    let next = page["next"].as_i64().unwrap();
    let (_, rest) = app
        .owner_json(
            Method::GET,
            &format!("/v1/audit?limit=2&before={next}"),
            None,
        )
        .await;
    assert_eq!(rest["entries"][0]["action"], "session.login");
    let (status, _) = app.owner_json(Method::GET, "/v1/audit?limit=0", None).await;
    assert_eq!(status, 422);
}

#[tokio::test]
async fn the_connection_test_streams_each_stage_then_the_result() {
    let app = spawn_app().await;
    // A port nobody listens on: connect fails, named and explained.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let body = json!({"name": "x", "host": "127.0.0.1", "port": port, "security": "none",
                      "from_email": "ops@acme.example"});
    let r = app
        .client
        .post(format!("{}/v1/accounts/test", app.base))
        .bearer_auth(&app.owner)
        .header("accept", "application/x-ndjson")
        .header("accept-language", "es")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-ndjson");
    let text = r.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let last = lines.last().unwrap();
    assert_eq!(last["result"]["ok"], false);
    assert_eq!(last["result"]["diagnosis"]["code"], "connection_refused");
    let stages: Vec<&str> = lines[..lines.len() - 1]
        .iter()
        .map(|l| l["stage"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(stages, ["dns", "connect"]);
    assert_eq!(lines[1]["stage"]["ok"], false);

    // Invalid input is a plain 422 before anything runs.
    let r = app
        .client
        .post(format!("{}/v1/accounts/test", app.base))
        .bearer_auth(&app.owner)
        .header("accept", "application/x-ndjson")
        .json(&json!({"port": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
}

#[tokio::test]
async fn the_template_preview_renders_both_languages_or_names_the_broken_part() {
    let app = spawn_app().await;
    let template = json!({
        "es": {"subject": "Hola {{ name }}", "text": "Hola {{ name }}", "html": "<p>{{ name }}</p>"},
        "en": {"subject": "Hi {{ name }}", "text": "Hi {{ name }}", "html": null}
    });
    let (status, out) = app
        .owner_json(
            Method::POST,
            "/v1/templates/preview",
            Some(&json!({"template": template, "vars": {"name": "<Ana>"}})),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["es"]["subject"], "Hola <Ana>");
    assert_eq!(out["es"]["html"], "<p>&lt;Ana&gt;</p>");
    assert_eq!(out["en"]["text"], "Hi <Ana>");
    let broken = json!({"es": {"subject": "x", "text": "{% if %}", "html": null}});
    let (status, out) = app
        .owner_json(
            Method::POST,
            "/v1/templates/preview",
            Some(&json!({"template": broken})),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(out["error"]["field"], "es.text");
    assert_eq!(out["error"]["code"], "template_error");
    // Nothing is stored by a preview.
    assert!(
        app.store
            .list_templates("default")
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn the_pages_are_served_with_a_content_security_policy() {
    let app = spawn_app().await;
    for (path, kind) in [
        ("/", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/app.css", "text/css"),
    ] {
        let r = app.call(Method::GET, path, None, None).await;
        assert_eq!(r.status(), 200, "{path}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind)
        );
        let csp = r.headers()["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
        assert_eq!(r.headers()["x-frame-options"], "DENY");
        let body = r.text().await.unwrap();
        if path == "/" {
            assert!(!body.contains("<script>"), "no inline script");
        }
    }
}

#[tokio::test]
async fn the_fallback_account_in_effect_can_be_tested() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    // Nothing to test yet.
    let app = spawn_app().await;
    let (status, body) = app
        .owner_json(Method::POST, "/v1/system/fallback/test", None)
        .await;
    assert_eq!(status, 404, "{body}");

    // The environment's fallback.
    let app = crate::helpers::spawn_app_with(move |c| {
        c.fallback_smtp_url = Some(cartero::secrets::Secret::new(format!(
            "smtp://127.0.0.1:{closed}?from=ops@acme.example"
        )));
    })
    .await;
    let (status, report) = app
        .owner_json(
            Method::POST,
            "/v1/system/fallback/test",
            Some(&json!({"send": false})),
        )
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["diagnosis"]["code"], "connection_refused");
    // An admin (no defaults.manage) may not.
    let admin = app.token("default", Role::Admin).await;
    assert_eq!(
        app.call(
            Method::POST,
            "/v1/system/fallback/test",
            Some(&admin),
            Some(&json!({}))
        )
        .await
        .status(),
        403
    );

    // One set through the API wins, and a test of it as stored is kept on it.
    app.owner_json(
        Method::PUT,
        "/v1/system/fallback",
        Some(
            &json!({"host": "127.0.0.1", "port": closed, "security": "none",
                     "from_email": "avisos@acme.example"}),
        ),
    )
    .await;
    let (_, report) = app
        .owner_json(
            Method::POST,
            "/v1/system/fallback/test",
            Some(&json!({"send": false})),
        )
        .await;
    assert_eq!(report["diagnosis"]["code"], "connection_refused");
    let (_, fallback) = app
        .owner_json(Method::GET, "/v1/system/fallback", None)
        .await;
    assert_eq!(fallback["source"], "api");
    assert_eq!(
        fallback["account"]["last_test"]["code"],
        "connection_refused"
    );
}
