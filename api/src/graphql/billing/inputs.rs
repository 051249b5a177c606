//! Billing's GraphQL inputs and their validation: every field is checked
//! and named on error before a use case sees it.

use async_graphql::{InputObject, ID};
use dotmac_schema::price::{ChargeModel, Interval, Price, Tier};
use rust_decimal::Decimal;

use super::views::ChargeModelKind;
use crate::error::ApiError;
use crate::service::billing::subscriptions::SubscriptionTerms;
use crate::service::billing::taxes::NewTaxRate;

#[derive(InputObject)]
pub struct TierInput {
    /// Decimal text; omit on the last tier.
    pub up_to: Option<String>,
    pub unit_price: String,
    #[graphql(default)]
    pub flat_fee: Option<String>,
}

#[derive(InputObject)]
pub struct PriceInput {
    /// The meter rated; omit for a FLAT recurring fee.
    pub meter: Option<String>,
    pub model: ChargeModelKind,
    pub amount: Option<String>,
    pub unit_price: Option<String>,
    #[graphql(default)]
    pub tiers: Vec<TierInput>,
    pub package_size: Option<String>,
    pub package_price: Option<String>,
    pub percent: Option<String>,
    pub included_units: Option<String>,
    pub minimum: Option<String>,
}

#[derive(InputObject)]
pub struct CreatePlanInput {
    /// `[a-z0-9-]`, 3–63 characters; versions of one plan share it.
    pub slug: String,
    pub version: i32,
    pub name: String,
    /// ISO-4217 code, e.g. USD.
    pub currency: String,
    pub interval: Interval,
    /// Default 14.
    pub trial_days: Option<i32>,
    pub prices: Vec<PriceInput>,
}

#[derive(InputObject)]
pub struct SubscribeInput {
    pub tenant_id: ID,
    pub plan_id: ID,
    /// First period's start (YYYY-MM-DD); default today.
    pub anchor_date: Option<String>,
    /// A rate of the subscription's own (an exemption is a 0% rate); none
    /// means its tenant's jurisdiction's rate, or untaxed without one.
    pub tax: Option<TaxInput>,
    pub coupon: Option<CouponInput>,
}

#[derive(InputObject)]
pub struct TaxInput {
    /// What invoices print, e.g. "KE VAT 16%".
    pub name: String,
    /// Decimal text, e.g. "16".
    pub percent: String,
    /// Whether the plan's prices already include the tax.
    #[graphql(default)]
    pub inclusive: bool,
}

#[derive(InputObject)]
pub struct CouponInput {
    pub code: String,
    /// Percent off every charge line (exclusive with amountOff).
    pub percent_off: Option<String>,
    /// A fixed amount off each invoice, spread over its charge lines.
    pub amount_off: Option<String>,
    /// Periods it applies to; omit for forever (1 is once).
    pub periods: Option<i32>,
}

impl SubscribeInput {
    /// The subscription's terms, every field checked and named on error.
    pub fn terms(&self) -> Result<SubscriptionTerms, ApiError> {
        let tax = self
            .tax
            .as_ref()
            .map(|t| {
                Ok::<_, ApiError>(dotmac_billing::TaxRate {
                    name: t.name.clone(),
                    percent: decimal("input.tax.percent".into(), Some(&t.percent))?,
                    inclusive: t.inclusive,
                })
            })
            .transpose()?;
        let coupon = self
            .coupon
            .as_ref()
            .map(|c| {
                let discount = match (&c.percent_off, &c.amount_off) {
                    (Some(p), None) => dotmac_billing::Discount::Percent(decimal(
                        "input.coupon.percentOff".into(),
                        Some(p),
                    )?),
                    (None, Some(a)) => dotmac_billing::Discount::Fixed(decimal(
                        "input.coupon.amountOff".into(),
                        Some(a),
                    )?),
                    _ => {
                        return Err(ApiError::validation(
                            "input.coupon",
                            "give exactly one of percentOff and amountOff",
                        ))
                    }
                };
                let duration = match c.periods {
                    None => dotmac_billing::CouponDuration::Forever,
                    Some(1) => dotmac_billing::CouponDuration::Once,
                    Some(n) => {
                        dotmac_billing::CouponDuration::Periods(u32::try_from(n).map_err(|_| {
                            ApiError::validation("input.coupon.periods", "must be at least 1")
                        })?)
                    }
                };
                Ok(dotmac_billing::Coupon {
                    code: c.code.clone(),
                    discount,
                    duration,
                })
            })
            .transpose()?;
        Ok(SubscriptionTerms { tax, coupon })
    }
}

fn decimal(field: String, v: Option<&String>) -> Result<Decimal, ApiError> {
    let v = v.ok_or_else(|| ApiError::validation(field.clone(), "is required for this model"))?;
    v.trim()
        .parse::<Decimal>()
        .map_err(|_| ApiError::validation(field, "must be a decimal number such as 12.50"))
}

