//! Billing rules a tenant or an operator could once get around (#13), each
//! on both stores: a cancellation at period end ends the period it was
//! asked in; no two subscriptions of a tenant cover one instant; late usage
//! that fell is never refunded by the close; a void invoice counts for
//! nothing; a negative total becomes credit; plans name real meters; money
//! shows its places; the close report counts only subscriptions that exist.

use chrono::NaiveDate;
use dotmac_api::app::App;
use dotmac_api::service::billing::plans::create_plan;
use dotmac_api::service::billing::settlement::set_status;
use dotmac_api::service::billing::subscriptions::{
    cancel_subscription, subscribe, SubscriptionTerms,
};
use dotmac_api::store::billing_rows::{self as rows, PLATFORM_ISSUER};
use dotmac_api::store::entity::{invoice, subscription};
use dotmac_schema::{InvoiceStatus, SubscriptionState};
use rust_decimal_macros::dec;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use crate::billing::{
    admin, at, billing_server, close, commit_usage, create_gigabytes, flat, invoices, small_plan,
    tenant_ids,
};
use crate::support::Backend;

fn october() -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(2026, 10, 1)
}

/// The `gigabytes` meter, the small plan that prices it, and tenant A
/// subscribed to it from 1 October on `terms`; A's id.
async fn a_on_the_small_plan(app: &App, terms: SubscriptionTerms) -> String {
    let ctx = admin();
    create_gigabytes(app, &ctx).await;
    let plan = create_plan(&app.billing, &ctx, "Small", small_plan())
        .await
        .unwrap();
    let (a, _) = tenant_ids(app).await;
    subscribe(&app.billing, &ctx, &a, &plan.id, october(), terms)
        .await
        .unwrap();
    a
}

async fn subscription_row(app: &App, id: &str) -> subscription::Model {
    let tx = app.store.begin_system().await.unwrap();
    let row = subscription::Entity::find_by_id(id)
        .one(&tx)
        .await
        .unwrap()
        .unwrap();
    tx.commit().await.unwrap();
    row
}

async fn invoice_of(app: &App, tenant: &str, start: &str) -> Option<invoice::Model> {
    invoices(app)
        .await
        .into_iter()
        .find(|i| i.tenant_id == tenant && i.period_start == start)
}

/// A cancellation at period end asked on 16 November ends on 1 December,
/// though last month's close runs (as the schedule runs it) all November
/// long; November is billed in full and December not at all. A subscription
/// anchored after the month closed is not counted in its report.
async fn cancel_at_period_end_scenario(backend: Backend) {
    let srv = billing_server(backend).await;
    let app = &srv.app;
    let ctx = admin();
    let plan = create_plan(&app.billing, &ctx, "Flat", flat("flat", 99))
        .await
        .unwrap();
    let (a, b) = tenant_ids(app).await;
    let sub_a = subscribe(
        &app.billing,
        &ctx,
        &a,
        &plan.id,
        october(),
        Default::default(),
    )
    .await
    .unwrap();
    // B starts in December: October and November are not its months.
    subscribe(
        &app.billing,
        &ctx,
        &b,
        &plan.id,
        NaiveDate::from_ymd_opt(2026, 12, 15),
        Default::default(),
    )
    .await
    .unwrap();

    srv.clock.set(at("2026-11-16T10:00:00Z"));
    let asked = cancel_subscription(&app.billing, &ctx, &sub_a.id, true)
        .await
        .unwrap();
    assert_eq!(asked.cancels_at, Some(at("2026-12-01T00:00:00Z")));
    // October's close, run again and again in November by the schedule.
    for now in ["2026-11-16T11:00:00Z", "2026-11-20T00:00:00Z"] {
        let report = close(app, "2026-10-01", now).await;
        assert_eq!(report.subscriptions, 1, "B is not October's: {report:?}");
        assert_eq!(report.in_trial, 0, "{report:?}");
        let row = subscription_row(app, &sub_a.id).await;
        assert_ne!(row.state, SubscriptionState::Cancelled, "ended early");
        assert_eq!(row.cancelled_at, None);
    }
    let report = close(app, "2026-11-01", "2026-12-05T00:00:00Z").await;
    assert_eq!(report.subscriptions, 1, "{report:?}");
    let november = invoice_of(app, &a, "2026-11-01").await.unwrap();
    assert_eq!(november.total, "99.00", "November is billed in full");
    let row = subscription_row(app, &sub_a.id).await;
    assert_eq!(row.state, SubscriptionState::Cancelled);
    assert_eq!(row.cancelled_at, Some(at("2026-12-01T00:00:00Z")));
    close(app, "2026-12-01", "2027-01-20T00:00:00Z").await;
    assert!(invoice_of(app, &a, "2026-12-01").await.is_none());
    assert_eq!(
        invoice_of(app, &b, "2026-12-15").await.unwrap().status,
        InvoiceStatus::Finalized,
        "B's first period, from its anchor"
    );
}

