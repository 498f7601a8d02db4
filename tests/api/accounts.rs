use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{account_json, spawn_app};

#[tokio::test]
async fn create_read_update_delete_an_account() {
    let app = spawn_app().await;
    let (status, created) = app
        .owner_json(Method::POST, "/v1/accounts", Some(&account_json("Ventas")))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["password_set"], true);
    assert_eq!(created["imap"]["password_set"], true);
    assert_eq!(created["project"], "default");
    assert_eq!(created["limits"]["per_day"], 10000);
    assert!(created.get("password").is_none());

    let (status, list) = app.owner_json(Method::GET, "/v1/accounts", None).await;
    assert_eq!(status, 200);
    assert_eq!(list.as_array().unwrap().len(), 1);

    // PATCH changes what it names and keeps the rest — including the password.
    let (status, patched) = app
        .owner_json(
            Method::PATCH,
            &format!("/v1/accounts/{id}"),
            Some(&json!({"priority": 20, "enabled": false, "reply_to": "soporte@acme.example"})),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["priority"], 20);
    assert_eq!(patched["enabled"], false);
    assert_eq!(patched["reply_to"], "soporte@acme.example");
    assert_eq!(patched["password_set"], true);
    assert_eq!(patched["host"], "smtp.office365.com");

    // Hot: the next read sees the change.
    let (_, fetched) = app
        .owner_json(Method::GET, &format!("/v1/accounts/{id}"), None)
        .await;
    assert_eq!(fetched["priority"], 20);

    let (status, _) = app
        .owner_json(Method::DELETE, &format!("/v1/accounts/{id}"), None)
        .await;
    assert_eq!(status, 204);
    let (status, body) = app
        .owner_json(Method::GET, &format!("/v1/accounts/{id}"), None)
        .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
}

#[tokio::test]
async fn secrets_never_come_back_and_are_not_stored_in_plain_text() {
    let app = spawn_app().await;
    let (status, created) = app
        .owner_json(Method::POST, "/v1/accounts", Some(&account_json("Ventas")))
        .await;
    assert_eq!(status, 201);
    let id = created["id"].as_str().unwrap();
    for path in ["/v1/accounts".to_string(), format!("/v1/accounts/{id}")] {
        let (_, body) = app.owner_json(Method::GET, &path, None).await;
        let text = body.to_string();
        assert!(
            !text.contains("Sup3r-s3cret-pw") && !text.contains("Imap-s3cret-pw"),
            "{text}"
        );
    }
    // Nothing in the data directory holds the password in plain text: database, WAL, key file.
    for entry in std::fs::read_dir(app.dir.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let hay = String::from_utf8_lossy(&bytes);
        assert!(!hay.contains("Sup3r-s3cret-pw"));
        assert!(!hay.contains("Imap-s3cret-pw"));
    }
    // Clearing the password with null.
    let (status, body) = app
        .owner_json(
            Method::PATCH,
            &format!("/v1/accounts/{id}"),
            Some(&json!({"auth": "none", "password": null})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["password_set"], false);
}

#[tokio::test]
async fn bad_input_is_a_422_naming_the_field_and_saves_nothing() {
    let app = spawn_app().await;
    let cases: Vec<(Value, &str)> = vec![
        (json!({"port": 0}), "port"),
        (json!({"port": 65536}), "port"),
        (json!({"security": "ssl3"}), "security"),
        (json!({"from_email": "not-an-email"}), "from_email"),
        (json!({"host": "smtp://mail.acme.example:587"}), "host"),
        (json!({"host": "bad host"}), "host"),
        (json!({"priority": "high"}), "priority"),
        (json!({"priority": 1.5}), "priority"),
        (json!({"surprise": true}), "surprise"),
        (json!({"imap": {"hots": "x"}}), "imap.hots"),
        (json!({"imap": {"port": 99999}}), "imap.port"),
        (json!({"limits": {"per_day": 0}}), "limits.per_day"),
        (json!({"reply_to": "a@b"}), "reply_to"),
        (
            json!({"from_name": "Acme\r\nBcc: x@evil.example"}),
            "from_name",
        ),
        (json!({"preset": "nope"}), "preset"),
        (json!({"type": "has space"}), "type"),
    ];
    for (change, field) in cases {
        let mut body = account_json("Ventas");
        for (k, v) in change.as_object().unwrap() {
            if k.contains('.') {
                continue;
            }
            body[k] = v.clone();
        }
        let (status, answer) = app
            .owner_json(Method::POST, "/v1/accounts", Some(&body))
            .await;
        assert_eq!(status, 422, "{change} → {answer}");
        let fields: Vec<&str> = answer["error"]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["field"].as_str().unwrap())
            .collect();
        assert!(
            fields.contains(&field),
            "{change}: expected {field} in {fields:?}"
        );
        assert!(answer["error"]["message"].as_str().unwrap().len() > 10);
    }
    let (_, list) = app.owner_json(Method::GET, "/v1/accounts", None).await;
    assert_eq!(list, json!([]), "nothing was saved");

    // A failed PATCH changes nothing either.
    let (_, created) = app
        .owner_json(Method::POST, "/v1/accounts", Some(&account_json("Ventas")))
        .await;
    let id = created["id"].as_str().unwrap();
    let (status, _) = app
        .owner_json(
            Method::PATCH,
            &format!("/v1/accounts/{id}"),
            Some(&json!({"priority": 99, "port": 0})),
        )
        .await;
    assert_eq!(status, 422);
    let (_, after) = app
        .owner_json(Method::GET, &format!("/v1/accounts/{id}"), None)
        .await;
    assert_eq!(after["priority"], 10);
    assert_eq!(after["port"], 587);
}

