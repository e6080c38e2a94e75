//! The audit trail (issue 15, item 8): every mutation of an API key leaves
//! exactly one row — who, what (operation and target ids), when, outcome —
//! written in the transaction of its change; refused ones leave a row with
//! their code and change nothing else; `auditLog` is ADMIN-only,
//! tenant-scoped and paginated; no row holds a secret; a change whose
//! COMMIT fails leaves no `OK` row; the table refuses UPDATE and DELETE.

mod common;

use chrono::Duration;
use common::{TestApp, code};
use entity::{audit_log, credit_grant, idempotency_record, ledger_entry};
use sea_orm::{ConnectionTrait, EntityTrait, PaginatorTrait};
use serde_json::{Value, json};
use service::api_keys::Role;

const LOG: &str = r#"query($first: Int, $after: String, $filter: AuditLogFilter) {
  auditLog(first: $first, after: $after, filter: $filter) {
    edges { cursor node { id at actor { kind id role } operation targets outcome replayed } }
    pageInfo { hasNextPage endCursor }
  }
}"#;

const VIEWER: &str = "{ viewer { apiKeyId } }";

const CREATE_CREDIT_SYSTEM: &str = r#"mutation { createCreditSystem(input: {key: "tokens", name: "Tokens", unitSingular: "token", unitPlural: "tokens", precision: 2}) { creditSystem { id } } }"#;
const CREATE_CUSTOMER: &str = r#"mutation($ext: String!) { createCustomer(input: {externalId: $ext, name: "Acme"}) { customer { id } } }"#;
const GRANT: &str = r#"mutation($amount: Credits!, $key: String!) {
  grantCredits(input: {customer: {externalId: "acme"}, creditSystem: {key: "tokens"}, amount: $amount,
    category: PURCHASED, reason: "Starter pack", idempotencyKey: $key}) { grant { id } entry { id } }
}"#;
const CONSUME: &str = r#"mutation($amount: Credits!, $key: String!) {
  consumeCredits(input: {customer: {externalId: "acme"}, creditSystem: {key: "tokens"}, amount: $amount, idempotencyKey: $key}) { entry { id } }
}"#;

