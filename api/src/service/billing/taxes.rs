//! Tax rates per jurisdiction: platform admins add dated rates; a close
//! taxes each subscription at its own rate, else at the rate of its
//! tenant's jurisdiction in force on the period's last day.

use chrono::NaiveDate;
use dotmac_billing::{parse_jurisdiction, JurisdictionRate, TaxRate};
use dotmac_schema::{Role, TaxRateId};
use rust_decimal::Decimal;

use super::Billing;
use crate::caller::RequestCtx;
use crate::error::{ApiError, ApiResult};
use crate::service::required_text;
use crate::store::audit_log::{self, AuditEntry};
use crate::store::tax_rate_rows::{self, TaxRateRow};
use crate::store::{Page, PageRequest};

/// A rate to add.
#[derive(Debug, Clone)]
pub struct NewTaxRate {
    pub jurisdiction: String,
    pub name: String,
    pub percent: Decimal,
    pub inclusive: bool,
    pub effective_from: NaiveDate,
}

/// Adds a jurisdiction's rate from a date on (platform admins). Rates are
/// never edited: a change is a new rate from a later date, so invoices
/// already issued keep the rate they were issued under.
pub async fn create_tax_rate(
    billing: &Billing,
    ctx: &RequestCtx,
    input: NewTaxRate,
) -> ApiResult<TaxRateRow> {
    let p = ctx.writer_with(&[Role::PlatformAdmin])?;
    let jurisdiction = parse_jurisdiction(&input.jurisdiction)
        .map_err(|e| ApiError::validation("input.jurisdiction", e.to_string()))?;
    let name = required_text("input.name", &input.name, 100)?;
    if input.percent < Decimal::ZERO || input.percent > Decimal::ONE_HUNDRED {
        return Err(ApiError::validation("input.percent", "must be 0 to 100"));
    }
    dotmac_schema::dates::check_date(input.effective_from)
        .map_err(|e| ApiError::validation("input.effectiveFrom", e.to_string()))?;
    let row = TaxRateRow {
        id: TaxRateId::new().to_string(),
        jurisdiction,
        name,
        percent: input.percent.normalize().to_string(),
        inclusive: input.inclusive,
        effective_from: input.effective_from.to_string(),
        created_at: billing.clock.now(),
    };
    let tx = billing.store.begin(&p.scope).await?;
    let row = tax_rate_rows::insert(&tx, row).await?;
    audit_log::record(
        &tx,
        billing.clock.now(),
        Some(p),
        ctx.request_id.as_deref(),
        AuditEntry {
            action: "tax_rate.create",
            object_id: Some(row.id.clone()),
            after: Some(format!(
                "{}:{}%:{}:{}",
                row.jurisdiction,
                row.percent,
                if row.inclusive {
                    "inclusive"
                } else {
                    "exclusive"
                },
                row.effective_from
            )),
            ..Default::default()
        },
    )
    .await?;
    tx.commit().await?;
    Ok(row)
}

/// The catalogue of rates (platform admins).
pub async fn list_tax_rates(
    billing: &Billing,
    ctx: &RequestCtx,
    jurisdiction: Option<&str>,
    page: PageRequest<'_>,
) -> ApiResult<Page<TaxRateRow>> {
    let p = ctx.principal()?;
    if p.role() != Some(Role::PlatformAdmin) {
        return Err(ApiError::Forbidden(
            "tax rates are managed by platform admins".into(),
        ));
    }
    let jurisdiction = jurisdiction
        .map(|j| {
            parse_jurisdiction(j).map_err(|e| ApiError::validation("jurisdiction", e.to_string()))
        })
        .transpose()?;
    let tx = billing.store.begin(&p.scope).await?;
    let page = tax_rate_rows::list(&tx, jurisdiction.as_deref(), page).await?;
    tx.commit().await?;
    Ok(page)
}

/// Each tenant's tax jurisdiction and every rate: what a close resolves
/// rates from.
pub struct Jurisdictions {
    pub of_tenant: std::collections::HashMap<String, String>,
    pub rates: Vec<JurisdictionRate>,
}

impl Jurisdictions {
    /// The rate of `tenant`'s jurisdiction in force on `on`, if any.
    pub fn rate(&self, tenant: &str, on: NaiveDate) -> Option<TaxRate> {
        let code = self.of_tenant.get(tenant)?;
        dotmac_billing::rate_for(&self.rates, code, on).cloned()
    }
}
