//! The usage pipeline inside the `dotmac` binary: the catalog the
//! aggregator reads from the relational store, and `POST /v1/events`, the
//! HTTP intake that produces accepted events to Kafka.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use dotmac_ingest::catalog::{Catalog, CatalogError, CatalogFuture, CatalogSource};
use dotmac_ingest::kafka::UsageProducer;
use dotmac_ingest::{parse_body_raw, BatchError};
use dotmac_schema::{ApiKeyScope, PrincipalKind, Scope};
use sea_orm::{EntityTrait, QueryFilter, QuerySelect};
use serde_json::json;

use crate::app::App;
use crate::error::ApiError;
use crate::store::entity::{meter, tenant};
use crate::store::Store;

/// Tenants and live meters, read in the system scope. Also remembers each
/// tenant's reseller, so usage updates can be scoped for subscribers.
pub struct StoreCatalog {
    store: Store,
    resellers: RwLock<HashMap<String, Option<String>>>,
}

impl StoreCatalog {
    pub fn new(store: Store) -> StoreCatalog {
        StoreCatalog {
            store,
            resellers: RwLock::new(HashMap::new()),
        }
    }

    /// The reseller of `tenant`, as of the last load.
    pub fn reseller_of(&self, tenant: &str) -> Option<String> {
        self.resellers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(tenant)
            .cloned()
            .flatten()
    }

    async fn load_catalog(&self) -> Result<Catalog, CatalogError> {
        let err = |e: &dyn std::fmt::Display| CatalogError(e.to_string());
        let tx = self.store.begin_system().await.map_err(|e| err(&e))?;
        let rows: Vec<(String, String, Option<String>)> = tenant::Entity::find()
            .select_only()
            .column(tenant::Column::Id)
            .column(tenant::Column::State)
            .column(tenant::Column::ResellerId)
            .into_tuple()
            .all(&tx)
            .await
            .map_err(|e| err(&e))?;
        *self.resellers.write().unwrap_or_else(|p| p.into_inner()) = rows
            .iter()
            .map(|(t, _, r)| (t.clone(), r.clone()))
            .collect();
        let tenants = rows.into_iter().map(|(t, s, _)| (t, s));
        let rows = meter::Entity::find()
            .filter(sea_orm::ColumnTrait::is_null(&meter::Column::ArchivedAt))
            .all(&tx)
            .await
            .map_err(|e| err(&e))?;
        let meters = rows
            .iter()
            .map(crate::domain::meters::definition)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| err(&e))?;
        Ok(Catalog::new(tenants, meters))
    }
}

impl CatalogSource for StoreCatalog {
    fn load(&self) -> CatalogFuture<'_> {
        Box::pin(self.load_catalog())
    }
}

/// Where accepted events go: Kafka in `serve`, the embedded log in `dev`.
pub enum Intake {
    Kafka(UsageProducer),
    Embedded(Arc<crate::embedded_usage::EmbeddedUsage>),
}

impl Intake {
    pub fn connect(brokers: &str, topic: &str) -> Result<Arc<Intake>, String> {
        let producer = UsageProducer::new(brokers, topic).map_err(|e| e.to_string())?;
        Ok(Arc::new(Intake::Kafka(producer)))
    }

    /// Sends validated events of `tenant`; one outcome per event, in order.
    pub async fn send_all(&self, tenant: &str, events: &[&[u8]]) -> Vec<Result<(), String>> {
        match self {
            Intake::Kafka(p) => p
                .send_all(tenant, events)
                .await
                .into_iter()
                .map(|r| r.map_err(|e| e.to_string()))
                .collect(),
            Intake::Embedded(e) => {
                let outcome = e.append(tenant, events).await.map_err(|e| e.to_string());
                vec![outcome; events.len()]
            }
        }
    }
}

fn refuse(status: StatusCode, code: &str, message: String) -> Response {
    (
        status,
        Json(json!({ "error": { "code": code, "message": message } })),
    )
        .into_response()
}

/// One event's outcome in the answer of `POST /v1/events`.
#[derive(serde::Serialize)]
struct EventResult<'a> {
    index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

#[derive(serde::Serialize)]
struct EventsAnswer<'a> {
    accepted: usize,
    rejected: usize,
    failed: usize,
    results: Vec<EventResult<'a>>,
}

