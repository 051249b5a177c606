//! Layered configuration: defaults → `dotmac.toml` → `DOTMAC_*` environment,
//! validated at start so that a bad value stops the process naming its key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration key `{key}`: {reason}")]
    Invalid { key: String, reason: String },
    #[error("configuration: {0}")]
    Parse(String),
}

/// The whole configuration. Env names: `DOTMAC_<KEY>`, nested with `__`
/// (`DOTMAC_AUTH__JWT_SECRET`), plus the flat service addresses (`DOTMAC_DATABASE_URL`, …).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address `serve` listens on.
    pub listen: String,
    /// Postgres (serve) or SQLite (`sqlite://…`) URL; env `DOTMAC_DATABASE_URL`.
    pub database_url: String,
    /// Connections in the pool.
    pub database_pool_size: u32,
    /// Let `serve` run as a role that bypasses row-level security (never in production).
    pub allow_rls_bypass: bool,
    /// Redis URL; env `DOTMAC_REDIS_URL`.
    pub redis_url: String,
    /// Prefix of every Redis key and channel, so installs can share a server.
    pub redis_prefix: String,
    pub auth: AuthConfig,
    pub graphql: GraphqlConfig,
    pub limits: LimitsConfig,
    /// `json` or `pretty`.
    pub log_format: String,
    /// Kafka bootstrap servers for the usage pipeline; env
    /// `DOTMAC_KAFKA_BROKERS`. Empty: `serve` answers `/v1/events` with 503.
    pub kafka_brokers: String,
    /// How the intake and the aggregator authenticate to the brokers
    /// (`protocol`, `sasl_mechanism`, `sasl_username`, `sasl_password`,
    /// `ssl_ca_location`); plaintext by default.
    pub kafka_security: dotmac_ingest::kafka::KafkaSecurity,
    /// ClickHouse HTTP URL; env `DOTMAC_CLICKHOUSE_URL`.
    pub clickhouse_url: String,
    /// ClickHouse database of the usage tables.
    pub clickhouse_database: String,
    pub pipeline: PipelineConfig,
    pub billing: BillingConfig,
    /// Vault/OpenBao address; env `DOTMAC_VAULT_ADDR`. Empty: tenants'
    /// secrets are kept in a sealed store in the data dir (dev only).
    pub vault_addr: String,
    /// The platform's Vault token; env `DOTMAC_VAULT_TOKEN`.
    pub vault_token: String,
    pub orchestrator: OrchestratorConfig,
}

/// Where tenants' instances run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrchestratorTarget {
    /// No cluster: provisioning is finished by an operator (`activateTenant`).
    None,
    /// The local recorder in a folder (what `dev` runs).
    Local,
    /// A Kubernetes cluster, reconciled by `dotmac orchestrate`.
    Kubernetes,
}

/// Tenant instances and their secrets.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrchestratorConfig {
    pub target: OrchestratorTarget,
    /// Kubeconfig file; empty: `$KUBECONFIG`, `~/.kube/config`, then in-cluster.
    pub kubeconfig: String,
    /// Folder of the local recorder (target `local`); empty in `dev`: the data dir's `cluster/`.
    pub local_dir: String,
    /// The ISP framework's image repository and the version new instances run.
    pub image: String,
    pub version: String,
    /// Instances answer on `<slug>.<domain_suffix>`; empty: no Ingress.
    pub domain_suffix: String,
    /// A tenant whose instance is not Ready this long after provisioning is
    /// marked failed, naming the step that is not done.
    pub onboarding_deadline_secs: u64,
    /// How long a rollout may take before it is rolled back.
    pub progress_deadline_secs: i32,
    /// Reconciles at once in `dotmac orchestrate`.
    pub concurrency: u16,
    /// Only instances labelled with this shard (empty: all).
    pub shard: String,
    /// The KV v2 mount of tenants' secrets in Vault.
    pub vault_mount: String,
    /// How tenants' secrets are kept apart in Vault: `kv-path` (a path and
    /// policy per tenant; Vault OSS) or `namespace` (a namespace per tenant;
    /// OpenBao ≥ 2.3, Vault Enterprise).
    pub vault_scope: dotmac_orchestrator::secrets::openbao::VaultScope,
    /// Every instance's secrets are rotated this often, in days; 0: only on
    /// demand (`rotateTenantSecrets`).
    pub rotate_secrets_days: u32,
}

