//! The durable queue of the checks a consumption makes due for its wallet:
//! its usage-% alerts ([`super::usage`]) and its auto top-up
//! ([`crate::auto_top_up`]).
//!
//! **Where it runs.** A consumption does not check it in its own
//! transaction (that is the hot path). The dispatcher
//! ([`crate::notifications::dispatch`]) writes one `wallet_check` row per
//! wallet whose `credits.consumed` events it dispatches, in the same
//! transaction that marks them dispatched ([`request`]): once that commits,
//! the check can't be lost. Right after the commit — and on every
//! dispatcher tick, even with an empty outbox — [`run_due`] runs the due
//! checks: the wallet's usage-% alerts ([`usage::evaluate`]), then its auto
//! top-up. Both are safe to repeat (the usage state moves conditionally,
//! the open order is looked for under the wallet's lock), so a run that
//! dies halfway is simply run again.
//!
//! **Outcomes.** Done (an order, or nothing to do: no plan, no auto
//! top-up, above the trigger, an open order already): the row is deleted —
//! unless another consumption asked again while it ran, then it is due
//! again at once. Can't be priced (the plan's bounds refuse the quantity,
//! the customer or credit system is gone): the row is kept, given up, the
//! reason in `last_error`. An error (the database): the row is kept,
//! `attempts` + 1, retried after [`RETRY_DELAYS`]; when they are spent it
//! is given up, kept with its last error. A given-up row is re-armed by the
//! wallet's next consumption.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use entity::wallet_check;
use futures_util::StreamExt;
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, ExprTrait, LockBehavior, LockType, OnConflict},
};
use uuid::Uuid;

use super::{retry, usage};
use crate::{
    Clock, Db,
    auto_top_up::{TopUp, top_up},
    ids::WalletId,
    purchases::Error,
};

/// Checks run side by side (their reads go to the reader pool).
pub const CONCURRENCY: usize = 8;

/// Waits after failed runs 1…7: 8 runs over about 4 hours (±10 % jitter),
/// then the check is given up.
pub const RETRY_DELAYS: [std::time::Duration; 7] = [
    std::time::Duration::from_secs(30),
    std::time::Duration::from_secs(2 * 60),
    std::time::Duration::from_secs(10 * 60),
    std::time::Duration::from_secs(30 * 60),
    std::time::Duration::from_secs(3600),
    std::time::Duration::from_secs(3600),
    std::time::Duration::from_secs(3600),
];

/// A claimed check is not run by another runner for this long; if the
/// runner dies, the check is due again after it.
const CLAIM_LEASE: chrono::Duration = chrono::Duration::seconds(60);

/// The most characters of an error kept in `last_error`.
pub const LAST_ERROR_MAX: usize = 500;

/// Queues the checks of these (tenant, wallet) pairs, due at `now`, in the
/// caller's transaction (the dispatcher's). A wallet already queued counts
/// one more request; a given-up one is re-armed (attempts from 0, due now).
pub(crate) async fn request(
    conn: &impl ConnectionTrait,
    wallets: &[(Uuid, Uuid)],
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    use wallet_check::{Column, Entity};
    let given_up = || Expr::col((Entity, Column::GivenUpAt)).is_not_null();
    for chunk in wallets.chunks(500) {
        Entity::insert_many(chunk.iter().map(|&(tenant_id, wallet_id)| {
            wallet_check::ActiveModel {
                tenant_id: Set(tenant_id),
                wallet_id: Set(wallet_id),
                requests: Set(1),
                attempts: Set(0),
                next_attempt_at: Set(now),
                last_error: Set(None),
                given_up_at: Set(None),
                created_at: Set(now),
            }
        }))
        .on_conflict(
            OnConflict::columns([Column::TenantId, Column::WalletId])
                .value(
                    Column::Requests,
                    Expr::col((Entity, Column::Requests)).add(1),
                )
                .value(
                    Column::Attempts,
                    Expr::case(given_up(), 0).finally(Expr::col((Entity, Column::Attempts))),
                )
                .value(
                    Column::NextAttemptAt,
                    Expr::case(given_up(), now).finally(Expr::col((Entity, Column::NextAttemptAt))),
                )
                .value(
                    Column::GivenUpAt,
                    Expr::value(Option::<DateTime<Utc>>::None),
                )
                .to_owned(),
        )
        .exec_without_returning(conn)
        .await?;
    }
    Ok(())
}

/// What one [`run_due`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ran {
    /// Checks that created an automatic order.
    pub ordered: u64,
    /// Checks done with nothing to order.
    pub settled: u64,
    /// Checks that failed and will be retried.
    pub retrying: u64,
    /// Checks given up (attempts spent, or the order can't be priced).
    pub given_up: u64,
}