fn opt_decimal(field: String, v: Option<&String>) -> Result<Option<Decimal>, ApiError> {
    v.map(|_| decimal(field, v)).transpose()
}

impl PriceInput {
    fn to_price(&self, at: &str) -> Result<Price, ApiError> {
        let f = |name: &str| format!("{at}.{name}");
        let tiers = || -> Result<Vec<Tier>, ApiError> {
            self.tiers
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    let here = format!("{at}.tiers[{i}]");
                    Ok(Tier {
                        up_to: opt_decimal(format!("{here}.upTo"), t.up_to.as_ref())?,
                        unit_price: decimal(format!("{here}.unitPrice"), Some(&t.unit_price))?,
                        flat_fee: opt_decimal(format!("{here}.flatFee"), t.flat_fee.as_ref())?
                            .unwrap_or_default(),
                    })
                })
                .collect()
        };
        let model = match self.model {
            ChargeModelKind::Flat => ChargeModel::Flat {
                amount: decimal(f("amount"), self.amount.as_ref())?,
            },
            ChargeModelKind::PerUnit => ChargeModel::PerUnit {
                unit_price: decimal(f("unitPrice"), self.unit_price.as_ref())?,
            },
            ChargeModelKind::Graduated => ChargeModel::Graduated { tiers: tiers()? },
            ChargeModelKind::Volume => ChargeModel::Volume { tiers: tiers()? },
            ChargeModelKind::Package => ChargeModel::Package {
                size: decimal(f("packageSize"), self.package_size.as_ref())?,
                package_price: decimal(f("packagePrice"), self.package_price.as_ref())?,
            },
            ChargeModelKind::Percentage => ChargeModel::Percentage {
                percent: decimal(f("percent"), self.percent.as_ref())?,
            },
        };
        Ok(Price {
            meter: self.meter.clone(),
            model,
            included_units: opt_decimal(f("includedUnits"), self.included_units.as_ref())?
                .unwrap_or_default(),
            minimum: opt_decimal(f("minimum"), self.minimum.as_ref())?,
        })
    }
}

impl CreatePlanInput {
    /// The plan definition, every field checked and named on error.
    pub fn to_plan(&self) -> Result<dotmac_schema::price::PlanVersion, ApiError> {
        let version = u32::try_from(self.version)
            .map_err(|_| ApiError::validation("input.version", "versions start at 1"))?;
        let trial_days = u32::try_from(self.trial_days.unwrap_or(14))
            .map_err(|_| ApiError::validation("input.trialDays", "must not be negative"))?;
        let currency = dotmac_schema::money::Currency::from_code(self.currency.trim())
            .map_err(|e| ApiError::validation("input.currency", e.to_string()))?;
        let prices = self
            .prices
            .iter()
            .enumerate()
            .map(|(i, p)| p.to_price(&format!("input.prices[{i}]")))
            .collect::<Result<_, _>>()?;
        Ok(dotmac_schema::price::PlanVersion {
            plan: self.slug.clone(),
            version,
            currency,
            interval: self.interval,
            trial_days,
            prices,
        })
    }
}

#[derive(InputObject)]
pub struct CreditLineInput {
    /// Index of the invoice line (0-based).
    pub line: i32,
    /// Net amount to credit (tax follows).
    pub amount: String,
}

#[derive(InputObject)]
pub struct CreateCreditNoteInput {
    pub invoice_id: ID,
    pub reason: String,
    /// Omit to credit everything left on the invoice.
    pub lines: Option<Vec<CreditLineInput>>,
}

#[derive(InputObject)]
pub struct RecordPaymentInput {
    pub invoice_id: ID,
    /// Decimal text in the invoice's currency.
    pub amount: String,
    /// The payment's id at its source (unique).
    pub reference: String,
}

#[derive(InputObject)]
pub struct CreateTaxRateInput {
    /// ISO 3166 code: a country (KE) or a subdivision (US-CA); a tenant in
    /// a subdivision without a rate of its own pays its country's.
    pub jurisdiction: String,
    pub name: String,
    /// Decimal text, 0 to 100.
    pub percent: String,
    #[graphql(default)]
    pub inclusive: bool,
    /// YYYY-MM-DD: the first day it applies to.
    pub effective_from: String,
}

impl CreateTaxRateInput {
    pub fn to_new(&self) -> Result<NewTaxRate, ApiError> {
        Ok(NewTaxRate {
            jurisdiction: self.jurisdiction.clone(),
            name: self.name.clone(),
            percent: self.percent.trim().parse().map_err(|_| {
                ApiError::validation("input.percent", "must be a decimal number such as 16")
            })?,
            inclusive: self.inclusive,
            effective_from: dotmac_schema::dates::parse_date(&self.effective_from)
                .map_err(|e| ApiError::validation("input.effectiveFrom", e.to_string()))?,
        })
    }
}
