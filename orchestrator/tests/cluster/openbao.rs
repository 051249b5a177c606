//! Tenant secrets in a real OpenBao: per-tenant paths and policies, a
//! tenant's token that reads its own path and no other, rotation that keeps
//! the previous version readable, and revocation.

use dotmac_orchestrator::secrets::openbao::{OpenBao, OpenBaoSettings};
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

fn as_tenant(token: &str) -> VaultClient {
    VaultClient::new(
        VaultClientSettingsBuilder::default()
            .address(addr())
            .token(token)
            .build()
            .unwrap(),
    )
    .unwrap()
}

type Data = std::collections::BTreeMap<String, String>;

#[tokio::test]
async fn tenants_secrets_are_theirs_alone_rotate_with_history_and_are_revoked() {
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

    // A's token reads A's path, and B's path is denied.
    let a_client = as_tenant(a1.values["VAULT_TOKEN"].expose());
    let own: Data = vaultrs::kv2::read(&a_client, "secret", &format!("tenants/{a}/instance"))
        .await
        .unwrap();
    assert_eq!(
        own["DATABASE_PASSWORD"],
        a1.values["DATABASE_PASSWORD"].expose()
    );
    let other =
        vaultrs::kv2::read::<Data>(&a_client, "secret", &format!("tenants/{b}/instance")).await;
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
    let after =
        vaultrs::kv2::read::<Data>(&a_client, "secret", &format!("tenants/{a}/instance")).await;
    assert!(
        matches!(
            after,
            Err(vaultrs::error::ClientError::APIError { code: 403, .. })
        ),
        "{after:?}"
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
