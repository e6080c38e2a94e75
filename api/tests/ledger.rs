//! The ledger over real HTTP: the one-round-trip read, its constant cost in
//! SQL statements, and every mutation's bad inputs.

mod common;

use std::sync::atomic::Ordering;

use chrono::Duration;
use common::{TestApp, code, field};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use service::{
    Clock,
    api_keys::Role,
    credit_systems::{self, CreditSystemRef, Kind, NewCreditSystem},
    customers::{self, CustomerRef, NewCustomer},
    ledger::{self, Category, WalletRef},
};
use uuid::Uuid;

const CREATE_CS: &str = r#"mutation($key: String!, $precision: Int!) {
  createCreditSystem(input: {key: $key, name: "AI tokens", unitSingular: "token", unitPlural: "tokens", precision: $precision}) {
    creditSystem { id key precision }
  }
}"#;
const CREATE_CUSTOMER: &str = r#"mutation($externalId: String!) {
  createCustomer(input: {externalId: $externalId, name: "Acme", email: "billing@acme.test"}) { customer { id externalId } }
}"#;
const GRANT: &str = r#"mutation($input: GrantCreditsInput!) {
  grantCredits(input: $input) { grant { id amount remaining category expiresAt } entry { id type amount balanceAfter } }
}"#;
const CONSUME: &str = r#"mutation($input: ConsumeCreditsInput!) {
  consumeCredits(input: $input) { entry { id type amount balanceAfter feature eventRef splits { amount grant { id } } } }
}"#;
const BALANCE: &str = r#"query($id: String!) {
  customer(externalId: $id) { wallets { balance { available pending total } entries(first: 200) { edges { node { id } } } } }
}"#;

/// The README's frontend query, as one request.
const NESTED: &str = r#"query($first: Int!) {
  customers(first: $first) { edges { node {
    externalId name
    wallets {
      creditSystem { key name unitSingular unitPlural }
      balance { available pending total included purchased promotional expiringSoon(days: 30) }
      grants(first: 20, filter: {live: true}) { edges { node { id category amount remaining expiresAt priority reason } } }
      entries(first: 20, filter: {types: [GRANT, USAGE]}) {
        edges { node { id type amount balanceAfter createdAt feature eventRef userRef splits { grant { id } amount } } }
        pageInfo { hasNextPage endCursor }
      }
    }
  } } }
}"#;

async fn setup(app: &TestApp) {
    app.ok(
        &app.admin_key,
        CREATE_CS,
        json!({"key": "tokens", "precision": 2}),
    )
    .await;
    app.ok(
        &app.admin_key,
        CREATE_CUSTOMER,
        json!({"externalId": "acme"}),
    )
    .await;
}

fn grant_input(amount: Value, key: &str) -> Value {
    json!({ "input": {
        "customer": {"externalId": "acme"}, "creditSystem": {"key": "tokens"},
        "amount": amount, "category": "PURCHASED", "reason": "top-up", "idempotencyKey": key,
    }})
}

fn consume_input(amount: Value, key: &str) -> Value {
    json!({ "input": {
        "customer": {"externalId": "acme"}, "creditSystem": {"key": "tokens"},
        "amount": amount, "idempotencyKey": key, "feature": "chat", "eventRef": "evt-1",
    }})
}