/// `POST /v1/events`: one verdict per event, answered after the broker
/// acknowledged every accepted one. 200 when all are accepted, 207 when
/// some are rejected, 422 when none is; 503 when the broker did not
/// acknowledge (those events are reported `failed`: send them again, the
/// aggregator dedupes by `(tenant, source, id)`).
pub async fn post_events(app: &App, headers: &HeaderMap, body: &[u8]) -> Response {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    let principal = match crate::http::principal_from(app, auth).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            return refuse(
                StatusCode::UNAUTHORIZED,
                "UNAUTHENTICATED",
                "an API key with usage:write is required".into(),
            )
        }
        Err(e @ ApiError::Unauthenticated(_)) => {
            return refuse(StatusCode::UNAUTHORIZED, e.code(), e.to_string())
        }
        Err(e) => {
            return refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                e.code(),
                "internal error".into(),
            )
        }
    };
    let tenant = match (&principal.kind, &principal.scope) {
        (PrincipalKind::ApiKey { scopes, .. }, Scope::Tenant(t))
            if scopes.contains(&ApiKeyScope::UsageWrite) =>
        {
            t.to_string()
        }
        _ => {
            return refuse(
                StatusCode::FORBIDDEN,
                "FORBIDDEN",
                "usage is sent with a tenant's API key that has the usage:write scope".into(),
            )
        }
    };
    let Some(intake) = app.intake.as_ref() else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "usage intake is not configured on this server (kafka_brokers)".into(),
        );
    };
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let verdicts = match parse_body_raw(content_type, body) {
        Ok(v) => v,
        Err(e @ BatchError::UnsupportedMediaType(_)) => {
            return refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                e.to_string(),
            )
        }
        Err(e) => return refuse(StatusCode::BAD_REQUEST, "VALIDATION", format!("body: {e}")),
    };
    let accepted: Vec<&[u8]> = verdicts
        .iter()
        .filter_map(|v| v.as_ref().ok().map(|(_, raw)| *raw))
        .collect();
    let mut delivered = intake.send_all(&tenant, &accepted).await.into_iter();
    let (mut n_accepted, mut n_rejected, mut n_failed) = (0, 0, 0);
    let results: Vec<EventResult<'_>> = verdicts
        .iter()
        .enumerate()
        .map(|(index, verdict)| match verdict {
            Ok((event, _)) => {
                let (status, reason) = match delivered.next() {
                    Some(Ok(())) => ("accepted", None),
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "broker did not acknowledge an event");
                        ("failed", Some(e.to_string()))
                    }
                    None => ("failed", Some("not sent".to_owned())),
                };
                if reason.is_none() {
                    n_accepted += 1;
                } else {
                    n_failed += 1;
                }
                EventResult {
                    index,
                    id: Some(&event.id),
                    status,
                    field: None,
                    reason,
                }
            }
            Err(e) => {
                n_rejected += 1;
                EventResult {
                    index,
                    id: None,
                    status: "rejected",
                    field: e.field(),
                    reason: Some(e.to_string()),
                }
            }
        })
        .collect();
    let status = if n_failed > 0 {
        StatusCode::SERVICE_UNAVAILABLE
    } else if n_rejected == 0 {
        StatusCode::OK
    } else if n_accepted > 0 {
        StatusCode::MULTI_STATUS
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    (
        status,
        Json(EventsAnswer {
            accepted: n_accepted,
            rejected: n_rejected,
            failed: n_failed,
            results,
        }),
    )
        .into_response()
}

/// The aggregator's flush hook in `dotmac aggregate`: one usage update per
/// (tenant, meter) a flush committed, on the bus the API processes listen to.
pub fn publish_usage_updates(
    bus: Arc<dyn crate::events::EventBus>,
    catalog: Arc<StoreCatalog>,
) -> dotmac_ingest::aggregator::FlushHook {
    let handle = tokio::runtime::Handle::current();
    Arc::new(move |summary: &dotmac_ingest::aggregator::FlushSummary| {
        let updates: Vec<crate::events::BusEvent> = summary
            .touched
            .iter()
            .map(|(tenant, meter)| {
                crate::events::BusEvent::Usage(crate::events::UsageUpdate {
                    tenant_id: tenant.clone(),
                    reseller_id: catalog.reseller_of(tenant),
                    meter: meter.clone(),
                    committed_at: summary.committed_at,
                })
            })
            .collect();
        let bus = bus.clone();
        // Live updates are best effort: the numbers are in ClickHouse.
        handle.spawn(async move {
            for u in updates {
                if let Err(e) = bus.publish(&u).await {
                    tracing::warn!(error = %e, "publishing a usage update");
                }
            }
        });
    })
}
