//! Money: amounts are exact decimals (never floats) in the
//! ISO-4217 currency of what they belong to: a plan's prices in the plan's
//! currency, every amount of an invoice in the invoice's. Amounts are
//! rounded to the currency's minor unit only where an invoice line is made.

use std::fmt;
use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};

/// Most decimal places a unit price may carry.
pub const MAX_PRICE_SCALE: u32 = 12;

/// ISO-4217 codes and their minor units (decimal places). Codes not listed
/// are refused rather than guessed.
const CURRENCIES: &[(&str, u8)] = &[
    ("AED", 2),
    ("ARS", 2),
    ("AUD", 2),
    ("BDT", 2),
    ("BHD", 3),
    ("BRL", 2),
    ("CAD", 2),
    ("CHF", 2),
    ("CLP", 0),
    ("CNY", 2),
    ("COP", 2),
    ("CZK", 2),
    ("DKK", 2),
    ("EGP", 2),
    ("EUR", 2),
    ("GBP", 2),
    ("GHS", 2),
    ("HKD", 2),
    ("HUF", 2),
    ("IDR", 2),
    ("ILS", 2),
    ("INR", 2),
    ("IQD", 3),
    ("ISK", 0),
    ("JOD", 3),
    ("JPY", 0),
    ("KES", 2),
    ("KRW", 0),
    ("KWD", 3),
    ("LYD", 3),
    ("MAD", 2),
    ("MXN", 2),
    ("MYR", 2),
    ("NGN", 2),
    ("NOK", 2),
    ("NZD", 2),
    ("OMR", 3),
    ("PHP", 2),
    ("PKR", 2),
    ("PLN", 2),
    ("PYG", 0),
    ("QAR", 2),
    ("RON", 2),
    ("RWF", 0),
    ("SAR", 2),
    ("SEK", 2),
    ("SGD", 2),
    ("THB", 2),
    ("TND", 3),
    ("TRY", 2),
    ("TZS", 2),
    ("UAH", 2),
    ("UGX", 0),
    ("USD", 2),
    ("VND", 0),
    ("XAF", 0),
    ("XOF", 0),
    ("ZAR", 2),
    ("ZMW", 2),
];

/// An ISO-4217 currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency {
    code: &'static str,
    minor_units: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("currency: {0:?} is not a supported ISO-4217 code")]
    UnknownCurrency(String),
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

impl Currency {
    pub const USD: Currency = Currency {
        code: "USD",
        minor_units: 2,
    };

    /// The currency of an ISO-4217 code (upper case, as the standard spells it).
    pub fn from_code(code: &str) -> Result<Currency, MoneyError> {
        CURRENCIES
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(c, m)| Currency {
                code: c,
                minor_units: *m,
            })
            .ok_or_else(|| MoneyError::UnknownCurrency(code.to_owned()))
    }

    pub fn code(&self) -> &'static str {
        self.code
    }

    /// Decimal places of the currency's minor unit (USD 2, JPY 0, BHD 3).
    pub fn minor_units(&self) -> u32 {
        u32::from(self.minor_units)
    }

    /// `amount` as text with the currency's places (`0` → `"0.00"` in USD),
    /// as every amount is shown. More places than the minor unit are kept,
    /// never rounded away: rounding is the rating rules' job, not display's.
    pub fn format(&self, amount: Decimal) -> String {
        let mut shown = amount;
        if shown.scale() < self.minor_units() {
            shown.rescale(self.minor_units());
        }
        shown.to_string()
    }

    /// Every supported currency.
    pub fn all() -> impl Iterator<Item = Currency> {
        CURRENCIES.iter().map(|(c, m)| Currency {
            code: c,
            minor_units: *m,
        })
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code)
    }
}

impl FromStr for Currency {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Currency, MoneyError> {
        Currency::from_code(s)
    }
}

impl serde::Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code)
    }
}

impl<'de> serde::Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Currency, D::Error> {
        let code = String::deserialize(d)?;
        Currency::from_code(&code).map_err(serde::de::Error::custom)
    }
}

/// How amounts are rounded to a currency's minor unit.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Rounding {
    /// 0.005 → 0.01, −0.005 → −0.01 (the default: what invoices show by hand).
    #[default]
    HalfAwayFromZero,
    /// Banker's rounding: 0.005 → 0.00, 0.015 → 0.02.
    HalfEven,
    /// Truncate.
    TowardZero,
}

impl Rounding {
    fn strategy(self) -> RoundingStrategy {
        match self {
            Rounding::HalfAwayFromZero => RoundingStrategy::MidpointAwayFromZero,
            Rounding::HalfEven => RoundingStrategy::MidpointNearestEven,
            Rounding::TowardZero => RoundingStrategy::ToZero,
        }
    }

