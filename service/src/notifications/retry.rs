//! Retry schedules and outcome classification: pure functions.

use std::time::Duration;

/// Waits after failed webhook attempts 1…7: 8 attempts over about 32 hours.
pub const WEBHOOK_DELAYS: [Duration; 7] = [
    Duration::from_secs(60),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(14 * 3600),
];

/// Waits after failed email attempts 1…5: 6 attempts over about 9 hours.
pub const EMAIL_DELAYS: [Duration; 5] = [
    Duration::from_secs(60),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(6 * 3600),
];

/// The longest `Retry-After` honoured.
pub const RETRY_AFTER_MAX: Duration = Duration::from_secs(24 * 3600);

/// What to do after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Timeouts, connection errors, 5xx, 408 and 429.
    Retry,
    /// Any other answer: retrying won't change it.
    Stop,
}

pub fn classify(status: Option<u16>) -> Outcome {
    match status {
        Some(200..=299) => Outcome::Delivered,
        None | Some(408) | Some(429) | Some(500..=599) => Outcome::Retry,
        Some(_) => Outcome::Stop,
    }
}

/// The wait before the next attempt after `attempts` failed ones, with
/// ±10 % jitter (from `seed`, so it is stable for one delivery) and at least
/// the server's `Retry-After`; `None` when the schedule is spent.
pub fn next_delay(
    delays: &[Duration],
    attempts: u32,
    retry_after: Option<Duration>,
    seed: u64,
) -> Option<Duration> {
    let base = *delays.get(usize::try_from(attempts).ok()?.checked_sub(1)?)?;
    // seed → a factor in [0.9, 1.1), in thousandths.
    let permille = 900 + (seed % 200);
    let jittered = base * u32::try_from(permille).unwrap_or(1000) / 1000;
    Some(jittered.max(retry_after.unwrap_or_default().min(RETRY_AFTER_MAX)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_answers() {
        for (status, outcome) in [
            (Some(200), Outcome::Delivered),
            (Some(204), Outcome::Delivered),
            (None, Outcome::Retry),
            (Some(408), Outcome::Retry),
            (Some(429), Outcome::Retry),
            (Some(500), Outcome::Retry),
            (Some(503), Outcome::Retry),
            (Some(400), Outcome::Stop),
            (Some(404), Outcome::Stop),
            (Some(301), Outcome::Stop),
        ] {
            assert_eq!(classify(status), outcome, "{status:?}");
        }
    }

    #[test]
    fn schedule_is_finite_jittered_and_honours_retry_after() {
        let first = next_delay(&WEBHOOK_DELAYS, 1, None, 0).unwrap();
        assert_eq!(first, Duration::from_secs(54)); // 60 s × 0.9
        let first = next_delay(&WEBHOOK_DELAYS, 1, None, 199).unwrap();
        assert!(first < Duration::from_secs(66) && first > Duration::from_secs(65));
        assert_eq!(next_delay(&WEBHOOK_DELAYS, 8, None, 0), None);
        assert_eq!(next_delay(&WEBHOOK_DELAYS, 0, None, 0), None);
        let honoured = next_delay(&WEBHOOK_DELAYS, 1, Some(Duration::from_secs(600)), 0);
        assert_eq!(honoured, Some(Duration::from_secs(600)));
        let capped = next_delay(&WEBHOOK_DELAYS, 1, Some(Duration::from_secs(10 * 86400)), 0);
        assert_eq!(capped, Some(RETRY_AFTER_MAX));
        let total: Duration = WEBHOOK_DELAYS.iter().sum();
        assert!(total > Duration::from_secs(24 * 3600) && total < Duration::from_secs(36 * 3600));
    }
}
