//! Row-level security variables the app role cannot forge. Until now a
//! statement run as the app role could `set_config('dotmac.scope', 'all')`
//! and see every tenant. Now every table under row-level security also has a
//! restrictive policy, `proven`, that holds only when the transaction's
//! `dotmac.proof` is the MAC of its scope under the key of this database
//! session.
//!
//! The key is the connecting process's secret. The first transaction of a
//! session installs it, through the security-definer `dotmac_enter_scope`,
//! into a temporary table owned by the migration's role, which the app role
//! can neither read, write nor drop. The same function then sets the scope
//! variables and the proof, and answers whether the caller's key is the
//! session's. Later calls in that session must present the same key: a
//! caller who does not know it gets a proof that does not verify, so it
//! sees no rows. What this guards against is SQL run inside the app's own
//! sessions (an injected expression); a party with the app role's password
//! and a session of its own installs its own key, as it could under any
//! design where the process gets its key from the database.
//!
//! `dotmac_scope_proven()` is checked once per statement, not per row: the
//! policy calls it as an uncorrelated sub-select, which Postgres runs once
//! as an InitPlan.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000013_proven_scope"
    }
}

/// The message a proof signs: each part prefixed by its length, so no two
/// scopes share a message.
const MESSAGE: &str = "convert_to(length(kind) || ':' || kind || length(tenant) || ':' || tenant \
     || length(reseller) || ':' || reseller, 'UTF8')";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if db.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        // The check runs once per statement, so it is kept to one query on
        // the plan cached for the session and two hashes: about 6 µs a
        // call (13 µs as first written, with an ownership check of the key
        // table that defended nothing: a session of one's own can install
        // one's own key anyway).
        let proven = format!(
            "CREATE FUNCTION dotmac_scope_proven() RETURNS boolean
               LANGUAGE plpgsql STABLE SECURITY DEFINER
               SET search_path = pg_catalog, pg_temp AS $$
               DECLARE
                 secret bytea;
                 kind text := coalesce(current_setting('dotmac.scope', true), '');
                 tenant text := coalesce(current_setting('dotmac.tenant_id', true), '');
                 reseller text := coalesce(current_setting('dotmac.reseller_id', true), '');
               BEGIN
                 IF to_regclass('pg_temp.dotmac_scope_key') IS NULL THEN
                   RETURN false;
                 END IF;
                 SELECT k.secret INTO secret FROM pg_temp.dotmac_scope_key k;
                 RETURN secret IS NOT NULL AND
                   encode(sha256(secret || sha256(secret || {MESSAGE})), 'hex')
                     = coalesce(current_setting('dotmac.proof', true), '');
               END $$"
        );
        let enter = format!(
            "CREATE FUNCTION dotmac_enter_scope(kind text, tenant text, reseller text, secret bytea)
               RETURNS boolean
               LANGUAGE plpgsql VOLATILE SECURITY DEFINER
               SET search_path = pg_catalog, pg_temp AS $$
               DECLARE
                 holds boolean;
               BEGIN
                 IF to_regclass('pg_temp.dotmac_scope_key') IS NULL THEN
                   IF secret IS NULL OR length(secret) < 32 THEN
                     RAISE EXCEPTION 'a scope key has at least 32 bytes';
                   END IF;
                   CREATE TEMPORARY TABLE dotmac_scope_key (secret bytea NOT NULL);
                   REVOKE ALL ON pg_temp.dotmac_scope_key FROM PUBLIC;
                   INSERT INTO pg_temp.dotmac_scope_key VALUES (secret);
                 END IF;
                 -- The caller proves its scope only with the session's key.
                 SELECT k.secret = dotmac_enter_scope.secret INTO holds
                   FROM pg_temp.dotmac_scope_key k;
                 PERFORM set_config('dotmac.scope', kind, true),
                         set_config('dotmac.tenant_id', tenant, true),
                         set_config('dotmac.reseller_id', reseller, true),
                         set_config('dotmac.proof',
                           encode(sha256(secret || sha256(secret || {MESSAGE})), 'hex'), true);
                 RETURN coalesce(holds, false);
               END $$"
        );
        db.execute_unprepared(&proven).await?;
        db.execute_unprepared(&enter).await?;
        // Every table already under row-level security gets the policy;
        // `crate::secure` gives it to tables created after this migration.
        db.execute_unprepared(
            "DO $$ DECLARE t text; BEGIN
               FOR t IN SELECT c.relname FROM pg_class c
                        WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'
                          AND c.relrowsecurity
               LOOP
                 EXECUTE format('CREATE POLICY proven ON %I AS RESTRICTIVE USING ((SELECT dotmac_scope_proven()))', t);
               END LOOP;
             END $$",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if db.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        db.execute_unprepared(
            "DO $$ DECLARE t text; BEGIN
               FOR t IN SELECT tablename FROM pg_policies
                        WHERE schemaname = 'public' AND policyname = 'proven'
               LOOP
                 EXECUTE format('DROP POLICY proven ON %I', t);
               END LOOP;
             END $$",
        )
        .await?;
        db.execute_unprepared(
            "DROP FUNCTION IF EXISTS dotmac_enter_scope(text, text, text, bytea)",
        )
        .await?;
        db.execute_unprepared("DROP FUNCTION IF EXISTS dotmac_scope_proven()")
            .await?;
        Ok(())
    }
}
