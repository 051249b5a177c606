//! The verifier as an ISP instance uses it: golden files, every byte
//! signed, validity and grace boundaries, enforcement, revocation, clock
//! rollback, snapshots from the platform and from disk.

use std::collections::{BTreeMap, BTreeSet};

use dotmac_licence::sign::Signer;
use dotmac_licence::{
    Checker, Decision, Enforcement, Entitlement, EntitlementValue, Error, FeatureGrant, Kind,
    LicencePayload, PluginGrant, RevocationList, Snapshot, Source, Standing, Use, Verifier,
};
use proptest::prelude::*;

const TENANT: &str = "ten_0123456789abcdef0123456789abcdef";
const INSTANCE: &str = "ins_7f3c2a9e";
/// 2026-12-01T00:00:00Z.
const T0: i64 = 1_796_083_200;
const DAY: i64 = 86_400;

fn payload() -> LicencePayload {
    LicencePayload {
        licence_id: "lic_0001".into(),
        tenant_id: TENANT.into(),
        instance_ids: vec![INSTANCE.into()],
        plugins: vec![PluginGrant {
            plugin: "network-monitoring".into(),
            tier: "professional".into(),
            trial: false,
        }],
        features: BTreeMap::from([
            (
                "customer_portal".into(),
                FeatureGrant {
                    enforcement: Enforcement::Advisory,
                },
            ),
            (
                "advanced_analytics".into(),
                FeatureGrant {
                    enforcement: Enforcement::Soft,
                },
            ),
            (
                "api_access".into(),
                FeatureGrant {
                    enforcement: Enforcement::Hard,
                },
            ),
        ]),
        limits: BTreeMap::from([("devices".into(), 500)]),
        issued_at: T0,
        not_before: T0,
        refresh_after: T0 + 7 * DAY,
        expires_at: T0 + 30 * DAY,
        grace_until: T0 + 37 * DAY,
        revocation_seq: 3,
    }
}

fn file() -> String {
    Signer::dev().sign_json(Kind::Licence, &payload()).unwrap()
}

fn verify_at(doc: &[u8], now: i64) -> Result<dotmac_licence::Verified, Error> {
    Verifier::new(0).verify(doc, TENANT, Some(INSTANCE), now)
}

/// The committed golden files: a change of the format breaks them (and
/// every instance in the field), so it must be deliberate:
/// `DOTMAC_BLESS=1 cargo test -p dotmac-licence golden` rewrites them.
#[test]
fn golden_files_are_stable_and_verify() {
    let revocations = RevocationList {
        sequence: 3,
        issued_at: T0,
        revoked: BTreeSet::from(["lic_0000".to_owned()]),
    };
    let snapshot = snapshot(7);
    let made = [
        ("licence.dmlic", file()),
        (
            "revocations.dmrev",
            Signer::dev()
                .sign_json(Kind::Revocations, &revocations)
                .unwrap(),
        ),
        (
            "snapshot.dment",
            Signer::dev().sign_json(Kind::Snapshot, &snapshot).unwrap(),
        ),
    ];
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    for (name, text) in &made {
        let path = dir.join(name);
        if std::env::var_os("DOTMAC_BLESS").is_some() {
            std::fs::write(&path, text).unwrap();
        }
        let golden = std::fs::read_to_string(&path).unwrap();
        assert_eq!(&golden, text, "{name} drifted from its golden file");
    }
    let golden = std::fs::read(dir.join("licence.dmlic")).unwrap();
    let v = verify_at(&golden, T0 + DAY).unwrap();
    assert_eq!(v.payload, payload());
    assert_eq!(v.key_id, "dev-2026");
    let verifier = Verifier::new(0);
    assert_eq!(
        verifier
            .accept_revocations(&std::fs::read(dir.join("revocations.dmrev")).unwrap())
            .unwrap(),
        3
    );
    let checker = Checker::new(TENANT, None);
    assert_eq!(
        checker
            .install(&std::fs::read(dir.join("snapshot.dment")).unwrap())
            .unwrap(),
        7
    );
}

#[test]
fn the_validity_window_and_its_boundaries() {
    let doc = file();
    let standing = |now| verify_at(doc.as_bytes(), now).map(|v| v.standing);
    assert!(matches!(
        standing(T0 - 1),
        Err(Error::NotYetValid { not_before: T0, .. })
    ));
    assert_eq!(standing(T0), Ok(Standing::Valid));
    assert_eq!(standing(T0 + 7 * DAY - 1), Ok(Standing::Valid));
    assert_eq!(standing(T0 + 7 * DAY), Ok(Standing::RefreshDue));
    assert_eq!(standing(T0 + 30 * DAY - 1), Ok(Standing::RefreshDue));
    assert_eq!(standing(T0 + 30 * DAY), Ok(Standing::InGrace));
    assert_eq!(standing(T0 + 37 * DAY - 1), Ok(Standing::InGrace));
    assert_eq!(standing(T0 + 37 * DAY), Ok(Standing::PastGrace));
}