/// Every entry the ADMIN key sees, newest first.
async fn entries(app: &TestApp, key: &str, filter: Value) -> Vec<Value> {
    let data = app
        .ok(key, LOG, json!({"first": 200, "filter": filter}))
        .await;
    data["auditLog"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"].clone())
        .collect()
}

async fn key_id(app: &TestApp, key: &str) -> String {
    app.ok(key, VIEWER, json!({})).await["viewer"]["apiKeyId"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

/// Runs `query` with `key` and checks that it added exactly one entry:
/// this operation, by this key and role, with these targets and outcome.
/// Returns the response body.
struct Expect<'a> {
    operation: &'a str,
    role: &'a str,
    outcome: &'a str,
    targets: Vec<String>,
    replayed: bool,
}

async fn run_and_check(
    app: &TestApp,
    key: &str,
    query: &str,
    vars: Value,
    expect: impl FnOnce(&Value) -> Expect<'static>,
) -> Value {
    let before = entries(app, &app.admin_key, json!({})).await.len();
    let (_, body) = app.gql(Some(key), query, vars).await;
    let after = entries(app, &app.admin_key, json!({})).await;
    assert_eq!(after.len(), before + 1, "one row for {query}: {body}");
    let e = expect(&body);
    let row = &after[0];
    assert_eq!(row["operation"], e.operation, "{row}");
    assert_eq!(row["actor"]["kind"], "API_KEY", "{row}");
    assert_eq!(row["actor"]["id"], key_id(app, key).await, "{row}");
    assert_eq!(row["actor"]["role"], e.role, "{row}");
    assert_eq!(row["outcome"], e.outcome, "{row}: {body}");
    assert_eq!(row["replayed"], e.replayed, "{row}");
    assert_eq!(strings(&row["targets"]), e.targets, "{row}");
    assert_eq!(row["at"], "2026-01-31T12:00:00+00:00", "{row}");
    assert!(row["id"].as_str().unwrap().starts_with("aud_"), "{row}");
    body
}

fn ok(operation: &'static str, role: &'static str, targets: Vec<String>) -> Expect<'static> {
    Expect {
        operation,
        role,
        outcome: "OK",
        targets,
        replayed: false,
    }
}

fn refs(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn at(body: &Value, path: &[&str]) -> String {
    let mut v = &body["data"];
    for p in path {
        v = &v[*p];
    }
    v.as_str()
        .unwrap_or_else(|| panic!("{path:?} in {body}"))
        .to_owned()
}

#[tokio::test]
async fn each_mutation_leaves_one_row_and_no_secret() {
    let app = TestApp::spawn().await;
    let admin = app.admin_key.clone();
    let write = app.key(Role::Write).await;
    let (admin_id, write_id) = (key_id(&app, &admin).await, key_id(&app, &write).await);

    // Keys made outside any request: the bootstrap key, and the WRITE key
    // (created through the service, as the command line does).
    let start = entries(&app, &admin, json!({})).await;
    assert_eq!(start.len(), 2, "{start:#?}");
    for (row, operation, target) in [
        (&start[1], "bootstrap", &admin_id),
        (&start[0], "createApiKey", &write_id),
    ] {
        assert_eq!(
            row["actor"],
            json!({"kind": "SYSTEM", "id": null, "role": null})
        );
        assert_eq!(row["operation"], operation);
        assert_eq!(strings(&row["targets"]), [target.as_str()]);
        assert_eq!(row["outcome"], "OK");
    }

    run_and_check(&app, &admin, CREATE_CREDIT_SYSTEM, json!({}), |_| {
        ok("createCreditSystem", "ADMIN", refs(&["key=tokens"]))
    })
    .await;
    run_and_check(&app, &write, CREATE_CUSTOMER, json!({"ext": "acme"}), |b| {
        let id = at(b, &["createCustomer", "customer", "id"]);
        ok(
            "createCustomer",
            "WRITE",
            vec!["externalId=acme".into(), id],
        )
    })
    .await;
    let grant_vars = json!({"amount": "100", "key": "grant-1"});
    let grant_refs = refs(&[
        "customer.externalId=acme",
        "creditSystem.key=tokens",
        "idempotencyKey=grant-1",
    ]);
    run_and_check(&app, &admin, GRANT, grant_vars.clone(), |b| {
        let mut targets = grant_refs.clone();
        targets.push(at(b, &["grantCredits", "grant", "id"]));
        targets.push(at(b, &["grantCredits", "entry", "id"]));
        ok("grantCredits", "ADMIN", targets)
    })
    .await;
    // A replay: recorded, marked, with the targets its arguments named.
    run_and_check(&app, &admin, GRANT, grant_vars, |_| Expect {
        replayed: true,
        ..ok("grantCredits", "ADMIN", grant_refs.clone())
    })
    .await;
    run_and_check(
        &app,
        &write,
        CONSUME,
        json!({"amount": "12.5", "key": "use-1"}),
        |b| {
            let mut targets = refs(&[
                "customer.externalId=acme",
                "creditSystem.key=tokens",
                "idempotencyKey=use-1",
            ]);
            targets.push(at(b, &["consumeCredits", "entry", "id"]));
            ok("consumeCredits", "WRITE", targets)
        },
    )
    .await;

    let created = run_and_check(
        &app,
        &admin,
        r#"mutation { createApiKey(input: {role: READ, name: "dashboard"}) { apiKey { id } secret } }"#,
        json!({}),
        |b| ok("createApiKey", "ADMIN", vec![at(b, &["createApiKey", "apiKey", "id"])]),
    )
    .await;
    let new_key_id = at(&created, &["createApiKey", "apiKey", "id"]);
    let new_key_secret = at(&created, &["createApiKey", "secret"]);
    run_and_check(
        &app,
        &admin,
        "mutation($id: ID!) { revokeApiKey(input: {id: $id}) { apiKey { active } } }",
        json!({"id": new_key_id}),
        |_| ok("revokeApiKey", "ADMIN", vec![new_key_id.clone()]),
    )
    .await;

    let endpoint = run_and_check(
        &app,
        &admin,
        r#"mutation { createWebhookEndpoint(input: {url: "https://hooks.example.com/credits?token=abc", events: ["credits.granted"]}) { endpoint { id } secret } }"#,
        json!({}),
        |b| {
            ok(
                "createWebhookEndpoint",
                "ADMIN",
                vec![at(b, &["createWebhookEndpoint", "endpoint", "id"])],
            )
        },
    )
    .await;
    let endpoint_id = at(&endpoint, &["createWebhookEndpoint", "endpoint", "id"]);
    let first_webhook_secret = at(&endpoint, &["createWebhookEndpoint", "secret"]);
    let rotated = run_and_check(
        &app,
        &admin,
        "mutation($id: ID!) { rotateWebhookSecret(input: {endpoint: $id}) { secret } }",
        json!({"id": endpoint_id}),
        |_| ok("rotateWebhookSecret", "ADMIN", vec![endpoint_id.clone()]),
    )
    .await;
    let second_webhook_secret = at(&rotated, &["rotateWebhookSecret", "secret"]);

    let token = run_and_check(
        &app,
        &write,
        r#"mutation { createCustomerToken(customer: {externalId: "acme"}, ttlSeconds: 600) { token } }"#,
        json!({}),
        |_| ok("createCustomerToken", "WRITE", refs(&["customer.externalId=acme"])),
    )
    .await;
    let token = at(&token, &["createCustomerToken", "token"]);
    run_and_check(
        &app,
        &admin,
        "mutation { rotateCustomerTokenSecret }",
        json!({}),
        |_| ok("rotateCustomerTokenSecret", "ADMIN", vec![]),
    )
    .await;

    // No stored column of any row holds a secret (nor the secret half of
    // a key, nor a token's signature), nor the webhook URL.
    let secrets = [
        new_key_secret.as_str(),
        new_key_secret.rsplit('_').next().unwrap(),
        app.admin_key.as_str(),
        app.admin_key.rsplit('_').next().unwrap(),
        write.as_str(),
        first_webhook_secret.as_str(),
        second_webhook_secret.as_str(),
        token.as_str(),
        token.rsplit('.').next().unwrap(),
        "hooks.example.com",
        "whsec_",
        "ck_live_",
    ];
    let rows = audit_log::Entity::find()
        .all(app.t.db.reader())
        .await
        .unwrap();
    assert_eq!(rows.len(), 13);
    for row in &rows {
        let stored = format!("{row:?}");
        for secret in secrets {
            assert!(!stored.contains(secret), "{secret:?} in {stored}");
        }
    }
    app.verify_all().await;
}

/// Rows the refused mutations must not have written.
async fn counts(app: &TestApp) -> [u64; 3] {
    let db = app.t.db.reader();
    [
        ledger_entry::Entity::find().count(db).await.unwrap(),
        credit_grant::Entity::find().count(db).await.unwrap(),
        idempotency_record::Entity::find().count(db).await.unwrap(),
    ]
}

#[tokio::test]
async fn refused_mutations_leave_their_code_and_change_nothing() {
    let app = TestApp::spawn().await;
    let (admin, write, read) = (
        app.admin_key.clone(),
        app.key(Role::Write).await,
        app.key(Role::Read).await,
    );
    app.ok(&admin, CREATE_CREDIT_SYSTEM, json!({})).await;
    app.ok(&admin, CREATE_CUSTOMER, json!({"ext": "acme"}))
        .await;
    app.ok(&admin, GRANT, json!({"amount": "10", "key": "g-1"}))
        .await;
    let before = counts(&app).await;
    let admin_id = key_id(&app, &admin).await;

    let refused = |operation: &'static str, role: &'static str, outcome: &'static str| {
        move |_: &Value| Expect {
            operation,
            role,
            outcome,
            targets: vec![],
            replayed: false,
        }
    };
    let grant_refs = refs(&[
        "customer.externalId=acme",
        "creditSystem.key=tokens",
        "idempotencyKey=g-2",
    ]);
    // A WRITE key may not grant.
    run_and_check(
        &app,
        &write,
        GRANT,
        json!({"amount": "10", "key": "g-2"}),
        |b| {
            assert_eq!(code(b), "FORBIDDEN");
            Expect {
                targets: grant_refs.clone(),
                ..refused("grantCredits", "WRITE", "FORBIDDEN")(b)
            }
        },
    )
    .await;
    // A READ key's attempt is recorded too.
    run_and_check(
        &app,
        &read,
        CONSUME,
        json!({"amount": "1", "key": "u-1"}),
        |b| {
            assert_eq!(code(b), "FORBIDDEN");
            Expect {
                targets: refs(&[
                    "customer.externalId=acme",
                    "creditSystem.key=tokens",
                    "idempotencyKey=u-1",
                ]),
                ..refused("consumeCredits", "READ", "FORBIDDEN")(b)
            }
        },
    )
    .await;
    // Invalid input.
    run_and_check(
        &app,
        &admin,
        GRANT,
        json!({"amount": "-5", "key": "g-2"}),
        |b| {
            assert_eq!(code(b), "VALIDATION");
            Expect {
                targets: grant_refs.clone(),
                ..refused("grantCredits", "ADMIN", "VALIDATION")(b)
            }
        },
    )
    .await;
    // An id of the wrong kind, refused by the resolver.
    run_and_check(
        &app,
        &admin,
        "mutation($id: ID!) { revokeApiKey(input: {id: $id}) { apiKey { id } } }",
        json!({"id": "cus_0193c5f0a1b27c3d8e9f0a1b2c3d4e5f"}),
        |b| {
            assert_eq!(code(b), "VALIDATION");
            Expect {
                targets: refs(&["cus_0193c5f0a1b27c3d8e9f0a1b2c3d4e5f"]),
                ..refused("revokeApiKey", "ADMIN", "VALIDATION")(b)
            }
        },
    )
    .await;
    // More than the balance.
    run_and_check(
        &app,
        &write,
        CONSUME,
        json!({"amount": "1000", "key": "u-2"}),
        |b| {
            assert_eq!(code(b), "INSUFFICIENT_CREDITS");
            Expect {
                targets: refs(&[
                    "customer.externalId=acme",
                    "creditSystem.key=tokens",
                    "idempotencyKey=u-2",
                ]),
                ..refused("consumeCredits", "WRITE", "INSUFFICIENT_CREDITS")(b)
            }
        },
    )
    .await;
    // The tenant's last ADMIN key.
    run_and_check(
        &app,
        &admin,
        "mutation($id: ID!) { revokeApiKey(input: {id: $id}) { apiKey { id } } }",
        json!({"id": admin_id}),
        |b| {
            assert_eq!(code(b), "CONFLICT");
            Expect {
                targets: vec![admin_id.clone()],
                ..refused("revokeApiKey", "ADMIN", "CONFLICT")(b)
            }
        },
    )
    .await;
    assert_eq!(counts(&app).await, before);

    // Only ADMIN reads the log; a customer token can't either.
    for key in [&write, &read] {
        let (_, body) = app.gql(Some(key), LOG, json!({})).await;
        assert_eq!(code(&body), "FORBIDDEN", "{body}");
    }
    let token = app
        .ok(
            &write,
            r#"mutation { createCustomerToken(customer: {externalId: "acme"}, ttlSeconds: 600) { token } }"#,
            json!({}),
        )
        .await["createCustomerToken"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, body) = app.gql(Some(&token), LOG, json!({})).await;
    assert_eq!(code(&body), "FORBIDDEN", "{body}");
    // A customer token's mutations are refused before they run: no row.
    let total = entries(&app, &admin, json!({})).await.len();
    let (_, body) = app
        .gql(Some(&token), CONSUME, json!({"amount": "1", "key": "t-1"}))
        .await;
    assert_eq!(code(&body), "FORBIDDEN", "{body}");
    assert_eq!(entries(&app, &admin, json!({})).await.len(), total);
    app.verify_all().await;
}

#[tokio::test]
async fn the_log_is_per_tenant_paged_and_filtered() {
    let app = TestApp::spawn().await;
    let admin = app.admin_key.clone();
    let (_, other) = app.other_tenant("other").await;
    app.ok(&admin, CREATE_CREDIT_SYSTEM, json!({})).await;
    for i in 0..5 {
        app.ok(&admin, CREATE_CUSTOMER, json!({"ext": format!("c-{i}")}))
            .await;
    }
    app.clock.advance(Duration::hours(1));
    app.ok(&admin, CREATE_CUSTOMER, json!({"ext": "acme"}))
        .await;
    app.ok(&admin, GRANT, json!({"amount": "5", "key": "g-1"}))
        .await;
    let (_, refused) = app
        .gql(Some(&admin), CREATE_CUSTOMER, json!({"ext": "bad\nid"}))
        .await;
    assert_eq!(code(&refused), "VALIDATION");

    // bootstrap + 9 mutations; the other tenant's key is not ours.
    let all = entries(&app, &admin, json!({})).await;
    assert_eq!(all.len(), 10, "{all:#?}");
    let theirs = entries(&app, &other, json!({})).await;
    assert_eq!(theirs.len(), 1, "{theirs:#?}");
    assert_eq!(theirs[0]["actor"]["kind"], "SYSTEM");
    let admin_id = key_id(&app, &admin).await;
    assert!(
        entries(&app, &other, json!({"actor": admin_id}))
            .await
            .is_empty()
    );

    // Pages of 3, newest first, cover everything once.
    let mut seen = Vec::new();
    let mut after = Value::Null;
    loop {
        let data = app
            .ok(&admin, LOG, json!({"first": 3, "after": after}))
            .await;
        let page = &data["auditLog"];
        for e in page["edges"].as_array().unwrap() {
            seen.push(e["node"].clone());
        }
        if !page["pageInfo"]["hasNextPage"].as_bool().unwrap() {
            break;
        }
        after = page["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(seen, all);
    assert_eq!(all[0]["outcome"], "VALIDATION");
    assert_eq!(all[9]["operation"], "bootstrap");
    for first in [0, 201] {
        let (_, body) = app.gql(Some(&admin), LOG, json!({"first": first})).await;
        assert_eq!(code(&body), "VALIDATION", "{body}");
    }

    // Filters.
    let count = |filter: Value| {
        let app = &app;
        let admin = admin.clone();
        async move { entries(app, &admin, filter).await.len() }
    };
    assert_eq!(count(json!({"operation": "createCustomer"})).await, 7);
    assert_eq!(count(json!({"actor": admin_id})).await, 9);
    assert_eq!(count(json!({"outcome": "VALIDATION"})).await, 1);
    assert_eq!(
        count(json!({"outcome": "OK", "operation": "createCustomer"})).await,
        6
    );
    assert_eq!(count(json!({"target": "externalId=c-3"})).await, 1);
    assert_eq!(count(json!({"target": "externalId=C-3"})).await, 0);
    assert_eq!(count(json!({"target": "externalId=c-"})).await, 0);
    assert_eq!(
        count(json!({"target": "customer.externalId=acme"})).await,
        1
    );
    assert_eq!(count(json!({"since": "2026-01-31T13:00:00Z"})).await, 3);
    assert_eq!(count(json!({"until": "2026-01-31T13:00:00Z"})).await, 7);
    assert_eq!(
        count(json!({"since": "2026-01-31T12:00:00Z", "until": "2026-01-31T12:00:00.000001Z", "operation": "bootstrap"})).await,
        1
    );
    let (_, body) = app
        .gql(
            Some(&admin),
            LOG,
            json!({"filter": {"target": "x".repeat(300)}}),
        )
        .await;
    assert_eq!(code(&body), "VALIDATION", "{body}");
}

/// A change whose COMMIT fails leaves no `OK` row: the row was in its
/// transaction. A deferred foreign key, checked only at COMMIT, fails the
/// commit of one customer's creation on both databases.
#[tokio::test]
async fn a_failed_commit_leaves_no_ok_row() {
    let app = TestApp::spawn().await;
    let admin = app.admin_key.clone();
    let db = app.t.db.writer();
    let setup: &[&str] = if app.t.is_postgres() {
        &[
            "CREATE TABLE audit_test_doom (tenant_id uuid REFERENCES tenant(id) DEFERRABLE INITIALLY DEFERRED)",
            "CREATE FUNCTION audit_test_doom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
               IF NEW.external_id = 'doomed' THEN \
                 INSERT INTO audit_test_doom VALUES ('00000000-0000-0000-0000-000000000000'); \
               END IF; RETURN NEW; END $$",
            "CREATE TRIGGER audit_test_doom AFTER INSERT ON customer FOR EACH ROW EXECUTE FUNCTION audit_test_doom()",
        ]
    } else {
        &[
            "CREATE TABLE audit_test_doom (tenant_id TEXT REFERENCES tenant(id) DEFERRABLE INITIALLY DEFERRED)",
            "CREATE TRIGGER audit_test_doom AFTER INSERT ON customer WHEN NEW.external_id = 'doomed' \
             BEGIN INSERT INTO audit_test_doom VALUES ('nobody'); END",
        ]
    };
    for sql in setup {
        db.execute_unprepared(sql).await.unwrap();
    }
    let (_, body) = app
        .gql(Some(&admin), CREATE_CUSTOMER, json!({"ext": "doomed"}))
        .await;
    assert_eq!(code(&body), "INTERNAL", "{body}");
    let rows = entries(&app, &admin, json!({"operation": "createCustomer"})).await;
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(rows[0]["outcome"], "INTERNAL");
    assert_eq!(strings(&rows[0]["targets"]), ["externalId=doomed"]);
    let (_, body) = app
        .gql(
            Some(&admin),
            r#"{ customer(externalId: "doomed") { id } }"#,
            json!({}),
        )
        .await;
    assert_eq!(code(&body), "NOT_FOUND", "{body}");

    // The next mutation commits with its row as usual.
    app.ok(&admin, CREATE_CUSTOMER, json!({"ext": "fine"}))
        .await;
    let rows = entries(&app, &admin, json!({"operation": "createCustomer"})).await;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["outcome"], "OK");
}

#[tokio::test]
async fn the_table_refuses_update_and_delete() {
    let app = TestApp::spawn().await;
    let db = app.t.db.writer();
    assert_eq!(audit_log::Entity::find().count(db).await.unwrap(), 1);
    for sql in [
        "UPDATE audit_log SET outcome = 'FORGED'",
        "DELETE FROM audit_log",
    ] {
        let err = db.execute_unprepared(sql).await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    assert_eq!(audit_log::Entity::find().count(db).await.unwrap(), 1);
}
