//! After finalization, against real stores: credit notes (partial, full,
//! over-credit refused), payments (partial, over, idempotent by reference,
//! from the signed webhook), prepaid credit used by the next invoice, void
//! and uncollectible, and dunning (past_due, suspension, reactivation).

use chrono::{NaiveDate, TimeDelta};
use dotmac_api::app::App;
use dotmac_api::error::ApiError;
use dotmac_api::service::billing::dunning::{run_dunning, DUNNING_REASON};
use dotmac_api::service::billing::plans::create_plan;
use dotmac_api::service::billing::settlement::{
    create_credit_note, record_manual_payment, set_status, NewPayment,
};
use dotmac_api::service::billing::subscriptions::subscribe;
use dotmac_api::store::billing_rows::InvoiceRow;
use dotmac_api::store::entity::{invoice, subscription, tenant};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};

use crate::billing::{admin, close, tenant_ids};
use crate::support::{Backend, TestServer};

const SECRET: &str = "whsec_test_0123456789abcdef0123456789abcdef";

async fn invoice_of(app: &App, tenant: &str, start: &str) -> InvoiceRow {
    let tx = app.store.begin_system().await.unwrap();
    let row = invoice::Entity::find()
        .filter(invoice::Column::TenantId.eq(tenant))
        .filter(invoice::Column::PeriodStart.eq(start))
        .order_by_asc(invoice::Column::Id)
        .one(&tx)
        .await
        .unwrap()
        .unwrap();
    tx.commit().await.unwrap();
    row
}

fn pay<'a>(invoice: &'a str, amount: &'a str, reference: &'a str) -> NewPayment<'a> {
    NewPayment {
        invoice_id: invoice,
        amount,
        currency: None,
        reference,
        method: dotmac_schema::PaymentMethod::Manual,
        received_at: crate::support::TEST_NOW.parse().unwrap(),
    }
}

/// Creates `srv`'s usage tables and the flat 100 USD plan.
async fn flat_plan(srv: &TestServer) -> dotmac_api::store::billing_rows::PlanRow {
    crate::support::usage_tables(&srv.app).await;
    create_plan(
        &srv.app.billing,
        &admin(),
        "Flat",
        crate::billing::flat("flat", 100),
    )
    .await
    .unwrap()
}

async fn settlement_scenario(backend: Backend) {
    let srv = TestServer::start_with(backend, |c| {
        c.billing.payment_webhook_secret = SECRET.into();
    })
    .await;
    let app = &srv.app;
    let ctx = admin();
    let plan = flat_plan(&srv).await;
    let (a, b) = tenant_ids(app).await;
    let october = NaiveDate::from_ymd_opt(2026, 10, 1);
    subscribe(
        &app.billing,
        &ctx,
        &a,
        &plan.id,
        october,
        Default::default(),
    )
    .await
    .unwrap();
    subscribe(
        &app.billing,
        &ctx,
        &b,
        &plan.id,
        october,
        Default::default(),
    )
    .await
    .unwrap();
    close(app, "2026-10-01", "2026-11-28T00:00:00Z").await;
    let inv = invoice_of(app, &a, "2026-10-01").await;
    assert_eq!(
        (inv.status.as_str(), inv.amount_due.as_str()),
        ("finalized", "100.00")
    );

    // A partial credit note, then one that asks for more than is left.
    let note = create_credit_note(
        &app.billing,
        &ctx,
        &inv.id,
        "outage on Oct 3",
        Some(vec![(0, "30".into())]),
    )
    .await
    .unwrap();
    assert_eq!(
        (note.number.as_str(), note.total.as_str()),
        ("DM-CN-000001", "30.00")
    );
    let err = create_credit_note(
        &app.billing,
        &ctx,
        &inv.id,
        "again",
        Some(vec![(0, "80".into())]),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, ApiError::Validation { field, .. } if field == "input.lines[0].amount"),
        "{err}"
    );
    assert_eq!(invoice_of(app, &a, "2026-10-01").await.amount_due, "70.00");

    // Partial payment, then an overpayment: the rest becomes credit.
    record_manual_payment(&app.billing, &ctx, pay(&inv.id, "50", "bank-1"))
        .await
        .unwrap();
    let over = record_manual_payment(&app.billing, &ctx, pay(&inv.id, "30.00", "bank-2"))
        .await
        .unwrap();
    assert_eq!(
        (over.to_invoice.as_str(), over.to_credit_balance.as_str()),
        ("20.00", "10.00")
    );
    let again = record_manual_payment(&app.billing, &ctx, pay(&inv.id, "30.00", "bank-2"))
        .await
        .unwrap();
    assert_eq!(again.id, over.id, "the same reference records once");
    let conflict = record_manual_payment(&app.billing, &ctx, pay(&inv.id, "31", "bank-2"))
        .await
        .unwrap_err();
    assert!(matches!(conflict, ApiError::Conflict { .. }));
    let paid = invoice_of(app, &a, "2026-10-01").await;
    assert_eq!(
        (
            paid.status.as_str(),
            paid.amount_due.as_str(),
            paid.paid.as_str()
        ),
        ("paid", "0.00", "70.00")
    );
    let bad = record_manual_payment(&app.billing, &ctx, pay(&inv.id, "0.001", "bank-3"))
        .await
        .unwrap_err();
    assert!(matches!(&bad, ApiError::Validation { field, .. } if field == "input.amount"));

    // The rest of the line credited after payment: all to credit (70 + 10).
    let full = create_credit_note(&app.billing, &ctx, &inv.id, "goodwill", None)
        .await
        .unwrap();
    assert_eq!(
        (full.total.as_str(), full.to_credit_balance.as_str()),
        ("70.00", "70.00")
    );
    assert!(
        create_credit_note(&app.billing, &ctx, &inv.id, "more", None)
            .await
            .is_err()
    );

    // November's invoice uses the 80 of credit: 20 left to pay.
    close(app, "2026-11-01", "2026-12-05T00:00:00Z").await;
    let nov = invoice_of(app, &a, "2026-11-01").await;
    assert_eq!(
        (nov.credit_applied.as_str(), nov.amount_due.as_str()),
        ("80.00", "20.00")
    );

    // Void only what nobody paid or credited; uncollectible, then paid.
    let b_oct = invoice_of(app, &b, "2026-10-01").await;
    assert!(matches!(
        set_status(
            &app.billing,
            &ctx,
            &paid.id,
            dotmac_schema::InvoiceStatus::Void,
            "typo"
        )
        .await,
        Err(ApiError::Conflict { .. })
    ));
    let written = set_status(
        &app.billing,
        &ctx,
        &b_oct.id,
        dotmac_schema::InvoiceStatus::Uncollectible,
        "gone quiet",
    )
    .await
    .unwrap();
    assert_eq!(written.status, dotmac_schema::InvoiceStatus::Uncollectible);
    assert!(set_status(
        &app.billing,
        &ctx,
        &b_oct.id,
        dotmac_schema::InvoiceStatus::Void,
        "x"
    )
    .await
    .is_err());

    webhook(&srv, &b_oct).await;
    dunning(&srv, &a, &nov).await;
}

