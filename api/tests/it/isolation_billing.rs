//! The isolation suite's billing cases: plans, subscriptions and invoices of
//! tenant A (resold by R) and tenant B, each on a plan of its own, with a
//! closed and finalized October behind them.

use serde_json::{json, Value};

use super::{
    assert_denied, assert_no_leak, next_json, subscribe as ws_subscribe, token_of, Side, World,
};
use crate::support::Client;

/// Ids of the billing fixture.
pub struct BillingIds {
    pub plan_a: String,
    pub plan_b: String,
    pub sub_a: String,
    pub sub_b: String,
    pub inv_a: String,
    pub inv_b: String,
}

impl BillingIds {
    /// What a principal of the other side must never see.
    fn of(&self, side: &str) -> Vec<String> {
        match side {
            "a" => vec![
                self.plan_a.clone(),
                self.sub_a.clone(),
                self.inv_a.clone(),
                "plan-acme-iso".into(),
            ],
            _ => vec![
                self.plan_b.clone(),
                self.sub_b.clone(),
                self.inv_b.clone(),
                "plan-bolt-iso".into(),
                "Bolt Negotiated".into(),
            ],
        }
    }
}

async fn create_plan(platform: &Client, slug: &str, name: &str, fee: &str) -> String {
    let ans = platform
        .gql(
            "mutation($s: String!, $n: String!, $f: String!) { createPlan(input: { slug: $s, version: 1, name: $n, currency: \"USD\", interval: MONTHLY, trialDays: 0, prices: [{ model: FLAT, amount: $f }, { meter: \"iso-gb\", model: PER_UNIT, unitPrice: \"0.05\" }] }) { id } }",
            json!({ "s": slug, "n": name, "f": fee }),
        )
        .await;
    ans.data()["createPlan"]["id"].as_str().unwrap().to_owned()
}

async fn subscribe_tenant(platform: &Client, tenant: &str, plan: &str) -> String {
    let ans = platform
        .gql(
            "mutation($t: ID!, $p: ID!) { subscribe(input: { tenantId: $t, planId: $p, anchorDate: \"2026-10-01\" }) { id state } }",
            json!({ "t": tenant, "p": plan }),
        )
        .await;
    ans.data()["subscribe"]["id"].as_str().unwrap().to_owned()
}

/// A plan per tenant, both subscribed, October closed and finalized.
pub async fn fixture(
    app: &dotmac_api::app::App,
    platform: &Client,
    a: &Side,
    b: &Side,
) -> BillingIds {
    platform
        .gql(
            "mutation { createMeter(input: { slug: \"iso-gb\", name: \"Isolation GB\", eventType: \"iso.gb\", aggregation: SUM, valuePath: \"gb\", window: HOUR }) { id } }",
            json!({}),
        )
        .await
        .data();
    let plan_a = create_plan(platform, "plan-acme-iso", "Acme Standard", "99").await;
    let plan_b = create_plan(platform, "plan-bolt-iso", "Bolt Negotiated", "77").await;
    let sub_a = subscribe_tenant(platform, &a.tenant_id, &plan_a).await;
    let sub_b = subscribe_tenant(platform, &b.tenant_id, &plan_b).await;
    crate::billing::commit_usage(
        app,
        &a.tenant_id,
        "iso-gb",
        "2026-10-10T10:00:00Z".parse().unwrap(),
        rust_decimal::Decimal::new(10, 0),
        100,
    )
    .await;
    let req = dotmac_api::service::billing::close::CloseRequest {
        month: "2026-10-01".parse().unwrap(),
        now: "2026-11-28T00:00:00Z".parse().unwrap(),
        grace: chrono::TimeDelta::days(3),
    };
    let report = dotmac_api::service::billing::close::close_period(&app.billing, &req, &|_, _| {})
        .await
        .unwrap();
    assert_eq!(report.finalized, 2, "{report:?}");
    let list = platform
        .gql(
            "{ invoices(first: 10) { edges { node { id tenantId } } } }",
            json!({}),
        )
        .await;
    let inv_of = |t: &str| {
        list.data()["invoices"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["node"]["tenantId"] == t)
            .map(|e| e["node"]["id"].as_str().unwrap().to_owned())
            .unwrap()
    };
    BillingIds {
        inv_a: inv_of(&a.tenant_id),
        inv_b: inv_of(&b.tenant_id),
        plan_a,
        plan_b,
        sub_a,
        sub_b,
    }
}

