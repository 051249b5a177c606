//! The CRD under `deploy/crds/` is the one the Rust type generates: CI fails
//! when they drift. `DOTMAC_BLESS=1 cargo test -p dotmac-orchestrator crd`
//! writes it anew after a deliberate change of the type.

use std::path::PathBuf;

#[test]
fn committed_crd_matches_the_type() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/crds/tenantinstance.yaml");
    let generated = dotmac_orchestrator::resource::crd_yaml();
    if std::env::var_os("DOTMAC_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} drifted from TenantInstance: run `DOTMAC_BLESS=1 cargo test -p dotmac-orchestrator crd` and commit it",
        path.display()
    );
    // What the CRD must carry for the controller to work on a 1.20 server.
    assert!(generated.contains("scope: Cluster"));
    assert!(generated.contains("status: {}"), "the status subresource");
    assert!(generated.contains("apiextensions.k8s.io/v1"));
}
