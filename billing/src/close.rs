//! The lines of one subscription's invoice for one period: the plan's
//! recurring fees (prorated from when they start to accrue, e.g. a trial's
//! end) and each metered price rated on the period's usage; plus adjustment
//! lines for usage of an already finalized period that changed since.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use dotmac_schema::money::Rounding;
use dotmac_schema::price::PlanVersion;
use rust_decimal::Decimal;

use crate::invoice::{LineDraft, LineKind};
use crate::period::Period;
use crate::proration::prorate;
use crate::rating::{rate, RatingError};

/// A period's usage per meter slug (missing meters used nothing).
pub type UsageTotals = BTreeMap<String, Decimal>;

/// The invoice lines of `plan` for `period`. Recurring fees accrue from
/// `accrues_from` (clamped to the period): a trial ending mid-period bills
/// the rest of it. `usage` is the usage counted since then.
pub fn period_lines(
    plan: &PlanVersion,
    period: &Period,
    accrues_from: DateTime<Utc>,
    usage: &UsageTotals,
    rounding: Rounding,
) -> Result<Vec<LineDraft>, RatingError> {
    let mut lines = recurring_lines(plan, period, accrues_from, period.end_time(), rounding)?;
    lines.extend(usage_lines(plan, usage)?);
    Ok(lines)
}

/// `plan`'s recurring fees for `[from, to)` of `period`, prorated by time.
pub fn recurring_lines(
    plan: &PlanVersion,
    period: &Period,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    rounding: Rounding,
) -> Result<Vec<LineDraft>, RatingError> {
    let from = from.clamp(period.start_time(), period.end_time());
    let to = to.clamp(from, period.end_time());
    let partial = from > period.start_time() || to < period.end_time();
    plan.prices
        .iter()
        .filter(|p| p.meter.is_none())
        .map(|price| {
            let full = rate(price, Decimal::ZERO)?.amount();
            let span = if partial {
                format!(" ({} to {})", from.date_naive(), to.date_naive())
            } else {
                String::new()
            };
            Ok(LineDraft {
                description: format!(
                    "Plan {} v{}, {} to {}{span}",
                    plan.plan, plan.version, period.start, period.end
                ),
                kind: if partial {
                    LineKind::Proration
                } else {
                    LineKind::Recurring
                },
                amount: prorate(full, period, from, to, plan.currency, rounding),
            })
        })
        .collect()
}

/// Each metered price of `plan` rated on `usage`.
pub fn usage_lines(plan: &PlanVersion, usage: &UsageTotals) -> Result<Vec<LineDraft>, RatingError> {
    plan.prices
        .iter()
        .filter_map(|price| {
            let meter = price.meter.as_ref()?;
            let quantity = usage.get(meter).copied().unwrap_or_default();
            Some(rate(price, quantity).map(|rating| LineDraft {
                description: format!("{meter}: {quantity} units"),
                amount: rating.amount(),
                kind: LineKind::Usage {
                    meter: meter.clone(),
                    rating,
                },
            }))
        })
        .collect()
}

/// `segments` (`[from, to)` spans each carrying a value, e.g. the plan in
/// force) with every `gap` (e.g. a pause) cut out of them.
pub fn without_gaps<T: Clone>(
    segments: Vec<(T, DateTime<Utc>, DateTime<Utc>)>,
    gaps: &[(DateTime<Utc>, DateTime<Utc>)],
) -> Vec<(T, DateTime<Utc>, DateTime<Utc>)> {
    let mut out = segments;
    for &(gap_from, gap_to) in gaps {
        if gap_to <= gap_from {
            continue;
        }
        out = out
            .into_iter()
            .flat_map(|(v, from, to)| {
                let mut pieces = Vec::with_capacity(2);
                if from < gap_from.min(to) {
                    pieces.push((v.clone(), from, gap_from.min(to)));
                }
                if gap_to.max(from) < to {
                    pieces.push((v, gap_to.max(from), to));
                }
                pieces
            })
            .collect();
    }
    out
}

/// Usage of an already finalized period that fell since it was billed:
/// never refunded by the close. The platform decides on a credit note for
/// `credit` (what rating the new quantity would have saved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageDecrease {
    pub meter: String,
    pub original: Period,
    pub was: Decimal,
    pub now: Decimal,
    pub credit: Decimal,
}

/// What late usage of a finalized period changes: lines for the usage that
/// grew, and, kept apart, the usage that fell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Adjustments {
    pub lines: Vec<LineDraft>,
    pub decreases: Vec<UsageDecrease>,
}

