//! Credit notes and payments of invoices.

use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder};

use super::{CreditNoteRow, PaymentRow};
use crate::error::ApiResult;
use crate::store::entity::{credit_note, payment};
use crate::store::Tx;

pub async fn credit_notes_of(tx: &Tx, invoice_id: &str) -> ApiResult<Vec<CreditNoteRow>> {
    Ok(credit_note::Entity::find()
        .filter(credit_note::Column::InvoiceId.eq(invoice_id))
        .order_by_asc(credit_note::Column::Number)
        .all(tx)
        .await?)
}

pub async fn payments_of(tx: &Tx, invoice_id: &str) -> ApiResult<Vec<PaymentRow>> {
    Ok(payment::Entity::find()
        .filter(payment::Column::InvoiceId.eq(invoice_id))
        .order_by_asc(payment::Column::ReceivedAt)
        .all(tx)
        .await?)
}

pub async fn payment_by_reference(tx: &Tx, reference: &str) -> ApiResult<Option<PaymentRow>> {
    Ok(payment::Entity::find()
        .filter(payment::Column::Reference.eq(reference))
        .one(tx)
        .await?)
}

pub async fn insert_credit_note(tx: &Tx, row: CreditNoteRow) -> ApiResult<CreditNoteRow> {
    Ok(credit_note::ActiveModel::from(row)
        .reset_all()
        .insert(tx)
        .await?)
}

pub async fn insert_payment(tx: &Tx, row: PaymentRow) -> ApiResult<PaymentRow> {
    Ok(payment::ActiveModel::from(row)
        .reset_all()
        .insert(tx)
        .await?)
}