/// The longest grace a draft invoice may have, in days.
pub const MAX_GRACE_DAYS: i64 = 60;

/// Billing.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BillingConfig {
    /// Days an invoice stays a draft after its period (late usage).
    pub grace_days: i64,
    /// Days past the due date before dunning suspends the tenant.
    pub suspend_after_days: i64,
    /// HMAC-SHA256 secret of `POST /v1/webhooks/payments`; empty turns the
    /// webhook off.
    pub payment_webhook_secret: String,
    /// Minutes between scheduled closes and dunning runs in `serve` and
    /// `dev`; 0 turns the schedule off.
    pub schedule_minutes: u64,
}

/// The usage pipeline.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    pub events_topic: String,
    pub dead_letter_topic: String,
    /// Partitions of the events topic when `migrate` creates it.
    pub partitions: i32,
    /// Consumer group of the aggregators.
    pub group_id: String,
    /// Longest time a consumed event waits for its flush, in milliseconds.
    pub flush_ms: u64,
    /// Records an aggregator holds unflushed, at most (its memory bound).
    pub max_pending_records: usize,
    /// How long `(tenant, source, id)` is remembered, in days.
    pub dedupe_horizon_days: i64,
    /// Raw events are kept this many days (never fewer than the dedupe
    /// horizon or the periods still open for billing).
    pub raw_retention_days: i64,
    /// How often aggregators reload tenants and meters, in seconds.
    pub catalog_refresh_secs: u64,
    /// Consumer session timeout: how fast a dead aggregator's partitions move.
    pub session_timeout_ms: u32,
    pub max_poll_interval_ms: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// HMAC secret for access tokens, at least 32 bytes.
    pub jwt_secret: String,
    pub access_token_minutes: i64,
    pub refresh_token_days: i64,
    pub lockout_failures: i32,
    pub lockout_minutes: i64,
    pub invitation_days: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphqlConfig {
    pub introspection: bool,
    pub max_depth: usize,
    pub max_complexity: usize,
    pub max_aliases: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest request body accepted, in bytes (413 above it).
    pub max_body_bytes: usize,
    /// Largest `POST /v1/events` body (a batch of up to 1,000 events).
    pub max_events_body_bytes: usize,
    /// Sign-in attempts per (account, client address) per minute.
    pub login_per_minute: u32,
    /// Addresses of the load balancers in front of the API: a request from
    /// one of them is attributed to the client its `x-forwarded-for` names
    /// (the nearest address that is not a trusted proxy); any other peer's
    /// `x-forwarded-for` is ignored, so a client cannot choose its address.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Requests per tenant (all its users and keys together) per minute,
    /// and the burst above it (GCRA); the same per reseller.
    pub tenant_per_minute: u32,
    pub tenant_burst: u32,
    /// Requests per credential (a user or an API key) of a tenant or
    /// reseller per minute, and the burst: below the tenant's, so that one
    /// busy credential cannot starve the tenant's others.
    pub principal_per_minute: u32,
    pub principal_burst: u32,
    /// Requests per platform staff member per minute, and the burst.
    pub staff_per_minute: u32,
    pub staff_burst: u32,
    /// Requests without a credential (sign-in, refresh, accepting an
    /// invitation) per client address per minute; the burst is the same.
    pub anonymous_per_minute: u32,
}

