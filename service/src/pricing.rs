//! Prices with tiers: how much a quantity of credits costs, before and after
//! tax. Pure arithmetic — no I/O, no clock, no database.
//!
//! # Tiers
//! A [`Price`] has a list of [`Tier`]s. Each tier covers the units in the
//! half-open range `(first_unit, last_unit]`; `last_unit: None` means "and
//! everything above". The first tier starts at 0 and every next tier starts
//! exactly where the previous one ends, so every quantity falls in exactly
//! one tier: with tiers `(0, 10000]` and `(10000, 50000]`, 10,000 is in the
//! first tier and 10,000.01 in the second. Only the last tier may be open;
//! if it is closed, quantities above it are refused.
//!
//! Price lists are often written in whole units instead: 1–10000,
//! 10001–50000, 50001–∞. A tier list whose first tier starts at 1 is read
//! that way: ranges are inclusive, every bound is a whole number, and each
//! tier starts one unit after the previous one ends. Such a list is read as
//! the half-open list above (`first_unit - 1`), so both spellings price
//! every quantity — fractional ones too — identically.
//!
//! # Pricing types and models
//! [`PricingType::Graduated`] prices each tier's own slice of the quantity
//! (like income tax brackets); [`PricingType::Volume`] finds the tier the
//! whole quantity falls in and prices all of it there. [`PriceModel`] says
//! what a tier's `amount` means: a price per unit, per package, a flat fee,
//! or a percent of a per-unit base price.
//!
//! # Rounding
//! Money is rounded half-up (a midpoint rounds away from zero: 0.005 →
//! 0.01, 0.015 → 0.02) to the currency's ISO 4217 minor units
//! ([`minor_units`]: 2 for EUR, 0 for JPY, 3 for KWD), and carries exactly
//! that many decimal places (8000 EUR is `8000.00`). Rounding happens at
//! three points only:
//! 1. each quote line's amount is rounded;
//! 2. the subtotal is the sum of the rounded lines, so the lines always add
//!    up to it exactly;
//! 3. the tax is `subtotal × tax_rate`, rounded; the total is
//!    `subtotal + tax`.
//!
//! The average [`Quote::unit_price`] is `subtotal ÷ quantity`, rounded
//! half-up to 6 decimal places; it is informative and never summed.

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use crate::error::Invalid;

/// Decimal places of [`Quote::unit_price`].
pub const UNIT_PRICE_DP: u32 = 6;

/// How the tiers of a price combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PricingType {
    /// Each tier prices only the units of the quantity that fall in it; the
    /// quote has one line per tier the quantity reaches.
    Graduated,
    /// The tier the whole quantity falls in prices all of it; the quote has
    /// exactly one line.
    Volume,
}

/// What a tier's `amount` means.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PriceModel {
    /// `amount` is the price of one unit.
    PerUnit,
    /// `amount` is the price of one package of `package_size` units; a
    /// started package is charged in full (1,001 units in packages of 1,000
    /// are 2 packages).
    PerPackage { package_size: Decimal },
    /// `amount` is a fixed price for reaching the tier, however many of its
    /// units are used.
    Flat,
    /// `amount` is a percent of the tier's `base`, a per-unit base price:
    /// base 0.80 and amount 90 make each unit cost 0.72. Every tier needs a
    /// `base`.
    Percentage,
}

/// One tier of a price: the units in `(first_unit, last_unit]` (or, when
/// the first tier starts at 1, the whole units `first_unit..=last_unit`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tier {
    pub first_unit: Decimal,
    /// `None`: no upper bound (only the last tier).
    pub last_unit: Option<Decimal>,
    /// Meaning depends on the [`PriceModel`]; never negative.
    pub amount: Decimal,
    /// The per-unit base price of a [`PriceModel::Percentage`] tier; unused
    /// (and refused) by the other models.
    pub base: Option<Decimal>,
}

/// A tiered price in one currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Price {
    pub pricing_type: PricingType,
    pub model: PriceModel,
    pub tiers: Vec<Tier>,
    /// ISO 4217 code, e.g. `EUR`.
    pub currency: String,
    /// A fraction: 0.27 is 27 %.
    pub tax_rate: Decimal,
}

/// What one tier charges for a quantity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuoteLine {
    /// Index into [`Price::tiers`].
    pub tier: usize,
    /// The units this line prices: the tier's slice (graduated) or the whole
    /// quantity (volume).
    pub quantity: Decimal,
    /// What each unit of this line effectively costs: the line's amount
    /// before rounding divided by its quantity. For per-unit and percentage
    /// tiers that is exactly the tier's unit price; for package and flat
    /// tiers it is carried at full `Decimal` precision, not rounded.
    pub unit_amount: Decimal,
    /// The line's amount, rounded to the currency's minor units.
    pub amount: Decimal,
}

/// The price of a quantity. `subtotal` is the sum of the lines' amounts,
/// `total` is `subtotal + tax`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quote {
    pub quantity: Decimal,
    pub subtotal: Decimal,
    pub tax: Decimal,
    pub total: Decimal,
    /// The price's currency, upper-cased.
    pub currency: String,
    /// `subtotal ÷ quantity`, rounded half-up to [`UNIT_PRICE_DP`] places.
    pub unit_price: Decimal,
    pub lines: Vec<QuoteLine>,
}

/// Checks a price: currency, tax rate, model and tiers. The error names the
/// field at fault (`tiers[2]` for the third tier).
pub fn validate(price: &Price) -> Result<(), Invalid> {
    bands(price).map(|_| ())
}

