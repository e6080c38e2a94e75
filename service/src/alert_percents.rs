//! Usage-% alert thresholds as a wallet or a plan credit configures and
//! stores them: a bounded list of percentages, kept as a JSON array of
//! decimal strings. What they trigger is [`crate::notifications::usage`];
//! the ledger (wallet options) and the catalog (plan credits) only keep them.

use rust_decimal::Decimal;
use sea_orm::DbErr;

use crate::error::{Invalid, unknown};
use crate::ids::TypedId;

/// Thresholds one list holds at most.
pub const PERCENTS_MAX: usize = 10;

/// The highest threshold a list may hold.
pub const PERCENT_MAX: Decimal = Decimal::from_parts(1000, 0, 0, false, 0);

/// Checks a threshold list given as `field`: at most [`PERCENTS_MAX`]
/// values, each greater than 0 and at most [`PERCENT_MAX`], with at most 2
/// decimal places. Answers it sorted, without repeats.
pub fn validate_percents(field: &str, percents: &[Decimal]) -> Result<Vec<Decimal>, Invalid> {
    if percents.len() > PERCENTS_MAX {
        return Err(Invalid::new(
            field,
            format!("at most {PERCENTS_MAX} thresholds"),
        ));
    }
    let mut out = Vec::with_capacity(percents.len());
    for (i, p) in percents.iter().enumerate() {
        let p = p.normalize();
        let at = format!("{field}[{i}]");
        if p <= Decimal::ZERO || p > PERCENT_MAX {
            return Err(Invalid::new(
                at,
                format!("{p} is not a percentage above 0 and at most {PERCENT_MAX}"),
            ));
        }
        if p.scale() > 2 {
            return Err(Invalid::new(at, "at most 2 decimal places"));
        }
        out.push(p);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// How a list is stored: a JSON array of decimal strings.
pub fn to_json(percents: &[Decimal]) -> serde_json::Value {
    serde_json::Value::Array(
        percents
            .iter()
            .map(|p| serde_json::Value::String(p.normalize().to_string()))
            .collect(),
    )
}

/// A stored list (`table.column` of row `id`); anything but an array of
/// decimal strings is a broken invariant. Both a wallet and a plan credit
/// keep one, so the row's id is of the caller's kind; the error names it
/// as its column stores it (the bare UUID), as every stored-value error
/// does.
pub fn from_json<T: TypedId>(
    table: &'static str,
    id: T,
    value: &serde_json::Value,
) -> Result<Vec<Decimal>, DbErr> {
    let bad = || unknown(table, "usage_alert_percents", id.uuid(), &value.to_string());
    value
        .as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|v| {
            v.as_str()
                .and_then(|s| s.parse::<Decimal>().ok())
                .ok_or_else(bad)
        })
        .collect()
}