/// Adjustments for `original`, an already finalized period: for each
/// metered price whose usage grew from `billed` (what invoices have charged
/// for that period so far) to `counted` (what the rollups say now), a line
/// with the difference of the two ratings, naming the original period.
/// Usage that fell is a [`UsageDecrease`], never a negative line: a late
/// event must not lower a bill already issued on its own (a tenant's key
/// could send one), only a credit note the platform issues can.
pub fn adjustment_lines(
    plan: &PlanVersion,
    original: &Period,
    billed: &UsageTotals,
    counted: &UsageTotals,
) -> Result<Adjustments, RatingError> {
    let mut out = Adjustments::default();
    for price in &plan.prices {
        let Some(meter) = &price.meter else { continue };
        let was = billed.get(meter).copied().unwrap_or_default();
        let now = counted.get(meter).copied().unwrap_or_default();
        if was == now {
            continue;
        }
        let before = rate(price, was)?;
        let after = rate(price, now)?;
        let amount = after.amount() - before.amount();
        if now < was {
            out.decreases.push(UsageDecrease {
                meter: meter.clone(),
                original: *original,
                was,
                now,
                credit: -amount,
            });
            continue;
        }
        out.lines.push(LineDraft {
            description: format!(
                "{meter}: late usage for {} to {}, {was} → {now} units",
                original.start, original.end
            ),
            kind: LineKind::adjustment(meter.clone(), *original, after),
            amount,
        });
    }
    Ok(out)
}

