//! A tenant activated after the aggregator loaded its catalog: its first
//! events, accepted by the platform, are counted, not dead-lettered for a
//! state the platform had already left when they arrived (the catalog is
//! reloaded before any verdict on a tenant it does not meter). A tenant
//! the platform does not know is still dead-lettered.

use std::time::Duration;

use serde_json::json;

use dotmac_schema::usage::{Aggregation, Window};

use crate::harness::{event, Pipeline};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_activated_after_the_catalog_loaded_is_counted() {
    let mut p = Pipeline::start().await;
    // The periodic reload never comes during the test.
    p.config.catalog_refresh = Duration::from_secs(3600);
    p.meter(
        "calls",
        "call",
        Aggregation::Sum,
        Some("n"),
        &[],
        Window::Hour,
    );
    let known = p.tenant("acme-fiber");
    let now = p.clock.now().to_rfc3339();
    let record = |tenant: &str, id: &str, n: u32| {
        (
            Some(tenant.to_owned()),
            event(id, "call", &now, json!({ "n": n }))
                .to_string()
                .into_bytes(),
        )
    };
    let agg = p.spawn_aggregator();
    // The first flush loads the catalog.
    p.produce(&[record(&known, "k1", 1)]).await;
    p.wait_for_records(1, Duration::from_secs(60)).await;

    let activated = p.activate_tenant();
    p.produce(&[
        record(&activated, "a1", 10),
        record(&activated, "a2", 20),
        record("ten_nobody", "x1", 5),
    ])
    .await;
    let totals = p.wait_for_records(4, Duration::from_secs(60)).await;
    agg.stop().await;
    assert_eq!(
        (totals.accepted, totals.dead_lettered),
        (3, 1),
        "the activated tenant's two events counted, the unknown one dead-lettered"
    );
    let by_tenant: Vec<(String, rust_decimal::Decimal)> = p
        .rollups("calls")
        .await
        .into_iter()
        .map(|(k, s)| (k.tenant, s.value()))
        .collect();
    assert!(
        by_tenant.contains(&(activated.clone(), rust_decimal::Decimal::from(30))),
        "{by_tenant:?}"
    );
    let letters = p.dead_letters(1);
    assert!(
        letters[0].2.contains("unknown tenant \"ten_nobody\""),
        "{letters:?}"
    );
    p.cleanup().await;
}
