//! Credit systems, customers and wallet options over HTTP: bad input gets
//! a code and the field, retries are safe, and reads cover time.

mod common;

use common::{TestApp, code, field};
use serde_json::{Value, json};
use service::api_keys::Role;

const CREATE_CS: &str = r#"mutation($input: CreateCreditSystemInput!) { createCreditSystem(input: $input) { creditSystem { id key precision kind currency } } }"#;
const CREATE_CUSTOMER: &str = r#"mutation($input: CreateCustomerInput!) { createCustomer(input: $input) { customer { id externalId parent { externalId } } } }"#;
const UPDATE_CUSTOMER: &str = r#"mutation($input: UpdateCustomerInput!) { updateCustomer(input: $input) { customer { id name email parent { externalId } } } }"#;

fn cs(key: &str, precision: i64) -> Value {
    json!({"input": {"key": key, "name": "Tokens", "unitSingular": "token", "unitPlural": "tokens", "precision": precision}})
}

#[tokio::test]
async fn credit_systems_validate_and_retry_safely() {
    let app = TestApp::spawn().await;
    let first = app.ok(&app.admin_key, CREATE_CS, cs("tokens", 2)).await;
    let again = app.ok(&app.admin_key, CREATE_CS, cs("tokens", 2)).await;
    assert_eq!(
        first, again,
        "same key and settings: the same credit system"
    );
    let (_, body) = app
        .gql(Some(&app.admin_key), CREATE_CS, cs("tokens", 3))
        .await;
    assert_eq!((code(&body), field(&body)), ("CONFLICT", "key"));
    for (vars, f) in [
        (cs("Bad Key", 2), "key"),
        (cs("ok", 7), "precision"),
        (
            json!({"input": {"key": "huf", "name": "HUF", "unitSingular": "forint", "unitPlural": "forints", "precision": 2, "kind": "MONETARY"}}),
            "currency",
        ),
    ] {
        let (_, body) = app.gql(Some(&app.admin_key), CREATE_CS, vars).await;
        assert_eq!((code(&body), field(&body)), ("VALIDATION", f));
    }
    let write = app.key(Role::Write).await;
    let (_, body) = app.gql(Some(&write), CREATE_CS, cs("other", 0)).await;
    assert_eq!(code(&body), "FORBIDDEN");
    let huf = app
        .ok(&app.admin_key, CREATE_CS, json!({"input": {"key": "huf", "name": "HUF", "unitSingular": "forint", "unitPlural": "forints", "precision": 2, "kind": "MONETARY", "currency": "huf"}}))
        .await;
    assert_eq!(huf["createCreditSystem"]["creditSystem"]["currency"], "HUF");
    let listed = app
        .ok(
            &write,
            "{ creditSystems(first: 10) { edges { node { key } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        listed["creditSystems"]["edges"].as_array().unwrap().len(),
        2
    );
    let (_, body) = app
        .gql(
            Some(&write),
            r#"{ creditSystem(key: "nope") { id } }"#,
            json!({}),
        )
        .await;
    assert_eq!(code(&body), "NOT_FOUND");
    let (_, body) = app
        .gql(Some(&write), r#"{ creditSystem { id } }"#, json!({}))
        .await;
    assert_eq!(code(&body), "VALIDATION");
}

#[tokio::test]
async fn customers_form_a_tree_without_cycles_and_are_searchable() {
    let app = TestApp::spawn().await;
    let write = app.key(Role::Write).await;
    let make = |external: &str, parent: Option<&str>| {
        let mut input = json!({"externalId": external, "name": format!("{external} Ltd"), "email": format!("{external}@example.com")});
        if let Some(p) = parent {
            input["parent"] = json!({"externalId": p});
        }
        json!({"input": input})
    };
    app.ok(&write, CREATE_CUSTOMER, make("partner", None)).await;
    let client = app
        .ok(&write, CREATE_CUSTOMER, make("client", Some("partner")))
        .await;
    assert_eq!(
        client["createCustomer"]["customer"]["parent"]["externalId"],
        "partner"
    );
    app.ok(&write, CREATE_CUSTOMER, make("event", Some("client")))
        .await;
    // Retrying is safe; the same id with other details is a conflict.
    app.ok(&write, CREATE_CUSTOMER, make("event", Some("client")))
        .await;
    let (_, body) = app
        .gql(Some(&write), CREATE_CUSTOMER, make("event", None))
        .await;
    assert_eq!((code(&body), field(&body)), ("CONFLICT", "externalId"));

    // No cycles: partner can't go under its own descendant.
    let (_, body) = app
        .gql(Some(&write), UPDATE_CUSTOMER, json!({"input": {"customer": {"externalId": "partner"}, "parent": {"externalId": "event"}}}))
        .await;
    assert_eq!((code(&body), field(&body)), ("VALIDATION", "parent"));
    let (_, body) = app
        .gql(
            Some(&write),
            CREATE_CUSTOMER,
            make("orphan", Some("nobody")),
        )
        .await;
    assert_eq!((code(&body), field(&body)), ("VALIDATION", "parent"));
    let (_, body) = app
        .gql(
            Some(&write),
            CREATE_CUSTOMER,
            json!({"input": {"externalId": "x", "name": "X", "email": "not-an-email"}}),
        )
        .await;
    assert_eq!((code(&body), field(&body)), ("VALIDATION", "email"));
    let (_, body) = app
        .gql(
            Some(&write),
            CREATE_CUSTOMER,
            json!({"input": {"externalId": "x", "name": "X", "metadata": [1, 2]}}),
        )
        .await;
    assert_eq!((code(&body), field(&body)), ("VALIDATION", "metadata"));

    // Updates: clear the email, move the event to the partner.
    let updated = app
        .ok(&write, UPDATE_CUSTOMER, json!({"input": {"customer": {"externalId": "event"}, "email": null, "parent": {"externalId": "partner"}}}))
        .await;
    let c = &updated["updateCustomer"]["customer"];
    assert_eq!(
        (c["email"].clone(), c["parent"]["externalId"].clone()),
        (Value::Null, json!("partner"))
    );

    let found = app
        .ok(
            &write,
            r#"{ customers(first: 10, search: "CLIENT") { edges { node { externalId } } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        found["customers"]["edges"],
        json!([{"node": {"externalId": "client"}}])
    );
    let (_, body) = app
        .gql(
            Some(&app.key(Role::Read).await),
            CREATE_CUSTOMER,
            make("r", None),
        )
        .await;
    assert_eq!(code(&body), "FORBIDDEN");
}

#[tokio::test]
async fn wallet_reads_cover_expiry_windows_and_past_balances() {
    let app = TestApp::spawn().await;
    app.ok(&app.admin_key, CREATE_CS, cs("tokens", 0)).await;
    app.ok(
        &app.admin_key,
        CREATE_CUSTOMER,
        json!({"input": {"externalId": "acme", "name": "Acme"}}),
    )
    .await;
    let grant = |amount: &str, expires: Option<&str>, key: &str| {
        json!({"input": {"customer": {"externalId": "acme"}, "creditSystem": {"key": "tokens"}, "amount": amount,
            "category": "PROMOTIONAL", "expiresAt": expires, "reason": "promo", "idempotencyKey": key}})
    };
    let q = r#"mutation($input: GrantCreditsInput!) { grantCredits(input: $input) { entry { createdAt } } }"#;
    // The test clock stands at 2026-01-31T12:00:00Z.
    app.ok(
        &app.admin_key,
        q,
        grant("10", Some("2026-02-05T00:00:00Z"), "a"),
    )
    .await;
    app.ok(
        &app.admin_key,
        q,
        grant("20", Some("2026-04-01T00:00:00Z"), "b"),
    )
    .await;
    app.ok(&app.admin_key, q, grant("5", None, "c")).await;
    let read = r#"{ customer(externalId: "acme") { wallets { balance { available week: expiringSoon(days: 7) quarter: expiringSoon(days: 90) }
        before: balanceAt(at: "2026-01-01T00:00:00Z") now: balanceAt(at: "2026-01-31T12:00:00Z") } } }"#;
    let data = app.ok(&app.admin_key, read, json!({})).await;
    let w = &data["customer"]["wallets"][0];
    assert_eq!(
        w["balance"],
        json!({"available": "35", "week": "10", "quarter": "30"})
    );
    assert_eq!(
        (w["before"].as_str(), w["now"].as_str()),
        (Some("0"), Some("35"))
    );
    let (_, body) = app
        .gql(
            Some(&app.admin_key),
            r#"{ customer(externalId: "acme") { wallets { balance { expiringSoon(days: 0) } } } }"#,
            json!({}),
        )
        .await;
    assert_eq!((code(&body), field(&body)), ("VALIDATION", "days"));

    // Wallet options: overage and a threshold within the precision.
    let configure = r#"mutation($input: ConfigureWalletInput!) { configureWallet(input: $input) { wallet { allowOverage lowBalanceThreshold } } }"#;
    let data = app
        .ok(&app.admin_key, configure, json!({"input": {"customer": {"externalId": "acme"}, "creditSystem": {"key": "tokens"}, "allowOverage": true, "lowBalanceThreshold": "5"}}))
        .await;
    assert_eq!(
        data["configureWallet"]["wallet"],
        json!({"allowOverage": true, "lowBalanceThreshold": "5"})
    );
    let (_, body) = app
        .gql(Some(&app.admin_key), configure, json!({"input": {"customer": {"externalId": "acme"}, "creditSystem": {"key": "tokens"}, "lowBalanceThreshold": "0.5"}}))
        .await;
    assert_eq!(
        (code(&body), field(&body)),
        ("VALIDATION", "lowBalanceThreshold")
    );
    let (_, body) = app
        .gql(Some(&app.key(Role::Write).await), configure, json!({"input": {"customer": {"externalId": "acme"}, "creditSystem": {"key": "tokens"}, "allowOverage": false}}))
        .await;
    assert_eq!(code(&body), "FORBIDDEN");
    app.verify_all().await;
}