/// Who sees which side's billing: (name, client, sees A, sees B).
fn viewers(w: &World) -> Vec<(&'static str, &Client, bool, bool)> {
    vec![
        ("platform_admin", &w.platform, true, true),
        ("support", &w.support, true, true),
        ("reseller_admin of R", &w.reseller, true, false),
        ("tenant_admin of A", &w.a_admin, true, false),
        ("tenant_user of A", &w.a_user, true, false),
        ("tenant_admin of B", &w.b_admin, false, true),
        ("tenant_user of B", &w.b_user, false, true),
    ]
}

pub async fn query_case(w: &World, field: &str) {
    if field == "reconciliation" {
        return reconciliation_case(w).await;
    }
    if field == "taxRates" {
        return tax_rates_case(w).await;
    }
    let ids = &w.billing;
    let (doc_list, doc_one, one_a, one_b) = match field {
        "plans" | "plan" => (
            "{ plans(first: 50) { edges { node { id slug name prices { meter model amount unitPrice } } } } }",
            "query($id: ID!) { plan(id: $id) { id slug name } }",
            &ids.plan_a,
            &ids.plan_b,
        ),
        "subscriptions" => (
            "{ subscriptions(first: 50) { edges { node { id tenantId state plan { slug } } } } }",
            "query($id: ID!) { subscriptions(first: 5, tenantId: $id) { edges { node { id } } } }",
            &w.a.tenant_id,
            &w.b.tenant_id,
        ),
        _ => (
            "{ invoices(first: 50) { edges { node { id tenantId number total status } } } }",
            "query($id: ID!) { invoice(id: $id) { id total number } }",
            &ids.inv_a,
            &ids.inv_b,
        ),
    };
    for (who, c, sees_a, sees_b) in viewers(w) {
        let ans = c.gql(doc_list, json!({})).await;
        assert!(ans.errors().is_empty(), "{field}: {who}: {}", ans.body);
        let text = ans.body.to_string();
        let (a_id, b_id) = match field {
            "plans" | "plan" => (&ids.plan_a, &ids.plan_b),
            "subscriptions" => (&ids.sub_a, &ids.sub_b),
            _ => (&ids.inv_a, &ids.inv_b),
        };
        assert_eq!(
            text.contains(a_id.as_str()),
            sees_a,
            "{field}: {who} on A: {text}"
        );
        assert_eq!(
            text.contains(b_id.as_str()),
            sees_b,
            "{field}: {who} on B: {text}"
        );
        if !sees_a {
            assert_no_leak(who, field, &ans, &ids.of("a"));
            assert_no_leak(who, field, &ans, &w.a.secrets());
        }
        if !sees_b {
            assert_no_leak(who, field, &ans, &ids.of("b"));
            assert_no_leak(who, field, &ans, &w.b.secrets());
        }
        for (id, sees, side) in [(one_a, sees_a, "a"), (one_b, sees_b, "b")] {
            let ans = c.gql(doc_one, json!({ "id": id })).await;
            if sees {
                assert!(ans.errors().is_empty(), "{field}: {who}: {}", ans.body);
            } else {
                let secrets = if side == "a" {
                    ids.of("a")
                } else {
                    ids.of("b")
                };
                assert_denied(who, field_of(field), &ans, &["NOT_FOUND"], &secrets);
            }
        }
    }
    if field == "invoices" || field == "invoice" {
        // Lines: the tenant's own, and never a reseller's.
        let doc = "query($id: ID!) { invoice(id: $id) { total lines { kind meter quantity unitPrice amount } } }";
        let own = w.a_user.gql(doc, json!({ "id": ids.inv_a })).await;
        assert_eq!(own.data()["invoice"]["total"], "99.50", "{}", own.body);
        assert_eq!(own.data()["invoice"]["lines"][1]["unitPrice"], "0.05");
        w.reseller
            .gql(doc, json!({ "id": ids.inv_a }))
            .await
            .expect_code("FORBIDDEN");
    }
}

