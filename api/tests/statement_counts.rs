//! Statement counts of nested reads that must not grow with the data:
//! `Customer.children` costs the same at any width of the tree.

mod common;

use std::sync::atomic::Ordering;

use common::TestApp;
use rust_decimal::Decimal;
use serde_json::json;
use service::{
    credit_systems::{self, CreditSystemRef, Kind, NewCreditSystem},
    customers::{self, CustomerRef, NewCustomer},
    ledger::{self, Attribution, Category, WalletRef},
};
use uuid::Uuid;

/// Two levels of children: the partner's clients, and each client's events.
const TREE: &str = r#"query($cs: CreditSystemRef!) {
  customer(externalId: "partner") {
    children(creditSystem: $cs, first: 50) {
      pageInfo { hasNextPage }
      nodes {
        customer { externalId }
        used ownUsed remaining usagePercent status
        customer {
          children(creditSystem: $cs, first: 50) {
            nodes { customer { externalId } used remaining status }
          }
        }
      }
    }
  }
}"#;

#[tokio::test]
async fn customer_children_cost_the_same_statements_for_3_or_30_children() {
    let mut app = TestApp::spawn().await;
    let (small, small_key) = app.other_tenant("small").await;
    let (big, big_key) = app.other_tenant("big").await;
    seed(&app, small, 3, 2).await;
    seed(&app, big, 30, 2).await;
    let counter = app.count_statements().await;
    // Warm up whatever the server keeps after a first request.
    app.ok(&small_key, TREE, json!({"cs": {"key": "prints"}}))
        .await;

    let mut counts = Vec::new();
    for (key, clients) in [(&small_key, 3), (&big_key, 30)] {
        for cs in [
            json!({"key": "prints"}),
            json!({"id": cs_id(&app, key).await}),
        ] {
            let before = counter.load(Ordering::SeqCst);
            let data = app.ok(key, TREE, json!({"cs": cs})).await;
            counts.push((clients, counter.load(Ordering::SeqCst) - before));
            let rows = data["customer"]["children"]["nodes"].as_array().unwrap();
            assert_eq!(rows.len(), clients, "{data}");
            for row in rows {
                // A client's own spend and its two events' (1 each).
                assert_eq!(row["used"], "4", "{row}");
                assert_eq!(row["ownUsed"], "2", "{row}");
                assert_eq!(row["remaining"], "8", "{row}");
                let events = row["customer"]["children"]["nodes"].as_array().unwrap();
                assert_eq!(events.len(), 2, "{row}");
                for e in events {
                    assert_eq!((&e["used"], &e["remaining"]), (&json!("1"), &json!("9")));
                }
            }
        }
    }
    println!("Customer.children, statements per request (clients, count): {counts:?}");
    assert!(
        counts.iter().all(|c| c.1 == counts[0].1),
        "statements per request by tree width: {counts:?}"
    );
}

