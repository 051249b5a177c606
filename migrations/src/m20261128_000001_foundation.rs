//! Foundation tables: resellers, tenants, users, credentials, invitations and
//! the append-only audit log; RLS policies on Postgres.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261128_000001_foundation"
    }
}

/// Tables in creation order; `{ts}` is the timestamp type of the backend.
const TABLES: &[&str] = &[
    "CREATE TABLE resellers (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        tier TEXT NOT NULL,
        contact_email TEXT,
        created_at {ts} NOT NULL
    )",
    "CREATE TABLE tenants (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        slug TEXT NOT NULL UNIQUE,
        state TEXT NOT NULL,
        state_reason TEXT,
        tier TEXT NOT NULL,
        contact_name TEXT,
        contact_email TEXT,
        reseller_id TEXT REFERENCES resellers(id),
        created_at {ts} NOT NULL,
        updated_at {ts} NOT NULL
    )",
    "CREATE INDEX tenants_reseller ON tenants(reseller_id)",
    "CREATE TABLE users (
        id TEXT PRIMARY KEY,
        email TEXT NOT NULL UNIQUE,
        name TEXT,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL,
        tenant_id TEXT REFERENCES tenants(id),
        reseller_id TEXT REFERENCES resellers(id),
        failed_logins INTEGER NOT NULL DEFAULT 0,
        locked_until {ts},
        created_at {ts} NOT NULL
    )",
    "CREATE INDEX users_tenant ON users(tenant_id)",
    "CREATE TABLE refresh_tokens (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users(id),
        family_id TEXT NOT NULL,
        token_hash TEXT NOT NULL UNIQUE,
        expires_at {ts} NOT NULL,
        revoked_at {ts},
        created_at {ts} NOT NULL
    )",
    "CREATE INDEX refresh_tokens_family ON refresh_tokens(family_id)",
    "CREATE TABLE invitations (
        id TEXT PRIMARY KEY,
        email TEXT NOT NULL,
        role TEXT NOT NULL,
        tenant_id TEXT REFERENCES tenants(id),
        reseller_id TEXT REFERENCES resellers(id),
        token_hash TEXT NOT NULL UNIQUE,
        invited_by TEXT NOT NULL,
        expires_at {ts} NOT NULL,
        accepted_at {ts},
        created_at {ts} NOT NULL
    )",
    "CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL REFERENCES tenants(id),
        name TEXT NOT NULL,
        prefix TEXT NOT NULL UNIQUE,
        secret_hash TEXT NOT NULL,
        scopes TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_at {ts} NOT NULL,
        last_used_at {ts},
        revoked_at {ts}
    )",
    "CREATE INDEX api_keys_tenant ON api_keys(tenant_id)",
    "CREATE TABLE audit_log (
        id TEXT PRIMARY KEY,
        at {ts} NOT NULL,
        actor TEXT NOT NULL,
        actor_role TEXT,
        scope TEXT NOT NULL,
        tenant_id TEXT,
        reseller_id TEXT,
        action TEXT NOT NULL,
        object_id TEXT,
        before_state TEXT,
        after_state TEXT,
        request_id TEXT
    )",
    "CREATE INDEX audit_log_tenant ON audit_log(tenant_id)",
];

/// Postgres only: the audit log refuses updates and deletes, for everyone.
const PG_APPEND_ONLY: &[&str] = &[
    "CREATE FUNCTION dotmac_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$",
    "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
     FOR EACH ROW EXECUTE FUNCTION dotmac_append_only()",
];

/// SQLite: the same guarantee with RAISE(ABORT).
const SQLITE_APPEND_ONLY: &[&str] = &[
    "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
     BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
    "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
     BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
];

