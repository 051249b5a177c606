//! Test harness: a real API server per test (SQLite file for the embedded
//! mode, a fresh Postgres database + Redis for serve mode), and a small
//! GraphQL client.

use std::sync::atomic::{AtomicU32, Ordering};

use dotmac_api::app::App;
use dotmac_api::config::Config;
use dotmac_api::seed;
use dotmac_schema::{ManualClock, SharedClock};
use sea_orm::{ConnectionTrait, Database};
use serde_json::{json, Value};
use std::sync::Arc;

pub const PASSWORD: &str = "test-password-123";

/// Where every test server's clock starts: a fixed instant, so that no test
/// depends on the day it runs. A test that needs another date sets it
/// (`TestServer::clock`).
pub const TEST_NOW: &str = "2026-11-16T12:00:00Z";

/// A clock standing at [`TEST_NOW`].
pub fn test_clock() -> ManualClock {
    ManualClock::new(TEST_NOW.parse().expect("TEST_NOW is RFC 3339"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub fn pg_admin_url() -> String {
    std::env::var("DOTMAC_TEST_PG_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn redis_url() -> String {
    std::env::var("DOTMAC_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        uuid::Uuid::new_v4()
            .simple()
            .to_string()
            .get(..8)
            .unwrap_or_default()
    )
}

/// A fresh database migrated by the owner, and the app role's URL for it.
pub async fn fresh_postgres() -> (String, String) {
    let name = unique("dotmac_t");
    let admin = Database::connect(pg_admin_url())
        .await
        .expect("postgres admin connection");
    admin
        .execute_unprepared(
            "DO $$ BEGIN CREATE ROLE dotmac_app LOGIN NOSUPERUSER NOBYPASSRLS;
             EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$",
        )
        .await
        .expect("create app role");
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create database");
    admin.close().await.ok();
    let base = pg_admin_url();
    let base = base
        .rsplit_once('/')
        .map(|(b, _)| b.to_owned())
        .unwrap_or(base);
    let owner_url = format!("{base}/{name}");
    let owner = dotmac_api::store::Store::connect(&owner_url, 2)
        .await
        .expect("owner connection");
    owner.migrate().await.expect("migrate");
    owner.connection().clone().close().await.ok();
    let app_url = format!("postgres://dotmac_app@127.0.0.1:5432/{name}");
    (owner_url, app_url)
}

pub struct TestServer {
    pub url: String,
    pub app: App,
    /// The clock the server reads; tests move it.
    pub clock: ManualClock,
    /// Owner connection URL (Postgres only), for raw checks.
    pub owner_url: Option<String>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start(backend: Backend) -> TestServer {
        Self::start_with(backend, |_| {}).await
    }

    /// A server whose configuration `adjust` changes after the test defaults.
    pub async fn start_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.auth.jwt_secret = "a-test-secret-that-is-long-enough-0123456789".into();
        config.redis_url = redis_url();
        config.redis_prefix = unique("dotmac_test");
        // Tests log in many times from one address.
        config.limits.login_per_minute = 10_000;
        config.limits.anonymous_per_minute = 10_000;
        // Each test reads and writes usage in a ClickHouse database of its own.
        config.clickhouse_url = std::env::var("DOTMAC_TEST_CLICKHOUSE_URL")
            .unwrap_or_else(|_| "http://127.0.0.1:8123".into());
        config.clickhouse_database = unique("dotmac_t");
        adjust(&mut config);
        let clock = test_clock();
        let shared: SharedClock = Arc::new(clock.clone());
        let (app, owner_url) = match backend {
            Backend::Sqlite => (
                dotmac_api::wiring::embedded_app(config, dir.path(), shared)
                    .await
                    .unwrap(),
                None,
            ),
            Backend::Postgres => {
                let (owner, app_url) = fresh_postgres().await;
                config.database_url = app_url;
                (
                    dotmac_api::wiring::production_app(config, shared)
                        .await
                        .unwrap(),
                    Some(owner),
                )
            }
        };
        seed::seed_demo(&app, PASSWORD).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let serve_app = app.clone();
        tokio::spawn(async move {
            dotmac_api::wiring::serve(serve_app, listener)
                .await
                .unwrap();
        });
        TestServer {
            url,
            app,
            clock,
            owner_url,
            _dir: dir,
        }
    }

    pub fn anonymous(&self) -> Client {
        Client::anonymous(self.url.clone())
    }

    pub async fn login(&self, email: &str) -> Client {
        self.anonymous().login(email, PASSWORD).await
    }
}

#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    pub url: String,
    pub token: Option<String>,
}

/// A GraphQL answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    pub fn data(&self) -> &Value {
        assert!(self.errors().is_empty(), "unexpected errors: {}", self.body);
        &self.body["data"]
    }
    pub fn errors(&self) -> Vec<Value> {
        self.body["errors"].as_array().cloned().unwrap_or_default()
    }
    /// The `code` of the first error, if any.
    pub fn code(&self) -> Option<String> {
        self.errors()
            .first()
            .and_then(|e| e["extensions"]["code"].as_str().map(str::to_owned))
    }
    pub fn expect_code(&self, code: &str) -> &Self {
        assert_eq!(self.code().as_deref(), Some(code), "answer: {}", self.body);
        self
    }
}

impl Client {
    /// A client of the server at `url` with no credentials.
    pub fn anonymous(url: String) -> Client {
        Client {
            http: reqwest::Client::new(),
            url,
            token: None,
        }
    }

    pub fn with_token(&self, token: &str) -> Client {
        Client {
            token: Some(token.to_owned()),
            ..self.clone()
        }
    }

    pub async fn gql(&self, query: &str, variables: Value) -> Answer {
        let mut req = self
            .http
            .post(format!("{}/graphql", self.url))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        Answer { status, body }
    }

    pub async fn login(&self, email: &str, password: &str) -> Client {
        let a = self
            .gql(
                "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken } }",
                json!({ "e": email, "p": password }),
            )
            .await;
        let token = a.data()["login"]["accessToken"]
            .as_str()
            .expect("token")
            .to_owned();
        self.with_token(&token)
    }
}

/// Whether `app` runs on Postgres (serve mode) rather than SQLite (dev).
fn on_postgres(app: &App) -> bool {
    app.store.backend() == sea_orm::DbBackend::Postgres
}

/// Creates the ClickHouse usage tables of a serve-mode server (the embedded
/// store of dev mode has its tables from the migrations).
pub async fn usage_tables(app: &App) {
    if on_postgres(app) {
        app.config.usage_store().migrate().await.unwrap();
    }
}

/// Commits a rollup part as an aggregator flush commits it, in the store
/// `app` reads usage from: ClickHouse (with its batch row) under serve, the
/// embedded store under dev.
pub async fn commit_part(
    app: &App,
    part: dotmac_aggregator::rows::RollupPartRow,
    batch: dotmac_aggregator::rows::BatchRow,
) {
    if on_postgres(app) {
        let usage = app.config.usage_store();
        usage.migrate().await.unwrap();
        usage.write_flush(&[], &[part], &[batch]).await.unwrap();
    } else {
        dotmac_api::pipeline::embedded::EmbeddedPipeline::insert_parts(
            app.store.connection(),
            &[part],
        )
        .await
        .unwrap();
    }
}