#[tokio::test]
async fn grant_consume_and_read_in_one_round_trip() {
    let app = TestApp::spawn().await;
    setup(&app).await;
    let data = app
        .ok(&app.admin_key, GRANT, grant_input(json!("100.5"), "g1"))
        .await;
    assert_eq!(data["grantCredits"]["entry"]["balanceAfter"], "100.5");
    let write = app.key(Role::Write).await;
    let data = app
        .ok(&write, CONSUME, consume_input(json!("0.25"), "c1"))
        .await;
    let entry = &data["consumeCredits"]["entry"];
    assert_eq!(
        (entry["type"].as_str(), entry["amount"].as_str()),
        (Some("USAGE"), Some("-0.25"))
    );
    assert_eq!(entry["balanceAfter"], "100.25");
    assert_eq!(entry["splits"][0]["amount"], "-0.25");
    // A retry returns the same entry.
    let again = app
        .ok(&write, CONSUME, consume_input(json!("0.25"), "c1"))
        .await;
    assert_eq!(again["consumeCredits"]["entry"]["id"], entry["id"]);

    let read = app.key(Role::Read).await;
    let data = app.ok(&read, NESTED, json!({"first": 10})).await;
    let wallet = &data["customers"]["edges"][0]["node"]["wallets"][0];
    assert_eq!(wallet["creditSystem"]["key"], "tokens");
    assert_eq!(
        wallet["balance"],
        json!({"available": "100.25", "pending": "0", "total": "100.25", "included": "0",
               "purchased": "100.25", "promotional": "0", "expiringSoon": "0"})
    );
    let entries = wallet["entries"]["edges"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["node"]["feature"], "chat");
    assert_eq!(
        entries[0]["node"]["splits"][0]["grant"]["id"],
        wallet["grants"]["edges"][0]["node"]["id"]
    );
    app.verify_all().await;
}

#[tokio::test]
async fn the_nested_read_costs_the_same_statements_for_1_or_50_customers() {
    let mut app = TestApp::spawn().await;
    let (small, small_key) = app.other_tenant("small").await;
    let (big, big_key) = app.other_tenant("big").await;
    seed(&app, small, 1, 1, 1).await;
    seed(&app, big, 50, 3, 20).await;
    let counter = app.count_statements().await;

    let mut counts = Vec::new();
    // 20 of the 50 customers: the full dashboard of 50 in one request is
    // over the cost bound (README "Limits").
    for (key, customers, wallets) in [(&small_key, 1, 1), (&big_key, 20, 3)] {
        let before = counter.load(Ordering::SeqCst);
        let data = app.ok(key, NESTED, json!({"first": 20})).await;
        counts.push(counter.load(Ordering::SeqCst) - before);
        let edges = data["customers"]["edges"].as_array().unwrap();
        assert_eq!(edges.len(), customers, "{data}");
        let w = edges[0]["node"]["wallets"].as_array().unwrap();
        assert_eq!(w.len(), wallets);
        let grants = w[0]["grants"]["edges"].as_array().unwrap().len();
        assert_eq!(grants, if customers == 1 { 1 } else { 20 });
    }
    assert_eq!(
        counts[0], counts[1],
        "statements per request: 1×1×1 vs 20×3×20"
    );
    // The API key; the customers; their wallets with their credit
    // systems; the balances with `expiringSoon`; the grant pages; the
    // entry pages with their splits and the splits' grants.
    assert!(counts[0] <= 6, "{} statements", counts[0]);
}

/// `consumeCredits` on the common path (a wallet with no holds, no plan
/// limit, no debt), as the bench sends it, counted at the database: every
/// statement either pool runs for the request (set `PRINT_STATEMENTS=1`
/// and `--nocapture` to see them). The counter does not see BEGIN and
/// COMMIT: add 2.
#[tokio::test]
async fn consume_common_path_statements() {
    const LEAN: &str = r#"mutation($input: ConsumeCreditsInput!) {
      consumeCredits(input: $input) { entry { balanceAfter } }
    }"#;
    let mut app = TestApp::spawn().await;
    setup(&app).await;
    app.ok(&app.admin_key, GRANT, grant_input(json!("100"), "g1"))
        .await;
    let write = app.key(Role::Write).await;
    let counter = app.count_statements().await;
    app.ok(&write, LEAN, consume_input(json!("1"), "warm"))
        .await;
    let mut counts = Vec::new();
    for key in ["c1", "c2", "c2"] {
        let before = counter.load(Ordering::SeqCst);
        let data = app
            .ok(&write, LEAN, consume_input(json!("0.25"), key))
            .await;
        counts.push(counter.load(Ordering::SeqCst) - before);
        let expected = if key == "c1" { "98.75" } else { "98.5" };
        assert_eq!(data["consumeCredits"]["entry"]["balanceAfter"], expected);
    }
    // The API key (the transport's), then the consume: the wallet locked
    // with its customer and credit system resolved; its grants with lapsed
    // holds and the plans' limits; every write in one statement (grant,
    // entry, split, event, wallet, the idempotency key and the audit row:
    // CTEs on PostgreSQL, one multi-statement call on SQLite).
    // With BEGIN and COMMIT: 5 statements of the consume's own.
    assert_eq!(counts[..2], [4, 4], "statements per consume");
    // A replay: the attempt (3 statements, rolled back), the key's record,
    // the entry and its splits.
    assert!(counts[2] <= 9, "a replay: {} statements", counts[2]);
    app.verify_all().await;
}