/// Prices `quantity` units (validating the price first).
pub fn quote(price: &Price, quantity: Decimal) -> Result<Quote, Invalid> {
    let bands = bands(price)?;
    if quantity <= Decimal::ZERO {
        return Err(Invalid::new("quantity", "must be greater than 0"));
    }
    if let Some(Band { to: Some(end), .. }) = bands.last()
        && quantity > *end
    {
        return Err(Invalid::new(
            "quantity",
            format!("{quantity} is above the last tier, which ends at {end}"),
        ));
    }
    let minor = minor_units(&price.currency);

    let mut lines = Vec::new();
    match price.pricing_type {
        PricingType::Graduated => {
            for band in &bands {
                if quantity <= band.from {
                    break;
                }
                let top = match band.to {
                    Some(to) if to < quantity => to,
                    _ => quantity,
                };
                lines.push(line(price, band.index, top - band.from, minor)?);
            }
        }
        PricingType::Volume => {
            // The bands cover (0, end] without gaps and the quantity is in
            // that range, so exactly one band holds it.
            if let Some(band) = bands
                .iter()
                .find(|b| quantity > b.from && b.to.is_none_or(|to| quantity <= to))
            {
                lines.push(line(price, band.index, quantity, minor)?);
            }
        }
    }

    let subtotal = lines
        .iter()
        .try_fold(money(Decimal::ZERO, minor), |sum, l| {
            sum.checked_add(l.amount)
        })
        .ok_or_else(too_large)?;
    let tax = money(
        subtotal.checked_mul(price.tax_rate).ok_or_else(too_large)?,
        minor,
    );
    let total = subtotal.checked_add(tax).ok_or_else(too_large)?;
    let unit_price = subtotal
        .checked_div(quantity)
        .ok_or_else(too_large)?
        .round_dp_with_strategy(UNIT_PRICE_DP, RoundingStrategy::MidpointAwayFromZero);

    Ok(Quote {
        quantity,
        subtotal,
        tax,
        total,
        currency: price.currency.to_ascii_uppercase(),
        unit_price,
        lines,
    })
}

/// The currency's minor units (decimal places) per ISO 4217: 0 for JPY and
/// the other currencies without subunits, 3 for BHD, IQD, JOD, KWD, LYD, OMR
/// and TND, 2 for every other code. Case-insensitive.
pub fn minor_units(currency: &str) -> u32 {
    match currency.to_ascii_uppercase().as_str() {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        _ => 2,
    }
}

/// A tier read as the half-open range `(from, to]`, whichever convention it
/// was written in.
#[derive(Debug)]
struct Band {
    /// Index into [`Price::tiers`].
    index: usize,
    from: Decimal,
    to: Option<Decimal>,
}

/// Validates the price and reads its tiers as half-open bands.
fn bands(price: &Price) -> Result<Vec<Band>, Invalid> {
    let currency = &price.currency;
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(Invalid::new(
            "currency",
            "must be a 3-letter ISO 4217 code such as EUR",
        ));
    }
    if price.tax_rate < Decimal::ZERO || price.tax_rate > Decimal::ONE {
        return Err(Invalid::new(
            "taxRate",
            format!(
                "must be a fraction between 0 and 1 (0.27 for 27 %), not {}",
                price.tax_rate
            ),
        ));
    }
    if let PriceModel::PerPackage { package_size } = price.model
        && package_size <= Decimal::ZERO
    {
        return Err(Invalid::new(
            "packageSize",
            format!("must be greater than 0, not {package_size}"),
        ));
    }
    let Some(first) = price.tiers.first() else {
        return Err(Invalid::new("tiers", "must have at least one tier"));
    };
    let whole_units = if first.first_unit == Decimal::ZERO {
        false
    } else if first.first_unit == Decimal::ONE {
        true
    } else {
        return Err(Invalid::new(
            "tiers[0]",
            format!(
                "tier 1 starts at {}: the first tier must start at 0 \
                 (or at 1, for whole-unit tiers like 1–10000, 10001–50000)",
                first.first_unit
            ),
        ));
    };

    let last = price.tiers.len() - 1;
    let mut bands: Vec<Band> = Vec::with_capacity(price.tiers.len());
    for (index, tier) in price.tiers.iter().enumerate() {
        let field = format!("tiers[{index}]");
        let n = index + 1;
        let invalid = |message: String| Invalid::new(field.clone(), message);

        if whole_units {
            for bound in std::iter::once(tier.first_unit).chain(tier.last_unit) {
                if !bound.is_integer() {
                    return Err(invalid(format!(
                        "tier {n} has {bound} as a bound: tiers starting at 1 are whole-unit \
                         ranges (1–10000, 10001–50000, …), so every bound must be a whole number"
                    )));
                }
            }
        }
        if let Some(previous) = bands.last() {
            // Only the last band may be open, and this one is not last.
            let ends = previous.to.unwrap_or_default();
            let expected = if whole_units {
                ends.checked_add(Decimal::ONE).ok_or_else(|| {
                    invalid(format!(
                        "tier {index} ends at the largest possible quantity, \
                         so there is no room for tier {n}"
                    ))
                })?
            } else {
                ends
            };
            if tier.first_unit != expected {
                return Err(invalid(format!(
                    "tier {n} starts at {} but tier {index} ends at {}: tiers must be \
                     contiguous (tier {n} should start at {expected})",
                    tier.first_unit,
                    price.tiers[index - 1].last_unit.unwrap_or_default(),
                )));
            }
        }
        let from = if whole_units {
            tier.first_unit - Decimal::ONE
        } else {
            tier.first_unit
        };
        match tier.last_unit {
            None if index != last => {
                return Err(invalid(format!(
                    "tier {n} has no upper bound, so it must be the last tier"
                )));
            }
            Some(to) if to <= from => {
                return Err(invalid(if whole_units {
                    format!(
                        "tier {n} ends at {to}, before it starts ({})",
                        tier.first_unit
                    )
                } else {
                    format!(
                        "tier {n} ends at {to}, which is not above where it starts ({})",
                        tier.first_unit
                    )
                }));
            }
            _ => {}
        }
        if tier.amount < Decimal::ZERO {
            return Err(invalid(format!(
                "tier {n} has a negative amount ({})",
                tier.amount
            )));
        }
        match (&price.model, tier.base) {
            (PriceModel::Percentage, None) => {
                return Err(invalid(format!(
                    "tier {n} has no base price: percentage tiers charge a percent \
                     of a per-unit base price"
                )));
            }
            (PriceModel::Percentage, Some(base)) if base < Decimal::ZERO => {
                return Err(invalid(format!(
                    "tier {n} has a negative base price ({base})"
                )));
            }
            (PriceModel::Percentage, Some(_)) | (_, None) => {}
            (_, Some(_)) => {
                return Err(invalid(format!(
                    "tier {n} has a base price, which only percentage pricing uses"
                )));
            }
        }
        bands.push(Band {
            index,
            from,
            to: tier.last_unit,
        });
    }
    Ok(bands)
}

