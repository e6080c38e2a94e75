//! The three-level partner → client → event story, end to end, as the
//! README tells it: purchase, allocations down the tree, guests' usage, the
//! partner's dashboard, reports and the CSV export — all matching the
//! ledger — and a browser token for the event.

mod common;

use std::collections::BTreeMap;

use common::{TestApp, code};
use rust_decimal::Decimal;
use serde_json::{Value, json};

/// The walk-through's variables as its README `date` line computes them,
/// from the test's clock: a year from today, and the last 30 days up to
/// the end of today (midnights UTC).
fn walk_through_variables(app: &TestApp) -> Value {
    use chrono::{Days, Months};
    use service::Clock;
    let today = app
        .clock
        .now()
        .date_naive()
        .and_time(chrono::NaiveTime::MIN)
        .and_utc();
    let at = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT00:00:00Z").to_string();
    json!({
        "expiresAt": at(today.checked_add_months(Months::new(12)).unwrap()),
        "from": at(today.checked_sub_days(Days::new(30)).unwrap()),
        "to": at(today.checked_add_days(Days::new(1)).unwrap()),
    })
}

/// The README's partner walk-through, block by block, as written, with
/// the variables its `date` line prints.
async fn run_walk_through(app: &TestApp) -> Vec<Value> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let section = readme
        .split("<!-- partner-walk-through:start -->")
        .nth(1)
        .and_then(|s| s.split("<!-- partner-walk-through:end -->").next())
        .expect("README has the partner walk-through");
    let blocks: Vec<&str> = section
        .split("```graphql")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .collect();
    assert_eq!(blocks.len(), 6);
    let variables = walk_through_variables(app);
    assert_eq!(
        variables,
        json!({"expiresAt": "2027-01-31T00:00:00Z", "from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00Z"}),
        "as the README says for the test's clock"
    );
    let mut answers = Vec::new();
    for block in blocks {
        answers.push(app.ok(&app.admin_key, block, variables.clone()).await);
    }
    answers
}

fn dec(v: &Value) -> Decimal {
    v.as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn partner_client_event_story_runs_end_to_end() {
    let app = TestApp::spawn().await;
    let a = run_walk_through(&app).await;

    // 2. Budgets keep the purchase's expiry.
    assert_eq!(
        a[1]["toEvent"],
        json!({"inEntry": {"amount": "150", "balanceAfter": "150"},
               "grants": [{"amount": "150", "expiresAt": "2027-01-31T00:00:00+00:00"}]})
    );
    // 3. Guests spent 4 + 2 + 6.
    assert_eq!(a[2]["c"]["entry"]["balanceAfter"], "138");

    // 4. The dashboard.
    let partner = &a[3]["customer"];
    assert_eq!(
        partner["balanceSummary"],
        json!({"totalPurchased": "1000", "totalAllocated": "400", "available": "600"})
    );
    let client = &partner["children"]["nodes"][0];
    assert_eq!(client["customer"]["externalId"], "grand-hotel");
    assert_eq!(
        (&client["allocated"], &client["remaining"]),
        (&json!("400"), &json!("250"))
    );
    assert_eq!(
        client["customer"]["children"]["nodes"],
        json!([{"customer": {"externalId": "wedding-0612"}, "allocated": "150", "used": "12",
                "remaining": "138", "usagePercent": "8", "status": "HEALTHY"}])
    );

    // 5. Reports add up to the ledger.
    let ledger = app
        .ok(
            &app.admin_key,
            r#"{ customer(externalId: "wedding-0612") { wallet(creditSystem: {key: "prints"}) {
                 entries(first: 50) { nodes { id type amount balanceAfter feature userRef } } } } }"#,
            json!({}),
        )
        .await;
    let entries = ledger["customer"]["wallet"]["entries"]["nodes"]
        .as_array()
        .unwrap()
        .clone();
    let used: Decimal = entries
        .iter()
        .filter(|e| e["type"] == "USAGE")
        .map(|e| -dec(&e["amount"]))
        .sum();
    assert_eq!(used, Decimal::from(12));
    let mut by_guest: BTreeMap<String, Decimal> = BTreeMap::new();
    for e in entries.iter().filter(|e| e["type"] == "USAGE") {
        *by_guest
            .entry(e["userRef"].as_str().unwrap().to_owned())
            .or_default() -= dec(&e["amount"]);
    }
    let reported: BTreeMap<String, Decimal> = a[4]["byGuest"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["key"].as_str().unwrap().to_owned(), dec(&r["credits"])))
        .collect();
    assert_eq!(reported, by_guest);
    assert_eq!(
        a[4]["byStyle"],
        json!([{"key": "vintage", "credits": "10", "count": 2, "averagePerUse": "5"},
               {"key": "color", "credits": "2", "count": 1, "averagePerUse": "2"}])
    );
    let months = a[4]["usageSummary"].as_array().unwrap();
    let january = months.iter().find(|m| m["month"] == "2026-01").unwrap();
    assert_eq!(
        (
            &january["credits"],
            &january["count"],
            &january["isCurrent"]
        ),
        (&json!("12"), &json!(3), &json!(true))
    );

    // The CSV export, read back, is the same ledger.
    let text = reqwest::Client::new()
        .get(app.url("/exports/entries.csv?customer=wedding-0612&creditSystem=prints"))
        .bearer_auth(&app.admin_key)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    // The export is oldest first, the GraphQL list newest first.
    let from_csv: Vec<(String, String, String)> = rows
        .iter()
        .rev()
        .map(|r| {
            (
                r[col("type")].to_owned(),
                r[col("amount")].to_owned(),
                r[col("balance_after")].to_owned(),
            )
        })
        .collect();
    let from_graphql: Vec<(String, String, String)> = entries
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_owned(),
                e["amount"].as_str().unwrap().to_owned(),
                e["balanceAfter"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(from_csv, from_graphql);
    assert!(
        rows.iter()
            .all(|r| &r[col("customer_external_id")] == "wedding-0612")
    );

    // 6. The event's browser token reads the event, not its client.
    let token = a[5]["createCustomerToken"]["token"].as_str().unwrap();
    let q = r#"query($c: String!) { customer(externalId: $c) { wallet(creditSystem: {key: "prints"}) { balance { available } } } }"#;
    let data = app.ok(token, q, json!({"c": "wedding-0612"})).await;
    assert_eq!(data["customer"]["wallet"]["balance"]["available"], "138");
    let (_, body) = app.gql(Some(token), q, json!({"c": "grand-hotel"})).await;
    assert_eq!(code(&body), "FORBIDDEN");

    app.verify_all().await;
}