#[test]
fn enforcement_refuses_new_use_by_its_rule_and_never_running_traffic() {
    let doc = file();
    let at = |now| verify_at(doc.as_bytes(), now).unwrap();
    let valid = at(T0 + DAY);
    for f in ["customer_portal", "advanced_analytics", "api_access"] {
        assert_eq!(valid.decide(f, Use::New), Decision::Allow, "{f}");
    }
    assert!(matches!(
        valid.decide("white_labeling", Use::New),
        Decision::Deny(_)
    ));

    let grace = at(T0 + 31 * DAY);
    assert!(matches!(
        grace.decide("customer_portal", Use::New),
        Decision::Warn(_)
    ));
    assert!(matches!(
        grace.decide("advanced_analytics", Use::New),
        Decision::Warn(_)
    ));
    assert!(matches!(
        grace.decide("api_access", Use::New),
        Decision::Deny(_)
    ));

    let past = at(T0 + 40 * DAY);
    assert!(matches!(
        past.decide("customer_portal", Use::New),
        Decision::Warn(_)
    ));
    assert!(matches!(
        past.decide("advanced_analytics", Use::New),
        Decision::Deny(_)
    ));
    assert!(matches!(
        past.decide("api_access", Use::New),
        Decision::Deny(_)
    ));

    // Running traffic is never stopped, whatever the feature and standing.
    for v in [&grace, &past] {
        for f in ["customer_portal", "advanced_analytics", "api_access"] {
            assert!(v.decide(f, Use::Running).allowed(), "{f} {:?}", v.standing);
        }
    }
}

#[test]
fn another_tenant_another_instance_an_unknown_key_or_another_kind_are_refused() {
    let doc = file();
    let v = Verifier::new(0);
    assert!(matches!(
        v.verify(
            doc.as_bytes(),
            "ten_ffffffffffffffffffffffffffffffff",
            None,
            T0
        ),
        Err(Error::WrongTenant { .. })
    ));
    assert!(matches!(
        v.verify(doc.as_bytes(), TENANT, Some("ins_other"), T0),
        Err(Error::NotActivated(_))
    ));
    let foreign = Signer::from_seed("acme-2026", [7; 32])
        .unwrap()
        .sign_json(Kind::Licence, &payload())
        .unwrap();
    assert_eq!(
        v.verify(foreign.as_bytes(), TENANT, None, T0),
        Err(Error::UnknownKey("acme-2026".into()))
    );
    // A key id relabelled to a trusted one: the signature no longer matches.
    let relabelled = foreign.replacen("acme-2026", "dev-2026", 1);
    assert_eq!(
        v.verify(relabelled.as_bytes(), TENANT, None, T0),
        Err(Error::BadSignature)
    );
    // A snapshot is not a licence, even signed by a trusted key.
    let snap = Signer::dev()
        .sign_json(Kind::Snapshot, &snapshot(1))
        .unwrap();
    assert!(matches!(
        v.verify(snap.as_bytes(), TENANT, None, T0),
        Err(Error::WrongKind { .. })
    ));
}

#[test]
fn revocation_is_monotonic_and_binds() {
    let v = Verifier::new(0);
    let doc = file();
    let list = |sequence, revoked: &[&str]| {
        Signer::dev()
            .sign_json(
                Kind::Revocations,
                &RevocationList {
                    sequence,
                    issued_at: T0,
                    revoked: revoked.iter().map(|s| s.to_string()).collect(),
                },
            )
            .unwrap()
    };
    let before = v.verify(doc.as_bytes(), TENANT, None, T0).unwrap();
    assert!(
        before.revocations_behind,
        "the licence names list 3; none held"
    );
    v.accept_revocations(list(4, &["lic_0001"]).as_bytes())
        .unwrap();
    assert_eq!(
        v.verify(doc.as_bytes(), TENANT, None, T0),
        Err(Error::Revoked { sequence: 4 })
    );
    // An older list (one that did not revoke it) cannot bring it back.
    assert_eq!(
        v.accept_revocations(list(3, &[]).as_bytes()),
        Err(Error::StaleRevocations {
            offered: 3,
            held: 4
        })
    );
    assert!(v.verify(doc.as_bytes(), TENANT, None, T0).is_err());
    assert_eq!(v.revocation_sequence(), 4);
}

#[test]
fn a_clock_set_back_is_reported_and_cannot_revive_an_expired_licence() {
    let v = Verifier::new(0);
    let doc = file();
    let late = v
        .verify(doc.as_bytes(), TENANT, None, T0 + 40 * DAY)
        .unwrap();
    assert_eq!(late.standing, Standing::PastGrace);
    // Someone sets the clock back a month: still past grace, and reported.
    let back = v
        .verify(doc.as_bytes(), TENANT, None, T0 + 10 * DAY)
        .unwrap();
    assert_eq!(back.standing, Standing::PastGrace);
    assert_eq!(back.clock_rolled_back_by, Some(30 * DAY));
    assert_eq!(back.judged_at, T0 + 40 * DAY);
    // The mark survives a restart when kept.
    let restarted = Verifier::new(v.high_water());
    let again = restarted.verify(doc.as_bytes(), TENANT, None, T0).unwrap();
    assert_eq!(again.standing, Standing::PastGrace);
}

