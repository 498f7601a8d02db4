//! Route by route: no token is 401, a role without the route's permission is 403, a role with
//! it gets past the check.

use cartero::domain::permission::{Permission, Role};
use reqwest::Method;
use serde_json::json;

use crate::helpers::{account_json, spawn_app};

#[tokio::test]
async fn every_route_checks_its_permission() {
    let app = spawn_app().await;
    let (_, created) = app
        .owner_json(Method::POST, "/v1/accounts", Some(&account_json("Ventas")))
        .await;
    let id = created["id"].as_str().unwrap().to_string();
    let account_path = format!("/v1/accounts/{id}");
    let fallback_body = json!({"host": "127.0.0.1", "port": 2525, "security": "none", "from_email": "ops@acme.example"});

    // (method, path, body, permission needed)
    let routes: Vec<(Method, &str, Option<serde_json::Value>, Permission)> = vec![
        (Method::GET, "/v1/accounts", None, Permission::SettingsView),
        (
            Method::POST,
            "/v1/accounts",
            Some(account_json("Nueva")),
            Permission::AccountsManage,
        ),
        (Method::GET, &account_path, None, Permission::SettingsView),
        (
            Method::PATCH,
            &account_path,
            Some(json!({"priority": 5})),
            Permission::AccountsManage,
        ),
        (Method::GET, "/v1/presets", None, Permission::SettingsView),
        (
            Method::GET,
            "/v1/system/fallback",
            None,
            Permission::SettingsView,
        ),
        (
            Method::PUT,
            "/v1/system/fallback",
            Some(fallback_body.clone()),
            Permission::DefaultsManage,
        ),
        (
            Method::POST,
            "/v1/system/fallback/test",
            Some(json!({"send": false})),
            Permission::DefaultsManage,
        ),
        (
            Method::DELETE,
            "/v1/system/fallback",
            None,
            Permission::DefaultsManage,
        ),
        (Method::GET, "/v1/users", None, Permission::SettingsView),
        (
            Method::POST,
            "/v1/users",
            Some(json!({"email": "p@example.com", "role": "viewer"})),
            Permission::UsersManage,
        ),
        (
            Method::DELETE,
            "/v1/users/no-such-user",
            None,
            Permission::UsersManage,
        ),
        (Method::GET, "/v1/tokens", None, Permission::SettingsView),
        (
            Method::POST,
            "/v1/tokens",
            Some(json!({"name": "t", "role": "sender"})),
            Permission::UsersManage,
        ),
        (
            Method::DELETE,
            "/v1/tokens/no-such-token",
            None,
            Permission::UsersManage,
        ),
        (Method::GET, "/v1/audit", None, Permission::SettingsView),
        (
            Method::POST,
            "/v1/templates/preview",
            Some(json!({"template": {"en": {"subject": "s", "text": "t", "html": null}}})),
            Permission::SettingsView,
        ),
        // Last, as it removes the account the routes above use.
        (
            Method::DELETE,
            &account_path,
            None,
            Permission::AccountsManage,
        ),
    ];

    let mut tokens = Vec::new();
    for role in [Role::Viewer, Role::Sender, Role::Admin] {
        tokens.push((role, app.token("default", role).await));
    }
    for (method, path, body, permission) in &routes {
        let r = app.call(method.clone(), path, None, body.as_ref()).await;
        assert_eq!(r.status(), 401, "{method} {path} without a token");
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        let r = app
            .call(
                method.clone(),
                path,
                Some("cartero_not-a-real-token"),
                body.as_ref(),
            )
            .await;
        assert_eq!(r.status(), 401, "{method} {path} with a bad token");

        for (role, token) in &tokens {
            let r = app
                .call(method.clone(), path, Some(token), body.as_ref())
                .await;
            let status = r.status().as_u16();
            if role.allows(*permission) {
                assert!(
                    status != 401 && status != 403,
                    "{role} on {method} {path}: {status}"
                );
            } else {
                assert_eq!(status, 403, "{role} on {method} {path}");
                let answer: serde_json::Value = r.json().await.unwrap();
                assert_eq!(answer["error"]["code"], "forbidden");
                assert!(
                    answer["error"]["message"]
                        .as_str()
                        .unwrap()
                        .contains(permission.as_str())
                );
            }
        }
        // The owner may do everything (a repeated POST may meet a name conflict, not a 403).
        let r = app
            .call(method.clone(), path, Some(&app.owner), body.as_ref())
            .await;
        let status = r.status().as_u16();
        assert!(
            status != 401 && status != 403,
            "owner on {method} {path}: {status}"
        );
    }
}

#[tokio::test]
async fn a_revoked_token_stops_working_at_once() {
    let app = spawn_app().await;
    let token = app.token("default", Role::Viewer).await;
    assert_eq!(
        app.call(Method::GET, "/v1/accounts", Some(&token), None)
            .await
            .status(),
        200
    );
    let list = app.store.list_tokens("default").await.unwrap();
    let record = list.iter().find(|t| t.role == Role::Viewer).unwrap();
    assert!(app.store.revoke_token("default", &record.id).await.unwrap());
    assert_eq!(
        app.call(Method::GET, "/v1/accounts", Some(&token), None)
            .await
            .status(),
        401
    );
}