/// The field whose data `assert_denied` checks for null.
fn field_of(field: &str) -> &str {
    match field {
        "plans" => "plan",
        "invoices" => "invoice",
        other => other,
    }
}

pub async fn mutation_case(w: &World, field: &str) {
    if field == "closeBillingPeriod" {
        return close_case(w).await;
    }
    if matches!(
        field,
        "createCreditNote" | "recordPayment" | "voidInvoice" | "markInvoiceUncollectible"
    ) {
        return settlement_case(w, field).await;
    }
    if matches!(
        field,
        "changePlan" | "cancelSubscription" | "pauseSubscription" | "resumeSubscription"
    ) {
        return subscription_change_case(w, field).await;
    }
    let (doc, vars) = match field {
        "createTaxRate" => (
            "mutation { createTaxRate(input: { jurisdiction: \"ZZ\", name: \"Rogue VAT\", percent: \"1\", effectiveFrom: \"2026-01-01\" }) { id } }".to_owned(),
            json!({}),
        ),
        "createPlan" => (
            "mutation { createPlan(input: { slug: \"rogue-plan\", version: 1, name: \"Rogue\", currency: \"USD\", interval: MONTHLY, prices: [{ model: FLAT, amount: \"1\" }] }) { id } }".to_owned(),
            json!({}),
        ),
        _ => {
            let target = w.fresh_tenant(&[]).await;
            (
                "mutation($t: ID!, $p: ID!) { subscribe(input: { tenantId: $t, planId: $p }) { id } }".to_owned(),
                json!({ "t": target.tenant_id, "p": w.billing.plan_a }),
            )
        }
    };
    for (who, c) in w
        .everyone()
        .into_iter()
        .filter(|(who, _)| *who != "platform_admin")
    {
        let ans = c.gql(&doc, vars.clone()).await;
        assert_denied(who, field, &ans, &["FORBIDDEN"], &[]);
    }
    // Nothing was written by the denied calls.
    let state = w
        .platform
        .gql(
            "{ plans(first: 100) { edges { node { slug } } } subscriptions(first: 100) { edges { node { tenantId } } } }",
            json!({}),
        )
        .await;
    if field == "createPlan" {
        assert!(!state.body.to_string().contains("rogue-plan"));
    }
    if field == "createTaxRate" {
        let rates = w
            .platform
            .gql(
                "{ taxRates(first: 100) { edges { node { name } } } }",
                json!({}),
            )
            .await;
        assert!(
            !rates.body.to_string().contains("Rogue VAT"),
            "{}",
            rates.body
        );
    }
    if let Some(t) = vars.get("t").and_then(Value::as_str) {
        assert!(!state.body.to_string().contains(t));
    }
    w.platform.gql(&doc, vars).await.data();
}