/// The signed webhook pays B's October invoice once, whatever retries.
async fn webhook(srv: &TestServer, inv: &InvoiceRow) {
    let url = format!("{}/v1/webhooks/payments", srv.url);
    let body = serde_json::json!({ "invoiceId": inv.id, "amount": "100.00", "currency": "USD", "reference": "psp_evt_1" }).to_string();
    let post = |body: String, sig: Option<String>| {
        let url = url.clone();
        async move {
            let mut req = reqwest::Client::new().post(url).body(body);
            if let Some(s) = sig {
                req = req.header("dotmac-signature", s);
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<serde_json::Value>().await.unwrap())
        }
    };
    let now = srv.clock.now().timestamp();
    let signed = |b: &str, t: i64| Some(dotmac_api::http::payments::sign(SECRET, t, b.as_bytes()));
    // Deliveries racing each other record one payment, and each answers 200
    // (24 at once: the old code answered 500 in one run of three).
    let racing =
        futures::future::join_all((0..24).map(|_| post(body.clone(), signed(&body, now)))).await;
    let (status, first) = racing[0].clone();
    assert_eq!(status, 200, "{first}");
    for (status, answer) in &racing {
        assert_eq!(
            (*status, &answer["paymentId"]),
            (200, &first["paymentId"]),
            "{answer}"
        );
    }
    let (status, second) = post(body.clone(), signed(&body, now)).await;
    assert_eq!(
        (status, &second["paymentId"]),
        (200, &first["paymentId"]),
        "a redelivery records once"
    );
    assert_eq!(post(body.clone(), None).await.0, 401);
    // A timestamp at the end of i64 is stale, not an overflow.
    let far = dotmac_api::http::payments::sign(SECRET, i64::MIN, body.as_bytes());
    assert_eq!(post(body.clone(), Some(far)).await.0, 401);
    assert_eq!(
        post(body.clone(), signed(&body, now - 3600)).await.0,
        401,
        "stale"
    );
    assert_eq!(
        post(
            body.clone(),
            Some(dotmac_api::http::payments::sign(
                "wrong-secret",
                now,
                body.as_bytes()
            ))
        )
        .await
        .0,
        401
    );
    let tampered = body.replace("100.00", "1.00");
    assert_eq!(post(tampered, signed(&body, now)).await.0, 401);
    let euros = body.replace("USD", "EUR").replace("psp_evt_1", "psp_evt_2");
    assert_eq!(post(euros.clone(), signed(&euros, now)).await.0, 400);
    let unknown = body
        .replace(&inv.id, "inv_00000000000000000000000000000000")
        .replace("psp_evt_1", "psp_evt_3");
    assert_eq!(post(unknown.clone(), signed(&unknown, now)).await.0, 404);
    let paid = invoice_of(&srv.app, &inv.tenant_id, "2026-10-01").await;
    assert_eq!(
        (paid.status.as_str(), paid.paid.as_str()),
        ("paid", "100.00")
    );
}

