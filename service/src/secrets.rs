//! Secrets sealed at rest: webhook signing secrets, each tenant's
//! customer-token signing secret and the payment providers' secrets are
//! stored encrypted under a key the database does not hold, so a copy of
//! the database (a dump, a backup, a disk) does not give them away. API
//! keys need no key: only their hashes are stored.
//!
//! Two rooms: how one value is sealed and the key that seals it
//! ([`crate::sealing`], below `db`, whose handle carries the [`Sealer`];
//! its names are re-exported here), and, here, the work over the stored
//! secrets as a whole, done on a database handle:
//!
//! - at every start, [`prepare`]: the key check, sealing what is still in
//!   the clear, refusing values under another key;
//! - [`rotate`] re-seals every value under a new key, one transaction per
//!   tenant (its token secret and its endpoints' secrets), the key check
//!   last; values already under the new key are left alone, so a rotation
//!   cut short is finished by running it again with the same two keys.

use entity::{payment_intake, secrets_key_check, tenant, webhook_endpoint};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
    sea_query::{Expr, ExprTrait, LockType, OnConflict},
};
use uuid::Uuid;

pub use crate::sealing::{
    Error, KEY_LEN, KeyOrigin, ResolvedKey, SEALED_PREFIX, Sealer, SecretsKey, Slot,
    create_key_file, is_sealed, key_file_for, key_id_of, read_key_file, replace_key_file,
    resolve_key,
};
use crate::{
    Clock, Db,
    sealing::{KEY_CHECK_ID, reseal},
};

/// What the key-check row holds, sealed.
const KEY_CHECK_TEXT: &str = "credits secrets key check";
/// Rows read (and sealed) at a time when sealing plaintext.
const BATCH: u64 = 500;
/// Tenants read at a time when rotating.
const ROTATE_PAGE: u64 = 100;

/// What [`prepare`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub key_id: String,
    /// Plaintext values (from before sealing) sealed now.
    pub sealed_now: u64,
}

/// At start, with the process's key ([`Db::sealer`]):
/// 1. the key check: written (sealed under this key) if the database has
///    none yet; else it must open, or [`Error::WrongKey`];
/// 2. every plaintext secret (no `sealed:` prefix: written before this
///    version) is sealed; on SQLite the file is then rewritten (`VACUUM`,
///    WAL truncated) so the old plaintext does not linger in free pages;
/// 3. no value may be sealed under another key ([`Error::OtherKey`]: a
///    rotation cut short).
///
/// Idempotent; safe when several processes start at once.
pub async fn prepare(db: &Db, clock: &dyn Clock) -> Result<Prepared, Error> {
    let sealer = db.sealer()?;
    check_key(db, sealer, clock).await?;
    let sealed_now = seal_plaintext(db, sealer).await?;
    if sealed_now > 0 && db.backend() == DatabaseBackend::Sqlite {
        scrub_sqlite(db).await?;
    }
    refuse_other_keys(db, sealer).await?;
    Ok(Prepared {
        key_id: sealer.key_id().to_owned(),
        sealed_now,
    })
}