#[tokio::test]
async fn cancel_at_period_end_on_postgres() {
    cancel_at_period_end_scenario(Backend::Postgres).await;
}

#[tokio::test]
async fn cancel_at_period_end_on_embedded_sqlite() {
    cancel_at_period_end_scenario(Backend::Sqlite).await;
}

/// After an immediate cancellation, a subscription backdated over what the
/// cancelled one covered is refused by the store; one from after it is not.
async fn no_overlap_scenario(backend: Backend) {
    let srv = billing_server(backend).await;
    let app = &srv.app;
    let ctx = admin();
    let plan = create_plan(&app.billing, &ctx, "Flat", flat("flat", 99))
        .await
        .unwrap();
    let (a, _) = tenant_ids(app).await;
    let first = subscribe(
        &app.billing,
        &ctx,
        &a,
        &plan.id,
        october(),
        Default::default(),
    )
    .await
    .unwrap();
    close(app, "2026-10-01", "2026-11-05T00:00:00Z").await;
    srv.clock.set(at("2026-11-10T12:00:00Z"));
    cancel_subscription(&app.billing, &ctx, &first.id, false)
        .await
        .unwrap();
    for anchor in [(2026, 10, 1), (2026, 10, 15), (2026, 11, 10)] {
        let err = subscribe(
            &app.billing,
            &ctx,
            &a,
            &plan.id,
            NaiveDate::from_ymd_opt(anchor.0, anchor.1, anchor.2),
            Default::default(),
        )
        .await
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("input.anchorDate: another subscription"),
            "{anchor:?}: {err}"
        );
    }
    let again = subscribe(
        &app.billing,
        &ctx,
        &a,
        &plan.id,
        NaiveDate::from_ymd_opt(2026, 11, 11),
        Default::default(),
    )
    .await
    .unwrap();
    // The store holds the rule, whatever the code above it: a row written
    // past the service is refused too.
    let tx = app.store.begin_system().await.unwrap();
    let moved = subscription::Entity::update_many()
        .col_expr(
            subscription::Column::CoversFrom,
            Expr::value(at("2026-10-20T00:00:00Z")),
        )
        .filter(subscription::Column::Id.eq(again.id.as_str()))
        .exec(&tx)
        .await;
    assert!(moved.is_err(), "an overlapping row was stored");
    drop(tx);
    close(app, "2026-11-01", "2026-12-05T00:00:00Z").await;
    let november: Vec<_> = invoices(app)
        .await
        .into_iter()
        .filter(|i| i.tenant_id == a && i.period_start == "2026-11-01")
        .collect();
    assert_eq!(november.len(), 1, "one November invoice per subscription");
    let totals: Vec<String> = invoices(app)
        .await
        .into_iter()
        .filter(|i| i.tenant_id == a)
        .map(|i| i.total)
        .collect();
    // October in full; November up to the 10th, 12:00 on the first
    // subscription; nothing of October or the 10th on the second.
    assert_eq!(totals.len(), 3, "{totals:?}");
}

#[tokio::test]
async fn no_overlap_on_postgres() {
    no_overlap_scenario(Backend::Postgres).await;
}

#[tokio::test]
async fn no_overlap_on_embedded_sqlite() {
    no_overlap_scenario(Backend::Sqlite).await;
}