pub async fn subscription_case(w: &World) {
    let q = "subscription { invoiceFinalized { invoiceId tenantId number total } }";
    let mut a_sub = ws_subscribe(&w.srv.url, token_of(&w.a_user), q).await;
    let mut r_sub = ws_subscribe(&w.srv.url, token_of(&w.reseller), q).await;
    let mut b_sub = ws_subscribe(&w.srv.url, token_of(&w.b_admin), q).await;
    let mut support_sub = ws_subscribe(&w.srv.url, token_of(&w.support), q).await;
    let event = |tenant: &str, reseller: Option<&str>, invoice: &str| {
        dotmac_api::bus::BusEvent::Invoice(dotmac_api::bus::InvoiceFinalized {
            invoice_id: invoice.to_owned(),
            tenant_id: tenant.to_owned(),
            reseller_id: reseller.map(str::to_owned),
            number: "DM-999999".into(),
            total: "1.00".into(),
            currency: "USD".into(),
            finalized_at: w.srv.clock.now(),
        })
    };
    let bus = &w.srv.app.bus;
    bus.publish(&event(&w.b.tenant_id, None, &w.billing.inv_b))
        .await
        .unwrap();
    bus.publish(&event(&w.a.tenant_id, Some(&w.r_id), &w.billing.inv_a))
        .await
        .unwrap();
    for (who, ws, sees) in [
        ("tenant_user of A", &mut a_sub, &w.billing.inv_a),
        ("reseller_admin of R", &mut r_sub, &w.billing.inv_a),
        ("tenant_admin of B", &mut b_sub, &w.billing.inv_b),
        ("support", &mut support_sub, &w.billing.inv_b),
    ] {
        let ev = next_json(ws).await;
        assert_eq!(
            ev["payload"]["data"]["invoiceFinalized"]["invoiceId"],
            json!(sees),
            "{who}: {ev}"
        );
    }
    let leaked =
        tokio::time::timeout(std::time::Duration::from_millis(500), next_json(&mut b_sub)).await;
    assert!(
        leaked.is_err(),
        "tenant_admin of B saw A's invoice: {leaked:?}"
    );
    let second = next_json(&mut support_sub).await;
    assert_eq!(
        second["payload"]["data"]["invoiceFinalized"]["invoiceId"],
        json!(w.billing.inv_a)
    );
}

/// Only platform admins close periods; a denied close writes nothing.
async fn close_case(w: &World) {
    let count = || async {
        w.platform
            .gql(
                "{ invoices(first: 100) { edges { node { id status } } } }",
                json!({}),
            )
            .await
            .body["data"]["invoices"]
            .to_string()
    };
    let before = count().await;
    let doc =
        "mutation { closeBillingPeriod(month: \"2026-11\") { subscriptions drafted finalized } }";
    for (who, c) in w
        .everyone()
        .into_iter()
        .filter(|(who, _)| *who != "platform_admin")
    {
        let ans = c.gql(doc, json!({})).await;
        assert_denied(who, "closeBillingPeriod", &ans, &["FORBIDDEN"], &[]);
    }
    assert_eq!(count().await, before, "a denied close wrote invoices");
    let ans = w.platform.gql(doc, json!({})).await;
    assert!(
        ans.data()["closeBillingPeriod"]["subscriptions"]
            .as_i64()
            .unwrap()
            >= 2
    );
    w.platform
        .gql(
            "mutation { closeBillingPeriod(month: \"November\") { drafted } }",
            json!({}),
        )
        .await
        .expect_code("VALIDATION");
}