/// `DOTMAC_*` variables that belong to other readers, not to [`Config`]:
/// the log filter, the demo and bootstrap passwords, and the deployment
/// scripts' and test harnesses' own settings (`DOTMAC_TEST_*`).
const OTHER_READERS: &[&str] = &["LOG", "DEMO_PASSWORD", "ADMIN_PASSWORD", "TANSU", "CACHE"];
const OTHER_READERS_PREFIX: &str = "TEST_";

/// The top-level keys of [`Config`], from its own fields, so that a section
/// added to the struct is read from the environment without a list to keep
/// in step (the `billing` section was once missing from such a list, and
/// every `DOTMAC_BILLING__*` variable was silently ignored).
fn top_level_keys() -> Vec<String> {
    match serde_json::to_value(Config::default()) {
        Ok(serde_json::Value::Object(fields)) => fields.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// The first `DOTMAC_*` variable of `vars` that no reader takes, by name.
fn unknown_variable(vars: impl Iterator<Item = String>) -> Option<String> {
    let keys = top_level_keys();
    vars.filter_map(|name| {
        let rest = name.strip_prefix("DOTMAC_")?.to_owned();
        let top = rest.split("__").next().unwrap_or_default();
        let known = keys.iter().any(|k| k.eq_ignore_ascii_case(top))
            || OTHER_READERS.contains(&rest.as_str())
            || rest.starts_with(OTHER_READERS_PREFIX);
        (!known).then_some(name)
    })
    .next()
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8000".into(),
            database_url: "postgres://dotmac_app@127.0.0.1:5432/dotmac".into(),
            database_pool_size: 16,
            allow_rls_bypass: false,
            redis_url: "redis://127.0.0.1:6379".into(),
            redis_prefix: "dotmac".into(),
            auth: AuthConfig {
                jwt_secret: String::new(),
                access_token_minutes: 30,
                refresh_token_days: 7,
                lockout_failures: 5,
                lockout_minutes: 30,
                invitation_days: 7,
            },
            graphql: GraphqlConfig {
                introspection: true,
                max_depth: 12,
                max_complexity: 2000,
                max_aliases: 30,
            },
            limits: LimitsConfig {
                max_body_bytes: 256 * 1024,
                max_events_body_bytes: 8 * 1024 * 1024,
                login_per_minute: 30,
                trusted_proxies: Vec::new(),
                tenant_per_minute: 1000,
                tenant_burst: 2000,
                principal_per_minute: 600,
                principal_burst: 1200,
                staff_per_minute: 3000,
                staff_burst: 3000,
                anonymous_per_minute: 120,
            },
            log_format: "pretty".into(),
            kafka_brokers: String::new(),
            kafka_security: Default::default(),
            clickhouse_url: "http://127.0.0.1:8123".into(),
            clickhouse_database: "dotmac".into(),
            pipeline: PipelineConfig {
                events_topic: "usage.events".into(),
                dead_letter_topic: "usage.dead-letter".into(),
                partitions: 4,
                group_id: "dotmac-aggregator".into(),
                flush_ms: 200,
                max_pending_records: 100_000,
                dedupe_horizon_days: 32,
                raw_retention_days: 400,
                catalog_refresh_secs: 5,
                session_timeout_ms: 6000,
                max_poll_interval_ms: 30_000,
            },
            billing: BillingConfig {
                grace_days: 3,
                suspend_after_days: 14,
                payment_webhook_secret: String::new(),
                schedule_minutes: 60,
            },
            vault_addr: String::new(),
            vault_token: String::new(),
            orchestrator: OrchestratorConfig {
                target: OrchestratorTarget::None,
                kubeconfig: String::new(),
                local_dir: String::new(),
                image: "ghcr.io/dotmac/isp-framework".into(),
                version: "1.0.0".into(),
                domain_suffix: String::new(),
                onboarding_deadline_secs: 300,
                progress_deadline_secs: 600,
                concurrency: 16,
                shard: String::new(),
                vault_mount: "secret".into(),
                vault_scope: Default::default(),
                rotate_secrets_days: 0,
            },
        }
    }
}

