//! Row-level security on Postgres: connected as the app role, raw SQL sees
//! nothing without a scope and only its tenant's rows with one; the audit
//! log is append-only even for the platform scope.

use sea_orm::{ConnectionTrait, Database, DbBackend, Statement, TransactionTrait};

use crate::support::{Backend, TestServer};

const TENANT_OWNED: [&str; 13] = [
    "tenants",
    "users",
    "api_keys",
    "audit_log",
    "invitations",
    "refresh_tokens",
    "subscriptions",
    "invoices",
    "credit_notes",
    "payments",
    "credit_balances",
    "plan_changes",
    "subscription_pauses",
];

async fn count(conn: &impl ConnectionTrait, table: &str, filter: &str) -> i64 {
    let row = conn
        .query_one(Statement::from_string(
            DbBackend::Postgres,
            format!("SELECT count(*) AS n FROM {table} {filter}"),
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

/// This test's row-level security key: the first transaction of each of its
/// sessions installs it, as the server installs its own.
const TEST_KEY: [u8; 32] = [7; 32];

/// Enters a scope the way the server does, and answers whether the database
/// took it as proven.
async fn enter_scope(
    tx: &impl ConnectionTrait,
    kind: &str,
    tenant: &str,
    reseller: &str,
    key: &[u8],
) -> bool {
    tx.query_one(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT dotmac_enter_scope($1, $2, $3, $4) AS proven",
        [
            kind.into(),
            tenant.into(),
            reseller.into(),
            key.to_vec().into(),
        ],
    ))
    .await
    .unwrap()
    .unwrap()
    .try_get::<bool>("", "proven")
    .unwrap()
}

async fn set_scope(tx: &impl ConnectionTrait, kind: &str, tenant: &str, reseller: &str) {
    assert!(
        enter_scope(tx, kind, tenant, reseller, &TEST_KEY).await,
        "the scope is proven"
    );
}

/// The old way in: the variables set directly, as any SQL run by the app
/// role can.
async fn forge_scope(tx: &impl ConnectionTrait, kind: &str, tenant: &str, reseller: &str) {
    tx.execute_unprepared(&format!(
        "SELECT set_config('dotmac.scope', '{kind}', true), set_config('dotmac.tenant_id', '{tenant}', true), set_config('dotmac.reseller_id', '{reseller}', true)"
    ))
    .await
    .unwrap();
}

/// Tenant ids by slug, read as the owner.
async fn tenant_ids(owner: &impl ConnectionTrait) -> std::collections::HashMap<String, String> {
    owner
        .query_all(Statement::from_string(
            DbBackend::Postgres,
            "SELECT id, slug FROM tenants",
        ))
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.try_get::<String>("", "slug").unwrap(),
                r.try_get::<String>("", "id").unwrap(),
            )
        })
        .collect()
}

