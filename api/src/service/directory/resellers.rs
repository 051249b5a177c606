//! Reseller use cases: platform admins onboard resellers; resellers read their own.

use dotmac_schema::{ResellerId, ResellerTier, Role};

use super::Directory;
use crate::caller::RequestCtx;
use crate::error::ApiResult;
use crate::service::{email, required_text};
use crate::store::audit_log::{self, AuditEntry};
use crate::store::reseller_rows::{self, ResellerRow};

pub struct NewReseller {
    pub name: String,
    /// Bronze when not given.
    pub tier: Option<ResellerTier>,
    pub contact_email: Option<String>,
}

pub async fn create(
    directory: &Directory,
    ctx: &RequestCtx,
    input: NewReseller,
) -> ApiResult<ResellerRow> {
    let p = ctx.writer_with(&[Role::PlatformAdmin])?;
    let name = required_text("input.name", &input.name, 200)?;
    let tier = input.tier.unwrap_or_default();
    let contact_email = input
        .contact_email
        .as_deref()
        .map(|e| email("input.contactEmail", e))
        .transpose()?;
    let tx = directory.store.begin(&p.scope).await?;
    let row = reseller_rows::insert(
        &tx,
        ResellerRow {
            id: ResellerId::new().to_string(),
            name,
            tier,
            contact_email,
            created_at: directory.clock.now(),
        },
    )
    .await?;
    audit_log::record(
        &tx,
        directory.clock.now(),
        Some(p),
        ctx.request_id.as_deref(),
        AuditEntry {
            action: "reseller.create",
            reseller_id: Some(row.id.clone()),
            object_id: Some(row.id.clone()),
            ..Default::default()
        },
    )
    .await?;
    tx.commit().await?;
    Ok(row)
}
