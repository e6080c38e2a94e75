//! Roll-ups down the customer tree, over HTTP on a real server: a partner
//! → 2 clients → events → sub-events (4 levels) with usage at the leaves.
//! Partner- and client-scoped reports (`usageSummary`, `usageBreakdown`,
//! the CSV export) with `includeDescendants` count everything below, and
//! without it only the customer's own; a client's `children` row counts
//! its events; transfer entries name the other side; HOUR and
//! HOUR_OF_DAY buckets in non-UTC zones (Buenos Aires, Kolkata's half
//! hours, Budapest's DST change); customer tokens stay in their scope; and
//! a breakdown costs the same statements whatever the tree's depth.

mod common;

use std::{collections::BTreeMap, sync::atomic::Ordering};

use chrono::{DateTime, Utc};
use common::{TestApp, code, field};
use serde_json::{Value, json};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().into()
}

/// `externalId` → the API's customer id, for every customer of the tree.
type Ids = BTreeMap<String, String>;

/// The tree, its budgets and the usage at its leaves:
///
/// ```text
/// booths-inc (bought 10,000)
/// ├── grand-hotel (1,000)
/// │   ├── wedding (500) ── ceremony (200): used 150
/// │   │                 └─ dinner (300):   used 250   → wedding 400 = 80 %
/// │   └── gala (500): used 475                        → 95 %
/// └── sea-view (1,000)
///     └── party (100): used 10
/// ```
///
/// The tenant counts in Buenos Aires time (UTC−3).
async fn story(app: &TestApp) -> Ids {
    app.clock.set(at("2026-01-05T12:00:00Z"));
    let setup = r#"mutation {
      setTimeZone(timeZone: "America/Argentina/Buenos_Aires")
      createCreditSystem(input: {key: "prints", name: "Prints", unitSingular: "print", unitPlural: "prints", precision: 0}) { creditSystem { id } }
      createCustomer(input: {externalId: "booths-inc", name: "Booths Inc"}) { customer { id } }
    }"#;
    app.ok(&app.admin_key, setup, json!({})).await;
    let mut ids = Ids::new();
    ids.insert("booths-inc".into(), customer_id(app, "booths-inc").await);
    for (child, parent) in [
        ("grand-hotel", "booths-inc"),
        ("sea-view", "booths-inc"),
        ("wedding", "grand-hotel"),
        ("gala", "grand-hotel"),
        ("party", "sea-view"),
        ("ceremony", "wedding"),
        ("dinner", "wedding"),
    ] {
        let data = app
            .ok(
                &app.admin_key,
                r#"mutation($e: String!, $p: String!) { createCustomer(input: {externalId: $e, name: $e, parent: {externalId: $p}}) { customer { id } } }"#,
                json!({"e": child, "p": parent}),
            )
            .await;
        ids.insert(
            child.into(),
            data["createCustomer"]["customer"]["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    app.ok(
        &app.admin_key,
        r#"mutation { grantCredits(input: {customer: {externalId: "booths-inc"}, creditSystem: {key: "prints"}, amount: "10000",
             category: PURCHASED, reason: "Bulk order", idempotencyKey: "bulk"}) { entry { id } } }"#,
        json!({}),
    )
    .await;
    app.clock.set(at("2026-01-10T12:00:00Z"));
    let allocate = r#"mutation($f: String!, $t: String!, $a: Credits!, $n: String!) {
      allocateCredits(input: {from: {externalId: $f}, to: {externalId: $t}, creditSystem: {key: "prints"}, amount: $a, note: $n, idempotencyKey: $t}) { inEntry { id } } }"#;
    for (from, to, amount, note) in [
        ("booths-inc", "grand-hotel", "1000", "Q1 budget"),
        ("booths-inc", "sea-view", "1000", "Q1 budget"),
        ("grand-hotel", "wedding", "500", "Wedding"),
        ("grand-hotel", "gala", "500", "Gala"),
        ("sea-view", "party", "100", "Party"),
        ("wedding", "ceremony", "200", "Ceremony"),
        ("wedding", "dinner", "300", "Dinner"),
    ] {
        app.ok(
            &app.admin_key,
            allocate,
            json!({"f": from, "t": to, "a": amount, "n": note}),
        )
        .await;
    }
    // Times in UTC; Buenos Aires is 3 hours behind.
    for (when, customer, amount, feature) in [
        ("2026-01-20T13:10:00Z", "ceremony", "100", "print.4x6"), // 10:10 on the 20th
        ("2026-01-20T13:50:00Z", "ceremony", "50", "print.strip"), // 10:50
        ("2026-01-20T23:30:00Z", "dinner", "250", "print.4x6"),   // 20:30
        ("2026-01-21T02:15:00Z", "gala", "475", "print.4x6"),     // 23:15 on the 20th
        ("2026-01-21T03:05:00Z", "party", "10", "print.strip"),   // 00:05 on the 21st
    ] {
        app.clock.set(at(when));
        consume(app, customer, amount, feature, when).await;
    }
    app.clock.set(at("2026-01-31T12:00:00Z"));
    ids
}

