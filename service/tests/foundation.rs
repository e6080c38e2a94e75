//! Migrations, tenants and API keys against a real database (SQLite, or
//! PostgreSQL with `TEST_DATABASE_URL`).

use chrono::{TimeZone, Utc};
use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, Statement};
use service::{
    Code, DomainError, FixedClock,
    api_keys::{self, Role},
    ids::ApiKeyId,
    pagination::PageRequest,
    tenants,
    testing::TestDb,
};

fn clock() -> FixedClock {
    FixedClock::new(Utc.with_ymd_and_hms(2026, 1, 31, 12, 0, 0).unwrap())
}

async fn table_exists(t: &TestDb, table: &str) -> bool {
    let db = t.db.writer();
    let sql = if t.is_postgres() {
        format!(
            "SELECT COUNT(*) AS n FROM information_schema.tables WHERE table_schema = 'public' AND table_name = '{table}'"
        )
    } else {
        format!("SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = '{table}'")
    };
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap() == 1
}

#[tokio::test]
async fn migrations_go_up_down_and_up_again() {
    let t = TestDb::unmigrated().await;
    assert!(!t.db.pending_migrations().await.unwrap().is_empty());
    t.db.migrate().await.unwrap();
    assert!(t.db.pending_migrations().await.unwrap().is_empty());
    assert!(table_exists(&t, "api_key").await);

    Migrator::down(t.db.writer(), None).await.unwrap();
    assert!(!table_exists(&t, "api_key").await);
    assert!(!table_exists(&t, "tenant").await);

    t.db.migrate().await.unwrap();
    assert!(table_exists(&t, "tenant").await);
    // Applying again is a no-op.
    t.db.migrate().await.unwrap();
}

#[tokio::test]
async fn bootstrap_creates_the_default_tenant_once() {
    let t = TestDb::new().await;
    let clock = clock();
    let (tenant, key) = tenants::bootstrap(&t.db, &clock).await.unwrap().unwrap();
    assert_eq!(tenant.name, "default");
    assert_eq!(key.key.role, Role::Admin);
    assert!(tenants::bootstrap(&t.db, &clock).await.unwrap().is_none());

    let principal = api_keys::authenticate(&t.db, &key.secret).await.unwrap();
    assert_eq!(principal.tenant_id, tenant.id);
    assert_eq!(principal.tenant_name, "default");
    assert_eq!(principal.role, Role::Admin);
}

#[tokio::test]
async fn tenant_names_are_unique_and_validated() {
    let t = TestDb::new().await;
    let clock = clock();
    tenants::create(&t.db, &clock, "acme").await.unwrap();
    let err = tenants::create(&t.db, &clock, "acme").await.unwrap_err();
    assert_eq!(err.code(), Code::Conflict);
    let err = tenants::create(&t.db, &clock, "  ").await.unwrap_err();
    assert_eq!((err.code(), err.field()), (Code::Validation, Some("name")));
    let err = tenants::find_by_name(&t.db, "nobody").await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn keys_authenticate_until_revoked() {
    let t = TestDb::new().await;
    let clock = clock();
    let tenant = tenants::create(&t.db, &clock, "acme").await.unwrap();
    let admin = api_keys::create(&t.db, &clock, tenant.id, Role::Admin, "ops")
        .await
        .unwrap();
    let reader = api_keys::create(&t.db, &clock, tenant.id, Role::Read, "dashboard")
        .await
        .unwrap();
    assert!(reader.secret.starts_with("ck_live_"));
    assert!(
        reader
            .key
            .hint
            .ends_with(&reader.secret[reader.secret.len() - 4..])
    );
    assert_eq!(
        api_keys::authenticate(&t.db, &reader.secret)
            .await
            .unwrap()
            .role,
        Role::Read
    );

    // A key with one character changed, or someone else's id, fails.
    let mut forged = reader.secret.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == '0' { '1' } else { '0' });
    let err = api_keys::authenticate(&t.db, &forged).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    clock.advance(chrono::Duration::minutes(5));
    let revoked = api_keys::revoke(&t.db, &clock, tenant.id, ApiKeyId::from_uuid(reader.key.id))
        .await
        .unwrap();
    assert_eq!(revoked.revoked_at, Some(service::Clock::now(&clock)));
    let err = api_keys::authenticate(&t.db, &reader.secret)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    // Revoking again changes nothing.
    let again = api_keys::revoke(&t.db, &clock, tenant.id, ApiKeyId::from_uuid(reader.key.id))
        .await
        .unwrap();
    assert_eq!(again.revoked_at, revoked.revoked_at);

    // The last active ADMIN key stays.
    let err = api_keys::revoke(&t.db, &clock, tenant.id, ApiKeyId::from_uuid(admin.key.id))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Conflict);
    assert!(api_keys::authenticate(&t.db, &admin.secret).await.is_ok());
}

#[tokio::test]
async fn tenants_never_see_each_others_keys() {
    let t = TestDb::new().await;
    let clock = clock();
    let a = tenants::create(&t.db, &clock, "a").await.unwrap();
    let b = tenants::create(&t.db, &clock, "b").await.unwrap();
    let a_key = api_keys::create(&t.db, &clock, a.id, Role::Admin, "")
        .await
        .unwrap();
    for _ in 0..3 {
        api_keys::create(&t.db, &clock, b.id, Role::Read, "")
            .await
            .unwrap();
    }
    let page = PageRequest::new(Some(200), None).unwrap();
    let listed = api_keys::list(&t.db, a.id, page).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].id, a_key.key.id);
    assert_eq!(
        api_keys::list(&t.db, b.id, page).await.unwrap().items.len(),
        3
    );

    // B cannot revoke A's key: it does not exist for B.
    let err = api_keys::revoke(&t.db, &clock, b.id, ApiKeyId::from_uuid(a_key.key.id))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(api_keys::authenticate(&t.db, &a_key.secret).await.is_ok());
}

#[tokio::test]
async fn key_lists_page_newest_first_without_gaps() {
    let t = TestDb::new().await;
    let clock = clock();
    let tenant = tenants::create(&t.db, &clock, "acme").await.unwrap();
    let mut created = Vec::new();
    for i in 0..5 {
        let k = api_keys::create(&t.db, &clock, tenant.id, Role::Read, &format!("k{i}"))
            .await
            .unwrap();
        created.push(k.key.id);
    }
    created.reverse();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = api_keys::list(&t.db, tenant.id, PageRequest::new(Some(2), after).unwrap())
            .await
            .unwrap();
        seen.extend(page.items.iter().map(|k| k.id));
        after = page.items.last().map(|k| k.id);
        if !page.has_next_page {
            break;
        }
    }
    assert_eq!(seen, created);
}