/// Late usage that fell after October was finalized is not refunded on
/// November's invoice: the close reports it for a platform credit note.
/// Late usage that grew is billed as before.
async fn late_decrease_scenario(backend: Backend) {
    let srv = billing_server(backend).await;
    let app = &srv.app;
    let a = a_on_the_small_plan(app, Default::default()).await;
    commit_usage(
        app,
        &a,
        "gigabytes",
        at("2026-10-10T10:00:00Z"),
        dec!(300),
        1,
    )
    .await;
    close(app, "2026-10-01", "2026-11-05T00:00:00Z").await;
    let october_invoice = invoice_of(app, &a, "2026-10-01").await.unwrap();
    assert_eq!(october_invoice.total, "109.00", "99 + 200 GB at 0.05");
    // A correction lowers October by 100 GB.
    commit_usage(
        app,
        &a,
        "gigabytes",
        at("2026-10-11T10:00:00Z"),
        dec!(-100),
        2,
    )
    .await;
    let report = close(app, "2026-11-01", "2026-11-20T00:00:00Z").await;
    let november = invoice_of(app, &a, "2026-11-01").await.unwrap();
    assert_eq!(
        november.total, "99.00",
        "no refund line: {}",
        november.lines
    );
    assert_eq!(report.credit_due.len(), 1, "{report:?}");
    let due = &report.credit_due[0];
    assert_eq!((due.fall.was, due.fall.now), (dec!(300), dec!(200)));
    assert_eq!(due.fall.credit, dec!(5.00));
    assert_eq!(due.tenant_id, a);
    // Usage back above what was billed: only the excess is charged.
    commit_usage(
        app,
        &a,
        "gigabytes",
        at("2026-10-12T10:00:00Z"),
        dec!(150),
        3,
    )
    .await;
    let report = close(app, "2026-11-01", "2026-11-21T00:00:00Z").await;
    assert!(report.credit_due.is_empty(), "{report:?}");
    let november = invoice_of(app, &a, "2026-11-01").await.unwrap();
    assert_eq!(november.total, "101.50", "99 + 50 GB over the 300 billed");
}

#[tokio::test]
async fn late_decrease_on_postgres_and_clickhouse() {
    late_decrease_scenario(Backend::Postgres).await;
}

#[tokio::test]
async fn late_decrease_on_embedded_sqlite() {
    late_decrease_scenario(Backend::Sqlite).await;
}

/// A voided October invoice bills nothing: late October usage is not
/// adjusted against it, and it does not use up a coupon period.
async fn void_scenario(backend: Backend) {
    use dotmac_billing::{Coupon, CouponDuration, Discount};
    let srv = billing_server(backend).await;
    let app = &srv.app;
    let ctx = admin();
    let terms = SubscriptionTerms {
        tax: None,
        coupon: Some(Coupon {
            code: "ONCE".into(),
            discount: Discount::Percent(dec!(10)),
            duration: CouponDuration::Periods(1),
        }),
    };
    let a = a_on_the_small_plan(app, terms).await;
    close(app, "2026-10-01", "2026-11-05T00:00:00Z").await;
    let october_invoice = invoice_of(app, &a, "2026-10-01").await.unwrap();
    assert_ne!(october_invoice.discount, "0.00");
    set_status(
        &app.billing,
        &ctx,
        &october_invoice.id,
        InvoiceStatus::Void,
        "issued in error",
    )
    .await
    .unwrap();
    commit_usage(
        app,
        &a,
        "gigabytes",
        at("2026-10-10T10:00:00Z"),
        dec!(300),
        1,
    )
    .await;
    close(app, "2026-11-01", "2026-12-05T00:00:00Z").await;
    let november = invoice_of(app, &a, "2026-11-01").await.unwrap();
    let kinds: Vec<_> = rows::lines(&november)
        .unwrap()
        .into_iter()
        .map(|l| l.kind)
        .collect();
    assert!(
        !kinds
            .iter()
            .any(|k| matches!(k, dotmac_billing::LineKind::Adjustment { .. })),
        "adjusted against a void invoice: {kinds:?}"
    );
    assert_eq!(
        november.discount, "9.90",
        "the coupon's one period is still unused"
    );
}

#[tokio::test]
async fn void_counts_for_nothing_on_postgres() {
    void_scenario(Backend::Postgres).await;
}

#[tokio::test]
async fn void_counts_for_nothing_on_embedded_sqlite() {
    void_scenario(Backend::Sqlite).await;
}