/// Prices `units` units at tier `index` of a validated price.
fn line(price: &Price, index: usize, units: Decimal, minor: u32) -> Result<QuoteLine, Invalid> {
    let tier = &price.tiers[index];
    let (exact, unit_amount) = match &price.model {
        PriceModel::PerUnit => (units.checked_mul(tier.amount), Some(tier.amount)),
        PriceModel::PerPackage { package_size } => {
            let packages = units.checked_div(*package_size).map(|p| p.ceil());
            (packages.and_then(|p| p.checked_mul(tier.amount)), None)
        }
        PriceModel::Flat => (Some(tier.amount), None),
        PriceModel::Percentage => {
            // Validated: every percentage tier has a base.
            let base = tier.base.unwrap_or_default();
            let unit = base
                .checked_mul(tier.amount)
                .and_then(|x| x.checked_div(Decimal::ONE_HUNDRED));
            (unit.and_then(|u| units.checked_mul(u)), unit)
        }
    };
    let exact = exact.ok_or_else(too_large)?;
    let unit_amount = match unit_amount {
        Some(unit) => unit,
        None => exact.checked_div(units).ok_or_else(too_large)?,
    };
    Ok(QuoteLine {
        tier: index,
        quantity: units,
        unit_amount,
        amount: money(exact, minor),
    })
}

/// Rounds half-up to `minor` decimal places and shows exactly that many.
fn money(value: Decimal, minor: u32) -> Decimal {
    let mut rounded = value.round_dp_with_strategy(minor, RoundingStrategy::MidpointAwayFromZero);
    rounded.rescale(minor);
    rounded
}