    /// `amount` rounded to `currency`'s minor unit, and written with
    /// exactly that many places (99 USD is `99.00`).
    pub fn round(self, amount: Decimal, currency: Currency) -> Decimal {
        let mut rounded = amount.round_dp_with_strategy(currency.minor_units(), self.strategy());
        rounded.rescale(currency.minor_units());
        rounded
    }
}

/// The largest amount a configured price (a fee, a unit price, a package
/// price, a minimum) may carry: 10^12 in the plan's currency. With metered
/// quantities bounded too, rating stays far inside the exact range.
pub const MAX_PRICE: Decimal = Decimal::from_parts(0xD4A5_1000, 0xE8, 0, false, 0);

/// Checks a configured price: not negative, at most 10^12, at most 12
/// decimal places.
pub fn validate_price(field: &'static str, amount: Decimal) -> Result<(), MoneyError> {
    if amount > MAX_PRICE {
        return Err(MoneyError::Invalid {
            field,
            reason: "must be at most 10^12".into(),
        });
    }
    if amount.is_sign_negative() && !amount.is_zero() {
        return Err(MoneyError::Invalid {
            field,
            reason: "must not be negative".into(),
        });
    }
    if amount.normalize().scale() > MAX_PRICE_SCALE {
        return Err(MoneyError::Invalid {
            field,
            reason: format!("at most {MAX_PRICE_SCALE} decimal places"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rust_decimal_macros::dec;

    #[test]
    fn minor_units_follow_iso_4217() {
        let places = |c: &str| Currency::from_code(c).unwrap().minor_units();
        assert_eq!((places("USD"), places("JPY"), places("BHD")), (2, 0, 3));
        assert_eq!(
            Currency::from_code("usd"),
            Err(MoneyError::UnknownCurrency("usd".into()))
        );
        let usd = Currency::USD;
        assert_eq!(Rounding::default().round(dec!(0.005), usd), dec!(0.01));
        assert_eq!(
            Rounding::default().round(dec!(99), usd).to_string(),
            "99.00"
        );
        assert_eq!(Rounding::default().round(dec!(-0.005), usd), dec!(-0.01));
        assert_eq!(Rounding::HalfEven.round(dec!(0.005), usd), dec!(0.00));
        assert_eq!(Rounding::HalfEven.round(dec!(0.015), usd), dec!(0.02));
        let jpy = Currency::from_code("JPY").unwrap();
        assert_eq!(Rounding::default().round(dec!(99.5), jpy), dec!(100));
        let bhd = Currency::from_code("BHD").unwrap();
        assert_eq!(Rounding::default().round(dec!(1.0005), bhd), dec!(1.001));
    }

    #[test]
    fn prices_are_checked() {
        assert!(validate_price("unitPrice", dec!(0.000000000001)).is_ok());
        let e = validate_price("unitPrice", dec!(0.0000000000001)).unwrap_err();
        assert_eq!(e.to_string(), "unitPrice: at most 12 decimal places");
        assert!(validate_price("unitPrice", dec!(-1)).is_err());
        assert_eq!(MAX_PRICE, Decimal::from(10u64.pow(12)));
        assert!(validate_price("amount", MAX_PRICE).is_ok());
        assert!(validate_price("amount", MAX_PRICE + dec!(0.01)).is_err());
    }

    proptest! {
        /// Rounding lands on the minor unit, moves less than one minor unit,
        /// and is idempotent, for every currency and mode.
        #[test]
        fn formatting_keeps_the_value_and_shows_the_places(
            units in -10_000_000_000i64..10_000_000_000,
            scale in 0u32..6,
            currency in proptest::sample::select(Currency::all().collect::<Vec<_>>()),
        ) {
            let amount = Decimal::new(units, scale);
            let shown = currency.format(amount);
            prop_assert_eq!(shown.parse::<Decimal>().unwrap(), amount);
            let places = shown.split('.').nth(1).map_or(0, str::len) as u32;
            prop_assert!(places >= currency.minor_units());
            prop_assert_eq!(places, scale.max(currency.minor_units()));
        }

        #[test]
        fn rounding_lands_on_the_minor_unit(
            units in -10_000_000_000i64..10_000_000_000,
            scale in 0u32..12,
            currency in proptest::sample::select(Currency::all().collect::<Vec<_>>()),
            mode in proptest::sample::select(vec![Rounding::HalfAwayFromZero, Rounding::HalfEven, Rounding::TowardZero]),
        ) {
            let amount = Decimal::new(units, scale);
            let rounded = mode.round(amount, currency);
            prop_assert!(rounded.normalize().scale() <= currency.minor_units());
            let unit = Decimal::new(1, currency.minor_units());
            prop_assert!((rounded - amount).abs() < unit);
            prop_assert_eq!(mode.round(rounded, currency), rounded);
        }
    }
}
