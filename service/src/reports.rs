//! Usage reports: where credits went, per month and by any attribution.
//! Everything is aggregate SQL (GROUP BY in the database over the
//! `(tenant_id, wallet_id, created_at)` index); nothing loads entries.
//!
//! - Months and days are the tenant's calendar (`setTimeZone`, default UTC).
//! - "Credits used" are USAGE entries (refunds show as their own REFUND
//!   entries, not netted); a breakdown can name other entry types.
//! - Without a credit system, amounts of different credit systems add up:
//!   name one to keep one unit.

use std::collections::HashMap;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use sea_orm::{ConnectionTrait, DatabaseBackend, DbErr, Value};
use uuid::Uuid;

use crate::{
    Clock, Db,
    amount::from_micros,
    error::{Code, DomainError, Invalid},
    ledger::{EntryType, read::statement},
    tenants,
};

pub const MONTHS_MAX: u32 = 24;
pub const ROWS_MAX: u32 = 200;
/// The longest range a DAY breakdown covers.
pub const DAYS_MAX: i64 = 366;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error(transparent)]
    Tenant(#[from] tenants::Error),
    #[error("database error")]
    Db(#[from] DbErr),
}

impl DomainError for Error {
    fn code(&self) -> Code {
        match self {
            Error::Invalid(_) => Code::Validation,
            Error::Tenant(e) => e.code(),
            Error::Db(_) => Code::Internal,
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            Error::Invalid(e) => Some(&e.field),
            Error::Tenant(e) => e.field(),
            Error::Db(_) => None,
        }
    }
}

/// Which wallets a report covers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scope {
    pub customer_id: Option<Uuid>,
    pub credit_system_id: Option<Uuid>,
}

