//! Delivery against real SMTP servers on 127.0.0.1 (aiosmtpd with scripted replies):
//! routing, failover, fallback, limits, throttling, retries, partial recipients,
//! idempotency, templates and the message log. Tests run multi-threaded: the peer is polled
//! with blocking waits while the server delivers.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app_with};
use crate::peers::{SmtpSink, Smtpd, SmtpdOptions, free_port};

fn plain_server(script: Option<Value>) -> Option<Smtpd> {
    Smtpd::start(SmtpdOptions {
        mode: "plain",
        script,
        ..SmtpdOptions::default()
    })
}

async fn fast_app() -> TestApp {
    spawn_app_with(|c| {
        c.delivery.retry_base = Duration::from_secs(1);
        c.delivery.no_account_retry = Duration::from_secs(1);
        c.delivery.throttle_cooldown = Duration::from_secs(30);
        c.delivery.poll_interval = Duration::from_millis(200);
    })
    .await
}

async fn add_account(
    app: &TestApp,
    name: &str,
    port: u16,
    kind: &str,
    priority: i64,
    extra: Value,
) -> String {
    let mut body = json!({"name": name, "type": kind, "priority": priority, "host": "127.0.0.1",
        "port": port, "security": "none", "auth": "none", "from_email": "app@acme.example", "from_name": "Acme"});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (status, created) = app
        .owner_json(Method::POST, "/v1/accounts", Some(&body))
        .await;
    assert_eq!(status, 201, "{created}");
    created["id"].as_str().unwrap().to_string()
}

async fn send(app: &TestApp, body: Value) -> String {
    let (status, answer) = app
        .owner_json(Method::POST, "/v1/messages", Some(&body))
        .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["status"], "queued");
    answer["id"].as_str().unwrap().to_string()
}

fn simple(kind: &str, to: &str) -> Value {
    json!({"type": kind, "to": [to], "subject": "Factura 1042", "text": "Hola", "html": "<p>Hola</p>"})
}