#[tokio::test]
async fn errors_speak_spanish_when_asked() {
    let app = spawn_app().await;
    let mut body = account_json("Ventas");
    body["port"] = json!(70000);
    let r = app
        .client
        .post(format!("{}/v1/accounts", app.base))
        .bearer_auth(&app.owner)
        .header("Accept-Language", "es-AR,es;q=0.9,en;q=0.5")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    assert_eq!(r.headers()["content-language"], "es");
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["error"]["code"], "invalid_field");
    assert_eq!(answer["error"]["field"], "port");
    let msg = answer["error"]["message"].as_str().unwrap();
    assert!(msg.contains("puerto"), "{msg}");

    let r = app
        .client
        .get(format!("{}/v1/accounts", app.base))
        .header("Accept-Language", "es")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let answer: Value = r.json().await.unwrap();
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Envíe")
    );
}

#[tokio::test]
async fn malformed_oversized_and_non_json_bodies_get_clear_4xx() {
    let app = spawn_app().await;
    let post = |body: Vec<u8>, ctype: &'static str| {
        app.client
            .post(format!("{}/v1/accounts", app.base))
            .bearer_auth(&app.owner)
            .header("content-type", ctype)
            .body(body)
            .send()
    };
    let r = post(b"{\"name\": ".to_vec(), "application/json")
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "invalid_json"
    );

    let r = post(b"name=x".to_vec(), "application/x-www-form-urlencoded")
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "unsupported_media_type"
    );

    let mut big = account_json("Big");
    big["from_name"] = json!("x".repeat(400 * 1024));
    let r = post(serde_json::to_vec(&big).unwrap(), "application/json")
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "payload_too_large"
    );

    let (_, list) = app.owner_json(Method::GET, "/v1/accounts", None).await;
    assert_eq!(list, json!([]));
}

#[tokio::test]
async fn names_are_unique_within_a_project() {
    let app = spawn_app().await;
    let (s1, _) = app
        .owner_json(Method::POST, "/v1/accounts", Some(&account_json("Ventas")))
        .await;
    let (s2, answer) = app
        .owner_json(Method::POST, "/v1/accounts", Some(&account_json("Ventas")))
        .await;
    assert_eq!((s1, s2), (201, 409));
    assert_eq!(answer["error"]["code"], "name_taken");
    assert_eq!(answer["error"]["field"], "name");
}

#[tokio::test]
async fn an_account_from_a_preset() {
    let app = spawn_app().await;
    let (status, created) = app
        .owner_json(
            Method::POST,
            "/v1/accounts",
            Some(&json!({
                "preset": "gmail", "name": "Soporte", "type": "internal",
                "from_email": "soporte.acme@gmail.com", "password": "abcd efgh ijkl mnop"
            })),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["host"], "smtp.gmail.com");
    assert_eq!(created["port"], 587);
    assert_eq!(created["security"], "starttls");
    assert_eq!(created["username"], "soporte.acme@gmail.com");
    assert_eq!(created["imap"]["host"], "imap.gmail.com");
}

#[tokio::test]
async fn projects_cannot_see_each_other() {
    let app = spawn_app().await;
    let (_, created) = app
        .owner_json(Method::POST, "/v1/accounts", Some(&account_json("Ventas")))
        .await;
    let id = created["id"].as_str().unwrap();
    let other = app
        .token("acme", cartero::domain::permission::Role::Owner)
        .await;

    let r = app
        .call(Method::GET, "/v1/accounts", Some(&other), None)
        .await;
    assert_eq!(r.json::<Value>().await.unwrap(), json!([]));
    for method in [Method::GET, Method::PATCH, Method::DELETE] {
        let body = json!({"priority": 1});
        let r = app
            .call(
                method.clone(),
                &format!("/v1/accounts/{id}"),
                Some(&other),
                (method == Method::PATCH).then_some(&body),
            )
            .await;
        assert_eq!(r.status(), 404, "{method}");
    }
    // The same name is fine in another project.
    let r = app
        .call(
            Method::POST,
            "/v1/accounts",
            Some(&other),
            Some(&account_json("Ventas")),
        )
        .await;
    assert_eq!(r.status(), 201);
    let (_, still) = app
        .owner_json(Method::GET, &format!("/v1/accounts/{id}"), None)
        .await;
    assert_eq!(still["priority"], 10);
}
