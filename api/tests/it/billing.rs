//! The period close against real stores: usage committed the way the
//! aggregator commits it (ClickHouse under `serve`, the embedded store under
//! `dev`) becomes draft invoices, finalized after the grace period with
//! gapless numbers; closing again, or twice at once, changes nothing; late
//! usage after finalization becomes an adjustment on the next invoice.

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use dotmac_api::app::App;
use dotmac_api::caller::RequestCtx;
use dotmac_api::service::billing::close::{close_period, CloseReport, CloseRequest};
use dotmac_api::service::billing::plans::create_plan;
use dotmac_api::service::billing::subscriptions::subscribe;
use dotmac_api::store::billing_rows::{lines, InvoiceRow};
use dotmac_api::store::entity::invoice;
use dotmac_schema::money::Currency;
use dotmac_schema::price::{ChargeModel, Interval, PlanVersion, Price, Tier};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use sea_orm::{EntityTrait, QueryOrder};

use crate::support::{Backend, TestServer};

/// The platform acting for the test, as scheduled jobs act.
pub fn admin() -> RequestCtx {
    RequestCtx::system("billing-test")
}

/// 99 USD a month, the first 100 GB free, then 0.05 per GB.
pub fn small_plan() -> PlanVersion {
    PlanVersion {
        plan: "small".into(),
        version: 1,
        currency: Currency::USD,
        interval: Interval::Monthly,
        trial_days: 0,
        prices: vec![
            Price {
                meter: None,
                model: ChargeModel::Flat { amount: dec!(99) },
                included_units: Decimal::ZERO,
                minimum: None,
            },
            Price {
                meter: Some("gigabytes".into()),
                model: ChargeModel::Graduated {
                    tiers: vec![
                        Tier {
                            up_to: Some(dec!(100)),
                            unit_price: dec!(0),
                            flat_fee: dec!(0),
                        },
                        Tier {
                            up_to: None,
                            unit_price: dec!(0.05),
                            flat_fee: dec!(0),
                        },
                    ],
                },
                included_units: Decimal::ZERO,
                minimum: None,
            },
        ],
    }
}

/// `gigabytes` of `tenant` in the hour at `at`, committed as a flush would.
pub async fn commit_usage(
    app: &App,
    tenant: &str,
    meter: &str,
    at: DateTime<Utc>,
    value: Decimal,
    offset: i64,
) {
    use dotmac_aggregator::rows::{BatchRow, RollupPartRow};
    use dotmac_schema::usage::{RollupKey, RollupState, Window};
    let key = RollupKey {
        tenant: tenant.to_owned(),
        meter: meter.to_owned(),
        window_start: Window::Hour.start(at),
        group: vec![],
    };
    let write_id = uuid::Uuid::now_v7().simple().to_string();
    let part = RollupPartRow::new(&key, &RollupState::Sum(value), 0, &write_id);
    let batch = BatchRow {
        partition: 0,
        first_offset: offset,
        last_offset: offset,
        write_id,
        written_at_us: 0,
        events: 1,
        accepted: 1,
        duplicates: 0,
        dead_lettered: 0,
        epoch: 0,
    };
    crate::support::commit_part(app, part, batch).await;
}

/// The `gigabytes` meter `small_plan` prices (a sum per hour).
pub async fn create_gigabytes(app: &App, ctx: &RequestCtx) {
    dotmac_api::service::metering::meters::create(
        &app.metering,
        ctx,
        dotmac_api::service::metering::meters::NewMeter {
            slug: "gigabytes".into(),
            name: "Gigabytes".into(),
            event_type: "session.gb".into(),
            aggregation: dotmac_schema::usage::Aggregation::Sum,
            value_path: Some("gb".into()),
            group_by: vec![],
            window: dotmac_schema::usage::Window::Hour,
            allow_negative: false,
        },
    )
    .await
    .unwrap();
}

/// A test server whose usage store (ClickHouse) has its tables.
pub async fn billing_server(backend: Backend) -> TestServer {
    let srv = TestServer::start(backend).await;
    crate::support::usage_tables(&srv.app).await;
    srv
}

pub fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// A close of the month starting on `month` (`YYYY-MM-DD`) as of `now`,
/// with three days of grace.
pub fn close_request(month: &str, now: &str) -> CloseRequest {
    CloseRequest {
        month: month.parse().unwrap(),
        now: at(now),
        grace: TimeDelta::days(3),
    }
}

/// Runs [`close_request`]'s close to its end.
pub async fn close(app: &App, month: &str, now: &str) -> CloseReport {
    close_period(&app.billing, &close_request(month, now), &|_, _| {})
        .await
        .unwrap()
}