async fn check_key(db: &Db, sealer: &Sealer, clock: &dyn Clock) -> Result<(), Error> {
    let find = || secrets_key_check::Entity::find_by_id(KEY_CHECK_ID).one(db.writer());
    let row = match find().await? {
        Some(row) => row,
        None => {
            secrets_key_check::Entity::insert(secrets_key_check::ActiveModel {
                id: sea_orm::ActiveValue::Set(KEY_CHECK_ID),
                sealed: sea_orm::ActiveValue::Set(sealer.seal(Slot::KeyCheck, KEY_CHECK_TEXT)),
                created_at: sea_orm::ActiveValue::Set(clock.now()),
            })
            .on_conflict(
                OnConflict::column(secrets_key_check::Column::Id)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(db.writer())
            .await?;
            // Ours, or another process's that got there first.
            find()
                .await?
                .ok_or_else(|| DbErr::RecordNotFound("secrets_key_check".into()))?
        }
    };
    match sealer.open(Slot::KeyCheck, &row.sealed) {
        Ok(text) if text == KEY_CHECK_TEXT => Ok(()),
        Ok(_) => Err(Error::DoesNotOpen {
            slot: Slot::KeyCheck,
            key_id: sealer.key_id().to_owned(),
        }),
        Err(Error::UnknownKey { key_id, .. }) => Err(Error::WrongKey {
            given: sealer.key_id().to_owned(),
            stored: key_id,
        }),
        Err(e) => Err(e),
    }
}

/// A sealed column: which entity column, and the slot of a row.
#[derive(Clone, Copy)]
enum Column {
    TokenSecret,
    WebhookSecret,
    WebhookPrevious,
    PaymentSecret,
    PaymentAccessToken,
}

impl Column {
    const ALL: [Column; 5] = [
        Column::TokenSecret,
        Column::WebhookSecret,
        Column::WebhookPrevious,
        Column::PaymentSecret,
        Column::PaymentAccessToken,
    ];

    fn slot(self, row: Uuid) -> Slot {
        match self {
            Column::TokenSecret => Slot::CustomerTokenSecret { tenant_id: row },
            Column::WebhookSecret => Slot::WebhookSecret { endpoint_id: row },
            Column::WebhookPrevious => Slot::WebhookPreviousSecret { endpoint_id: row },
            Column::PaymentSecret => Slot::PaymentSecret { intake_id: row },
            Column::PaymentAccessToken => Slot::PaymentAccessToken { intake_id: row },
        }
    }

    /// `(id, value)` of up to `limit` rows whose value matches `filter`.
    async fn rows(
        self,
        conn: &impl ConnectionTrait,
        filter: impl Fn(Expr) -> Expr,
        limit: u64,
    ) -> Result<Vec<(Uuid, String)>, DbErr> {
        match self {
            Column::TokenSecret => {
                let col = tenant::Column::CustomerTokenSecret;
                tenant::Entity::find()
                    .select_only()
                    .column(tenant::Column::Id)
                    .column(col)
                    .filter(col.is_not_null())
                    .filter(filter(Expr::col((tenant::Entity, col))))
                    .order_by_asc(tenant::Column::Id)
                    .limit(limit)
                    .into_tuple()
                    .all(conn)
                    .await
            }
            Column::WebhookSecret | Column::WebhookPrevious => {
                let col = self.endpoint_column();
                webhook_endpoint::Entity::find()
                    .select_only()
                    .column(webhook_endpoint::Column::Id)
                    .column(col)
                    .filter(col.is_not_null())
                    .filter(filter(Expr::col((webhook_endpoint::Entity, col))))
                    .order_by_asc(webhook_endpoint::Column::Id)
                    .limit(limit)
                    .into_tuple()
                    .all(conn)
                    .await
            }
            Column::PaymentSecret | Column::PaymentAccessToken => {
                let col = self.intake_column();
                payment_intake::Entity::find()
                    .select_only()
                    .column(payment_intake::Column::Id)
                    .column(col)
                    .filter(col.is_not_null())
                    .filter(filter(Expr::col((payment_intake::Entity, col))))
                    .order_by_asc(payment_intake::Column::Id)
                    .limit(limit)
                    .into_tuple()
                    .all(conn)
                    .await
            }
        }
    }

    fn endpoint_column(self) -> webhook_endpoint::Column {
        match self {
            Column::WebhookPrevious => webhook_endpoint::Column::PreviousSecret,
            _ => webhook_endpoint::Column::Secret,
        }
    }

    fn intake_column(self) -> payment_intake::Column {
        match self {
            Column::PaymentAccessToken => payment_intake::Column::AccessToken,
            _ => payment_intake::Column::Secret,
        }
    }

    /// Sets row `id`'s value to `new` if it still is `old`.
    async fn replace(
        self,
        conn: &impl ConnectionTrait,
        id: Uuid,
        old: &str,
        new: String,
    ) -> Result<(), DbErr> {
        match self {
            Column::TokenSecret => {
                tenant::Entity::update_many()
                    .col_expr(tenant::Column::CustomerTokenSecret, Expr::value(new))
                    .filter(tenant::Column::Id.eq(id))
                    .filter(tenant::Column::CustomerTokenSecret.eq(old))
                    .exec(conn)
                    .await?;
            }
            Column::WebhookSecret | Column::WebhookPrevious => {
                let col = self.endpoint_column();
                webhook_endpoint::Entity::update_many()
                    .col_expr(col, Expr::value(new))
                    .filter(webhook_endpoint::Column::Id.eq(id))
                    .filter(col.eq(old))
                    .exec(conn)
                    .await?;
            }
            Column::PaymentSecret | Column::PaymentAccessToken => {
                let col = self.intake_column();
                payment_intake::Entity::update_many()
                    .col_expr(col, Expr::value(new))
                    .filter(payment_intake::Column::Id.eq(id))
                    .filter(col.eq(old))
                    .exec(conn)
                    .await?;
            }
        }
        Ok(())
    }
}

fn sealed_pattern() -> String {
    format!("{SEALED_PREFIX}%")
}

/// Seals every plaintext value, [`BATCH`] rows to a transaction.
async fn seal_plaintext(db: &Db, sealer: &Sealer) -> Result<u64, Error> {
    let mut sealed = 0u64;
    for column in Column::ALL {
        loop {
            let rows = column
                .rows(db.writer(), |value| value.not_like(sealed_pattern()), BATCH)
                .await?;
            if rows.is_empty() {
                break;
            }
            let txn = db.begin_write().await?;
            for (id, plaintext) in &rows {
                let value = sealer.seal(column.slot(*id), plaintext);
                column.replace(&txn, *id, plaintext, value).await?;
            }
            txn.commit().await?;
            sealed += rows.len() as u64;
        }
    }
    if sealed > 0 {
        tracing::info!(sealed, "sealed secrets stored in the clear before");
    }
    Ok(sealed)
}

/// Rewrites an SQLite database so plaintext that sealing replaced is not
/// left in free pages or the write-ahead log.
async fn scrub_sqlite(db: &Db) -> Result<(), Error> {
    db.writer().execute_unprepared("VACUUM").await?;
    db.writer()
        .execute_unprepared("PRAGMA wal_checkpoint(TRUNCATE)")
        .await?;
    Ok(())
}

async fn refuse_other_keys(db: &Db, sealer: &Sealer) -> Result<(), Error> {
    let ours = format!("{SEALED_PREFIX}{}:%", sealer.key_id());
    let mut count = 0u64;
    let mut example = None;
    for column in Column::ALL {
        let rows = column
            .rows(
                db.reader(),
                |value| {
                    value
                        .clone()
                        .like(sealed_pattern())
                        .and(value.not_like(ours.clone()))
                },
                BATCH,
            )
            .await?;
        count += rows.len() as u64;
        if example.is_none() {
            example = rows
                .first()
                .and_then(|(_, v)| key_id_of(v))
                .map(str::to_owned);
        }
    }
    match example {
        Some(key_id) => Err(Error::OtherKey {
            count,
            key_id,
            current: sealer.key_id().to_owned(),
        }),
        None => Ok(()),
    }
}

// ---------------------------------------------------------------- rotation

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RotateReport {
    /// Values re-sealed under the new key (plaintext ones included).
    pub resealed: u64,
    /// Values already under the new key (an earlier, interrupted run).
    pub unchanged: u64,
    pub tenants: u64,
}

/// Re-seals every secret under `new_key`; `old` opens what is sealed now.
/// One transaction per tenant (its token secret and its endpoints', rows
/// locked on PostgreSQL), the key check last. Values already under the
/// new key are left alone, so running it again finishes an interrupted
/// rotation and changes nothing after a finished one. A value under
/// neither key stops it with [`Error::UnknownKey`] (nothing of that tenant
/// changed).
pub async fn rotate(
    db: &Db,
    clock: &dyn Clock,
    old: &SecretsKey,
    new_key: &SecretsKey,
) -> Result<RotateReport, Error> {
    let sealer = Sealer::new(new_key).also_opening(old);
    // The old key must be the database's (or the rotation done already).
    if let Some(row) = secrets_key_check::Entity::find_by_id(KEY_CHECK_ID)
        .one(db.writer())
        .await?
    {
        sealer
            .open(Slot::KeyCheck, &row.sealed)
            .map_err(|e| match e {
                Error::UnknownKey { key_id, .. } => Error::WrongKey {
                    given: old.id(),
                    stored: key_id,
                },
                e => e,
            })?;
    }
    let mut report = RotateReport::default();
    let mut after: Option<Uuid> = None;
    loop {
        let mut page = tenant::Entity::find()
            .select_only()
            .column(tenant::Column::Id)
            .order_by_asc(tenant::Column::Id)
            .limit(ROTATE_PAGE);
        if let Some(after) = after {
            page = page.filter(tenant::Column::Id.gt(after));
        }
        let ids: Vec<Uuid> = page.into_tuple().all(db.writer()).await?;
        let Some(last) = ids.last().copied() else {
            break;
        };
        for tenant_id in ids {
            rotate_tenant(db, &sealer, tenant_id, &mut report).await?;
            report.tenants += 1;
        }
        after = Some(last);
    }
    let check = sealer.seal(Slot::KeyCheck, KEY_CHECK_TEXT);
    let txn = db.begin_write().await?;
    secrets_key_check::Entity::delete_by_id(KEY_CHECK_ID)
        .exec(&txn)
        .await?;
    secrets_key_check::Entity::insert(secrets_key_check::ActiveModel {
        id: sea_orm::ActiveValue::Set(KEY_CHECK_ID),
        sealed: sea_orm::ActiveValue::Set(check),
        created_at: sea_orm::ActiveValue::Set(clock.now()),
    })
    .exec_without_returning(&txn)
    .await?;
    txn.commit().await?;
    Ok(report)
}

async fn rotate_tenant(
    db: &Db,
    sealer: &Sealer,
    tenant_id: Uuid,
    report: &mut RotateReport,
) -> Result<(), Error> {
    let txn = db.begin_write().await?;
    let Some(tenant) = tenant::Entity::find_by_id(tenant_id)
        .lock(LockType::Update)
        .one(&txn)
        .await?
    else {
        return Ok(()); // deleted meanwhile
    };
    let mut values: Vec<(Column, Uuid, String)> = Vec::new();
    if let Some(secret) = tenant.customer_token_secret {
        values.push((Column::TokenSecret, tenant_id, secret));
    }
    let endpoints = webhook_endpoint::Entity::find()
        .filter(webhook_endpoint::Column::TenantId.eq(tenant_id))
        .order_by_asc(webhook_endpoint::Column::Id)
        .lock(LockType::Update)
        .all(&txn)
        .await?;
    for e in endpoints {
        values.push((Column::WebhookSecret, e.id, e.secret));
        if let Some(previous) = e.previous_secret {
            values.push((Column::WebhookPrevious, e.id, previous));
        }
    }
    let intakes = payment_intake::Entity::find()
        .filter(payment_intake::Column::TenantId.eq(tenant_id))
        .order_by_asc(payment_intake::Column::Id)
        .lock(LockType::Update)
        .all(&txn)
        .await?;
    for i in intakes {
        values.push((Column::PaymentSecret, i.id, i.secret));
        if let Some(token) = i.access_token {
            values.push((Column::PaymentAccessToken, i.id, token));
        }
    }
    for (column, id, stored) in values {
        match reseal(sealer, column.slot(id), &stored)? {
            Some(new) => {
                column.replace(&txn, id, &stored, new).await?;
                report.resealed += 1;
            }
            None => report.unchanged += 1,
        }
    }
    txn.commit().await?;
    Ok(())
}