/// Settling invoices is for platform admins: everyone else is FORBIDDEN
/// (even on their own invoice) and the invoice is unchanged.
async fn settlement_case(w: &World, field: &str) {
    let (doc, target) = match field {
        "createCreditNote" => (
            "mutation($id: ID!) { createCreditNote(input: { invoiceId: $id, reason: \"isolation\", lines: [{ line: 0, amount: \"1\" }] }) { id number total } }",
            &w.billing.inv_a,
        ),
        "recordPayment" => (
            "mutation($id: ID!) { recordPayment(input: { invoiceId: $id, amount: \"1.00\", reference: \"iso-ref-1\" }) { id toInvoice } }",
            &w.billing.inv_a,
        ),
        "voidInvoice" => (
            "mutation($id: ID!) { voidInvoice(id: $id, reason: \"isolation\") { id status } }",
            &w.billing.inv_b,
        ),
        _ => (
            "mutation($id: ID!) { markInvoiceUncollectible(id: $id, reason: \"isolation\") { id status } }",
            &w.billing.inv_b,
        ),
    };
    let read = "query($id: ID!) { invoice(id: $id) { status amountDue paid credited creditNotes { id } payments { id } } }";
    let before = w
        .platform
        .gql(read, json!({ "id": target }))
        .await
        .body
        .clone();
    for (who, c) in w
        .everyone()
        .into_iter()
        .filter(|(who, _)| *who != "platform_admin")
    {
        let ans = c.gql(doc, json!({ "id": target })).await;
        assert_denied(who, field, &ans, &["FORBIDDEN"], &[]);
    }
    let after = w
        .platform
        .gql(read, json!({ "id": target }))
        .await
        .body
        .clone();
    assert_eq!(after, before, "{field}: a denied call changed the invoice");
    let ans = w.platform.gql(doc, json!({ "id": target })).await;
    if field == "markInvoiceUncollectible" {
        // B's invoice was voided by the case before: nothing to write off.
        ans.expect_code("CONFLICT");
    } else {
        ans.data();
    }
    // The tenant sees what the platform did on its invoice; the other tenant
    // still cannot read it.
    let (own, other) = if target == &w.billing.inv_a {
        (&w.a_admin, &w.b_admin)
    } else {
        (&w.b_admin, &w.a_admin)
    };
    let mine = own.gql(read, json!({ "id": target })).await;
    assert!(mine.errors().is_empty(), "{}", mine.body);
    other
        .gql(read, json!({ "id": target }))
        .await
        .expect_code("NOT_FOUND");
    if field == "createCreditNote" {
        // A credit note's lines are the tenant's, as the invoice's are: its
        // reseller sees the note's total, not its lines.
        let lines =
            "query($id: ID!) { invoice(id: $id) { creditNotes { total lines { line net } } } }";
        let mine = own.gql(lines, json!({ "id": target })).await;
        assert_eq!(
            mine.data()["invoice"]["creditNotes"][0]["lines"][0]["net"],
            "1",
            "{}",
            mine.body
        );
        w.reseller
            .gql(lines, json!({ "id": target }))
            .await
            .expect_code("FORBIDDEN");
        let totals = "query($id: ID!) { invoice(id: $id) { creditNotes { total } } }";
        w.reseller.gql(totals, json!({ "id": target })).await.data();
    }
}

/// Changing or cancelling a subscription is for platform admins; a denied
/// call leaves it as it was. Run on a fresh tenant's subscription.
async fn subscription_change_case(w: &World, field: &str) {
    let target = w.fresh_tenant(&[]).await;
    let sub = w
        .platform
        .gql(
            "mutation($t: ID!, $p: ID!) { subscribe(input: { tenantId: $t, planId: $p }) { id } }",
            json!({ "t": target.tenant_id, "p": w.billing.plan_a }),
        )
        .await
        .data()["subscribe"]["id"]
        .clone();
    if field == "resumeSubscription" {
        w.platform
            .gql(
                "mutation($s: ID!) { pauseSubscription(id: $s) { state } }",
                json!({ "s": sub }),
            )
            .await
            .data();
    }
    let (doc, vars) = match field {
        "changePlan" => (
            "mutation($s: ID!, $p: ID!) { changePlan(subscriptionId: $s, planId: $p) { id plan { id } } }",
            json!({ "s": sub, "p": w.billing.plan_b }),
        ),
        "cancelSubscription" => (
            "mutation($s: ID!) { cancelSubscription(id: $s, atPeriodEnd: false) { id state } }",
            json!({ "s": sub }),
        ),
        "pauseSubscription" => (
            "mutation($s: ID!) { pauseSubscription(id: $s) { id state } }",
            json!({ "s": sub }),
        ),
        _ => (
            "mutation($s: ID!) { resumeSubscription(id: $s) { id state } }",
            json!({ "s": sub }),
        ),
    };
    let read = "query($t: ID!) { subscriptions(first: 5, tenantId: $t) { edges { node { id state cancelledAt plan { id } } } } }";
    let before = w
        .platform
        .gql(read, json!({ "t": target.tenant_id }))
        .await
        .body
        .clone();
    for (who, c) in w
        .everyone()
        .into_iter()
        .filter(|(who, _)| *who != "platform_admin")
    {
        let ans = c.gql(doc, vars.clone()).await;
        assert_denied(who, field, &ans, &["FORBIDDEN"], &target.secrets());
    }
    let after = w
        .platform
        .gql(read, json!({ "t": target.tenant_id }))
        .await
        .body
        .clone();
    assert_eq!(
        after, before,
        "{field}: a denied call changed the subscription"
    );
    w.platform.gql(doc, vars).await.data();
}

