//! Integration tests of the API against real services: Postgres (as the
//! RLS-bound app role) and Redis for serve mode, SQLite for dev mode, and the
//! built `dotmac` binary end to end.

mod api;
mod billing;
mod billing_rules;
mod dates;
mod e2e;
mod embedded_usage;
mod errors;
mod instance_rotation;
mod isolation;
mod layout;
mod licensing;
mod limits;
mod orchestration;
mod outbox;
mod rls;
mod settlement;
mod support;
mod tenant_state;

/// The committed SDL (`schema/dotmac.graphql`) is what the code serves;
/// regenerate with `cargo run -- schema > schema/dotmac.graphql`.
#[test]
fn committed_sdl_has_not_drifted() {
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../schema/dotmac.graphql"
    ))
    .expect("schema/dotmac.graphql");
    assert!(
        committed == dotmac_api::graphql::sdl(),
        "schema/dotmac.graphql is stale: run `cargo run -- schema > schema/dotmac.graphql`"
    );
}
