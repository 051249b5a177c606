//! Wiring of the two run modes: the same [`App`] over Postgres + Redis
//! (`serve`) or over a SQLite file and in-process bus and limiter (`dev`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dotmac_schema::SharedClock;
use tokio::net::TcpListener;

use crate::app::{App, Ports};
use crate::auth::TokenKeys;
use crate::bus::{LocalBus, RedisBus};
use crate::config::{Config, OrchestratorTarget};
use crate::graphql::build_schemas;
use crate::limiter::{LocalLimiter, RedisLimiter};
use crate::pipeline::clickhouse::ClickHouseReader;
use crate::pipeline::embedded::EmbeddedPipeline;
use crate::pipeline::kafka::KafkaSink;
use crate::pipeline::UsageSink;
use crate::service::licensing::{DevSigningKey, SigningKey, VaultSigningKey};
use crate::store::Store;
use dotmac_orchestrator::cluster::Instances;
use dotmac_orchestrator::kube_cluster::{self, KubeCluster};
use dotmac_orchestrator::local::LocalCluster;
use dotmac_orchestrator::secrets::local::LocalSecrets;
use dotmac_orchestrator::secrets::openbao::{OpenBao, OpenBaoSettings};
use dotmac_orchestrator::secrets::{SecretValue, SecretVault};

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
    #[error("orchestrator: {0}")]
    Orchestrator(#[from] dotmac_orchestrator::Error),
}

/// Where tenants' secrets live: Vault/OpenBao when `vault_addr` is set,
/// else (only with a data dir, i.e. in `dev`) the sealed local store.
pub fn secret_vault(
    config: &Config,
    data_dir: Option<&Path>,
) -> Result<Arc<dyn SecretVault>, StartError> {
    if !config.vault_addr.is_empty() {
        if config.vault_token.is_empty() {
            return Err(crate::config::ConfigError::Invalid {
                key: "vault_token".into(),
                reason: "must be set with vault_addr (env DOTMAC_VAULT_TOKEN)".into(),
            }
            .into());
        }
        return Ok(Arc::new(openbao(config)?));
    }
    match data_dir {
        Some(dir) => Ok(Arc::new(LocalSecrets::open(&dir.join("secrets"))?)),
        None => Err(crate::config::ConfigError::Invalid {
            key: "vault_addr".into(),
            reason:
                "must be set outside dev (env DOTMAC_VAULT_ADDR): tenants' secrets live in Vault"
                    .into(),
        }
        .into()),
    }
}

/// Where tenants' instances are declared, by `orchestrator.target`. The
/// local target also runs its controller in this process.
pub async fn cluster_target(
    config: &Config,
    data_dir: Option<&Path>,
    clock: SharedClock,
) -> Result<Option<Arc<dyn Instances>>, StartError> {
    let o = &config.orchestrator;
    match o.target {
        OrchestratorTarget::None => Ok(None),
        OrchestratorTarget::Local => {
            let dir = match (o.local_dir.as_str(), data_dir) {
                ("", Some(d)) => d.join("cluster"),
                ("", None) => {
                    return Err(crate::config::ConfigError::Invalid {
                        key: "orchestrator.local_dir".into(),
                        reason: "must be set for the local target outside dev".into(),
                    }
                    .into())
                }
                (dir, _) => PathBuf::from(dir),
            };
            let vault = secret_vault(config, data_dir)?;
            let cluster = LocalCluster::open(&dir, clock.clone())?;
            tokio::spawn(cluster.clone().run(
                vault,
                config.orchestrator_settings(),
                clock,
                std::time::Duration::from_secs(2),
            ));
            Ok(Some(cluster))
        }
        OrchestratorTarget::Kubernetes => {
            let kubeconfig = (!o.kubeconfig.is_empty()).then(|| PathBuf::from(&o.kubeconfig));
            let client = kube_cluster::connect(kubeconfig.as_deref()).await?;
            let shard = (!o.shard.is_empty()).then(|| o.shard.clone());
            Ok(Some(Arc::new(
                KubeCluster::new(client, None).with_shard(shard),
            )))
        }
    }
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
    let instances = cluster_target(&config, None, clock.clone()).await?;
    let signing = signing_key(&config)?;
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
            instances,
            signing,
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
    let instances = cluster_target(&config, Some(data_dir), clock.clone()).await?;
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
            instances,
            // `dev` signs with the public development key: its files pass
            // only dev builds of the verifier, never production ones.
            signing: Arc::new(DevSigningKey::default()),
        },
    );
    Ok((app, embedded))
}

/// The licence signing key: the platform's in Vault/OpenBao when
/// `vault_addr` is set, else the development key (with a warning: no
/// production instance trusts what it signs).
pub fn signing_key(config: &Config) -> Result<Arc<dyn SigningKey>, StartError> {
    if config.vault_addr.is_empty() {
        tracing::warn!("no vault_addr: licence files are signed with the development key, which production instances do not trust");
        return Ok(Arc::new(DevSigningKey::default()));
    }
    Ok(Arc::new(VaultSigningKey {
        vault: Arc::new(openbao(config)?),
        cached: Default::default(),
    }))
}

/// The platform's OpenBao/Vault client, from the config.
pub fn openbao(config: &Config) -> Result<OpenBao, StartError> {
    Ok(OpenBao::new(openbao_settings(config))?)
}

/// How to reach OpenBao/Vault, from the config.
fn openbao_settings(config: &Config) -> OpenBaoSettings {
    OpenBaoSettings {
        address: config.vault_addr.clone(),
        token: SecretValue::new(config.vault_token.clone()),
        mount: config.orchestrator.vault_mount.clone(),
        max_versions: 10,
        scope: config.orchestrator.vault_scope,
    }
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
