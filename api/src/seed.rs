//! The demo of `dotmac dev`: a platform admin, a support user, a reseller
//! with its admin, and three tenants in different states with a tenant admin
//! and a tenant user each. Idempotent: a seeded database is left alone.

use dotmac_schema::{Principal, PrincipalKind, ResourceTier, Role, Scope, TenantState, UserId};

use crate::app::App;
use crate::caller::RequestCtx;
use crate::error::ApiResult;
use crate::pipeline::embedded::EmbeddedPipeline;
use crate::service::billing::{plans, subscriptions, taxes};
use crate::service::directory::{resellers, tenants};
use crate::service::identity::users as user_cases;
use crate::service::metering::meters::{self, NewMeter};
use crate::store::user_rows;
use sea_orm::EntityTrait;
use std::collections::HashMap;

/// Password of every demo user unless `DOTMAC_DEMO_PASSWORD` says otherwise.
pub const DEFAULT_DEMO_PASSWORD: &str = "dotmac-demo-2026";
pub const ADMIN_EMAIL: &str = "admin@demo.dotmac.dev";

/// A demo user as printed at start.
#[derive(Debug, Clone)]
pub struct DemoUser {
    pub email: String,
    pub role: Role,
    pub tenant: Option<String>,
}

/// What the demo contains, whether it was just made or already there.
pub fn demo_users() -> Vec<DemoUser> {
    let mut out = vec![
        DemoUser {
            email: ADMIN_EMAIL.into(),
            role: Role::PlatformAdmin,
            tenant: None,
        },
        DemoUser {
            email: "support@demo.dotmac.dev".into(),
            role: Role::Support,
            tenant: None,
        },
        DemoUser {
            email: "reseller@demo.dotmac.dev".into(),
            role: Role::ResellerAdmin,
            tenant: None,
        },
    ];
    for (slug, _, _, _) in TENANTS {
        out.push(DemoUser {
            email: format!("admin@{slug}.demo"),
            role: Role::TenantAdmin,
            tenant: Some(slug.into()),
        });
        out.push(DemoUser {
            email: format!("user@{slug}.demo"),
            role: Role::TenantUser,
            tenant: Some(slug.into()),
        });
    }
    out
}

/// slug, name, state, owned by the demo reseller.
const TENANTS: [(&str, &str, TenantState, bool); 3] = [
    ("acme-fiber", "Acme Fiber", TenantState::Active, true),
    (
        "bolt-broadband",
        "Bolt Broadband",
        TenantState::Suspended,
        false,
    ),
    (
        "comet-wireless",
        "Comet Wireless",
        TenantState::Pending,
        false,
    ),
];

/// The demo platform admin acting through the domain functions, so seeded
/// rows go through the same validation and audit as requests.
fn admin_ctx(admin_id: &str) -> ApiResult<RequestCtx> {
    Ok(RequestCtx {
        principal: Some(Principal {
            kind: PrincipalKind::User {
                id: admin_id
                    .parse::<UserId>()
                    .map_err(|e| crate::error::ApiError::internal(e.to_string()))?,
                role: Role::PlatformAdmin,
            },
            scope: Scope::All,
        }),
        request_id: Some("demo-seed".into()),
        ..RequestCtx::default()
    })
}

/// Seeds the demo once. Returns whether it did anything.
pub async fn seed_demo(app: &App, password: &str) -> ApiResult<bool> {
    let tx = app.store.begin_system().await?;
    let seeded = user_rows::find_by_email_system(&tx, ADMIN_EMAIL)
        .await?
        .is_some();
    tx.commit().await?;
    if seeded {
        return Ok(false);
    }
    let admin = user_cases::create_user_system(
        &app.identity,
        ADMIN_EMAIL,
        password,
        Role::PlatformAdmin,
        None,
        None,
    )
    .await?;
    let ctx = admin_ctx(&admin.id)?;
    user_cases::create_user_system(
        &app.identity,
        "support@demo.dotmac.dev",
        password,
        Role::Support,
        None,
        None,
    )
    .await?;
    let reseller = resellers::create(
        &app.directory,
        &ctx,
        resellers::NewReseller {
            name: "Demo Reseller".into(),
            tier: Some(dotmac_schema::ResellerTier::Gold),
            contact_email: Some("partners@demo.dotmac.dev".into()),
        },
    )
    .await?;
    user_cases::create_user_system(
        &app.identity,
        "reseller@demo.dotmac.dev",
        password,
        Role::ResellerAdmin,
        None,
        Some(reseller.id.clone()),
    )
    .await?;
    for (slug, name, state, resold) in TENANTS {
        let t = tenants::create(
            &app.directory,
            &ctx,
            tenants::NewTenant {
                name: name.into(),
                slug: Some(slug.into()),
                tier: Some(ResourceTier::Small),
                contact_name: Some(format!("{name} NOC")),
                contact_email: Some(format!("noc@{slug}.demo")),
                reseller_id: resold.then(|| reseller.id.clone()),
                ..Default::default()
            },
        )
        .await?;
        tenants::seed_into_state(&app.directory, &ctx, &t.id, state).await?;
        user_cases::create_user_system(
            &app.identity,
            &format!("admin@{slug}.demo"),
            password,
            Role::TenantAdmin,
            Some(t.id.clone()),
            None,
        )
        .await?;
        user_cases::create_user_system(
            &app.identity,
            &format!("user@{slug}.demo"),
            password,
            Role::TenantUser,
            Some(t.id.clone()),
            None,
        )
        .await?;
    }
    Ok(true)
}

