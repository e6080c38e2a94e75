//! Exact amounts at the boundary.
//!
//! `Credits` is a decimal written as a JSON **string** (`"12.5"`,
//! `"-3"`, `"0.000001"`). JSON numbers are refused: async-graphql's own
//! `Decimal` scalar reads them through `f64`, which silently changes
//! `9007199254740993` into `9007199254740992`. Exponents, `+`, spaces and
//! more than 28 significant digits are refused too. Whether an amount fits
//! a credit system's precision is the domain's rule, checked there.

use std::str::FromStr;

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};
use rust_decimal::Decimal;

/// An exact decimal amount of credits, as a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credits(pub Decimal);

#[Scalar(name = "Credits")]
impl ScalarType for Credits {
    fn parse(value: Value) -> InputValueResult<Self> {
        match value {
            Value::String(s) => parse_decimal(&s)
                .map(Credits)
                .ok_or_else(|| InputValueError::custom(format!("not an exact decimal: {s:?}"))),
            Value::Number(_) => Err(InputValueError::custom(
                "amounts are strings (e.g. \"12.5\"), never JSON numbers",
            )),
            other => Err(InputValueError::expected_type(other)),
        }
    }

    fn is_valid(value: &Value) -> bool {
        matches!(value, Value::String(s) if parse_decimal(s).is_some())
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.normalize().to_string())
    }
}

/// An exact decimal (prices, tax rates, percents), as a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExactDecimal(pub Decimal);

#[Scalar(name = "Decimal")]
impl ScalarType for ExactDecimal {
    fn parse(value: Value) -> InputValueResult<Self> {
        Credits::parse(value)
            .map(|c| ExactDecimal(c.0))
            .map_err(InputValueError::propagate)
    }

    fn is_valid(value: &Value) -> bool {
        Credits::is_valid(value)
    }

    /// As computed: money keeps its currency's decimals (`"8000.00"`).
    fn to_value(&self) -> Value {
        Value::String(self.0.to_string())
    }
}

/// `-?digits(.digits)?`, nothing else.
fn parse_decimal(s: &str) -> Option<Decimal> {
    let unsigned = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = match unsigned.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (unsigned, None),
    };
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || frac.is_some_and(|f| !digits(f)) {
        return None;
    }
    // rust_decimal rounds past 28 fractional digits: refuse instead.
    let scale = frac.map_or(0, str::len);
    Decimal::from_str(s)
        .ok()
        .filter(|d| d.scale() as usize == scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_parse_exactly() {
        for (input, expected) in [
            ("0.000001", "0.000001"),
            ("1000000000000.5", "1000000000000.5"),
            ("9007199254740993", "9007199254740993"),
            ("-3", "-3"),
            ("12.50", "12.5"),
        ] {
            let parsed = Credits::parse(Value::String(input.into())).unwrap();
            assert_eq!(parsed.to_value(), Value::String(expected.into()), "{input}");
        }
    }

    #[test]
    fn numbers_and_odd_strings_are_refused() {
        assert!(Credits::parse(Value::Number(1.into())).is_err());
        for bad in [
            "", "1e3", "+1", " 1", "1.", ".5", "1.2.3", "abc", "NaN", "--1",
        ] {
            assert!(
                Credits::parse(Value::String(bad.into())).is_err(),
                "{bad:?} should be refused"
            );
        }
        // More significant digits than a Decimal holds.
        assert!(Credits::parse(Value::String("1".repeat(40))).is_err());
        let too_fine = format!("1.{}1", "0".repeat(28));
        assert!(Credits::parse(Value::String(too_fine)).is_err());
    }
}