/// What the lines charge for each meter of `period` (its usage lines and
/// adjustments naming it): the quantity a later adjustment starts from.
pub fn billed_quantities<'a>(
    lines: impl IntoIterator<Item = &'a LineKind>,
    period: &Period,
) -> UsageTotals {
    let mut billed = UsageTotals::new();
    for kind in lines {
        match kind {
            LineKind::Usage { meter, rating } => {
                billed.insert(meter.clone(), rating.quantity);
            }
            LineKind::Adjustment {
                meter,
                original_period,
                rating,
            } if *original_period == (period.start, period.end) => {
                // Later adjustments supersede earlier ones: the caller
                // passes lines in finalization order.
                billed.insert(meter.clone(), rating.quantity);
            }
            _ => {}
        }
    }
    billed
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, TimeDelta};
    use dotmac_schema::money::Currency;
    use dotmac_schema::price::{ChargeModel, Interval, Price, Tier};
    use proptest::prelude::*;
    use rust_decimal_macros::dec;

    fn plan() -> PlanVersion {
        PlanVersion {
            plan: "small".into(),
            version: 1,
            currency: Currency::USD,
            interval: Interval::Monthly,
            trial_days: 14,
            prices: vec![
                Price {
                    meter: None,
                    model: ChargeModel::Flat { amount: dec!(99) },
                    included_units: Decimal::ZERO,
                    minimum: None,
                },
                Price {
                    meter: Some("gigabytes".into()),
                    model: ChargeModel::Graduated {
                        tiers: vec![
                            Tier {
                                up_to: Some(dec!(100)),
                                unit_price: dec!(0),
                                flat_fee: dec!(0),
                            },
                            Tier {
                                up_to: None,
                                unit_price: dec!(0.05),
                                flat_fee: dec!(0),
                            },
                        ],
                    },
                    included_units: Decimal::ZERO,
                    minimum: None,
                },
            ],
        }
    }

    fn november() -> Period {
        Period {
            start: NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
            end: NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
        }
    }

    #[test]
    fn a_period_and_its_late_usage() {
        let p = november();
        let usage = UsageTotals::from([("gigabytes".to_owned(), dec!(250))]);
        let lines = period_lines(&plan(), &p, p.start_time(), &usage, Rounding::default()).unwrap();
        let amounts: Vec<_> = lines.iter().map(|l| l.amount).collect();
        assert_eq!(amounts, [dec!(99), dec!(7.50)]);
        // A trial that ends on the 16th bills half the month's fee.
        let half = p.start_time() + TimeDelta::days(15);
        let lines = period_lines(&plan(), &p, half, &usage, Rounding::default()).unwrap();
        assert_eq!(lines[0].amount, dec!(49.50));
        assert_eq!(lines[0].kind, LineKind::Proration);

        let billed = billed_quantities(lines.iter().map(|l| &l.kind), &p);
        let counted = UsageTotals::from([("gigabytes".to_owned(), dec!(260))]);
        let adj = adjustment_lines(&plan(), &p, &billed, &counted)
            .unwrap()
            .lines;
        assert_eq!(adj.len(), 1);
        assert_eq!(adj[0].amount, dec!(0.50));
        assert!(adj[0].description.contains("2026-11-01 to 2026-12-01"));
        let billed = billed_quantities(lines.iter().chain(&adj).map(|l| &l.kind), &p);
        assert_eq!(
            adjustment_lines(&plan(), &p, &billed, &counted).unwrap(),
            Adjustments::default()
        );
    }

    proptest! {
        /// Cutting gaps out of segments keeps exactly the time outside the
        /// gaps: no piece overlaps a gap, and lengths add up.
        #[test]
        fn gaps_are_cut_exactly(
            cuts in proptest::collection::vec(0i64..1000, 1..5),
            gaps in proptest::collection::vec((0i64..1000, 1i64..300), 0..4),
        ) {
            let t = |s: i64| DateTime::<Utc>::from_timestamp(s, 0).unwrap();
            let mut bounds = cuts.clone();
            bounds.push(0);
            bounds.push(1000);
            bounds.sort();
            bounds.dedup();
            let segments: Vec<(usize, DateTime<Utc>, DateTime<Utc>)> = bounds
                .windows(2)
                .enumerate()
                .map(|(i, w)| (i, t(w[0]), t(w[1])))
                .collect();
            let gaps: Vec<_> = gaps.iter().map(|(a, len)| (t(*a), t(a + len))).collect();
            let pieces = without_gaps(segments, &gaps);
            for (_, from, to) in &pieces {
                prop_assert!(from < to);
                for (gf, gt) in &gaps {
                    prop_assert!(to <= gf || from >= gt, "a piece overlaps a gap");
                }
            }
            // Every second of [0, 1000) outside all gaps is in exactly one piece.
            for sec in 0..1000 {
                let inside_gap = gaps.iter().any(|(gf, gt)| t(sec) >= *gf && t(sec) < *gt);
                let covering = pieces.iter().filter(|(_, f, to)| t(sec) >= *f && t(sec) < *to).count();
                prop_assert_eq!(covering, usize::from(!inside_gap));
            }
        }

        /// However late usage trickles in after finalization, up or down,
        /// the period's usage line plus its adjustments charge exactly
        /// what rating the highest usage ever counted would: a fall is
        /// never refunded by a line, only reported with the credit that
        /// rating the new usage would give, and a repeated close with no
        /// new usage changes nothing.
        #[test]
        fn adjustments_charge_the_peak_and_report_every_fall(
            first in 0i64..100_000,
            later in proptest::collection::vec(-5_000i64..5_000, 0..8),
        ) {
            let p = november();
            let meter = "gigabytes".to_owned();
            let price = &plan().prices[1];
            let mut counted = Decimal::new(first, 1);
            let mut peak = counted;
            let usage = UsageTotals::from([(meter.clone(), counted)]);
            let mut lines = period_lines(&plan(), &p, p.start_time(), &usage, Rounding::default()).unwrap();
            for step in later {
                counted = (counted + Decimal::new(step, 1)).max(Decimal::ZERO);
                let billed = billed_quantities(lines.iter().map(|l| &l.kind), &p);
                let now = UsageTotals::from([(meter.clone(), counted)]);
                let adj = adjustment_lines(&plan(), &p, &billed, &now).unwrap();
                prop_assert!(adj.lines.iter().all(|l| l.amount >= Decimal::ZERO));
                for d in &adj.decreases {
                    prop_assert_eq!(d.now, counted);
                    prop_assert!(d.now < d.was);
                    prop_assert_eq!(d.credit, rate(price, d.was).unwrap().amount() - rate(price, d.now).unwrap().amount());
                }
                prop_assert_eq!(adj.decreases.len(), usize::from(counted < peak));
                lines.extend(adj.lines);
                peak = peak.max(counted);
                // Idempotent: closing again with no new usage adds nothing.
                let billed = billed_quantities(lines.iter().map(|l| &l.kind), &p);
                prop_assert!(adjustment_lines(&plan(), &p, &billed, &now).unwrap().lines.is_empty());
            }
            let usage_charged: Decimal = lines.iter()
                .filter(|l| !matches!(l.kind, LineKind::Recurring | LineKind::Proration))
                .map(|l| l.amount).sum();
            prop_assert_eq!(usage_charged, rate(price, peak).unwrap().amount());
        }
    }
}