pub async fn invoices(app: &App) -> Vec<InvoiceRow> {
    let tx = app.store.begin_system().await.unwrap();
    let rows = invoice::Entity::find()
        .order_by_asc(invoice::Column::PeriodStart)
        .order_by_asc(invoice::Column::TenantId)
        .all(&tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    rows
}

/// The id of the demo tenant `slug`.
pub async fn tenant_id(app: &App, slug: &str) -> String {
    use dotmac_api::store::entity::tenant;
    use sea_orm::{ColumnTrait, QueryFilter};
    let tx = app.store.begin_system().await.unwrap();
    let row = tenant::Entity::find()
        .filter(tenant::Column::Slug.eq(slug))
        .one(&tx)
        .await
        .unwrap()
        .unwrap();
    tx.commit().await.unwrap();
    row.id
}

/// The demo tenants A (acme-fiber), B (bolt-broadband) and C
/// (comet-wireless), each subscribed to `plan` from 1 October 2026.
pub async fn subscribe_three(app: &App, plan: &str) -> [String; 3] {
    let (a, b) = tenant_ids(app).await;
    let c = tenant_id(app, "comet-wireless").await;
    for t in [&a, &b, &c] {
        subscribe(
            &app.billing,
            &admin(),
            t,
            plan,
            NaiveDate::from_ymd_opt(2026, 10, 1),
            Default::default(),
        )
        .await
        .unwrap();
    }
    [a, b, c]
}

/// The demo tenants A (acme-fiber) and B (bolt-broadband).
pub async fn tenant_ids(app: &App) -> (String, String) {
    (
        tenant_id(app, "acme-fiber").await,
        tenant_id(app, "bolt-broadband").await,
    )
}

async fn close_scenario(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let app = &srv.app;
    let ctx = admin();
    create_gigabytes(app, &ctx).await;
    let plan = create_plan(&app.billing, &ctx, "Small", small_plan())
        .await
        .unwrap();
    let (a, b) = tenant_ids(app).await;
    let october = NaiveDate::from_ymd_opt(2026, 10, 1).unwrap();
    for t in [&a, &b] {
        subscribe(
            &app.billing,
            &ctx,
            t,
            &plan.id,
            Some(october),
            Default::default(),
        )
        .await
        .unwrap();
    }
    // A: 100 + 150 GB in October (150 billable); B: 40 GB (free tier).
    commit_usage(
        app,
        &a,
        "gigabytes",
        at("2026-10-10T08:30:00Z"),
        dec!(100),
        1,
    )
    .await;
    commit_usage(
        app,
        &a,
        "gigabytes",
        at("2026-10-31T23:59:59Z"),
        dec!(150),
        2,
    )
    .await;
    commit_usage(
        app,
        &b,
        "gigabytes",
        at("2026-10-20T12:00:00Z"),
        dec!(40),
        3,
    )
    .await;
    // November's usage does not leak into October.
    commit_usage(
        app,
        &a,
        "gigabytes",
        at("2026-11-01T00:00:00Z"),
        dec!(1000),
        4,
    )
    .await;

    // Inside the grace period: drafts only.
    let report = close(app, "2026-10-01", "2026-11-02T00:00:00Z").await;
    assert_eq!(
        (report.subscriptions, report.drafted, report.finalized),
        (2, 2, 0)
    );
    assert!(invoices(app)
        .await
        .iter()
        .all(|i| i.status == dotmac_schema::InvoiceStatus::Draft && i.number.is_none()));

    // After it: finalized, numbered 1 and 2, with hand-computed totals.
    let report = close(app, "2026-10-01", "2026-11-28T00:00:00Z").await;
    assert_eq!((report.unchanged, report.finalized), (2, 2));
    let rows = invoices(app).await;
    let totals: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|i| (i.tenant_id.as_str(), i.total.as_str(), i.status.as_str()))
        .collect();
    let mut expected = vec![
        (a.as_str(), "106.50", "finalized"),
        (b.as_str(), "99.00", "finalized"),
    ];
    expected.sort();
    assert_eq!(totals, expected);
    let mut numbers: Vec<_> = rows.iter().filter_map(|i| i.number.clone()).collect();
    numbers.sort();
    assert_eq!(numbers, ["DM-000001", "DM-000002"]);
    let a_lines = lines(rows.iter().find(|i| i.tenant_id == a).unwrap()).unwrap();
    assert_eq!(a_lines.len(), 2);
    assert_eq!(a_lines[1].amount, dec!(7.50));

    documents(&srv, rows.iter().find(|i| i.tenant_id == a).unwrap()).await;

    // These rollups were committed without raw events behind them (written
    // straight as parts): reconciliation names exactly that, and nothing else.
    let recon = dotmac_api::service::billing::reconcile::reconcile(
        &app.billing,
        &dotmac_schema::Scope::All,
        october,
    )
    .await
    .unwrap();
    assert_eq!(recon.discrepancies(), 2, "{recon:?}");
    for row in &recon.rows {
        assert_eq!(row.invoiced, Some(row.rollups));
        assert_eq!(row.causes.len(), 1);
        assert!(
            row.causes[0].contains("differ from the raw deduplicated events"),
            "{row:?}"
        );
    }

    // Closing again changes nothing.
    let report = close(app, "2026-10-01", "2026-11-28T00:00:00Z").await;
    assert_eq!(
        (
            report.unchanged,
            report.drafted,
            report.updated,
            report.finalized
        ),
        (2, 0, 0, 0)
    );
    assert_eq!(invoices(app).await, rows);

    // November as a draft, then 20 GB of October arrive late.
    close(app, "2026-11-01", "2026-11-28T00:00:00Z").await;
    commit_usage(
        app,
        &a,
        "gigabytes",
        at("2026-10-15T00:00:00Z"),
        dec!(20),
        5,
    )
    .await;
    let report = close(app, "2026-11-01", "2026-11-28T00:00:00Z").await;
    assert_eq!(report.updated, 1, "{report:?}");
    let nov_a = invoices(app)
        .await
        .into_iter()
        .find(|i| i.tenant_id == a && i.period_start == "2026-11-01")
        .unwrap();
    let adj = lines(&nov_a)
        .unwrap()
        .into_iter()
        .find(|l| l.description.contains("late usage"))
        .unwrap();
    assert_eq!(adj.amount, dec!(1.00));
    assert!(
        adj.description.contains("2026-10-01 to 2026-11-01"),
        "{}",
        adj.description
    );
    // 99 + (1000 - 100) * 0.05 + the adjustment.
    assert_eq!(nov_a.total, "145.00");
    // October's finalized invoice is untouched.
    assert_eq!(
        invoices(app)
            .await
            .iter()
            .filter(|i| i.period_start == "2026-10-01")
            .cloned()
            .collect::<Vec<_>>(),
        rows
    );

    // Two closes at once after November's grace: one finalization each, no
    // duplicate and no gap.
    let (r1, r2) = tokio::join!(
        close(app, "2026-11-01", "2026-12-05T00:00:00Z"),
        close(app, "2026-11-01", "2026-12-05T00:00:00Z")
    );
    assert_eq!(r1.finalized + r2.finalized, 2);
    let all = invoices(app).await;
    assert_eq!(all.len(), 4);
    let mut numbers: Vec<_> = all.iter().filter_map(|i| i.number.clone()).collect();
    numbers.sort();
    assert_eq!(
        numbers,
        ["DM-000001", "DM-000002", "DM-000003", "DM-000004"]
    );
    // The adjustment is billed once: a December close adds none.
    close(app, "2026-12-01", "2026-12-05T00:00:00Z").await;
    let dec_a = invoices(app)
        .await
        .into_iter()
        .find(|i| i.tenant_id == a && i.period_start == "2026-12-01")
        .unwrap();
    assert!(lines(&dec_a)
        .unwrap()
        .iter()
        .all(|l| !l.description.contains("late usage")));
}