/// Platform staff and tenant admins reconcile only the tenants of their
/// scope; resellers (who see no invoice lines) and read-only tenant users
/// are refused.
async fn reconciliation_case(w: &World) {
    let doc = "{ reconciliation(month: \"2026-10\") { month discrepancies rows { tenantId meter invoiced rollups raw causes } } }";
    for (who, c, sees_a, sees_b) in viewers(w) {
        let ans = c.gql(doc, json!({})).await;
        if who.starts_with("reseller") || who.starts_with("tenant_user") {
            let mut secrets = w.a.secrets();
            secrets.extend(w.b.secrets());
            assert_denied(who, "reconciliation", &ans, &["FORBIDDEN"], &secrets);
            continue;
        }
        assert!(
            ans.errors().is_empty(),
            "reconciliation: {who}: {}",
            ans.body
        );
        let tenants: Vec<String> = ans.data()["reconciliation"]["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["tenantId"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            tenants.contains(&w.a.tenant_id),
            sees_a,
            "{who}: {}",
            ans.body
        );
        assert_eq!(
            tenants.contains(&w.b.tenant_id),
            sees_b,
            "{who}: {}",
            ans.body
        );
        if !sees_a {
            assert_no_leak(who, "reconciliation", &ans, &w.a.secrets());
        }
        if !sees_b {
            assert_no_leak(who, "reconciliation", &ans, &w.b.secrets());
        }
    }
    w.platform
        .gql("{ reconciliation(month: \"Oct\") { month } }", json!({}))
        .await
        .expect_code("VALIDATION");
}

/// Tax rates are the platform's catalogue: platform admins list them;
/// everyone else is refused, whatever the filter.
async fn tax_rates_case(w: &World) {
    let created = w
        .platform
        .gql(
            "mutation { createTaxRate(input: { jurisdiction: \"KE\", name: \"KE VAT iso\", percent: \"16\", effectiveFrom: \"2020-01-01\" }) { id } }",
            json!({}),
        )
        .await;
    let id = created.data()["createTaxRate"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let doc = "query($j: String) { taxRates(first: 10, jurisdiction: $j) { edges { node { id jurisdiction name percent } } } }";
    for filter in [json!(null), json!("KE")] {
        let ans = w.platform.gql(doc, json!({ "j": filter })).await;
        assert!(ans.body.to_string().contains(&id), "{}", ans.body);
        for (who, c) in w
            .everyone()
            .into_iter()
            .filter(|(who, _)| *who != "platform_admin")
        {
            let ans = c.gql(doc, json!({ "j": filter })).await;
            assert_denied(
                who,
                "taxRates",
                &ans,
                &["FORBIDDEN"],
                std::slice::from_ref(&id),
            );
        }
    }
    let bad = w.platform.gql(doc, json!({ "j": "Kenya" })).await;
    bad.expect_code("VALIDATION");
}