async fn consume(app: &TestApp, customer: &str, amount: &str, feature: &str, key: &str) {
    app.ok(
        &app.admin_key,
        r#"mutation($c: String!, $a: Credits!, $f: String!, $k: String!) {
          consumeCredits(input: {customer: {externalId: $c}, creditSystem: {key: "prints"}, amount: $a, feature: $f, idempotencyKey: $k}) { entry { id } } }"#,
        json!({"c": customer, "a": amount, "f": feature, "k": key}),
    )
    .await;
}

async fn customer_id(app: &TestApp, external_id: &str) -> String {
    let data = app
        .ok(
            &app.admin_key,
            "query($e: String!) { customer(externalId: $e) { id } }",
            json!({"e": external_id}),
        )
        .await;
    data["customer"]["id"].as_str().unwrap().to_owned()
}

const SUMMARY: &str = r#"query($c: String!, $d: Boolean!) {
  usageSummary(customer: {externalId: $c}, includeDescendants: $d, creditSystem: {key: "prints"}, months: 2) { month credits count isCurrent } }"#;

const BREAKDOWN: &str = r#"query($c: String!, $d: Boolean!, $g: UsageGroupBy!, $from: DateTime!, $to: DateTime!) {
  usageBreakdown(customer: {externalId: $c}, includeDescendants: $d, creditSystem: {key: "prints"},
    from: $from, to: $to, groupBy: $g, first: 50) { key credits count } }"#;

/// `[(key, credits, count)]` of a breakdown.
async fn breakdown(
    app: &TestApp,
    key: &str,
    customer: &str,
    descendants: bool,
    group_by: &str,
) -> Vec<(Value, String, i64)> {
    let data = app
        .ok(
            key,
            BREAKDOWN,
            json!({"c": customer, "d": descendants, "g": group_by,
                   "from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00Z"}),
        )
        .await;
    rows(&data["usageBreakdown"])
}