/// A negative total, finalized, becomes the tenant's credit (on the
/// invoice as `creditIssued`, nothing due) and pays its next invoice; every
/// amount shows the currency's places; a plan naming no meter, or a meter
/// archived under live subscriptions, is refused.
async fn credit_and_places_scenario(backend: Backend) {
    let srv = billing_server(backend).await;
    let app = &srv.app;
    let ctx = admin();
    let a = a_on_the_small_plan(app, Default::default()).await;
    let mut typo = small_plan();
    typo.plan = "typo".into();
    typo.prices[1].meter = Some("gigabites".into());
    let err = create_plan(&app.billing, &ctx, "Typo", typo)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "input.prices[1].meter: no meter `gigabites` (or it is archived)"
    );
    let gigabytes = {
        use dotmac_api::store::entity::meter;
        let tx = app.store.begin_system().await.unwrap();
        let m = meter::Entity::find()
            .filter(meter::Column::Slug.eq("gigabytes"))
            .one(&tx)
            .await
            .unwrap()
            .unwrap();
        tx.commit().await.unwrap();
        m.id
    };
    let err = dotmac_api::service::metering::meters::archive(&app.metering, &ctx, &gigabytes, "x")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("plan `small` v1"), "{err}");

    // October as a draft, then (as no rule of today can make one) its total
    // turned negative, and finalized.
    close(app, "2026-10-01", "2026-11-01T06:00:00Z").await;
    let draft = invoice_of(app, &a, "2026-10-01").await.unwrap();
    assert_eq!(draft.status, InvoiceStatus::Draft);
    for (field, value) in [
        ("paid", &draft.paid),
        ("credited", &draft.credited),
        ("credit_applied", &draft.credit_applied),
        ("credit_issued", &draft.credit_issued),
    ] {
        assert_eq!(value, "0.00", "{field}");
    }
    let tx = app.store.begin_system().await.unwrap();
    invoice::Entity::update_many()
        .col_expr(invoice::Column::Total, Expr::value("-120.00"))
        .col_expr(invoice::Column::AmountDue, Expr::value("0.00"))
        .filter(invoice::Column::Id.eq(draft.id.as_str()))
        .exec(&tx)
        .await
        .unwrap();
    rows::finalize_many(
        &tx,
        std::slice::from_ref(&draft.id),
        PLATFORM_ISSUER,
        at("2026-11-05T00:00:00Z"),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let october_invoice = invoice_of(app, &a, "2026-10-01").await.unwrap();
    assert_eq!(october_invoice.credit_issued, "120.00");
    assert_eq!(october_invoice.status, InvoiceStatus::Paid);
    // November (99) is paid from that credit; 21.00 is left.
    close(app, "2026-11-01", "2026-12-05T00:00:00Z").await;
    let november = invoice_of(app, &a, "2026-11-01").await.unwrap();
    assert_eq!(
        (
            november.credit_applied.as_str(),
            november.amount_due.as_str()
        ),
        ("99.00", "0.00")
    );
    assert_eq!(november.status, InvoiceStatus::Paid);
    let tx = app.store.begin_system().await.unwrap();
    let balance = rows::credit_balance(&tx, &a, "USD").await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(balance, dec!(21.00));

    // Through GraphQL, as the docs promise: every amount with its places.
    let admin_client = srv.login("admin@demo.dotmac.dev").await;
    let answer = admin_client
        .gql(
            "{ invoices(first: 10) { edges { node { periodStart paid credited creditApplied creditIssued amountDue } } } }",
            serde_json::json!({}),
        )
        .await;
    let edges = answer.data()["invoices"]["edges"]
        .as_array()
        .unwrap()
        .clone();
    assert!(!edges.is_empty());
    for edge in edges {
        let node = &edge["node"];
        for field in [
            "paid",
            "credited",
            "creditApplied",
            "creditIssued",
            "amountDue",
        ] {
            let shown = node[field].as_str().unwrap();
            assert_eq!(
                shown.split('.').nth(1).map(str::len),
                Some(2),
                "{field} of {}: {shown}",
                node["periodStart"]
            );
        }
    }
}

#[tokio::test]
async fn credit_and_places_on_postgres() {
    credit_and_places_scenario(Backend::Postgres).await;
}

#[tokio::test]
async fn credit_and_places_on_embedded_sqlite() {
    credit_and_places_scenario(Backend::Sqlite).await;
}