impl Config {
    /// Loads defaults, then `file` (if it exists), then the environment,
    /// and validates the result.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let config = Config::read(file)?;
        config.validate()?;
        Ok(config)
    }

    /// Reads defaults, then `file`, then the environment, refusing a key no
    /// reader takes; values are checked by [`Config::validate`].
    pub fn read(file: Option<&Path>) -> Result<Config, ConfigError> {
        let file = file
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("dotmac.toml"));
        // A misspelt variable would otherwise leave its setting at the
        // default without a word.
        if let Some(name) =
            unknown_variable(std::env::vars_os().filter_map(|(k, _)| k.into_string().ok()))
        {
            return Err(ConfigError::Invalid {
                key: name,
                reason: "no such configuration key (the README lists them)".into(),
            });
        }
        let others = |key: &figment::value::UncasedStr| {
            let key = key.as_str();
            OTHER_READERS.iter().any(|o| o.eq_ignore_ascii_case(key))
                || key.to_ascii_uppercase().starts_with(OTHER_READERS_PREFIX)
        };
        let figment = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::file(&file))
            .merge(
                Env::prefixed("DOTMAC_")
                    .filter(move |key| !others(key))
                    .split("__"),
            );
        let config: Config = figment.extract().map_err(|e| {
            let key = e.path.join(".");
            if key.is_empty() {
                ConfigError::Parse(e.to_string())
            } else {
                ConfigError::Invalid {
                    key,
                    reason: e.kind.to_string(),
                }
            }
        })?;
        Ok(config)
    }

    /// Checks every value that the types alone do not.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, reason: &str| {
            Err(ConfigError::Invalid {
                key: key.into(),
                reason: reason.into(),
            })
        };
        if self.listen.parse::<SocketAddr>().is_err() {
            return bad("listen", "must be an address such as 127.0.0.1:8000");
        }
        let db_ok = ["postgres://", "postgresql://", "sqlite:"]
            .iter()
            .any(|p| self.database_url.starts_with(p));
        if !db_ok {
            return bad("database_url", "must start with postgres:// or sqlite:");
        }
        if self.database_pool_size == 0 {
            return bad("database_pool_size", "must be at least 1");
        }
        if !(self.redis_url.starts_with("redis://") || self.redis_url.starts_with("rediss://")) {
            return bad("redis_url", "must start with redis:// or rediss://");
        }
        if !self.auth.jwt_secret.is_empty() && self.auth.jwt_secret.len() < 32 {
            return bad("auth.jwt_secret", "must be at least 32 bytes");
        }
        if self.auth.access_token_minutes <= 0 || self.auth.refresh_token_days <= 0 {
            return bad(
                "auth.access_token_minutes",
                "token lifetimes must be positive",
            );
        }
        if self.auth.lockout_failures <= 0 {
            return bad("auth.lockout_failures", "must be at least 1");
        }
        if let Err(e) = self.kafka_security.check() {
            return bad(&format!("kafka_security.{}", e.field), e.reason);
        }
        if self.graphql.max_depth == 0 || self.graphql.max_complexity == 0 {
            return bad("graphql.max_depth", "limits must be positive");
        }
        if self.limits.max_body_bytes < 1024 {
            return bad("limits.max_body_bytes", "must be at least 1024");
        }
        if self.limits.tenant_burst < self.limits.tenant_per_minute {
            return bad(
                "limits.tenant_burst",
                "must be at least limits.tenant_per_minute",
            );
        }
        if !matches!(self.log_format.as_str(), "json" | "pretty") {
            return bad("log_format", "must be `json` or `pretty`");
        }
        if !(self.clickhouse_url.starts_with("http://")
            || self.clickhouse_url.starts_with("https://"))
        {
            return bad("clickhouse_url", "must start with http:// or https://");
        }
        if dotmac_aggregator::clickhouse::ident(&self.clickhouse_database).is_err() {
            return bad(
                "clickhouse_database",
                "must be a plain name ([A-Za-z_][A-Za-z0-9_]*)",
            );
        }
        let p = &self.pipeline;
        if p.events_topic.is_empty()
            || p.dead_letter_topic.is_empty()
            || p.events_topic == p.dead_letter_topic
        {
            return bad("pipeline.events_topic", "topics must be set and distinct");
        }
        if !(1..=1024).contains(&p.partitions) {
            return bad("pipeline.partitions", "must be 1 to 1024");
        }
        if p.flush_ms == 0 || p.flush_ms > 60_000 {
            return bad("pipeline.flush_ms", "must be 1 to 60000");
        }
        if p.max_pending_records < 1000 {
            return bad("pipeline.max_pending_records", "must be at least 1000");
        }
        if !(1..=366).contains(&p.dedupe_horizon_days) {
            return bad("pipeline.dedupe_horizon_days", "must be 1 to 366");
        }
        if !(1..=36_500).contains(&p.raw_retention_days) {
            return bad("pipeline.raw_retention_days", "must be 1 to 36500");
        }
        if p.session_timeout_ms < 1000 || p.max_poll_interval_ms < p.session_timeout_ms {
            return bad(
                "pipeline.max_poll_interval_ms",
                "must be at least pipeline.session_timeout_ms (itself at least 1000)",
            );
        }
        let b = &self.billing;
        if !(0..=MAX_GRACE_DAYS).contains(&b.grace_days) {
            return bad("billing.grace_days", "must be 0 to 60");
        }
        if b.schedule_minutes > 24 * 60 {
            return bad("billing.schedule_minutes", "must be 0 (off) to 1440");
        }
        if !(0..=365).contains(&b.suspend_after_days) {
            return bad("billing.suspend_after_days", "must be 0 to 365");
        }
        if !b.payment_webhook_secret.is_empty() && b.payment_webhook_secret.len() < 32 {
            return bad(
                "billing.payment_webhook_secret",
                "must be at least 32 characters when set",
            );
        }
        let o = &self.orchestrator;
        if o.image.trim().is_empty() || o.image.contains(char::is_whitespace) {
            return bad("orchestrator.image", "must be an image repository");
        }
        if dotmac_orchestrator::builders::valid_version(&o.version).is_err() {
            return bad("orchestrator.version", "must be a version such as 1.4.0");
        }
        if !(30..=86_400).contains(&o.onboarding_deadline_secs) {
            return bad(
                "orchestrator.onboarding_deadline_secs",
                "must be 30 to 86400",
            );
        }
        if !(5..=86_400).contains(&o.progress_deadline_secs) {
            return bad("orchestrator.progress_deadline_secs", "must be 5 to 86400");
        }
        if o.concurrency == 0 {
            return bad("orchestrator.concurrency", "must be at least 1");
        }
        if o.rotate_secrets_days > 3650 {
            return bad(
                "orchestrator.rotate_secrets_days",
                "must be 0 (off) to 3650",
            );
        }
        let vault_ok = self.vault_addr.is_empty()
            || self.vault_addr.starts_with("http://")
            || self.vault_addr.starts_with("https://");
        if !vault_ok {
            return bad("vault_addr", "must start with http:// or https://");
        }
        Ok(())
    }

    /// The orchestrator's settings for every instance.
    pub fn orchestrator_settings(&self) -> dotmac_orchestrator::Settings {
        let o = &self.orchestrator;
        dotmac_orchestrator::Settings {
            image: o.image.clone(),
            progress_deadline_seconds: o.progress_deadline_secs,
            concurrency: o.concurrency,
            shard: (!o.shard.is_empty()).then(|| o.shard.clone()),
            ..Default::default()
        }
    }

    /// The aggregator's settings.
    pub fn aggregator(&self) -> Result<dotmac_aggregator::AggregatorConfig, ConfigError> {
        if self.kafka_brokers.is_empty() {
            return Err(ConfigError::Invalid {
                key: "kafka_brokers".into(),
                reason: "must be set for the usage pipeline (env DOTMAC_KAFKA_BROKERS)".into(),
            });
        }
        let p = &self.pipeline;
        let mut c = dotmac_aggregator::AggregatorConfig::new(&self.kafka_brokers);
        c.security = self.kafka_security.clone();
        c.group_id.clone_from(&p.group_id);
        c.topics = self.topics();
        c.flush_interval = std::time::Duration::from_millis(p.flush_ms);
        c.max_pending_records = p.max_pending_records;
        c.dedupe_horizon = chrono::TimeDelta::days(p.dedupe_horizon_days);
        c.catalog_refresh = std::time::Duration::from_secs(p.catalog_refresh_secs);
        c.session_timeout_ms = p.session_timeout_ms;
        c.max_poll_interval_ms = p.max_poll_interval_ms;
        c.write_timeout = std::time::Duration::from_millis(u64::from(p.max_poll_interval_ms) / 3);
        Ok(c)
    }

    /// What the raw-event retention job keeps.
    pub fn retention(&self) -> dotmac_aggregator::retention::Retention {
        dotmac_aggregator::retention::Retention {
            keep: chrono::TimeDelta::days(self.pipeline.raw_retention_days),
            dedupe_horizon: chrono::TimeDelta::days(self.pipeline.dedupe_horizon_days),
            grace: chrono::TimeDelta::days(self.billing.grace_days),
        }
    }

    pub fn topics(&self) -> dotmac_ingest::kafka::Topics {
        dotmac_ingest::kafka::Topics {
            events: self.pipeline.events_topic.clone(),
            dead_letter: self.pipeline.dead_letter_topic.clone(),
            partitions: self.pipeline.partitions,
        }
    }

    pub fn usage_store(&self) -> dotmac_aggregator::store::UsageStore {
        dotmac_aggregator::store::UsageStore::new(dotmac_aggregator::clickhouse::ClickHouse::new(
            &self.clickhouse_url,
            &self.clickhouse_database,
        ))
    }

    /// `serve` needs a real secret; `dev` makes and keeps one in its data dir.
    pub fn require_jwt_secret(&self) -> Result<(), ConfigError> {
        if self.auth.jwt_secret.is_empty() {
            return Err(ConfigError::Invalid {
                key: "auth.jwt_secret".into(),
                reason: "must be set for serve (env DOTMAC_AUTH__JWT_SECRET)".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn bad_values_name_their_key() {
        let c = Config {
            listen: "nope".into(),
            ..Config::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("`listen`"));
        let mut c = Config::default();
        c.auth.jwt_secret = "short".into();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("`auth.jwt_secret`"));
        let mut c = Config::default();
        c.kafka_security.protocol = dotmac_ingest::kafka::SecurityProtocol::SaslPlaintext;
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("`kafka_security.sasl_mechanism`"), "{err}");
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail fixes the closure's error type
    fn env_overrides_file_and_type_errors_name_the_key() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "dotmac.toml",
                "listen = \"127.0.0.1:9000\"\n[limits]\nlogin_per_minute = 5",
            )?;
            jail.set_env("DOTMAC_DATABASE_URL", "sqlite://x.db");
            let c = Config::load(None).unwrap();
            assert_eq!(c.listen, "127.0.0.1:9000");
            assert_eq!(c.database_url, "sqlite://x.db");
            assert_eq!(c.limits.login_per_minute, 5);
            jail.set_env("DOTMAC_LIMITS__MAX_BODY_BYTES", "lots");
            let err = Config::load(None).unwrap_err().to_string();
            assert!(err.contains("limits.max_body_bytes"), "{err}");
            Ok(())
        });
    }

    /// The README's configuration table: (key, environment variable).
    fn documented() -> Vec<(String, String)> {
        let readme = include_str!("../../README.md");
        readme
            .lines()
            .filter_map(|line| {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                let key = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
                let var = cells.get(2)?.strip_prefix('`')?.strip_suffix('`')?;
                var.starts_with("DOTMAC_")
                    .then(|| (key.to_owned(), var.to_owned()))
            })
            .collect()
    }

    /// Every leaf of the configuration, as a dotted path.
    fn leaves(value: &serde_json::Value, prefix: &str, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(fields) => {
                for (k, v) in fields {
                    let path = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    leaves(v, &path, out);
                }
            }
            _ => out.push(prefix.to_owned()),
        }
    }

    fn at<'a>(value: &'a serde_json::Value, path: &str) -> &'a serde_json::Value {
        path.split('.').fold(value, |v, k| &v[k])
    }

    /// A value for `key` unlike its default, as the environment spells it
    /// and as the configuration holds it.
    fn sample(key: &str, default: &serde_json::Value) -> (String, serde_json::Value) {
        use serde_json::{json, Value};
        match (key, default) {
            ("kafka_security.protocol", _) => ("sasl_ssl".into(), json!("sasl_ssl")),
            ("kafka_security.sasl_mechanism", _) => {
                ("SCRAM-SHA-512".into(), json!("SCRAM-SHA-512"))
            }
            ("limits.trusted_proxies", _) => ("[10.0.0.7]".into(), json!(["10.0.0.7"])),
            ("orchestrator.target", _) => ("kubernetes".into(), json!("kubernetes")),
            ("orchestrator.vault_scope", _) => ("namespace".into(), json!("namespace")),
            (_, Value::Bool(b)) => ((!b).to_string(), json!(!b)),
            (_, Value::Number(n)) => {
                let n = n.as_u64().expect("numeric settings are whole and positive") + 1;
                (n.to_string(), json!(n))
            }
            _ => (format!("set-{key}"), json!(format!("set-{key}"))),
        }
    }

    #[test]
    fn the_readme_documents_every_key() {
        let documented: Vec<String> = documented().into_iter().map(|(k, _)| k).collect();
        let mut all = Vec::new();
        leaves(
            &serde_json::to_value(Config::default()).unwrap(),
            "",
            &mut all,
        );
        let missing: Vec<&String> = all.iter().filter(|k| !documented.contains(k)).collect();
        assert!(missing.is_empty(), "not in the README's table: {missing:?}");
        let stale: Vec<&String> = documented.iter().filter(|k| !all.contains(k)).collect();
        assert!(stale.is_empty(), "in the README but not a key: {stale:?}");
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail fixes the closure's error type
    fn every_documented_variable_is_read_back() {
        let defaults = serde_json::to_value(Config::default()).unwrap();
        let documented = documented();
        assert!(documented.len() > 40, "the README's table was found");
        figment::Jail::expect_with(|jail| {
            let mut expected = Vec::new();
            for (key, var) in &documented {
                assert_eq!(
                    *var,
                    format!("DOTMAC_{}", key.replace('.', "__").to_ascii_uppercase()),
                    "the variable of `{key}`"
                );
                let (text, value) = sample(key, at(&defaults, key));
                jail.set_env(var, text);
                expected.push((key, value));
            }
            let read = serde_json::to_value(Config::read(None).unwrap()).unwrap();
            for (key, value) in expected {
                assert_eq!(at(&read, key), &value, "`{key}` read from the environment");
            }
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail fixes the closure's error type
    fn an_unknown_variable_stops_the_process_naming_it() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("DOTMAC_LOG", "debug");
            jail.set_env("DOTMAC_TEST_ANYTHING", "x");
            Config::load(None).unwrap();
            jail.set_env("DOTMAC_BILING__GRACE_DAYS", "5");
            let err = Config::load(None).unwrap_err().to_string();
            assert!(err.contains("DOTMAC_BILING__GRACE_DAYS"), "{err}");
            Ok(())
        });
        figment::Jail::expect_with(|jail| {
            jail.set_env("DOTMAC_BILLING__GRACE_DAY", "5");
            let err = Config::load(None).unwrap_err().to_string();
            assert!(err.contains("grace_day"), "{err}");
            Ok(())
        });
    }
}
