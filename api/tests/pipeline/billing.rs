//! Billing from the real pipeline: events through the broker and the
//! aggregator into ClickHouse, a period close to a finalized invoice equal
//! to the hand-computed total, a clean reconciliation, and a late event
//! after finalization billed as an adjustment on the next invoice.

use std::time::Duration;

use chrono::{Datelike, TimeDelta};
use dotmac_api::service::billing::close::{close_period, CloseRequest};
use dotmac_api::service::billing::reconcile::reconcile;
use dotmac_api::store::entity::invoice;
use dotmac_schema::Scope;
use rust_decimal::Decimal;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::json;

use crate::harness::{event, Pipeline};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_through_the_pipeline_are_invoiced_and_reconcile() {
    let p = Pipeline::start().await;
    let app = &p.server.app;
    p.create_meter(json!({ "slug": "gb-out", "name": "GB out", "eventType": "session.end", "aggregation": "SUM", "valuePath": "gb", "groupBy": ["region"], "window": "HOUR" })).await;
    p.create_meter(json!({ "slug": "sessions-n", "name": "Sessions", "eventType": "session.end", "aggregation": "COUNT", "window": "MINUTE" })).await;
    // 50 a month; GB beyond 100 at 0.10; sessions beyond 10 at 0.01.
    let plan = p.admin.gql(
        "mutation { createPlan(input: { slug: \"pipe-plan\", version: 1, name: \"Pipe\", currency: \"USD\", interval: MONTHLY, trialDays: 0, prices: [ { model: FLAT, amount: \"50\" }, { meter: \"gb-out\", model: GRADUATED, tiers: [ { upTo: \"100\", unitPrice: \"0\" }, { unitPrice: \"0.10\" } ] }, { meter: \"sessions-n\", model: PER_UNIT, unitPrice: \"0.01\", includedUnits: \"10\" } ] }) { id } }",
        json!({}),
    ).await;
    let plan_id = plan.data()["createPlan"]["id"].clone();
    let acme = p.tenant("acme-fiber");
    let now = p.server.clock.now();
    let month_start = now.date_naive().with_day(1).unwrap();
    p.admin
        .gql(
            "mutation($t: ID!, $p: ID!, $a: String!) { subscribe(input: { tenantId: $t, planId: $p, anchorDate: $a }) { id } }",
            json!({ "t": acme, "p": plan_id, "a": month_start.to_string() }),
        )
        .await
        .data();

    // 300 sessions inside this month, before now, and 20 resent.
    let base = month_start.and_time(chrono::NaiveTime::MIN).and_utc()
        + (now - month_start.and_time(chrono::NaiveTime::MIN).and_utc()) / 2;
    let mut records = Vec::new();
    let mut gb = Decimal::ZERO;
    for k in 0..300i64 {
        let g = Decimal::new((k % 7) + 1, 0) + Decimal::new(k % 3, 1);
        gb += g;
        let time = (base + TimeDelta::seconds(k)).to_rfc3339();
        let region = ["north", "south"][(k % 2) as usize];
        let payload = event(
            &format!("s-{k}"),
            "session.end",
            &time,
            json!({ "gb": g.to_string(), "region": region }),
        );
        records.push((Some(acme.clone()), payload.to_string().into_bytes()));
    }
    let resent: Vec<_> = records[..20].to_vec();
    records.extend(resent);
    let agg = p.spawn_aggregator();
    p.produce(&records).await;
    p.wait_for_records(320, Duration::from_secs(60)).await;

    let period_end = month_start
        .checked_add_months(chrono::Months::new(1))
        .unwrap();
    let after =
        |d: chrono::NaiveDate| d.and_time(chrono::NaiveTime::MIN).and_utc() + TimeDelta::days(4);
    let close = |month: chrono::NaiveDate, now| CloseRequest {
        month,
        now,
        grace: TimeDelta::days(3),
    };
    let report = close_period(
        &app.billing,
        &close(month_start, after(period_end)),
        &|_, _| {},
    )
    .await
    .unwrap();
    assert_eq!(report.finalized, 1, "{report:?}");
    let tx = app.store.begin_system().await.unwrap();
    let inv = invoice::Entity::find()
        .filter(invoice::Column::TenantId.eq(acme.as_str()))
        .one(&tx)
        .await
        .unwrap()
        .unwrap();
    tx.commit().await.unwrap();
    let hundred = Decimal::from(100);
    let expected = Decimal::from(50)
        + (gb - hundred).max(Decimal::ZERO) * Decimal::new(10, 2)
        + Decimal::from(300 - 10) * Decimal::new(1, 2);
    assert_eq!(
        inv.total.parse::<Decimal>().unwrap(),
        expected.round_dp(2),
        "gb {gb}"
    );
    assert_eq!(inv.status, dotmac_schema::InvoiceStatus::Finalized);

    let clean = reconcile(&app.billing, &Scope::All, month_start)
        .await
        .unwrap();
    assert_eq!(clean.discrepancies(), 0, "{clean:?}");
    assert_eq!(clean.rows.len(), 2);
    assert!(clean
        .rows
        .iter()
        .all(|r| r.raw == r.rollups && Some(r.rollups) == r.invoiced));

    // A late event of this month, after finalization.
    let late = event(
        "s-late",
        "session.end",
        &(base + TimeDelta::seconds(1000)).to_rfc3339(),
        json!({ "gb": "40", "region": "north" }),
    );
    p.produce(&[(Some(acme.clone()), late.to_string().into_bytes())])
        .await;
    p.wait_for_records(321, Duration::from_secs(60)).await;
    let stale = reconcile(&app.billing, &Scope::All, month_start)
        .await
        .unwrap();
    assert_eq!(stale.discrepancies(), 2, "{stale:?}");
    assert!(stale.rows.iter().all(|r| r
        .causes
        .iter()
        .any(|c| c.contains("late usage after finalization"))));

    // The next period's invoice carries the adjustment; then all is clean.
    close_period(
        &app.billing,
        &close(
            period_end,
            after(
                period_end
                    .checked_add_months(chrono::Months::new(1))
                    .unwrap(),
            ),
        ),
        &|_, _| {},
    )
    .await
    .unwrap();
    let tx = app.store.begin_system().await.unwrap();
    let next = invoice::Entity::find()
        .filter(invoice::Column::TenantId.eq(acme.as_str()))
        .filter(invoice::Column::PeriodStart.eq(period_end.to_string()))
        .one(&tx)
        .await
        .unwrap()
        .unwrap();
    tx.commit().await.unwrap();
    let lines = dotmac_api::store::billing_rows::lines(&next).unwrap();
    let adj: Decimal = lines
        .iter()
        .filter(|l| {
            l.description.contains("late usage") && l.description.contains(&month_start.to_string())
        })
        .map(|l| l.amount)
        .sum();
    let gb_before = (gb - hundred).max(Decimal::ZERO) * Decimal::new(10, 2);
    let gb_after = (gb + Decimal::from(40) - hundred).max(Decimal::ZERO) * Decimal::new(10, 2);
    assert_eq!(
        adj,
        (gb_after - gb_before).round_dp(2) + Decimal::new(1, 2),
        "{lines:?}"
    );
    let healed = reconcile(&app.billing, &Scope::All, month_start)
        .await
        .unwrap();
    assert_eq!(healed.discrepancies(), 0, "{healed:?}");

    agg.stop().await;
    p.cleanup().await;
}