/// Polls the message until `done(message)` or the timeout; returns the last view.
async fn wait_for(app: &TestApp, id: &str, secs: u64, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let (_, m) = app
            .owner_json(Method::GET, &format!("/v1/messages/{id}"), None)
            .await;
        if done(&m) || Instant::now() > deadline {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_status(app: &TestApp, id: &str, status: &str, secs: u64) -> Value {
    let m = wait_for(app, id, secs, |m| m["status"] == status).await;
    assert_eq!(m["status"], status, "{m:#}");
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_type_and_priority() {
    let (Some(high), Some(low), Some(system)) =
        (plain_server(None), plain_server(None), plain_server(None))
    else {
        return;
    };
    let app = fast_app().await;
    add_account(&app, "Facturas A", high.port, "billing", 10, json!({})).await;
    add_account(&app, "Facturas B", low.port, "billing", 5, json!({})).await;
    add_account(&app, "Sistema", system.port, "system", 0, json!({})).await;

    let billing = send(&app, simple("billing", "ana@example.com")).await;
    let alert = send(&app, simple("system", "ops@example.com")).await;
    let m = wait_status(&app, &billing, "sent", 10).await;
    wait_status(&app, &alert, "sent", 10).await;
    assert_eq!(high.wait_for_messages(1, Duration::from_secs(2)).len(), 1);
    assert!(
        low.messages().is_empty(),
        "the lower priority is not used while the higher works"
    );
    assert_eq!(
        system.wait_for_messages(1, Duration::from_secs(2))[0]["rcpt_tos"][0],
        "ops@example.com"
    );

    // The log shows the attempt with its transcript, and the Message-ID at the sending domain.
    let attempts = m["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0]["outcome"], "sent");
    assert_eq!(attempts[0]["account"], "Facturas A");
    assert!(
        attempts[0]["transcript"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l
                .as_str()
                .unwrap()
                .starts_with("C: MAIL FROM:<app@acme.example>"))
    );
    let message_id = m["message_id"].as_str().unwrap();
    assert_eq!(message_id, format!("{billing}@acme.example"));
    let body = high.message_body(1);
    assert!(
        body.contains(&format!("Message-ID: <{message_id}>")),
        "{body}"
    );
    assert!(body.contains("Date: "));
    assert!(body.contains("\"Acme\" <app@acme.example>"));
    let kinds: Vec<&str> = m["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["queued", "sent"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_over_on_a_451_and_on_a_refused_connection() {
    let (Some(busy), Some(backup)) = (
        plain_server(Some(
            json!({"mail": "451 4.3.0 Error: queue file write error"}),
        )),
        plain_server(None),
    ) else {
        return;
    };
    let app = fast_app().await;
    add_account(&app, "Principal", busy.port, "system", 10, json!({})).await;
    add_account(&app, "Cerrado", free_port(), "system", 9, json!({})).await;
    add_account(&app, "Respaldo", backup.port, "system", 1, json!({})).await;
    let id = send(&app, simple("system", "ana@example.com")).await;
    let m = wait_status(&app, &id, "sent", 15).await;
    let attempts = m["attempts"].as_array().unwrap();
    let summary: Vec<(String, String, String)> = attempts
        .iter()
        .map(|a| {
            (
                a["account"].as_str().unwrap().to_string(),
                a["outcome"].as_str().unwrap().to_string(),
                a["diagnosis_code"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "Principal".into(),
                "deferred".into(),
                "temporary_failure".into()
            ),
            (
                "Cerrado".into(),
                "deferred".into(),
                "connection_refused".into()
            ),
            ("Respaldo".into(), "sent".into(), String::new()),
        ]
    );
    assert_eq!(backup.wait_for_messages(1, Duration::from_secs(2)).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_system_fallback_account_and_no_account_at_all() {
    let Some(fallback) = plain_server(None) else {
        return;
    };
    let app = fast_app().await;
    // No account of any kind: the message waits, and the API says why.
    let waiting = send(&app, simple("alerts", "ana@example.com")).await;
    let m = wait_for(&app, &waiting, 10, |m| m["last_code"] == "no_account").await;
    assert_eq!(m["status"], "deferred");
    assert!(
        m["explanation"]
            .as_str()
            .unwrap()
            .contains("no enabled account of type `alerts`"),
        "{m:#}"
    );

    // The operator sets the fallback: the waiting message goes out through it.
    let (status, _) = app
        .owner_json(Method::PUT, "/v1/system/fallback", Some(&json!({"host": "127.0.0.1", "port": fallback.port, "security": "none", "auth": "none", "from_email": "noreply@operator.example"})))
        .await;
    assert_eq!(status, 200);
    let m = wait_status(&app, &waiting, "sent", 10).await;
    assert_eq!(m["message_id"], format!("{waiting}@operator.example"));
    assert_eq!(
        fallback.wait_for_messages(1, Duration::from_secs(2))[0]["mail_from"],
        "noreply@operator.example"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_an_account_while_messages_wait_moves_them_to_the_next() {
    let (Some(first), Some(second)) = (
        plain_server(Some(json!({"mail": "451 4.3.0 try later"}))),
        plain_server(None),
    ) else {
        return;
    };
    let app = spawn_app_with(|c| {
        c.delivery.retry_base = Duration::from_secs(2);
        c.delivery.poll_interval = Duration::from_millis(200);
    })
    .await;
    let a = add_account(&app, "Solo", first.port, "system", 10, json!({})).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(send(&app, simple("system", &format!("user{i}@example.com"))).await);
    }
    for id in &ids {
        wait_for(&app, id, 10, |m| {
            m["status"] == "deferred" && m["attempt_count"].as_i64() >= Some(1)
        })
        .await;
    }
    // Disable the failing account and add another: no restart.
    app.owner_json(
        Method::PATCH,
        &format!("/v1/accounts/{a}"),
        Some(&json!({"enabled": false})),
    )
    .await;
    add_account(&app, "Nueva", second.port, "system", 1, json!({})).await;
    for id in &ids {
        wait_status(&app, id, "sent", 15).await;
    }
    assert_eq!(second.wait_for_messages(3, Duration::from_secs(2)).len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_minute_limit_is_honoured() {
    let Some(server) = plain_server(None) else {
        return;
    };
    let app = fast_app().await;
    add_account(
        &app,
        "Limitada",
        server.port,
        "system",
        0,
        json!({"limits": {"per_minute": 3}}),
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(send(&app, simple("system", &format!("u{i}@example.com"))).await);
    }
    let log = server.wait_for_messages(3, Duration::from_secs(10));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let log_after = server.messages();
    assert_eq!(log.len(), 3);
    assert_eq!(log_after.len(), 3, "no more than 3 within the minute");
    // Count by the peer's own timestamps.
    let times: Vec<f64> = log_after
        .iter()
        .map(|l| l["ts"].as_f64().unwrap())
        .collect();
    assert!(times.iter().all(|t| (t - times[0]).abs() < 60.0));
    let mut deferred = 0;
    for id in &ids {
        let (_, m) = app
            .owner_json(Method::GET, &format!("/v1/messages/{id}"), None)
            .await;
        if m["status"] == "deferred" {
            deferred += 1;
            assert_eq!(m["last_code"], "rate_limited", "{m:#}");
            assert!(
                m["explanation"]
                    .as_str()
                    .unwrap()
                    .contains("Sending limit reached")
            );
        }
    }
    assert_eq!(deferred, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttling_reply_pauses_the_account_and_routes_to_the_next() {
    let (Some(throttled), Some(other)) = (
        plain_server(Some(
            json!({"mail": ["421-4.7.0 Try again later, closing connection.", "421 4.7.0 (MAIL) - gsmtp"]}),
        )),
        plain_server(None),
    ) else {
        return;
    };
    let app = fast_app().await;
    let a = add_account(&app, "Gmail", throttled.port, "system", 10, json!({})).await;
    add_account(&app, "Otra", other.port, "system", 1, json!({})).await;
    let first = send(&app, simple("system", "ana@example.com")).await;
    let m = wait_status(&app, &first, "sent", 10).await;
    let attempts = m["attempts"].as_array().unwrap();
    assert_eq!(attempts[0]["diagnosis_code"], "rate_limited");
    assert!(
        attempts[0]["note"]
            .as_str()
            .unwrap()
            .contains("sending limit reached"),
        "{m:#}"
    );
    assert_eq!(attempts[1]["account"], "Otra");
    // While paused, the throttled account is not even tried.
    let second = send(&app, simple("system", "beto@example.com")).await;
    let m = wait_status(&app, &second, "sent", 10).await;
    assert_eq!(m["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(m["attempts"][0]["account"], "Otra");
    let paused = app.store.get_account("default", &a).await.unwrap().unwrap();
    assert!(paused.paused_until.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_failure_is_retried_then_succeeds() {
    let Some(server) = plain_server(Some(
        json!({"data": {"reply": "451 4.3.0 Temporary local problem - please try later", "times": 1}}),
    )) else {
        return;
    };
    let app = fast_app().await;
    add_account(&app, "Solo", server.port, "system", 0, json!({})).await;
    let id = send(&app, simple("system", "ana@example.com")).await;
    let m = wait_status(&app, &id, "sent", 20).await;
    let outcomes: Vec<&str> = m["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["deferred", "sent"]);
    let kinds: Vec<&str> = m["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["queued", "deferred", "sent"]);
    // The retry kept the same Message-ID.
    let log = server.wait_for_messages(1, Duration::from_secs(2));
    assert_eq!(
        log[0]["message_id"]
            .as_str()
            .unwrap()
            .trim_matches(['<', '>']),
        m["message_id"].as_str().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_failure_fails_at_once_with_the_diagnosis() {
    let Some(server) = plain_server(Some(
        json!({"rcpt": "550 5.1.1 <nadie@example.com>: Recipient address rejected: User unknown"}),
    )) else {
        return;
    };
    let app = fast_app().await;
    add_account(&app, "Solo", server.port, "system", 0, json!({})).await;
    let id = send(&app, simple("system", "nadie@example.com")).await;
    let m = wait_status(&app, &id, "failed", 10).await;
    assert_eq!(m["recipients"][0]["status"], "failed");
    assert!(
        m["recipients"][0]["reply"]
            .as_str()
            .unwrap()
            .contains("5.1.1")
    );
    assert_eq!(m["attempts"].as_array().unwrap().len(), 1);
    assert!(server.messages().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_are_per_recipient() {
    let Some(server) = plain_server(Some(
        json!({"rcpt:malo@example.com": "550 5.1.1 no such user"}),
    )) else {
        return;
    };
    let app = fast_app().await;
    add_account(&app, "Solo", server.port, "system", 0, json!({})).await;
    let id = send(&app, json!({"to": ["bueno@example.com", "malo@example.com"], "cc": ["copia@example.com"], "subject": "s", "text": "t"})).await;
    let m = wait_status(&app, &id, "partial", 10).await;
    let by: Vec<(String, String)> = m["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["address"].as_str().unwrap().into(),
                r["status"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        by,
        [
            ("bueno@example.com".into(), "sent".into()),
            ("malo@example.com".into(), "failed".into()),
            ("copia@example.com".into(), "sent".into())
        ]
    );
    let log = server.wait_for_messages(1, Duration::from_secs(2));
    assert_eq!(log.len(), 1);
    assert_eq!(
        log[0]["rcpt_tos"],
        json!(["bueno@example.com", "copia@example.com"])
    );
}

/// aiosmtpd offering PIPELINING and refusing `malo@example.com`, and an app whose one account
/// sends through it.
async fn pipelining_peer() -> Option<(Smtpd, TestApp)> {
    let server = plain_server(Some(json!({
        "ehlo": ["250-mx.example", "250-PIPELINING", "250 8BITMIME"],
        "rcpt:malo@example.com": "550 5.1.1 no such user",
    })))?;
    let app = fast_app().await;
    add_account(&app, "Tubería", server.port, "system", 0, json!({})).await;
    Some((server, app))
}

/// A server that offers PIPELINING (RFC 2920) gets MAIL, every RCPT and DATA in one group;
/// the body follows the 354 that answers DATA, and is still kept out of the transcript.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_transaction_settles_each_recipient() {
    let Some((server, app)) = pipelining_peer().await else {
        return;
    };
    let id = send(&app, json!({"to": ["bueno@example.com", "malo@example.com"], "subject": "Factura secreta", "text": "Cuerpo confidencial"})).await;
    let m = wait_status(&app, &id, "partial", 10).await;
    let statuses: Vec<&str> = m["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["sent", "failed"], "{m:#}");
    let log = server.wait_for_messages(1, Duration::from_secs(2));
    assert_eq!(log[0]["rcpt_tos"], json!(["bueno@example.com"]));

    let lines: Vec<String> = m["attempts"][0]["transcript"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    let at = |prefix: &str| {
        lines
            .iter()
            .position(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` in {lines:#?}"))
    };
    // Pipelined: DATA went out before the server answered MAIL.
    assert!(at("C: DATA") < at("S: 250 2.1.0"), "{lines:#?}");
    assert!(at("S: 354") < at("C: <message:"), "{lines:#?}");
    let text = lines.join("\n");
    assert!(
        !text.contains("Cuerpo confidencial") && !text.contains("Factura secreta"),
        "{text}"
    );
}

/// Every recipient refused in a pipelined group: DATA is refused too, nothing is sent, the
/// message fails, and the same connection delivers the next message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_transaction_with_no_valid_recipient_sends_nothing() {
    let Some((server, app)) = pipelining_peer().await else {
        return;
    };
    let refused = send(&app, simple("system", "malo@example.com")).await;
    let m = wait_status(&app, &refused, "failed", 10).await;
    assert_eq!(m["recipients"][0]["status"], "failed", "{m:#}");
    let good = send(&app, simple("system", "bueno@example.com")).await;
    wait_status(&app, &good, "sent", 10).await;
    let log = server.wait_for_messages(1, Duration::from_secs(2));
    assert_eq!(log.len(), 1, "only the good message arrived: {log:?}");
    assert_eq!(log[0]["rcpt_tos"], json!(["bueno@example.com"]));
}

/// An app with one connection per account, sending through aiosmtpd offering PIPELINING
/// that takes its time over the first MAIL, so that the messages sent meanwhile line up
/// behind the first for the one connection.
async fn one_pipelining_connection() -> Option<(Smtpd, TestApp)> {
    let server = plain_server(Some(json!({
        "ehlo": ["250-mx.example", "250-PIPELINING", "250 8BITMIME"],
        "mail": {"reply": null, "times": 1, "delay": 2.0},
        "rcpt:malo@example.com": "550 5.1.1 no such user",
    })))?;
    let app = one_connection_app(server.port).await;
    Some((server, app))
}

/// An app whose one account may open one connection, to the server at `port`.
async fn one_connection_app(port: u16) -> TestApp {
    let app = spawn_app_with(|c| {
        c.delivery.retry_base = Duration::from_secs(1);
        c.delivery.poll_interval = Duration::from_millis(200);
        c.delivery.connections_per_account = 1;
    })
    .await;
    add_account(&app, "Una conexión", port, "system", 0, json!({})).await;
    app
}

/// Submits one message to each address at once (the order they reach delivery is not known).
async fn send_all(app: &TestApp, to: &[String]) -> Vec<String> {
    futures_util::future::join_all(to.iter().map(|a| send(app, simple("system", a)))).await
}

fn transcript_of(m: &Value) -> Vec<String> {
    m["attempts"][0]["transcript"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect()
}

fn pipelined(lines: &[String]) -> bool {
    lines[0].contains("sent behind the previous message")
}

/// Messages waiting for the account's one connection go out pipelined behind the previous
/// body (RFC 2920 §3.1): all over that one connection, each transcript with its own
/// commands and its own replies only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_messages_are_pipelined_behind_the_previous_body() {
    let Some((server, app)) = one_pipelining_connection().await else {
        return;
    };
    let to: Vec<String> = (0..6).map(|n| format!("cliente{n}@example.com")).collect();
    let ids = send_all(&app, &to).await;
    let mut behind = 0;
    let mut queued_as = Vec::new();
    for id in &ids {
        let m = wait_status(&app, id, "sent", 15).await;
        let lines = transcript_of(&m);
        let count = |prefix: &str| lines.iter().filter(|l| l.starts_with(prefix)).count();
        assert_eq!(count("C: MAIL FROM"), 1, "{lines:#?}");
        assert_eq!(count("C: RCPT TO"), 1, "{lines:#?}");
        assert_eq!(count("C: <message:"), 1, "{lines:#?}");
        assert_eq!(count("S: 354"), 1, "{lines:#?}");
        let last = lines.last().unwrap();
        assert!(
            last.starts_with("S: 250 2.0.0 Ok: queued as "),
            "ends with its body's reply: {lines:#?}"
        );
        queued_as.push(last.clone());
        if pipelined(&lines) {
            behind += 1;
            assert!(lines[1].starts_with("C: MAIL FROM"), "{lines:#?}");
        }
    }
    queued_as.sort();
    queued_as.dedup();
    assert_eq!(
        queued_as.len(),
        6,
        "each transcript has its own final reply: {queued_as:?}"
    );
    // The first waited 2 s for its MAIL reply: the other five were all in line by then.
    assert_eq!(
        behind, 5,
        "every message that waited for the connection was pipelined"
    );
    let log = server.wait_for_messages(6, Duration::from_secs(5));
    assert_eq!(log.len(), 6, "{log:?}");
    let ports: std::collections::BTreeSet<u64> = log
        .iter()
        .map(|r| r["peer_port"].as_u64().unwrap())
        .collect();
    assert_eq!(ports.len(), 1, "one connection carried them all: {log:?}");
}

/// A message whose only recipient is refused, among others in line for the one connection:
/// its pipelined DATA is refused, nothing of it is sent, and the same connection goes on
/// with the others (in whatever order they came).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_message_in_the_pipeline_does_not_stop_the_others() {
    let Some((server, app)) = one_pipelining_connection().await else {
        return;
    };
    let to: Vec<String> = ["primero", "malo", "ultimo"]
        .iter()
        .map(|n| format!("{n}@example.com"))
        .collect();
    let ids = send_all(&app, &to).await;
    let mut behind = 0;
    for (id, address) in ids.iter().zip(&to) {
        let refused = address.starts_with("malo");
        let m = wait_status(&app, id, if refused { "failed" } else { "sent" }, 15).await;
        let lines = transcript_of(&m);
        if refused {
            assert!(
                lines.iter().any(|l| l.starts_with("S: 550 5.1.1")),
                "{lines:#?}"
            );
            assert!(
                !lines.iter().any(|l| l.starts_with("C: <message:")),
                "{lines:#?}"
            );
            assert!(lines.contains(&"C: RSET".to_string()), "{lines:#?}");
        }
        behind += usize::from(pipelined(&lines));
    }
    // Whichever came first, at least one of the others was written behind a body.
    assert!(behind >= 1, "pipelined: {behind}");
    let log = server.wait_for_messages(2, Duration::from_secs(5));
    let mut rcpts: Vec<String> = log.iter().map(|r| r["rcpt_tos"][0].to_string()).collect();
    rcpts.sort();
    assert_eq!(
        rcpts,
        ["\"primero@example.com\"", "\"ultimo@example.com\""],
        "{log:?}"
    );
    assert_eq!(
        log[0]["peer_port"], log[1]["peer_port"],
        "one connection: {log:?}"
    );
}

/// Postfix's smtp-sink answers what arrives together in one write, so the replies to the
/// commands written behind a body come in the same read as the body's own reply: they are
/// the next message's, and the connection goes on with it (not one connection per message).
/// `-w 1` holds each DATA reply a second, so the later messages are in line by then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_read_together_stay_with_their_messages() {
    let Some(sink) = SmtpSink::start(&["-w", "1"]) else {
        return;
    };
    let app = one_connection_app(sink.port).await;
    let to: Vec<String> = (0..4).map(|n| format!("c{n}@example.com")).collect();
    let ids = send_all(&app, &to).await;
    let (mut opened, mut behind) = (0, 0);
    for id in &ids {
        let m = wait_status(&app, id, "sent", 30).await;
        let lines = transcript_of(&m);
        opened += usize::from(lines[0].starts_with("S: 220"));
        behind += usize::from(pipelined(&lines));
        assert_eq!(
            lines
                .iter()
                .filter(|l| l.starts_with("C: MAIL FROM"))
                .count(),
            1,
            "{lines:#?}"
        );
    }
    assert_eq!(opened, 1, "one connection opened for all");
    assert!(behind >= 1, "pipelined: {behind}");
}

/// A 421 says the server is closing the connection (RFC 5321 §3.8), even when it then keeps
/// it open: the message is retried, and the next one goes over a new connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_421_the_connection_is_not_used_again() {
    let Some(server) = plain_server(Some(json!({
        "ehlo": ["250-mx.example", "250-PIPELINING", "250 8BITMIME"],
        "mail": {"reply": "421 4.3.2 service shutting down", "times": 1},
    }))) else {
        return;
    };
    let app = fast_app().await;
    add_account(&app, "Cierra", server.port, "system", 0, json!({})).await;
    let first = send(&app, simple("system", "uno@example.com")).await;
    wait_for(&app, &first, 10, |m| {
        m["attempts"].as_array().is_some_and(|a| !a.is_empty())
    })
    .await;
    let next = send(&app, simple("system", "dos@example.com")).await;
    let m = wait_status(&app, &next, "sent", 10).await;
    let lines = transcript_of(&m);
    assert!(
        lines[0].starts_with("S: 220"),
        "a new connection, from its greeting: {lines:#?}"
    );
    wait_status(&app, &first, "sent", 15).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_return_the_first_answer() {
    let Some(server) = plain_server(None) else {
        return;
    };
    let app = fast_app().await;
    add_account(&app, "Solo", server.port, "system", 0, json!({})).await;
    let post = || {
        app.client
            .post(format!("{}/v1/messages", app.base))
            .bearer_auth(&app.owner)
            .header("Idempotency-Key", "factura-1042")
            .json(&simple("system", "ana@example.com"))
            .send()
    };
    let first = post().await.unwrap();
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    let second = post().await.unwrap();
    assert_eq!(second.status(), 202);
    assert_eq!(second.headers()["idempotent-replayed"], "true");
    let second: Value = second.json().await.unwrap();
    assert_eq!(first, second);
    wait_status(&app, first["id"].as_str().unwrap(), "sent", 10).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.messages().len(), 1);
    let (_, list) = app.owner_json(Method::GET, "/v1/messages", None).await;
    assert_eq!(list["messages"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_are_refused_and_nothing_is_stored() {
    let app = fast_app().await;
    let cases = [
        (
            json!({"to": ["ana@example.com"], "subject": "Hola\r\nBcc: todos@example.com", "text": "t"}),
            422,
            "header_injection",
        ),
        (
            json!({"to": ["ana@example.com\nBcc: x@example.com"], "subject": "s", "text": "t"}),
            422,
            "header_injection",
        ),
        (
            json!({"to": ["ana@example.com"], "subject": "s", "text": "t", "headers": {"X-A": "1\r\nBcc: x@example.com"}}),
            422,
            "header_injection",
        ),
        (
            json!({"to": [], "subject": "s", "text": "t"}),
            422,
            "invalid_field",
        ),
        (
            json!({"to": ["ana@example.com"], "template": "nope"}),
            422,
            "unknown_template",
        ),
        (
            json!({"to": ["ana@example.com"], "subject": "s", "text": "t", "surprise": 1}),
            422,
            "invalid_field",
        ),
    ];
    for (body, status, code) in cases {
        let (got, answer) = app
            .owner_json(Method::POST, "/v1/messages", Some(&body))
            .await;
        assert_eq!(
            (got, answer["error"]["code"].as_str().unwrap()),
            (status, code),
            "{body} → {answer}"
        );
    }
    let sender = app
        .token("default", cartero::domain::permission::Role::Viewer)
        .await;
    let r = app
        .call(
            Method::POST,
            "/v1/messages",
            Some(&sender),
            Some(&simple("system", "a@example.com")),
        )
        .await;
    assert_eq!(r.status(), 403);
    let (_, list) = app.owner_json(Method::GET, "/v1/messages", None).await;
    assert_eq!(list["messages"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_get_413() {
    let app = spawn_app_with(|c| c.delivery.max_message_bytes = 1000).await;
    use base64::Engine;
    let big = base64::engine::general_purpose::STANDARD.encode(vec![7u8; 2000]);
    let body = json!({"to": ["ana@example.com"], "subject": "s", "text": "t", "attachments": [{"filename": "a.bin", "content_base64": big}]});
    let (status, answer) = app
        .owner_json(Method::POST, "/v1/messages", Some(&body))
        .await;
    assert_eq!(status, 413);
    assert_eq!(answer["error"]["code"], "message_too_large");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_render_in_spanish_and_english() {
    let Some(server) = plain_server(None) else {
        return;
    };
    let app = fast_app().await;
    add_account(&app, "Solo", server.port, "system", 0, json!({})).await;
    let vars = json!({"name": "Ana", "product": "Gaio", "link": "https://gaio.example/reset?t=abc", "expires_in": "1 hora"});
    let es = send(&app, json!({"to": ["ana@example.com"], "template": "password_reset", "vars": vars, "locale": "es"})).await;
    let en = send(&app, json!({"to": ["ana@example.com"], "template": "password_reset", "vars": vars, "locale": "en"})).await;
    let m_es = wait_status(&app, &es, "sent", 10).await;
    let m_en = wait_status(&app, &en, "sent", 10).await;
    assert_eq!(m_es["template"], "password_reset");
    assert!(
        m_es["subject"].as_str().unwrap().contains("contraseña"),
        "{}",
        m_es["subject"]
    );
    assert!(
        m_en["subject"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("password"),
        "{}",
        m_en["subject"]
    );
    server.wait_for_messages(2, Duration::from_secs(2));
    let bodies = format!("{}{}", server.message_body(1), server.message_body(2));
    assert!(
        bodies.contains("text/html") && bodies.contains("text/plain"),
        "HTML with a plain-text alternative"
    );
    assert!(bodies.contains("gaio.example/reset"));

    // A project template that does not render is refused with the line and the reason.
    let bad =
        json!({"en": {"subject": "Hi", "text": "line one\n{% if x %}\nno end", "html": null}});
    let (status, answer) = app
        .owner_json(Method::PUT, "/v1/templates/welcome", Some(&bad))
        .await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["error"]["code"], "template_error");
    assert_eq!(answer["error"]["field"], "en.text");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("line 2"),
        "{answer}"
    );
    // A good one is saved and used.
    let good = json!({"es": {"subject": "Hola {{ name }}", "text": "Bienvenida, {{ name }}.", "html": null}});
    let (status, _) = app
        .owner_json(Method::PUT, "/v1/templates/welcome", Some(&good))
        .await;
    assert_eq!(status, 200);
    let id = send(&app, json!({"to": ["ana@example.com"], "template": "welcome", "vars": {"name": "Ana"}, "locale": "en"})).await;
    let m = wait_status(&app, &id, "sent", 10).await;
    assert_eq!(
        m["subject"], "Hola Ana",
        "falls back to the language it has"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn microsoft365_sends_as_the_mailbox_and_says_so() {
    // Microsoft 365 compatibility requires STARTTLS: a STARTTLS peer with a test CA.
    let pki = crate::peers::TestPki::new();
    let Some(server) = Smtpd::start(SmtpdOptions {
        mode: "starttls",
        cert: Some(pki.valid.clone()),
        ..SmtpdOptions::default()
    }) else {
        return;
    };
    let ca = pki.ca_pem.clone();
    let app = spawn_app_with(move |c| {
        c.network.tls_ca_file = Some(ca);
        c.delivery.poll_interval = Duration::from_millis(200);
    })
    .await;
    // auth none keeps the peer simple; the rewrite depends on the username.
    add_account(
        &app,
        "M365",
        server.port,
        "system",
        0,
        json!({"microsoft365": true, "security": "starttls", "username": "buzon@acme.example", "auth": "none", "from_email": "ventas@acme.example"}),
    )
    .await;
    let id = send(&app, simple("system", "ana@example.com")).await;
    let m = wait_status(&app, &id, "sent", 10).await;
    assert!(
        m["attempts"][0]["note"]
            .as_str()
            .unwrap()
            .contains("rewritten to the mailbox buzon@acme.example")
    );
    let log = server.wait_for_messages(1, Duration::from_secs(2));
    assert_eq!(log[0]["mail_from"], "buzon@acme.example");
    let body = server.message_body(1);
    assert!(body.contains("Reply-To: <ventas@acme.example>"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_filter_retry_cancel_and_metrics() {
    let Some(server) = plain_server(Some(json!({"rcpt:nadie@example.com": "550 5.1.1 unknown"})))
    else {
        return;
    };
    let app = fast_app().await;
    let acct = add_account(&app, "Solo", server.port, "system", 0, json!({})).await;
    let ok = send(&app, simple("system", "ana@example.com")).await;
    let bad = send(&app, simple("system", "nadie@example.com")).await;
    wait_status(&app, &ok, "sent", 10).await;
    wait_status(&app, &bad, "failed", 10).await;
    let (_, failed) = app
        .owner_json(Method::GET, "/v1/messages?status=failed", None)
        .await;
    assert_eq!(failed["messages"].as_array().unwrap().len(), 1);
    assert_eq!(failed["messages"][0]["id"], bad.as_str());
    let (_, to) = app
        .owner_json(Method::GET, "/v1/messages?to=ana@example.com", None)
        .await;
    assert_eq!(to["messages"][0]["id"], ok.as_str());
    let (_, page) = app
        .owner_json(Method::GET, "/v1/messages?limit=1", None)
        .await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 1);
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, next) = app
        .owner_json(
            Method::GET,
            &format!("/v1/messages?limit=1&cursor={cursor}"),
            None,
        )
        .await;
    assert_eq!(next["messages"].as_array().unwrap().len(), 1);
    assert_ne!(next["messages"][0]["id"], page["messages"][0]["id"]);
    let (status, _) = app
        .owner_json(Method::GET, "/v1/messages?status=bogus", None)
        .await;
    assert_eq!(status, 422);

    // Retry a failed message: it is queued again and fails again (same reply).
    let (status, retried) = app
        .owner_json(Method::POST, &format!("/v1/messages/{bad}/retry"), None)
        .await;
    assert_eq!(status, 200, "{retried}");
    let m = wait_for(&app, &bad, 10, |m| {
        m["status"] == "failed" && m["attempt_count"] == 2
    })
    .await;
    assert_eq!(m["attempt_count"], 2);
    // A sent message cannot be cancelled; a deferred one can.
    let (status, answer) = app
        .owner_json(Method::POST, &format!("/v1/messages/{ok}/cancel"), None)
        .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (409, Some("invalid_status"))
    );
    app.owner_json(
        Method::PATCH,
        &format!("/v1/accounts/{acct}"),
        Some(&json!({"enabled": false})),
    )
    .await;
    let waiting = send(&app, simple("system", "ana@example.com")).await;
    wait_for(&app, &waiting, 10, |m| m["status"] == "deferred").await;
    let (status, cancelled) = app
        .owner_json(
            Method::POST,
            &format!("/v1/messages/{waiting}/cancel"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(cancelled["status"], "cancelled");

    let text = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        "cartero_attempts_total",
        "cartero_attempt_duration_seconds",
        "cartero_queue_depth",
        "cartero_errors_total",
        "cartero_queue_messages{status=\"sent\"}",
    ] {
        assert!(
            text.contains(needle),
            "{needle} missing from /metrics:\n{text}"
        );
    }
}

/// A raw message that has its Message-ID and Date arrives exactly as it was given: a line that
/// begins with "." survives the transparency procedure, and the end of data adds no empty
/// line after a message that already ends with CRLF (RFC 5321 §4.1.1.4).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_message_arrives_byte_for_byte() {
    use base64::Engine;
    let Some(server) = plain_server(None) else {
        return;
    };
    let app = fast_app().await;
    add_account(&app, "Relay", server.port, "system", 0, json!({})).await;
    let raw = "From: App <app@acme.example>\r\nTo: ana@example.com\r\n\
               Subject: Tal cual\r\nMessage-ID: <raw-1@acme.example>\r\n\
               Date: Tue, 1 Dec 2026 10:00:00 +0000\r\n\r\n\
               Primera línea\r\n.una línea que empieza con punto\r\n..y otra con dos\r\nFin\r\n";
    let id = send(
        &app,
        json!({
            "type": "system",
            "to": ["ana@example.com"],
            "raw": base64::engine::general_purpose::STANDARD.encode(raw),
        }),
    )
    .await;
    wait_status(&app, &id, "sent", 10).await;
    server.wait_for_messages(1, Duration::from_secs(2));
    assert_eq!(server.message_body(1), raw);
}