/// SQL run in the app's sessions cannot widen its scope: the variables set
/// directly, changed after a proven entry, or entered with a key of its own
/// all see nothing, and the session's key can be neither read, dropped nor
/// replaced. (A session of one's own, with the app role's password, could
/// install its own key: that is outside what this guards, see
/// docs/architecture.md.)
#[tokio::test]
async fn the_app_role_cannot_forge_its_scope() {
    let srv = TestServer::start(Backend::Postgres).await;
    let owner = Database::connect(srv.owner_url.clone().unwrap())
        .await
        .unwrap();
    let ids = tenant_ids(&owner).await;
    let (a, b) = (&ids["acme-fiber"], &ids["bolt-broadband"]);
    let b_users = format!("WHERE tenant_id = '{b}'");
    assert!(count(&owner, "users", &b_users).await > 0, "B has users");
    let mut one = sea_orm::ConnectOptions::new(srv.app.config.database_url.clone());
    one.max_connections(1).min_connections(1);
    let app = Database::connect(one).await.unwrap();

    // Set directly, before the session holds a key and after.
    for _ in 0..2 {
        let tx = app.begin().await.unwrap();
        forge_scope(&tx, "all", "", "").await;
        assert_eq!(count(&tx, "tenants", "").await, 0, "forged `all`");
        forge_scope(&tx, "tenant", b, "").await;
        assert_eq!(count(&tx, "users", "").await, 0, "forged tenant B");
        tx.rollback().await.unwrap();
        // The key is installed by the session's first committed entry (a
        // rolled-back one takes its temporary table with it, and the next
        // entry, always the app's own, installs it again).
        let tx = app.begin().await.unwrap();
        set_scope(&tx, "tenant", a, "").await;
        tx.commit().await.unwrap();
    }

    // Changed after a proven entry into A.
    let tx = app.begin().await.unwrap();
    set_scope(&tx, "tenant", a, "").await;
    assert!(count(&tx, "users", "").await > 0, "A's own users");
    forge_scope(&tx, "tenant", b, "").await;
    assert_eq!(count(&tx, "users", &b_users).await, 0, "A turned into B");
    forge_scope(&tx, "all", "", "").await;
    assert_eq!(count(&tx, "tenants", "").await, 0, "A turned into `all`");
    tx.rollback().await.unwrap();

    // Entered with a key of its own, in a session that holds another.
    let tx = app.begin().await.unwrap();
    assert!(!enter_scope(&tx, "all", "", "", &[9; 32]).await);
    assert_eq!(count(&tx, "tenants", "").await, 0, "another key");
    tx.rollback().await.unwrap();

    // The key is out of reach.
    for sql in [
        "SELECT * FROM pg_temp.dotmac_scope_key",
        "DROP TABLE pg_temp.dotmac_scope_key",
        "INSERT INTO pg_temp.dotmac_scope_key VALUES ('\\x00')",
    ] {
        let tx = app.begin().await.unwrap();
        assert!(tx.execute_unprepared(sql).await.is_err(), "{sql}");
        tx.rollback().await.unwrap();
    }
}

