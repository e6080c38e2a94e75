//! Webhook endpoints, deliveries and emails over HTTP: ADMIN only, inputs
//! checked, tenants apart.

mod common;

use common::{TestApp, code, field};
use serde_json::json;
use service::api_keys::Role;

const CREATE: &str = r#"mutation($url: String!, $events: [String!]!) { createWebhookEndpoint(input: {url: $url, events: $events, description: "ops"}) { endpoint { id url events enabled } secret } }"#;

#[tokio::test]
async fn endpoints_are_managed_by_admins_with_checked_inputs() {
    let app = TestApp::spawn().await;
    let data = app
        .ok(&app.admin_key, CREATE, json!({"url": "https://hooks.example.com/credits", "events": ["credits.granted", "wallet.balance_low"]}))
        .await;
    let created = &data["createWebhookEndpoint"];
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    assert_eq!(
        created["endpoint"]["events"],
        json!(["credits.granted", "wallet.balance_low"])
    );
    let id = created["endpoint"]["id"].clone();

    for (vars, f) in [
        (
            json!({"url": "ftp://x", "events": ["credits.granted"]}),
            "url",
        ),
        (
            json!({"url": "https://x.test", "events": ["credits.nope"]}),
            "events",
        ),
        (json!({"url": "https://x.test", "events": []}), "events"),
    ] {
        let (_, body) = app.gql(Some(&app.admin_key), CREATE, vars).await;
        assert_eq!((code(&body), field(&body)), ("VALIDATION", f));
    }
    let write = app.key(Role::Write).await;
    let (_, body) = app
        .gql(
            Some(&write),
            CREATE,
            json!({"url": "https://x.test", "events": ["credits.granted"]}),
        )
        .await;
    assert_eq!(code(&body), "FORBIDDEN");
    let (_, body) = app
        .gql(
            Some(&write),
            "{ webhookEndpoints { edges { node { id } } } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&body), "FORBIDDEN");

    let rotate = r#"mutation($id: ID!) { rotateWebhookSecret(input: {endpoint: $id}) { secret } }"#;
    let rotated = app.ok(&app.admin_key, rotate, json!({"id": id})).await;
    assert_ne!(rotated["rotateWebhookSecret"]["secret"], secret.as_str());
    let update = r#"mutation($id: ID!) { updateWebhookEndpoint(input: {endpoint: $id, enabled: false, events: ["topup.paid"]}) { endpoint { enabled events } } }"#;
    let updated = app.ok(&app.admin_key, update, json!({"id": id})).await;
    assert_eq!(
        updated["updateWebhookEndpoint"]["endpoint"],
        json!({"enabled": false, "events": ["topup.paid"]})
    );

    // Another tenant can't touch it.
    let (_, other) = app.other_tenant("other").await;
    let (_, body) = app.gql(Some(&other), rotate, json!({"id": id})).await;
    assert_eq!(code(&body), "NOT_FOUND");
    let listed = app
        .ok(
            &other,
            "{ webhookEndpoints { edges { node { id } } } }",
            json!({}),
        )
        .await;
    assert_eq!(listed["webhookEndpoints"]["edges"], json!([]));

    let admin = r#"mutation($e: String) { setAdminEmail(input: {adminEmail: $e}) { adminEmail } }"#;
    let (_, body) = app
        .gql(Some(&app.admin_key), admin, json!({"e": "nope"}))
        .await;
    assert_eq!((code(&body), field(&body)), ("VALIDATION", "adminEmail"));
    app.ok(&app.admin_key, admin, json!({"e": "ops@acme.test"}))
        .await;
    let data = app.ok(&app.admin_key, "{ adminEmail }", json!({})).await;
    assert_eq!(data["adminEmail"], "ops@acme.test");

    let deliveries = app
        .ok(&app.admin_key, "{ webhookDeliveries(first: 10) { edges { node { id status attempts { number } } } } emailDeliveries { edges { node { id } } } }", json!({}))
        .await;
    assert_eq!(deliveries["webhookDeliveries"]["edges"], json!([]));
    let delete = r#"mutation($id: ID!) { deleteWebhookEndpoint(input: {endpoint: $id}) { endpoint { id } } }"#;
    app.ok(&app.admin_key, delete, json!({"id": id})).await;
    let (_, body) = app
        .gql(Some(&app.admin_key), delete, json!({"id": id}))
        .await;
    assert_eq!(code(&body), "NOT_FOUND");
}