fn rows(v: &Value) -> Vec<(Value, String, i64)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["key"].clone(),
                r["credits"].as_str().unwrap().to_owned(),
                r["count"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn row(key: &str, credits: &str, count: i64) -> (Value, String, i64) {
    (json!(key), credits.to_owned(), count)
}

/// January's `(credits, count)` in a usage summary.
async fn january(app: &TestApp, key: &str, customer: &str, descendants: bool) -> (String, i64) {
    let data = app
        .ok(key, SUMMARY, json!({"c": customer, "d": descendants}))
        .await;
    let months = data["usageSummary"].as_array().unwrap();
    assert_eq!(months.len(), 2);
    let jan = months.iter().find(|m| m["month"] == "2026-01").unwrap();
    assert_eq!(jan["isCurrent"], true);
    (
        jan["credits"].as_str().unwrap().to_owned(),
        jan["count"].as_i64().unwrap(),
    )
}

#[tokio::test]
async fn partner_reports_count_the_whole_tree_only_when_asked() {
    let app = TestApp::spawn().await;
    story(&app).await;
    let admin = &app.admin_key;

    // Summaries: each customer's subtree, or its own usage alone.
    for (customer, subtree, own) in [
        ("booths-inc", ("885", 5), ("0", 0)),
        ("grand-hotel", ("875", 4), ("0", 0)),
        ("wedding", ("400", 3), ("0", 0)),
        ("sea-view", ("10", 1), ("0", 0)),
        ("ceremony", ("150", 2), ("150", 2)),
    ] {
        let subtree = (subtree.0.to_owned(), subtree.1);
        let own = (own.0.to_owned(), own.1);
        assert_eq!(
            january(&app, admin, customer, true).await,
            subtree,
            "{customer}"
        );
        assert_eq!(
            january(&app, admin, customer, false).await,
            own,
            "{customer}"
        );
    }

    // Breakdowns: the partner's most active customers, features, days.
    assert_eq!(
        breakdown(&app, admin, "booths-inc", true, "CUSTOMER").await,
        vec![
            row("gala", "475", 1),
            row("dinner", "250", 1),
            row("ceremony", "150", 2),
            row("party", "10", 1),
        ]
    );
    assert_eq!(
        breakdown(&app, admin, "booths-inc", false, "CUSTOMER").await,
        vec![]
    );
    assert_eq!(
        breakdown(&app, admin, "grand-hotel", true, "FEATURE").await,
        vec![row("print.4x6", "825", 3), row("print.strip", "50", 1)]
    );
    // Local days: gala's 02:15Z on the 21st is 23:15 on the 20th.
    assert_eq!(
        breakdown(&app, admin, "booths-inc", true, "DAY").await,
        vec![row("2026-01-20", "875", 4), row("2026-01-21", "10", 1)]
    );

    // Other entry types over a subtree: the transfers inside it.
    let data = app
        .ok(
            admin,
            r#"{ usageBreakdown(customer: {externalId: "grand-hotel"}, includeDescendants: true, from: "2026-01-01T00:00:00Z",
                 to: "2026-02-01T00:00:00Z", groupBy: CUSTOMER, types: [TRANSFER_IN]) { key credits count } }"#,
            json!({}),
        )
        .await;
    // TRANSFER_IN amounts are positive: "credits used" is their negation.
    assert_eq!(
        rows(&data["usageBreakdown"]),
        vec![
            row("ceremony", "-200", 1),
            row("dinner", "-300", 1),
            row("gala", "-500", 1),
            row("wedding", "-500", 1), // ties by key
            row("grand-hotel", "-1000", 1),
        ]
    );

    // includeDescendants needs a customer.
    let (_, body) = app
        .gql(
            Some(admin),
            "{ usageSummary(includeDescendants: true) { month } }",
            json!({}),
        )
        .await;
    assert_eq!(
        (code(&body), field(&body)),
        ("VALIDATION", "includeDescendants")
    );
    app.verify_all().await;
}

