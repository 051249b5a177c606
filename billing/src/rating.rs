//! Rating: a period's quantity under one price becomes an exact amount
//! (not yet rounded) with its breakdown, the tiers it crossed.
//!
//! Conventions, as in Stripe and Lago: a tier covers units above the
//! previous tier's `up_to` up to and including its own; a tier's flat fee is
//! charged when usage enters the tier (graduated) or when the total falls in
//! it (volume), so zero usage costs nothing; included units are free and
//! come off the bottom; a started package is charged in full; negative
//! quantities bill as zero (a refund is a credit note, not negative usage).
//!
//! The arithmetic is checked: a quantity that would charge more than
//! [`MAX_LINE_AMOUNT`] on one line is a [`RatingError`] naming the meter and
//! the quantity (the caller fails that subscription alone), never a panic.

use dotmac_schema::price::{ChargeModel, Price, Tier};
use rust_decimal::Decimal;

/// The most one line may charge: 10^20 in the plan's currency.
pub const MAX_LINE_AMOUNT: Decimal = Decimal::from_parts(0x6310_0000, 0x6BC7_5E2D, 0x5, false, 0);

/// A quantity whose charge leaves the range a line may hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{quantity} units of {meter} would charge more than 10^20 on one line")]
pub struct RatingError {
    pub meter: String,
    pub quantity: Decimal,
}

/// The units of one tier and what they cost.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TierCharge {
    /// Index of the tier in the price.
    pub tier: usize,
    /// Units above this bound fall in the tier.
    pub from: Decimal,
    pub up_to: Option<Decimal>,
    pub quantity: Decimal,
    pub unit_price: Decimal,
    pub flat_fee: Decimal,
    pub amount: Decimal,
}

/// One price's charge for one period.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rating {
    /// What the meter measured.
    pub quantity: Decimal,
    /// Of which free (included units).
    pub included: Decimal,
    /// Of which charged.
    pub billable: Decimal,
    /// Tiers crossed (graduated) or the one tier applied (volume).
    pub tiers: Vec<TierCharge>,
    /// Exact amount of the model, before any minimum.
    pub usage_amount: Decimal,
    /// What the minimum commitment adds (0 when usage reached it).
    pub minimum_top_up: Decimal,
}

impl Rating {
    /// The exact amount charged: usage plus the minimum's top-up.
    pub fn amount(&self) -> Decimal {
        self.usage_amount + self.minimum_top_up
    }
}

/// The lower bound of tier `i` (the previous tier's `up_to`, or 0).
fn lower_bound(tiers: &[Tier], i: usize) -> Decimal {
    if i == 0 {
        Decimal::ZERO
    } else {
        tiers[i - 1].up_to.unwrap_or(Decimal::MAX)
    }
}

/// `quantity × unit price + flat fee`, if it stays within a line's range.
fn charge(quantity: Decimal, unit_price: Decimal, flat_fee: Decimal) -> Option<Decimal> {
    quantity
        .checked_mul(unit_price)?
        .checked_add(flat_fee)
        .filter(|a| a.abs() <= MAX_LINE_AMOUNT)
}

/// The sum of `amounts`, if it stays within a line's range.
fn total(amounts: impl IntoIterator<Item = Decimal>) -> Option<Decimal> {
    amounts
        .into_iter()
        .try_fold(Decimal::ZERO, Decimal::checked_add)
        .filter(|a| a.abs() <= MAX_LINE_AMOUNT)
}

fn graduated(tiers: &[Tier], units: Decimal) -> Option<Vec<TierCharge>> {
    let mut out = Vec::new();
    for (i, tier) in tiers.iter().enumerate() {
        let from = lower_bound(tiers, i);
        if units <= from {
            break;
        }
        let top = tier.up_to.map_or(units, |up| units.min(up));
        let quantity = top - from;
        out.push(TierCharge {
            tier: i,
            from,
            up_to: tier.up_to,
            quantity,
            unit_price: tier.unit_price,
            flat_fee: tier.flat_fee,
            amount: charge(quantity, tier.unit_price, tier.flat_fee)?,
        });
    }
    Some(out)
}

fn volume(tiers: &[Tier], units: Decimal) -> Option<Vec<TierCharge>> {
    if units <= Decimal::ZERO {
        return Some(Vec::new());
    }
    let i = tiers
        .iter()
        .position(|t| t.up_to.is_none_or(|up| units <= up))
        .unwrap_or(tiers.len().saturating_sub(1));
    let Some(tier) = tiers.get(i) else {
        return Some(Vec::new());
    };
    Some(vec![TierCharge {
        tier: i,
        from: lower_bound(tiers, i),
        up_to: tier.up_to,
        quantity: units,
        unit_price: tier.unit_price,
        flat_fee: tier.flat_fee,
        amount: charge(units, tier.unit_price, tier.flat_fee)?,
    }])
}

