//! `spawn_app()`: a real cartero on 127.0.0.1:0 with a fresh data directory, and a client.

use std::sync::Arc;

use cartero::app::Application;
use cartero::config::Config;
use cartero::domain::permission::Role;
use cartero::store::Store;
use reqwest::{Method, Response};
use serde_json::Value;

pub struct TestApp {
    pub base: String,
    pub dir: tempfile::TempDir,
    pub store: Arc<dyn Store>,
    pub client: reqwest::Client,
    /// An owner token of the `default` project.
    pub owner: String,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::for_data_dir(dir.path());
    adjust(&mut config);
    let app = Application::build(config).await.expect("app builds");
    let base = format!("http://{}", app.local_addr());
    let store = app.state().store.clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until(async {
        let _ = rx.await;
    }));
    let owner = cartero::tokens::issue(store.as_ref(), "default", "test owner", Role::Owner)
        .await
        .unwrap()
        .token;
    TestApp {
        base,
        dir,
        store,
        client: reqwest::Client::new(),
        owner,
        _shutdown: tx,
    }
}

impl TestApp {
    pub async fn token(&self, project: &str, role: Role) -> String {
        if !self.store.project_exists(project).await.unwrap() {
            self.store.create_project(project).await.unwrap();
        }
        cartero::tokens::issue(self.store.as_ref(), project, "test", role)
            .await
            .unwrap()
            .token
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Response {
        let mut req = self
            .client
            .request(method, format!("{}{}", self.base, path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        req.send().await.expect("request sent")
    }

    /// A call as the owner, returning status and JSON body.
    pub async fn owner_json(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let r = self.call(method, path, Some(&self.owner), body).await;
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

/// A valid account body for tests.
pub fn account_json(name: &str) -> Value {
    serde_json::json!({
        "name": name, "type": "system", "priority": 10, "enabled": true,
        "host": "smtp.office365.com", "port": 587, "security": "starttls",
        "auth": "password", "username": "ventas@acme.example", "password": "Sup3r-s3cret-pw",
        "from_email": "ventas@acme.example", "from_name": "Acme Ventas", "reply_to": null,
        "microsoft365": true, "tls_verify": true,
        "limits": {"per_minute": 30, "per_hour": null, "per_day": 10000},
        "imap": {"host": "outlook.office365.com", "port": 993, "security": "tls",
                 "username": null, "password": "Imap-s3cret-pw", "folder": "INBOX"}
    })
}
