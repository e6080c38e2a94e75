//! The "live grant" rule, written once: a grant is *live* (spendable) at
//! `now` when it is not voided, holds credits, and `now` lies in
//! `[effective_at, expires_at)` (no `expires_at`: never expires).
//!
//! Rust asks [`Facts::is_live`]; SQL gets the same rule, piece by piece,
//! from [`GrantSql`]. The two are spelled differently, so
//! `tests/live_grant.rs` holds them equal on both databases at every
//! boundary (voided, nothing left, effective or expiring exactly at `now`
//! or 1 µs either side).

use chrono::{DateTime, Utc};
use sea_orm::Value;

/// What the rule reads of a grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    pub voided: bool,
    /// `remaining > 0`.
    pub has_credits: bool,
    pub effective_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

impl Facts {
    /// Spendable at `now`.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.has_credits && self.is_current(now)
    }

    /// Not voided and within `[effective_at, expires_at)` at `now`, whatever
    /// it holds. A spent-out grant can be current: its credits still count
    /// as granted for usage alerts, and a lapsed hold can return credits to it.
    pub fn is_current(&self, now: DateTime<Utc>) -> bool {
        !self.voided && self.is_effective(now) && self.is_unexpired(now)
    }

    /// `now` is at or after `effective_at` (before it: scheduled).
    pub fn is_effective(&self, now: DateTime<Utc>) -> bool {
        self.effective_at <= now
    }

    /// `now` is before `expires_at`.
    pub fn is_unexpired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_none_or(|e| now < e)
    }
}

/// The rule as SQL over `credit_grant` columns, with `?` placeholders.
///
/// Each method returns its text and pushes its binds onto `values` in
/// placeholder order; a statement that calls them where their text appears
/// in it (after pushing the binds before it) keeps binds and placeholders
/// in step, with no count of `?`s to keep by hand.
#[derive(Debug, Clone, Copy)]
pub struct GrantSql<'a> {
    alias: Option<&'a str>,
}

impl<'a> GrantSql<'a> {
    /// Columns of `credit_grant` as named in the statement: bare, or
    /// qualified by `alias` (`g.voided_at`).
    pub fn new(alias: Option<&'a str>) -> Self {
        Self { alias }
    }

    fn col(&self, name: &str) -> String {
        match self.alias {
            Some(alias) => format!("{alias}.{name}"),
            None => name.to_owned(),
        }
    }

    /// [`Facts::is_live`].
    pub fn live(&self, now: DateTime<Utc>, values: &mut Vec<Value>) -> String {
        let credits = format!("{} > 0", self.col("remaining_micros"));
        format!("({credits} AND {})", self.current(now, values))
    }

    /// [`Facts::is_current`].
    pub fn current(&self, now: DateTime<Utc>, values: &mut Vec<Value>) -> String {
        let effective = self.effective(now, values);
        let unexpired = self.unexpired(now, values);
        format!("({} AND {effective} AND {unexpired})", self.unvoided())
    }

    /// Not voided and not [`Facts::is_effective`]: scheduled (its credits
    /// arrive at `effective_at`).
    pub fn scheduled(&self, now: DateTime<Utc>, values: &mut Vec<Value>) -> String {
        format!(
            "({} AND NOT ({}))",
            self.unvoided(),
            self.effective(now, values)
        )
    }

    fn unvoided(&self) -> String {
        format!("{} IS NULL", self.col("voided_at"))
    }

    /// [`Facts::is_effective`].
    fn effective(&self, now: DateTime<Utc>, values: &mut Vec<Value>) -> String {
        values.push(now.into());
        format!("{} <= ?", self.col("effective_at"))
    }

    /// [`Facts::is_unexpired`].
    fn unexpired(&self, now: DateTime<Utc>, values: &mut Vec<Value>) -> String {
        values.push(now.into());
        let expires_at = self.col("expires_at");
        format!("({expires_at} IS NULL OR {expires_at} > ?)")
    }
}