/// Rates `quantity` (the period's metered total) under `price`.
pub fn rate(price: &Price, quantity: Decimal) -> Result<Rating, RatingError> {
    let too_large = || RatingError {
        meter: price
            .meter
            .clone()
            .unwrap_or_else(|| "the recurring fee".into()),
        quantity,
    };
    let measured = quantity.max(Decimal::ZERO);
    let included = price.included_units.min(measured);
    let billable = measured - included;
    let rated = || -> Option<(Vec<TierCharge>, Decimal)> {
        Some(match &price.model {
            ChargeModel::Flat { amount } => (Vec::new(), *amount),
            ChargeModel::PerUnit { unit_price } => {
                // One tier of every unit: the breakdown shows the unit price.
                let charge = TierCharge {
                    tier: 0,
                    from: Decimal::ZERO,
                    up_to: None,
                    quantity: billable,
                    unit_price: *unit_price,
                    flat_fee: Decimal::ZERO,
                    amount: charge(billable, *unit_price, Decimal::ZERO)?,
                };
                let amount = charge.amount;
                (vec![charge], amount)
            }
            ChargeModel::Graduated { tiers } => {
                let charges = graduated(tiers, billable)?;
                let sum = total(charges.iter().map(|c| c.amount))?;
                (charges, sum)
            }
            ChargeModel::Volume { tiers } => {
                let charges = volume(tiers, billable)?;
                let sum = total(charges.iter().map(|c| c.amount))?;
                (charges, sum)
            }
            ChargeModel::Package {
                size,
                package_price,
            } => {
                let packages = if *size > Decimal::ZERO {
                    billable.checked_div(*size)?.ceil()
                } else {
                    Decimal::ZERO
                };
                (Vec::new(), charge(packages, *package_price, Decimal::ZERO)?)
            }
            ChargeModel::Percentage { percent } => (
                Vec::new(),
                charge(billable, *percent, Decimal::ZERO)?.checked_div(Decimal::ONE_HUNDRED)?,
            ),
        })
    };
    let (tiers, usage_amount) = rated().ok_or_else(too_large)?;
    let minimum_top_up = price
        .minimum
        .map_or(Decimal::ZERO, |m| (m - usage_amount).max(Decimal::ZERO));
    Ok(Rating {
        quantity,
        included,
        billable,
        tiers,
        usage_amount,
        minimum_top_up,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rust_decimal_macros::dec;

    fn tier(up_to: Option<i64>, unit_price: Decimal, flat_fee: Decimal) -> Tier {
        Tier {
            up_to: up_to.map(Decimal::from),
            unit_price,
            flat_fee,
        }
    }

    fn price(model: ChargeModel) -> Price {
        Price {
            meter: Some("units".into()),
            model,
            included_units: Decimal::ZERO,
            minimum: None,
        }
    }

    fn amount(p: &Price, q: i64) -> Decimal {
        rate(p, Decimal::from(q)).unwrap().amount()
    }

    #[test]
    fn a_charge_beyond_a_line_is_an_error_not_a_panic() {
        let per_unit = price(ChargeModel::PerUnit {
            unit_price: dec!(1000000000000),
        });
        let huge = Decimal::MAX;
        let e = rate(&per_unit, huge).unwrap_err();
        assert_eq!(e.meter, "units");
        assert!(e.to_string().contains("10^20"), "{e}");
        assert!(
            rate(&per_unit, dec!(100000000)).is_ok(),
            "10^8 × 10^12 = 10^20 fits"
        );
        assert!(rate(&per_unit, dec!(100000001)).is_err());
        let graduated = price(ChargeModel::Graduated {
            tiers: vec![
                tier(Some(10), dec!(1), dec!(5)),
                tier(None, dec!(1000000000000), dec!(0)),
            ],
        });
        assert!(rate(&graduated, huge).is_err());
        let package = price(ChargeModel::Package {
            size: dec!(0.000000000001),
            package_price: dec!(1000000000000),
        });
        assert!(rate(&package, dec!(1000000000000)).is_err());
        let percent = price(ChargeModel::Percentage { percent: dec!(100) });
        assert!(rate(&percent, huge).is_err());
    }

    /// Stripe, "Set up tiered pricing" (docs.stripe.com/subscriptions/
    /// pricing-models/tiered-pricing), Typographic's font tiers 1–5 at 7 USD,
    /// 6–10 at 6.50, 11+ at 6: the volume-based table (1 → 7, 5 → 35,
    /// 6 → 39, 20 → 120, 25 → 150).
    #[test]
    fn stripe_typographic_volume_table() {
        let tiers = vec![
            tier(Some(5), dec!(7), dec!(0)),
            tier(Some(10), dec!(6.5), dec!(0)),
            tier(None, dec!(6), dec!(0)),
        ];
        let p = price(ChargeModel::Volume { tiers });
        let table = [
            (1, dec!(7)),
            (5, dec!(35)),
            (6, dec!(39)),
            (20, dec!(120)),
            (25, dec!(150)),
        ];
        for (q, expected) in table {
            assert_eq!(amount(&p, q), expected, "{q} fonts");
        }
    }

    /// Lago, "Volume" charge model (getlago.com/docs/guide/plans/charges/
    /// charge-models/volume): tiers to 10,000 at 0.0010, to 50,000 at
    /// 0.0008, to 100,000 at 0.0006, then 0.0004, each with a 10 USD fee;
    /// "65,000 API calls would cost 65,000 x $0.0006 + $10 = $49".
    #[test]
    fn lago_volume_example() {
        let tiers = vec![
            tier(Some(10_000), dec!(0.0010), dec!(10)),
            tier(Some(50_000), dec!(0.0008), dec!(10)),
            tier(Some(100_000), dec!(0.0006), dec!(10)),
            tier(None, dec!(0.0004), dec!(10)),
        ];
        let r = rate(&price(ChargeModel::Volume { tiers }), dec!(65000)).unwrap();
        assert_eq!(r.amount(), dec!(49));
        assert_eq!(r.tiers[0].tier, 2);
    }

    /// Zuplo, "Pricing models" (zuplo.com/docs/articles/monetization/
    /// pricing-models): tiers 0–1,000 at 0.10, 1,001–10,000 at 0.05, then
    /// 0.01; 15,000 units cost 600 graduated and 150 by volume.
    #[test]
    fn zuplo_graduated_and_volume_example() {
        let tiers = vec![
            tier(Some(1_000), dec!(0.10), dec!(0)),
            tier(Some(10_000), dec!(0.05), dec!(0)),
            tier(None, dec!(0.01), dec!(0)),
        ];
        let g = rate(
            &price(ChargeModel::Graduated {
                tiers: tiers.clone(),
            }),
            dec!(15000),
        )
        .unwrap();
        assert_eq!(g.amount(), dec!(600));
        let per_tier: Vec<_> = g.tiers.iter().map(|t| (t.quantity, t.amount)).collect();
        assert_eq!(
            per_tier,
            [
                (dec!(1000), dec!(100)),
                (dec!(9000), dec!(450)),
                (dec!(5000), dec!(50))
            ]
        );
        assert_eq!(
            amount(&price(ChargeModel::Volume { tiers }), 15000),
            dec!(150)
        );
    }

    /// Autumn, "Graduated pricing" (docs.useautumn.com/documentation/
    /// modelling-pricing/graduated-pricing): first 1,000 requests at 0.01,
    /// to 10,000 at 0.008, then 0.005; 15,000 requests cost 107.
    #[test]
    fn autumn_graduated_example() {
        let tiers = vec![
            tier(Some(1_000), dec!(0.01), dec!(0)),
            tier(Some(10_000), dec!(0.008), dec!(0)),
            tier(None, dec!(0.005), dec!(0)),
        ];
        assert_eq!(
            amount(&price(ChargeModel::Graduated { tiers }), 15000),
            dec!(107)
        );
    }

    /// Lago, "Package" charge model (getlago.com/docs/guide/plans/charges/
    /// charge-models/package): 5 USD per 100 units with the first 100 free;
    /// "201 units would cost $0 (first 100 units) + $5 (next 100 units) +
    /// $5 (last unit) = $10".
    #[test]
    fn lago_package_example() {
        let mut p = price(ChargeModel::Package {
            size: dec!(100),
            package_price: dec!(5),
        });
        p.included_units = dec!(100);
        assert_eq!(amount(&p, 201), dec!(10));
    }

    /// Chargebee, "Package pricing" (chargebee.com/docs/billing/2.0/
    /// product-catalog/package-pricing): packages of 1,000,000 tokens at
    /// 1.25 USD; 10 tokens bill one package (1.25), 1,000,000 one (1.25),
    /// 1,500,000 two (2.50). (Chargebee also bills one package for no
    /// usage at all; here no usage costs nothing.)
    #[test]
    fn chargebee_package_example() {
        let p = price(ChargeModel::Package {
            size: dec!(1000000),
            package_price: dec!(1.25),
        });
        let table = [
            (10, dec!(1.25)),
            (1_000_000, dec!(1.25)),
            (1_500_000, dec!(2.50)),
        ];
        for (q, expected) in table {
            assert_eq!(amount(&p, q), expected, "{q} tokens");
        }
    }

    /// OpenMeter, "Per-Unit Pricing" (openmeter.io/docs/glossary/
    /// per-unit-pricing): 0.01 USD per token, 10,000 tokens cost 100 USD.
    #[test]
    fn openmeter_per_unit_example() {
        let p = price(ChargeModel::PerUnit {
            unit_price: dec!(0.01),
        });
        let r = rate(&p, dec!(10000)).unwrap();
        assert_eq!(r.amount(), dec!(100));
        assert_eq!(r.tiers[0].unit_price, dec!(0.01));
    }

    #[test]
    fn package_included_units_and_minimums() {
        let mut p = price(ChargeModel::Package {
            size: dec!(100),
            package_price: dec!(5),
        });
        p.included_units = dec!(100);
        // 100 free, then 150 billable = 2 packages.
        let r = rate(&p, dec!(250)).unwrap();
        assert_eq!(
            (r.included, r.billable, r.amount()),
            (dec!(100), dec!(150), dec!(10))
        );
        assert_eq!(amount(&p, 100), dec!(0));
        assert_eq!(amount(&p, 101), dec!(5));
        let mut m = price(ChargeModel::PerUnit {
            unit_price: dec!(0.5),
        });
        m.minimum = Some(dec!(20));
        let r = rate(&m, dec!(10)).unwrap();
        assert_eq!(
            (r.usage_amount, r.minimum_top_up, r.amount()),
            (dec!(5), dec!(15), dec!(20))
        );
        assert_eq!(amount(&m, 100), dec!(50));
        let pct = price(ChargeModel::Percentage { percent: dec!(2.5) });
        assert_eq!(amount(&pct, 1000), dec!(25));
        assert_eq!(amount(&pct, -10), dec!(0), "negative usage bills nothing");
    }

    fn tiers_strategy() -> impl Strategy<Value = Vec<Tier>> {
        proptest::collection::vec((1i64..500, 0i64..100_000, 0i64..2_000), 1..5).prop_map(|raw| {
            let mut up = 0i64;
            let n = raw.len();
            raw.into_iter()
                .enumerate()
                .map(|(i, (step, price, fee))| {
                    up += step;
                    Tier {
                        up_to: (i + 1 < n).then(|| Decimal::from(up)),
                        unit_price: Decimal::new(price, 4),
                        flat_fee: Decimal::new(fee, 2),
                    }
                })
                .collect()
        })
    }

    proptest! {
        /// Graduated charges never fall as usage grows, the tier quantities
        /// add up to the billable units, and at every tier boundary `b` the
        /// next unit costs exactly the next tier's price plus its flat fee.
        #[test]
        fn graduated_is_monotone_and_exact_at_boundaries(tiers in tiers_strategy(), q in 0i64..3_000) {
            let p = price(ChargeModel::Graduated { tiers: tiers.clone() });
            let r = rate(&p, Decimal::from(q)).unwrap();
            prop_assert_eq!(r.tiers.iter().map(|t| t.quantity).sum::<Decimal>(), Decimal::from(q));
            prop_assert!(amount(&p, q + 1) >= amount(&p, q));
            for (i, t) in tiers.iter().enumerate() {
                let Some(b) = t.up_to else { continue };
                let next = &tiers[i + 1];
                let at = rate(&p, b).unwrap().amount();
                let past = rate(&p, b + Decimal::ONE).unwrap().amount();
                prop_assert_eq!(past - at, next.unit_price + next.flat_fee);
                // Volume at a boundary still uses the lower tier (inclusive up_to).
                let v = rate(&price(ChargeModel::Volume { tiers: tiers.clone() }), b).unwrap();
                prop_assert_eq!(v.tiers[0].tier, i);
                prop_assert_eq!(v.amount(), b * t.unit_price + t.flat_fee);
            }
            // Within the first tier the two models agree.
            let first = tiers[0].up_to.unwrap_or(Decimal::MAX);
            let within = Decimal::from(q).min(first);
            prop_assert_eq!(
                rate(&p, within).unwrap().amount(),
                rate(&price(ChargeModel::Volume { tiers }), within).unwrap().amount()
            );
        }

        /// Higher tier prices never cost less for the same usage, in either
        /// tiered model, and no charge is ever negative.
        #[test]
        fn higher_prices_never_cost_less(tiers in tiers_strategy(), q in 0i64..3_000, which in 0usize..5, raise in 1i64..10_000) {
            let mut dearer = tiers.clone();
            let i = which % dearer.len();
            dearer[i].unit_price += Decimal::new(raise, 4);
            for model in [
                |t| ChargeModel::Graduated { tiers: t },
                |t| ChargeModel::Volume { tiers: t },
            ] {
                let cheap = amount(&price(model(tiers.clone())), q);
                let dear = amount(&price(model(dearer.clone())), q);
                prop_assert!(dear >= cheap);
                prop_assert!(cheap >= Decimal::ZERO);
            }
        }
    }
}
