//! Billing on a schedule: the period close and dunning, every
//! `billing.schedule_minutes`, in each `serve` and `dev` process.

use chrono::TimeDelta;

use super::close::{close_period, CloseRequest};
use super::Billing;

/// Billing on a schedule, in `dotmac serve` and `dotmac dev`: every
/// `billing.schedule_minutes` the previous and the current month are closed
/// (drafts kept current, finalized after their grace) and dunning runs.
/// Several processes may run it at once: closes are idempotent and
/// numbering is serialized in the database.
pub fn spawn_schedule(billing: Billing) {
    let minutes = billing.settings.schedule_minutes;
    if minutes == 0 {
        return;
    }
    tokio::spawn(async move {
        // The first run one period after start: a restart loop does not
        // close over and over.
        let period = std::time::Duration::from_secs(minutes * 60);
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            let now = billing.clock.now();
            let this_month = now.date_naive();
            let last_month = this_month
                .checked_sub_months(chrono::Months::new(1))
                .unwrap_or(this_month);
            for month in [last_month, this_month] {
                let req = CloseRequest {
                    month,
                    now,
                    grace: TimeDelta::days(billing.settings.grace_days),
                };
                match close_period(&billing, &req, &|_, _| {}).await {
                    Ok(r) => tracing::info!(month = %month, report = ?r, "scheduled close"),
                    Err(e) => tracing::warn!(month = %month, error = %e, "scheduled close failed"),
                }
            }
            let days = billing.settings.suspend_after_days;
            match super::dunning::run_dunning(&billing, now, days).await {
                Ok(r) => tracing::info!(report = ?r, "scheduled dunning"),
                Err(e) => tracing::warn!(error = %e, "scheduled dunning failed"),
            }
        }
    });
}