fn snapshot(version: u64) -> Snapshot {
    Snapshot {
        tenant_id: TENANT.into(),
        version,
        issued_at: T0,
        entitlements: BTreeMap::from([
            (
                "api_access".into(),
                Entitlement {
                    value: EntitlementValue::Boolean { enabled: true },
                    enforcement: Enforcement::Hard,
                },
            ),
            (
                "white_labeling".into(),
                Entitlement {
                    value: EntitlementValue::Boolean { enabled: false },
                    enforcement: Enforcement::Soft,
                },
            ),
            (
                "sms_messages".into(),
                Entitlement {
                    value: EntitlementValue::Metered {
                        meter: "sms".into(),
                        period: "month".into(),
                        granted: "1000".into(),
                        used: "1000".into(),
                        balance: "0".into(),
                        usage_as_of: T0,
                    },
                    enforcement: Enforcement::Hard,
                },
            ),
        ]),
    }
}

#[test]
fn snapshots_answer_live_then_cached_and_a_cold_start_falls_back_to_disk() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("entitlements.dment");
    let checker = Checker::new(TENANT, Some(cache.clone()));
    // Nothing held: nothing allowed, and no source.
    assert_eq!(checker.enabled("api_access").source, None);
    assert!(!checker.enabled("api_access").allowed);
    assert!(!checker.load_fallback().unwrap(), "nothing kept yet");

    let v2 = Signer::dev()
        .sign_json(Kind::Snapshot, &snapshot(2))
        .unwrap();
    assert_eq!(checker.install(v2.as_bytes()).unwrap(), 2);
    let check = checker.enabled("api_access");
    assert!(check.allowed);
    assert_eq!(check.source, Some(Source::Live));
    assert!(!checker.enabled("white_labeling").allowed);
    assert!(!checker.enabled("sms_messages").allowed, "no balance left");
    assert!(!checker.enabled("not_a_feature").allowed);

    // An older version is refused; the held one keeps answering.
    let v1 = Signer::dev()
        .sign_json(Kind::Snapshot, &snapshot(1))
        .unwrap();
    assert_eq!(
        checker.install(v1.as_bytes()),
        Err(Error::StaleSnapshot {
            offered: 1,
            held: 2
        })
    );
    checker.refresh_failed();
    assert_eq!(checker.enabled("api_access").source, Some(Source::Cached));

    // A cold start with the platform unreachable: the kept snapshot answers.
    let cold = Checker::new(TENANT, Some(cache.clone()));
    assert!(cold.load_fallback().unwrap());
    assert_eq!(cold.version(), Some((2, Source::Fallback)));
    assert!(cold.enabled("api_access").allowed);
    // Another tenant's snapshot is never taken.
    let other = Checker::new("ten_ffffffffffffffffffffffffffffffff", Some(cache.clone()));
    assert!(matches!(
        other.load_fallback(),
        Err(Error::WrongTenant { .. })
    ));
    // A tampered cache is refused, not used.
    let mut bytes = std::fs::read(&cache).unwrap();
    bytes[20] ^= 1;
    std::fs::write(&cache, bytes).unwrap();
    let tampered = Checker::new(TENANT, Some(cache));
    assert!(tampered.load_fallback().is_err());
    assert_eq!(tampered.enabled("api_access").source, None);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// Changing any byte of a file, to any other value, fails verification.
    #[test]
    fn flipping_any_byte_fails(pos in any::<prop::sample::Index>(), to in any::<u8>()) {
        let mut doc = file().into_bytes();
        let i = pos.index(doc.len());
        prop_assume!(doc[i] != to);
        doc[i] = to;
        prop_assert!(verify_at(&doc, T0 + DAY).is_err());
    }

    /// Any input at all: an answer, never a panic.
    #[test]
    fn arbitrary_input_never_panics(doc in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = verify_at(&doc, T0);
        let _ = RevocationList::open(&doc);
        let _ = Checker::new(TENANT, None).install(&doc);
    }

    /// Inputs that look like documents (four dotted parts, real kinds and
    /// key ids) are refused too, never accepted or panicked on.
    #[test]
    fn plausible_forgeries_are_refused(
        kind in prop::sample::select(vec!["dmlic1", "dmrev1", "dment1", "dmlic2"]),
        key in prop::sample::select(vec!["dev-2026", "prod-1", ""]),
        payload in "[A-Za-z0-9_-]{0,200}",
        sig in "[A-Za-z0-9_-]{0,100}",
    ) {
        let doc = format!("{kind}.{key}.{payload}.{sig}");
        prop_assert!(verify_at(doc.as_bytes(), T0).is_err());
    }
}