/// The demo's meters (idempotent): bytes per region per hour and sessions
/// per minute, both counted from `session.usage` events.
pub async fn seed_demo_meters(app: &App) -> ApiResult<()> {
    use dotmac_schema::usage::{Aggregation, Window};
    let tx = app.store.begin_system().await?;
    let admin = user_rows::find_by_email_system(&tx, ADMIN_EMAIL).await?;
    tx.commit().await?;
    let Some(admin) = admin else {
        return Ok(());
    };
    let ctx = admin_ctx(&admin.id)?;
    let demo = [
        (
            "session-bytes",
            "Session bytes",
            Aggregation::Sum,
            Some("bytes"),
            vec!["region".to_owned()],
            Window::Hour,
        ),
        (
            "sessions",
            "Sessions",
            Aggregation::Count,
            None,
            vec![],
            Window::Minute,
        ),
    ];
    for (slug, name, aggregation, value_path, group_by, window) in demo {
        let made = meters::create(
            &app.metering,
            &ctx,
            NewMeter {
                slug: slug.into(),
                name: name.into(),
                event_type: "session.usage".into(),
                aggregation,
                value_path: value_path.map(str::to_owned),
                group_by,
                window,
                allow_negative: false,
            },
        )
        .await;
        match made {
            Ok(_) | Err(crate::error::ApiError::Conflict { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `dotmac dev`'s usage generator: every two seconds a few sessions of the
/// active demo tenant go through the intake, so a newcomer sees live
/// numbers in `usage` and `usageUpdated`.
pub fn spawn_usage_generator(app: App) {
    use sea_orm::{ConnectionTrait, DbBackend, Statement};
    tokio::spawn(async move {
        let Some(intake) = app.intake.clone() else {
            return;
        };
        let mut n: u64 = 0;
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            let tenant = app
                .store
                .connection()
                .query_one(Statement::from_string(
                    DbBackend::Sqlite,
                    "SELECT id FROM tenants WHERE slug = 'acme-fiber' AND state = 'active'",
                ))
                .await
                .ok()
                .flatten()
                .and_then(|row| row.try_get::<String>("", "id").ok());
            let Some(tenant) = tenant else {
                continue;
            };
            let now = app.clock.now().to_rfc3339();
            let events: Vec<Vec<u8>> = (0..3)
                .map(|_| {
                    n += 1;
                    let region = ["north", "south", "east"][(n % 3) as usize];
                    serde_json::json!({
                        "specversion": "1.0", "id": format!("demo-{n}"), "source": "//demo/radius",
                        "type": "session.usage", "time": now,
                        "data": { "bytes": (n * 7_919) % 5_000_000, "region": region }
                    })
                    .to_string()
                    .into_bytes()
                })
                .collect();
            let refs: Vec<&[u8]> = events.iter().map(Vec::as_slice).collect();
            if let Some(Err(e)) = intake.send_all(&tenant, &refs).await.into_iter().next() {
                tracing::warn!(error = %e, "demo usage generator");
            }
        }
    });
}

/// The demo's billing (idempotent): the demo plans (USD per
/// month, with the demo meters priced), `acme-fiber` on small and
/// `bolt-broadband` on micro since the start of last month, and last
/// month's usage of acme-fiber, so `closeBillingPeriod` on last month
/// yields a finalized invoice to open.
/// The month before the one `now` falls in, as `YYYY-MM`: the demo's
/// billable month (its subscriptions start on its first day).
pub fn last_month(now: chrono::DateTime<chrono::Utc>) -> String {
    use chrono::Datelike;
    let first = now.date_naive().with_day(1).unwrap_or(now.date_naive());
    let last = first
        .checked_sub_months(chrono::Months::new(1))
        .unwrap_or(first);
    last.format("%Y-%m").to_string()
}

pub async fn seed_demo_billing(app: &App, usage: &EmbeddedPipeline) -> ApiResult<()> {
    use chrono::Datelike;
    use dotmac_schema::money::Currency;
    use dotmac_schema::price::{ChargeModel, Interval, PlanVersion, Price, Tier};
    use rust_decimal::Decimal;
    let tx = app.store.begin_system().await?;
    let admin = user_rows::find_by_email_system(&tx, ADMIN_EMAIL).await?;
    let existing = crate::store::billing_rows::all_plans(&tx).await?;
    let tenant_rows = crate::store::entity::tenant::Entity::find()
        .all(&tx)
        .await?;
    tx.commit().await?;
    let (Some(admin), true) = (admin, existing.is_empty()) else {
        return Ok(());
    };
    let ctx = admin_ctx(&admin.id)?;
    let usage_prices = |free_gb: i64| {
        vec![
            Price {
                meter: Some("session-bytes".into()),
                model: ChargeModel::Graduated {
                    tiers: vec![
                        Tier {
                            up_to: Some(Decimal::from(free_gb * 1_000_000_000)),
                            unit_price: Decimal::ZERO,
                            flat_fee: Decimal::ZERO,
                        },
                        // 2 USD per GB beyond the allowance.
                        Tier {
                            up_to: None,
                            unit_price: Decimal::new(2, 9),
                            flat_fee: Decimal::ZERO,
                        },
                    ],
                },
                included_units: Decimal::ZERO,
                minimum: None,
            },
            Price {
                meter: Some("sessions".into()),
                model: ChargeModel::PerUnit {
                    unit_price: Decimal::new(1, 3),
                },
                included_units: Decimal::from(1000),
                minimum: None,
            },
        ]
    };
    let mut plan_ids = HashMap::new();
    for (slug, name, fee, free_gb) in [
        ("micro", "Micro", 29, 1),
        ("small", "Small", 99, 5),
        ("medium", "Medium", 299, 20),
        ("large", "Large", 799, 100),
        ("enterprise", "Enterprise", 2499, 1000),
    ] {
        let mut prices = vec![Price {
            meter: None,
            model: ChargeModel::Flat {
                amount: Decimal::from(fee),
            },
            included_units: Decimal::ZERO,
            minimum: None,
        }];
        prices.extend(usage_prices(free_gb));
        let plan = PlanVersion {
            plan: slug.into(),
            version: 1,
            currency: Currency::USD,
            interval: Interval::Monthly,
            trial_days: 0,
            prices,
        };
        let row = plans::create_plan(&app.billing, &ctx, name, plan).await?;
        plan_ids.insert(slug, row.id);
    }
    let today = app.clock.now().date_naive();
    let this_month = today.with_day(1).unwrap_or(today);
    let last_month = this_month
        .checked_sub_months(chrono::Months::new(1))
        .unwrap_or(this_month);
    let id_of = |slug: &str| {
        tenant_rows
            .iter()
            .find(|t| t.slug == slug)
            .map(|t| t.id.clone())
    };
    // Acme is in Kenya: its invoices carry KE VAT by its jurisdiction.
    taxes::create_tax_rate(
        &app.billing,
        &ctx,
        taxes::NewTaxRate {
            jurisdiction: "KE".into(),
            name: "KE VAT 16%".into(),
            percent: Decimal::from(16),
            inclusive: false,
            effective_from: chrono::NaiveDate::from_ymd_opt(2020, 1, 1).unwrap_or_default(),
        },
    )
    .await?;
    if let Some(acme) = id_of("acme-fiber") {
        tenants::update(
            &app.directory,
            &ctx,
            &acme,
            tenants::TenantPatch {
                tax_jurisdiction: Some("KE".into()),
                ..Default::default()
            },
        )
        .await?;
    }
    for (tenant, plan) in [("acme-fiber", "small"), ("bolt-broadband", "micro")] {
        if let (Some(t), Some(p)) = (id_of(tenant), plan_ids.get(plan)) {
            subscriptions::subscribe(
                &app.billing,
                &ctx,
                &t,
                p,
                Some(last_month),
                Default::default(),
            )
            .await?;
        }
    }
    // Last month's usage of acme-fiber: a day's worth per day, as committed
    // rollup parts of the embedded store.
    if let Some(acme) = id_of("acme-fiber") {
        use dotmac_aggregator::rows::RollupPartRow;
        use dotmac_schema::usage::{RollupKey, RollupState};
        let mut parts = Vec::new();
        let mut day = last_month;
        let mut n = 0i64;
        while day < this_month {
            n += 1;
            let start = day.and_time(chrono::NaiveTime::MIN).and_utc();
            let bytes = RollupKey {
                tenant: acme.clone(),
                meter: "session-bytes".into(),
                window_start: start,
                group: vec![(
                    "region".into(),
                    ["north", "south", "east"][(n % 3) as usize].into(),
                )],
            };
            let sessions = RollupKey {
                tenant: acme.clone(),
                meter: "sessions".into(),
                window_start: start,
                group: vec![],
            };
            let write_id = format!("demo-seed-{n}");
            parts.push(RollupPartRow::new(
                &bytes,
                &RollupState::Sum(Decimal::from(250_000_000 + 10_000_000 * n)),
                0,
                &write_id,
            ));
            parts.push(RollupPartRow::new(
                &sessions,
                &RollupState::Count(40 + n as u64),
                0,
                &write_id,
            ));
            day = day.succ_opt().unwrap_or(this_month);
        }
        usage.commit_parts(&parts).await?;
    }
    Ok(())
}

/// The demo's plugins (DESIGN §8's tiers with a fee each) and, for
/// acme-fiber, a trial of one and a paid licence of another, each file
/// written to `<data dir>/licences/<plugin>.dmlic` for `dotmac licence
/// verify`. Answers the files written. Idempotent: a seeded catalog is left
/// alone.
pub async fn seed_demo_licensing(
    app: &App,
    data_dir: &std::path::Path,
) -> ApiResult<Vec<std::path::PathBuf>> {
    use crate::service::licensing::catalog::{self, standard_tiers, PluginInput, VersionInput};
    use crate::service::licensing::licences::{self, TakeLicence};
    use dotmac_schema::{LicenceKind, PluginTier};
    let tx = app.store.begin_system().await?;
    let admin = user_rows::find_by_email_system(&tx, ADMIN_EMAIL).await?;
    let seeded = crate::store::plugin_rows::get(&tx, "network-monitoring")
        .await?
        .is_some();
    let acme = crate::store::entity::tenant::Entity::find()
        .all(&tx)
        .await?
        .into_iter()
        .find(|t| t.slug == "acme-fiber");
    tx.commit().await?;
    let (Some(admin), false, Some(acme)) = (admin, seeded, acme) else {
        return Ok(Vec::new());
    };
    let ctx = admin_ctx(&admin.id)?;
    let plugins = [
        (
            "network-monitoring",
            "Network Monitoring",
            "operations",
            ["19", "49", "149"],
        ),
        (
            "customer-portal-plus",
            "Customer Portal Plus",
            "customer experience",
            ["9", "29", "99"],
        ),
        (
            "billing-automation",
            "Billing Automation",
            "billing",
            ["15", "45", "120"],
        ),
    ];
    for (slug, name, category, fees) in plugins {
        catalog::create_plugin(
            &app.licensing,
            &ctx,
            &PluginInput {
                slug: slug.into(),
                name: name.into(),
                description: format!("{name} for the ISP framework."),
                category: category.into(),
                tiers: standard_tiers(fees, "USD"),
                versions: vec![VersionInput {
                    version: "1.0.0".into(),
                    framework_min: "1.0.0".into(),
                    framework_max: None,
                }],
            },
        )
        .await?;
    }
    let dir = data_dir.join("licences");
    std::fs::create_dir_all(&dir).map_err(|e| crate::error::ApiError::internal(e.to_string()))?;
    let mut written = Vec::new();
    for (plugin, tier, kind) in [
        (
            "network-monitoring",
            PluginTier::Professional,
            LicenceKind::Paid,
        ),
        (
            "customer-portal-plus",
            PluginTier::Basic,
            LicenceKind::Trial,
        ),
    ] {
        let licence = licences::take(
            &app.licensing,
            &ctx,
            &TakeLicence {
                tenant_id: acme.id.clone(),
                plugin: plugin.into(),
                tier,
                kind,
            },
        )
        .await?;
        licences::activate(&app.licensing, &ctx, &licence.id, "demo-instance-1").await?;
        let (_, file) = licences::licence_file(&app.licensing, &ctx, &licence.id).await?;
        let path = dir.join(format!("{plugin}.dmlic"));
        std::fs::write(&path, file).map_err(|e| crate::error::ApiError::internal(e.to_string()))?;
        written.push(path);
    }
    Ok(written)
}
