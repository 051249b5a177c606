//! Tenant secrets in a real OpenBao, in both scopes (a path and policy per
//! tenant; a namespace per tenant): a tenant's token that reads its own
//! secrets and no other tenant's, rotation that keeps the previous version
//! readable, and revocation.

use dotmac_orchestrator::secrets::openbao::{OpenBao, OpenBaoSettings, SecretLocation, VaultScope};
use dotmac_orchestrator::secrets::{SecretValue, SecretVault};
use dotmac_orchestrator::testkit;
use dotmac_schema::TenantId;
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};

fn addr() -> String {
    testkit::openbao_settings().address
}

fn store() -> OpenBao {
    OpenBao::new(testkit::openbao_settings()).unwrap()
}

fn store_in(scope: VaultScope) -> OpenBao {
    OpenBao::new(OpenBaoSettings {
        scope,
        ..testkit::openbao_settings()
    })
    .unwrap()
}

/// A client holding `token`, speaking in `at`'s namespace (if any).
fn as_tenant(token: &str, at: &SecretLocation) -> VaultClient {
    VaultClient::new(
        VaultClientSettingsBuilder::default()
            .address(addr())
            .token(token)
            .namespace(at.namespace.clone())
            .build()
            .unwrap(),
    )
    .unwrap()
}

async fn read(
    client: &VaultClient,
    at: &SecretLocation,
) -> Result<Data, vaultrs::error::ClientError> {
    vaultrs::kv2::read::<Data>(client, &at.mount, &at.path).await
}

type Data = std::collections::BTreeMap<String, String>;

#[tokio::test]
async fn tenants_secrets_are_theirs_alone_rotate_with_history_and_are_revoked() {
    secrets_lifecycle(VaultScope::KvPath).await;
}

#[tokio::test]
async fn a_namespace_per_tenant_holds_its_secrets_and_is_deleted_whole() {
    let vault = store_in(VaultScope::Namespace);
    let a = TenantId::new().to_string();
    let at = vault.location(&a);
    assert_eq!(
        at.namespace.as_deref(),
        Some(format!("tenant-{a}").as_str())
    );
    secrets_lifecycle(VaultScope::Namespace).await;
    // The namespace itself is made with the first secrets, delivered to the
    // instance, and gone after revocation.
    let first = vault.ensure(&a, 0).await.unwrap();
    assert_eq!(
        first.values["VAULT_NAMESPACE"].expose(),
        at.namespace.as_deref().unwrap()
    );
    assert_eq!(
        namespace_status(at.namespace.as_deref().unwrap()).await,
        200
    );
    vault.revoke(&a).await.unwrap();
    assert_eq!(
        namespace_status(at.namespace.as_deref().unwrap()).await,
        404
    );
}

/// The status OpenBao answers for a namespace, asked as the platform.
async fn namespace_status(ns: &str) -> u16 {
    let settings = testkit::openbao_settings();
    reqwest::Client::new()
        .get(format!("{}/v1/sys/namespaces/{ns}", settings.address))
        .header("X-Vault-Token", settings.token.expose())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn secrets_lifecycle(scope: VaultScope) {
    let store = || store_in(scope);
    let vault = store();
    let (a, b) = (TenantId::new().to_string(), TenantId::new().to_string());
    let a1 = vault.ensure(&a, 0).await.unwrap();
    let b1 = vault.ensure(&b, 0).await.unwrap();
    assert_eq!(
        vault.ensure(&a, 0).await.unwrap(),
        a1,
        "ensure is idempotent"
    );
    for key in [
        "DATABASE_PASSWORD",
        "JWT_SIGNING_KEY",
        "DATA_ENCRYPTION_KEY",
        "VAULT_TOKEN",
    ] {
        assert!(a1.values.contains_key(key), "{key}");
    }
    assert!(
        a1.values.keys().all(|k| !k.starts_with('_')),
        "bookkeeping is never delivered"
    );
    assert_ne!(
        a1.values["DATABASE_PASSWORD"],
        b1.values["DATABASE_PASSWORD"]
    );

    // A's token reads A's secrets, and B's are denied (B's path, or B's
    // namespace).
    let (at_a, at_b) = (vault.location(&a), vault.location(&b));
    assert_ne!(at_a, at_b);
    let a_client = as_tenant(a1.values["VAULT_TOKEN"].expose(), &at_a);
    let own = read(&a_client, &at_a).await.unwrap();
    assert_eq!(
        own["DATABASE_PASSWORD"],
        a1.values["DATABASE_PASSWORD"].expose()
    );
    let other = read(&as_tenant(a1.values["VAULT_TOKEN"].expose(), &at_b), &at_b).await;
    assert!(
        matches!(
            other,
            Err(vaultrs::error::ClientError::APIError { code: 403, .. })
        ),
        "{other:?}"
    );

    // Rotation: a new version; the previous one stays readable until cut
    // over; the instance's token is kept so running pods are not cut off.
    let a2 = vault.ensure(&a, 1).await.unwrap();
    assert_eq!(a2.version, a1.version + 1);
    assert_ne!(
        a2.values["DATABASE_PASSWORD"],
        a1.values["DATABASE_PASSWORD"]
    );
    assert_eq!(a2.values["VAULT_TOKEN"], a1.values["VAULT_TOKEN"]);
    assert_eq!(
        vault.version(&a, a1.version).await.unwrap(),
        Some(a1.clone())
    );
    // A fresh process (no cache) reads the same current version.
    assert_eq!(store().ensure(&a, 1).await.unwrap(), a2);

    // Revocation: the token stops working, every version is gone; twice is fine.
    vault.revoke(&a).await.unwrap();
    vault.revoke(&a).await.unwrap();
    let after = read(&a_client, &at_a).await;
    assert!(after.is_err(), "{after:?}");
    // Revoked: refused (403); in namespace scope its namespace is gone
    // with it, so the store does not even know where to look (404).
    let token = vaultrs::token::lookup_self(&a_client).await;
    let refused = match scope {
        VaultScope::KvPath => &[403][..],
        VaultScope::Namespace => &[403, 404][..],
    };
    assert!(
        matches!(
            &token,
            Err(vaultrs::error::ClientError::APIError { code, .. }) if refused.contains(code)
        ),
        "the instance's token is revoked: {token:?}"
    );
    assert_eq!(store().version(&a, a1.version).await.unwrap(), None);
    // B is untouched.
    assert_eq!(store().ensure(&b, 0).await.unwrap(), b1);
    vault.revoke(&b).await.unwrap();
}

#[tokio::test]
async fn errors_never_carry_a_secret_and_bad_ids_name_no_path() {
    let vault = store();
    let err = vault.ensure("ten_../../sys/raw", 0).await.unwrap_err();
    assert!(err.to_string().contains("tenantId"), "{err}");
    let denied = OpenBao::new(OpenBaoSettings {
        token: SecretValue::new("not-a-token".into()),
        ..testkit::openbao_settings()
    })
    .unwrap();
    let err = denied
        .ensure(&TenantId::new().to_string(), 0)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("secret store") && text.contains("403"),
        "{text}"
    );
    assert!(!text.contains("not-a-token"));
}