#[tokio::test]
async fn a_clients_children_row_counts_its_events() {
    let app = TestApp::spawn().await;
    story(&app).await;
    let q = r#"query($c: String!) { customer(externalId: $c) {
        balanceSummary(creditSystem: {key: "prints"}) { used ownUsed usagePercent status }
        tree: balanceSummary(creditSystem: {key: "prints"}, includeDescendants: true) { used ownUsed }
        children(creditSystem: {key: "prints"}, first: 10) { nodes {
          customer { externalId } allocated used ownUsed remaining usagePercent status } } } }"#;
    let children = |data: &Value| -> BTreeMap<String, Value> {
        data["customer"]["children"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                let mut n = n.clone();
                let key = n["customer"]["externalId"].as_str().unwrap().to_owned();
                n.as_object_mut().unwrap().remove("customer");
                (key, n)
            })
            .collect()
    };

    // Default thresholds: WATCH from 75 %, CRITICAL from 90 %.
    let partner = app.ok(&app.admin_key, q, json!({"c": "booths-inc"})).await;
    assert_eq!(
        partner["customer"]["balanceSummary"],
        json!({"used": "0", "ownUsed": "0", "usagePercent": "0", "status": "HEALTHY"})
    );
    assert_eq!(
        partner["customer"]["tree"],
        json!({"used": "885", "ownUsed": "0"})
    );
    let rows = children(&partner);
    assert_eq!(
        rows["grand-hotel"],
        json!({"allocated": "1000", "used": "875", "ownUsed": "0", "remaining": "0",
               "usagePercent": "87.50", "status": "WATCH"})
    );
    assert_eq!(
        rows["sea-view"],
        json!({"allocated": "1000", "used": "10", "ownUsed": "0", "remaining": "900",
               "usagePercent": "1", "status": "HEALTHY"})
    );
    let client = app.ok(&app.admin_key, q, json!({"c": "grand-hotel"})).await;
    let rows = children(&client);
    assert_eq!(
        rows["wedding"],
        json!({"allocated": "500", "used": "400", "ownUsed": "0", "remaining": "0",
               "usagePercent": "80", "status": "WATCH"})
    );
    assert_eq!(
        rows["gala"],
        json!({"allocated": "500", "used": "475", "ownUsed": "475", "remaining": "25",
               "usagePercent": "95", "status": "CRITICAL"})
    );
    let event = app.ok(&app.admin_key, q, json!({"c": "wedding"})).await;
    let rows = children(&event);
    assert_eq!(rows["ceremony"]["usagePercent"], "75");
    assert_eq!(rows["ceremony"]["status"], "WATCH");
    assert_eq!(rows["dinner"]["usagePercent"], "83.33");

    // The tenant's own thresholds colour the same rows.
    app.ok(
        &app.admin_key,
        r#"mutation { setUsageThresholds(input: {watchPercent: "50", criticalPercent: "85"}) { watchPercent criticalPercent } }"#,
        json!({}),
    )
    .await;
    let partner = app.ok(&app.admin_key, q, json!({"c": "booths-inc"})).await;
    assert_eq!(children(&partner)["grand-hotel"]["status"], "CRITICAL");
    let client = app.ok(&app.admin_key, q, json!({"c": "grand-hotel"})).await;
    let rows = children(&client);
    assert_eq!(
        (&rows["wedding"]["status"], &rows["gala"]["status"]),
        (&json!("WATCH"), &json!("CRITICAL"))
    );
    app.verify_all().await;
}

#[tokio::test]
async fn transfer_entries_name_the_other_side() {
    let app = TestApp::spawn().await;
    let ids = story(&app).await;
    let q = r#"query($c: String!) { customer(externalId: $c) { wallet(creditSystem: {key: "prints"}) {
        entries(first: 20) { nodes { type amount description counterparty { id externalId } } } } } }"#;
    let entries = |data: &Value| data["customer"]["wallet"]["entries"]["nodes"].clone();
    let client = app.ok(&app.admin_key, q, json!({"c": "grand-hotel"})).await;
    let party = |external: &str| json!({"id": ids[external], "externalId": external});
    // Newest first: the two budgets passed down, then the one received.
    assert_eq!(
        entries(&client),
        json!([
            {"type": "TRANSFER_OUT", "amount": "-500", "description": "Gala", "counterparty": party("gala")},
            {"type": "TRANSFER_OUT", "amount": "-500", "description": "Wedding", "counterparty": party("wedding")},
            {"type": "TRANSFER_IN", "amount": "1000", "description": "Q1 budget", "counterparty": party("booths-inc")},
        ])
    );
    let gala = app.ok(&app.admin_key, q, json!({"c": "gala"})).await;
    assert_eq!(
        entries(&gala),
        json!([
            {"type": "USAGE", "amount": "-475", "description": null, "counterparty": null},
            {"type": "TRANSFER_IN", "amount": "500", "description": "Gala", "counterparty": party("grand-hotel")},
        ])
    );

    // The CSV names the other side by external id.
    let rows = csv_rows(&app, "?customer=booths-inc&creditSystem=prints").await;
    let sides: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["type"].as_str(),
                r["description"].as_str(),
                r["counterparty_external_id"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        sides,
        vec![
            ("GRANT", "Bulk order", ""),
            ("TRANSFER_OUT", "Q1 budget", "grand-hotel"),
            ("TRANSFER_OUT", "Q1 budget", "sea-view"),
        ]
    );
    app.verify_all().await;
}