/// Runs at most `limit` due checks (oldest first): claims them for
/// [`CLAIM_LEASE`] in one short transaction (PostgreSQL: `FOR UPDATE SKIP
/// LOCKED`, so runners split them), evaluates their usage alerts in one
/// batch, then runs their auto top-ups, [`CONCURRENCY`] at a time, and
/// records each outcome (see the module docs). An error here is the
/// queue's own (claiming, recording); a check's failure is recorded in its
/// row, not returned.
pub async fn run_due(db: &Db, clock: &dyn Clock, limit: u64) -> Result<Ran, DbErr> {
    let checks = claim(db, clock.now(), limit).await?;
    if checks.is_empty() {
        return Ok(Ran::default());
    }
    let usage_failed = usage_alerts(db, clock, &checks).await;
    // Owned items: a stream of borrowed ones makes this future's `Send`
    // depend on a higher-ranked lifetime, which the worker's spawn refuses.
    let counted: Vec<Result<Ran, DbErr>> = futures_util::stream::iter(checks)
        .map(|c| {
            let usage_error = usage_failed.get(&c.wallet_id).cloned();
            async move {
                let fate = Fate::of(
                    usage_error,
                    top_up(db, clock, c.tenant_id, WalletId::from_uuid(c.wallet_id)).await,
                );
                if let Some(error) = fate.error() {
                    tracing::warn!(%error, wallet_id = %c.wallet_id, "wallet check failed");
                }
                finish(db, clock.now(), &c, &fate).await
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let mut ran = Ran::default();
    for one in counted {
        let one = one?;
        ran.ordered += one.ordered;
        ran.settled += one.settled;
        ran.retrying += one.retrying;
        ran.given_up += one.given_up;
    }
    Ok(ran)
}

/// Due checks, moved a lease ahead so no other runner takes them.
async fn claim(db: &Db, now: DateTime<Utc>, limit: u64) -> Result<Vec<wallet_check::Model>, DbErr> {
    use wallet_check::{Column, Entity};
    let txn = db.begin_write().await?;
    let due = Entity::find()
        .filter(Column::GivenUpAt.is_null())
        .filter(Column::NextAttemptAt.lte(now))
        .order_by_asc(Column::NextAttemptAt)
        .limit(limit)
        .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
        .all(&txn)
        .await?;
    if due.is_empty() {
        return Ok(due);
    }
    // Wallet ids are unique across tenants; the tenant filter keeps to
    // the rows read.
    Entity::update_many()
        .col_expr(Column::NextAttemptAt, Expr::value(now + CLAIM_LEASE))
        .filter(Column::TenantId.is_in(due.iter().map(|c| c.tenant_id)))
        .filter(Column::WalletId.is_in(due.iter().map(|c| c.wallet_id)))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    Ok(due)
}

/// Usage-% alerts of the claimed wallets: one batch; if it fails, each
/// wallet alone, so one wallet's failure holds back only its own check.
/// Answers the wallets whose evaluation failed, with why.
async fn usage_alerts(
    db: &Db,
    clock: &dyn Clock,
    checks: &[wallet_check::Model],
) -> HashMap<Uuid, String> {
    let wallets: Vec<(Uuid, Uuid)> = checks.iter().map(|c| (c.tenant_id, c.wallet_id)).collect();
    let mut failed = HashMap::new();
    if usage::evaluate(db, clock, &wallets).await.is_ok() {
        return failed;
    }
    for pair in wallets {
        if let Err(e) = usage::evaluate(db, clock, &[pair]).await {
            failed.insert(pair.1, format!("usage alerts: {}", describe(&e)));
        }
    }
    failed
}

/// What a check's run comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fate {
    /// Nothing left to do (`ordered`: an automatic order was created).
    Done { ordered: bool },
    /// Decided, but not done: kept as given up, with why.
    GiveUp(String),
    /// Failed: run again later.
    Retry(String),
}

impl Fate {
    /// A run's fate from its usage alerts' error and its auto top-up's
    /// result: any error is a retry (both are safe to repeat); an order
    /// that can't be priced is given up.
    fn of(usage_error: Option<String>, top_up: Result<TopUp, Error>) -> Self {
        match (usage_error, top_up) {
            (_, Err(e)) => Fate::Retry(format!("auto top-up: {}", describe(&e))),
            (Some(e), _) => Fate::Retry(e),
            (None, Ok(TopUp::Unpriced(reason))) => {
                Fate::GiveUp(format!("auto top-up can't be priced: {reason}"))
            }
            (None, Ok(TopUp::Ordered)) => Fate::Done { ordered: true },
            (None, Ok(TopUp::Nothing)) => Fate::Done { ordered: false },
        }
    }

    fn error(&self) -> Option<&str> {
        match self {
            Fate::Done { .. } => None,
            Fate::GiveUp(e) | Fate::Retry(e) => Some(e),
        }
    }
}

/// When a check that failed `attempts` times runs next: `None`, give up.
fn next_attempt_at(now: DateTime<Utc>, attempts: i32, wallet_id: Uuid) -> Option<DateTime<Utc>> {
    let delay = retry::next_delay(
        &RETRY_DELAYS,
        u32::try_from(attempts).ok()?,
        None,
        wallet_id.as_u64_pair().1,
    )?;
    Some(now + chrono::Duration::from_std(delay).ok()?)
}

/// Records a run's fate in its row; answers it counted.
async fn finish(
    db: &Db,
    now: DateTime<Utc>,
    check: &wallet_check::Model,
    fate: &Fate,
) -> Result<Ran, DbErr> {
    use wallet_check::{Column, Entity};
    let this = || {
        Entity::update_many()
            .filter(Column::TenantId.eq(check.tenant_id))
            .filter(Column::WalletId.eq(check.wallet_id))
    };
    // Done or given up only if no consumption asked again meanwhile.
    let unchanged = Column::Requests.eq(check.requests);
    let (counted, settled) = match fate {
        Fate::Done { ordered } => {
            let counted = Ran {
                ordered: u64::from(*ordered),
                settled: u64::from(!*ordered),
                ..Ran::default()
            };
            let deleted = Entity::delete_many()
                .filter(Column::TenantId.eq(check.tenant_id))
                .filter(Column::WalletId.eq(check.wallet_id))
                .filter(unchanged)
                .exec(db.writer())
                .await?
                .rows_affected;
            (counted, deleted)
        }
        Fate::GiveUp(reason) => {
            let given_up = this()
                .col_expr(Column::GivenUpAt, Expr::value(now))
                .col_expr(Column::NextAttemptAt, Expr::value(now))
                .col_expr(Column::LastError, Expr::value(bounded(reason)))
                .filter(unchanged)
                .exec(db.writer())
                .await?
                .rows_affected;
            (
                Ran {
                    given_up: 1,
                    ..Ran::default()
                },
                given_up,
            )
        }
        Fate::Retry(error) => {
            let attempts = check.attempts.saturating_add(1);
            let next = next_attempt_at(now, attempts, check.wallet_id);
            let given_up = next.is_none();
            this()
                .col_expr(Column::Attempts, Expr::value(attempts))
                .col_expr(Column::NextAttemptAt, Expr::value(next.unwrap_or(now)))
                .col_expr(Column::LastError, Expr::value(bounded(error)))
                .col_expr(Column::GivenUpAt, Expr::value(given_up.then_some(now)))
                .exec(db.writer())
                .await?;
            return Ok(Ran {
                retrying: u64::from(!given_up),
                given_up: u64::from(given_up),
                ..Ran::default()
            });
        }
    };
    if settled == 0 {
        // Asked again while it ran (its balance may have moved since it
        // was read): due again at once.
        this()
            .col_expr(Column::NextAttemptAt, Expr::value(now))
            .exec(db.writer())
            .await?;
    }
    Ok(counted)
}

/// An error with its causes (`a: b: c`), at most [`LAST_ERROR_MAX`]
/// characters.
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    bounded(&text)
}

fn bounded(text: &str) -> String {
    text.chars().take(LAST_ERROR_MAX).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_up_to_an_hour_then_give_up() {
        let now = DateTime::<Utc>::UNIX_EPOCH;
        let id = Uuid::nil(); // seed 0: the shortest jitter (× 0.9)
        let waits: Vec<Option<i64>> = (1..=9)
            .map(|n| next_attempt_at(now, n, id).map(|at| (at - now).num_seconds()))
            .collect();
        assert_eq!(
            waits,
            [
                Some(27),
                Some(108),
                Some(540),
                Some(1620),
                Some(3240),
                Some(3240),
                Some(3240),
                None,
                None
            ]
        );
        assert_eq!(next_attempt_at(now, 0, id), None);
    }

    #[test]
    fn any_error_retries_and_only_unpriced_gives_up() {
        let db_error = || Err(Error::Db(DbErr::Custom("down".into())));
        let usage = || Some("usage alerts: down".to_owned());
        let cases = [
            (None, Ok(TopUp::Ordered), Fate::Done { ordered: true }),
            (None, Ok(TopUp::Nothing), Fate::Done { ordered: false }),
            (
                None,
                Ok(TopUp::Unpriced("too few".into())),
                Fate::GiveUp("auto top-up can't be priced: too few".into()),
            ),
            (
                None,
                db_error(),
                Fate::Retry("auto top-up: database error: Custom Error: down".into()),
            ),
            (
                usage(),
                Ok(TopUp::Ordered),
                Fate::Retry("usage alerts: down".into()),
            ),
            (
                usage(),
                Ok(TopUp::Unpriced("too few".into())),
                Fate::Retry("usage alerts: down".into()),
            ),
        ];
        for (usage_error, top_up, want) in cases {
            assert_eq!(Fate::of(usage_error, top_up), want);
        }
    }

    #[test]
    fn errors_are_kept_bounded() {
        let long = "é".repeat(LAST_ERROR_MAX + 10);
        assert_eq!(bounded(&long).chars().count(), LAST_ERROR_MAX);
    }
}