/// November's 20 left unpaid: past_due after net 30, suspended 14 days
/// later, reactivated once paid.
async fn dunning(srv: &TestServer, tenant: &str, nov: &InvoiceRow) {
    let app = &srv.app;
    let finalized = nov.finalized_at.unwrap();
    let state = |app: &App| {
        let app = app.clone();
        let tenant = tenant.to_owned();
        async move {
            let tx = app.store.begin_system().await.unwrap();
            let t = tenant::Entity::find_by_id(tenant.as_str())
                .one(&tx)
                .await
                .unwrap()
                .unwrap();
            let s = subscription::Entity::find()
                .filter(subscription::Column::TenantId.eq(tenant.as_str()))
                .one(&tx)
                .await
                .unwrap()
                .unwrap();
            tx.commit().await.unwrap();
            (t.state, s.state, t.state_reason)
        }
    };
    let r = run_dunning(&app.billing, finalized + TimeDelta::days(29), 14)
        .await
        .unwrap();
    assert_eq!(r.past_due, 0);
    // A owes 20 and B (already suspended by hand) its November 100.
    let r = run_dunning(&app.billing, finalized + TimeDelta::days(31), 14)
        .await
        .unwrap();
    assert_eq!(r.past_due, 2);
    assert_eq!(
        state(app).await.1,
        dotmac_schema::SubscriptionState::PastDue
    );
    let r = run_dunning(&app.billing, finalized + TimeDelta::days(45), 14)
        .await
        .unwrap();
    assert_eq!(
        r.suspended, 1,
        "B was suspended already, and not by dunning"
    );
    let (t, _, why) = state(app).await;
    assert_eq!(
        (t.as_str(), why.as_deref()),
        ("suspended", Some(DUNNING_REASON))
    );
    record_manual_payment(&app.billing, &admin(), pay(&nov.id, "20", "bank-nov"))
        .await
        .unwrap();
    let r = run_dunning(&app.billing, finalized + TimeDelta::days(46), 14)
        .await
        .unwrap();
    assert_eq!(r.reactivated, 1);
    let (t, s, _) = state(app).await;
    assert_eq!((t.as_str(), s.as_str()), ("active", "active"));
}

#[tokio::test]
async fn settlement_on_postgres() {
    settlement_scenario(Backend::Postgres).await;
}

#[tokio::test]
async fn settlement_on_embedded_sqlite() {
    settlement_scenario(Backend::Sqlite).await;
}

/// Overpayments of one tenant's invoices at the same time each move their
/// excess to its prepaid credit: the balance is the sum of every excess,
/// none overwritten by another's read-then-write.
#[tokio::test]
async fn concurrent_overpayments_keep_every_excess_on_postgres() {
    const INVOICES: usize = 8;
    let srv = TestServer::start(Backend::Postgres).await;
    let app = &srv.app;
    let ctx = admin();
    let plan = flat_plan(&srv).await;
    let (a, _) = tenant_ids(app).await;
    // One live subscription a tenant: its invoices are months apart.
    subscribe(
        &app.billing,
        &ctx,
        &a,
        &plan.id,
        NaiveDate::from_ymd_opt(2026, 10, 1),
        Default::default(),
    )
    .await
    .unwrap();
    let mut month = NaiveDate::from_ymd_opt(2026, 10, 1).unwrap();
    for _ in 0..INVOICES {
        close(app, &month.to_string(), "2027-07-01T00:00:00Z").await;
        month = month.checked_add_months(chrono::Months::new(1)).unwrap();
    }
    let tx = app.store.begin_system().await.unwrap();
    let invoices: Vec<String> = invoice::Entity::find()
        .filter(invoice::Column::TenantId.eq(&a))
        .all(&tx)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    tx.commit().await.unwrap();
    assert_eq!(invoices.len(), INVOICES);
    let references: Vec<String> = (0..INVOICES).map(|i| format!("wire-{i}")).collect();
    let payments = invoices.iter().zip(&references).map(|(id, reference)| {
        let ctx = ctx.clone();
        async move { record_manual_payment(&app.billing, &ctx, pay(id, "110.00", reference)).await }
    });
    for paid in futures::future::join_all(payments).await {
        assert_eq!(paid.unwrap().to_credit_balance, "10.00");
    }
    let tx = app.store.begin_system().await.unwrap();
    let balance = dotmac_api::store::billing_rows::credit_balance(&tx, &a, "USD")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(balance, rust_decimal::Decimal::from(10 * INVOICES as i64));
}