/// The export's rows as maps of column → value.
async fn csv_rows(app: &TestApp, query: &str) -> Vec<BTreeMap<String, String>> {
    let resp = reqwest::Client::new()
        .get(app.url(&format!("/exports/entries.csv{query}")))
        .bearer_auth(&app.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    reader
        .records()
        .map(|r| {
            header
                .iter()
                .cloned()
                .zip(r.unwrap().iter().map(str::to_owned))
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn the_export_takes_a_subtree() {
    let app = TestApp::spawn().await;
    story(&app).await;
    let used = |rows: &[BTreeMap<String, String>]| -> i64 {
        rows.iter()
            .filter(|r| r["type"] == "USAGE")
            .map(|r| -r["amount"].parse::<i64>().unwrap())
            .sum()
    };
    let customers = |rows: &[BTreeMap<String, String>]| -> Vec<String> {
        let mut c: Vec<String> = rows
            .iter()
            .map(|r| r["customer_external_id"].clone())
            .collect();
        c.sort();
        c.dedup();
        c
    };
    let own = csv_rows(&app, "?customer=booths-inc").await;
    assert_eq!((own.len(), used(&own)), (3, 0));
    let tree = csv_rows(&app, "?customer=booths-inc&includeDescendants=true").await;
    // 1 grant, 7 allocations (an OUT and an IN each), 5 uses.
    assert_eq!((tree.len(), used(&tree)), (1 + 14 + 5, 885));
    assert_eq!(
        tree,
        csv_rows(&app, "").await,
        "the partner's tree is the whole tenant"
    );
    let client = csv_rows(
        &app,
        "?customer=grand-hotel&includeDescendants=true&types=USAGE,TRANSFER_OUT",
    )
    .await;
    assert_eq!(used(&client), 875);
    assert_eq!(
        customers(&client),
        ["ceremony", "dinner", "gala", "grand-hotel", "wedding"]
    );
    assert_eq!(
        csv_rows(&app, "?customer=grand-hotel&includeDescendants=false")
            .await
            .len(),
        3
    );
    for (query, status) in [
        ("?customer=grand-hotel&includeDescendants=yes", 400),
        ("?includeDescendants=true", 400),
    ] {
        let resp = reqwest::Client::new()
            .get(app.url(&format!("/exports/entries.csv{query}")))
            .bearer_auth(&app.admin_key)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status, "{query}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["errors"][0]["extensions"]["code"], "VALIDATION");
        assert_eq!(
            body["errors"][0]["extensions"]["field"],
            "includeDescendants"
        );
    }
}

#[tokio::test]
async fn hours_are_the_tenants_hours() {
    let app = TestApp::spawn().await;
    story(&app).await;
    let admin = &app.admin_key;
    // Buenos Aires (UTC−3).
    assert_eq!(
        breakdown(&app, admin, "booths-inc", true, "HOUR").await,
        vec![
            row("2026-01-20T23:00-03:00", "475", 1),
            row("2026-01-20T20:00-03:00", "250", 1),
            row("2026-01-20T10:00-03:00", "150", 2),
            row("2026-01-21T00:00-03:00", "10", 1),
        ]
    );
    assert_eq!(
        breakdown(&app, admin, "booths-inc", true, "HOUR_OF_DAY").await,
        vec![
            row("23", "475", 1),
            row("20", "250", 1),
            row("10", "150", 2),
            row("00", "10", 1),
        ]
    );
    assert_eq!(
        breakdown(&app, admin, "sea-view", false, "HOUR").await,
        vec![]
    );
    // Kolkata (UTC+5:30): 13:10Z and 13:50Z share a UTC hour but fall in
    // two local hours (18:40 and 19:20).
    app.ok(
        admin,
        r#"mutation { setTimeZone(timeZone: "Asia/Kolkata") }"#,
        json!({}),
    )
    .await;
    assert_eq!(
        breakdown(&app, admin, "booths-inc", true, "HOUR").await,
        vec![
            row("2026-01-21T07:00+05:30", "475", 1),
            row("2026-01-21T05:00+05:30", "250", 1),
            row("2026-01-20T18:00+05:30", "100", 1),
            row("2026-01-20T19:00+05:30", "50", 1),
            row("2026-01-21T08:00+05:30", "10", 1),
        ]
    );
    assert_eq!(
        breakdown(&app, admin, "booths-inc", true, "DAY").await,
        vec![row("2026-01-21", "735", 3), row("2026-01-20", "150", 2)]
    );

    // Bounded: 31 days of hours, 366 of hours of the day.
    for (group_by, from, to) in [
        ("HOUR", "2026-01-01T00:00:00Z", "2026-02-01T00:00:01Z"),
        (
            "HOUR_OF_DAY",
            "2025-01-01T00:00:00Z",
            "2026-01-02T00:00:01Z",
        ),
    ] {
        let (_, body) = app
            .gql(
                Some(admin),
                BREAKDOWN,
                json!({"c": "booths-inc", "d": true, "g": group_by, "from": from, "to": to}),
            )
            .await;
        assert_eq!(
            (code(&body), field(&body)),
            ("VALIDATION", "to"),
            "{group_by}"
        );
    }
    let (_, body) = app
        .gql(
            Some(admin),
            BREAKDOWN,
            json!({"c": "booths-inc", "d": true, "g": "HOUR",
                   "from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00Z"}),
        )
        .await;
    assert!(body.get("errors").is_none(), "31 days of hours: {body}");
}

#[tokio::test]
async fn an_hour_repeated_by_dst_shows_twice() {
    let app = TestApp::spawn().await;
    app.clock.set(at("2026-10-01T00:00:00Z"));
    app.ok(
        &app.admin_key,
        r#"mutation {
          setTimeZone(timeZone: "Europe/Budapest")
          createCreditSystem(input: {key: "prints", name: "Prints", unitSingular: "print", unitPlural: "prints", precision: 0}) { creditSystem { id } }
          createCustomer(input: {externalId: "party", name: "Party"}) { customer { id } }
          grantCredits(input: {customer: {externalId: "party"}, creditSystem: {key: "prints"}, amount: "100", category: PURCHASED, reason: "x", idempotencyKey: "g"}) { entry { id } }
        }"#,
        json!({}),
    )
    .await;
    // 2026-10-25: at 01:00Z (03:00 CEST) clocks go back to 02:00 CET.
    for (when, amount) in [
        ("2026-10-25T00:30:00Z", "1"), // 02:30 CEST
        ("2026-10-25T01:30:00Z", "2"), // 02:30 CET
        ("2026-10-25T02:30:00Z", "4"), // 03:30 CET
    ] {
        app.clock.set(at(when));
        consume(&app, "party", amount, "print.4x6", when).await;
    }
    let q = |g: &str| {
        json!({"c": "party", "d": false, "g": g,
               "from": "2026-10-24T00:00:00Z", "to": "2026-10-26T00:00:00Z"})
    };
    let data = app.ok(&app.admin_key, BREAKDOWN, q("HOUR")).await;
    assert_eq!(
        rows(&data["usageBreakdown"]),
        vec![
            row("2026-10-25T03:00+01:00", "4", 1),
            row("2026-10-25T02:00+01:00", "2", 1),
            row("2026-10-25T02:00+02:00", "1", 1),
        ]
    );
    let data = app.ok(&app.admin_key, BREAKDOWN, q("HOUR_OF_DAY")).await;
    assert_eq!(
        rows(&data["usageBreakdown"]),
        vec![row("03", "4", 1), row("02", "3", 2)]
    );
}

#[tokio::test]
async fn customer_tokens_stay_in_their_subtree() {
    let app = TestApp::spawn().await;
    story(&app).await;
    let token = |include: bool| {
        let app = &app;
        async move {
            let data = app
                .ok(
                    &app.admin_key,
                    r#"mutation($d: Boolean!) { createCustomerToken(customer: {externalId: "grand-hotel"}, ttlSeconds: 3600, includeDescendants: $d) { token } }"#,
                    json!({"d": include}),
                )
                .await;
            data["createCustomerToken"]["token"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let narrow = token(false).await;
    let wide = token(true).await;
    let forbidden = |body: &Value| code(body) == "FORBIDDEN";

    // Its own customer: yes, with or without its descendants as the token allows.
    assert_eq!(
        january(&app, &narrow, "grand-hotel", false).await,
        ("0".into(), 0)
    );
    assert_eq!(
        january(&app, &wide, "grand-hotel", true).await,
        ("875".into(), 4)
    );
    assert_eq!(
        breakdown(&app, &wide, "wedding", true, "CUSTOMER").await,
        vec![row("dinner", "250", 1), row("ceremony", "150", 2)]
    );

    // A narrow token can't widen itself with includeDescendants: refused,
    // not answered for less.
    let (_, body) = app
        .gql(
            Some(&narrow),
            SUMMARY,
            json!({"c": "grand-hotel", "d": true}),
        )
        .await;
    assert!(forbidden(&body), "{body}");
    assert!(body["data"].is_null() || body["data"]["usageSummary"].is_null());
    let window = json!({"from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00Z"});
    let vars = |c: &str, d: bool| {
        let mut v = window.clone();
        v["c"] = json!(c);
        v["d"] = json!(d);
        v["g"] = json!("HOUR");
        v
    };
    for (key, customer, descendants) in [
        (&narrow, "grand-hotel", true),
        (&narrow, "wedding", false),
        (&wide, "booths-inc", false), // its parent
        (&wide, "sea-view", true),    // its parent's other client
        (&wide, "party", false),
    ] {
        let (_, body) = app
            .gql(Some(key), BREAKDOWN, vars(customer, descendants))
            .await;
        assert!(forbidden(&body), "{customer} {descendants}: {body}");
    }
    // The tenant-wide view is for API keys.
    for key in [&narrow, &wide] {
        let (_, body) = app
            .gql(Some(key), "{ usageSummary { month credits } }", json!({}))
            .await;
        assert!(forbidden(&body), "{body}");
    }
    // balanceSummary of the subtree, and children rows, need descendants.
    let q = r#"{ customer(externalId: "grand-hotel") { balanceSummary(creditSystem: {key: "prints"}, includeDescendants: true) { used } } }"#;
    let (_, body) = app.gql(Some(&narrow), q, json!({})).await;
    assert!(forbidden(&body), "{body}");
    assert_eq!(
        app.ok(&wide, q, json!({})).await["customer"]["balanceSummary"]["used"],
        "875"
    );
    // Counterparties: a descendant is readable with descendants, the
    // parent never.
    let q = r#"query($t: [EntryType!]) { customer(externalId: "grand-hotel") { wallet(creditSystem: {key: "prints"}) {
        entries(first: 5, filter: {types: $t}) { nodes { counterparty { externalId } } } } } }"#;
    let outs = app.ok(&wide, q, json!({"t": ["TRANSFER_OUT"]})).await;
    assert_eq!(
        outs["customer"]["wallet"]["entries"]["nodes"],
        json!([{"counterparty": {"externalId": "gala"}}, {"counterparty": {"externalId": "wedding"}}])
    );
    for (key, types) in [(&narrow, "TRANSFER_OUT"), (&wide, "TRANSFER_IN")] {
        let (_, body) = app.gql(Some(key), q, json!({"t": [types]})).await;
        assert!(forbidden(&body), "{types}: {body}");
    }
    // The CSV export stays an API key's.
    let resp = reqwest::Client::new()
        .get(app.url("/exports/entries.csv?customer=grand-hotel&includeDescendants=true"))
        .bearer_auth(&wide)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
}

#[tokio::test]
async fn a_breakdown_costs_the_same_statements_at_any_depth() {
    let mut app = TestApp::spawn().await;
    story(&app).await;
    // A customer with no tree at all, using credits on its own.
    app.ok(
        &app.admin_key,
        r#"mutation {
          createCustomer(input: {externalId: "solo", name: "Solo"}) { customer { id } }
          grantCredits(input: {customer: {externalId: "solo"}, creditSystem: {key: "prints"}, amount: "50", category: PURCHASED, reason: "x", idempotencyKey: "solo"}) { entry { id } }
          consumeCredits(input: {customer: {externalId: "solo"}, creditSystem: {key: "prints"}, amount: "5", feature: "print.4x6", idempotencyKey: "solo-use"}) { entry { id } }
        }"#,
        json!({}),
    )
    .await;
    let counter = app.count_statements().await;
    // Warm up whatever the server keeps after a first request.
    breakdown(&app, &app.admin_key, "solo", true, "FEATURE").await;
    let mut counts = BTreeMap::new();
    // Subtrees 1, 2, 3 and 4 levels deep.
    for (customer, levels, used) in [
        ("solo", 1, "5"),
        ("gala", 1, "475"),
        ("wedding", 2, "400"),
        ("grand-hotel", 3, "875"),
        ("booths-inc", 4, "885"),
    ] {
        for group_by in ["FEATURE", "HOUR", "CUSTOMER"] {
            let before = counter.load(Ordering::SeqCst);
            let found = breakdown(&app, &app.admin_key, customer, true, group_by).await;
            let n = counter.load(Ordering::SeqCst) - before;
            let total: i64 = found.iter().map(|r| r.1.parse::<i64>().unwrap()).sum();
            assert_eq!(total.to_string(), used, "{customer} {group_by}");
            counts
                .entry(group_by)
                .or_insert_with(Vec::new)
                .push((levels, customer, n));
        }
    }
    for (group_by, seen) in &counts {
        let first = seen[0].2;
        assert!(
            seen.iter().all(|s| s.2 == first),
            "{group_by}: statements per breakdown by depth: {seen:?}"
        );
        // The key, the customer, the credit system, (the time zone,) the
        // breakdown.
        assert!(first <= 5, "{group_by}: {first} statements");
    }
    // The children rows' roll-up too: the partner's rows (3 levels below
    // each) cost what the wedding's (leaves) do.
    let q = r#"query($c: String!) { customer(externalId: $c) { children(creditSystem: {key: "prints"}, first: 10) { nodes { used status } } } }"#;
    let mut children = Vec::new();
    for customer in ["booths-inc", "wedding"] {
        let before = counter.load(Ordering::SeqCst);
        app.ok(&app.admin_key, q, json!({"c": customer})).await;
        children.push(counter.load(Ordering::SeqCst) - before);
    }
    assert_eq!(children[0], children[1], "children rows: {children:?}");
}