#[tokio::test]
async fn close_on_postgres_and_clickhouse() {
    close_scenario(Backend::Postgres).await;
}

#[tokio::test]
async fn close_on_embedded_sqlite() {
    close_scenario(Backend::Sqlite).await;
}

/// GET a document as `client` (anonymous when `None`): status and body.
async fn fetch(srv: &TestServer, token: Option<&str>, path: &str) -> (u16, Vec<u8>, String) {
    let mut req = reqwest::Client::new().get(format!("{}{path}", srv.url));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, resp.bytes().await.unwrap().to_vec(), ct)
}

/// A's finalized October invoice as HTML and PDF: its own admin reads the
/// full breakdown; B gets 404, the reseller 403, nobody signed in 401.
async fn documents(srv: &TestServer, inv: &InvoiceRow) {
    let a = srv.login("admin@acme-fiber.demo").await;
    let b = srv.login("admin@bolt-broadband.demo").await;
    let r = srv.login("reseller@demo.dotmac.dev").await;
    let number = inv.number.clone().unwrap();
    let html_path = format!("/v1/invoices/{}.html", inv.id);
    let (status, body, ct) = fetch(srv, a.token.as_deref(), &html_path).await;
    assert_eq!(status, 200);
    assert!(ct.starts_with("text/html"), "{ct}");
    let html = String::from_utf8(body).unwrap();
    for expected in [
        number.as_str(),
        "106.50",
        "Acme Fiber",
        "2026-10-01",
        "tier 2: above 100",
        "150 x 0.05",
    ] {
        assert!(html.contains(expected), "{expected:?} missing from {html}");
    }
    let (status, pdf, ct) = fetch(
        srv,
        a.token.as_deref(),
        &format!("/v1/invoices/{}.pdf", inv.id),
    )
    .await;
    assert_eq!((status, ct.as_str()), (200, "application/pdf"));
    let text = String::from_utf8_lossy(&pdf);
    assert!(text.starts_with("%PDF-1.4") && text.trim_end().ends_with("%%EOF"));
    assert!(text.contains(&format!("(Invoice {number})")), "{text}");
    assert!(text.contains("Total: 106.50 USD"));
    // The cross-reference table points at every object.
    let xref: usize = text
        .rsplit("startxref\n")
        .next()
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(text[xref..].starts_with("xref"));
    assert_eq!(fetch(srv, b.token.as_deref(), &html_path).await.0, 404);
    assert_eq!(fetch(srv, r.token.as_deref(), &html_path).await.0, 403);
    assert_eq!(fetch(srv, None, &html_path).await.0, 401);
    assert_eq!(
        fetch(srv, a.token.as_deref(), "/v1/invoices/inv_nope.html")
            .await
            .0,
        404
    );
}

/// A plan of one flat monthly fee in USD.
pub fn flat(slug: &str, fee: i64) -> PlanVersion {
    PlanVersion {
        plan: slug.into(),
        version: 1,
        currency: Currency::USD,
        interval: Interval::Monthly,
        trial_days: 0,
        prices: vec![Price {
            meter: None,
            model: ChargeModel::Flat {
                amount: Decimal::from(fee),
            },
            included_units: Decimal::ZERO,
            minimum: None,
        }],
    }
}

pub async fn invoice_total(
    app: &App,
    tenant: &str,
    start: &str,
) -> Option<(String, String, String)> {
    invoices(app)
        .await
        .into_iter()
        .find(|i| i.tenant_id == tenant && i.period_start == start)
        .map(|i| (i.discount, i.tax, i.total))
}

