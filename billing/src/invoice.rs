//! Invoice arithmetic: each line rounded to the minor unit, a coupon's
//! discount allocated over the charge lines to the minor unit, tax per line,
//! and every total the sum of its lines. Prepaid credit then lowers the
//! amount due, never below zero.

use dotmac_schema::money::{Currency, Rounding};
use rust_decimal::Decimal;

use crate::period::Period;
use crate::rating::Rating;
use crate::tax::{untaxed, TaxRate};

/// What a line is for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LineKind {
    /// The plan's recurring fee for the period.
    Recurring,
    /// One meter's usage for the period, with its rating.
    Usage { meter: String, rating: Rating },
    /// Part of a period after a plan change or cancellation; negative when
    /// it credits unused time.
    Proration,
    /// Usage counted after its period's invoice was finalized.
    Adjustment {
        meter: String,
        original_period: (chrono::NaiveDate, chrono::NaiveDate),
        rating: Rating,
    },
}

impl LineKind {
    pub fn adjustment(meter: String, original: Period, rating: Rating) -> LineKind {
        LineKind::Adjustment {
            meter,
            original_period: (original.start, original.end),
            rating,
        }
    }
}

/// A line before rounding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineDraft {
    pub description: String,
    pub kind: LineKind,
    /// The exact amount (rating or proration), not yet rounded.
    pub amount: Decimal,
}

/// A coupon's reduction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum Discount {
    /// Percent off every charge line.
    Percent(Decimal),
    /// A fixed amount off the invoice, spread over its charge lines.
    Fixed(Decimal),
}

/// How many periods a coupon applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", content = "periods", rename_all = "snake_case")]
pub enum CouponDuration {
    Once,
    Periods(u32),
    Forever,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Coupon {
    pub code: String,
    pub discount: Discount,
    pub duration: CouponDuration,
}

impl Coupon {
    /// Whether the coupon still applies after `used` discounted periods.
    pub fn applies_after(&self, used: u32) -> bool {
        match self.duration {
            CouponDuration::Once => used == 0,
            CouponDuration::Periods(n) => used < n,
            CouponDuration::Forever => true,
        }
    }
}

/// A finished line: every amount on the minor unit.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InvoiceLine {
    pub description: String,
    #[serde(flatten)]
    pub kind: LineKind,
    /// The line's amount, rounded.
    pub amount: Decimal,
    /// The coupon's share of this line.
    pub discount: Decimal,
    /// Amount less discount, excluding tax.
    pub net: Decimal,
    pub tax: Decimal,
    /// The rate `tax` was computed at, as invoices print it (`KE VAT 16%`);
    /// absent on untaxed lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tax_rate: Option<String>,
    /// What the line adds to the invoice.
    pub total: Decimal,
}

/// An invoice's lines and totals (each total is the sum of its lines).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Invoice {
    pub currency: Currency,
    pub lines: Vec<InvoiceLine>,
    pub subtotal: Decimal,
    pub discount: Decimal,
    pub tax: Decimal,
    pub total: Decimal,
    /// Prepaid credit used on this invoice.
    pub credit_applied: Decimal,
    /// Credit this invoice gives the customer (its lines credit more than
    /// they charge).
    pub credit_issued: Decimal,
    pub amount_due: Decimal,
}

/// Splits `cap` (on the minor unit) over `weights` in proportion, to the
/// minor unit, largest remainders first: the shares sum to exactly `cap`
/// and none exceeds its weight.
fn allocate(cap: Decimal, weights: &[Decimal], currency: Currency) -> Vec<Decimal> {
    let total: Decimal = weights.iter().sum();
    if total <= Decimal::ZERO || cap <= Decimal::ZERO {
        return vec![Decimal::ZERO; weights.len()];
    }
    let unit = Decimal::new(1, currency.minor_units());
    let exact: Vec<Decimal> = weights.iter().map(|w| cap * w / total).collect();
    let mut shares: Vec<Decimal> = exact
        .iter()
        .map(|e| Rounding::TowardZero.round(*e, currency))
        .collect();
    let mut left = cap - shares.iter().sum::<Decimal>();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|a, b| {
        (exact[*b] - shares[*b])
            .cmp(&(exact[*a] - shares[*a]))
            .then(a.cmp(b))
    });
    for i in order {
        if left < unit {
            break;
        }
        if exact[i] > shares[i] {
            shares[i] += unit;
            left -= unit;
        }
    }
    shares
}

