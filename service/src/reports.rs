//! Usage reports: where credits went, per month and by any attribution.
//! Everything is aggregate SQL (GROUP BY in the database over the
//! `(tenant_id, wallet_id, created_at)` index); nothing loads entries.
//!
//! - Months, days and hours are the tenant's calendar and clock
//!   (`setTimeZone`, default UTC). Days and hours are counted in the
//!   database in UTC slices (hours, or quarter hours in a zone whose
//!   offset is not whole hours, such as Asia/Kolkata), and each slice is
//!   then put in the local day or hour it starts in: exact for every
//!   offset that is a whole number of quarter hours (all zones in use
//!   since 1972).
//! - An HOUR bucket is one real hour, named by its local start with its
//!   offset (`2026-10-25T02:00+02:00`). Where a DST change repeats a local
//!   hour, both appear (`…T02:00+02:00` and `…T02:00+01:00`); an hour
//!   skipped by a DST change has no bucket. HOUR_OF_DAY puts every hour in
//!   its local hour of the day (`00`–`23`), so on a day the clocks go back
//!   the repeated hour counts twice in its bucket.
//! - A scope is the tenant, one customer, or a customer and every customer
//!   below it ([`Customers::Subtree`]): the subtree is a recursive CTE
//!   inside the report's one statement, so its cost does not grow with
//!   the tree's depth.
//! - "Credits used" are USAGE entries (refunds show as their own REFUND
//!   entries, not netted); a breakdown can name other entry types.
//! - Without a credit system, amounts of different credit systems add up:
//!   name one to keep one unit.

use std::collections::HashMap;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Offset, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use sea_orm::{ConnectionTrait, DatabaseBackend, DbErr, Value};
use uuid::Uuid;

use crate::{
    Clock, Db,
    amount::from_micros,
    customers,
    db::statement,
    error::{Code, DomainError, Invalid},
    ids::CustomerId,
    ledger::EntryType,
    tenants,
};

pub const MONTHS_MAX: u32 = 24;
pub const ROWS_MAX: u32 = 200;
/// The longest range a DAY or HOUR_OF_DAY breakdown covers.
pub const DAYS_MAX: i64 = 366;
/// The longest range an HOUR breakdown covers, in days (744 hours).
pub const HOUR_DAYS_MAX: i64 = 31;

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

/// Whose wallets a report covers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Customers {
    /// Every customer of the tenant.
    #[default]
    All,
    /// One customer's own wallets.
    One(CustomerId),
    /// A customer's wallets and those of every customer below it.
    Subtree(CustomerId),
}

impl Customers {
    /// One customer, with its descendants or not; `None`: the tenant.
    pub fn of(customer_id: Option<CustomerId>, include_descendants: bool) -> Self {
        match customer_id {
            None => Customers::All,
            Some(id) if include_descendants => Customers::Subtree(id),
            Some(id) => Customers::One(id),
        }
    }
}

/// Which wallets a report covers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scope {
    pub customers: Customers,
    pub credit_system_id: Option<Uuid>,
}

impl Scope {
    /// ` AND …` conditions on the wallet `w`, their values appended in
    /// placeholder order.
    pub(crate) fn sql(&self, tenant_id: Uuid, values: &mut Vec<Value>) -> String {
        let mut out = String::new();
        match self.customers {
            Customers::All => {}
            Customers::One(c) => {
                out.push_str(" AND w.customer_id = ?");
                values.push(c.into());
            }
            Customers::Subtree(c) => {
                let (cte, cte_values) = customers::subtree_cte(tenant_id, &[c]);
                out.push_str(&format!(
                    " AND w.customer_id IN (WITH RECURSIVE {cte} SELECT id FROM subtree)"
                ));
                values.extend(cte_values);
            }
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
    let scope_sql = scope.sql(tenant_id, &mut values);
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
    /// The tenant's calendar day (`2027-01-31`).
    Day,
    /// An hour in the tenant's zone (`2027-01-31T14:00+01:00`).
    Hour,
    /// The tenant's hour of the day over the whole range (`00`–`23`).
    HourOfDay,
    /// The customer (its external id): the tenant-wide view.
    Customer,
}

/// The buckets of a time grouping, in the tenant's zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimeBucket {
    Day,
    Hour,
    HourOfDay,
}

impl TimeBucket {
    fn of(group_by: &GroupBy) -> Option<Self> {
        match group_by {
            GroupBy::Day => Some(TimeBucket::Day),
            GroupBy::Hour => Some(TimeBucket::Hour),
            GroupBy::HourOfDay => Some(TimeBucket::HourOfDay),
            _ => None,
        }
    }

    /// The longest range it may cover, and its name for the message.
    fn range_max(self) -> (Duration, &'static str) {
        match self {
            TimeBucket::Day => (
                Duration::days(DAYS_MAX),
                "a DAY breakdown covers at most 366 days",
            ),
            TimeBucket::HourOfDay => (
                Duration::days(DAYS_MAX),
                "an HOUR_OF_DAY breakdown covers at most 366 days",
            ),
            TimeBucket::Hour => (
                Duration::days(HOUR_DAYS_MAX),
                "an HOUR breakdown covers at most 31 days (744 hours)",
            ),
        }
    }

