//! The synthetic usage every pipeline benchmark sends: the same tenants,
//! meters and event shape (about 240 bytes), so their figures compare.

use chrono::{TimeDelta, Utc};
use dotmac_aggregator::catalog::Catalog;
use dotmac_schema::usage::{Aggregation, Meter, Window};
use serde_json::json;

/// Tenants the events are spread over.
pub const TENANTS: usize = 8;

/// The tenant of event `i`.
pub fn tenant(i: usize) -> String {
    format!("ten_{:032x}", i % TENANTS)
}

/// Every benchmark tenant active, with two meters on `session.bytes`.
pub fn catalog() -> Catalog {
    Catalog::new(
        (0..TENANTS).map(|t| (tenant(t), "active".to_owned())),
        vec![
            Meter {
                slug: "session-bytes".into(),
                event_type: "session.bytes".into(),
                aggregation: Aggregation::Sum,
                value_path: Some("bytes".into()),
                group_by: vec!["region".into()],
                window: Window::Hour,
                allow_negative: false,
            },
            Meter {
                slug: "sessions".into(),
                event_type: "session.bytes".into(),
                aggregation: Aggregation::Count,
                value_path: None,
                group_by: vec![],
                window: Window::Minute,
                allow_negative: false,
            },
        ],
    )
}

/// Event `i`, with id `{prefix}-{i}`, stamped within the last hour.
pub fn event(prefix: &str, i: usize) -> serde_json::Value {
    let time = Utc::now() - TimeDelta::seconds((i % 3600) as i64);
    json!({
        "specversion": "1.0", "id": format!("{prefix}-{i:012}"), "source": "//isp/radius-7",
        "type": "session.bytes", "subject": format!("sub-{}", i % 5000), "time": time.to_rfc3339(),
        "data": { "bytes": (i * 7919) % 1_000_000, "region": (["north", "south", "east"][i % 3]), "plan": "home-500" }
    })
}