/// Tax by jurisdiction and a two-period coupon on A; a mid-period plan
/// change on B; an immediate cancellation on C; A ending at a period's end.
async fn terms_scenario(backend: Backend) {
    use dotmac_api::service::billing::subscriptions::{
        cancel_subscription, change_plan, SubscriptionTerms,
    };
    use dotmac_billing::{Coupon, CouponDuration, Discount, TaxRate};
    let srv = billing_server(backend).await;
    let app = &srv.app;
    let ctx = admin();
    let small = create_plan(&app.billing, &ctx, "Small", flat("small", 99))
        .await
        .unwrap();
    let medium = create_plan(&app.billing, &ctx, "Medium", flat("medium", 299))
        .await
        .unwrap();
    let (a, b) = tenant_ids(app).await;
    let c = tenant_id(app, "comet-wireless").await;
    let october = NaiveDate::from_ymd_opt(2026, 10, 1);
    let terms = SubscriptionTerms {
        tax: Some(TaxRate {
            name: "KE VAT 16%".into(),
            percent: dec!(16),
            inclusive: false,
        }),
        coupon: Some(Coupon {
            code: "WELCOME10".into(),
            discount: Discount::Percent(dec!(10)),
            duration: CouponDuration::Periods(2),
        }),
    };
    let sub_a = subscribe(&app.billing, &ctx, &a, &small.id, october, terms)
        .await
        .unwrap();
    let sub_b = subscribe(
        &app.billing,
        &ctx,
        &b,
        &small.id,
        october,
        Default::default(),
    )
    .await
    .unwrap();
    let sub_c = subscribe(
        &app.billing,
        &ctx,
        &c,
        &small.id,
        october,
        Default::default(),
    )
    .await
    .unwrap();
    let bad = SubscriptionTerms {
        tax: Some(TaxRate {
            name: "X".into(),
            percent: dec!(120),
            inclusive: false,
        }),
        coupon: None,
    };
    let err = subscribe(&app.billing, &ctx, &c, &small.id, october, bad)
        .await
        .unwrap_err();
    assert!(err.to_string().starts_with("input.tax.percent"), "{err}");

    close(app, "2026-10-01", "2026-11-28T00:00:00Z").await;
    // 99 less 10% (9.90), then 16% of 89.10 = 14.256 → 14.26.
    let expected_a = Some(("9.90".into(), "14.26".into(), "103.36".into()));
    assert_eq!(invoice_total(app, &a, "2026-10-01").await, expected_a);

    // B moves to medium and C cancels, both now, inside November.
    srv.clock.set(at("2026-11-16T09:30:00Z"));
    change_plan(&app.billing, &ctx, &sub_b.id, &medium.id)
        .await
        .unwrap();
    assert!(
        change_plan(&app.billing, &ctx, &sub_b.id, &medium.id)
            .await
            .is_err(),
        "already on it"
    );
    cancel_subscription(&app.billing, &ctx, &sub_c.id, false)
        .await
        .unwrap();
    let changed_at = {
        use dotmac_api::store::entity::{plan_change, subscription};
        let tx = app.store.begin_system().await.unwrap();
        let change = plan_change::Entity::find().one(&tx).await.unwrap().unwrap();
        let c_sub = subscription::Entity::find_by_id(sub_c.id.as_str())
            .one(&tx)
            .await
            .unwrap()
            .unwrap();
        tx.commit().await.unwrap();
        (change.changed_at, c_sub.cancelled_at.unwrap())
    };
    let report = close(app, "2026-11-01", "2026-12-05T00:00:00Z").await;
    assert_eq!(report.cancelled_in_period, 1);
    // The second discounted period.
    assert_eq!(invoice_total(app, &a, "2026-11-01").await, expected_a);
    let nov = dotmac_billing::Period {
        start: "2026-11-01".parse().unwrap(),
        end: "2026-12-01".parse().unwrap(),
    };
    let usd = Currency::USD;
    let r = dotmac_schema::money::Rounding::default();
    let p = |fee: Decimal, from, to| dotmac_billing::prorate(fee, &nov, from, to, usd, r);
    let b_expected =
        p(dec!(99), nov.start_time(), changed_at.0) + p(dec!(299), changed_at.0, nov.end_time());
    let b_total: Decimal = invoice_total(app, &b, "2026-11-01")
        .await
        .unwrap()
        .2
        .parse()
        .unwrap();
    assert_eq!(b_total, b_expected);
    let c_total: Decimal = invoice_total(app, &c, "2026-11-01")
        .await
        .unwrap()
        .2
        .parse()
        .unwrap();
    assert_eq!(c_total, p(dec!(99), nov.start_time(), changed_at.1));

    // A ends with December (asked in December: it takes effect at the end
    // of the period it is asked in); the coupon is used up; C is not billed
    // again.
    srv.clock.set(at("2026-12-10T09:00:00Z"));
    cancel_subscription(&app.billing, &ctx, &sub_a.id, true)
        .await
        .unwrap();
    close(app, "2026-12-01", "2027-01-05T00:00:00Z").await;
    assert_eq!(
        invoice_total(app, &a, "2026-12-01").await,
        Some(("0.00".into(), "15.84".into(), "114.84".into()))
    );
    assert_eq!(
        invoice_total(app, &b, "2026-12-01").await.unwrap().2,
        "299.00"
    );
    assert!(invoice_total(app, &c, "2026-12-01").await.is_none());
    let report = close(app, "2027-01-01", "2027-02-05T00:00:00Z").await;
    assert_eq!(
        report.subscriptions, 1,
        "only B is billed in January: {report:?}"
    );

    // A trial: C (cancelled) subscribes again on a plan with 14 days; it is
    // in trial until they pass, then active.
    let mut trial_plan = flat("trial", 10);
    trial_plan.trial_days = 14;
    let trial_plan = create_plan(&app.billing, &ctx, "Trial", trial_plan)
        .await
        .unwrap();
    let sub = subscribe(
        &app.billing,
        &ctx,
        &c,
        &trial_plan.id,
        None,
        Default::default(),
    )
    .await
    .unwrap();
    assert_eq!(sub.state, dotmac_schema::SubscriptionState::Trial);
    let ends = sub.trial_ends_at.unwrap();
    let activate = dotmac_api::service::billing::subscriptions::activate_ended_trials;
    assert_eq!(
        activate(&app.billing, ends - TimeDelta::seconds(1))
            .await
            .unwrap(),
        0
    );
    assert_eq!(activate(&app.billing, ends).await.unwrap(), 1);
}

#[tokio::test]
async fn terms_on_postgres() {
    terms_scenario(Backend::Postgres).await;
}

