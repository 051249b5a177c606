//! Taxes by the tenant's jurisdiction, computed and rounded per line (so
//! an invoice's tax is the sum of its lines' taxes, and a credit note for a
//! line reverses exactly that line's tax).

use dotmac_schema::money::{Currency, Rounding};
use rust_decimal::Decimal;

/// A jurisdiction's rate.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TaxRate {
    /// What invoices print (`"KE VAT 16%"`).
    pub name: String,
    pub percent: Decimal,
    /// Whether prices already include the tax.
    pub inclusive: bool,
}

/// One line's amount split into net and tax.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Taxed {
    pub net: Decimal,
    pub tax: Decimal,
    pub gross: Decimal,
}

impl TaxRate {
    /// Taxes one line whose `amount` is already rounded to the minor unit:
    /// exclusive rates add the rounded tax; inclusive rates take the rounded
    /// net out of the amount, so `net + tax` is the amount to the cent.
    pub fn apply(&self, amount: Decimal, currency: Currency, rounding: Rounding) -> Taxed {
        let hundred = Decimal::ONE_HUNDRED;
        if self.inclusive {
            let net = rounding.round(amount * hundred / (hundred + self.percent), currency);
            Taxed {
                net,
                tax: amount - net,
                gross: amount,
            }
        } else {
            let tax = rounding.round(amount * self.percent / hundred, currency);
            Taxed {
                net: amount,
                tax,
                gross: amount + tax,
            }
        }
    }
}

/// A line without tax.
pub fn untaxed(amount: Decimal) -> Taxed {
    Taxed {
        net: amount,
        tax: Decimal::ZERO,
        gross: amount,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rust_decimal_macros::dec;

    fn vat(percent: Decimal, inclusive: bool) -> TaxRate {
        TaxRate {
            name: "VAT".into(),
            percent,
            inclusive,
        }
    }

    #[test]
    fn exclusive_and_inclusive() {
        let usd = Currency::USD;
        let r = Rounding::default();
        let t = vat(dec!(16), false).apply(dec!(99.99), usd, r);
        assert_eq!(
            (t.net, t.tax, t.gross),
            (dec!(99.99), dec!(16.00), dec!(115.99))
        );
        let t = vat(dec!(20), true).apply(dec!(10.00), usd, r);
        assert_eq!(
            (t.net, t.tax, t.gross),
            (dec!(8.33), dec!(1.67), dec!(10.00))
        );
        let jpy = Currency::from_code("JPY").unwrap();
        let t = vat(dec!(10), false).apply(dec!(1005), jpy, r);
        assert_eq!(t.tax, dec!(101));
    }

    proptest! {
        /// Per line: net + tax = gross exactly, every part on the minor
        /// unit, and the tax within half a minor unit of the exact rate.
        #[test]
        fn lines_split_exactly(
            units in 0i64..10_000_000_000,
            percent in 0i64..3000,
            inclusive in any::<bool>(),
            currency in proptest::sample::select(vec!["USD", "JPY", "BHD"]),
        ) {
            let currency = Currency::from_code(currency).unwrap();
            let amount = Decimal::new(units, currency.minor_units());
            let rate = vat(Decimal::new(percent, 2), inclusive);
            let t = rate.apply(amount, currency, Rounding::default());
            prop_assert_eq!(t.net + t.tax, t.gross);
            let unit = Decimal::new(1, currency.minor_units());
            for part in [t.net, t.tax, t.gross] {
                prop_assert_eq!(Rounding::default().round(part, currency), part);
                prop_assert!(part >= Decimal::ZERO);
            }
            let exact = t.net * rate.percent / Decimal::ONE_HUNDRED;
            prop_assert!((t.tax - exact).abs() <= unit);
        }
    }
}
