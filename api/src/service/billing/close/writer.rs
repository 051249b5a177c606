//! Writing a close: rated chunks go to the store one transaction each, new
//! invoices past their grace inserted finalized with numbers drawn in that
//! transaction, while the next chunk is rated; each committed chunk's
//! finalized invoices are announced through the outbox in that transaction.

use std::collections::HashMap;

use super::book::Due;
use super::finalized_events::announcements;
use super::rating::{rate, Pending, Write};
use super::read_model::{Known, Usage};
use super::{CloseReport, CloseRequest};
use crate::error::{ApiError, ApiResult};
use crate::service::billing::Billing;
use crate::store::billing_rows::{self as rows, FinalizedInvoice, InvoiceRow, PLATFORM_ISSUER};

/// Rates the due subscriptions and writes what they produce a chunk per
/// transaction, finalizing what is past its grace in the same transaction
/// (numbers drawn from the issuer's sequence there), then announces each
/// chunk's finalized invoices. Rating and writing overlap: a chunk goes to
/// Postgres while the next is rated. `progress(done, total)` counts
/// subscriptions, after each committed chunk.
#[allow(clippy::too_many_arguments)]
pub(super) async fn rate_and_write(
    billing: &Billing,
    req: &CloseRequest,
    due: &[Due],
    usage: &Usage,
    known: &Known,
    chunk: usize,
    progress: &(dyn Fn(usize, usize) + Sync),
    report: &mut CloseReport,
) -> ApiResult<()> {
    // Each message: a chunk to write, and how many subscriptions it covers.
    let (send, mut receive) = tokio::sync::mpsc::channel::<(Vec<Pending>, usize)>(2);
    let mut rated = CloseReport::default();
    let rating = async {
        let mut pending = Vec::with_capacity(chunk);
        let mut covered = 0;
        for (i, d) in due.iter().enumerate() {
            // One subscription's data failing fails that subscription
            // alone: the others are billed.
            match rate(billing, req, d, usage, known, &mut rated).await {
                Ok(Some(p)) => pending.push(p),
                Ok(None) => {}
                Err(e) => rated.failed.push(super::CloseFailure::of(&d.sub, &e)),
            }
            covered += 1;
            // Every `chunk` subscriptions, whatever they left to write: the
            // progress moves even when most are unchanged.
            if covered == chunk {
                let full = std::mem::replace(&mut pending, Vec::with_capacity(chunk));
                send.send((full, std::mem::take(&mut covered)))
                    .await
                    .map_err(|_| ApiError::internal("the close's writer stopped"))?;
            }
            // Rating is CPU work in the writer's task: let the writer answer
            // Postgres between subscriptions now and then.
            if i % 64 == 63 {
                tokio::task::yield_now().await;
            }
        }
        if covered > 0 {
            send.send((pending, covered))
                .await
                .map_err(|_| ApiError::internal("the close's writer stopped"))?;
        }
        drop(send);
        Ok::<_, ApiError>(())
    };
    let mut written = CloseReport::default();
    let writing = async {
        let mut done = 0;
        while let Some((pending, covered)) = receive.recv().await {
            if !pending.is_empty() {
                write(billing, req, &pending, &known.resellers, &mut written).await?;
            }
            done += covered;
            progress(done, due.len());
        }
        Ok::<_, ApiError>(())
    };
    tokio::try_join!(rating, writing)?;
    report.unchanged += rated.unchanged + written.unchanged;
    report.cancelled_in_period += rated.cancelled_in_period;
    report.failed.extend(rated.failed);
    report.credit_due.extend(rated.credit_due);
    report.drafted += written.drafted;
    report.updated += written.updated;
    report.finalized += written.finalized;
    Ok(())
}

/// Writes one chunk in one transaction, with the announcements of what it
/// finalized, then wakes the outbox's relay.
pub(super) async fn write(
    billing: &Billing,
    req: &CloseRequest,
    pending: &[Pending],
    resellers: &HashMap<String, Option<String>>,
    report: &mut CloseReport,
) -> ApiResult<()> {
    let started = std::time::Instant::now();
    let (written, direct) = match write_chunk(billing, req, pending, resellers, true).await? {
        Some(written) => (written, true),
        // Another close wrote some of these invoices since this one read:
        // draft what is missing, then finalize whatever is there.
        None => match write_chunk(billing, req, pending, resellers, false).await? {
            Some(written) => (written, false),
            None => return Err(ApiError::internal("a chunk could not be written")),
        },
    };
    report.drafted += written.drafted;
    report.updated += written.updated;
    report.unchanged += written.unchanged;
    report.finalized += written.finalized.len();
    if !written.finalized.is_empty() {
        billing.outbox.committed();
    }
    tracing::debug!(
        invoices = pending.len(),
        direct,
        write_ms = started.elapsed().as_millis(),
        "chunk written"
    );
    Ok(())
}

