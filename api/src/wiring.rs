//! Wiring of the two run modes: the same [`App`] over Postgres + Redis
//! (`serve`) or over a SQLite file and in-process bus and limiter (`dev`).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use dotmac_schema::SharedClock;
use tokio::net::TcpListener;

use crate::app::{App, Ports};
use crate::auth::TokenKeys;
use crate::bus::{LocalBus, RedisBus};
use crate::config::Config;
use crate::graphql::build_schemas;
use crate::limiter::{LocalLimiter, RedisLimiter};
use crate::pipeline::clickhouse::ClickHouseReader;
use crate::pipeline::embedded::EmbeddedPipeline;
use crate::pipeline::kafka::KafkaSink;
use crate::pipeline::UsageSink;
use crate::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("database at `database_url`: {0}")]
    Database(#[from] sea_orm::DbErr),
    #[error("redis at `redis_url`: {0}")]
    Redis(String),
    #[error(
        "the database role bypasses row-level security (superuser or BYPASSRLS); connect as the \
         app role (see README, \"Postgres roles\") or set allow_rls_bypass = true for development"
    )]
    RlsBypass,
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("data dir: {0}")]
    Io(#[from] std::io::Error),
    #[error("kafka at `kafka_brokers`: {0}")]
    Kafka(String),
}

/// Production wiring: Postgres (as a role subject to RLS) and Redis.
pub async fn production_app(config: Config, clock: SharedClock) -> Result<App, StartError> {
    config.require_jwt_secret()?;
    let store = Store::connect(&config.database_url, config.database_pool_size).await?;
    if !config.allow_rls_bypass && store.role_bypasses_rls().await? {
        return Err(StartError::RlsBypass);
    }
    let bus = RedisBus::connect(
        &config.redis_url,
        &format!("{}:events", config.redis_prefix),
    )
    .await
    .map_err(|e| StartError::Redis(e.to_string()))?;
    let limiter = RedisLimiter::connect(&config.redis_url, &config.redis_prefix)
        .await
        .map_err(|e| StartError::Redis(e.to_string()))?;
    let keys = token_keys(&config, config.auth.jwt_secret.as_bytes(), clock.clone());
    let intake: Option<Arc<dyn UsageSink>> = match config.kafka_brokers.as_str() {
        "" => None,
        brokers => Some(Arc::new(
            KafkaSink::connect(
                brokers,
                &config.kafka_security,
                &config.pipeline.events_topic,
            )
            .map_err(StartError::Kafka)?,
        )),
    };
    let usage = Arc::new(ClickHouseReader(config.usage_store()));
    Ok(App::new(
        config,
        Ports {
            store,
            clock,
            bus,
            limiter: Arc::new(limiter),
            keys,
            usage,
            intake,
        },
    ))
}

/// Embedded wiring: everything inside this process and `data_dir`.
pub async fn embedded_app(
    config: Config,
    data_dir: &Path,
    clock: SharedClock,
) -> Result<App, StartError> {
    Ok(embedded(config, data_dir, clock).await?.0)
}

/// [`embedded_app`], and its usage pipeline (the demo seeds past usage
/// into it).
pub async fn embedded(
    mut config: Config,
    data_dir: &Path,
    clock: SharedClock,
) -> Result<(App, Arc<EmbeddedPipeline>), StartError> {
    std::fs::create_dir_all(data_dir)?;
    let db_path = data_dir.join("dotmac.db");
    config.database_url = format!("sqlite://{}?mode=rwc", db_path.display());
    let secret = match config.auth.jwt_secret.is_empty() {
        true => dev_secret(data_dir)?,
        false => config.auth.jwt_secret.clone().into_bytes(),
    };
    let store = Store::connect(&config.database_url, 1).await?;
    store.migrate().await?;
    let keys = token_keys(&config, &secret, clock.clone());
    let bus = LocalBus::new();
    let embedded = EmbeddedPipeline::new(
        store.clone(),
        bus.clone(),
        chrono::TimeDelta::days(config.pipeline.dedupe_horizon_days),
        clock.clone(),
    );
    tokio::spawn(embedded.clone().run());
    let app = App::new(
        config,
        Ports {
            store,
            clock,
            bus,
            limiter: Arc::new(LocalLimiter::default()),
            keys,
            usage: embedded.clone(),
            intake: Some(embedded.clone()),
        },
    );
    Ok((app, embedded))
}

fn token_keys(config: &Config, secret: &[u8], clock: SharedClock) -> TokenKeys {
    TokenKeys::new(
        secret,
        chrono::Duration::minutes(config.auth.access_token_minutes),
        clock,
    )
}

/// A signing secret kept in the data dir so that tokens survive restarts.
fn dev_secret(data_dir: &Path) -> std::io::Result<Vec<u8>> {
    let path = data_dir.join("jwt.secret");
    if let Ok(s) = std::fs::read(&path) {
        if s.len() >= 32 {
            return Ok(s);
        }
    }
    let secret = crate::auth::random_token().into_bytes();
    std::fs::write(&path, &secret)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(secret)
}

/// Serves the API on `listener` until ctrl-c or SIGTERM, then drains.
pub async fn serve(app: App, listener: TcpListener) -> std::io::Result<()> {
    let schemas = build_schemas(app.clone());
    let router =
        crate::http::router(app, schemas).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown_signal())
        .await
}

pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