#[tokio::test]
async fn app_role_sees_only_its_scope() {
    let srv = TestServer::start(Backend::Postgres).await;
    // Some rows in every table: a login makes a refresh token, an invitation too.
    let admin = srv.login("admin@demo.dotmac.dev").await;
    let a = srv.login("admin@acme-fiber.demo").await;
    a.gql("{ me { id } }", serde_json::json!({})).await.data();
    let owner = Database::connect(srv.owner_url.clone().unwrap())
        .await
        .unwrap();
    let ids = owner
        .query_all(Statement::from_string(
            DbBackend::Postgres,
            "SELECT id, slug, reseller_id FROM tenants ORDER BY slug",
        ))
        .await
        .unwrap();
    let id_of = |slug: &str| {
        ids.iter()
            .find(|r| r.try_get::<String>("", "slug").unwrap() == slug)
            .map(|r| r.try_get::<String>("", "id").unwrap())
            .unwrap()
    };
    let tenant_a = id_of("acme-fiber");
    let reseller: String = ids
        .iter()
        .find_map(|r| r.try_get::<Option<String>>("", "reseller_id").unwrap())
        .unwrap();
    admin
        .gql(
            "mutation($t: ID!) { inviteUser(input: { email: \"x@example.com\", role: TENANT_USER, tenantId: $t }) { token } }",
            serde_json::json!({ "t": tenant_a }),
        )
        .await
        .data();
    admin
        .gql(
            "mutation($t: ID!) { createApiKey(tenantId: $t, scopes: [USAGE_WRITE]) { secret } }",
            serde_json::json!({ "t": tenant_a }),
        )
        .await
        .data();
    // A subscription and a closed period: rows in the billing tables.
    let plan = admin
        .gql(
            "mutation { createPlan(input: { slug: \"rls-plan\", version: 1, name: \"RLS\", currency: \"USD\", interval: MONTHLY, trialDays: 0, prices: [{ model: FLAT, amount: \"10\" }] }) { id } }",
            serde_json::json!({}),
        )
        .await;
    admin
        .gql(
            "mutation($t: ID!, $p: ID!) { subscribe(input: { tenantId: $t, planId: $p, anchorDate: \"2026-10-01\" }) { id } }",
            serde_json::json!({ "t": tenant_a, "p": plan.data()["createPlan"]["id"] }),
        )
        .await
        .data();
    // A plan change: a row in plan_changes.
    let sub_id = admin
        .gql(
            "{ subscriptions(first: 5) { edges { node { id } } } }",
            serde_json::json!({}),
        )
        .await
        .data()["subscriptions"]["edges"][0]["node"]["id"]
        .clone();
    let plan2 = admin
        .gql(
            "mutation { createPlan(input: { slug: \"rls-plan\", version: 2, name: \"RLS 2\", currency: \"USD\", interval: MONTHLY, trialDays: 0, prices: [{ model: FLAT, amount: \"12\" }] }) { id } }",
            serde_json::json!({}),
        )
        .await;
    admin
        .gql(
            "mutation($s: ID!, $p: ID!) { changePlan(subscriptionId: $s, planId: $p) { id } }",
            serde_json::json!({ "s": sub_id, "p": plan2.data()["createPlan"]["id"] }),
        )
        .await
        .data();
    for m in ["pauseSubscription", "resumeSubscription"] {
        admin
            .gql(
                &format!("mutation($s: ID!) {{ {m}(id: $s) {{ state }} }}"),
                serde_json::json!({ "s": sub_id }),
            )
            .await
            .data();
    }
    crate::support::usage_tables(&srv.app).await;
    let close = dotmac_api::service::billing::close::CloseRequest {
        month: "2026-10-01".parse().unwrap(),
        now: srv.clock.now(),
        grace: chrono::TimeDelta::days(3),
    };
    dotmac_api::service::billing::close::close_period(&srv.app.billing, &close, &|_, _| {})
        .await
        .unwrap();
    // A credit note and an overpayment: rows in the settlement tables.
    let invoices = admin
        .gql(
            "{ invoices(first: 5) { edges { node { id total } } } }",
            serde_json::json!({}),
        )
        .await;
    assert_eq!(
        invoices.data()["invoices"]["edges"][0]["node"]["total"],
        "10.00",
        "October is billed at the plan in force then, not the one changed to after it"
    );
    let inv = invoices.data()["invoices"]["edges"][0]["node"]["id"].clone();
    admin
        .gql(
            "mutation($i: ID!) { createCreditNote(input: { invoiceId: $i, reason: \"rls\", lines: [{ line: 0, amount: \"1\" }] }) { id } }",
            serde_json::json!({ "i": inv }),
        )
        .await
        .data();
    admin
        .gql(
            "mutation($i: ID!) { recordPayment(input: { invoiceId: $i, amount: \"10\", reference: \"rls-1\" }) { toCreditBalance } }",
            serde_json::json!({ "i": inv }),
        )
        .await
        .data();
    for table in TENANT_OWNED {
        assert!(
            count(&owner, table, "").await > 0,
            "owner sees rows of {table}"
        );
    }

    let app = Database::connect(srv.app.config.database_url.clone())
        .await
        .unwrap();
    // The app role is not a superuser and does not bypass RLS.
    let bypass = app
        .query_one(Statement::from_string(
            DbBackend::Postgres,
            "SELECT (rolsuper OR rolbypassrls) AS b FROM pg_roles WHERE rolname = current_user",
        ))
        .await
        .unwrap()
        .unwrap();
    assert!(!bypass.try_get::<bool>("", "b").unwrap());

    for table in TENANT_OWNED {
        assert_eq!(count(&app, table, "").await, 0, "{table} without a scope");
    }

    // Plans can hold negotiated prices: a scope sees the plans its
    // subscriptions are (or were) on, the platform all of them.
    assert_eq!(count(&app, "plans", "").await, 0, "plans without a scope");
    let tenant_b = id_of("bolt-broadband");
    let tx = app.begin().await.unwrap();
    set_scope(&tx, "tenant", &tenant_a, "").await;
    assert_eq!(
        count(&tx, "plans", "").await,
        2,
        "A's plan and the one it changed to"
    );
    tx.rollback().await.unwrap();
    let tx = app.begin().await.unwrap();
    set_scope(&tx, "tenant", &tenant_b, "").await;
    assert_eq!(count(&tx, "plans", "").await, 0, "B holds no plan");
    tx.rollback().await.unwrap();
    // A temporary table cannot stand in for `tenants` inside the
    // predicates: the reseller does not gain B's users by forging one. (A
    // session of its own, so no plan of the predicate is cached yet.)
    let mut one = sea_orm::ConnectOptions::new(srv.app.config.database_url.clone());
    one.max_connections(1).min_connections(1);
    let fresh = Database::connect(one).await.unwrap();
    let tx = fresh.begin().await.unwrap();
    tx.execute_unprepared(&format!(
        "CREATE TEMP TABLE tenants (id text, reseller_id text) ON COMMIT DROP;
         INSERT INTO tenants VALUES ('{tenant_b}', '{reseller}')"
    ))
    .await
    .unwrap();
    set_scope(&tx, "reseller", "", &reseller).await;
    assert_eq!(
        count(&tx, "users", &format!("WHERE tenant_id = '{tenant_b}'")).await,
        0,
        "a shadowing temporary table widened the reseller's scope"
    );
    tx.rollback().await.unwrap();

    let tx = app.begin().await.unwrap();
    set_scope(&tx, "tenant", &tenant_a, "").await;
    assert_eq!(count(&tx, "tenants", "").await, 1);
    assert_eq!(
        count(&tx, "tenants", &format!("WHERE id = '{tenant_a}'")).await,
        1
    );
    assert_eq!(
        count(
            &tx,
            "users",
            &format!("WHERE tenant_id IS DISTINCT FROM '{tenant_a}'")
        )
        .await,
        0
    );
    assert!(count(&tx, "users", "").await >= 2);
    assert_eq!(count(&tx, "invoices", "").await, 1, "A's October invoice");
    for table in [
        "subscriptions",
        "credit_notes",
        "payments",
        "credit_balances",
        "plan_changes",
        "subscription_pauses",
    ] {
        assert_eq!(count(&tx, table, "").await, 1, "{table} of A");
    }
    assert_eq!(
        count(
            &tx,
            "audit_log",
            &format!("WHERE tenant_id IS DISTINCT FROM '{tenant_a}'")
        )
        .await,
        0
    );
    assert_eq!(
        count(&tx, "refresh_tokens", "").await,
        0,
        "credentials are for the auth path only"
    );
    assert_eq!(count(&tx, "resellers", "").await, 0);
    // Writing a row for another tenant is refused by the policy's check.
    let other = id_of("bolt-broadband");
    let insert = tx
        .execute_unprepared(&format!(
            "INSERT INTO api_keys (id, tenant_id, name, prefix, secret_hash, scopes, created_by, created_at) \
             VALUES ('key_x', '{other}', 'x', 'dmk_x', 'h', 'usage:write', 'test', now())"
        ))
        .await;
    assert!(insert.is_err(), "insert for another tenant must fail");
    drop(tx);

    let tx = app.begin().await.unwrap();
    set_scope(&tx, "reseller", "", &reseller).await;
    assert_eq!(
        count(&tx, "tenants", "").await,
        1,
        "the demo reseller owns exactly one tenant"
    );
    assert_eq!(count(&tx, "resellers", "").await, 1);
    assert_eq!(
        count(&tx, "api_keys", &format!("WHERE tenant_id <> '{tenant_a}'")).await,
        0
    );
    assert_eq!(count(&tx, "invoices", "").await, 1, "its tenant's invoice");
    drop(tx);

    let tx = app.begin().await.unwrap();
    set_scope(&tx, "tenant", &id_of("bolt-broadband"), "").await;
    for table in [
        "invoices",
        "subscriptions",
        "credit_notes",
        "payments",
        "credit_balances",
        "plan_changes",
        "subscription_pauses",
    ] {
        assert_eq!(count(&tx, table, "").await, 0, "{table} of B");
    }
    drop(tx);

    let tx = app.begin().await.unwrap();
    set_scope(&tx, "all", "", "").await;
    assert!(count(&tx, "tenants", "").await >= 3);
    let update = tx
        .execute_unprepared("UPDATE audit_log SET action = 'forged'")
        .await;
    assert!(update.is_err(), "the audit log is append-only");
    drop(tx);

    // The owner too: the trigger holds for everyone.
    let tx = owner.begin().await.unwrap();
    assert!(tx
        .execute_unprepared("DELETE FROM audit_log")
        .await
        .is_err());
}