/// Row-level security. `dotmac.scope` is `all`, `reseller` or `tenant`; an
/// unset scope matches nothing. `tenants` is filtered on its own columns (a
/// policy on it may not query it again); every other table asks
/// `dotmac_tenant_visible`, which reads `tenants` under that policy.
const PG_RLS: &[&str] = &[
    "CREATE FUNCTION dotmac_scope_all() RETURNS boolean LANGUAGE sql STABLE AS $$
       SELECT coalesce(current_setting('dotmac.scope', true), '') = 'all' $$",
    "CREATE FUNCTION dotmac_tenant_visible(tid text) RETURNS boolean LANGUAGE sql STABLE AS $$
       SELECT dotmac_scope_all()
           OR tid = nullif(current_setting('dotmac.tenant_id', true), '')
           OR EXISTS (SELECT 1 FROM tenants t WHERE t.id = tid
                      AND t.reseller_id = nullif(current_setting('dotmac.reseller_id', true), '')) $$",
    "CREATE FUNCTION dotmac_reseller_visible(rid text) RETURNS boolean LANGUAGE sql STABLE AS $$
       SELECT dotmac_scope_all() OR rid = nullif(current_setting('dotmac.reseller_id', true), '') $$",
    // PL/pgSQL on purpose: an inlined expression of current_setting() calls
    // gets a selectivity estimate near zero, and the planner then answers
    // `ORDER BY id LIMIT n` with a full scan and a sort; an opaque function is
    // estimated at a third of the rows, which keeps the primary-key index scan.
    "CREATE FUNCTION dotmac_tenant_row_visible(tid text, rid text) RETURNS boolean
       LANGUAGE plpgsql STABLE AS $$
       BEGIN
         RETURN coalesce(current_setting('dotmac.scope', true), '') = 'all'
             OR tid = nullif(current_setting('dotmac.tenant_id', true), '')
             OR rid = nullif(current_setting('dotmac.reseller_id', true), '');
       END $$",
    "ALTER TABLE tenants ENABLE ROW LEVEL SECURITY",
    "CREATE POLICY scoped ON tenants USING (dotmac_tenant_row_visible(id, reseller_id))",
    "ALTER TABLE resellers ENABLE ROW LEVEL SECURITY",
    "CREATE POLICY scoped ON resellers USING (dotmac_reseller_visible(id))",
    "ALTER TABLE users ENABLE ROW LEVEL SECURITY",
    "CREATE POLICY scoped ON users USING (
        dotmac_scope_all()
        OR (tenant_id IS NOT NULL AND dotmac_tenant_visible(tenant_id))
        OR (reseller_id IS NOT NULL AND dotmac_reseller_visible(reseller_id)))",
    "ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY",
    "CREATE POLICY scoped ON api_keys USING (dotmac_tenant_visible(tenant_id))",
    "ALTER TABLE invitations ENABLE ROW LEVEL SECURITY",
    "CREATE POLICY scoped ON invitations USING (
        dotmac_scope_all()
        OR (tenant_id IS NOT NULL AND dotmac_tenant_visible(tenant_id))
        OR (tenant_id IS NULL AND reseller_id IS NOT NULL AND dotmac_reseller_visible(reseller_id)))",
    "ALTER TABLE audit_log ENABLE ROW LEVEL SECURITY",
    "CREATE POLICY scoped ON audit_log USING (
        dotmac_scope_all()
        OR (tenant_id IS NOT NULL AND dotmac_tenant_visible(tenant_id))
        OR (tenant_id IS NULL AND reseller_id IS NOT NULL AND dotmac_reseller_visible(reseller_id)))",
    // Credentials are only ever read by the authentication path, which runs in
    // the explicit `all` scope.
    "ALTER TABLE refresh_tokens ENABLE ROW LEVEL SECURITY",
    "CREATE POLICY scoped ON refresh_tokens USING (dotmac_scope_all())",
    // Grant the app role what it needs, if it has been provisioned; never
    // UPDATE or DELETE on the audit log.
    "DO $$ BEGIN
       IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'dotmac_app') THEN
         GRANT USAGE ON SCHEMA public TO dotmac_app;
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO dotmac_app;
         REVOKE UPDATE, DELETE ON audit_log FROM dotmac_app;
         REVOKE ALL ON seaql_migrations FROM dotmac_app;
       END IF;
     END $$",
    // Policies bind the tables' owner too, so pointing `serve` at the owner's
    // URL by mistake does not switch isolation off.
    "ALTER TABLE tenants FORCE ROW LEVEL SECURITY",
    "ALTER TABLE resellers FORCE ROW LEVEL SECURITY",
    "ALTER TABLE users FORCE ROW LEVEL SECURITY",
    "ALTER TABLE api_keys FORCE ROW LEVEL SECURITY",
    "ALTER TABLE invitations FORCE ROW LEVEL SECURITY",
    "ALTER TABLE audit_log FORCE ROW LEVEL SECURITY",
    "ALTER TABLE refresh_tokens FORCE ROW LEVEL SECURITY",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let backend = db.get_database_backend();
        let ts = match backend {
            DbBackend::Postgres => "TIMESTAMPTZ",
            _ => "TEXT",
        };
        for sql in TABLES {
            db.execute_unprepared(&sql.replace("{ts}", ts)).await?;
        }
        let extra: &[&[&str]] = match backend {
            DbBackend::Postgres => &[PG_APPEND_ONLY, PG_RLS],
            _ => &[SQLITE_APPEND_ONLY],
        };
        for sql in extra.iter().flat_map(|s| s.iter()) {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for table in [
            "audit_log",
            "api_keys",
            "invitations",
            "refresh_tokens",
            "users",
            "tenants",
            "resellers",
        ] {
            db.execute_unprepared(&format!("DROP TABLE IF EXISTS {table}"))
                .await?;
        }
        if db.get_database_backend() == DbBackend::Postgres {
            db.execute_unprepared(
                "DROP FUNCTION IF EXISTS dotmac_tenant_visible(text), dotmac_reseller_visible(text), dotmac_tenant_row_visible(text, text), dotmac_scope_all(), dotmac_append_only()",
            )
            .await?;
        }
        Ok(())
    }
}
