//! Exact amounts: `Decimal` in the domain, micro-credits (`i64`, 10⁻⁶) in
//! storage. Converting never rounds: an amount finer than its credit
//! system's precision is refused.

use rust_decimal::Decimal;

use crate::error::Invalid;

/// Micro-credits per credit: the finest precision a credit system may have.
pub const MICROS_PER_CREDIT: i64 = 1_000_000;
/// The finest precision (decimal places) a credit system may declare.
pub const PRECISION_MAX: u32 = 6;
/// The largest magnitude one amount may have: 2 × 10¹² credits.
pub const AMOUNT_MAX_CREDITS: i64 = 2_000_000_000_000;
/// The largest balance a wallet may hold: 4 × 10¹² credits. A write that
/// would take a wallet past it is refused (`VALIDATION` on `amount`), so a
/// balance plus any one amount always fits in i64 micro-credits (~9.2 × 10¹²
/// credits).
pub const BALANCE_MAX_CREDITS: i64 = 4_000_000_000_000;

pub fn amount_max() -> Decimal {
    Decimal::new(AMOUNT_MAX_CREDITS, 0)
}

/// Decimal → micro-credits, refusing more decimals than `precision`.
pub fn to_micros(value: Decimal, precision: u32, field: &str) -> Result<i64, Invalid> {
    let value = value.normalize();
    if value.scale() > precision {
        return Err(Invalid::new(
            field,
            format!(
                "{value} has more than {precision} decimal place{} (the credit system's precision)",
                if precision == 1 { "" } else { "s" }
            ),
        ));
    }
    if value.abs() > amount_max() {
        return Err(Invalid::new(
            field,
            format!("must be at most {} in magnitude", amount_max()),
        ));
    }
    let micros = value * Decimal::new(MICROS_PER_CREDIT, 0);
    i64::try_from(micros).map_err(|_| Invalid::new(field, "is out of range"))
}

/// Micro-credits → Decimal (exact, normalized: `1500000` → `1.5`).
pub fn from_micros(micros: i64) -> Decimal {
    Decimal::new(micros, PRECISION_MAX).normalize()
}

/// A strictly positive amount, in micro-credits.
pub fn positive_micros(value: Decimal, precision: u32, field: &str) -> Result<i64, Invalid> {
    let micros = to_micros(value, precision, field)?;
    if micros <= 0 {
        return Err(Invalid::new(field, "must be greater than 0"));
    }
    Ok(micros)
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn round_trips_awkward_values_exactly() {
        for s in [
            "0.000001",
            "0.3",
            "1000000000000.5",
            "123456789.123456",
            "-42",
        ] {
            let micros = to_micros(d(s), 6, "amount").unwrap();
            assert_eq!(from_micros(micros), d(s).normalize(), "{s}");
        }
        assert_eq!(
            to_micros(d("0.1") + d("0.2"), 1, "amount").unwrap(),
            300_000
        );
    }

    #[test]
    fn refuses_what_it_would_have_to_round() {
        let err = to_micros(d("1.05"), 1, "amount").unwrap_err();
        assert_eq!(err.field, "amount");
        assert!(to_micros(d("1.0000001"), 6, "amount").is_err());
        // Trailing zeros are not extra precision.
        assert_eq!(to_micros(d("2.500"), 1, "amount").unwrap(), 2_500_000);
        assert!(to_micros(d("5"), 0, "amount").is_ok());
    }

    #[test]
    fn bounds_magnitude_and_sign() {
        assert!(to_micros(amount_max(), 0, "amount").is_ok());
        assert!(to_micros(amount_max() + Decimal::ONE, 0, "amount").is_err());
        assert!(positive_micros(Decimal::ZERO, 0, "amount").is_err());
        assert!(positive_micros(d("-1"), 0, "amount").is_err());
    }
}
