//! Plans and their prices: charge models (flat, per-unit,
//! graduated and volume tiers, package, percentage) with included allowances
//! and minimum commitments, and plan versions. Only the definitions and
//! their checks live here; rating them is `dotmac_billing::rating`.

use rust_decimal::Decimal;

use crate::money::{validate_price, Currency, MoneyError};
use crate::slug::validate_slug;

/// One tier: units up to and including `up_to` (the last tier has none).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tier {
    pub up_to: Option<Decimal>,
    pub unit_price: Decimal,
    /// Charged once when any unit falls in this tier (graduated), or when
    /// the total falls in it (volume).
    #[serde(default)]
    pub flat_fee: Decimal,
}

/// How a period's quantity becomes an amount.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "model", rename_all = "snake_case")]
pub enum ChargeModel {
    /// A fixed amount each period, whatever the usage.
    Flat { amount: Decimal },
    /// The same price for every unit.
    PerUnit { unit_price: Decimal },
    /// Each unit at the price of the tier it falls in.
    Graduated { tiers: Vec<Tier> },
    /// Every unit at the price of the tier the total falls in.
    Volume { tiers: Vec<Tier> },
    /// Whole packages of `size` units, a started package charged in full.
    Package {
        size: Decimal,
        package_price: Decimal,
    },
    /// A share of the metered value (a SUM meter of amounts), in percent.
    Percentage { percent: Decimal },
}

/// One price of a plan.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Price {
    /// The meter whose period total is rated; none for a flat price.
    pub meter: Option<String>,
    pub model: ChargeModel,
    /// Units free each period before the model applies.
    #[serde(default)]
    pub included_units: Decimal,
    /// The least this price charges per period (a minimum commitment).
    #[serde(default)]
    pub minimum: Option<Decimal>,
}

/// The length of a billing period, on calendar boundaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "graphql", derive(async_graphql::Enum))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Interval {
    Monthly,
    Quarterly,
    Annual,
}

impl Interval {
    pub fn months(self) -> u32 {
        match self {
            Interval::Monthly => 1,
            Interval::Quarterly => 3,
            Interval::Annual => 12,
        }
    }
}

/// One version of a plan. A plan's versions never change once subscribed:
/// a price change is a new version, and subscriptions move explicitly.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PlanVersion {
    pub plan: String,
    pub version: u32,
    pub currency: Currency,
    pub interval: Interval,
    pub trial_days: u32,
    pub prices: Vec<Price>,
}

/// Default trial length.
pub const DEFAULT_TRIAL_DAYS: u32 = 14;

fn invalid(field: String, reason: &str) -> PriceError {
    PriceError {
        field,
        reason: reason.to_owned(),
    }
}

/// Why a plan or price definition is refused, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct PriceError {
    pub field: String,
    pub reason: String,
}

fn amount(field: String, value: Decimal) -> Result<(), PriceError> {
    validate_price("", value).map_err(|e| match e {
        MoneyError::Invalid { reason, .. } => PriceError { field, reason },
        other => invalid(field, &other.to_string()),
    })
}

fn tiers_ok(at: &str, tiers: &[Tier]) -> Result<(), PriceError> {
    if tiers.is_empty() {
        return Err(invalid(format!("{at}.tiers"), "at least one tier"));
    }
    let mut previous = Decimal::ZERO;
    for (i, tier) in tiers.iter().enumerate() {
        let here = format!("{at}.tiers[{i}]");
        amount(format!("{here}.unitPrice"), tier.unit_price)?;
        amount(format!("{here}.flatFee"), tier.flat_fee)?;
        let last = i + 1 == tiers.len();
        match (tier.up_to, last) {
            (None, true) => {}
            (None, false) => {
                return Err(invalid(
                    format!("{here}.upTo"),
                    "only the last tier is unbounded",
                ))
            }
            (Some(_), true) => {
                return Err(invalid(
                    format!("{here}.upTo"),
                    "the last tier must be unbounded",
                ))
            }
            (Some(up), false) if up <= previous => {
                return Err(invalid(
                    format!("{here}.upTo"),
                    "must be greater than the previous tier's (and than 0)",
                ))
            }
            (Some(up), false) => previous = up,
        }
    }
    Ok(())
}

