//! What an operator uses to check and keep the ledger (issue 14, item 8):
//! the `ledgerAudit` query, `api audit` and `api backup`.

mod common;

use std::process::Command;

use common::{TestApp, code};
use sea_orm::ConnectionTrait;
use serde_json::json;
use service::api_keys::Role;

const AUDIT: &str = "query($after: String) { ledgerAudit(first: 1, after: $after) { walletsChecked problems { walletId customerId problems } endCursor hasNextPage } }";

async fn seed(app: &TestApp) {
    app.ok(
        &app.admin_key,
        r#"mutation {
          createCreditSystem(input: {key: "t", name: "T", unitSingular: "t", unitPlural: "ts", precision: 0}) { creditSystem { id } }
          a: createCustomer(input: {externalId: "a", name: "A"}) { customer { id } }
          b: createCustomer(input: {externalId: "b", name: "B"}) { customer { id } }
          ga: grantCredits(input: {customer: {externalId: "a"}, creditSystem: {key: "t"}, amount: "10", category: PURCHASED, reason: "r", idempotencyKey: "ga"}) { grant { id } }
          gb: grantCredits(input: {customer: {externalId: "b"}, creditSystem: {key: "t"}, amount: "10", category: PURCHASED, reason: "r", idempotencyKey: "gb"}) { grant { id } }
          consumeCredits(input: {customer: {externalId: "a"}, creditSystem: {key: "t"}, amount: "3", feature: "f", idempotencyKey: "u"}) { entry { id } }
        }"#,
        json!({}),
    )
    .await;
}

#[tokio::test]
async fn the_ledger_audit_query_pages_through_wallets_and_names_broken_ones() {
    let app = TestApp::spawn().await;
    seed(&app).await;
    // Two pages of one wallet each, both sound.
    let first = app.ok(&app.admin_key, AUDIT, json!({})).await["ledgerAudit"].clone();
    assert_eq!(first["walletsChecked"], 1);
    assert_eq!(first["problems"], json!([]));
    assert_eq!(first["hasNextPage"], true);
    let second = app
        .ok(&app.admin_key, AUDIT, json!({"after": first["endCursor"]}))
        .await["ledgerAudit"]
        .clone();
    assert_eq!(second["walletsChecked"], 1);
    assert_eq!(second["hasNextPage"], false);
    // A cache edited behind the ledger's back is found.
    app.t
        .db
        .writer()
        .execute_unprepared("UPDATE wallet SET balance_micros = balance_micros + 1")
        .await
        .unwrap();
    let all = app
        .ok(
            &app.admin_key,
            "{ ledgerAudit { walletsChecked problems { walletId problems } } }",
            json!({}),
        )
        .await["ledgerAudit"]
        .clone();
    assert_eq!(all["walletsChecked"], 2);
    let broken = all["problems"].as_array().unwrap();
    assert_eq!(broken.len(), 2, "{all}");
    assert!(broken[0]["walletId"].as_str().unwrap().starts_with("wal_"));
    assert!(!broken[0]["problems"].as_array().unwrap().is_empty());
    // Operators only.
    let read = app.key(Role::Read).await;
    let (_, body) = app.gql(Some(&read), AUDIT, json!({})).await;
    assert_eq!(code(&body), "FORBIDDEN");
}

fn api(args: &[&str], database_url: &str) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_api"))
        .args(args)
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run the api binary");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_backup_of_a_running_database_restores_and_audits_clean() {
    let app = TestApp::spawn().await;
    seed(&app).await;
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.db");
    let copy_arg = copy.to_str().unwrap();
    if app.t.is_postgres() {
        // PostgreSQL is backed up with pg_dump; the command says so.
        let (status, _, stderr) = api(&["backup", copy_arg], &app.t.url);
        assert_ne!(status, 0);
        assert!(stderr.contains("pg_dump"), "{stderr}");
        let (status, stdout, _) = api(&["audit"], &app.t.url);
        assert_eq!(status, 0, "{stdout}");
        assert!(
            stdout.contains("2 wallets checked, 0 with problems"),
            "{stdout}"
        );
        return;
    }
    // The server keeps running (and writing) while the copy is taken.
    let (status, stdout, stderr) = api(&["backup", copy_arg], &app.t.url);
    assert_eq!(status, 0, "{stdout}{stderr}");
    app.ok(
        &app.admin_key,
        r#"mutation { consumeCredits(input: {customer: {externalId: "b"}, creditSystem: {key: "t"}, amount: "1", feature: "f", idempotencyKey: "later"}) { entry { id } } }"#,
        json!({}),
    )
    .await;
    // A second backup to the same file is refused rather than overwritten.
    let (status, _, stderr) = api(&["backup", copy_arg], &app.t.url);
    assert_ne!(status, 0);
    assert!(stderr.contains("already exists"), "{stderr}");
    // Restore = open the copy: it holds what was committed before it.
    let restored_url = format!("sqlite://{copy_arg}?mode=rw");
    let (status, stdout, _) = api(&["audit"], &restored_url);
    assert_eq!(status, 0, "{stdout}");
    assert!(
        stdout.contains("2 wallets checked, 0 with problems"),
        "{stdout}"
    );
    let restored = service::Db::connect(&service::db::DbConfig::new(restored_url.clone()))
        .await
        .unwrap();
    let count = |sql: &'static str| {
        let db = restored.clone();
        async move {
            db.reader()
                .query_one_raw(sea_orm::Statement::from_string(db.backend(), sql))
                .await
                .unwrap()
                .unwrap()
                .try_get_by_index::<i64>(0)
                .unwrap()
        }
    };
    assert_eq!(count("SELECT COUNT(*) FROM ledger_entry").await, 3);
    // A corrupted copy fails the audit, naming the wallet.
    restored
        .writer()
        .execute_unprepared("UPDATE wallet SET balance_micros = balance_micros + 1")
        .await
        .unwrap();
    restored.close().await.unwrap();
    let (status, stdout, _) = api(&["audit"], &restored_url);
    assert_eq!(status, 1, "{stdout}");
    assert!(stdout.contains("2 with problems"), "{stdout}");
    assert!(stdout.contains("wallet "), "{stdout}");
}
