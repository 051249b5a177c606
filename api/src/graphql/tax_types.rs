//! GraphQL types of tax rates per jurisdiction.

use async_graphql::{InputObject, Object, ID};
use chrono::{DateTime, NaiveDate, Utc};

use crate::domain::tax::NewTaxRate;
use crate::error::ApiError;
use crate::store::tax::TaxRateRow;

/// A jurisdiction's tax rate from a date on. Invoices of a tenant in that
/// jurisdiction carry the rate in force on their period's last day, unless
/// the subscription has a rate of its own.
pub struct TaxRate(pub TaxRateRow);

#[Object]
impl TaxRate {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    /// ISO 3166 code: a country (KE) or a subdivision (US-CA).
    async fn jurisdiction(&self) -> &str {
        &self.0.jurisdiction
    }
    /// What invoices print, e.g. "KE VAT 16%".
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// Decimal text, e.g. "16".
    async fn percent(&self) -> &str {
        &self.0.percent
    }
    /// Whether prices already include the tax.
    async fn inclusive(&self) -> bool {
        self.0.inclusive
    }
    /// YYYY-MM-DD.
    async fn effective_from(&self) -> &str {
        &self.0.effective_from
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
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
            effective_from: self
                .effective_from
                .trim()
                .parse::<NaiveDate>()
                .map_err(|_| {
                    ApiError::validation("input.effectiveFrom", "must be a date such as 2026-01-01")
                })?,
        })
    }
}