/// Builds an invoice from its line drafts.
pub fn build_invoice(
    drafts: Vec<LineDraft>,
    currency: Currency,
    rounding: Rounding,
    coupon: Option<&Coupon>,
    tax: Option<&TaxRate>,
    credit_balance: Decimal,
) -> Invoice {
    let amounts: Vec<Decimal> = drafts
        .iter()
        .map(|d| rounding.round(d.amount, currency))
        .collect();
    // Discounts reduce charges only; a credit line is never discounted.
    let charges: Vec<Decimal> = amounts.iter().map(|a| (*a).max(Decimal::ZERO)).collect();
    let discounts = match coupon.map(|c| c.discount) {
        None => vec![Decimal::ZERO; amounts.len()],
        Some(Discount::Percent(p)) => {
            let p = p.clamp(Decimal::ZERO, Decimal::ONE_HUNDRED);
            charges
                .iter()
                .map(|c| rounding.round(c * p / Decimal::ONE_HUNDRED, currency))
                .collect()
        }
        Some(Discount::Fixed(f)) => {
            let cap = rounding
                .round(f.max(Decimal::ZERO), currency)
                .min(charges.iter().sum());
            allocate(cap, &charges, currency)
        }
    };
    let lines: Vec<InvoiceLine> = drafts
        .into_iter()
        .zip(amounts)
        .zip(discounts)
        .map(|((draft, amount), discount)| {
            let after = amount - discount;
            let taxed = tax.map_or(untaxed(after), |t| t.apply(after, currency, rounding));
            // Every figure written with the currency's places (0 is 0.00).
            let fixed = |d: Decimal| rounding.round(d, currency);
            InvoiceLine {
                description: draft.description,
                kind: draft.kind,
                amount,
                discount: fixed(discount),
                net: fixed(taxed.net),
                tax: fixed(taxed.tax),
                tax_rate: tax.map(|t| t.name.clone()),
                total: fixed(taxed.gross),
            }
        })
        .collect();
    let sum = |f: fn(&InvoiceLine) -> Decimal| {
        rounding.round(lines.iter().map(f).sum::<Decimal>(), currency)
    };
    let (subtotal, discount, tax_total, total) = (
        sum(|l| l.amount),
        sum(|l| l.discount),
        sum(|l| l.tax),
        sum(|l| l.total),
    );
    let chargeable = total.max(Decimal::ZERO);
    // Rounded down: never more credit than the balance holds.
    let credit_applied =
        Rounding::TowardZero.round(credit_balance.max(Decimal::ZERO).min(chargeable), currency);
    Invoice {
        currency,
        lines,
        subtotal,
        discount,
        tax: tax_total,
        total,
        credit_applied,
        credit_issued: rounding.round((-total).max(Decimal::ZERO), currency),
        amount_due: chargeable - credit_applied,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rust_decimal_macros::dec;

    fn line(amount: Decimal) -> LineDraft {
        LineDraft {
            description: "line".into(),
            kind: LineKind::Recurring,
            amount,
        }
    }

    #[test]
    fn a_worked_invoice() {
        let vat = TaxRate {
            name: "KE VAT 16%".into(),
            percent: dec!(16),
            inclusive: false,
        };
        let coupon = Coupon {
            code: "LAUNCH".into(),
            discount: Discount::Fixed(dec!(10)),
            duration: CouponDuration::Once,
        };
        let inv = build_invoice(
            vec![line(dec!(99)), line(dec!(12.345)), line(dec!(-33))],
            Currency::USD,
            Rounding::default(),
            Some(&coupon),
            Some(&vat),
            dec!(5),
        );
        // 12.345 rounds half away from zero to 12.35; the 10 off is spread
        // 99 : 12.35 over the two charges (8.89 + 1.11); the credit line
        // keeps its full amount and reverses its tax.
        let got: Vec<_> = inv
            .lines
            .iter()
            .map(|l| (l.amount, l.discount, l.tax, l.total))
            .collect();
        assert_eq!(
            got,
            [
                (dec!(99), dec!(8.89), dec!(14.42), dec!(104.53)),
                (dec!(12.35), dec!(1.11), dec!(1.80), dec!(13.04)),
                (dec!(-33), dec!(0), dec!(-5.28), dec!(-38.28)),
            ]
        );
        assert_eq!(
            (inv.subtotal, inv.discount, inv.tax, inv.total),
            (dec!(78.35), dec!(10), dec!(10.94), dec!(79.29))
        );
        assert_eq!((inv.credit_applied, inv.amount_due), (dec!(5), dec!(74.29)));
        assert!(coupon.applies_after(0) && !coupon.applies_after(1));
    }

    fn currencies() -> impl Strategy<Value = Currency> {
        proptest::sample::select(vec!["USD", "JPY", "BHD"])
            .prop_map(|c| Currency::from_code(c).unwrap())
    }

    proptest! {
        /// Totals are the sums of lines; every amount is on the minor unit;
        /// discounts never exceed charges nor touch credits; nothing but a
        /// credit line is negative; the amount due is never negative and
        /// the credit used never exceeds the balance.
        #[test]
        fn invoice_invariants(
            amounts in proptest::collection::vec(-50_000_000i64..500_000_000, 1..8),
            scale in 0u32..8,
            discount in prop_oneof![Just(None), (0i64..10_000).prop_map(|p| Some(Discount::Percent(Decimal::new(p, 2)))), (0i64..10_000_000).prop_map(|f| Some(Discount::Fixed(Decimal::new(f, 2))))],
            tax in proptest::option::of((0i64..3000, any::<bool>())),
            balance in 0i64..100_000_000,
            currency in currencies(),
        ) {
            let drafts: Vec<LineDraft> = amounts.iter().map(|a| line(Decimal::new(*a, scale))).collect();
            let coupon = discount.map(|d| Coupon { code: "C".into(), discount: d, duration: CouponDuration::Forever });
            let rate = tax.map(|(p, inclusive)| TaxRate { name: "T".into(), percent: Decimal::new(p, 2), inclusive });
            let balance = Decimal::new(balance, 2);
            let inv = build_invoice(drafts, currency, Rounding::default(), coupon.as_ref(), rate.as_ref(), balance);
            let on_unit = |d: Decimal| Rounding::default().round(d, currency) == d;
            prop_assert_eq!(inv.total, inv.lines.iter().map(|l| l.total).sum::<Decimal>());
            prop_assert_eq!(inv.tax, inv.lines.iter().map(|l| l.tax).sum::<Decimal>());
            prop_assert_eq!(inv.subtotal, inv.lines.iter().map(|l| l.amount).sum::<Decimal>());
            for l in &inv.lines {
                prop_assert!(on_unit(l.amount) && on_unit(l.discount) && on_unit(l.tax) && on_unit(l.total));
                prop_assert!(l.discount >= Decimal::ZERO);
                prop_assert!(l.discount <= l.amount.max(Decimal::ZERO));
                prop_assert_eq!(l.net + l.tax, l.total);
                if l.amount >= Decimal::ZERO {
                    prop_assert!(l.total >= Decimal::ZERO && l.tax >= Decimal::ZERO);
                }
            }
            if let Some(Discount::Fixed(f)) = coupon.as_ref().map(|c| c.discount) {
                let charges: Decimal = inv.lines.iter().map(|l| l.amount.max(Decimal::ZERO)).sum();
                prop_assert_eq!(inv.discount, Rounding::default().round(f, currency).min(charges));
            }
            prop_assert!(inv.amount_due >= Decimal::ZERO);
            prop_assert!(inv.credit_applied <= balance);
            prop_assert_eq!(inv.amount_due + inv.credit_applied - inv.credit_issued, inv.total);
        }
    }
}
