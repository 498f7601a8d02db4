use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{spawn_app, spawn_app_with};

#[tokio::test]
async fn health_and_openapi_need_no_token() {
    let app = spawn_app().await;
    let r = app.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(r.status(), 200);
    let r = app.call(Method::GET, "/v1/openapi.json", None, None).await;
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/v1/accounts",
        "/v1/accounts/{id}",
        "/v1/presets",
        "/v1/system/fallback",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from OpenAPI"
        );
    }
    let r = app.call(Method::GET, "/v1/nope", None, None).await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "not_found"
    );
}

#[tokio::test]
async fn presets_list_and_lookup_by_email() {
    let app = spawn_app().await;
    let (status, all) = app.owner_json(Method::GET, "/v1/presets", None).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    for want in [
        "office365",
        "gmail",
        "sendgrid",
        "ses-eu-west-1",
        "mailgun",
        "postmark",
        "brevo",
        "mailjet",
        "ovh",
        "gandi",
        "zoho",
        "zoho-eu",
        "infomaniak",
        "protonmail-bridge",
        "icloud",
        "yahoo",
        "fastmail",
        "ionos",
        "gmx",
    ] {
        assert!(ids.contains(&want), "{want} missing");
    }
    let (_, found) = app
        .owner_json(Method::GET, "/v1/presets?email=ana@gmail.com", None)
        .await;
    assert_eq!(found[0]["id"], "gmail");
    assert_eq!(found[0]["smtp"]["host"], "smtp.gmail.com");
    assert!(!found[0]["note_es"].as_str().unwrap().is_empty());
    let (_, found) = app
        .owner_json(Method::GET, "/v1/presets?email=pepe@hotmail.es", None)
        .await;
    assert_eq!(found[0]["microsoft365"], true);
    let (_, none) = app
        .owner_json(Method::GET, "/v1/presets?email=ana@acme.example", None)
        .await;
    assert_eq!(none, json!([]));
    let (_, sg) = app.owner_json(Method::GET, "/v1/presets", None).await;
    let sendgrid = sg
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "sendgrid")
        .unwrap();
    assert_eq!(sendgrid["username"], "apikey");
}

#[tokio::test]
async fn fallback_from_environment_then_api_override() {
    let app = spawn_app_with(|c| {
        c.fallback_smtp_url = Some(cartero::secrets::Secret::new(
            "smtps://ops%40acme.example:Fallback-pw@mail.acme.example:465",
        ))
    })
    .await;
    let (status, view) = app
        .owner_json(Method::GET, "/v1/system/fallback", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(view["source"], "environment");
    assert_eq!(view["account"]["host"], "mail.acme.example");
    assert_eq!(view["account"]["password_set"], true);
    assert!(!view.to_string().contains("Fallback-pw"));

    let (status, view) = app
        .owner_json(
            Method::PUT,
            "/v1/system/fallback",
            Some(&json!({
                "host": "smtp.sendgrid.net", "port": 587, "security": "starttls",
                "username": "apikey", "password": "SG.secret", "from_email": "noreply@acme.example"
            })),
        )
        .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["source"], "api");
    assert_eq!(view["account"]["host"], "smtp.sendgrid.net");
    // A second PUT changes a field and keeps the stored password.
    let (status, view) = app
        .owner_json(
            Method::PUT,
            "/v1/system/fallback",
            Some(&json!({"from_name": "Acme"})),
        )
        .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["account"]["password_set"], true);
    assert_eq!(view["account"]["from_name"], "Acme");
    // Not visible as a project account.
    let (_, list) = app.owner_json(Method::GET, "/v1/accounts", None).await;
    assert_eq!(list, json!([]));

    let (status, view) = app
        .owner_json(Method::DELETE, "/v1/system/fallback", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(view["removed"], true);
    assert_eq!(view["source"], "environment");
}