/// What one committed chunk did.
#[derive(Default)]
pub(super) struct Written {
    pub(super) drafted: usize,
    pub(super) updated: usize,
    pub(super) unchanged: usize,
    pub(super) finalized: Vec<FinalizedInvoice>,
}

/// One chunk in one transaction. `direct`: new invoices past their grace
/// are inserted already finalized (one write per invoice, not two); when
/// another close inserted any of them first, the transaction is rolled back
/// (its numbers with it) and `None` returned, for a retry without `direct`:
/// insert what is missing as drafts, then finalize the drafts there.
pub(super) async fn write_chunk(
    billing: &Billing,
    req: &CloseRequest,
    pending: &[Pending],
    resellers: &HashMap<String, Option<String>>,
    direct: bool,
) -> ApiResult<Option<Written>> {
    let mut written = Written::default();
    let tx = billing.store.begin_system().await?;
    // Every chunk takes the issuer's sequence first, before writing any
    // invoice: concurrent closes (the schedule runs in every process; the
    // CLI has its own clock and grace) queue there, one chunk at a time,
    // and never hold invoice rows the other waits for. A close alone pays
    // one row lock per chunk.
    rows::lock_sequence(&tx, PLATFORM_ISSUER).await?;
    let mut inserts: Vec<InvoiceRow> = Vec::new();
    let mut ripe_inserts: Vec<usize> = Vec::new();
    for p in pending {
        if let Write::Insert(row) = &p.write {
            if p.ripe {
                ripe_inserts.push(inserts.len());
            }
            inserts.push(row.clone());
        }
    }
    let mut ripe: Vec<String> = Vec::new();
    if direct && !ripe_inserts.is_empty() {
        let first = rows::reserve_numbers(&tx, PLATFORM_ISSUER, ripe_inserts.len()).await?;
        for (i, &at) in ripe_inserts.iter().enumerate() {
            let number = dotmac_billing::invoice_number(PLATFORM_ISSUER, first + i as i64);
            let row = &mut inserts[at];
            rows::mark_finalized(row, number, req.now);
            written.finalized.push(rows::announced(row));
        }
    }
    let inserted = rows::insert_invoices(&tx, &inserts).await?;
    if direct && inserted < inserts.len() && !ripe_inserts.is_empty() {
        tx.rollback().await?;
        return Ok(None);
    }
    written.drafted = inserted;
    written.unchanged += inserts.len() - inserted;
    if !direct && !ripe_inserts.is_empty() {
        let pairs: Vec<(String, String)> = ripe_inserts
            .iter()
            .map(|&at| {
                let r = &inserts[at];
                (r.subscription_id.clone(), r.period_start.clone())
            })
            .collect();
        ripe.extend(rows::draft_ids_for(&tx, &pairs).await?);
    }

    // Updates in id order, the order finalization locks rows in.
    let mut updates: Vec<(&InvoiceRow, bool)> = pending
        .iter()
        .filter_map(|p| match &p.write {
            Write::Update(row) => Some((row, p.ripe)),
            _ => None,
        })
        .collect();
    updates.sort_by(|a, b| a.0.id.cmp(&b.0.id));
    for (row, is_ripe) in updates {
        if rows::update_draft(&tx, row, req.now).await? {
            written.updated += 1;
        } else {
            written.unchanged += 1;
        }
        if is_ripe {
            ripe.push(row.id.clone());
        }
    }
    for p in pending {
        if let Write::Keep(id) = &p.write {
            written.unchanged += 1;
            ripe.push(id.clone());
        }
    }
    rows::apply_prepaid_credit(&tx, &written.finalized).await?;
    written
        .finalized
        .extend(rows::finalize_many(&tx, &ripe, PLATFORM_ISSUER, req.now).await?);
    // Announced if and only if this chunk commits.
    billing
        .outbox
        .record(&tx, &announcements(req.now, &written.finalized, resellers))
        .await?;
    tx.commit().await?;
    Ok(Some(written))
}