/// `customers` customers with `wallets` credit systems each, `grants`
/// grants per wallet (and one usage entry per wallet).
async fn seed(app: &TestApp, tenant: Uuid, customers: usize, wallets: usize, grants: usize) {
    let (db, clock) = (&app.t.db, &app.clock);
    let mut systems = Vec::new();
    for i in 0..wallets {
        let cs = credit_systems::create(
            db,
            clock,
            tenant,
            &NewCreditSystem {
                key: format!("cs{i}"),
                name: format!("System {i}"),
                description: String::new(),
                unit_singular: "unit".into(),
                unit_plural: "units".into(),
                precision: 0,
                kind: Kind::Units,
                currency: None,
            },
        )
        .await
        .unwrap();
        systems.push(cs.id);
    }
    for c in 0..customers {
        let customer = customers::create(
            db,
            clock,
            tenant,
            &NewCustomer {
                external_id: format!("c{c}"),
                name: format!("Customer {c}"),
                email: None,
                metadata: None,
                parent: None,
            },
        )
        .await
        .unwrap();
        for cs in &systems {
            let wallet = WalletRef {
                customer: CustomerRef::Id(customer.id),
                credit_system: CreditSystemRef::Id(*cs),
            };
            for g in 0..grants {
                ledger::grant(
                    db,
                    clock,
                    tenant,
                    &ledger::GrantInput {
                        wallet: wallet.clone(),
                        amount: Decimal::from(10),
                        category: Category::Promotional,
                        effective_at: None,
                        expires_at: Some(clock.now() + Duration::days(10 + g as i64)),
                        priority: None,
                        cost_basis: None,
                        reason: "seed".into(),
                        metadata: None,
                        idempotency_key: format!("{}-{cs}-{g}", customer.id),
                    },
                )
                .await
                .unwrap();
            }
            ledger::consume(
                db,
                clock,
                tenant,
                &ledger::ConsumeInput {
                    wallet,
                    amount: Decimal::from(5),
                    attribution: Default::default(),
                    idempotency_key: format!("{}-{cs}-use", customer.id),
                },
            )
            .await
            .unwrap();
        }
    }
}