#[tokio::test]
async fn terms_on_embedded_sqlite() {
    terms_scenario(Backend::Sqlite).await;
}

/// A close that dies mid-way (a panic right after a chunk commits, as a
/// crash would) leaves whole chunks only; the next close writes the rest
/// and numbers on without a gap.
async fn resume_scenario(backend: Backend) {
    use dotmac_api::service::billing::close::close_period_in_chunks;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let srv = billing_server(backend).await;
    let app = srv.app.clone();
    let ctx = admin();
    let plan = create_plan(&app.billing, &ctx, "Flat", flat("flat", 10))
        .await
        .unwrap();
    {
        use dotmac_api::store::entity::tenant;
        let tx = app.store.begin_system().await.unwrap();
        let all = tenant::Entity::find().all(&tx).await.unwrap();
        tx.commit().await.unwrap();
        for t in all.iter().take(3) {
            subscribe(
                &app.billing,
                &ctx,
                &t.id,
                &plan.id,
                NaiveDate::from_ymd_opt(2026, 10, 1),
                Default::default(),
            )
            .await
            .unwrap();
        }
    }
    let close_at = |now: &str| close_request("2026-10-01", now);
    // Dies after the `n`th progress report (each follows a committed chunk).
    let run = |req: CloseRequest, die_after: usize| {
        let app = app.clone();
        tokio::spawn(async move {
            let calls = Arc::new(AtomicUsize::new(0));
            let progress = move |_: usize, _: usize| {
                if calls.fetch_add(1, Ordering::SeqCst) + 1 == die_after {
                    panic!("simulated crash");
                }
            };
            close_period_in_chunks(&app.billing, &req, 1, &progress)
                .await
                .unwrap()
        })
    };
    // Within the grace period: drafts only, and the close dies after one.
    let in_grace = close_at("2026-11-02T00:00:00Z");
    assert!(run(in_grace, 1).await.unwrap_err().is_panic());
    let rows = invoices(&app).await;
    assert_eq!(rows.len(), 1, "one chunk of one draft committed");
    assert_eq!(rows[0].status, dotmac_schema::InvoiceStatus::Draft);
    // After it: the draft is finalized, the second invoice written and
    // finalized in its own chunk, then the close dies.
    let after = close_at("2026-11-28T00:00:00Z");
    assert!(run(after, 2).await.unwrap_err().is_panic());
    let rows = invoices(&app).await;
    assert_eq!(rows.len(), 2);
    let mut numbered: Vec<_> = rows.iter().filter_map(|r| r.number.clone()).collect();
    numbered.sort();
    assert_eq!(numbered, ["DM-000001", "DM-000002"]);
    let report = run(after, usize::MAX).await.unwrap();
    assert_eq!(
        (report.unchanged, report.drafted, report.finalized),
        (2, 1, 1)
    );
    let mut numbers: Vec<_> = invoices(&app)
        .await
        .into_iter()
        .filter_map(|r| r.number)
        .collect();
    numbers.sort();
    assert_eq!(numbers, ["DM-000001", "DM-000002", "DM-000003"]);
    // Nothing left to do.
    let again = run(after, usize::MAX).await.unwrap();
    assert_eq!((again.unchanged, again.drafted, again.finalized), (3, 0, 0));
}

#[tokio::test]
async fn resume_on_postgres() {
    resume_scenario(Backend::Postgres).await;
}

#[tokio::test]
async fn resume_on_embedded_sqlite() {
    resume_scenario(Backend::Sqlite).await;
}

