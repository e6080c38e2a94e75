//! Period arithmetic: billing and allowance periods anchored on a
//! subscription's billing anchor. Pure functions.
//!
//! Period `n` starts at `anchor + n × interval`, always counted from the
//! anchor (never from the previous period's end), with month ends clamped:
//! anchored on Jan 31, monthly periods start Feb 28 (29 in leap years),
//! Mar 31, Apr 30, … The time of day is kept. Periods are `[start, end)`.

use chrono::{DateTime, Datelike, Duration, Months, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Interval {
    Daily,
    Weekly,
    Monthly,
    Annually,
}

impl Interval {
    pub fn as_str(self) -> &'static str {
        match self {
            Interval::Daily => "DAILY",
            Interval::Weekly => "WEEKLY",
            Interval::Monthly => "MONTHLY",
            Interval::Annually => "ANNUALLY",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "DAILY" => Some(Interval::Daily),
            "WEEKLY" => Some(Interval::Weekly),
            "MONTHLY" => Some(Interval::Monthly),
            "ANNUALLY" => Some(Interval::Annually),
            _ => None,
        }
    }
}

/// The start of period `n` (n ≥ 0).
pub fn start_of(anchor: DateTime<Utc>, interval: Interval, n: u32) -> DateTime<Utc> {
    let months = |m: u32| {
        anchor
            .checked_add_months(Months::new(m))
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    };
    match interval {
        Interval::Daily => anchor + Duration::days(i64::from(n)),
        Interval::Weekly => anchor + Duration::weeks(i64::from(n)),
        Interval::Monthly => months(n),
        Interval::Annually => months(n.saturating_mul(12)),
    }
}

/// The index of the period containing `at` (0 before or at the anchor's
/// first period).
pub fn index_at(anchor: DateTime<Utc>, interval: Interval, at: DateTime<Utc>) -> u32 {
    if at <= anchor {
        return 0;
    }
    let guess: i64 = match interval {
        Interval::Daily => (at - anchor).num_days(),
        Interval::Weekly => (at - anchor).num_weeks(),
        Interval::Monthly => {
            i64::from(at.year() - anchor.year()) * 12 + i64::from(at.month())
                - i64::from(anchor.month())
        }
        Interval::Annually => i64::from(at.year() - anchor.year()),
    };
    let mut n = guess.clamp(0, i64::from(u32::MAX - 1)) as u32;
    // The guess is off by at most one either way.
    while n > 0 && start_of(anchor, interval, n) > at {
        n -= 1;
    }
    while start_of(anchor, interval, n + 1) <= at {
        n += 1;
    }
    n
}

/// The period `[start, end)` containing `at`.
pub fn period_at(
    anchor: DateTime<Utc>,
    interval: Interval,
    at: DateTime<Utc>,
) -> (DateTime<Utc>, DateTime<Utc>) {
    let n = index_at(anchor, interval, at);
    (
        start_of(anchor, interval, n),
        start_of(anchor, interval, n + 1),
    )
}

/// A length of time in calendar terms: `P12M`, `P1Y`, `P30D`, `P2W`, `P1Y6M`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CalendarDuration {
    pub months: u32,
    pub days: u32,
}

impl CalendarDuration {
    /// Parses the date part of ISO 8601 durations (`PnYnMnWnD`).
    pub fn parse(s: &str) -> Option<Self> {
        let rest = s.strip_prefix('P')?;
        if rest.is_empty() {
            return None;
        }
        let (mut months, mut days) = (0u32, 0u32);
        let mut number = String::new();
        let mut last_rank = 0;
        for c in rest.chars() {
            if c.is_ascii_digit() {
                number.push(c);
                continue;
            }
            let n: u32 = number.parse().ok()?;
            number.clear();
            let rank = match c {
                'Y' => 1,
                'M' => 2,
                'W' => 3,
                'D' => 4,
                _ => return None,
            };
            if rank <= last_rank {
                return None;
            }
            last_rank = rank;
            match c {
                'Y' => months = months.checked_add(n.checked_mul(12)?)?,
                'M' => months = months.checked_add(n)?,
                'W' => days = days.checked_add(n.checked_mul(7)?)?,
                _ => days = days.checked_add(n)?,
            }
        }
        if !number.is_empty() || (months == 0 && days == 0) || months > 1200 || days > 36_600 {
            return None;
        }
        Some(Self { months, days })
    }

