//! The pure core of spending: which grants are live, in which order they
//! are spent, and how an amount splits across them. No I/O here.

use std::cmp::Ordering;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::live;

/// What spending needs to know about a grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub id: Uuid,
    pub remaining: i64,
    pub effective_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub priority: i32,
    pub created_at: DateTime<Utc>,
    pub voided: bool,
}

impl Block {
    /// Spendable at `now` ([`live::Facts::is_live`]).
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        live::Facts {
            voided: self.voided,
            has_credits: self.remaining > 0,
            effective_at: self.effective_at,
            expires_at: self.expires_at,
        }
        .is_live(now)
    }
}

/// The spending order: soonest `expires_at` first (never-expiring last),
/// then lower `priority`, then oldest, then id (a total order, so the same
/// grants always split the same way).
pub fn spend_order(a: &Block, b: &Block) -> Ordering {
    let expiry = match (a.expires_at, b.expires_at) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    };
    expiry
        .then(a.priority.cmp(&b.priority))
        .then(a.created_at.cmp(&b.created_at))
        .then(a.id.cmp(&b.id))
}

/// How an amount is drawn: from which grants, how much each (positive), and
/// what could not be covered.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Draw {
    pub splits: Vec<(Uuid, i64)>,
    pub shortfall: i64,
}

/// Σ remaining of the live blocks.
pub fn live_total(blocks: &[Block], now: DateTime<Utc>) -> i64 {
    blocks
        .iter()
        .filter(|b| b.is_live(now))
        .map(|b| b.remaining)
        .sum()
}

/// Draws `amount` from the live blocks in spending order.
pub fn draw(blocks: &[Block], amount: i64, now: DateTime<Utc>) -> Draw {
    let mut live: Vec<&Block> = blocks.iter().filter(|b| b.is_live(now)).collect();
    live.sort_by(|a, b| spend_order(a, b));
    let mut left = amount;
    let mut splits = Vec::new();
    for block in live {
        if left == 0 {
            break;
        }
        let take = left.min(block.remaining);
        splits.push((block.id, take));
        left -= take;
    }
    Draw {
        splits,
        shortfall: left,
    }
}

/// Takes the first `amount` from `parts` in their order (a hold's splits,
/// captured front first).
pub fn take_front(parts: &[(Uuid, i64)], amount: i64) -> Vec<(Uuid, i64)> {
    let mut left = amount;
    let mut out = Vec::new();
    for &(id, part) in parts {
        if left == 0 {
            break;
        }
        let take = left.min(part);
        out.push((id, take));
        left -= take;
    }
    out
}

/// Which of a usage's draws a refund gives back: the last-drawn first (the
/// longest-lived credits), skipping what earlier refunds already returned.
pub fn refund_portions(draws: &[(Uuid, i64)], already: i64, amount: i64) -> Vec<(Uuid, i64)> {
    let mut skip = already;
    let mut left = amount;
    let mut out = Vec::new();
    for &(id, part) in draws.iter().rev() {
        let skipped = skip.min(part);
        skip -= skipped;
        let give = left.min(part - skipped);
        if give > 0 {
            out.push((id, give));
            left -= give;
        }
        if left == 0 {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};

    use super::*;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap()
    }

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn block(n: u128, remaining: i64, expires_in_days: Option<i64>, priority: i32) -> Block {
        Block {
            id: id(n),
            remaining,
            effective_at: t0() - Duration::days(30),
            expires_at: expires_in_days.map(|d| t0() + Duration::days(d)),
            priority,
            created_at: t0() - Duration::days(30) + Duration::seconds(n as i64),
            voided: false,
        }
    }

    fn order(blocks: &[Block]) -> Vec<u128> {
        draw(blocks, i64::MAX / 2, t0())
            .splits
            .iter()
            .map(|(i, _)| i.as_u128())
            .collect()
    }

    #[test]
    fn spending_order_table() {
        struct Case {
            name: &'static str,
            blocks: Vec<Block>,
            expected: Vec<u128>,
        }
        let cases = [
            Case {
                name: "soonest expiry first, never-expiring last",
                blocks: vec![
                    block(1, 5, None, 0),
                    block(2, 5, Some(30), 0),
                    block(3, 5, Some(7), 0),
                ],
                expected: vec![3, 2, 1],
            },
            Case {
                name: "expiry tie: lower priority first",
                blocks: vec![block(1, 5, Some(7), 5), block(2, 5, Some(7), 1)],
                expected: vec![2, 1],
            },
            Case {
                name: "expiry and priority tie: oldest first",
                blocks: vec![block(2, 5, Some(7), 1), block(1, 5, Some(7), 1)],
                expected: vec![1, 2],
            },
            Case {
                name: "never-expiring: priority, then oldest",
                blocks: vec![
                    block(3, 5, None, 0),
                    block(1, 5, None, 2),
                    block(2, 5, None, 0),
                ],
                expected: vec![2, 3, 1],
            },
            Case {
                name: "priority never beats an earlier expiry",
                blocks: vec![block(1, 5, Some(30), 0), block(2, 5, Some(7), 99)],
                expected: vec![2, 1],
            },
            Case {
                name: "future-effective, voided, expired and empty grants are skipped",
                blocks: vec![
                    Block {
                        effective_at: t0() + Duration::seconds(1),
                        ..block(1, 5, None, 0)
                    },
                    Block {
                        voided: true,
                        ..block(2, 5, None, 0)
                    },
                    Block {
                        expires_at: Some(t0() - Duration::seconds(1)),
                        ..block(3, 5, None, 0)
                    },
                    block(4, 0, None, 0),
                    block(5, 5, None, 0),
                ],
                expected: vec![5],
            },
            Case {
                name: "effective exactly now is spendable; expiring exactly now is not ([start, end))",
                blocks: vec![
                    Block {
                        effective_at: t0(),
                        ..block(1, 5, None, 0)
                    },
                    Block {
                        expires_at: Some(t0()),
                        ..block(2, 5, None, 0)
                    },
                ],
                expected: vec![1],
            },
        ];
        for case in cases {
            assert_eq!(order(&case.blocks), case.expected, "{}", case.name);
        }
    }

    #[test]
    fn draw_splits_across_grants_and_reports_shortfall() {
        let blocks = [block(1, 3, Some(1), 0), block(2, 10, None, 0)];
        assert_eq!(
            draw(&blocks, 5, t0()),
            Draw {
                splits: vec![(id(1), 3), (id(2), 2)],
                shortfall: 0
            }
        );
        assert_eq!(
            draw(&blocks, 20, t0()),
            Draw {
                splits: vec![(id(1), 3), (id(2), 10)],
                shortfall: 7
            }
        );
        assert_eq!(live_total(&blocks, t0()), 13);
        assert_eq!(live_total(&blocks, t0() + Duration::days(1)), 10);
    }

    #[test]
    fn captures_take_the_front_and_refunds_the_back() {
        let parts = [(id(1), 3), (id(2), 4), (id(3), 5)];
        assert_eq!(take_front(&parts, 5), vec![(id(1), 3), (id(2), 2)]);
        assert_eq!(take_front(&parts, 0), vec![]);
        assert_eq!(refund_portions(&parts, 0, 6), vec![(id(3), 5), (id(2), 1)]);
        // A second refund continues where the first stopped.
        assert_eq!(refund_portions(&parts, 6, 4), vec![(id(2), 3), (id(1), 1)]);
        assert_eq!(refund_portions(&parts, 12, 1), vec![]);
    }
}