impl Price {
    /// Checks one price; `at` names it in errors (`prices[2]`).
    pub fn validate(&self, at: &str) -> Result<(), PriceError> {
        match (&self.model, &self.meter) {
            (ChargeModel::Flat { .. }, Some(_)) => {
                return Err(invalid(format!("{at}.meter"), "a flat price has no meter"))
            }
            (ChargeModel::Flat { .. }, None) => {}
            (_, None) => {
                return Err(invalid(
                    format!("{at}.meter"),
                    "is required for a usage price",
                ))
            }
            (_, Some(m)) => {
                validate_slug(m).map_err(|e| invalid(format!("{at}.meter"), &e.to_string()))?
            }
        }
        match &self.model {
            ChargeModel::Flat { amount: a } => amount(format!("{at}.amount"), *a)?,
            ChargeModel::PerUnit { unit_price } => amount(format!("{at}.unitPrice"), *unit_price)?,
            ChargeModel::Graduated { tiers } | ChargeModel::Volume { tiers } => {
                tiers_ok(at, tiers)?
            }
            ChargeModel::Package {
                size,
                package_price,
            } => {
                if *size <= Decimal::ZERO {
                    return Err(invalid(format!("{at}.size"), "must be greater than 0"));
                }
                amount(format!("{at}.packagePrice"), *package_price)?;
            }
            ChargeModel::Percentage { percent } => {
                if *percent < Decimal::ZERO || *percent > Decimal::ONE_HUNDRED {
                    return Err(invalid(format!("{at}.percent"), "must be 0 to 100"));
                }
            }
        }
        // A quantity, not an amount: only its sign is checked.
        if self.included_units < Decimal::ZERO {
            return Err(invalid(
                format!("{at}.includedUnits"),
                "must not be negative",
            ));
        }
        if let Some(m) = self.minimum {
            amount(format!("{at}.minimum"), m)?;
        }
        Ok(())
    }
}

impl PlanVersion {
    pub fn validate(&self) -> Result<(), PriceError> {
        validate_slug(&self.plan).map_err(|e| invalid("plan".into(), &e.to_string()))?;
        if self.version == 0 {
            return Err(invalid("version".into(), "versions start at 1"));
        }
        if self.trial_days > 365 {
            return Err(invalid("trialDays".into(), "at most 365"));
        }
        if self.prices.is_empty() {
            return Err(invalid("prices".into(), "a plan needs at least one price"));
        }
        let mut meters = std::collections::HashSet::new();
        for (i, price) in self.prices.iter().enumerate() {
            price.validate(&format!("prices[{i}]"))?;
            if let Some(m) = &price.meter {
                if !meters.insert(m.as_str()) {
                    return Err(invalid(
                        format!("prices[{i}].meter"),
                        "a meter is priced once per plan",
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn tier(up_to: Option<Decimal>, unit_price: Decimal) -> Tier {
        Tier {
            up_to,
            unit_price,
            flat_fee: Decimal::ZERO,
        }
    }

    fn usage(model: ChargeModel) -> Price {
        Price {
            meter: Some("gigabytes".into()),
            model,
            included_units: Decimal::ZERO,
            minimum: None,
        }
    }

    #[test]
    fn definitions_are_checked_naming_the_field() {
        let ok = usage(ChargeModel::Graduated {
            tiers: vec![tier(Some(dec!(10)), dec!(1)), tier(None, dec!(0.5))],
        });
        assert!(ok.validate("prices[0]").is_ok());
        let cases = [
            (
                usage(ChargeModel::Graduated {
                    tiers: vec![
                        tier(Some(dec!(10)), dec!(1)),
                        tier(Some(dec!(5)), dec!(1)),
                        tier(None, dec!(1)),
                    ],
                }),
                "prices[0].tiers[1].upTo: must be greater than the previous tier's (and than 0)",
            ),
            (
                usage(ChargeModel::Volume {
                    tiers: vec![tier(Some(dec!(10)), dec!(1))],
                }),
                "prices[0].tiers[0].upTo: the last tier must be unbounded",
            ),
            (
                usage(ChargeModel::PerUnit {
                    unit_price: dec!(-1),
                }),
                "prices[0].unitPrice: must not be negative",
            ),
            (
                usage(ChargeModel::Package {
                    size: dec!(0),
                    package_price: dec!(5),
                }),
                "prices[0].size: must be greater than 0",
            ),
            (
                usage(ChargeModel::Percentage { percent: dec!(101) }),
                "prices[0].percent: must be 0 to 100",
            ),
            (
                Price {
                    meter: None,
                    ..usage(ChargeModel::PerUnit {
                        unit_price: dec!(1),
                    })
                },
                "prices[0].meter: is required for a usage price",
            ),
        ];
        for (price, message) in cases {
            assert_eq!(
                price.validate("prices[0]").unwrap_err().to_string(),
                message
            );
        }
        let plan = PlanVersion {
            plan: "small".into(),
            version: 1,
            currency: Currency::USD,
            interval: Interval::Monthly,
            trial_days: DEFAULT_TRIAL_DAYS,
            prices: vec![ok.clone(), ok],
        };
        assert_eq!(
            plan.validate().unwrap_err().to_string(),
            "prices[1].meter: a meter is priced once per plan"
        );
    }
}