impl Scope {
    fn sql(&self, values: &mut Vec<Value>) -> String {
        let mut out = String::new();
        if let Some(c) = self.customer_id {
            out.push_str(" AND w.customer_id = ?");
            values.push(c.into());
        }
        if let Some(cs) = self.credit_system_id {
            out.push_str(" AND w.credit_system_id = ?");
            values.push(cs.into());
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonthUsage {
    /// `2027-01`, in the tenant's time zone.
    pub month: String,
    /// The month's first instant (local midnight), as UTC.
    pub starts_at: DateTime<Utc>,
    pub credits: Decimal,
    pub count: i64,
    pub is_current: bool,
}

/// Local midnight of a date in `tz`, as UTC (the earliest, across a DST
/// change).
fn local_midnight(tz: Tz, date: NaiveDate) -> DateTime<Utc> {
    let naive = date.and_hms_opt(0, 0, 0).unwrap_or_default();
    match tz.from_local_datetime(&naive) {
        chrono::LocalResult::Single(t) | chrono::LocalResult::Ambiguous(t, _) => {
            t.with_timezone(&Utc)
        }
        // Midnight skipped by a DST jump: the day starts an hour later.
        chrono::LocalResult::None => tz
            .from_local_datetime(&(naive + Duration::hours(1)))
            .earliest()
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|| Utc.from_utc_datetime(&naive)),
    }
}

/// The first day of the month `back` months before `date`'s.
fn month_start(date: NaiveDate, back: u32) -> NaiveDate {
    let index = date.year() * 12 + date.month0() as i32 - back as i32;
    NaiveDate::from_ymd_opt(index.div_euclid(12), index.rem_euclid(12) as u32 + 1, 1)
        .unwrap_or(date)
}

/// Credits used and entries counted per calendar month: the current month
/// and the `months − 1` before it, oldest first. One statement.
pub async fn usage_summary(
    db: &Db,
    clock: &dyn Clock,
    tenant_id: Uuid,
    scope: Scope,
    months: u32,
) -> Result<Vec<MonthUsage>, Error> {
    if !(1..=MONTHS_MAX).contains(&months) {
        return Err(Invalid::new("months", format!("must be 1 to {MONTHS_MAX}")).into());
    }
    let tz = tenants::time_zone(db, tenant_id).await?;
    let today = clock.now().with_timezone(&tz).date_naive();
    // Month starts, oldest first, then the next month's: `months` buckets.
    let mut bounds: Vec<NaiveDate> = (0..months)
        .rev()
        .map(|back| month_start(today, back))
        .collect();
    let next = month_start(today, 0);
    let next = NaiveDate::from_ymd_opt(
        if next.month() == 12 {
            next.year() + 1
        } else {
            next.year()
        },
        next.month() % 12 + 1,
        1,
    )
    .unwrap_or(next);
    bounds.push(next);
    let instants: Vec<DateTime<Utc>> = bounds.iter().map(|d| local_midnight(tz, *d)).collect();
    let mut values: Vec<Value> = Vec::new();
    let mut columns = Vec::new();
    for i in 0..months as usize {
        columns.push(format!(
            "CAST(COALESCE(SUM(CASE WHEN e.created_at >= ? AND e.created_at < ? THEN -e.amount_micros ELSE 0 END), 0) AS BIGINT) AS c{i}, \
             CAST(COALESCE(SUM(CASE WHEN e.created_at >= ? AND e.created_at < ? THEN 1 ELSE 0 END), 0) AS BIGINT) AS n{i}"
        ));
        for _ in 0..2 {
            values.push(instants[i].into());
            values.push(instants[i + 1].into());
        }
    }
    values.push(tenant_id.into());
    values.push(instants[0].into());
    values.push(instants[months as usize].into());
    let scope_sql = scope.sql(&mut values);
    let sql = format!(
        "SELECT {} FROM ledger_entry e JOIN wallet w ON w.id = e.wallet_id \
         WHERE e.tenant_id = ? AND e.entry_type = 'USAGE' AND e.created_at >= ? AND e.created_at < ?{scope_sql}",
        columns.join(", ")
    );
    let conn = db.reader();
    let row = conn
        .query_one_raw(statement(conn.get_database_backend(), &sql, values))
        .await?;
    let mut out = Vec::new();
    for i in 0..months as usize {
        let (credits, count) = match &row {
            Some(r) => (
                r.try_get::<i64>("", &format!("c{i}"))?,
                r.try_get::<i64>("", &format!("n{i}"))?,
            ),
            None => (0, 0),
        };
        out.push(MonthUsage {
            month: format!("{:04}-{:02}", bounds[i].year(), bounds[i].month()),
            starts_at: instants[i],
            credits: from_micros(credits),
            count,
            is_current: i + 1 == months as usize,
        });
    }
    Ok(out)
}

/// What a breakdown groups by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupBy {
    Feature,
    EventRef,
    UserRef,
    /// A key of the entries' free-form dimensions.
    Dimension(String),
    /// The tenant's calendar day.
    Day,
    /// The customer (its external id): the tenant-wide view.
    Customer,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakdownRow {
    /// The group (null: entries without that attribution).
    pub key: Option<String>,
    pub credits: Decimal,
    pub count: i64,
    pub average_per_use: Decimal,
}

fn dimension_key(key: &str) -> Result<&str, Invalid> {
    let ok = !key.is_empty()
        && key.len() <= 64
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(key)
    } else {
        Err(Invalid::new(
            "dimension",
            "must be 1 to 64 of A-Z a-z 0-9 _ -",
        ))
    }
}

/// Credits and entries grouped by `group_by` in `[from, to)`, largest
/// first, at most `first` rows.
#[allow(clippy::too_many_arguments)]
pub async fn usage_breakdown(
    db: &Db,
    tenant_id: Uuid,
    scope: Scope,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    group_by: &GroupBy,
    types: &[EntryType],
    first: u32,
) -> Result<Vec<BreakdownRow>, Error> {
    let from = crate::input::time("from", from)?;
    let to = crate::input::time("to", to)?;
    if to <= from {
        return Err(Invalid::new("to", "must be after `from`").into());
    }
    if !(1..=ROWS_MAX).contains(&first) {
        return Err(Invalid::new("first", format!("must be 1 to {ROWS_MAX}")).into());
    }
    if types.is_empty() {
        return Err(Invalid::new("types", "name at least one entry type").into());
    }
    let conn = db.reader();
    let backend = conn.get_database_backend();
    let mut key_values: Vec<Value> = Vec::new();
    let key = match group_by {
        GroupBy::Feature => "e.feature".to_owned(),
        GroupBy::EventRef => "e.event_ref".to_owned(),
        GroupBy::UserRef => "e.user_ref".to_owned(),
        GroupBy::Customer => "c.external_id".to_owned(),
        GroupBy::Dimension(k) => {
            let k = dimension_key(k)?;
            if backend == DatabaseBackend::Postgres {
                key_values.push(k.into());
                "(e.dimensions ->> ?)".to_owned()
            } else {
                key_values.push(format!("$.{k}").into());
                "json_extract(e.dimensions, ?)".to_owned()
            }
        }
        GroupBy::Day => {
            if to - from > Duration::days(DAYS_MAX) {
                return Err(Invalid::new(
                    "to",
                    format!("a DAY breakdown covers at most {DAYS_MAX} days"),
                )
                .into());
            }
            // UTC hours in SQL; folded into the tenant's days below.
            if backend == DatabaseBackend::Postgres {
                "to_char(e.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24')".to_owned()
            } else {
                "substr(e.created_at, 1, 13)".to_owned()
            }
        }
    };
    let mut values = key_values;
    values.push(tenant_id.into());
    values.extend(types.iter().map(|t| Value::from(t.as_str())));
    values.push(from.into());
    values.push(to.into());
    let scope_sql = scope.sql(&mut values);
    let limit = if *group_by == GroupBy::Day {
        ""
    } else {
        " LIMIT ?"
    };
    if *group_by != GroupBy::Day {
        values.push(i64::from(first).into());
    }
    let sql = format!(
        "SELECT {key} AS k, CAST(SUM(-e.amount_micros) AS BIGINT) AS credits, CAST(COUNT(*) AS BIGINT) AS n \
         FROM ledger_entry e JOIN wallet w ON w.id = e.wallet_id JOIN customer c ON c.id = w.customer_id \
         WHERE e.tenant_id = ? AND e.entry_type IN ({}) AND e.created_at >= ? AND e.created_at < ?{scope_sql} \
         GROUP BY 1 ORDER BY 2 DESC{limit}",
        vec!["?"; types.len()].join(", ")
    );
    let rows = conn.query_all_raw(statement(backend, &sql, values)).await?;
    let mut grouped: Vec<(Option<String>, i64, i64)> = Vec::new();
    for row in rows {
        grouped.push((
            row.try_get::<Option<String>>("", "k")?,
            row.try_get::<i64>("", "credits")?,
            row.try_get::<i64>("", "n")?,
        ));
    }
    if *group_by == GroupBy::Day {
        let tz = tenants::time_zone(db, tenant_id).await?;
        let mut days: HashMap<Option<String>, (i64, i64)> = HashMap::new();
        for (hour, credits, n) in grouped {
            let day = hour.as_deref().and_then(|h| {
                let date = NaiveDate::parse_from_str(h.get(0..10)?, "%Y-%m-%d").ok()?;
                let hour: u32 = h.get(11..13)?.parse().ok()?;
                let at = Utc.from_utc_datetime(&date.and_hms_opt(hour, 0, 0)?);
                Some(at.with_timezone(&tz).date_naive().to_string())
            });
            let e = days.entry(day).or_default();
            e.0 += credits;
            e.1 += n;
        }
        grouped = days.into_iter().map(|(k, (c, n))| (k, c, n)).collect();
        grouped.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        grouped.truncate(first as usize);
    }
    Ok(grouped
        .into_iter()
        .map(|(key, credits, count)| {
            let credits = from_micros(credits);
            BreakdownRow {
                key,
                credits,
                count,
                average_per_use: if count > 0 {
                    (credits / Decimal::from(count)).round_dp(6).normalize()
                } else {
                    Decimal::ZERO
                },
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_step_back_across_years() {
        let d = |y, m, day| NaiveDate::from_ymd_opt(y, m, day).unwrap();
        assert_eq!(month_start(d(2027, 2, 10), 0), d(2027, 2, 1));
        assert_eq!(month_start(d(2027, 2, 10), 2), d(2026, 12, 1));
        assert_eq!(month_start(d(2027, 1, 31), 13), d(2025, 12, 1));
    }

    #[test]
    fn local_midnights_follow_the_zone() {
        let budapest: Tz = "Europe/Budapest".parse().unwrap();
        let d = NaiveDate::from_ymd_opt(2027, 1, 1).unwrap();
        assert_eq!(
            local_midnight(budapest, d).to_rfc3339(),
            "2026-12-31T23:00:00+00:00"
        );
        let summer = NaiveDate::from_ymd_opt(2027, 7, 1).unwrap();
        assert_eq!(
            local_midnight(budapest, summer).to_rfc3339(),
            "2027-06-30T22:00:00+00:00"
        );
    }

    #[test]
    fn dimension_keys_are_plain() {
        assert!(dimension_key("style").is_ok());
        for bad in ["", "a.b", "a'b", &"x".repeat(65)] {
            assert!(dimension_key(bad).is_err(), "{bad}");
        }
    }
}
