//! Billing as pure logic over exact decimals: calendar
//! billing periods with an anchor day, the subscription lifecycle, rating
//! of a period's usage under a price, proration by elapsed time, per-line
//! taxes, coupons, the invoice arithmetic with credits, credit notes and
//! payments, and dunning. No I/O: the rollup source and the store are the
//! caller's.

pub mod close;
pub mod dunning;
pub mod finalize;
pub mod invoice;
pub mod jurisdiction;
pub mod period;
pub mod proration;
pub mod rating;
pub mod settlement;
pub mod subscription;
pub mod tax;

pub use close::{
    adjustment_lines, billed_quantities, period_lines, recurring_lines, usage_lines, without_gaps,
    Adjustments, UsageDecrease, UsageTotals,
};
pub use finalize::{due_at, invoice_number, prepaid_credit_used, NET_DAYS};
pub use invoice::{
    build_invoice, Coupon, CouponDuration, Discount, Invoice, InvoiceLine, LineDraft, LineKind,
};
pub use jurisdiction::{parse_jurisdiction, rate_for, JurisdictionRate};
pub use period::{Calendar, Period};
pub use proration::prorate;
pub use rating::{rate, Rating, RatingError, TierCharge, MAX_LINE_AMOUNT};
pub use settlement::{credit_line, Applied, CreditLine, Credited, Settlement, SettlementError};
pub use tax::{TaxRate, Taxed};
