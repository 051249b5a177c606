//! Billing rows in the relational store, one file per concern: plans,
//! subscriptions (with plan changes and pauses), invoices (reads, writes,
//! row locks) and their Postgres bulk insert, finalization, the gapless
//! number sequences, prepaid credit balances, credit notes and payments,
//! and the conversions between rows and the billing crate's types. The
//! rules (numbers' format, due dates, credit use) are the billing crate's.
//! Callers use the items through this module.

mod credit_balances;
mod finalize;
mod invoice_bulk_insert;
mod invoice_rows;
mod numbering;
mod plan_rows;
mod row_conversions;
mod settlement_rows;
mod subscription_rows;

pub use credit_balances::*;
pub use finalize::*;
pub use invoice_rows::*;
pub use numbering::*;
pub use plan_rows::*;
pub use row_conversions::*;
pub use settlement_rows::*;
pub use subscription_rows::*;

use rust_decimal::Decimal;

use super::entity::{
    credit_note, invoice, payment, plan, plan_change, subscription, subscription_pause,
};
use crate::error::{ApiError, ApiResult};

pub use credit_note::Model as CreditNoteRow;
pub use invoice::Model as InvoiceRow;
pub use payment::Model as PaymentRow;
pub use plan::Model as PlanRow;
pub use plan_change::Model as PlanChangeRow;
pub use subscription::Model as SubscriptionRow;
pub use subscription_pause::Model as PauseRow;

/// Who issues invoices; numbers are gapless per issuer.
pub const PLATFORM_ISSUER: &str = "DM";

fn corrupt(what: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(format!("stored {what} is unreadable: {e}"))
}

pub fn dec(text: &str) -> ApiResult<Decimal> {
    text.parse().map_err(|e| corrupt("amount", e))
}

/// The currency of a stored amount (an invoice's, a balance's).
pub fn currency(code: &str) -> ApiResult<dotmac_schema::money::Currency> {
    dotmac_schema::money::Currency::from_code(code).map_err(|e| corrupt("currency", e))
}

/// What a finalized invoice is announced with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalizedInvoice {
    pub id: String,
    pub tenant_id: String,
    pub number: String,
    pub total: String,
    pub currency: String,
}