/// Batched, each parent still gets its own page: `first` and `after` per
/// parent, in id order (oldest first).
#[tokio::test]
async fn each_parent_gets_its_own_page_of_children() {
    let app = TestApp::spawn().await;
    let (tenant, key) = app.other_tenant("pages").await;
    seed(&app, tenant, 3, 2).await;
    let q = r#"query($after: String) {
      customer(externalId: "partner") {
        children(creditSystem: {key: "prints"}, first: 2, after: $after) {
          pageInfo { hasNextPage endCursor }
          nodes {
            customer {
              externalId
              children(creditSystem: {key: "prints"}, first: 1) {
                pageInfo { hasNextPage }
                nodes { customer { externalId } used }
              }
            }
          }
        }
      }
    }"#;
    let first = app.ok(&key, q, json!({})).await;
    let page = &first["customer"]["children"];
    assert_eq!(page["pageInfo"]["hasNextPage"], true, "{page}");
    let rows = page["nodes"].as_array().unwrap();
    let names: Vec<&str> = rows
        .iter()
        .map(|r| r["customer"]["externalId"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["client-0", "client-1"]);
    for (c, row) in rows.iter().enumerate() {
        let events = &row["customer"]["children"];
        assert_eq!(events["pageInfo"]["hasNextPage"], true, "{events}");
        assert_eq!(
            events["nodes"],
            json!([{"customer": {"externalId": format!("event-{c}-0")}, "used": "1"}])
        );
    }
    let rest = app
        .ok(&key, q, json!({"after": page["pageInfo"]["endCursor"]}))
        .await;
    let page = &rest["customer"]["children"];
    assert_eq!(page["pageInfo"]["hasNextPage"], false, "{page}");
    assert_eq!(page["nodes"][0]["customer"]["externalId"], "client-2");
    assert_eq!(page["nodes"].as_array().unwrap().len(), 1);
    // A credit system that doesn't exist is refused as before, on its field.
    let (_, body) = app
        .gql(
            Some(&key),
            r#"{ customer(externalId: "partner") { children(creditSystem: {key: "nope"}) { nodes { used } } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        (common::code(&body), common::field(&body)),
        ("NOT_FOUND", "creditSystem"),
        "{body}"
    );
}

async fn cs_id(app: &TestApp, key: &str) -> String {
    let data = app
        .ok(key, r#"{ creditSystem(key: "prints") { id } }"#, json!({}))
        .await;
    data["creditSystem"]["id"].as_str().unwrap().to_owned()
}

/// A partner with `clients` clients of `events` events each; every
/// customer has 10 credits, every client and event spends 1 of its own
/// per event below it (a client 2, an event 1).
async fn seed(app: &TestApp, tenant: Uuid, clients: usize, events: usize) {
    let (db, clock) = (&app.t.db, &app.clock);
    let cs = credit_systems::create(
        db,
        clock,
        tenant,
        &NewCreditSystem {
            key: "prints".into(),
            name: "Prints".into(),
            description: String::new(),
            unit_singular: "print".into(),
            unit_plural: "prints".into(),
            precision: 0,
            kind: Kind::Units,
            currency: None,
        },
    )
    .await
    .unwrap();
    let customer = |external_id: String, parent: Option<service::ids::CustomerId>| NewCustomer {
        name: external_id.clone(),
        external_id,
        email: None,
        metadata: None,
        parent: parent.map(CustomerRef::Id),
    };
    let fund = |customer: service::ids::CustomerId, spend: u32| {
        let wallet = WalletRef {
            customer: CustomerRef::Id(customer),
            credit_system: CreditSystemRef::Id(cs.id),
        };
        async move {
            ledger::grant(
                db,
                clock,
                tenant,
                &ledger::GrantInput {
                    wallet: wallet.clone(),
                    amount: Decimal::from(10),
                    category: Category::Purchased,
                    effective_at: None,
                    expires_at: None,
                    priority: None,
                    cost_basis: None,
                    reason: "seed".into(),
                    metadata: None,
                    idempotency_key: format!("grant-{customer}"),
                },
            )
            .await
            .unwrap();
            if spend > 0 {
                ledger::consume(
                    db,
                    clock,
                    tenant,
                    &ledger::ConsumeInput {
                        wallet,
                        amount: Decimal::from(spend),
                        attribution: Attribution::default(),
                        idempotency_key: format!("use-{customer}"),
                    },
                )
                .await
                .unwrap();
            }
        }
    };
    let partner = customers::create(db, clock, tenant, &customer("partner".into(), None))
        .await
        .unwrap();
    fund(partner.id, 0).await;
    for c in 0..clients {
        let client = customers::create(
            db,
            clock,
            tenant,
            &customer(format!("client-{c}"), Some(partner.id)),
        )
        .await
        .unwrap();
        fund(client.id, events as u32).await;
        for e in 0..events {
            let event = customers::create(
                db,
                clock,
                tenant,
                &customer(format!("event-{c}-{e}"), Some(client.id)),
            )
            .await
            .unwrap();
            fund(event.id, 1).await;
        }
    }
}