fn too_large() -> Invalid {
    Invalid::new("quantity", "is too large to price")
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn tier(first: &str, last: Option<&str>, amount: &str) -> Tier {
        Tier {
            first_unit: d(first),
            last_unit: last.map(d),
            amount: d(amount),
            base: None,
        }
    }

    fn pct_tier(first: &str, last: Option<&str>, base: &str, percent: &str) -> Tier {
        Tier {
            base: Some(d(base)),
            ..tier(first, last, percent)
        }
    }

    fn price(pricing_type: PricingType, model: PriceModel, tiers: Vec<Tier>) -> Price {
        Price {
            pricing_type,
            model,
            tiers,
            currency: "EUR".into(),
            tax_rate: Decimal::ZERO,
        }
    }

    fn package(size: &str) -> PriceModel {
        PriceModel::PerPackage {
            package_size: d(size),
        }
    }

    use PriceModel::{Flat, PerUnit, Percentage};
    use PricingType::{Graduated, Volume};

    /// The reference price list: per package of 1,000 credits.
    fn reference_packages() -> Vec<Tier> {
        vec![
            tier("0", Some("10000"), "800"),
            tier("10000", Some("50000"), "700"),
            tier("50000", Some("100000"), "650"),
            tier("100000", None, "550"),
        ]
    }

    /// The same list per credit.
    fn reference_units() -> Vec<Tier> {
        vec![
            tier("0", Some("10000"), "0.80"),
            tier("10000", Some("50000"), "0.70"),
            tier("50000", Some("100000"), "0.65"),
            tier("100000", None, "0.55"),
        ]
    }

    /// The same per-credit list in the whole-unit convention.
    fn reference_units_whole() -> Vec<Tier> {
        vec![
            tier("1", Some("10000"), "0.80"),
            tier("10001", Some("50000"), "0.70"),
            tier("50001", Some("100000"), "0.65"),
            tier("100001", None, "0.55"),
        ]
    }

    /// A quote and what it must contain. `lines` are (tier, quantity,
    /// amount); an empty list skips the line check.
    struct Case {
        name: String,
        price: Price,
        quantity: &'static str,
        subtotal: &'static str,
        unit_price: Option<&'static str>,
        lines: &'static [(usize, &'static str, &'static str)],
    }

    fn case(
        name: impl Into<String>,
        price: Price,
        quantity: &'static str,
        subtotal: &'static str,
    ) -> Case {
        Case {
            name: name.into(),
            price,
            quantity,
            subtotal,
            unit_price: None,
            lines: &[],
        }
    }

    impl Case {
        fn unit_price(mut self, unit_price: &'static str) -> Self {
            self.unit_price = Some(unit_price);
            self
        }

        fn lines(mut self, lines: &'static [(usize, &'static str, &'static str)]) -> Self {
            self.lines = lines;
            self
        }
    }

    fn run(cases: Vec<Case>) {
        for c in cases {
            let name = &c.name;
            let q = quote(&c.price, d(c.quantity)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(q.quantity, d(c.quantity), "{name}: quantity");
            assert_eq!(q.subtotal, d(c.subtotal), "{name}: subtotal");
            assert_eq!(
                q.subtotal.scale(),
                minor_units(&c.price.currency),
                "{name}: subtotal carries the currency's minor units"
            );
            let sum: Decimal = q.lines.iter().map(|l| l.amount).sum();
            assert_eq!(sum, q.subtotal, "{name}: lines add up to the subtotal");
            if c.price.tax_rate.is_zero() {
                assert_eq!(q.tax, Decimal::ZERO, "{name}: tax");
                assert_eq!(q.total, q.subtotal, "{name}: total");
            }
            if c.price.pricing_type == Volume {
                assert_eq!(q.lines.len(), 1, "{name}: volume has one line");
            }
            if let Some(unit_price) = c.unit_price {
                assert_eq!(q.unit_price, d(unit_price), "{name}: unit price");
            }
            if !c.lines.is_empty() {
                let got: Vec<(usize, Decimal, Decimal)> = q
                    .lines
                    .iter()
                    .map(|l| (l.tier, l.quantity, l.amount))
                    .collect();
                let want: Vec<(usize, Decimal, Decimal)> = c
                    .lines
                    .iter()
                    .map(|&(t, qty, a)| (t, d(qty), d(a)))
                    .collect();
                assert_eq!(got, want, "{name}: lines");
            }
        }
    }

    #[test]
    fn reference_price_list_volume() {
        let mut cases = Vec::new();
        for (model, tiers, label) in [
            (package("1000"), reference_packages(), "per package"),
            (PerUnit, reference_units(), "per unit"),
        ] {
            let p = price(Volume, model, tiers);
            let n = |s: &str| format!("{label}: {s}");
            cases.extend([
                case(n("10,000"), p.clone(), "10000", "8000.00").unit_price("0.80"),
                case(n("50,000"), p.clone(), "50000", "35000.00").unit_price("0.70"),
                case(n("100,000"), p.clone(), "100000", "65000.00").unit_price("0.65"),
                case(n("250,000"), p.clone(), "250000", "137500.00")
                    .unit_price("0.55")
                    .lines(&[(3, "250000", "137500.00")]),
            ]);
        }
        run(cases);

        let q = quote(
            &price(Volume, package("1000"), reference_packages()),
            d("10000"),
        )
        .unwrap();
        assert_eq!(q.subtotal.to_string(), "8000.00");
        assert_eq!(q.currency, "EUR");
    }

    #[test]
    fn reference_price_list_graduated() {
        let mut cases = Vec::new();
        for (model, tiers, label) in [
            (package("1000"), reference_packages(), "per package"),
            (PerUnit, reference_units(), "per unit"),
        ] {
            let p = price(Graduated, model, tiers);
            let n = |s: &str| format!("{label}: {s}");
            cases.extend([
                // 10,000 × 0.80 = 8,000 — the same as volume.
                case(n("10,000"), p.clone(), "10000", "8000.00")
                    .unit_price("0.8")
                    .lines(&[(0, "10000", "8000.00")]),
                // 10,000 × 0.80 + 40,000 × 0.70 = 8,000 + 28,000 = 36,000
                // (volume: 35,000).
                case(n("50,000"), p.clone(), "50000", "36000.00")
                    .unit_price("0.72")
                    .lines(&[(0, "10000", "8000.00"), (1, "40000", "28000.00")]),
                // 8,000 + 28,000 + 50,000 × 0.65 = 8,000 + 28,000 + 32,500
                // = 68,500 (volume: 65,000).
                case(n("100,000"), p.clone(), "100000", "68500.00").unit_price("0.685"),
                // 10,000 × 0.80 + 40,000 × 0.70 + 50,000 × 0.65 + 150,000 × 0.55
                // = 8,000 + 28,000 + 32,500 + 82,500 = 151,000 (volume: 137,500).
                case(n("250,000"), p.clone(), "250000", "151000.00")
                    .unit_price("0.604")
                    .lines(&[
                        (0, "10000", "8000.00"),
                        (1, "40000", "28000.00"),
                        (2, "50000", "32500.00"),
                        (3, "150000", "82500.00"),
                    ]),
            ]);
        }
        run(cases);
    }

    #[test]
    fn every_model_and_type() {
        let flat_tiers = || {
            vec![
                tier("0", Some("100"), "5.00"),
                tier("100", Some("1000"), "40.00"),
                tier("1000", None, "300.00"),
            ]
        };
        // 0.80, 0.70 and 0.55 per unit, as percents of a 0.80 base.
        let pct_tiers = || {
            vec![
                pct_tier("0", Some("10000"), "0.80", "100"),
                pct_tier("10000", Some("50000"), "0.80", "87.5"),
                pct_tier("50000", None, "0.80", "68.75"),
            ]
        };
        run(vec![
            // Per unit.
            case(
                "per unit, volume, 10,000 is in the first tier",
                price(Volume, PerUnit, reference_units()),
                "10000",
                "8000.00",
            )
            .lines(&[(0, "10000", "8000.00")]),
            // 10,000.01 × 0.70 = 7,000.007 → 7,000.01
            case(
                "per unit, volume, 10,000.01 is in the second tier",
                price(Volume, PerUnit, reference_units()),
                "10000.01",
                "7000.01",
            )
            .lines(&[(1, "10000.01", "7000.01")]),
            case(
                "per unit, volume, huge quantity in the open last tier",
                price(Volume, PerUnit, reference_units()),
                "1000000000000",
                "550000000000.00",
            )
            .unit_price("0.55")
            .lines(&[(3, "1000000000000", "550000000000.00")]),
            // 0.01 × 0.70 = 0.007 → 0.01
            case(
                "per unit, graduated, 10,000.01 spills 0.01 into the second tier",
                price(Graduated, PerUnit, reference_units()),
                "10000.01",
                "8000.01",
            )
            .lines(&[(0, "10000", "8000.00"), (1, "0.01", "0.01")]),
            // 68,500 for the first 100,000, then (10¹² − 100,000) × 0.55
            // = 549,999,945,000: 550,000,013,500.
            case(
                "per unit, graduated, huge quantity in the open last tier",
                price(Graduated, PerUnit, reference_units()),
                "1000000000000",
                "550000013500.00",
            )
            .lines(&[
                (0, "10000", "8000.00"),
                (1, "40000", "28000.00"),
                (2, "50000", "32500.00"),
                (3, "999999900000", "549999945000.00"),
            ]),
            case(
                "per unit, tiny quantity",
                price(Volume, PerUnit, reference_units()),
                "0.5",
                "0.40",
            ),
            // Per package.
            case(
                "per package, volume, 1,001 units are 2 packages",
                price(Volume, package("1000"), reference_packages()),
                "1001",
                "1600.00",
            )
            .lines(&[(0, "1001", "1600.00")]),
            case(
                "per package, volume, 1 unit is a whole package",
                price(Volume, package("1000"), reference_packages()),
                "1",
                "800.00",
            )
            .unit_price("800"),
            case(
                "per package, volume, 10,000 is 10 packages of the first tier",
                price(Volume, package("1000"), reference_packages()),
                "10000",
                "8000.00",
            ),
            // ceil(10.001) = 11 packages × 700
            case(
                "per package, volume, 10,001 is 11 packages of the second tier",
                price(Volume, package("1000"), reference_packages()),
                "10001",
                "7700.00",
            )
            .lines(&[(1, "10001", "7700.00")]),
            case(
                "per package, graduated, 1,001 units are 2 packages",
                price(Graduated, package("1000"), reference_packages()),
                "1001",
                "1600.00",
            ),
            // 10 packages × 800 + 1 started package × 700
            case(
                "per package, graduated, each tier's slice is packaged on its own",
                price(Graduated, package("1000"), reference_packages()),
                "10001",
                "8700.00",
            )
            .lines(&[(0, "10000", "8000.00"), (1, "1", "700.00")]),
            // Flat.
            case(
                "flat, volume, at the first tier's end",
                price(Volume, Flat, flat_tiers()),
                "100",
                "5.00",
            )
            .unit_price("0.05")
            .lines(&[(0, "100", "5.00")]),
            case(
                "flat, volume, just past the first tier",
                price(Volume, Flat, flat_tiers()),
                "100.5",
                "40.00",
            )
            .lines(&[(1, "100.5", "40.00")]),
            case(
                "flat, volume, open last tier",
                price(Volume, Flat, flat_tiers()),
                "5000",
                "300.00",
            ),
            case(
                "flat, graduated, first tier only",
                price(Graduated, Flat, flat_tiers()),
                "100",
                "5.00",
            )
            .lines(&[(0, "100", "5.00")]),
            // 5 + 40
            case(
                "flat, graduated, one unit into the second tier",
                price(Graduated, Flat, flat_tiers()),
                "101",
                "45.00",
            )
            .lines(&[(0, "100", "5.00"), (1, "1", "40.00")]),
            // 5 + 40 + 300: every reached tier.
            case(
                "flat, graduated, every tier reached",
                price(Graduated, Flat, flat_tiers()),
                "5000",
                "345.00",
            )
            .lines(&[
                (0, "100", "5.00"),
                (1, "900", "40.00"),
                (2, "4000", "300.00"),
            ]),
            // Percentage.
            // 3 × 0.80 × 90 % = 3 × 0.72 = 2.16
            case(
                "percentage, 90 % of a 0.80 base",
                price(Volume, Percentage, vec![pct_tier("0", None, "0.80", "90")]),
                "3",
                "2.16",
            )
            .lines(&[(0, "3", "2.16")]),
            // 250,000 × 0.55
            case(
                "percentage, volume",
                price(Volume, Percentage, pct_tiers()),
                "250000",
                "137500.00",
            )
            .unit_price("0.55"),
            // 10,000 × 0.80 + 40,000 × 0.70 + 200,000 × 0.55
            // = 8,000 + 28,000 + 110,000 = 146,000
            case(
                "percentage, graduated",
                price(Graduated, Percentage, pct_tiers()),
                "250000",
                "146000.00",
            )
            .lines(&[
                (0, "10000", "8000.00"),
                (1, "40000", "28000.00"),
                (2, "200000", "110000.00"),
            ]),
            // A closed last tier accepts its own end.
            case(
                "closed last tier, volume, at its end",
                price(Volume, PerUnit, reference_units()[..3].to_vec()),
                "100000",
                "65000.00",
            ),
            case(
                "closed last tier, graduated, at its end",
                price(Graduated, PerUnit, reference_units()[..3].to_vec()),
                "100000",
                "68500.00",
            ),
        ]);
    }

    #[test]
    fn unit_amount_is_the_effective_unit_price() {
        let q = quote(
            &price(Volume, package("1000"), reference_packages()),
            d("1001"),
        )
        .unwrap();
        // 1,600 for 1,001 units, before rounding.
        assert_eq!(q.lines[0].unit_amount, d("1600") / d("1001"));
        let q = quote(&price(Graduated, PerUnit, reference_units()), d("10000.01")).unwrap();
        assert_eq!(q.lines[1].unit_amount, d("0.70"));
        let q = quote(
            &price(Volume, Percentage, vec![pct_tier("0", None, "0.80", "90")]),
            d("3"),
        )
        .unwrap();
        assert_eq!(q.lines[0].unit_amount, d("0.72"));
        let q = quote(&price(Volume, Flat, vec![tier("0", None, "300")]), d("4")).unwrap();
        assert_eq!(q.lines[0].unit_amount, d("75"));
    }

    #[test]
    fn closed_last_tier_refuses_more() {
        for (name, pricing_type, quantity) in [
            ("volume, just above", Volume, "100000.01"),
            ("graduated, just above", Graduated, "100000.01"),
            ("volume, far above", Volume, "250000"),
        ] {
            let p = price(pricing_type, PerUnit, reference_units()[..3].to_vec());
            let err = quote(&p, d(quantity)).unwrap_err();
            assert_eq!(err.field, "quantity", "{name}");
            assert!(err.message.contains("100000"), "{name}: {}", err.message);
        }
    }

    #[test]
    fn whole_unit_tiers_price_like_half_open_ones() {
        let whole_packages = || {
            vec![
                tier("1", Some("10000"), "800"),
                tier("10001", Some("50000"), "700"),
                tier("50001", Some("100000"), "650"),
                tier("100001", None, "550"),
            ]
        };
        for pricing_type in [Volume, Graduated] {
            for (name, model, whole, half_open) in [
                (
                    "per unit",
                    PerUnit,
                    reference_units_whole(),
                    reference_units(),
                ),
                (
                    "per package",
                    package("1000"),
                    whole_packages(),
                    reference_packages(),
                ),
            ] {
                let whole = price(pricing_type, model.clone(), whole);
                let half_open = price(pricing_type, model, half_open);
                assert_eq!(validate(&whole), Ok(()), "{name}");
                for quantity in [
                    "1", "0.5", "10000", "10000.5", "10001", "50000", "50001", "250000",
                ] {
                    assert_eq!(
                        quote(&whole, d(quantity)),
                        quote(&half_open, d(quantity)),
                        "{pricing_type:?} {name} {quantity}"
                    );
                }
            }
        }
        // The spelled-out reference figures.
        let q = quote(
            &price(Volume, PerUnit, reference_units_whole()),
            d("250000"),
        )
        .unwrap();
        assert_eq!(q.subtotal, d("137500"));
        let q = quote(
            &price(Graduated, PerUnit, reference_units_whole()),
            d("250000"),
        )
        .unwrap();
        assert_eq!(q.subtotal, d("151000"));
        // A one-unit whole tier is fine: 1–1 is (0, 1].
        let one = price(
            Volume,
            PerUnit,
            vec![tier("1", Some("1"), "9"), tier("2", None, "1")],
        );
        assert_eq!(quote(&one, d("1")).unwrap().subtotal, d("9"));
        assert_eq!(quote(&one, d("2")).unwrap().subtotal, d("2"));
    }

    #[test]
    fn whole_unit_tiers_refuse_fractions_and_gaps() {
        for (name, tiers, field) in [
            (
                "fractional end",
                vec![tier("1", Some("10000.5"), "1"), tier("10001.5", None, "1")],
                "tiers[0]",
            ),
            (
                "fractional start",
                vec![tier("1", Some("10000"), "1"), tier("10001.5", None, "1")],
                "tiers[1]",
            ),
            (
                "gap: 10002 after 10000",
                vec![tier("1", Some("10000"), "1"), tier("10002", None, "1")],
                "tiers[1]",
            ),
            (
                "overlap: 10000 after 10000",
                vec![tier("1", Some("10000"), "1"), tier("10000", None, "1")],
                "tiers[1]",
            ),
            (
                "gap further down",
                vec![
                    tier("1", Some("10000"), "1"),
                    tier("10001", Some("50000"), "1"),
                    tier("60001", None, "1"),
                ],
                "tiers[2]",
            ),
            (
                "ends before it starts",
                vec![
                    tier("1", Some("10000"), "1"),
                    tier("10001", Some("10000"), "1"),
                ],
                "tiers[1]",
            ),
        ] {
            let err = validate(&price(Volume, PerUnit, tiers)).unwrap_err();
            assert_eq!(err.field, field, "{name}: {}", err.message);
        }
    }

    #[test]
    fn tax_and_rounding() {
        struct Taxed {
            name: &'static str,
            currency: &'static str,
            tax_rate: &'static str,
            unit_amount: &'static str,
            quantity: &'static str,
            subtotal: &'static str,
            tax: &'static str,
            total: &'static str,
        }
        let cases = [
            // 1,234.565 → 1,234.57; 27 % of it is 333.3339 → 333.33.
            Taxed {
                name: "27 % on a half-cent subtotal",
                currency: "EUR",
                tax_rate: "0.27",
                unit_amount: "1234.565",
                quantity: "1",
                subtotal: "1234.57",
                tax: "333.33",
                total: "1567.90",
            },
            // 3 × 0.411855 = 1.235565 → 1.24; 27 % of it is 0.3348 → 0.33.
            Taxed {
                name: "27 % on a multi-unit subtotal",
                currency: "HUF",
                tax_rate: "0.27",
                unit_amount: "0.411855",
                quantity: "3",
                subtotal: "1.24",
                tax: "0.33",
                total: "1.57",
            },
            // 27 % of 1.50 = 0.405: half-up gives 0.41 (banker's would give 0.40).
            Taxed {
                name: "tax at a midpoint rounds up",
                currency: "EUR",
                tax_rate: "0.27",
                unit_amount: "1.50",
                quantity: "1",
                subtotal: "1.50",
                tax: "0.41",
                total: "1.91",
            },
            Taxed {
                name: "0.005 rounds up to 0.01",
                currency: "EUR",
                tax_rate: "0",
                unit_amount: "0.005",
                quantity: "1",
                subtotal: "0.01",
                tax: "0.00",
                total: "0.01",
            },
            Taxed {
                name: "0.015 rounds up to 0.02",
                currency: "USD",
                tax_rate: "0",
                unit_amount: "0.015",
                quantity: "1",
                subtotal: "0.02",
                tax: "0.00",
                total: "0.02",
            },
            // Banker's rounding would give 0.02.
            Taxed {
                name: "0.025 rounds up to 0.03",
                currency: "EUR",
                tax_rate: "0",
                unit_amount: "0.025",
                quantity: "1",
                subtotal: "0.03",
                tax: "0.00",
                total: "0.03",
            },
            Taxed {
                name: "0.0049 rounds down to 0.00",
                currency: "EUR",
                tax_rate: "0",
                unit_amount: "0.0049",
                quantity: "1",
                subtotal: "0.00",
                tax: "0.00",
                total: "0.00",
            },
            Taxed {
                name: "100 % tax",
                currency: "EUR",
                tax_rate: "1",
                unit_amount: "2.50",
                quantity: "2",
                subtotal: "5.00",
                tax: "5.00",
                total: "10.00",
            },
            // 1,234.5 → 1,235 yen; 10 % = 123.5 → 124.
            Taxed {
                name: "JPY has no minor units",
                currency: "JPY",
                tax_rate: "0.10",
                unit_amount: "0.5",
                quantity: "2469",
                subtotal: "1235",
                tax: "124",
                total: "1359",
            },
            // 1.2345 → 1.235; 5 % = 0.06175 → 0.062.
            Taxed {
                name: "KWD has 3 minor units",
                currency: "KWD",
                tax_rate: "0.05",
                unit_amount: "1.2345",
                quantity: "1",
                subtotal: "1.235",
                tax: "0.062",
                total: "1.297",
            },
            Taxed {
                name: "lower-case currency",
                currency: "jpy",
                tax_rate: "0",
                unit_amount: "1.5",
                quantity: "1",
                subtotal: "2",
                tax: "0",
                total: "2",
            },
        ];
        for c in cases {
            let name = c.name;
            let p = Price {
                currency: c.currency.into(),
                tax_rate: d(c.tax_rate),
                ..price(Volume, PerUnit, vec![tier("0", None, c.unit_amount)])
            };
            let q = quote(&p, d(c.quantity)).unwrap_or_else(|e| panic!("{name}: {e}"));
            // to_string: the amounts carry exactly the currency's minor units.
            assert_eq!(q.subtotal.to_string(), c.subtotal, "{name}: subtotal");
            assert_eq!(q.tax.to_string(), c.tax, "{name}: tax");
            assert_eq!(q.total.to_string(), c.total, "{name}: total");
            assert_eq!(q.lines[0].amount, q.subtotal, "{name}: line");
            assert_eq!(
                q.currency,
                c.currency.to_ascii_uppercase(),
                "{name}: currency"
            );
        }
    }

    #[test]
    fn lines_are_rounded_before_they_are_summed() {
        // Two half-cent lines: each rounds up to 0.01, so the subtotal is
        // 0.02 (not round(0.01) = 0.01) and the lines add up to it.
        let p = price(
            Graduated,
            PerUnit,
            vec![tier("0", Some("1"), "0.005"), tier("1", None, "0.005")],
        );
        let q = quote(&p, d("2")).unwrap();
        let amounts: Vec<Decimal> = q.lines.iter().map(|l| l.amount).collect();
        assert_eq!(amounts, [d("0.01"), d("0.01")]);
        assert_eq!(q.subtotal, d("0.02"));
    }

    #[test]
    fn unit_price_has_six_places_rounded_half_up() {
        for (name, amount, quantity, unit_price) in [
            // 100 / 3
            ("repeating", "33.333333333", "3", "33.333333"),
            // 0.01 / 32 = 0.0003125 → 0.000313 (banker's: 0.000312)
            ("midpoint", "0.0003125", "32", "0.000313"),
            ("exact", "0.80", "10000", "0.8"),
        ] {
            let q = quote(
                &price(Volume, PerUnit, vec![tier("0", None, amount)]),
                d(quantity),
            )
            .unwrap();
            assert_eq!(q.unit_price, d(unit_price), "{name}");
        }
    }

    #[test]
    fn minor_units_follow_iso_4217() {
        for (currencies, minor) in [
            (
                &[
                    "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX",
                    "UYI", "VND", "VUV", "XAF", "XOF", "XPF", "jpy",
                ][..],
                0,
            ),
            (&["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"][..], 3),
            (&["EUR", "USD", "HUF", "GBP", "CHF", "eur"][..], 2),
        ] {
            for currency in currencies {
                assert_eq!(minor_units(currency), minor, "{currency}");
            }
        }
    }

    #[test]
    fn validation_names_the_field_at_fault() {
        let good = || price(Volume, PerUnit, reference_units());
        let with_tiers = |tiers: Vec<Tier>| Price { tiers, ..good() };
        let cases: Vec<(&str, Price, &str)> = vec![
            ("no tiers", with_tiers(vec![]), "tiers"),
            (
                "first tier starts at 5",
                with_tiers(vec![tier("5", None, "1")]),
                "tiers[0]",
            ),
            (
                "first tier starts below 0",
                with_tiers(vec![tier("-1", None, "1")]),
                "tiers[0]",
            ),
            (
                "gap between tiers",
                with_tiers(vec![tier("0", Some("10"), "1"), tier("20", None, "1")]),
                "tiers[1]",
            ),
            (
                "overlapping tiers",
                with_tiers(vec![tier("0", Some("10"), "1"), tier("5", None, "1")]),
                "tiers[1]",
            ),
            (
                "third tier not contiguous",
                with_tiers(vec![
                    tier("0", Some("10000"), "1"),
                    tier("10000", Some("50000"), "1"),
                    tier("60000", None, "1"),
                ]),
                "tiers[2]",
            ),
            (
                "empty tier",
                with_tiers(vec![tier("0", Some("0"), "1"), tier("0", None, "1")]),
                "tiers[0]",
            ),
            (
                "tier ends before it starts",
                with_tiers(vec![tier("0", Some("10"), "1"), tier("10", Some("5"), "1")]),
                "tiers[1]",
            ),
            (
                "negative amount",
                with_tiers(vec![tier("0", Some("10"), "1"), tier("10", None, "-0.01")]),
                "tiers[1]",
            ),
            (
                "open tier that is not last",
                with_tiers(vec![tier("0", None, "1"), tier("10", None, "1")]),
                "tiers[0]",
            ),
            (
                "package size 0",
                Price {
                    model: package("0"),
                    ..good()
                },
                "packageSize",
            ),
            (
                "negative package size",
                Price {
                    model: package("-1000"),
                    ..good()
                },
                "packageSize",
            ),
            (
                "percentage tier without a base",
                Price {
                    model: Percentage,
                    tiers: vec![
                        pct_tier("0", Some("10"), "0.80", "90"),
                        tier("10", None, "80"),
                    ],
                    ..good()
                },
                "tiers[1]",
            ),
            (
                "percentage tier with a negative base",
                Price {
                    model: Percentage,
                    tiers: vec![pct_tier("0", None, "-0.80", "90")],
                    ..good()
                },
                "tiers[0]",
            ),
            (
                "base on a per-unit tier",
                with_tiers(vec![pct_tier("0", None, "0.80", "1")]),
                "tiers[0]",
            ),
            (
                "negative tax rate",
                Price {
                    tax_rate: d("-0.01"),
                    ..good()
                },
                "taxRate",
            ),
            (
                "tax rate above 1",
                Price {
                    tax_rate: d("27"),
                    ..good()
                },
                "taxRate",
            ),
            (
                "currency too long",
                Price {
                    currency: "EURO".into(),
                    ..good()
                },
                "currency",
            ),
            (
                "currency too short",
                Price {
                    currency: "EU".into(),
                    ..good()
                },
                "currency",
            ),
            (
                "currency with a digit",
                Price {
                    currency: "E1R".into(),
                    ..good()
                },
                "currency",
            ),
            (
                "currency symbol",
                Price {
                    currency: "€".into(),
                    ..good()
                },
                "currency",
            ),
            (
                "empty currency",
                Price {
                    currency: String::new(),
                    ..good()
                },
                "currency",
            ),
        ];
        for (name, p, field) in cases {
            let err = validate(&p).unwrap_err();
            assert_eq!(err.field, field, "{name}: {}", err.message);
            // quote validates first.
            assert_eq!(quote(&p, d("1")).unwrap_err(), err, "{name}: quote");
        }

        for (name, p) in [
            ("reference per unit", good()),
            (
                "reference per package",
                price(Volume, package("1000"), reference_packages()),
            ),
            (
                "whole units",
                price(Graduated, PerUnit, reference_units_whole()),
            ),
            (
                "one open tier",
                price(Volume, Flat, vec![tier("0", None, "0")]),
            ),
            (
                "closed last tier",
                price(Volume, PerUnit, reference_units()[..3].to_vec()),
            ),
            (
                "tax rate 1",
                Price {
                    tax_rate: Decimal::ONE,
                    ..good()
                },
            ),
        ] {
            assert_eq!(validate(&p), Ok(()), "{name}");
        }
    }

    #[test]
    fn validation_messages_speak_in_tiers() {
        let p = price(
            Volume,
            PerUnit,
            vec![
                tier("0", Some("10000"), "1"),
                tier("10000", Some("50000"), "1"),
                tier("60000", None, "1"),
            ],
        );
        let err = validate(&p).unwrap_err();
        assert!(
            err.message.starts_with(
                "tier 3 starts at 60000 but tier 2 ends at 50000: tiers must be contiguous"
            ),
            "{}",
            err.message
        );
        let p = price(
            Volume,
            PerUnit,
            vec![tier("1", Some("10000"), "1"), tier("10002", None, "1")],
        );
        let err = validate(&p).unwrap_err();
        assert!(
            err.message.contains("should start at 10001"),
            "{}",
            err.message
        );
    }

    #[test]
    fn quantity_must_be_positive() {
        let p = price(Graduated, PerUnit, reference_units());
        for quantity in ["0", "-1", "-0.01"] {
            let err = quote(&p, d(quantity)).unwrap_err();
            assert_eq!(err.field, "quantity", "{quantity}");
        }
    }

    #[test]
    fn overflow_is_refused_not_a_panic() {
        let p = price(Volume, PerUnit, vec![tier("0", None, "1000000000")]);
        let err = quote(&p, Decimal::MAX).unwrap_err();
        assert_eq!(err.field, "quantity");
        // A flat fee over a vanishing quantity: the average unit price
        // would not fit in a Decimal.
        let p = price(Volume, Flat, vec![tier("0", None, "300")]);
        let err = quote(&p, d("0.0000000000000000000000000001")).unwrap_err();
        assert_eq!(err.field, "quantity");
        // A whole-unit tier ending at the largest Decimal leaves no room.
        let p = price(
            Volume,
            PerUnit,
            vec![
                Tier {
                    last_unit: Some(Decimal::MAX),
                    ..tier("1", None, "1")
                },
                tier("1", None, "1"),
            ],
        );
        assert_eq!(validate(&p).unwrap_err().field, "tiers[1]");
    }

    #[test]
    fn prices_round_trip_through_json() {
        let p = Price {
            tax_rate: d("0.27"),
            ..price(Graduated, package("1000"), reference_packages())
        };
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<Price>(&json).unwrap(), p);
    }
}
