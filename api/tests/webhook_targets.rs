//! SSRF at registration (issue 15, item 2): webhook endpoints must name
//! public hosts over HTTPS; each refused URL is a `VALIDATION` error on
//! `url` that echoes no address, and nothing is written. A name that does
//! not resolve here (no network) is accepted: delivery checks it again.

mod common;

use common::{TestApp, code, field};
use serde_json::json;

const CREATE: &str = r#"mutation($url: String!) { createWebhookEndpoint(input: {url: $url, events: ["credits.granted"]}) { endpoint { id url } } }"#;
const UPDATE: &str = r#"mutation($id: ID!, $url: String!) { updateWebhookEndpoint(input: {endpoint: $id, url: $url}) { endpoint { url } } }"#;
const LIST: &str = r#"{ webhookEndpoints(first: 10) { nodes { url } } }"#;

/// The URLs of the finding, over https:// and http://.
const REFUSED: [&str; 12] = [
    "https://127.0.0.1/hook",
    "https://localhost/hook",
    "https://0.0.0.0/hook",
    "https://2130706433/hook",
    "https://127.1/hook",
    "https://[::1]/hook",
    "https://[::ffff:127.0.0.1]/hook",
    "https://10.0.0.1:6379/",
    "https://192.168.1.1/hook",
    "https://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "https://metadata.google.internal/computeMetadata/v1/",
    "https://100.64.0.1/hook",
];

#[tokio::test]
async fn private_targets_are_refused_at_registration() {
    let app = TestApp::spawn().await;
    let ok = app
        .ok(
            &app.admin_key,
            CREATE,
            json!({"url": "https://hooks.example.com/credits"}),
        )
        .await;
    let id = ok["createWebhookEndpoint"]["endpoint"]["id"].clone();
    for https in REFUSED {
        let http = https.replacen("https://", "http://", 1);
        for url in [https.to_owned(), http] {
            for (query, vars) in [
                (CREATE, json!({"url": url})),
                (UPDATE, json!({"id": id, "url": url})),
            ] {
                let (_, body) = app.gql(Some(&app.admin_key), query, vars).await;
                assert_eq!(
                    (code(&body), field(&body)),
                    ("VALIDATION", "url"),
                    "{url}: {body}"
                );
                let message = body["errors"][0]["message"].as_str().unwrap();
                assert!(
                    !message.contains("127.")
                        && !message.contains("169.254")
                        && !message.contains("10.0"),
                    "{message}"
                );
            }
        }
    }
    // Nothing written: the one public endpoint, unchanged.
    let list = app.ok(&app.admin_key, LIST, json!({})).await;
    assert_eq!(
        list["webhookEndpoints"]["nodes"],
        json!([{"url": "https://hooks.example.com/credits"}])
    );
}

#[tokio::test]
async fn the_development_setting_allows_private_targets() {
    let mut app = TestApp::spawn().await;
    app.restart_allowing_private_webhooks().await;
    let mut id = None;
    for https in REFUSED {
        let http = https.replacen("https://", "http://", 1);
        for url in [https.to_owned(), http] {
            let data = app.ok(&app.admin_key, CREATE, json!({"url": url})).await;
            assert_eq!(data["createWebhookEndpoint"]["endpoint"]["url"], json!(url));
            id = Some(data["createWebhookEndpoint"]["endpoint"]["id"].clone());
        }
    }
    let data = app
        .ok(
            &app.admin_key,
            UPDATE,
            json!({"id": id.unwrap(), "url": "http://localhost:8080/hook"}),
        )
        .await;
    assert_eq!(
        data["updateWebhookEndpoint"]["endpoint"]["url"],
        "http://localhost:8080/hook"
    );
    // Still an http(s) URL with a host.
    let (_, body) = app
        .gql(
            Some(&app.admin_key),
            CREATE,
            json!({"url": "ftp://127.0.0.1/"}),
        )
        .await;
    assert_eq!((code(&body), field(&body)), ("VALIDATION", "url"));
}