    pub fn after(self, at: DateTime<Utc>) -> DateTime<Utc> {
        at.checked_add_months(Months::new(self.months))
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
            + Duration::days(i64::from(self.days))
    }

    /// Back to ISO 8601.
    pub fn to_iso(self) -> String {
        let mut out = String::from("P");
        if self.months > 0 {
            out.push_str(&format!("{}M", self.months));
        }
        if self.days > 0 {
            out.push_str(&format!("{}D", self.days));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 9, 30, 0).unwrap()
    }

    #[test]
    fn month_ends_clamp_and_come_back() {
        let anchor = at(2027, 1, 31);
        let starts: Vec<_> = (0..14)
            .map(|n| {
                start_of(anchor, Interval::Monthly, n)
                    .date_naive()
                    .to_string()
            })
            .collect();
        assert_eq!(
            starts,
            [
                "2027-01-31",
                "2027-02-28",
                "2027-03-31",
                "2027-04-30",
                "2027-05-31",
                "2027-06-30",
                "2027-07-31",
                "2027-08-31",
                "2027-09-30",
                "2027-10-31",
                "2027-11-30",
                "2027-12-31",
                "2028-01-31",
                "2028-02-29"
            ]
        );
    }

    #[test]
    fn period_at_finds_the_containing_period() {
        let anchor = at(2027, 1, 31);
        let cases = [
            (at(2027, 1, 31), "2027-01-31", "2027-02-28"),
            (at(2027, 2, 27), "2027-01-31", "2027-02-28"),
            // The boundary instant belongs to the next period.
            (at(2027, 2, 28), "2027-02-28", "2027-03-31"),
            (at(2028, 3, 1), "2028-02-29", "2028-03-31"),
            (at(2026, 12, 1), "2027-01-31", "2027-02-28"),
        ];
        for (t, start, end) in cases {
            let (s, e) = period_at(anchor, Interval::Monthly, t);
            assert_eq!(
                (s.date_naive().to_string(), e.date_naive().to_string()),
                (start.to_string(), end.to_string()),
                "{t}"
            );
        }
        let leap = at(2028, 2, 29);
        assert_eq!(
            start_of(leap, Interval::Annually, 1)
                .date_naive()
                .to_string(),
            "2029-02-28"
        );
        assert_eq!(
            start_of(leap, Interval::Annually, 4)
                .date_naive()
                .to_string(),
            "2032-02-29"
        );
        assert_eq!(
            index_at(anchor, Interval::Daily, anchor + Duration::hours(49)),
            2
        );
        assert_eq!(
            index_at(anchor, Interval::Weekly, anchor + Duration::days(20)),
            2
        );
    }

    #[test]
    fn calendar_durations_parse_the_date_part_of_iso_8601() {
        let d = |s: &str| CalendarDuration::parse(s);
        assert_eq!(
            d("P12M"),
            Some(CalendarDuration {
                months: 12,
                days: 0
            })
        );
        assert_eq!(
            d("P1Y6M"),
            Some(CalendarDuration {
                months: 18,
                days: 0
            })
        );
        assert_eq!(
            d("P2W3D"),
            Some(CalendarDuration {
                months: 0,
                days: 17
            })
        );
        for bad in ["", "P", "12M", "P1M1Y", "PT5H", "P0D", "P1.5M", "PM"] {
            assert_eq!(d(bad), None, "{bad}");
        }
        let twelve = d("P12M").unwrap();
        assert_eq!(twelve.after(at(2027, 1, 31)), at(2028, 1, 31));
        assert_eq!(twelve.to_iso(), "P12M");
    }
}