    /// Pure: the bucket of the UTC instant `at` in `tz`.
    fn key(self, tz: Tz, at: DateTime<Utc>) -> String {
        let local = at.with_timezone(&tz);
        match self {
            TimeBucket::Day => local.date_naive().to_string(),
            TimeBucket::Hour => local.format("%Y-%m-%dT%H:00%:z").to_string(),
            TimeBucket::HourOfDay => format!("{:02}", local.hour()),
        }
    }
}

/// Pure: the length, in seconds, of the UTC slices the database counts
/// in, so that each lies within one local hour of `tz` throughout
/// `[from, to)`: an hour when every offset there is whole hours, else 30
/// or 15 minutes (with an offset that is not a whole number of quarter
/// hours, seen only before 1972, each quarter hour counts in the local
/// hour it starts in).
fn slice_secs(tz: Tz, from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
    let mut gcd = 3600;
    let mut at = from;
    // Offsets change at most a few times a year; looking every hour sees
    // each one (≤ 8,784 look-ups for the longest range).
    while at < to && gcd > 900 {
        let offset = i64::from(
            tz.offset_from_utc_datetime(&at.naive_utc())
                .fix()
                .local_minus_utc(),
        );
        gcd = num_gcd(gcd, offset.rem_euclid(3600));
        at += Duration::hours(1);
    }
    gcd.max(900)
}

fn num_gcd(a: i64, b: i64) -> i64 {
    if b == 0 { a } else { num_gcd(b, a % b) }
}

/// The SQL of the UTC slice number of `e.created_at` (seconds since the
/// epoch ÷ `slice`): the same number on both databases.
fn slice_sql(backend: DatabaseBackend, slice: i64) -> String {
    if backend == DatabaseBackend::Postgres {
        format!("CAST(FLOOR(EXTRACT(EPOCH FROM e.created_at) / {slice}) AS BIGINT)")
    } else {
        format!("(CAST(strftime('%s', e.created_at) AS INTEGER) / {slice})")
    }
}

/// Pure: UTC slices `(number, credits, count)` summed into the time
/// buckets they start in, largest first (ties by key), at most `first`.
fn fold_slices(
    tz: Tz,
    bucket: TimeBucket,
    slice: i64,
    slices: Vec<(Option<i64>, i64, i64)>,
    first: usize,
) -> Vec<(Option<String>, i64, i64)> {
    let mut buckets: HashMap<Option<String>, (i64, i64)> = HashMap::new();
    for (number, credits, n) in slices {
        let key = number
            .and_then(|k| Utc.timestamp_opt(k * slice, 0).single())
            .map(|at| bucket.key(tz, at));
        let e = buckets.entry(key).or_default();
        e.0 += credits;
        e.1 += n;
    }
    let mut out: Vec<(Option<String>, i64, i64)> =
        buckets.into_iter().map(|(k, (c, n))| (k, c, n)).collect();
    out.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    out.truncate(first);
    out
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
/// first (ties by key), at most `first` rows. One statement over the
/// ledger, whatever the scope (a time grouping reads the tenant's zone
/// first).
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
    if let Some(bucket) = TimeBucket::of(group_by) {
        let (max, message) = bucket.range_max();
        if to - from > max {
            return Err(Invalid::new("to", message).into());
        }
    }
    let conn = db.reader();
    let backend = conn.get_database_backend();
    let mut key_values: Vec<Value> = Vec::new();
    // For a time grouping: its buckets, the zone and the slice length.
    let mut slicing: Option<(TimeBucket, Tz, i64)> = None;
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
        GroupBy::Day | GroupBy::Hour | GroupBy::HourOfDay => {
            // UTC slices in SQL; folded into the tenant's buckets below.
            let bucket = TimeBucket::of(group_by).unwrap_or(TimeBucket::Day);
            let tz = tenants::time_zone(db, tenant_id).await?;
            let slice = slice_secs(tz, from, to);
            slicing = Some((bucket, tz, slice));
            slice_sql(backend, slice)
        }
    };
    let mut values = key_values;
    values.push(tenant_id.into());
    values.extend(types.iter().map(|t| Value::from(t.as_str())));
    values.push(from.into());
    values.push(to.into());
    let scope_sql = scope.sql(tenant_id, &mut values);
    let limit = if slicing.is_some() { "" } else { " LIMIT ?" };
    if slicing.is_none() {
        values.push(i64::from(first).into());
    }
    let sql = format!(
        "SELECT {key} AS k, CAST(SUM(-e.amount_micros) AS BIGINT) AS credits, CAST(COUNT(*) AS BIGINT) AS n \
         FROM ledger_entry e JOIN wallet w ON w.id = e.wallet_id JOIN customer c ON c.id = w.customer_id \
         WHERE e.tenant_id = ? AND e.entry_type IN ({}) AND e.created_at >= ? AND e.created_at < ?{scope_sql} \
         GROUP BY 1 ORDER BY 2 DESC, 1{limit}",
        vec!["?"; types.len()].join(", ")
    );
    let rows = conn.query_all_raw(statement(backend, &sql, values)).await?;
    let grouped: Vec<(Option<String>, i64, i64)> = match slicing {
        Some((bucket, tz, slice)) => {
            let mut slices = Vec::with_capacity(rows.len());
            for row in rows {
                slices.push((
                    row.try_get::<Option<i64>>("", "k")?,
                    row.try_get::<i64>("", "credits")?,
                    row.try_get::<i64>("", "n")?,
                ));
            }
            fold_slices(tz, bucket, slice, slices, first as usize)
        }
        None => {
            let mut grouped = Vec::with_capacity(rows.len());
            for row in rows {
                grouped.push((
                    row.try_get::<Option<String>>("", "k")?,
                    row.try_get::<i64>("", "credits")?,
                    row.try_get::<i64>("", "n")?,
                ));
            }
            grouped
        }
    };
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

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().into()
    }

    #[test]
    fn slices_fit_the_zones_offsets() {
        let zone = |z: &str| -> Tz { z.parse().unwrap() };
        let year = (utc("2027-01-01T00:00:00Z"), utc("2028-01-01T00:00:00Z"));
        for (z, secs) in [
            ("UTC", 3600),
            ("Europe/Budapest", 3600),
            ("America/Argentina/Buenos_Aires", 3600),
            ("Asia/Kolkata", 1800),
            ("Asia/Kathmandu", 900),
            ("Australia/Adelaide", 1800),
        ] {
            assert_eq!(slice_secs(zone(z), year.0, year.1), secs, "{z}");
        }
        // Lord Howe moves by 30 minutes: +10:30 in winter, +11 in summer.
        let lord_howe = zone("Australia/Lord_Howe");
        assert_eq!(slice_secs(lord_howe, year.0, year.1), 1800);
        assert_eq!(
            slice_secs(
                lord_howe,
                utc("2027-01-10T00:00:00Z"),
                utc("2027-01-20T00:00:00Z")
            ),
            3600
        );
    }

    #[test]
    fn hour_buckets_across_dst_changes() {
        let budapest: Tz = "Europe/Budapest".parse().unwrap();
        // 2026-10-25: 03:00 CEST becomes 02:00 CET; 02:xx happens twice.
        let keys: Vec<String> = [
            "2026-10-25T00:00:00Z",
            "2026-10-25T01:00:00Z",
            "2026-10-25T02:00:00Z",
        ]
        .iter()
        .map(|t| TimeBucket::Hour.key(budapest, utc(t)))
        .collect();
        assert_eq!(
            keys,
            [
                "2026-10-25T02:00+02:00",
                "2026-10-25T02:00+01:00",
                "2026-10-25T03:00+01:00"
            ]
        );
        // 2027-03-28: 02:00 CET becomes 03:00 CEST; no 02:xx bucket.
        assert_eq!(
            TimeBucket::Hour.key(budapest, utc("2027-03-28T01:00:00Z")),
            "2027-03-28T03:00+02:00"
        );
        assert_eq!(
            TimeBucket::HourOfDay.key(budapest, utc("2026-10-25T01:00:00Z")),
            "02"
        );
        assert_eq!(
            TimeBucket::Day.key(budapest, utc("2026-12-31T23:00:00Z")),
            "2027-01-01"
        );
    }

    #[test]
    fn slices_fold_into_local_buckets() {
        let kolkata: Tz = "Asia/Kolkata".parse().unwrap();
        let slice = 1800;
        let number = |t: &str| Some(utc(t).timestamp() / slice);
        // 04:00Z is 09:30 IST, 04:30Z is 10:00, 05:00Z is 10:30.
        let slices = vec![
            (number("2027-01-05T04:00:00Z"), 1, 1),
            (number("2027-01-05T04:30:00Z"), 10, 2),
            (number("2027-01-05T05:00:00Z"), 20, 3),
            (number("2027-01-06T04:30:00Z"), 5, 1),
            (None, 7, 1),
        ];
        assert_eq!(
            fold_slices(kolkata, TimeBucket::Hour, slice, slices.clone(), 10),
            vec![
                (Some("2027-01-05T10:00+05:30".to_owned()), 30, 5),
                (None, 7, 1),
                (Some("2027-01-06T10:00+05:30".to_owned()), 5, 1),
                (Some("2027-01-05T09:00+05:30".to_owned()), 1, 1),
            ]
        );
        assert_eq!(
            fold_slices(kolkata, TimeBucket::HourOfDay, slice, slices, 2),
            vec![(Some("10".to_owned()), 35, 6), (None, 7, 1)]
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
