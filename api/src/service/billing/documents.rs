//! Invoice documents: a finalized invoice with its tenant's name and lines,
//! for the HTML and PDF renderings.

use dotmac_schema::{InvoiceId, InvoiceStatus, TenantId};

use super::Billing;
use crate::error::{ApiError, ApiResult};
use crate::service::parse_id;
use crate::store::billing_rows::{self as rows, InvoiceRow};

/// A finalized invoice with its tenant's name and lines, for a document.
pub async fn invoice_document(
    billing: &Billing,
    principal: &dotmac_schema::Principal,
    id: &str,
) -> ApiResult<(InvoiceRow, String, Vec<dotmac_billing::InvoiceLine>)> {
    let id: InvoiceId = id.parse().map_err(|_| ApiError::not_found("invoice"))?;
    let scope = &principal.scope;
    let tx = billing.store.begin(scope).await?;
    let row = rows::get_invoice(&tx, scope, id.as_str()).await?;
    if matches!(scope, dotmac_schema::Scope::Reseller(_)) {
        return Err(ApiError::Forbidden(
            "resellers see invoice summaries; the document is the tenant's".into(),
        ));
    }
    if row.status == InvoiceStatus::Draft {
        return Err(ApiError::conflict(
            "id",
            "the invoice is a draft until finalized",
        ));
    }
    let tenant: TenantId = parse_id("tenantId", &row.tenant_id)?;
    let name = crate::store::tenant_rows::get(&tx, scope, &tenant)
        .await?
        .name;
    tx.commit().await?;
    let lines = rows::lines(&row)?;
    Ok((row, name, lines))
}
