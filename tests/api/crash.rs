//! No lost mail: 2,000 accepted messages, a slow peer, `kill -9` of the real server in the
//! middle of delivery, a restart — and every message arrives; a message arrives twice only
//! if it was in flight (claimed, outcome not yet committed) at the kill.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::peers::{Smtpd, SmtpdOptions, free_port};

const CONNECTIONS: usize = 4;

fn cartero(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_cartero"))
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("binary runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn serve(dir: &Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_cartero"))
        .arg("--data-dir")
        .arg(dir)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("CARTERO_LOG", "warn")
        .env("CARTERO_CONNECTIONS_PER_ACCOUNT", CONNECTIONS.to_string())
        .env("CARTERO_RETRY_BASE_SECS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("server starts")
}

async fn wait_healthy(client: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(r) = client.get(format!("{base}/healthz")).send().await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("cartero did not become healthy at {base}");
}

/// Message ids seen by the peer, with how often each arrived.
fn arrivals(server: &Smtpd) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for line in server.messages() {
        if let Some(id) = line["message_id"].as_str() {
            let id = id
                .trim_matches(['<', '>'])
                .split('@')
                .next()
                .unwrap_or("")
                .to_string();
            *seen.entry(id).or_insert(0) += 1;
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_delivery_loses_nothing() {
    // A slow peer: every DATA takes 20 ms.
    let Some(peer) = Smtpd::start(SmtpdOptions {
        mode: "plain",
        script: Some(json!({"data": {"reply": null, "delay": 0.02}})),
        ..SmtpdOptions::default()
    }) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let token = cartero(
        d,
        &["token", "create", "--name", "crash", "--role", "sender"],
    )
    .trim()
    .to_string();
    cartero(
        d,
        &[
            "account",
            "add",
            "--name",
            "Lento",
            "--host",
            "127.0.0.1",
            "--port",
            &peer.port.to_string(),
            "--security",
            "none",
            "--auth",
            "none",
            "--from-email",
            "app@acme.example",
        ],
    );

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut server = serve(d, port);
    wait_healthy(&client, &base).await;

    // Submit 2,000 messages, 16 at a time; every 202 is a promise.
    let total = 2000;
    let accepted: Vec<String> = {
        let mut handles = Vec::new();
        for worker in 0..16 {
            let client = client.clone();
            let base = base.clone();
            let token = token.clone();
            handles.push(tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in (worker..total).step_by(16) {
                    let r = client
                        .post(format!("{base}/v1/messages"))
                        .bearer_auth(&token)
                        .json(&json!({"to": [format!("user{i}@example.com")], "subject": format!("n.º {i}"), "text": "x".repeat(4000)}))
                        .send()
                        .await
                        .expect("submission");
                    assert_eq!(r.status(), 202);
                    ids.push(r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string());
                }
                ids
            }));
        }
        let mut all = Vec::new();
        for h in handles {
            all.extend(h.await.unwrap());
        }
        all
    };
    assert_eq!(accepted.len(), total);

    // Let delivery get going, then kill -9 in the middle of it.
    let deadline = Instant::now() + Duration::from_secs(60);
    while peer.messages().len() < 200 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill().expect("SIGKILL");
    server.wait().unwrap();
    let before_restart = arrivals(&peer).len();
    assert!(
        before_restart > 0 && before_restart < total,
        "the kill happened mid-run ({before_restart} delivered)"
    );
    // The messages in flight at the kill: claimed, outcome not yet committed. Only these may
    // arrive twice.
    let in_flight: std::collections::HashSet<String> = {
        use sqlx::Row;
        let url = format!("sqlite://{}", d.join("cartero.db").display());
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        let rows = sqlx::query("SELECT id FROM messages WHERE status = 'sending'")
            .fetch_all(&pool)
            .await
            .unwrap();
        pool.close().await;
        rows.iter().map(|r| r.get::<String, _>("id")).collect()
    };

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = serve(d, port);
    wait_healthy(&client, &base).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let seen = arrivals(&peer);
        if accepted.iter().all(|id| seen.contains_key(id)) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = server.kill();
    let _ = server.wait();

    let seen = arrivals(&peer);
    let missing: Vec<&String> = accepted
        .iter()
        .filter(|id| !seen.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} accepted messages never arrived, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    eprintln!(
        "kill -9 test: {before_restart} delivered before the kill, {} in flight, {duplicates} duplicate(s) after restart",
        in_flight.len()
    );
    for (id, n) in &seen {
        if *n > 1 {
            assert!(
                in_flight.contains(id),
                "{id} arrived {n} times but was not in flight at the kill"
            );
        }
    }
    assert!(
        duplicates <= in_flight.len(),
        "{duplicates} duplicates, {} in flight",
        in_flight.len()
    );
}
