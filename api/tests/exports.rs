//! The CSV export, read back by a real CSV reader, equals the ledger the
//! GraphQL API shows.

mod common;

use common::TestApp;
use serde_json::{Value, json};
use service::{exports, reports::Scope};

async fn story(app: &TestApp) {
    let setup = r#"mutation {
      createCreditSystem(input: {key: "tokens", name: "Tokens", unitSingular: "token", unitPlural: "tokens", precision: 2}) { creditSystem { id } }
      createCustomer(input: {externalId: "acme, inc", name: "Acme"}) { customer { id } }
      grantCredits(input: {customer: {externalId: "acme, inc"}, creditSystem: {key: "tokens"}, amount: "100.5", category: PROMOTIONAL, reason: "hello", idempotencyKey: "g"}) { entry { id } }
      a: consumeCredits(input: {customer: {externalId: "acme, inc"}, creditSystem: {key: "tokens"}, amount: "0.25", idempotencyKey: "c1",
        feature: "chat", eventRef: "e1", userRef: "alice", description: "said \"hi\", then\nleft"}) { entry { id } }
      b: consumeCredits(input: {customer: {externalId: "acme, inc"}, creditSystem: {key: "tokens"}, amount: "10", idempotencyKey: "c2", feature: "image"}) { entry { id } }
    }"#;
    app.ok(&app.admin_key, setup, json!({})).await;
}

async fn csv(app: &TestApp, query: &str, key: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(app.url(&format!("/exports/entries.csv{query}")));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn the_csv_equals_the_ledger() {
    let app = TestApp::spawn().await;
    story(&app).await;
    let resp = csv(
        &app,
        "?customer=acme,%20inc&creditSystem=tokens",
        Some(&app.admin_key),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let text = resp.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        exports::HEADER.to_vec()
    );
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();

    let q = r#"{ customer(externalId: "acme, inc") { id wallets { id creditSystem { id } entries(first: 50) { edges { node { id type amount balanceAfter feature eventRef userRef description createdAt grant { id } } } } } } }"#;
    let data = app.ok(&app.admin_key, q, json!({})).await;
    let wallet = &data["customer"]["wallets"][0];
    let mut entries: Vec<Value> = wallet["entries"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"].clone())
        .collect();
    entries.reverse(); // the API lists newest first; the export oldest first
    assert_eq!(rows.len(), entries.len());
    let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    for (row, e) in rows.iter().zip(&entries) {
        // Every id is the API's, as the GraphQL API shows it.
        assert_eq!(row[col("entry_id")], s(&e["id"]));
        assert!(row[col("entry_id")].starts_with("ent_"), "{row:?}");
        assert_eq!(row[col("customer_id")], s(&data["customer"]["id"]));
        assert_eq!(row[col("wallet_id")], s(&wallet["id"]));
        assert_eq!(
            row[col("credit_system_id")],
            s(&wallet["creditSystem"]["id"])
        );
        assert_eq!(row[col("grant_id")], s(&e["grant"]["id"]));
        assert_eq!(&row[col("customer_external_id")], "acme, inc");
        assert_eq!(&row[col("credit_system_key")], "tokens");
        assert_eq!(row[col("type")], s(&e["type"]));
        assert_eq!(row[col("amount")], s(&e["amount"]));
        assert_eq!(row[col("balance_after")], s(&e["balanceAfter"]));
        assert_eq!(row[col("feature")], s(&e["feature"]));
        assert_eq!(row[col("event_ref")], s(&e["eventRef"]));
        assert_eq!(row[col("user_ref")], s(&e["userRef"]));
        assert_eq!(row[col("description")], s(&e["description"]));
        let api_time =
            chrono::DateTime::parse_from_rfc3339(e["createdAt"].as_str().unwrap()).unwrap();
        let csv_time = chrono::DateTime::parse_from_rfc3339(&row[col("created_at")]).unwrap();
        assert_eq!(api_time, csv_time);
    }
    assert_eq!(&rows[1][col("description")], "said \"hi\", then\nleft");
    assert_eq!(&rows[0][col("grant_category")], "PROMOTIONAL");
    assert!(rows[0][col("grant_id")].starts_with("grt_"));

    // Filters: only USAGE; nothing before a time in the future.
    let usage = csv(&app, "?types=USAGE", Some(&app.admin_key))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(
        csv::Reader::from_reader(usage.as_bytes()).records().count(),
        2
    );
    let none = csv(&app, "?from=2099-01-01T00:00:00Z", Some(&app.admin_key))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(
        csv::Reader::from_reader(none.as_bytes()).records().count(),
        0
    );
}

#[tokio::test]
async fn pages_follow_each_other_without_gaps() {
    let app = TestApp::spawn().await;
    story(&app).await;
    let filter = exports::ExportFilter {
        scope: Scope::default(),
        ..Default::default()
    };
    let all = exports::page(&app.t.db, app.tenant_id, &filter, None, 100)
        .await
        .unwrap();
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = exports::page(&app.t.db, app.tenant_id, &filter, after, 2)
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().map(|r| r.entry_id);
        paged.extend(page);
    }
    assert_eq!(paged, all);
    assert_eq!(all.len(), 3);
}

#[tokio::test]
async fn the_export_is_authenticated_scoped_and_checked() {
    let app = TestApp::spawn().await;
    story(&app).await;
    assert_eq!(csv(&app, "", None).await.status(), 401);
    let (_, other) = app.other_tenant("other").await;
    let theirs = csv(&app, "", Some(&other)).await.text().await.unwrap();
    assert_eq!(
        csv::Reader::from_reader(theirs.as_bytes())
            .records()
            .count(),
        0,
        "another tenant sees nothing"
    );
    let resp = csv(&app, "?customer=acme,%20inc", Some(&other)).await;
    assert_eq!(resp.status(), 404);
    let resp = csv(&app, "?types=NOPE", Some(&app.admin_key)).await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["errors"][0]["extensions"]["code"], "VALIDATION");
    assert_eq!(body["errors"][0]["extensions"]["field"], "types");
    let resp = csv(&app, "?from=yesterday", Some(&app.admin_key)).await;
    assert_eq!(resp.status(), 400);
}