#[tokio::test]
async fn every_mutation_refuses_bad_input_and_changes_nothing() {
    let app = TestApp::spawn().await;
    setup(&app).await;
    app.ok(&app.admin_key, GRANT, grant_input(json!("10"), "g0"))
        .await;
    let entry_id = app
        .ok(&app.admin_key, CONSUME, consume_input(json!("1"), "c0"))
        .await["consumeCredits"]["entry"]["id"]
        .clone();
    let (_, other_key) = app.other_tenant("other").await;
    // The other tenant's own customer, to name across tenants.
    app.ok(&other_key, CREATE_CUSTOMER, json!({"externalId": "theirs"}))
        .await;
    let theirs = app
        .ok(
            &other_key,
            r#"{ customer(externalId: "theirs") { id } }"#,
            json!({}),
        )
        .await["customer"]["id"]
        .clone();
    // …and its own credit system, grant, usage and hold.
    let theirs_of = |mutation: &str| format!(r#"mutation {{ {mutation} }}"#);
    let their_cs = app
        .ok(
            &other_key,
            &theirs_of(r#"createCreditSystem(input: {key: "tokens", name: "T", unitSingular: "t", unitPlural: "ts", precision: 2}) { creditSystem { id } }"#),
            json!({}),
        )
        .await["createCreditSystem"]["creditSystem"]["id"]
        .clone();
    let their_grant = app
        .ok(
            &other_key,
            &theirs_of(r#"grantCredits(input: {customer: {externalId: "theirs"}, creditSystem: {key: "tokens"}, amount: "10", category: PROMOTIONAL, reason: "x", idempotencyKey: "tg"}) { grant { id } }"#),
            json!({}),
        )
        .await["grantCredits"]["grant"]["id"]
        .clone();
    let their_entry = app
        .ok(
            &other_key,
            &theirs_of(r#"consumeCredits(input: {customer: {externalId: "theirs"}, creditSystem: {key: "tokens"}, amount: "1", idempotencyKey: "tc"}) { entry { id } }"#),
            json!({}),
        )
        .await["consumeCredits"]["entry"]["id"]
        .clone();
    let their_hold = app
        .ok(
            &other_key,
            &theirs_of(r#"createHold(input: {customer: {externalId: "theirs"}, creditSystem: {key: "tokens"}, amount: "1", expiresAt: "2026-02-01T00:00:00Z", idempotencyKey: "th"}) { hold { id } }"#),
            json!({}),
        )
        .await["createHold"]["hold"]["id"]
        .clone();
    let their_balance =
        r#"{ customer(externalId: "theirs") { wallets { balance { available pending } } } }"#;
    let theirs_before = app.ok(&other_key, their_balance, json!({})).await;
    let read = app.key(Role::Read).await;

    let wallet_mutations: [(&str, &str, Value); 4] = [
        (
            "grantCredits",
            "GrantCreditsInput",
            json!({"category": "PROMOTIONAL", "reason": "x"}),
        ),
        ("consumeCredits", "ConsumeCreditsInput", json!({})),
        (
            "adjustBalance",
            "AdjustBalanceInput",
            json!({"reason": "x"}),
        ),
        (
            "createHold",
            "CreateHoldInput",
            json!({"expiresAt": "2026-02-01T00:00:00Z"}),
        ),
    ];
    for (name, input_type, extra) in &wallet_mutations {
        let query =
            format!("mutation($input: {input_type}!) {{ {name}(input: $input) {{ __typename }} }}");
        let input = |customer: Value, cs: Value, amount: Value| {
            let mut i = json!({"customer": customer, "creditSystem": cs, "amount": amount, "idempotencyKey": format!("bad-{name}")});
            for (k, v) in extra.as_object().unwrap() {
                i[k] = v.clone();
            }
            json!({"input": i})
        };
        let acme = json!({"externalId": "acme"});
        let tokens = json!({"key": "tokens"});
        let cases: Vec<(&str, Value, &str, Option<&str>)> = vec![
            (
                "READ key",
                input(acme.clone(), tokens.clone(), json!("1")),
                "FORBIDDEN",
                None,
            ),
            (
                "unknown customer",
                input(json!({"externalId": "nobody"}), tokens.clone(), json!("1")),
                "NOT_FOUND",
                Some("customer"),
            ),
            (
                "unknown credit system",
                input(acme.clone(), json!({"key": "nope"}), json!("1")),
                "NOT_FOUND",
                Some("creditSystem"),
            ),
            (
                "another tenant's customer",
                input(json!({"id": theirs}), tokens.clone(), json!("1")),
                "NOT_FOUND",
                Some("customer"),
            ),
            (
                "another tenant's credit system",
                input(acme.clone(), json!({"id": their_cs}), json!("1")),
                "NOT_FOUND",
                Some("creditSystem"),
            ),
            (
                "malformed id",
                input(json!({"id": "grt_123"}), tokens.clone(), json!("1")),
                "VALIDATION",
                Some("customer"),
            ),
            (
                "zero",
                input(acme.clone(), tokens.clone(), json!("0")),
                "VALIDATION",
                Some("amount"),
            ),
            (
                "over precision",
                input(acme.clone(), tokens.clone(), json!("1.001")),
                "VALIDATION",
                Some("amount"),
            ),
            (
                "a JSON number",
                input(acme.clone(), tokens.clone(), json!(1)),
                "VALIDATION",
                None,
            ),
        ];
        for (what, vars, expected, expected_field) in cases {
            let key = if what == "READ key" {
                &read
            } else {
                &app.admin_key
            };
            let (status, body) = app.gql(Some(key), &query, vars).await;
            assert_eq!(status, 200);
            assert_eq!(code(&body), expected, "{name}: {what}: {body}");
            if let Some(f) = expected_field {
                assert_eq!(field(&body), f, "{name}: {what}");
            }
        }
        if *name != "adjustBalance" {
            let (_, body) = app
                .gql(
                    Some(&app.admin_key),
                    &query,
                    input(
                        json!({"externalId": "acme"}),
                        json!({"key": "tokens"}),
                        json!("-1"),
                    ),
                )
                .await;
            assert_eq!(
                (code(&body), field(&body)),
                ("VALIDATION", "amount"),
                "{name}: negative"
            );
        }
    }

    // Acme's own hold, to capture with bad amounts.
    let hold = app
        .ok(
            &app.admin_key,
            r#"mutation { createHold(input: {customer: {externalId: "acme"}, creditSystem: {key: "tokens"}, amount: "2", expiresAt: "2026-02-01T00:00:00Z", idempotencyKey: "h0"}) { hold { id } } }"#,
            json!({}),
        )
        .await["createHold"]["hold"]["id"]
        .clone();
    let before = app.ok(&app.admin_key, BALANCE, json!({"id": "acme"})).await;
    let void = "mutation($i: VoidGrantInput!) { voidGrant(input: $i) { __typename } }";
    let refund = "mutation($i: RefundUsageInput!) { refundUsage(input: $i) { __typename } }";
    let capture = "mutation($i: CaptureHoldInput!) { captureHold(input: $i) { __typename } }";
    let release = "mutation($i: ReleaseHoldInput!) { releaseHold(input: $i) { __typename } }";
    let across: [(&str, Value, &str, &str); 12] = [
        (
            void,
            json!({"grant": their_grant, "reason": "x", "idempotencyKey": "xv"}),
            "NOT_FOUND",
            "grant",
        ),
        (
            refund,
            json!({"entry": their_entry, "reason": "x", "idempotencyKey": "xr"}),
            "NOT_FOUND",
            "entry",
        ),
        (
            capture,
            json!({"hold": their_hold, "amount": "1", "idempotencyKey": "xc"}),
            "NOT_FOUND",
            "hold",
        ),
        (
            release,
            json!({"hold": their_hold, "idempotencyKey": "xl"}),
            "NOT_FOUND",
            "hold",
        ),
        (
            refund,
            json!({"entry": entry_id, "amount": "0", "reason": "x", "idempotencyKey": "r0"}),
            "VALIDATION",
            "amount",
        ),
        (
            refund,
            json!({"entry": entry_id, "amount": "-1", "reason": "x", "idempotencyKey": "r-"}),
            "VALIDATION",
            "amount",
        ),
        (
            refund,
            json!({"entry": entry_id, "amount": "0.001", "reason": "x", "idempotencyKey": "r."}),
            "VALIDATION",
            "amount",
        ),
        (
            capture,
            json!({"hold": hold, "amount": "0", "idempotencyKey": "c0"}),
            "VALIDATION",
            "amount",
        ),
        (
            capture,
            json!({"hold": hold, "amount": "-1", "idempotencyKey": "c-"}),
            "VALIDATION",
            "amount",
        ),
        (
            capture,
            json!({"hold": hold, "amount": "1.001", "idempotencyKey": "c."}),
            "VALIDATION",
            "amount",
        ),
        (
            capture,
            json!({"hold": hold, "amount": "3", "idempotencyKey": "c3"}),
            "VALIDATION",
            "amount",
        ),
        (
            void,
            json!({"grant": "grt_123", "reason": "x", "idempotencyKey": "vm"}),
            "VALIDATION",
            "grant",
        ),
    ];
    for (query, input, expected, expected_field) in across {
        let (_, body) = app
            .gql(Some(&app.admin_key), query, json!({"i": input}))
            .await;
        assert_eq!(
            (code(&body), field(&body)),
            (expected, expected_field),
            "{query} {input}: {body}"
        );
        assert!(
            !body.to_string().contains("theirs"),
            "another tenant's data leaked: {body}"
        );
    }
    assert_eq!(
        app.ok(&other_key, their_balance, json!({})).await,
        theirs_before,
        "acme's refused mutations touched the other tenant"
    );

    // Mutations on ids.
    let by_id: [(&str, Value, &str, &str); 5] = [
        (
            "mutation($i: VoidGrantInput!) { voidGrant(input: $i) { __typename } }",
            json!({"grant": "grt_00000000000000000000000000000000", "reason": "x", "idempotencyKey": "v"}),
            "NOT_FOUND",
            "grant",
        ),
        (
            "mutation($i: RefundUsageInput!) { refundUsage(input: $i) { __typename } }",
            json!({"entry": "ent_00000000000000000000000000000000", "reason": "x", "idempotencyKey": "r"}),
            "NOT_FOUND",
            "entry",
        ),
        (
            "mutation($i: RefundUsageInput!) { refundUsage(input: $i) { __typename } }",
            json!({"entry": entry_id, "amount": "2", "reason": "x", "idempotencyKey": "r2"}),
            "VALIDATION",
            "amount",
        ),
        (
            "mutation($i: CaptureHoldInput!) { captureHold(input: $i) { __typename } }",
            json!({"hold": "hld_00000000000000000000000000000000", "amount": "1", "idempotencyKey": "c"}),
            "NOT_FOUND",
            "hold",
        ),
        (
            "mutation($i: ReleaseHoldInput!) { releaseHold(input: $i) { __typename } }",
            json!({"hold": "cus_00000000000000000000000000000000", "idempotencyKey": "c"}),
            "VALIDATION",
            "hold",
        ),
    ];
    for (query, input, expected, expected_field) in by_id {
        let (_, body) = app
            .gql(Some(&app.admin_key), query, json!({"i": input}))
            .await;
        assert_eq!(
            (code(&body), field(&body)),
            (expected, expected_field),
            "{query}: {body}"
        );
        let (_, body) = app.gql(Some(&read), query, json!({"i": input})).await;
        assert_eq!(code(&body), "FORBIDDEN", "{query}");
    }
    // Another tenant can't consume from, or see, acme's wallet.
    let (_, body) = app
        .gql(Some(&other_key), CONSUME, consume_input(json!("1"), "x"))
        .await;
    assert_eq!(code(&body), "NOT_FOUND");
    let (_, body) = app
        .gql(Some(&other_key), BALANCE, json!({"id": "acme"}))
        .await;
    assert_eq!(code(&body), "NOT_FOUND");

    let after = app.ok(&app.admin_key, BALANCE, json!({"id": "acme"})).await;
    assert_eq!(before, after, "a refused mutation changed something");
    app.verify_all().await;
}

#[tokio::test]
async fn insufficient_credits_say_how_much() {
    let app = TestApp::spawn().await;
    setup(&app).await;
    app.ok(&app.admin_key, GRANT, grant_input(json!("5"), "g"))
        .await;
    let (_, body) = app
        .gql(
            Some(&app.admin_key),
            CONSUME,
            consume_input(json!("7.5"), "c"),
        )
        .await;
    assert_eq!(code(&body), "INSUFFICIENT_CREDITS");
    let ext = &body["errors"][0]["extensions"];
    assert_eq!(
        (ext["requested"].as_str(), ext["available"].as_str()),
        (Some("7.5"), Some("5"))
    );
    let (_, body) = app
        .gql(
            Some(&app.admin_key),
            CONSUME,
            consume_input(json!("1"), "g"),
        )
        .await;
    assert_eq!(code(&body), "IDEMPOTENCY_CONFLICT");
    app.verify_all().await;
}

#[tokio::test]
async fn readme_walk_through_runs_as_written() {
    let app = TestApp::spawn().await;
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let section = readme
        .split("<!-- walk-through:start -->")
        .nth(1)
        .and_then(|s| s.split("<!-- walk-through:end -->").next())
        .expect("README has the walk-through section");
    let blocks: Vec<&str> = section
        .split("```graphql")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .collect();
    assert_eq!(blocks.len(), 5, "five steps");
    let mut last = Value::Null;
    for block in blocks {
        last = app.ok(&app.admin_key, block, json!({})).await;
    }
    let wallet = &last["customer"]["wallets"][0];
    assert_eq!(wallet["balance"]["available"], "987.5");
    assert_eq!(wallet["entries"]["edges"][0]["node"]["type"], "USAGE");
    app.verify_all().await;
}

/// A customer that does not exist, named by id, is a `NOT_FOUND` that
/// names its kind and id (message and `extensions.kind`/`extensions.id`),
/// read or written; another kind's id where a customer's belongs is a
/// `VALIDATION` error naming the field and the prefix it wants.
#[tokio::test]
async fn a_missing_customer_is_named_by_kind_and_id() {
    let app = TestApp::spawn().await;
    app.ok(
        &app.admin_key,
        r#"mutation { createCreditSystem(input: {key: "tokens", name: "Tokens", unitSingular: "token", unitPlural: "tokens", precision: 0}) { creditSystem { id } } }"#,
        json!({}),
    )
    .await;
    let missing = service::ids::CustomerId::new_v7().to_string();
    assert!(missing.starts_with("cus_"), "{missing}");
    let (_, body) = app
        .gql(
            Some(&app.admin_key),
            "query($id: ID!) { customer(id: $id) { id } }",
            json!({ "id": missing }),
        )
        .await;
    names_missing_customer(&body, &missing);

    let (_, body) = app
        .gql(
            Some(&app.admin_key),
            r#"mutation($id: ID!) { grantCredits(input: {customer: {id: $id}, creditSystem: {key: "tokens"}, amount: "1", category: PURCHASED, reason: "r", idempotencyKey: "k"}) { grant { id } } }"#,
            json!({ "id": missing }),
        )
        .await;
    names_missing_customer(&body, &missing);

    let wallet = format!("wal_{}", &missing["cus_".len()..]);
    let (_, body) = app
        .gql(
            Some(&app.admin_key),
            "query($id: ID!) { customer(id: $id) { id } }",
            json!({ "id": wallet }),
        )
        .await;
    assert_eq!((code(&body), field(&body)), ("VALIDATION", "id"), "{body}");
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("not a valid cus id"), "{body}");
}

/// The response's first error says customer `id` was not found: code,
/// field, message, and `extensions.kind` / `extensions.id`.
fn names_missing_customer(body: &Value, id: &str) {
    let err = &body["errors"][0];
    assert_eq!(
        (code(body), field(body)),
        ("NOT_FOUND", "customer"),
        "{body}"
    );
    assert_eq!(err["message"], format!("customer {id} not found"), "{body}");
    assert_eq!(err["extensions"]["kind"], "customer", "{body}");
    assert_eq!(err["extensions"]["id"], id, "{body}");
}