/// Pauses: no recurring fee while paused; pausing twice or resuming an
/// active subscription is refused.
async fn pause_scenario(backend: Backend) {
    use dotmac_api::service::billing::subscriptions::set_paused;
    use dotmac_api::store::billing_rows::{insert_pause, PauseRow};
    let srv = billing_server(backend).await;
    let app = &srv.app;
    let ctx = admin();
    let plan = create_plan(&app.billing, &ctx, "Flat", flat("flat", 300))
        .await
        .unwrap();
    let (a, b) = tenant_ids(app).await;
    let october = NaiveDate::from_ymd_opt(2026, 10, 1);
    let sub_a = subscribe(
        &app.billing,
        &ctx,
        &a,
        &plan.id,
        october,
        Default::default(),
    )
    .await
    .unwrap();
    let sub_b = subscribe(
        &app.billing,
        &ctx,
        &b,
        &plan.id,
        october,
        Default::default(),
    )
    .await
    .unwrap();
    // The mutations, on a third tenant: state changes and their legality.
    let c = tenant_id(app, "comet-wireless").await;
    let sub_c = subscribe(
        &app.billing,
        &ctx,
        &c,
        &plan.id,
        october,
        Default::default(),
    )
    .await
    .unwrap();
    let paused = set_paused(&app.billing, &ctx, &sub_c.id, true)
        .await
        .unwrap();
    assert_eq!(paused.state, dotmac_schema::SubscriptionState::Paused);
    assert!(
        set_paused(&app.billing, &ctx, &sub_c.id, true)
            .await
            .is_err(),
        "paused twice"
    );
    let resumed = set_paused(&app.billing, &ctx, &sub_c.id, false)
        .await
        .unwrap();
    assert_eq!(resumed.state, dotmac_schema::SubscriptionState::Active);
    assert!(
        set_paused(&app.billing, &ctx, &sub_c.id, false)
            .await
            .is_err(),
        "resumed twice"
    );
    // The close: A paused for 10 of November's 30 days; B from the 16th on.
    let tx = app.store.begin_system().await.unwrap();
    for (tenant, sub, from, to) in [
        (
            &a,
            &sub_a.id,
            "2026-11-11T00:00:00Z",
            Some("2026-11-21T00:00:00Z"),
        ),
        (&b, &sub_b.id, "2026-11-16T00:00:00Z", None),
    ] {
        insert_pause(
            &tx,
            PauseRow {
                id: format!("pau_{}", uuid::Uuid::now_v7().simple()),
                tenant_id: tenant.clone(),
                subscription_id: sub.clone(),
                paused_at: at(from),
                resumed_at: to.map(at),
            },
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    close(app, "2026-11-01", "2026-12-05T00:00:00Z").await;
    assert_eq!(
        invoice_total(app, &a, "2026-11-01").await.unwrap().2,
        "200.00"
    );
    assert_eq!(
        invoice_total(app, &b, "2026-11-01").await.unwrap().2,
        "150.00"
    );
}

#[tokio::test]
async fn pause_on_postgres() {
    pause_scenario(Backend::Postgres).await;
}

#[tokio::test]
async fn pause_on_embedded_sqlite() {
    pause_scenario(Backend::Sqlite).await;
}

/// Taxes by the tenant's jurisdiction: dated rates (the one in force on the
/// period's last day), a subdivision falling back to its country, an
/// inclusive rate, and a subscription's own rate overriding them.
async fn jurisdiction_scenario(backend: Backend) {
    use dotmac_api::service::billing::subscriptions::SubscriptionTerms;
    use dotmac_api::service::billing::taxes::{create_tax_rate, NewTaxRate};
    use dotmac_api::service::directory::tenants::{self, NewTenant, TenantPatch};
    use dotmac_billing::TaxRate;
    let srv = billing_server(backend).await;
    let app = &srv.app;
    let ctx = admin();
    let rate = |code: &str, percent: Decimal, inclusive: bool, from: &str| NewTaxRate {
        jurisdiction: code.into(),
        name: format!("{code} {percent}%"),
        percent,
        inclusive,
        effective_from: from.parse().unwrap(),
    };
    for r in [
        rate("ke", dec!(16), false, "2020-01-01"),
        rate("KE", dec!(18), false, "2026-11-01"),
        rate("US", dec!(5), false, "2020-01-01"),
        rate("DE", dec!(19), true, "2020-01-01"),
    ] {
        create_tax_rate(&app.billing, &ctx, r).await.unwrap();
    }
    // Every refusal names its field.
    for (bad, field) in [
        (
            rate("Kenya", dec!(16), false, "2027-01-01"),
            "input.jurisdiction",
        ),
        (rate("KE", dec!(101), false, "2027-01-01"), "input.percent"),
        (
            rate("KE", dec!(20), false, "2020-01-01"),
            "input.effectiveFrom",
        ),
    ] {
        let err = create_tax_rate(&app.billing, &ctx, bad).await.unwrap_err();
        assert!(err.to_string().starts_with(field), "{field}: {err}");
    }

    let small = create_plan(&app.billing, &ctx, "Small", flat("small", 99))
        .await
        .unwrap();
    let (a, b) = tenant_ids(app).await;
    let c = tenant_id(app, "comet-wireless").await;
    let d = tenants::create(
        &app.directory,
        &ctx,
        NewTenant {
            name: "Delta Netz".into(),
            tax_jurisdiction: Some("DE".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(d.tax_jurisdiction.as_deref(), Some("DE"));
    for (tenant, code) in [(&a, "KE"), (&b, "us-ca"), (&c, "DE")] {
        let patch = TenantPatch {
            tax_jurisdiction: Some(code.into()),
            ..Default::default()
        };
        tenants::update(&app.directory, &ctx, tenant, patch)
            .await
            .unwrap();
    }
    let bad = TenantPatch {
        tax_jurisdiction: Some("U.S.".into()),
        ..Default::default()
    };
    let err = tenants::update(&app.directory, &ctx, &a, bad)
        .await
        .unwrap_err();
    assert!(
        err.to_string().starts_with("input.taxJurisdiction"),
        "{err}"
    );

    let october = NaiveDate::from_ymd_opt(2026, 10, 1);
    for tenant in [&a, &b, &d.id] {
        subscribe(
            &app.billing,
            &ctx,
            tenant,
            &small.id,
            october,
            Default::default(),
        )
        .await
        .unwrap();
    }
    // C's subscription is exempt: its own 0% rate wins over DE's.
    let exempt = SubscriptionTerms {
        tax: Some(TaxRate {
            name: "Exempt".into(),
            percent: Decimal::ZERO,
            inclusive: false,
        }),
        coupon: None,
    };
    subscribe(&app.billing, &ctx, &c, &small.id, october, exempt)
        .await
        .unwrap();

    close(app, "2026-10-01", "2026-11-28T00:00:00Z").await;
    let t = |tax: &str, total: &str| Some(("0.00".to_owned(), tax.to_owned(), total.to_owned()));
    // KE 16% in October; US-CA has no rate of its own: the US 5%.
    assert_eq!(
        invoice_total(app, &a, "2026-10-01").await,
        t("15.84", "114.84")
    );
    assert_eq!(
        invoice_total(app, &b, "2026-10-01").await,
        t("4.95", "103.95")
    );
    assert_eq!(
        invoice_total(app, &c, "2026-10-01").await,
        t("0.00", "99.00")
    );
    // DE 19% inclusive: the net is 99 / 1.19 = 83.19, the tax the rest.
    assert_eq!(
        invoice_total(app, &d.id, "2026-10-01").await,
        t("15.81", "99.00")
    );
    // November: KE's 18% took effect on the 1st.
    close(app, "2026-11-01", "2026-12-05T00:00:00Z").await;
    assert_eq!(
        invoice_total(app, &a, "2026-11-01").await,
        t("17.82", "116.82")
    );
    // The lines name the rate they were taxed at.
    let inv = invoices(app)
        .await
        .into_iter()
        .find(|i| i.tenant_id == a && i.period_start == "2026-11-01")
        .unwrap();
    let json = serde_json::to_string(&lines(&inv).unwrap()).unwrap();
    assert!(json.contains("KE 18%"), "{json}");
}

#[tokio::test]
async fn jurisdiction_on_postgres() {
    jurisdiction_scenario(Backend::Postgres).await;
}

#[tokio::test]
async fn jurisdiction_on_embedded_sqlite() {
    jurisdiction_scenario(Backend::Sqlite).await;
}

/// Two closes at once on either side of the grace boundary (the schedule
/// runs in every process, the CLI has its own clock): both update the same
/// drafts with late usage in one chunk, one of them finalizes. Neither may
/// fail (a deadlock would abort one), and numbers stay 1..n.
#[tokio::test]
async fn concurrent_closes_across_the_grace_boundary() {
    use dotmac_api::service::billing::close::close_period_in_chunks;
    let srv = billing_server(Backend::Postgres).await;
    let app = &srv.app;
    let ctx = admin();
    create_gigabytes(app, &ctx).await;
    let plan = create_plan(&app.billing, &ctx, "Small", small_plan())
        .await
        .unwrap();
    let [a, b, c] = subscribe_three(app, &plan.id).await;
    let req = |now: &str| close_request("2026-10-01", now);
    let in_grace = req("2026-11-02T00:00:00Z");
    let after = req("2026-11-28T00:00:00Z");
    for round in 0..5i64 {
        // Late usage for every tenant: each close sees every draft changed.
        for (i, t) in [&a, &b, &c].into_iter().enumerate() {
            let value = Decimal::from(200 + round * 10 + i as i64);
            commit_usage(
                app,
                t,
                "gigabytes",
                at("2026-10-20T00:00:00Z"),
                value,
                round * 10 + i as i64,
            )
            .await;
        }
        if round == 0 {
            close_period_in_chunks(&app.billing, &in_grace, 10, &|_, _| {})
                .await
                .unwrap();
            continue;
        }
        let (r1, r2) = tokio::join!(
            close_period_in_chunks(&app.billing, &after, 10, &|_, _| {}),
            close_period_in_chunks(&app.billing, &in_grace, 10, &|_, _| {})
        );
        r1.unwrap();
        r2.unwrap();
    }
    let rows = invoices(app).await;
    assert_eq!(rows.len(), 3);
    let mut numbers: Vec<_> = rows.iter().filter_map(|r| r.number.clone()).collect();
    numbers.sort();
    assert_eq!(numbers, ["DM-000001", "DM-000002", "DM-000003"]);
    assert!(rows
        .iter()
        .all(|r| r.status == dotmac_schema::InvoiceStatus::Finalized));
}

/// A trial that ends inside a period bills only the usage after it; the
/// next period's adjustments compare with that same window, so usage
/// during the trial is never billed later as late usage, while a late
/// event after the trial is.
async fn trial_adjustment_scenario(backend: Backend) {
    use dotmac_api::store::entity::subscription;
    use sea_orm::{ActiveModelTrait, Set};
    let srv = billing_server(backend).await;
    let app = &srv.app;
    let ctx = admin();
    let mut plan = small_plan();
    plan.trial_days = 14;
    create_gigabytes(app, &ctx).await;
    let plan = create_plan(&app.billing, &ctx, "Trial", plan)
        .await
        .unwrap();
    let (a, _) = tenant_ids(app).await;
    let october = NaiveDate::from_ymd_opt(2026, 10, 1);
    let sub = subscribe(
        &app.billing,
        &ctx,
        &a,
        &plan.id,
        october,
        Default::default(),
    )
    .await
    .unwrap();
    // The trial ends on 16 October (subscribing sets it from today's clock).
    let tx = app.store.begin_system().await.unwrap();
    subscription::ActiveModel {
        id: Set(sub.id.clone()),
        trial_ends_at: Set(Some(at("2026-10-16T00:00:00Z"))),
        ..Default::default()
    }
    .update(&tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    // 500 GB during the trial, 300 GB after it.
    commit_usage(
        app,
        &a,
        "gigabytes",
        at("2026-10-05T10:00:00Z"),
        dec!(500),
        1,
    )
    .await;
    commit_usage(
        app,
        &a,
        "gigabytes",
        at("2026-10-20T10:00:00Z"),
        dec!(300),
        2,
    )
    .await;
    close(app, "2026-10-01", "2026-11-28T00:00:00Z").await;
    let october = invoices(app).await;
    let usage = |row: &InvoiceRow| {
        lines(row)
            .unwrap()
            .into_iter()
            .filter(|l| matches!(l.kind, dotmac_billing::LineKind::Usage { .. }))
            .map(|l| l.amount)
            .sum::<Decimal>()
    };
    // (300 - 100 free) * 0.05: the trial's 500 GB are not billed.
    assert_eq!(october.len(), 1);
    assert_eq!(october[0].status, dotmac_schema::InvoiceStatus::Finalized);
    assert_eq!(usage(&october[0]), dec!(10.00));

    // November: no adjustment for the trial's usage.
    close(app, "2026-11-01", "2026-11-28T00:00:00Z").await;
    let adjustments = |rows: Vec<InvoiceRow>| -> Vec<Decimal> {
        let november = rows
            .into_iter()
            .find(|r| r.period_start == "2026-11-01")
            .unwrap();
        lines(&november)
            .unwrap()
            .into_iter()
            .filter(|l| matches!(l.kind, dotmac_billing::LineKind::Adjustment { .. }))
            .map(|l| l.amount)
            .collect()
    };
    assert_eq!(adjustments(invoices(app).await), Vec::<Decimal>::new());

    // 20 GB arrive late for 25 October, after the trial: adjusted, alone.
    commit_usage(
        app,
        &a,
        "gigabytes",
        at("2026-10-25T10:00:00Z"),
        dec!(20),
        3,
    )
    .await;
    close(app, "2026-11-01", "2026-11-28T00:00:00Z").await;
    assert_eq!(adjustments(invoices(app).await), vec![dec!(1.00)]);
}

#[tokio::test]
async fn trial_adjustment_on_postgres_and_clickhouse() {
    trial_adjustment_scenario(Backend::Postgres).await;
}

#[tokio::test]
async fn trial_adjustment_on_embedded_sqlite() {
    trial_adjustment_scenario(Backend::Sqlite).await;
}

/// One tenant's bad data fails that tenant alone: A's committed parts
/// overflow the exact range when a period merges them, C's usage would
/// charge more than a line may hold; B, beside them, is invoiced, the close
/// names A and C with why, and B still reads its usage.
async fn poisoned_usage_scenario(backend: Backend) {
    use dotmac_schema::usage::{RollupKey, RollupState, Window};
    let srv = billing_server(backend).await;
    let app = &srv.app;
    let ctx = admin();
    create_gigabytes(app, &ctx).await;
    let mut plan = flat("metered", 10);
    plan.prices.push(Price {
        meter: Some("gigabytes".into()),
        model: ChargeModel::PerUnit {
            unit_price: dec!(1000000000000),
        },
        included_units: Decimal::ZERO,
        minimum: None,
    });
    let plan = create_plan(&app.billing, &ctx, "Metered", plan)
        .await
        .unwrap();
    let [a, b, c] = subscribe_three(app, &plan.id).await;
    // Parts committed as a flush commits them (the bounds at intake and in
    // the fold keep new events from doing this; old parts could).
    let commit = |tenant: &str, at_: &str, value: Decimal, offset: i64| {
        let key = RollupKey {
            tenant: tenant.to_owned(),
            meter: "gigabytes".into(),
            window_start: Window::Hour.start(at(at_)),
            group: vec![],
        };
        let write_id = format!("w{offset}");
        let part = dotmac_aggregator::rows::RollupPartRow::new(
            &key,
            &RollupState::Sum(value),
            0,
            &write_id,
        );
        let batch = dotmac_aggregator::rows::BatchRow {
            partition: 0,
            first_offset: offset,
            last_offset: offset,
            write_id,
            written_at_us: 0,
            events: 1,
            accepted: 1,
            duplicates: 0,
            dead_lettered: 0,
            epoch: 0,
        };
        (part, batch)
    };
    let six_e28 = Decimal::from_i128_with_scale(60_000_000_000_000_000_000_000_000_000, 0);
    for (tenant, when, value, offset) in [
        (&a, "2026-10-03T10:00:00Z", six_e28, 1),
        (&a, "2026-10-04T10:00:00Z", six_e28, 2),
        (&b, "2026-10-05T10:00:00Z", dec!(0.000000000005), 3),
        (&c, "2026-10-06T10:00:00Z", dec!(100000000000000000000), 4),
    ] {
        let (part, batch) = commit(tenant, when, value, offset);
        crate::support::commit_part(app, part, batch).await;
    }
    let report = close(app, "2026-10-01", "2026-11-28T00:00:00Z").await;
    let mut failed: Vec<(&str, &str)> = report
        .failed
        .iter()
        .map(|f| (f.tenant_id.as_str(), f.cause.as_str()))
        .collect();
    failed.sort();
    assert_eq!(report.failed.len(), 2, "{report:?}");
    let cause_of = |t: &str| {
        failed
            .iter()
            .find(|(tenant, _)| *tenant == t)
            .map(|(_, cause)| *cause)
            .unwrap_or_else(|| panic!("{t} is not among the failures: {failed:?}"))
    };
    assert!(cause_of(&a).contains("overflow"), "{}", cause_of(&a));
    assert!(cause_of(&c).contains("10^20"), "{}", cause_of(&c));
    // B is invoiced beside them: 10 + 0.000000000005 × 10^12 = 15.00.
    assert_eq!(report.finalized, 1, "{report:?}");
    assert_eq!(
        invoice_total(app, &b, "2026-10-01").await.unwrap().2,
        "15.00"
    );
    assert!(invoice_total(app, &a, "2026-10-01").await.is_none());
    assert!(invoice_total(app, &c, "2026-10-01").await.is_none());
    // The same close again: still B alone is billed, A and C named again.
    let again = close(app, "2026-10-01", "2026-11-28T00:00:00Z").await;
    assert_eq!((again.failed.len(), again.unchanged), (2, 1), "{again:?}");
    // B reads its own usage; A's parts do not break it.
    let user = srv.login("user@bolt-broadband.demo").await;
    let ans = user
        .gql(
            "{ usage(meter: \"gigabytes\", from: \"2026-10-01T00:00:00Z\", to: \"2026-11-01T00:00:00Z\", granularity: DAY) { value } }",
            serde_json::json!({}),
        )
        .await;
    assert_eq!(
        ans.data()["usage"][0]["value"],
        "0.000000000005",
        "{}",
        ans.body
    );
}

#[tokio::test]
async fn poisoned_usage_fails_its_tenant_alone_on_postgres_and_clickhouse() {
    poisoned_usage_scenario(Backend::Postgres).await;
}

#[tokio::test]
async fn poisoned_usage_fails_its_tenant_alone_on_embedded_sqlite() {
    poisoned_usage_scenario(Backend::Sqlite).await;
}
